//! The `gitlab-token-operator` command line (DESIGN §9).
//!
//! - `run`, `crds`: the controller and the CRD YAML;
//! - [`check`]: offline, would a Flux source be served, and why;
//! - [`status`]: a table of `GitLabToken`s from the current kubeconfig;
//! - [`renew`]: ask the operator to renew one token now.
//!
//! Exit codes of `check`, `status` and `renew`: 0 all good, 1 the answer is "no" (denied, not
//! Ready, not found), 2 usage, file or cluster-access errors.

pub mod check;
mod manifests;
pub mod output;
pub mod renew;
pub mod status;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

use crate::{crd, run::RunArgs};

pub use output::OutputFormat;

/// Mints and rotates GitLab project access tokens for Flux sources, under admin policy.
#[derive(Debug, Parser)]
#[command(name = "gitlab-token-operator", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The verbs of the binary.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the controllers (in a cluster, or against the current kubeconfig).
    ///
    /// Example: `gitlab-token-operator run --namespace gitlab-token-operator --cluster-name prod-eu`
    Run(RunArgs),
    /// Print every CustomResourceDefinition as YAML.
    ///
    /// Example: `gitlab-token-operator crds | kubectl apply --server-side -f -`
    Crds {
        /// Write one file per CRD (`<plural>.<group>.yaml`) into this directory instead.
        #[arg(long, value_name = "DIR")]
        split: Option<PathBuf>,
    },
    /// Explain offline whether annotated Flux sources would be served, and which policy decides.
    #[command(after_help = check::AFTER_HELP)]
    Check(check::CheckArgs),
    /// Show every GitLabToken: project, consumers, expiry, renewal time, Ready and reason.
    #[command(after_help = status::AFTER_HELP)]
    Status(status::StatusArgs),
    /// Ask the operator to renew a GitLabToken now (sets gitlabtokens.io/renew-requested-at).
    #[command(after_help = renew::AFTER_HELP)]
    Renew(renew::RenewArgs),
}

/// Exit code for "the answer is no" (denied, not Ready, not found).
pub const EXIT_NO: u8 = 1;
/// Exit code for usage, file and cluster-access errors.
pub const EXIT_USAGE: u8 = 2;

/// Parses the command line and runs it.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => {
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("error: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(crate::run::run(args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Crds { split } => match print_crds(split) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Check(args) => check::main(&args),
        Command::Status(args) => with_runtime(|| status::main(args)),
        Command::Renew(args) => with_runtime(|| renew::main(args)),
    }
}

fn with_runtime<F, Fut>(f: F) -> ExitCode
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ExitCode>,
{
    match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt.block_on(f()),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// Why the CLI could not talk to the cluster, phrased as what to do.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// No usable kubeconfig or in-cluster config.
    #[error("no kubeconfig: set KUBECONFIG (or create ~/.kube/config), or run inside a cluster ({0})")]
    NoConfig(String),
    /// The API server could not be reached or answered with an error.
    #[error("{0}")]
    Api(String),
}

/// A client for the current kubeconfig (KUBECONFIG, ~/.kube/config, or in-cluster).
pub async fn client() -> Result<kube::Client, ClusterError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    kube::Client::try_default().await.map_err(|e| match e {
        kube::Error::InferConfig(c) => ClusterError::NoConfig(c.to_string()),
        other => ClusterError::Api(format!("cannot build a Kubernetes client: {other}")),
    })
}

/// Explains a failed API call with what to do about it.
pub fn explain_api_error(e: &kube::Error, what: &str) -> String {
    match e {
        kube::Error::Api(s)
            if s.code == 404
                && s.reason == "NotFound"
                && s.message
                    .contains("the server could not find the requested resource") =>
        {
            format!(
                "{what}: the GitLabToken CRD is not installed; install it with `gitlab-token-operator crds | kubectl apply --server-side -f -`"
            )
        }
        kube::Error::Api(s) if s.code == 401 => {
            format!(
                "{what}: the API server does not accept your credentials ({}); refresh your kubeconfig",
                s.message
            )
        }
        kube::Error::Api(s) if s.code == 403 => format!(
            "{what}: forbidden ({}); ask an admin for RBAC on gitlabtokens.gitlabtokens.io",
            s.message
        ),
        kube::Error::Api(s) => format!(
            "{what}: the API server answered {} {}: {}",
            s.code, s.reason, s.message
        ),
        kube::Error::HyperError(_) | kube::Error::Service(_) => format!(
            "{what}: cannot reach the API server ({e}); check the cluster in your kubeconfig (`kubectl cluster-info`)"
        ),
        other => format!("{what}: {other}"),
    }
}

fn print_crds(split: Option<PathBuf>) -> Result<(), Box<dyn std::error::Error>> {
    let crds = crd::all_crds();
    match split {
        None => print!("{}", crd::crds_to_yaml(&crds)?),
        Some(dir) => {
            std::fs::create_dir_all(&dir)?;
            for c in &crds {
                let name = c.metadata.name.as_deref().unwrap_or("unnamed");
                std::fs::write(
                    dir.join(format!("{name}.yaml")),
                    crd::crds_to_yaml(std::slice::from_ref(c))?,
                )?;
            }
        }
    }
    Ok(())
}
