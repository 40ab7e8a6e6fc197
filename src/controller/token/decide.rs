//! What a `GitLabToken` needs next — a pure function of what was observed (DESIGN §6).
//!
//! The reconciler observes (status, the Secret, consumers, GitLab when a check is due), calls
//! [`next_step`], performs that one step, writes status, and asks again until the answer is
//! [`Step::Wait`]. Every step is idempotent and crash-safe because status records intent
//! (`pending`) before any irreversible GitLab call.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::ledger::{self, Location};
use crate::crd::{AccessLevel, GitLabTokenStatus, RotationStrategy, Scope};

/// What the token must be, resolved from spec, policy and GitLab.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired {
    /// The connection that must mint it.
    pub connection: String,
    /// GitLab project id.
    pub project_id: u64,
    /// Scopes, sorted.
    pub scopes: Vec<Scope>,
    /// Role.
    pub access_level: AccessLevel,
    /// How replacements happen.
    pub strategy: RotationStrategy,
    /// Kind of credential.
    pub kind: crate::crd::CredentialKind,
    /// The group a group-level credential lives on.
    pub group_id: Option<u64>,
}

impl Desired {
    /// Where the credential lives: its group, else its project.
    pub fn owner(&self) -> crate::crd::Owner {
        crate::crd::Owner::of(self.project_id, self.group_id)
    }
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
    /// This operator process (see [`crate::crd::PendingIssue::instance`]).
    pub instance: &'a str,
    /// How long another process' fresh write-ahead record is left alone ([`PENDING_TAKEOVER`]
    /// without leader election; zero when this process holds the leader Lease, since the writer
    /// of the record then cannot be acting any more).
    pub pending_takeover: Duration,
    /// Whether the token has consumers to nudge.
    pub has_consumers: bool,
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
    /// A delegating policy's GitLab identity lost role on the project: re-issued at the lower role
    /// (the old token is revoked at once, not kept for an overlap).
    AccessLowered,
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
            Self::AccessLowered => "AccessLowered",
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
    /// The overlap is over: move the previous token to `revoking`.
    RetirePrevious,
    /// Ask GitLab to revoke the `revoking` entry at this index.
    Revoke(usize),
    /// Consumers were not told about the new token yet (a nudge failed): nudge them.
    Nudge,
    /// Ask GitLab whether the current token is still active.
    Verify,
    /// Nothing to do until then (or until something changes).
    Wait(Duration),
}

/// How often to look at consumers while an overlap is open, at the latest: a change of a
/// consumer wakes the token at once ([`crate::controller::consumer_watch`]); this is the net
/// under that (a consumer kind discovered late, a missed event).
pub const OVERLAP_POLL: Duration = Duration::from_secs(30);
/// Longest wait between reconciles even when nothing is scheduled (resync).
pub const MAX_WAIT: Duration = Duration::from_secs(3600);
/// How long another process' write-ahead record is left alone: it may be minting right now.
pub const PENDING_TAKEOVER: Duration = Duration::from_secs(120);

/// Decides the next step (see module docs).
pub fn next_step(o: &Observed<'_>) -> Step {
    let s = o.status;
    if let Some(p) = &s.pending {
        let age = (o.now - p.started_at).to_std().unwrap_or_default();
        let elsewhere = p.instance.as_deref().is_some_and(|i| i != o.instance);
        if elsewhere && age < o.pending_takeover {
            return Step::Wait(o.pending_takeover - age);
        }
        return Step::RecoverPending;
    }
    if let Some(i) = ledger::due_revocation(s, o.now) {
        return Step::Revoke(i);
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
    let wanted = Location {
        connection: o.desired.connection.clone(),
        project_id: o.desired.project_id,
        kind: o.desired.kind,
        group_id: o.desired.group_id,
    };
    // A group-level credential lives on its group: the project the spec names (one of those it
    // serves, which changes as sources come and go) does not move it.
    let moved = |at: ledger::Location| match (at.group_id, wanted.group_id) {
        (Some(a), Some(b)) if a == b => at.connection != wanted.connection || at.kind != wanted.kind,
        _ => at != wanted,
    };
    let project_changed = ledger::current_location(current).is_some_and(moved);
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
        if prev.nudged_at.is_none() && o.has_consumers {
            return Step::Nudge;
        }
        // With no consumers to ask, nobody can confirm the switch (pods may mount the Secret):
        // the old token lives until the grace ends.
        let caught_up = o.consumers_caught_up.unwrap_or(false);
        if caught_up || o.now >= prev.revoke_after {
            return Step::RetirePrevious;
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
    let wait = [
        until(s.renewal_time),
        until(o.next_verification),
        until(ledger::next_revocation_attempt(s)),
    ]
    .into_iter()
    .flatten()
    .min()
    .unwrap_or(MAX_WAIT);
    Step::Wait(wait.min(MAX_WAIT))
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
