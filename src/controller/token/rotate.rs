//! Rotating in place with GitLab's rotate endpoint (DESIGN §6.3 `InPlace`), and recovering a
//! GitLab call that was in flight when the operator stopped.

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, ResourceExt};

use super::{
    TokenError,
    act::{may_have_happened, ready_message},
    issue::{hold_unstored, nudge_all, probe_secret_write, store_new_token},
    ledger,
    observe::Resolved,
    revoke::revoke_token,
    status::{self as st, end_history, push_history, set_issuing, set_ready},
};
use crate::{
    controller::context::Context,
    crd::{CurrentToken, GitLabToken, GitLabTokenStatus, PendingIssue, PendingOperation},
    gitlab::{GitLabApi, GitLabError},
    metrics::StrategyLabels,
    reason::Reason,
    schedule::{expires_at_for, renewal_time, seed_from},
    secret::{TOKEN_ID_ANNOTATION, secret_digest, secret_is_owned_by},
};

/// GitLab's rotate endpoint (DESIGN §6.3 InPlace): dry-run the Secret write first, mark
/// `pending`, rotate (never retried), write the Secret hard, nudge.
pub async fn rotate_in_place(
    token: &GitLabToken,
    ctx: &Context,
    resolved: &Resolved,
    status: &mut GitLabTokenStatus,
) -> Result<(), TokenError> {
    let now = ctx.now();
    let generation = token.metadata.generation;
    let Some(current) = status.current.clone() else {
        return Ok(());
    };
    let api = &resolved.connection.api;
    let Some(at) = ledger::current_location(&current) else {
        return Ok(());
    };
    let project_key = at.project_id.to_string();
    probe_secret_write(token, ctx, resolved, &current.bot_user, now).await?;

    status.pending = Some(PendingIssue {
        token_name: resolved.token_name.clone(),
        kind: at.kind,
        group_id: at.group_id,
        connection: Some(at.connection.clone()),
        project_id: Some(at.project_id),
        instance: Some(ctx.incarnation.clone()),
        operation: PendingOperation::Rotate,
        started_at: now,
        rotating_token_id: Some(current.token_id),
    });
    set_issuing(status, true, "rotating the token in GitLab", generation, now);
    st::write(ctx, token, status).await?;
    crate::crash_point!("inplace.after_pending");
    let expires_at = expires_at_for(now, resolved.allowance.lifetime);
    let new = match api
        .rotate_project_access_token(&project_key, current.token_id, expires_at)
        .await
    {
        Ok(n) => n,
        Err(e) if may_have_happened(&e) => return Err(e.into()),
        Err(e) => {
            status.pending = None;
            set_issuing(status, false, "", generation, now);
            let already_dead = match &e {
                GitLabError::NotFound { .. } => true,
                GitLabError::BadRequest { message } => message.to_lowercase().contains("revoked"),
                _ => false,
            };
            if already_dead {
                // Already revoked or gone: the next step issues a fresh token.
                end_history(status, current.token_id, now, "RevokedExternally");
                status.current = None;
            }
            st::write(ctx, token, status).await?;
            return Err(e.into());
        }
    };
    ctx.metrics.tokens_issued.inc();
    crate::crash_point!("inplace.after_rotate");
    let stored = store_new_token(token, ctx, resolved, &new, Some(&current.bot_user)).await;
    match stored {
        Ok(c) => {
            crate::crash_point!("inplace.after_secret");
            end_history(status, current.token_id, now, "Rotated");
            push_history(status, &c);
            status.renewal_time = Some(renewal_time(
                c.created_at,
                c.expires_at,
                resolved.allowance.renew_before,
                seed_from(&token.uid().unwrap_or_default()),
            ));
            status.current = Some(c);
            status.pending = None;
            super::status::mark_renew_handled(token, status);
            set_issuing(status, false, "", generation, now);
            let message = ready_message(status);
            set_ready(status, true, Reason::Rotated.as_str(), &message, generation, now);
            st::write(ctx, token, status).await?;
            ctx.forget_unstored(&token.uid().unwrap_or_default());
            nudge_all(token, ctx, status, now).await?;
            ctx.metrics
                .tokens_rotated
                .get_or_create(&StrategyLabels {
                    strategy: "InPlace".into(),
                })
                .inc();
            let note = format!("{message} (in place, same bot user)");
            tracing::info!(namespace = %token.namespace().unwrap_or_default(), name = %token.name_any(), "{note}");
            ctx.event(token, false, Reason::Rotated.as_str(), "Rotate", note)
                .await;
            Ok(())
        }
        // The old token died with the rotation and the new one is held: the recovery retries
        // the write (pending stays, so nothing else is minted meanwhile).
        Err(e) => Err(hold_unstored(token, ctx, status, new, e).await),
    }
}

/// Finishes an interrupted GitLab call. A token value this process still holds (its Secret write
/// failed) is written first. Then, on the project the record names: a created token the Secret
/// holds is adopted (the token it replaces keeps its overlap), any other token created under the
/// pending name is revoked, and a rotate is never repeated.
pub async fn recover_pending(
    token: &GitLabToken,
    ctx: &Context,
    resolved: &Resolved,
    status: &mut GitLabTokenStatus,
) -> Result<(), TokenError> {
    let Some(pending) = status.pending.clone() else {
        return Ok(());
    };
    let now = ctx.now();
    let uid = token.uid().unwrap_or_default();
    let connection_name = pending
        .connection
        .clone()
        .unwrap_or_else(|| resolved.connection.name.clone());
    let Some(connection) = ctx.connections.get(&connection_name) else {
        return Err(TokenError::CleanupBlocked(format!(
            "GitLabConnection {connection_name}, through which a token was being minted, is not available"
        )));
    };
    let project_id = pending.project_id.unwrap_or(resolved.project.id);
    let at = ledger::Location {
        connection: connection_name.clone(),
        project_id,
        kind: pending.kind,
        group_id: pending.group_id,
    };
    if let Some(held) = ctx.unstored(&uid).filter(|n| n.info.name == pending.token_name) {
        // A deploy token's username names its own id: never the one it replaces.
        let username = status
            .current
            .as_ref()
            .filter(|_| pending.kind != crate::crd::CredentialKind::DeployToken)
            .map(|c| c.bot_user.as_str());
        store_new_token(token, ctx, resolved, &held, username).await?;
        ctx.forget_unstored(&uid);
    }
    let api = &connection.api;
    let known: Vec<u64> = [
        status.current.as_ref().map(|c| c.token_id),
        status.previous.as_ref().map(|p| p.token_id),
        pending.rotating_token_id,
    ]
    .into_iter()
    .flatten()
    .collect();
    let listed = api.list_active_credentials(at.kind, at.owner()).await?;
    let secret = Api::<Secret>::namespaced(ctx.client.clone(), &token.namespace().unwrap_or_default())
        .get_opt(&token.spec.secret.name)
        .await?;
    let in_secret = secret
        .as_ref()
        .filter(|s| secret_is_owned_by(&s.metadata, &token.name_any()))
        .and_then(|s| s.annotations().get(TOKEN_ID_ANNOTATION))
        .and_then(|v| v.parse::<u64>().ok());
    let grace = ledger::overlap_grace(&resolved.allowance);
    for t in listed
        .iter()
        .filter(|t| t.name == pending.token_name && t.active && !known.contains(&t.id))
    {
        if Some(t.id) == in_secret
            && let Some(s) = secret.as_ref()
        {
            let username = s
                .data
                .as_ref()
                .and_then(|d| d.get("username"))
                .and_then(|u| String::from_utf8(u.0.clone()).ok())
                .or_else(|| status.current.as_ref().map(|c| c.bot_user.clone()))
                .unwrap_or_else(|| super::issue::access_token_username(project_id));
            let adopted = CurrentToken {
                token_id: t.id,
                kind: at.kind,
                group_id: at.group_id,
                connection: Some(connection_name.clone()),
                project_id: Some(project_id),
                name: t.name.clone(),
                bot_user: username,
                bot_user_id: t.user_id,
                created_at: t.created_at.unwrap_or(now),
                expires_at: t
                    .expires_at
                    .unwrap_or_else(|| expires_at_for(now, resolved.allowance.lifetime)),
                scopes: resolved.desired.scopes.clone(),
                access_level: Some(resolved.desired.access_level),
                secret_digest: Some(secret_digest(s, &uid)),
                secret_version: None,
                last_verified: Some(now),
            };
            match (status.current.take(), pending.operation) {
                (Some(old), PendingOperation::Issue) => {
                    ledger::keep_for_overlap(status, old, now + grace, now)
                }
                (Some(old), PendingOperation::Rotate) => end_history(status, old.token_id, now, "Rotated"),
                (None, _) => {}
            }
            push_history(status, &adopted);
            status.renewal_time = Some(renewal_time(
                adopted.created_at,
                adopted.expires_at,
                resolved.allowance.renew_before,
                seed_from(&uid),
            ));
            status.current = Some(adopted);
            super::status::mark_renew_handled(token, status);
            tracing::info!(token_id = t.id, "adopted a token created before a restart");
        } else {
            revoke_token(api.as_ref(), &at, t.id).await?;
            ctx.metrics.revoked("LostInFlight");
            tracing::info!(token_id = t.id, "revoked a token whose value was lost in flight");
        }
    }
    if pending.operation == PendingOperation::Rotate
        && let Some(current) = status.current.clone()
        && Some(current.token_id) == pending.rotating_token_id
        && !listed.iter().any(|t| t.id == current.token_id)
    {
        end_history(status, current.token_id, now, "LostInRotation");
        status.current = None;
    }
    status.pending = None;
    st::write(ctx, token, status).await?;
    Ok(())
}
