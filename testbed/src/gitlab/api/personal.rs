//! Personal access token endpoints: `self` (get, rotate, revoke, for PATs and bot tokens alike)
//! and the caller's own tokens by id.

use std::sync::Arc;

use axum::{
    Json,
    extract::{Path, State},
    http::{StatusCode, Uri},
    response::{IntoResponse, Response},
};

use super::{
    auth::{Caller, READ, WRITE},
    params::{PageSpec, Params, paginate},
    render,
};
use crate::gitlab::{error::ApiError, model::Token, state::GitLabState};

type Api = Result<Response, ApiError>;

/// `GET /personal_access_tokens/self`: any scope.
pub async fn get_self(State(state): State<Arc<GitLabState>>, caller: Caller) -> Api {
    let today = state.clock().today();
    let store = state.store();
    let token = store
        .tokens
        .get(&caller.token.id)
        .cloned()
        .unwrap_or(caller.token);
    Ok(Json(render::token(&store, &token, today, false)).into_response())
}

/// `DELETE /personal_access_tokens/self`: any scope; 204.
pub async fn revoke_self(State(state): State<Arc<GitLabState>>, caller: Caller) -> Api {
    let now = state.now();
    state.store().revoke_token(caller.token.id, now);
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /personal_access_tokens/self/rotate`: `api` or `self_rotate`; 200 with the new `token`.
pub async fn rotate_self(State(state): State<Arc<GitLabState>>, caller: Caller, params: Params) -> Api {
    caller.require_scopes(&["api", "self_rotate"])?;
    let expires_at = params.date("expires_at")?;
    let now = state.now();
    let max_days = state.settings().max_token_lifetime_days;
    let mut store = state.store();
    let issued = store.rotate_token(caller.token.id, expires_at, now, max_days)?;
    let body = render::token_with_secret(&store, &issued.token, &issued.secret, now.date_naive(), false);
    Ok(Json(body).into_response())
}

/// The caller's own token `id` (admins: any); 401 otherwise (non-admins never see 404).
fn own_token(state: &GitLabState, caller: &Caller, id: &str) -> Result<Token, ApiError> {
    let token = id
        .parse::<u64>()
        .ok()
        .and_then(|id| state.store().tokens.get(&id).cloned());
    match token {
        Some(t) if caller.user.is_admin || t.user_id == caller.user.id => Ok(t),
        None if caller.user.is_admin => Err(ApiError::not_found("Personal Access Token")),
        _ => Err(ApiError::Unauthorized),
    }
}

/// `GET /personal_access_tokens`: the caller's tokens (`state`, `revoked`, `search`), paginated.
pub async fn list(State(state): State<Arc<GitLabState>>, caller: Caller, uri: Uri, params: Params) -> Api {
    caller.require_scopes(READ)?;
    let spec = PageSpec::from_params(&params)?;
    let wanted_state = params.one_of("state", &["active", "inactive"])?;
    let revoked = params.bool("revoked")?;
    let search = params.str("search").map(|s| s.to_lowercase());
    let today = state.clock().today();
    let settings = state.settings();
    let store = state.store();
    let items = store
        .tokens
        .values()
        .filter(|t| t.user_id == caller.user.id)
        .filter(|t| match wanted_state.as_deref() {
            Some("active") => !t.revoked && t.expires_at.is_none_or(|d| d > today),
            Some("inactive") => t.revoked || t.expires_at.is_some_and(|d| d < today),
            _ => true,
        })
        .filter(|t| revoked.is_none_or(|r| t.revoked == r))
        .filter(|t| {
            search
                .as_deref()
                .is_none_or(|s| t.name.to_lowercase().contains(s))
        })
        .map(|t| render::token(&store, t, today, false))
        .collect();
    Ok(paginate(items, spec, &settings.base_url, &uri))
}

/// `GET /personal_access_tokens/:id`.
pub async fn get(State(state): State<Arc<GitLabState>>, caller: Caller, Path(id): Path<String>) -> Api {
    caller.require_scopes(READ)?;
    let token = own_token(&state, &caller, &id)?;
    let today = state.clock().today();
    Ok(Json(render::token(&state.store(), &token, today, false)).into_response())
}

/// `POST /personal_access_tokens/:id/rotate`: `api`; 200 with the new `token`.
pub async fn rotate(
    State(state): State<Arc<GitLabState>>,
    caller: Caller,
    Path(id): Path<String>,
    params: Params,
) -> Api {
    caller.require_scopes(WRITE)?;
    let expires_at = params.date("expires_at")?;
    let token = own_token(&state, &caller, &id)?;
    let now = state.now();
    let max_days = state.settings().max_token_lifetime_days;
    let mut store = state.store();
    let issued = store.rotate_token(token.id, expires_at, now, max_days)?;
    let body = render::token_with_secret(&store, &issued.token, &issued.secret, now.date_naive(), false);
    Ok(Json(body).into_response())
}

/// `DELETE /personal_access_tokens/:id`: `api`; 204.
pub async fn revoke(State(state): State<Arc<GitLabState>>, caller: Caller, Path(id): Path<String>) -> Api {
    caller.require_scopes(WRITE)?;
    let token = own_token(&state, &caller, &id)?;
    let now = state.now();
    state.store().revoke_token(token.id, now);
    Ok(StatusCode::NO_CONTENT.into_response())
}
