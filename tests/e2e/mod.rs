//! End-to-end harness: the test world plus the real `gitlab-token-operator` binary.
//!
//! [`Env::start`] starts a [`World`], installs the operator's and Flux's CRDs, creates the
//! operator namespace with the credentials Secret, a `GitLabConnection` named `gitlab`, a default
//! policy (`team-*` namespaces, `acme/**` projects, read scopes plus `api`), a `team-a` namespace,
//! and runs the operator binary with its logs in a file. Everything waits on conditions with a
//! deadline; nothing sleeps to synchronise.
//!
//! Least privilege is proven by every test: the operator authenticates as the Helm chart's
//! ServiceAccount, with exactly the RBAC objects `helm template` renders loaded into the
//! RBAC-enforcing API server emulator (`GTO_E2E_OPERATOR_IDENTITY=admin` runs it as admin instead,
//! for debugging only).

#![allow(dead_code)]

#[path = "../common/helm.rs"]
mod common_helm;
pub mod lifecycle;
pub use common_helm::helm;

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
    /// The kubeconfig the operator uses (the chart's ServiceAccount, unless overridden).
    pub operator_kubeconfig: PathBuf,
    dir: tempfile::TempDir,
    /// Replicas started with leader election ([`Options::leader_election`]); empty otherwise.
    pub replicas: Vec<Replica>,
}

/// How [`Env::start_with`] runs the operator.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `None`: one operator without election, as [`Env::start`]. `Some`: replicas that elect a leader.
    pub leader_election: Option<LeaderElection>,
    /// Objects applied before the operator starts (CRDs are waited for until served), so the
    /// operator sees them from its first moment.
    pub extra: Vec<Value>,
}

/// Several operator processes electing a leader over one Lease.
#[derive(Debug, Clone)]
pub struct LeaderElection {
    /// How many processes.
    pub replicas: usize,
    /// `--lease-duration`, e.g. `3s`.
    pub lease_duration: String,
}

/// Name of the Lease the replicas elect over.
pub const LEASE_NAME: &str = "gitlab-token-operator";

/// One operator process of a leader-elected set.
pub struct Replica {
    /// Its `--instance` (and Lease holder identity), `operator-<i>`.
    pub instance: String,
    /// Its /metrics address.
    pub metrics_addr: String,
    /// Its own log file.
    pub log_path: PathBuf,
    child: Option<Child>,
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
        Self::start_with(Options::default()).await
    }

    /// Like [`Env::start`], with extra objects and the operator run as `options` says.
    pub async fn start_with(options: Options) -> Env {
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
        let operator_kubeconfig = dir.path().join("operator-kubeconfig");
        let mut env = Env {
            operator_kubeconfig,
            log_path: dir.path().join("operator.log"),
            metrics_addr: format!("127.0.0.1:{}", free_port()),
            world,
            client,
            operator: None,
            dir,
            replicas: Vec::new(),
        };
        env.namespace(OPERATOR_NS).await;
        env.namespace("team-a").await;
        env.install_operator_identity().await;
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
        for object in &options.extra {
            env.apply(object.clone()).await;
            if object["kind"] == "CustomResourceDefinition" {
                env.wait_crd_served(object).await;
            }
        }
        match &options.leader_election {
            None => env.start_operator().await,
            Some(election) => {
                for i in 0..election.replicas {
                    env.start_replica(i, &election.lease_duration).await;
                }
            }
        }
        env.wait_connection_ready().await;
        env
    }

    /// Starts replica `i` (`operator-<i>`) with `--leader-elect`; waits for its /readyz.
    pub async fn start_replica(&mut self, i: usize, lease_duration: &str) {
        let replica = Replica {
            instance: format!("operator-{i}"),
            metrics_addr: format!("127.0.0.1:{}", free_port()),
            log_path: self.dir.path().join(format!("operator-{i}.log")),
            child: None,
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&replica.log_path)
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
                "--leader-elect",
                "--lease-name",
                LEASE_NAME,
            ])
            .arg("--lease-duration")
            .arg(lease_duration)
            .arg("--instance")
            .arg(&replica.instance)
            .arg("--metrics-addr")
            .arg(&replica.metrics_addr)
            .arg("--clock-offset-file")
            .arg(self.world.clock_offset_path())
            .env("KUBECONFIG", self.world.kubeconfig_path())
            .env("RUST_LOG", "info,gitlab_token_operator=debug")
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .expect("operator binary runs");
        let url = format!("http://{}/readyz", replica.metrics_addr);
        let replica = Replica {
            child: Some(child),
            ..replica
        };
        match self.replicas.get_mut(i) {
            Some(slot) => *slot = replica,
            None => self.replicas.push(replica),
        }
        eventually(&format!("operator-{i} to report ready"), || {
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

    /// SIGKILLs replica `i` (a crash: the Lease is not released).
    pub async fn kill_replica(&mut self, i: usize) {
        if let Some(mut child) = self.replicas[i].child.take() {
            let _ = child.kill().await;
        }
    }

    /// Sends SIGTERM to replica `i` and waits for it to exit; returns whether it exited cleanly.
    pub async fn terminate_replica(&mut self, i: usize) -> bool {
        let Some(mut child) = self.replicas[i].child.take() else {
            return false;
        };
        let pid = child.id().expect("running").to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .expect("kill runs");
        assert!(sent.success(), "SIGTERM to {pid}");
        match tokio::time::timeout(WAIT, child.wait()).await {
            Ok(Ok(status)) => status.success(),
            _ => {
                let _ = child.kill().await;
                false
            }
        }
    }

    /// Waits (up to [`WAIT`]) for replica `i` to exit on its own; returns its exit code.
    pub async fn wait_replica_exit(&mut self, i: usize) -> Option<i32> {
        let mut child = self.replicas[i].child.take()?;
        match tokio::time::timeout(WAIT, child.wait()).await {
            Ok(Ok(status)) => status.code(),
            _ => {
                let _ = child.kill().await;
                None
            }
        }
    }

    /// The Lease's current holder identity, if any.
    pub async fn lease_holder(&self) -> Option<String> {
        let api: Api<k8s_openapi::api::coordination::v1::Lease> =
            Api::namespaced(self.client.clone(), OPERATOR_NS);
        api.get_opt(LEASE_NAME)
            .await
            .ok()
            .flatten()?
            .spec?
            .holder_identity
            .filter(|h| !h.is_empty())
    }

    /// Replica `i`'s `gitlab_token_operator_leader` gauge (None when it does not answer).
    pub async fn replica_leader_metric(&self, i: usize) -> Option<i64> {
        let url = format!("http://{}/metrics", self.replicas[i].metrics_addr);
        let text = reqwest::get(&url).await.ok()?.text().await.ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("gitlab_token_operator_leader "))
            .and_then(|v| v.trim().parse().ok())
    }

    /// Everything replica `i` logged so far.
    pub fn replica_logs(&self, i: usize) -> String {
        std::fs::read_to_string(&self.replicas[i].log_path).unwrap_or_default()
    }

    /// Waits until every version a CRD object serves is discoverable.
    pub async fn wait_crd_served(&self, crd: &Value) {
        let group = crd
            .pointer("/spec/group")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let kind = crd
            .pointer("/spec/names/kind")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let versions: Vec<String> = crd
            .pointer("/spec/versions")
            .and_then(Value::as_array)
            .map(|vs| {
                vs.iter()
                    .filter_map(|v| v["name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        for version in versions {
            let gvk = GroupVersionKind::gvk(group, &version, kind);
            eventually(&format!("{kind} {group}/{version} to be served"), || {
                let gvk = gvk.clone();
                async move {
                    kube::discovery::pinned_kind(&self.client, &gvk)
                        .await
                        .ok()
                        .map(|_| ())
                }
            })
            .await;
        }
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
            .env("KUBECONFIG", &self.operator_kubeconfig)
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

    /// Loads the chart's ServiceAccount and RBAC into the emulator and writes a kubeconfig for that
    /// ServiceAccount (or the admin one when `GTO_E2E_OPERATOR_IDENTITY=admin`).
    async fn install_operator_identity(&self) {
        if std::env::var("GTO_E2E_OPERATOR_IDENTITY").as_deref() == Ok("admin") {
            let admin = self.world.kube.admin_token().to_string();
            self.world
                .kube
                .write_kubeconfig(&self.operator_kubeconfig, &admin)
                .expect("kubeconfig");
            return;
        }
        let mut service_account = None;
        for object in chart_rbac() {
            let mut object = object;
            if object["kind"] == "ServiceAccount" {
                service_account = object
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .map(str::to_string);
            }
            if matches!(
                object["kind"].as_str(),
                Some("ServiceAccount" | "Role" | "RoleBinding")
            ) {
                object["metadata"]["namespace"] = json!(OPERATOR_NS);
            }
            self.apply(object).await;
        }
        let service_account = service_account.expect("the chart renders a ServiceAccount");
        let token = format!("sa-{}", uuid_like());
        self.world
            .kube
            .add_service_account_token(&token, OPERATOR_NS, &service_account);
        self.world
            .kube
            .write_kubeconfig(&self.operator_kubeconfig, &token)
            .expect("kubeconfig");
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
        for i in 0..self.replicas.len() {
            self.kill_replica(i).await;
        }
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

fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{nanos:x}{:x}", std::process::id())
}

/// The ServiceAccount and RBAC objects the chart renders for release `gto` in the operator namespace.
pub fn chart_rbac() -> Vec<Value> {
    let chart = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/gitlab-token-operator");
    let out = std::process::Command::new(helm())
        .args(["template", "gto"])
        .arg(&chart)
        .args(["--namespace", OPERATOR_NS])
        .env("HELM_CACHE_HOME", std::env::temp_dir().join("gto-e2e-helm-cache"))
        .output()
        .expect("helm runs");
    assert!(
        out.status.success(),
        "helm template failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    serde_yaml_ng::Deserializer::from_str(&text)
        .filter_map(|doc| <Value as serde::Deserialize>::deserialize(doc).ok())
        .filter(|v| {
            matches!(
                v["kind"].as_str(),
                Some("ServiceAccount" | "ClusterRole" | "ClusterRoleBinding" | "Role" | "RoleBinding")
            )
        })
        .collect()
}

/// Discovery is used by kube's `pinned_kind`; kept referenced for clarity.
pub type DiscoveryUsed = Discovery;

/// A minimal CRD for notification.toolkit.fluxcd.io `Provider` (served `v1beta3`, any fields):
/// there is no Flux fixture for it, and the shim serves Providers of type `gitlab`.
pub fn provider_crd() -> Value {
    json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "providers.notification.toolkit.fluxcd.io"},
        "spec": {"group": "notification.toolkit.fluxcd.io", "scope": "Namespaced",
            "names": {"kind": "Provider", "listKind": "ProviderList", "plural": "providers", "singular": "provider"},
            "versions": [{"name": "v1beta3", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}})
}

impl Env {
    /// Every core/v1 Event in `ns` about the object named `name`: (type, reason, message).
    pub async fn events_about(&self, ns: &str, name: &str) -> Vec<(String, String, String)> {
        let api: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(self.client.clone(), ns);
        let list = api
            .list(&Default::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        list.into_iter()
            .filter(|e| e.involved_object.name.as_deref() == Some(name))
            .map(|e| {
                (
                    e.type_.unwrap_or_default(),
                    e.reason.unwrap_or_default(),
                    e.message.unwrap_or_default(),
                )
            })
            .collect()
    }

    /// Waits for a Warning Event with `reason` about `name` in `ns`, returning its message.
    pub async fn wait_warning(&self, ns: &str, name: &str, reason: &str) -> String {
        eventually(
            &format!("a Warning {reason} event on {ns}/{name}"),
            || async move {
                self.events_about(ns, name)
                    .await
                    .into_iter()
                    .find(|(t, r, _)| t == "Warning" && r == reason)
                    .map(|(_, _, m)| m)
            },
        )
        .await
    }

    /// The operator's /metrics exposition.
    pub async fn metrics_text(&self) -> String {
        let url = format!("http://{}/metrics", self.metrics_addr);
        match reqwest::get(&url).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// Sum of a metric's samples whose label set contains every `label="value"` in `labels`.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let text = self.metrics_text().await;
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
                (metric == name && labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\""))))
                    .then(|| value.parse::<f64>().ok())
                    .flatten()
            })
            .sum()
    }

    /// Every GitLab token (any state) the operator created (name prefix `gto-e2e-`).
    pub fn all_operator_tokens(&self) -> Vec<testbed::gitlab::TokenRecord> {
        self.world
            .gitlab
            .tokens()
            .into_iter()
            .filter(|t| t.name.starts_with("gto-e2e-"))
            .collect()
    }

    /// Waits until the Flux stand-in reports `Ready=True` on a source.
    pub async fn wait_flux_ready(&self, ns: &str, group_version: &str, kind: &str, name: &str) {
        let api = self.flux_api(ns, group_version, kind).await;
        eventually(&format!("{kind} {ns}/{name} to be Ready in Flux"), || {
            let api = api.clone();
            async move {
                let o = api.get(name).await.ok()?;
                let ready = o
                    .data
                    .pointer("/status/conditions")?
                    .as_array()?
                    .iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True");
                ready.then_some(())
            }
        })
        .await;
    }
}

impl Env {
    /// Clones `project` with basic credentials, commits, and pushes a new branch `branch`:
    /// `Ok` when the push was accepted, `Err(stderr)` when git refused (clone or push).
    pub async fn git_push(&self, project: &str, user: &str, pass: &str, branch: &str) -> Result<(), String> {
        let url = format!("{}/{project}.git", self.world.gitlab_url());
        let authed = url.replacen("http://", &format!("http://{user}:{pass}@"), 1);
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let git = |args: Vec<String>, cwd: PathBuf| async move {
            let out = Command::new("git")
                .args([
                    "-c",
                    "credential.helper=",
                    "-c",
                    "user.name=e2e",
                    "-c",
                    "user.email=e2e@example.com",
                ])
                .args(&args)
                .current_dir(cwd)
                .env("GIT_TERMINAL_PROMPT", "0")
                .output()
                .await
                .map_err(|e| e.to_string())?;
            if out.status.success() {
                Ok(())
            } else {
                Err(String::from_utf8_lossy(&out.stderr).into_owned())
            }
        };
        let repo = dir.path().join("repo");
        git(
            vec!["clone".into(), "-q".into(), authed, "repo".into()],
            dir.path().to_path_buf(),
        )
        .await?;
        git(
            vec![
                "commit".into(),
                "-q".into(),
                "--allow-empty".into(),
                "-m".into(),
                "e2e".into(),
            ],
            repo.clone(),
        )
        .await?;
        git(
            vec![
                "push".into(),
                "-q".into(),
                "origin".into(),
                format!("HEAD:refs/heads/{branch}"),
            ],
            repo,
        )
        .await
    }
}

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
