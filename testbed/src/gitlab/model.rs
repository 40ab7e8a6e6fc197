//! The emulator's entities: users (humans and bots), groups, projects, memberships and tokens,
//! plus GitLab's access levels and scope lists.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

/// Days revoked/expired resource tokens stay listed.
pub const RETENTION_DAYS: u64 = 30;

/// Guest role.
pub const GUEST: u32 = 10;
/// Planner role (17.7+).
pub const PLANNER: u32 = 15;
/// Reporter role.
pub const REPORTER: u32 = 20;
/// Developer role.
pub const DEVELOPER: u32 = 30;
/// Maintainer role.
pub const MAINTAINER: u32 = 40;
/// Owner role.
pub const OWNER: u32 = 50;

/// Roles a project/group access token may be given.
pub const RESOURCE_TOKEN_LEVELS: &[u32] = &[GUEST, PLANNER, REPORTER, DEVELOPER, MAINTAINER, OWNER];

/// Scopes accepted for project and group access tokens (all non-admin scopes minus `read_user`).
pub const RESOURCE_TOKEN_SCOPES: &[&str] = &[
    "api",
    "read_api",
    "create_runner",
    "manage_runner",
    "k8s_proxy",
    "self_rotate",
    "read_repository",
    "write_repository",
    "read_registry",
    "write_registry",
    "read_virtual_registry",
    "write_virtual_registry",
    "read_observability",
    "write_observability",
    "ai_features",
];

/// Scopes accepted for personal access tokens (seeded through the controls).
pub const PERSONAL_TOKEN_SCOPES: &[&str] = &[
    "api",
    "read_api",
    "read_user",
    "create_runner",
    "manage_runner",
    "k8s_proxy",
    "self_rotate",
    "read_repository",
    "write_repository",
    "read_registry",
    "write_registry",
    "read_virtual_registry",
    "write_virtual_registry",
    "ai_features",
    "sudo",
    "admin_mode",
];

/// Scopes accepted for deploy tokens.
pub const DEPLOY_TOKEN_SCOPES: &[&str] = &[
    "read_repository",
    "read_registry",
    "write_registry",
    "read_package_registry",
    "write_package_registry",
    "read_virtual_registry",
    "write_virtual_registry",
];

/// Kind of user account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UserType {
    /// A person.
    Human,
    /// The bot behind a project access token.
    ProjectBot,
}

/// A user account.
#[derive(Debug, Clone)]
pub struct User {
    /// Numeric id.
    pub id: u64,
    /// Unique username.
    pub username: String,
    /// Display name.
    pub name: String,
    /// Human or bot.
    pub user_type: UserType,
    /// Instance administrator.
    pub is_admin: bool,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

/// A group (namespace); nested through `parent_id`.
#[derive(Debug, Clone)]
pub struct Group {
    /// Numeric namespace id.
    pub id: u64,
    /// Display name.
    pub name: String,
    /// Last path segment.
    pub path: String,
    /// Full path, e.g. `acme/platform`.
    pub full_path: String,
    /// Parent group, None for top-level groups.
    pub parent_id: Option<u64>,
    /// `private`, `internal` or `public`.
    pub visibility: String,
    /// Description.
    pub description: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

/// A project.
#[derive(Debug, Clone)]
pub struct Project {
    /// Numeric id.
    pub id: u64,
    /// Display name.
    pub name: String,
    /// Last path segment.
    pub path: String,
    /// Owning group.
    pub namespace_id: u64,
    /// `private`, `internal` or `public`.
    pub visibility: String,
    /// Archived projects are read-only.
    pub archived: bool,
    /// Default branch name.
    pub default_branch: String,
    /// Description.
    pub description: String,
    /// Container repository names (`""` is the project's root image).
    pub images: Vec<String>,
    /// Whether the project is meant to carry a git repository (content seeded by the fronts).
    pub has_repository: bool,
    /// Whether the project is meant to carry Helm charts (content seeded by the fronts).
    pub has_chart: bool,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

/// What a membership or a resource token belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(tag = "type", content = "id", rename_all = "snake_case")]
pub enum Source {
    /// A project by id.
    Project(u64),
    /// A group by id.
    Group(u64),
}

impl Source {
    /// `project` or `group` (as in `resource_type` and error texts).
    pub fn kind(self) -> &'static str {
        match self {
            Source::Project(_) => "project",
            Source::Group(_) => "group",
        }
    }
}

/// A direct membership of a user in a project or group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// Project or group.
    pub source: Source,
    /// Member.
    pub user_id: u64,
    /// Role.
    pub access_level: u32,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

/// Kind of a personal-access-token record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    /// A human's personal access token.
    Personal,
    /// A project access token (owned by a project bot).
    Project,
    /// A group access token (owned by a group bot).
    Group,
}

/// A PAT/PrAT/GrAT record (GitLab stores all three in `personal_access_tokens`).
#[derive(Debug, Clone)]
pub struct Token {
    /// Record id; changes on every rotation.
    pub id: u64,
    /// Kind.
    pub kind: TokenKind,
    /// The project or group for resource tokens.
    pub resource: Option<Source>,
    /// Name (not unique).
    pub name: String,
    /// Optional description.
    pub description: Option<String>,
    /// Scopes.
    pub scopes: Vec<String>,
    /// Owner (the bot for resource tokens).
    pub user_id: u64,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Expiry date; the token dies at 00:00 UTC on it.
    pub expires_at: Option<NaiveDate>,
    /// Revoked flag.
    pub revoked: bool,
    /// When it was revoked.
    pub revoked_at: Option<DateTime<Utc>>,
    /// Last use.
    pub last_used_at: Option<DateTime<Utc>>,
    /// Up to five distinct client IPs.
    pub last_used_ips: Vec<String>,
    /// The token this one replaced by rotation (token family).
    pub previous_id: Option<u64>,
    /// SHA-256 digest of the token string (the string itself is never stored).
    pub digest: [u8; 32],
}

impl Token {
    /// Whether `today` has reached the expiry date.
    pub fn expired_on(&self, today: NaiveDate) -> bool {
        self.expires_at.is_some_and(|d| today >= d)
    }

    /// `!revoked && !expired`.
    pub fn active_on(&self, today: NaiveDate) -> bool {
        !self.revoked && !self.expired_on(today)
    }

    /// Whether a resource token is still listed: GitLab 17.9+ keeps revoked and expired project
    /// and group tokens (and their bots) for 30 days after they became inactive.
    pub fn retained_on(&self, today: NaiveDate) -> bool {
        let inactive_since = match (self.revoked_at, self.expires_at) {
            (Some(at), _) if self.revoked => Some(at.date_naive()),
            (_, Some(date)) if today >= date => Some(date),
            _ => None,
        };
        inactive_since.is_none_or(|since| {
            since
                .checked_add_days(chrono::Days::new(RETENTION_DAYS))
                .is_none_or(|end| today <= end)
        })
    }
}

/// A deploy token (project or group).
#[derive(Debug, Clone)]
pub struct DeployToken {
    /// Record id.
    pub id: u64,
    /// Project or group it belongs to.
    pub resource: Source,
    /// Name.
    pub name: String,
    /// Login username that must accompany the token.
    pub username: String,
    /// Scopes.
    pub scopes: Vec<String>,
    /// Expiry instant (a datetime, unlike PAT dates).
    pub expires_at: Option<DateTime<Utc>>,
    /// Revoked flag.
    pub revoked: bool,
    /// Deleted through the API (GitLab destroys the record; kept here for the leak audit).
    pub deleted: bool,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// SHA-256 digest of the token string.
    pub digest: [u8; 32],
}

impl DeployToken {
    /// Whether the expiry instant has passed.
    pub fn expired_at(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|t| now >= t)
    }
}

/// Formats a timestamp as GitLab does: milliseconds and `Z`.
pub fn fmt_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// Formats a date as `YYYY-MM-DD`.
pub fn fmt_date(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap_or_default()
    }

    fn token(expires_at: Option<&str>, revoked_at: Option<&str>) -> Token {
        Token {
            id: 1,
            kind: TokenKind::Project,
            resource: Some(Source::Project(1)),
            name: "t".into(),
            description: None,
            scopes: vec![],
            user_id: 1,
            created_at: Utc::now(),
            expires_at: expires_at.map(date),
            revoked: revoked_at.is_some(),
            revoked_at: revoked_at
                .and_then(|d| date(d).and_hms_opt(12, 0, 0))
                .map(|t| t.and_utc()),
            last_used_at: None,
            last_used_ips: vec![],
            previous_id: None,
            digest: [0; 32],
        }
    }

    #[test]
    fn expiry_activity_and_retention_table() {
        // (expires_at, revoked_at, today, expired, active, retained)
        let cases = [
            (Some("2030-07-01"), None, "2030-06-30", false, true, true),
            (Some("2030-07-01"), None, "2030-07-01", true, false, true),
            (Some("2030-07-01"), None, "2030-07-31", true, false, true),
            (Some("2030-07-01"), None, "2030-08-01", true, false, false),
            (None, Some("2030-01-01"), "2030-01-31", false, false, true),
            (None, Some("2030-01-01"), "2030-02-01", false, false, false),
            (None, None, "2099-01-01", false, true, true),
        ];
        for (expires, revoked, today, expired, active, retained) in cases {
            let t = token(expires, revoked);
            let today = date(today);
            assert_eq!(
                (t.expired_on(today), t.active_on(today), t.retained_on(today)),
                (expired, active, retained),
                "{expires:?} {revoked:?} {today}"
            );
        }
    }
}
