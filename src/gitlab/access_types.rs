//! Response bodies of the endpoints delegation reads (gitlab-api.md §10.2–§10.3,
//! gitlab-access-and-ssh.md §3): a group with its `shared_with_groups`, and users by username.

use chrono::NaiveDate;
use serde::Deserialize;

/// One entry of a project's or group's `shared_with_groups`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SharedWithGroup {
    /// The invited group's id.
    pub group_id: u64,
    /// The invited group's full path.
    pub group_full_path: String,
    /// The share's level (members get at most this).
    pub group_access_level: u32,
    /// The share's last day (it grants nothing from that date on).
    #[serde(default)]
    pub expires_at: Option<NaiveDate>,
}

/// `GET /groups/:id` (`GroupDetail`): the fields delegation reads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GroupDetail {
    /// Numeric id.
    pub id: u64,
    /// Full path, e.g. `acme/team-a`.
    pub full_path: String,
    /// Groups this group is shared with (`null` on old versions: none).
    #[serde(default, deserialize_with = "null_empty_shares")]
    pub shared_with_groups: Vec<SharedWithGroup>,
}

/// `null` share lists decode as empty.
pub(super) fn null_empty_shares<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<SharedWithGroup>, D::Error> {
    Ok(Option::<Vec<SharedWithGroup>>::deserialize(d)?.unwrap_or_default())
}

/// `GET /projects/:id/repository/files/:file_path?ref=`: a file with its content and commits.
#[derive(Clone, Deserialize)]
pub struct RepositoryFile {
    /// `base64` (the only encoding GitLab answers with here).
    #[serde(default)]
    pub encoding: Option<String>,
    /// The content, base64-encoded.
    pub content: String,
    /// The commit the ref points at.
    #[serde(default)]
    pub commit_id: Option<String>,
    /// The last commit that changed this file on the ref.
    #[serde(default)]
    pub last_commit_id: Option<String>,
}

impl std::fmt::Debug for RepositoryFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepositoryFile")
            .field("last_commit_id", &self.last_commit_id)
            .field("bytes", &self.content.len())
            .finish()
    }
}

/// `GET /personal_access_tokens/self/associations` (17.4+): one page of what the token reaches.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct Associations {
    /// Groups, with the highest direct membership level in them or an ancestor.
    #[serde(default)]
    pub groups: Vec<AssociatedGroup>,
    /// Projects, with the direct and the group membership level.
    #[serde(default)]
    pub projects: Vec<AssociatedProject>,
}

/// A group in `associations` (no `full_path` there: it is read from `web_url`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct AssociatedGroup {
    /// Numeric id.
    pub id: u64,
    /// `<gitlab>/groups/<full path>`.
    #[serde(default)]
    pub web_url: Option<String>,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// Highest direct membership level in the group or an ancestor (`null`: none).
    #[serde(default)]
    pub access_levels: Option<u32>,
}

impl AssociatedGroup {
    /// The group's full path, from its `web_url`.
    pub fn full_path(&self) -> Option<String> {
        let url = self.web_url.as_deref()?;
        url.split_once("/groups/")
            .map(|(_, p)| p.trim_end_matches('/').to_string())
    }
}

/// A project in `associations`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct AssociatedProject {
    /// Numeric id.
    pub id: u64,
    /// Full path.
    pub path_with_namespace: String,
    /// Direct and group membership levels.
    #[serde(default)]
    pub access_levels: Option<ProjectAccessLevels>,
}

/// A project's membership levels in `associations` (either may be `null`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct ProjectAccessLevels {
    /// Direct project membership.
    #[serde(default)]
    pub project_access_level: Option<u32>,
    /// Highest direct membership in the project's group or an ancestor.
    #[serde(default)]
    pub group_access_level: Option<u32>,
}

/// A group in `GET /groups` (the membership-listing fallback).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ListedGroup {
    /// Numeric id.
    pub id: u64,
    /// Full path.
    pub full_path: String,
}
