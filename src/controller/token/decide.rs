//! What a `GitLabToken` needs next — a pure function of what was observed (DESIGN §6).
//!
//! The reconciler observes (status, the Secret, consumers, GitLab when a check is due), calls
//! [`next_step`], performs that one step, writes status, and asks again until the answer is
//! [`Step::Wait`]. Every step is idempotent and crash-safe because status records intent
//! (`pending`) before any irreversible GitLab call.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::crd::{AccessLevel, GitLabTokenStatus, RotationStrategy, Scope};

/// What the token must be, resolved from spec, policy and GitLab.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired {
    /// GitLab project id.
    pub project_id: u64,
    /// Scopes, sorted.
    pub scopes: Vec<Scope>,
    /// Role.
    pub access_level: AccessLevel,
    /// How replacements happen.
    pub strategy: RotationStrategy,
}

/// The target Secret as found in the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretState {
    /// No Secret of that name.
    Missing,
    /// A Secret the operator did not create (no ownership label).
    Foreign,
    /// Ours; `matches` is false when its content no longer equals what was written.
    Ours {
        /// The token id it announces.
        token_id: Option<u64>,
        /// Whether its data digest equals the one recorded in status.
        matches: bool,
    },
}

/// GitLab's view of the current token, when it was checked this round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    /// Active.
    Active,
    /// Revoked, expired or gone: unusable.
    Dead,
}

/// Everything [`next_step`] looks at.
#[derive(Clone, Debug)]
pub struct Observed<'a> {
    /// Now.
    pub now: DateTime<Utc>,
    /// Current status.
    pub status: &'a GitLabTokenStatus,
    /// What the token must be.
    pub desired: &'a Desired,
    /// The Secret.
    pub secret: SecretState,
    /// GitLab's answer if a liveness check ran this round.
    pub liveness: Option<Liveness>,
    /// Whether every consumer reported Ready after the last nudge (None: no consumers to wait for).
    pub consumers_caught_up: Option<bool>,
    /// A consumer was refused by GitLab after the last nudge: check the token now.
    pub consumer_auth_failed: bool,
    /// A manual renewal request not yet handled.
    pub renew_requested: bool,
    /// When GitLab liveness should next be checked.
    pub next_verification: Option<DateTime<Utc>>,
}

/// Why a new token is created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IssueReason {
    /// First token.
    Initial,
    /// Project, scopes or role changed.
    SpecChanged,
    /// The Secret was deleted or edited.
    SecretChanged,
    /// GitLab says the token is revoked or expired.
    RevokedExternally,
    /// Scheduled or requested renewal with the `Overlap` strategy.
    Renewal,
}

impl IssueReason {
    /// PascalCase name for events and history.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Initial => "Initial",
            Self::SpecChanged => "SpecChanged",
            Self::SecretChanged => "SecretChanged",
            Self::RevokedExternally => "RevokedExternally",
            Self::Renewal => "Renewal",
        }
    }
}

/// The one thing to do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// A GitLab call was in flight when the operator stopped: find what it created, adopt it
    /// if the Secret holds it, else revoke it; then clear `pending`.
    RecoverPending,
    /// The Secret exists and is not ours: refuse (`SecretNotOwned`), mint nothing.
    RefuseForeignSecret,
    /// Create a new token (the current one, if any, becomes `previous`).
    Issue(IssueReason),
    /// Rotate the current token with GitLab's rotate endpoint.
    RotateInPlace,
    /// Revoke the retired token.
    RevokePrevious,
    /// Ask GitLab whether the current token is still active.
    Verify,
    /// Nothing to do until then (or until something changes).
    Wait(Duration),
}

/// How often to look at consumers while an overlap is open.
pub const OVERLAP_POLL: Duration = Duration::from_secs(5);
/// Longest wait between reconciles even when nothing is scheduled (resync).
pub const MAX_WAIT: Duration = Duration::from_secs(3600);

/// Decides the next step (see module docs).
pub fn next_step(o: &Observed<'_>) -> Step {
    let s = o.status;
    if s.pending.is_some() {
        return Step::RecoverPending;
    }
    if o.secret == SecretState::Foreign {
        return Step::RefuseForeignSecret;
    }
    let Some(current) = &s.current else {
        return Step::Issue(IssueReason::Initial);
    };
    if o.liveness == Some(Liveness::Dead) {
        return Step::Issue(IssueReason::RevokedExternally);
    }
    if o.consumer_auth_failed && o.liveness.is_none() {
        return Step::Verify;
    }
    let project_changed = s.project.as_ref().is_some_and(|p| p.id != o.desired.project_id);
    let mut granted = current.scopes.clone();
    granted.sort();
    let scopes_changed = !granted.is_empty() && granted != o.desired.scopes;
    let level_changed = current.access_level.is_some_and(|l| l != o.desired.access_level);
    if project_changed || scopes_changed || level_changed {
        return Step::Issue(IssueReason::SpecChanged);
    }
    match &o.secret {
        SecretState::Missing => return Step::Issue(IssueReason::SecretChanged),
        SecretState::Ours { token_id, matches } if !matches || *token_id != Some(current.token_id) => {
            return Step::Issue(IssueReason::SecretChanged);
        }
        _ => {}
    }
    if let Some(prev) = &s.previous {
        // With no consumers to ask, nobody can confirm the switch (pods may mount the Secret):
        // the old token lives until the grace ends.
        let caught_up = o.consumers_caught_up.unwrap_or(false);
        if caught_up || o.now >= prev.revoke_after {
            return Step::RevokePrevious;
        }
        let until_grace = (prev.revoke_after - o.now).to_std().unwrap_or_default();
        return Step::Wait(until_grace.min(OVERLAP_POLL));
    }
    let renewal_due = s.renewal_time.is_some_and(|t| o.now >= t) || o.renew_requested;
    if renewal_due {
        return match o.desired.strategy {
            RotationStrategy::Overlap => Step::Issue(IssueReason::Renewal),
            RotationStrategy::InPlace => Step::RotateInPlace,
        };
    }
    if o.liveness.is_none() && o.next_verification.is_some_and(|t| o.now >= t) {
        return Step::Verify;
    }
    let until = |t: Option<DateTime<Utc>>| t.and_then(|t| (t - o.now).to_std().ok());
    let wait = [until(s.renewal_time), until(o.next_verification)]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(MAX_WAIT);
    Step::Wait(wait.min(MAX_WAIT))
}

#[cfg(test)]
mod tests {
    use chrono::{NaiveDate, TimeZone};

    use super::*;
    use crate::crd::{CurrentToken, PendingIssue, PendingOperation, PreviousToken, ResolvedProject};

    fn t(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, h, 0, 0).unwrap()
    }

    fn desired() -> Desired {
        Desired {
            project_id: 7,
            scopes: vec![Scope::ReadRepository],
            access_level: AccessLevel::Reporter,
            strategy: RotationStrategy::Overlap,
        }
    }

    fn issued() -> GitLabTokenStatus {
        GitLabTokenStatus {
            project: Some(ResolvedProject {
                id: 7,
                path: "acme/app".into(),
            }),
            current: Some(CurrentToken {
                token_id: 100,
                name: "gto-c-uid".into(),
                bot_user: "project_7_bot_x".into(),
                bot_user_id: Some(5),
                created_at: t(0),
                expires_at: NaiveDate::from_ymd_opt(2026, 3, 31).unwrap(),
                scopes: vec![Scope::ReadRepository],
                access_level: Some(AccessLevel::Reporter),
                secret_digest: Some("d".into()),
                last_verified: None,
            }),
            renewal_time: Some(t(20)),
            ..Default::default()
        }
    }

    fn ours() -> SecretState {
        SecretState::Ours {
            token_id: Some(100),
            matches: true,
        }
    }

    fn observe<'a>(status: &'a GitLabTokenStatus, d: &'a Desired) -> Observed<'a> {
        Observed {
            now: t(1),
            status,
            desired: d,
            secret: ours(),
            liveness: None,
            consumers_caught_up: None,
            consumer_auth_failed: false,
            renew_requested: false,
            next_verification: Some(t(4)),
        }
    }

    #[test]
    fn decision_table() {
        let d = desired();
        let fresh = GitLabTokenStatus::default();
        let steady = issued();
        let mut pending = issued();
        pending.pending = Some(PendingIssue {
            token_name: "n".into(),
            operation: PendingOperation::Issue,
            started_at: t(0),
            rotating_token_id: None,
        });
        let mut overlapping = issued();
        overlapping.previous = Some(PreviousToken {
            token_id: 99,
            revoke_after: t(2),
            nudged_at: Some(t(1)),
        });
        let in_place = Desired {
            strategy: RotationStrategy::InPlace,
            ..desired()
        };
        let wider = Desired {
            scopes: vec![Scope::ReadRepository, Scope::WriteRepository],
            ..desired()
        };
        let moved = Desired {
            project_id: 8,
            ..desired()
        };
        let higher = Desired {
            access_level: AccessLevel::Developer,
            ..desired()
        };

        type Tweak = fn(&mut Observed<'_>);
        let cases: Vec<(&str, &GitLabTokenStatus, &Desired, Tweak, Step)> = vec![
            (
                "nothing yet: issue",
                &fresh,
                &d,
                |o| o.secret = SecretState::Missing,
                Step::Issue(IssueReason::Initial),
            ),
            (
                "foreign Secret beats everything but pending",
                &fresh,
                &d,
                |o| o.secret = SecretState::Foreign,
                Step::RefuseForeignSecret,
            ),
            (
                "pending first",
                &pending,
                &d,
                |o| o.secret = SecretState::Foreign,
                Step::RecoverPending,
            ),
            (
                "steady: wait for the earliest of verification and renewal",
                &steady,
                &d,
                |o| o.next_verification = Some(t(1) + chrono::Duration::minutes(30)),
                Step::Wait(Duration::from_secs(1800)),
            ),
            (
                "steady: resync ceiling",
                &steady,
                &d,
                |_| {},
                Step::Wait(MAX_WAIT),
            ),
            ("verification due", &steady, &d, |o| o.now = t(5), Step::Verify),
            (
                "dead in GitLab: re-issue",
                &steady,
                &d,
                |o| o.liveness = Some(Liveness::Dead),
                Step::Issue(IssueReason::RevokedExternally),
            ),
            (
                "Secret deleted: re-issue",
                &steady,
                &d,
                |o| o.secret = SecretState::Missing,
                Step::Issue(IssueReason::SecretChanged),
            ),
            (
                "Secret edited: re-issue",
                &steady,
                &d,
                |o| {
                    o.secret = SecretState::Ours {
                        token_id: Some(100),
                        matches: false,
                    }
                },
                Step::Issue(IssueReason::SecretChanged),
            ),
            (
                "scopes changed",
                &steady,
                &wider,
                |_| {},
                Step::Issue(IssueReason::SpecChanged),
            ),
            (
                "project changed",
                &steady,
                &moved,
                |_| {},
                Step::Issue(IssueReason::SpecChanged),
            ),
            (
                "level changed",
                &steady,
                &higher,
                |_| {},
                Step::Issue(IssueReason::SpecChanged),
            ),
            (
                "renewal time reached, overlap",
                &steady,
                &d,
                |o| o.now = t(21),
                Step::Issue(IssueReason::Renewal),
            ),
            (
                "renewal time reached, in place",
                &steady,
                &in_place,
                |o| o.now = t(21),
                Step::RotateInPlace,
            ),
            (
                "manual renew",
                &steady,
                &d,
                |o| o.renew_requested = true,
                Step::Issue(IssueReason::Renewal),
            ),
            (
                "overlap: consumers not yet ready",
                &overlapping,
                &d,
                |o| o.consumers_caught_up = Some(false),
                Step::Wait(OVERLAP_POLL),
            ),
            (
                "overlap: consumers ready",
                &overlapping,
                &d,
                |o| o.consumers_caught_up = Some(true),
                Step::RevokePrevious,
            ),
            (
                "overlap: no consumers waits for the grace",
                &overlapping,
                &d,
                |_| {},
                Step::Wait(OVERLAP_POLL),
            ),
            (
                "overlap: no consumers, grace over",
                &overlapping,
                &d,
                |o| o.now = t(3),
                Step::RevokePrevious,
            ),
            (
                "overlap: grace over",
                &overlapping,
                &d,
                |o| {
                    o.consumers_caught_up = Some(false);
                    o.now = t(3);
                },
                Step::RevokePrevious,
            ),
        ];
        for (name, status, desired, tweak, want) in cases {
            let mut o = observe(status, desired);
            tweak(&mut o);
            assert_eq!(next_step(&o), want, "{name}");
        }
    }

    #[test]
    fn wait_is_bounded_by_the_resync_ceiling() {
        let mut s = issued();
        s.renewal_time = Some(t(0) + chrono::Duration::days(20));
        let d = desired();
        let mut o = observe(&s, &d);
        o.next_verification = None;
        assert_eq!(next_step(&o), Step::Wait(MAX_WAIT));
    }
}
