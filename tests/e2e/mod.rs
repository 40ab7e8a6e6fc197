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

pub mod argocd;
#[path = "../common/helm.rs"]
mod common_helm;
pub mod crash;
mod identity;
pub mod invariants;
pub mod lifecycle;
mod observe;
mod replicas;
pub use common_helm::helm;
// Each test binary uses its own subset of the helpers.
#[allow(unused_imports)]
pub use identity::chart_rbac;
#[allow(unused_imports)]
pub use lifecycle::{MANAGED_BY, SeenValues, git_ls_remote, token_values_of};
#[allow(unused_imports)]
pub use observe::provider_crd;

use std::{path::PathBuf, process::Stdio, time::Duration};

use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::{
    Api, Client, ResourceExt,
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
    /// The test's temporary directory (operator log, kubeconfigs; kept with `GTO_E2E_KEEP`).
    pub dir: tempfile::TempDir,
    /// Replicas started with leader election ([`Options::leader_election`]); empty otherwise.
    pub replicas: Vec<Replica>,
    /// Extra environment for every operator process ([`Options::operator_env`]).
    operator_env: Vec<(String, String)>,
    /// Whether Argo CD is served ([`Options::argocd`]).
    pub argocd: bool,
}

/// How [`Env::start_with`] runs the operator.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `None`: one operator without election, as [`Env::start`]. `Some`: replicas that elect a leader.
    pub leader_election: Option<LeaderElection>,
    /// Objects applied before the operator starts (CRDs are waited for until served), so the
    /// operator sees them from its first moment.
    pub extra: Vec<Value>,
    /// Extra environment for the operator process (its flags all have `GTO_*` variables).
    pub operator_env: Vec<(String, String)>,
    /// The test starts the operator itself (e.g. from the container image): `start_with` starts
    /// none and returns without waiting for the connection to be Ready.
    pub external_operator: bool,
    /// Argo CD served in namespace `argocd`: the stand-in runs with this configuration, Argo CD's
    /// CRDs are installed, the chart's RBAC is rendered with `argocd.enabled`, and the operator
    /// gets `GTO_ARGOCD_NAMESPACE=argocd`. `None`: the world's default stand-in, not served.
    pub argocd: Option<testbed::argocd::ArgoCdConfig>,
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
/// The Lease the chart's RBAC allows (release `gto`): what [`Env::start_operator`] elects over,
/// since leader election is on by default.
pub const CHART_LEASE_NAME: &str = "gto-gitlab-token-operator";

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
        // GTO_E2E_KEEP: the test's files (operator.log, the world) stay on disk, even after a panic.
        let keep = std::env::var_os("GTO_E2E_KEEP").is_some();
        let dir = tempfile::Builder::new()
            .disable_cleanup(keep)
            .tempdir()
            .expect("temp dir");
        if keep {
            eprintln!("keeping the test's files in {}", dir.path().display());
        }
        let mut config = WorldConfig::new(dir.path().join("world"));
        if let Some(argocd) = &options.argocd {
            config.argocd = Some(argocd.clone());
        }
        let world = World::start(config).await.expect("world starts");
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
            operator_env: options.operator_env.clone(),
            argocd: options.argocd.is_some(),
        };
        env.namespace(OPERATOR_NS).await;
        env.namespace("team-a").await;
        if env.argocd {
            env.namespace("argocd").await;
            install_crds(&env.client, &fixtures_dir().join("argocd-crds"))
                .await
                .expect("Argo CD CRDs");
            env.operator_env
                .push(("GTO_ARGOCD_NAMESPACE".into(), "argocd".into()));
        }
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
        if options.external_operator {
            return env;
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

    /// Starts (or restarts) the operator binary, with leader election on (its default) over the
    /// chart's Lease: a restart after [`Env::kill_operator`] takes over once the old Lease expires.
    pub async fn start_operator(&mut self) {
        self.spawn_operator(&[]);
        self.wait_operator_ready().await;
    }

    /// Starts (or restarts) the operator with `extra` environment for this run only (e.g.
    /// `FAILPOINTS`), without waiting for it to report ready (it may stop at a crash point first).
    pub fn spawn_operator(&mut self, extra: &[(&str, &str)]) {
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
                "--lease-name",
                CHART_LEASE_NAME,
            ])
            .arg("--metrics-addr")
            .arg(&self.metrics_addr)
            .arg("--clock-offset-file")
            .arg(self.world.clock_offset_path())
            .env("KUBECONFIG", &self.operator_kubeconfig)
            .env("RUST_LOG", "info,gitlab_token_operator=debug")
            .envs(self.operator_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(extra.iter().copied())
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .expect("operator binary runs");
        self.operator = Some(child);
    }

    /// Waits until the operator's /readyz answers 200.
    pub async fn wait_operator_ready(&self) {
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

    /// Waits (up to `within`) for the operator to exit on its own; returns its exit code (None:
    /// still running after the wait, then killed; or killed by a signal).
    pub async fn wait_operator_exit(&mut self, within: Duration) -> Option<i32> {
        let mut child = self.operator.take()?;
        match tokio::time::timeout(within, child.wait()).await {
            Ok(Ok(status)) => status.code(),
            _ => {
                let _ = child.kill().await;
                None
            }
        }
    }

    /// Whether the operator process has exited (it is then forgotten); false while it runs.
    pub fn operator_exited(&mut self) -> Option<i32> {
        let code = match self.operator.as_mut()?.try_wait() {
            Ok(Some(status)) => status.code(),
            _ => return None,
        };
        self.operator = None;
        code.or(Some(-1))
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
