//! Kubernetes API server emulator (issue: test world, part 1). See `kube-api.md` in shared/reference.
//!
//! Start one per test with [`KubeServer::start`]; it serves plain HTTP on a random loopback port,
//! writes kubeconfigs for clients (kube-rs, kubectl), and exposes [`Controls`] for fault injection.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use testbed::kube::{KubeServer, KubeServerConfig};
//! let world = KubeServer::start(KubeServerConfig::default()).await?;
//! let client = world.admin_client().await?; // kube::Client, identity in group system:masters
//! world.add_user_token("alice-token", "alice", &["devs"]); // RBAC applies to alice
//! world.write_kubeconfig("/tmp/kc", world.admin_token())?;
//! world.allow_anonymous_admin(); // kubectl sends no token over plain HTTP
//! world.controls().inject_errors("create", "secrets", 0.5, 503);
//! world.shutdown().await;
//! # drop(client); Ok(()) }
//! ```
//!
//! Layout: `http` (routing, auth, RBAC gate, controls) → `listing`/`watch` (reads) and
//! `objects`/`patching`/`deletion` (the write pipeline) over `store` (objects as `Arc<Value>`,
//! global resourceVersion, event log and broadcast fan-out). `gc` runs the controllers the
//! control plane would (garbage collector, namespace lifecycle, CRD naming and cleanup,
//! ClusterRole aggregation). Pure rules live in `validation`, `kinds`, `selector`, `rbac`,
//! `output` and `semantics` (schema, patches, managedFields).

pub mod auth;
pub mod bootstrap;
pub mod controls;
pub mod crd;
pub mod deletion;
pub mod discovery;
pub mod gc;
pub mod http;
pub mod kinds;
pub mod listing;
pub mod objects;
pub mod openapi;
pub mod output;
pub mod patching;
pub mod protobuf;
pub mod query;
pub mod rbac;
pub mod resources;
pub mod scale;
pub mod selector;
pub mod semantics;
pub mod state;
pub mod status;
pub mod store;
pub mod tokens;
pub mod validation;
pub mod watch;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

pub use controls::{AdmissionDenial, Controls};
pub use state::{KubeServerConfig, UserInfo};

/// The emulator; see [`KubeServer::start`].
pub struct KubeServer;

/// A running emulator; dropping it (or [`KubeHandle::shutdown`]) stops it.
pub struct KubeHandle {
    addr: SocketAddr,
    admin_token: String,
    state: Arc<state::State>,
    server: tokio::task::JoinHandle<()>,
    gc: tokio::task::JoinHandle<()>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

/// Errors starting the emulator.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Could not bind the loopback listener.
    #[error("binding 127.0.0.1:0: {0}")]
    Bind(#[from] std::io::Error),
}

impl KubeServer {
    /// Starts an emulator on 127.0.0.1 with a random port.
    pub async fn start(config: KubeServerConfig) -> Result<KubeHandle, StartError> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let st = state::State::new(config);
        let admin_token = format!("admin-{}", uuid::Uuid::new_v4().simple());
        if let Ok(mut t) = st.tokens.write() {
            t.insert(
                admin_token.clone(),
                UserInfo::new("kubernetes-admin", &["system:masters"]),
            );
        }
        let app_state = st.clone();
        let addr_s = addr.to_string();
        let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
            let st = app_state.clone();
            let a = addr_s.clone();
            async move { http::handle(st, a, req).await }
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let graceful = async move {
                let _ = stopped.await;
            };
            if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(graceful).await {
                tracing::warn!(error = %e, "kube emulator server stopped");
            }
        });
        // Fill the aggregated bootstrap roles before the first request.
        for _ in 0..20 {
            if !gc::pass(&st) {
                break;
            }
        }
        let gc = tokio::spawn(gc::run(Arc::downgrade(&st)));
        Ok(KubeHandle {
            stop: Some(stop),
            addr,
            admin_token,
            state: st,
            server,
            gc,
        })
    }
}

impl KubeHandle {
    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Bearer token of the admin identity (group `system:masters`, bypasses RBAC).
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// A kubeconfig document pointing at this server with the given bearer token.
    pub fn kubeconfig_yaml(&self, token: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: testbed\n  cluster:\n    server: {}\ncontexts:\n- name: testbed\n  context:\n    cluster: testbed\n    user: testbed-user\n    namespace: default\ncurrent-context: testbed\nusers:\n- name: testbed-user\n  user:\n    token: {}\n",
            self.url(),
            serde_json::to_string(token).unwrap_or_default()
        )
    }

    /// Writes [`Self::kubeconfig_yaml`] to `path`.
    pub fn write_kubeconfig(&self, path: impl AsRef<Path>, token: &str) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig_yaml(token))
    }

    /// A kube-rs client built from the kubeconfig for `token`.
    pub async fn client_for(&self, token: &str) -> Result<kube::Client, kube::Error> {
        let kc = kube::config::Kubeconfig::from_yaml(&self.kubeconfig_yaml(token))
            .map_err(kube::Error::InferKubeconfig)?;
        let cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .map_err(kube::Error::InferKubeconfig)?;
        kube::Client::try_from(cfg)
    }

    /// A kube-rs client with the admin identity.
    pub async fn admin_client(&self) -> Result<kube::Client, kube::Error> {
        self.client_for(&self.admin_token).await
    }

    /// Registers a bearer token for `user` with `groups` (`system:authenticated` is implied; for
    /// `system:serviceaccount:<ns>:<name>` the service-account groups are added).
    pub fn add_user_token(&self, token: &str, user: &str, groups: &[&str]) {
        if let Ok(mut t) = self.state.tokens.write() {
            t.insert(token.to_string(), UserInfo::new(user, groups));
        }
    }

    /// Registers a bearer token for ServiceAccount `ns/name`.
    pub fn add_service_account_token(&self, token: &str, ns: &str, name: &str) {
        self.add_user_token(token, &format!("system:serviceaccount:{ns}:{name}"), &[]);
    }

    /// Binds group `system:unauthenticated` to `cluster-admin` (ClusterRoleBinding
    /// `testbed:anonymous-admin`). kubectl (client-go) never sends credentials over plain HTTP,
    /// so kubectl against this server acts as `system:anonymous` and needs this (or finer RBAC).
    pub fn allow_anonymous_admin(&self) {
        let now = objects::now_str();
        let name = "testbed:anonymous-admin";
        let binding = serde_json::json!({"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRoleBinding",
            "metadata":{"name":name,"uid":uuid::Uuid::new_v4().to_string(),"creationTimestamp":now},
            "roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"cluster-admin"},
            "subjects":[{"apiGroup":"rbac.authorization.k8s.io","kind":"Group","name":"system:unauthenticated"}]});
        let _ = self.state.store.mutate("clusterrolebindings", "", name, |_, _| {
            Ok(store::Mutation::Put(binding))
        });
    }

    /// Test controls (latency, errors, watch drops, compaction, counters).
    pub fn controls(&self) -> &Controls {
        &self.state.controls
    }

    /// Current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.state.store.rv()
    }

    /// Number of stored objects of all kinds.
    pub fn object_count(&self) -> usize {
        self.state.store.len()
    }

    /// Stops the server and its controllers.
    pub async fn shutdown(mut self) {
        // End watch streams, stop accepting, let open connections finish, then stop controllers.
        self.state.controls.drop_watches();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), &mut self.server).await;
        self.server.abort();
        self.gc.abort();
        let _ = (&mut self.gc).await;
    }
}

impl Drop for KubeHandle {
    fn drop(&mut self) {
        self.state.controls.drop_watches();
        self.server.abort();
        self.gc.abort();
    }
}
