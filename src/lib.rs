//! gitlab-token-operator: mints and rotates GitLab project access tokens for Flux sources,
//! under policies set by cluster and GitLab admins (see the README and DESIGN contract).

pub mod cli;
pub mod clock;
pub mod controller;
pub mod crd;
pub mod failpoints;
pub mod gitlab;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod policy;
pub mod reason;
pub mod run;
pub mod schedule;
pub mod secret;
pub mod shim;
pub mod telemetry;
