//! Issuing a new token (DESIGN §6.1) and retiring the one it replaces (§6.3 `Overlap`), with the
//! Secret written by server-side apply and consumers nudged.

use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, Patch, PatchParams, PostParams},
};
use secrecy::SecretString;

use super::{
    TokenError,
    act::{gitlab_reason, may_have_happened, publish_on_consumers, ready_message},
    decide::IssueReason,
    observe::Resolved,
    revoke::revoke_token,
    status::{self as st, end_history, push_history, set_issuing, set_ready},
};
use crate::{
    controller::{consumers, context::Context},
    crd::{
        CurrentToken, FIELD_MANAGER, GitLabToken, GitLabTokenStatus, PendingIssue, PendingOperation,
        PreviousToken,
    },
    gitlab::{CreateProjectAccessToken, GitLabApi, NewToken},
    metrics::StrategyLabels,
    reason::Reason,
    schedule::{expires_at_for, renewal_time, seed_from},
    secret::{Owner, SecretParams, build_secret, secret_digest, secret_is_owned_by},
};

/// Creates a new token, writes the Secret, retires the old token (DESIGN §6.1, §6.3 Overlap).
pub async fn issue(
    token: &GitLabToken,
    ctx: &Context,
    resolved: &Resolved,
    status: &mut GitLabTokenStatus,
    reason: IssueReason,
) -> Result<(), TokenError> {
    let now = ctx.now();
    let generation = token.metadata.generation;
    let api = &resolved.connection.api;
    let project_key = resolved.project.id.to_string();
    status.pending = Some(PendingIssue {
        token_name: resolved.token_name.clone(),
        operation: PendingOperation::Issue,
        started_at: now,
        rotating_token_id: None,
    });
    set_issuing(status, true, "creating a token in GitLab", generation, now);
    st::write(ctx, token, status).await?;

    let request = CreateProjectAccessToken {
        name: resolved.token_name.clone(),
        description: Some(format!(
            "managed by gitlab-token-operator for {}/{}",
            token.namespace().unwrap_or_default(),
            token.name_any()
        )),
        scopes: resolved
            .desired
            .scopes
            .iter()
            .map(|s| s.as_str().to_string())
            .collect(),
        access_level: resolved.desired.access_level.gitlab_value(),
        expires_at: expires_at_for(now, resolved.allowance.lifetime),
    };
    let new = match api.create_project_access_token(&project_key, &request).await {
        Ok(n) => n,
        Err(e) => {
            if !may_have_happened(&e) {
                status.pending = None;
                set_issuing(status, false, "", generation, now);
                let message = format!("GitLab refused to create the token: {e}");
                set_ready(status, false, gitlab_reason(&e), &message, generation, now);
                st::write(ctx, token, status).await?;
                ctx.event(token, true, gitlab_reason(&e), "Issue", message).await;
            }
            return Err(e.into());
        }
    };
    ctx.metrics.tokens_issued.inc();
    let current = match store_new_token(token, ctx, resolved, &new, None).await {
        Ok(c) => c,
        Err(e) => {
            abandon_unstored(token, ctx, api.as_ref(), &project_key, new.info.id, status, &e).await?;
            return Err(e);
        }
    };

    // Retire what was there before.
    if let Some(old) = status.previous.take() {
        revoke_token(api.as_ref(), &project_key, old.token_id).await?;
        end_history(status, old.token_id, now, "Superseded");
        ctx.metrics.revoked("Superseded");
    }
    let old = status.current.take();
    push_history(status, &current);
    let grace =
        chrono::Duration::seconds(i64::try_from(resolved.allowance.overlap_grace.as_secs()).unwrap_or(600));
    match (old, reason) {
        (Some(old), IssueReason::Renewal | IssueReason::SpecChanged) => {
            status.previous = Some(PreviousToken {
                token_id: old.token_id,
                revoke_after: now + grace,
                nudged_at: None,
            });
        }
        (Some(old), IssueReason::RevokedExternally) => {
            end_history(status, old.token_id, now, "RevokedExternally")
        }
        (Some(old), _) => {
            revoke_token(api.as_ref(), &project_key, old.token_id).await?;
            end_history(status, old.token_id, now, reason.as_str());
            ctx.metrics.revoked(reason.as_str());
        }
        (None, _) => {}
    }
    status.renewal_time = Some(renewal_time(
        current.created_at,
        current.expires_at,
        resolved.allowance.renew_before,
        seed_from(&token.uid().unwrap_or_default()),
    ));
    status.current = Some(current);
    status.pending = None;
    set_issuing(status, false, "", generation, now);
    let rotated = reason != IssueReason::Initial;
    let reason_text = if rotated { Reason::Rotated } else { Reason::Issued };
    let message = ready_message(status);
    set_ready(status, true, reason_text.as_str(), &message, generation, now);
    nudge_all(token, ctx, status, now).await?;
    st::write(ctx, token, status).await?;
    if rotated {
        ctx.metrics
            .tokens_rotated
            .get_or_create(&StrategyLabels {
                strategy: "Overlap".into(),
            })
            .inc();
    }
    let note = format!("{} ({})", message, reason.as_str());
    ctx.event(token, false, reason_text.as_str(), "Issue", note.clone())
        .await;
    publish_on_consumers(ctx, token, false, reason_text.as_str(), "Issue", &note).await;
    Ok(())
}

/// A minted token whose value could not be stored exists nowhere else: revoke it rather than
/// leak it, drop the intent, and report `SecretWriteFailed`.
pub async fn abandon_unstored(
    token: &GitLabToken,
    ctx: &Context,
    api: &dyn GitLabApi,
    project_key: &str,
    new_id: u64,
    status: &mut GitLabTokenStatus,
    error: &TokenError,
) -> Result<(), TokenError> {
    let (now, generation) = (ctx.now(), token.metadata.generation);
    let _ = api.revoke_project_access_token(project_key, new_id).await;
    ctx.metrics.revoked("SecretWriteFailed");
    status.pending = None;
    set_issuing(status, false, "", generation, now);
    set_ready(
        status,
        false,
        Reason::SecretWriteFailed.as_str(),
        &error.to_string(),
        generation,
        now,
    );
    st::write(ctx, token, status).await?;
    Ok(())
}

/// Nudges every consumer and records when (so the overlap waits for them).
pub async fn nudge_all(
    token: &GitLabToken,
    ctx: &Context,
    status: &mut GitLabTokenStatus,
    now: DateTime<Utc>,
) -> Result<(), TokenError> {
    if token.spec.consumers.is_empty() {
        return Ok(());
    }
    let namespace = token.namespace().unwrap_or_default();
    let mut nudged = Vec::new();
    for c in &token.spec.consumers {
        if consumers::nudge(&ctx.client, &namespace, c, now).await? {
            nudged.push(format!("{}/{}", c.kind, c.name));
        }
    }
    if let Some(prev) = status.previous.as_mut() {
        prev.nudged_at = Some(now);
    }
    if !nudged.is_empty() {
        ctx.event(
            token,
            false,
            Reason::Nudged.as_str(),
            "Nudge",
            format!("asked {} to re-read the Secret", nudged.join(", ")),
        )
        .await;
    }
    Ok(())
}

/// Looks up the bot user's name, builds the Secret and writes it (with retries). The returned
/// record carries the digest of what was written.
pub async fn store_new_token(
    token: &GitLabToken,
    ctx: &Context,
    resolved: &Resolved,
    new: &NewToken,
    known_username: Option<&str>,
) -> Result<CurrentToken, TokenError> {
    let now = ctx.now();
    let project_key = resolved.project.id.to_string();
    let username = match known_username {
        Some(u) => u.to_string(),
        None => match resolved
            .connection
            .api
            .project_member_all(&project_key, new.info.user_id)
            .await
        {
            Ok(m) => m.username,
            Err(e) => {
                tracing::warn!(error = %e, "could not look up the bot user's name; using a generic one");
                format!("project_{}_bot", resolved.project.id)
            }
        },
    };
    let created_at = new.info.created_at.unwrap_or(now);
    let expires_at = new
        .info
        .expires_at
        .unwrap_or_else(|| expires_at_for(now, resolved.allowance.lifetime));
    let uid = token.uid().unwrap_or_default();
    let renewal = renewal_time(
        created_at,
        expires_at,
        resolved.allowance.renew_before,
        seed_from(&uid),
    );
    let secret = build(
        token,
        resolved,
        &username,
        new.info.id,
        expires_at,
        renewal,
        &new.token,
    )?;
    let digest = secret_digest(&secret, &uid);
    write_secret(ctx, token, &secret, false).await?;
    Ok(CurrentToken {
        token_id: new.info.id,
        name: resolved.token_name.clone(),
        bot_user: username,
        bot_user_id: Some(new.info.user_id),
        created_at,
        expires_at,
        scopes: resolved.desired.scopes.clone(),
        access_level: Some(resolved.desired.access_level),
        secret_digest: Some(digest),
        last_verified: Some(now),
    })
}

pub fn build(
    token: &GitLabToken,
    resolved: &Resolved,
    username: &str,
    token_id: u64,
    expires_at: chrono::NaiveDate,
    renewal: DateTime<Utc>,
    value: &SecretString,
) -> Result<Secret, TokenError> {
    let name = token.name_any();
    let namespace = token.namespace().unwrap_or_default();
    let uid = token.uid().unwrap_or_default();
    let registry_host = resolved.registry_host.clone();
    let params = SecretParams {
        owner: Owner {
            name: &name,
            namespace: &namespace,
            uid: &uid,
        },
        name: &token.spec.secret.name,
        format: token.spec.secret.format,
        registry_host: registry_host.as_deref(),
        username,
        token_id,
        expires_at,
        renewal_time: renewal,
    };
    build_secret(&params, value)
        .map(|b| b.into_secret())
        .map_err(|e| TokenError::SecretWrite(token.spec.secret.name.clone(), e.to_string()))
}

/// Server-side applies the Secret; a format change (Secret `type` is immutable) replaces it.
pub async fn write_secret(
    ctx: &Context,
    token: &GitLabToken,
    secret: &Secret,
    dry_run: bool,
) -> Result<(), TokenError> {
    let namespace = token.namespace().unwrap_or_default();
    let name = token.spec.secret.name.clone();
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let manager = format!("{FIELD_MANAGER}/secret");
    let mut params = PatchParams::apply(&manager).force();
    params.dry_run = dry_run;
    let create = PostParams {
        dry_run,
        field_manager: Some(manager.clone()),
    };
    let mut last = String::new();
    for attempt in 0..5u32 {
        // Create first: if anyone created the Secret since we looked, the API server refuses with
        // 409 and we never overwrite it. Only a Secret carrying our ownership label is applied to.
        let result = match api.get_opt(&name).await {
            Ok(None) => api.create(&create, secret).await.map(|_| ()),
            Ok(Some(existing)) if secret_is_owned_by(&existing.metadata, &token.name_any()) => {
                api.patch(&name, &params, &Patch::Apply(secret)).await.map(|_| ())
            }
            Ok(Some(_)) => {
                return Err(TokenError::SecretWrite(
                    name,
                    "the Secret exists and was not created by the operator for this GitLabToken".into(),
                ));
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => return Ok(()),
            Err(kube::Error::Api(s)) if s.code == 422 && !dry_run => {
                // Most likely the type changed with the format (Secret type is immutable): replace it.
                last = s.message.clone();
                let _ = api.delete(&name, &DeleteParams::default()).await;
            }
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100 * 2u64.pow(attempt))).await;
    }
    Err(TokenError::SecretWrite(name, last))
}
