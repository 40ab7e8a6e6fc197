//! The decision table of [`super::next_step`].
use chrono::{NaiveDate, TimeZone};

use super::*;
use crate::crd::{CurrentToken, PendingIssue, PendingOperation, PreviousToken, ResolvedProject};

fn t(h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, h, 0, 0).unwrap()
}

fn desired() -> Desired {
    Desired {
        kind: Default::default(),
        group_id: None,
        connection: "gitlab".into(),
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
            kind: Default::default(),
            group_id: None,
            token_id: 100,
            connection: Some("gitlab".into()),
            project_id: Some(7),
            name: "gto-c-uid".into(),
            bot_user: "project_7_bot_x".into(),
            bot_user_id: Some(5),
            created_at: t(0),
            expires_at: NaiveDate::from_ymd_opt(2026, 3, 31).unwrap(),
            scopes: vec![Scope::ReadRepository],
            access_level: Some(AccessLevel::Reporter),
            secret_digest: Some("d".into()),
            secret_version: None,
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
        instance: "me",
        pending_takeover: PENDING_TAKEOVER,
        has_consumers: false,
    }
}

#[test]
fn decision_table() {
    let d = desired();
    let fresh = GitLabTokenStatus::default();
    let steady = issued();
    let mut pending = issued();
    pending.pending = Some(PendingIssue {
        kind: Default::default(),
        group_id: None,
        token_name: "n".into(),
        connection: Some("gitlab".into()),
        project_id: Some(7),
        instance: Some("me".into()),
        operation: PendingOperation::Issue,
        started_at: t(0),
        rotating_token_id: None,
    });
    let mut pending_elsewhere = pending.clone();
    if let Some(p) = pending_elsewhere.pending.as_mut() {
        p.instance = Some("other".into());
        p.started_at = t(1) - chrono::Duration::seconds(20);
    }
    let mut pending_stale = pending_elsewhere.clone();
    if let Some(p) = pending_stale.pending.as_mut() {
        p.started_at = t(0);
    }
    let mut revoking = issued();
    revoking.revoking.push(crate::crd::RevokingToken {
        kind: Default::default(),
        group_id: None,
        token_id: 50,
        connection: "gitlab".into(),
        project_id: 6,
        reason: "Rotated".into(),
        since: t(0),
        attempts: 0,
        next_attempt: None,
        last_error: None,
    });
    let mut backing_off = revoking.clone();
    backing_off.revoking[0].next_attempt = Some(t(1) + chrono::Duration::seconds(40));
    backing_off.revoking[0].attempts = 3;
    let other_connection = Desired {
        connection: "other".into(),
        ..desired()
    };
    let mut overlapping = issued();
    overlapping.previous = Some(PreviousToken {
        kind: Default::default(),
        group_id: None,
        token_id: 99,
        connection: Some("gitlab".into()),
        project_id: Some(7),
        revoke_after: t(2),
        nudged_at: Some(t(1)),
        replaced_at: Some(t(1)),
    });
    let mut overlapping_unnudged = overlapping.clone();
    if let Some(p) = overlapping_unnudged.previous.as_mut() {
        p.nudged_at = None;
    }
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
            "another process' fresh write-ahead record: wait for it",
            &pending_elsewhere,
            &d,
            |_| {},
            Step::Wait(PENDING_TAKEOVER - Duration::from_secs(20)),
        ),
        (
            "another process' fresh record, but this process holds the leader Lease: recover",
            &pending_elsewhere,
            &d,
            |o| o.pending_takeover = Duration::ZERO,
            Step::RecoverPending,
        ),
        (
            "another process' stale write-ahead record: recover",
            &pending_stale,
            &d,
            |_| {},
            Step::RecoverPending,
        ),
        (
            "a due revocation comes before anything else",
            &revoking,
            &moved,
            |o| o.secret = SecretState::Missing,
            Step::Revoke(0),
        ),
        (
            "a revocation backing off bounds the wait",
            &backing_off,
            &d,
            |_| {},
            Step::Wait(Duration::from_secs(40)),
        ),
        (
            "connection changed: rotate to a token minted through it",
            &steady,
            &other_connection,
            |_| {},
            Step::Issue(IssueReason::SpecChanged),
        ),
        (
            "extra keys in the Secret are not an edit",
            &steady,
            &d,
            |o| {
                o.secret = SecretState::Ours {
                    token_id: Some(100),
                    matches: true,
                }
            },
            Step::Wait(MAX_WAIT),
        ),
        (
            "overlap: a nudge that failed is retried before waiting",
            &overlapping_unnudged,
            &d,
            |o| o.has_consumers = true,
            Step::Nudge,
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
            Step::RetirePrevious,
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
            Step::RetirePrevious,
        ),
        (
            "overlap: grace over",
            &overlapping,
            &d,
            |o| {
                o.consumers_caught_up = Some(false);
                o.now = t(3);
            },
            Step::RetirePrevious,
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

#[test]
fn a_group_credential_is_not_reissued_when_the_spec_names_another_project_below_its_group() {
    use crate::crd::CredentialKind;
    let mut status = issued();
    if let Some(c) = status.current.as_mut() {
        c.kind = CredentialKind::GroupAccessToken;
        c.group_id = Some(3);
    }
    let mut d = desired();
    d.kind = CredentialKind::GroupAccessToken;
    d.group_id = Some(3);
    d.project_id = 8;
    assert_ne!(
        next_step(&observe(&status, &d)),
        Step::Issue(IssueReason::SpecChanged),
        "the shared group token serves the new spec project as it is"
    );
    // Another group is another place: re-issued.
    d.group_id = Some(4);
    assert_eq!(
        next_step(&observe(&status, &d)),
        Step::Issue(IssueReason::SpecChanged)
    );
    // A project credential still moves with its project.
    let mut d = desired();
    d.project_id = 8;
    assert_eq!(
        next_step(&observe(&issued(), &d)),
        Step::Issue(IssueReason::SpecChanged)
    );
}
