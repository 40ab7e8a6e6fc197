//! Git over SSH: Debian's `sshd` on a loopback port with its own ed25519 host key, configured as
//! GitLab's fast key lookup (`gitlab-access-and-ssh.md` §2): one login user (`git`), no
//! authorized_keys files, an `AuthorizedKeysCommand` that asks the emulator
//! (`GET /-/testbed/ssh/authorized_keys?user=%u&key=%k`) for the key's `command="…key-<id>"`
//! line, and a forced command that relays to [`super::ssh_shell`].
//!
//! Needs root (sshd switches to the `git` user), `/usr/sbin/sshd` and a `git` account with a
//! usable shell; `hack/install-deps.sh` provides both. Only `ssh://git@127.0.0.1:PORT/…` URLs
//! reach it: the scp-like form `git@127.0.0.1:group/project.git` implies port 22.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

use super::FrontsError;
use super::ssh_shell::{self, ShellContext};
use crate::gitlab::access_ssh::SshOracle;

/// The login user of Git over SSH (GitLab's `gitlab_shell.ssh_user`).
pub const SSH_USER: &str = "git";
/// Where Debian's openssh-server installs the daemon (sshd re-executes itself by absolute path).
pub const SSHD: &str = "/usr/sbin/sshd";
const READY_DEADLINE: Duration = Duration::from_secs(10);

/// Why the SSH front cannot run on this machine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SshUnavailable {
    /// openssh-server is not installed.
    #[error("{SSHD} not found: install openssh-server (make deps)")]
    NoSshd,
    /// sshd must start as root to switch to the `git` user.
    #[error("the SSH front needs root (sshd switches to the '{SSH_USER}' user)")]
    NotRoot,
    /// The login account is missing.
    #[error("no '{SSH_USER}' user: create it (make deps)")]
    NoUser,
    /// `curl` (the AuthorizedKeysCommand) is missing.
    #[error("/usr/bin/curl not found: install curl (make deps)")]
    NoCurl,
}

/// Whether the SSH front can start here (openssh-server, root, the `git` user, curl).
pub fn availability() -> Result<(), SshUnavailable> {
    if !Path::new(SSHD).is_file() {
        return Err(SshUnavailable::NoSshd);
    }
    if !Path::new("/usr/bin/curl").is_file() {
        return Err(SshUnavailable::NoCurl);
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    if !passwd.lines().any(|l| l.split(':').next() == Some(SSH_USER)) {
        return Err(SshUnavailable::NoUser);
    }
    let uid = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("Uid:")
                .map(|r| r.split_whitespace().next().unwrap_or("").to_string())
        });
    if uid.as_deref() != Some("0") {
        return Err(SshUnavailable::NotRoot);
    }
    Ok(())
}

/// Where the SSH front finds the emulator and the repositories.
#[derive(Debug, Clone)]
pub struct SshConfig {
    /// Base URL of the emulator (the AuthorizedKeysCommand asks it).
    pub gitlab_url: String,
    /// Bare repositories (`<full_path>.git`), shared with git smart HTTP.
    pub repos_dir: PathBuf,
}

/// A running sshd with its host key; killed on drop.
pub struct SshFront {
    dir: tempfile::TempDir,
    child: Child,
    port: u16,
    host_key: String,
    relay: JoinHandle<()>,
    ctx: Arc<ShellContext>,
}

impl std::fmt::Debug for SshFront {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshFront").field("port", &self.port).finish()
    }
}

fn tool_error(tool: &'static str) -> impl Fn(std::io::Error) -> FrontsError {
    move |e| FrontsError::Tool {
        tool,
        detail: e.to_string(),
    }
}

/// sshd's configuration: loopback port, own host key, key lookup through the emulator only.
fn sshd_config(dir: &Path, port: u16, gitlab_url: &str) -> String {
    let d = dir.display();
    let url = gitlab_url.trim_end_matches('/');
    format!(
        "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/ssh_host_ed25519_key\nPidFile {d}/sshd.pid\n\
         UsePAM no\nStrictModes no\nPubkeyAuthentication yes\nPasswordAuthentication no\n\
         KbdInteractiveAuthentication no\nAuthorizedKeysFile none\n\
         AuthorizedKeysCommand /usr/bin/curl -sS --max-time 5 {url}/-/testbed/ssh/authorized_keys?user=%u&key=%k\n\
         AuthorizedKeysCommandUser {SSH_USER}\nAllowUsers {SSH_USER}\nAcceptEnv GIT_PROTOCOL\n\
         DisableForwarding yes\nPermitTTY no\nPrintMotd no\nPrintLastLog no\nLogLevel VERBOSE\n"
    )
}

/// The forced command (run by the `git` user's shell): hands the session to the relay.
fn shell_script(relay_port: u16) -> String {
    format!(
        "#!/bin/bash\n\
         # gitlab-shell stand-in: asks the emulator's relay, then streams git both ways.\n\
         relay=/dev/tcp/127.0.0.1/{relay_port}\n\
         exec 3<>\"$relay\" || {{ echo 'GitLab: Failed to connect to internal API' >&2; exit 1; }}\n\
         printf '%s\\n%s\\n%s\\n' \"$1\" \"${{SSH_ORIGINAL_COMMAND//$'\\n'/ }}\" \"$GIT_PROTOCOL\" >&3\n\
         IFS=' ' read -r verdict ticket <&3\n\
         case \"$verdict\" in\n\
         \x20 ok)\n\
         \x20   exec 4<>\"$relay\" || exit 1\n\
         \x20   printf 'up %s\\n' \"$ticket\" >&4\n\
         \x20   exec 5<&0\n\
         \x20   cat <&5 >&4 & copier=$!\n\
         \x20   exec 4>&- 5<&-\n\
         \x20   cat <&3\n\
         \x20   kill \"$copier\" 2>/dev/null\n\
         \x20   exit 0 ;;\n\
         \x20 welcome) cat <&3; exit 0 ;;\n\
         \x20 *) cat <&3 >&2; exit 1 ;;\n\
         esac\n"
    )
}

impl SshFront {
    /// Generates the host key, writes the config and the forced command, starts the relay and
    /// `sshd -D`, and waits until sshd greets on its port.
    pub async fn start(cfg: SshConfig, oracle: Arc<dyn SshOracle>) -> Result<SshFront, FrontsError> {
        availability().map_err(|e| FrontsError::Tool {
            tool: "sshd",
            detail: e.to_string(),
        })?;
        let git_bin = super::which("git").ok_or(FrontsError::Tool {
            tool: "git",
            detail: "not found on PATH".into(),
        })?;
        let git_dir = git_bin.parent().map(Path::to_path_buf).unwrap_or_default();
        // The forced command runs as `git`: the directory must be readable by it.
        let dir = tempfile::Builder::new().prefix("testbed-ssh-").tempdir()?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        let key_path = dir.path().join("ssh_host_ed25519_key");
        let out = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "testbed-gitlab", "-f"])
            .arg(&key_path)
            .output()
            .await
            .map_err(tool_error("ssh-keygen"))?;
        if !out.status.success() {
            return Err(FrontsError::Tool {
                tool: "ssh-keygen",
                detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        let host_key = std::fs::read_to_string(key_path.with_extension("pub"))?
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        let relay_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let relay_port = relay_listener.local_addr()?.port();
        let script = dir.path().join("gitlab-shell");
        std::fs::write(&script, shell_script(relay_port))?;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))?;
        let ctx = Arc::new(ShellContext {
            oracle,
            repos_dir: cfg.repos_dir.clone(),
            git_bin,
            git_path_env: format!("{}:/usr/bin:/bin", git_dir.display()),
            pending: Default::default(),
        });
        let relay = tokio::spawn(ssh_shell::serve(relay_listener, ctx.clone()));
        std::fs::create_dir_all("/run/sshd")?;
        let log = dir.path().join("sshd.log");
        let mut last = None;
        for _ in 0..3 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            let config = dir.path().join("sshd_config");
            std::fs::write(&config, sshd_config(dir.path(), port, &cfg.gitlab_url))?;
            let mut child = Command::new(SSHD)
                .arg("-D")
                .arg("-e")
                .arg("-f")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log)?)
                .kill_on_drop(true)
                .spawn()
                .map_err(tool_error("sshd"))?;
            match wait_ready(&mut child, port, &log).await {
                Ok(()) => {
                    return Ok(SshFront {
                        dir,
                        child,
                        port,
                        host_key,
                        relay,
                        ctx,
                    });
                }
                Err(e) => {
                    last = Some(e);
                    let _ = child.kill().await;
                }
            }
        }
        relay.abort();
        Err(last.unwrap_or(FrontsError::Tool {
            tool: "sshd",
            detail: "did not start".into(),
        }))
    }

    /// The AuthorizedKeysCommand endpoint, to merge into the emulator's router.
    pub fn router(&self) -> Router {
        let script = self.dir.path().join("gitlab-shell");
        let state = Arc::new((self.ctx.oracle.clone(), script));
        Router::new()
            .route("/-/testbed/ssh/authorized_keys", get(authorized_keys))
            .with_state(state)
    }

    /// `127.0.0.1`.
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// sshd's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The host public key (`ssh-ed25519 AAAA…`).
    pub fn host_public_key(&self) -> &str {
        &self.host_key
    }

    /// The `known_hosts` line for this server (`[127.0.0.1]:PORT ssh-ed25519 AAAA…`).
    pub fn known_hosts(&self) -> String {
        format!("[127.0.0.1]:{} {}\n", self.port, self.host_key)
    }

    /// `ssh://git@127.0.0.1:PORT/<full_path>.git` (GitLab's `ssh_url_to_repo` off port 22).
    pub fn clone_url(&self, full_path: &str) -> String {
        format!("ssh://{SSH_USER}@127.0.0.1:{}/{full_path}.git", self.port)
    }

    /// sshd's log (verbose: accepted and refused keys).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// Stops sshd and the relay.
    pub async fn stop(mut self) {
        self.relay.abort();
        let _ = self.child.kill().await;
    }
}

impl Drop for SshFront {
    fn drop(&mut self) {
        self.relay.abort();
    }
}

/// Waits until sshd greets (`SSH-2.0-`) on its port, or fails when it exits or the deadline passes.
async fn wait_ready(child: &mut Child, port: u16, log: &Path) -> Result<(), FrontsError> {
    let deadline = tokio::time::Instant::now() + READY_DEADLINE;
    loop {
        if let Some(status) = child.try_wait()? {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            return Err(FrontsError::Tool {
                tool: "sshd",
                detail: format!("exited ({status}) before it was ready: {}", text.trim()),
            });
        }
        if let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            let mut greeting = [0u8; 8];
            let read = tokio::time::timeout(Duration::from_secs(2), stream.read_exact(&mut greeting)).await;
            if matches!(read, Ok(Ok(_))) && greeting.starts_with(b"SSH-2.0-") {
                return Ok(());
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(FrontsError::Tool {
                tool: "sshd",
                detail: format!("no SSH greeting on port {port} in time; see {}", log.display()),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

type AkcState = Arc<(Arc<dyn SshOracle>, PathBuf)>;

/// `GET /-/testbed/ssh/authorized_keys?user=git&key=<base64 blob>`: one restricted
/// authorized_keys line for a known key of the `git` user, else a comment (deny). The raw query
/// is read without form decoding: sshd's `%k` is plain base64, whose `+` must stay a plus.
async fn authorized_keys(State(state): State<AkcState>, RawQuery(query): RawQuery) -> impl IntoResponse {
    let query = query.unwrap_or_default();
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|pair| pair.strip_prefix(name).and_then(|rest| rest.strip_prefix('=')))
            .unwrap_or_default()
            .to_string()
    };
    let (user, blob) = (param("user"), param("key"));
    let (oracle, script) = state.as_ref();
    if user != SSH_USER {
        return String::new();
    }
    match oracle.ssh_key_by_blob(&blob) {
        Some(key) => format!(
            "command=\"/bin/bash {} key-{}\",no-port-forwarding,no-X11-forwarding,no-agent-forwarding,no-pty {}\n",
            script.display(),
            key.key_id,
            key.key_line
        ),
        None => format!("# No key was found for {blob}\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_locks_sshd_to_the_emulator() {
        let text = sshd_config(Path::new("/tmp/x"), 2222, "http://127.0.0.1:9/");
        for line in [
            "ListenAddress 127.0.0.1",
            "AuthorizedKeysFile none",
            "AllowUsers git",
            "PasswordAuthentication no",
            "AuthorizedKeysCommand /usr/bin/curl -sS --max-time 5 http://127.0.0.1:9/-/testbed/ssh/authorized_keys?user=%u&key=%k",
        ] {
            assert!(text.lines().any(|l| l == line), "{line}\n{text}");
        }
    }

    #[test]
    fn shell_script_is_valid_bash() {
        let out = std::process::Command::new("bash")
            .args(["-n", "-c", &shell_script(1234)])
            .output();
        assert!(out.is_ok_and(|o| o.status.success()));
    }
}
