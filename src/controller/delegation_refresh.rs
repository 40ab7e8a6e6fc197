//! The continuous re-check of delegated access (issue 11): one background task re-asks GitLab
//! for every cached delegation answer once per `--access-recheck-interval`, each on its own slot
//! within the interval, at lower priority than issuing, rotation and revocation (it takes a
//! request only while a quarter of the connection's burst is left), and wakes the tokens that
//! used an answer when GitLab's changed. A change in GitLab therefore reaches its tokens within
//! one interval plus one call and one reconcile, at one GitLab call per answer and interval
//! (see `super::delegation_cache` for what an answer is and how answers are shared).

use std::{sync::Arc, time::Duration};

use futures::{Stream, StreamExt};
use kube::runtime::reflector::ObjectRef;

use super::{connection::LiveConnection, context::Context};
use crate::crd::GitLabToken;

/// The longest the task sleeps between looks (new answers and clock moves are seen by then).
const MAX_NAP: Duration = Duration::from_secs(1);

/// Runs the re-check until the process ends.
pub async fn run(ctx: Arc<Context>) {
    let interval = ctx.config.access_recheck_interval;
    loop {
        let mut soonest = None;
        let connections = ctx.connections.all();
        ctx.delegation.retain_connections(|name| {
            connections.iter().any(|c| c.name == name) || ctx.connections.not_ready_reason(name).is_some()
        });
        for connection in &connections {
            recheck_connection(&ctx, connection, interval).await;
            if let Some(due) = ctx.delegation.next_due(&connection.name, interval) {
                soonest = Some(soonest.map_or(due, |s: chrono::DateTime<chrono::Utc>| s.min(due)));
            }
        }
        let nap = soonest
            .and_then(|due| (due - ctx.now()).to_std().ok())
            .unwrap_or(Duration::ZERO)
            .clamp(Duration::from_millis(20), MAX_NAP);
        tokio::time::sleep(nap).await;
    }
}

/// Re-checks every answer of one connection that is due, one call at a time, each when the
/// connection's budget has room for it.
async fn recheck_connection(ctx: &Context, connection: &LiveConnection, interval: Duration) {
    loop {
        let wait = connection.api.budget().background_wait();
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        let Some(outcome) = ctx
            .delegation
            .refresh_one(&connection.name, connection.api.as_ref(), ctx.now(), interval)
            .await
        else {
            return;
        };
        let answers = ctx.delegation.refreshed_answers(&connection.name);
        let label = match &outcome {
            Ok(r) if r.changed => "changed",
            Ok(_) => "unchanged",
            Err(_) => "failed",
        };
        ctx.metrics.access_rechecked(&connection.name, label, answers);
        match outcome {
            Ok(r) if r.changed => {
                tracing::info!(
                    connection = %connection.name,
                    tokens = r.dependents.len(),
                    "GitLab access changed: re-checking the tokens that depend on it"
                );
                ctx.delegation.wake(r.dependents);
            }
            Ok(_) => {}
            // Kept as it was and tried again later: an outage is never withdrawal.
            Err(e) => {
                tracing::debug!(connection = %connection.name, error = %e, "delegation re-check failed")
            }
        }
    }
}

/// The tokens to reconcile because an answer they used changed, for the token controller
/// (once; later calls get an empty stream).
pub fn token_triggers(ctx: &Context) -> impl Stream<Item = ObjectRef<GitLabToken>> + Send + use<> {
    match ctx.delegation.take_triggers() {
        Some(rx) => tokio_stream::wrappers::UnboundedReceiverStream::new(rx)
            .map(|t| ObjectRef::new(&t.name).within(&t.namespace))
            .boxed(),
        None => futures::stream::empty().boxed(),
    }
}
