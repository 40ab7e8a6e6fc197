//! Project and group access tokens: list (filters, pagination), get, create, rotate, self-rotate,
//! revoke. `GROUP = false` serves `/projects/:id/access_tokens…`, `true` serves `/groups/…`.

use std::sync::Arc;

use axum::{
    Json,
    extract::{Path, State},
    http::{StatusCode, Uri},
    response::{IntoResponse, Response},
};
use chrono::NaiveDate;
use serde_json::Value;

use super::{
    auth::{Caller, READ, WRITE},
    params::{Failures, PageSpec, Params, paginate},
    render, resolve,
};
use crate::gitlab::{
    error::ApiError,
    model::{MAINTAINER, OWNER, RESOURCE_TOKEN_LEVELS, RESOURCE_TOKEN_SCOPES, Source, Token, TokenKind},
    state::GitLabState,
    store::Store,
    tokens::NewResourceToken,
};

type Api = Result<Response, ApiError>;

fn kind_name(group: bool) -> &'static str {
    if group { "group" } else { "project" }
}

/// Resolves `:id` to the project or group (404 when invisible).
fn source(store: &Store, caller: &Caller, group: bool, id: &str) -> Result<Source, ApiError> {
    if group {
        resolve::group(store, Some(&caller.user), id).map(|g| Source::Group(g.id))
    } else {
        resolve::project(store, Some(&caller.user), id).map(|p| Source::Project(p.id))
    }
}

/// The caller's effective role on the resource (admins count as Owner).
fn caller_level(store: &Store, caller: &Caller, source: Source) -> u32 {
    if caller.user.is_admin {
        OWNER
    } else {
        store.effective_level(caller.user.id, source)
    }
}

/// Whether the caller may read/create/rotate/revoke the resource's tokens: Maintainer+ on
/// projects, Owner on groups, never a bot.
fn can_manage(store: &Store, caller: &Caller, source: Source) -> bool {
    let needed = match source {
        Source::Project(_) => MAINTAINER,
        Source::Group(_) => OWNER,
    };
    !caller.is_bot() && caller_level(store, caller, source) >= needed
}

/// `404 project Access Token Not Found` (`not_found!("#{source_type} Access Token")`).
fn token_not_found(group: bool) -> ApiError {
    ApiError::NotFound(format!("404 {} Access Token Not Found", kind_name(group)))
}

/// The resource token `token_id` of `source`, if it is one.
fn find_token(store: &Store, source: Source, token_id: &str, today: NaiveDate) -> Option<Token> {
    let id: u64 = token_id.parse().ok()?;
    store
        .tokens
        .get(&id)
        .filter(|t| t.resource == Some(source) && t.kind != TokenKind::Personal && t.retained_on(today))
        .cloned()
}

/// `GET /:kind/:id/access_tokens`.
pub async fn list<const GROUP: bool>(
    State(state): State<Arc<GitLabState>>,
    caller: Caller,
    Path(id): Path<String>,
    uri: Uri,
    params: Params,
) -> Api {
    caller.require_scopes(READ)?;
    let spec = PageSpec::from_params(&params)?;
    let wanted_state = params.one_of("state", &["active", "inactive"])?;
    let revoked = params.bool("revoked")?;
    let search = params
        .str("search")
        .filter(|s| !s.is_empty())
        .map(|s| s.to_lowercase());
    let created_after = params.datetime("created_after")?;
    let created_before = params.datetime("created_before")?;
    let last_used_after = params.datetime("last_used_after")?;
    let last_used_before = params.datetime("last_used_before")?;
    let expires_after = params.date("expires_after")?;
    let expires_before = params.date("expires_before")?;
    const SORTS: &[&str] = &[
        "created_asc",
        "created_desc",
        "expires_asc",
        "expires_desc",
        "last_used_asc",
        "last_used_desc",
        "name_asc",
        "name_desc",
    ];
    let sort = params.one_of("sort", SORTS)?;
    let settings = state.settings();
    let today = state.clock().today();
    let store = state.store();
    let source = source(&store, &caller, GROUP, &id)?;
    if !can_manage(&store, &caller, source) {
        return Err(ApiError::Unauthorized);
    }
    let mut tokens: Vec<&Token> = store
        .tokens
        .values()
        .filter(|t| t.resource == Some(source) && t.kind != TokenKind::Personal && t.retained_on(today))
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
        .filter(|t| created_after.is_none_or(|a| t.created_at >= a))
        .filter(|t| created_before.is_none_or(|b| t.created_at <= b))
        .filter(|t| last_used_after.is_none_or(|a| t.last_used_at.is_some_and(|u| u >= a)))
        .filter(|t| last_used_before.is_none_or(|b| t.last_used_at.is_some_and(|u| u <= b)))
        .filter(|t| expires_after.is_none_or(|a| t.expires_at.is_some_and(|d| d >= a)))
        .filter(|t| expires_before.is_none_or(|b| t.expires_at.is_some_and(|d| d <= b)))
        .collect();
    match sort.as_deref() {
        Some("created_asc") => tokens.sort_by_key(|t| (t.created_at, t.id)),
        Some("created_desc") => tokens.sort_by_key(|t| std::cmp::Reverse((t.created_at, t.id))),
        Some("expires_asc") => tokens.sort_by_key(|t| (t.expires_at, t.id)),
        Some("expires_desc") => tokens.sort_by_key(|t| std::cmp::Reverse((t.expires_at, t.id))),
        Some("last_used_asc") => tokens.sort_by_key(|t| (t.last_used_at, t.id)),
        Some("last_used_desc") => tokens.sort_by_key(|t| std::cmp::Reverse((t.last_used_at, t.id))),
        Some("name_asc") => tokens.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id))),
        Some("name_desc") => tokens.sort_by(|a, b| b.name.cmp(&a.name).then(b.id.cmp(&a.id))),
        _ => {}
    }
    let items: Vec<Value> = tokens
        .into_iter()
        .map(|t| render::token(&store, t, today, true))
        .collect();
    Ok(paginate(items, spec, &settings.base_url, &uri))
}

/// `GET /:kind/:id/access_tokens/:token_id` (`self` is not an id: 404, as reported on 17.9.1).
pub async fn get<const GROUP: bool>(
    State(state): State<Arc<GitLabState>>,
    caller: Caller,
    Path((id, token_id)): Path<(String, String)>,
) -> Api {
    caller.require_scopes(READ)?;
    let today = state.clock().today();
    let store = state.store();
    let source = source(&store, &caller, GROUP, &id)?;
    if !can_manage(&store, &caller, source) {
        return Err(ApiError::Unauthorized);
    }
    let token = find_token(&store, source, &token_id, today).ok_or_else(|| token_not_found(GROUP))?;
    Ok(Json(render::token(&store, &token, today, true)).into_response())
}

/// Grape validation of the create parameters (all failures joined with `, `).
fn create_params(params: &Params) -> Result<NewResourceToken, ApiError> {
    let mut failures = Failures::default();
    let name = failures.check(params.required("name"))?;
    let scopes = failures.check(params.required_values("scopes", RESOURCE_TOKEN_SCOPES))?;
    let access_level = match failures.check(params.int("access_level"))? {
        Some(None) | None => MAINTAINER,
        Some(Some(l)) => match RESOURCE_TOKEN_LEVELS.iter().find(|v| i64::from(**v) == l) {
            Some(level) => *level,
            None => {
                failures.push("access_level does not have a valid value");
                MAINTAINER
            }
        },
    };
    let expires_at = failures.check(params.date("expires_at"))?.flatten();
    let description = failures.check(params.text("description"))?.flatten();
    failures.finish()?;
    Ok(NewResourceToken {
        name: name.unwrap_or_default(),
        description,
        scopes: scopes.unwrap_or_default(),
        access_level,
        expires_at,
    })
}

/// `POST /:kind/:id/access_tokens` → 201 with `token`.
pub async fn create<const GROUP: bool>(
    State(state): State<Arc<GitLabState>>,
    caller: Caller,
    Path(id): Path<String>,
    params: Params,
) -> Api {
    caller.require_scopes(WRITE)?;
    let new = create_params(&params)?;
    let now = state.now();
    let max_days = state.settings().max_token_lifetime_days;
    let mut store = state.store();
    let source = source(&store, &caller, GROUP, &id)?;
    if !can_manage(&store, &caller, source) {
        return Err(ApiError::BadRequest(format!(
            "User does not have permission to create {} access token",
            kind_name(GROUP)
        )));
    }
    if new.access_level > caller_level(&store, &caller, source) {
        return Err(ApiError::BadRequest(
            "Access level of the token contains permissions not held by the creating user".into(),
        ));
    }
    let issued = store.create_resource_token(source, new, now, max_days)?;
    let body = render::token_with_secret(&store, &issued.token, &issued.secret, now.date_naive(), true);
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `POST /:kind/:id/access_tokens/:token_id/rotate` → 200 with the new `token`.
pub async fn rotate<const GROUP: bool>(
    State(state): State<Arc<GitLabState>>,
    caller: Caller,
    Path((id, token_id)): Path<(String, String)>,
    params: Params,
) -> Api {
    caller.require_scopes(WRITE)?;
    let expires_at = params.date("expires_at")?;
    let now = state.now();
    let max_days = state.settings().max_token_lifetime_days;
    let mut store = state.store();
    let source = source(&store, &caller, GROUP, &id)?;
    let token = find_token(&store, source, &token_id, now.date_naive());
    let token = match token {
        Some(t) if can_manage(&store, &caller, source) => t,
        None if caller.user.is_admin => return Err(ApiError::route_not_found()),
        // Non-admins always get 401, never 404.
        _ => return Err(ApiError::Unauthorized),
    };
    if token.revoked {
        return Err(ApiError::BadRequest("Token already revoked".into()));
    }
    if store.direct_level(token.user_id, source) > caller_level(&store, &caller, source) {
        return Err(ApiError::BadRequest(
            "Not eligible to rotate tokens with permissions not held by the user".into(),
        ));
    }
    let issued = store.rotate_token(token.id, expires_at, now, max_days)?;
    let body = render::token_with_secret(&store, &issued.token, &issued.secret, now.date_naive(), true);
    Ok(Json(body).into_response())
}

/// `POST /:kind/:id/access_tokens/self/rotate`: the resource token rotates itself (`api` or
/// `self_rotate`); 405 for non-bot credentials, 401 when the token is not of this resource.
pub async fn self_rotate<const GROUP: bool>(
    State(state): State<Arc<GitLabState>>,
    caller: Caller,
    Path(id): Path<String>,
    params: Params,
) -> Api {
    caller.require_scopes(&["api", "self_rotate"])?;
    let expires_at = params.date("expires_at")?;
    let now = state.now();
    let max_days = state.settings().max_token_lifetime_days;
    let mut store = state.store();
    let source = source(&store, &caller, GROUP, &id)?;
    if !caller.is_bot() {
        return Err(ApiError::MethodNotAllowed);
    }
    if caller.token.resource != Some(source) {
        return Err(ApiError::Unauthorized);
    }
    let issued = store.rotate_token(caller.token.id, expires_at, now, max_days)?;
    let body = render::token_with_secret(&store, &issued.token, &issued.secret, now.date_naive(), true);
    Ok(Json(body).into_response())
}

/// `DELETE /:kind/:id/access_tokens/:token_id` → 204; the token stays listed as revoked.
pub async fn revoke<const GROUP: bool>(
    State(state): State<Arc<GitLabState>>,
    caller: Caller,
    Path((id, token_id)): Path<(String, String)>,
) -> Api {
    caller.require_scopes(WRITE)?;
    let now = state.now();
    let today = now.date_naive();
    let mut store = state.store();
    let source = source(&store, &caller, GROUP, &id)?;
    let token = find_token(&store, source, &token_id, today).ok_or_else(|| token_not_found(GROUP))?;
    if !can_manage(&store, &caller, source) {
        let bot = store
            .users
            .get(&token.user_id)
            .map(|u| u.name.clone())
            .unwrap_or_default();
        return Err(ApiError::BadRequest(format!(
            "{} cannot delete {bot}",
            caller.user.name
        )));
    }
    store.revoke_token(token.id, now);
    Ok(StatusCode::NO_CONTENT.into_response())
}
