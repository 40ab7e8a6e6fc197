//! Rotating in place with GitLab's rotate endpoint (DESIGN §6.3 `InPlace`), and recovering a
//! GitLab call that was in flight when the operator stopped.

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, ResourceExt};
use secrecy::SecretString;

use super::{
    TokenError,
    act::{may_have_happened, ready_message},
    issue::{abandon_unstored, build, nudge_all, store_new_token, write_secret},
    observe::Resolved,
    revoke::revoke_token,
    status::{self as st, end_history, push_history, set_issuing, set_ready},
};
use crate::{
    controller::context::Context,
    crd::{CurrentToken, GitLabToken, GitLabTokenStatus, PendingIssue, PendingOperation, PreviousToken},
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
    let project_key = resolved.project.id.to_string();
    let placeholder = SecretString::from("dry-run-placeholder-value".to_string());
    let probe = build(
        token,
        resolved,
        &current.bot_user,
        current.token_id,
        current.expires_at,
        now,
        &placeholder,
    )?;
    write_secret(ctx, token, &probe, true).await?;

    status.pending = Some(PendingIssue {
        token_name: resolved.token_name.clone(),
        operation: PendingOperation::Rotate,
        started_at: now,
        rotating_token_id: Some(current.token_id),
    });
    set_issuing(status, true, "rotating the token in GitLab", generation, now);
    st::write(ctx, token, status).await?;
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
    let stored = store_new_token(token, ctx, resolved, &new, Some(&current.bot_user)).await;
    end_history(status, current.token_id, now, "Rotated");
    match stored {
        Ok(c) => {
            push_history(status, &c);
            status.renewal_time = Some(renewal_time(
                c.created_at,
                c.expires_at,
                resolved.allowance.renew_before,
                seed_from(&token.uid().unwrap_or_default()),
            ));
            status.current = Some(c);
            status.pending = None;
            set_issuing(status, false, "", generation, now);
            let message = ready_message(status);
            set_ready(status, true, Reason::Rotated.as_str(), &message, generation, now);
            nudge_all(token, ctx, status, now).await?;
            st::write(ctx, token, status).await?;
            ctx.metrics
                .tokens_rotated
                .get_or_create(&StrategyLabels {
                    strategy: "InPlace".into(),
                })
                .inc();
            ctx.event(
                token,
                false,
                Reason::Rotated.as_str(),
                "Rotate",
                format!("{message} (in place, same bot user)"),
            )
            .await;
            Ok(())
        }
        Err(e) => {
            // The old token died with the rotation; the next step issues a fresh one.
            status.current = None;
            abandon_unstored(token, ctx, api.as_ref(), &project_key, new.info.id, status, &e).await?;
            Err(e)
        }
    }
}

/// Finishes an interrupted GitLab call: adopts a created token if the Secret holds it, revokes
/// any other token created under the pending name, and never rotates again.
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
    let api = &resolved.connection.api;
    let project_key = resolved.project.id.to_string();
    let known: Vec<u64> = [
        status.current.as_ref().map(|c| c.token_id),
        status.previous.as_ref().map(|p| p.token_id),
        pending.rotating_token_id,
    ]
    .into_iter()
    .flatten()
    .collect();
    let listed = api.list_project_access_tokens(&project_key, None).await?;
    let secret = Api::<Secret>::namespaced(ctx.client.clone(), &token.namespace().unwrap_or_default())
        .get_opt(&token.spec.secret.name)
        .await?;
    let in_secret = secret
        .as_ref()
        .filter(|s| secret_is_owned_by(&s.metadata, &token.name_any()))
        .and_then(|s| s.annotations().get(TOKEN_ID_ANNOTATION))
        .and_then(|v| v.parse::<u64>().ok());
    for t in listed
        .iter()
        .filter(|t| t.name == pending.token_name && t.active && !known.contains(&t.id))
    {
        if Some(t.id) == in_secret
            && let Some(s) = secret.as_ref()
        {
            let username = api
                .project_member_all(&project_key, t.user_id)
                .await
                .map(|m| m.username)
                .unwrap_or_default();
            let adopted = CurrentToken {
                token_id: t.id,
                name: t.name.clone(),
                bot_user: username,
                bot_user_id: Some(t.user_id),
                created_at: t.created_at.unwrap_or(now),
                expires_at: t
                    .expires_at
                    .unwrap_or_else(|| expires_at_for(now, resolved.allowance.lifetime)),
                scopes: resolved.desired.scopes.clone(),
                access_level: Some(resolved.desired.access_level),
                secret_digest: Some(secret_digest(s, &token.uid().unwrap_or_default())),
                last_verified: Some(now),
            };
            if let Some(old) = status.current.take()
                && pending.operation == PendingOperation::Issue
            {
                status.previous = Some(PreviousToken {
                    token_id: old.token_id,
                    revoke_after: now,
                    nudged_at: None,
                });
            }
            push_history(status, &adopted);
            status.renewal_time = Some(renewal_time(
                adopted.created_at,
                adopted.expires_at,
                resolved.allowance.renew_before,
                seed_from(&token.uid().unwrap_or_default()),
            ));
            status.current = Some(adopted);
            tracing::info!(token_id = t.id, "adopted a token created before a restart");
        } else {
            revoke_token(api.as_ref(), &project_key, t.id).await?;
            ctx.metrics.revoked("LostInFlight");
            tracing::info!(token_id = t.id, "revoked a token whose value was lost in flight");
        }
    }
    if pending.operation == PendingOperation::Rotate
        && let Some(current) = status.current.clone()
        && Some(current.token_id) == pending.rotating_token_id
        && listed.iter().any(|t| t.id == current.token_id && !t.active)
    {
        end_history(status, current.token_id, now, "LostInRotation");
        status.current = None;
    }
    status.pending = None;
    st::write(ctx, token, status).await?;
    Ok(())
}
