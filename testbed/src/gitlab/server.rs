//! Starting the emulator: bind 127.0.0.1:0 first (so fronts can learn the URL), then serve the
//! REST API, the control API and any extra routes behind the traffic layer.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{Router, middleware::from_fn_with_state};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

use super::{
    access::AccessOracle,
    api,
    clock::Clock,
    control,
    middleware::traffic,
    seed::Seeder,
    state::{GitLabState, Settings, TokenRecord},
    traffic::{ArmedFault, CallRecord, FaultRule, RateLimitConfig},
};

/// Emulator configuration.
#[derive(Debug, Clone)]
pub struct GitLabConfig {
    /// Maximum token lifetime in days (365).
    pub max_token_lifetime_days: u32,
    /// Authenticated-API throttle (None = off, GitLab's self-managed default).
    pub rate_limit: Option<RateLimitConfig>,
    /// Latency added to every request.
    pub latency: Option<Duration>,
    /// Version reported by `/version`.
    pub version: String,
    /// Host (and port) of the container registry in image locations; the server's own by default.
    pub registry_host: Option<String>,
    /// Routes merged in when serving (fronts that do not need the URL up front; otherwise pass
    /// them to `BoundGitLab::serve`). They may carry the only fallback.
    pub extra_routes: Option<Router>,
}

impl Default for GitLabConfig {
    fn default() -> Self {
        Self {
            max_token_lifetime_days: 365,
            rate_limit: None,
            latency: None,
            version: "17.11.0".into(),
            registry_host: None,
            extra_routes: None,
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Binding or inspecting the listener failed.
    #[error("cannot bind the GitLab emulator on 127.0.0.1: {0}")]
    Bind(#[from] std::io::Error),
}

/// Entry point.
#[derive(Debug)]
pub struct GitLabServer;

impl GitLabServer {
    /// Binds 127.0.0.1 on a random port and builds the state; call `serve` on the result.
    pub async fn bind(config: GitLabConfig) -> Result<BoundGitLab, ServerError> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let url = format!("http://{addr}");
        let settings = Settings {
            max_token_lifetime_days: config.max_token_lifetime_days,
            rate_limit: config.rate_limit,
            latency: config.latency,
            base_url: url.clone(),
            registry_host: config.registry_host.unwrap_or_else(|| addr.to_string()),
            ssh_host: None,
            version: config.version,
        };
        let state = Arc::new(GitLabState::new(settings, Clock::new()));
        Ok(BoundGitLab {
            listener,
            state,
            url,
            extra_routes: config.extra_routes,
        })
    }

    /// Binds and serves (with `config.extra_routes`, if any).
    pub async fn start(config: GitLabConfig) -> Result<GitLabHandle, ServerError> {
        Ok(Self::bind(config).await?.serve(None))
    }
}

/// A bound but not yet serving emulator.
#[derive(Debug)]
pub struct BoundGitLab {
    listener: TcpListener,
    state: Arc<GitLabState>,
    url: String,
    extra_routes: Option<Router>,
}

impl BoundGitLab {
    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The state.
    pub fn state(&self) -> Arc<GitLabState> {
        self.state.clone()
    }

    /// The state as the fronts see it.
    pub fn oracle(&self) -> Arc<dyn AccessOracle> {
        self.state.clone()
    }

    /// Serves the API, the controls, `config.extra_routes` and `extra` (fronts; one of them may
    /// carry a fallback). Route params under `/api/v4/projects/` must be named `{id}` to merge.
    pub fn serve(self, extra: Option<Router>) -> GitLabHandle {
        let mut router = api::router()
            .merge(control::router())
            .with_state(self.state.clone());
        for extra in [self.extra_routes, extra].into_iter().flatten() {
            router = router.merge(extra);
        }
        let router = router.layer(from_fn_with_state(self.state.clone(), traffic));
        let (tx, rx) = oneshot::channel::<()>();
        let service = router.into_make_service_with_connect_info::<SocketAddr>();
        let listener = self.listener;
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = rx.await;
            };
            if let Err(e) = axum::serve(listener, service)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!(error = %e, "GitLab emulator stopped");
            }
        });
        GitLabHandle {
            url: self.url,
            state: self.state,
            shutdown: Some(tx),
            task: Some(task),
        }
    }
}

/// A running emulator; stops when dropped.
#[derive(Debug)]
pub struct GitLabHandle {
    url: String,
    state: Arc<GitLabState>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl GitLabHandle {
    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The state.
    pub fn state(&self) -> Arc<GitLabState> {
        self.state.clone()
    }

    /// The state as an `AccessOracle`.
    pub fn oracle(&self) -> Arc<dyn AccessOracle> {
        self.state.clone()
    }

    /// The clock (time travel).
    pub fn clock(&self) -> &crate::gitlab::Clock {
        self.state.clock()
    }

    /// A seeder.
    pub fn seed(&self) -> Seeder {
        Seeder::new(self.state.clone())
    }

    /// The API call log.
    pub fn calls(&self) -> Vec<CallRecord> {
        self.state.calls()
    }

    /// Every token with its state, never its value.
    pub fn tokens(&self) -> Vec<TokenRecord> {
        self.state.tokens()
    }

    /// Arms a fault rule (invalid glob → error).
    pub fn add_fault(&self, rule: FaultRule) -> Result<(), globset::Error> {
        self.state.add_fault(ArmedFault::new(rule)?);
        Ok(())
    }

    /// Disarms all faults.
    pub fn clear_faults(&self) {
        self.state.clear_faults();
    }

    /// Enables, changes or (None) disables the throttle; windows restart.
    pub fn set_rate_limit(&self, rate_limit: Option<RateLimitConfig>) {
        self.state.update_settings(|s| s.rate_limit = rate_limit);
        self.state.reset_rate_limits();
    }

    /// Forgets all rate-limit windows.
    pub fn reset_rate_limits(&self) {
        self.state.reset_rate_limits();
    }

    /// Sets latency added to every request.
    pub fn set_latency(&self, latency: Option<Duration>) {
        self.state.update_settings(|s| s.latency = latency);
    }

    /// Sets the registry host (`host:port`) shown in image locations, for a registry on its own port.
    pub fn set_registry_host(&self, host: &str) {
        self.state.update_settings(|s| s.registry_host = host.to_string());
    }

    /// Sets the maximum token lifetime in days.
    pub fn set_max_token_lifetime_days(&self, days: u32) {
        self.state.update_settings(|s| s.max_token_lifetime_days = days);
    }

    /// Stops serving and waits for the server task.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for GitLabHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
