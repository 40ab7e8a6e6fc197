//! Wire-level tests of the operator's GitLab client against a small in-test HTTP server that
//! answers with the exact shapes documented in `reference/gitlab-api.md` (bodies and headers
//! copied from it). Each test starts its own server on 127.0.0.1:0.

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
    ClientConfig, CreateProjectAccessToken, GitLabApi, GitLabClient, GitLabError, RequestObserver,
    RetryPolicy, RevokeOutcome, TokenState,
};
use secrecy::{ExposeSecret, SecretString};

const OPERATOR_TOKEN: &str = "glpat-OPERATORsecretVALUE42";
const MINTED_TOKEN: &str = "glpat-EXAMPLEexampleEXAMPLE1";

// ---- documented bodies (gitlab-api.md) -------------------------------------------------------

const TOKEN_LIST: &str = r#"[
  {"id": 9101, "name": "broker-ci-pull", "description": "managed by token-broker",
   "revoked": false, "active": true, "created_at": "2025-05-02T08:00:11.120Z",
   "expires_at": "2025-08-01", "last_used_at": "2025-05-20T10:41:03.002Z",
   "last_used_ips": ["10.0.4.17"], "scopes": ["read_registry"], "user_id": 5512,
   "access_level": 20},
  {"id": 9055, "name": "broker-ci-pull", "description": null, "revoked": true, "active": false,
   "created_at": "2025-02-01T08:00:02.004Z", "expires_at": "2025-05-03", "last_used_at": null,
   "last_used_ips": [], "scopes": ["read_registry"], "user_id": 5512, "access_level": 20}
]"#;
const CREATED: &str = r#"{"id": 9120, "name": "broker-helm-read", "description": "ns=team-a", "revoked": false,
 "active": true, "created_at": "2025-06-10T12:00:00.000Z", "expires_at": "2025-09-08",
 "last_used_at": null, "last_used_ips": [], "scopes": ["read_api"], "user_id": 5530,
 "access_level": 20, "token": "glpat-EXAMPLEexampleEXAMPLE1"}"#;
const PAT_SELF: &str = r#"{"id": 7001, "name": "token-broker", "description": "operator credential", "revoked": false,
 "active": true, "created_at": "2025-01-05T07:00:00.000Z", "expires_at": "2025-12-31",
 "last_used_at": "2025-06-10T11:58:40.310Z", "last_used_ips": ["10.2.0.8"],
 "scopes": ["api"], "user_id": 42}"#;
const PROJECT: &str = r#"{"id": 812, "name": "payments-api", "path": "payments-api",
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
const MEMBER: &str = r#"{"id":42,"username":"token-broker","name":"Token Broker","state":"active","avatar_url":null,"web_url":"https://gitlab.example.com/token-broker","access_level":40,"created_at":"2024-01-05T07:00:00.000Z","expires_at":null}"#;
const USER: &str = r#"{"id":42,"username":"token-broker","name":"Token Broker","state":"active","bot":false,"web_url":"https://gitlab.example.com/token-broker","created_at":"2024-01-05T07:00:00.000Z"}"#;
const VERSION: &str = r#"{"version":"17.9.1-ee","revision":"2f4ffd2f9a1"}"#;
const UNAUTHORIZED: &str = r#"{"message":"401 Unauthorized"}"#;
const EXPIRED: &str = r#"{"error":"invalid_token","error_description":"Token is expired. You can either do re-authorization or token refresh."}"#;
const REVOKED: &str = r#"{"error":"invalid_token","error_description":"Token was revoked. You have to re-authorize from the user."}"#;
const INSUFFICIENT_SCOPE: &str = r#"{"error":"insufficient_scope","error_description":"The request requires higher privileges than provided by the access token.","scope":"api read_api"}"#;
const BEARER_INVALID: &str = r#"Bearer realm="", error="invalid_token""#;

// ---- a scripted fake GitLab ------------------------------------------------------------------

/// A request as the server received it (raw, still-encoded path).
#[derive(Clone, Debug)]
struct Seen {
    method: Method,
    path: String,
    query: String,
    headers: HeaderMap,
    body: Bytes,
    at: Instant,
}

impl Seen {
    fn query_param(&self, name: &str) -> Option<String> {
        url::form_urlencoded::parse(self.query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }
}

/// A canned answer.
#[derive(Clone)]
struct Canned {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
    delay: Option<Duration>,
}

fn reply(status: u16, body: &str) -> Canned {
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
    fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
    fn delayed(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }
}

type Handler = Arc<dyn Fn(&Seen) -> Canned + Send + Sync>;

fn fixed(c: Canned) -> Handler {
    Arc::new(move |_| c.clone())
}

#[derive(Default)]
struct ServerState {
    routes: HashMap<(Method, String), VecDeque<Handler>>,
    log: Vec<Seen>,
}

type Shared = Arc<Mutex<ServerState>>;

struct FakeGitLab {
    addr: SocketAddr,
    state: Shared,
}

impl FakeGitLab {
    async fn start() -> Self {
        let state: Shared = Arc::default();
        let app = Router::new().fallback(handle).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { addr, state }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answers `method path` with `handlers` in turn; the last one keeps answering.
    fn on(&self, method: Method, path: &str, handlers: Vec<Handler>) {
        self.state
            .lock()
            .unwrap()
            .routes
            .insert((method, path.to_string()), handlers.into());
    }

    fn on_seq(&self, method: Method, path: &str, answers: Vec<Canned>) {
        self.on(method, path, answers.into_iter().map(fixed).collect());
    }

    fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().log.clone()
    }

    fn clear_log(&self) {
        self.state.lock().unwrap().log.clear();
    }

    fn config(&self) -> ClientConfig {
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

    fn client(&self) -> GitLabClient {
        GitLabClient::new(self.config()).unwrap()
    }
}

async fn handle(
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
struct Recorder(Mutex<Vec<(&'static str, Option<u16>)>>);

impl RequestObserver for Recorder {
    fn on_request(&self, operation: &'static str, status: Option<u16>, _duration: Duration) {
        self.0.lock().unwrap().push((operation, status));
    }
}

impl Recorder {
    fn calls(&self) -> Vec<(&'static str, Option<u16>)> {
        self.0.lock().unwrap().clone()
    }
}

async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn date(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

fn create_request() -> CreateProjectAccessToken {
    CreateProjectAccessToken {
        name: "gto-c1-3f2a".into(),
        description: Some("managed by gitlab-token-operator".into()),
        scopes: vec!["read_api".into()],
        access_level: 20,
        expires_at: date("2025-09-08"),
    }
}

// ---- tests -----------------------------------------------------------------------------------

#[tokio::test]
async fn reads_documented_shapes_with_the_token_in_the_private_token_header() {
    let gl = FakeGitLab::start().await;
    gl.on_seq(Method::GET, "/api/v4/version", vec![reply(200, VERSION)]);
    gl.on_seq(Method::GET, "/api/v4/user", vec![reply(200, USER)]);
    gl.on_seq(
        Method::GET,
        "/api/v4/personal_access_tokens/self",
        vec![reply(200, PAT_SELF)],
    );
    gl.on_seq(
        Method::GET,
        "/api/v4/projects/acme%2Fteam-a%2Fapp",
        vec![reply(200, PROJECT)],
    );
    gl.on_seq(
        Method::GET,
        "/api/v4/projects/acme%2Fteam-a%2Fapp/members/all/42",
        vec![reply(200, MEMBER)],
    );
    gl.on_seq(
        Method::GET,
        "/api/v4/projects/812/access_tokens/9101",
        vec![reply(200, TOKEN_LIST_FIRST)],
    );
    gl.on_seq(
        Method::GET,
        "/api/v4/projects/812/access_tokens",
        vec![reply(200, TOKEN_LIST)],
    );
    let client = gl.client();

    assert_eq!(client.version().await.unwrap().version, "17.9.1-ee");
    let user = client.current_user().await.unwrap();
    assert_eq!(
        (user.id, user.username.as_str(), user.bot),
        (42, "token-broker", false)
    );
    let me = client.personal_access_token_self().await.unwrap();
    assert_eq!(
        (me.id, me.expires_at, me.scopes.clone()),
        (7001, Some(date("2025-12-31")), vec!["api".to_string()])
    );
    let project = client.project("acme/team-a/app").await.unwrap();
    assert_eq!(project.path_with_namespace, "platform/payments/payments-api");
    assert_eq!(
        client
            .project_member_all("acme/team-a/app", 42)
            .await
            .unwrap()
            .access_level,
        40
    );
    let token = client.get_project_access_token("812", 9101).await.unwrap();
    assert_eq!((token.user_id, token.access_level), (5512, Some(20)));
    // A rotation chain: same name and bot, different ids; the revoked one is still listed.
    let chain = client.list_project_access_tokens("812", None).await.unwrap();
    assert_eq!(
        chain
            .iter()
            .map(|t| (t.id, t.user_id, t.revoked))
            .collect::<Vec<_>>(),
        [(9101, 5512, false), (9055, 5512, true)]
    );

    let seen = gl.seen();
    assert_eq!(seen.len(), 7, "one request per call, no retries: {seen:?}");
    assert!(
        seen.iter()
            .any(|s| s.path == "/api/v4/projects/acme%2Fteam-a%2Fapp"),
        "path sent encoded"
    );
    for s in &seen {
        assert_eq!(s.headers.get("private-token").unwrap(), OPERATOR_TOKEN);
        assert!(
            !s.query.contains("token"),
            "no token in the query string: {}",
            s.query
        );
        assert!(s.headers.get("authorization").is_none());
    }
}

const TOKEN_LIST_FIRST: &str = r#"{"id": 9101, "name": "broker-ci-pull", "description": "managed by token-broker",
   "revoked": false, "active": true, "created_at": "2025-05-02T08:00:11.120Z",
   "expires_at": "2025-08-01", "last_used_at": "2025-05-20T10:41:03.002Z",
   "last_used_ips": ["10.0.4.17"], "scopes": ["read_registry"], "user_id": 5512,
   "access_level": 20}"#;

#[tokio::test]
async fn each_error_family_maps_to_its_variant() {
    let gl = FakeGitLab::start().await;
    let mut config = gl.config();
    config.retry.max_attempts = 1;
    config.retry.max_inline_retry_after = Duration::ZERO;
    let client = GitLabClient::new(config).unwrap();
    let cases: Vec<(Canned, &str)> = vec![
        (reply(401, UNAUTHORIZED), "Unauthorized"),
        (
            reply(401, EXPIRED).header("www-authenticate", BEARER_INVALID),
            "TokenExpired",
        ),
        (
            reply(401, REVOKED).header("www-authenticate", BEARER_INVALID),
            "TokenRevoked",
        ),
        (reply(403, INSUFFICIENT_SCOPE), "InsufficientScope"),
        (reply(403, r#"{"message":"403 Forbidden"}"#), "Forbidden"),
        (
            reply(400, r#"{"message":"400 Bad request - Token already revoked"}"#),
            "BadRequest",
        ),
        (
            reply(400, r#"{"error":"scopes does not have a valid value"}"#),
            "BadRequest",
        ),
        (reply(404, r#"{"message":"404 Project Not Found"}"#), "NotFound"),
        (
            reply(405, r#"{"message":"405 Method Not Allowed"}"#),
            "UnexpectedStatus",
        ),
        (
            reply(500, r#"{"message":"500 Internal Server Error"}"#),
            "ServerError",
        ),
        (reply(200, r#"{"unexpected": true}"#), "InvalidResponse"),
    ];
    for (canned, reason) in cases {
        gl.on_seq(Method::GET, "/api/v4/personal_access_tokens/self", vec![canned]);
        let err = client.personal_access_token_self().await.unwrap_err();
        assert_eq!(err.reason(), reason, "{err}");
    }

    // GitLab's own text reaches the caller, e.g. the 400 a create without permission gets.
    let denied =
        r#"{"message":"400 Bad request - User does not have permission to create project access token"}"#;
    gl.on_seq(
        Method::POST,
        "/api/v4/projects/812/access_tokens",
        vec![reply(400, denied)],
    );
    let err = client
        .create_project_access_token("812", &create_request())
        .await
        .unwrap_err();
    assert_eq!(
        err,
        GitLabError::BadRequest {
            message: "400 Bad request - User does not have permission to create project access token".into()
        }
    );
    // Last, because a 429 closes the connection's gate for its Retry-After.
    gl.on_seq(
        Method::GET,
        "/api/v4/user",
        vec![reply(429, "Retry later").header("retry-after", "30")],
    );
    assert_eq!(
        client.current_user().await.unwrap_err(),
        GitLabError::RateLimited {
            retry_after: Some(Duration::from_secs(30))
        }
    );
}

#[tokio::test]
async fn a_429_is_waited_out_for_retry_after_then_the_request_succeeds() {
    let gl = FakeGitLab::start().await;
    let throttled = reply(429, "Retry later")
        .header("ratelimit-name", "throttle_authenticated_api")
        .header("ratelimit-limit", "2000")
        .header("ratelimit-observed", "2001")
        .header("ratelimit-remaining", "0")
        .header("ratelimit-reset", "1767225600")
        .header("ratelimit-resettime", "Thu, 01 Jan 2026 00:00:00 GMT")
        .header("retry-after", "1");
    let ok = reply(200, VERSION).header("ratelimit-remaining", "1999");
    gl.on_seq(Method::GET, "/api/v4/version", vec![throttled, ok]);
    let client = gl.client();

    let started = Instant::now();
    assert_eq!(client.version().await.unwrap().version, "17.9.1-ee");
    let elapsed = started.elapsed();

    let seen = gl.seen();
    assert_eq!(seen.len(), 2);
    let gap = seen[1].at - seen[0].at;
    assert!(
        gap >= Duration::from_secs(1),
        "second request came {gap:?} after the 429"
    );
    assert!(
        elapsed >= Duration::from_secs(1) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );
    assert_eq!(client.rate_limit_remaining(), Some(1999));
}

#[tokio::test]
async fn a_429_holds_back_every_request_on_the_connection() {
    let gl = FakeGitLab::start().await;
    gl.on_seq(
        Method::GET,
        "/api/v4/version",
        vec![
            reply(429, "Retry later").header("retry-after", "1"),
            reply(200, VERSION),
        ],
    );
    gl.on_seq(Method::GET, "/api/v4/user", vec![reply(200, USER)]);
    let recorder = Arc::new(Recorder::default());
    let mut config = gl.config();
    config.observer = Some(recorder.clone());
    let client = Arc::new(GitLabClient::new(config).unwrap());

    let first = tokio::spawn({
        let client = client.clone();
        async move { client.version().await }
    });
    wait_until("the 429 to reach the client", || {
        recorder.calls().contains(&("version", Some(429)))
    })
    .await;
    client.current_user().await.unwrap();
    first.await.unwrap().unwrap();

    let seen = gl.seen();
    let throttled_at = seen[0].at;
    let user_at = seen.iter().find(|s| s.path == "/api/v4/user").unwrap().at;
    assert!(
        user_at - throttled_at >= Duration::from_secs(1),
        "GET /user went out {:?} after the 429",
        user_at - throttled_at
    );
}

#[tokio::test]
async fn server_errors_on_reads_are_retried_until_success() {
    let gl = FakeGitLab::start().await;
    let path = "/api/v4/projects/812/access_tokens/9101";
    gl.on_seq(
        Method::GET,
        path,
        vec![
            reply(502, "<html>502 Bad Gateway</html>"),
            reply(503, ""),
            reply(200, TOKEN_LIST_FIRST),
        ],
    );
    let recorder = Arc::new(Recorder::default());
    let mut config = gl.config();
    config.observer = Some(recorder.clone());
    let client = GitLabClient::new(config).unwrap();

    assert_eq!(
        client.get_project_access_token("812", 9101).await.unwrap().id,
        9101
    );
    assert_eq!(gl.seen().len(), 3);
    let op = "get_project_access_token";
    assert_eq!(
        recorder.calls(),
        vec![(op, Some(502)), (op, Some(503)), (op, Some(200))]
    );

    // Retries are bounded: a GitLab that stays down surfaces as ServerError.
    gl.clear_log();
    gl.on_seq(Method::GET, path, vec![reply(500, "")]);
    let err = client.get_project_access_token("812", 9101).await.unwrap_err();
    assert_eq!(
        err,
        GitLabError::Server {
            status: 500,
            message: "(no message)".into()
        }
    );
    assert_eq!(gl.seen().len(), 4, "max_attempts requests");
}

#[tokio::test]
async fn create_and_rotate_are_never_retried_after_ambiguous_failures() {
    let gl = FakeGitLab::start().await;
    let client = gl.client();

    gl.on_seq(
        Method::POST,
        "/api/v4/projects/812/access_tokens",
        vec![reply(500, ""), reply(201, CREATED)],
    );
    let err = client
        .create_project_access_token("812", &create_request())
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "ServerError");
    assert_eq!(gl.seen().len(), 1, "create sent once");

    gl.clear_log();
    gl.on_seq(
        Method::POST,
        "/api/v4/projects/812/access_tokens/9101/rotate",
        vec![reply(502, ""), reply(200, CREATED)],
    );
    let err = client
        .rotate_project_access_token("812", 9101, date("2025-09-08"))
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "ServerError");
    assert_eq!(gl.seen().len(), 1, "rotate sent once");

    gl.clear_log();
    gl.on_seq(
        Method::POST,
        "/api/v4/personal_access_tokens/self/rotate",
        vec![reply(503, ""), reply(200, CREATED)],
    );
    let err = client
        .rotate_personal_access_token_self(date("2026-01-31"))
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "ServerError");
    assert_eq!(gl.seen().len(), 1, "self-rotate sent once");

    // A response lost to a timeout is not retried either.
    gl.clear_log();
    let mut config = gl.config();
    config.request_timeout = Duration::from_millis(300);
    let impatient = GitLabClient::new(config).unwrap();
    gl.on_seq(
        Method::POST,
        "/api/v4/projects/812/access_tokens",
        vec![reply(201, CREATED).delayed(Duration::from_secs(3))],
    );
    let err = impatient
        .create_project_access_token("812", &create_request())
        .await
        .unwrap_err();
    assert_eq!(err, GitLabError::Timeout);
    assert_eq!(gl.seen().len(), 1, "timed-out create sent once");
}

#[tokio::test]
async fn create_sends_the_documented_body_and_returns_the_secret() {
    let gl = FakeGitLab::start().await;
    gl.on_seq(
        Method::POST,
        "/api/v4/projects/acme%2Fteam-a%2Fapp/access_tokens",
        vec![reply(201, CREATED)],
    );
    gl.on_seq(
        Method::POST,
        "/api/v4/projects/acme%2Fteam-a%2Fapp/access_tokens/9120/rotate",
        vec![reply(200, &CREATED.replace("9120", "9121"))],
    );
    let client = gl.client();

    let token = client
        .create_project_access_token("acme/team-a/app", &create_request())
        .await
        .unwrap();
    assert_eq!(token.token.expose_secret(), MINTED_TOKEN);
    assert_eq!(
        (token.info.id, token.info.user_id, token.info.expires_at),
        (9120, 5530, Some(date("2025-09-08")))
    );
    let rotated = client
        .rotate_project_access_token("acme/team-a/app", 9120, date("2025-10-08"))
        .await
        .unwrap();
    assert_eq!(rotated.info.id, 9121);

    let seen = gl.seen();
    let body: serde_json::Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"name": "gto-c1-3f2a", "description": "managed by gitlab-token-operator",
            "scopes": ["read_api"], "access_level": 20, "expires_at": "2025-09-08"})
    );
    assert_eq!(seen[0].headers.get("content-type").unwrap(), "application/json");
    let body: serde_json::Value = serde_json::from_slice(&seen[1].body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"expires_at": "2025-10-08"}),
        "rotate always sends expires_at"
    );
}

#[tokio::test]
async fn a_429_on_create_is_retried_because_gitlab_did_nothing() {
    let gl = FakeGitLab::start().await;
    gl.on_seq(
        Method::POST,
        "/api/v4/projects/812/access_tokens",
        vec![
            reply(429, "Retry later").header("retry-after", "1"),
            reply(201, CREATED),
        ],
    );
    let token = gl
        .client()
        .create_project_access_token("812", &create_request())
        .await
        .unwrap();
    assert_eq!(token.info.id, 9120);
    let seen = gl.seen();
    assert_eq!(seen.len(), 2);
    assert!(seen[1].at - seen[0].at >= Duration::from_secs(1));
}

#[tokio::test]
async fn revoke_is_retried_on_server_errors_and_404_means_already_gone() {
    let gl = FakeGitLab::start().await;
    let client = gl.client();
    gl.on_seq(
        Method::DELETE,
        "/api/v4/projects/812/access_tokens/9101",
        vec![reply(503, ""), reply(204, "")],
    );
    assert_eq!(
        client.revoke_project_access_token("812", 9101).await.unwrap(),
        RevokeOutcome::Revoked
    );
    assert_eq!(
        gl.seen().iter().map(|s| s.method.clone()).collect::<Vec<_>>(),
        [Method::DELETE, Method::DELETE]
    );

    gl.on_seq(
        Method::DELETE,
        "/api/v4/projects/812/access_tokens/9055",
        vec![reply(404, r#"{"message":"404 project Access Token Not Found"}"#)],
    );
    assert_eq!(
        client.revoke_project_access_token("812", 9055).await.unwrap(),
        RevokeOutcome::AlreadyGone
    );

    gl.on_seq(
        Method::DELETE,
        "/api/v4/projects/812/access_tokens/1",
        vec![reply(
            400,
            r#"{"message":"400 Bad request - token-broker cannot delete project_812_bot_1a2b"}"#,
        )],
    );
    let err = client.revoke_project_access_token("812", 1).await.unwrap_err();
    assert_eq!(err.reason(), "BadRequest");
}

/// Serves `total` generated tokens in pages, with GitLab's headers (`x-*` and/or `Link`).
fn paged_tokens(base: String, total: u32, x_headers: bool) -> Handler {
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

#[tokio::test]
async fn lists_follow_pagination_across_three_pages() {
    let gl = FakeGitLab::start().await;
    let path = "/api/v4/projects/acme%2Fteam-a%2Fapp/access_tokens";
    gl.on(
        Method::GET,
        path,
        vec![paged_tokens(format!("{}{path}", gl.url()), 250, true)],
    );
    let client = gl.client();

    let tokens = client
        .list_project_access_tokens("acme/team-a/app", Some(TokenState::Active))
        .await
        .unwrap();
    assert_eq!(tokens.len(), 250);
    assert_eq!(tokens.first().unwrap().id, 10_000);
    assert_eq!(tokens.last().unwrap().id, 10_249);
    let seen = gl.seen();
    let pages: Vec<_> = seen.iter().map(|s| s.query_param("page").unwrap()).collect();
    assert_eq!(pages, ["1", "2", "3"]);
    for s in &seen {
        assert_eq!(s.query_param("per_page").as_deref(), Some("100"));
        assert_eq!(s.query_param("state").as_deref(), Some("active"));
    }

    // Only a `Link` header (no x-next-page): followed the same way.
    gl.clear_log();
    gl.on(
        Method::GET,
        path,
        vec![paged_tokens(format!("{}{path}", gl.url()), 250, false)],
    );
    assert_eq!(
        client
            .list_project_access_tokens("acme/team-a/app", None)
            .await
            .unwrap()
            .len(),
        250
    );
    assert_eq!(gl.seen().len(), 3);
}

#[tokio::test]
async fn runaway_or_foreign_pagination_is_refused() {
    let gl = FakeGitLab::start().await;
    let path = "/api/v4/projects/812/access_tokens";
    gl.on(
        Method::GET,
        path,
        vec![paged_tokens(format!("{}{path}", gl.url()), 100_000, true)],
    );
    let mut config = gl.config();
    config.max_pages = 3;
    let client = GitLabClient::new(config).unwrap();
    let err = client.list_project_access_tokens("812", None).await.unwrap_err();
    assert_eq!(err.reason(), "InvalidResponse");
    assert_eq!(gl.seen().len(), 3, "stops at max_pages");

    let elsewhere = FakeGitLab::start().await;
    gl.on_seq(
        Method::GET,
        path,
        vec![reply(200, "[]").header(
            "link",
            &format!("<{}{path}?page=2>; rel=\"next\"", elsewhere.url()),
        )],
    );
    let err = client.list_project_access_tokens("812", None).await.unwrap_err();
    assert_eq!(err.reason(), "InvalidResponse");
    assert!(
        elsewhere.seen().is_empty(),
        "the token never goes to another origin"
    );
}

#[tokio::test]
async fn list_projects_searches_and_pages() {
    let gl = FakeGitLab::start().await;
    gl.on_seq(
        Method::GET,
        "/api/v4/projects",
        vec![reply(200, &format!("[{PROJECT}]")).header("x-next-page", "")],
    );
    let projects = gl.client().list_projects("payments").await.unwrap();
    assert_eq!(projects.len(), 1);
    assert_eq!(gl.seen()[0].query_param("search").as_deref(), Some("payments"));
}

#[tokio::test]
async fn redirects_are_followed_only_on_the_same_origin() {
    let gl = FakeGitLab::start().await;
    let elsewhere = FakeGitLab::start().await;
    gl.on_seq(
        Method::GET,
        "/api/v4/projects/acme%2Fold-name",
        vec![reply(301, r#"{"message":"301 Moved Permanently"}"#).header("location", "/api/v4/projects/812")],
    );
    gl.on_seq(Method::GET, "/api/v4/projects/812", vec![reply(200, PROJECT)]);
    gl.on_seq(
        Method::GET,
        "/api/v4/projects/acme%2Fmoved-away",
        vec![reply(301, "").header("location", &format!("{}/api/v4/projects/812", elsewhere.url()))],
    );
    let client = gl.client();

    assert_eq!(client.project("acme/old-name").await.unwrap().id, 812);
    assert_eq!(gl.seen()[1].headers.get("private-token").unwrap(), OPERATOR_TOKEN);

    let err = client.project("acme/moved-away").await.unwrap_err();
    assert_eq!(err.status(), Some(301));
    assert!(
        elsewhere.seen().is_empty(),
        "the token never goes to another origin"
    );
}

#[tokio::test]
async fn bad_project_arguments_are_refused_before_any_request() {
    let gl = FakeGitLab::start().await;
    let client = gl.client();
    for bad in ["", "..", "acme/../admin"] {
        assert_eq!(
            client.project(bad).await.unwrap_err().reason(),
            "InvalidInput",
            "{bad:?}"
        );
    }
    assert!(gl.seen().is_empty());
}

#[tokio::test]
async fn no_secret_appears_in_any_debug_or_display() {
    let gl = FakeGitLab::start().await;
    // A hostile or buggy proxy that echoes the credential into its error bodies.
    let echo = |status: u16| -> Handler {
        Arc::new(move |seen: &Seen| {
            let token = seen
                .headers
                .get("private-token")
                .unwrap()
                .to_str()
                .unwrap()
                .to_string();
            reply(
                status,
                &serde_json::json!({"message": format!("{status} bad token {token}")}).to_string(),
            )
        })
    };
    gl.on_seq(
        Method::POST,
        "/api/v4/projects/812/access_tokens",
        vec![reply(201, CREATED)],
    );
    gl.on(Method::GET, "/api/v4/user", vec![echo(401)]);
    gl.on(Method::GET, "/api/v4/projects/812", vec![echo(400)]);
    gl.on(Method::GET, "/api/v4/version", vec![echo(500)]);
    gl.on_seq(
        Method::POST,
        "/api/v4/projects/812/access_tokens/1/rotate",
        vec![reply(
            200,
            &CREATED.replace("\"user_id\": 5530", "\"user_id\": \"x\""),
        )],
    );
    let client = gl.client();

    let mut rendered = vec![format!("{client:?}"), format!("{:?}", gl.config())];
    let created = client
        .create_project_access_token("812", &create_request())
        .await
        .unwrap();
    assert_eq!(
        created.token.expose_secret(),
        MINTED_TOKEN,
        "the secret is there, just not printable"
    );
    rendered.push(format!("{created:?}"));
    rendered.push(format!("{created:#?}"));
    let errors = vec![
        client.current_user().await.unwrap_err(),
        client.project("812").await.unwrap_err(),
        client.version().await.unwrap_err(),
        client
            .rotate_project_access_token("812", 1, date("2025-09-08"))
            .await
            .map(|_| ())
            .unwrap_err(),
    ];
    assert_eq!(
        errors.iter().map(GitLabError::reason).collect::<Vec<_>>(),
        ["Unauthorized", "BadRequest", "ServerError", "InvalidResponse"]
    );
    for err in &errors {
        rendered.push(format!("{err}"));
        rendered.push(format!("{err:?}"));
    }
    for text in &rendered {
        assert!(
            !text.contains(OPERATOR_TOKEN) && !text.contains("OPERATORsecret"),
            "operator token leaked: {text}"
        );
        assert!(
            !text.contains(MINTED_TOKEN) && !text.contains("EXAMPLEexample"),
            "minted token leaked: {text}"
        );
    }
    assert!(
        rendered.iter().any(|t| t.contains("bad token [REDACTED]")),
        "echoed token scrubbed: {rendered:?}"
    );
}
