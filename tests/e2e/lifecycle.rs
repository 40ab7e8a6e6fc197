//! Helpers shared by the lifecycle end-to-end tests: annotated sources, Flux readiness, the
//! Secret's current credentials, GitLab call accounting and a `git ls-remote` consumer loop.

#![allow(dead_code)]

use std::{
    collections::BTreeSet,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, ResourceExt, api::DynamicObject};
use serde_json::json;
use testbed::gitlab::TokenRecord;
use tokio::task::JoinHandle;

use super::*;
use gitlab_token_operator::secret::TOKEN_ID_ANNOTATION;

/// Creates an annotated GitRepository for `project` (e.g. `acme/team-a/app`); returns its URL.
pub async fn annotated_repo(env: &Env, ns: &str, name: &str, project: &str, interval: &str) -> String {
    let url = format!("{}/{project}.git", env.world.gitlab_url());
    env.apply(
        json!({"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
        "metadata": {"name": name, "namespace": ns, "annotations": {"gitlabtokens.io/inject": "true"}},
        "spec": {"interval": interval, "url": url, "ref": {"branch": "main"}}}),
    )
    .await;
    url
}

/// The GitRepository API of a namespace.
pub async fn git_repositories(env: &Env, ns: &str) -> Api<DynamicObject> {
    env.flux_api(ns, "source.toolkit.fluxcd.io/v1", "GitRepository")
        .await
}

/// Waits until the Flux stand-in reports the GitRepository Ready; returns it.
pub async fn wait_flux_ready(env: &Env, ns: &str, name: &str) -> DynamicObject {
    let api = git_repositories(env, ns).await;
    eventually(&format!("GitRepository {ns}/{name} Ready"), || {
        let api = api.clone();
        async move {
            let o = api.get(name).await.ok()?;
            let ready = o
                .data
                .pointer("/status/conditions")?
                .as_array()?
                .iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            ready.then_some(o)
        }
    })
    .await
}

/// The token id a Secret announces.
pub fn secret_token_id(secret: &Secret) -> Option<u64> {
    secret.annotations().get(TOKEN_ID_ANNOTATION)?.parse().ok()
}

/// Username and password of a basic-auth Secret.
pub fn credentials(secret: &Secret) -> (String, String) {
    (
        Env::secret_value(secret, "username"),
        Env::secret_value(secret, "password"),
    )
}

/// Waits until the Secret announces `token_id` and returns it.
pub async fn wait_secret_token(env: &Env, ns: &str, name: &str, token_id: u64) -> Secret {
    let api: Api<Secret> = Api::namespaced(env.client.clone(), ns);
    eventually(&format!("Secret {ns}/{name} to hold token {token_id}"), || {
        let api = api.clone();
        async move {
            api.get_opt(name)
                .await
                .ok()
                .flatten()
                .filter(|s| secret_token_id(s) == Some(token_id))
        }
    })
    .await
}

/// A GitLab token record by id.
pub fn gitlab_token(env: &Env, id: u64) -> TokenRecord {
    env.world
        .gitlab
        .tokens()
        .into_iter()
        .find(|t| t.id == id && t.kind == "project")
        .unwrap_or_else(|| panic!("GitLab has no project token {id}"))
}

/// Token-creating calls (create or rotate) GitLab answered with success, from index `from` on.
pub fn token_mints(env: &Env, from: usize) -> Vec<String> {
    env.world
        .gitlab
        .calls()
        .into_iter()
        .skip(from)
        .filter(|c| c.method == "POST" && c.path.contains("/access_tokens") && c.status < 300)
        .map(|c| c.path)
        .collect()
}

/// The operator's API calls (made with its PAT), counted from the call log.
pub fn operator_api_calls(env: &Env) -> usize {
    let calls = env.world.gitlab.calls();
    let user = calls
        .iter()
        .find(|c| c.method == "POST" && c.path.ends_with("/access_tokens"))
        .and_then(|c| c.user.clone());
    calls
        .iter()
        .filter(|c| c.path.starts_with("/api/v4/") && c.user.is_some() && c.user == user)
        .count()
}

/// What a consumer loop measured.
#[derive(Debug, Default)]
pub struct LoopReport {
    /// Successful `git ls-remote` runs.
    pub ok: usize,
    /// Failures (git's stderr, token redacted) with the token id the Secret announced.
    pub failures: Vec<(Option<u64>, String)>,
    /// Token ids used, in order of first use.
    pub ids: Vec<u64>,
}

/// A loop of real `git ls-remote` runs, each with the Secret's credentials as read just before.
pub struct ConsumerLoop {
    stop: Arc<AtomicBool>,
    task: JoinHandle<LoopReport>,
    ok: Arc<std::sync::atomic::AtomicUsize>,
}

impl ConsumerLoop {
    /// Starts the loop against `url` reading Secret `ns/name` every iteration.
    pub fn start(env: &Env, ns: &str, name: &str, url: &str) -> ConsumerLoop {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let api: Api<Secret> = Api::namespaced(env.client.clone(), ns);
        let (name, url) = (name.to_string(), url.to_string());
        let (stop2, ok2) = (stop.clone(), ok.clone());
        let task = tokio::spawn(async move {
            let mut report = LoopReport::default();
            let mut seen = BTreeSet::new();
            while !stop2.load(Ordering::SeqCst) {
                let secret = api.get(&name).await.expect("the Secret stays readable");
                let id = secret_token_id(&secret);
                if let Some(id) = id
                    && seen.insert(id)
                {
                    report.ids.push(id);
                }
                let (user, pass) = credentials(&secret);
                match git_ls_remote(&url, &user, &pass).await {
                    Ok(()) => {
                        report.ok += 1;
                        ok2.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) => report.failures.push((id, e)),
                }
                // Pacing only (the machine is shared); nothing waits on this.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            report
        });
        ConsumerLoop { stop, task, ok }
    }

    /// Successful runs so far.
    pub fn ok_so_far(&self) -> usize {
        self.ok.load(Ordering::SeqCst)
    }

    /// Stops the loop and returns what it measured.
    pub async fn finish(self) -> LoopReport {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.expect("consumer loop")
    }
}

// ---- Secret values, leak scans and lifecycle waits ----

/// Label every operator-written Secret carries.
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";

/// Every token value seen in an operator-written Secret, collected by polling every 50 ms.
pub struct SeenValues {
    values: std::sync::Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl SeenValues {
    /// The values seen so far.
    pub fn values(&self) -> Vec<String> {
        self.values
            .lock()
            .map(|v| v.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Adds a value read elsewhere (e.g. the operator's own PAT).
    pub fn add(&self, value: &str) {
        if let Ok(mut v) = self.values.lock() {
            v.insert(value.to_string());
        }
    }
}

impl Drop for SeenValues {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The secret values in a Secret written by the operator (password, token, registry passwords).
pub fn token_values_of(secret: &Secret) -> Vec<String> {
    let mut out = Vec::new();
    for (key, value) in secret.data.iter().flatten() {
        let text = String::from_utf8_lossy(&value.0).into_owned();
        match key.as_str() {
            "password" | "token" | "identity" => out.push(text),
            ".dockerconfigjson" => {
                if let Ok(v) = serde_json::from_str::<Value>(&text) {
                    for auth in v["auths"].as_object().into_iter().flat_map(|a| a.values()) {
                        if let Some(p) = auth["password"].as_str() {
                            out.push(p.to_string());
                        }
                    }
                }
            }
            _ => {}
        }
    }
    out.retain(|v| !v.is_empty());
    out
}

/// Runs `git ls-remote` against `url` with basic credentials; `Err` carries git's stderr.
pub async fn git_ls_remote(url: &str, user: &str, pass: &str) -> Result<(), String> {
    let authed = url.replacen("http://", &format!("http://{user}:{pass}@"), 1);
    let out = Command::new("git")
        .args(["-c", "credential.helper=", "ls-remote", "-q", &authed])
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .await
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        // Never echo the URL with the credentials back.
        Err(String::from_utf8_lossy(&out.stderr).replace(pass, "<token>"))
    }
}

impl Env {
    /// Starts collecting every value written into operator-managed Secrets, in any namespace.
    pub fn watch_secret_values(&self) -> SeenValues {
        let values = std::sync::Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
        let api: Api<Secret> = Api::all(self.client.clone());
        let sink = values.clone();
        let task = tokio::spawn(async move {
            loop {
                if let Ok(list) = api.list(&Default::default()).await {
                    for s in list.items {
                        let ours =
                            s.labels().get(MANAGED_BY).map(String::as_str) == Some("gitlab-token-operator");
                        if ours && let Ok(mut v) = sink.lock() {
                            v.extend(token_values_of(&s));
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        SeenValues { values, task }
    }

    /// GitLab's (moved) clock.
    pub fn gitlab_now(&self) -> chrono::DateTime<chrono::Utc> {
        self.world.gitlab.state().now()
    }

    /// Successful reconciles of `controller` this operator process counted.
    pub async fn reconciles(&self, controller: &str) -> f64 {
        let text = self.metrics_text().await;
        let needle = format!(
            "gitlab_token_operator_reconciles_total{{controller=\"{controller}\",result=\"success\"}}"
        );
        text.lines()
            .filter_map(|l| l.strip_prefix(&needle))
            .filter_map(|rest| rest.split_whitespace().next()?.parse::<f64>().ok())
            .sum()
    }

    /// Every Event in the cluster (core/v1 and events.k8s.io/v1), serialized.
    pub async fn all_events(&self) -> Vec<Value> {
        let mut out = Vec::new();
        let core: Api<k8s_openapi::api::core::v1::Event> = Api::all(self.client.clone());
        if let Ok(list) = core.list(&Default::default()).await {
            out.extend(list.items.iter().filter_map(|e| serde_json::to_value(e).ok()));
        }
        let new: Api<k8s_openapi::api::events::v1::Event> = Api::all(self.client.clone());
        if let Ok(list) = new.list(&Default::default()).await {
            out.extend(list.items.iter().filter_map(|e| serde_json::to_value(e).ok()));
        }
        out
    }

    /// Reasons of the events about one GitLabToken, oldest first (as listed).
    pub async fn token_event_reasons(&self, ns: &str, name: &str) -> Vec<String> {
        self.all_events()
            .await
            .into_iter()
            .filter(|e| {
                let about = e.get("regarding").or_else(|| e.get("involvedObject"));
                about.is_some_and(|o| o["kind"] == "GitLabToken" && o["name"] == name && o["namespace"] == ns)
            })
            .filter_map(|e| e["reason"].as_str().map(str::to_string))
            .collect()
    }

    /// Waits until the GitLabToken has emitted an event with `reason`.
    pub async fn wait_token_event(&self, ns: &str, name: &str, reason: &str) {
        eventually(
            &format!("event {reason} on GitLabToken {ns}/{name}"),
            || async move {
                self.token_event_reasons(ns, name)
                    .await
                    .iter()
                    .any(|r| r == reason)
                    .then_some(())
            },
        )
        .await
    }

    /// Waits until the GitLabToken satisfies `check`.
    pub async fn wait_token<F>(&self, ns: &str, name: &str, what: &str, check: F) -> GitLabToken
    where
        F: Fn(&GitLabToken) -> bool,
    {
        let api: Api<GitLabToken> = Api::namespaced(self.client.clone(), ns);
        let check = &check;
        eventually(&format!("GitLabToken {ns}/{name}: {what}"), || {
            let api = api.clone();
            async move { api.get_opt(name).await.ok().flatten().filter(|t| check(t)) }
        })
        .await
    }

    /// Asserts that none of `values` appears in the operator's logs, any Event, any GitLabToken
    /// (status included) or the metrics text. Returns how many bytes were scanned.
    pub async fn assert_no_leaks(&self, values: &[String]) -> usize {
        assert!(!values.is_empty(), "the leak scan needs token values to look for");
        let logs = self.operator_logs();
        let events = serde_json::to_string(&self.all_events().await).unwrap_or_default();
        let tokens: Api<GitLabToken> = Api::all(self.client.clone());
        let tokens =
            serde_json::to_string(&tokens.list(&Default::default()).await.expect("list tokens").items)
                .unwrap_or_default();
        let metrics = self.metrics_text().await;
        assert!(
            !logs.is_empty(),
            "the operator logged nothing: the scan would be vacuous"
        );
        assert!(events.len() > 2, "no events listed: the scan would be vacuous");
        assert!(!metrics.is_empty(), "no metrics read: the scan would be vacuous");
        for v in values {
            assert!(v.len() >= 8, "implausibly short token value");
            for (place, text) in [
                ("operator logs", &logs),
                ("events", &events),
                ("GitLabToken objects", &tokens),
                ("metrics", &metrics),
            ] {
                assert!(
                    !text.contains(v.as_str()),
                    "a token value leaked into the {place}"
                );
            }
        }
        logs.len() + events.len() + tokens.len() + metrics.len()
    }
}
