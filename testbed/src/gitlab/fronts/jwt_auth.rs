//! `GET /jwt/auth`: GitLab's Docker token endpoint, the realm of the registry's token auth.
//! Basic credentials (or none: anonymous, public pulls only), repeated `scope` parameters, actions
//! granted per project role and token scopes, RS256 JWT signed with the registry key.

use std::sync::Arc;

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::FrontsState;
use super::basic::{Authn, authenticate};
use super::keys::{AccessEntry, SERVICE, TOKEN_TTL_SECS};
use crate::gitlab::access::{AccessOracle, Principal, ProjectAccess};

const REPORTER: u32 = 20;
const DEVELOPER: u32 = 30;
const MAINTAINER: u32 = 40;

/// One requested scope `type:name:actions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RequestedScope {
    /// Resource type (`repository`, `registry`, possibly with a `(class)` suffix).
    pub kind: String,
    /// Resource name, e.g. `acme/team-a/app`.
    pub name: String,
    /// Requested actions.
    pub actions: Vec<String>,
}

/// Parses every `scope` value of a query string; one value may hold several space-separated
/// scopes. Malformed scopes are skipped, as GitLab does.
pub(crate) fn parse_scopes(query: &str) -> Vec<RequestedScope> {
    url::form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .filter_map(|s| {
            let (kind, rest) = s.split_once(':')?;
            let (name, actions) = rest.rsplit_once(':')?;
            if kind.is_empty() || name.is_empty() {
                return None;
            }
            Some(RequestedScope {
                kind: kind.to_owned(),
                name: name.to_owned(),
                actions: actions
                    .split(',')
                    .filter(|a| !a.is_empty())
                    .map(str::to_owned)
                    .collect(),
            })
        })
        .collect()
}

/// The value of the first `key` parameter of a query string.
fn query_param(query: &str, key: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// Whether the credential carries any container-registry ability at all (anonymous: read-only).
fn has_registry_ability(principal: Option<&Principal>) -> bool {
    principal.is_none_or(|p| p.has_any_scope(&["read_registry", "write_registry", "api"]))
}

/// Actions of `requested` that `principal` may perform on `project` (GitLab semantics).
pub(crate) fn granted_actions(
    principal: Option<&Principal>,
    project: &ProjectAccess,
    requested: &[String],
) -> Vec<String> {
    let scoped = |wanted: &[&str]| principal.is_some_and(|p| p.has_any_scope(wanted));
    let level = project.access_level;
    let can_pull = match principal {
        None => project.public,
        Some(p) => p.has_any_scope(&["read_registry", "api"]) && (project.public || level >= REPORTER),
    };
    let can_push = scoped(&["write_registry", "api"]) && level >= DEVELOPER && !project.archived;
    let can_admin = scoped(&["api"]) && level >= MAINTAINER && !project.archived;
    let mut out: Vec<String> = Vec::new();
    for action in requested {
        let ok = match action.as_str() {
            "pull" => can_pull,
            "push" => can_push,
            // GitLab: `delete` and `*` need `admin_container_image` (api scope, Maintainer+).
            "delete" | "*" => can_admin,
            _ => false,
        };
        if ok && !out.contains(action) {
            out.push(action.clone());
        }
    }
    out
}

/// The project a registry repository path belongs to: the longest leading path that names one.
pub(crate) fn project_for_repository(
    oracle: &dyn AccessOracle,
    principal: Option<&Principal>,
    repository: &str,
) -> Option<ProjectAccess> {
    let segments: Vec<&str> = repository.split('/').collect();
    (1..=segments.len())
        .rev()
        .find_map(|n| oracle.project_access(principal, &segments[..n].join("/")))
}

/// Computes the `access` claim for the requested scopes; ungranted actions and scopes are left out.
pub(crate) fn access_claim(
    oracle: &dyn AccessOracle,
    principal: Option<&Principal>,
    scopes: &[RequestedScope],
) -> Vec<AccessEntry> {
    scopes
        .iter()
        .filter(|s| s.kind == "repository")
        .filter_map(|s| {
            let project = project_for_repository(oracle, principal, &s.name)?;
            let actions = granted_actions(principal, &project, &s.actions);
            (!actions.is_empty()).then(|| AccessEntry {
                kind: s.kind.clone(),
                name: s.name.clone(),
                actions,
            })
        })
        .collect()
}

fn registry_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"errors": [{"code": code, "message": message}]})),
    )
        .into_response()
}

/// `GET /jwt/auth` handler.
pub(crate) async fn jwt_auth(
    State(state): State<Arc<FrontsState>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let query = query.unwrap_or_default();
    if query_param(&query, "service").as_deref() != Some(SERVICE) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let principal = match authenticate(state.oracle.as_ref(), &headers) {
        Authn::Anonymous => None,
        Authn::User(p) => Some(p),
        Authn::Refused(_) => {
            return registry_error(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "HTTP Basic: Access denied",
            );
        }
    };
    let scopes = parse_scopes(&query);
    if !has_registry_ability(principal.as_ref()) || (principal.is_none() && scopes.is_empty()) {
        return registry_error(StatusCode::FORBIDDEN, "DENIED", "access forbidden");
    }
    let access = access_claim(state.oracle.as_ref(), principal.as_ref(), &scopes);
    let subject = principal.as_ref().map(|p| p.username.as_str()).unwrap_or("");
    match state.signer.sign(subject, &access) {
        Ok(token) => Json(json!({
            "token": token,
            "expires_in": TOKEN_TTL_SECS,
            "issued_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }))
        .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "signing registry token failed");
            registry_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "UNKNOWN",
                "token signing failed",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(kind: &str, name: &str, actions: &[&str]) -> RequestedScope {
        RequestedScope {
            kind: kind.into(),
            name: name.into(),
            actions: actions.iter().map(|a| (*a).to_owned()).collect(),
        }
    }

    #[test]
    fn parses_repeated_and_space_separated_scopes() {
        let q = "account=bot&scope=repository%3Aacme%2Fapp%3Apull%2Cpush&scope=repository:acme/other:pull \
                 registry:catalog:*&service=container_registry&scope=broken&scope=repository:127.0.0.1:5000/x:pull";
        let got = parse_scopes(&q.replace(' ', "+"));
        assert_eq!(
            got,
            vec![
                scope("repository", "acme/app", &["pull", "push"]),
                scope("repository", "acme/other", &["pull"]),
                scope("registry", "catalog", &["*"]),
                scope("repository", "127.0.0.1:5000/x", &["pull"]),
            ]
        );
        assert!(parse_scopes("service=container_registry").is_empty());
    }

    fn principal(scopes: &[&str]) -> Principal {
        Principal {
            user_id: 1,
            username: "bot".into(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    fn project(level: u32, public: bool, archived: bool) -> ProjectAccess {
        ProjectAccess {
            project_id: 7,
            path_with_namespace: "acme/app".into(),
            access_level: level,
            public,
            archived,
        }
    }

    #[test]
    fn grants_actions_by_role_and_scope() {
        let all: Vec<String> = ["pull", "push", "delete", "*"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        // (scopes or None = anonymous, level, public, archived, expected actions)
        type Case<'a> = (Option<&'a [&'a str]>, u32, bool, bool, &'a [&'a str]);
        let cases: &[Case] = &[
            (None, 0, true, false, &["pull"]),
            (None, 0, false, false, &[]),
            (Some(&["read_registry"]), 20, false, false, &["pull"]),
            (Some(&["read_registry"]), 10, false, false, &[]),
            (Some(&["read_registry"]), 0, true, false, &["pull"]),
            (Some(&["read_repository"]), 40, false, false, &[]),
            (Some(&["write_registry"]), 30, false, false, &["push"]),
            (Some(&["write_registry"]), 50, false, false, &["push"]),
            (
                Some(&["read_registry", "write_registry"]),
                20,
                false,
                false,
                &["pull"],
            ),
            (
                Some(&["read_registry", "write_registry"]),
                30,
                false,
                true,
                &["pull"],
            ),
            (Some(&["api"]), 30, false, false, &["pull", "push"]),
            (Some(&["api"]), 40, false, false, &["pull", "push", "delete", "*"]),
        ];
        for (scopes, level, public, archived, want) in cases {
            let p = scopes.map(principal);
            let got = granted_actions(p.as_ref(), &project(*level, *public, *archived), &all);
            assert_eq!(
                got, *want,
                "{scopes:?} level={level} public={public} archived={archived}"
            );
        }
    }
}
