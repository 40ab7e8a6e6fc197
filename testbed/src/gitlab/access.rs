//! The contract between the GitLab API emulator (which owns users, projects and tokens) and the
//! consumer-protocol fronts (git smart HTTP, the registry's `/jwt/auth`, Helm downloads), which
//! check HTTP Basic credentials exactly as GitLab does.

/// Who a credential belongs to, with what the credential allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// GitLab user id (a bot user for project access tokens).
    pub user_id: u64,
    /// Username.
    pub username: String,
    /// Scopes of the token used (`read_repository`, `read_registry`, `api`, …).
    pub scopes: Vec<String>,
}

impl Principal {
    /// Whether any of `wanted` is among the token's scopes.
    pub fn has_any_scope(&self, wanted: &[&str]) -> bool {
        self.scopes.iter().any(|s| wanted.contains(&s.as_str()))
    }
}

/// Why a credential was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialError {
    /// No such token (or wrong username for a token type that checks it).
    Unknown,
    /// The token's `expires_at` day has begun (emulator clock).
    Expired,
    /// The token was revoked.
    Revoked,
}

/// A principal's standing on one project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectAccess {
    /// Numeric project id.
    pub project_id: u64,
    /// Canonical `path_with_namespace`.
    pub path_with_namespace: String,
    /// Effective access level (0 when not a member), inherited from groups included.
    pub access_level: u32,
    /// Public projects allow anonymous reads.
    pub public: bool,
    /// Archived projects refuse writes.
    pub archived: bool,
}

/// Implemented by the GitLab emulator's state; the protocol fronts only see this.
pub trait AccessOracle: Send + Sync + 'static {
    /// Checks HTTP Basic credentials the way GitLab does for Git, registry and package endpoints:
    /// for personal, project and group access tokens the password is looked up and the username
    /// is not checked. Failed attempts are recorded in the API call log by the implementation.
    fn authenticate(&self, username: &str, password: &str) -> Result<Principal, CredentialError>;

    /// The principal's (None = anonymous) access to the project named by `path` (case-insensitive
    /// full path, no `.git`) or numeric id. None when the project does not exist or is invisible.
    fn project_access(&self, principal: Option<&Principal>, path_or_id: &str) -> Option<ProjectAccess>;
}
