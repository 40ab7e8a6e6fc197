//! Controllers: one module per concern.

pub mod argocd;
pub mod cache;
pub mod conditions;
pub mod connection;
pub mod connection_cleanup;
mod connection_error;
pub mod consumer_watch;
pub mod consumers;
pub mod context;
pub mod delegation;
pub mod delegation_cache;
pub mod delegation_refresh;
pub mod handover;
pub mod host_key_pin;
pub mod policy;
pub mod policy_file;
pub mod reach;
pub mod secret_view;
pub mod self_rotation;
pub mod shim;
pub mod sweep;
pub mod token;
