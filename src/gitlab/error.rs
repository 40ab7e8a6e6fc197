//! `GitLabError`: every way a GitLab call can fail, mapped from GitLab's documented error
//! families (gitlab-api.md §1.3) so callers can tell an unknown token from an expired or revoked
//! one, a permission refusal from a missing project, and a transient failure from a final one.
//!
//! Messages keep GitLab's own text (it tells users what to fix) but are capped in length, and
//! never include the operator's token, request headers or URLs.

use std::time::Duration;

use super::error_body::ErrorBody;
pub use super::error_body::{MAX_MESSAGE_CHARS, cap, parse_retry_after, redact_quoted};

/// A failed GitLab call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GitLabError {
    /// 401 in GitLab's message form: the token is unknown, or lacks permission on a token endpoint.
    #[error("GitLab rejected the credential (401): {message}")]
    Unauthorized {
        /// GitLab's message.
        message: String,
    },
    /// 401 `invalid_token`: the authenticating token has expired.
    #[error("GitLab says the token has expired (401): {message}")]
    TokenExpired {
        /// GitLab's `error_description`.
        message: String,
    },
    /// 401 `invalid_token`: the authenticating token was revoked.
    #[error("GitLab says the token was revoked (401): {message}")]
    TokenRevoked {
        /// GitLab's `error_description`.
        message: String,
    },
    /// 403 `insufficient_scope`: the token lacks a scope the endpoint needs.
    #[error("the token lacks a scope this GitLab endpoint requires (403); needs one of: {required}")]
    InsufficientScope {
        /// Scopes GitLab named as acceptable, space-separated.
        required: String,
    },
    /// 403 in message form: the caller may not do this.
    #[error("GitLab refused the request (403): {message}")]
    Forbidden {
        /// GitLab's message.
        message: String,
    },
    /// 400: validation or service failure; permission failures on create arrive this way.
    #[error("GitLab rejected the request (400): {message}")]
    BadRequest {
        /// GitLab's message (message, validation map or parameter error, flattened).
        message: String,
    },
    /// 404: the project, token or membership does not exist or is invisible to the caller.
    #[error("GitLab found nothing there (404): {message}")]
    NotFound {
        /// GitLab's message.
        message: String,
    },
    /// 429: throttled; `retry_after` is GitLab's `Retry-After`, when it sent one.
    #[error("GitLab is rate limiting the operator (429){}", retry_after_text(.retry_after))]
    RateLimited {
        /// How long GitLab asked to wait.
        retry_after: Option<Duration>,
    },
    /// 5xx: GitLab or a proxy in front of it failed.
    #[error("GitLab answered with server error {status}: {message}")]
    Server {
        /// The HTTP status.
        status: u16,
        /// Body text, capped.
        message: String,
    },
    /// Any other unexpected status (405, 409, a refused redirect, ...).
    #[error("GitLab answered with unexpected status {status}: {message}")]
    UnexpectedStatus {
        /// The HTTP status.
        status: u16,
        /// Body text, capped.
        message: String,
    },
    /// The request or the response body did not complete in time.
    #[error("the request to GitLab timed out")]
    Timeout,
    /// Connecting, TLS or the HTTP exchange failed.
    #[error("could not reach GitLab: {message}")]
    Transport {
        /// What failed (no URL, no headers).
        message: String,
    },
    /// GitLab answered 2xx with a body the operator cannot read, or pagination ran away.
    #[error("GitLab sent a response the operator cannot read: {message}")]
    InvalidResponse {
        /// What was wrong (quoted values removed).
        message: String,
    },
    /// A rotate endpoint was not called because the operator's token may already be rotated or
    /// revoked; presenting it again would make GitLab revoke the whole token family.
    #[error("refusing to call a GitLab rotate endpoint: {message}; set a fresh operator token first")]
    RotationUnsafe {
        /// Why rotation is closed.
        message: String,
    },
    /// A caller passed an argument no GitLab request can be made from (e.g. an empty project).
    #[error("invalid GitLab request: {message}")]
    InvalidInput {
        /// What is wrong.
        message: String,
    },
    /// The client could not be built from its configuration (URL, CA bundle, token format).
    #[error("invalid GitLab client configuration: {message}")]
    InvalidConfig {
        /// What is wrong.
        message: String,
    },
}

fn retry_after_text(retry_after: &Option<Duration>) -> String {
    match retry_after {
        Some(d) => format!("; retry after {} s", d.as_secs()),
        None => String::new(),
    }
}

impl GitLabError {
    /// A static PascalCase name of the failure, for conditions, events and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Unauthorized { .. } => "Unauthorized",
            Self::TokenExpired { .. } => "TokenExpired",
            Self::TokenRevoked { .. } => "TokenRevoked",
            Self::InsufficientScope { .. } => "InsufficientScope",
            Self::Forbidden { .. } => "Forbidden",
            Self::BadRequest { .. } => "BadRequest",
            Self::NotFound { .. } => "NotFound",
            Self::RateLimited { .. } => "RateLimited",
            Self::Server { .. } => "ServerError",
            Self::UnexpectedStatus { .. } => "UnexpectedStatus",
            Self::Timeout => "Timeout",
            Self::Transport { .. } => "TransportError",
            Self::InvalidResponse { .. } => "InvalidResponse",
            Self::RotationUnsafe { .. } => "RotationUnsafe",
            Self::InvalidInput { .. } => "InvalidInput",
            Self::InvalidConfig { .. } => "InvalidConfig",
        }
    }

    /// The HTTP status GitLab answered with, if it answered at all.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Unauthorized { .. } | Self::TokenExpired { .. } | Self::TokenRevoked { .. } => Some(401),
            Self::InsufficientScope { .. } | Self::Forbidden { .. } => Some(403),
            Self::BadRequest { .. } => Some(400),
            Self::NotFound { .. } => Some(404),
            Self::RateLimited { .. } => Some(429),
            Self::Server { status, .. } | Self::UnexpectedStatus { status, .. } => Some(*status),
            Self::Timeout
            | Self::Transport { .. }
            | Self::InvalidResponse { .. }
            | Self::RotationUnsafe { .. }
            | Self::InvalidInput { .. }
            | Self::InvalidConfig { .. } => None,
        }
    }

    /// Worth trying again later without changing anything (429, 5xx, timeouts, network).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::RateLimited { .. } | Self::Server { .. } | Self::Timeout | Self::Transport { .. }
        )
    }

    /// The authenticating credential itself is bad (unknown, expired or revoked).
    pub fn is_credential_failure(&self) -> bool {
        matches!(
            self,
            Self::Unauthorized { .. } | Self::TokenExpired { .. } | Self::TokenRevoked { .. }
        )
    }

    /// Maps a non-success status, its `Retry-After` and its body to the matching variant.
    pub fn from_response(status: u16, retry_after: Option<Duration>, body: &[u8]) -> Self {
        let parsed = ErrorBody::parse(body);
        match status {
            400 => Self::BadRequest {
                message: parsed.text(),
            },
            401 => match &parsed {
                ErrorBody::OAuth {
                    error, description, ..
                } if error == "invalid_token" => {
                    let lower = description.to_ascii_lowercase();
                    let message = cap(description);
                    if lower.contains("expired") {
                        Self::TokenExpired { message }
                    } else if lower.contains("revoked") {
                        Self::TokenRevoked { message }
                    } else {
                        Self::Unauthorized { message }
                    }
                }
                _ => Self::Unauthorized {
                    message: parsed.text(),
                },
            },
            403 => match &parsed {
                ErrorBody::OAuth { error, scope, .. } if error == "insufficient_scope" => {
                    Self::InsufficientScope {
                        required: cap(scope.as_deref().unwrap_or("unknown")),
                    }
                }
                _ => Self::Forbidden {
                    message: parsed.text(),
                },
            },
            404 => Self::NotFound {
                message: parsed.text(),
            },
            429 => Self::RateLimited { retry_after },
            500..=599 => Self::Server {
                status,
                message: parsed.text(),
            },
            _ => Self::UnexpectedStatus {
                status,
                message: parsed.text(),
            },
        }
    }

    /// An `InvalidResponse` for a body that failed to decode, with quoted values removed.
    pub fn decode(operation: &str, err: &serde_json::Error) -> Self {
        Self::InvalidResponse {
            message: format!("{operation}: {}", redact_quoted(&err.to_string())),
        }
    }

    /// Replaces every occurrence of `secret` in the error's text with `[REDACTED]`: a defence
    /// against a server or proxy that echoes the request's credential into its error body.
    pub fn scrub(self, secret: &str) -> Self {
        if secret.is_empty() {
            return self;
        }
        let clean = |text: String| text.replace(secret, "[REDACTED]");
        match self {
            Self::Unauthorized { message } => Self::Unauthorized {
                message: clean(message),
            },
            Self::TokenExpired { message } => Self::TokenExpired {
                message: clean(message),
            },
            Self::TokenRevoked { message } => Self::TokenRevoked {
                message: clean(message),
            },
            Self::InsufficientScope { required } => Self::InsufficientScope {
                required: clean(required),
            },
            Self::Forbidden { message } => Self::Forbidden {
                message: clean(message),
            },
            Self::BadRequest { message } => Self::BadRequest {
                message: clean(message),
            },
            Self::NotFound { message } => Self::NotFound {
                message: clean(message),
            },
            Self::Server { status, message } => Self::Server {
                status,
                message: clean(message),
            },
            Self::UnexpectedStatus { status, message } => Self::UnexpectedStatus {
                status,
                message: clean(message),
            },
            Self::Transport { message } => Self::Transport {
                message: clean(message),
            },
            Self::InvalidResponse { message } => Self::InvalidResponse {
                message: clean(message),
            },
            Self::InvalidInput { message } => Self::InvalidInput {
                message: clean(message),
            },
            Self::RotationUnsafe { message } => Self::RotationUnsafe {
                message: clean(message),
            },
            Self::InvalidConfig { message } => Self::InvalidConfig {
                message: clean(message),
            },
            other @ (Self::RateLimited { .. } | Self::Timeout) => other,
        }
    }

    /// Advice for a connection check that failed with this error, from the shape of the
    /// connection's `url`: an `/api/v4` suffix (the client adds it, so GitLab answers 404), or a
    /// scheme that does not match the server (`https://` to a plain-HTTP server makes TLS read
    /// an HTTP reply: "received corrupt message of type InvalidContentType"; `http://` to a TLS
    /// port gets TLS bytes or nginx's "plain HTTP request was sent to HTTPS port").
    pub fn hint_for_url(&self, url: &str) -> Option<&'static str> {
        let lower = url.trim_end_matches('/').to_ascii_lowercase();
        let text = self.to_string().to_ascii_lowercase();
        let api_suffix = lower.ends_with("/api/v4") || lower.ends_with("/api/v4/") || lower.ends_with("/api");
        match self {
            Self::NotFound { .. } | Self::UnexpectedStatus { .. } if api_suffix => Some(
                "the url must be GitLab's base URL without /api/v4 (e.g. https://gitlab.example.com): remove the /api/v4 suffix, the operator adds it",
            ),
            Self::Transport { .. }
                if lower.starts_with("https://")
                    && [
                        "invalidcontenttype",
                        "corrupt message",
                        "wrong version number",
                        "http request to an https",
                    ]
                    .iter()
                    .any(|m| text.contains(m)) =>
            {
                Some(
                    "the server answered in plain HTTP, not TLS: use an http:// url for it, or put TLS in front of GitLab",
                )
            }
            Self::Transport { .. } | Self::UnexpectedStatus { .. } | Self::BadRequest { .. }
                if lower.starts_with("http://")
                    && [
                        "invalid http version",
                        "plain http request was sent to https",
                        "http/0.9",
                        "invalid status",
                    ]
                    .iter()
                    .any(|m| text.contains(m)) =>
            {
                Some("the server speaks TLS: use an https:// url for it")
            }
            _ => None,
        }
    }

    /// Maps a reqwest failure without its URL (which could carry query values) to `Timeout`
    /// or `Transport`.
    pub fn from_reqwest(err: reqwest::Error) -> Self {
        if err.is_timeout() {
            return Self::Timeout;
        }
        let err = err.without_url();
        let mut message = err.to_string();
        let mut source = std::error::Error::source(&err);
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        // Body read failures are network failures too (a reset mid-body): transient, like
        // connect errors. Decoding is done by the caller with serde, never by reqwest.
        Self::Transport {
            message: cap(&message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(status: u16, body: &str) -> GitLabError {
        GitLabError::from_response(status, None, body.as_bytes())
    }

    #[test]
    fn error_families_map_to_variants() {
        let cases: &[(u16, &str, &str)] = &[
            (401, r#"{"message":"401 Unauthorized"}"#, "Unauthorized"),
            (
                401,
                r#"{"error":"invalid_token","error_description":"Token is expired. You can either do re-authorization or token refresh."}"#,
                "TokenExpired",
            ),
            (
                401,
                r#"{"error":"invalid_token","error_description":"Token was revoked. You have to re-authorize from the user."}"#,
                "TokenRevoked",
            ),
            (
                403,
                r#"{"error":"insufficient_scope","error_description":"The request requires higher privileges than provided by the access token.","scope":"api read_api"}"#,
                "InsufficientScope",
            ),
            (403, r#"{"message":"403 Forbidden"}"#, "Forbidden"),
            (
                400,
                r#"{"message":"400 Bad request - User does not have permission to create project access token"}"#,
                "BadRequest",
            ),
            (
                400,
                r#"{"error":"scopes does not have a valid value"}"#,
                "BadRequest",
            ),
            (
                400,
                r#"{"message":{"expires_at":["must be before 2026-06-10"]}}"#,
                "BadRequest",
            ),
            (404, r#"{"message":"404 Project Not Found"}"#, "NotFound"),
            (405, r#"{"message":"405 Method Not Allowed"}"#, "UnexpectedStatus"),
            (429, "Retry later", "RateLimited"),
            (500, "<html>oops</html>", "ServerError"),
            (502, "", "ServerError"),
        ];
        for (status, body, reason) in cases {
            let err = map(*status, body);
            assert_eq!(err.reason(), *reason, "status {status} body {body}");
            assert_eq!(err.status(), Some(*status));
        }
    }

    #[test]
    fn messages_keep_gitlab_text() {
        assert_eq!(
            map(
                400,
                r#"{"message":"400 Bad request - Access token limit reached"}"#
            ),
            GitLabError::BadRequest {
                message: "400 Bad request - Access token limit reached".into()
            }
        );
        assert_eq!(
            map(
                400,
                r#"{"message":{"expires_at":["must be soon","is bad"],"name":["is missing"]}}"#
            ),
            GitLabError::BadRequest {
                message: "expires_at must be soon, is bad; name is missing".into()
            }
        );
        assert_eq!(
            map(
                403,
                r#"{"error":"insufficient_scope","error_description":"x","scope":"api read_api"}"#
            ),
            GitLabError::InsufficientScope {
                required: "api read_api".into()
            }
        );
        assert_eq!(
            map(404, ""),
            GitLabError::NotFound {
                message: "(no message)".into()
            }
        );
    }

    #[test]
    fn scrub_removes_an_echoed_secret() {
        let err = map(
            400,
            r#"{"message":"400 Bad request - token glpat-op-secret is bad"}"#,
        )
        .scrub("glpat-op-secret");
        assert_eq!(
            err.to_string(),
            "GitLab rejected the request (400): 400 Bad request - token [REDACTED] is bad"
        );
        assert_eq!(GitLabError::Timeout.scrub("x"), GitLabError::Timeout);
    }

    #[test]
    fn url_shape_hints() {
        let not_found = map(404, r#"{"error":"404 Not Found"}"#);
        assert!(
            not_found
                .hint_for_url("https://gitlab.example.com/api/v4")
                .unwrap()
                .contains("remove the /api/v4 suffix")
        );
        assert!(
            not_found
                .hint_for_url("https://gitlab.example.com/api/v4/")
                .is_some()
        );
        assert_eq!(not_found.hint_for_url("https://gitlab.example.com"), None);
        let tls_to_plain = GitLabError::Transport {
            message: "error sending request: client error (Connect): received corrupt message of type InvalidContentType"
                .into(),
        };
        assert!(
            tls_to_plain
                .hint_for_url("https://127.0.0.1:8080")
                .unwrap()
                .contains("use an http:// url")
        );
        assert_eq!(tls_to_plain.hint_for_url("http://127.0.0.1:8080"), None);
        let plain_to_tls = GitLabError::Transport {
            message: "error sending request: client error (SendRequest): invalid HTTP version parsed".into(),
        };
        assert!(
            plain_to_tls
                .hint_for_url("http://gitlab.example.com")
                .unwrap()
                .contains("use an https:// url")
        );
        let refused = GitLabError::Transport {
            message: "error sending request: tcp connect error: Connection refused".into(),
        };
        assert_eq!(refused.hint_for_url("https://gitlab.example.com"), None);
    }

    #[test]
    fn transient_and_credential_classes() {
        assert!(map(503, "").is_transient());
        assert!(map(429, "").is_transient());
        assert!(GitLabError::Timeout.is_transient());
        assert!(!map(400, "{}").is_transient());
        assert!(map(401, r#"{"message":"401 Unauthorized"}"#).is_credential_failure());
        assert!(!map(403, r#"{"message":"403 Forbidden"}"#).is_credential_failure());
    }
}
