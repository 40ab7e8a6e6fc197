//! Proof that a written Secret works, with the real clients a user would run: `git ls-remote`,
//! `skopeo`, an HTTP GET of the Helm index, a GitLab API call. Errors never carry the token.

use std::{path::Path, process::Stdio, time::Duration};

use base64::Engine;
use tokio::process::Command;

/// How long one client call may take.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(20);

/// Replaces every occurrence of `secret` in `text` (no-op for an empty secret).
pub fn redact(text: &str, secret: &str) -> String {
    if secret.is_empty() {
        text.to_string()
    } else {
        text.replace(secret, "[redacted]")
    }
}

async fn run(mut cmd: Command, what: &str, secret: &str) -> Result<String, String> {
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    let out = tokio::time::timeout(CLIENT_TIMEOUT, cmd.output())
        .await
        .map_err(|_| format!("{what}: timed out after {CLIENT_TIMEOUT:?}"))?
        .map_err(|e| format!("{what}: cannot run: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        Err(redact(
            &format!("{what} failed ({}): {}", out.status, stderr.trim()),
            secret,
        ))
    }
}

/// `git ls-remote <url> HEAD` with basic credentials; returns the short HEAD commit.
pub async fn git_ls_remote(url: &str, username: &str, password: &str) -> Result<String, String> {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    let mut cmd = Command::new("git");
    cmd.args(["-c", "credential.helper=", "-c"])
        .arg(format!("http.extraHeader=Authorization: Basic {basic}"))
        .args(["ls-remote", url, "HEAD"])
        .env("GIT_TERMINAL_PROMPT", "0");
    let out = run(cmd, "git ls-remote", password)
        .await
        .map_err(|e| redact(&e, &basic))?;
    let sha = out.split_whitespace().next().unwrap_or_default();
    if sha.len() >= 7 {
        Ok(format!("git ls-remote: HEAD {}", &sha[..7]))
    } else {
        Err(format!("git ls-remote listed no HEAD: {:?}", out.trim()))
    }
}

/// GET `<repo_url>/index.yaml` with basic credentials; returns the chart names it lists.
pub async fn helm_index(repo_url: &str, username: &str, password: &str) -> Result<String, String> {
    let url = format!("{}/index.yaml", repo_url.trim_end_matches('/'));
    let response = reqwest::Client::new()
        .get(&url)
        .basic_auth(username, Some(password))
        .timeout(CLIENT_TIMEOUT)
        .send()
        .await
        .map_err(|e| redact(&format!("GET index.yaml: {e}"), password))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    if !status.is_success() {
        return Err(format!("GET index.yaml answered {status}"));
    }
    let index: serde_json::Value =
        serde_yaml_ng::from_str(&body).map_err(|e| format!("index.yaml does not parse: {e}"))?;
    let charts: Vec<String> = index["entries"]
        .as_object()
        .map(|e| e.keys().cloned().collect())
        .unwrap_or_default();
    if charts.is_empty() {
        Err("index.yaml lists no charts".into())
    } else {
        Ok(format!("Helm index: {}", charts.join(", ")))
    }
}

/// Writes `.dockerconfigjson` content to a private file for `skopeo --authfile`.
pub fn write_authfile(dir: &Path, name: &str, content: &[u8]) -> Result<std::path::PathBuf, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(format!("{name}.auth.json"));
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| format!("authfile: {e}"))?;
    std::io::Write::write_all(&mut file, content).map_err(|e| format!("authfile: {e}"))?;
    Ok(path)
}

fn skopeo(authfile: &Path) -> Command {
    let mut cmd = Command::new("skopeo");
    cmd.arg("--insecure-policy");
    cmd.env("REGISTRY_AUTH_FILE", authfile);
    cmd
}

/// `skopeo inspect --raw` of `host/repo:tag`; returns the manifest's media type.
pub async fn skopeo_manifest(authfile: &Path, reference: &str) -> Result<String, String> {
    let mut cmd = skopeo(authfile);
    cmd.args(["inspect", "--raw", "--tls-verify=false", "--authfile"])
        .arg(authfile)
        .arg(format!("docker://{reference}"));
    let out = run(cmd, "skopeo inspect", "").await?;
    let manifest: serde_json::Value =
        serde_json::from_str(&out).map_err(|e| format!("skopeo printed no manifest: {e}"))?;
    let media = manifest["mediaType"].as_str().unwrap_or("manifest");
    Ok(format!("skopeo inspect {reference}: {media}"))
}

/// `skopeo list-tags` of `host/repo`; returns the tags.
pub async fn skopeo_tags(authfile: &Path, repository: &str) -> Result<String, String> {
    let mut cmd = skopeo(authfile);
    cmd.args(["list-tags", "--tls-verify=false", "--authfile"])
        .arg(authfile)
        .arg(format!("docker://{repository}"));
    let out = run(cmd, "skopeo list-tags", "").await?;
    let listed: serde_json::Value =
        serde_json::from_str(&out).map_err(|e| format!("skopeo printed no tag list: {e}"))?;
    let tags: Vec<&str> = listed["Tags"]
        .as_array()
        .map(|t| t.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    if tags.is_empty() {
        Err(format!("skopeo list-tags {repository}: no tags"))
    } else {
        Ok(format!("skopeo list-tags {repository}: {}", tags.join(", ")))
    }
}

/// GET `/api/v4/projects/<path>` with `PRIVATE-TOKEN`; returns the canonical path GitLab answers.
pub async fn gitlab_project(gitlab_url: &str, project: &str, token: &str) -> Result<String, String> {
    let encoded = percent_encoding::utf8_percent_encode(project, percent_encoding::NON_ALPHANUMERIC);
    let url = format!("{gitlab_url}/api/v4/projects/{encoded}");
    let response = reqwest::Client::new()
        .get(&url)
        .header("PRIVATE-TOKEN", token)
        .timeout(CLIENT_TIMEOUT)
        .send()
        .await
        .map_err(|e| redact(&format!("GitLab API: {e}"), token))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("GET /api/v4/projects/{project} answered {status}"));
    }
    let body: serde_json::Value = response
        .json()
        .await
        .map_err(|e| format!("GitLab API answer: {e}"))?;
    let path = body["path_with_namespace"].as_str().unwrap_or_default();
    if path == project {
        Ok(format!("GitLab API as the bot: project {path}"))
    } else {
        Err(format!("GitLab API answered project {path:?}, not {project}"))
    }
}

/// `kubectl get gitlabtokens.gitlabtokens.io -o wide` in `namespace` (fully qualified, so no other
/// installed kind can shadow the name); returns the table.
pub async fn kubectl_get_tokens(kubeconfig: &Path, namespace: &str) -> Result<String, String> {
    let mut cmd = Command::new("kubectl");
    cmd.args([
        "get",
        "gitlabtokens.gitlabtokens.io",
        "-o",
        "wide",
        "-n",
        namespace,
    ])
    .env("KUBECONFIG", kubeconfig);
    run(cmd, "kubectl get gitlabtokens", "").await
}

/// The `.dockerconfigjson` entry for `host` as (username, password), checking that its `auth`
/// is base64 of `username:password` as Docker and Flux expect.
pub fn docker_config_entry(content: &[u8], host: &str) -> Result<(String, String), String> {
    let config: serde_json::Value =
        serde_json::from_slice(content).map_err(|e| format!(".dockerconfigjson does not parse: {e}"))?;
    let entry = config["auths"]
        .get(host)
        .ok_or_else(|| format!(".dockerconfigjson has no entry for {host}"))?;
    let field = |k: &str| entry[k].as_str().unwrap_or_default().to_string();
    let (user, pass, auth) = (field("username"), field("password"), field("auth"));
    if user.is_empty() || pass.is_empty() {
        return Err(format!(
            ".dockerconfigjson entry for {host} lacks username or password"
        ));
    }
    let want = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    if auth != want {
        return Err(format!(
            ".dockerconfigjson entry for {host}: auth is not base64(username:password)"
        ));
    }
    Ok((user, pass))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_hides_every_occurrence() {
        for (text, secret, want) in [
            ("a glpat-x b glpat-x", "glpat-x", "a [redacted] b [redacted]"),
            ("nothing here", "glpat-x", "nothing here"),
            ("keep", "", "keep"),
        ] {
            assert_eq!(redact(text, secret), want);
        }
    }

    #[test]
    fn docker_config_entries_are_read_and_their_auth_checked() {
        let auth = base64::engine::general_purpose::STANDARD.encode("bot:p");
        let good = format!(
            r#"{{"auths":{{"127.0.0.1:5000":{{"username":"bot","password":"p","auth":"{auth}"}}}}}}"#
        );
        let bad_auth = r#"{"auths":{"127.0.0.1:5000":{"username":"bot","password":"p","auth":"eA=="}}}"#;
        let no_pass = r#"{"auths":{"127.0.0.1:5000":{"username":"bot","auth":"eA=="}}}"#;
        for (content, host, want) in [
            (
                good.as_str(),
                "127.0.0.1:5000",
                Ok(("bot".to_string(), "p".to_string())),
            ),
            (good.as_str(), "other:1", Err("no entry")),
            (bad_auth, "127.0.0.1:5000", Err("auth is not")),
            (no_pass, "127.0.0.1:5000", Err("lacks username or password")),
            ("{", "h", Err("does not parse")),
        ] {
            match (docker_config_entry(content.as_bytes(), host), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want),
                (Err(e), Err(w)) => assert!(e.contains(w), "{e} lacks {w}"),
                (got, want) => panic!("{content}: got {got:?}, want {want:?}"),
            }
        }
    }
}
