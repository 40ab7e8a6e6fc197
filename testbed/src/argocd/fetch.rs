//! Resolving a source's revision the way argocd-repo-server does, with the real protocols:
//! git refs over smart HTTP as go-git lists them (`util/git/client.go` `getRefs`/`lsRemote`,
//! go-git v5.19 `transport/http` error wording), the Helm repository index (`util/helm`
//! `GetIndex`), and OCI registries through the Distribution token flow (shared with the Flux
//! stand-in, [`crate::flux::fetch::registry_fetch`]).

use super::repos::{Repository, basic_header};
use crate::flux::{
    credentials::Credentials,
    fetch::{FetchError, RegistryProbe, registry_fetch},
};

/// A resolved source: the revision Argo CD records and the source type it reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// Commit SHA, chart version or OCI digest.
    pub revision: String,
    /// `Directory`, `Helm`, `Kustomize`, `Plugin`.
    pub source_type: String,
}

/// What a source asks for (the parts of `spec.source` the stand-in reads).
#[derive(Debug, Clone, Default)]
pub struct SourceRequest {
    /// `repoURL` as written in the Application.
    pub repo_url: String,
    /// `targetRevision`.
    pub target_revision: String,
    /// `chart`, for Helm repositories.
    pub chart: Option<String>,
    /// The source type from explicit spec fields (`helm`, `kustomize`, `directory`, `plugin`).
    pub explicit_type: Option<String>,
}

/// One advertised ref.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ref {
    name: String,
    sha: String,
}

/// Parses a smart-HTTP `info/refs` advertisement: refs plus the `symref=HEAD:<target>`
/// capability.
fn parse_advertisement(body: &[u8]) -> Result<(Vec<Ref>, Option<String>), String> {
    let mut refs = Vec::new();
    let mut head_target = None;
    let mut pos = 0;
    while pos + 4 <= body.len() {
        let len_hex = std::str::from_utf8(&body[pos..pos + 4]).map_err(|e| e.to_string())?;
        let len = usize::from_str_radix(len_hex, 16).map_err(|_| format!("invalid pkt-len {len_hex:?}"))?;
        if len == 0 {
            pos += 4;
            continue;
        }
        if len < 4 || pos + len > body.len() {
            return Err("invalid pkt-len found".into());
        }
        let line = String::from_utf8_lossy(&body[pos + 4..pos + len]);
        pos += len;
        let line = line.trim_end_matches('\n');
        if line.starts_with('#') {
            continue;
        }
        let (refpart, caps) = line.split_once('\0').unwrap_or((line, ""));
        for cap in caps.split(' ') {
            if let Some(target) = cap.strip_prefix("symref=HEAD:") {
                head_target = Some(target.to_string());
            }
        }
        if let Some((sha, name)) = refpart.split_once(' ')
            && !name.ends_with("^{}")
            && name != "capabilities^{}"
        {
            refs.push(Ref {
                name: name.to_string(),
                sha: sha.to_string(),
            });
        }
    }
    Ok((refs, head_target))
}

/// `IsCommitSHA`.
pub fn is_commit_sha(s: &str) -> bool {
    s.len() == 40 && s.chars().all(|c| c.is_ascii_hexdigit())
}

/// `lsRemote`'s resolution of a revision against the listed refs.
fn resolve_revision(refs: &[Ref], head_target: Option<&str>, revision: &str) -> Result<String, String> {
    let revision = if revision.is_empty() { "HEAD" } else { revision };
    let short = |name: &str| -> String {
        ["refs/heads/", "refs/tags/", "refs/remotes/"]
            .iter()
            .find_map(|p| name.strip_prefix(p))
            .or_else(|| name.strip_prefix("refs/"))
            .unwrap_or(name)
            .to_string()
    };
    if revision == "HEAD" {
        if let Some(target) = head_target
            && let Some(r) = refs.iter().find(|r| r.name == target)
        {
            return Ok(r.sha.clone());
        }
        if let Some(r) = refs.iter().find(|r| r.name == "HEAD") {
            return Ok(r.sha.clone());
        }
    }
    if let Some(r) = refs
        .iter()
        .find(|r| r.name == revision || short(&r.name) == revision)
    {
        return Ok(r.sha.clone());
    }
    if revision.len() >= 7 && revision.chars().all(|c| c.is_ascii_hexdigit()) {
        return Ok(revision.to_string());
    }
    Err(format!("unable to resolve '{revision}' to a commit SHA"))
}

/// go-git's `ListRemote` then Argo CD's `lsRemote`: the commit SHA the revision points at.
/// Errors carry the repo-server's wording (`failed to list refs: authentication required: …`).
pub async fn git_resolve(
    http: &reqwest::Client,
    repo: &Repository,
    revision: &str,
) -> Result<String, String> {
    if is_commit_sha(revision) {
        return Ok(revision.to_string());
    }
    let lower = repo.repo.to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        return Err(format!(
            "the Argo CD stand-in fetches only http(s) git URLs, not '{}'",
            repo.repo
        ));
    }
    let url = format!(
        "{}/info/refs?service=git-upload-pack",
        repo.repo.trim_end_matches('/')
    );
    let mut req = http.get(&url).header("User-Agent", "git/2.0 (go-git)");
    if let Some(h) = repo.git_authorization() {
        req = req.header("Authorization", h);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| format!("failed to list refs: Get {url:?}: {}", e.without_url()))?;
    let status = resp.status();
    let final_url = resp.url().to_string();
    let body = resp
        .bytes()
        .await
        .map_err(|e| format!("failed to list refs: {}", e.without_url()))?;
    let reason = String::from_utf8_lossy(&body).into_owned();
    let err = match status.as_u16() {
        200..=299 => None,
        401 => Some(format!("authentication required: {reason}")),
        403 => Some(format!("authorization failed: {reason}")),
        404 => Some(format!("repository not found: {reason}")),
        code => Some(format!(
            "unexpected client error: unexpected requesting {final_url:?} status code: {code}"
        )),
    };
    if let Some(e) = err {
        return Err(format!("failed to list refs: {e}"));
    }
    let (refs, head) = parse_advertisement(&body).map_err(|e| format!("failed to list refs: {e}"))?;
    if refs.is_empty() {
        return Err("failed to list refs: remote repository is empty".into());
    }
    resolve_revision(&refs, head.as_deref(), revision)
}

/// Dotted numeric version key for picking the highest chart version.
fn version_key(v: &str) -> Vec<u64> {
    v.trim_start_matches('v')
        .split(['.', '-', '+'])
        .map(|p| p.parse().unwrap_or(0))
        .collect()
}

/// `IsVersion`: a plain version (not a constraint).
fn is_exact_version(v: &str) -> bool {
    let t = v.trim_start_matches('v');
    !t.is_empty()
        && t.split('.').all(|p| !p.is_empty())
        && t.chars().next().is_some_and(|c| c.is_ascii_digit())
        && !t.contains(['*', 'x', '^', '~', '<', '>', '=', ' ', ','])
}

/// Helm over HTTP: `GET <repoURL>/index.yaml` with Basic auth when a username or password is
/// set; the chart's highest version matching the revision (`*`/empty/constraint: the highest).
pub async fn helm_resolve(
    http: &reqwest::Client,
    repo: &Repository,
    chart: &str,
    revision: &str,
) -> Result<String, String> {
    let url = format!("{}/index.yaml", repo.repo.trim_end_matches('/'));
    let mut req = http.get(&url);
    if !repo.username.is_empty() || !repo.password.is_empty() {
        req = req.header("Authorization", basic_header(&repo.username, &repo.password));
    }
    let resp = req.send().await.map_err(|e| {
        format!(
            "error loading repo index: error making HTTP request: {}",
            e.without_url()
        )
    })?;
    let status = resp.status();
    if !status.is_success() {
        return Err(format!("error loading repo index: failed to get index: {status}"));
    }
    let text = resp
        .text()
        .await
        .map_err(|e| format!("error loading repo index: {}", e.without_url()))?;
    let index: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&text).map_err(|e| format!("error decoding index: {e}"))?;
    let versions: Vec<String> = index
        .get("entries")
        .and_then(|e| e.get(chart))
        .and_then(|e| e.as_sequence())
        .ok_or_else(|| format!("chart '{chart}' not found in index"))?
        .iter()
        .filter_map(|e| e.get("version").and_then(|v| v.as_str()).map(str::to_string))
        .collect();
    pick_version(&versions, revision)
}

fn pick_version(versions: &[String], revision: &str) -> Result<String, String> {
    if is_exact_version(revision) {
        return versions
            .iter()
            .find(|v| v.trim_start_matches('v') == revision.trim_start_matches('v'))
            .cloned()
            .ok_or_else(|| format!("invalid revision: version {revision} not found"));
    }
    versions
        .iter()
        .max_by_key(|v| version_key(v))
        .cloned()
        .ok_or_else(|| format!("invalid revision: no version matches constraint {revision:?}"))
}

fn registry_creds(repo: &Repository) -> Credentials {
    if repo.username.is_empty() || repo.password.is_empty() {
        Credentials::Anonymous
    } else {
        Credentials::Basic {
            username: repo.username.clone(),
            password: repo.password.clone(),
        }
    }
}

/// `host` and repository path of a registry reference, and the base URL to talk to.
fn registry_target(reference: &str, force_http: bool) -> Result<(String, String), String> {
    let reference = reference.trim_start_matches("oci://");
    let (host, path) = reference
        .split_once('/')
        .ok_or_else(|| format!("invalid OCI reference '{reference}'"))?;
    let scheme = if force_http { "http" } else { "https" };
    Ok((format!("{scheme}://{host}"), path.trim_matches('/').to_string()))
}

/// Helm chart in an OCI registry (`enableOCI`): the tag list of `<repoURL>/<chart>` unless the
/// revision is an exact version, then that tag's manifest.
pub async fn helm_oci_resolve(
    http: &reqwest::Client,
    repo: &Repository,
    chart: &str,
    revision: &str,
) -> Result<String, String> {
    let (base, path) = registry_target(&repo.repo, repo.insecure_oci_force_http)?;
    let path = format!("{path}/{chart}");
    let creds = registry_creds(repo);
    if is_exact_version(revision) {
        registry_fetch(
            http,
            &base,
            &path,
            &RegistryProbe::Manifest(revision.into()),
            &creds,
        )
        .await
        .map_err(|e| format!("error fetching chart: {}", fetch_message(e)))?;
        return Ok(revision.to_string());
    }
    registry_fetch(http, &base, &path, &RegistryProbe::Tags, &creds)
        .await
        .map_err(|e| format!("unable to get tags: failed to get tags: {}", fetch_message(e)))?;
    Err(format!(
        "the Argo CD stand-in resolves OCI Helm charts only by exact version, not {revision:?}"
    ))
}

/// Plain OCI source (`oci://`): the digest of the tag's manifest.
pub async fn oci_resolve(
    http: &reqwest::Client,
    repo: &Repository,
    revision: &str,
) -> Result<String, String> {
    let (base, path) = registry_target(&repo.repo, repo.insecure_oci_force_http)?;
    let tag = if revision.is_empty() { "latest" } else { revision };
    let got = registry_fetch(
        http,
        &base,
        &path,
        &RegistryProbe::Manifest(tag.into()),
        &registry_creds(repo),
    )
    .await
    .map_err(|e| format!("failed to resolve revision {revision:?}: {}", fetch_message(e)))?;
    Ok(got.split_once('@').map(|(_, d)| d.to_string()).unwrap_or(got))
}

fn fetch_message(e: FetchError) -> String {
    match e {
        FetchError::Config(m)
        | FetchError::Auth(m)
        | FetchError::NotFound(m)
        | FetchError::Invalid(m)
        | FetchError::Other(m) => m,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(s: &str) -> String {
        format!("{:04x}{s}", s.len() + 4)
    }

    #[test]
    fn advertisement_yields_refs_and_head_symref() {
        let a = "1111111111111111111111111111111111111111";
        let b = "2222222222222222222222222222222222222222";
        let body = format!(
            "{}0000{}{}{}0000",
            pkt("# service=git-upload-pack\n"),
            pkt(&format!(
                "{a} HEAD\0multi_ack symref=HEAD:refs/heads/main agent=git/2\n"
            )),
            pkt(&format!("{a} refs/heads/main\n")),
            pkt(&format!("{b} refs/tags/v1\n")),
        );
        let (refs, head) = parse_advertisement(body.as_bytes()).unwrap();
        assert_eq!(head.as_deref(), Some("refs/heads/main"));
        assert_eq!(resolve_revision(&refs, head.as_deref(), "").unwrap(), a);
        assert_eq!(resolve_revision(&refs, head.as_deref(), "v1").unwrap(), b);
        assert_eq!(
            resolve_revision(&refs, head.as_deref(), "refs/heads/main").unwrap(),
            a
        );
        assert_eq!(
            resolve_revision(&refs, head.as_deref(), "nope").unwrap_err(),
            "unable to resolve 'nope' to a commit SHA"
        );
    }

    #[test]
    fn chart_versions_pick_exact_or_highest() {
        let v: Vec<String> = ["0.1.0", "0.10.0", "0.2.0"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(pick_version(&v, "0.2.0").unwrap(), "0.2.0");
        assert_eq!(pick_version(&v, "*").unwrap(), "0.10.0");
        assert!(pick_version(&v, "9.9.9").is_err());
    }
}
