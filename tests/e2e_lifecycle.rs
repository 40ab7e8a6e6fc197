//! Token lifecycle with the clock moved (DESIGN §6.2–6.3): renewal happens at the computed time,
//! an `Overlap` rotation never breaks a consumer, `InPlace` keeps the bot user. Every test ends
//! with a leak scan of the operator's logs, events, GitLabToken objects and metrics.

mod e2e;

use std::time::Instant;

use chrono::{Duration as Days, TimeDelta};
use e2e::{
    Env,
    lifecycle::{
        ConsumerLoop, annotated_repo, credentials, git_repositories, gitlab_token, operator_api_calls,
        secret_token_id, token_mints, wait_flux_ready, wait_secret_token,
    },
};
use gitlab_token_operator::{schedule::death, secret::RENEWAL_TIME_ANNOTATION};
use kube::ResourceExt;
use serde_json::json;
use testbed::flux::status::Outcome;

const NS: &str = "team-a";
const SOURCE: &str = "app";
const TOKEN: &str = "app-gitlab-token";
const PROJECT: &str = "acme/team-a/app";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlap_renewal_happens_at_the_computed_time_and_no_consumer_ever_fails() {
    let started = Instant::now();
    let env = Env::start().await;
    let seen = env.watch_secret_values();
    seen.add(env.world.operator_token().expect("seeded"));
    let url = annotated_repo(&env, NS, SOURCE, PROJECT, "2s").await;

    let t1 = env
        .wait_token_condition(NS, TOKEN, "Ready", "True", Some("Issued"))
        .await;
    let s1 = t1.status.clone().expect("status");
    let c1 = s1.current.clone().expect("current token");
    let renewal = s1.renewal_time.expect("renewal time");
    let secret1 = wait_secret_token(&env, NS, TOKEN, c1.token_id).await;
    let (_, pass1) = credentials(&secret1);
    let annotated: chrono::DateTime<chrono::Utc> = secret1
        .annotations()
        .get(RENEWAL_TIME_ANNOTATION)
        .expect("renewal annotation")
        .parse()
        .expect("RFC 3339");
    assert_eq!(
        annotated, renewal,
        "Secret and status disagree on the renewal time"
    );
    // Default policy: 30-day lifetime, renew one third (10 days) before expiry, within that UTC day
    // (or the day before when jitter would land within 24 h of death).
    let issued_day = c1.created_at.date_naive();
    assert_eq!((c1.expires_at - issued_day).num_days(), 30);
    let days_before = (c1.expires_at - renewal.date_naive()).num_days();
    assert!(
        (10..=11).contains(&days_before),
        "renewal {renewal} vs expiry {}",
        c1.expires_at
    );
    assert!(renewal <= death(c1.expires_at) - TimeDelta::hours(24));

    wait_flux_ready(&env, NS, SOURCE).await;
    let flux = env.world.flux.as_ref().expect("Flux stand-in");
    let consumer = ConsumerLoop::start(&env, NS, TOKEN, &url);

    // Just before the renewal time: the operator reconciles (it re-verifies the token, which is
    // overdue after the jump) and mints nothing.
    env.world
        .advance_clock(renewal - Days::minutes(10) - env.gitlab_now())
        .expect("clock");
    let moved = env.gitlab_now();
    let t = env
        .wait_token(NS, TOKEN, "re-verified after the clock move", |t| {
            let c = t.status.as_ref().and_then(|s| s.current.as_ref());
            c.and_then(|c| c.last_verified)
                .is_some_and(|v| v >= moved - Days::seconds(5))
        })
        .await;
    let s = t.status.expect("status");
    assert_eq!(s.current.expect("current").token_id, c1.token_id, "renewed early");
    assert!(s.previous.is_none());
    assert_eq!(
        token_mints(&env, 0).len(),
        1,
        "a token was minted before the renewal time"
    );
    assert_eq!(env.gitlab_tokens(PROJECT).len(), 1);

    // Past it: a new token, the Secret switches, consumers are nudged, the old token is revoked
    // once they caught up.
    let fetches_before = flux.fetches().len();
    let calls_before = env.world.gitlab.calls().len();
    env.world
        .advance_clock(renewal + Days::minutes(5) - env.gitlab_now())
        .expect("clock");
    let t2 = env
        .wait_token(NS, TOKEN, "a new current token", |t| {
            t.status
                .as_ref()
                .and_then(|s| s.current.as_ref())
                .is_some_and(|c| c.token_id != c1.token_id)
        })
        .await;
    let c2 = t2
        .status
        .as_ref()
        .and_then(|s| s.current.clone())
        .expect("current");
    assert!(
        c2.created_at >= renewal,
        "renewed at {} before {renewal}",
        c2.created_at
    );
    let secret2 = wait_secret_token(&env, NS, TOKEN, c2.token_id).await;
    let (_, pass2) = credentials(&secret2);
    assert_ne!(pass1, pass2);
    assert_eq!(
        token_mints(&env, calls_before).len(),
        1,
        "one new token per renewal"
    );

    let t3 = env
        .wait_token(NS, TOKEN, "the previous token revoked", |t| {
            t.status.as_ref().is_some_and(|s| {
                s.previous.is_none()
                    && s.history
                        .iter()
                        .any(|h| h.token_id == c1.token_id && h.revoked_at.is_some())
            })
        })
        .await;
    let revoked_seen = flux.fetches().len();
    let s3 = t3.status.expect("status");
    let h1 = s3
        .history
        .iter()
        .find(|h| h.token_id == c1.token_id)
        .expect("history of the old token");
    assert_eq!(h1.reason.as_deref(), Some("Rotated"));
    assert_eq!(gitlab_token(&env, c1.token_id).state, "revoked");
    assert_eq!(gitlab_token(&env, c2.token_id).state, "active");
    assert_eq!(env.active_operator_tokens().len(), 1);
    // Revoked because the consumer caught up, not because the 10-minute grace ran out.
    let repo = git_repositories(&env, NS)
        .await
        .get(SOURCE)
        .await
        .expect("source");
    let requested = repo
        .annotations()
        .get("reconcile.fluxcd.io/requestedAt")
        .cloned()
        .expect("the operator nudged the source");
    let handled = repo.data["status"]["lastHandledReconcileAt"]
        .as_str()
        .expect("the source handled a request")
        .to_string();
    assert_eq!(handled, requested);
    let handled: chrono::DateTime<chrono::Utc> = handled.parse().expect("RFC 3339");
    let revoked_at = h1.revoked_at.expect("revoked");
    assert!(
        revoked_at >= handled,
        "revoked before the consumer handled the nudge"
    );
    assert!(
        revoked_at < c2.created_at + Days::minutes(10),
        "revoked only by the grace"
    );
    for reason in ["Rotated", "Nudged", "Revoked"] {
        env.wait_token_event(NS, TOKEN, reason).await;
    }

    // Keep both consumers going until each has used the new token after the revocation.
    let ok_at_revocation = consumer.ok_so_far();
    e2e::eventually("consumers to keep fetching after the revocation", || {
        let (ok, fetched) = (consumer.ok_so_far(), flux.fetches().len());
        async move { (ok >= ok_at_revocation + 3 && fetched >= revoked_seen + 2).then_some(()) }
    })
    .await;
    let report = consumer.finish().await;
    assert!(
        report.failures.is_empty(),
        "git ls-remote failed: {:?}",
        report.failures
    );
    assert_eq!(report.ids, vec![c1.token_id, c2.token_id]);

    let fetches: Vec<_> = flux
        .fetches()
        .into_iter()
        .filter(|f| f.name == SOURCE && f.namespace == NS)
        .collect();
    let first_ready = fetches
        .iter()
        .position(|f| matches!(f.outcome, Outcome::Ready(_)))
        .expect("a Ready fetch");
    let failed: Vec<_> = fetches[first_ready..]
        .iter()
        .filter(|f| !matches!(f.outcome, Outcome::Ready(_)))
        .collect();
    assert!(
        failed.is_empty(),
        "Flux fetches failed during the rotation: {failed:?}"
    );

    let scanned = env.assert_no_leaks(&seen.values()).await;
    eprintln!(
        "overlap: renewal {renewal} (expiry {}), {} Flux fetches all Ready ({} during the rotation window), {} git \
         ls-remote runs all ok, {} operator API calls for 2 tokens, leak scan {} values over {scanned} bytes, {:?}",
        c1.expires_at,
        fetches.len() - first_ready,
        revoked_seen.saturating_sub(fetches_before),
        report.ok,
        operator_api_calls(&env),
        seen.values().len(),
        started.elapsed()
    );
    drop(seen);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_place_rotation_keeps_the_bot_user_and_revokes_the_old_token_at_once() {
    let started = Instant::now();
    let env = Env::start().await;
    let seen = env.watch_secret_values();
    seen.add(env.world.operator_token().expect("seeded"));
    env.apply(
        json!({"apiVersion": "gitlabtokens.io/v1alpha1", "kind": "GitLabTokenPolicy",
        "metadata": {"name": "teams"},
        "spec": {"namespaceSelector": {"matchNames": ["team-*"]}, "projects": ["acme/**"],
                 "scopes": ["read_repository", "read_registry", "read_api", "api", "write_repository"],
                 "maxAccessLevel": "developer", "rotationStrategy": "InPlace"}}),
    )
    .await;
    let url = annotated_repo(&env, NS, SOURCE, PROJECT, "1m").await;
    let t1 = env
        .wait_token_condition(NS, TOKEN, "Ready", "True", Some("Issued"))
        .await;
    let s1 = t1.status.clone().expect("status");
    let c1 = s1.current.clone().expect("current");
    let secret1 = wait_secret_token(&env, NS, TOKEN, c1.token_id).await;
    let (user1, pass1) = credentials(&secret1);
    assert!(c1.bot_user_id.is_some(), "the bot user id is recorded");

    let calls_before = env.world.gitlab.calls().len();
    env.world
        .advance_clock(s1.renewal_time.expect("renewal") + Days::minutes(5) - env.gitlab_now())
        .expect("clock");
    let t2 = env
        .wait_token(NS, TOKEN, "a rotated token", |t| {
            t.status
                .as_ref()
                .and_then(|s| s.current.as_ref())
                .is_some_and(|c| c.token_id != c1.token_id)
        })
        .await;
    // Revoked at once: the moment the new token is recorded, the old one is dead.
    assert_eq!(gitlab_token(&env, c1.token_id).state, "revoked");
    let s2 = t2.status.expect("status");
    let c2 = s2.current.expect("current");
    assert!(s2.previous.is_none(), "InPlace keeps no overlap");
    assert_eq!(c2.bot_user_id, c1.bot_user_id, "bot user changed");
    assert_eq!(c2.bot_user, c1.bot_user);
    let g2 = gitlab_token(&env, c2.token_id);
    assert_eq!(g2.state, "active");
    assert_eq!(g2.previous_id, Some(c1.token_id), "not GitLab's rotate endpoint");
    let mints = token_mints(&env, calls_before);
    assert_eq!(
        mints,
        vec![format!(
            "/api/v4/projects/{}/access_tokens/{}/rotate",
            s2.project.expect("project").id,
            c1.token_id
        )]
    );

    let secret2 = wait_secret_token(&env, NS, TOKEN, c2.token_id).await;
    let (user2, pass2) = credentials(&secret2);
    assert_eq!(user1, user2, "the Secret's username changed");
    assert_ne!(pass1, pass2);
    e2e::git_ls_remote(&url, &user2, &pass2)
        .await
        .expect("the new value works");
    assert!(
        e2e::git_ls_remote(&url, &user1, &pass1).await.is_err(),
        "the old value still works"
    );
    env.wait_token_event(NS, TOKEN, "Rotated").await;
    assert_eq!(secret_token_id(&secret2), Some(c2.token_id));

    let scanned = env.assert_no_leaks(&seen.values()).await;
    eprintln!(
        "in-place: bot user {} kept across rotation {} -> {}, {} operator API calls for 2 tokens, leak scan {} \
         values over {scanned} bytes, {:?}",
        c2.bot_user,
        c1.token_id,
        c2.token_id,
        operator_api_calls(&env),
        seen.values().len(),
        started.elapsed()
    );
    drop(seen);
    env.stop().await;
}
