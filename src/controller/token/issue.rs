//! Issuing a new token (DESIGN §6.1) and retiring the one it replaces (§6.3 `Overlap`), with the
//! Secret written by server-side apply and consumers nudged.

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
    ledger,
    observe::Resolved,
    status::{self as st, end_history, push_history, set_issuing, set_ready},
};
use crate::{
    controller::{consumers, context::Context},
    crd::{CurrentToken, FIELD_MANAGER, GitLabToken, GitLabTokenStatus, PendingIssue, PendingOperation},
    gitlab::{CreateProjectAccessToken, NewToken},
    metrics::StrategyLabels,
    reason::Reason,
    schedule::{expires_at_for, renewal_time, seed_from},
    secret::{Owner, SecretParams, build_secret, secret_digest, secret_is_owned_by},
};

/// Creates a new token, writes the Secret, records it, nudges consumers, and retires the token
/// it replaces (DESIGN §6.1, §6.3 Overlap). The Secret write is dry-run before the mint, and the
/// write-ahead record (`pending`) is written, fenced, before GitLab is called.
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
    let username = status.current.as_ref().map_or_else(
        || format!("project_{}_bot", resolved.project.id),
        |c| c.bot_user.clone(),
    );
    probe_secret_write(token, ctx, resolved, &username, now).await?;
    status.pending = Some(PendingIssue {
        token_name: resolved.token_name.clone(),
        kind: resolved.desired.kind,
        group_id: resolved.desired.group_id,
        connection: Some(resolved.connection.name.clone()),
        project_id: Some(resolved.project.id),
        instance: Some(ctx.incarnation.clone()),
        operation: PendingOperation::Issue,
        started_at: now,
        rotating_token_id: None,
    });
    set_issuing(status, true, "creating a token in GitLab", generation, now);
    st::write(ctx, token, status).await?;
    crate::crash_point!("issue.after_pending");

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
    let new = match super::kinds::create_token(api.as_ref(), resolved, &request).await {
        Ok(n) => n,
        Err(e) => {
            if matches!(e, crate::gitlab::GitLabError::NotFound { .. }) {
                // The project may have been renamed, moved or deleted: resolve it afresh next time.
                resolved.connection.projects.invalidate(&token.spec.project);
            }
            if !may_have_happened(&e) {
                status.pending = None;
                let message = format!("GitLab refused to create the token: {e}");
                if status.current.is_some() {
                    super::status::set_issuing_because(status, gitlab_reason(&e), &message, generation, now);
                } else {
                    set_issuing(status, false, "", generation, now);
                    set_ready(status, false, gitlab_reason(&e), &message, generation, now);
                }
                st::write(ctx, token, status).await?;
                ctx.event(token, true, gitlab_reason(&e), "Issue", message).await;
            }
            return Err(e.into());
        }
    };
    ctx.metrics.tokens_issued.inc();
    crate::crash_point!("issue.after_create");
    let current = match store_new_token(token, ctx, resolved, &new, None).await {
        Ok(c) => c,
        Err(e) => return Err(hold_unstored(token, ctx, status, new, e).await),
    };
    crate::crash_point!("issue.after_secret");
    record_issued(token, ctx, resolved, status, current, reason).await
}

/// A minted token whose Secret write failed stays in the ledger (`pending`) and its value in this
/// process, and the write is retried with backoff; nothing else is minted meanwhile. A restart
/// loses the value, and the recovery then revokes the token.
pub(super) async fn hold_unstored(
    token: &GitLabToken,
    ctx: &Context,
    status: &mut GitLabTokenStatus,
    new: NewToken,
    error: TokenError,
) -> TokenError {
    let (now, generation) = (ctx.now(), token.metadata.generation);
    ctx.keep_unstored(&token.uid().unwrap_or_default(), new);
    let message = format!("{error}; the new token is held and the write retried");
    if status.current.is_some() {
        super::status::set_issuing_because(
            status,
            Reason::SecretWriteFailed.as_str(),
            &message,
            generation,
            now,
        );
    } else {
        set_ready(
            status,
            false,
            Reason::SecretWriteFailed.as_str(),
            &message,
            generation,
            now,
        );
    }
    if let Err(e) = st::write(ctx, token, status).await {
        tracing::warn!(error = %e, "could not record the Secret write failure");
    }
    ctx.event(token, true, Reason::SecretWriteFailed.as_str(), "Issue", message)
        .await;
    error
}

/// Records a token whose Secret is written: the replaced token becomes `previous` (renewal, spec
/// change: consumers get the overlap) or is retired now, status is written, then consumers are
/// nudged (a failed nudge is retried by the next reconcile; the overlap waits for it).
pub async fn record_issued(
    token: &GitLabToken,
    ctx: &Context,
    resolved: &Resolved,
    status: &mut GitLabTokenStatus,
    current: CurrentToken,
    reason: IssueReason,
) -> Result<(), TokenError> {
    let now = ctx.now();
    let generation = token.metadata.generation;
    ctx.forget_unstored(&token.uid().unwrap_or_default());
    ledger::retire_previous(status, "Superseded", now);
    push_history(status, &current);
    match (status.current.take(), reason) {
        (Some(old), IssueReason::Renewal | IssueReason::SpecChanged) => {
            let until = now + ledger::overlap_grace(&resolved.allowance);
            ledger::keep_for_overlap(status, old, until, now);
        }
        (Some(old), IssueReason::RevokedExternally) => {
            end_history(status, old.token_id, now, "RevokedExternally")
        }
        (Some(old), _) => {
            status.current = Some(old);
            ledger::retire_current(status, reason.as_str(), now);
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
    super::status::mark_renew_handled(token, status);
    set_issuing(status, false, "", generation, now);
    let rotated = reason != IssueReason::Initial;
    let reason_text = if rotated { Reason::Rotated } else { Reason::Issued };
    let message = ready_message(status);
    set_ready(status, true, reason_text.as_str(), &message, generation, now);
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
    tracing::info!(namespace = %token.namespace().unwrap_or_default(), name = %token.name_any(), reason = reason.as_str(), "{note}");
    ctx.event(token, false, reason_text.as_str(), "Issue", note.clone())
        .await;
    publish_on_consumers(ctx, token, false, reason_text.as_str(), "Issue", &note).await;
    nudge_recorded(token, ctx, status, now).await?;
    crate::crash_point!("overlap.after_issue");
    Ok(())
}

/// Checks, with a dry run and a placeholder value, that the Secret can be written before anything
/// is minted (quota, admission, a foreign Secret): a mint is never wasted on a write that fails.
pub async fn probe_secret_write(
    token: &GitLabToken,
    ctx: &Context,
    resolved: &Resolved,
    username: &str,
    now: DateTime<Utc>,
) -> Result<(), TokenError> {
    let placeholder = match token.spec.secret.format {
        // The ssh shape derives identity.pub from the key, so the probe needs a real (throwaway) one.
        crate::crd::SecretFormat::Ssh => {
            crate::secret::ssh::generate("dry-run")
                .map_err(|e| TokenError::SecretWrite(token.spec.secret.name.clone(), e.to_string()))?
                .private
        }
        _ => SecretString::from("dry-run-placeholder-value".to_string()),
    };
    let expires_at = expires_at_for(now, resolved.allowance.lifetime);
    let probe = build(token, resolved, username, 0, expires_at, now, &placeholder)?;
    write_secret(ctx, token, &probe, true).await.map(|_| ())
}

/// Nudges every consumer and records when in `previous` (so the overlap waits for them).
pub async fn nudge_recorded(
    token: &GitLabToken,
    ctx: &Context,
    status: &mut GitLabTokenStatus,
    now: DateTime<Utc>,
) -> Result<(), TokenError> {
    nudge_all(token, ctx, status, now).await?;
    if status.previous.is_some() {
        st::write(ctx, token, status).await?;
    }
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
    // During an overlap every nudge writes the time the Secret was recorded with the successor:
    // two writers (an old leader still running) then ask for the same reconcile, and neither's
    // record waits on a value the other overwrote.
    let at = status
        .previous
        .as_ref()
        .and_then(|p| p.replaced_at)
        .unwrap_or(now);
    let mut nudged = Vec::new();
    for c in &token.spec.consumers {
        if consumers::nudge(&ctx.client, &namespace, c, at).await? {
            nudged.push(format!("{}/{}", c.kind, c.name));
        }
    }
    if let Some(prev) = status.previous.as_mut() {
        prev.nudged_at = Some(at);
    }
    // An overlap's nudge is worth an event (the old token waits on it); a first issue's nudge is
    // part of the Issued event already published on the token and each consumer.
    if !nudged.is_empty() && status.previous.is_some() {
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

/// The username written beside an access token: GitLab ignores it for access-token
/// authentication on git, the registry and the package registry, so no API call is spent on the
/// bot user's real name; this names the project's bot family for people reading the Secret.
pub fn access_token_username(project_id: u64) -> String {
    format!("project_{project_id}_bot")
}

/// Builds the Secret and writes it. The returned record carries the digest of what was written.
pub async fn store_new_token(
    token: &GitLabToken,
    ctx: &Context,
    resolved: &Resolved,
    new: &NewToken,
    known_username: Option<&str>,
) -> Result<CurrentToken, TokenError> {
    let now = ctx.now();
    let username = known_username.map_or_else(
        || super::kinds::username(resolved.desired.kind, resolved.desired.owner(), new.info.id),
        str::to_string,
    );
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
    let written = write_secret(ctx, token, &secret, false).await?;
    let secret_version = written.map(|version| {
        // What was just written is known: the next look at it needs no read while the Secret
        // stays at this version and the status records this digest (after a restart too).
        let namespace = token.namespace().unwrap_or_default();
        let inputs = super::observe::secret_inputs(token, &digest, resolved.registry_host.as_deref());
        let state = super::decide::SecretState::Ours {
            token_id: Some(new.info.id),
            matches: true,
        };
        let recorded = super::observe::written_as(&version, inputs);
        ctx.secrets
            .remember(&namespace, &token.spec.secret.name, Some(version), inputs, &state);
        recorded
    });
    Ok(CurrentToken {
        token_id: new.info.id,
        kind: resolved.desired.kind,
        group_id: resolved.desired.group_id,
        connection: Some(resolved.connection.name.clone()),
        project_id: Some(resolved.project.id),
        name: resolved.token_name.clone(),
        bot_user: username,
        bot_user_id: Some(new.info.user_id),
        created_at,
        expires_at,
        scopes: resolved.desired.scopes.clone(),
        access_level: Some(resolved.desired.access_level),
        secret_digest: Some(digest),
        secret_version,
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
        argo_cd: token.spec.argo_cd.as_ref(),
        known_hosts: resolved.known_hosts.as_deref(),
    };
    build_secret(&params, value)
        .map(|b| b.into_secret())
        .map_err(|e| TokenError::SecretWrite(token.spec.secret.name.clone(), e.to_string()))
}

/// Server-side applies the Secret. Created first when absent (a 409 means someone else created
/// it: it is never overwritten); applied to only when it carries this token's ownership label; a
/// format change (Secret `type` is immutable) replaces it, deleting with a uid precondition so
/// only the Secret we looked at goes. Any other refusal (422, quota, admission) is reported as is:
/// the working Secret is never deleted for it. Returns the written Secret's resourceVersion
/// (none for a dry run or a Secret left as it is).
pub async fn write_secret(
    ctx: &Context,
    token: &GitLabToken,
    secret: &Secret,
    dry_run: bool,
) -> Result<Option<String>, TokenError> {
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
    let failed = |e: kube::Error| {
        let message = match e {
            kube::Error::Api(s) => s.message,
            other => other.to_string(),
        };
        TokenError::SecretWrite(name.clone(), message)
    };
    if !dry_run {
        // Whatever was read of it before is stale from here on.
        ctx.secrets.forget(&namespace, &name);
    }
    if !ctx.secrets.holds(&namespace, &name) {
        // Most likely absent (the reflector holds every Secret we own): create without a read;
        // one that exists after all answers 409 and takes the path below.
        match api.create(&create, secret).await {
            Ok(written) => return Ok(version_of(&written, dry_run)),
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(failed(e)),
        }
    }
    let result = match api.get_opt(&name).await.map_err(failed)? {
        None => api.create(&create, secret).await.map(|w| version_of(&w, dry_run)),
        Some(existing) if !secret_is_owned_by(&existing.metadata, &token.name_any()) => {
            return Err(TokenError::SecretNotOwned(name));
        }
        Some(existing) if existing.type_ != secret.type_ && !dry_run => {
            let preconditions = kube::api::Preconditions {
                uid: existing.uid(),
                resource_version: None,
            };
            let delete = DeleteParams {
                preconditions: Some(preconditions),
                ..DeleteParams::default()
            };
            api.delete(&name, &delete).await.map_err(failed)?;
            api.create(&create, secret).await.map(|w| version_of(&w, dry_run))
        }
        Some(existing) if existing.type_ != secret.type_ => Ok(None),
        Some(_) => api
            .patch(&name, &params, &Patch::Apply(secret))
            .await
            .map(|w| version_of(&w, dry_run)),
    };
    result.map_err(failed)
}

/// The resourceVersion of a Secret the API server answered a real write with.
fn version_of(written: &Secret, dry_run: bool) -> Option<String> {
    (!dry_run)
        .then(|| written.metadata.resource_version.clone())
        .flatten()
}
