//! The shim's pure parts (DESIGN §3, §4): from an annotated Flux source to the token it needs.
//!
//! - [`annotations`]: the `gitlabtokens.io/` annotations with their defaults;
//! - [`url`]: strict URL parsing and host checks against a connection;
//! - [`infer`]: per-kind inference of project, scopes and Secret shape;
//! - [`share`]: whether sources naming one Secret can share a token, and the `GitLabTokenSpec`.

pub mod annotations;
pub mod infer;
pub mod share;
pub mod url;

#[cfg(test)]
mod tests;

use std::fmt;

pub use annotations::{ShimAnnotations, is_opted_in};
pub use infer::{InferredRequest, SourceKind, infer};
pub use share::{SharedToken, SourceNeed, needs_agree, spec_for_sources};
pub use url::ConnectionFacts;

use crate::reason::Reason;

/// How the project was named: a path or id GitLab can look up directly, or a registry path
/// whose project is its longest prefix that exists in GitLab.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ProjectHint {
    /// A project path (`group/sub/project`), as the user wrote it.
    Path(String),
    /// A numeric project id.
    Id(u64),
    /// A registry repository path; the project is the longest of `candidates` GitLab knows.
    RegistryPath {
        /// The full repository path (`group/project/image`).
        path: String,
        /// Prefixes to look up, longest first (at least two segments each).
        candidates: Vec<String>,
    },
}

impl ProjectHint {
    /// A registry path hint with its lookup candidates (longest first, down to `group/project`).
    pub fn registry(path: &str) -> Self {
        let segments: Vec<&str> = path.split('/').collect();
        let candidates = (2..=segments.len())
            .rev()
            .map(|n| segments[..n].join("/"))
            .collect();
        Self::RegistryPath {
            path: path.to_string(),
            candidates,
        }
    }

    /// The value for `GitLabTokenSpec.project` when no lookup is needed (path or id).
    pub fn as_spec_project(&self) -> Option<String> {
        match self {
            Self::Path(p) => Some(p.clone()),
            Self::Id(id) => Some(id.to_string()),
            Self::RegistryPath { .. } => None,
        }
    }
}

impl fmt::Display for ProjectHint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Path(p) => f.write_str(p),
            Self::Id(id) => write!(f, "project id {id}"),
            Self::RegistryPath { path, .. } => write!(f, "registry path {path}"),
        }
    }
}

/// A request the shim will not serve, with its reason and a message for the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct Refusal {
    /// The PascalCase reason.
    pub reason: Reason,
    /// What is wrong, naming the field or annotation and value.
    pub message: String,
}

impl Refusal {
    /// Builds a refusal.
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}
