//! The real `gitlab-token-operator` binary as a child process: finding it, starting it against a
//! world, waiting for `/readyz`, and stopping it.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use tokio::process::{Child, Command};

use super::{SandboxError, checks::eventually};
use crate::world::World;

/// Name of the operator binary.
pub const OPERATOR_BIN: &str = "gitlab-token-operator";
/// Environment variable naming the operator binary.
pub const OPERATOR_BIN_ENV: &str = "GTO_OPERATOR_BIN";

/// Finds the operator binary: `explicit`, else `$GTO_OPERATOR_BIN`, else next to this executable.
pub fn locate(explicit: Option<PathBuf>) -> Result<PathBuf, SandboxError> {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join(OPERATOR_BIN)));
    choose(
        explicit,
        std::env::var_os(OPERATOR_BIN_ENV).map(PathBuf::from),
        beside,
    )
}

/// The first candidate given (explicit, env, beside), which must be an existing file.
fn choose(
    explicit: Option<PathBuf>,
    env: Option<PathBuf>,
    beside: Option<PathBuf>,
) -> Result<PathBuf, SandboxError> {
    let (path, from) = match (explicit, env, beside) {
        (Some(p), _, _) => (p, "--operator-bin"),
        (None, Some(p), _) => (p, OPERATOR_BIN_ENV),
        (None, None, Some(p)) => (p, "the testbed executable's directory"),
        (None, None, None) => {
            return Err(SandboxError::Operator(format!(
                "cannot find {OPERATOR_BIN}: pass --operator-bin PATH or set {OPERATOR_BIN_ENV}"
            )));
        }
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(SandboxError::Operator(format!(
            "the operator binary {} (from {from}) does not exist; build it first with \
             `cargo build --bins` (or `make demo`), or pass --operator-bin PATH",
            path.display()
        )))
    }
}

/// How to run the operator: its namespace, cluster name, identity and log filter.
#[derive(Debug, Clone)]
pub struct OperatorArgs {
    /// `--namespace`.
    pub namespace: String,
    /// `--cluster-name`.
    pub cluster_name: String,
    /// The kubeconfig it authenticates with.
    pub kubeconfig: PathBuf,
    /// `RUST_LOG`.
    pub rust_log: String,
    /// `--argocd-namespace` (`None`: Argo CD not served).
    pub argocd_namespace: Option<String>,
}

/// A running operator process (killed when dropped).
pub struct OperatorProcess {
    child: Child,
    log_path: PathBuf,
    metrics_addr: String,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

impl OperatorProcess {
    /// Starts `bin run` against `world`, logging JSON to `log_path`.
    pub fn start(bin: &Path, world: &World, namespace: &str, log_path: &Path) -> Result<Self, SandboxError> {
        Self::start_with(
            bin,
            world,
            &OperatorArgs {
                namespace: namespace.to_string(),
                cluster_name: "sandbox".into(),
                kubeconfig: world.kubeconfig_path(),
                rust_log: "info,gitlab_token_operator=debug".into(),
                argocd_namespace: Some(super::argocd::ARGOCD_NS.into()),
            },
            log_path,
        )
    }

    /// Starts `bin run` against `world` as `args` say, logging JSON to `log_path`.
    pub fn start_with(
        bin: &Path,
        world: &World,
        args: &OperatorArgs,
        log_path: &Path,
    ) -> Result<Self, SandboxError> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)
            .map_err(|e| SandboxError::Operator(format!("log file {}: {e}", log_path.display())))?;
        let log_err = log
            .try_clone()
            .map_err(|e| SandboxError::Operator(format!("log file: {e}")))?;
        let metrics_addr = format!("127.0.0.1:{}", free_port());
        let child = Command::new(bin)
            .args([
                "run",
                "--namespace",
                &args.namespace,
                "--cluster-name",
                &args.cluster_name,
            ])
            .args(["--log-format", "json", "--metrics-addr", &metrics_addr])
            .arg("--clock-offset-file")
            .arg(world.clock_offset_path())
            .env("KUBECONFIG", &args.kubeconfig)
            .env("RUST_LOG", &args.rust_log)
            .env(
                "GTO_ARGOCD_NAMESPACE",
                args.argocd_namespace.as_deref().unwrap_or_default(),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| SandboxError::Operator(format!("starting {}: {e}", bin.display())))?;
        Ok(Self {
            child,
            log_path: log_path.to_path_buf(),
            metrics_addr,
        })
    }

    /// Waits until `/readyz` answers 200, or the process exits, or `within` passes.
    pub async fn wait_ready(&mut self, within: Duration) -> Result<(), String> {
        let url = format!("http://{}/readyz", self.metrics_addr);
        let http = reqwest::Client::new();
        let child = &mut self.child;
        let mut exited = None;
        let ready = eventually(within, || {
            let (http, url) = (http.clone(), url.clone());
            if let Ok(Some(status)) = child.try_wait() {
                exited = Some(status);
            }
            let gone = exited.is_some();
            async move {
                if gone {
                    return Some(false);
                }
                let r = http.get(&url).send().await.ok()?;
                (r.status() == 200).then_some(true)
            }
        })
        .await;
        match (ready, exited) {
            (Some(true), _) => Ok(()),
            (_, Some(status)) => Err(format!("the operator exited ({status}) before it was ready")),
            _ => Err(format!("/readyz not 200 within {within:?}")),
        }
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The operator's metrics address.
    pub fn metrics_addr(&self) -> &str {
        &self.metrics_addr
    }

    /// The last `n` lines of the operator's log.
    pub fn log_tail(&self, n: usize) -> Vec<String> {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..]
            .iter()
            .map(|l| l.to_string())
            .collect()
    }

    /// Everything the operator logged.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Path of the log file.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Sends SIGTERM and waits up to `within` for the process to exit; `Some(elapsed)` when it
    /// did, `None` when it had to be killed.
    pub async fn terminate(mut self, within: Duration) -> Option<Duration> {
        let started = std::time::Instant::now();
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
        match tokio::time::timeout(within, self.child.wait()).await {
            Ok(_) => Some(started.elapsed()),
            Err(_) => {
                let _ = self.child.kill().await;
                None
            }
        }
    }

    /// Stops the process (SIGKILL) and reaps it.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_given_candidate_wins_and_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("op");
        std::fs::write(&real, "").unwrap();
        let missing = dir.path().join("missing");
        type Case = (
            Option<PathBuf>,
            Option<PathBuf>,
            Option<PathBuf>,
            Result<PathBuf, &'static str>,
        );
        let cases: Vec<Case> = vec![
            (Some(real.clone()), Some(missing.clone()), None, Ok(real.clone())),
            (None, Some(real.clone()), Some(missing.clone()), Ok(real.clone())),
            (None, None, Some(real.clone()), Ok(real.clone())),
            (
                Some(missing.clone()),
                Some(real.clone()),
                None,
                Err("from --operator-bin"),
            ),
            (None, None, Some(missing.clone()), Err("cargo build --bins")),
            (None, None, None, Err("pass --operator-bin")),
        ];
        for (explicit, env, beside, want) in cases {
            let got = choose(explicit, env, beside);
            match (got, want) {
                (Ok(p), Ok(w)) => assert_eq!(p, w),
                (Err(e), Err(w)) => assert!(e.to_string().contains(w), "{e} lacks {w:?}"),
                (got, want) => panic!("got {got:?}, want {want:?}"),
            }
        }
    }
}
