//! Shared by the GitLab client wire tests: documented GitLab bodies (copied from
//! `reference/gitlab-api.md`) and a scripted fake GitLab on 127.0.0.1:0 that records every
//! request it receives (raw, still-encoded path).
#![allow(dead_code)] // each test binary uses a different subset

use std::{
    collections::{HashMap, VecDeque},
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, Method, StatusCode, Uri},
    response::{IntoResponse, Response},
};
use chrono::NaiveDate;
use gitlab_token_operator::gitlab::{
    ClientConfig, CreateProjectAccessToken, GitLabClient, RequestObserver, RetryPolicy,
};
use secrecy::SecretString;

pub const OPERATOR_TOKEN: &str = "glpat-OPERATORsecretVALUE42";
pub const MINTED_TOKEN: &str = "glpat-EXAMPLEexampleEXAMPLE1";

// ---- documented bodies (gitlab-api.md) -------------------------------------------------------

pub const TOKEN_LIST: &str = r#"[
  {"id": 9101, "name": "broker-ci-pull", "description": "managed by token-broker",
   "revoked": false, "active": true, "created_at": "2025-05-02T08:00:11.120Z",
   "expires_at": "2025-08-01", "last_used_at": "2025-05-20T10:41:03.002Z",
   "last_used_ips": ["10.0.4.17"], "scopes": ["read_registry"], "user_id": 5512,
   "access_level": 20},
  {"id": 9055, "name": "broker-ci-pull", "description": null, "revoked": true, "active": false,
   "created_at": "2025-02-01T08:00:02.004Z", "expires_at": "2025-05-03", "last_used_at": null,
   "last_used_ips": [], "scopes": ["read_registry"], "user_id": 5512, "access_level": 20}
]"#;
pub const CREATED: &str = r#"{"id": 9120, "name": "broker-helm-read", "description": "ns=team-a", "revoked": false,
 "active": true, "created_at": "2025-06-10T12:00:00.000Z", "expires_at": "2025-09-08",
 "last_used_at": null, "last_used_ips": [], "scopes": ["read_api"], "user_id": 5530,
 "access_level": 20, "token": "glpat-EXAMPLEexampleEXAMPLE1"}"#;
pub const PAT_SELF: &str = r#"{"id": 7001, "name": "token-broker", "description": "operator credential", "revoked": false,
 "active": true, "created_at": "2025-01-05T07:00:00.000Z", "expires_at": "2025-12-31",
 "last_used_at": "2025-06-10T11:58:40.310Z", "last_used_ips": ["10.2.0.8"],
 "scopes": ["api"], "user_id": 42}"#;
pub const PROJECT: &str = r#"{"id": 812, "name": "payments-api", "path": "payments-api",
 "name_with_namespace": "Platform / Payments / payments-api",
 "path_with_namespace": "platform/payments/payments-api",
 "created_at": "2024-02-01T10:00:00.000Z", "default_branch": "main",
 "http_url_to_repo": "https://gitlab.example.com/platform/payments/payments-api.git",
 "web_url": "https://gitlab.example.com/platform/payments/payments-api",
 "namespace": {"id": 77, "name": "Payments", "path": "payments", "kind": "group",
               "full_path": "platform/payments", "parent_id": 12, "avatar_url": null,
               "web_url": "https://gitlab.example.com/groups/platform/payments"},
 "visibility": "private", "archived": false,
 "container_registry_image_prefix": "registry.example.com/platform/payments/payments-api",
 "permissions": {"project_access": {"access_level": 40, "notification_level": 3},
                 "group_access": null}}"#;
pub const MEMBER: &str = r#"{"id":42,"username":"token-broker","name":"Token Broker","state":"active","avatar_url":null,"web_url":"https://gitlab.example.com/token-broker","access_level":40,"created_at":"2024-01-05T07:00:00.000Z","expires_at":null}"#;
pub const USER: &str = r#"{"id":42,"username":"token-broker","name":"Token Broker","state":"active","bot":false,"web_url":"https://gitlab.example.com/token-broker","created_at":"2024-01-05T07:00:00.000Z"}"#;
pub const VERSION: &str = r#"{"version":"17.9.1-ee","revision":"2f4ffd2f9a1"}"#;
pub const UNAUTHORIZED: &str = r#"{"message":"401 Unauthorized"}"#;
pub const EXPIRED: &str = r#"{"error":"invalid_token","error_description":"Token is expired. You can either do re-authorization or token refresh."}"#;
pub const REVOKED: &str = r#"{"error":"invalid_token","error_description":"Token was revoked. You have to re-authorize from the user."}"#;
pub const INSUFFICIENT_SCOPE: &str = r#"{"error":"insufficient_scope","error_description":"The request requires higher privileges than provided by the access token.","scope":"api read_api"}"#;
pub const BEARER_INVALID: &str = r#"Bearer realm="", error="invalid_token""#;

// ---- a scripted fake GitLab ------------------------------------------------------------------

/// A request as the server received it (raw, still-encoded path).
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

impl Seen {
    pub fn query_param(&self, name: &str) -> Option<String> {
        url::form_urlencoded::parse(self.query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }
}

/// A canned answer.
#[derive(Clone)]
pub struct Canned {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub delay: Option<Duration>,
}

pub fn reply(status: u16, body: &str) -> Canned {
    let mut c = Canned {
        status,
        headers: vec![],
        body: body.to_string(),
        delay: None,
    };
    if body.starts_with('{') || body.starts_with('[') {
        c = c.header("content-type", "application/json");
    }
    c
}

impl Canned {
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
    pub fn delayed(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }
}

pub type Handler = Arc<dyn Fn(&Seen) -> Canned + Send + Sync>;

pub fn fixed(c: Canned) -> Handler {
    Arc::new(move |_| c.clone())
}

#[derive(Default)]
pub struct ServerState {
    pub routes: HashMap<(Method, String), VecDeque<Handler>>,
    pub log: Vec<Seen>,
}

pub type Shared = Arc<Mutex<ServerState>>;

pub struct FakeGitLab {
    pub addr: SocketAddr,
    pub state: Shared,
}

impl FakeGitLab {
    pub async fn start() -> Self {
        let state: Shared = Arc::default();
        let app = Router::new().fallback(handle).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answers `method path` with `handlers` in turn; the last one keeps answering.
    pub fn on(&self, method: Method, path: &str, handlers: Vec<Handler>) {
        self.state
            .lock()
            .unwrap()
            .routes
            .insert((method, path.to_string()), handlers.into());
    }

    pub fn on_seq(&self, method: Method, path: &str, answers: Vec<Canned>) {
        self.on(method, path, answers.into_iter().map(fixed).collect());
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().log.clone()
    }

    pub fn clear_log(&self) {
        self.state.lock().unwrap().log.clear();
    }

    pub fn config(&self) -> ClientConfig {
        let mut config = ClientConfig::new(self.url(), SecretString::from(OPERATOR_TOKEN));
        config.retry = RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
            max_inline_retry_after: Duration::from_secs(5),
        };
        config.rate_limit.requests_per_second = 1000.0;
        config.rate_limit.burst = 1000;
        config
    }

    pub fn client(&self) -> GitLabClient {
        GitLabClient::new(self.config()).unwrap()
    }
}

pub async fn handle(
    State(state): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let seen = Seen {
        method: method.clone(),
        path: uri.path().to_string(),
        query: uri.query().unwrap_or("").to_string(),
        headers,
        body,
        at: Instant::now(),
    };
    let handler = {
        let mut s = state.lock().unwrap();
        s.log.push(seen.clone());
        s.routes.get_mut(&(method, seen.path.clone())).and_then(|queue| {
            if queue.len() > 1 {
                queue.pop_front()
            } else {
                queue.front().cloned()
            }
        })
    };
    let canned = match handler {
        Some(h) => h(&seen),
        None => reply(404, r#"{"message":"404 Not found"}"#),
    };
    if let Some(delay) = canned.delay {
        tokio::time::sleep(delay).await;
    }
    let mut response = (StatusCode::from_u16(canned.status).unwrap(), canned.body).into_response();
    for (k, v) in canned.headers {
        response.headers_mut().append(
            axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            axum::http::HeaderValue::from_str(&v).unwrap(),
        );
    }
    response
}

/// Records every attempt the client reports.
#[derive(Default)]
pub struct Recorder(pub Mutex<Vec<(&'static str, Option<u16>)>>);

impl RequestObserver for Recorder {
    fn on_request(&self, operation: &'static str, status: Option<u16>, _duration: Duration) {
        self.0.lock().unwrap().push((operation, status));
    }
}

impl Recorder {
    pub fn calls(&self) -> Vec<(&'static str, Option<u16>)> {
        self.0.lock().unwrap().clone()
    }
}

pub async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub fn date(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

pub fn create_request() -> CreateProjectAccessToken {
    CreateProjectAccessToken {
        name: "gto-c1-3f2a".into(),
        description: Some("managed by gitlab-token-operator".into()),
        scopes: vec!["read_api".into()],
        access_level: 20,
        expires_at: date("2025-09-08"),
    }
}

pub const TOKEN_LIST_FIRST: &str = r#"{"id": 9101, "name": "broker-ci-pull", "description": "managed by token-broker",
   "revoked": false, "active": true, "created_at": "2025-05-02T08:00:11.120Z",
   "expires_at": "2025-08-01", "last_used_at": "2025-05-20T10:41:03.002Z",
   "last_used_ips": ["10.0.4.17"], "scopes": ["read_registry"], "user_id": 5512,
   "access_level": 20}"#;

/// Serves `total` generated tokens in pages, with GitLab's headers (`x-*` and/or `Link`).
pub fn paged_tokens(base: String, total: u32, x_headers: bool) -> Handler {
    Arc::new(move |seen: &Seen| {
        let per_page: u32 = seen
            .query_param("per_page")
            .and_then(|p| p.parse().ok())
            .unwrap_or(20)
            .min(100);
        let page: u32 = seen.query_param("page").and_then(|p| p.parse().ok()).unwrap_or(1);
        let pages = total.div_ceil(per_page);
        let items: Vec<serde_json::Value> = ((page - 1) * per_page..(page * per_page).min(total))
            .map(|i| {
                serde_json::json!({"id": 10_000 + i, "name": format!("t{i}"), "revoked": false, "active": true,
                    "created_at": "2025-05-02T08:00:11.120Z", "expires_at": "2025-08-01", "last_used_at": null,
                    "last_used_ips": [], "scopes": ["read_registry"], "user_id": 5512, "access_level": 20})
            })
            .collect();
        let link = |p: u32, rel: &str| format!("<{base}?per_page={per_page}&page={p}>; rel=\"{rel}\"");
        let mut links = vec![link(1, "first"), link(pages, "last")];
        if page < pages {
            links.insert(0, link(page + 1, "next"));
        }
        let mut c = reply(200, &serde_json::to_string(&items).unwrap()).header("link", &links.join(", "));
        if x_headers {
            let next = if page < pages {
                (page + 1).to_string()
            } else {
                String::new()
            };
            c = c
                .header("x-page", &page.to_string())
                .header("x-per-page", &per_page.to_string())
                .header("x-next-page", &next)
                .header(
                    "x-prev-page",
                    &if page > 1 {
                        (page - 1).to_string()
                    } else {
                        String::new()
                    },
                )
                .header("x-total", &total.to_string())
                .header("x-total-pages", &pages.to_string());
        }
        c
    })
}
