//! What the operator's own GitLab credential reaches, as shown in a `GitLabConnection`'s status.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The groups and projects the operator's credential reaches, and how that was found.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperatorReach {
    /// `associations` (`GET /personal_access_tokens/self/associations`, GitLab 17.4+) or
    /// `memberships` (the fallback: `GET /groups?min_access_level=10`, groups only).
    pub source: String,
    /// When it was read (again after an hour, or when the connection changes).
    pub checked_at: DateTime<Utc>,
    /// Groups, with the operator's level (the highest direct membership in it or an ancestor).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<ReachEntry>,
    /// Projects, with the operator's level (the higher of its direct and group membership).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub projects: Vec<ReachEntry>,
    /// How many groups and projects there were in all (the lists keep the first 50 of each).
    pub total: u32,
}

/// One group or project the operator reaches.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReachEntry {
    /// Full path.
    pub path: String,
    /// GitLab's `access_level` (absent: not reported, e.g. reached through a share only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_level: Option<u32>,
}
