//! The operator's own GitLab token inside a client, and the guard against GitLab's reuse
//! detection (gitlab-api.md §5.4): a request authenticated with an already-revoked token that
//! targets any rotate path makes GitLab revoke every active descendant of that token.
//!
//! So, per credential: a self-rotation closes "rotation" before it is sent; a success swaps the
//! client over to the new token at once; a failure that proves nothing happened (400, 429, …)
//! reopens it; anything ambiguous (timeout, 5xx, unreadable 2xx) or any sign that the token is
//! revoked keeps every rotate endpoint closed until a fresh token is set (DESIGN §6.8).

use std::sync::RwLock;

use http::HeaderValue;
use secrecy::{ExposeSecret, SecretString};

use super::GitLabError;

#[derive(Debug)]
struct State {
    header: HeaderValue,
    /// Why rotate endpoints are closed for this token, if they are.
    rotate_blocked: Option<&'static str>,
}

/// The current `PRIVATE-TOKEN` value (marked sensitive) and its rotation guard.
#[derive(Debug)]
pub(crate) struct Credential {
    state: RwLock<State>,
}

/// A sensitive header value from a token; refuses empty tokens and non-header characters.
fn header_from(token: &SecretString) -> Result<HeaderValue, GitLabError> {
    let value = token.expose_secret().trim();
    if value.is_empty() {
        return Err(GitLabError::InvalidConfig {
            message: "the GitLab token is empty".into(),
        });
    }
    let mut header = HeaderValue::from_str(value).map_err(|_| GitLabError::InvalidConfig {
        message: "the GitLab token contains characters not allowed in a header".into(),
    })?;
    header.set_sensitive(true);
    Ok(header)
}

impl Credential {
    /// A credential for `token`, rotation open.
    pub(crate) fn new(token: &SecretString) -> Result<Self, GitLabError> {
        Ok(Self {
            state: RwLock::new(State {
                header: header_from(token)?,
                rotate_blocked: None,
            }),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The header value to send now.
    pub(crate) fn header(&self) -> HeaderValue {
        self.read().header.clone()
    }

    /// Replaces the token (e.g. the Secret changed); rotation reopens for the new token.
    pub(crate) fn replace(&self, token: &SecretString) -> Result<(), GitLabError> {
        let header = header_from(token)?;
        *self.write() = State {
            header,
            rotate_blocked: None,
        };
        Ok(())
    }

    /// Fails if rotate endpoints are closed for the current token.
    pub(crate) fn check_rotate_allowed(&self) -> Result<(), GitLabError> {
        match self.read().rotate_blocked {
            None => Ok(()),
            Some(why) => Err(GitLabError::RotationUnsafe {
                message: why.to_string(),
            }),
        }
    }

    /// Closes rotation before a self-rotation is sent; returns the header it will use.
    pub(crate) fn begin_self_rotation(&self) -> Result<HeaderValue, GitLabError> {
        let mut state = self.write();
        if let Some(why) = state.rotate_blocked {
            return Err(GitLabError::RotationUnsafe {
                message: why.to_string(),
            });
        }
        state.rotate_blocked =
            Some("a self-rotation of the operator's token is in flight or ended without a readable answer");
        Ok(state.header.clone())
    }

    /// Ends a self-rotation started with `used`: swap to `new` on success, reopen when the
    /// failure proves GitLab rotated nothing, else stay closed.
    pub(crate) fn end_self_rotation(
        &self,
        used: &HeaderValue,
        outcome: Result<&SecretString, &GitLabError>,
    ) -> Result<(), GitLabError> {
        let mut state = self.write();
        if state.header != *used {
            // Someone set another token meanwhile; that one is the truth.
            return Ok(());
        }
        match outcome {
            Ok(new) => {
                *state = State {
                    header: header_from(new)?,
                    rotate_blocked: None,
                }
            }
            Err(err) if rotated_nothing(err) => state.rotate_blocked = None,
            Err(_) => {}
        }
        Ok(())
    }

    /// Records that GitLab called the token `used` revoked: never present it to a rotate path.
    pub(crate) fn mark_revoked(&self, used: &HeaderValue) {
        let mut state = self.write();
        if state.header == *used {
            state.rotate_blocked = Some("GitLab reports the operator's token as revoked");
        }
    }
}

/// Failures after which GitLab certainly did not rotate (the request was refused as a whole).
fn rotated_nothing(err: &GitLabError) -> bool {
    matches!(
        err,
        GitLabError::BadRequest { .. }
            | GitLabError::Unauthorized { .. }
            | GitLabError::Forbidden { .. }
            | GitLabError::InsufficientScope { .. }
            | GitLabError::NotFound { .. }
            | GitLabError::RateLimited { .. }
            | GitLabError::UnexpectedStatus { .. }
            | GitLabError::InvalidInput { .. }
            | GitLabError::RotationUnsafe { .. }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> SecretString {
        SecretString::from(s)
    }

    #[test]
    fn headers_are_sensitive_and_validated() {
        let c = Credential::new(&secret(" glpat-abc ")).unwrap();
        assert!(c.header().is_sensitive());
        assert_eq!(c.header(), "glpat-abc");
        for bad in ["", "  ", "a\nb"] {
            assert_eq!(
                Credential::new(&secret(bad)).unwrap_err().reason(),
                "InvalidConfig"
            );
        }
    }

    #[test]
    fn self_rotation_outcomes() {
        let server = GitLabError::Server {
            status: 502,
            message: String::new(),
        };
        let bad = GitLabError::BadRequest {
            message: String::new(),
        };
        let revoked = GitLabError::TokenRevoked {
            message: String::new(),
        };
        let cases: [(Result<&SecretString, &GitLabError>, &str, bool); 5] = [
            (Ok(&secret("glpat-new")), "glpat-new", true),
            (Err(&bad), "glpat-old", true),
            (Err(&server), "glpat-old", false),
            (Err(&GitLabError::Timeout), "glpat-old", false),
            (Err(&revoked), "glpat-old", false),
        ];
        for (outcome, header, open) in cases {
            let c = Credential::new(&secret("glpat-old")).unwrap();
            let used = c.begin_self_rotation().unwrap();
            assert_eq!(
                c.check_rotate_allowed().unwrap_err().reason(),
                "RotationUnsafe",
                "closed in flight"
            );
            c.end_self_rotation(&used, outcome).unwrap();
            assert_eq!(c.header(), header, "{outcome:?}");
            assert_eq!(c.check_rotate_allowed().is_ok(), open, "{outcome:?}");
            assert!(c.header().is_sensitive());
        }
    }

    #[test]
    fn a_new_token_reopens_rotation_and_wins_over_a_late_answer() {
        let c = Credential::new(&secret("glpat-old")).unwrap();
        let used = c.begin_self_rotation().unwrap();
        assert_eq!(
            c.begin_self_rotation().unwrap_err().reason(),
            "RotationUnsafe",
            "one at a time"
        );
        c.replace(&secret("glpat-from-secret")).unwrap();
        assert!(c.check_rotate_allowed().is_ok());
        c.end_self_rotation(&used, Ok(&secret("glpat-late"))).unwrap();
        assert_eq!(c.header(), "glpat-from-secret");
    }

    #[test]
    fn a_revoked_token_closes_rotation() {
        let c = Credential::new(&secret("glpat-old")).unwrap();
        c.mark_revoked(&HeaderValue::from_static("glpat-other"));
        assert!(
            c.check_rotate_allowed().is_ok(),
            "only the token that was reported"
        );
        c.mark_revoked(&c.header());
        assert_eq!(c.check_rotate_allowed().unwrap_err().reason(), "RotationUnsafe");
    }
}
