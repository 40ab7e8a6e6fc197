//! The API guard: finds the token (`PRIVATE-TOKEN`, `Authorization: Bearer`, or the
//! `private_token`/`access_token` query), refuses unknown/expired/revoked ones in GitLab's shapes,
//! runs reuse detection on rotate paths, and checks scopes per endpoint.

use std::sync::Arc;

use axum::{
    extract::FromRequestParts,
    http::{HeaderMap, request::Parts},
};

use crate::gitlab::{
    error::{ApiError, TokenFailure},
    middleware::RequestMeta,
    model::{Token, User, UserType},
    state::{GitLabState, ReuseDetection},
    store::Credential,
    tokens::{AuthFailure, Authenticated},
};

/// Scopes that allow GET endpoints.
pub const READ: &[&str] = &["api", "read_api"];
/// Scopes that allow writes.
pub const WRITE: &[&str] = &["api"];

/// The authenticated caller of an API request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The acting user (a bot for project/group access tokens).
    pub user: User,
    /// The token used.
    pub token: Token,
}

impl Caller {
    /// 403 `insufficient_scope` unless the token has one of `allowed`.
    pub fn require_scopes(&self, allowed: &[&'static str]) -> Result<(), ApiError> {
        if self.token.scopes.iter().any(|s| allowed.contains(&s.as_str())) {
            Ok(())
        } else {
            Err(ApiError::InsufficientScope(allowed.to_vec()))
        }
    }

    /// Whether the caller is a project/group bot.
    pub fn is_bot(&self) -> bool {
        self.user.user_type == UserType::ProjectBot
    }
}

/// The caller, or None for anonymous requests.
#[derive(Debug, Clone)]
pub struct MaybeCaller(pub Option<Caller>);

/// The secret presented with a request, if any.
/// Empty values count as absent.
pub fn presented_secret(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    let non_empty = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
    if let Some(v) = headers
        .get("private-token")
        .and_then(|v| v.to_str().ok())
        .and_then(non_empty)
    {
        return Some(v);
    }
    if let Some(v) = headers.get("authorization").and_then(|v| v.to_str().ok()) {
        let mut parts = v.splitn(2, ' ');
        if parts.next().is_some_and(|s| s.eq_ignore_ascii_case("bearer"))
            && let Some(token) = parts.next().and_then(non_empty)
        {
            return Some(token);
        }
    }
    let query = query?;
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "private_token" || k == "access_token")
        .and_then(|(_, v)| non_empty(&v))
}

/// Whether a path is a rotate path watched by reuse detection: GitLab matches
/// `access_tokens/(\d+|self)/rotate$`, which also covers `personal_access_tokens/...`.
fn is_rotate_path(path: &str) -> bool {
    let Some(rest) = path.strip_suffix("/rotate") else {
        return false;
    };
    let Some((before, id)) = rest.rsplit_once('/') else {
        return false;
    };
    before.ends_with("access_tokens")
        && (id == "self" || (!id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())))
}

impl FromRequestParts<Arc<GitLabState>> for MaybeCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<GitLabState>) -> Result<Self, ApiError> {
        let meta = parts.extensions.get::<RequestMeta>().cloned().unwrap_or_default();
        let Some(secret) = presented_secret(&parts.headers, parts.uri.query()) else {
            return Ok(MaybeCaller(None));
        };
        match state.authenticate_secret(&secret, meta.ip.as_deref()) {
            Ok(Authenticated::Token(id)) => {
                let store = state.store();
                let token = store.tokens.get(&id).cloned().ok_or(ApiError::Unauthorized)?;
                let user = store
                    .users
                    .get(&token.user_id)
                    .cloned()
                    .ok_or(ApiError::Unauthorized)?;
                meta.set_acting(&user.username);
                Ok(MaybeCaller(Some(Caller { user, token })))
            }
            // Deploy tokens cannot call the REST API: the guard does not know them.
            Ok(Authenticated::Deploy(_)) | Err(AuthFailure::Unknown) => Err(ApiError::Unauthorized),
            Err(AuthFailure::Dead(Credential::Deploy(_), _)) => Err(ApiError::Unauthorized),
            Err(AuthFailure::Dead(Credential::Token(id), failure)) => {
                let mut store = state.store();
                if let Some(user) = store.tokens.get(&id).and_then(|t| store.users.get(&t.user_id)) {
                    meta.set_acting(&user.username);
                }
                if failure == TokenFailure::Revoked && is_rotate_path(parts.uri.path()) {
                    let at = state.now();
                    let revoked = store.revoke_descendants(id, at);
                    drop(store);
                    state.record_reuse_detection(ReuseDetection {
                        presented: id,
                        revoked,
                        at,
                    });
                }
                Err(ApiError::InvalidToken(failure))
            }
        }
    }
}

impl FromRequestParts<Arc<GitLabState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<GitLabState>) -> Result<Self, ApiError> {
        MaybeCaller::from_request_parts(parts, state)
            .await?
            .0
            .ok_or(ApiError::Unauthorized)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotate_paths_table() {
        let cases = [
            ("/api/v4/projects/1/access_tokens/5/rotate", true),
            ("/api/v4/groups/acme%2Fx/access_tokens/self/rotate", true),
            ("/api/v4/personal_access_tokens/self/rotate", true),
            ("/api/v4/projects/1/access_tokens/5", false),
            ("/api/v4/personal_access_tokens/self", false),
            ("/api/v4/personal_access_tokens/12/rotate", true),
            ("/api/v4/projects/1/access_tokens/abc/rotate", false),
            ("/api/v4/projects/1/deploy_tokens/5/rotate", false),
        ];
        for (path, want) in cases {
            assert_eq!(is_rotate_path(path), want, "{path}");
        }
    }

    #[test]
    fn secret_sources_in_order() {
        let mut headers = HeaderMap::new();
        headers.insert("private-token", "".parse().unwrap_or_else(|_| unreachable!()));
        assert_eq!(presented_secret(&headers, Some("private_token=")), None);
        assert_eq!(
            presented_secret(&headers, Some("private_token=q")),
            Some("q".into())
        );
        headers.insert(
            "authorization",
            "Bearer b".parse().unwrap_or_else(|_| unreachable!()),
        );
        assert_eq!(presented_secret(&headers, None), Some("b".into()));
        headers.insert("private-token", "p".parse().unwrap_or_else(|_| unreachable!()));
        assert_eq!(presented_secret(&headers, None), Some("p".into()));
    }
}
