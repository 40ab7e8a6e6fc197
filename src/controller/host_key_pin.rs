//! Opt-in fetch-and-pin of GitLab's SSH host keys (issue 12 item 1): with
//! `spec.sshHostKeyPolicy: FetchAndPin` and no `spec.sshHostKeys`, the connection check reads the
//! host keys the SSH server presents in the key exchange (one connection per key algorithm, no
//! authentication) and pins them in `status.sshHostKeys` with their SHA256 fingerprints and an
//! event. Later checks fetch again and compare: a key that is not pinned, or an SSH endpoint that
//! moved, marks the pin `changed` (a Warning event, `SSHHostKeyChanged`) and deploy key Secrets
//! are refused until an admin acts; the pin is never replaced silently. Clearing it (removing
//! `status.sshHostKeys`) is the documented way to pin again.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{DateTime, Utc};
use russh::{
    client,
    keys::{Algorithm, EcdsaCurve, HashAlg, PublicKey, PublicKeyOrCertificate},
};

use crate::{
    crd::{GitLabConnection, PinnedHostKeys, SshHostKeyPolicy},
    reason::Reason,
};

/// How long one key-exchange attempt may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Host key algorithms asked for, one connection each (RSA is not compiled in: GitLab offers
/// ed25519 and ECDSA keys too).
const ALGORITHMS: [Algorithm; 2] = [
    Algorithm::Ed25519,
    Algorithm::Ecdsa {
        curve: EcdsaCurve::NistP256,
    },
];

/// Why fetching host keys failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The endpoint is not `host` or `host:port`.
    #[error("SSH endpoint {0:?} is not host or host:port")]
    BadEndpoint(String),
    /// No algorithm yielded a key (unreachable, refused, timed out).
    #[error("no SSH host key could be read from {endpoint}: {detail}")]
    NoKey {
        /// The endpoint.
        endpoint: String,
        /// The last failure.
        detail: String,
    },
}

/// Captures the server's host key and ends the connection (never authenticates).
struct Capture(Arc<Mutex<Option<PublicKey>>>);

impl client::Handler for Capture {
    type Error = russh::Error;

    async fn check_server_key(&mut self, key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        if let PublicKeyOrCertificate::PublicKey { key, .. } = key
            && let Ok(mut slot) = self.0.lock()
        {
            *slot = Some(key.clone());
        }
        // Refused on purpose: the key is all that is wanted.
        Ok(false)
    }
}

/// Splits `host[:port]` (port 22 by default).
fn endpoint(ssh_host: &str) -> Result<(String, u16), FetchError> {
    let bad = || FetchError::BadEndpoint(ssh_host.to_string());
    match ssh_host.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() => Ok((host.to_string(), port.parse().map_err(|_| bad())?)),
        Some(_) => Err(bad()),
        None if !ssh_host.is_empty() => Ok((ssh_host.to_string(), 22)),
        None => Err(bad()),
    }
}

/// Reads the host keys `ssh_host` presents, one per algorithm it offers, as `<algorithm> <base64>`.
pub async fn fetch(ssh_host: &str) -> Result<Vec<String>, FetchError> {
    let (host, port) = endpoint(ssh_host)?;
    let mut keys = Vec::new();
    let mut detail = String::from("no key offered");
    for algorithm in ALGORITHMS {
        let mut config = client::Config::default();
        config.preferred.key = vec![algorithm].into();
        config.inactivity_timeout = Some(FETCH_TIMEOUT);
        let slot = Arc::new(Mutex::new(None));
        let attempt = client::connect(Arc::new(config), (host.as_str(), port), Capture(slot.clone()));
        match tokio::time::timeout(FETCH_TIMEOUT, attempt).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => detail = e.to_string(),
            Err(_) => detail = format!("timed out after {}s", FETCH_TIMEOUT.as_secs()),
        }
        let key = slot.lock().ok().and_then(|mut s| s.take());
        if let Some(line) = key.and_then(|k| k.to_openssh().ok()) {
            keys.push(key_only(&line));
        }
    }
    if keys.is_empty() {
        return Err(FetchError::NoKey {
            endpoint: ssh_host.to_string(),
            detail,
        });
    }
    Ok(keys)
}

/// `<algorithm> <base64>` of an OpenSSH public key line (the comment dropped).
fn key_only(line: &str) -> String {
    line.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

/// The SHA256 fingerprint of an `<algorithm> <base64>` key (`SHA256:…`), or the reason it is unreadable.
pub fn fingerprint(key: &str) -> Result<String, String> {
    PublicKey::from_openssh(key)
        .map(|k| k.fingerprint(HashAlg::Sha256).to_string())
        .map_err(|e| format!("{key:?} is not an SSH public key: {e}"))
}

/// What the check concluded about the pin, for its event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinEvent {
    /// Keys were fetched and pinned now.
    Pinned(String),
    /// The server presented an unpinned key or the endpoint moved (first noticed now).
    Changed(String),
}

impl PinEvent {
    /// The reason and note of its event.
    pub fn reason_and_note(&self) -> (Reason, &str) {
        match self {
            Self::Pinned(note) => (Reason::SshHostKeysPinned, note),
            Self::Changed(note) => (Reason::SshHostKeyChanged, note),
        }
    }
}

/// Compares fetched keys with a pin (pure): `Ok(())` when every fetched key is pinned at the same
/// endpoint, else what changed.
pub fn compare(pin: &PinnedHostKeys, ssh_host: &str, fetched: &[String]) -> Result<(), String> {
    if pin.host != ssh_host {
        return Err(format!(
            "the SSH endpoint moved from {} to {ssh_host}; the pinned host keys are {}'s",
            pin.host, pin.host
        ));
    }
    let unpinned: Vec<String> = fetched
        .iter()
        .filter(|k| !pin.keys.contains(k))
        .map(|k| fingerprint(k).unwrap_or_else(|e| e))
        .collect();
    if unpinned.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{ssh_host} presents SSH host key(s) {} that are not pinned (pinned: {})",
            unpinned.join(", "),
            pin.fingerprints.join(", ")
        ))
    }
}

/// A new pin of `keys` fetched from `ssh_host` at `now`.
pub fn pin(ssh_host: &str, keys: Vec<String>, now: DateTime<Utc>) -> PinnedHostKeys {
    let fingerprints = keys
        .iter()
        .map(|k| fingerprint(k).unwrap_or_else(|e| e))
        .collect();
    PinnedHostKeys {
        host: ssh_host.to_string(),
        keys,
        fingerprints,
        pinned_at: now,
        changed: None,
    }
}

/// Runs the fetch-and-pin step of a connection check: updates `pinned` (the status field) and
/// returns the event to publish, if any. Does nothing unless the connection opts in and pins no
/// keys in its spec. A failed fetch changes nothing (the pin, if any, stays in force).
pub async fn refresh(
    conn: &GitLabConnection,
    ssh_host: Option<&str>,
    pinned: &mut Option<PinnedHostKeys>,
    now: DateTime<Utc>,
) -> Option<PinEvent> {
    if conn.spec.ssh_host_key_policy != SshHostKeyPolicy::FetchAndPin || !conn.spec.ssh_host_keys.is_empty() {
        return None;
    }
    let ssh_host = ssh_host?;
    let fetched = match fetch(ssh_host).await {
        Ok(keys) => keys,
        Err(e) => {
            tracing::warn!(connection = %conn.spec.url, error = %e, "cannot read GitLab's SSH host keys");
            return None;
        }
    };
    match pinned {
        None => {
            let new = pin(ssh_host, fetched, now);
            let note = format!(
                "pinned the SSH host keys of {ssh_host}: {}; compare them with the fingerprints GitLab publishes",
                new.fingerprints.join(", ")
            );
            *pinned = Some(new);
            Some(PinEvent::Pinned(note))
        }
        Some(p) => match compare(p, ssh_host, &fetched) {
            Ok(()) => {
                p.changed = None;
                None
            }
            Err(what) => {
                let first = p.changed.as_deref() != Some(what.as_str());
                p.changed = Some(what.clone());
                first.then_some(PinEvent::Changed(what))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh ed25519 public key, `<algorithm> <base64>`.
    fn key() -> String {
        key_only(&crate::secret::ssh::generate("host").unwrap().public)
    }

    #[test]
    fn endpoints_and_fingerprints() {
        assert_eq!(
            endpoint("gitlab.example.com").unwrap(),
            ("gitlab.example.com".into(), 22)
        );
        assert_eq!(endpoint("127.0.0.1:2222").unwrap(), ("127.0.0.1".into(), 2222));
        assert!(endpoint(":22").is_err() && endpoint("h:x").is_err() && endpoint("").is_err());
        let a = key();
        let f = fingerprint(&a).unwrap();
        assert!(f.starts_with("SHA256:") && f.len() > 40, "{f}");
        assert!(fingerprint("ssh-ed25519 nope").is_err());
        assert_eq!(key_only(&format!("{a} comment here")), a);
    }

    #[test]
    fn a_changed_key_or_endpoint_is_named_and_never_repinned() {
        let (a, b) = (key(), key());
        let p = pin("gitlab:22", vec![a.clone()], Utc::now());
        assert_eq!(p.fingerprints, [fingerprint(&a).unwrap()]);
        assert_eq!(compare(&p, "gitlab:22", std::slice::from_ref(&a)), Ok(()));
        let changed = compare(&p, "gitlab:22", std::slice::from_ref(&b)).unwrap_err();
        assert!(changed.contains(&fingerprint(&b).unwrap()), "{changed}");
        assert!(changed.contains("not pinned"), "{changed}");
        let moved = compare(&p, "other:22", std::slice::from_ref(&a)).unwrap_err();
        assert!(moved.contains("moved from gitlab:22 to other:22"), "{moved}");
    }
}
