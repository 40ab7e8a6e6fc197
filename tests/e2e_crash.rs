//! Crash tests (issue 9, Build 6): the real binary, built with the `failpoints` feature, is
//! stopped at every step boundary of issue, Overlap and InPlace rotation, revocation, deletion,
//! the orphan sweep and self-rotation (`FAILPOINTS=<name>=return` makes it exit with 86 right
//! there, as a SIGKILL would), restarted without failpoints, and the invariants are asserted with
//! a deadline once the sweep has had its chance (the world's clock moves an hour: the sweep spares
//! tokens younger than ten minutes, and an overlap's grace ends):
//! - every active token with this cluster's marker is accounted for by a GitLabToken status;
//! - no two active tokens for one GitLabToken outside an open overlap;
//! - the Secret of every live GitLabToken holds an active, accounted token and works with git;
//! - GitLab's reuse detection never fired.
//!
//! Plus randomized SIGKILLs over issue, rotation and deletion: `GTO_CRASH_KILLS` (default 3)
//! kills at moments drawn from `GTO_CRASH_SEED` (default 9; printed), same invariants.
//!
//! Each test shares one world between its scenarios; a scenario that fails is reported and the
//! others still run, and the test fails at the end listing every failed crash point.

mod e2e;

use std::time::{Duration, Instant};

use e2e::{
    CONNECTION, Env, OPERATOR_NS, Options,
    crash::{APP_PROJECT as PROJECT, APP_TOKEN as TOKEN, issued_app},
    eventually,
    lifecycle::{annotated_repo, git_repositories},
};
use gitlab_token_operator::crd::GitLabToken;
use kube::{Api, ResourceExt};
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::json;

/// How long the operator may take to reach an armed crash point once triggered.
const TO_CRASH: Duration = Duration::from_secs(30);
/// How long the invariants may take to hold after the restart.
const SETTLE: Duration = Duration::from_secs(90);

fn options() -> Options {
    Options {
        operator_env: vec![("GTO_SWEEP_INTERVAL".into(), "1s".into())],
        ..Default::default()
    }
}

/// Waits for the GitLabToken of `ns` to exist; returns its uid.
async fn uid_of(env: &Env, ns: &str) -> String {
    let api: Api<GitLabToken> = Api::namespaced(env.client.clone(), ns);
    eventually(&format!("GitLabToken {ns}/{TOKEN}"), || {
        let api = api.clone();
        async move { api.get_opt(TOKEN).await.ok().flatten().and_then(|t| t.uid()) }
    })
    .await
}

/// Problems with a live GitLabToken in `ns` (and the uid's tokens), empty when the invariants hold.
async fn live_problems(env: &Env, ns: &str, uid: &str, retired: &[u64]) -> Vec<String> {
    let mut problems = env.ledger_violations(Some(&[uid.to_string()])).await;
    problems.extend(env.secret_problem(ns, TOKEN).await);
    for id in retired {
        let state = env
            .world
            .gitlab
            .tokens()
            .into_iter()
            .find(|t| t.id == *id)
            .map(|t| t.state);
        if state.as_deref() == Some("active") {
            problems.push(format!("retired token {id} is still active"));
        }
    }
    if problems.is_empty()
        && let Err(e) = env.secret_works_with_git(ns, TOKEN, PROJECT).await
    {
        problems.push(format!("git refuses the Secret's credentials: {e}"));
    }
    problems
}

/// Problems after the GitLabToken of `ns` was deleted: it must be gone with no active token left.
async fn gone_problems(env: &Env, ns: &str, uid: &str) -> Vec<String> {
    let mut problems = env.ledger_violations(Some(&[uid.to_string()])).await;
    let api: Api<GitLabToken> = Api::namespaced(env.client.clone(), ns);
    if api.get_opt(TOKEN).await.ok().flatten().is_some() {
        problems.push(format!("GitLabToken {ns}/{TOKEN} still exists"));
    }
    let left: Vec<u64> = env
        .active_marker_tokens()
        .into_iter()
        .filter(|t| t.name.ends_with(uid))
        .map(|t| t.id)
        .collect();
    if !left.is_empty() {
        problems.push(format!("active tokens {left:?} left for the deleted GitLabToken"));
    }
    problems
}

/// Tokens GitLab ever created for `uid`.
fn minted_for(env: &Env, uid: &str) -> usize {
    env.world
        .gitlab
        .tokens()
        .iter()
        .filter(|t| t.kind == "project" && t.name.ends_with(uid))
        .count()
}

/// Collects scenario outcomes and fails the test at the end, naming every failed crash point.
#[derive(Default)]
struct Outcomes(Vec<(String, Result<String, Vec<String>>)>);

impl Outcomes {
    fn record(&mut self, failpoint: &str, result: Result<String, Vec<String>>) {
        match &result {
            Ok(note) => eprintln!("crash point {failpoint}: OK, {note}"),
            Err(problems) => eprintln!("crash point {failpoint}: FAILED: {problems:#?}"),
        }
        self.0.push((failpoint.to_string(), result));
    }

    fn finish(self) {
        let failed: Vec<_> = self.0.iter().filter(|(_, r)| r.is_err()).collect();
        assert!(
            failed.is_empty(),
            "crash points whose invariants failed: {failed:#?}"
        );
    }
}

/// Restarted after the crash: moves the clock an hour and waits for `check` to hold.
async fn settle_after<F, Fut>(env: &Env, check: F) -> Result<Duration, Vec<String>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Vec<String>>,
{
    env.world
        .advance_clock(chrono::Duration::hours(1))
        .expect("clock");
    env.settle(SETTLE, check).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_any_issue_step_leaves_one_working_accounted_token() {
    let started = Instant::now();
    let mut env = Env::start_with(options()).await;
    let mut outcomes = Outcomes::default();
    for (failpoint, ns) in [
        ("issue.after_pending", "team-ip"),
        ("issue.after_create", "team-ic"),
        ("issue.after_secret", "team-is"),
    ] {
        env.namespace(ns).await;
        env.arm_crash_point(failpoint).await;
        annotated_repo(&env, ns, "app", PROJECT, "1m").await;
        if let Err(e) = env.expect_crash(failpoint, TO_CRASH).await {
            outcomes.record(failpoint, Err(vec![e]));
            continue;
        }
        let uid = uid_of(&env, ns).await;
        let result = settle_after(&env, || live_problems(&env, ns, &uid, &[])).await;
        outcomes.record(
            failpoint,
            result.map(|t| {
                format!(
                    "settled {t:?} after the restart, {} token(s) minted",
                    minted_for(&env, &uid)
                )
            }),
        );
    }
    eprintln!("issue crash points: {:?}", started.elapsed());
    env.stop().await;
    outcomes.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_during_overlap_revocation_deletion_or_sweep_leaks_nothing() {
    let started = Instant::now();
    let mut env = Env::start_with(options()).await;
    let mut outcomes = Outcomes::default();

    // Overlap: the new token recorded and consumers nudged; then GitLab revoked the old one.
    for (failpoint, ns) in [
        ("overlap.after_issue", "team-ov"),
        ("revoke.after_gitlab", "team-rv"),
    ] {
        let (uid, old) = issued_app(&env, ns).await;
        env.arm_crash_point(failpoint).await;
        env.request_renewal(ns, TOKEN).await;
        if let Err(e) = env.expect_crash(failpoint, TO_CRASH).await {
            outcomes.record(failpoint, Err(vec![e]));
            continue;
        }
        let retired = [old];
        let result = settle_after(&env, || live_problems(&env, ns, &uid, &retired)).await;
        outcomes.record(
            failpoint,
            result.map(|t| {
                format!(
                    "settled {t:?} after the restart, {} token(s) minted",
                    minted_for(&env, &uid)
                )
            }),
        );
    }

    // Deletion: tokens revoked, finalizer not yet released.
    let (failpoint, ns) = ("cleanup.after_revoke", "team-cl");
    let (uid, _) = issued_app(&env, ns).await;
    env.arm_crash_point(failpoint).await;
    env.delete(&git_repositories(&env, ns).await, "app").await;
    match env.expect_crash(failpoint, TO_CRASH).await {
        Err(e) => outcomes.record(failpoint, Err(vec![e])),
        Ok(()) => {
            let result = settle_after(&env, || gone_problems(&env, ns, &uid)).await;
            outcomes.record(
                failpoint,
                result.map(|t| format!("settled {t:?} after the restart")),
            );
        }
    }

    // The sweep: an old unaccounted token with our marker, the operator stopped before revoking it.
    let (failpoint, ns) = ("sweep.before_revoke", "team-sw");
    let (uid, _) = issued_app(&env, ns).await;
    let project_id = Api::<GitLabToken>::namespaced(env.client.clone(), ns)
        .get(TOKEN)
        .await
        .expect("GitLabToken")
        .status
        .and_then(|s| s.project)
        .expect("project")
        .id;
    let orphan = mint(&env, project_id, &format!("gto-e2e-{uid}")).await;
    env.world
        .advance_clock(chrono::Duration::hours(1))
        .expect("clock");
    env.arm_crash_point(failpoint).await;
    match env.expect_crash(failpoint, TO_CRASH).await {
        Err(e) => outcomes.record(failpoint, Err(vec![e])),
        Ok(()) => {
            let retired = [orphan];
            let result = settle_after(&env, || live_problems(&env, ns, &uid, &retired)).await;
            outcomes.record(
                failpoint,
                result.map(|t| format!("orphan {orphan} revoked, settled {t:?}")),
            );
        }
    }
    eprintln!(
        "overlap/revoke/cleanup/sweep crash points: {:?}",
        started.elapsed()
    );
    env.stop().await;
    outcomes.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_during_an_in_place_rotation_never_triggers_reuse_detection() {
    let started = Instant::now();
    let mut env = Env::start_with(options()).await;
    env.apply(
        json!({"apiVersion": "gitlabtokens.io/v1alpha1", "kind": "GitLabTokenPolicy",
        "metadata": {"name": "in-place"},
        "spec": {"namespaceSelector": {"matchNames": ["rot-*"]}, "projects": ["acme/**"],
                 "scopes": ["read_repository", "read_registry", "read_api"], "maxAccessLevel": "developer",
                 "rotationStrategy": "InPlace"}}),
    )
    .await;
    let mut outcomes = Outcomes::default();
    for (failpoint, ns) in [
        ("inplace.after_pending", "rot-p"),
        ("inplace.after_rotate", "rot-r"),
        ("inplace.after_secret", "rot-s"),
    ] {
        let (uid, _) = issued_app(&env, ns).await;
        env.arm_crash_point(failpoint).await;
        env.request_renewal(ns, TOKEN).await;
        if let Err(e) = env.expect_crash(failpoint, TO_CRASH).await {
            outcomes.record(failpoint, Err(vec![e]));
            continue;
        }
        let result = settle_after(&env, || live_problems(&env, ns, &uid, &[])).await;
        outcomes.record(
            failpoint,
            result.map(|t| {
                format!(
                    "settled {t:?} after the restart, {} token(s) minted",
                    minted_for(&env, &uid)
                )
            }),
        );
    }
    eprintln!("in-place crash points: {:?}", started.elapsed());
    env.stop().await;
    outcomes.finish();
}

/// The connection with self-rotation on (due at once: renew 365 days before a ≤365-day expiry) or off.
async fn self_rotation(env: &Env, enabled: bool) {
    let token_ref = json!({"namespace": OPERATOR_NS, "name": "gitlab-operator-token", "key": "token"});
    let mut credentials = json!({"secretRef": token_ref});
    if enabled {
        credentials["selfRotation"] = json!({"enabled": true, "lifetime": "30d", "renewBefore": "365d"});
    }
    env.apply(
        json!({"apiVersion": "gitlabtokens.io/v1alpha1", "kind": "GitLabConnection",
        "metadata": {"name": CONNECTION},
        "spec": {"url": env.world.gitlab_url(), "registryHost": env.world.registry_host(),
                 "credentials": credentials}}),
    )
    .await;
}

/// The operator's PAT as stored in its credentials Secret.
async fn stored_pat(env: &Env) -> String {
    let secret = env.wait_secret(OPERATOR_NS, "gitlab-operator-token").await;
    Env::secret_value(&secret, "token")
}

/// The state GitLab reports for the PAT with `value` (looked up by authenticating as it).
async fn pat_works(env: &Env, value: &str) -> bool {
    reqwest::Client::new()
        .get(format!(
            "{}/api/v4/personal_access_tokens/self",
            env.world.gitlab_url()
        ))
        .header("PRIVATE-TOKEN", value)
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
}

fn self_rotate_calls(env: &Env, from: usize) -> usize {
    env.world.gitlab.calls()[from..]
        .iter()
        .filter(|c| c.method == "POST" && c.path.ends_with("personal_access_tokens/self/rotate"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_during_self_rotation_never_presents_the_old_token_again() {
    let started = Instant::now();
    let mut env = Env::start_with(options()).await;
    let mut outcomes = Outcomes::default();
    let conn_api: Api<gitlab_token_operator::crd::GitLabConnection> = Api::all(env.client.clone());
    let reason = || async {
        conn_api
            .get(CONNECTION)
            .await
            .ok()
            .and_then(|c| c.status)
            .and_then(|s| {
                s.conditions
                    .iter()
                    .find(|c| c.type_ == "Ready")
                    .map(|c| (format!("{:?}", c.status), c.reason.clone()))
            })
    };

    // Stored, status not yet written: the new token must serve, the old one be dead.
    let failpoint = "selfrotate.after_store";
    let seeded = stored_pat(&env).await;
    env.arm_crash_point(failpoint).await;
    self_rotation(&env, true).await;
    let crashed = env.wait_operator_exit(TO_CRASH).await;
    self_rotation(&env, false).await;
    env.start_operator().await;
    if crashed != Some(86) {
        outcomes.record(
            failpoint,
            Err(vec![format!("no crash at {failpoint}: exit {crashed:?}")]),
        );
    } else {
        let calls = env.world.gitlab.calls().len();
        let result = env
            .settle(SETTLE, || async {
                let mut p = Vec::new();
                let stored = stored_pat(&env).await;
                if stored == seeded {
                    p.push("the rotated token was not stored".into());
                }
                if !pat_works(&env, &stored).await {
                    p.push("the stored token does not work".into());
                }
                if pat_works(&env, &seeded).await {
                    p.push("the old token still works".into());
                }
                if reason().await.is_none_or(|(s, _)| s != "True") {
                    p.push(format!("connection not Ready: {:?}", reason().await));
                }
                let d = env.world.gitlab.state().reuse_detections();
                if !d.is_empty() {
                    p.push(format!("reuse detection fired: {d:?}"));
                }
                p
            })
            .await;
        let again = self_rotate_calls(&env, calls);
        outcomes.record(
            failpoint,
            result
                .and_then(|t| {
                    (again == 0)
                        .then_some(t)
                        .ok_or_else(|| vec![format!("{again} rotate calls after restart")])
                })
                .map(|t| format!("settled {t:?}")),
        );
    }

    // Rotated in GitLab, value not stored: the stored token is dead and must never be presented to
    // a rotate endpoint again (that would make GitLab revoke the whole family).
    let failpoint = "selfrotate.after_rotate";
    env.arm_crash_point(failpoint).await;
    self_rotation(&env, true).await;
    let crashed = env.wait_operator_exit(TO_CRASH).await;
    let calls = env.world.gitlab.calls().len();
    env.spawn_operator(&[]);
    if crashed != Some(86) {
        outcomes.record(
            failpoint,
            Err(vec![format!("no crash at {failpoint}: exit {crashed:?}")]),
        );
    } else {
        let result = env
            .settle(SETTLE, || async {
                let mut p = Vec::new();
                match reason().await {
                    Some((_, r)) if r == "SelfRotationLost" => {}
                    other => p.push(format!("connection should report SelfRotationLost: {other:?}")),
                }
                let d = env.world.gitlab.state().reuse_detections();
                if !d.is_empty() {
                    p.push(format!("reuse detection fired: {d:?}"));
                }
                p
            })
            .await;
        let again = self_rotate_calls(&env, calls);
        outcomes.record(
            failpoint,
            result
                .and_then(|t| {
                    (again == 0).then_some(t).ok_or_else(|| {
                        vec![format!("{again} rotate calls with the dead token after restart")]
                    })
                })
                .map(|t| format!("SelfRotationLost after {t:?}, no rotate call, no reuse detection")),
        );
    }
    eprintln!("self-rotation crash points: {:?}", started.elapsed());
    env.stop().await;
    outcomes.finish();
}

/// Mints a project token with the operator's PAT, as a lost issue would have.
async fn mint(env: &Env, project_id: u64, name: &str) -> u64 {
    let expires = (env.gitlab_now() + chrono::Duration::days(30))
        .date_naive()
        .to_string();
    let body =
        json!({"name": name, "scopes": ["read_repository"], "access_level": 20, "expires_at": expires});
    let resp = reqwest::Client::new()
        .post(format!(
            "{}/api/v4/projects/{project_id}/access_tokens",
            env.world.gitlab_url()
        ))
        .header("PRIVATE-TOKEN", env.world.operator_token().expect("seeded"))
        .json(&body)
        .send()
        .await
        .expect("GitLab answers");
    assert_eq!(resp.status(), 201);
    resp.json::<serde_json::Value>().await.expect("json")["id"]
        .as_u64()
        .expect("id")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_sigkills_over_issue_rotation_and_deletion_keep_the_invariants() {
    let started = Instant::now();
    let kills: usize = std::env::var("GTO_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let seed: u64 = std::env::var("GTO_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(9);
    eprintln!("random SIGKILLs: {kills} kills, GTO_CRASH_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut env = Env::start_with(options()).await;
    let monitor = e2e::invariants::Monitor::start(&env);
    let (mut live, mut deleted): (Vec<String>, Vec<String>) = (Vec::new(), Vec::new());
    let mut log = Vec::new();
    for i in 0..kills {
        let phase = match rng.random_range(0..3u8) {
            1 if !live.is_empty() => "rotation",
            2 if !live.is_empty() => "deletion",
            _ => "issue",
        };
        let ns = match phase {
            "issue" => {
                let ns = format!("team-k{i}");
                env.namespace(&ns).await;
                annotated_repo(&env, &ns, "app", PROJECT, "1m").await;
                live.push(ns.clone());
                ns
            }
            "rotation" => {
                let ns = live[rng.random_range(0..live.len())].clone();
                // Only a token that exists can be renewed.
                uid_of(&env, &ns).await;
                env.request_renewal(&ns, TOKEN).await;
                ns
            }
            _ => {
                let ns = live.remove(rng.random_range(0..live.len()));
                env.delete(&git_repositories(&env, &ns).await, "app").await;
                deleted.push(ns.clone());
                ns
            }
        };
        let delay = Duration::from_millis(rng.random_range(0..1000));
        // The moment of the kill is the experiment (not a synchronisation).
        tokio::time::sleep(delay).await;
        env.kill_operator().await;
        log.push(format!("{phase} in {ns}, SIGKILL after {delay:?}"));
        env.start_operator().await;
    }
    env.world
        .advance_clock(chrono::Duration::hours(1))
        .expect("clock");
    let result = env
        .settle(SETTLE, || async {
            let mut p = env.ledger_violations(None).await;
            for ns in &live {
                p.extend(env.secret_problem(ns, TOKEN).await);
            }
            let api = |ns: &str| Api::<GitLabToken>::namespaced(env.client.clone(), ns);
            for ns in &deleted {
                if api(ns).get_opt(TOKEN).await.ok().flatten().is_some() {
                    p.push(format!(
                        "GitLabToken {ns}/{TOKEN} still exists after its source was deleted"
                    ));
                }
            }
            let accounted: std::collections::BTreeSet<String> =
                env.accounts().await.into_iter().map(|a| a.uid).collect();
            for t in env.active_marker_tokens() {
                if !accounted.iter().any(|u| t.name.ends_with(u.as_str())) {
                    p.push(format!("active token {} of a deleted GitLabToken", t.id));
                }
            }
            if p.is_empty() {
                for ns in &live {
                    if let Err(e) = env.secret_works_with_git(ns, TOKEN, PROJECT).await {
                        p.push(format!("{ns}: git refuses the Secret: {e}"));
                    }
                }
            }
            p
        })
        .await;
    let violations = monitor.violations();
    eprintln!(
        "random SIGKILLs (seed {seed}): {log:#?}; {} tokens minted in all, at most {} active for one GitLabToken at \
         once, {:?}",
        env.all_operator_tokens().len(),
        monitor.max_active_per_token(),
        started.elapsed()
    );
    drop(monitor);
    env.stop().await;
    assert!(
        violations.is_empty(),
        "seen while the kills went on: {violations:#?}"
    );
    if let Err(problems) = result {
        panic!("after {kills} SIGKILLs (seed {seed}) the invariants did not hold: {problems:#?}");
    }
}
