//! `GET /users` (`lib/api/users.rb`): users by `username` (an exact, case-insensitive match: an
//! array of zero or one) or all human users, newest first, paginated. Project and group bots are
//! internal users and are not listed. Needs a signed-in caller with a read scope.

use std::sync::Arc;

use axum::{extract::State, http::Uri, response::Response};
use serde_json::Value;

use super::{
    auth::{Caller, READ},
    params::{PageSpec, Params, paginate},
    render,
};
use crate::gitlab::{
    error::ApiError,
    model::{User, UserType},
    state::GitLabState,
};

/// `GET /users[?username=…]`.
pub async fn list(
    State(s): State<Arc<GitLabState>>,
    caller: Caller,
    uri: Uri,
    params: Params,
) -> Result<Response, ApiError> {
    caller.require_scopes(READ)?;
    let spec = PageSpec::from_params(&params)?;
    let username = params.str("username").filter(|u| !u.is_empty());
    let settings = s.settings();
    let store = s.store();
    let mut users: Vec<&User> = store
        .users
        .values()
        .filter(|u| u.user_type != UserType::ProjectBot)
        .filter(|u| {
            username
                .as_deref()
                .is_none_or(|name| u.username.eq_ignore_ascii_case(name))
        })
        .collect();
    users.sort_by_key(|u| std::cmp::Reverse(u.id));
    let items: Vec<Value> = users.into_iter().map(|u| render::user(u, &settings)).collect();
    Ok(paginate(items, spec, &settings.base_url, &uri))
}
