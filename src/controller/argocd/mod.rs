//! Argo CD as a consumer (issue 13): annotated `Application`s get project-scoped repository
//! Secrets in Argo CD's namespace ([`shim`]), and rotations wait for Applications to use the new
//! credential ([`consumer`]).

pub mod api_presence;
pub mod consumer;
pub mod shim;
pub mod templates;
pub mod tokens;
pub mod watch;
