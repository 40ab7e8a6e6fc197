//! GitRepository over `ssh://` as source-controller does it (flux-secrets.md §2): the Secret's
//! `identity` (private key, PEM or OpenSSH) and `known_hosts` are both required (`identity.pub` is
//! not read), the SSH user is the URL's (default `git`), and the host key is checked strictly
//! against `known_hosts` (OpenSSH rules: `[host]:port` off port 22). The stand-in runs real
//! `git ls-remote` through OpenSSH with those two files; a `password` (key passphrase) is not
//! supported.

use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use tokio::process::Command;

use super::fetch::{FetchError, parse_ls_remote};

/// The two keys read from an SSH Secret. No `Debug`: `identity` is a private key.
pub struct SshAuth {
    identity: Vec<u8>,
    known_hosts: Vec<u8>,
}

fn key(secret: &Secret, name: &str) -> Option<Vec<u8>> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(name))
        .map(|v| v.0.clone())
        .or_else(|| {
            secret
                .string_data
                .as_ref()
                .and_then(|d| d.get(name))
                .map(|v| v.as_bytes().to_vec())
        })
        .filter(|v| !v.is_empty())
}

/// fluxcd/pkg `git.AuthOptions.Validate` for the `ssh` transport.
pub fn ssh_auth(secret: Option<&Secret>) -> Result<SshAuth, String> {
    let identity = secret.and_then(|s| key(s, "identity"));
    let known_hosts = secret.and_then(|s| key(s, "known_hosts"));
    match (identity, known_hosts) {
        (None, _) => Err("invalid 'ssh' auth option: 'identity' is required".into()),
        (_, None) => Err("invalid 'ssh' auth option: 'known_hosts' is required".into()),
        (Some(identity), Some(known_hosts)) => Ok(SshAuth {
            identity,
            known_hosts,
        }),
    }
}

/// `ssh://[user@]host[:port]/path` with the user defaulted to `git`, or an error for other forms.
pub fn normalise_url(url: &str) -> Result<String, String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("invalid URL '{url}': {e}"))?;
    if parsed.scheme() != "ssh" || parsed.host_str().is_none() {
        return Err(format!("invalid SSH URL '{url}'"));
    }
    let mut parsed = parsed;
    if parsed.username().is_empty() && parsed.set_username("git").is_err() {
        return Err(format!("invalid SSH URL '{url}'"));
    }
    Ok(parsed.to_string())
}

/// Lists `HEAD` of an `ssh://` repository with the Secret's identity and known_hosts.
pub async fn ls_remote(url: &str, auth: &SshAuth, timeout: Duration) -> Result<String, FetchError> {
    let url = normalise_url(url).map_err(FetchError::Other)?;
    let dir = tempfile::tempdir().map_err(|e| FetchError::Other(e.to_string()))?;
    let identity = dir.path().join("identity");
    let known_hosts = dir.path().join("known_hosts");
    let write = |path: &std::path::Path, data: &[u8]| -> std::io::Result<()> {
        std::fs::write(path, data)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
    };
    // OpenSSH wants a final newline after the key block.
    let mut id = auth.identity.clone();
    if !id.ends_with(b"\n") {
        id.push(b'\n');
    }
    write(&identity, &id).map_err(|e| FetchError::Other(e.to_string()))?;
    write(&known_hosts, &auth.known_hosts).map_err(|e| FetchError::Other(e.to_string()))?;
    let ssh = format!(
        "ssh -i {} -o IdentitiesOnly=yes -o UserKnownHostsFile={} -o GlobalKnownHostsFile=/dev/null \
         -o StrictHostKeyChecking=yes -o BatchMode=yes -o ConnectTimeout=10",
        identity.display(),
        known_hosts.display()
    );
    let mut cmd = Command::new("git");
    cmd.args(["-c", "credential.helper=", "ls-remote", "--symref", &url, "HEAD"])
        .env("GIT_SSH_COMMAND", ssh)
        .env("GIT_TERMINAL_PROMPT", "0")
        .kill_on_drop(true);
    let out = tokio::time::timeout(timeout, cmd.output())
        .await
        .map_err(|_| FetchError::Other(format!("timeout after {timeout:?} listing refs of '{url}'")))?
        .map_err(|e| FetchError::Other(format!("cannot run git: {e}")))?;
    if !out.status.success() {
        return Err(classify(&url, &String::from_utf8_lossy(&out.stderr)));
    }
    parse_ls_remote(&String::from_utf8_lossy(&out.stdout))
        .ok_or_else(|| FetchError::Other(format!("'{url}' has no HEAD")))
}

/// Maps OpenSSH/gitlab-shell failures to go-git's wording (what source-controller reports).
fn classify(url: &str, stderr: &str) -> FetchError {
    let prefix = format!("unable to list remote refs of '{url}'");
    if stderr.contains("Host key verification failed") {
        let why = if stderr.contains("REMOTE HOST IDENTIFICATION HAS CHANGED") {
            "key mismatch"
        } else {
            "key is unknown"
        };
        return FetchError::Other(format!("{prefix}: ssh: handshake failed: knownhosts: {why}"));
    }
    if stderr.contains("Permission denied") {
        return FetchError::Auth(format!(
            "{prefix}: ssh: handshake failed: ssh: unable to authenticate, attempted methods [none publickey], no supported methods remain"
        ));
    }
    let remote: Vec<&str> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("remote: "))
        .filter(|l| !l.trim().is_empty() && !l.starts_with("===="))
        .collect();
    let message = if remote.is_empty() {
        stderr.trim().to_string()
    } else {
        remote.join(" ")
    };
    if message.contains("could not be found") {
        FetchError::NotFound(format!("{prefix}: repository not found: {message}"))
    } else {
        FetchError::Auth(format!("{prefix}: {message}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn secret(pairs: &[(&str, &str)]) -> Secret {
        Secret {
            data: Some(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn both_identity_and_known_hosts_are_required() {
        let cases: [(Option<Secret>, Option<&str>); 5] = [
            (None, Some("'identity' is required")),
            (
                Some(secret(&[("identity.pub", "x")])),
                Some("'identity' is required"),
            ),
            (
                Some(secret(&[("identity", "k")])),
                Some("'known_hosts' is required"),
            ),
            (
                Some(secret(&[("identity", "k"), ("known_hosts", "")])),
                Some("'known_hosts' is required"),
            ),
            (Some(secret(&[("identity", "k"), ("known_hosts", "h")])), None),
        ];
        for (s, want) in cases {
            let got = ssh_auth(s.as_ref()).err();
            match want {
                Some(w) => assert!(got.as_deref().is_some_and(|g| g.ends_with(w)), "{got:?}"),
                None => assert!(got.is_none(), "{got:?}"),
            }
        }
    }

    #[test]
    fn urls_default_to_the_git_user() {
        assert_eq!(
            normalise_url("ssh://127.0.0.1:2222/acme/app.git").ok(),
            Some("ssh://git@127.0.0.1:2222/acme/app.git".into())
        );
        assert_eq!(
            normalise_url("ssh://deploy@host/acme/app.git").ok(),
            Some("ssh://deploy@host/acme/app.git".into())
        );
        assert!(normalise_url("git@host:acme/app.git").is_err());
    }
}
