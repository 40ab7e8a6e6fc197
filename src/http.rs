//! The operator's HTTP endpoints: `/livez`, `/readyz` (ready after the first sync), `/metrics`.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use axum::{Router, extract::State, http::StatusCode, http::header, response::IntoResponse, routing::get};

use crate::metrics::Metrics;

/// Shared state of the health and metrics endpoints.
#[derive(Clone)]
pub struct HealthState {
    ready: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
}

impl HealthState {
    /// Starts not ready.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            ready: Arc::new(AtomicBool::new(false)),
            metrics,
        }
    }

    /// Marks the operator ready (after the first sync of its caches).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// Whether `/readyz` answers 200.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
}

/// The router serving the three endpoints.
pub fn router(state: HealthState) -> Router {
    Router::new()
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn readyz(State(s): State<HealthState>) -> impl IntoResponse {
    if s.is_ready() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready: caches syncing")
    }
}

async fn metrics(State(s): State<HealthState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.render(),
    )
}

/// Binds the health and metrics address (done before anything else, so a taken port stops the
/// process at once).
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

/// What to do when [`bind`] failed, by the kind of failure.
pub fn bind_hint(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::AddrInUse => {
            "another process listens there: is a second gitlab-token-operator running? Stop it or pick another address"
        }
        std::io::ErrorKind::PermissionDenied => {
            "ports below 1024 need privileges; pick a port of 1024 or more"
        }
        std::io::ErrorKind::AddrNotAvailable => {
            "that address is not on this host; use 0.0.0.0:<port> or 127.0.0.1:<port>"
        }
        _ => "pick another address with --metrics-addr (env GTO_METRICS_ADDR)",
    }
}

/// Serves the endpoints on a bound listener until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: HealthState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "serving /livez, /readyz and /metrics");
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
