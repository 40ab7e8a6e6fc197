//! Seeding: users, groups, projects (with content flags), memberships and tokens, through a Rust
//! API (`Seeder`) or the JSON control API, plus `seed_default`, a small realistic GitLab.

use std::sync::Arc;

use chrono::{Days, NaiveDate};
use serde::{Deserialize, Serialize};

use super::{
    model::{
        DEVELOPER, Group, MAINTAINER, Membership, OWNER, PERSONAL_TOKEN_SCOPES, Project,
        RESOURCE_TOKEN_LEVELS, RESOURCE_TOKEN_SCOPES, Source, TokenKind, User, UserType,
    },
    state::GitLabState,
    tokens::{NewResourceToken, check_expiry},
};

/// Why a seed request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SeedError {
    /// No such user.
    #[error("unknown user {0:?}")]
    UnknownUser(String),
    /// No such group (parents must exist or be creatable).
    #[error("unknown group {0:?}")]
    UnknownGroup(String),
    /// No such project or group.
    #[error("unknown project or group {0:?}")]
    UnknownSource(String),
    /// Name already taken.
    #[error("{0:?} already exists")]
    Duplicate(String),
    /// Bad input.
    #[error("invalid seed: {0}")]
    Invalid(String),
}

/// A user to create.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UserSeed {
    /// Username.
    pub username: String,
    /// Display name (defaults to the username).
    #[serde(default)]
    pub name: Option<String>,
    /// Instance administrator.
    #[serde(default)]
    pub admin: bool,
}

/// A group to create (missing ancestors are created as private groups).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GroupSeed {
    /// Full path, e.g. `acme/platform`.
    pub full_path: String,
    /// Display name (defaults to the capitalised last segment).
    #[serde(default)]
    pub name: Option<String>,
    /// `private` (default), `internal` or `public`.
    #[serde(default)]
    pub visibility: Option<String>,
}

/// A project to create (its group must exist or is created).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProjectSeed {
    /// Full path, e.g. `acme/team-a/app`.
    pub full_path: String,
    /// `private` (default), `internal` or `public`.
    #[serde(default)]
    pub visibility: Option<String>,
    /// Archived (read-only).
    #[serde(default)]
    pub archived: bool,
    /// Carries a git repository (content seeded by the git front).
    #[serde(default)]
    pub has_repository: bool,
    /// Container repository names; `""` is the root image.
    #[serde(default)]
    pub images: Vec<String>,
    /// Carries Helm charts (content seeded by the Helm front).
    #[serde(default)]
    pub has_chart: bool,
}

/// A direct membership; `access_level` 0 ("no access") removes it, e.g. to withdraw access.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemberSeed {
    /// Username.
    pub username: String,
    /// Full path of a project or group (a project wins if both exist).
    pub path: String,
    /// Role.
    pub access_level: u32,
    /// The membership ends on this date (00:00 UTC).
    #[serde(default)]
    pub expires_at: Option<NaiveDate>,
}

pub use super::seed_groups::ShareSeed;

/// A change to an existing project.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProjectUpdate {
    /// Full path of the project.
    pub full_path: String,
    /// New `archived` flag.
    #[serde(default)]
    pub archived: Option<bool>,
    /// New visibility.
    #[serde(default)]
    pub visibility: Option<String>,
}

/// A personal access token to create; its value is returned.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenSeed {
    /// Owner.
    pub username: String,
    /// Token name.
    pub name: String,
    /// Scopes.
    pub scopes: Vec<String>,
    /// Expiry date (never expires when absent).
    #[serde(default)]
    pub expires_at: Option<NaiveDate>,
}

/// A project the integrator may fill with content through the fronts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SeededProject {
    /// Numeric id.
    pub id: u64,
    /// `path_with_namespace`.
    pub path: String,
    /// Should carry a git repository.
    pub has_repository: bool,
    /// Should carry container images (see `images`).
    pub has_image: bool,
    /// Image names (`""` = root image).
    pub images: Vec<String>,
    /// Should carry Helm charts.
    pub has_chart: bool,
}

/// Seeds the state.
#[derive(Debug, Clone)]
pub struct Seeder {
    state: Arc<GitLabState>,
}

fn title(segment: &str) -> String {
    let mut chars = segment.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

fn check_visibility(v: Option<String>) -> Result<String, SeedError> {
    let v = v.unwrap_or_else(|| "private".into());
    if ["private", "internal", "public"].contains(&v.as_str()) {
        Ok(v)
    } else {
        Err(SeedError::Invalid(format!("visibility {v:?}")))
    }
}

impl Seeder {
    /// A seeder for `state`.
    pub fn new(state: Arc<GitLabState>) -> Self {
        Self { state }
    }

    /// The state it seeds.
    pub(crate) fn state(&self) -> &GitLabState {
        &self.state
    }

    /// Creates a user; returns its id.
    pub fn user(&self, seed: UserSeed) -> Result<u64, SeedError> {
        if seed.username.is_empty() {
            return Err(SeedError::Invalid("empty username".into()));
        }
        let now = self.state.now();
        let mut store = self.state.store();
        if store.user_by_name(&seed.username).is_some() {
            return Err(SeedError::Duplicate(seed.username));
        }
        let id = store.next_user_id();
        let name = seed.name.unwrap_or_else(|| seed.username.clone());
        store.users.insert(
            id,
            User {
                id,
                username: seed.username,
                name,
                user_type: UserType::Human,
                is_admin: seed.admin,
                created_at: now,
            },
        );
        Ok(id)
    }

    /// Creates a group (and missing ancestors); returns its id.
    pub fn group(&self, seed: GroupSeed) -> Result<u64, SeedError> {
        let visibility = check_visibility(seed.visibility)?;
        let path = seed.full_path.trim_matches('/').to_string();
        if path.is_empty() || path.split('/').any(str::is_empty) {
            return Err(SeedError::Invalid(format!("group path {:?}", seed.full_path)));
        }
        let now = self.state.now();
        let mut store = self.state.store();
        if store.find_group(&path).is_some() {
            return Err(SeedError::Duplicate(path));
        }
        let mut parent: Option<u64> = None;
        let segments: Vec<&str> = path.split('/').collect();
        for (i, segment) in segments.iter().enumerate() {
            let full = segments[..=i].join("/");
            if let Some(g) = store.find_group(&full) {
                parent = Some(g.id);
                continue;
            }
            let last = i + 1 == segments.len();
            let id = store.next_group_id();
            let name = if last {
                seed.name.clone().unwrap_or_else(|| title(segment))
            } else {
                title(segment)
            };
            let group = Group {
                id,
                name,
                path: segment.to_string(),
                full_path: full,
                parent_id: parent,
                visibility: if last {
                    visibility.clone()
                } else {
                    "private".into()
                },
                description: String::new(),
                created_at: now,
            };
            store.insert_group(group);
            parent = Some(id);
        }
        parent.ok_or_else(|| SeedError::Invalid("empty group path".into()))
    }

    /// Creates a project (and its missing groups); returns its id.
    pub fn project(&self, seed: ProjectSeed) -> Result<u64, SeedError> {
        let visibility = check_visibility(seed.visibility.clone())?;
        let path = seed.full_path.trim_matches('/').to_string();
        let Some((ns, name)) = path.rsplit_once('/') else {
            return Err(SeedError::Invalid(format!("project path {path:?} needs a group")));
        };
        if self.state.store().find_project(&path).is_some() {
            return Err(SeedError::Duplicate(path));
        }
        // Bind first: a lock guard in a match scrutinee would live through `self.group` (deadlock).
        let existing = self.state.store().find_group(ns).map(|g| g.id);
        let ns_id = match existing {
            Some(id) => id,
            None => self.group(GroupSeed {
                full_path: ns.into(),
                ..GroupSeed::default()
            })?,
        };
        let now = self.state.now();
        let mut store = self.state.store();
        let id = store.next_project_id();
        store.insert_project(Project {
            id,
            name: name.to_string(),
            path: name.to_string(),
            namespace_id: ns_id,
            visibility,
            archived: seed.archived,
            default_branch: "main".into(),
            description: String::new(),
            images: seed.images,
            has_repository: seed.has_repository,
            has_chart: seed.has_chart,
            created_at: now,
        });
        Ok(id)
    }

    /// Adds a direct membership.
    pub fn member(&self, seed: MemberSeed) -> Result<(), SeedError> {
        if ![0, 5, 10, 15, 20, 30, 40, 50].contains(&seed.access_level) {
            return Err(SeedError::Invalid(format!("access level {}", seed.access_level)));
        }
        let now = self.state.now();
        let mut store = self.state.store();
        let user = store
            .user_by_name(&seed.username)
            .ok_or(SeedError::UnknownUser(seed.username.clone()))?
            .id;
        let source = match (store.find_project(&seed.path), store.find_group(&seed.path)) {
            (Some(p), _) => Source::Project(p.id),
            (None, Some(g)) => Source::Group(g.id),
            (None, None) => return Err(SeedError::UnknownSource(seed.path)),
        };
        if seed.access_level == 0 {
            store.remove_member(user, source);
        } else {
            store.set_member(Membership {
                source,
                user_id: user,
                access_level: seed.access_level,
                created_at: now,
            });
            store.sharing.set_member_expiry(user, source, seed.expires_at);
        }
        Ok(())
    }

    /// Changes a project's `archived` flag and/or visibility.
    pub fn update_project(&self, update: ProjectUpdate) -> Result<(), SeedError> {
        let visibility = match update.visibility {
            Some(v) => Some(check_visibility(Some(v))?),
            None => None,
        };
        let mut store = self.state.store();
        let id = store
            .find_project(&update.full_path)
            .map(|p| p.id)
            .ok_or(SeedError::UnknownSource(update.full_path.clone()))?;
        if let Some(p) = store.projects.get_mut(&id) {
            if let Some(archived) = update.archived {
                p.archived = archived;
            }
            if let Some(v) = visibility {
                p.visibility = v;
            }
        }
        Ok(())
    }

    /// Creates a personal access token; returns `(id, secret)`.
    pub fn personal_token(&self, seed: TokenSeed) -> Result<(u64, String), SeedError> {
        if let Some(bad) = seed
            .scopes
            .iter()
            .find(|s| !PERSONAL_TOKEN_SCOPES.contains(&s.as_str()))
        {
            return Err(SeedError::Invalid(format!("scope {bad:?}")));
        }
        let now = self.state.now();
        let mut store = self.state.store();
        let user = store
            .user_by_name(&seed.username)
            .ok_or(SeedError::UnknownUser(seed.username.clone()))?
            .id;
        let issued = store.insert_token(
            TokenKind::Personal,
            None,
            &seed.name,
            None,
            seed.scopes,
            user,
            seed.expires_at,
            None,
            now,
        );
        Ok((issued.token.id, issued.secret))
    }

    /// Creates a project or group access token directly (no caller checks); returns `(id, secret)`.
    pub fn resource_token(
        &self,
        path: &str,
        name: &str,
        scopes: &[&str],
        access_level: u32,
        expires_at: Option<NaiveDate>,
    ) -> Result<(u64, String), SeedError> {
        if let Some(bad) = scopes.iter().find(|s| !RESOURCE_TOKEN_SCOPES.contains(s)) {
            return Err(SeedError::Invalid(format!("scope {bad:?}")));
        }
        if !RESOURCE_TOKEN_LEVELS.contains(&access_level) {
            return Err(SeedError::Invalid(format!("access level {access_level}")));
        }
        let now = self.state.now();
        let max_days = self.state.settings().max_token_lifetime_days;
        if let Some(date) = expires_at {
            check_expiry(date, now.date_naive(), max_days).map_err(|e| SeedError::Invalid(e.to_string()))?;
        }
        let mut store = self.state.store();
        let source = match (store.find_project(path), store.find_group(path)) {
            (Some(p), _) => Source::Project(p.id),
            (None, Some(g)) => Source::Group(g.id),
            (None, None) => return Err(SeedError::UnknownSource(path.into())),
        };
        let new = NewResourceToken {
            name: name.into(),
            description: None,
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            access_level,
            expires_at,
        };
        let issued = store
            .create_resource_token(source, new, now, max_days)
            .map_err(|e| SeedError::Invalid(e.to_string()))?;
        Ok((issued.token.id, issued.secret))
    }

    /// Every project with its content flags (for the integrator to fill through the fronts).
    pub fn projects(&self) -> Vec<SeededProject> {
        let store = self.state.store();
        store
            .projects
            .values()
            .map(|p| SeededProject {
                id: p.id,
                path: store.project_path(p),
                has_repository: p.has_repository,
                has_image: !p.images.is_empty(),
                images: p.images.clone(),
                has_chart: p.has_chart,
            })
            .collect()
    }
}

/// What `seed_default` created: the users' PATs (returned once) and the projects. Its `Debug`
/// output redacts the tokens.
#[derive(Clone, Serialize)]
pub struct DefaultSeed {
    /// PAT (`api`) of `operator`, Owner of both top groups (`acme`, `other-org`).
    pub operator_token: String,
    /// PAT (`api`) of `dev`, Developer on `acme/team-a`.
    pub dev_token: String,
    /// PAT (`api`) of `maint`, Maintainer on `acme/team-b`.
    pub maint_token: String,
    /// PAT (`api`) of `stranger`, Owner of `other-org`.
    pub stranger_token: String,
    /// All projects with content flags.
    pub projects: Vec<SeededProject>,
}

impl std::fmt::Debug for DefaultSeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DefaultSeed")
            .field("tokens", &"[redacted]")
            .field("projects", &self.projects)
            .finish()
    }
}

fn plain(path: &str) -> ProjectSeed {
    ProjectSeed {
        full_path: path.into(),
        has_repository: true,
        ..ProjectSeed::default()
    }
}

/// Seeds a small realistic GitLab (see `DefaultSeed`); PATs expire after the maximum lifetime.
pub fn seed_default(seeder: &Seeder) -> Result<DefaultSeed, SeedError> {
    for (username, name) in [
        ("operator", "Token Operator"),
        ("dev", "Dana Developer"),
        ("maint", "Max Maintainer"),
        ("stranger", "Sam Stranger"),
    ] {
        seeder.user(UserSeed {
            username: username.into(),
            name: Some(name.into()),
            admin: false,
        })?;
    }
    for (path, name) in [
        ("acme", "Acme"),
        ("acme/platform", "Platform"),
        ("acme/team-a", "Team A"),
        ("acme/team-b", "Team B"),
        ("other-org", "Other Org"),
    ] {
        seeder.group(GroupSeed {
            full_path: path.into(),
            name: Some(name.into()),
            visibility: None,
        })?;
    }
    seeder.project(ProjectSeed {
        images: vec![String::new()],
        ..plain("acme/platform/infra")
    })?;
    seeder.project(ProjectSeed {
        has_chart: true,
        ..plain("acme/platform/charts")
    })?;
    seeder.project(ProjectSeed {
        images: vec![String::new()],
        ..plain("acme/team-a/app")
    })?;
    seeder.project(ProjectSeed {
        images: vec![String::new(), "worker".into()],
        has_chart: true,
        ..plain("acme/team-b/api")
    })?;
    seeder.project(plain("other-org/secret-project"))?;
    seeder.project(ProjectSeed {
        archived: true,
        ..plain("acme/platform/legacy")
    })?;
    seeder.project(ProjectSeed {
        visibility: Some("public".into()),
        ..plain("acme/platform/docs")
    })?;
    for (username, path, level) in [
        ("operator", "acme", OWNER),
        ("operator", "other-org", OWNER),
        ("dev", "acme/team-a", DEVELOPER),
        ("maint", "acme/team-b", MAINTAINER),
        ("stranger", "other-org", OWNER),
    ] {
        seeder.member(MemberSeed {
            username: username.into(),
            path: path.into(),
            access_level: level,
            expires_at: None,
        })?;
    }
    let max_days = u64::from(seeder.state.settings().max_token_lifetime_days);
    let expires_at = seeder.state.clock().today().checked_add_days(Days::new(max_days));
    let pat = |username: &str, name: &str| {
        seeder
            .personal_token(TokenSeed {
                username: username.into(),
                name: name.into(),
                scopes: vec!["api".into()],
                expires_at,
            })
            .map(|(_, secret)| secret)
    };
    Ok(DefaultSeed {
        operator_token: pat("operator", "gitlab-token-operator")?,
        dev_token: pat("dev", "dev-laptop")?,
        maint_token: pat("maint", "maint-cli")?,
        stranger_token: pat("stranger", "stranger-cli")?,
        projects: seeder.projects(),
    })
}

#[cfg(test)]
mod tests {
    use std::{sync::mpsc, time::Duration};

    use super::*;
    use crate::gitlab::{clock::Clock, state::Settings};

    fn seeder() -> Seeder {
        let settings = Settings {
            max_token_lifetime_days: 365,
            rate_limit: None,
            latency: None,
            base_url: "http://127.0.0.1:1".into(),
            registry_host: "127.0.0.1:1".into(),
            ssh_host: None,
            version: "17.11.0".into(),
        };
        Seeder::new(Arc::new(GitLabState::new(settings, Clock::new())))
    }

    #[test]
    fn projects_create_missing_groups_without_deadlocking() {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let s = seeder();
            let made = s.project(ProjectSeed {
                full_path: "fresh/sub/svc".into(),
                ..ProjectSeed::default()
            });
            let _ = tx.send((
                made.is_ok(),
                s.projects(),
                s.group(GroupSeed {
                    full_path: "fresh/sub".into(),
                    ..GroupSeed::default()
                }),
            ));
        });
        let (ok, projects, dup) = rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("seeding hung"));
        assert!(ok);
        assert_eq!(
            projects.iter().map(|p| p.path.as_str()).collect::<Vec<_>>(),
            vec!["fresh/sub/svc"]
        );
        assert_eq!(dup, Err(SeedError::Duplicate("fresh/sub".into())));
    }

    #[test]
    fn seed_input_is_validated() {
        let s = seeder();
        let cases = [
            s.project(ProjectSeed {
                full_path: "lonely".into(),
                ..ProjectSeed::default()
            })
            .map(|_| ()),
            s.group(GroupSeed {
                full_path: "a//b".into(),
                ..GroupSeed::default()
            })
            .map(|_| ()),
            s.group(GroupSeed {
                full_path: "g".into(),
                visibility: Some("secret".into()),
                ..GroupSeed::default()
            })
            .map(|_| ()),
            s.member(MemberSeed {
                username: "ghost".into(),
                path: "g".into(),
                access_level: 30,
                expires_at: None,
            }),
            s.user(UserSeed::default()).map(|_| ()),
        ];
        for result in cases {
            assert!(result.is_err(), "{result:?}");
        }
        assert!(s.resource_token("nowhere", "t", &["api"], 40, None).is_err());
    }
}
