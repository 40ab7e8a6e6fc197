//! The gitlab-shell part of the SSH front. sshd runs the forced command (a bash script) for the
//! key `key-<id>`; the script hands the key id, `SSH_ORIGINAL_COMMAND` and `GIT_PROTOCOL` to this
//! relay over loopback, which decides as GitLab's `/internal/allowed` does and then runs
//! `git shell -c "git-upload-pack '<repo>'"` (or receive-pack) itself, so the repositories stay
//! owned by the emulator's user. The relay answers one line first: `ok <ticket>` (then git's
//! output follows), `welcome` (then text for stdout) or `deny` (then gitlab-shell's banner for
//! stderr and exit status 1). After `ok` the script opens a second connection (`up <ticket>`) for
//! the client's input, so that the end of that input reaches git as end-of-file (bash cannot
//! half-close a socket; protocol v2 servers wait for that end).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::process::Command;
use tokio::sync::oneshot;

use super::git_http::msg;
use crate::gitlab::access_ssh::{SshKeyOwner, SshOracle};

const REPORTER: u32 = 20;
const DEVELOPER: u32 = 30;
/// gitlab-shell: a command other than the git ones (or with the wrong argument count).
pub(crate) const DISALLOWED: &str = "Disallowed command";
/// A deploy key without `can_push` (or not enabled on the project) pushing.
pub(crate) const DEPLOY_KEY_UPLOAD: &str = "This deploy key does not have write access to this project.";
/// The key's `expires_at` has passed.
pub(crate) const KEY_EXPIRED: &str = "Your SSH key has expired.";

/// Git services reachable over SSH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SshService {
    /// `git-upload-pack` (clone, fetch).
    UploadPack,
    /// `git-upload-archive` (`git archive --remote`).
    UploadArchive,
    /// `git-receive-pack` (push).
    ReceivePack,
}

impl SshService {
    fn command(self) -> &'static str {
        match self {
            Self::UploadPack => "git-upload-pack",
            Self::UploadArchive => "git-upload-archive",
            Self::ReceivePack => "git-receive-pack",
        }
    }
}

/// What `SSH_ORIGINAL_COMMAND` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SshCommand {
    /// Empty command (`ssh -T git@host`): the welcome line.
    Discover,
    /// A git service on a project path (leading `/` and trailing `.git` removed).
    Git {
        /// Service.
        service: SshService,
        /// Project full path.
        path: String,
    },
}

/// Splits a command shell-style (single quotes, double quotes, backslashes), as gitlab-shell does.
fn shell_split(command: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = command.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '\'' => break,
                        other => word.push(other),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => word.push(chars.next()?),
                        other => word.push(other),
                    }
                }
            }
            '\\' => {
                in_word = true;
                word.push(chars.next()?);
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            other => {
                in_word = true;
                word.push(other);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Some(words)
}

/// Parses `SSH_ORIGINAL_COMMAND` (`git upload-pack` is folded into `git-upload-pack`).
pub(crate) fn parse_command(command: &str) -> Result<SshCommand, &'static str> {
    let mut words = shell_split(command).ok_or(DISALLOWED)?;
    if words.is_empty() {
        return Ok(SshCommand::Discover);
    }
    if words[0] == "git" && words.len() > 1 {
        let sub = words.remove(1);
        words[0] = format!("git-{sub}");
    }
    let service = match words[0].as_str() {
        "git-upload-pack" => SshService::UploadPack,
        "git-upload-archive" => SshService::UploadArchive,
        "git-receive-pack" => SshService::ReceivePack,
        _ => return Err(DISALLOWED),
    };
    if words.len() != 2 {
        return Err(DISALLOWED);
    }
    let path = words[1].trim_start_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    if path.is_empty() || path.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
        return Err(msg::PROJECT_NOT_FOUND);
    }
    Ok(SshCommand::Git {
        service,
        path: path.to_string(),
    })
}

/// The outcome for one SSH session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Run the service on the repository of this project path (canonical).
    Run(SshService, String),
    /// Print this line and exit 0.
    Welcome(String),
    /// Refuse with gitlab-shell's banner around this message.
    Deny(&'static str),
}

/// GitLab's checks for `/internal/allowed`, in `GitAccess` order: key valid and not expired,
/// command known, project visible to the key, repository present, then download/push rights.
pub(crate) fn decide(
    oracle: &dyn SshOracle,
    key_id: u64,
    command: &str,
    repo_exists: &dyn Fn(&str) -> bool,
) -> Verdict {
    let Some(key) = oracle.ssh_key(key_id) else {
        return Verdict::Deny(msg::PROJECT_NOT_FOUND);
    };
    if key.expired {
        return Verdict::Deny(KEY_EXPIRED);
    }
    let (service, path) = match parse_command(command) {
        Ok(SshCommand::Discover) => {
            let name = match &key.owner {
                SshKeyOwner::Deploy => "Anonymous".to_string(),
                SshKeyOwner::User(p) => format!("@{}", p.username),
            };
            return Verdict::Welcome(format!("Welcome to GitLab, {name}!"));
        }
        Ok(SshCommand::Git { service, path }) => (service, path),
        Err(m) => return Verdict::Deny(m),
    };
    let write = service == SshService::ReceivePack;
    match key.owner {
        SshKeyOwner::Deploy => {
            let Some(access) = oracle.deploy_key_access(key_id, &path) else {
                return Verdict::Deny(msg::PROJECT_NOT_FOUND);
            };
            let project = access.project;
            if !repo_exists(&project.path_with_namespace) {
                return Verdict::Deny(msg::NO_REPO);
            }
            if write && project.archived {
                return Verdict::Deny(msg::ARCHIVED);
            }
            if write && access.can_push != Some(true) {
                return Verdict::Deny(DEPLOY_KEY_UPLOAD);
            }
            Verdict::Run(service, project.path_with_namespace)
        }
        SshKeyOwner::User(principal) => {
            let Some(project) = oracle.project_access(Some(&principal), &path) else {
                return Verdict::Deny(msg::PROJECT_NOT_FOUND);
            };
            if !repo_exists(&project.path_with_namespace) {
                return Verdict::Deny(msg::NO_REPO);
            }
            let readable = project.public || project.access_level >= REPORTER;
            if !write {
                return if readable {
                    Verdict::Run(service, project.path_with_namespace)
                } else {
                    Verdict::Deny(msg::DOWNLOAD)
                };
            }
            if project.archived {
                Verdict::Deny(msg::ARCHIVED)
            } else if project.access_level < DEVELOPER {
                Verdict::Deny(msg::PUSH_CODE)
            } else {
                Verdict::Run(service, project.path_with_namespace)
            }
        }
    }
}

/// gitlab-shell's console box around a message (what the user sees on stderr).
pub(crate) fn banner(message: &str) -> String {
    let rule = "=".repeat(72);
    let lines = ["", &rule, "", message, "", &rule, ""];
    lines
        .iter()
        .map(|l| format!("remote: {l}\n").replace(": \n", ":\n"))
        .collect()
}

/// What the relay needs to run git.
pub(crate) struct ShellContext {
    /// The emulator's key and access answers.
    pub oracle: Arc<dyn SshOracle>,
    /// Bare repositories `<full_path>.git`.
    pub repos_dir: PathBuf,
    /// The `git` binary.
    pub git_bin: PathBuf,
    /// `PATH` for git's helpers.
    pub git_path_env: String,
    /// Sessions waiting for their input connection, by ticket.
    pub pending: Mutex<HashMap<String, oneshot::Sender<BufReader<OwnedReadHalf>>>>,
}

/// How long an allowed session waits for the script's input connection.
const UPSTREAM_DEADLINE: Duration = Duration::from_secs(10);

/// Accepts relay connections until the listener is dropped with its task.
pub(crate) async fn serve(listener: TcpListener, ctx: Arc<ShellContext>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            if let Err(e) = session(stream, &ctx).await {
                tracing::debug!(error = %e, "ssh relay session ended with an error");
            }
        });
    }
}

/// Largest header accepted (key id, command, protocol).
const MAX_HEADER_LINE: u64 = 8 * 1024;

async fn read_line(reader: &mut BufReader<OwnedReadHalf>) -> std::io::Result<String> {
    let mut line = String::new();
    (&mut *reader).take(MAX_HEADER_LINE).read_line(&mut line).await?;
    Ok(line.trim_end_matches('\n').to_string())
}

async fn session(stream: TcpStream, ctx: &ShellContext) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let key = read_line(&mut reader).await?;
    if let Some(ticket) = key.strip_prefix("up ") {
        let waiting = ctx.pending.lock().ok().and_then(|mut p| p.remove(ticket));
        if let Some(tx) = waiting {
            let _ = tx.send(reader);
        }
        return Ok(());
    }
    let command = read_line(&mut reader).await?;
    let protocol = read_line(&mut reader).await?;
    let key_id = key.strip_prefix("key-").and_then(|k| k.parse::<u64>().ok());
    let repo_exists = |path: &str| ctx.repos_dir.join(format!("{path}.git")).is_dir();
    let verdict = match key_id {
        Some(id) => decide(ctx.oracle.as_ref(), id, &command, &repo_exists),
        None => Verdict::Deny(DISALLOWED),
    };
    let (service, path) = match verdict {
        Verdict::Run(service, path) => (service, path),
        Verdict::Welcome(text) => {
            write.write_all(format!("welcome\n{text}\n").as_bytes()).await?;
            return write.shutdown().await;
        }
        Verdict::Deny(message) => {
            write
                .write_all(format!("deny\n{}", banner(message)).as_bytes())
                .await?;
            return write.shutdown().await;
        }
    };
    let repo = ctx.repos_dir.join(format!("{path}.git"));
    let shell_command = format!("{} '{}'", service.command(), repo.display());
    let mut child = Command::new(&ctx.git_bin)
        .args(["shell", "-c", &shell_command])
        .env_clear()
        .env("PATH", &ctx.git_path_env)
        .env("HOME", &ctx.repos_dir)
        .env("GIT_PROTOCOL", protocol)
        .env("GIT_CONFIG_COUNT", "1")
        .env("GIT_CONFIG_KEY_0", "safe.directory")
        .env("GIT_CONFIG_VALUE_0", "*")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let (Some(mut stdin), Some(mut stdout), Some(mut stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(std::io::Error::other("git shell without pipes"));
    };
    let ticket = uuid::Uuid::new_v4().to_string();
    let (tx, rx) = oneshot::channel();
    if let Ok(mut pending) = ctx.pending.lock() {
        pending.insert(ticket.clone(), tx);
    }
    write.write_all(format!("ok {ticket}\n").as_bytes()).await?;
    let upstream = tokio::spawn(async move {
        // The client's input ends when the script's input connection closes: git sees EOF.
        if let Ok(Ok(mut input)) = tokio::time::timeout(UPSTREAM_DEADLINE, rx).await {
            let _ = tokio::io::copy(&mut input, &mut stdin).await;
        }
    });
    drop(reader);
    let errors = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });
    tokio::io::copy(&mut stdout, &mut write).await?;
    let status = child.wait().await?;
    upstream.abort();
    if let Ok(mut pending) = ctx.pending.lock() {
        pending.remove(&ticket);
    }
    let stderr_text = errors.await.unwrap_or_default();
    if !status.success() {
        tracing::debug!(%status, stderr = %stderr_text.trim(), repo = %path, "git shell failed");
    }
    write.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commands_by_table() {
        let git = |service, path: &str| {
            Ok(SshCommand::Git {
                service,
                path: path.into(),
            })
        };
        let cases = [
            (
                "git-upload-pack '/acme/app.git'",
                git(SshService::UploadPack, "acme/app"),
            ),
            (
                "git-upload-pack 'acme/app.git'",
                git(SshService::UploadPack, "acme/app"),
            ),
            (
                "git upload-pack '/acme/sub/app'",
                git(SshService::UploadPack, "acme/sub/app"),
            ),
            (
                "git-receive-pack \"/acme/app.git\"",
                git(SshService::ReceivePack, "acme/app"),
            ),
            (
                "git-upload-archive '/acme/app.git'",
                git(SshService::UploadArchive, "acme/app"),
            ),
            ("", Ok(SshCommand::Discover)),
            ("ls -la", Err(DISALLOWED)),
            ("git-upload-pack", Err(DISALLOWED)),
            ("git-upload-pack a b", Err(DISALLOWED)),
            ("git-upload-pack 'unterminated", Err(DISALLOWED)),
            ("git-upload-pack '/../etc.git'", Err(msg::PROJECT_NOT_FOUND)),
        ];
        for (command, want) in cases {
            assert_eq!(parse_command(command), want, "{command}");
        }
    }

    #[test]
    fn banner_is_gitlab_shells_box() {
        let text = banner("Your SSH key has expired.");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 7);
        assert_eq!(lines[0], "remote:");
        assert_eq!(lines[1], format!("remote: {}", "=".repeat(72)));
        assert_eq!(lines[3], "remote: Your SSH key has expired.");
    }
}
