//! Fetching as Flux does, with the real protocols: `git ls-remote` for git, the Distribution
//! registry's Bearer token flow for OCI and images, and the Helm repository index over HTTP.

use std::time::Duration;

use base64::Engine;
use sha2::{Digest, Sha256};
use tokio::process::Command;

use super::credentials::Credentials;

/// Why a fetch failed; `Auth` becomes reason `AuthenticationFailed`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// The remote refused the credentials (401/403, `denied`).
    #[error("{0}")]
    Auth(String),
    /// The remote answered but the thing is not there.
    #[error("{0}")]
    NotFound(String),
    /// Anything else (network, malformed answers).
    #[error("{0}")]
    Other(String),
}

fn basic_header(username: &str, password: &str) -> String {
    let raw = format!("{username}:{password}");
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(raw))
}

/// `git ls-remote --symref <url> HEAD` with the credentials sent up front (through git config in
/// the environment, never on the command line). Returns Flux's revision form `main@sha1:<sha>`.
pub async fn git_ls_remote(url: &str, creds: &Credentials, timeout: Duration) -> Result<String, FetchError> {
    let mut cmd = Command::new("git");
    cmd.args(["-c", "credential.helper=", "ls-remote", "--symref", url, "HEAD"])
        .env("GIT_TERMINAL_PROMPT", "0")
        .env_remove("GIT_ASKPASS")
        .env_remove("SSH_ASKPASS")
        .kill_on_drop(true);
    let header = match creds {
        Credentials::Anonymous => None,
        Credentials::Basic { username, password } => Some(basic_header(username, password)),
        Credentials::Bearer(token) => Some(format!("Bearer {token}")),
    };
    if let Some(h) = header {
        cmd.env("GIT_CONFIG_COUNT", "1")
            .env("GIT_CONFIG_KEY_0", "http.extraHeader")
            .env("GIT_CONFIG_VALUE_0", format!("Authorization: {h}"));
    }
    let out = tokio::time::timeout(timeout, cmd.output())
        .await
        .map_err(|_| FetchError::Other(format!("timeout after {timeout:?} listing refs of '{url}'")))?
        .map_err(|e| FetchError::Other(format!("cannot run git: {e}")))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        let lower = stderr.to_lowercase();
        let msg = format!("unable to list remote refs of '{url}': {}", stderr.trim());
        return Err(
            // An anonymous attempt on a private repository ends with git wanting to prompt;
            // go-git (Flux) reports that as "authentication required".
            if [
                "authentication",
                "401",
                "403",
                "could not read username",
                "terminal prompts disabled",
            ]
            .iter()
            .any(|needle| lower.contains(needle))
            {
                FetchError::Auth(format!("{msg} (authentication required)"))
            } else if lower.contains("not found") || lower.contains("404") {
                FetchError::NotFound(msg)
            } else {
                FetchError::Other(msg)
            },
        );
    }
    parse_ls_remote(&String::from_utf8_lossy(&out.stdout))
        .ok_or_else(|| FetchError::Other(format!("'{url}' has no HEAD")))
}

/// Flux's revision `<branch>@sha1:<sha>` from `git ls-remote --symref <url> HEAD` output.
pub(crate) fn parse_ls_remote(stdout: &str) -> Option<String> {
    let mut branch = None;
    let mut sha = None;
    for line in stdout.lines() {
        if let Some(rest) = line.strip_prefix("ref: refs/heads/") {
            branch = rest.split('\t').next().map(str::to_string);
        } else if let Some((s, name)) = line.split_once('\t')
            && name == "HEAD"
        {
            sha = Some(s.to_string());
        }
    }
    Some(format!(
        "{}@sha1:{}",
        branch.unwrap_or_else(|| "HEAD".into()),
        sha?
    ))
}

/// What to read from a registry repository.
#[derive(Debug, Clone)]
pub enum RegistryProbe {
    /// `GET /v2/<repo>/manifests/<tag>` (OCIRepository).
    Manifest(String),
    /// `GET /v2/<repo>/tags/list` (ImageRepository, HelmRepository oci).
    Tags,
}

/// Talks to a Distribution registry the way go-containerregistry does: unauthenticated request,
/// parse the `WWW-Authenticate: Bearer` challenge, fetch a token from the realm (Basic auth when
/// credentials exist), retry with it. Returns a revision string (digest or tag list summary).
pub async fn registry_fetch(
    http: &reqwest::Client,
    base: &str,
    repository: &str,
    probe: &RegistryProbe,
    creds: &Credentials,
) -> Result<String, FetchError> {
    let url = match probe {
        RegistryProbe::Manifest(tag) => format!("{base}/v2/{repository}/manifests/{tag}"),
        RegistryProbe::Tags => format!("{base}/v2/{repository}/tags/list"),
    };
    let accept = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, \
                  application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";
    let first = http
        .get(&url)
        .header("Accept", accept)
        .send()
        .await
        .map_err(transport)?;
    let resp = if first.status() == reqwest::StatusCode::UNAUTHORIZED {
        let challenge = first
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| FetchError::Other("registry answered 401 without a challenge".into()))?;
        let token = bearer_token(http, &challenge, creds).await?;
        http.get(&url)
            .header("Accept", accept)
            .bearer_auth(token)
            .send()
            .await
            .map_err(transport)?
    } else {
        first
    };
    let status = resp.status();
    let digest = resp
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = resp.text().await.map_err(transport)?;
    match status.as_u16() {
        200 => Ok(match probe {
            RegistryProbe::Manifest(tag) => format!("{tag}@{}", digest.unwrap_or_else(|| sha256_hex(&body))),
            RegistryProbe::Tags => {
                let tags = serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v.get("tags").and_then(|t| t.as_array()).map(|t| t.len()))
                    .unwrap_or(0);
                format!("{tags} tags")
            }
        }),
        401 | 403 => Err(FetchError::Auth(format!(
            "failed to fetch '{repository}' from the registry: {} (authentication required or access denied)",
            short(&body)
        ))),
        404 => Err(FetchError::NotFound(format!(
            "'{repository}' not found in the registry: {}",
            short(&body)
        ))),
        s => Err(FetchError::Other(format!(
            "registry answered {s} for '{repository}': {}",
            short(&body)
        ))),
    }
}

async fn bearer_token(
    http: &reqwest::Client,
    challenge: &str,
    creds: &Credentials,
) -> Result<String, FetchError> {
    let params = parse_challenge(challenge)
        .ok_or_else(|| FetchError::Other(format!("bad challenge {challenge:?}")))?;
    let realm = params
        .iter()
        .find(|(k, _)| k == "realm")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let query: Vec<(String, String)> = params
        .into_iter()
        .filter(|(k, _)| k == "service" || k == "scope")
        .collect();
    let mut req = http.get(&realm).query(&query);
    match creds {
        Credentials::Basic { username, password } => {
            req = req
                .query(&[("account", username)])
                .header("Authorization", basic_header(username, password))
        }
        Credentials::Bearer(token) => req = req.bearer_auth(token),
        Credentials::Anonymous => {}
    }
    let resp = req.send().await.map_err(transport)?;
    let status = resp.status();
    let body = resp.text().await.map_err(transport)?;
    if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
        return Err(FetchError::Auth(format!(
            "registry token request refused ({status}): {}",
            short(&body)
        )));
    }
    if !status.is_success() {
        return Err(FetchError::Other(format!(
            "registry token request failed ({status})"
        )));
    }
    let v: serde_json::Value = serde_json::from_str(&body).map_err(|e| FetchError::Other(e.to_string()))?;
    v.get("token")
        .or_else(|| v.get("access_token"))
        .and_then(|t| t.as_str())
        .map(str::to_string)
        .ok_or_else(|| FetchError::Other("registry token response has no token".into()))
}

/// Parses `Bearer realm="…",service="…",scope="…"` into pairs.
pub fn parse_challenge(header: &str) -> Option<Vec<(String, String)>> {
    let rest = header.trim().strip_prefix("Bearer ")?;
    let mut out = Vec::new();
    let mut s = rest;
    while !s.is_empty() {
        let (key, after) = s.split_once('=')?;
        let after = after.strip_prefix('"')?;
        let (value, tail) = after.split_once('"')?;
        out.push((key.trim().to_string(), value.to_string()));
        s = tail.trim_start_matches(',').trim_start();
    }
    Some(out)
}

/// Reads `<repo url>/index.yaml` with Basic auth as Helm does; the revision is the index digest.
pub async fn helm_index(
    http: &reqwest::Client,
    repo_url: &str,
    creds: &Credentials,
) -> Result<String, FetchError> {
    let url = format!("{}/index.yaml", repo_url.trim_end_matches('/'));
    let mut req = http.get(&url);
    if let Credentials::Basic { username, password } = creds {
        req = req.header("Authorization", basic_header(username, password));
    }
    let resp = req.send().await.map_err(transport)?;
    let status = resp.status();
    let body = resp.text().await.map_err(transport)?;
    match status.as_u16() {
        200 => {
            let index: serde_yaml_ng::Value = serde_yaml_ng::from_str(&body)
                .map_err(|e| FetchError::Other(format!("failed to parse index of '{repo_url}': {e}")))?;
            if index.get("apiVersion").is_none() {
                return Err(FetchError::Other("no API version specified".into()));
            }
            Ok(format!("sha256:{}", sha256_hex(&body)))
        }
        401 | 403 => Err(FetchError::Auth(format!("failed to fetch {url} : {status}"))),
        404 => Err(FetchError::NotFound(format!("failed to fetch {url} : {status}"))),
        _ => Err(FetchError::Other(format!("failed to fetch {url} : {status}"))),
    }
}

fn sha256_hex(s: &str) -> String {
    let digest = Sha256::digest(s.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn transport(e: reqwest::Error) -> FetchError {
    FetchError::Other(format!("request failed: {}", e.without_url()))
}

fn short(body: &str) -> String {
    body.chars().take(200).collect::<String>().trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ls_remote_output_becomes_a_flux_revision() {
        let out = "ref: refs/heads/main\tHEAD\nff351cb8aa\tHEAD\n";
        assert_eq!(parse_ls_remote(out).as_deref(), Some("main@sha1:ff351cb8aa"));
        assert_eq!(parse_ls_remote(""), None);
    }

    #[test]
    fn challenge_parses_all_parameters() {
        let h = r#"Bearer realm="http://127.0.0.1:1/jwt/auth",service="container_registry",scope="repository:a/b:pull""#;
        let p = parse_challenge(h).unwrap();
        assert_eq!(p[0], ("realm".into(), "http://127.0.0.1:1/jwt/auth".into()));
        assert_eq!(p[2], ("scope".into(), "repository:a/b:pull".into()));
        assert!(parse_challenge("Basic realm=\"x\"").is_none());
    }
}
