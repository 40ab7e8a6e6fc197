//! Member writes (`lib/api/members.rb`): add (`user_id`, a comma list of ids, or `username`),
//! change (`access_level`, `expires_at`) and remove direct members of projects and groups.
//! Project members need Maintainer+ to manage, group members Owner; a role above the caller's own
//! is refused; changes count at once in `members/all` and every access check.

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use chrono::NaiveDate;
use serde_json::json;

use super::{
    auth::{Caller, WRITE},
    params::Params,
    render, resolve,
};
use crate::gitlab::{
    error::ApiError,
    model::{DEVELOPER, GUEST, MAINTAINER, Membership, OWNER, PLANNER, REPORTER, Source},
    state::GitLabState,
    store::Store,
};

type Api = Result<Response, ApiError>;

/// Roles a member may be given (`Gitlab::Access.all_values` minus minimal access, a paid feature).
const MEMBER_LEVELS: &[u32] = &[GUEST, PLANNER, REPORTER, DEVELOPER, MAINTAINER, OWNER];

/// Resolves `:id` of `projects`/`groups` to a source the caller can see (404 otherwise).
pub(crate) fn source_of(store: &Store, caller: &Caller, kind: &str, id: &str) -> Result<Source, ApiError> {
    if kind == "groups" {
        resolve::group(store, Some(&caller.user), id).map(|g| Source::Group(g.id))
    } else {
        resolve::project(store, Some(&caller.user), id).map(|p| Source::Project(p.id))
    }
}

/// The caller's role on a source (admins count as Owner).
pub(crate) fn caller_level(store: &Store, caller: &Caller, source: Source) -> u32 {
    if caller.user.is_admin {
        OWNER
    } else {
        store.effective_level(caller.user.id, source)
    }
}

/// `admin_project_member` (Maintainer+) or `admin_group_member` (Owner); 403 otherwise.
fn authorize_admin(store: &Store, caller: &Caller, source: Source) -> Result<u32, ApiError> {
    let needed = match source {
        Source::Project(_) => MAINTAINER,
        Source::Group(_) => OWNER,
    };
    let level = caller_level(store, caller, source);
    if level >= needed {
        Ok(level)
    } else {
        Err(ApiError::Forbidden(None))
    }
}

/// `access_level`: required integer, one of the member roles (model validation otherwise), not
/// above the caller's own role.
fn access_level(params: &Params, caller_level: u32) -> Result<u32, ApiError> {
    let level = params
        .int("access_level")?
        .ok_or_else(|| ApiError::Param("access_level is missing".into()))?;
    let level = u32::try_from(level)
        .ok()
        .filter(|l| MEMBER_LEVELS.contains(l))
        .ok_or_else(|| ApiError::Validation("access_level".into(), "is not included in the list".into()))?;
    if level > caller_level {
        return Err(ApiError::Forbidden(None));
    }
    Ok(level)
}

/// `expires_at` (a date; a datetime is cut to its date); a past date fails validation.
fn expires_at(params: &Params, today: NaiveDate) -> Result<Option<NaiveDate>, ApiError> {
    let Some(raw) = params.str("expires_at").filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let date = NaiveDate::parse_from_str(raw.get(..10).unwrap_or(&raw), "%Y-%m-%d")
        .map_err(|_| ApiError::Param("expires_at is invalid".into()))?;
    if date < today {
        return Err(ApiError::Validation(
            "expires_at".into(),
            "cannot be a date in the past".into(),
        ));
    }
    Ok(Some(date))
}

/// The `Member` entity of a direct membership.
fn present(
    state: &GitLabState,
    store: &Store,
    user_id: u64,
    source: Source,
) -> Result<serde_json::Value, ApiError> {
    let user = store.users.get(&user_id).ok_or_else(ApiError::record_not_found)?;
    let m = store
        .direct_member(user_id, source)
        .ok_or_else(ApiError::record_not_found)?;
    Ok(render::member(
        user,
        m.access_level,
        &state.settings(),
        m.created_at,
        store.sharing.member_expiry(user_id, source),
    ))
}

/// `POST /{projects|groups}/:id/members`: 201 with the member; 409 `Member already exists`;
/// 404 `User Not Found`; a comma list of ids answers `{"status":"success"}`.
pub fn add(state: &GitLabState, caller: &Caller, kind: &str, id: &str, params: &Params) -> Api {
    caller.require_scopes(WRITE)?;
    let now = state.now();
    let mut store = state.store();
    let source = source_of(&store, caller, kind, id)?;
    let own = authorize_admin(&store, caller, source)?;
    let user_ids = match (params.str("user_id"), params.str("username")) {
        (Some(ids), _) if !ids.is_empty() => ids,
        (_, Some(name)) if !name.is_empty() => store
            .user_by_name(&name)
            .map(|u| u.id.to_string())
            .ok_or_else(|| ApiError::not_found("User"))?,
        _ => {
            return Err(ApiError::Param(
                "user_id, username are missing, exactly one parameter must be provided".into(),
            ));
        }
    };
    let level = access_level(params, own)?;
    let expiry = expires_at(params, now.date_naive())?;
    let parsed: Vec<u64> = user_ids
        .split(',')
        .map(|s| s.trim().parse::<u64>())
        .collect::<Result<_, _>>()
        .map_err(|_| ApiError::Param("user_id is invalid".into()))?;
    let batch = parsed.len() > 1;
    for &user_id in &parsed {
        if store.direct_member(user_id, source).is_some() {
            if batch {
                continue;
            }
            return Err(ApiError::Api(409, "Member already exists".into()));
        }
        if !store.users.contains_key(&user_id) {
            return Err(ApiError::not_found("User"));
        }
        store.set_member(Membership {
            source,
            user_id,
            access_level: level,
            created_at: now,
        });
        store.sharing.set_member_expiry(user_id, source, expiry);
    }
    if batch {
        return Ok((StatusCode::CREATED, Json(json!({"status": "success"}))).into_response());
    }
    let body = present(state, &store, parsed[0], source)?;
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `PUT /{projects|groups}/:id/members/:user_id`: `access_level` (required) and `expires_at`.
pub fn edit(
    state: &GitLabState,
    caller: &Caller,
    kind: &str,
    id: &str,
    user_id: &str,
    params: &Params,
) -> Api {
    caller.require_scopes(WRITE)?;
    let today = state.now().date_naive();
    let mut store = state.store();
    let source = source_of(&store, caller, kind, id)?;
    let own = authorize_admin(&store, caller, source)?;
    let user_id = parse_user_id(user_id)?;
    let level = access_level(params, own)?;
    let expiry = expires_at(params, today)?;
    let existing = store
        .direct_member(user_id, source)
        .cloned()
        .ok_or_else(ApiError::record_not_found)?;
    let kept_expiry = store.sharing.member_expiry(user_id, source);
    store.set_member(Membership {
        access_level: level,
        ..existing
    });
    let expiry = if params.has("expires_at") {
        expiry
    } else {
        kept_expiry
    };
    store.sharing.set_member_expiry(user_id, source, expiry);
    let body = present(state, &store, user_id, source)?;
    Ok(Json(body).into_response())
}

/// `DELETE /{projects|groups}/:id/members/:user_id`: 204; members may remove themselves.
pub fn remove(state: &GitLabState, caller: &Caller, kind: &str, id: &str, user_id: &str) -> Api {
    caller.require_scopes(WRITE)?;
    let mut store = state.store();
    let source = source_of(&store, caller, kind, id)?;
    let user_id = parse_user_id(user_id)?;
    if store.direct_member(user_id, source).is_none() {
        return Err(ApiError::record_not_found());
    }
    if caller.user.id != user_id {
        authorize_admin(&store, caller, source)?;
    }
    store.remove_member(user_id, source);
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The `expires_at` shown on a `members[/all]` row: the direct membership's, when that is the
/// membership giving the row's level.
pub(crate) fn row_expiry(store: &Store, user_id: u64, source: Source, level: u32) -> Option<NaiveDate> {
    (store.direct_level(user_id, source) == level)
        .then(|| store.sharing.member_expiry(user_id, source))
        .flatten()
}

fn parse_user_id(raw: &str) -> Result<u64, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::Param("user_id is invalid".into()))
}
