//! Test world for gitlab-token-operator: emulators that speak the real wire protocols so that the
//! real operator binary, kube-rs, kubectl, git and skopeo run against them unchanged.

pub mod argocd;
pub mod flux;
pub mod gitlab;
pub mod kube;
pub mod sandbox;
pub mod scale;
pub mod world;

/// Installs rustls' ring provider for this process (idempotent). reqwest is built without a
/// provider of its own, so every binary and test that makes HTTP clients calls this first.
pub fn init_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
