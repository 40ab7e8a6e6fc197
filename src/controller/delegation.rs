//! Delegation to GitLab (issue 11): a delegating policy's GitLab identity, asked about in GitLab.
//!
//! Answers are cached per connection and per project, group or user, for half the re-check
//! interval, so one answer serves every token on that project (or below that group) and the
//! periodic re-check costs a few GitLab calls per project and interval, never per token:
//! - a group identity: `GET /projects/:id` (its `shared_with_groups`) and `GET /groups/:id` for
//!   each ancestor group (theirs); none at all when the project lies inside the group;
//! - a user or service account: `GET /users?username=` (cached for an hour) and
//!   `GET /projects/:id/members/all/:user_id` (GitLab computes inheritance and shares itself).
//!
//! Failures (outage, rate limit, 5xx) are returned as errors and never cached: a GitLab outage is
//! never taken for withdrawn access.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use chrono::{DateTime, TimeDelta, Utc};

use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, Preconditions},
};

use super::{
    context::Context,
    token::{decide::IssueReason, observe::Resolved},
};
use crate::{
    crd::{AccessLevel, GitLabToken},
    gitlab::{GitLabApi, GitLabError, SharedWithGroup},
    policy::delegation::{Identity, ShareLink, ancestor_groups, group_level_on_project, level_from_gitlab},
    reason::Reason,
    secret::secret_is_owned_by,
};

/// Default interval within which a change in GitLab reaches a delegated token.
pub const DEFAULT_RECHECK_INTERVAL: Duration = Duration::from_secs(300);

/// How long a user id looked up by username is kept.
const USER_TTL: TimeDelta = TimeDelta::hours(1);

/// What one cached GitLab answer says.
#[derive(Clone, Debug)]
enum Answer {
    /// A project's or group's live shares (empty: none, or the group is not visible).
    Shares(Vec<ShareLink>),
    /// A username's user id (`None`: no such user).
    UserId(Option<u64>),
    /// A user's effective `access_level` on a project (0: not a member).
    Level(u32),
}

/// Which GitLab answer.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    ProjectShares(String),
    GroupShares(String),
    User(String),
    Member(String, u64),
}

/// Cached GitLab answers for delegation, per connection, shared by every reconcile.
#[derive(Debug, Default)]
pub struct DelegationCache {
    answers: Mutex<HashMap<(String, Key), Dated>>,
}

/// An answer and when GitLab gave it.
type Dated = (DateTime<Utc>, Answer);

/// The effective level an identity has on a project, and how it was found (for messages).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Effective {
    /// The role, as a token role (`None`: no access at all).
    pub level: Option<AccessLevel>,
    /// GitLab's raw `access_level` (50 for Owner, 0 for none).
    pub raw: u32,
}

impl DelegationCache {
    /// The identity's effective level on `project_path` (answers younger than `max_age` reused).
    pub async fn effective(
        &self,
        connection: &str,
        api: &dyn GitLabApi,
        identity: &Identity,
        project_path: &str,
        now: DateTime<Utc>,
        max_age: TimeDelta,
    ) -> Result<Effective, GitLabError> {
        let raw = match identity {
            Identity::Group(group) => {
                if group_level_on_project(group, project_path, [], now.date_naive()) > 0 {
                    50
                } else {
                    let mut links = self
                        .shares(
                            connection,
                            api,
                            Key::ProjectShares(project_path.into()),
                            now,
                            max_age,
                        )
                        .await?;
                    for ancestor in ancestor_groups(project_path) {
                        links.extend(
                            self.shares(connection, api, Key::GroupShares(ancestor), now, max_age)
                                .await?,
                        );
                    }
                    group_level_on_project(group, project_path, &links, now.date_naive())
                }
            }
            Identity::User(name) => {
                let user = match self.cached(connection, &Key::User(name.clone()), now, USER_TTL) {
                    Some(Answer::UserId(id)) => id,
                    _ => {
                        let id = api.user_by_username(name).await?.map(|u| u.id);
                        self.store(connection, Key::User(name.clone()), now, Answer::UserId(id));
                        id
                    }
                };
                match user {
                    None => 0,
                    Some(id) => {
                        let key = Key::Member(project_path.into(), id);
                        match self.cached(connection, &key, now, max_age) {
                            Some(Answer::Level(l)) => l,
                            _ => {
                                let level = match api.project_member_all(project_path, id).await {
                                    Ok(m) => m.access_level,
                                    Err(GitLabError::NotFound { .. }) => 0,
                                    Err(e) => return Err(e),
                                };
                                self.store(connection, key, now, Answer::Level(level));
                                level
                            }
                        }
                    }
                }
            }
        };
        Ok(Effective {
            level: level_from_gitlab(raw),
            raw,
        })
    }

    async fn shares(
        &self,
        connection: &str,
        api: &dyn GitLabApi,
        key: Key,
        now: DateTime<Utc>,
        max_age: TimeDelta,
    ) -> Result<Vec<ShareLink>, GitLabError> {
        if let Some(Answer::Shares(s)) = self.cached(connection, &key, now, max_age) {
            return Ok(s);
        }
        let found = match &key {
            Key::ProjectShares(p) => api.project(p).await.map(|p| p.shared_with_groups),
            Key::GroupShares(g) => api.group(g).await.map(|g| g.shared_with_groups),
            _ => Ok(Vec::new()),
        };
        let links: Vec<ShareLink> = match found {
            Ok(list) => list.iter().map(link).collect(),
            // A group the operator cannot see shares nothing it could know of.
            Err(GitLabError::NotFound { .. }) if matches!(key, Key::GroupShares(_)) => Vec::new(),
            Err(e) => return Err(e),
        };
        self.store(connection, key, now, Answer::Shares(links.clone()));
        Ok(links)
    }

    fn cached(&self, connection: &str, key: &Key, now: DateTime<Utc>, max_age: TimeDelta) -> Option<Answer> {
        let answers = self.answers.lock().ok()?;
        let (at, answer) = answers.get(&(connection.to_string(), key.clone()))?;
        (now >= *at && now - *at < max_age).then(|| answer.clone())
    }

    fn store(&self, connection: &str, key: Key, now: DateTime<Utc>, answer: Answer) {
        if let Ok(mut answers) = self.answers.lock() {
            answers.insert((connection.to_string(), key), (now, answer));
        }
    }
}

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

/// A delegated token waits no longer than its next re-check.
pub fn cap_wait(after: Duration, token: &GitLabToken, ctx: &Context, resolved: &Resolved) -> Duration {
    if resolved.allowance.delegate.is_none() {
        return after;
    }
    let seed = crate::schedule::seed_from(&token.uid().unwrap_or_default());
    after.min(next_recheck(ctx.config.access_recheck_interval, seed, ctx.now()))
}

fn link(s: &SharedWithGroup) -> ShareLink {
    ShareLink {
        group_full_path: s.group_full_path.clone(),
        group_access_level: s.group_access_level,
        expires_at: s.expires_at,
    }
}

/// How long cached answers live: half the re-check interval (at least a second), so a change in
/// GitLab reaches every delegated token within one interval.
pub fn answer_max_age(interval: Duration) -> TimeDelta {
    TimeDelta::from_std(interval / 2)
        .unwrap_or(TimeDelta::seconds(150))
        .max(TimeDelta::seconds(1))
}

/// When a delegated token is next re-checked: on its own phase within each half interval (from
/// its uid), so re-checks are spread over the interval instead of arriving together.
pub fn next_recheck(interval: Duration, seed: u64, now: DateTime<Utc>) -> Duration {
    let period = (interval / 2).max(Duration::from_secs(1));
    let period_ms = u64::try_from(period.as_millis()).unwrap_or(u64::MAX).max(1);
    let phase = seed % period_ms;
    let now_ms = u64::try_from(now.timestamp_millis()).unwrap_or_default();
    let into = (now_ms + period_ms - phase) % period_ms;
    Duration::from_millis(period_ms - into)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rechecks_are_spread_and_within_half_the_interval() {
        let interval = Duration::from_secs(600);
        let now = DateTime::from_timestamp(1_800_000_000, 0).expect("time");
        let waits: Vec<Duration> = (0..50u64)
            .map(|s| next_recheck(interval, crate::schedule::mix(s), now))
            .collect();
        assert!(
            waits
                .iter()
                .all(|w| *w > Duration::ZERO && *w <= Duration::from_secs(300))
        );
        let distinct: std::collections::BTreeSet<_> = waits.iter().map(|w| w.as_secs()).collect();
        assert!(distinct.len() > 25, "spread: {distinct:?}");
        // One token's re-checks fall on the same phase every period.
        let seed = crate::schedule::mix(7);
        let first = next_recheck(interval, seed, now);
        let then = now + TimeDelta::from_std(first).expect("delta");
        assert_eq!(next_recheck(interval, seed, then), Duration::from_secs(300));
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
    fn answers_live_half_an_interval() {
        assert_eq!(answer_max_age(Duration::from_secs(600)), TimeDelta::seconds(300));
        assert_eq!(answer_max_age(Duration::from_millis(10)), TimeDelta::seconds(1));
    }
}
