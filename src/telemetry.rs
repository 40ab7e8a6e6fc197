//! Logging: `tracing` with plain or JSON output, filtered by `RUST_LOG` (default `info`).

use std::io::IsTerminal;

use clap::ValueEnum;
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// Log output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Plain,
    /// One JSON object per line.
    Json,
}

/// Installs the global subscriber; later calls are ignored (tests start several operators).
pub fn init(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,kube_runtime=warn"));
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match format {
        LogFormat::Plain => registry
            .with(fmt::layer().with_target(false).with_ansi(colour_wanted(
                std::io::stdout().is_terminal(),
                std::env::var_os("NO_COLOR").is_some(),
            )))
            .try_init(),
        LogFormat::Json => registry
            .with(fmt::layer().json().flatten_event(true).with_current_span(true))
            .try_init(),
    };
}

/// Whether plain logs carry colour codes: only on a terminal, and never with `NO_COLOR` set
/// (<https://no-color.org>), so logs written to a file or a pipe stay plain text.
pub fn colour_wanted(on_terminal: bool, no_color: bool) -> bool {
    on_terminal && !no_color
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour_wanted(true, false));
        assert!(
            !colour_wanted(false, false),
            "a file or pipe gets no escape codes"
        );
        assert!(!colour_wanted(true, true), "NO_COLOR wins");
        assert!(!colour_wanted(false, true));
    }
}
