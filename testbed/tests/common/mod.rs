//! Shared helpers for the Kubernetes emulator wire tests.
#![allow(dead_code)]

pub mod kubectl;

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use testbed::kube::{KubeHandle, KubeServer, KubeServerConfig};

/// Starts an emulator with default config.
pub async fn start() -> KubeHandle {
    KubeServer::start(KubeServerConfig::default())
        .await
        .expect("start emulator")
}

/// Starts an emulator with a fast bookmark cadence.
pub async fn start_with(cfg: KubeServerConfig) -> KubeHandle {
    KubeServer::start(cfg).await.expect("start emulator")
}

/// Polls `f` until it returns Some, or panics after `secs`.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The shared fixtures folder (`GTO_FIXTURES_DIR`, default `<workspace>/../shared/fixtures`).
pub fn fixtures_dir() -> PathBuf {
    match std::env::var("GTO_FIXTURES_DIR") {
        Ok(d) => PathBuf::from(d),
        Err(_) => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures"),
    }
}

/// A reqwest client (installs the ring crypto provider first; reqwest is built without one).
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// Raw HTTP helper with a bearer token.
pub struct Raw {
    pub base: String,
    pub token: String,
    pub http: reqwest::Client,
}

impl Raw {
    pub fn new(h: &KubeHandle, token: &str) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Raw {
            base: h.url(),
            token: token.into(),
            http: reqwest::Client::new(),
        }
    }

    pub async fn req(
        &self,
        method: &str,
        path: &str,
        ct: Option<&str>,
        body: Option<String>,
    ) -> (u16, serde_json::Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut r = self
            .http
            .request(m, format!("{}{}", self.base, path))
            .bearer_auth(&self.token);
        if let Some(ct) = ct {
            r = r.header("content-type", ct);
        }
        if let Some(b) = body {
            r = r.body(b);
        }
        let resp = r.send().await.expect("send");
        let code = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        (
            code,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
        )
    }

    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        self.req("GET", path, None, None).await
    }

    pub async fn post(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        self.req("POST", path, Some("application/json"), Some(body.to_string()))
            .await
    }

    pub async fn put(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        self.req("PUT", path, Some("application/json"), Some(body.to_string()))
            .await
    }

    pub async fn patch(&self, path: &str, ct: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        self.req("PATCH", path, Some(ct), Some(body.to_string())).await
    }

    pub async fn delete(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        self.req("DELETE", path, Some("application/json"), Some(body.to_string()))
            .await
    }

    /// Reads up to `n` watch lines from a streaming GET (or fewer if the stream ends).
    pub async fn watch_lines(&self, path: &str, n: usize, secs: u64) -> Vec<serde_json::Value> {
        let mut resp = self
            .http
            .get(format!("{}{}", self.base, path))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("watch");
        assert_eq!(resp.status().as_u16(), 200, "watch status");
        let mut buf = Vec::new();
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        while out.len() < n {
            let next = tokio::time::timeout_at(deadline, resp.chunk()).await;
            match next {
                Ok(Ok(Some(chunk))) => {
                    buf.extend_from_slice(&chunk);
                    while let Some(i) = buf.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = buf.drain(..=i).collect();
                        out.push(serde_json::from_slice(&line).expect("watch line json"));
                    }
                }
                _ => break,
            }
        }
        out
    }
}

/// A Widget CRD (example.com/v1) with validation, defaults, list types, status subresource and
/// printer columns (including a condition filter).
pub fn widget_crd(scope: &str) -> serde_json::Value {
    let (plural, kind) = if scope == "Cluster" {
        ("gizmos", "Gizmo")
    } else {
        ("widgets", "Widget")
    };
    serde_json::json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.example.com")},
        "spec": {"group": "example.com", "scope": scope,
          "names": {"plural": plural, "singular": kind.to_lowercase(), "kind": kind, "shortNames": ["wd"]},
          "versions": [{"name": "v1", "served": true, "storage": true,
            "subresources": {"status": {}},
            "additionalPrinterColumns": [
              {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
              {"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"},
              {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}],
            "schema": {"openAPIV3Schema": {"type": "object", "properties": {
              "spec": {"type": "object", "required": ["size"], "properties": {
                "size": {"type": "integer", "minimum": 0},
                "color": {"type": "string", "default": "blue", "enum": ["blue", "red", "green"]},
                "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
                "note": {"type": "string"}}},
              "status": {"type": "object", "properties": {
                "phase": {"type": "string"},
                "conditions": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"],
                  "items": {"type": "object", "required": ["type", "status"], "properties": {
                    "type": {"type": "string"}, "status": {"type": "string"}, "message": {"type": "string"}}}}}}}}}}]}})
}

/// Creates the Widget (or cluster-scoped Gizmo) CRD and waits until its endpoint serves.
pub async fn install_crd(h: &KubeHandle, scope: &str) {
    let raw = Raw::new(h, h.admin_token());
    let (code, body) = raw
        .post(
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            widget_crd(scope),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    let plural = if scope == "Cluster" { "gizmos" } else { "widgets" };
    eventually(5, "CRD served", || async {
        let (c, _) = raw.get(&format!("/apis/example.com/v1/{plural}")).await;
        (c == 200).then_some(())
    })
    .await;
}
