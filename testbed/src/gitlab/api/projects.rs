//! Instance, user, project, group, registry and member endpoints.

use std::sync::Arc;

use axum::{
    Json,
    extract::{Path, State},
    http::Uri,
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use super::{
    auth::{Caller, MaybeCaller, READ},
    params::{PageSpec, Params, paginate},
    render, resolve,
};
use crate::gitlab::{
    error::ApiError,
    model::{GUEST, REPORTER, Source, fmt_time},
    state::GitLabState,
};

type Api = Result<Response, ApiError>;

/// Scopes accepted by `/user`, `/version` and `/metadata`.
const USER_READ: &[&str] = &["api", "read_api", "read_user"];

/// `GET /version`.
pub async fn version(State(state): State<Arc<GitLabState>>, caller: Caller) -> Api {
    caller.require_scopes(USER_READ)?;
    let version = state.settings().version;
    Ok(Json(json!({"version": version, "revision": "testbed"})).into_response())
}

/// `GET /metadata`.
pub async fn metadata(State(state): State<Arc<GitLabState>>, caller: Caller) -> Api {
    caller.require_scopes(USER_READ)?;
    let version = state.settings().version;
    Ok(Json(json!({
        "version": version, "revision": "testbed", "enterprise": false,
        "kas": {"enabled": false, "externalUrl": null, "version": null},
    }))
    .into_response())
}

/// `GET /user`.
pub async fn current_user(State(state): State<Arc<GitLabState>>, caller: Caller) -> Api {
    caller.require_scopes(USER_READ)?;
    Ok(Json(render::current_user(&caller.user, &state.settings())).into_response())
}

fn matches_search(haystacks: &[&str], needle: &str) -> bool {
    let needle = needle.to_lowercase();
    haystacks.iter().any(|h| h.to_lowercase().contains(&needle))
}

/// `GET /projects`: visible projects; `membership`, `search`, `search_namespaces`, `archived`,
/// `visibility`, `min_access_level`, `order_by` (`id`, `name`, `path`, `created_at`), `sort`.
pub async fn list_projects(
    State(state): State<Arc<GitLabState>>,
    MaybeCaller(caller): MaybeCaller,
    uri: Uri,
    params: Params,
) -> Api {
    if let Some(c) = &caller {
        c.require_scopes(READ)?;
    }
    let spec = PageSpec::from_params(&params)?;
    let membership = params.bool("membership")?.unwrap_or(false);
    let archived = params.bool("archived")?;
    let min_level = params.int("min_access_level")?;
    let search = params.str("search").filter(|s| !s.is_empty());
    let search_namespaces = params.bool("search_namespaces")?.unwrap_or(false);
    let visibility = params.str("visibility");
    let order_by = params.str("order_by").unwrap_or_else(|| "created_at".into());
    if ![
        "id",
        "name",
        "path",
        "created_at",
        "updated_at",
        "last_activity_at",
    ]
    .contains(&order_by.as_str())
    {
        return Err(ApiError::Param("order_by does not have a valid value".into()));
    }
    let ascending = match params.str("sort").as_deref() {
        None | Some("desc") => false,
        Some("asc") => true,
        Some(_) => return Err(ApiError::Param("sort does not have a valid value".into())),
    };
    let settings = state.settings();
    let store = state.store();
    let user = caller.as_ref().map(|c| &c.user);
    let mut projects: Vec<_> = store
        .projects
        .values()
        .filter(|p| store.can_see_project(user, p))
        .filter(|p| {
            let level = user
                .map(|u| store.effective_level(u.id, Source::Project(p.id)))
                .unwrap_or(0);
            (!membership || level >= GUEST)
                && min_level.is_none_or(|m| i64::from(level) >= m)
                && archived.is_none_or(|a| p.archived == a)
                && visibility.as_deref().is_none_or(|v| p.visibility == v)
        })
        .filter(|p| match &search {
            None => true,
            Some(s) if search_namespaces => matches_search(&[&store.project_path(p), &p.name], s),
            Some(s) => matches_search(&[&p.path, &p.name], s),
        })
        .collect();
    projects.sort_by(|a, b| match order_by.as_str() {
        "name" => a.name.cmp(&b.name).then(a.id.cmp(&b.id)),
        "path" => a.path.cmp(&b.path).then(a.id.cmp(&b.id)),
        "id" => a.id.cmp(&b.id),
        _ => a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)),
    });
    if !ascending {
        projects.reverse();
    }
    let items: Vec<Value> = projects
        .into_iter()
        .map(|p| render::project(&store, p, &settings, user.map(|u| u.id)))
        .collect();
    Ok(paginate(items, spec, &settings.base_url, &uri))
}

/// `GET /projects/:id`.
pub async fn get_project(
    State(state): State<Arc<GitLabState>>,
    MaybeCaller(caller): MaybeCaller,
    Path(id): Path<String>,
) -> Api {
    if let Some(c) = &caller {
        c.require_scopes(READ)?;
    }
    let settings = state.settings();
    let store = state.store();
    let user = caller.as_ref().map(|c| &c.user);
    let p = resolve::project(&store, user, &id)?;
    Ok(Json(render::project(&store, &p, &settings, user.map(|u| u.id))).into_response())
}

/// `GET /groups/:id` (`GroupDetail`, with `shared_with_groups`).
pub async fn get_group(
    State(state): State<Arc<GitLabState>>,
    MaybeCaller(caller): MaybeCaller,
    Path(id): Path<String>,
) -> Api {
    if let Some(c) = &caller {
        c.require_scopes(READ)?;
    }
    let settings = state.settings();
    let store = state.store();
    let g = resolve::group(&store, caller.as_ref().map(|c| &c.user), &id)?;
    Ok(Json(super::sharing::group_detail(&store, g.id, &settings)).into_response())
}

/// `GET /groups/:id/projects` (`include_subgroups`, `archived`, `search`).
pub async fn group_projects(
    State(state): State<Arc<GitLabState>>,
    MaybeCaller(caller): MaybeCaller,
    Path(id): Path<String>,
    uri: Uri,
    params: Params,
) -> Api {
    if let Some(c) = &caller {
        c.require_scopes(READ)?;
    }
    let spec = PageSpec::from_params(&params)?;
    let include_subgroups = params.bool("include_subgroups")?.unwrap_or(false);
    // GitLab's default: projects shared with the group (a live project share) are listed too.
    let with_shared = params.bool("with_shared")?.unwrap_or(true);
    let archived = params.bool("archived")?;
    let search = params.str("search").filter(|s| !s.is_empty());
    let settings = state.settings();
    let store = state.store();
    let user = caller.as_ref().map(|c| &c.user);
    let g = resolve::group(&store, user, &id)?;
    let today = store.today();
    let mut projects = store.group_projects(g.id, include_subgroups);
    if with_shared {
        let shared = store.projects.values().filter(|p| {
            store
                .sharing
                .live_links(Source::Project(p.id), today)
                .any(|l| l.group_id == g.id)
        });
        for p in shared {
            if !projects.iter().any(|q| q.id == p.id) {
                projects.push(p);
            }
        }
    }
    let mut projects: Vec<_> = projects
        .into_iter()
        .filter(|p| store.can_see_project(user, p))
        .filter(|p| archived.is_none_or(|a| p.archived == a))
        .filter(|p| {
            search
                .as_deref()
                .is_none_or(|s| matches_search(&[&p.path, &p.name], s))
        })
        .collect();
    projects.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
    let items = projects
        .into_iter()
        .map(|p| render::project(&store, p, &settings, user.map(|u| u.id)))
        .collect();
    Ok(paginate(items, spec, &settings.base_url, &uri))
}

/// `GET /projects/:id/registry/repositories`: needs Reporter+ (or a public project).
pub async fn registry_repositories(
    State(state): State<Arc<GitLabState>>,
    MaybeCaller(caller): MaybeCaller,
    Path(id): Path<String>,
    uri: Uri,
    params: Params,
) -> Api {
    if let Some(c) = &caller {
        c.require_scopes(READ)?;
    }
    let spec = PageSpec::from_params(&params)?;
    let settings = state.settings();
    let store = state.store();
    let user = caller.as_ref().map(|c| &c.user);
    let p = resolve::project(&store, user, &id)?;
    let level = user
        .map(|u| store.effective_level(u.id, Source::Project(p.id)))
        .unwrap_or(0);
    let admin = user.is_some_and(|u| u.is_admin);
    if p.visibility != "public" && level < REPORTER && !admin {
        return Err(ApiError::Forbidden(None));
    }
    let base = store.project_path(&p).to_lowercase();
    let items = p
        .images
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let path = if name.is_empty() {
                base.clone()
            } else {
                format!("{base}/{name}")
            };
            json!({
                "id": p.id * 1000 + i as u64, "name": name, "path": path, "project_id": p.id,
                "location": format!("{}/{}", settings.registry_host, path),
                "created_at": fmt_time(p.created_at), "cleanup_policy_started_at": null,
                "status": null,
            })
        })
        .collect();
    Ok(paginate(items, spec, &settings.base_url, &uri))
}

/// Which members a members route lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Direct members only.
    Direct,
    /// Effective members, inherited from ancestor groups included.
    All,
}

fn member_source(state: &GitLabState, caller: &Caller, kind: &str, id: &str) -> Result<Source, ApiError> {
    let store = state.store();
    match kind {
        "projects" => resolve::project(&store, Some(&caller.user), id).map(|p| Source::Project(p.id)),
        _ => resolve::group(&store, Some(&caller.user), id).map(|g| Source::Group(g.id)),
    }
}

fn level_of(state: &GitLabState, user_id: u64, source: Source, scope: Scope) -> u32 {
    let store = state.store();
    match scope {
        Scope::Direct => store.direct_level(user_id, source),
        Scope::All => store.effective_level(user_id, source),
    }
}

/// `GET /{projects|groups}/:id/members[/all]/:user_id`: `404 Not found` (`find_by!`) when none.
pub fn member(
    state: &GitLabState,
    caller: &Caller,
    kind: &str,
    id: &str,
    user_id: &str,
    scope: Scope,
) -> Api {
    caller.require_scopes(READ)?;
    let source = member_source(state, caller, kind, id)?;
    let user_id: u64 = user_id
        .parse()
        .map_err(|_| ApiError::Param("user_id is invalid".into()))?;
    let level = level_of(state, user_id, source, scope);
    let store = state.store();
    let user = store
        .users
        .get(&user_id)
        .filter(|_| level > 0)
        .ok_or_else(ApiError::record_not_found)?;
    let since = store.memberships_of(user_id).map(|m| m.created_at).min();
    Ok(Json(render::member(
        user,
        level,
        &state.settings(),
        since.unwrap_or(user.created_at),
        super::members::row_expiry(&store, user_id, source, level),
    ))
    .into_response())
}

/// `GET /{projects|groups}/:id/members[/all]` (`user_ids[]`, `query`), paginated.
pub fn members(
    state: &GitLabState,
    caller: &Caller,
    kind: &str,
    id: &str,
    req: (&Uri, &Params),
    scope: Scope,
) -> Api {
    let (uri, params) = req;
    caller.require_scopes(READ)?;
    let spec = PageSpec::from_params(params)?;
    let source = member_source(state, caller, kind, id)?;
    let wanted: Option<Vec<u64>> = params
        .list("user_ids")
        .map(|ids| ids.iter().filter_map(|i| i.parse().ok()).collect());
    let query = params.str("query").filter(|q| !q.is_empty());
    let settings = state.settings();
    let store = state.store();
    let items = store
        .users
        .values()
        .filter(|u| wanted.as_ref().is_none_or(|w| w.contains(&u.id)))
        .filter(|u| {
            query
                .as_deref()
                .is_none_or(|q| matches_search(&[&u.username, &u.name], q))
        })
        .filter_map(|u| {
            let level = match scope {
                Scope::Direct => store.direct_level(u.id, source),
                Scope::All => store.effective_level(u.id, source),
            };
            let since = store.memberships_of(u.id).map(|m| m.created_at).min();
            let expiry = super::members::row_expiry(&store, u.id, source, level);
            (level > 0).then(|| render::member(u, level, &settings, since.unwrap_or(u.created_at), expiry))
        })
        .collect();
    Ok(paginate(items, spec, &settings.base_url, uri))
}
