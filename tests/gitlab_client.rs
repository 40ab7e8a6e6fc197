//! Wire-level tests of the operator's GitLab client against a scripted in-test GitLab that
//! answers with the exact shapes documented in `reference/gitlab-api.md`: decoding, error
//! families, request encoding, pagination, redirects and secrecy. Each test starts its own
//! server on 127.0.0.1:0.

mod gitlab_client_support;

use std::{sync::Arc, time::Duration};

use axum::http::Method;
use gitlab_client_support::*;
use gitlab_token_operator::gitlab::{GitLabApi, GitLabClient, GitLabError, TokenState};
use secrecy::ExposeSecret;

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
