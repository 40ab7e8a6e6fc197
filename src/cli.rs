//! The `gitlab-token-operator` command line (DESIGN §9).

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

use crate::{crd, run::RunArgs};

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
}

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
