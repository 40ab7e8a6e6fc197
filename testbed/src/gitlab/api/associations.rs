//! `GET /personal_access_tokens/self/associations` (17.4+, `lib/api/personal_access_tokens/
//! self_information.rb`): the groups (`GroupsFinder`) and projects (`ProjectsFinder`) the token's
//! user can reach, each list paginated with the same `page`/`per_page` (the headers are the
//! projects list's, the last `paginate` call). Any scope. Without `min_access_level` the lists
//! hold every group/project the user can see; with it, those where the user's effective level
//! (shares included, as in `project_authorizations`) is at least that.
//!
//! `access_levels` are GitLab's: a group's is the highest *direct* membership in it or an
//! ancestor (`highest_group_member`, shares ignored, null when none); a project's are the direct
//! project membership and its group's `highest_group_member`, either null.

use std::sync::Arc;

use axum::{
    Json,
    extract::State,
    http::Uri,
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use super::{
    auth::Caller,
    params::{PageSpec, Params, page_headers},
    render,
};
use crate::gitlab::{
    error::ApiError,
    model::{DEVELOPER, GUEST, MAINTAINER, OWNER, PLANNER, REPORTER, Source, fmt_time},
    state::GitLabState,
};

/// `Gitlab::Access.all_values` plus minimal access (5), the values `min_access_level` takes.
const LEVELS: &[i64] = &[
    5,
    GUEST as i64,
    PLANNER as i64,
    REPORTER as i64,
    DEVELOPER as i64,
    MAINTAINER as i64,
    OWNER as i64,
];

fn null_if_zero(level: u32) -> Value {
    if level == 0 { Value::Null } else { json!(level) }
}

/// The handler.
pub async fn associations(
    State(state): State<Arc<GitLabState>>,
    caller: Caller,
    uri: Uri,
    params: Params,
) -> Result<Response, ApiError> {
    let min_level = params.int("min_access_level")?;
    if min_level.is_some_and(|m| !LEVELS.contains(&m)) {
        return Err(ApiError::Param(
            "min_access_level does not have a valid value".into(),
        ));
    }
    let spec = PageSpec::from_params(&params)?;
    let settings = state.settings();
    let store = state.store();
    let user = &caller.user;
    let reaches = |level: u32| min_level.is_none_or(|m| i64::from(level) >= m);
    let admin_level = |level: u32| if user.is_admin { OWNER } else { level };
    let mut groups: Vec<Value> = store
        .groups
        .values()
        .rev()
        .filter(|g| store.can_see_group(Some(user), g))
        .filter(|g| reaches(admin_level(store.group_level(user.id, g.id))))
        .map(|g| {
            json!({
                "id": g.id, "web_url": format!("{}/groups/{}", settings.base_url, g.full_path),
                "name": g.name, "parent_id": g.parent_id, "organization_id": 1,
                "access_levels": null_if_zero(store.highest_group_member(user.id, g.id)),
                "visibility": g.visibility,
            })
        })
        .collect();
    let mut projects: Vec<Value> = store
        .projects
        .values()
        .rev()
        .filter(|p| store.can_see_project(Some(user), p))
        .filter(|p| reaches(admin_level(store.project_level(user.id, p.id))))
        .map(|p| {
            let path = store.project_path(p);
            json!({
                "id": p.id, "description": p.description, "name": p.name,
                "name_with_namespace": store.project_name_with_namespace(p), "path": p.path,
                "path_with_namespace": path, "created_at": fmt_time(p.created_at),
                "access_levels": {
                    "project_access_level": null_if_zero(store.direct_level(user.id, Source::Project(p.id))),
                    "group_access_level": null_if_zero(store.highest_group_member(user.id, p.namespace_id)),
                },
                "visibility": p.visibility, "web_url": format!("{}/{}", settings.base_url, path),
                "namespace": store.groups.get(&p.namespace_id).map(|g| render::namespace(&store, g, &settings)),
            })
        })
        .collect();
    let headers = page_headers(spec, projects.len(), &settings.base_url, &uri);
    let start = (spec.page - 1).saturating_mul(spec.per_page);
    let page = |items: &mut Vec<Value>| -> Vec<Value> {
        std::mem::take(items)
            .into_iter()
            .skip(start)
            .take(spec.per_page)
            .collect()
    };
    let body = json!({"groups": page(&mut groups), "projects": page(&mut projects)});
    Ok((headers, Json(body)).into_response())
}
