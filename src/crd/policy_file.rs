//! A policy file kept in a GitLab repository, named by a `GitLabConnection` (issue 11), with the
//! cluster-side ceiling that bounds what it may grant, and what the operator last read of it.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{AccessLevel, Days, Scope};

/// Where the GitLab-kept policies live and how far they may reach.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyFile {
    /// The GitLab project holding the file (full path or numeric id).
    #[schemars(length(min = 1, max = 255))]
    pub project: String,
    /// The file's path in the repository, e.g. `clusters/prod/token-policies.yaml`.
    #[schemars(length(min = 1, max = 1024))]
    pub path: String,
    /// Branch, tag or commit to read (default `main`).
    #[serde(default = "default_ref", rename = "ref")]
    #[schemars(length(min = 1, max = 255))]
    pub ref_: String,
    /// What the file's policies may grant at most; the cluster admin's bound on GitLab admins.
    pub ceiling: PolicyCeiling,
}

fn default_ref() -> String {
    "main".to_string()
}

/// The most a GitLab-kept policy may grant: its own bounds are cut down to these.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyCeiling {
    /// Namespace name globs the file's policies may select (and nothing else), e.g. `svc-*`.
    #[schemars(length(min = 1))]
    pub namespaces: Vec<String>,
    /// Highest role (default `reporter`).
    #[serde(default = "default_ceiling_level")]
    pub max_access_level: AccessLevel,
    /// Scopes the file's policies may allow (empty: the read-only ones).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<Scope>,
    /// Longest token lifetime (default 30d).
    #[serde(default = "default_ceiling_lifetime")]
    pub max_lifetime: Days,
}

fn default_ceiling_level() -> AccessLevel {
    AccessLevel::Reporter
}

fn default_ceiling_lifetime() -> Days {
    Days::new(30).expect("30 is within bounds")
}

/// What the operator last read of the policy file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyFileStatus {
    /// The commit the file was last read at (`last_commit_id` of the file on the ref).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// `Valid`, `Invalid` (the last valid version stays in force) or `Missing` (file or ref gone:
    /// its grants are withdrawn).
    pub state: String,
    /// Every problem found, or what is in force.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// The commit whose policies are in force (absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_commit: Option<String>,
    /// Names of the policies in force, as tokens report them (`gitlab:<connection>/<name>`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<String>,
    /// When the file was last read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_read_time: Option<DateTime<Utc>>,
}
