//! Shared helpers for the GitLab emulator wire tests: a started, default-seeded emulator and a
//! small reqwest wrapper returning status, headers and JSON.

#![allow(dead_code)]

use reqwest::{Method, header::HeaderMap};
use serde_json::Value;
use testbed::gitlab::{DefaultSeed, GitLabConfig, GitLabHandle, GitLabServer, seed_default};

/// A running emulator with the default seed.
pub struct World {
    /// The emulator.
    pub gl: GitLabHandle,
    /// Tokens and projects of the default seed.
    pub seed: DefaultSeed,
    http: reqwest::Client,
}

/// One HTTP answer.
#[derive(Debug)]
pub struct Resp {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: HeaderMap,
    /// Raw body.
    pub text: String,
    /// Parsed body (Null when not JSON).
    pub body: Value,
}

impl Resp {
    /// A header as a string ("" when absent).
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    }

    /// A string field of the body.
    pub fn str(&self, field: &str) -> String {
        self.body[field].as_str().unwrap_or_default().to_string()
    }

    /// A numeric field of the body.
    pub fn u64(&self, field: &str) -> u64 {
        self.body[field].as_u64().unwrap_or_default()
    }
}

/// A reqwest client (installs the ring crypto provider reqwest is built to expect).
pub fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(20))
        .build()
        .expect("http client")
}

/// Starts an emulator with `config` and the default seed.
pub async fn world_with(config: GitLabConfig) -> World {
    let gl = GitLabServer::start(config)
        .await
        .expect("start the GitLab emulator");
    let seed = seed_default(&gl.seed()).expect("default seed");
    World {
        gl,
        seed,
        http: http(),
    }
}

/// Starts an emulator with the default configuration and seed.
pub async fn world() -> World {
    world_with(GitLabConfig::default()).await
}

impl World {
    /// Full URL of a path.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.gl.url(), path)
    }

    /// Sends a request with an optional `PRIVATE-TOKEN` and JSON body.
    pub async fn send(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> Resp {
        let mut req = self.http.request(method, self.url(path));
        if let Some(t) = token {
            req = req.header("PRIVATE-TOKEN", t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            text,
            body,
        }
    }

    /// GET with a token.
    pub async fn get(&self, path: &str, token: &str) -> Resp {
        self.send(Method::GET, path, Some(token), None).await
    }

    /// POST JSON with a token.
    pub async fn post(&self, path: &str, token: &str, body: Value) -> Resp {
        self.send(Method::POST, path, Some(token), Some(body)).await
    }

    /// DELETE with a token.
    pub async fn delete(&self, path: &str, token: &str) -> Resp {
        self.send(Method::DELETE, path, Some(token), None).await
    }

    /// The operator's PAT.
    pub fn op(&self) -> &str {
        &self.seed.operator_token
    }

    /// Creates a project access token as the operator and returns the 201 body.
    pub async fn create_prat(&self, project: &str, body: Value) -> Resp {
        let path = format!("/api/v4/projects/{}/access_tokens", project.replace('/', "%2F"));
        self.post(&path, &self.seed.operator_token, body).await
    }
}
