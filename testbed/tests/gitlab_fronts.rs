//! The integration contract with the protocol fronts: bind first (URL and oracle known), build a
//! router that carries its own fallback and `/api/v4/projects/{id}/...` routes, serve it merged
//! behind the traffic layer; plus token usage bookkeeping seen through the API.

mod gitlab_support;

use std::sync::Arc;

use axum::{
    Router,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    routing::get,
};
use gitlab_support::{http, world};
use serde_json::json;
use testbed::gitlab::{
    FaultAction, FaultRule, GitLabConfig, GitLabServer, access::AccessOracle, middleware::RequestMeta,
    seed_default,
};

/// A stand-in front: a Helm-like index route that checks a PRIVATE-TOKEN-less Basic-style header
/// through the oracle, and a fallback like the real fronts carry.
fn fake_fronts(oracle: Arc<dyn AccessOracle>, gitlab_url: String) -> Router {
    Router::new()
        .route(
            "/api/v4/projects/{id}/packages/helm/{channel}/index.yaml",
            get(
                |State((oracle, _)): State<(Arc<dyn AccessOracle>, String)>,
                 Path((id, _channel)): Path<(String, String)>,
                 headers: HeaderMap,
                 meta: axum::Extension<RequestMeta>| async move {
                    let password = headers
                        .get("x-password")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("");
                    let Ok(principal) = oracle.authenticate("helm", password) else {
                        return (StatusCode::UNAUTHORIZED, String::new());
                    };
                    meta.set_acting(&principal.username);
                    match oracle.project_access(Some(&principal), &id) {
                        Some(access) => (
                            StatusCode::OK,
                            format!("apiVersion: v1 # {}", access.path_with_namespace),
                        ),
                        None => (StatusCode::NOT_FOUND, String::new()),
                    }
                },
            ),
        )
        .route(
            "/jwt/auth",
            get(
                |State((_, url)): State<(Arc<dyn AccessOracle>, String)>| async move {
                    format!("realm {url}/jwt/auth")
                },
            ),
        )
        .fallback(|| async { (StatusCode::NOT_FOUND, "front fallback") })
        .with_state((oracle, gitlab_url))
}

#[tokio::test]
async fn fronts_merge_behind_the_traffic_layer() {
    let bound = GitLabServer::bind(GitLabConfig::default()).await.expect("bind");
    let url = bound.url();
    let fronts = fake_fronts(bound.oracle(), url.clone());
    let gl = bound.serve(Some(fronts));
    assert_eq!(gl.url(), url);
    let seed = seed_default(&gl.seed()).expect("seed");
    let client = http();
    let get = |path: &str, password: Option<&str>| {
        let mut req = client.get(format!("{url}{path}"));
        if let Some(p) = password {
            req = req.header("x-password", p);
        }
        req.send()
    };
    // The front's route with an encoded project id, authenticated through the oracle.
    let index = get(
        "/api/v4/projects/acme%2Fteam-b%2Fapi/packages/helm/stable/index.yaml",
        Some(&seed.operator_token),
    )
    .await
    .expect("index");
    assert_eq!(index.status().as_u16(), 200);
    assert_eq!(
        index.text().await.unwrap_or_default(),
        "apiVersion: v1 # acme/team-b/api"
    );
    // Our routes still answer next to it, and our API catch-all wins over the front's fallback.
    let user = client
        .get(format!("{url}/api/v4/user"))
        .header("PRIVATE-TOKEN", &seed.operator_token)
        .send()
        .await;
    assert_eq!(user.expect("user").status().as_u16(), 200);
    let unknown = get("/api/v4/nope", None).await.expect("unknown");
    assert_eq!(unknown.status().as_u16(), 404);
    assert_eq!(
        unknown.json::<serde_json::Value>().await.ok(),
        Some(json!({"message": "404 Not Found"}))
    );
    let fallback = get("/acme/team-a/app.git/info/refs", None)
        .await
        .expect("fallback");
    assert_eq!(fallback.text().await.unwrap_or_default(), "front fallback");
    let realm = get("/jwt/auth", None).await.expect("jwt");
    assert_eq!(
        realm.text().await.unwrap_or_default(),
        format!("realm {url}/jwt/auth")
    );
    // The traffic layer covers the fronts: faults and the call log (with the acting user they set).
    gl.add_fault(FaultRule {
        method: None,
        path: "/jwt/auth".into(),
        action: FaultAction::Status { status: 502 },
        times: Some(1),
    })
    .expect("fault");
    assert_eq!(get("/jwt/auth", None).await.expect("jwt").status().as_u16(), 502);
    let calls = gl.calls();
    let helm = calls
        .iter()
        .find(|c| c.path.contains("/packages/helm/"))
        .expect("logged");
    assert_eq!((helm.status, helm.user.as_deref()), (200, Some("operator")));
    assert!(calls.iter().any(|c| c.path == "/jwt/auth" && c.status == 502));
}

#[tokio::test]
async fn token_use_is_recorded_as_last_used() {
    let w = world().await;
    let t = w
        .create_prat("acme/team-a/app", json!({"name": "u", "scopes": ["read_api"]}))
        .await;
    assert_eq!(t.body["last_used_at"], json!(null));
    assert_eq!(
        w.get("/api/v4/projects/acme%2Fteam-a%2Fapp", &t.str("token"))
            .await
            .status,
        200
    );
    let seen = w
        .get("/api/v4/personal_access_tokens/self", &t.str("token"))
        .await;
    assert!(seen.str("last_used_at").ends_with('Z'));
    assert_eq!(seen.body["last_used_ips"], json!(["127.0.0.1"]));
    let via_self = w
        .get("/api/v4/projects/acme%2Fteam-a%2Fapp/access_tokens/self", w.op())
        .await;
    assert_eq!(
        (via_self.status, via_self.body.clone()),
        (404, json!({"message": "404 project Access Token Not Found"}))
    );
}

#[tokio::test]
async fn config_extra_routes_are_served_by_start() {
    let extra = Router::new().route("/-/readiness", get(|| async { "ok" }));
    let config = GitLabConfig {
        extra_routes: Some(extra),
        ..GitLabConfig::default()
    };
    let gl = GitLabServer::start(config).await.expect("start");
    let resp = http()
        .get(format!("{}/-/readiness", gl.url()))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.text().await.unwrap_or_default(), "ok");
    assert_eq!(gl.calls().len(), 1, "extra routes pass the traffic layer");
    gl.shutdown().await;
}
