//! Revoking: each ledger entry in `revoking` until GitLab confirms it dead, every token on
//! deletion (the finalizer's cleanup), and checking with GitLab that the current one is alive.

use std::sync::Arc;

use kube::{Api, ResourceExt, runtime::controller::Action};

use super::{
    TokenError,
    decide::Liveness,
    ledger,
    observe::Resolved,
    status::{self as st, end_history, token_labels},
};
use crate::{
    controller::{
        context::Context,
        handover::{self, HANDOVER_CONFIGMAP, HandedOver},
    },
    crd::{DeletionPolicy, GitLabToken, GitLabTokenStatus},
    gitlab::{GitLabApi, GitLabError},
    reason::Reason,
};

/// Revokes one credential at its own location (kind and project or group); 404 (already gone)
/// counts as done.
pub async fn revoke_token(
    api: &dyn GitLabApi,
    at: &ledger::Location,
    token_id: u64,
) -> Result<(), TokenError> {
    match api.revoke_credential(at.kind, at.owner(), token_id).await {
        Ok(_) | Err(GitLabError::NotFound { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Tries the revocation at `index` of `revoking` through the token's own connection and project.
/// Confirmed (revoked or 404): the entry leaves the ledger. Failed: it stays, with the error and
/// the next attempt (exponential backoff with jitter); the status is written either way.
pub async fn revoke_entry(
    token: &GitLabToken,
    ctx: &Context,
    status: &mut GitLabTokenStatus,
    index: usize,
) -> Result<(), TokenError> {
    let Some(entry) = status.revoking.get(index).cloned() else {
        return Ok(());
    };
    let now = ctx.now();
    let outcome = match ctx.connections.get(&entry.connection) {
        Some(conn) => {
            revoke_token(
                conn.api.as_ref(),
                &ledger::revoking_location(&entry),
                entry.token_id,
            )
            .await
        }
        None => Err(TokenError::CleanupBlocked(format!(
            "GitLabConnection {} is not available",
            entry.connection
        ))),
    };
    match outcome {
        Ok(()) => {
            crate::crash_point!("revoke.after_gitlab");
            status.revoking.remove(index);
            end_history(status, entry.token_id, now, &entry.reason);
            st::write(ctx, token, status).await?;
            ctx.metrics.revoked(&entry.reason);
            let at = ledger::revoking_location(&entry);
            let message = format!(
                "revoked {} {} on {} ({})",
                at.kind,
                entry.token_id,
                at.owner(),
                entry.reason
            );
            tracing::info!(namespace = %token.namespace().unwrap_or_default(), name = %token.name_any(), "{message}");
            ctx.event(token, false, Reason::Revoked.as_str(), "Revoke", message)
                .await;
            Ok(())
        }
        Err(e) => {
            let jitter = (crate::schedule::mix(
                crate::schedule::seed_from(&token.uid().unwrap_or_default()) ^ u64::from(entry.attempts),
            ) % 1000) as f64
                / 1000.0;
            if let Some(r) = status.revoking.get_mut(index) {
                ledger::revocation_failed(r, &e.to_string(), now, jitter);
            }
            tracing::warn!(token_id = entry.token_id, error = %e, "revocation failed; retrying with backoff");
            st::write(ctx, token, status).await?;
            Ok(())
        }
    }
}

/// Asks GitLab whether the current token is still active (on its own project), through the
/// per-project listing shared by every token there; `now_please` (a consumer was refused) skips
/// the shared listing and asks afresh.
pub async fn verify(
    token: &GitLabToken,
    ctx: &Context,
    resolved: &Resolved,
    status: &mut GitLabTokenStatus,
    now_please: bool,
) -> Result<Liveness, TokenError> {
    let Some(current) = status.current.as_mut() else {
        return Ok(Liveness::Dead);
    };
    let at = ledger::current_location(current).unwrap_or_else(|| {
        ledger::Location::project_token(resolved.connection.name.clone(), resolved.project.id)
    });
    let max_age = if now_please {
        chrono::TimeDelta::zero()
    } else {
        chrono::TimeDelta::from_std(ctx.config.verify_interval).unwrap_or(crate::schedule::VERIFY_INTERVAL)
    };
    let alive = match ctx
        .liveness
        .is_active(
            resolved.connection.api.as_ref(),
            &at,
            current.token_id,
            current.created_at,
            ctx.now(),
            max_age,
        )
        .await
    {
        Ok(alive) => alive,
        Err(GitLabError::NotFound { .. }) => false,
        Err(e) => return Err(e.into()),
    };
    if alive {
        current.last_verified = Some(ctx.now());
        return Ok(Liveness::Active);
    }
    let message = format!(
        "GitLab reports token {} revoked or expired; issuing a new one",
        current.token_id
    );
    ctx.event(
        token,
        true,
        Reason::TokenRevokedExternally.as_str(),
        "Verify",
        message,
    )
    .await;
    Ok(Liveness::Dead)
}

/// Whether deletion may leave the tokens alive: `deletionPolicy: Retain` and the policy that
/// allowed the token permits it (`allowRetain`). A tenant alone cannot keep a live token.
fn retain_allowed(token: &GitLabToken, status: &GitLabTokenStatus, ctx: &Context) -> bool {
    token.spec.deletion_policy == DeletionPolicy::Retain
        && status.policy.as_deref().is_some_and(|name| {
            ctx.policies
                .state()
                .iter()
                .any(|p| p.name_any() == name && p.spec.allow_retain)
        })
}

/// The Cleanup half of the finalizer: every token in the ledger is revoked (unless retained as
/// allowed), and the finalizer is released only once GitLab has confirmed each one dead. When
/// the connection is gone for good, the leftovers are handed to the orphan sweep
/// (`HandedToSweep`, [`handover`]) before the finalizer is released.
pub async fn cleanup(cached: Arc<GitLabToken>, ctx: &Context) -> Result<Action, TokenError> {
    let api: Api<GitLabToken> = Api::namespaced(ctx.client.clone(), &cached.namespace().unwrap_or_default());
    let token = match api.get_opt(&cached.name_any()).await? {
        Some(t) => Arc::new(t),
        None => cached,
    };
    let uid = token.uid().unwrap_or_default();
    ctx.set_fence(&uid, token.resource_version());
    let mut status = token.status.clone().unwrap_or_default();
    ledger::backfill_locations(&mut status);
    let now = ctx.now();
    if retain_allowed(&token, &status, ctx) {
        tracing::info!(namespace = %token.namespace().unwrap_or_default(), name = %token.name_any(), "deleted with deletionPolicy Retain; tokens left to expire");
    } else {
        if status.pending.is_some() {
            // A mint may have been in flight: resolve it on its project before letting go.
            revoke_pending_leftovers(&token, ctx, &mut status).await?;
        }
        ledger::retire_all(&mut status, "Deleted", now);
        let mut blocked = Vec::new();
        for i in (0..status.revoking.len()).rev() {
            let entry = status.revoking[i].clone();
            if ctx.connections.get(&entry.connection).is_none()
                && connection_gone(ctx, &entry.connection).await?
            {
                blocked.push(entry);
                continue;
            }
            revoke_entry(&token, ctx, &mut status, i).await?;
        }
        if !blocked.is_empty() {
            let ids: Vec<String> = blocked
                .iter()
                .map(|b| format!("{} (project {})", b.token_id, b.project_id))
                .collect();
            // Durable before the ledger lets go: the sweep takes over from here.
            let owner = format!("{}/{}", token.namespace().unwrap_or_default(), token.name_any());
            let handed: Vec<HandedOver> = blocked
                .iter()
                .map(|b| HandedOver::new(ledger::revoking_location(b), b.token_id, &uid, &owner, now))
                .collect();
            handover::hand_over(ctx, &handed).await?;
            ctx.event(
                token.as_ref(),
                true,
                Reason::HandedToSweep.as_str(),
                "Revoke",
                format!(
                    "GitLabConnection {} is gone, so token(s) {} cannot be revoked here; handed to the orphan sweep \
                     (ConfigMap {}/{}): any GitLabConnection that reaches their GitLab revokes them, otherwise \
                     they die at their GitLab expiry",
                    blocked[0].connection,
                    ids.join(", "),
                    ctx.config.namespace,
                    HANDOVER_CONFIGMAP
                ),
            )
            .await;
            status
                .revoking
                .retain(|r| !blocked.iter().any(|b| b.token_id == r.token_id));
        }
        if !status.revoking.is_empty() {
            return Err(TokenError::CleanupBlocked(format!(
                "{} token(s) not yet confirmed revoked by GitLab",
                status.revoking.len()
            )));
        }
        crate::crash_point!("cleanup.after_revoke");
    }
    ctx.metrics.forget_token(&token_labels(&token, &status));
    ctx.set_fence(&uid, None);
    ctx.forget_unstored(&uid);
    Ok(Action::await_change())
}

/// Whether a connection no longer exists at all (not merely not ready).
async fn connection_gone(ctx: &Context, name: &str) -> Result<bool, TokenError> {
    Ok(Api::<crate::crd::GitLabConnection>::all(ctx.client.clone())
        .get_opt(name)
        .await?
        .is_none())
}

/// Revokes anything minted under the pending name that the ledger does not hold, then clears
/// `pending` (fenced: another process minting right now makes this write fail and retry).
async fn revoke_pending_leftovers(
    token: &GitLabToken,
    ctx: &Context,
    status: &mut GitLabTokenStatus,
) -> Result<(), TokenError> {
    let Some(pending) = status.pending.clone() else {
        return Ok(());
    };
    let (Some(connection), Some(project_id)) = (pending.connection.as_deref(), pending.project_id) else {
        status.pending = None;
        return Ok(());
    };
    let Some(conn) = ctx.connections.get(connection) else {
        if connection_gone(ctx, connection).await? {
            status.pending = None;
            return Ok(());
        }
        return Err(TokenError::CleanupBlocked(format!(
            "GitLabConnection {connection} is not available to resolve a token being minted"
        )));
    };
    // Stop any other process from recording a mint, then look.
    st::write(ctx, token, status).await?;
    let keep = ledger::token_ids(status);
    let at = ledger::Location {
        connection: connection.to_string(),
        project_id,
        kind: pending.kind,
        group_id: pending.group_id,
    };
    for t in conn.api.list_active_credentials(at.kind, at.owner()).await? {
        if t.name == pending.token_name && t.active && !keep.contains(&t.id) {
            revoke_token(conn.api.as_ref(), &at, t.id).await?;
            ctx.metrics.revoked("Deleted");
            tracing::info!(token_id = t.id, namespace = %token.namespace().unwrap_or_default(), "revoked an in-flight token on deletion");
        }
    }
    status.pending = None;
    st::write(ctx, token, status).await?;
    Ok(())
}
