//! Git smart HTTP with GitLab's authorisation in front of `git http-backend`, served from the
//! router's fallback (every other path answers GitLab's JSON 404).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::FrontsState;
use super::basic::{Authn, authenticate};
use crate::gitlab::access::{Principal, ProjectAccess};

const REPORTER: u32 = 20;
const DEVELOPER: u32 = 30;

/// The two git services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Service {
    /// Fetch / clone.
    UploadPack,
    /// Push.
    ReceivePack,
}

/// A recognised git smart HTTP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum GitRoute {
    /// `<repo>.git/info/refs?service=…` or `POST <repo>.git/git-<svc>`; `suffix` keeps the tail.
    Smart {
        repo: String,
        service: Service,
        suffix: String,
    },
    /// `GET <repo>/info/refs` without `.git`: GitLab redirects to the `.git` form.
    Redirect { repo: String },
    /// `<repo>.git/info/refs` without a smart service (dumb HTTP), which GitLab does not serve.
    Dumb,
}

/// Whether every segment of a project path is a plausible GitLab path segment.
fn valid_repo_path(path: &str) -> bool {
    !path.is_empty()
        && path.split('/').all(|seg| {
            !seg.is_empty()
                && !seg.starts_with('.')
                && !seg.ends_with(".git")
                && seg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        })
}

fn service_param(query: &str) -> Option<Service> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "service")
        .and_then(|(_, v)| match v.as_ref() {
            "git-upload-pack" => Some(Service::UploadPack),
            "git-receive-pack" => Some(Service::ReceivePack),
            _ => None,
        })
}

/// Recognises git smart HTTP paths (already percent-decoded), or None for anything else.
pub(crate) fn parse_route(method: &Method, path: &str, query: &str) -> Option<GitRoute> {
    let path = path.strip_prefix('/')?;
    if let Some(repo) = path.strip_suffix(".git/info/refs") {
        if !(method == Method::GET || method == Method::HEAD) || !valid_repo_path(repo) {
            return None;
        }
        return Some(match service_param(query) {
            Some(service) => GitRoute::Smart {
                repo: repo.to_owned(),
                service,
                suffix: "info/refs".into(),
            },
            None => GitRoute::Dumb,
        });
    }
    for (tail, service) in [
        ("git-upload-pack", Service::UploadPack),
        ("git-receive-pack", Service::ReceivePack),
    ] {
        if let Some(repo) = path.strip_suffix(&format!(".git/{tail}")) {
            return (method == Method::POST && valid_repo_path(repo)).then(|| GitRoute::Smart {
                repo: repo.to_owned(),
                service,
                suffix: tail.to_owned(),
            });
        }
    }
    let repo = path.strip_suffix("/info/refs")?;
    (method == Method::GET && valid_repo_path(repo)).then(|| GitRoute::Redirect {
        repo: repo.to_owned(),
    })
}

/// GitLab's messages (`Gitlab::GitAccess::ERROR_MESSAGES`).
pub(crate) mod msg {
    /// The credential lacks `download_code` (scope).
    pub const AUTH_DOWNLOAD: &str = "You are not allowed to download code.";
    /// The credential lacks `push_code` (scope).
    pub const AUTH_UPLOAD: &str = "You are not allowed to upload code.";
    /// The user may not download from this project (role).
    pub const DOWNLOAD: &str = "You are not allowed to download code from this project.";
    /// The user may not push to this project (role).
    pub const PUSH_CODE: &str = "You are not allowed to push code to this project.";
    /// The project is archived.
    pub const ARCHIVED: &str = "You can't push code to an archived project.";
    /// No such project, or not visible.
    pub const PROJECT_NOT_FOUND: &str =
        "The project you were looking for could not be found or you don't have permission to view it.";
    /// The project has no repository.
    pub const NO_REPO: &str = "A repository for this project does not exist yet.";
}

/// The authorisation outcome for one git request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Run the backend; `remote_user` is set only for allowed pushers.
    Allow { remote_user: Option<String> },
    /// 401 with the Basic challenge (git then sends credentials).
    Challenge,
    /// 403 with GitLab's message.
    Forbidden(&'static str),
    /// 404 with GitLab's message (no project, invisible project, or no repository).
    NotFound(&'static str),
}

/// GitLab's git access rules, in `GitAccess#check` order: credential abilities (scopes), project
/// visibility, repository existence, then download/push rights (archived before role).
pub(crate) fn decide(
    service: Service,
    principal: Option<&Principal>,
    project: Option<&ProjectAccess>,
    repo_exists: bool,
) -> Decision {
    let Some(principal) = principal else {
        return match (service, project) {
            (Service::UploadPack, Some(p)) if p.public && !repo_exists => Decision::NotFound(msg::NO_REPO),
            (Service::UploadPack, Some(p)) if p.public => Decision::Allow { remote_user: None },
            _ => Decision::Challenge,
        };
    };
    let (wanted, auth_msg): (&[&str], _) = match service {
        Service::UploadPack => (
            &["read_repository", "write_repository", "api"],
            msg::AUTH_DOWNLOAD,
        ),
        Service::ReceivePack => (&["write_repository", "api"], msg::AUTH_UPLOAD),
    };
    if !principal.has_any_scope(wanted) {
        return Decision::Forbidden(auth_msg);
    }
    let Some(project) = project else {
        return Decision::NotFound(msg::PROJECT_NOT_FOUND);
    };
    if !repo_exists {
        return Decision::NotFound(msg::NO_REPO);
    }
    match service {
        Service::UploadPack if project.public || project.access_level >= REPORTER => {
            Decision::Allow { remote_user: None }
        }
        Service::UploadPack => Decision::Forbidden(msg::DOWNLOAD),
        Service::ReceivePack if project.archived => Decision::Forbidden(msg::ARCHIVED),
        Service::ReceivePack if project.access_level < DEVELOPER => Decision::Forbidden(msg::PUSH_CODE),
        Service::ReceivePack => Decision::Allow {
            remote_user: Some(principal.username.clone()),
        },
    }
}

/// GitLab's API-style JSON 404 for unknown routes.
pub(crate) fn json_not_found() -> Response {
    (StatusCode::NOT_FOUND, Json(json!({"message": "404 Not Found"}))).into_response()
}

fn challenge() -> Response {
    let mut resp = (StatusCode::UNAUTHORIZED, "HTTP Basic: Access denied\n").into_response();
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"GitLab\""),
    );
    resp
}

fn header_string(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// The router fallback: git smart HTTP, else JSON 404.
pub(crate) async fn fallback(State(state): State<Arc<FrontsState>>, request: Request) -> Response {
    let query = request.uri().query().unwrap_or_default().to_owned();
    let decoded = percent_encoding::percent_decode_str(request.uri().path())
        .decode_utf8_lossy()
        .into_owned();
    let Some(route) = parse_route(request.method(), &decoded, &query) else {
        return json_not_found();
    };
    let (repo, service, suffix) = match route {
        GitRoute::Smart {
            repo,
            service,
            suffix,
        } => (repo, service, suffix),
        GitRoute::Redirect { repo } => {
            let q = if query.is_empty() {
                String::new()
            } else {
                format!("?{query}")
            };
            let location = format!("/{repo}.git/info/refs{q}");
            return (StatusCode::MOVED_PERMANENTLY, [(header::LOCATION, location)]).into_response();
        }
        GitRoute::Dumb => {
            return (
                StatusCode::FORBIDDEN,
                "Git HTTP dumb protocol is not supported.\n",
            )
                .into_response();
        }
    };
    let principal = match authenticate(state.oracle.as_ref(), request.headers()) {
        Authn::Anonymous => None,
        Authn::User(p) => Some(p),
        Authn::Refused(_) => return challenge(),
    };
    let project = state.oracle.project_access(principal.as_ref(), &repo);
    let repo_exists = project.as_ref().is_some_and(|p| {
        valid_repo_path(&p.path_with_namespace)
            && state
                .repos_dir
                .join(format!("{}.git", p.path_with_namespace))
                .is_dir()
    });
    let remote_user = match decide(service, principal.as_ref(), project.as_ref(), repo_exists) {
        Decision::Allow { remote_user } => remote_user,
        Decision::Challenge => return challenge(),
        Decision::Forbidden(m) => return (StatusCode::FORBIDDEN, format!("{m}\n")).into_response(),
        Decision::NotFound(m) => return (StatusCode::NOT_FOUND, format!("{m}\n")).into_response(),
    };
    let Some(project) = project else {
        return json_not_found();
    };
    let remote_addr = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "127.0.0.1".into());
    let headers = request.headers();
    let mut env: Vec<(&'static str, String)> = vec![
        ("GIT_PROJECT_ROOT", state.repos_dir.to_string_lossy().into_owned()),
        ("GIT_HTTP_EXPORT_ALL", "1".into()),
        (
            "PATH_INFO",
            format!("/{}.git/{suffix}", project.path_with_namespace),
        ),
        ("QUERY_STRING", query),
        ("REQUEST_METHOD", request.method().as_str().to_owned()),
        ("REMOTE_ADDR", remote_addr),
        ("SERVER_PROTOCOL", "HTTP/1.1".into()),
        ("PATH", state.git_path_env.clone()),
        ("GIT_CONFIG_COUNT", "1".into()),
        ("GIT_CONFIG_KEY_0", "safe.directory".into()),
        ("GIT_CONFIG_VALUE_0", "*".into()),
    ];
    let optional = [
        ("CONTENT_TYPE", header_string(headers, "content-type")),
        ("CONTENT_LENGTH", header_string(headers, "content-length")),
        (
            "HTTP_CONTENT_ENCODING",
            header_string(headers, "content-encoding"),
        ),
        ("HTTP_GIT_PROTOCOL", header_string(headers, "git-protocol")),
        ("REMOTE_USER", remote_user),
    ];
    env.extend(optional.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))));
    match super::cgi::run(&state.git_bin, env, request.into_body()).await {
        Ok(resp) => resp,
        Err(e) => {
            tracing::warn!(error = %e, repo = %project.path_with_namespace, "git http-backend failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "git http-backend failed\n").into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn smart(repo: &str, service: Service, suffix: &str) -> Option<GitRoute> {
        Some(GitRoute::Smart {
            repo: repo.into(),
            service,
            suffix: suffix.into(),
        })
    }

    #[test]
    fn parses_routes_by_table() {
        use Service::*;
        let cases: Vec<(Method, &str, &str, Option<GitRoute>)> = vec![
            (
                Method::GET,
                "/acme/app.git/info/refs",
                "service=git-upload-pack",
                smart("acme/app", UploadPack, "info/refs"),
            ),
            (
                Method::GET,
                "/a/b/c/app.git/info/refs",
                "service=git-receive-pack",
                smart("a/b/c/app", ReceivePack, "info/refs"),
            ),
            (
                Method::POST,
                "/acme/app.git/git-upload-pack",
                "",
                smart("acme/app", UploadPack, "git-upload-pack"),
            ),
            (
                Method::POST,
                "/acme/app.git/git-receive-pack",
                "",
                smart("acme/app", ReceivePack, "git-receive-pack"),
            ),
            (Method::GET, "/acme/app.git/git-upload-pack", "", None),
            (Method::GET, "/acme/app.git/info/refs", "", Some(GitRoute::Dumb)),
            (
                Method::GET,
                "/acme/app/info/refs",
                "service=git-upload-pack",
                Some(GitRoute::Redirect {
                    repo: "acme/app".into(),
                }),
            ),
            (
                Method::GET,
                "/acme/../etc.git/info/refs",
                "service=git-upload-pack",
                None,
            ),
            (
                Method::GET,
                "/acme/.hidden.git/info/refs",
                "service=git-upload-pack",
                None,
            ),
            (Method::GET, "/.git/info/refs", "service=git-upload-pack", None),
            (Method::GET, "/api/v4/projects", "", None),
        ];
        for (method, path, query, want) in cases {
            assert_eq!(parse_route(&method, path, query), want, "{method} {path}?{query}");
        }
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
            project_id: 1,
            path_with_namespace: "acme/app".into(),
            access_level: level,
            public,
            archived,
        }
    }

    #[test]
    fn decides_by_table() {
        use Decision::*;
        use Service::*;
        use msg::*;
        let pusher = || Allow {
            remote_user: Some("bot".into()),
        };
        let reader = || Allow { remote_user: None };
        // (service, scopes or None = anonymous, (level, public, archived) or None = no project, repo exists, expected)
        type Case<'a> = (
            Service,
            Option<&'a [&'a str]>,
            Option<(u32, bool, bool)>,
            bool,
            Decision,
        );
        #[rustfmt::skip]
        let cases: Vec<Case> = vec![
            (UploadPack, None, Some((0, true, false)), true, reader()),
            (UploadPack, None, Some((0, true, false)), false, NotFound(NO_REPO)),
            (UploadPack, None, Some((0, false, false)), true, Challenge),
            (UploadPack, None, None, false, Challenge),
            (ReceivePack, None, Some((0, true, false)), true, Challenge),
            (UploadPack, Some(&["read_repository"]), None, false, NotFound(PROJECT_NOT_FOUND)),
            (UploadPack, Some(&["read_registry"]), None, false, Forbidden(AUTH_DOWNLOAD)),
            (UploadPack, Some(&["read_repository"]), Some((20, false, false)), false, NotFound(NO_REPO)),
            (UploadPack, Some(&["read_repository"]), Some((20, false, false)), true, reader()),
            (UploadPack, Some(&["write_repository"]), Some((20, false, false)), true, reader()),
            (UploadPack, Some(&["read_repository"]), Some((10, false, false)), true, Forbidden(DOWNLOAD)),
            (UploadPack, Some(&["read_registry"]), Some((40, false, false)), true, Forbidden(AUTH_DOWNLOAD)),
            (UploadPack, Some(&["api"]), Some((0, true, false)), true, reader()),
            (ReceivePack, Some(&["read_repository"]), Some((40, false, false)), true, Forbidden(AUTH_UPLOAD)),
            (ReceivePack, Some(&["write_repository"]), Some((20, false, false)), true, Forbidden(PUSH_CODE)),
            (ReceivePack, Some(&["write_repository"]), Some((30, false, false)), true, pusher()),
            (ReceivePack, Some(&["api"]), Some((40, false, true)), true, Forbidden(ARCHIVED)),
            (ReceivePack, Some(&["api"]), Some((20, false, true)), true, Forbidden(ARCHIVED)),
        ];
        for (service, scopes, proj, exists, want) in cases {
            let p = scopes.map(principal);
            let proj = proj.map(|(l, public, archived)| project(l, public, archived));
            assert_eq!(
                decide(service, p.as_ref(), proj.as_ref(), exists),
                want,
                "{service:?} {scopes:?} {proj:?} exists={exists}"
            );
        }
    }
}
