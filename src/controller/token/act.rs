//! Performing the steps [`super::decide::next_step`] chooses. Each step writes status before
//! any irreversible GitLab call (`pending`) and after it, so a crash anywhere is recoverable.

use std::{sync::Arc, time::Duration};

use kube::{Api, Resource, ResourceExt, runtime::controller::Action};

use super::{
    TokenError,
    decide::{Observed, SecretState, Step, next_step},
    ledger,
    observe::{self, Refusal, Resolved},
    status::{self as st, set_denied, set_issuing, set_issuing_because, set_ready},
};
use crate::{
    controller::{consumers, context::Context},
    crd::{GitLabToken, GitLabTokenStatus},
    gitlab::GitLabError,
    reason::Reason,
    schedule::{next_verification_time_every, renewal_time, seed_from},
};

/// Annotation a user sets (to any new value) to renew a token now.
pub const RENEW_ANNOTATION: &str = "gitlabtokens.io/renew-requested-at";

/// Most steps in one reconcile before yielding.
const MAX_STEPS: usize = 8;

/// Whether a failed GitLab call may still have taken effect (so `pending` must stay).
pub(super) fn may_have_happened(e: &GitLabError) -> bool {
    matches!(
        e,
        GitLabError::Server { .. }
            | GitLabError::Timeout
            | GitLabError::Transport { .. }
            | GitLabError::InvalidResponse { .. }
    )
}

/// The refusal of a Secret name someone else's Secret holds.
fn foreign_secret(token: &GitLabToken, status: &GitLabTokenStatus) -> Refusal {
    let message = format!(
        "Secret {} exists and was not created by the operator for this GitLabToken; the operator never takes \
         over a foreign Secret: pick another secret name or delete that Secret",
        token.spec.secret.name
    );
    Refusal {
        reason: Reason::SecretNotOwned,
        message,
        policy: status.policy.clone(),
        connection: status.connection.clone(),
        project: status.project.clone(),
    }
}

/// The Apply half of the finalizer.
pub async fn apply(cached: Arc<GitLabToken>, ctx: &Context) -> Result<Action, TokenError> {
    let namespace = cached.namespace().unwrap_or_default();
    if !ctx.config.serves_namespace(&namespace) {
        return Ok(Action::await_change());
    }
    // Decisions rest on status (the ledger above all). The watch cache is used unless it has not
    // seen our own last read or write yet (then the object is read fresh); a newer version (the
    // shim's or a user's write since) is used as it is. Every status write below is
    // conditional on the version decided on, so a cache that is stale for any other reason makes
    // the first write fail (409) and the reconcile start over.
    let uid = cached.uid().unwrap_or_default();
    let token = match ctx.fence(&uid) {
        Some(known)
            if crate::controller::cache::is_behind(cached.metadata.resource_version.as_deref(), &known) =>
        {
            let api: Api<GitLabToken> = Api::namespaced(ctx.client.clone(), &namespace);
            let Some(fresh) = api.get_opt(&cached.name_any()).await? else {
                return Ok(Action::await_change());
            };
            Arc::new(fresh)
        }
        _ => cached,
    };
    ctx.set_fence(&uid, token.resource_version());
    let mut status = token.status.clone().unwrap_or_default();
    ledger::backfill_locations(&mut status);
    if let Some((reason, message)) = crate::shim::shim_refusal(&token) {
        // A request the shim refused is served nothing; whatever an earlier spec got is withdrawn.
        ledger::retire_all(&mut status, "Refused", ctx.now());
        let refusal = Refusal {
            reason,
            message,
            policy: None,
            connection: None,
            project: None,
        };
        return refuse(&token, ctx, status, refusal).await;
    }
    let resolved = match observe::resolve(&token, ctx).await? {
        Ok(r) => r,
        Err(refusal) => return refuse(&token, ctx, status, refusal).await,
    };
    let result = run_steps(&token, ctx, &resolved, &mut status).await;
    if let Err(TokenError::GitLab(e)) = &result {
        report_gitlab_failure(&token, ctx, &mut status, e).await;
    }
    result
}

/// Observes, decides and acts until the decision is to wait (at most [`MAX_STEPS`] steps).
async fn run_steps(
    token: &Arc<GitLabToken>,
    ctx: &Context,
    resolved: &Resolved,
    status: &mut GitLabTokenStatus,
) -> Result<Action, TokenError> {
    let namespace = token.namespace().unwrap_or_default();
    let generation = token.metadata.generation;
    status.connection = Some(resolved.connection.name.clone());
    status.project = Some(resolved.project.clone());
    status.policy = Some(resolved.allowance.policy.clone());
    set_denied(status, false, "", "", generation, ctx.now());

    let verify_every =
        chrono::TimeDelta::from_std(ctx.config.verify_interval).unwrap_or(crate::schedule::VERIFY_INTERVAL);
    let seed = seed_from(&token.uid().unwrap_or_default());
    // A changed renewBefore (spec or policy) moves the current token's renewal too.
    if let Some(c) = &status.current {
        status.renewal_time = Some(renewal_time(
            c.created_at,
            c.expires_at,
            resolved.allowance.renew_before,
            seed,
        ));
    }
    let renew_request = token.annotations().get(RENEW_ANNOTATION).cloned();
    let mut secret = observe::secret_state(ctx, token, resolved.registry_host.as_deref()).await?;
    let mut liveness = None;
    for _ in 0..MAX_STEPS {
        let now = ctx.now();
        let report = match status.previous.as_ref().and_then(|p| p.nudged_at) {
            Some(at) if !token.spec.consumers.is_empty() => {
                Some(consumers::report(&ctx.client, &namespace, &token.spec.consumers, at).await?)
            }
            _ => None,
        };
        let next_verification = status.current.as_ref().map(|c| {
            next_verification_time_every(
                Some(c.last_verified.unwrap_or(c.created_at)),
                now,
                seed,
                verify_every,
            )
        });
        let observed = Observed {
            now,
            status,
            desired: &resolved.desired,
            secret: secret.clone(),
            liveness,
            consumers_caught_up: report.map(|r| r.caught_up),
            consumer_auth_failed: report.is_some_and(|r| r.auth_failed),
            renew_requested: renew_request.is_some() && renew_request != status.last_handled_renew_request,
            next_verification,
            instance: &ctx.incarnation,
            pending_takeover: if ctx.config.exclusive {
                Duration::ZERO
            } else {
                super::decide::PENDING_TAKEOVER
            },
            has_consumers: !token.spec.consumers.is_empty(),
        };
        let step = next_step(&observed);
        tracing::debug!(?step, "next step");
        match step {
            Step::Wait(after) => {
                if status.current.is_some() && status.pending.is_none() {
                    let (reason, message) = (ready_reason(status), ready_message(status));
                    set_ready(status, true, reason, &message, generation, now);
                    set_issuing(status, false, "", generation, now);
                }
                if st::needs_write(ctx, token, status) {
                    st::write(ctx, token, status).await?;
                } else {
                    st::observe_metrics(ctx, token, status);
                }
                // A delegated token is asked about in GitLab again within the re-check interval.
                let after = crate::controller::delegation::cap_wait(after, token, ctx, resolved);
                return Ok(Action::requeue(after));
            }
            Step::RecoverPending => {
                super::rotate::recover_pending(token, ctx, resolved, status).await?;
                // The recovery may have adopted the token the Secret holds: judge the Secret anew.
                let mut reread = (**token).clone();
                reread.status = Some(status.clone());
                secret = observe::secret_state(ctx, &reread, resolved.registry_host.as_deref()).await?;
            }
            Step::Revoke(index) => super::revoke::revoke_entry(token, ctx, status, index).await?,
            Step::RefuseForeignSecret => {
                return refuse(token, ctx, status.clone(), foreign_secret(token, status)).await;
            }
            Step::Issue(reason) => {
                let reason = crate::controller::delegation::issue_reason(reason, resolved);
                match super::issue::issue(token, ctx, resolved, status, reason).await {
                    // Found by the dry run before any mint (the Secret was not looked at first:
                    // nothing of ours could be there).
                    Err(TokenError::SecretNotOwned(_)) => {
                        return refuse(token, ctx, status.clone(), foreign_secret(token, status)).await;
                    }
                    other => other?,
                }
                if reason == super::decide::IssueReason::AccessLowered {
                    crate::controller::delegation::report_lowered(token, ctx, resolved).await;
                }
                let id = status.current.as_ref().map(|c| c.token_id);
                secret = SecretState::Ours {
                    token_id: id,
                    matches: true,
                };
                liveness = None;
            }
            Step::RotateInPlace => {
                super::rotate::rotate_in_place(token, ctx, resolved, status).await?;
                let id = status.current.as_ref().map(|c| c.token_id);
                secret = SecretState::Ours {
                    token_id: id,
                    matches: status.current.is_some(),
                };
                liveness = None;
            }
            Step::RetirePrevious => {
                ledger::retire_previous(status, "Rotated", now);
                st::write(ctx, token, status).await?;
            }
            Step::Nudge => super::issue::nudge_recorded(token, ctx, status, now).await?,
            Step::Verify => {
                let now_please = report.is_some_and(|r| r.auth_failed);
                liveness = Some(super::revoke::verify(token, ctx, resolved, status, now_please).await?)
            }
        }
    }
    st::write(ctx, token, status).await?;
    Ok(Action::requeue(Duration::from_secs(5)))
}

/// A GitLab failure while a valid token is in the Secret: `Ready` stays as it is (the Secret
/// works) and `Issuing` names GitLab's answer and the next try. Best effort: the reconcile fails
/// and is retried either way.
async fn report_gitlab_failure(
    token: &GitLabToken,
    ctx: &Context,
    status: &mut GitLabTokenStatus,
    error: &GitLabError,
) {
    let now = ctx.now();
    let valid = status
        .current
        .as_ref()
        .is_some_and(|c| crate::schedule::death(c.expires_at) > now);
    if !valid {
        return;
    }
    let uid = token.uid().unwrap_or_default();
    let next = now
        + chrono::TimeDelta::from_std(super::retry_delay(&uid, ctx.failures(&uid) + 1, error))
            .unwrap_or_default();
    let message = format!(
        "{} ({error}); the Secret in place still works; next try at {}",
        if status.pending.is_some() || status.renewal_time.is_some_and(|t| t <= now) {
            "renewal is due and GitLab failed"
        } else {
            "GitLab failed"
        },
        next.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    let reason = match gitlab_reason(error) {
        r if r == Reason::GitLabUnavailable.as_str() => Reason::RenewalFailing.as_str(),
        r => r,
    };
    let changed = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Issuing")
        .is_none_or(|c| c.reason != reason);
    set_issuing_because(status, reason, &message, token.metadata.generation, now);
    if st::write(ctx, token, status).await.is_ok() && changed {
        ctx.event(token, true, reason, "Renew", message).await;
    }
}

fn ready_reason(status: &GitLabTokenStatus) -> &'static str {
    if status.history.len() > 1 {
        Reason::Rotated.as_str()
    } else {
        Reason::Issued.as_str()
    }
}

pub(super) fn ready_message(status: &GitLabTokenStatus) -> String {
    match (&status.current, status.renewal_time) {
        (Some(c), Some(r)) => format!(
            "token {} for {} expires {} and will be renewed at {}",
            c.token_id,
            status.project.as_ref().map(|p| p.path.as_str()).unwrap_or("?"),
            c.expires_at,
            r.to_rfc3339()
        ),
        _ => "token issued".into(),
    }
}

/// Reasons that withdraw access: every token in the ledger is revoked.
fn withdraws(reason: Reason) -> bool {
    matches!(
        reason,
        Reason::PolicyDenied
            | Reason::NoPolicy
            | Reason::ConnectionDeleted
            | Reason::GitLabAccessDenied
            | Reason::AccessWithdrawn
            | Reason::ProjectOutsideGroup
    )
}

/// Reasons that say nothing about the token in place (it keeps working while they last).
fn passing(reason: Reason) -> bool {
    matches!(
        reason,
        Reason::ConnectionNotReady
            | Reason::ConnectionNotFound
            | Reason::GitLabUnavailable
            | Reason::RateLimited
    )
}

/// Reports a refusal: condition, events on the token and its consumers, metric. A refusal that
/// withdraws access revokes every token in the ledger; a passing one (GitLab or the connection
/// unavailable) leaves a valid token `Ready` and says why nothing can be renewed right now.
async fn refuse(
    token: &GitLabToken,
    ctx: &Context,
    mut status: GitLabTokenStatus,
    refusal: Refusal,
) -> Result<Action, TokenError> {
    let now = ctx.now();
    let generation = token.metadata.generation;
    let reason = refusal.reason.as_str();
    let withdrawn = withdraws(refusal.reason);
    if withdrawn {
        let label = match refusal.reason {
            Reason::ConnectionDeleted => "ConnectionDeleted",
            Reason::AccessWithdrawn => "AccessWithdrawn",
            _ => "PolicyWithdrawn",
        };
        let ids = ledger::retire_all(&mut status, label, now);
        if refusal.reason == Reason::AccessWithdrawn {
            crate::controller::delegation::withdraw(token, ctx, !ids.is_empty()).await?;
        }
        if !ids.is_empty() {
            tracing::info!(namespace = %token.namespace().unwrap_or_default(), name = %token.name_any(), ?ids, reason, "access withdrawn; revoking");
        }
    }
    if refusal.policy.is_some() {
        status.policy = refusal.policy.clone();
    }
    if refusal.connection.is_some() {
        status.connection = refusal.connection.clone();
    }
    if refusal.project.is_some() {
        status.project = refusal.project.clone();
    }
    let keeps_working = passing(refusal.reason)
        && status
            .current
            .as_ref()
            .is_some_and(|c| crate::schedule::death(c.expires_at) > now);
    let old = |t: &str| status.conditions.iter().find(|c| c.type_ == t).cloned();
    let changed = if keeps_working {
        let next = now + chrono::TimeDelta::seconds(i64::try_from(retry_after(refusal.reason)).unwrap_or(30));
        let message = format!(
            "{}; the Secret in place still works; next try at {}",
            refusal.message,
            next.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        let before = old("Issuing");
        set_issuing_because(&mut status, reason, &message, generation, now);
        before.is_none_or(|c| c.reason != reason)
    } else {
        let before = old("Ready");
        set_ready(&mut status, false, reason, &refusal.message, generation, now);
        set_denied(
            &mut status,
            matches!(
                refusal.reason,
                Reason::PolicyDenied
                    | Reason::NoPolicy
                    | Reason::GitLabAccessDenied
                    | Reason::AccessWithdrawn
            ),
            reason,
            &refusal.message,
            generation,
            now,
        );
        set_issuing(&mut status, false, "", generation, now);
        before.is_none_or(|c| c.reason != reason || c.message != refusal.message)
    };
    if token.status.as_ref() != Some(&status) {
        st::write(ctx, token, &status).await?;
    }
    if changed {
        // Once per change of verdict, so an on-call engineer reading the log sees every refusal.
        tracing::info!(namespace = %token.namespace().unwrap_or_default(), name = %token.name_any(), reason, "refused: {}", refusal.message);
        ctx.metrics.denied(reason);
        ctx.event(token, true, reason, "Refuse", refusal.message.clone())
            .await;
        publish_on_consumers(ctx, token, true, reason, "Refuse", &refusal.message).await;
    }
    // Withdrawn tokens are revoked now, each until GitLab confirms it (with backoff).
    while let Some(i) = ledger::due_revocation(&status, ctx.now()) {
        super::revoke::revoke_entry(token, ctx, &mut status, i).await?;
    }
    let retry = match refusal.reason {
        _ if !status.revoking.is_empty() => ledger::next_revocation_attempt(&status)
            .and_then(|t| (t - ctx.now()).to_std().ok())
            .map_or(5, |d| d.as_secs().max(1)),
        reason => retry_after(reason),
    };
    let retry = Duration::from_secs(retry);
    // GitLab may grant access again: asked within the re-check interval.
    if matches!(
        refusal.reason,
        Reason::GitLabAccessDenied | Reason::AccessWithdrawn
    ) {
        let seed = crate::schedule::seed_from(&token.uid().unwrap_or_default());
        let recheck =
            crate::controller::delegation::next_recheck(ctx.config.access_recheck_interval, seed, ctx.now());
        return Ok(Action::requeue(retry.min(recheck)));
    }
    Ok(Action::requeue(retry))
}

/// Seconds until a refused request is looked at again (sooner for passing reasons).
fn retry_after(reason: Reason) -> u64 {
    match reason {
        Reason::ConnectionNotReady | Reason::ConnectionNotFound | Reason::ConnectionDeleted => 30,
        Reason::SecretNotOwned => 120,
        _ => 600,
    }
}

/// Events about the token also go to the Flux sources that read it.
pub(super) async fn publish_on_consumers(
    ctx: &Context,
    token: &GitLabToken,
    warning: bool,
    reason: &str,
    action: &str,
    note: &str,
) {
    let namespace = token.namespace().unwrap_or_default();
    for c in &token.spec.consumers {
        let reference = k8s_openapi::api::core::v1::ObjectReference {
            api_version: Some(c.api_version.clone()),
            kind: Some(c.kind.clone()),
            name: Some(c.name.clone()),
            namespace: Some(c.namespace.clone().unwrap_or_else(|| namespace.clone())),
            ..Default::default()
        };
        let event = kube::runtime::events::Event {
            type_: if warning {
                kube::runtime::events::EventType::Warning
            } else {
                kube::runtime::events::EventType::Normal
            },
            reason: reason.to_string(),
            note: Some(format!("GitLabToken {}: {note}", token.name_any())),
            action: action.to_string(),
            secondary: Some(token.object_ref(&())),
        };
        if let Err(e) = ctx.recorder.publish(&event, &reference).await {
            tracing::debug!(error = %e, "could not publish event on consumer");
        }
    }
}

pub(super) fn gitlab_reason(e: &GitLabError) -> &'static str {
    match e {
        GitLabError::BadRequest { .. }
        | GitLabError::Forbidden { .. }
        | GitLabError::InsufficientScope { .. } => Reason::InsufficientPermissions.as_str(),
        GitLabError::NotFound { .. } => Reason::ProjectNotFound.as_str(),
        GitLabError::RateLimited { .. } => Reason::RateLimited.as_str(),
        GitLabError::Unauthorized { .. }
        | GitLabError::TokenExpired { .. }
        | GitLabError::TokenRevoked { .. } => Reason::CredentialsInvalid.as_str(),
        _ => Reason::GitLabUnavailable.as_str(),
    }
}
