//! Fetching as Flux does, with the real protocols: `git ls-remote` for git, the Distribution
//! registry's Bearer token flow for OCI and images, and the Helm repository index over HTTP.

use std::time::Duration;

use base64::Engine;
use sha2::{Digest, Sha256};
use tokio::process::Command;

use super::credentials::Credentials;

/// Why a fetch failed. Messages are worded as Flux's libraries word them (go-git,
/// go-containerregistry, Helm's getter); the controller adds each kind's prefix and reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// The Secret cannot be turned into credentials (reason `AuthenticationFailed`).
    #[error("{0}")]
    Config(String),
    /// The remote refused the credentials (401/403, `denied`).
    #[error("{0}")]
    Auth(String),
    /// The remote answered but the thing is not there.
    #[error("{0}")]
    NotFound(String),
    /// The remote answered with content that is not what the kind expects.
    #[error("{0}")]
    Invalid(String),
    /// Anything else (network, timeouts).
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
    if !out.status.success() {
        return Err(git_failure(&String::from_utf8_lossy(&out.stderr)));
    }
    parse_ls_remote(&String::from_utf8_lossy(&out.stdout))
        .ok_or_else(|| FetchError::Other(format!("'{url}' has no HEAD")))
}

/// go-git's words for a failed smart-HTTP exchange, from git's stderr: 401 is `authentication
/// required: <body>`, 403 `authorization failed: <body>`, 404 `repository not found: <body>`
/// (the body is what the server sent, which git prints as `remote:` lines).
pub fn git_failure(stderr: &str) -> FetchError {
    let body = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("remote: "))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let with_body = |what: &str| {
        if body.is_empty() {
            what.to_string()
        } else {
            format!("{what}: {body}")
        }
    };
    let lower = stderr.to_lowercase();
    // An anonymous attempt on a private repository ends with git wanting to prompt (401).
    if [
        "authentication failed",
        "error: 401",
        "could not read username",
        "terminal prompts disabled",
    ]
    .iter()
    .any(|needle| lower.contains(needle))
    {
        FetchError::Auth(with_body("authentication required"))
    } else if lower.contains("error: 403") {
        FetchError::Auth(with_body("authorization failed"))
    } else if lower.contains("not found") || lower.contains("error: 404") {
        FetchError::NotFound(with_body("repository not found"))
    } else {
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or_default();
        FetchError::Other(last.trim().trim_start_matches("fatal: ").to_string())
    }
}

/// go-containerregistry's `transport.Error` text: `<METHOD> <url>: <CODE>: <message>` for a
/// registry error body, else `<METHOD> <url>: unexpected status code <n> <text>[: <body>]`.
pub fn registry_error_text(method: &str, url: &str, status: reqwest::StatusCode, body: &str) -> String {
    let diagnostics: Vec<String> = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("errors").and_then(|e| e.as_array()).cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|e| {
            let code = e.get("code")?.as_str()?;
            let message = e.get("message").and_then(|m| m.as_str()).unwrap_or_default();
            Some(format!("{code}: {message}"))
        })
        .collect();
    let detail = match diagnostics.len() {
        0 if body.trim().is_empty() => format!(
            "unexpected status code {} {}",
            status.as_u16(),
            status.canonical_reason().unwrap_or_default()
        ),
        0 => format!(
            "unexpected status code {} {}: {}",
            status.as_u16(),
            status.canonical_reason().unwrap_or_default(),
            short(body)
        ),
        1 => diagnostics[0].clone(),
        _ => format!("multiple errors returned: {}", diagnostics.join("; ")),
    };
    format!("{method} {url}: {detail}")
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
        401 | 403 => Err(FetchError::Auth(registry_error_text("GET", &url, status, &body))),
        404 => Err(FetchError::NotFound(registry_error_text(
            "GET", &url, status, &body,
        ))),
        _ => Err(FetchError::Other(registry_error_text("GET", &url, status, &body))),
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
    let token_url = resp.url().to_string();
    let body = resp.text().await.map_err(transport)?;
    if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
        return Err(FetchError::Auth(registry_error_text(
            "GET", &token_url, status, &body,
        )));
    }
    if !status.is_success() {
        return Err(FetchError::Other(registry_error_text(
            "GET", &token_url, status, &body,
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
            let index: serde_yaml_ng::Value =
                serde_yaml_ng::from_str(&body).map_err(|e| FetchError::Invalid(e.to_string()))?;
            if index.get("apiVersion").is_none() {
                return Err(FetchError::Invalid("no API version specified".into()));
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
    fn git_stderr_becomes_go_git_words() {
        let denied = "remote: HTTP Basic: Access denied. If a token was provided, it was either incorrect, expired, or improperly scoped.\nfatal: Authentication failed for 'http://127.0.0.1:1/acme/app.git/'\n";
        assert_eq!(
            git_failure(denied),
            FetchError::Auth(
                "authentication required: HTTP Basic: Access denied. If a token was provided, it was either incorrect, expired, or improperly scoped.".into()
            )
        );
        let prompt = "fatal: could not read Username for 'http://127.0.0.1:1': terminal prompts disabled\n";
        assert_eq!(
            git_failure(prompt),
            FetchError::Auth("authentication required".into())
        );
        let forbidden = "fatal: unable to access 'http://h/a.git/': The requested URL returned error: 403\n";
        assert_eq!(
            git_failure(forbidden),
            FetchError::Auth("authorization failed".into())
        );
        let missing = "remote: The project you were looking for could not be found.\nfatal: repository 'http://h/a.git/' not found\n";
        assert_eq!(
            git_failure(missing),
            FetchError::NotFound(
                "repository not found: The project you were looking for could not be found.".into()
            )
        );
        assert_eq!(
            git_failure("fatal: unable to access 'http://h/': Failed to connect to h port 1\n"),
            FetchError::Other("unable to access 'http://h/': Failed to connect to h port 1".into())
        );
    }

    #[test]
    fn registry_errors_read_like_go_containerregistry() {
        let url = "http://r/v2/acme/app/tags/list";
        let body =
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":null}]}"#;
        assert_eq!(
            registry_error_text("GET", url, reqwest::StatusCode::UNAUTHORIZED, body),
            "GET http://r/v2/acme/app/tags/list: UNAUTHORIZED: authentication required"
        );
        assert_eq!(
            registry_error_text("GET", url, reqwest::StatusCode::FORBIDDEN, ""),
            "GET http://r/v2/acme/app/tags/list: unexpected status code 403 Forbidden"
        );
        assert_eq!(
            registry_error_text(
                "GET",
                url,
                reqwest::StatusCode::UNAUTHORIZED,
                "HTTP Basic: Access denied"
            ),
            "GET http://r/v2/acme/app/tags/list: unexpected status code 401 Unauthorized: HTTP Basic: Access denied"
        );
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
