//! Test world for gitlab-token-operator: emulators that speak the real wire protocols so that the
//! real operator binary, kube-rs, kubectl, git and skopeo run against them unchanged.

pub mod gitlab;
pub mod kube;
