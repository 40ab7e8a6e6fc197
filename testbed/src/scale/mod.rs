//! `testbed scale`: the benchmark of issue 10. Starts the test world (Flux stand-in off) and the
//! real operator binary, creates N annotated GitRepositories over N/10 namespaces reading a
//! number of GitLab projects, and measures: time to all Ready and tokens/s, GitLab calls per
//! token by endpoint, the operator's Kubernetes requests per token by verb and resource, its
//! peak RSS and CPU, an idle period, a policy edit touching every token, a restart, and a second
//! batch with GitLab throttled. Every wait has a deadline; a phase that does not finish in time
//! is reported as such, never hidden.

pub mod measure;
pub mod report;
pub mod setup;

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use crate::{
    gitlab::traffic::RateLimitConfig,
    sandbox::{
        SandboxError,
        operator::{OperatorArgs, OperatorProcess},
        setup::{CONNECTION, OPERATOR_NS, connection_resource, install_all_crds, is_ready},
    },
    world::{World, WorldConfig, fixtures_dir},
};
use measure::{ConnectionSampler, Mark, mark, proc_stats, settle, since};
use report::{IssuePhase, PolicyEditPhase, Report, RestartPhase, WindowPhase};

/// Sizes and phases of one run.
#[derive(Debug, Clone)]
pub struct ScaleOptions {
    /// The operator binary.
    pub operator_bin: PathBuf,
    /// Our CRDs.
    pub crds_dir: PathBuf,
    /// Flux's CRDs.
    pub flux_crds_dir: PathBuf,
    /// State directory (world data, operator log).
    pub state_dir: PathBuf,
    /// Annotated sources per batch.
    pub sources: usize,
    /// GitLab projects they spread over.
    pub projects: usize,
    /// Idle period after issuing (0: skip the steady-state phase).
    pub idle: Duration,
    /// Observation window after a restart (zero: skip the restart phase).
    pub restart_window: Duration,
    /// Edit the policy and wait for the operator to go quiet.
    pub policy_edit: bool,
    /// GitLab throttle for a second batch, requests per minute (`None`: skip).
    pub throttle: Option<u32>,
    /// The connection's `spec.rateLimit` (requests per second and burst; `None`: the default).
    pub rate_limit: Option<u32>,
    /// How long any phase may take.
    pub timeout: Duration,
    /// How long without a request counts as quiet.
    pub quiet: Duration,
    /// Print progress to stderr.
    pub progress: bool,
}

/// Why the benchmark could not run (as opposed to a figure missing its target).
#[derive(Debug, thiserror::Error)]
pub enum ScaleError {
    /// The world, the operator or the setup failed.
    #[error("{0}")]
    Setup(String),
    /// Starting the world or the operator failed.
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
}

fn setup_err(e: impl std::fmt::Display) -> ScaleError {
    ScaleError::Setup(e.to_string())
}

/// A world with the admin's objects and the operator running, ready to measure.
struct Bench {
    world: World,
    client: kube::Client,
    options: ScaleOptions,
    operator: Option<OperatorProcess>,
    args: OperatorArgs,
    log_path: PathBuf,
    /// Every GitLabToken, watched (readiness is polled from here).
    tokens: setup::TokenWatch,
}

impl Bench {
    fn say(&self, what: &str) {
        if self.options.progress {
            eprintln!("[scale] {what}");
        }
    }

    async fn start_operator(&mut self) -> Result<f64, ScaleError> {
        let started = Instant::now();
        let mut op = OperatorProcess::start_with(
            &self.options.operator_bin,
            &self.world,
            &self.args,
            &self.log_path,
        )?;
        op.wait_ready(self.options.timeout)
            .await
            .map_err(|e| setup_err(format!("{e} (log {})", self.log_path.display())))?;
        self.operator = Some(op);
        Ok(started.elapsed().as_secs_f64())
    }

    /// Starts counting the operator's connections to the Kubernetes API server.
    fn sample_connections(&self) -> ConnectionSampler {
        let pid = self.operator.as_ref().and_then(|o| o.pid());
        ConnectionSampler::start(pid, self.world.kube.addr().port())
    }

    fn stats(&self) -> measure::ProcStats {
        self.operator
            .as_ref()
            .and_then(|o| o.pid())
            .and_then(proc_stats)
            .unwrap_or_default()
    }

    async fn connection_ready(&self) -> Result<(), ScaleError> {
        let api: kube::Api<kube::api::DynamicObject> =
            kube::Api::all_with(self.client.clone(), &connection_resource());
        let ready = crate::sandbox::checks::eventually(self.options.timeout, || {
            let api = api.clone();
            async move {
                let c = api.get(CONNECTION).await.ok()?;
                let v = serde_json::to_value(c).ok()?;
                is_ready(&v).then_some(())
            }
        })
        .await;
        ready.ok_or_else(|| setup_err("the GitLabConnection did not become Ready"))
    }

    /// Creates a batch and waits until every GitLabToken of it is Ready. With `interrupt`, the
    /// operator gets SIGTERM once a third of the batch is Ready (its queue full of the rest) and
    /// is started again: the batch must still finish with one mint per token.
    async fn issue(
        &mut self,
        batch: &str,
        n: usize,
        throttle: Option<u32>,
        interrupt: bool,
    ) -> Result<IssuePhase, ScaleError> {
        let from: Mark = mark(&self.world);
        let connections = self.sample_connections();
        let started = Instant::now();
        setup::create_sources(
            &self.client,
            &self.world.gitlab_url(),
            batch,
            n,
            self.options.projects,
        )
        .await
        .map_err(setup_err)?;
        self.say(&format!(
            "{n} sources created in {:.1} s",
            started.elapsed().as_secs_f64()
        ));
        let mut last_report = Instant::now();
        let mut sigterm_full_queue = None;
        let (tokens, ready) = loop {
            let (tokens, ready) = self.tokens.readiness(batch);
            if ready >= n || started.elapsed() >= self.options.timeout {
                break (tokens, ready);
            }
            if interrupt && sigterm_full_queue.is_none() && ready >= n / 3 {
                self.say(&format!("SIGTERM with {} of {n} still to issue", n - ready));
                let exited = match self.operator.take() {
                    Some(op) => op.terminate(Duration::from_secs(30)).await,
                    None => None,
                };
                sigterm_full_queue = Some(exited.map(|d| d.as_secs_f64()));
                self.start_operator().await?;
            }
            if last_report.elapsed() >= Duration::from_secs(10) {
                self.say(&format!(
                    "{:.0} s: {tokens} GitLabTokens, {ready} Ready",
                    started.elapsed().as_secs_f64()
                ));
                last_report = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        let elapsed = started.elapsed().as_secs_f64();
        let traffic = since(&self.world, &from, setup::OPERATOR_USER);
        Ok(IssuePhase {
            kube_connections_peak: connections.finish(),
            sigterm_full_queue,
            ..IssuePhase::new(
                tokens,
                ready,
                elapsed,
                ready >= n,
                traffic,
                self.stats(),
                throttle,
            )
        })
    }

    async fn steady(&self) -> WindowPhase {
        let from = mark(&self.world);
        tokio::time::sleep(self.options.idle).await;
        WindowPhase {
            secs: self.options.idle.as_secs_f64(),
            traffic: since(&self.world, &from, setup::OPERATOR_USER),
        }
    }

    /// Edits the policy so every token is re-evaluated (no decision changes) and, at the same
    /// moment, asks for one token's renewal: how long until the token controller has reconciled
    /// once per token, how long the renewal waited, and the traffic until the operator is quiet.
    async fn policy_edit(&self) -> Result<PolicyEditPhase, ScaleError> {
        let metrics = self
            .operator
            .as_ref()
            .map(|o| o.metrics_addr().to_string())
            .unwrap_or_default();
        let reconciles_before = measure::token_reconciles(&metrics).await.unwrap_or(0);
        let (namespace, name) = setup::some_token(&self.client, "").await.map_err(setup_err)?;
        let old_id = setup::current_token_id(&self.client, &namespace, &name)
            .await
            .map_err(setup_err)?;
        let tokens = self.options.sources as u64;
        let from = mark(&self.world);
        let started = Instant::now();
        // A scope no source asks for: every token is re-evaluated, no decision changes.
        setup::edit_policy(
            &self.client,
            &["read_repository", "read_registry", "read_api", "write_repository"],
        )
        .await
        .map_err(setup_err)?;
        setup::request_renewal(&self.client, &namespace, &name, "scale-policy-edit")
            .await
            .map_err(setup_err)?;
        let (mut reevaluated, mut renewed, mut reconciles) = (None, None, 0);
        while (reevaluated.is_none() || renewed.is_none()) && started.elapsed() < self.options.timeout {
            if reevaluated.is_none() {
                reconciles = measure::token_reconciles(&metrics)
                    .await
                    .unwrap_or(reconciles_before)
                    .saturating_sub(reconciles_before);
                if reconciles >= tokens {
                    reevaluated = Some(started.elapsed().as_secs_f64());
                }
            }
            if renewed.is_none()
                && setup::current_token_id(&self.client, &namespace, &name)
                    .await
                    .map_err(setup_err)?
                    .is_some_and(|id| Some(id) != old_id)
            {
                renewed = Some(started.elapsed().as_secs_f64());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let settled = settle(
            &self.world,
            setup::OPERATOR_USER,
            started,
            self.options.quiet,
            self.options.timeout,
        )
        .await;
        Ok(PolicyEditPhase {
            reevaluated_secs: reevaluated,
            reconciles,
            renewal_secs: renewed,
            settled_secs: settled.map(|d| d.as_secs_f64()),
            traffic: since(&self.world, &from, setup::OPERATOR_USER),
        })
    }

    async fn restart(&mut self) -> Result<RestartPhase, ScaleError> {
        let sigterm = match self.operator.take() {
            Some(op) => op.terminate(Duration::from_secs(30)).await,
            None => None,
        };
        let from = mark(&self.world);
        let started = Instant::now();
        let readyz = self.start_operator().await?;
        let connections = self.sample_connections();
        let window = self.options.restart_window;
        let settled = settle(
            &self.world,
            setup::OPERATOR_USER,
            started,
            self.options.quiet,
            window,
        )
        .await;
        if let Some(rest) = window.checked_sub(started.elapsed()) {
            tokio::time::sleep(rest).await;
        }
        let traffic = since(&self.world, &from, setup::OPERATOR_USER);
        let (_, ready_after) = setup::token_readiness(&self.client, "")
            .await
            .map_err(setup_err)?;
        Ok(RestartPhase {
            sigterm_exit_secs: sigterm.map(|d| d.as_secs_f64()),
            readyz_secs: readyz,
            settled_secs: settled.map(|d| d.as_secs_f64()),
            window_secs: started.elapsed().as_secs_f64(),
            traffic,
            ready_after,
            process: self.stats(),
            kube_connections_peak: connections.finish(),
        })
    }
}

impl Bench {
    /// Restarts the operator and, as soon as it answers `/readyz` (its re-check of every live
    /// token still ahead), creates one new source: seconds until that source's token is Ready
    /// (`None`: not within the phase deadline). A new source must not wait behind the queue.
    async fn late_source(&mut self) -> Result<Option<f64>, ScaleError> {
        if let Some(op) = self.operator.take() {
            op.terminate(Duration::from_secs(30)).await;
        }
        self.start_operator().await?;
        let started = Instant::now();
        setup::create_sources(
            &self.client,
            &self.world.gitlab_url(),
            "late",
            1,
            self.options.projects,
        )
        .await
        .map_err(setup_err)?;
        loop {
            let (_, ready) = self.tokens.readiness("late");
            if ready >= 1 {
                return Ok(Some(started.elapsed().as_secs_f64()));
            }
            if started.elapsed() >= self.options.timeout {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Runs every phase the options ask for and returns the report.
pub async fn run(options: ScaleOptions) -> Result<Report, ScaleError> {
    if let Some(limit) = measure::open_files_limit()
        && limit < (options.sources as u64) * 2
        && options.progress
    {
        eprintln!(
            "[scale] warning: `ulimit -n` is {limit}; raise it for {} sources",
            options.sources
        );
    }
    let mut config = WorldConfig::new(options.state_dir.join("world"));
    config.flux = false;
    let world = World::start(config).await.map_err(setup_err)?;
    setup::seed_projects(&world, options.projects.max(1)).map_err(setup_err)?;
    let client = world.kube.admin_client().await.map_err(setup_err)?;
    install_all_crds(
        &client,
        &options.crds_dir,
        &options.flux_crds_dir,
        &options.state_dir,
    )
    .await
    .map_err(setup_err)?;
    setup::apply_all(
        &client,
        &setup::admin_objects(&world, options.rate_limit).map_err(setup_err)?,
    )
    .await
    .map_err(setup_err)?;
    let kubeconfig = options.state_dir.join("operator-kubeconfig");
    setup::operator_identity(&world, &kubeconfig).map_err(setup_err)?;
    let args = OperatorArgs {
        namespace: OPERATOR_NS.into(),
        cluster_name: "scale".into(),
        kubeconfig,
        rust_log: "info".into(),
        argocd_namespace: None,
    };
    let log_path = options.state_dir.join("operator.log");
    let tokens = setup::TokenWatch::start(&client).await.map_err(setup_err)?;
    let mut bench = Bench {
        world,
        client,
        options,
        operator: None,
        args,
        log_path,
        tokens,
    };
    let result = phases(&mut bench).await;
    if let Some(op) = bench.operator.take() {
        op.stop().await;
    }
    bench.world.stop().await;
    result
}

async fn phases(bench: &mut Bench) -> Result<Report, ScaleError> {
    let o = bench.options.clone();
    bench.start_operator().await?;
    bench.connection_ready().await?;
    bench.say("operator ready, connection Ready; issuing");
    let issue = bench.issue("", o.sources, None, false).await?;
    bench.say(&format!(
        "issue: {} of {} Ready in {:.1} s",
        issue.ready,
        issue.tokens,
        issue.secs.unwrap_or(f64::NAN)
    ));
    let steady = if o.idle.is_zero() {
        None
    } else {
        bench.say(&format!("steady state: {} s idle", o.idle.as_secs()));
        Some(bench.steady().await)
    };
    let policy_edit = if o.policy_edit {
        bench.say("policy edit");
        Some(bench.policy_edit().await?)
    } else {
        None
    };
    let restart = if o.restart_window.is_zero() {
        None
    } else {
        bench.say("restart");
        Some(bench.restart().await?)
    };
    let late_source = if o.restart_window.is_zero() {
        None
    } else {
        bench.say("restart with a source created right after /readyz");
        Some(bench.late_source().await?)
    };
    let interrupted = if o.restart_window.is_zero() {
        None
    } else {
        let n = (o.sources / 10).max(100);
        bench.say(&format!(
            "a batch of {n}, with SIGTERM once a third is Ready, then a restart"
        ));
        Some(bench.issue("q", n, None, true).await?)
    };
    let throttled = match o.throttle {
        Some(limit) => {
            bench.say(&format!("throttled batch: GitLab at {limit} requests a minute"));
            bench.world.gitlab.set_rate_limit(Some(RateLimitConfig {
                limit,
                period_secs: 60,
            }));
            let phase = bench.issue("t", o.sources, Some(limit), false).await;
            bench.world.gitlab.set_rate_limit(None);
            Some(phase?)
        }
        None => None,
    };
    Ok(Report {
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        sources: o.sources,
        projects: o.projects,
        namespaces: o.sources.div_ceil(setup::SOURCES_PER_NAMESPACE),
        rate_limit: o.rate_limit,
        issue,
        steady,
        policy_edit,
        restart,
        late_source_secs: late_source.flatten(),
        interrupted,
        throttled,
    })
}

impl ScaleOptions {
    /// Defaults for `sources` and `projects`: CRDs from the workspace and fixtures, 30 s idle,
    /// a 60 s restart window, the policy edit, no throttled batch.
    pub fn new(operator_bin: PathBuf, state_dir: PathBuf, sources: usize, projects: usize) -> Self {
        Self {
            operator_bin,
            crds_dir: crate::sandbox::workspace_crds_dir(),
            flux_crds_dir: fixtures_dir().join("flux-crds"),
            state_dir,
            sources,
            projects,
            idle: Duration::from_secs(30),
            restart_window: Duration::from_secs(60),
            policy_edit: true,
            throttle: None,
            rate_limit: None,
            timeout: Duration::from_secs(1800),
            quiet: Duration::from_secs(3),
            progress: true,
        }
    }
}
