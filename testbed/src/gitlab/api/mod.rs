//! The `/api/v4` REST surface. Routes keep `%2F` inside `{id}` (axum matches on the raw path and
//! decodes the parameter afterwards), so `projects/acme%2Fapp` resolves by full path while a literal
//! `projects/acme/app` falls through to the `404 Not Found` catch-all, as on GitLab.

mod associations;
pub mod auth;
mod deploy;
mod deploy_keys;
mod groups;
mod members;
mod params;
mod personal;
mod projects;
mod render;
mod repository_files;
mod resolve;
mod resource_tokens;
mod sharing;
mod users;

use std::sync::Arc;

use axum::{
    Router,
    extract::{Path, State},
    http::Uri,
    response::IntoResponse,
    routing::{MethodRouter, any, delete, get, post},
};

pub use params::{PageSpec, Params};
use projects::Scope;

use self::auth::Caller;
use super::{error::ApiError, state::GitLabState};

type S = Arc<GitLabState>;

fn not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// Adds GitLab's 405 answer for methods a route does not serve.
fn route(method_router: MethodRouter<S>) -> MethodRouter<S> {
    method_router.fallback(|| async { not_allowed() })
}

async fn unknown_route() -> ApiError {
    ApiError::route_not_found()
}

fn members_routes(router: Router<S>, kind: &'static str) -> Router<S> {
    let base = format!("/api/v4/{kind}/{{id}}/members");
    router
        .route(
            &base,
            route(get(
                move |State(s): State<S>, c: Caller, Path(id): Path<String>, uri: Uri, p: Params| async move {
                    projects::members(&s, &c, kind, &id, (&uri, &p), Scope::Direct)
                },
            )
            .post(
                move |State(s): State<S>, c: Caller, Path(id): Path<String>, p: Params| async move {
                    members::add(&s, &c, kind, &id, &p)
                },
            )),
        )
        .route(
            &format!("{base}/all"),
            route(get(
                move |State(s): State<S>, c: Caller, Path(id): Path<String>, uri: Uri, p: Params| async move {
                    projects::members(&s, &c, kind, &id, (&uri, &p), Scope::All)
                },
            )),
        )
        .route(
            &format!("{base}/{{user_id}}"),
            route(get(
                move |State(s): State<S>, c: Caller, Path((id, u)): Path<(String, String)>| async move {
                    projects::member(&s, &c, kind, &id, &u, Scope::Direct)
                },
            )
            .put(
                move |State(s): State<S>, c: Caller, Path((id, u)): Path<(String, String)>, p: Params| async move {
                    members::edit(&s, &c, kind, &id, &u, &p)
                },
            )
            .delete(
                move |State(s): State<S>, c: Caller, Path((id, u)): Path<(String, String)>| async move {
                    members::remove(&s, &c, kind, &id, &u)
                },
            )),
        )
        .route(
            &format!("{base}/all/{{user_id}}"),
            route(get(
                move |State(s): State<S>, c: Caller, Path((id, u)): Path<(String, String)>| async move {
                    projects::member(&s, &c, kind, &id, &u, Scope::All)
                },
            )),
        )
}

fn token_routes<const GROUP: bool>(router: Router<S>, kind: &str) -> Router<S> {
    let base = format!("/api/v4/{kind}/{{id}}");
    router
        .route(
            &format!("{base}/access_tokens"),
            route(get(resource_tokens::list::<GROUP>).post(resource_tokens::create::<GROUP>)),
        )
        .route(
            &format!("{base}/access_tokens/self/rotate"),
            route(post(resource_tokens::self_rotate::<GROUP>)),
        )
        .route(
            &format!("{base}/access_tokens/{{token_id}}"),
            route(get(resource_tokens::get::<GROUP>).delete(resource_tokens::revoke::<GROUP>)),
        )
        .route(
            &format!("{base}/access_tokens/{{token_id}}/rotate"),
            route(post(resource_tokens::rotate::<GROUP>)),
        )
        .route(
            &format!("{base}/deploy_tokens"),
            route(get(deploy::list::<GROUP>).post(deploy::create::<GROUP>)),
        )
        .route(
            &format!("{base}/deploy_tokens/{{token_id}}"),
            route(get(deploy::get::<GROUP>).delete(deploy::delete::<GROUP>)),
        )
}

/// The REST API router (state applied by the server).
pub fn router() -> Router<S> {
    let router = Router::new()
        .route("/api/v4/version", route(get(projects::version)))
        .route("/api/v4/metadata", route(get(projects::metadata)))
        .route("/api/v4/user", route(get(projects::current_user)))
        .route("/api/v4/projects", route(get(projects::list_projects)))
        .route("/api/v4/projects/{id}", route(get(projects::get_project)))
        .route(
            "/api/v4/projects/{id}/registry/repositories",
            route(get(projects::registry_repositories)),
        )
        .route("/api/v4/groups/{id}", route(get(projects::get_group)))
        .route(
            "/api/v4/groups/{id}/projects",
            route(get(projects::group_projects)),
        )
        .route("/api/v4/groups", route(get(groups::list_groups)))
        .route("/api/v4/users", route(get(users::list)))
        .route(
            "/api/v4/personal_access_tokens/self/associations",
            route(get(associations::associations)),
        )
        .route(
            "/api/v4/projects/{id}/repository/files/{file_path}",
            route(
                get(repository_files::get_file)
                    .post(repository_files::create_file)
                    .put(repository_files::update_file)
                    .delete(repository_files::delete_file),
            ),
        )
        .route(
            "/api/v4/projects/{id}/repository/files/{file_path}/raw",
            route(get(repository_files::get_raw)),
        )
        .route(
            "/api/v4/projects/{id}/repository/commits/{sha}",
            route(get(repository_files::get_commit)),
        )
        .route(
            "/api/v4/projects/{id}/repository/branches/{branch}",
            route(get(repository_files::get_branch)),
        )
        .route("/api/v4/groups/{id}/subgroups", route(get(groups::subgroups)))
        .route(
            "/api/v4/groups/{id}/descendant_groups",
            route(get(groups::descendant_groups)),
        )
        .route("/api/v4/projects/{id}/share", route(post(sharing::share_project)))
        .route(
            "/api/v4/projects/{id}/share/{group_id}",
            route(delete(sharing::unshare_project)),
        )
        .route("/api/v4/groups/{id}/share", route(post(sharing::share_group)))
        .route(
            "/api/v4/groups/{id}/share/{group_id}",
            route(delete(sharing::unshare_group)),
        )
        .route("/api/v4/personal_access_tokens", route(get(personal::list)))
        .route(
            "/api/v4/personal_access_tokens/self",
            route(get(personal::get_self).delete(personal::revoke_self)),
        )
        .route(
            "/api/v4/personal_access_tokens/self/rotate",
            route(post(personal::rotate_self)),
        )
        .route(
            "/api/v4/personal_access_tokens/{id}",
            route(get(personal::get).delete(personal::revoke)),
        )
        .route(
            "/api/v4/personal_access_tokens/{id}/rotate",
            route(post(personal::rotate)),
        )
        .route("/api/v4/{*rest}", any(unknown_route))
        .route(
            "/api/v4",
            any(|| async { ApiError::route_not_found().into_response() }),
        );
    let router = members_routes(router, "projects");
    let router = members_routes(router, "groups");
    let router = token_routes::<false>(router, "projects");
    let router = deploy_keys::routes(router);
    token_routes::<true>(router, "groups")
}
