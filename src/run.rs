//! `gitlab-token-operator run`: start the controllers and the health/metrics server, and stop
//! them cleanly on SIGTERM or SIGINT.

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use clap::Args;
use futures::{FutureExt, StreamExt, future::BoxFuture};
use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Api,
    api::ListParams,
    core::PartialObjectMeta,
    runtime::{
        Predicate, WatchStreamExt,
        controller::Action,
        predicates,
        reflector::{self, Store},
        watcher,
    },
};
use tokio::sync::watch;

use crate::{
    clock::{Clock, OffsetClock, SystemClock},
    controller::{
        context::{Context, OperatorConfig},
        sweep,
    },
    crd::{GitLabToken, GitLabTokenPolicy},
    http::{self, HealthState},
    metrics::Metrics,
    telemetry::{self, LogFormat},
};

mod controllers;

use controllers::{connection_controller, policy_status_controller, shim_controller, token_controller};

/// Most Kubernetes requests the operator has in flight at once. kube-rs speaks HTTP/1.1, one
/// connection per request in flight (watches hold theirs while they stream, and are not counted
/// here: the limit covers a request until its response starts): bounded, the connections are too.
/// 16 keeps well over a thousand requests a second against an API server answering in 10 ms.
const KUBE_REQUESTS_IN_FLIGHT: usize = 16;

/// Flags of `run` (each also readable from the environment).
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// The operator's namespace: GitLabConnection credentials must live here.
    #[arg(long, env = "POD_NAMESPACE", default_value = "gitlab-token-operator")]
    pub namespace: String,
    /// This cluster's marker in GitLab token names (`<prefix>-<cluster>-<uid>`); keep it unique per GitLab.
    #[arg(long, env = "GTO_CLUSTER_NAME", default_value = "default")]
    pub cluster_name: String,
    /// Serve only these namespaces (comma-separated); default all.
    #[arg(long, env = "GTO_WATCH_NAMESPACES", value_delimiter = ',')]
    pub watch_namespaces: Vec<String>,
    /// Address of /livez, /readyz and /metrics.
    #[arg(long, env = "GTO_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Log output format.
    #[arg(long, env = "GTO_LOG_FORMAT", value_enum, default_value_t = LogFormat::Plain)]
    pub log_format: LogFormat,
    /// How often GitLab is asked whether each token is still active.
    #[arg(long, env = "GTO_VERIFY_INTERVAL", value_parser = parse_duration, default_value = "6h")]
    pub verify_interval: Duration,
    /// How often each connection's projects are swept for orphaned tokens.
    #[arg(long, env = "GTO_SWEEP_INTERVAL", value_parser = parse_duration, default_value = "1h")]
    pub sweep_interval: Duration,
    /// Argo CD's control-plane namespace (usually `argocd`): annotated Applications get repository
    /// Secrets there. Empty (the default): Argo CD is not served.
    #[arg(long, env = "GTO_ARGOCD_NAMESPACE", default_value = "")]
    pub argocd_namespace: String,
    /// Delegated tokens (policies with `gitlabAccess`) are re-checked against GitLab within this
    /// interval: the longest a change in GitLab takes to reach them.
    #[arg(long, env = "GTO_ACCESS_RECHECK_INTERVAL", value_parser = parse_duration, default_value = "5m")]
    pub access_recheck_interval: Duration,
    /// This replica's name in events and leases (defaults to the host name).
    #[arg(long, env = "POD_NAME")]
    pub instance: Option<String>,
    /// Run the controllers only while holding the leader Lease (on by default: one writer). Switch it
    /// off only for development, explicitly: `--leader-elect=false`.
    #[arg(
        long,
        env = "GTO_LEADER_ELECT",
        value_parser = clap::builder::BoolishValueParser::new(),
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_value_t = true,
        default_missing_value = "true"
    )]
    pub leader_elect: bool,
    /// Name of the leader Lease in the operator's namespace.
    #[arg(long, env = "GTO_LEASE_NAME", default_value = "gitlab-token-operator")]
    pub lease_name: String,
    /// How long the Lease stays valid without renewal: how soon a replica takes over after a crash.
    #[arg(long, env = "GTO_LEASE_DURATION", value_parser = crate::leader::parse_lease_duration, default_value = "15s")]
    pub lease_duration: Duration,
    /// Most `GitLabToken` reconciles in flight at once (bounds GitLab calls, API connections and
    /// memory; due work is not starved behind a burst because each reconcile is short).
    #[arg(long, env = "GTO_CONCURRENCY", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency: u16,
    /// Test world only: follow a clock offset (seconds) written to this file.
    #[arg(long, env = "GTO_CLOCK_OFFSET_FILE", hide = true)]
    pub clock_offset_file: Option<PathBuf>,
}

/// Parses `90s`, `10m`, `6h`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    s.parse::<crate::crd::ShortDuration>()
        .map(|d| d.to_std())
        .map_err(|e| e.to_string())
}

/// Why the operator could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// No usable kubeconfig or in-cluster config.
    #[error("cannot configure the Kubernetes client: {0}")]
    Config(#[from] kube::config::InferConfigError),
    /// The API server refused or is unreachable.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The CRDs are not installed.
    #[error(
        "the gitlabtokens.io CRDs are not installed ({0}); install them with `gitlab-token-operator crds | kubectl apply --server-side -f -`"
    )]
    CrdsMissing(kube::Error),
    /// Leader election could not start.
    #[error(transparent)]
    Leader(#[from] crate::leader::LeaderError),
    /// The health and metrics address could not be bound (in use, not local, no permission).
    #[error("cannot listen on --metrics-addr {addr} for /livez, /readyz and /metrics: {source}; {hint}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why binding failed.
        source: std::io::Error,
        /// What to do about it.
        hint: &'static str,
    },
    /// The health server failed while serving.
    #[error("cannot serve metrics: {0}")]
    Http(#[from] std::io::Error),
}

/// Runs until SIGTERM/SIGINT.
pub async fn run(args: RunArgs) -> Result<(), RunError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    telemetry::init(args.log_format);
    let _crash_points = crate::failpoints::setup();
    // Bind first: a second instance (or anything else on the port) stops here, at once, before it
    // talks to the cluster.
    let listener = http::bind(args.metrics_addr)
        .await
        .map_err(|source| RunError::Bind {
            addr: args.metrics_addr,
            hint: http::bind_hint(&source),
            source,
        })?;
    if !args.leader_elect {
        tracing::warn!(
            "leader election is off (--leader-elect=false): run exactly one instance, or two would race on GitLab tokens"
        );
    }
    let kube_config = kube::Config::infer().await.map_err(RunError::Config)?;
    let client = kube::client::ClientBuilder::try_from(kube_config.clone())
        .map_err(RunError::Kube)?
        .with_layer(&tower::limit::ConcurrencyLimitLayer::new(KUBE_REQUESTS_IN_FLIGHT))
        .build();
    Api::<GitLabToken>::all(client.clone())
        .list(&ListParams::default().limit(1))
        .await
        .map_err(RunError::CrdsMissing)?;

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
    });
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };

    let metrics = Arc::new(Metrics::new());
    let health = HealthState::new(metrics.clone());
    let (clock, clock_moves) = clock_from(&args);
    let instance = args.instance.clone().unwrap_or_else(hostname);
    let config = OperatorConfig {
        namespace: args.namespace.clone(),
        cluster_name: args.cluster_name.clone(),
        watch_namespaces: args.watch_namespaces.clone(),
        verify_interval: args.verify_interval,
        sweep_interval: args.sweep_interval,
        access_recheck_interval: args.access_recheck_interval,
        controller_name: "gitlab-token-operator".into(),
        instance,
        exclusive: args.leader_elect,
        argocd_namespace: args.argocd_namespace.clone(),
    };
    let (policies, policy_writer) = reflector::store();
    let policy_events = watcher(
        Api::<GitLabTokenPolicy>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .modify(crate::controller::cache::slim)
    .reflect(policy_writer)
    // Deletions too: a deleted policy withdraws the tokens it allowed.
    .touched_objects();
    let (namespaces, namespace_writer) = reflector::store();
    let namespace_events = watcher(
        Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .modify(crate::controller::cache::slim)
    .reflect(namespace_writer)
    .touched_objects()
    // Labels select namespaces; an annotation may name a delegating policy's GitLab identity.
    .predicate_filter(
        predicates::labels.combine(predicates::annotations),
        Default::default(),
    );
    let ctx = Arc::new(Context::new(
        client.clone(),
        config,
        clock,
        metrics,
        policies.clone(),
        namespaces,
    ));
    let http_task = tokio::spawn(http::serve(listener, health.clone(), stopped()));
    let lease = crate::leader::LeaderConfig {
        lease_name: args.lease_name.clone(),
        namespace: args.namespace.clone(),
        identity: crate::leader::identity(args.instance.as_deref(), &hostname(), std::process::id()),
        duration: args.lease_duration,
    };
    let gate = crate::leader::gate(
        args.leader_elect,
        kube_config,
        lease,
        &health,
        ctx.metrics.clone(),
        stopped(),
    );
    let Some(election) = gate.await? else {
        return http_task
            .await
            .map_err(|e| RunError::Http(std::io::Error::other(e)))?
            .map_err(RunError::Http);
    };

    let (tokens, token_writer) = reflector::store::<GitLabToken>();
    let token_index = Arc::new(crate::controller::cache::NamespaceIndex::default());
    let (shim_wake_tx, shim_wake_rx) = tokio::sync::mpsc::unbounded_channel();
    let controllers: Vec<BoxFuture<'static, ()>> = vec![
        connection_controller(ctx.clone(), clock_moves.clone(), stopped()).boxed(),
        token_controller(
            ctx.clone(),
            policy_events.boxed(),
            namespace_events.boxed(),
            args.concurrency,
            clock_moves.clone(),
            controllers::TokenCache {
                reader: tokens.clone(),
                writer: token_writer,
                shim_wakes: controllers::ShimWakes(shim_wake_tx),
                index: token_index.clone(),
            },
            stopped(),
        )
        .boxed(),
        shim_controller(
            ctx.clone(),
            (tokens.clone(), token_index),
            shim_wake_rx,
            stopped(),
        )
        .boxed(),
        if ctx.config.argocd_namespace.is_empty() {
            futures::future::ready(()).boxed()
        } else {
            crate::controller::argocd::shim::run(ctx.clone(), stopped()).boxed()
        },
        policy_status_controller(ctx.clone(), stopped()).boxed(),
    ];
    tokio::spawn(sweep::run(ctx.clone(), args.sweep_interval));
    tokio::spawn(crate::controller::delegation_refresh::run(ctx.clone()));
    let readiness = health.clone();
    tokio::spawn(async move {
        // Ready once the caches the decisions depend on have synced.
        if synced(&tokens).await && synced(&policies).await {
            readiness.set_ready(true);
            tracing::info!("caches synced; ready");
        }
    });
    tracing::info!(cluster = %args.cluster_name, namespace = %args.namespace, "operator started");
    futures::future::join_all(controllers).await;
    if let Some(election) = election {
        election.release().await;
    }
    http_task
        .await
        .map_err(|e| RunError::Http(std::io::Error::other(e)))??;
    Ok(())
}

/// Waits until a store has seen its first full list. kube-runtime's readiness signal wakes only
/// the most recent waiter (a oneshot receiver shared by clones), and the controller that owns the
/// store waits on it too, so we re-poll with a short timeout instead of waiting once.
async fn synced<K>(store: &Store<K>) -> bool
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    loop {
        match tokio::time::timeout(Duration::from_millis(200), store.wait_until_ready()).await {
            Ok(result) => return result.is_ok(),
            Err(_) => continue,
        }
    }
}

/// Longest wait at start for the existing connections' first check.
const FIRST_CHECK_WAIT: Duration = Duration::from_secs(30);

/// Waits until the policy cache has synced and every existing `GitLabConnection` has had its
/// first check, passed or failed (bounded by [`FIRST_CHECK_WAIT`]). Without this a
/// restarted operator judged working tokens against empty caches: `ConnectionNotFound` flipped
/// them (and their sources) to not Ready, and an empty policy cache (`NoPolicy`) revoked them.
async fn inputs_ready(ctx: &Context) {
    synced(&ctx.policies).await;
    synced(&ctx.namespaces).await;
    let deadline = tokio::time::Instant::now() + FIRST_CHECK_WAIT;
    while tokio::time::Instant::now() < deadline {
        if ctx.every_connection_checked() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tracing::warn!("not every GitLabConnection was checked in time; serving tokens anyway");
}

/// A reconciler that first waits (once per process) for [`inputs_ready`]. The wait happens inside
/// the reconcile so the controller keeps polling the streams that fill those caches.
fn gated<K, E, F, Fut>(
    reconcile: F,
) -> impl FnMut(Arc<K>, Arc<Context>) -> BoxFuture<'static, Result<Action, E>>
where
    K: Send + Sync + 'static,
    F: Fn(Arc<K>, Arc<Context>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Action, E>> + Send + 'static,
{
    let gate = Arc::new(tokio::sync::OnceCell::<()>::new());
    let reconcile = Arc::new(reconcile);
    move |obj, ctx| {
        let (gate, reconcile) = (gate.clone(), reconcile.clone());
        async move {
            gate.get_or_init(|| inputs_ready(&ctx)).await;
            reconcile(obj, ctx).await
        }
        .boxed()
    }
}

/// The clock, and (test clock only) a receiver that changes whenever time moves.
fn clock_from(args: &RunArgs) -> (Arc<dyn Clock>, Option<watch::Receiver<u64>>) {
    match &args.clock_offset_file {
        None => (Arc::new(SystemClock), None),
        Some(path) => {
            let (tx, rx) = watch::channel(0u64);
            let clock = OffsetClock::new();
            tokio::spawn(
                clock
                    .clone()
                    .follow_file(path.clone(), Duration::from_millis(200), tx),
            );
            (clock, Some(rx))
        }
    }
}

/// A stream that fires whenever the test clock moves (never, on the system clock).
fn on_clock_moves(rx: Option<watch::Receiver<u64>>) -> futures::stream::BoxStream<'static, ()> {
    match rx {
        Some(rx) => tokio_stream::wrappers::WatchStream::from_changes(rx)
            .map(|_| ())
            .boxed(),
        None => futures::stream::pending().boxed(),
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_string())
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "gitlab-token-operator".into())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::RunArgs;

    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        run: RunArgs,
    }

    fn leader_elect(args: &[&str]) -> Result<bool, clap::Error> {
        let argv = std::iter::once("run").chain(args.iter().copied());
        Cmd::try_parse_from(argv).map(|c| c.run.leader_elect)
    }

    #[test]
    fn leader_election_is_on_unless_switched_off_explicitly() {
        // SAFETY: no other test of this binary reads or writes GTO_LEADER_ELECT.
        assert!(std::env::var_os("GTO_LEADER_ELECT").is_none());
        assert!(leader_elect(&[]).unwrap(), "on by default: one writer");
        assert!(leader_elect(&["--leader-elect"]).unwrap());
        assert!(leader_elect(&["--leader-elect=true"]).unwrap());
        assert!(!leader_elect(&["--leader-elect=false"]).unwrap());
        assert!(!leader_elect(&["--leader-elect=0"]).unwrap());
        assert!(leader_elect(&["--leader-elect=maybe"]).is_err());
    }
}
