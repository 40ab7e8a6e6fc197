//! Request and response bodies of the GitLab endpoints the operator uses (gitlab-api.md §2, §3,
//! §5, §10). Unknown fields are ignored and fields missing in older GitLab versions are optional,
//! so new or old servers both decode. Minted token values are `SecretString` from the first byte.

use chrono::{DateTime, NaiveDate, Utc};
use secrecy::SecretString;
use serde::{Deserialize, Deserializer, Serialize};

use crate::crd::{AccessLevel, Scope};

/// GitLab treats `null` booleans as false (gitlab-api.md §1.1).
fn null_false<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(Option::<bool>::deserialize(d)?.unwrap_or(false))
}

/// `null` lists decode as empty.
fn null_empty<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

/// `GET /version`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Version {
    /// E.g. `17.9.1-ee`.
    pub version: String,
    /// Git revision of the build.
    #[serde(default)]
    pub revision: Option<String>,
}

/// `GET /user`: the authenticated user (for a bot token: the bot).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct User {
    /// Numeric user id.
    pub id: u64,
    /// Login name.
    pub username: String,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// `active`, `blocked`, ...
    #[serde(default)]
    pub state: Option<String>,
    /// True for project/group bot users.
    #[serde(default, deserialize_with = "null_false")]
    pub bot: bool,
    /// Present (and true) only for administrators.
    #[serde(default, deserialize_with = "null_false")]
    pub is_admin: bool,
    /// Profile URL.
    #[serde(default)]
    pub web_url: Option<String>,
}

/// A personal, project or group access token record, without its secret (§2.1, §2.2).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct AccessToken {
    /// Token record id; changes on every rotation.
    pub id: u64,
    /// Name (not unique).
    pub name: String,
    /// Description (17.7+).
    #[serde(default)]
    pub description: Option<String>,
    /// Revoked by someone (or by rotation).
    #[serde(default, deserialize_with = "null_false")]
    pub revoked: bool,
    /// Neither revoked nor expired.
    #[serde(default, deserialize_with = "null_false")]
    pub active: bool,
    /// Expired (newest GitLab only).
    #[serde(default)]
    pub expired: Option<bool>,
    /// Creation time.
    #[serde(default)]
    pub created_at: Option<DateTime<Utc>>,
    /// Expiry date: the token stops working at 00:00 UTC on this day.
    #[serde(default)]
    pub expires_at: Option<NaiveDate>,
    /// Last use (updated at most every ~10 min).
    #[serde(default)]
    pub last_used_at: Option<DateTime<Utc>>,
    /// Up to five recent client IPs (17.8+).
    #[serde(default, deserialize_with = "null_empty")]
    pub last_used_ips: Vec<String>,
    /// Granted scopes.
    #[serde(default, deserialize_with = "null_empty")]
    pub scopes: Vec<String>,
    /// Owner; for project tokens the bot user, stable across rotations.
    pub user_id: u64,
    /// Role of the bot membership (project/group tokens only).
    #[serde(default)]
    pub access_level: Option<u32>,
    /// `project` or `group` (newest GitLab only).
    #[serde(default)]
    pub resource_type: Option<String>,
    /// Project or group id (newest GitLab only).
    #[serde(default)]
    pub resource_id: Option<u64>,
}

/// A freshly created or rotated token: the record plus its secret, which `Debug` never shows.
#[derive(Debug, Clone, Deserialize)]
pub struct NewToken {
    /// The token record (new `id` after a rotation).
    #[serde(flatten)]
    pub info: AccessToken,
    /// The token value; GitLab shows it only in this response.
    pub token: SecretString,
}

/// `state` filter of token lists (17.2+).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenState {
    /// Not revoked and not expired.
    Active,
    /// Revoked or expired.
    Inactive,
}

impl TokenState {
    /// GitLab's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Inactive => "inactive",
        }
    }
}

/// Body of `POST /projects/:id/access_tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CreateProjectAccessToken {
    /// Token (and bot display) name.
    pub name: String,
    /// Description (ignored by GitLab before 17.7).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Scopes, GitLab spelling.
    pub scopes: Vec<String>,
    /// Role of the bot: 10, 15, 20, 30, 40 or 50.
    pub access_level: u32,
    /// Expiry date; always sent (GitLab's default would be a year).
    pub expires_at: NaiveDate,
}

impl CreateProjectAccessToken {
    /// A request from the operator's own scope and role types (GitLab spellings and values).
    pub fn new(
        name: impl Into<String>,
        description: Option<String>,
        scopes: &[Scope],
        access_level: AccessLevel,
        expires_at: NaiveDate,
    ) -> Self {
        Self {
            name: name.into(),
            description,
            scopes: scopes.iter().map(|s| s.as_str().to_string()).collect(),
            access_level: access_level.gitlab_value(),
            expires_at,
        }
    }
}

/// Body of the rotate endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct RotateBody {
    pub expires_at: NaiveDate,
}

/// `GET /projects/:id` (the fields policy and inference need).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Project {
    /// Numeric id.
    pub id: u64,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// Last path segment.
    #[serde(default)]
    pub path: Option<String>,
    /// Canonical full path, e.g. `acme/team-a/app`: what policy is evaluated against.
    pub path_with_namespace: String,
    /// E.g. `Acme / Team A / app`.
    #[serde(default)]
    pub name_with_namespace: Option<String>,
    /// Default branch.
    #[serde(default)]
    pub default_branch: Option<String>,
    /// HTTPS clone URL.
    #[serde(default)]
    pub http_url_to_repo: Option<String>,
    /// Web URL.
    #[serde(default)]
    pub web_url: Option<String>,
    /// Owning namespace.
    #[serde(default)]
    pub namespace: Option<Namespace>,
    /// `private`, `internal` or `public`.
    #[serde(default)]
    pub visibility: Option<String>,
    /// Archived projects are read-only.
    #[serde(default, deserialize_with = "null_false")]
    pub archived: bool,
    /// E.g. `registry.example.com/acme/team-a/app`.
    #[serde(default)]
    pub container_registry_image_prefix: Option<String>,
    /// The caller's direct and group membership (not the effective role).
    #[serde(default)]
    pub permissions: Option<ProjectPermissions>,
    /// Groups the project is shared with (delegation reads them).
    #[serde(default, deserialize_with = "super::access_types::null_empty_shares")]
    pub shared_with_groups: Vec<super::access_types::SharedWithGroup>,
}

/// A project's namespace (group or user).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Namespace {
    /// Numeric id.
    pub id: u64,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// Last path segment.
    #[serde(default)]
    pub path: Option<String>,
    /// `group` or `user`.
    #[serde(default)]
    pub kind: Option<String>,
    /// Full path.
    #[serde(default)]
    pub full_path: Option<String>,
    /// Parent group id.
    #[serde(default)]
    pub parent_id: Option<u64>,
}

/// `permissions` of a project.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ProjectPermissions {
    /// Direct project membership.
    #[serde(default)]
    pub project_access: Option<AccessGrant>,
    /// Group membership.
    #[serde(default)]
    pub group_access: Option<AccessGrant>,
}

/// One membership's level.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AccessGrant {
    /// Role value.
    pub access_level: u32,
}

/// `GET /projects/:id/members/all/:user_id`: effective membership.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Member {
    /// User id.
    pub id: u64,
    /// Login name.
    pub username: String,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// `active`, ...
    #[serde(default)]
    pub state: Option<String>,
    /// Highest effective role.
    pub access_level: u32,
    /// Membership expiry.
    #[serde(default)]
    pub expires_at: Option<NaiveDate>,
}

/// What a revoke call found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeOutcome {
    /// GitLab revoked the token now (204/202).
    Revoked,
    /// GitLab answered 404: the token (or project) is already gone; counts as done.
    AlreadyGone,
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn documented_token_shapes_decode() {
        let list = r#"[
  {"id": 9101, "name": "broker-ci-pull", "description": "managed by token-broker",
   "revoked": false, "active": true, "created_at": "2025-05-02T08:00:11.120Z",
   "expires_at": "2025-08-01", "last_used_at": "2025-05-20T10:41:03.002Z",
   "last_used_ips": ["10.0.4.17"], "scopes": ["read_registry"], "user_id": 5512,
   "access_level": 20},
  {"id": 9055, "name": "broker-ci-pull", "description": null, "revoked": true, "active": false,
   "created_at": "2025-02-01T08:00:02.004Z", "expires_at": "2025-05-03", "last_used_at": null,
   "last_used_ips": [], "scopes": ["read_registry"], "user_id": 5512, "access_level": 20,
   "granular": false, "some_future_field": {"x": 1}}
]"#;
        let tokens: Vec<AccessToken> = serde_json::from_str(list).unwrap();
        assert_eq!(tokens[0].expires_at, NaiveDate::from_ymd_opt(2025, 8, 1));
        assert_eq!(tokens[1].access_level, Some(20));
        assert!(tokens[1].revoked && !tokens[1].active);

        let pat = r#"{"id": 7001, "name": "token-broker", "description": "operator credential", "revoked": null,
 "active": true, "created_at": "2025-01-05T07:00:00.000Z", "expires_at": null,
 "last_used_at": "2025-06-10T11:58:40.310Z", "last_used_ips": null, "scopes": ["api"], "user_id": 42}"#;
        let pat: AccessToken = serde_json::from_str(pat).unwrap();
        assert!(!pat.revoked);
        assert_eq!(pat.access_level, None);
        assert_eq!(pat.expires_at, None);
    }

    #[test]
    fn new_token_keeps_secret_out_of_debug() {
        let body = r#"{"id": 9120, "name": "broker-helm-read", "description": "ns=team-a", "revoked": false,
 "active": true, "created_at": "2025-06-10T12:00:00.000Z", "expires_at": "2025-09-08",
 "last_used_at": null, "last_used_ips": [], "scopes": ["read_api"], "user_id": 5530,
 "access_level": 20, "token": "glpat-EXAMPLEexampleEXAMPLE1"}"#;
        let t: NewToken = serde_json::from_str(body).unwrap();
        assert_eq!(t.token.expose_secret(), "glpat-EXAMPLEexampleEXAMPLE1");
        assert_eq!(t.info.id, 9120);
        assert!(!format!("{t:?}").contains("EXAMPLE"));
        assert!(!format!("{t:#?}").contains("EXAMPLE"));
    }

    #[test]
    fn project_and_member_shapes_decode() {
        let project = r#"{"id": 812, "name": "payments-api", "path": "payments-api",
 "name_with_namespace": "Platform / Payments / payments-api",
 "path_with_namespace": "platform/payments/payments-api",
 "created_at": "2024-02-01T10:00:00.000Z", "default_branch": "main",
 "http_url_to_repo": "https://gitlab.example.com/platform/payments/payments-api.git",
 "web_url": "https://gitlab.example.com/platform/payments/payments-api",
 "namespace": {"id": 77, "name": "Payments", "path": "payments", "kind": "group",
               "full_path": "platform/payments", "parent_id": 12, "avatar_url": null,
               "web_url": "https://gitlab.example.com/groups/platform/payments"},
 "visibility": "private", "archived": false,
 "container_registry_image_prefix": "registry.example.com/platform/payments/payments-api",
 "permissions": {"project_access": {"access_level": 40, "notification_level": 3},
                 "group_access": null}}"#;
        let p: Project = serde_json::from_str(project).unwrap();
        assert_eq!(p.path_with_namespace, "platform/payments/payments-api");
        assert_eq!(
            p.permissions
                .and_then(|x| x.project_access)
                .map(|a| a.access_level),
            Some(40)
        );
        let m: Member = serde_json::from_str(r#"{"id":42,"username":"token-broker","name":"Token Broker","state":"active","avatar_url":null,"web_url":"…","access_level":40,"created_at":"2024-01-01T00:00:00Z","expires_at":null}"#).unwrap();
        assert_eq!(m.access_level, 40);
    }

    #[test]
    fn create_body_serialises_as_gitlab_expects() {
        let body = CreateProjectAccessToken::new(
            "gto-c1-uid",
            None,
            &[Scope::ReadRegistry],
            AccessLevel::Reporter,
            NaiveDate::from_ymd_opt(2025, 9, 8).unwrap(),
        );
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"name":"gto-c1-uid","scopes":["read_registry"],"access_level":20,"expires_at":"2025-09-08"}"#
        );
    }
}
