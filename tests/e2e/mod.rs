//! End-to-end harness: the test world plus the real `gitlab-token-operator` binary.
//!
//! [`Env::start`] starts a [`World`], installs the operator's and Flux's CRDs, creates the
//! operator namespace with the credentials Secret, a `GitLabConnection` named `gitlab`, a default
//! policy (`team-*` namespaces, `acme/**` projects, read scopes plus `api`), a `team-a` namespace,
//! and runs the operator binary with its logs in a file. Everything waits on conditions with a
//! deadline; nothing sleeps to synchronise.

#![allow(dead_code)]

pub mod lifecycle;

use std::{path::PathBuf, process::Stdio, time::Duration};

use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::{
    Api, Client, Discovery, ResourceExt,
    api::{DynamicObject, Patch, PatchParams},
    core::GroupVersionKind,
};
use serde_json::{Value, json};
use testbed::world::{World, WorldConfig, fixtures_dir, install_crds};
use tokio::process::{Child, Command};

use gitlab_token_operator::crd::GitLabToken;

/// Namespace the operator runs in.
pub const OPERATOR_NS: &str = "gitlab-token-operator";
/// Name of the connection every test uses.
pub const CONNECTION: &str = "gitlab";

/// How long any single wait may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(60);

/// The world, a client, and the running operator.
pub struct Env {
    /// The test world.
    pub world: World,
    /// Admin client.
    pub client: Client,
    operator: Option<Child>,
    /// Where the operator's logs go (appended across restarts).
    pub log_path: PathBuf,
    /// The operator's /metrics address.
    pub metrics_addr: String,
    dir: tempfile::TempDir,
}

/// Polls `check` every 100 ms until it returns `Some`, failing the test after [`WAIT`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {WAIT:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

impl Env {
    /// A world with the default setup and a running operator whose connection is Ready.
    pub async fn start() -> Env {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("warn")
            .with_test_writer()
            .try_init();
        let dir = tempfile::tempdir().expect("temp dir");
        let world = World::start(WorldConfig::new(dir.path().join("world")))
            .await
            .expect("world starts");
        let client = world.kube.admin_client().await.expect("admin client");
        install_crds(
            &client,
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crds"),
        )
        .await
        .expect("our CRDs");
        install_crds(&client, &fixtures_dir().join("flux-crds"))
            .await
            .expect("Flux CRDs");
        let mut env = Env {
            log_path: dir.path().join("operator.log"),
            metrics_addr: format!("127.0.0.1:{}", free_port()),
            world,
            client,
            operator: None,
            dir,
        };
        env.namespace(OPERATOR_NS).await;
        env.namespace("team-a").await;
        let token = env.world.operator_token().expect("seeded").to_string();
        env.apply(json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "gitlab-operator-token", "namespace": OPERATOR_NS},
            "stringData": {"token": token}}))
            .await;
        let (url, registry) = (env.world.gitlab_url(), env.world.registry_host());
        env.apply(json!({"apiVersion": "gitlabtokens.io/v1alpha1", "kind": "GitLabConnection",
            "metadata": {"name": CONNECTION},
            "spec": {"url": url, "registryHost": registry,
                     "credentials": {"secretRef": {"namespace": OPERATOR_NS, "name": "gitlab-operator-token", "key": "token"}}}})).await;
        env.apply(
            json!({"apiVersion": "gitlabtokens.io/v1alpha1", "kind": "GitLabTokenPolicy",
            "metadata": {"name": "teams"},
            "spec": {"namespaceSelector": {"matchNames": ["team-*"]}, "projects": ["acme/**"],
                     "scopes": ["read_repository", "read_registry", "read_api", "api", "write_repository"],
                     "maxAccessLevel": "developer"}}),
        )
        .await;
        env.start_operator().await;
        env.wait_connection_ready().await;
        env
    }

    /// Starts (or restarts) the operator binary.
    pub async fn start_operator(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_gitlab-token-operator"))
            .args([
                "run",
                "--namespace",
                OPERATOR_NS,
                "--cluster-name",
                "e2e",
                "--log-format",
                "json",
            ])
            .arg("--metrics-addr")
            .arg(&self.metrics_addr)
            .arg("--clock-offset-file")
            .arg(self.world.clock_offset_path())
            .env("KUBECONFIG", self.world.kubeconfig_path())
            .env("RUST_LOG", "info,gitlab_token_operator=debug")
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .expect("operator binary runs");
        self.operator = Some(child);
        let url = format!("http://{}/readyz", self.metrics_addr);
        eventually("the operator to report ready", || {
            let url = url.clone();
            async move {
                reqwest::get(&url)
                    .await
                    .ok()
                    .filter(|r| r.status() == 200)
                    .map(|_| ())
            }
        })
        .await;
    }

    /// Stops the operator (SIGKILL: a crash, not a graceful stop).
    pub async fn kill_operator(&mut self) {
        if let Some(mut child) = self.operator.take() {
            let _ = child.kill().await;
        }
    }

    /// Waits until the connection is Ready.
    pub async fn wait_connection_ready(&self) {
        let api: Api<gitlab_token_operator::crd::GitLabConnection> = Api::all(self.client.clone());
        eventually("the GitLabConnection to be Ready", || {
            let api = api.clone();
            async move {
                let c = api.get(CONNECTION).await.ok()?;
                gitlab_token_operator::controller::conditions::is_ready(&c.status?.conditions).then_some(())
            }
        })
        .await;
    }

    /// Creates a namespace.
    pub async fn namespace(&self, name: &str) {
        self.apply(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}))
            .await;
    }

    /// Server-side applies any object (field manager `e2e`), discovering its resource.
    pub async fn apply(&self, object: Value) -> DynamicObject {
        let api_version = object["apiVersion"].as_str().expect("apiVersion");
        let kind = object["kind"].as_str().expect("kind");
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let (ar, caps) = kube::discovery::pinned_kind(&self.client, &gvk)
            .await
            .expect("kind is served");
        let name = object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .expect("name");
        let api: Api<DynamicObject> = match object.pointer("/metadata/namespace").and_then(Value::as_str) {
            Some(ns) if caps.scope == kube::discovery::Scope::Namespaced => {
                Api::namespaced_with(self.client.clone(), ns, &ar)
            }
            _ => Api::all_with(self.client.clone(), &ar),
        };
        api.patch(name, &PatchParams::apply("e2e").force(), &Patch::Apply(&object))
            .await
            .expect("apply")
    }

    /// A Flux source API for `kind` in `ns` at its v1 (Provider: v1beta3).
    pub async fn flux_api(&self, ns: &str, group_version: &str, kind: &str) -> Api<DynamicObject> {
        let (group, version) = group_version.split_once('/').expect("group/version");
        let (ar, _) =
            kube::discovery::pinned_kind(&self.client, &GroupVersionKind::gvk(group, version, kind))
                .await
                .expect("served");
        Api::namespaced_with(self.client.clone(), ns, &ar)
    }

    /// Waits for a Secret to exist and returns it.
    pub async fn wait_secret(&self, ns: &str, name: &str) -> Secret {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), ns);
        eventually(&format!("Secret {ns}/{name}"), || {
            let api = api.clone();
            async move { api.get_opt(name).await.ok().flatten() }
        })
        .await
    }

    /// Waits until the GitLabToken's condition `type_` has `status` (and `reason` when given).
    pub async fn wait_token_condition(
        &self,
        ns: &str,
        name: &str,
        type_: &str,
        status: &str,
        reason: Option<&str>,
    ) -> GitLabToken {
        let api: Api<GitLabToken> = Api::namespaced(self.client.clone(), ns);
        eventually(
            &format!("GitLabToken {ns}/{name} {type_}={status} {reason:?}"),
            || {
                let api = api.clone();
                async move {
                    let t = api.get_opt(name).await.ok().flatten()?;
                    let ok = t.status.as_ref()?.conditions.iter().any(|c| {
                        c.type_ == type_
                            && format!("{:?}", c.status) == status
                            && reason.is_none_or(|r| c.reason == r)
                    });
                    ok.then_some(t)
                }
            },
        )
        .await
    }

    /// The value of a Secret key.
    pub fn secret_value(secret: &Secret, key: &str) -> String {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|b| String::from_utf8_lossy(&b.0).into_owned())
            .unwrap_or_default()
    }

    /// Tokens GitLab holds for a project (all states), as the leak audit sees them.
    pub fn gitlab_tokens(&self, project: &str) -> Vec<testbed::gitlab::TokenRecord> {
        self.world
            .gitlab
            .tokens()
            .into_iter()
            .filter(|t| t.resource.as_deref() == Some(project))
            .collect()
    }

    /// Active project tokens the operator created (name prefix `gto-e2e-`).
    pub fn active_operator_tokens(&self) -> Vec<testbed::gitlab::TokenRecord> {
        self.world
            .gitlab
            .tokens()
            .into_iter()
            .filter(|t| t.name.starts_with("gto-e2e-") && t.state == "active")
            .collect()
    }

    /// Everything the operator logged so far.
    pub fn operator_logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Deletes the namespace's object of `kind` named `name` (any served kind).
    pub async fn delete(&self, api: &Api<DynamicObject>, name: &str) {
        let _ = api.delete(name, &Default::default()).await;
    }

    /// Stops the operator and the world.
    pub async fn stop(mut self) {
        self.kill_operator().await;
        self.world.stop().await;
        drop(self.dir);
    }

    /// The namespace API.
    pub fn namespaces(&self) -> Api<Namespace> {
        Api::all(self.client.clone())
    }

    /// Names of every object in a dynamic list (helper for assertions).
    pub fn names(list: &[DynamicObject]) -> Vec<String> {
        list.iter().map(|o| o.name_any()).collect()
    }
}

/// Discovery is used by kube's `pinned_kind`; kept referenced for clarity.
pub type DiscoveryUsed = Discovery;

// ---- Lifecycle helpers (additive) ----

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
            "password" | "token" => out.push(text),
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

    /// The operator's /metrics text.
    pub async fn metrics_text(&self) -> String {
        let url = format!("http://{}/metrics", self.metrics_addr);
        match reqwest::get(&url).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
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
