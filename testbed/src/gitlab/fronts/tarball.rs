//! Deterministic tar and gzip archives: Helm chart `.tgz` files and OCI image layers
//! (fixed mtime, uid/gid 0, gzip header mtime 0), so digests are stable across runs.

use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;
use serde::Serialize;

/// Modification time of every entry: 2024-01-01T00:00:00Z.
const MTIME: u64 = 1_704_067_200;

/// A plain tar of `(path, contents)` entries, in the given order.
pub(crate) fn tar(entries: &[(String, Vec<u8>)]) -> std::io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, data) in entries {
        let mut header = tar::Header::new_ustar();
        header.set_path(path)?;
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(MTIME);
        header.set_uid(0);
        header.set_gid(0);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        builder.append(&header, data.as_slice())?;
    }
    builder.into_inner()
}

/// Gzips `data` with a zero header mtime and no file name.
pub(crate) fn gzip(data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(data)?;
    enc.finish()
}

/// `Chart.yaml` metadata of a seeded chart (also the OCI chart config blob).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ChartMeta {
    /// Chart API version (`v2`).
    pub api_version: String,
    /// Chart name.
    pub name: String,
    /// Chart version (SemVer).
    pub version: String,
    /// Application version.
    pub app_version: String,
    /// One-line description.
    pub description: String,
    /// `application`.
    #[serde(rename = "type")]
    pub kind: String,
}

impl ChartMeta {
    /// Metadata of a seeded chart named `name` at `version`.
    pub(crate) fn seeded(name: &str, version: &str) -> Self {
        Self {
            api_version: "v2".into(),
            name: name.into(),
            version: version.into(),
            app_version: "1.0.0".into(),
            description: format!("Seeded chart {name}"),
            kind: "application".into(),
        }
    }
}

/// Whether `name` is usable as a chart name and tar directory (no `/`, no dot-only names).
pub(crate) fn valid_chart_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Whether `version` looks like SemVer `MAJOR.MINOR.PATCH[-pre][+build]`.
pub(crate) fn valid_semver(version: &str) -> bool {
    let core = version.split(['-', '+']).next().unwrap_or_default();
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+'))
}

/// The chart `.tgz`: `<name>/Chart.yaml`, `<name>/values.yaml`, `<name>/templates/configmap.yaml`.
pub(crate) fn chart_tgz(meta: &ChartMeta) -> std::io::Result<Vec<u8>> {
    let chart_yaml = serde_yaml_ng::to_string(meta).map_err(std::io::Error::other)?;
    let values = "greeting: hello\n".to_owned();
    let template = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-greeting\n\
                    data:\n  greeting: {{ .Values.greeting | quote }}\n"
        .to_owned();
    let name = &meta.name;
    let entries = vec![
        (format!("{name}/Chart.yaml"), chart_yaml.into_bytes()),
        (format!("{name}/values.yaml"), values.into_bytes()),
        (format!("{name}/templates/configmap.yaml"), template.into_bytes()),
    ];
    gzip(&tar(&entries)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn chart_tgz_is_deterministic_and_well_formed() {
        let meta = ChartMeta::seeded("mychart", "0.1.0");
        let a = chart_tgz(&meta).unwrap();
        assert_eq!(a, chart_tgz(&meta).unwrap());
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(a.as_slice())
            .read_to_end(&mut raw)
            .unwrap();
        let mut archive = tar::Archive::new(raw.as_slice());
        let mut names = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            if path == "mychart/Chart.yaml" {
                let mut s = String::new();
                entry.read_to_string(&mut s).unwrap();
                let back: ChartMeta = serde_yaml_ng::from_str(&s).unwrap();
                assert_eq!(back, meta);
                assert!(s.contains("apiVersion: v2"));
            }
            names.push(path);
        }
        assert_eq!(
            names,
            [
                "mychart/Chart.yaml",
                "mychart/values.yaml",
                "mychart/templates/configmap.yaml"
            ]
        );
    }

    #[test]
    fn validates_names_and_versions_by_table() {
        for (v, ok) in [
            ("0.1.0", true),
            ("1.2.3-rc.1+b5", true),
            ("1.2", false),
            ("a.b.c", false),
            ("1.2.3/x", false),
        ] {
            assert_eq!(valid_semver(v), ok, "{v}");
        }
        for (n, ok) in [
            ("mychart", true),
            ("my_chart-2", true),
            ("", false),
            ("..", false),
            ("a/b", false),
        ] {
            assert_eq!(valid_chart_name(n), ok, "{n}");
        }
    }
}
