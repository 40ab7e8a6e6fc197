//! The shim's pure parts (DESIGN §3, §4): from an annotated Flux source to the token it needs.
//!
//! - [`annotations`]: the `gitlabtokens.io/` annotations with their defaults;
//! - [`url`]: strict URL parsing and host checks against a connection;
//! - [`infer`]: per-kind inference of project, scopes and Secret shape;
//! - [`kind_choice`]: the credential kind a source asks for and whether its consumer can use it;
//! - [`share`]: whether sources naming one Secret can share a token, and the `GitLabTokenSpec`;
//! - [`refused`]: the `GitLabToken` that carries a refusal decided before any token spec exists;
//! - [`warnings`]: Warning events for annotations that are ignored (typos, with a did-you-mean).

pub mod annotations;
pub mod argocd;
pub mod argocd_templates;
pub mod infer;
pub mod kind_choice;
pub mod refused;
pub mod share;
pub mod ssh_url;
pub mod url;
pub mod warnings;

#[cfg(test)]
mod tests;

use std::fmt;

pub use annotations::{ShimAnnotations, is_opted_in};
pub use infer::{InferredRequest, SourceKind, infer};
pub use refused::shim_refusal;
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

/// Most segments a GitLab project path can have: 20 nested groups (GitLab's limit) and the
/// project. Longer registry-path prefixes are never looked up.
pub const MAX_PROJECT_DEPTH: usize = 21;

impl ProjectHint {
    /// A registry path hint with its lookup candidates (longest first, down to `group/project`;
    /// none deeper than [`MAX_PROJECT_DEPTH`], so a long path costs at most 20 lookups).
    pub fn registry(path: &str) -> Self {
        let segments: Vec<&str> = path.split('/').collect();
        let candidates = (2..=segments.len().min(MAX_PROJECT_DEPTH))
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

    /// What the user reads (event note, condition message): the message, then the reason's
    /// advice unless the message already gives its own (never the same advice twice), bounded
    /// to [`MAX_MESSAGE`] characters.
    pub fn note(&self) -> String {
        let text = if gives_own_advice(self.reason) {
            self.message.clone()
        } else {
            format!("{} ({})", self.message, self.reason.what_to_do())
        };
        bounded(&text, MAX_MESSAGE)
    }
}

/// Longest message the shim writes (an events.k8s.io note may hold 1 KiB).
pub const MAX_MESSAGE: usize = 1000;

/// Reasons whose shim messages always say what to do themselves (the accepted values, which
/// annotation to set), so the generic advice would only repeat them.
fn gives_own_advice(reason: Reason) -> bool {
    matches!(
        reason,
        Reason::InvalidAnnotation | Reason::AmbiguousConnection | Reason::ConflictingRequest
    )
}

/// `text` cut to at most `max` characters (at a character boundary), marked with `…`.
pub fn bounded(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// A user-written value for a message: quoted, and cut to 80 characters with its full length
/// named, so one oversized value cannot flood an event or a condition.
pub fn shown(value: &str) -> String {
    const MAX_SHOWN: usize = 80;
    let n = value.chars().count();
    if n <= MAX_SHOWN {
        format!("{value:?}")
    } else {
        let head: String = value.chars().take(MAX_SHOWN).collect();
        format!("{head:?}… ({n} characters)")
    }
}
