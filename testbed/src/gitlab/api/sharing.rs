//! Sharing projects and groups with groups (`POST/DELETE /projects/:id/share[/:group_id]`,
//! `POST/DELETE /groups/:id/share[/:group_id]`) and the `shared_with_groups` arrays of
//! `GET /projects/:id` and `GET /groups/:id`. Expired links are gone, as after GitLab's daily
//! `RemoveExpiredGroupLinksWorker`; they never grant access from their `expires_at` date on.

use std::sync::Arc;

use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use chrono::NaiveDate;
use serde_json::{Value, json};

use super::{
    auth::{Caller, WRITE},
    members::caller_level,
    params::Params,
    render, resolve,
};
use crate::gitlab::{
    error::ApiError,
    groups::ShareError,
    model::{DEVELOPER, GUEST, MAINTAINER, OWNER, PLANNER, REPORTER, Source, fmt_date},
    state::{GitLabState, Settings},
    store::Store,
};

type Api = Result<Response, ApiError>;
type S = Arc<GitLabState>;

/// `Gitlab::Access.values` (project shares; no Owner).
const PROJECT_SHARE_LEVELS: &[u32] = &[GUEST, PLANNER, REPORTER, DEVELOPER, MAINTAINER];
/// `Gitlab::Access.all_values` (group shares).
const GROUP_SHARE_LEVELS: &[u32] = &[GUEST, PLANNER, REPORTER, DEVELOPER, MAINTAINER, OWNER];

/// The `shared_with_groups` array of a project or group: its links in force, by group id.
pub fn shared_with_groups(store: &Store, shared: Source) -> Value {
    let today = store.today();
    let items: Vec<Value> = store
        .sharing
        .live_links(shared, today)
        .filter_map(|l| {
            let g = store.groups.get(&l.group_id)?;
            Some(json!({
                "group_id": g.id, "group_name": g.name, "group_full_path": g.full_path,
                "group_access_level": l.group_access, "expires_at": l.expires_at.map(fmt_date),
            }))
        })
        .collect();
    Value::Array(items)
}

/// `GroupDetail`: the `Group` entity plus `shared_with_groups`.
pub fn group_detail(store: &Store, group_id: u64, settings: &Settings) -> Value {
    let Some(g) = store.groups.get(&group_id) else {
        return Value::Null;
    };
    let mut v = render::group(store, g, settings);
    if let Some(map) = v.as_object_mut() {
        map.insert(
            "shared_with_groups".into(),
            shared_with_groups(store, Source::Group(group_id)),
        );
    }
    v
}

/// `group_id` (required integer) and `group_access` (required, one of `levels`), `expires_at`.
fn share_params(params: &Params, levels: &[u32]) -> Result<(u64, u32, Option<NaiveDate>), ApiError> {
    let mut missing = Vec::new();
    for name in ["group_id", "group_access"] {
        if params.str(name).is_none_or(|v| v.is_empty()) {
            missing.push(format!("{name} is missing"));
        }
    }
    if !missing.is_empty() {
        return Err(ApiError::Param(missing.join(", ")));
    }
    let group_id = params
        .int("group_id")?
        .and_then(|v| u64::try_from(v).ok())
        .ok_or_else(|| ApiError::Param("group_id is invalid".into()))?;
    let access = params
        .int("group_access")?
        .and_then(|v| u32::try_from(v).ok())
        .filter(|v| levels.contains(v))
        .ok_or_else(|| ApiError::Param("group_access does not have a valid value".into()))?;
    let expires_at = params.date("expires_at")?;
    Ok((group_id, access, expires_at))
}

/// `POST /projects/:id/share`: Maintainer+; 201 `ProjectGroupLink`; 404 `Group Not Found` when
/// the group is absent or invisible; 409 when already shared with it.
pub async fn share_project(
    State(state): State<S>,
    caller: Caller,
    Path(id): Path<String>,
    params: Params,
) -> Api {
    caller.require_scopes(WRITE)?;
    let now = state.now();
    let mut store = state.store();
    let p = resolve::project(&store, Some(&caller.user), &id)?;
    if caller_level(&store, &caller, Source::Project(p.id)) < MAINTAINER {
        return Err(ApiError::Forbidden(None));
    }
    let (group_id, access, expires_at) = share_params(&params, PROJECT_SHARE_LEVELS)?;
    let group = resolve::group(&store, Some(&caller.user), &group_id.to_string())?;
    let link = store
        .sharing
        .share(Source::Project(p.id), group.id, access, expires_at, now)
        .map_err(|e| match e {
            ShareError::Duplicate | ShareError::SelfShare => {
                ApiError::Api(409, "Group already shared with this group".into())
            }
        })?;
    let body = json!({
        "id": link.id, "project_id": p.id, "group_id": link.group_id,
        "group_access": link.group_access, "expires_at": link.expires_at.map(fmt_date),
    });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `DELETE /projects/:id/share/:group_id`: Maintainer+; 204, or 404 `Group Link Not Found`.
pub async fn unshare_project(
    State(state): State<S>,
    caller: Caller,
    Path((id, group_id)): Path<(String, String)>,
) -> Api {
    caller.require_scopes(WRITE)?;
    let mut store = state.store();
    let p = resolve::project(&store, Some(&caller.user), &id)?;
    if caller_level(&store, &caller, Source::Project(p.id)) < MAINTAINER {
        return Err(ApiError::Forbidden(None));
    }
    let group_id: u64 = group_id
        .parse()
        .map_err(|_| ApiError::Param("group_id is invalid".into()))?;
    if store.sharing.unshare(Source::Project(p.id), group_id) {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::not_found("Group Link"))
    }
}

/// `POST /groups/:id/share`: Owner of the shared group, able to see the invited one; 201
/// `GroupDetail`; 404 `{"message":"Not Found"}` otherwise (the service's answer); 409 when
/// already shared with it.
pub async fn share_group(
    State(state): State<S>,
    caller: Caller,
    Path(id): Path<String>,
    params: Params,
) -> Api {
    caller.require_scopes(WRITE)?;
    let now = state.now();
    let settings = state.settings();
    let mut store = state.store();
    let shared = resolve::group(&store, Some(&caller.user), &id)?;
    let (group_id, access, expires_at) = share_params(&params, GROUP_SHARE_LEVELS)?;
    let invited = resolve::group(&store, Some(&caller.user), &group_id.to_string())?;
    if caller_level(&store, &caller, Source::Group(shared.id)) < OWNER {
        return Err(ApiError::NotFound("Not Found".into()));
    }
    store
        .sharing
        .share(Source::Group(shared.id), invited.id, access, expires_at, now)
        .map_err(|e| match e {
            ShareError::Duplicate => ApiError::Api(
                409,
                "Shared group The group has already been shared with this group".into(),
            ),
            ShareError::SelfShare => ApiError::Api(409, "Shared group cannot be shared with itself".into()),
        })?;
    Ok((
        StatusCode::CREATED,
        Json(group_detail(&store, shared.id, &settings)),
    )
        .into_response())
}

/// `DELETE /groups/:id/share/:group_id`: Owner; 204, or 404 `404 Not Found`.
pub async fn unshare_group(
    State(state): State<S>,
    caller: Caller,
    Path((id, group_id)): Path<(String, String)>,
) -> Api {
    caller.require_scopes(WRITE)?;
    let mut store = state.store();
    let shared = resolve::group(&store, Some(&caller.user), &id)?;
    let group_id: u64 = group_id
        .parse()
        .map_err(|_| ApiError::Param("group_id is invalid".into()))?;
    if store.sharing.link(Source::Group(shared.id), group_id).is_none() {
        return Err(ApiError::route_not_found());
    }
    if caller_level(&store, &caller, Source::Group(shared.id)) < OWNER {
        return Err(ApiError::Forbidden(None));
    }
    store.sharing.unshare(Source::Group(shared.id), group_id);
    Ok(StatusCode::NO_CONTENT.into_response())
}
