//! Shared fixture of the repository files tests: the emulator with the real fronts (git smart
//! HTTP) and `acme/team-a/app` seeded, a git runner, and python-gitlab from `.tools/venv`.

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use reqwest::Method;
use serde_json::Value;
use sha2::{Digest, Sha256};
use testbed::gitlab::{
    DefaultSeed, GitLabConfig, GitLabHandle, GitLabServer,
    fronts::{Fronts, FrontsConfig},
    seed_default,
};

use super::gitlab_support::{Resp, http};

/// `acme/team-a/app`, URL-encoded.
pub const APP: &str = "acme%2Fteam-a%2Fapp";

/// The emulator with the real fronts (git smart HTTP) and `acme/team-a/app` seeded.
pub struct FilesWorld {
    pub gl: GitLabHandle,
    pub seed: DefaultSeed,
    _fronts: Arc<Fronts>,
    pub dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl FilesWorld {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let bound = GitLabServer::bind(GitLabConfig::default()).await.expect("bind");
        let config = FrontsConfig {
            data_dir: dir.path().join("gitlab"),
            gitlab_url: bound.url(),
        };
        let fronts = Fronts::start(config, bound.oracle())
            .await
            .unwrap_or_else(|e| panic!("fronts did not start (git/docker-registry/openssl installed?): {e}"));
        bound.state().attach_repositories(fronts.repositories());
        let gl = bound.serve(Some(fronts.router()));
        let seed = seed_default(&gl.seed()).expect("seed");
        fronts
            .seed_repository("acme/team-a/app")
            .await
            .expect("seed repository");
        Self {
            gl,
            seed,
            _fronts: Arc::new(fronts),
            dir,
            http: http(),
        }
    }

    pub async fn send(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> Resp {
        let mut req = self.http.request(method, format!("{}{path}", self.gl.url()));
        if let Some(t) = token {
            req = req.header("PRIVATE-TOKEN", t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            text,
            body,
        }
    }

    pub async fn get(&self, path: &str, token: &str) -> Resp {
        self.send(Method::GET, path, Some(token), None).await
    }

    pub fn op(&self) -> &str {
        &self.seed.operator_token
    }

    /// `git clone` of a project with a token; (success, stderr, clone dir).
    pub async fn clone(&self, project: &str, token: &str, name: &str) -> (bool, String, std::path::PathBuf) {
        let target = self.dir.path().join("clones").join(name);
        let host = self.gl.url().trim_start_matches("http://").to_string();
        let url = format!("http://oauth2:{token}@{host}/{project}.git");
        let out = git(
            &["clone", "-q", &url, &target.to_string_lossy()],
            None,
            self.dir.path(),
        )
        .await;
        (out.0, out.2, target)
    }
}

/// Runs git with a clean configuration; (success, stdout, stderr).
pub async fn git(args: &[&str], cwd: Option<&Path>, home: &Path) -> (bool, String, String) {
    let mut cmd = tokio::process::Command::new("git");
    if let Some(d) = cwd {
        cmd.current_dir(d);
    }
    let out = cmd
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", home)
        .kill_on_drop(true)
        .output()
        .await
        .expect("run git");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

pub fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Installs python-gitlab into `.tools/venv` (when missing) and returns the venv's python.
pub async fn python() -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../hack/python-gitlab.sh");
    let out = tokio::process::Command::new("bash")
        .arg(script)
        .output()
        .await
        .expect("run hack/python-gitlab.sh");
    assert!(
        out.status.success(),
        "hack/python-gitlab.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
