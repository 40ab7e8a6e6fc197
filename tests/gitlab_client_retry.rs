//! Wire-level tests of the GitLab client's rate limiting and retries: 429 `Retry-After` is
//! waited out per connection, safe requests are retried on 5xx, and create/rotate are never
//! repeated after an ambiguous failure (DESIGN §6.3).

mod gitlab_client_support;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use axum::http::Method;
use gitlab_client_support::*;
use gitlab_token_operator::gitlab::{GitLabApi, GitLabClient, GitLabError, RevokeOutcome};

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

#[tokio::test]
async fn a_successful_self_rotation_switches_the_client_to_the_new_token() {
    let gl = FakeGitLab::start().await;
    gl.on_seq(
        Method::POST,
        "/api/v4/personal_access_tokens/self/rotate",
        vec![reply(200, CREATED)],
    );
    gl.on_seq(Method::GET, "/api/v4/user", vec![reply(200, USER)]);
    let client = gl.client();

    let new = client
        .rotate_personal_access_token_self(date("2026-01-31"))
        .await
        .unwrap();
    assert_eq!(new.info.id, 9120);
    client.current_user().await.unwrap();

    let seen = gl.seen();
    assert_eq!(seen[0].headers.get("private-token").unwrap(), OPERATOR_TOKEN);
    assert_eq!(
        seen[1].headers.get("private-token").unwrap(),
        MINTED_TOKEN,
        "the old token is never used again"
    );
}

#[tokio::test]
async fn after_an_ambiguous_self_rotation_no_rotate_endpoint_sees_the_old_token() {
    let gl = FakeGitLab::start().await;
    gl.on_seq(
        Method::POST,
        "/api/v4/personal_access_tokens/self/rotate",
        vec![reply(502, ""), reply(200, CREATED)],
    );
    gl.on_seq(
        Method::POST,
        "/api/v4/projects/812/access_tokens/9101/rotate",
        vec![reply(200, CREATED)],
    );
    gl.on_seq(Method::GET, "/api/v4/user", vec![reply(200, USER)]);
    let client = gl.client();

    assert_eq!(
        client
            .rotate_personal_access_token_self(date("2026-01-31"))
            .await
            .unwrap_err()
            .reason(),
        "ServerError"
    );
    // GitLab may have rotated (and so revoked) the old token: presenting it to any rotate path
    // would make GitLab revoke the new one too. Reads still go out.
    let again = client
        .rotate_personal_access_token_self(date("2026-01-31"))
        .await
        .unwrap_err();
    assert_eq!(again.reason(), "RotationUnsafe");
    let other = client
        .rotate_project_access_token("812", 9101, date("2025-09-08"))
        .await
        .unwrap_err();
    assert_eq!(other.reason(), "RotationUnsafe");
    client.current_user().await.unwrap();
    let rotate_calls = gl.seen().iter().filter(|s| s.path.ends_with("/rotate")).count();
    assert_eq!(
        rotate_calls, 1,
        "only the first, ambiguous, self-rotation reached GitLab"
    );

    // Once the operator has a fresh token (recovered out of band), rotation reopens.
    client
        .set_token(&secrecy::SecretString::from("glpat-RECOVEREDtoken"))
        .unwrap();
    client
        .rotate_project_access_token("812", 9101, date("2025-09-08"))
        .await
        .unwrap();
    assert_eq!(
        gl.seen().last().unwrap().headers.get("private-token").unwrap(),
        "glpat-RECOVEREDtoken"
    );
}

#[tokio::test]
async fn a_token_reported_revoked_is_never_presented_to_a_rotate_endpoint() {
    let gl = FakeGitLab::start().await;
    gl.on_seq(
        Method::GET,
        "/api/v4/user",
        vec![reply(401, REVOKED).header("www-authenticate", BEARER_INVALID)],
    );
    let client = gl.client();
    assert_eq!(client.current_user().await.unwrap_err().reason(), "TokenRevoked");
    let err = client
        .rotate_project_access_token("812", 9101, date("2025-09-08"))
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "RotationUnsafe");
    assert!(!gl.seen().iter().any(|s| s.path.ends_with("/rotate")));
}

#[tokio::test]
async fn a_refused_self_rotation_leaves_rotation_open() {
    let gl = FakeGitLab::start().await;
    let too_far = r#"{"message":"400 Bad request - Expiration date must be before 2026-06-10"}"#;
    gl.on_seq(
        Method::POST,
        "/api/v4/personal_access_tokens/self/rotate",
        vec![reply(400, too_far), reply(200, CREATED)],
    );
    let client = gl.client();
    assert_eq!(
        client
            .rotate_personal_access_token_self(date("2027-01-31"))
            .await
            .unwrap_err()
            .reason(),
        "BadRequest"
    );
    assert_eq!(
        client
            .rotate_personal_access_token_self(date("2026-01-31"))
            .await
            .unwrap()
            .info
            .id,
        9120
    );
}

/// A raw HTTP/1.1 server whose first `broken` connections die mid-body, then answers properly.
async fn flaky_server(broken: usize) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                continue;
            };
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let response = if n < broken {
                // Promises 200 bytes, sends a few, hangs up.
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 200\r\n\r\n{\"vers"
                    .to_string()
            } else {
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{VERSION}",
                    VERSION.len()
                )
            };
            let _ = conn.write_all(response.as_bytes()).await;
            let _ = conn.shutdown().await;
        }
    });
    (url, requests)
}

#[tokio::test]
async fn connections_dropped_mid_body_are_retried_for_reads_only() {
    use std::sync::atomic::Ordering;
    let (url, requests) = flaky_server(2).await;
    let mut config = FakeGitLab::start().await.config();
    config.url = url;
    let client = GitLabClient::new(config).unwrap();
    assert_eq!(client.version().await.unwrap().version, "17.9.1-ee");
    assert_eq!(
        requests.load(Ordering::SeqCst),
        3,
        "two broken answers, then success"
    );

    let (url, requests) = flaky_server(1).await;
    let mut config = FakeGitLab::start().await.config();
    config.url = url;
    let client = GitLabClient::new(config).unwrap();
    let err = client
        .create_project_access_token("812", &create_request())
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "TransportError", "{err}");
    assert_eq!(
        requests.load(Ordering::SeqCst),
        1,
        "a create whose answer was lost is not repeated"
    );
}

#[tokio::test]
async fn an_unreachable_gitlab_is_a_transport_error_after_bounded_retries() {
    // Bind then drop: nothing listens on this port any more.
    let port = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = FakeGitLab::start().await.config();
    config.url = format!("http://127.0.0.1:{port}");
    let recorder = Arc::new(Recorder::default());
    config.observer = Some(recorder.clone());
    let err = GitLabClient::new(config).unwrap().version().await.unwrap_err();
    assert_eq!(err.reason(), "TransportError", "{err}");
    assert_eq!(
        recorder.calls(),
        vec![("version", None); 4],
        "max_attempts attempts, no HTTP status"
    );
    assert!(
        !err.to_string().contains(&format!("127.0.0.1:{port}")),
        "no URL in the message: {err}"
    );
}
