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

use super::{Env, eventually, git_ls_remote};
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
