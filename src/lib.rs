//! gitlab-token-operator: mints and rotates GitLab project access tokens for Flux sources,
//! under policies set by cluster and GitLab admins (see the README and DESIGN contract).

pub mod cli;
pub mod crd;
pub mod policy;
pub mod reason;
pub mod schedule;
pub mod secret;
pub mod shim;
