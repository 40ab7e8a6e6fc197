//! The ledger: every token the operator may have minted for one `GitLabToken`, kept in its status
//! until GitLab confirms the token dead (docs/reference.md, "The token ledger").
//!
//! The ledger is the union of four status fields, each record carrying where its token lives
//! (connection and project id), so a revocation always goes to the token's own project even after
//! the spec moved to another one:
//! - `pending`: a create or rotate call in flight (token name marker, no id yet);
//! - `current`: the token in the Secret;
//! - `previous`: the token an `Overlap` rotation retires once consumers caught up or the grace ends;
//! - `revoking`: withdrawn tokens, revoked with backoff until GitLab answers revoked or 404.
//!
//! Pure functions over status; callers write status (fenced) before any GitLab call they record.

use chrono::{DateTime, Duration, Utc};

use crate::crd::{CredentialKind, CurrentToken, GitLabTokenStatus, Owner, PreviousToken, RevokingToken};

/// Where a credential lives in GitLab, and which kind it is (so it is listed and revoked at the
/// right endpoint).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    /// The connection that minted it.
    pub connection: String,
    /// The project it serves (its owner unless `group_id` is set).
    pub project_id: u64,
    /// Kind of credential.
    pub kind: CredentialKind,
    /// The group it lives on, for group-level credentials.
    pub group_id: Option<u64>,
}

impl Location {
    /// A project access token's location (the kind every record written before kinds had).
    pub fn project_token(connection: impl Into<String>, project_id: u64) -> Self {
        Self {
            connection: connection.into(),
            project_id,
            kind: CredentialKind::ProjectAccessToken,
            group_id: None,
        }
    }

    /// The project or group whose endpoints hold the credential.
    pub fn owner(&self) -> Owner {
        Owner::of(self.project_id, self.group_id)
    }

    /// The endpoint collection holding the credential (`groups/3/deploy_tokens`).
    pub fn collection(&self) -> String {
        self.kind.collection(self.owner())
    }
}

/// First retry of a failed revocation.
const REVOKE_BACKOFF_BASE: Duration = Duration::seconds(5);
/// Longest wait between revocation attempts.
const REVOKE_BACKOFF_MAX: Duration = Duration::minutes(10);

/// The location status recorded before the ledger existed: the connection and project last resolved.
fn legacy_location(status: &GitLabTokenStatus) -> Option<Location> {
    Some(Location::project_token(
        status.connection.clone()?,
        status.project.as_ref()?.id,
    ))
}

/// Fills the location of records written before the ledger existed from the status' last resolved
/// connection and project (which is where those tokens were minted). Call before anything
/// overwrites `status.connection` or `status.project`.
pub fn backfill_locations(status: &mut GitLabTokenStatus) {
    let Some(legacy) = legacy_location(status) else {
        return;
    };
    let fill = |connection: &mut Option<String>, project_id: &mut Option<u64>| {
        if connection.is_none() || project_id.is_none() {
            *connection = Some(legacy.connection.clone());
            *project_id = Some(legacy.project_id);
        }
    };
    if let Some(c) = status.current.as_mut() {
        fill(&mut c.connection, &mut c.project_id);
    }
    if let Some(p) = status.previous.as_mut() {
        fill(&mut p.connection, &mut p.project_id);
    }
    if let Some(p) = status.pending.as_mut() {
        fill(&mut p.connection, &mut p.project_id);
    }
}

fn location(
    connection: &Option<String>,
    project_id: Option<u64>,
    kind: CredentialKind,
    group_id: Option<u64>,
) -> Option<Location> {
    Some(Location {
        connection: connection.clone()?,
        project_id: project_id?,
        kind,
        group_id,
    })
}

/// Where the current token lives.
pub fn current_location(c: &CurrentToken) -> Option<Location> {
    location(&c.connection, c.project_id, c.kind, c.group_id)
}

/// Where the retiring token lives.
pub fn previous_location(p: &PreviousToken) -> Option<Location> {
    location(&p.connection, p.project_id, p.kind, p.group_id)
}

/// Where a revoking entry lives.
pub fn revoking_location(r: &RevokingToken) -> Location {
    Location {
        connection: r.connection.clone(),
        project_id: r.project_id,
        kind: r.kind,
        group_id: r.group_id,
    }
}

/// Keeps the replaced current token as `previous` until `revoke_after` (an `Overlap` rotation:
/// consumers move to the new token meanwhile); a `previous` still there is retired first.
pub fn keep_for_overlap(
    status: &mut GitLabTokenStatus,
    old: CurrentToken,
    revoke_after: DateTime<Utc>,
    now: DateTime<Utc>,
) {
    retire_previous(status, "Superseded", now);
    status.previous = Some(PreviousToken {
        token_id: old.token_id,
        kind: old.kind,
        group_id: old.group_id,
        connection: old.connection,
        project_id: old.project_id,
        revoke_after,
        nudged_at: None,
        replaced_at: Some(now),
    });
}

/// The overlap grace of an allowance as a time span.
pub fn overlap_grace(allowance: &crate::policy::Allowance) -> Duration {
    Duration::from_std(allowance.overlap_grace.to_std()).unwrap_or(Duration::minutes(10))
}

/// Moves a token to `revoking` (idempotent by id and location).
pub fn retire(status: &mut GitLabTokenStatus, token_id: u64, at: Location, reason: &str, now: DateTime<Utc>) {
    let known = status
        .revoking
        .iter()
        .any(|r| r.token_id == token_id && revoking_location(r) == at);
    if !known {
        status.revoking.push(RevokingToken {
            token_id,
            kind: at.kind,
            group_id: at.group_id,
            connection: at.connection,
            project_id: at.project_id,
            reason: reason.to_string(),
            since: now,
            attempts: 0,
            next_attempt: None,
            last_error: None,
        });
    }
}

/// Retires the current token (if any) for `reason`; a current token without a location cannot be
/// revoked and is reported by the caller.
pub fn retire_current(status: &mut GitLabTokenStatus, reason: &str, now: DateTime<Utc>) -> Option<u64> {
    let c = status.current.take()?;
    if let Some(at) = current_location(&c) {
        retire(status, c.token_id, at, reason, now);
    }
    Some(c.token_id)
}

/// Retires the previous token (if any) for `reason`.
pub fn retire_previous(status: &mut GitLabTokenStatus, reason: &str, now: DateTime<Utc>) -> Option<u64> {
    let p = status.previous.take()?;
    if let Some(at) = previous_location(&p) {
        retire(status, p.token_id, at, reason, now);
    }
    Some(p.token_id)
}

/// Retires every live token (withdrawal or deletion); `renewal_time` goes with them.
pub fn retire_all(status: &mut GitLabTokenStatus, reason: &str, now: DateTime<Utc>) -> Vec<u64> {
    let ids: Vec<u64> = [
        retire_current(status, reason, now),
        retire_previous(status, reason, now),
    ]
    .into_iter()
    .flatten()
    .collect();
    status.renewal_time = None;
    ids
}

/// The index of the first revocation whose attempt is due.
pub fn due_revocation(status: &GitLabTokenStatus, now: DateTime<Utc>) -> Option<usize> {
    status
        .revoking
        .iter()
        .position(|r| r.next_attempt.is_none_or(|t| t <= now))
}

/// The earliest time a waiting revocation is tried again.
pub fn next_revocation_attempt(status: &GitLabTokenStatus) -> Option<DateTime<Utc>> {
    status.revoking.iter().filter_map(|r| r.next_attempt).min()
}

/// Records a failed attempt with exponential backoff and jitter (`jitter` in 0..1).
pub fn revocation_failed(entry: &mut RevokingToken, error: &str, now: DateTime<Utc>, jitter: f64) {
    entry.attempts = entry.attempts.saturating_add(1);
    entry.last_error = Some(error.to_string());
    entry.next_attempt = Some(now + backoff(entry.attempts, jitter));
}

/// `base · 2^(attempts-1)`, capped, plus up to 20 % jitter so thousands of retries spread out.
pub fn backoff(attempts: u32, jitter: f64) -> Duration {
    let exp = attempts.saturating_sub(1).min(16);
    let raw = REVOKE_BACKOFF_BASE * 2i32.pow(exp);
    let capped = raw.min(REVOKE_BACKOFF_MAX);
    let extra = (capped.num_milliseconds() as f64 * 0.2 * jitter.clamp(0.0, 1.0)) as i64;
    capped + Duration::milliseconds(extra)
}

/// Every location the ledger names (for the orphan sweep and the connection finalizer).
pub fn locations(status: &GitLabTokenStatus) -> Vec<Location> {
    let mut out: Vec<Location> = [
        status.current.as_ref().and_then(current_location),
        status.previous.as_ref().and_then(previous_location),
        status
            .pending
            .as_ref()
            .and_then(|p| location(&p.connection, p.project_id, p.kind, p.group_id)),
    ]
    .into_iter()
    .flatten()
    .chain(status.revoking.iter().map(revoking_location))
    .collect();
    out.sort();
    out.dedup();
    out
}

/// Every token id the ledger accounts for.
pub fn token_ids(status: &GitLabTokenStatus) -> Vec<u64> {
    [
        status.current.as_ref().map(|c| c.token_id),
        status.previous.as_ref().map(|p| p.token_id),
    ]
    .into_iter()
    .flatten()
    .chain(status.revoking.iter().map(|r| r.token_id))
    .collect()
}

/// Whether the ledger holds nothing GitLab may still consider alive (the finalizer may go).
pub fn is_empty(status: &GitLabTokenStatus) -> bool {
    status.current.is_none()
        && status.previous.is_none()
        && status.pending.is_none()
        && status.revoking.is_empty()
}

#[cfg(test)]
mod tests {
    use chrono::{NaiveDate, TimeZone};

    use super::*;
    use crate::crd::ResolvedProject;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
    }

    fn current(id: u64, at: Option<(&str, u64)>) -> CurrentToken {
        CurrentToken {
            token_id: id,
            kind: CredentialKind::ProjectAccessToken,
            group_id: None,
            connection: at.map(|a| a.0.to_string()),
            project_id: at.map(|a| a.1),
            name: "gto-c-uid".into(),
            bot_user: "bot".into(),
            bot_user_id: None,
            created_at: now(),
            expires_at: NaiveDate::from_ymd_opt(2026, 3, 31).unwrap(),
            scopes: vec![],
            access_level: None,
            secret_digest: None,
            secret_version: None,
            last_verified: None,
        }
    }

    #[test]
    fn backfill_takes_the_last_resolved_location_and_keeps_recorded_ones() {
        let mut s = GitLabTokenStatus {
            connection: Some("old".into()),
            project: Some(ResolvedProject {
                id: 7,
                path: "a/b".into(),
            }),
            current: Some(current(1, None)),
            previous: Some(PreviousToken {
                token_id: 2,
                kind: CredentialKind::ProjectAccessToken,
                group_id: None,
                connection: Some("other".into()),
                project_id: Some(9),
                revoke_after: now(),
                nudged_at: None,
                replaced_at: None,
            }),
            ..Default::default()
        };
        backfill_locations(&mut s);
        let c = s.current.as_ref().unwrap();
        assert_eq!((c.connection.as_deref(), c.project_id), (Some("old"), Some(7)));
        let p = s.previous.as_ref().unwrap();
        assert_eq!((p.connection.as_deref(), p.project_id), (Some("other"), Some(9)));
    }

    #[test]
    fn retiring_keeps_each_token_at_its_own_location_until_confirmed() {
        let mut s = GitLabTokenStatus {
            current: Some(current(1, Some(("gitlab", 7)))),
            previous: Some(PreviousToken {
                token_id: 2,
                kind: CredentialKind::ProjectAccessToken,
                group_id: None,
                connection: Some("gitlab".into()),
                project_id: Some(8),
                revoke_after: now(),
                nudged_at: None,
                replaced_at: None,
            }),
            ..Default::default()
        };
        assert_eq!(retire_all(&mut s, "PolicyWithdrawn", now()), vec![1, 2]);
        assert!(s.current.is_none() && s.previous.is_none());
        let places: Vec<(u64, u64)> = s.revoking.iter().map(|r| (r.token_id, r.project_id)).collect();
        assert_eq!(places, vec![(1, 7), (2, 8)]);
        assert!(!is_empty(&s), "not empty until GitLab confirms");
        // Idempotent.
        retire(&mut s, 1, Location::project_token("gitlab", 7), "again", now());
        assert_eq!(s.revoking.len(), 2);
        assert_eq!(due_revocation(&s, now()), Some(0));
        revocation_failed(&mut s.revoking[0], "GitLab answered 503", now(), 0.0);
        assert_eq!(due_revocation(&s, now()), Some(1));
        assert_eq!(next_revocation_attempt(&s), Some(now() + Duration::seconds(5)));
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(1, 0.0), Duration::seconds(5));
        assert_eq!(backoff(2, 0.0), Duration::seconds(10));
        assert_eq!(backoff(5, 0.0), Duration::seconds(80));
        assert_eq!(backoff(30, 0.0), Duration::minutes(10));
        assert_eq!(backoff(30, 1.0), Duration::minutes(12));
    }
}
