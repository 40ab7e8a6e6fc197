//! Project deploy keys (`lib/api/deploy_keys.rb`): list, get, create-or-attach, update, enable,
//! delete. Every route needs Maintainer+ on the project (`authorize_admin_project`, 403
//! otherwise, 404 when the project is invisible). Keys share one fingerprint space with users'
//! keys; a private key left on no project is destroyed.

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{Path, State},
    http::{StatusCode, Uri},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::{Map, Value, json};

use super::{
    auth::{Caller, READ, WRITE},
    params::{PageSpec, Params, paginate},
    resolve, route,
};
use crate::gitlab::{
    error::ApiError,
    model::{MAINTAINER, Project, fmt_time},
    ssh_keys::{ALLOWED_TYPES_SENTENCE, DeployKeyLink, NewSshKey, SshKey, SshKeyKind, parse_public_key},
    state::GitLabState,
    store::Store,
};

type S = Arc<GitLabState>;
type Api = Result<Response, ApiError>;

/// Adds the deploy key routes under `/api/v4/projects/{id}/deploy_keys`.
pub fn routes(router: Router<S>) -> Router<S> {
    let base = "/api/v4/projects/{id}/deploy_keys";
    router
        .route(base, route(get(list).post(create)))
        .route(
            &format!("{base}/{{key_id}}"),
            route(get(get_one).put(update).delete(delete)),
        )
        .route(&format!("{base}/{{key_id}}/enable"), route(post(enable)))
}

/// `Entities::DeployKey`.
fn key_entity(key: &SshKey) -> Value {
    json!({
        "id": key.id, "title": key.title, "created_at": fmt_time(key.created_at),
        "expires_at": key.expires_at.map(fmt_time), "key": key.key,
        "fingerprint": key.fingerprint, "fingerprint_sha256": key.fingerprint_sha256,
    })
}

/// `Entities::DeployKeysProject`: the key's fields and the link's `can_push`.
fn link_entity(key: &SshKey, link: &DeployKeyLink) -> Value {
    let mut v = key_entity(key);
    if let Some(map) = v.as_object_mut() {
        map.insert("can_push".into(), json!(link.can_push));
    }
    v
}

/// The project, if the caller may administer it (Maintainer+ or admin).
fn admin_project(store: &Store, caller: &Caller, id: &str) -> Result<Project, ApiError> {
    let project = resolve::project(store, Some(&caller.user), id)?;
    let level = store.effective_level(caller.user.id, crate::gitlab::model::Source::Project(project.id));
    if caller.user.is_admin || level >= MAINTAINER {
        Ok(project)
    } else {
        Err(ApiError::Forbidden(None))
    }
}

/// Whether the caller may administer every project the key is enabled on (GitLab lets the title
/// change only then; `can_push` is per link).
fn may_edit_key(store: &Store, caller: &Caller, key_id: u64) -> bool {
    caller.user.is_admin
        || store.ssh.key_projects(key_id).into_iter().all(|pid| {
            store.effective_level(caller.user.id, crate::gitlab::model::Source::Project(pid)) >= MAINTAINER
        })
}

/// Keys the caller can reach (`accessible_deploy_keys`): keys on projects the caller administers,
/// plus public keys.
fn accessible(store: &Store, caller: &Caller, key: &SshKey) -> bool {
    match key.kind {
        SshKeyKind::User => false,
        SshKeyKind::Deploy { public: true } => true,
        SshKeyKind::Deploy { public: false } => {
            caller.user.is_admin
                || store.ssh.key_projects(key.id).into_iter().any(|pid| {
                    store.effective_level(caller.user.id, crate::gitlab::model::Source::Project(pid))
                        >= MAINTAINER
                })
        }
    }
}

fn parse_key_id(key_id: &str) -> Option<u64> {
    key_id.parse().ok()
}

/// `GET /projects/:id/deploy_keys`, paginated.
async fn list(
    State(state): State<S>,
    caller: Caller,
    Path(id): Path<String>,
    uri: Uri,
    params: Params,
) -> Api {
    caller.require_scopes(READ)?;
    let spec = PageSpec::from_params(&params)?;
    let base_url = state.settings().base_url;
    let store = state.store();
    let project = admin_project(&store, &caller, &id)?;
    let items = store
        .ssh
        .project_links(project.id)
        .into_iter()
        .filter_map(|l| store.ssh.keys.get(&l.key_id).map(|k| link_entity(k, l)))
        .collect();
    Ok(paginate(items, spec, &base_url, &uri))
}

/// `GET /projects/:id/deploy_keys/:key_id`; 404 `Not found` unless enabled here.
async fn get_one(State(state): State<S>, caller: Caller, Path((id, key_id)): Path<(String, String)>) -> Api {
    caller.require_scopes(READ)?;
    let store = state.store();
    let project = admin_project(&store, &caller, &id)?;
    let found = parse_key_id(&key_id).and_then(|kid| {
        let link = store.ssh.link(project.id, kid)?;
        Some(link_entity(store.ssh.keys.get(&kid)?, link))
    });
    found
        .map(|v| Json(v).into_response())
        .ok_or_else(|| ApiError::NotFound("404 Not found".into()))
}

/// A 400 model validation answer with several fields (`{"message":{"deploy_key.key":[…],…}}`).
fn validation(errors: Vec<(&str, String)>) -> Response {
    let mut map = Map::new();
    for (field, error) in errors {
        let entry = map
            .entry(format!("deploy_key.{field}"))
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(list) = entry {
            list.push(Value::String(error));
        }
    }
    (StatusCode::BAD_REQUEST, Json(json!({ "message": map }))).into_response()
}

/// `POST /projects/:id/deploy_keys`: the same key already here → that link (unchanged); a key the
/// caller can reach → attached with `can_push`; otherwise a new key (validated) → 201.
async fn create(State(state): State<S>, caller: Caller, Path(id): Path<String>, params: Params) -> Api {
    caller.require_scopes(WRITE)?;
    let mut missing = Vec::new();
    for name in ["key", "title"] {
        if params.str(name).is_none() {
            missing.push(format!("{name} is missing"));
        }
    }
    let can_push = params.bool("can_push");
    let expires_at = params.datetime("expires_at");
    let mut errors = missing;
    if let Err(ApiError::Param(e)) = &can_push {
        errors.push(e.clone());
    }
    if let Err(ApiError::Param(e)) = &expires_at {
        errors.push(e.clone());
    }
    if !errors.is_empty() {
        return Err(ApiError::Param(errors.join(", ")));
    }
    let can_push = can_push?.unwrap_or(false);
    let expires_at = expires_at?;
    let text = params.str("key").unwrap_or_default().trim().to_string();
    let title = params.str("title").unwrap_or_default();
    let now = state.now();
    let mut store = state.store();
    let project = admin_project(&store, &caller, &id)?;
    let same_text = |k: &&SshKey| k.key == text && matches!(k.kind, SshKeyKind::Deploy { .. });
    if let Some(key) = store.ssh.keys.values().find(same_text).cloned() {
        if let Some(link) = store.ssh.link(project.id, key.id) {
            return Ok((StatusCode::CREATED, Json(link_entity(&key, link))).into_response());
        }
        if accessible(&store, &caller, &key) {
            let link = store.ssh.enable(project.id, key.id, can_push, now);
            return Ok((StatusCode::CREATED, Json(link_entity(&key, &link))).into_response());
        }
    }
    let mut invalid: Vec<(&str, String)> = Vec::new();
    if title.trim().is_empty() {
        invalid.push(("title", "can't be blank".into()));
    } else if title.chars().count() > 255 {
        invalid.push(("title", "is too long (maximum is 255 characters)".into()));
    }
    if text.chars().count() > 5000 {
        invalid.push(("key", "is too long (maximum is 5000 characters)".into()));
    }
    let parsed = parse_public_key(&text);
    match &parsed {
        None => {
            invalid.push(("key", "is invalid".into()));
            invalid.push(("fingerprint_sha256", "cannot be generated".into()));
        }
        Some(p) if p.forbidden() => {
            invalid.push((
                "key",
                format!("type is forbidden. Must be {ALLOWED_TYPES_SENTENCE}"),
            ));
        }
        Some(p) if store.ssh.by_fingerprint(&p.fingerprint_sha256()).is_some() => {
            invalid.push(("fingerprint_sha256", "has already been taken".into()));
        }
        Some(_) => {}
    }
    if expires_at.is_some_and(|t| t <= now) {
        invalid.push(("key", "has expired".into()));
    }
    let Some(parsed) = parsed.filter(|_| invalid.is_empty()) else {
        return Ok(validation(invalid));
    };
    let key_id = store.ssh.insert(
        NewSshKey {
            title,
            parsed,
            kind: SshKeyKind::Deploy { public: false },
            user_id: caller.user.id,
            expires_at,
        },
        now,
    );
    let link = store.ssh.enable(project.id, key_id, can_push, now);
    let key = store
        .ssh
        .keys
        .get(&key_id)
        .cloned()
        .ok_or_else(ApiError::route_not_found)?;
    Ok((StatusCode::CREATED, Json(link_entity(&key, &link))).into_response())
}

/// `PUT /projects/:id/deploy_keys/:key_id`: `title` and/or `can_push`.
async fn update(
    State(state): State<S>,
    caller: Caller,
    Path((id, key_id)): Path<(String, String)>,
    params: Params,
) -> Api {
    caller.require_scopes(WRITE)?;
    if !params.has("title") && !params.has("can_push") {
        return Err(ApiError::Param(
            "title, can_push are missing, at least one parameter must be provided".into(),
        ));
    }
    let can_push = params.bool("can_push")?;
    let title = params.str("title");
    let mut store = state.store();
    let project = admin_project(&store, &caller, &id)?;
    let kid = parse_key_id(&key_id)
        .filter(|kid| store.ssh.link(project.id, *kid).is_some())
        .ok_or_else(|| ApiError::NotFound("404 Not found".into()))?;
    if let Some(title) = title.filter(|_| may_edit_key(&store, &caller, kid)) {
        if title.trim().is_empty() {
            return Ok(validation(vec![("title", "can't be blank".into())]));
        }
        if let Some(key) = store.ssh.keys.get_mut(&kid) {
            key.title = title;
        }
    }
    if let (Some(can_push), Some(link)) = (can_push, store.ssh.links.get_mut(&(project.id, kid))) {
        link.can_push = can_push;
    }
    let link = store.ssh.link(project.id, kid).cloned();
    let key = store.ssh.keys.get(&kid).cloned();
    match (key, link) {
        (Some(k), Some(l)) => Ok(Json(link_entity(&k, &l)).into_response()),
        _ => Err(ApiError::NotFound("404 Not found".into())),
    }
}

/// `POST /projects/:id/deploy_keys/:key_id/enable` → 201 `DeployKey` (no `can_push`).
async fn enable(State(state): State<S>, caller: Caller, Path((id, key_id)): Path<(String, String)>) -> Api {
    caller.require_scopes(WRITE)?;
    let now = state.now();
    let mut store = state.store();
    let project = admin_project(&store, &caller, &id)?;
    let key = parse_key_id(&key_id)
        .and_then(|kid| store.ssh.keys.get(&kid).cloned())
        .filter(|k| accessible(&store, &caller, k))
        .ok_or_else(|| ApiError::not_found("Deploy key"))?;
    store.ssh.enable(project.id, key.id, false, now);
    Ok((StatusCode::CREATED, Json(key_entity(&key))).into_response())
}

/// `DELETE /projects/:id/deploy_keys/:key_id` → 204; 404 `Deploy key Not Found` unless enabled here.
async fn delete(State(state): State<S>, caller: Caller, Path((id, key_id)): Path<(String, String)>) -> Api {
    caller.require_scopes(WRITE)?;
    let mut store = state.store();
    let project = admin_project(&store, &caller, &id)?;
    match parse_key_id(&key_id) {
        Some(kid) if store.ssh.disable(project.id, kid) => Ok(StatusCode::NO_CONTENT.into_response()),
        _ => Err(ApiError::not_found("Deploy key")),
    }
}
