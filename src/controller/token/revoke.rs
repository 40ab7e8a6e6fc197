//! Revoking: the token retired by an overlap, every token on policy withdrawal or deletion
//! (the finalizer's cleanup), and checking with GitLab that the current one is still alive.

use std::sync::Arc;

use kube::{Api, ResourceExt, runtime::controller::Action};

use super::{
    TokenError,
    decide::Liveness,
    observe::Resolved,
    status::{self as st, end_history, token_labels},
};
use crate::{
    controller::context::Context,
    crd::{DeletionPolicy, GitLabToken, GitLabTokenStatus},
    gitlab::{GitLabApi, GitLabError},
    reason::Reason,
};

pub async fn revoke_token(api: &dyn GitLabApi, project: &str, token_id: u64) -> Result<(), TokenError> {
    api.revoke_project_access_token(project, token_id)
        .await
        .map(|_| ())
        .map_err(TokenError::from)
}

pub async fn revoke_previous(
    token: &GitLabToken,
    ctx: &Context,
    resolved: &Resolved,
    status: &mut GitLabTokenStatus,
) -> Result<(), TokenError> {
    let Some(prev) = status.previous.clone() else {
        return Ok(());
    };
    revoke_token(
        resolved.connection.api.as_ref(),
        &resolved.project.id.to_string(),
        prev.token_id,
    )
    .await?;
    let now = ctx.now();
    end_history(status, prev.token_id, now, "Rotated");
    status.previous = None;
    st::write(ctx, token, status).await?;
    ctx.metrics.revoked("Rotated");
    ctx.event(
        token,
        false,
        Reason::Revoked.as_str(),
        "Revoke",
        format!("revoked the previous token {}", prev.token_id),
    )
    .await;
    Ok(())
}

pub async fn verify(
    token: &GitLabToken,
    ctx: &Context,
    resolved: &Resolved,
    status: &mut GitLabTokenStatus,
) -> Result<Liveness, TokenError> {
    let Some(current) = status.current.as_mut() else {
        return Ok(Liveness::Dead);
    };
    let project_key = resolved.project.id.to_string();
    let alive = match resolved
        .connection
        .api
        .get_project_access_token(&project_key, current.token_id)
        .await
    {
        Ok(t) => t.active && !t.revoked,
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

/// Revokes current and previous tokens (policy withdrawn or deletion).
pub async fn revoke_all(
    token: &GitLabToken,
    ctx: &Context,
    status: &mut GitLabTokenStatus,
    reason: &str,
) -> Result<(), TokenError> {
    let ids: Vec<u64> = [
        status.current.as_ref().map(|c| c.token_id),
        status.previous.as_ref().map(|p| p.token_id),
    ]
    .into_iter()
    .flatten()
    .collect();
    if ids.is_empty() {
        return Ok(());
    }
    let (Some(conn), Some(project)) = (
        status.connection.as_deref().and_then(|c| ctx.connections.get(c)),
        status.project.clone(),
    ) else {
        return Err(TokenError::CleanupBlocked(
            "the token's GitLabConnection is not available".into(),
        ));
    };
    let now = ctx.now();
    for id in ids {
        revoke_token(conn.api.as_ref(), &project.id.to_string(), id).await?;
        end_history(status, id, now, reason);
        ctx.metrics.revoked(reason);
        ctx.event(
            token,
            false,
            Reason::Revoked.as_str(),
            "Revoke",
            format!("revoked token {id} ({reason})"),
        )
        .await;
    }
    status.current = None;
    status.previous = None;
    status.renewal_time = None;
    Ok(())
}

/// The Cleanup half of the finalizer: revoke (unless `Retain`), forget metrics.
pub async fn cleanup(token: Arc<GitLabToken>, ctx: &Context) -> Result<Action, TokenError> {
    let mut status = token.status.clone().unwrap_or_default();
    if token.spec.deletion_policy == DeletionPolicy::Revoke {
        let connection_gone = match status.connection.as_deref() {
            None => true,
            Some(name) => {
                ctx.connections.get(name).is_none()
                    && Api::<crate::crd::GitLabConnection>::all(ctx.client.clone())
                        .get_opt(name)
                        .await?
                        .is_none()
            }
        };
        if connection_gone {
            if status.current.is_some() || status.previous.is_some() {
                ctx.event(
                    token.as_ref(),
                    true,
                    "RevocationImpossible",
                    "Revoke",
                    "the GitLabConnection is gone, so the token cannot be revoked; it will expire on its own"
                        .into(),
                )
                .await;
            }
        } else {
            revoke_pending_leftovers(&token, ctx, &status).await?;
            revoke_all(&token, ctx, &mut status, "Deleted").await?;
        }
    }
    ctx.metrics.forget_token(&token_labels(&token, &status));
    Ok(Action::await_change())
}

async fn revoke_pending_leftovers(
    token: &GitLabToken,
    ctx: &Context,
    status: &GitLabTokenStatus,
) -> Result<(), TokenError> {
    let (Some(pending), Some(conn), Some(project)) = (
        status.pending.as_ref(),
        status.connection.as_deref().and_then(|c| ctx.connections.get(c)),
        status.project.as_ref(),
    ) else {
        return Ok(());
    };
    let keep: Vec<u64> = [
        status.current.as_ref().map(|c| c.token_id),
        status.previous.as_ref().map(|p| p.token_id),
    ]
    .into_iter()
    .flatten()
    .collect();
    let key = project.id.to_string();
    for t in conn.api.list_project_access_tokens(&key, None).await? {
        if t.name == pending.token_name && t.active && !keep.contains(&t.id) {
            revoke_token(conn.api.as_ref(), &key, t.id).await?;
            ctx.metrics.revoked("Deleted");
            tracing::info!(token_id = t.id, namespace = %token.namespace().unwrap_or_default(), "revoked an in-flight token on deletion");
        }
    }
    Ok(())
}
