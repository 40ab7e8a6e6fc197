//! SSH deploy keys: the ed25519 pair the operator generates for each deploy key, and the
//! `known_hosts` lines Flux checks the server against (flux-secrets.md, the SSH Secret keys
//! `identity`, `identity.pub`, `known_hosts`; gitlab-access-and-ssh.md §2.5).
//!
//! The private key leaves this module only as a `SecretString` (OpenSSH PEM), which goes into the
//! Secret's data and nowhere else; `ssh_key::PrivateKey` zeroizes its bytes on drop.

use rand_core::OsRng;
use secrecy::{ExposeSecret, SecretString};
use ssh_key::{Algorithm, LineEnding, PrivateKey, PublicKey};

/// Why an SSH key or host key could not be used. Never carries key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SshError {
    /// Key generation or encoding failed.
    #[error("could not generate an SSH key: {0}")]
    Generate(String),
    /// The private key in hand is not an OpenSSH private key.
    #[error("the private key is not an OpenSSH private key")]
    InvalidPrivateKey,
    /// A pinned host key is not a `<algorithm> <base64>` public key.
    #[error("SSH host key {0:?} is not a public key line (`ssh-ed25519 AAAA…`)")]
    InvalidHostKey(String),
}

/// A freshly generated key pair: the private half as a secret, the public line in the open.
pub struct KeyPair {
    /// OpenSSH PEM private key (the Secret's `identity`).
    pub private: SecretString,
    /// `ssh-ed25519 AAAA… <comment>` (the Secret's `identity.pub` and GitLab's deploy key).
    pub public: String,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

/// Generates an ed25519 key pair with `comment` (the deploy key's title).
pub fn generate(comment: &str) -> Result<KeyPair, SshError> {
    let mut key =
        PrivateKey::random(&mut OsRng, Algorithm::Ed25519).map_err(|e| SshError::Generate(e.to_string()))?;
    key.set_comment(comment);
    let private = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| SshError::Generate(e.to_string()))?;
    let public = key
        .public_key()
        .to_openssh()
        .map_err(|e| SshError::Generate(e.to_string()))?;
    Ok(KeyPair {
        private: SecretString::from(private.to_string()),
        public,
    })
}

/// The public line of an OpenSSH private key.
pub fn public_of(private: &SecretString) -> Result<String, SshError> {
    let key = PrivateKey::from_openssh(private.expose_secret()).map_err(|_| SshError::InvalidPrivateKey)?;
    key.public_key()
        .to_openssh()
        .map_err(|_| SshError::InvalidPrivateKey)
}

/// `known_hosts` content for `host` (`host` or `host:port`) and its pinned public keys: OpenSSH
/// writes a non-22 port as `[host]:port`. Each key is checked to be a public key line.
pub fn known_hosts(host: &str, keys: &[String]) -> Result<String, SshError> {
    let pattern = match host.rsplit_once(':') {
        Some((name, port)) if port != "22" && !name.is_empty() => format!("[{name}]:{port}"),
        Some((name, _)) => name.to_string(),
        None => host.to_string(),
    };
    let mut out = String::new();
    for k in keys {
        let line = k.trim();
        let key = PublicKey::from_openssh(line).map_err(|_| SshError::InvalidHostKey(line.to_string()))?;
        let bare = key
            .to_openssh()
            .map_err(|_| SshError::InvalidHostKey(line.to_string()))?;
        // Drop any comment: `known_hosts` lines are `<pattern> <algorithm> <base64>`.
        let mut parts = bare.split_whitespace();
        let (Some(alg), Some(b64)) = (parts.next(), parts.next()) else {
            return Err(SshError::InvalidHostKey(line.to_string()));
        };
        out.push_str(&format!("{pattern} {alg} {b64}\n"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_ed25519_and_their_public_half_is_derivable() {
        let pair = generate("gto-c-uid").unwrap();
        assert!(pair.public.starts_with("ssh-ed25519 AAAA"), "{}", pair.public);
        assert!(pair.public.ends_with(" gto-c-uid"));
        assert!(
            pair.private
                .expose_secret()
                .starts_with("-----BEGIN OPENSSH PRIVATE KEY-----")
        );
        assert_eq!(public_of(&pair.private).unwrap(), pair.public);
        assert!(
            !format!("{pair:?}").contains("PRIVATE"),
            "Debug hides the private key"
        );
        assert_ne!(generate("x").unwrap().public, generate("x").unwrap().public);
        assert_eq!(
            public_of(&SecretString::from("nope")).unwrap_err(),
            SshError::InvalidPrivateKey
        );
    }

    #[test]
    fn known_hosts_lines_follow_openssh_port_rules() {
        let host_key = generate("host").unwrap().public;
        let b64 = host_key.split_whitespace().nth(1).unwrap();
        assert_eq!(
            known_hosts("gitlab.example.com", std::slice::from_ref(&host_key)).unwrap(),
            format!("gitlab.example.com ssh-ed25519 {b64}\n")
        );
        assert_eq!(
            known_hosts("127.0.0.1:2222", std::slice::from_ref(&host_key)).unwrap(),
            format!("[127.0.0.1]:2222 ssh-ed25519 {b64}\n")
        );
        assert_eq!(
            known_hosts("gitlab.example.com:22", std::slice::from_ref(&host_key)).unwrap(),
            format!("gitlab.example.com ssh-ed25519 {b64}\n")
        );
        assert!(matches!(
            known_hosts("h", &["ssh-ed25519 notbase64".to_string()]),
            Err(SshError::InvalidHostKey(_))
        ));
    }
}
