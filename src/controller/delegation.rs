//! Delegation to GitLab (issue 11): what GitLab's answer about a delegating policy's identity
//! means for a token (grant, lower, deny, withdraw), and acting on it. The answers themselves are
//! cached and re-checked in `super::delegation_cache` (see there for the calls and their cost).

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, Preconditions},
};

pub use super::delegation_cache::{DelegationCache, Effective, Refreshed, TokenRef};
use super::{
    context::Context,
    token::{decide::IssueReason, observe::Resolved},
};
use crate::{
    crd::{AccessLevel, GitLabToken},
    reason::Reason,
    secret::secret_is_owned_by,
};

/// Default interval within which a change in GitLab reaches a delegated token.
pub const DEFAULT_RECHECK_INTERVAL: Duration = Duration::from_secs(300);

/// What GitLab's answer means for one token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Judgement {
    /// Serve the token at this role.
    Grant(AccessLevel),
    /// The identity's role fell below the live token's: re-issue at the lower role.
    Lowered {
        /// The live token's role.
        from: AccessLevel,
        /// The identity's role now.
        to: AccessLevel,
    },
    /// No token yet and the identity lacks the requested role: refuse.
    Deny,
    /// A token lives and the identity has no access any more: revoke it, remove the Secret.
    Withdraw,
}

/// Judges a request for `requested` given the identity's role now and the live token's role
/// (`None`: no token yet). A first token needs the full requested role; a live one follows
/// GitLab down (and back up to the requested role, never above it).
pub fn judge(
    requested: AccessLevel,
    effective: Option<AccessLevel>,
    live: Option<Option<AccessLevel>>,
) -> Judgement {
    match (effective, live) {
        (Some(l), _) if l >= requested => Judgement::Grant(requested),
        (_, None) => Judgement::Deny,
        (None, Some(_)) => Judgement::Withdraw,
        (Some(l), Some(current)) => {
            let current = current.unwrap_or(requested);
            if current > l {
                Judgement::Lowered { from: current, to: l }
            } else {
                Judgement::Grant(l)
            }
        }
    }
}

/// The issue reason for a re-issue: a spec change that only GitLab's lowered role explains is
/// [`IssueReason::AccessLowered`].
pub fn issue_reason(reason: IssueReason, resolved: &Resolved) -> IssueReason {
    match (reason, resolved.lowered) {
        (IssueReason::SpecChanged, Some(_)) => IssueReason::AccessLowered,
        (other, _) => other,
    }
}

/// Event and metric for a token re-issued at a lower role.
pub async fn report_lowered(token: &GitLabToken, ctx: &Context, resolved: &Resolved) {
    let Some((from, to)) = resolved.lowered else {
        return;
    };
    let who = resolved
        .allowance
        .delegate
        .as_ref()
        .map_or_else(String::new, ToString::to_string);
    let message = format!(
        "GitLab identity {who} now has {to} on project {} (was {from}): the token was re-issued at {to} and the {from} one revoked",
        resolved.project.path
    );
    ctx.metrics.access_changed(Reason::AccessLowered.as_str());
    ctx.event(token, true, Reason::AccessLowered.as_str(), "Reissue", message)
        .await;
}

/// Access withdrawn in GitLab: the Secret this token wrote is removed (its tokens are revoked by
/// the caller through the ledger); counted once per withdrawal.
pub async fn withdraw(token: &GitLabToken, ctx: &Context, had_tokens: bool) -> Result<(), kube::Error> {
    let namespace = token.namespace().unwrap_or_default();
    let secrets = Api::<Secret>::namespaced(ctx.client.clone(), &namespace);
    if let Some(secret) = secrets.get_opt(&token.spec.secret.name).await?
        && secret_is_owned_by(&secret.metadata, &token.name_any())
    {
        let precondition = DeleteParams {
            preconditions: Some(Preconditions {
                uid: secret.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        match secrets.delete(&token.spec.secret.name, &precondition).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => return Err(e),
        }
        // The ledger still holds the withdrawn tokens (status is written after): a crash here
        // finds them again at the next reconcile and revokes them.
        crate::crash_point!("withdraw.after_secret_delete");
    }
    if had_tokens {
        ctx.metrics.access_changed(Reason::AccessWithdrawn.as_str());
    }
    Ok(())
}

/// A delegated token waits no longer than its next own look at its answers (once an interval):
/// a safety net that also tells the cache the token still uses them. Changes in GitLab reach
/// the token sooner, through the refresher's wake-up (`super::delegation_refresh`).
pub fn cap_wait(after: Duration, token: &GitLabToken, ctx: &Context, resolved: &Resolved) -> Duration {
    if resolved.allowance.delegate.is_none() {
        return after;
    }
    let seed = crate::schedule::seed_from(&token.uid().unwrap_or_default());
    after.min(next_recheck(ctx.config.access_recheck_interval, seed, ctx.now()))
}

/// How old a cached answer a token's reconcile takes: two intervals. The refresher re-asks
/// every answer once an interval, so a reconcile finds it younger than that; it asks GitLab
/// itself only when the refresher could not (an outage, a starved budget, a new answer).
pub fn answer_max_age(interval: Duration) -> TimeDelta {
    TimeDelta::from_std(interval * 2)
        .unwrap_or(TimeDelta::seconds(600))
        .max(TimeDelta::seconds(1))
}

/// When a delegated token next looks at its answers: on its own phase within each interval
/// (from its uid), so these looks are spread over the interval instead of arriving together.
pub fn next_recheck(interval: Duration, seed: u64, now: DateTime<Utc>) -> Duration {
    let period = interval.max(Duration::from_secs(1));
    let period_ms = u64::try_from(period.as_millis()).unwrap_or(u64::MAX).max(1);
    let phase = seed % period_ms;
    let now_ms = u64::try_from(now.timestamp_millis()).unwrap_or_default();
    let into = (now_ms + period_ms - phase) % period_ms;
    Duration::from_millis(period_ms - into)
}

/// The token an answer serves, as the cache records it.
pub fn token_ref(token: &GitLabToken) -> TokenRef {
    TokenRef {
        namespace: token.namespace().unwrap_or_default(),
        name: token.name_any(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rechecks_are_spread_and_within_the_interval() {
        let interval = Duration::from_secs(600);
        let now = DateTime::from_timestamp(1_800_000_000, 0).expect("time");
        let waits: Vec<Duration> = (0..50u64)
            .map(|s| next_recheck(interval, crate::schedule::mix(s), now))
            .collect();
        assert!(
            waits
                .iter()
                .all(|w| *w > Duration::ZERO && *w <= Duration::from_secs(600))
        );
        let distinct: std::collections::BTreeSet<_> = waits.iter().map(|w| w.as_secs()).collect();
        assert!(distinct.len() > 25, "spread: {distinct:?}");
        // One token's re-checks fall on the same phase every period.
        let seed = crate::schedule::mix(7);
        let first = next_recheck(interval, seed, now);
        let then = now + TimeDelta::from_std(first).expect("delta");
        assert_eq!(next_recheck(interval, seed, then), Duration::from_secs(600));
    }

    #[test]
    fn judgements() {
        use AccessLevel::*;
        assert_eq!(
            judge(Developer, Some(Maintainer), None),
            Judgement::Grant(Developer)
        );
        assert_eq!(
            judge(Developer, Some(Developer), Some(Some(Developer))),
            Judgement::Grant(Developer)
        );
        assert_eq!(judge(Developer, Some(Reporter), None), Judgement::Deny);
        assert_eq!(judge(Developer, None, None), Judgement::Deny);
        assert_eq!(judge(Developer, None, Some(Some(Developer))), Judgement::Withdraw);
        assert_eq!(
            judge(Developer, Some(Reporter), Some(Some(Developer))),
            Judgement::Lowered {
                from: Developer,
                to: Reporter
            }
        );
        // Already lowered: stays at GitLab's role; raised again: back up, never above the request.
        assert_eq!(
            judge(Developer, Some(Reporter), Some(Some(Reporter))),
            Judgement::Grant(Reporter)
        );
        assert_eq!(
            judge(Developer, Some(Reporter), Some(Some(Guest))),
            Judgement::Grant(Reporter)
        );
        assert_eq!(
            judge(Developer, Some(Maintainer), Some(Some(Reporter))),
            Judgement::Grant(Developer)
        );
    }

    #[test]
    fn reconciles_take_answers_up_to_two_intervals_old() {
        assert_eq!(answer_max_age(Duration::from_secs(600)), TimeDelta::seconds(1200));
        assert_eq!(answer_max_age(Duration::from_millis(10)), TimeDelta::seconds(1));
    }
}
