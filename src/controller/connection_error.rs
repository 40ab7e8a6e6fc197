//! Why a `GitLabConnection` is not usable: a reason (the condition's, PascalCase) and a message
//! that says what to do.

use crate::gitlab::GitLabError;

/// Why a connection is not usable.
#[derive(Debug)]
pub(super) struct NotReady {
    /// PascalCase reason of the `Ready=False` condition.
    pub reason: &'static str,
    /// What happened and what to do.
    pub message: String,
}

/// A [`NotReady`] with `reason` and `message`.
pub(super) fn not_ready(reason: &'static str, message: impl Into<String>) -> NotReady {
    NotReady {
        reason,
        message: message.into(),
    }
}

/// The [`NotReady`] of a failed GitLab call during the check, with a hint for the URL.
pub(super) fn gitlab_not_ready(e: &GitLabError, url: &str) -> NotReady {
    let reason = match e {
        GitLabError::TokenExpired { .. } => "TokenExpired",
        GitLabError::TokenRevoked { .. } => "TokenRevoked",
        GitLabError::Unauthorized { .. } => "TokenInvalid",
        GitLabError::InsufficientScope { .. } => "MissingApiScope",
        GitLabError::NotFound { .. } => "NotGitLab",
        GitLabError::RateLimited { .. } => "RateLimited",
        _ => "GitLabUnreachable",
    };
    match e.hint_for_url(url) {
        Some(hint) => not_ready(reason, format!("GitLab check failed: {e}; {hint}")),
        None => not_ready(reason, format!("GitLab check failed: {e}")),
    }
}
