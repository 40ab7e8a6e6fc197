//! Regression tests for issue 9's failure and withdrawal problems, end to end with the real
//! binary: (4) a Secret write that always fails, (6) a failed nudge, (7) access withdrawn by every
//! route, (9) a GitLab outage while a renewal is due. Observation windows end on a count of
//! reconciles (with a cap), never on a bare sleep.

mod e2e;

use std::time::{Duration, Instant};

use e2e::{
    CONNECTION, Env, WAIT,
    crash::{
        APP_PROJECT as PROJECT, APP_TOKEN as TOKEN, current_token_id, issued_app, observe_reconciles,
        token_state,
    },
    eventually,
    lifecycle::token_mints,
};
use gitlab_token_operator::crd::GitLabToken;
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api,
    api::{Patch, PatchParams},
};
use serde_json::json;
use testbed::kube::AdmissionDenial;

/// How long a settled state may take to appear.
const SETTLE: Duration = Duration::from_secs(90);

/// (4) A Secret write that always fails (an admission webhook answering 422) mints at most one
/// token and never deletes the working Secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_write_that_always_fails_mints_at_most_once_and_keeps_the_working_secret() {
    let env = Env::start().await;
    let (_, id) = issued_app(&env, "team-a").await;
    let calls = env.world.gitlab.calls().len();
    env.world.kube.controls().deny_admission(AdmissionDenial {
        webhook: "freeze.secrets.example.com".into(),
        resource: "secrets".into(),
        namespace: "team-a".into(),
        code: 422,
        message: "Secrets in team-a are frozen".into(),
    });
    env.request_renewal("team-a", TOKEN).await;
    let seen = observe_reconciles(&env, 4.0, WAIT).await;
    let mints = token_mints(&env, calls);
    let secret = Api::<Secret>::namespaced(env.client.clone(), "team-a")
        .get_opt(TOKEN)
        .await
        .expect("get");
    let held = secret.as_ref().and_then(e2e::lifecycle::secret_token_id);
    let git = env.secret_works_with_git("team-a", TOKEN, PROJECT).await;
    eprintln!(
        "Secret writes denied: {} mint(s) over {seen} reconciles; Secret {} holding {held:?} (was {id}); git {git:?}",
        mints.len(),
        if secret.is_some() { "kept" } else { "DELETED" }
    );
    env.world.kube.controls().clear_admission_denials();
    let recovered = env
        .settle(SETTLE, || async {
            let mut p = env
                .secret_problem("team-a", TOKEN)
                .await
                .into_iter()
                .collect::<Vec<_>>();
            p.extend(env.ledger_violations(None).await);
            p
        })
        .await;
    env.stop().await;
    assert!(
        mints.len() <= 1,
        "minted {} tokens while the Secret could not be written",
        mints.len()
    );
    assert!(secret.is_some(), "the working Secret was deleted");
    git.expect("the Secret kept working while writes failed");
    recovered.expect("once writes are allowed again the token is Ready and accounted for");
}

/// (6) A failed nudge does not skip the overlap: the old token lives until consumers confirm or
/// the grace ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_nudge_keeps_the_overlap() {
    let env = Env::start().await;
    let (_, old) = issued_app(&env, "team-a").await;
    env.world.kube.controls().deny_admission(AdmissionDenial {
        webhook: "freeze.sources.example.com".into(),
        resource: "gitrepositories".into(),
        namespace: "team-a".into(),
        code: 403,
        message: "sources in team-a are frozen".into(),
    });
    env.request_renewal("team-a", TOKEN).await;
    let api: Api<Secret> = Api::namespaced(env.client.clone(), "team-a");
    let new = eventually("the Secret to hold a new token", || async {
        api.get_opt(TOKEN)
            .await
            .ok()
            .flatten()
            .and_then(|s| e2e::lifecycle::secret_token_id(&s))
            .filter(|id| *id != old)
    })
    .await;
    let seen = observe_reconciles(&env, 3.0, WAIT).await;
    let during = token_state(&env, old);
    eprintln!("failed nudge: new token {new}, old token {old} {during} after {seen} more reconciles");
    env.world.kube.controls().clear_admission_denials();
    env.world
        .advance_clock(chrono::Duration::minutes(11))
        .expect("clock");
    let retired = env
        .settle(SETTLE, || async {
            let mut p = Vec::new();
            if token_state(&env, old) == "active" {
                p.push(format!("old token {old} still active after the grace"));
            }
            p.extend(env.secret_problem("team-a", TOKEN).await);
            p
        })
        .await;
    env.stop().await;
    assert_eq!(
        during, "active",
        "the old token was revoked without the overlap's grace"
    );
    retired.expect("the old token is revoked once the grace ends");
}

/// A GitLabToken `w` in `ns` for `PROJECT`, optionally retained on deletion.
fn direct_token(ns: &str, retain: bool) -> serde_json::Value {
    json!({"apiVersion": "gitlabtokens.io/v1alpha1", "kind": "GitLabToken",
        "metadata": {"name": "w", "namespace": ns},
        "spec": {"project": PROJECT, "scopes": ["read_repository"], "secret": {"name": "w", "format": "basic-auth"},
                 "deletionPolicy": if retain { "Retain" } else { "Revoke" }}})
}

/// A policy for the namespaces `names` or carrying `labels`.
fn policy(name: &str, names: &[&str], labels: serde_json::Value) -> serde_json::Value {
    json!({"apiVersion": "gitlabtokens.io/v1alpha1", "kind": "GitLabTokenPolicy", "metadata": {"name": name},
        "spec": {"namespaceSelector": {"matchNames": names, "matchLabels": labels}, "projects": ["acme/**"],
                 "scopes": ["read_repository"], "maxAccessLevel": "reporter"}})
}

/// How long until token `id` is no longer active, up to 30 s.
async fn revoked_within_30s(env: &Env, id: u64, since: Instant) -> Result<Duration, String> {
    loop {
        if token_state(env, id) != "active" {
            return Ok(since.elapsed());
        }
        if since.elapsed() > Duration::from_secs(30) {
            return Err(format!("token {id} still active 30 s after access was withdrawn"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn ready_token(env: &Env, ns: &str) -> u64 {
    let t = env.wait_token_condition(ns, "w", "Ready", "True", None).await;
    current_token_id(&t).expect("current")
}

/// (7) Access withdrawn by any route revokes within 30 s: policy deleted, namespace relabelled
/// out of the selector, connection deleted; `Retain` without a policy allowing it still revokes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withdrawn_access_revokes_within_30_seconds() {
    let env = Env::start().await;
    env.namespace("pol-a").await;
    env.apply(json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "lbl-b", "labels": {"e2e.gitlabtokens.io/tokens": "allowed"}}}))
        .await;
    env.apply(policy("pol-a", &["pol-a"], json!({}))).await;
    env.apply(policy(
        "lbl-b",
        &[],
        json!({"e2e.gitlabtokens.io/tokens": "allowed"}),
    ))
    .await;
    for (ns, retain) in [("pol-a", false), ("lbl-b", false), ("team-a", true)] {
        env.apply(direct_token(ns, retain)).await;
    }
    let (a, b, d) = (
        ready_token(&env, "pol-a").await,
        ready_token(&env, "lbl-b").await,
        ready_token(&env, "team-a").await,
    );
    let mut results = Vec::new();

    let since = Instant::now();
    let policies: Api<gitlab_token_operator::crd::GitLabTokenPolicy> = Api::all(env.client.clone());
    policies
        .delete("pol-a", &Default::default())
        .await
        .expect("delete policy");
    results.push(("policy deleted", revoked_within_30s(&env, a, since).await));

    let since = Instant::now();
    env.namespaces()
        .patch(
            "lbl-b",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"e2e.gitlabtokens.io/tokens": null}}})),
        )
        .await
        .expect("relabel");
    results.push(("namespace relabelled", revoked_within_30s(&env, b, since).await));

    let since = Instant::now();
    Api::<GitLabToken>::namespaced(env.client.clone(), "team-a")
        .delete("w", &Default::default())
        .await
        .expect("delete");
    results.push((
        "Retain without a policy allowing it, deleted",
        revoked_within_30s(&env, d, since).await,
    ));

    // Last: the connection itself goes (every token of this world depended on it).
    env.apply(direct_token("team-a", false)).await;
    let c = eventually("a fresh token in team-a", || async {
        let t = Api::<GitLabToken>::namespaced(env.client.clone(), "team-a")
            .get_opt("w")
            .await
            .ok()??;
        current_token_id(&t).filter(|id| *id != d && token_state(&env, *id) == "active")
    })
    .await;
    let since = Instant::now();
    Api::<gitlab_token_operator::crd::GitLabConnection>::all(env.client.clone())
        .delete(CONNECTION, &Default::default())
        .await
        .expect("delete connection");
    results.push(("connection deleted", revoked_within_30s(&env, c, since).await));
    for (route, r) in &results {
        eprintln!("withdrawn access, {route}: {r:?}");
    }
    env.stop().await;
    let failed: Vec<_> = results.iter().filter(|(_, r)| r.is_err()).collect();
    assert!(failed.is_empty(), "{failed:#?}");
}

/// (9) A GitLab outage while a renewal is due: a condition names GitLab and the next try, the
/// still-valid Secret keeps `Ready=True`, also across the connection's re-check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gitlab_outage_during_a_due_renewal_is_visible_and_keeps_ready() {
    let env = Env::start().await;
    let (_, id) = issued_app(&env, "team-a").await;
    env.world
        .gitlab
        .add_fault(testbed::gitlab::FaultRule {
            method: None,
            path: "/api/v4/*".into(),
            action: testbed::gitlab::FaultAction::Status { status: 503 },
            times: None,
        })
        .expect("fault");
    env.world
        .advance_clock(chrono::Duration::days(21))
        .expect("clock");
    let api: Api<GitLabToken> = Api::namespaced(env.client.clone(), "team-a");
    let retry = regex::Regex::new(r"(?i)retry|next (try|attempt)|again|will try").expect("regex");
    let check = || async {
        let mut p = Vec::new();
        let Ok(t) = api.get(TOKEN).await else {
            return vec!["GitLabToken unreadable".to_string()];
        };
        let conditions = t.status.map(|s| s.conditions).unwrap_or_default();
        if !gitlab_token_operator::controller::conditions::is_ready(&conditions) {
            p.push(format!("Ready is not True: {conditions:?}"));
        }
        let named = conditions.iter().any(|c| {
            c.type_ != "Ready"
                && format!("{} {}", c.reason, c.message).contains("GitLab")
                && retry.is_match(&c.message)
        });
        if !named {
            p.push(format!(
                "no condition names GitLab and the next try: {conditions:?}"
            ));
        }
        p
    };
    let shown = env.settle(WAIT, check).await;
    let seen = observe_reconciles(&env, 3.0, WAIT).await;
    let after_reconciles = check().await;
    // The connection's periodic re-check (10 min) during the outage.
    env.world
        .advance_clock(chrono::Duration::minutes(11))
        .expect("clock");
    let seen2 = observe_reconciles(&env, 3.0, WAIT).await;
    let after_recheck = check().await;
    let git = env.secret_works_with_git("team-a", TOKEN, PROJECT).await;
    eprintln!(
        "GitLab outage: condition shown {shown:?}; after {seen} reconciles {after_reconciles:?}; after the \
         connection re-check and {seen2} reconciles {after_recheck:?}; Secret (token {id}) with git {git:?}"
    );
    env.world.gitlab.state().clear_faults();
    env.stop().await;
    shown.expect("a condition naming GitLab and the next try, with Ready=True");
    assert!(after_reconciles.is_empty(), "{after_reconciles:#?}");
    assert!(after_recheck.is_empty(), "{after_recheck:#?}");
    git.expect("the Secret still works");
}
