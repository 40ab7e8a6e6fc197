//! Group lists (`GroupsFinder`): `GET /groups`, `GET /groups/:id/subgroups` (children) and
//! `GET /groups/:id/descendant_groups`, with `search`, `min_access_level` (effective level, shares
//! included), `owned`, `all_available`, `order_by` (`name`, `path`, `id`), `sort`, paginated.

use std::sync::Arc;

use axum::{
    extract::{Path, State},
    http::Uri,
    response::Response,
};
use serde_json::Value;

use super::{
    auth::{MaybeCaller, READ},
    params::{PageSpec, Params, paginate},
    render, resolve,
};
use crate::gitlab::{
    error::ApiError,
    model::{GUEST, Group, OWNER, User},
    state::GitLabState,
    store::Store,
};

type Api = Result<Response, ApiError>;
type S = Arc<GitLabState>;

/// Which groups a list starts from.
enum Within {
    /// Every group.
    All,
    /// Direct children of a group.
    Children(u64),
    /// Every group below a group.
    Descendants(u64),
}

fn level(store: &Store, user: Option<&User>, g: &Group) -> u32 {
    match user {
        Some(u) if u.is_admin => OWNER,
        Some(u) => store.group_level(u.id, g.id),
        None => 0,
    }
}

fn list(state: &GitLabState, caller: &MaybeCaller, within: Within, uri: &Uri, params: &Params) -> Api {
    if let Some(c) = &caller.0 {
        c.require_scopes(READ)?;
    }
    let spec = PageSpec::from_params(params)?;
    let min_level = params.int("min_access_level")?;
    let owned = params.bool("owned")?.unwrap_or(false);
    let all_available = params.bool("all_available")?;
    let top_level_only = params.bool("top_level_only")?.unwrap_or(false);
    let search = params
        .str("search")
        .filter(|s| !s.is_empty())
        .map(|s| s.to_lowercase());
    let order_by = params.str("order_by").unwrap_or_else(|| "name".into());
    if !["name", "path", "id", "similarity"].contains(&order_by.as_str()) {
        return Err(ApiError::Param("order_by does not have a valid value".into()));
    }
    let descending = match params.str("sort").as_deref() {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(_) => return Err(ApiError::Param("sort does not have a valid value".into())),
    };
    let settings = state.settings();
    let store = state.store();
    let user = caller.0.as_ref().map(|c| &c.user);
    // `GET /groups` for a non-admin lists memberships unless `all_available` (GitLab's default
    // for signed-in users is all available groups since 10.0).
    let memberships_only = matches!(within, Within::All) && all_available == Some(false);
    let mut groups: Vec<&Group> = store
        .groups
        .values()
        .filter(|g| match within {
            Within::All => !top_level_only || g.parent_id.is_none(),
            Within::Children(id) => g.parent_id == Some(id),
            Within::Descendants(id) => g.id != id && store.group_within(g.id, id),
        })
        .filter(|g| store.can_see_group(user, g))
        .filter(|g| {
            let l = level(&store, user, g);
            (!memberships_only || l >= GUEST)
                && (!owned || l >= OWNER)
                && min_level.is_none_or(|m| i64::from(l) >= m)
        })
        .filter(|g| {
            search
                .as_deref()
                .is_none_or(|s| g.name.to_lowercase().contains(s) || g.full_path.to_lowercase().contains(s))
        })
        .collect();
    groups.sort_by(|a, b| match order_by.as_str() {
        "id" => a.id.cmp(&b.id),
        "path" => a.path.cmp(&b.path).then(a.id.cmp(&b.id)),
        _ => a.name.cmp(&b.name).then(a.id.cmp(&b.id)),
    });
    if descending {
        groups.reverse();
    }
    let items: Vec<Value> = groups
        .into_iter()
        .map(|g| render::group(&store, g, &settings))
        .collect();
    Ok(paginate(items, spec, &settings.base_url, uri))
}

/// `GET /groups`.
pub async fn list_groups(State(s): State<S>, caller: MaybeCaller, uri: Uri, params: Params) -> Api {
    list(&s, &caller, Within::All, &uri, &params)
}

/// `GET /groups/:id/subgroups`.
pub async fn subgroups(
    State(s): State<S>,
    caller: MaybeCaller,
    Path(id): Path<String>,
    uri: Uri,
    params: Params,
) -> Api {
    let gid = resolve::group(&s.store(), caller.0.as_ref().map(|c| &c.user), &id)?.id;
    list(&s, &caller, Within::Children(gid), &uri, &params)
}

/// `GET /groups/:id/descendant_groups`.
pub async fn descendant_groups(
    State(s): State<S>,
    caller: MaybeCaller,
    Path(id): Path<String>,
    uri: Uri,
    params: Params,
) -> Api {
    let gid = resolve::group(&s.store(), caller.0.as_ref().map(|c| &c.user), &id)?.id;
    list(&s, &caller, Within::Descendants(gid), &uri, &params)
}
