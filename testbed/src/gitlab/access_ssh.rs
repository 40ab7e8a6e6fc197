//! The SSH part of the contract between the GitLab emulator and its fronts: what gitlab-shell asks
//! GitLab's internal API (`/internal/authorized_keys` by key blob, then `/internal/allowed` by key
//! id), answered from the emulator's keys, deploy key links and memberships.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};

use super::{
    access::{AccessOracle, Principal, ProjectAccess},
    error::ApiError,
    ssh_keys::{NewSshKey, SshKey, SshKeyKind, fingerprint_sha256_of_blob, parse_public_key},
    state::GitLabState,
};

/// Whose key authenticated an SSH session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SshKeyOwner {
    /// A deploy key: reaches the projects it is enabled on (and public ones, read-only).
    Deploy,
    /// A user's key: acts as the user.
    User(Principal),
}

/// A stored key as the SSH front sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshKeyInfo {
    /// Key id (`key-<id>` in the forced command).
    pub key_id: u64,
    /// `type base64` of the stored key (comment dropped), for the authorized_keys line.
    pub key_line: String,
    /// Whether the key has expired on the emulator clock.
    pub expired: bool,
    /// Deploy key or user key.
    pub owner: SshKeyOwner,
}

/// A deploy key's standing on one project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployKeyAccess {
    /// The project (visibility, archived flag, canonical path).
    pub project: ProjectAccess,
    /// The link's `can_push`; None when the key is not enabled there (public read only).
    pub can_push: Option<bool>,
}

/// Implemented by the emulator state; the SSH front only sees this.
pub trait SshOracle: AccessOracle {
    /// The key whose blob (base64, as sshd's `%k`) matches by SHA256 fingerprint.
    fn ssh_key_by_blob(&self, blob_b64: &str) -> Option<SshKeyInfo>;
    /// The key with this id.
    fn ssh_key(&self, key_id: u64) -> Option<SshKeyInfo>;
    /// A deploy key's access to the project `path` (case-insensitive full path); None when the
    /// project does not exist, or is not public and the key is not enabled on it.
    fn deploy_key_access(&self, key_id: u64, path: &str) -> Option<DeployKeyAccess>;
}

fn key_line(key: &SshKey) -> String {
    key.key.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

impl GitLabState {
    fn key_info(&self, key: &SshKey, now: DateTime<Utc>) -> Option<SshKeyInfo> {
        let owner = match key.kind {
            SshKeyKind::Deploy { .. } => SshKeyOwner::Deploy,
            SshKeyKind::User => {
                let store = self.store();
                let user = store.users.get(&key.user_id)?;
                SshKeyOwner::User(Principal {
                    user_id: user.id,
                    username: user.username.clone(),
                    scopes: Vec::new(),
                })
            }
        };
        Some(SshKeyInfo {
            key_id: key.id,
            key_line: key_line(key),
            expired: key.expired_at(now),
            owner,
        })
    }

    /// Adds an SSH key to a user's profile (`POST /user/keys` without the API): the key must be
    /// valid, of an allowed type, not expired, and its fingerprint unused by any user or deploy key.
    pub fn add_user_ssh_key(
        &self,
        user_id: u64,
        title: &str,
        key: &str,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<u64, ApiError> {
        let now = self.now();
        let parsed =
            parse_public_key(key).ok_or_else(|| ApiError::Validation("key".into(), "is invalid".into()))?;
        let mut store = self.store();
        if !store.users.contains_key(&user_id) {
            return Err(ApiError::not_found("User"));
        }
        if parsed.forbidden() {
            return Err(ApiError::Validation(
                "key".into(),
                format!(
                    "type is forbidden. Must be {}",
                    super::ssh_keys::ALLOWED_TYPES_SENTENCE
                ),
            ));
        }
        if expires_at.is_some_and(|t| t <= now) {
            return Err(ApiError::Validation("key".into(), "has expired".into()));
        }
        if store.ssh.by_fingerprint(&parsed.fingerprint_sha256()).is_some() {
            return Err(ApiError::Validation(
                "fingerprint_sha256".into(),
                "has already been taken".into(),
            ));
        }
        Ok(store.ssh.insert(
            NewSshKey {
                title: title.to_string(),
                parsed,
                kind: SshKeyKind::User,
                user_id,
                expires_at,
            },
            now,
        ))
    }
}

impl SshOracle for GitLabState {
    fn ssh_key_by_blob(&self, blob_b64: &str) -> Option<SshKeyInfo> {
        let blob = STANDARD.decode(blob_b64.trim()).ok()?;
        let fingerprint = fingerprint_sha256_of_blob(&blob);
        let key = self.store().ssh.by_fingerprint(&fingerprint).cloned()?;
        self.key_info(&key, self.now())
    }

    fn ssh_key(&self, key_id: u64) -> Option<SshKeyInfo> {
        let key = self.store().ssh.keys.get(&key_id).cloned()?;
        self.key_info(&key, self.now())
    }

    fn deploy_key_access(&self, key_id: u64, path: &str) -> Option<DeployKeyAccess> {
        let store = self.store();
        let project = store.find_project(path.trim_matches('/'))?;
        let can_push = store.ssh.link(project.id, key_id).map(|l| l.can_push);
        let public = project.visibility == "public";
        if can_push.is_none() && !public {
            return None;
        }
        Some(DeployKeyAccess {
            project: ProjectAccess {
                project_id: project.id,
                path_with_namespace: store.project_path(project),
                // A deploy key is no member; its link alone decides (read always, push by can_push).
                access_level: 0,
                public,
                archived: project.archived,
            },
            can_push,
        })
    }
}
