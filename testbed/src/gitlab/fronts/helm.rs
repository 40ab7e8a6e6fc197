//! The Helm package registry: `GET /api/v4/projects/:id/packages/helm/:channel/index.yaml` and
//! `.../charts/:file`, HTTP Basic only, with GitLab's index format (relative chart URLs).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::json;

use super::FrontsState;
use super::basic::{Authn, authenticate};
use super::tarball::ChartMeta;
use crate::gitlab::access::{CredentialError, ProjectAccess};

const REPORTER: u32 = 20;
/// Scopes that may read the package registry (PAT/PrAT/GrAT and deploy tokens).
const READ_SCOPES: &[&str] = &[
    "api",
    "read_api",
    "read_package_registry",
    "write_package_registry",
];

/// One uploaded chart package file.
#[derive(Clone)]
pub(crate) struct ChartPackage {
    meta: ChartMeta,
    tgz: Arc<Vec<u8>>,
    digest: String,
    created: DateTime<Utc>,
}

impl ChartPackage {
    /// A package of `tgz` with its metadata, created now.
    pub(crate) fn new(meta: ChartMeta, tgz: Vec<u8>) -> Self {
        let digest = super::oci_push::digest(&tgz)
            .trim_start_matches("sha256:")
            .to_owned();
        Self {
            meta,
            tgz: Arc::new(tgz),
            digest,
            created: Utc::now(),
        }
    }

    fn file_name(&self) -> String {
        format!("{}-{}.tgz", self.meta.name, self.meta.version)
    }
}

/// Charts per (project id, channel); a re-upload of a name+version replaces the older one.
#[derive(Default)]
pub(crate) struct HelmStore {
    charts: Mutex<HashMap<(u64, String), Vec<ChartPackage>>>,
}

impl HelmStore {
    /// Adds a package to a project's channel.
    pub(crate) fn add(&self, project_id: u64, channel: &str, package: ChartPackage) {
        let mut charts = self.charts.lock().unwrap_or_else(|e| e.into_inner());
        let list = charts.entry((project_id, channel.to_owned())).or_default();
        list.retain(|p| p.meta.name != package.meta.name || p.meta.version != package.meta.version);
        list.push(package);
    }

    fn list(&self, project_id: u64, channel: &str) -> Vec<ChartPackage> {
        let charts = self.charts.lock().unwrap_or_else(|e| e.into_inner());
        charts
            .get(&(project_id, channel.to_owned()))
            .cloned()
            .unwrap_or_default()
    }
}

/// GitLab's `helm_channel_regex`: 1–255 chars of alphanumerics separated by single `.`, `-`, `_`.
pub(crate) fn valid_channel(channel: &str) -> bool {
    let bytes = channel.as_bytes();
    let sep = |b: u8| matches!(b, b'.' | b'-' | b'_');
    !channel.is_empty()
        && channel.len() <= 255
        && bytes.iter().all(|b| b.is_ascii_alphanumeric() || sep(*b))
        && !sep(bytes[0])
        && !sep(bytes[bytes.len() - 1])
        && !bytes.windows(2).any(|w| sep(w[0]) && sep(w[1]))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct IndexEntry<'a> {
    #[serde(flatten)]
    meta: &'a ChartMeta,
    created: String,
    digest: &'a str,
    urls: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Index<'a> {
    api_version: &'static str,
    entries: BTreeMap<&'a str, Vec<IndexEntry<'a>>>,
    generated: String,
    server_info: BTreeMap<&'static str, String>,
}

/// Renders GitLab's `index.yaml` for the packages of one project channel (newest first per chart).
pub(crate) fn render_index(project_id: u64, packages: &[ChartPackage], now: DateTime<Utc>) -> String {
    let mut entries: BTreeMap<&str, Vec<IndexEntry<'_>>> = BTreeMap::new();
    let mut sorted: Vec<&ChartPackage> = packages.iter().collect();
    sorted.sort_by_key(|p| std::cmp::Reverse(p.created));
    for p in sorted {
        entries.entry(p.meta.name.as_str()).or_default().push(IndexEntry {
            meta: &p.meta,
            created: p.created.to_rfc3339_opts(SecondsFormat::Nanos, true),
            digest: &p.digest,
            urls: vec![format!("charts/{}", p.file_name())],
        });
    }
    let index = Index {
        api_version: "v1",
        entries,
        generated: now.to_rfc3339_opts(SecondsFormat::Nanos, true),
        server_info: BTreeMap::from([(
            "contextPath",
            format!("/api/v4/projects/{project_id}/packages/helm"),
        )]),
    };
    serde_yaml_ng::to_string(&index).unwrap_or_default()
}

fn message(status: StatusCode, text: &str) -> Response {
    (status, Json(json!({ "message": text }))).into_response()
}

/// API guard answers for refused credentials (§1.3 A/C).
fn refused(err: CredentialError) -> Response {
    let (status, body) = match err {
        CredentialError::Unknown => (StatusCode::UNAUTHORIZED, json!({"message": "401 Unauthorized"})),
        CredentialError::Expired => (
            StatusCode::UNAUTHORIZED,
            json!({"error": "invalid_token", "error_description": "Token is expired. You can either do re-authorization or token refresh."}),
        ),
        CredentialError::Revoked => (
            StatusCode::UNAUTHORIZED,
            json!({"error": "invalid_token", "error_description": "Token was revoked. You have to re-authorize from the user."}),
        ),
    };
    let mut resp = (status, Json(body)).into_response();
    if err != CredentialError::Unknown {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"GitLab\", error=\"invalid_token\""),
        );
    }
    resp
}

/// Authenticates and authorises a read of the project's Helm packages.
fn authorize_read(
    state: &FrontsState,
    headers: &HeaderMap,
    id: &str,
) -> Result<ProjectAccess, Box<Response>> {
    let principal = match authenticate(state.oracle.as_ref(), headers) {
        Authn::Anonymous => None,
        Authn::User(p) => Some(p),
        Authn::Refused(e) => return Err(Box::new(refused(e))),
    };
    if let Some(p) = &principal
        && !p.has_any_scope(READ_SCOPES)
    {
        return Err(Box::new(
            (
            StatusCode::FORBIDDEN,
            Json(json!({
                "error": "insufficient_scope",
                "error_description": "The request requires higher privileges than provided by the access token.",
                "scope": "api read_api",
            })),
        )
            .into_response(),
        ));
    }
    let access = state.oracle.project_access(principal.as_ref(), id);
    match (access, principal) {
        (Some(a), _) if a.public || a.access_level >= REPORTER => Ok(a),
        (Some(_), Some(_)) => Err(Box::new(message(StatusCode::FORBIDDEN, "403 Forbidden"))),
        (None, Some(_)) => Err(Box::new(message(StatusCode::NOT_FOUND, "404 Project Not Found"))),
        (_, None) => {
            let mut resp = message(StatusCode::UNAUTHORIZED, "401 Unauthorized");
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"GitLab Packages Registry\""),
            );
            Err(Box::new(resp))
        }
    }
}

/// `GET /api/v4/projects/{id}/packages/helm/{channel}/index.yaml`.
pub(crate) async fn index(
    State(state): State<Arc<FrontsState>>,
    Path((id, channel)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if !valid_channel(&channel) {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "channel is invalid"})),
        )
            .into_response();
    }
    let project = match authorize_read(&state, &headers, &id) {
        Ok(p) => p,
        Err(resp) => return *resp,
    };
    let packages = state.helm.list(project.project_id, &channel);
    let body = render_index(project.project_id, &packages, Utc::now());
    ([(header::CONTENT_TYPE, "text/yaml")], body).into_response()
}

/// `GET /api/v4/projects/{id}/packages/helm/{channel}/charts/{file}`.
pub(crate) async fn chart(
    State(state): State<Arc<FrontsState>>,
    Path((id, channel, file)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    if !valid_channel(&channel) {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "channel is invalid"})),
        )
            .into_response();
    }
    let project = match authorize_read(&state, &headers, &id) {
        Ok(p) => p,
        Err(resp) => return *resp,
    };
    let found = state
        .helm
        .list(project.project_id, &channel)
        .into_iter()
        .find(|p| p.file_name() == file);
    match found {
        Some(p) => (
            [
                (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{file}\""),
                ),
            ],
            p.tgz.as_ref().clone(),
        )
            .into_response(),
        None => message(StatusCode::NOT_FOUND, "404 Package Not Found"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_regex_by_table() {
        for (c, ok) in [
            ("stable", true),
            ("a.b-c_d", true),
            ("v1", true),
            ("", false),
            ("-x", false),
            ("x-", false),
            ("a..b", false),
            ("a/b", false),
            (&"x".repeat(256), false),
        ] {
            assert_eq!(valid_channel(c), ok, "{c}");
        }
    }

    #[test]
    fn index_lists_newest_first_with_relative_urls() {
        let mut old = ChartPackage::new(ChartMeta::seeded("app", "0.1.0"), b"old".to_vec());
        old.created = DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z")
            .unwrap()
            .to_utc();
        let new = ChartPackage::new(ChartMeta::seeded("app", "0.2.0"), b"new".to_vec());
        let yaml = render_index(42, &[old, new], Utc::now());
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&yaml).unwrap();
        assert_eq!(v["apiVersion"].as_str(), Some("v1"));
        assert_eq!(
            v["serverInfo"]["contextPath"].as_str(),
            Some("/api/v4/projects/42/packages/helm")
        );
        let list = v["entries"]["app"].as_sequence().unwrap();
        assert_eq!(list[0]["version"].as_str(), Some("0.2.0"));
        assert_eq!(list[0]["urls"][0].as_str(), Some("charts/app-0.2.0.tgz"));
        assert_eq!(
            list[1]["created"].as_str(),
            Some("2024-01-01T00:00:00.000000000Z")
        );
        assert_eq!(list[0]["apiVersion"].as_str(), Some("v2"));
        assert_eq!(list[0]["digest"].as_str().map(str::len), Some(64));
    }
}
