//! kubectl driven against the emulator: a kubeconfig and cache directory per test.

use std::process::Command;

/// kubectl with its own kubeconfig and discovery cache.
pub struct Kubectl {
    /// The kubeconfig file.
    pub kubeconfig: std::path::PathBuf,
    /// The discovery/OpenAPI cache directory.
    pub cache: std::path::PathBuf,
}

impl Kubectl {
    /// The command with kubeconfig and cache set.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("kubectl");
        c.env("KUBECONFIG", &self.kubeconfig)
            .arg("--cache-dir")
            .arg(&self.cache)
            .args(args);
        c
    }

    /// Runs and returns stdout; panics on failure.
    pub fn run(&self, args: &[&str]) -> String {
        let out = self.cmd(args).output().expect("run kubectl");
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(
            out.status.success(),
            "kubectl {args:?} failed:\nstdout: {stdout}\nstderr: {stderr}"
        );
        stdout
    }

    /// Runs expecting failure and returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.cmd(args).output().expect("run kubectl");
        assert!(!out.status.success(), "kubectl {args:?} unexpectedly succeeded");
        String::from_utf8_lossy(&out.stderr).to_string()
    }
}
