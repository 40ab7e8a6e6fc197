//! The repo-server's checkout with the real git client (argo-cd v3.5.1
//! `reposerver/repository/repository.go` `checkoutRevision`, `util/git/client.go` `Init`,
//! `IsRevisionPresent`, `fetch`; `util/exec` `CmdError`): one local repository per normalised
//! URL, kept between refreshes; `git fetch origin --tags --force --prune` only when the commit is
//! not present yet; then the source type discovered from the files at the source's path.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use sha2::{Digest, Sha256};
use tokio::process::Command;

use super::repos::{Repository, normalize_git_url};

/// Local clones, one per normalised repository URL, each behind a lock (the repo-server's
/// `repoLock`).
pub struct Checkouts {
    root: tempfile::TempDir,
    askpass: PathBuf,
    locks: Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>,
    timeout: Duration,
}

struct Output {
    ok: bool,
    stdout: String,
    stderr: String,
    code: Option<i32>,
}

/// How git gets HTTPS credentials (`HTTPSCreds.Environ`): a bearer token or
/// `forceHttpBasicAuth` as an `Authorization` header up front, else username and password
/// through an askpass helper, so git first asks anonymously and answers GitLab's challenge.
enum GitAuth<'a> {
    None,
    Header(String),
    AskPass {
        script: &'a Path,
        username: String,
        password: String,
    },
}

async fn git(dir: &Path, args: &[&str], auth: &GitAuth<'_>, timeout: Duration) -> Result<Output, String> {
    let mut cmd = Command::new("git");
    cmd.current_dir(dir)
        .args(["-c", "credential.helper="])
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env_remove("GIT_ASKPASS")
        .env_remove("SSH_ASKPASS")
        .kill_on_drop(true);
    // Credentials travel in the environment, never on the command line.
    match auth {
        GitAuth::None => {}
        GitAuth::Header(h) => {
            cmd.env("GIT_CONFIG_COUNT", "1")
                .env("GIT_CONFIG_KEY_0", "http.extraHeader")
                .env("GIT_CONFIG_VALUE_0", format!("Authorization: {h}"));
        }
        GitAuth::AskPass {
            script,
            username,
            password,
        } => {
            cmd.env("GIT_ASKPASS", script)
                .env("GTO_ASKPASS_USERNAME", username)
                .env("GTO_ASKPASS_PASSWORD", password);
        }
    }
    let out = tokio::time::timeout(timeout, cmd.output())
        .await
        .map_err(|_| format!("`git {}` failed timeout after {timeout:?}", args.join(" ")))?
        .map_err(|e| format!("cannot run git: {e}"))?;
    Ok(Output {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        code: out.status.code(),
    })
}

const ASKPASS: &str = "#!/bin/sh\ncase \"$1\" in\n  Username*) printf '%s\\n' \"$GTO_ASKPASS_USERNAME\" ;;\n  *) printf '%s\\n' \"$GTO_ASKPASS_PASSWORD\" ;;\nesac\n";

/// Argo CD's discovery by files at the source path: `Chart.yaml` is Helm, a kustomization is
/// Kustomize, anything else a plain directory.
pub fn discover_type(files: &[String]) -> &'static str {
    let has = |n: &str| files.iter().any(|f| f == n);
    if has("Chart.yaml") {
        "Helm"
    } else if has("kustomization.yaml") || has("kustomization.yml") || has("Kustomization") {
        "Kustomize"
    } else {
        "Directory"
    }
}

impl Checkouts {
    /// A new set of clones under a temporary directory (removed on drop).
    pub fn new(timeout: Duration) -> std::io::Result<Self> {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::Builder::new().prefix("argocd-repo-server").tempdir()?;
        let askpass = root.path().join("askpass.sh");
        std::fs::write(&askpass, ASKPASS)?;
        std::fs::set_permissions(&askpass, std::fs::Permissions::from_mode(0o700))?;
        Ok(Self {
            askpass,
            root,
            locks: Mutex::new(HashMap::new()),
            timeout,
        })
    }

    fn auth(&self, repo: &Repository) -> GitAuth<'_> {
        match repo.git_authorization() {
            None => GitAuth::None,
            Some(h) if !repo.bearer_token.is_empty() || repo.force_http_basic_auth => GitAuth::Header(h),
            Some(_) => GitAuth::AskPass {
                script: &self.askpass,
                username: if repo.username.is_empty() {
                    "x-access-token".into()
                } else {
                    repo.username.clone()
                },
                password: repo.password.clone(),
            },
        }
    }

    fn dir_for(&self, url: &str) -> PathBuf {
        let key = normalize_git_url(url).unwrap_or_else(|| url.to_string());
        let digest = Sha256::digest(key.as_bytes());
        let name: String = digest.iter().take(12).map(|b| format!("{b:02x}")).collect();
        self.root.path().join(name)
    }

    /// Makes `sha` present locally (fetching with `repo`'s credentials when missing) and returns
    /// the source type of `path` at that commit. Errors carry the repo-server's gRPC wording.
    pub async fn checkout(&self, repo: &Repository, sha: &str, path: &str) -> Result<String, String> {
        let dir = self.dir_for(&repo.repo);
        let auth = self.auth(repo);
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            locks.entry(dir.clone()).or_default().clone()
        };
        let _held = lock.lock().await;
        let internal = |m: String| format!("rpc error: code = Internal desc = {m}");
        if !dir.join(".git").is_dir() {
            std::fs::create_dir_all(&dir)
                .map_err(|e| internal(format!("Failed to initialize git repo: {e}")))?;
            for args in [vec!["init"], vec!["remote", "add", "origin", repo.repo.as_str()]] {
                let out = git(&dir, &args, &GitAuth::None, self.timeout)
                    .await
                    .map_err(&internal)?;
                if !out.ok {
                    return Err(internal(format!("Failed to initialize git repo: {}", out.stderr)));
                }
            }
        }
        // The repository's URL may have changed (another Secret): origin follows it.
        git(
            &dir,
            &["remote", "set-url", "origin", &repo.repo],
            &GitAuth::None,
            self.timeout,
        )
        .await
        .map_err(&internal)?;
        let present = git(&dir, &["cat-file", "-t", sha], &GitAuth::None, self.timeout)
            .await
            .is_ok_and(|o| o.ok && o.stdout.trim() == "commit");
        if !present {
            let args = ["fetch", "origin", "--tags", "--force", "--prune"];
            let out = git(&dir, &args, &auth, self.timeout).await.map_err(&internal)?;
            if !out.ok {
                let mut m = format!(
                    "Failed to fetch default: `git {}` failed exit status {}",
                    args.join(" "),
                    out.code.unwrap_or(-1)
                );
                if !out.stderr.is_empty() {
                    m = format!("{m}: {}", out.stderr);
                }
                return Err(internal(m));
            }
        }
        let path = path.trim_matches('/');
        let spec = if path.is_empty() || path == "." {
            sha.to_string()
        } else {
            format!("{sha}:{path}")
        };
        let out = git(
            &dir,
            &["ls-tree", "--name-only", &spec],
            &GitAuth::None,
            self.timeout,
        )
        .await
        .map_err(&internal)?;
        if !out.ok {
            return Err(format!(
                "rpc error: code = Unknown desc = {path}: app path does not exist"
            ));
        }
        let files: Vec<String> = out.stdout.lines().map(str::to_string).collect();
        Ok(discover_type(&files).to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_prefers_helm_then_kustomize() {
        let f = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(discover_type(&f(&["Chart.yaml", "kustomization.yaml"])), "Helm");
        assert_eq!(discover_type(&f(&["kustomization.yml"])), "Kustomize");
        assert_eq!(discover_type(&f(&["README.md", "deploy.yaml"])), "Directory");
    }
}
