//! Project and group deploy tokens (list with `active`, get, create, delete). Project endpoints
//! need Maintainer; group ones Maintainer to read and Owner to create or delete (403 otherwise).

use std::sync::Arc;

use axum::{
    Json,
    extract::{Path, State},
    http::{StatusCode, Uri},
    response::{IntoResponse, Response},
};

use super::{
    auth::{Caller, READ, WRITE},
    params::{Failures, PageSpec, Params, paginate},
    render, resolve,
};
use crate::gitlab::{
    error::ApiError,
    model::{DEPLOY_TOKEN_SCOPES, DeployToken, MAINTAINER, OWNER, Source},
    state::GitLabState,
    store::Store,
};

type Api = Result<Response, ApiError>;

/// Resolves the resource and checks the caller's role (`write`: create/delete).
fn authorized(
    store: &Store,
    caller: &Caller,
    group: bool,
    id: &str,
    write: bool,
) -> Result<Source, ApiError> {
    let source = if group {
        Source::Group(resolve::group(store, Some(&caller.user), id)?.id)
    } else {
        Source::Project(resolve::project(store, Some(&caller.user), id)?.id)
    };
    let needed = if group && write { OWNER } else { MAINTAINER };
    let level = store.effective_level(caller.user.id, source);
    if caller.user.is_admin || level >= needed {
        Ok(source)
    } else {
        Err(ApiError::Forbidden(None))
    }
}

fn find(store: &Store, source: Source, token_id: &str) -> Result<DeployToken, ApiError> {
    token_id
        .parse::<u64>()
        .ok()
        .and_then(|id| store.deploy_tokens.get(&id))
        .filter(|d| d.resource == source && !d.deleted)
        .cloned()
        .ok_or_else(|| ApiError::not_found("Deploy Token"))
}

/// `DeployToken` validation of a custom username (`/\A[a-zA-Z0-9\.\+_-]+\z/`, at most 255).
fn invalid_username(username: &str) -> Option<&'static str> {
    if username.chars().count() > 255 {
        Some("Username is too long (maximum is 255 characters)")
    } else if !username
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '_' | '-'))
    {
        Some("Username can contain only letters, digits, '_', '-', '+', and '.'")
    } else {
        None
    }
}

/// `GET /:kind/:id/deploy_tokens` (`active` filter), paginated.
pub async fn list<const GROUP: bool>(
    State(state): State<Arc<GitLabState>>,
    caller: Caller,
    Path(id): Path<String>,
    uri: Uri,
    params: Params,
) -> Api {
    caller.require_scopes(READ)?;
    let spec = PageSpec::from_params(&params)?;
    let active = params.bool("active")?;
    let now = state.now();
    let settings = state.settings();
    let store = state.store();
    let source = authorized(&store, &caller, GROUP, &id, false)?;
    let items = store
        .deploy_tokens
        .values()
        .filter(|d| d.resource == source && !d.deleted)
        .filter(|d| active.is_none_or(|a| (!d.revoked && !d.expired_at(now)) == a))
        .map(|d| render::deploy_token(d, now))
        .collect();
    Ok(paginate(items, spec, &settings.base_url, &uri))
}

/// `GET /:kind/:id/deploy_tokens/:token_id`.
pub async fn get<const GROUP: bool>(
    State(state): State<Arc<GitLabState>>,
    caller: Caller,
    Path((id, token_id)): Path<(String, String)>,
) -> Api {
    caller.require_scopes(READ)?;
    let now = state.now();
    let store = state.store();
    let source = authorized(&store, &caller, GROUP, &id, false)?;
    Ok(Json(render::deploy_token(&find(&store, source, &token_id)?, now)).into_response())
}

/// `POST /:kind/:id/deploy_tokens` → 201 with `token`.
pub async fn create<const GROUP: bool>(
    State(state): State<Arc<GitLabState>>,
    caller: Caller,
    Path(id): Path<String>,
    params: Params,
) -> Api {
    caller.require_scopes(WRITE)?;
    let mut failures = Failures::default();
    let name = failures.check(params.required("name"))?;
    let scopes = failures
        .check(params.required_values("scopes", DEPLOY_TOKEN_SCOPES))?
        .unwrap_or_default();
    let expires_at = failures.check(params.datetime("expires_at"))?.flatten();
    failures.finish()?;
    let username = params.str("username").filter(|u| !u.is_empty());
    if let Some(message) = username.as_deref().and_then(invalid_username) {
        // The create service answers `render_api_error!(full_messages.to_sentence, 400)`.
        return Ok((
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({ "message": message })),
        )
            .into_response());
    }
    let now = state.now();
    let mut store = state.store();
    let source = authorized(&store, &caller, GROUP, &id, true)?;
    let (token, secret) = store.create_deploy_token(
        source,
        &name.unwrap_or_default(),
        username,
        scopes,
        expires_at,
        now,
    );
    let mut body = render::deploy_token(&token, now);
    if let Some(map) = body.as_object_mut() {
        map.insert("token".into(), serde_json::Value::String(secret));
    }
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `DELETE /:kind/:id/deploy_tokens/:token_id` → 204 (GitLab destroys the record).
pub async fn delete<const GROUP: bool>(
    State(state): State<Arc<GitLabState>>,
    caller: Caller,
    Path((id, token_id)): Path<(String, String)>,
) -> Api {
    caller.require_scopes(WRITE)?;
    let mut store = state.store();
    let source = authorized(&store, &caller, GROUP, &id, true)?;
    let token = find(&store, source, &token_id)?;
    if let Some(d) = store.deploy_tokens.get_mut(&token.id) {
        d.revoked = true;
        d.deleted = true;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
