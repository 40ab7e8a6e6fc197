//! Writing `GitLabToken` status: conditions, history, and the per-token metrics that mirror it.

use chrono::{DateTime, NaiveTime, Utc};
use kube::{Api, ResourceExt, api::PostParams};

use crate::{
    controller::{conditions::condition, context::Context},
    crd::{CurrentToken, FIELD_MANAGER, GitLabToken, GitLabTokenStatus, HistoryEntry, set_condition},
    metrics::TokenLabels,
};

/// Most history entries kept.
pub const HISTORY_LIMIT: usize = 10;

/// Replaces the whole status (PUT on `/status`) under the token controller's field manager,
/// conditional on the resourceVersion this process last read or wrote (the fence): if anyone
/// else wrote the object since, the API server answers 409 Conflict and the reconcile starts over
/// from a fresh read. So of two operator processes only one can record intent (`pending`) and
/// mint. (An update carries the precondition on every API server; a status apply may not.)
pub async fn write(ctx: &Context, token: &GitLabToken, status: &GitLabTokenStatus) -> kube::Result<()> {
    let api: Api<GitLabToken> = Api::namespaced(ctx.client.clone(), &token.namespace().unwrap_or_default());
    let params = PostParams {
        dry_run: false,
        field_manager: Some(format!("{FIELD_MANAGER}/token")),
    };
    let uid = token.uid().unwrap_or_default();
    let fence = ctx
        .fence(&uid)
        .or_else(|| token.metadata.resource_version.clone());
    let mut body = GitLabToken::new(&token.name_any(), token.spec.clone());
    body.metadata.namespace = token.namespace();
    body.metadata.uid = token.uid();
    body.metadata.resource_version = fence;
    let mut written_status = status.clone();
    written_status.summary = crate::crd::summary(&written_status.conditions);
    body.status = Some(written_status);
    let written = api.replace_status(&token.name_any(), &params, &body).await;
    match written {
        Ok(w) => ctx.set_written(&uid, w.metadata.resource_version, fingerprint(status)),
        Err(e) => {
            ctx.set_fence(&uid, None);
            return Err(e);
        }
    }
    observe_metrics(ctx, token, status);
    Ok(())
}

/// A fingerprint of a status, to tell whether it is the one last written.
pub fn fingerprint(status: &GitLabTokenStatus) -> u64 {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut h = DefaultHasher::new();
    serde_json::to_string(status).unwrap_or_default().hash(&mut h);
    h.finish()
}

/// Whether `status` differs from both what the object showed and what this process last wrote.
pub fn needs_write(ctx: &Context, token: &GitLabToken, status: &GitLabTokenStatus) -> bool {
    token.status.as_ref() != Some(status)
        && ctx.written_status(&token.uid().unwrap_or_default()) != Some(fingerprint(status))
}

/// Sets `Ready`, and `Denied`/`Issuing` consistently with it.
pub fn set_ready(
    status: &mut GitLabTokenStatus,
    ready: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: DateTime<Utc>,
) {
    set_condition(
        &mut status.conditions,
        condition("Ready", ready, reason, message, generation, now),
    );
    status.observed_generation = generation;
}

/// Sets the `Denied` condition.
pub fn set_denied(
    status: &mut GitLabTokenStatus,
    denied: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: DateTime<Utc>,
) {
    let reason = if denied { reason } else { "Allowed" };
    let message = if denied {
        message
    } else {
        "a policy allows this token"
    };
    set_condition(
        &mut status.conditions,
        condition("Denied", denied, reason, message, generation, now),
    );
}

/// Sets the `Issuing` condition.
pub fn set_issuing(
    status: &mut GitLabTokenStatus,
    issuing: bool,
    message: &str,
    generation: Option<i64>,
    now: DateTime<Utc>,
) {
    let reason = if issuing { "Issuing" } else { "Idle" };
    set_condition(
        &mut status.conditions,
        condition("Issuing", issuing, reason, message, generation, now),
    );
}

/// Sets `Issuing=True` with a reason and message (a renewal or revocation waits on GitLab).
pub fn set_issuing_because(
    status: &mut GitLabTokenStatus,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: DateTime<Utc>,
) {
    set_condition(
        &mut status.conditions,
        condition("Issuing", true, reason, message, generation, now),
    );
}

/// Marks the token's `gitlabtokens.io/renew-requested-at` value as handled: any new token is what
/// it asks for. Written in the same status write that records the new token, so a crash between
/// the two cannot renew twice.
pub fn mark_renew_handled(token: &GitLabToken, status: &mut GitLabTokenStatus) {
    status.last_handled_renew_request = token.annotations().get(super::act::RENEW_ANNOTATION).cloned();
}

/// Records a newly issued token at the head of the history.
pub fn push_history(status: &mut GitLabTokenStatus, current: &CurrentToken) {
    status.history.insert(
        0,
        HistoryEntry {
            token_id: current.token_id,
            created_at: current.created_at,
            expires_at: current.expires_at,
            revoked_at: None,
            reason: None,
        },
    );
    status.history.truncate(HISTORY_LIMIT);
}

/// Marks a token in the history as ended.
pub fn end_history(status: &mut GitLabTokenStatus, token_id: u64, at: DateTime<Utc>, reason: &str) {
    if let Some(e) = status.history.iter_mut().find(|e| e.token_id == token_id) {
        e.revoked_at.get_or_insert(at);
        e.reason.get_or_insert_with(|| reason.to_string());
    }
}

/// The per-token metric labels (namespace, name, canonical project).
pub fn token_labels(token: &GitLabToken, status: &GitLabTokenStatus) -> TokenLabels {
    TokenLabels {
        namespace: token.namespace().unwrap_or_default(),
        name: token.name_any(),
        project: status
            .project
            .as_ref()
            .map(|p| p.path.clone())
            .unwrap_or_default(),
    }
}

/// Mirrors status into the per-token metrics.
pub fn observe_metrics(ctx: &Context, token: &GitLabToken, status: &GitLabTokenStatus) {
    let labels = token_labels(token, status);
    let expires = status
        .current
        .as_ref()
        .map(|c| c.expires_at.and_time(NaiveTime::MIN).and_utc().timestamp());
    let renewal = status.renewal_time.map(|t| t.timestamp());
    let ready = crate::controller::conditions::is_ready(&status.conditions);
    ctx.metrics.observe_token(&labels, expires, renewal, ready);
}
