//! SSH keys as GitLab keeps them (`keys` table): users' keys and deploy keys share one id and
//! fingerprint space; deploy keys reach projects through `deploy_keys_projects` links, each with its
//! own `can_push`. OpenSSH public key parsing, GitLab's validity rules (`Gitlab::SSHPublicKey`,
//! DSA forbidden by default) and both fingerprints (MD5 `fingerprint`, `fingerprint_sha256`).

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use chrono::{DateTime, Utc};
use md5::Md5;
use sha2::{Digest, Sha256};

/// Key types GitLab allows by default, as named in `type is forbidden. Must be …`.
pub const ALLOWED_TYPES_SENTENCE: &str = "RSA, ECDSA, ED25519, ECDSA_SK, or ED25519_SK";

/// Who a key belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SshKeyKind {
    /// A user's own key: acts as that user.
    User,
    /// A deploy key (reaches the projects it is enabled on).
    Deploy {
        /// Public (admin-created, enable-able everywhere) or private to its projects.
        public: bool,
    },
}

/// One stored SSH key.
#[derive(Debug, Clone)]
pub struct SshKey {
    /// Record id (shared by user and deploy keys: `key-<id>` in gitlab-shell).
    pub id: u64,
    /// Title.
    pub title: String,
    /// The public key line as given, whitespace stripped.
    pub key: String,
    /// MD5 fingerprint, colon-separated hex.
    pub fingerprint: String,
    /// `SHA256:` + unpadded base64 of the SHA-256 of the blob.
    pub fingerprint_sha256: String,
    /// User or deploy key.
    pub kind: SshKeyKind,
    /// Owner (the creator for deploy keys).
    pub user_id: u64,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Expiry instant, if any.
    pub expires_at: Option<DateTime<Utc>>,
}

impl SshKey {
    /// Whether the key has expired at `now` (GitLab: `expires_at <= Time.current`).
    pub fn expired_at(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }
}

/// A deploy key enabled on a project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployKeyLink {
    /// Project id.
    pub project_id: u64,
    /// Key id.
    pub key_id: u64,
    /// Write access through this link.
    pub can_push: bool,
    /// When the key was enabled here.
    pub created_at: DateTime<Utc>,
}

/// Every SSH key and deploy key link (a field of the store).
#[derive(Debug)]
pub struct SshKeys {
    /// Keys by id.
    pub keys: BTreeMap<u64, SshKey>,
    /// Links by (project id, key id).
    pub links: BTreeMap<(u64, u64), DeployKeyLink>,
    next_id: u64,
}

impl Default for SshKeys {
    fn default() -> Self {
        Self {
            keys: BTreeMap::new(),
            links: BTreeMap::new(),
            next_id: 1,
        }
    }
}

/// Fields of a key to store.
#[derive(Debug, Clone)]
pub struct NewSshKey {
    /// Title.
    pub title: String,
    /// Parsed key.
    pub parsed: ParsedKey,
    /// User or deploy key.
    pub kind: SshKeyKind,
    /// Owner.
    pub user_id: u64,
    /// Expiry.
    pub expires_at: Option<DateTime<Utc>>,
}

impl SshKeys {
    /// The key with this SHA256 fingerprint.
    pub fn by_fingerprint(&self, fingerprint_sha256: &str) -> Option<&SshKey> {
        self.keys
            .values()
            .find(|k| k.fingerprint_sha256 == fingerprint_sha256)
    }

    /// Stores a key (uniqueness is the caller's check) and returns its id.
    pub fn insert(&mut self, new: NewSshKey, now: DateTime<Utc>) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.keys.insert(
            id,
            SshKey {
                id,
                title: new.title,
                key: new.parsed.text.clone(),
                fingerprint: new.parsed.fingerprint_md5(),
                fingerprint_sha256: new.parsed.fingerprint_sha256(),
                kind: new.kind,
                user_id: new.user_id,
                created_at: now,
                expires_at: new.expires_at,
            },
        );
        id
    }

    /// The link of `key_id` on `project_id`.
    pub fn link(&self, project_id: u64, key_id: u64) -> Option<&DeployKeyLink> {
        self.links.get(&(project_id, key_id))
    }

    /// Enables a key on a project (keeps an existing link as it is); returns the link.
    pub fn enable(
        &mut self,
        project_id: u64,
        key_id: u64,
        can_push: bool,
        now: DateTime<Utc>,
    ) -> DeployKeyLink {
        self.links
            .entry((project_id, key_id))
            .or_insert(DeployKeyLink {
                project_id,
                key_id,
                can_push,
                created_at: now,
            })
            .clone()
    }

    /// The links of a project, by key id.
    pub fn project_links(&self, project_id: u64) -> Vec<&DeployKeyLink> {
        self.links
            .range((project_id, 0)..=(project_id, u64::MAX))
            .map(|(_, l)| l)
            .collect()
    }

    /// Project ids a key is enabled on.
    pub fn key_projects(&self, key_id: u64) -> Vec<u64> {
        self.links
            .values()
            .filter(|l| l.key_id == key_id)
            .map(|l| l.project_id)
            .collect()
    }

    /// Removes a link; a private deploy key left on no project is destroyed (GitLab does so).
    pub fn disable(&mut self, project_id: u64, key_id: u64) -> bool {
        if self.links.remove(&(project_id, key_id)).is_none() {
            return false;
        }
        let orphan = self.key_projects(key_id).is_empty();
        if orphan
            && self
                .keys
                .get(&key_id)
                .is_some_and(|k| k.kind == SshKeyKind::Deploy { public: false })
        {
            self.keys.remove(&key_id);
        }
        true
    }
}

/// A parsed OpenSSH public key line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedKey {
    /// Algorithm name (`ssh-ed25519`, …).
    pub algorithm: String,
    /// The decoded wire blob.
    pub blob: Vec<u8>,
    /// Key size in bits.
    pub bits: u32,
    /// The whole line, whitespace stripped (what GitLab stores).
    pub text: String,
}

impl ParsedKey {
    /// MD5 of the blob as colon-separated lower-case hex.
    pub fn fingerprint_md5(&self) -> String {
        let digest = Md5::digest(&self.blob);
        let hex: Vec<String> = digest.iter().map(|b| format!("{b:02x}")).collect();
        hex.join(":")
    }

    /// `SHA256:` + unpadded base64 of the SHA-256 of the blob.
    pub fn fingerprint_sha256(&self) -> String {
        fingerprint_sha256_of_blob(&self.blob)
    }

    /// Whether the type is one GitLab forbids by default (DSA).
    pub fn forbidden(&self) -> bool {
        self.algorithm == "ssh-dss"
    }
}

/// The SHA256 fingerprint of a key blob.
pub fn fingerprint_sha256_of_blob(blob: &[u8]) -> String {
    format!("SHA256:{}", STANDARD_NO_PAD.encode(Sha256::digest(blob)))
}

/// Reads one SSH wire `string` (u32 length + bytes) from `buf` at `pos`.
fn read_string<'a>(buf: &'a [u8], pos: &mut usize) -> Option<&'a [u8]> {
    let len_bytes = buf.get(*pos..*pos + 4)?;
    let len = u32::from_be_bytes(len_bytes.try_into().ok()?) as usize;
    let start = *pos + 4;
    let out = buf.get(start..start.checked_add(len)?)?;
    *pos = start + len;
    Some(out)
}

/// Bits of an SSH `mpint` (leading zero bytes ignored).
fn mpint_bits(m: &[u8]) -> u32 {
    let trimmed: &[u8] = match m.iter().position(|b| *b != 0) {
        Some(i) => &m[i..],
        None => return 0,
    };
    let lead = trimmed[0];
    (trimmed.len() as u32 - 1) * 8 + (8 - lead.leading_zeros())
}

/// Parses and checks a key the way `Gitlab::SSHPublicKey#valid?` does: a known type whose blob
/// decodes, names the same type, and has one of the type's supported sizes. None = `is invalid`.
pub fn parse_public_key(text: &str) -> Option<ParsedKey> {
    let text = text.trim();
    if text.contains('\n') || text.contains('\r') {
        return None;
    }
    let mut parts = text.split_whitespace();
    let algorithm = parts.next()?.to_string();
    let blob = STANDARD.decode(parts.next()?).ok()?;
    let mut pos = 0;
    if read_string(&blob, &mut pos)? != algorithm.as_bytes() {
        return None;
    }
    let bits = match algorithm.as_str() {
        "ssh-ed25519" | "sk-ssh-ed25519@openssh.com" => {
            (read_string(&blob, &mut pos)?.len() == 32).then_some(256)?
        }
        "ssh-rsa" => {
            let _e = read_string(&blob, &mut pos)?;
            let bits = mpint_bits(read_string(&blob, &mut pos)?);
            [1024, 2048, 3072, 4096].contains(&bits).then_some(bits)?
        }
        "ssh-dss" => {
            let bits = mpint_bits(read_string(&blob, &mut pos)?);
            [1024, 2048, 3072].contains(&bits).then_some(bits)?
        }
        "ecdsa-sha2-nistp256" | "ecdsa-sha2-nistp384" | "ecdsa-sha2-nistp521" => {
            let curve = read_string(&blob, &mut pos)?;
            let bits = match curve {
                b"nistp256" => 256,
                b"nistp384" => 384,
                b"nistp521" => 521,
                _ => return None,
            };
            (algorithm.ends_with(std::str::from_utf8(curve).ok()?)).then_some(bits)?
        }
        "sk-ecdsa-sha2-nistp256@openssh.com" => {
            (read_string(&blob, &mut pos)? == b"nistp256").then_some(256)?
        }
        _ => return None,
    };
    Some(ParsedKey {
        algorithm,
        blob,
        bits,
        text: text.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ssh-keygen -t ed25519` output (a throwaway test key).
    const ED25519: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGRwtnQLcQ2ka9jj4721d5J+BDFsg/bPDe4tr5p8HLL6 flux";

    #[test]
    fn parses_types_and_sizes_by_table() {
        let cases = [
            (ED25519, Some(("ssh-ed25519", 256))),
            ("ssh-ed25519 AAAA", None),
            (
                "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIGRwtnQLcQ2ka9jj4721d5J+BDFsg/bPDe4tr5p8HLL6",
                None,
            ),
            ("-----BEGIN OPENSSH PRIVATE KEY-----", None),
            ("", None),
        ];
        for (text, want) in cases {
            let got = parse_public_key(text).map(|k| (k.algorithm.clone(), k.bits));
            assert_eq!(got, want.map(|(a, b)| (a.to_string(), b)), "{text}");
        }
    }

    #[test]
    fn fingerprints_match_ssh_keygen() {
        // `ssh-keygen -lf key.pub -E md5` and `ssh-keygen -lf key.pub`.
        let k = parse_public_key(ED25519).unwrap_or_else(|| unreachable!());
        assert_eq!(
            k.fingerprint_md5(),
            "88:3f:77:a2:cb:96:f0:78:3c:9c:06:61:54:7d:f3:60"
        );
        assert_eq!(
            k.fingerprint_sha256(),
            "SHA256:t81Pi/PXsOo9KZHIXEvubOUF6OmnAJHf2votEDVKzX0"
        );
    }

    #[test]
    fn removing_the_last_link_destroys_a_private_deploy_key() {
        let mut keys = SshKeys::default();
        let now = Utc::now();
        let parsed = parse_public_key(ED25519).unwrap_or_else(|| unreachable!());
        let id = keys.insert(
            NewSshKey {
                title: "t".into(),
                parsed,
                kind: SshKeyKind::Deploy { public: false },
                user_id: 1,
                expires_at: None,
            },
            now,
        );
        keys.enable(100, id, false, now);
        keys.enable(101, id, true, now);
        // Enabling again keeps the existing link as it is.
        assert!(keys.enable(101, id, false, now).can_push);
        assert!(keys.disable(100, id) && keys.keys.contains_key(&id));
        assert!(!keys.disable(100, id));
        assert!(keys.disable(101, id) && !keys.keys.contains_key(&id));
    }
}
