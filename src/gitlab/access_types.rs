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
