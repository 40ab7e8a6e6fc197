//! Regression tests for issue 9's accounting problems, end to end with the real binary: (1) a key
//! added to the Secret by another writer, (2) two operators without leader election, (3) a token
//! moved to another project, (10) adoption after a crash between Secret and status. Failures and
//! withdrawn access (4, 6, 7, 9) are in `e2e_withdrawal.rs`; 5, 8, 11 and 12 are covered elsewhere. Each asserts the invariant the issue states, with counts of
//! GitLab calls and reconciles rather than durations; observation windows end on a count of
//! reconciles (with a cap), never on a bare sleep.

mod e2e;

use std::time::{Duration, Instant};

use base64::Engine;
use e2e::{
    Env, Options, WAIT,
    crash::{
        APP_PROJECT as PROJECT, APP_TOKEN as TOKEN, current_token_id, issued_app, observe_reconciles,
        token_state,
    },
    eventually,
    invariants::Monitor,
    lifecycle::{annotated_repo, git_repositories, token_mints},
};
use gitlab_token_operator::crd::GitLabToken;
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams},
};
use serde_json::json;

/// How long a settled state may take to appear.
const SETTLE: Duration = Duration::from_secs(90);

/// Makes the GitLabToken reconcile `n` times, each time waiting for the reconcile count to move.
async fn poke(env: &Env, ns: &str, name: &str, n: usize) {
    let api: Api<GitLabToken> = Api::namespaced(env.client.clone(), ns);
    for i in 0..n {
        let before = env.token_reconciles().await;
        let patch = json!({"metadata": {"annotations": {"e2e.gitlabtokens.io/poke": format!("{i}")}}});
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("poke");
        eventually("a reconcile after the poke", || async {
            (env.token_reconciles().await > before).then_some(())
        })
        .await;
    }
}

/// (1) Another writer's `ca.crt` in a managed Secret: kept, and no extra token minted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_added_to_the_secret_by_another_writer_is_kept_and_mints_nothing() {
    let env = Env::start().await;
    let (_, id) = issued_app(&env, "team-a").await;
    let calls = env.world.gitlab.calls().len();
    let pem = "-----BEGIN CERTIFICATE-----\nMIIBe2UtY2EtZm9yLXNlbGYtbWFuYWdlZC1naXRsYWI=\n-----END CERTIFICATE-----\n";
    let ca = base64::engine::general_purpose::STANDARD.encode(pem);
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), "team-a");
    secrets
        .patch(
            TOKEN,
            &PatchParams::apply("flux-ca"),
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": TOKEN, "namespace": "team-a"}, "data": {"ca.crt": ca}})),
        )
        .await
        .expect("another field manager adds ca.crt");
    // A merge patch by a third writer adds another key the operator does not own.
    secrets
        .patch(
            TOKEN,
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"known_hosts": base64::engine::general_purpose::STANDARD.encode("gitlab.example ssh-ed25519 AAAA")}})),
        )
        .await
        .expect("merge patch adds known_hosts");
    poke(&env, "team-a", TOKEN, 3).await;
    let seen = observe_reconciles(&env, 2.0, Duration::from_secs(20)).await;
    let mints = token_mints(&env, calls);
    let secret = secrets.get(TOKEN).await.expect("Secret");
    let keys: Vec<String> = secret.data.iter().flatten().map(|(k, _)| k.clone()).collect();
    let now_id = e2e::lifecycle::secret_token_id(&secret);
    eprintln!(
        "ca.crt added: {} token(s) minted over 3 pokes + {seen} reconciles, Secret keys {keys:?}, token {now_id:?} \
         (was {id})",
        mints.len()
    );
    assert!(
        mints.is_empty(),
        "extra tokens minted after another writer added keys: {mints:?}"
    );
    assert!(keys.iter().any(|k| k == "ca.crt"), "ca.crt was dropped: {keys:?}");
    assert!(
        keys.iter().any(|k| k == "known_hosts"),
        "known_hosts was dropped: {keys:?}"
    );
    assert_eq!(now_id, Some(id));
    assert_eq!(token_state(&env, id), "active");
    env.secret_works_with_git("team-a", TOKEN, PROJECT)
        .await
        .expect("the Secret still works");
    env.stop().await;
}

/// (2) Two operator processes without leader election through issue, a due renewal and
/// deletion: exactly the needed tokens, never a duplicate, never a Ready token with a dead Secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_unelected_operators_mint_each_token_once() {
    let started = Instant::now();
    let mut env = Env::start_with(Options {
        operator_env: vec![("GTO_LEADER_ELECT".into(), "false".into())],
        ..Default::default()
    })
    .await;
    env.start_unelected(1, &[]).await;
    let monitor = Monitor::start(&env);
    env.namespace("team-b").await;
    annotated_repo(&env, "team-a", "app", PROJECT, "1m").await;
    annotated_repo(&env, "team-b", "app", "acme/team-b/api", "1m").await;
    let mut first = Vec::new();
    for ns in ["team-a", "team-b"] {
        let t = env.wait_token_condition(ns, TOKEN, "Ready", "True", None).await;
        first.push(current_token_id(&t).expect("current"));
    }
    let issue_mints = token_mints(&env, 0).len();

    // Renewal due for both (30-day lifetime, renewed a third before expiry).
    env.world
        .advance_clock(chrono::Duration::days(21))
        .expect("clock");
    let renewed = env
        .settle(SETTLE, || async {
            let mut p = Vec::new();
            for (ns, old) in ["team-a", "team-b"].iter().zip(&first) {
                let t = Api::<GitLabToken>::namespaced(env.client.clone(), ns)
                    .get(TOKEN)
                    .await
                    .ok();
                let s = t.as_ref().and_then(|t| t.status.clone());
                let cur = s.as_ref().and_then(|s| s.current.as_ref()).map(|c| c.token_id);
                if cur.is_none() || cur == Some(*old) {
                    p.push(format!("{ns}: not renewed yet ({cur:?})"));
                }
                if s.as_ref().is_some_and(|s| s.previous.is_some()) || token_state(&env, *old) == "active" {
                    p.push(format!("{ns}: overlap not finished"));
                }
                p.extend(env.secret_problem(ns, TOKEN).await);
            }
            p
        })
        .await;
    let renewal_mints = token_mints(&env, 0).len() - issue_mints;

    // Deletion of one source.
    let a_uid = Api::<GitLabToken>::namespaced(env.client.clone(), "team-a")
        .get(TOKEN)
        .await
        .expect("token")
        .uid()
        .expect("uid");
    env.delete(&git_repositories(&env, "team-a").await, "app").await;
    let deleted = env
        .settle(SETTLE, || async {
            let mut p = env.ledger_violations(None).await;
            let left = env
                .active_marker_tokens()
                .into_iter()
                .filter(|t| t.name.ends_with(&a_uid))
                .count();
            if left > 0 {
                p.push(format!("{left} active token(s) left for the deleted source"));
            }
            p.extend(env.secret_problem("team-b", TOKEN).await);
            p
        })
        .await;
    let total = token_mints(&env, 0).len();
    let violations = monitor.violations();
    eprintln!(
        "two unelected operators: {issue_mints} mints to issue 2 tokens, {renewal_mints} to renew them, {total} in \
         all; at most {} active tokens for one GitLabToken at once; {} violation(s) seen; {:?}",
        monitor.max_active_per_token(),
        violations.len(),
        started.elapsed()
    );
    drop(monitor);
    let git = env
        .secret_works_with_git("team-b", TOKEN, "acme/team-b/api")
        .await;
    env.stop().await;
    assert!(violations.is_empty(), "{violations:#?}");
    assert_eq!(issue_mints, 2, "two tokens needed to issue");
    renewed.expect("both tokens renewed with one overlap each");
    assert_eq!(renewal_mints, 2, "two tokens needed to renew");
    deleted.expect("deletion revoked and left the other token working");
    assert_eq!(total, 4, "duplicate mints");
    git.expect("the remaining Secret works");
}

/// The DELETE calls GitLab answered for `token_id`, as `(project segment, status)`.
fn revocations_of(env: &Env, token_id: u64) -> Vec<(String, u16)> {
    env.world
        .gitlab
        .calls()
        .into_iter()
        .filter(|c| c.method == "DELETE" && c.path.ends_with(&format!("/access_tokens/{token_id}")))
        .map(|c| {
            let project = c
                .path
                .trim_start_matches("/api/v4/projects/")
                .split('/')
                .next()
                .unwrap_or_default()
                .to_string();
            (project, c.status)
        })
        .collect()
}

/// Waits for GitLabToken `ns/name` to serve `path` Ready with a token other than `old`;
/// `Err` says what the status showed instead.
async fn moved(env: &Env, ns: &str, name: &str, path: &str, old: u64) -> Result<Duration, Vec<String>> {
    let api: Api<GitLabToken> = Api::namespaced(env.client.clone(), ns);
    env.settle(WAIT, || async {
        let s = api.get(name).await.ok().and_then(|t| t.status);
        let on = s.as_ref().and_then(|s| s.project.as_ref()).map(|p| p.path.clone());
        let cur = s.as_ref().and_then(|s| s.current.as_ref()).map(|c| c.token_id);
        let ready = s
            .as_ref()
            .is_some_and(|s| gitlab_token_operator::controller::conditions::is_ready(&s.conditions));
        if on.as_deref() == Some(path) && cur.is_some_and(|c| c != old) && ready {
            Vec::new()
        } else {
            vec![format!(
                "{ns}/{name} should serve {path} with a new token: status project {on:?}, current token {cur:?} \
                 (old {old}), Ready {ready}"
            )]
        }
    })
    .await
}

/// Problems after a move from project id `old_project` (token `old`) to `path`.
async fn move_problems(
    env: &Env,
    ns: &str,
    secret: &str,
    path: &str,
    old_project: u64,
    old: u64,
) -> Vec<String> {
    let mut p = Vec::new();
    if token_state(env, old) == "active" {
        p.push(format!("the old project's token {old} is still active"));
    }
    let revocations = revocations_of(env, old);
    if !revocations
        .iter()
        .any(|(proj, status)| *proj == old_project.to_string() && *status == 204)
    {
        p.push(format!(
            "no successful revocation of {old} on project {old_project}: {revocations:?}"
        ));
    }
    if let Some(wrong) = revocations
        .iter()
        .find(|(proj, _)| *proj != old_project.to_string())
    {
        p.push(format!(
            "a revocation of {old} went to another project: {wrong:?}"
        ));
    }
    p.extend(env.ledger_violations(None).await);
    if p.is_empty()
        && let Err(e) = env.secret_works_with_git(ns, secret, path).await
    {
        p.push(format!("git refuses the moved Secret: {e}"));
    }
    p
}

/// (3) A GitLabToken's `spec.project` or a source's URL changes: the old project's token is
/// revoked on the old project, none is left active there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_a_token_to_another_project_revokes_the_old_one_on_the_old_project() {
    let env = Env::start_with(Options {
        operator_env: vec![("GTO_SWEEP_INTERVAL".into(), "1s".into())],
        ..Default::default()
    })
    .await;
    let token = |project: &str| {
        json!({"apiVersion": "gitlabtokens.io/v1alpha1", "kind": "GitLabToken",
            "metadata": {"name": "moving", "namespace": "team-a"},
            "spec": {"project": project, "scopes": ["read_repository"],
                     "secret": {"name": "moving", "format": "basic-auth"}}})
    };
    env.apply(token(PROJECT)).await;
    let t = env
        .wait_token_condition("team-a", "moving", "Ready", "True", None)
        .await;
    let (old_project, old) = (
        t.status
            .as_ref()
            .and_then(|s| s.project.as_ref())
            .expect("project")
            .id,
        current_token_id(&t).expect("id"),
    );
    env.apply(token("acme/team-b/api")).await;
    let spec_moved = moved(&env, "team-a", "moving", "acme/team-b/api", old).await;
    // The overlap's grace (no consumers to confirm) ends; the sweep may run too.
    env.world
        .advance_clock(chrono::Duration::hours(1))
        .expect("clock");
    let spec_move = env
        .settle(SETTLE, || {
            move_problems(&env, "team-a", "moving", "acme/team-b/api", old_project, old)
        })
        .await;

    // A source's URL changes: the shim moves its GitLabToken.
    let (_, src_old) = issued_app(&env, "team-a").await;
    annotated_repo(&env, "team-a", "app", "acme/team-b/api", "1m").await;
    let url_moved = moved(&env, "team-a", TOKEN, "acme/team-b/api", src_old).await;
    env.world
        .advance_clock(chrono::Duration::hours(1))
        .expect("clock");
    let url_move = env
        .settle(SETTLE, || {
            move_problems(&env, "team-a", TOKEN, "acme/team-b/api", old_project, src_old)
        })
        .await;
    eprintln!(
        "project move: spec re-issued {spec_moved:?}, then {spec_move:?}; source URL re-issued {url_moved:?}, then \
         {url_move:?}"
    );
    env.stop().await;
    spec_moved.expect("spec.project change re-issues on the new project");
    spec_move.expect("spec.project change leaves nothing on the old project");
    url_moved.expect("source URL change re-issues on the new project");
    url_move.expect("source URL change leaves nothing on the old project");
}

/// After a restart: the token settles Ready and accounted for, then two more reconciles pass
/// (the window in which a wrong "edit" verdict would mint again).
async fn adopted(env: &Env) -> Result<Duration, Vec<String>> {
    let settled = env
        .settle(SETTLE, || async {
            let mut p: Vec<String> = env.secret_problem("team-a", TOKEN).await.into_iter().collect();
            p.extend(env.ledger_violations(None).await);
            p
        })
        .await;
    observe_reconciles(env, 2.0, Duration::from_secs(20)).await;
    settled
}

/// (10) A crash between the Secret write and the status write, then a restart: the token in the
/// Secret is adopted and nothing is minted again (also when the crash interrupts a renewal).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_after_a_crash_between_secret_and_status_adopts_without_minting() {
    let mut env = Env::start().await;
    // Mints are counted from before the crashed run: exactly the one the crash interrupted.
    let calls = env.world.gitlab.calls().len();
    env.arm_crash_point("issue.after_secret").await;
    annotated_repo(&env, "team-a", "app", PROJECT, "1m").await;
    let crash = env
        .expect_crash("issue.after_secret", Duration::from_secs(30))
        .await;
    if let Err(e) = crash {
        env.stop().await;
        panic!("{e}");
    }
    let issue = adopted(&env).await;
    let issue_mints = token_mints(&env, calls);

    // The same crash during a renewal.
    let old = Api::<GitLabToken>::namespaced(env.client.clone(), "team-a")
        .get(TOKEN)
        .await
        .ok()
        .as_ref()
        .and_then(current_token_id);
    let calls2 = env.world.gitlab.calls().len();
    env.arm_crash_point("issue.after_secret").await;
    env.request_renewal("team-a", TOKEN).await;
    let renewal = match env
        .expect_crash("issue.after_secret", Duration::from_secs(30))
        .await
    {
        Err(e) => Err(vec![e]),
        Ok(()) => adopted(&env).await,
    };
    let renewal_mints = token_mints(&env, calls2);
    let old_state = old.map(|id| token_state(&env, id));
    eprintln!(
        "adoption after a crash: issue {issue:?} with {} mint(s) in all; renewal {renewal:?} with {} mint(s) in \
         all, old token {old:?} now {old_state:?}",
        issue_mints.len(),
        renewal_mints.len()
    );
    env.stop().await;
    issue.expect("the issued token adopted");
    assert_eq!(
        issue_mints.len(),
        1,
        "minted again after the restart: {issue_mints:?}"
    );
    renewal.expect("the renewed token adopted");
    assert_eq!(
        renewal_mints.len(),
        1,
        "minted again after the restart: {renewal_mints:?}"
    );
}
