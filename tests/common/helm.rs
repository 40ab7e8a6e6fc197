//! Finding helm for the tests that render the chart: `$HELM`, else
//! `<repo>/.tools/node_modules/.bin/helm` (where `make deps` installs it), else `PATH`. A test
//! that needs helm fails (never skips) when it is missing.

use std::path::PathBuf;

/// The helm binary.
pub fn helm() -> PathBuf {
    if let Some(h) = std::env::var_os("HELM").filter(|h| !h.is_empty()) {
        return PathBuf::from(h);
    }
    let tools = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/node_modules/.bin/helm");
    if tools.is_file() {
        return tools;
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join("helm"))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| panic!("helm not found (set HELM, or run `make deps` to install it into .tools/)"))
}
