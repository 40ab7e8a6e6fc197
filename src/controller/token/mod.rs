//! The `GitLabToken` controller: issue, renew, rotate and revoke (DESIGN §6).
//!
//! Pipeline per reconcile: [`observe`] (connection, project, policy, Secret, consumers) →
//! [`decide::next_step`] (pure) → [`act`] (one idempotent step, status written before and after
//! every irreversible GitLab call) → repeat until the decision is to wait. Deletion revokes
//! through the `gitlabtokens.io/revoke` finalizer using the connection's credentials, which live
//! in the operator's namespace, so it works while a tenant namespace is torn down.

pub mod act;
pub mod argocd;
pub mod decide;
pub mod issue;
pub mod kinds;
pub mod ledger;
pub mod liveness;
pub mod observe;
pub mod revoke;
pub mod rotate;
pub mod status;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use kube::{
    Api, ResourceExt,
    runtime::{
        controller::Action,
        finalizer::{Error as FinalizerError, Event, finalizer},
    },
};
use tracing::Instrument;

use super::context::Context;
use crate::{
    crd::{FINALIZER, GitLabToken},
    gitlab::GitLabError,
};

/// Why a reconcile failed (it is retried with backoff).
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The Kubernetes API failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// GitLab failed in a way worth retrying.
    #[error("GitLab: {0}")]
    GitLab(#[from] GitLabError),
    /// The Secret could not be written after the token was minted.
    #[error("could not write Secret {0}: {1}")]
    SecretWrite(String, String),
    /// The Secret exists and is not this `GitLabToken`'s: never written to.
    #[error("Secret {0} exists and was not created by the operator for this GitLabToken")]
    SecretNotOwned(String),
    /// The finalizer machinery failed.
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<FinalizerError<TokenError>>),
    /// Cleanup cannot revoke yet (connection not ready).
    #[error("cannot revoke yet: {0}")]
    CleanupBlocked(String),
}

impl TokenError {
    /// Static PascalCase label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Kube(_) => "KubernetesError",
            Self::GitLab(e) => e.reason(),
            Self::SecretWrite(..) => "SecretWriteFailed",
            Self::SecretNotOwned(_) => "SecretNotOwned",
            Self::Finalizer(_) => "FinalizerError",
            Self::CleanupBlocked(_) => "CleanupBlocked",
        }
    }
}

/// Reconciles one `GitLabToken`.
pub async fn reconcile(token: Arc<GitLabToken>, ctx: Arc<Context>) -> Result<Action, TokenError> {
    let started = Instant::now();
    let namespace = token.namespace().unwrap_or_default();
    let uid = token.uid().unwrap_or_default();
    let api: Api<GitLabToken> = Api::namespaced(ctx.client.clone(), &namespace);
    let span = tracing::info_span!("reconcile", namespace = %namespace, name = %token.name_any());
    let result = finalizer(&api, FINALIZER, token, |event| async {
        match event {
            Event::Apply(t) => act::apply(t, &ctx).await,
            Event::Cleanup(t) => revoke::cleanup(t, &ctx).await,
        }
    })
    .instrument(span)
    .await
    .map_err(|e| match e {
        FinalizerError::ApplyFailed(inner) | FinalizerError::CleanupFailed(inner) => inner,
        other => TokenError::Finalizer(Box::new(other)),
    });
    let label = match &result {
        Ok(_) => "success",
        Err(e) => e.reason(),
    };
    let conflict = matches!(&result, Err(TokenError::Kube(kube::Error::Api(s))) if s.code == 409);
    ctx.note_outcome(&uid, result.is_err() && !conflict);
    ctx.metrics
        .reconciled("token", label, started.elapsed().as_secs_f64());
    result
}

/// Backoff after a failed reconcile: exponential with jitter, and never sooner than GitLab's
/// `Retry-After`.
pub fn error_policy(token: Arc<GitLabToken>, error: &TokenError, ctx: Arc<Context>) -> Action {
    tracing::warn!(reason = error.reason(), error = %error, "token reconcile failed");
    let uid = token.uid().unwrap_or_default();
    let delay = match error {
        // Another writer moved the object on (fencing): re-read soon, it is not a failure to back off from.
        TokenError::Kube(kube::Error::Api(s)) if s.code == 409 => CONFLICT_RETRY,
        TokenError::GitLab(e) => retry_delay(&uid, ctx.failures(&uid), e),
        _ => backoff(&uid, ctx.failures(&uid)),
    };
    Action::requeue(delay)
}

/// Retry after a fenced status write met a newer object.
const CONFLICT_RETRY: Duration = Duration::from_secs(1);
/// First retry after a failure.
const RETRY_BASE: Duration = Duration::from_secs(5);
/// Longest wait between retries.
const RETRY_MAX: Duration = Duration::from_secs(300);

/// `RETRY_BASE · 2^(failures-1)`, capped at `RETRY_MAX`, plus up to 20 % jitter fixed per object
/// and attempt (so the condition's "next try" and the requeue agree).
pub fn backoff(uid: &str, failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    let raw = RETRY_BASE.saturating_mul(2u32.pow(exp)).min(RETRY_MAX);
    let jitter =
        (crate::schedule::mix(crate::schedule::seed_from(uid) ^ u64::from(failures)) % 1000) as f64 / 1000.0;
    raw + raw.mul_f64(0.2 * jitter)
}

/// The backoff for a GitLab failure: never sooner than the `Retry-After` GitLab sent.
pub fn retry_delay(uid: &str, failures: u32, error: &GitLabError) -> Duration {
    let base = backoff(uid, failures);
    match error {
        GitLabError::RateLimited { retry_after, .. } => base.max(retry_after.unwrap_or_default()),
        _ => base,
    }
}
