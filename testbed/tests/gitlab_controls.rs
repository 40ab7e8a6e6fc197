//! Wire tests of the emulator's traffic layer and controls: rate limiting, injected faults, the call
//! log, the token audit, the HTTP control API and the `AccessOracle` used by the protocol fronts.

mod gitlab_support;

use std::time::{Duration, Instant};

use gitlab_support::{http, world, world_with};
use reqwest::Method;
use serde_json::json;
use testbed::gitlab::{FaultAction, FaultRule, GitLabConfig, RateLimitConfig, access::CredentialError};

#[tokio::test]
async fn throttle_sends_ratelimit_headers_then_429_retry_later() {
    let w = world_with(GitLabConfig {
        rate_limit: Some(RateLimitConfig {
            limit: 3,
            period_secs: 60,
        }),
        ..GitLabConfig::default()
    })
    .await;
    w.gl.clock().freeze();
    let first = w.get("/api/v4/user", w.op()).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.header("ratelimit-name"), "throttle_authenticated_api");
    assert_eq!(
        (
            first.header("ratelimit-limit"),
            first.header("ratelimit-observed")
        ),
        ("3".into(), "1".into())
    );
    assert_eq!(first.header("ratelimit-remaining"), "2");
    let reset: i64 = first
        .header("ratelimit-reset")
        .parse()
        .expect("reset is unix time");
    assert_eq!(reset % 60, 0);
    w.get("/api/v4/user", w.op()).await;
    w.get("/api/v4/user", w.op()).await;
    let throttled = w.get("/api/v4/user", w.op()).await;
    assert_eq!((throttled.status, throttled.text.trim()), (429, "Retry later"));
    let retry_after: i64 = throttled.header("retry-after").parse().expect("retry-after");
    assert_eq!(retry_after, (reset - w.gl.clock().now().timestamp()).max(1));
    assert!(throttled.header("ratelimit-resettime").ends_with("GMT"));
    assert_eq!(throttled.header("ratelimit-remaining"), "0");
    // Per user: another user is not throttled.
    assert_eq!(w.get("/api/v4/user", &w.seed.dev_token).await.status, 200);
    // The window resets when the clock reaches it, or through the control.
    w.gl.clock().advance(chrono::Duration::seconds(retry_after));
    assert_eq!(w.get("/api/v4/user", w.op()).await.status, 200);
    w.get("/api/v4/user", w.op()).await;
    w.get("/api/v4/user", w.op()).await;
    assert_eq!(w.get("/api/v4/user", w.op()).await.status, 429);
    w.gl.reset_rate_limits();
    assert_eq!(w.get("/api/v4/user", w.op()).await.status, 200);
    // Off by default: no headers.
    w.gl.set_rate_limit(None);
    assert_eq!(w.get("/api/v4/user", w.op()).await.header("ratelimit-limit"), "");
}

#[tokio::test]
async fn faults_answer_errors_count_down_and_match_routes() {
    let w = world().await;
    let rule = |action, times| FaultRule {
        method: Some("POST".into()),
        path: "/api/v4/projects/*/access_tokens".into(),
        action,
        times,
    };
    w.gl.add_fault(rule(FaultAction::Status { status: 503 }, Some(2)))
        .expect("fault");
    let body = json!({"name": "x", "scopes": ["api"]});
    let path = "/api/v4/projects/acme%2Fteam-a%2Fapp/access_tokens";
    assert_eq!(
        w.get(path, w.op()).await.status,
        200,
        "GET does not match a POST rule"
    );
    for _ in 0..2 {
        let resp = w.post(path, w.op(), body.clone()).await;
        assert_eq!(
            (resp.status, resp.body.clone()),
            (503, json!({"message": "503 Service Unavailable"}))
        );
    }
    assert_eq!(
        w.post(path, w.op(), body.clone()).await.status,
        201,
        "the fault disarmed after two hits"
    );
    assert!(
        w.gl.tokens().iter().filter(|t| t.kind == "project").count() == 1,
        "faulted requests had no effect"
    );
    w.gl.add_fault(rule(FaultAction::RateLimited { retry_after: 7 }, Some(1)))
        .expect("fault");
    let limited = w.post(path, w.op(), body.clone()).await;
    assert_eq!(
        (limited.status, limited.text.trim(), limited.header("retry-after")),
        (429, "Retry later", "7".into())
    );
    w.gl.add_fault(rule(FaultAction::Latency { ms: 300 }, Some(1)))
        .expect("fault");
    let started = Instant::now();
    assert_eq!(w.post(path, w.op(), body.clone()).await.status, 201);
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn hang_after_loses_the_response_but_keeps_the_effect() {
    let w = world().await;
    let t0 = w
        .create_prat("acme/team-a/app", json!({"name": "lost", "scopes": ["api"]}))
        .await;
    w.gl.add_fault(FaultRule {
        method: None,
        path: "/api/v4/personal_access_tokens/self/rotate".into(),
        action: FaultAction::HangAfter { ms: 3_000 },
        times: Some(1),
    })
    .expect("fault");
    let short = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .expect("client");
    let _ = http();
    let lost = short
        .post(w.url("/api/v4/personal_access_tokens/self/rotate"))
        .header("PRIVATE-TOKEN", t0.str("token"))
        .send()
        .await;
    assert!(lost.is_err(), "the client timed out");
    // The rotation happened: the old secret is revoked and a successor exists.
    // The rotation happened server-side (wait with a deadline in case the machine is slow).
    let deadline = Instant::now() + Duration::from_secs(5);
    let records = loop {
        let records: Vec<_> = w.gl.tokens().into_iter().filter(|t| t.name == "lost").collect();
        if records.len() == 2 || Instant::now() > deadline {
            break records;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(records.len(), 2);
    assert_eq!(
        (records[0].state.as_str(), records[1].state.as_str()),
        ("revoked", "active")
    );
    // Retrying with the old secret is reuse: the unseen successor dies too.
    let retry = w
        .post(
            "/api/v4/personal_access_tokens/self/rotate",
            &t0.str("token"),
            json!({}),
        )
        .await;
    assert_eq!(retry.status, 401);
    assert!(
        w.gl.tokens()
            .into_iter()
            .filter(|t| t.name == "lost")
            .all(|t| t.state == "revoked")
    );
}

#[tokio::test]
async fn hang_holds_the_request_without_running_it() {
    let w = world().await;
    w.gl.add_fault(FaultRule {
        method: Some("POST".into()),
        path: "/api/v4/projects/*/access_tokens".into(),
        action: FaultAction::Hang { ms: 2_000 },
        times: None,
    })
    .expect("fault");
    let short = reqwest::Client::builder()
        .timeout(Duration::from_millis(200))
        .build()
        .expect("client");
    let _ = http();
    let resp = short
        .post(w.url("/api/v4/projects/acme%2Fteam-a%2Fapp/access_tokens"))
        .header("PRIVATE-TOKEN", w.op())
        .json(&json!({"name": "x", "scopes": ["api"]}))
        .send()
        .await;
    assert!(resp.is_err());
    assert!(w.gl.tokens().iter().all(|t| t.kind != "project"));
    w.gl.clear_faults();
}

#[tokio::test]
async fn call_log_records_method_path_status_user_without_token_values() {
    let w = world().await;
    w.get("/api/v4/user", w.op()).await;
    let secret = w.seed.dev_token.clone();
    w.send(
        Method::GET,
        &format!("/api/v4/projects?private_token={secret}&search=app"),
        None,
        None,
    )
    .await;
    w.get("/api/v4/projects/acme%2Fnope", w.op()).await;
    w.send(Method::GET, "/-/testbed/calls", None, None).await;
    let calls = w.gl.calls();
    let summary: Vec<_> = calls
        .iter()
        .map(|c| (c.method.as_str(), c.path.as_str(), c.status, c.user.as_deref()))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("GET", "/api/v4/user", 200, Some("operator")),
            (
                "GET",
                "/api/v4/projects?private_token=[REDACTED]&search=app",
                200,
                Some("dev")
            ),
            ("GET", "/api/v4/projects/acme%2Fnope", 404, Some("operator")),
        ]
    );
    let log = serde_json::to_string(&calls).expect("json");
    assert!(!log.contains(&secret) && !log.contains(w.op()));
}

#[tokio::test]
async fn token_audit_lists_every_token_with_state_and_no_values() {
    let w = world().await;
    let t = w
        .create_prat(
            "acme/team-a/app",
            json!({"name": "audit", "scopes": ["api"], "access_level": 30}),
        )
        .await;
    let d = w
        .post(
            "/api/v4/projects/acme%2Fteam-a%2Fapp/deploy_tokens",
            w.op(),
            json!({"name": "d", "scopes": ["read_registry"]}),
        )
        .await;
    w.delete(
        &format!(
            "/api/v4/projects/acme%2Fteam-a%2Fapp/deploy_tokens/{}",
            d.u64("id")
        ),
        w.op(),
    )
    .await;
    let audit = w.send(Method::GET, "/-/testbed/tokens", None, None).await;
    let text = audit.text.clone();
    for secret in [
        t.str("token"),
        d.str("token"),
        w.seed.operator_token.clone(),
        w.seed.dev_token.clone(),
    ] {
        assert!(!text.contains(&secret), "audit leaks a token value");
    }
    let rows = audit.body.as_array().expect("array");
    assert_eq!(rows.len(), 6, "4 seeded PATs, 1 PrAT, 1 deploy token");
    let prat = rows.iter().find(|r| r["name"] == json!("audit")).expect("prat");
    assert_eq!(
        (prat["kind"].clone(), prat["state"].clone()),
        (json!("project"), json!("active"))
    );
    assert_eq!(
        (prat["resource"].clone(), prat["access_level"].clone()),
        (json!("acme/team-a/app"), json!(30))
    );
    let deploy = rows
        .iter()
        .find(|r| r["kind"] == json!("deploy"))
        .expect("deploy");
    assert_eq!(deploy["state"], json!("deleted"));
}

#[tokio::test]
async fn http_controls_seed_time_travel_and_settings() {
    let w = world().await;
    let seeded = w
        .send(
            Method::POST,
            "/-/testbed/seed",
            None,
            Some(json!({
                "users": [{"username": "eve"}],
                "groups": [{"full_path": "new-org/sub"}],
                "projects": [{"full_path": "new-org/sub/svc", "has_repository": true, "images": [""]}],
                "members": [{"username": "eve", "path": "new-org", "access_level": 40}],
                "personal_tokens": [{"username": "eve", "name": "cli", "scopes": ["read_api"]}]
            })),
        )
        .await;
    assert_eq!(seeded.status, 201, "{}", seeded.text);
    let token = seeded.body["personal_tokens"][0]["token"]
        .as_str()
        .expect("token")
        .to_string();
    let project = w.get("/api/v4/projects/new-org%2Fsub%2Fsvc", &token).await;
    assert_eq!(
        (project.status, project.u64("id")),
        (
            200,
            seeded.body["projects"]["new-org/sub/svc"].as_u64().unwrap_or(0)
        )
    );
    let dup = w
        .send(
            Method::POST,
            "/-/testbed/seed",
            None,
            Some(json!({"users": [{"username": "eve"}]})),
        )
        .await;
    assert_eq!(
        (dup.status, dup.str("error")),
        (400, "\"eve\" already exists".into())
    );
    let projects = w.send(Method::GET, "/-/testbed/projects", None, None).await;
    let svc = projects
        .body
        .as_array()
        .expect("array")
        .iter()
        .find(|p| p["path"] == json!("new-org/sub/svc"))
        .cloned();
    assert_eq!(
        svc.map(|p| (
            p["has_repository"].clone(),
            p["has_image"].clone(),
            p["has_chart"].clone()
        )),
        Some((json!(true), json!(true), json!(false)))
    );
    // Clock control.
    let frozen = w
        .send(
            Method::POST,
            "/-/testbed/clock",
            None,
            Some(json!({"freeze": true, "set": "2031-02-03T04:05:06Z"})),
        )
        .await;
    assert_eq!(
        (frozen.str("today"), frozen.body["frozen"].clone()),
        ("2031-02-03".into(), json!(true))
    );
    let moved = w
        .send(
            Method::POST,
            "/-/testbed/clock",
            None,
            Some(json!({"advance_secs": 86400})),
        )
        .await;
    assert_eq!(moved.str("now"), "2031-02-04T04:05:06+00:00");
    let absurd = w
        .send(
            Method::POST,
            "/-/testbed/clock",
            None,
            Some(json!({"advance_secs": i64::MAX})),
        )
        .await;
    assert_eq!(
        (absurd.status, absurd.str("error")),
        (400, "the clock cannot move that far".into())
    );
    // The seeded PATs expired long before 2031.
    assert_eq!(w.get("/api/v4/user", w.op()).await.str("error"), "invalid_token");
    // Settings control: latency, then rate limit on and off.
    w.send(
        Method::POST,
        "/-/testbed/settings",
        None,
        Some(json!({"latency_ms": 250})),
    )
    .await;
    let started = Instant::now();
    assert_eq!(w.get("/api/v4/projects", &token).await.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(250));
    w.send(
        Method::POST,
        "/-/testbed/settings",
        None,
        Some(json!({"latency_ms": 0})),
    )
    .await;
    let set = w
        .send(
            Method::POST,
            "/-/testbed/settings",
            None,
            Some(json!({"rate_limit": {"limit": 1, "period_secs": 60}})),
        )
        .await;
    assert_eq!(set.body["rate_limit"], json!({"limit": 1, "period_secs": 60}));
    w.get("/api/v4/user", &token).await;
    assert_eq!(w.get("/api/v4/user", &token).await.status, 429);
    w.send(
        Method::POST,
        "/-/testbed/settings",
        None,
        Some(json!({"rate_limit": null})),
    )
    .await;
    assert_eq!(w.get("/api/v4/user", &token).await.status, 200);
    // Fault control over HTTP.
    let armed = w
        .send(
            Method::POST,
            "/-/testbed/faults",
            None,
            Some(json!({"path": "/api/v4/user", "action": {"kind": "status", "status": 502}, "times": 1})),
        )
        .await;
    assert_eq!(armed.status, 201);
    assert_eq!(w.get("/api/v4/user", &token).await.status, 502);
    assert_eq!(w.get("/api/v4/user", &token).await.status, 200);
}

#[tokio::test]
async fn access_oracle_checks_basic_credentials_and_project_access() {
    let w = world().await;
    let oracle = w.gl.oracle();
    let t = w
        .create_prat(
            "acme/team-a/app",
            json!({"name": "pull", "scopes": ["read_repository"], "access_level": 20}),
        )
        .await;
    let principal = oracle
        .authenticate("anything", &t.str("token"))
        .expect("any username for glpat tokens");
    assert_eq!(principal.scopes, vec!["read_repository".to_string()]);
    assert_eq!(
        oracle.authenticate("", &t.str("token")),
        Err(CredentialError::Unknown)
    );
    assert_eq!(
        oracle.authenticate("x", "glpat-nope"),
        Err(CredentialError::Unknown)
    );
    let access = oracle
        .project_access(Some(&principal), "ACME/team-a/app")
        .expect("visible");
    assert_eq!(
        (access.access_level, access.public, access.archived),
        (20, false, false)
    );
    assert_eq!(oracle.project_access(Some(&principal), "acme/team-b/api"), None);
    assert_eq!(oracle.project_access(None, "acme/team-a/app"), None);
    let docs = oracle.project_access(None, "acme/platform/docs").expect("public");
    assert_eq!((docs.access_level, docs.public), (0, true));
    let op = oracle.authenticate("operator", w.op()).expect("operator");
    let legacy = oracle
        .project_access(Some(&op), &access.project_id.to_string())
        .expect("by id");
    assert_eq!(legacy.path_with_namespace, "acme/team-a/app");
    assert_eq!(
        oracle
            .project_access(Some(&op), "acme/platform/legacy")
            .map(|a| (a.access_level, a.archived)),
        Some((50, true))
    );
    // Deploy tokens need their username.
    let d = w
        .post(
            "/api/v4/projects/acme%2Fteam-a%2Fapp/deploy_tokens",
            w.op(),
            json!({"name": "d", "scopes": ["read_registry"], "username": "flux"}),
        )
        .await;
    assert_eq!(
        oracle.authenticate("other", &d.str("token")),
        Err(CredentialError::Unknown)
    );
    let dp = oracle
        .authenticate("flux", &d.str("token"))
        .expect("deploy token");
    assert_eq!(
        oracle
            .project_access(Some(&dp), "acme/team-a/app")
            .map(|a| a.access_level),
        Some(30)
    );
    assert_eq!(oracle.project_access(Some(&dp), "acme/team-b/api"), None);
    // Revoked and expired are told apart; failures reach the call log.
    w.delete(
        &format!(
            "/api/v4/projects/acme%2Fteam-a%2Fapp/access_tokens/{}",
            t.u64("id")
        ),
        w.op(),
    )
    .await;
    assert_eq!(
        oracle.authenticate("x", &t.str("token")),
        Err(CredentialError::Revoked)
    );
    w.gl.clock().advance(chrono::Duration::days(400));
    assert_eq!(oracle.authenticate("x", w.op()), Err(CredentialError::Expired));
    let failures = w.gl.calls().into_iter().filter(|c| c.method == "BASIC").count();
    assert_eq!(failures, 5);
}

#[tokio::test]
async fn access_can_be_withdrawn_and_projects_archived_at_runtime() {
    let w = world().await;
    let app = "/api/v4/projects/acme%2Fteam-a%2Fapp";
    assert_eq!(w.get(app, &w.seed.dev_token).await.status, 200);
    let changed = w
        .send(
            Method::POST,
            "/-/testbed/seed",
            None,
            Some(json!({
                "members": [{"username": "dev", "path": "acme/team-a", "access_level": 0}],
                "project_updates": [{"full_path": "acme/team-a/app", "archived": true}]
            })),
        )
        .await;
    assert_eq!(changed.status, 201, "{}", changed.text);
    assert_eq!(w.get(app, &w.seed.dev_token).await.status, 404);
    assert_eq!(w.get(app, w.op()).await.body["archived"], json!(true));
    let oracle = w.gl.oracle();
    let op = oracle.authenticate("x", w.op()).expect("operator");
    assert_eq!(
        oracle
            .project_access(Some(&op), "acme/team-a/app")
            .map(|a| a.archived),
        Some(true)
    );
    let bad = w
        .send(
            Method::POST,
            "/-/testbed/seed",
            None,
            Some(json!({"project_updates": [{"full_path": "acme/none", "archived": true}]})),
        )
        .await;
    assert_eq!(
        (bad.status, bad.str("error")),
        (400, "unknown project or group \"acme/none\"".into())
    );
}
