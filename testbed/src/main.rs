//! `testbed`: the test world for gitlab-token-operator.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use testbed::{
    argocd::ArgoCdConfig,
    sandbox::SandboxOptions,
    scale::ScaleOptions,
    world::{World, WorldConfig},
};

/// The test world: a Kubernetes API server emulator, a GitLab emulator with git, registry and
/// Helm endpoints, a Flux source-controller stand-in and an Argo CD stand-in.
#[derive(Parser)]
#[command(name = "testbed", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the test world and run until SIGINT/SIGTERM.
    ///
    /// Writes DIR/kubeconfig (admin) and DIR/env (KUBECONFIG, GITLAB_URL, GITLAB_TOKEN,
    /// REGISTRY_HOST, TESTBED_CONTROL_URL, TESTBED_CLOCK_OFFSET_FILE), then prints one line.
    ///
    /// Example: `testbed up --state-dir .state & source .state/env; kubectl get ns`
    Up {
        /// Directory for state files and data.
        #[arg(long, default_value = ".state")]
        state_dir: PathBuf,
        /// Do not seed GitLab with the default groups, projects and content.
        #[arg(long)]
        no_seed: bool,
        /// Do not run the Flux stand-in.
        #[arg(long)]
        no_flux: bool,
        /// Do not run the Argo CD stand-in (it starts once the Argo CD CRDs are installed).
        #[arg(long)]
        no_argocd: bool,
        /// Argo CD's namespace: repository Secrets and AppProjects are read there.
        #[arg(long, default_value = "argocd")]
        argocd_namespace: String,
        /// Other namespaces whose Applications the Argo CD stand-in reconciles
        /// (`application.namespaces`; comma-separated shell globs, e.g. `team-*`).
        #[arg(long, value_delimiter = ',')]
        argocd_application_namespaces: Vec<String>,
        /// Seconds between the Argo CD stand-in's periodic refreshes (`timeout.reconciliation`).
        #[arg(long, default_value_t = 120)]
        argocd_refresh_secs: u64,
    },
    /// The guided demo: the test world plus the real operator binary, every kind of annotated
    /// Flux source (one denied by policy), a live view of tokens, Secrets, renewal and
    /// revocation, and a summary. Exits 0 only if every step it showed happened.
    ///
    /// Example: `cargo build --bins && cargo run -p testbed -- sandbox`
    Sandbox {
        /// Directory for state files, data and the operator's log (default: a temporary one,
        /// kept only when a step fails).
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// The operator binary (default: $GTO_OPERATOR_BIN, else `gitlab-token-operator` next to
        /// this executable).
        #[arg(long)]
        operator_bin: Option<PathBuf>,
        /// Directory with the operator's CRDs.
        #[arg(long)]
        crds_dir: Option<PathBuf>,
        /// Deadline in seconds of every single wait.
        #[arg(long, default_value_t = 30)]
        wait_secs: u64,
    },
    /// The scale benchmark (issue 10): the test world (Flux stand-in off) and the real operator,
    /// N annotated GitRepositories over N/10 namespaces; prints each figure beside its target.
    ///
    /// Example: `cargo build --release --bins && target/release/testbed scale --sources 1000
    /// --projects 100 --throttle --json bench.json` (or `make bench`)
    Scale {
        /// Annotated sources (GitRepositories), 10 per namespace.
        #[arg(long, default_value_t = 1000)]
        sources: usize,
        /// GitLab projects the sources spread over.
        #[arg(long, default_value_t = 100)]
        projects: usize,
        /// Idle period after all are Ready (steady state); 0 skips it.
        #[arg(long, default_value_t = 30)]
        idle_seconds: u64,
        /// Observation window after a restart; 0 skips the restart.
        #[arg(long, default_value_t = 60)]
        restart_seconds: u64,
        /// Skip the policy edit.
        #[arg(long)]
        no_policy_edit: bool,
        /// Issue a second batch with GitLab throttled to this many requests a minute
        /// (GitLab.com's authenticated-user limit, 2,000, when given without a value).
        #[arg(long, num_args = 0..=1, default_missing_value = "2000", value_name = "PER_MINUTE")]
        throttle: Option<u32>,
        /// The connection's rate budget (`spec.rateLimit`), requests per second with a burst of
        /// as many; default: the operator's own default (GitLab.com's limits). Raise it to
        /// measure the operator rather than the budget.
        #[arg(long, value_name = "PER_SECOND")]
        rate_limit: Option<u32>,
        /// Also write the report as JSON to this file.
        #[arg(long, value_name = "PATH")]
        json: Option<PathBuf>,
        /// The operator binary (default: $GTO_OPERATOR_BIN, else beside this executable).
        #[arg(long)]
        operator_bin: Option<PathBuf>,
        /// Directory for state and the operator's log (default: a temporary one, removed).
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// Deadline in seconds of every phase.
        #[arg(long, default_value_t = 1800)]
        timeout_secs: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Scale {
            sources,
            projects,
            idle_seconds,
            restart_seconds,
            no_policy_edit,
            throttle,
            rate_limit,
            json,
            operator_bin,
            state_dir,
            timeout_secs,
        } => {
            let bin = match testbed::sandbox::operator::locate(operator_bin) {
                Ok(b) => b,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let temp = match &state_dir {
                Some(_) => None,
                None => match tempfile::Builder::new().prefix("testbed-scale-").tempdir() {
                    Ok(t) => Some(t),
                    Err(e) => {
                        eprintln!("error: temporary directory: {e}");
                        return ExitCode::from(2);
                    }
                },
            };
            let dir = state_dir
                .unwrap_or_else(|| temp.as_ref().map(|t| t.path().to_path_buf()).unwrap_or_default());
            let mut options = ScaleOptions::new(bin, dir, sources.max(1), projects.max(1));
            options.idle = std::time::Duration::from_secs(idle_seconds);
            options.restart_window = std::time::Duration::from_secs(restart_seconds);
            options.policy_edit = !no_policy_edit;
            options.throttle = throttle;
            options.rate_limit = rate_limit;
            options.timeout = std::time::Duration::from_secs(timeout_secs.max(1));
            let outcome = runtime.block_on(async {
                tokio::select! {
                    r = testbed::scale::run(options) => Some(r),
                    _ = wait_for_signal() => None,
                }
            });
            match outcome {
                Some(Ok(report)) => {
                    print!("{}", report.table());
                    if let Some(path) = json {
                        let text = serde_json::to_string_pretty(&report).unwrap_or_default();
                        if let Err(e) = std::fs::write(&path, text) {
                            eprintln!("error: writing {}: {e}", path.display());
                            return ExitCode::FAILURE;
                        }
                    }
                    ExitCode::SUCCESS
                }
                Some(Err(e)) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
                None => {
                    eprintln!("testbed scale: interrupted");
                    ExitCode::from(130)
                }
            }
        }
        Command::Up {
            state_dir,
            no_seed,
            no_flux,
            no_argocd,
            argocd_namespace,
            argocd_application_namespaces,
            argocd_refresh_secs,
        } => {
            let argocd = (!no_argocd).then(|| ArgoCdConfig {
                namespace: argocd_namespace,
                application_namespaces: argocd_application_namespaces,
                refresh_interval: std::time::Duration::from_secs(argocd_refresh_secs),
                ..ArgoCdConfig::default()
            });
            runtime.block_on(up(state_dir, !no_seed, !no_flux, argocd))
        }
        Command::Sandbox {
            state_dir,
            operator_bin,
            crds_dir,
            wait_secs,
        } => {
            let defaults = SandboxOptions::default();
            let options = SandboxOptions {
                state_dir,
                operator_bin,
                crds_dir: crds_dir.unwrap_or(defaults.crds_dir.clone()),
                wait: std::time::Duration::from_secs(wait_secs.max(1)),
                ..defaults
            };
            // On SIGINT/SIGTERM the run is dropped, which kills the operator child and stops the world.
            let outcome = runtime.block_on(async {
                tokio::select! {
                    r = testbed::sandbox::run(options) => Some(r),
                    _ = wait_for_signal() => None,
                }
            });
            match outcome {
                Some(Ok(true)) => ExitCode::SUCCESS,
                Some(Ok(false)) => ExitCode::FAILURE,
                Some(Err(e)) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
                None => {
                    eprintln!("testbed sandbox: interrupted");
                    ExitCode::from(130)
                }
            }
        }
    }
}

async fn up(state_dir: PathBuf, seed: bool, flux: bool, argocd: Option<ArgoCdConfig>) -> ExitCode {
    let mut config = WorldConfig::new(state_dir);
    config.seed = seed;
    config.flux = flux;
    config.argocd = argocd;
    let world = match World::start(config).await {
        Ok(w) => w,
        Err(e) => {
            eprintln!("error: the test world did not start: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "testbed ready: kubernetes {} gitlab {} registry {} (source {}/env)",
        world.kube.url(),
        world.gitlab_url(),
        world.registry_host(),
        world.state_dir().display()
    );
    wait_for_signal().await;
    eprintln!("testbed: stopping");
    world.stop().await;
    ExitCode::SUCCESS
}

async fn wait_for_signal() {
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
