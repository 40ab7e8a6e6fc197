//! Issue 11, end to end with the real binary: policies that delegate to GitLab. A group with
//! Developer on a project through a share gets a Developer-capped token; a lowered share or
//! member role re-issues at the lower role; unsharing revokes and removes the Secret within the
//! re-check interval; a namespace whose annotation names another group is denied; a GitLab
//! outage revokes nothing. The re-check interval is short here (`GTO_ACCESS_RECHECK_INTERVAL`);
//! every wait ends on a condition or a count of reconciles, with a deadline.

mod e2e;

use std::time::{Duration, Instant};

use e2e::{
    Env, Options,
    crash::{current_token_id, observe_reconciles, token_state},
    eventually,
};
use gitlab_token_operator::crd::GitLabToken;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use serde_json::{Value, json};
use testbed::gitlab::seed::{MemberSeed, ShareSeed};

/// The re-check interval the operator runs with in these tests.
const INTERVAL: Duration = Duration::from_secs(6);
/// The namespace annotation the per-namespace policy reads.
const IDENTITY: &str = "gitlabtokens.io/gitlab-identity";
/// A project outside both team groups, reachable only through shares.
const SHARED: &str = "acme/platform/infra";

async fn start() -> Env {
    let env = Env::start_with(Options {
        operator_env: vec![(
            "GTO_ACCESS_RECHECK_INTERVAL".into(),
            format!("{}s", INTERVAL.as_secs()),
        )],
        ..Options::default()
    })
    .await;
    // Namespaces `svc-*` are served only by delegating policies (the default policy selects `team-*`).
    env.apply(
        json!({"apiVersion": "gitlabtokens.io/v1alpha1", "kind": "GitLabTokenPolicy",
        "metadata": {"name": "follow-gitlab"},
        "spec": {"namespaceSelector": {"matchNames": ["svc-*"]}, "projects": ["acme/**"],
                 "scopes": ["read_repository", "read_api"], "maxAccessLevel": "maintainer",
                 "gitlabAccess": {"namespaceAnnotation": IDENTITY}}}),
    )
    .await;
    env
}

async fn annotated_namespace(env: &Env, name: &str, identity: &str) {
    env.apply(json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": name, "annotations": {IDENTITY: identity}}}))
        .await;
}

fn token(ns: &str, name: &str, project: &str, level: &str) -> Value {
    json!({"apiVersion": "gitlabtokens.io/v1alpha1", "kind": "GitLabToken",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"project": project, "scopes": ["read_repository"], "accessLevel": level,
                 "secret": {"name": name, "format": "basic-auth"}}})
}

fn share(env: &Env, path: &str, group: &str, level: u32) {
    env.world
        .gitlab
        .seed()
        .share(ShareSeed {
            path: path.into(),
            group: group.into(),
            group_access: level,
            expires_at: None,
        })
        .expect("share");
}

/// GitLab's role (`access_level`) of project token `id`.
fn token_level(env: &Env, id: u64) -> Option<u32> {
    env.world
        .gitlab
        .tokens()
        .into_iter()
        .find(|t| t.id == id && t.kind == "project")
        .and_then(|t| t.access_level)
}

async fn ready_id(env: &Env, ns: &str, name: &str) -> u64 {
    let t = env.wait_token_condition(ns, name, "Ready", "True", None).await;
    current_token_id(&t).expect("current token")
}

/// Waits until the token's current GitLab token is another one than `old`, and returns it.
async fn replaced(env: &Env, ns: &str, name: &str, old: u64) -> u64 {
    let api: Api<GitLabToken> = Api::namespaced(env.client.clone(), ns);
    eventually(&format!("{ns}/{name} re-issued"), || {
        let api = api.clone();
        async move {
            let t = api.get_opt(name).await.ok()??;
            current_token_id(&t).filter(|id| *id != old)
        }
    })
    .await
}

/// GitLab calls delegation makes (project and group reads, user look-ups, members/all), from `from`.
fn delegation_calls(env: &Env, from: usize) -> Vec<String> {
    env.world
        .gitlab
        .calls()
        .into_iter()
        .skip(from)
        .filter(|c| c.method == "GET")
        .filter(|c| {
            let p = c.path.split('?').next().unwrap_or_default();
            let project_read = p.starts_with("/api/v4/projects/") && p.matches('/').count() == 4;
            project_read
                || p.starts_with("/api/v4/groups/")
                || p == "/api/v4/users"
                || p.contains("/members/all/")
        })
        .map(|c| c.path)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_grants_a_capped_token_and_unsharing_revokes_it_within_the_interval() {
    let env = start().await;
    share(&env, SHARED, "acme/team-a", 30);
    annotated_namespace(&env, "svc-a", "group:acme/team-a").await;
    annotated_namespace(&env, "svc-b", "group:acme/team-b").await;

    // Developer through the share: a Developer token; Maintainer is more than GitLab grants.
    env.apply(token("svc-a", "dev", SHARED, "developer")).await;
    env.apply(token("svc-a", "maint", SHARED, "maintainer")).await;
    env.apply(token("svc-b", "dev", SHARED, "developer")).await;
    let id = ready_id(&env, "svc-a", "dev").await;
    assert_eq!(token_level(&env, id), Some(30), "the token has the share's role");
    let over = env
        .wait_token_condition("svc-a", "maint", "Ready", "False", Some("GitLabAccessDenied"))
        .await;
    let other = env
        .wait_token_condition("svc-b", "dev", "Ready", "False", Some("GitLabAccessDenied"))
        .await;
    for t in [&over, &other] {
        assert!(current_token_id(t).is_none(), "nothing minted: {:?}", t.status);
    }
    let message = |t: &GitLabToken| {
        t.status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.message.clone())
            .unwrap_or_default()
    };
    assert!(
        message(&over).contains("group:acme/team-a has developer"),
        "{}",
        message(&over)
    );
    assert!(
        message(&other).contains("group:acme/team-b has no access"),
        "{}",
        message(&other)
    );

    // Calls per re-check: count over several intervals with one live delegated token.
    let calls_before = env.world.gitlab.calls().len();
    let window = Instant::now();
    observe_reconciles(&env, 1e9, INTERVAL * 3).await;
    let steady = delegation_calls(&env, calls_before);
    let seconds = window.elapsed().as_secs_f64();
    let periods = seconds / INTERVAL.as_secs_f64();
    // Three live refusals and one token share three answers (the project's shares and those of
    // its ancestor groups acme and acme/platform): each is re-asked once per interval by the
    // refresher, whatever the number of tokens; one more per answer for the window's edges.
    let per_period = steady.len() as f64 / periods;
    eprintln!(
        "steady state: {} delegation calls in {seconds:.1}s = {per_period:.2} per interval ({periods:.1} intervals): {:?}",
        steady.len(),
        steady.iter().take(12).collect::<Vec<_>>()
    );
    assert!(
        steady.len() as f64 <= 3.0 * (periods.ceil() + 1.0),
        "one call per answer and interval: {} calls over {periods:.1} intervals",
        steady.len()
    );
    assert!(
        !steady.is_empty(),
        "the token is re-checked in GitLab while it lives"
    );
    let metrics = env.metrics_text().await;
    assert!(
        metrics.contains("gitlab_token_operator_access_answers{connection=\"gitlab\"} 3"),
        "three answers re-checked: {}",
        metrics
            .lines()
            .filter(|l| l.contains("access_"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(metrics.contains(
        "gitlab_token_operator_access_rechecks_total{connection=\"gitlab\",outcome=\"unchanged\"}"
    ));

    // Unshare: revoked in GitLab and the Secret removed, within the interval (plus one reconcile).
    let since = Instant::now();
    share(&env, SHARED, "acme/team-a", 0);
    let revoked_after = eventually("token revoked after unsharing", || async {
        (token_state(&env, id) != "active").then(|| since.elapsed())
    })
    .await;
    let secret_gone = eventually("Secret removed after unsharing", || async {
        let s = Api::<Secret>::namespaced(env.client.clone(), "svc-a")
            .get_opt("dev")
            .await
            .ok()?;
        s.is_none().then(|| since.elapsed())
    })
    .await;
    let t = env
        .wait_token_condition("svc-a", "dev", "Ready", "False", Some("AccessWithdrawn"))
        .await;
    eprintln!(
        "unshared: token {id} revoked after {revoked_after:?}, Secret removed after {secret_gone:?} (interval {INTERVAL:?}); status {:?}",
        t.status.as_ref().map(|s| (&s.current, &s.revoking))
    );
    assert!(
        revoked_after <= INTERVAL + Duration::from_secs(5),
        "revoked within the interval: {revoked_after:?}"
    );
    assert!(
        env.metrics_text()
            .await
            .contains("gitlab_token_operator_access_changes_total{reason=\"AccessWithdrawn\"} 1")
    );
    // Shared again: served again (at the share's role).
    share(&env, SHARED, "acme/team-a", 30);
    let again = ready_id(&env, "svc-a", "dev").await;
    assert_ne!(again, id);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lowered_role_reissues_at_the_lower_level_and_an_outage_revokes_nothing() {
    let env = start().await;
    // A user identity: `dev` is Developer on acme/team-a (so on acme/team-a/app).
    annotated_namespace(&env, "svc-u", "user:dev").await;
    // A group identity through a share of the project's parent group.
    share(&env, "acme/platform", "acme/team-b", 30);
    annotated_namespace(&env, "svc-g", "group:acme/team-b").await;
    env.apply(token("svc-u", "app", "acme/team-a/app", "developer"))
        .await;
    env.apply(token("svc-g", "infra", SHARED, "developer")).await;
    let user_token = ready_id(&env, "svc-u", "app").await;
    let group_token = ready_id(&env, "svc-g", "infra").await;
    assert_eq!(token_level(&env, user_token), Some(30));
    assert_eq!(token_level(&env, group_token), Some(30));

    // An outage: nothing is revoked, nothing re-issued, over many reconciles past the interval.
    let calls = env.world.gitlab.calls().len();
    env.world
        .gitlab
        .add_fault(testbed::gitlab::FaultRule {
            method: Some("GET".into()),
            path: "/api/v4/*".into(),
            action: testbed::gitlab::FaultAction::Status { status: 503 },
            times: None,
        })
        .expect("fault");
    let outage = Instant::now();
    let seen = observe_reconciles(&env, 1e9, INTERVAL * 2).await;
    let failed_rechecks = delegation_calls(&env, calls).len();
    env.world.gitlab.clear_faults();
    eprintln!(
        "outage of {:?}: {seen} reconciles, {failed_rechecks} failed delegation calls",
        outage.elapsed()
    );
    assert!(failed_rechecks > 0, "re-checks ran during the outage");
    for id in [user_token, group_token] {
        assert_eq!(token_state(&env, id), "active", "an outage revokes nothing");
    }
    for (ns, name) in [("svc-u", "app"), ("svc-g", "infra")] {
        let t = Api::<GitLabToken>::namespaced(env.client.clone(), ns)
            .get(name)
            .await
            .expect("get");
        assert!(
            gitlab_token_operator::controller::conditions::is_ready(
                &t.status.clone().unwrap_or_default().conditions
            ),
            "{ns}/{name} stays Ready: {:?}",
            t.status
        );
        assert!(
            Api::<Secret>::namespaced(env.client.clone(), ns)
                .get_opt(name)
                .await
                .expect("get")
                .is_some()
        );
    }

    // Lowered: the member role (user) and the share (group) drop to Reporter.
    let since = Instant::now();
    env.world
        .gitlab
        .seed()
        .member(MemberSeed {
            username: "dev".into(),
            path: "acme/team-a".into(),
            access_level: 20,
            expires_at: None,
        })
        .expect("lower role");
    share(&env, "acme/platform", "acme/team-b", 20);
    let new_user = replaced(&env, "svc-u", "app", user_token).await;
    let new_group = replaced(&env, "svc-g", "infra", group_token).await;
    let lowered_after = since.elapsed();
    eventually("the higher-role tokens revoked", || async {
        (token_state(&env, user_token) != "active" && token_state(&env, group_token) != "active")
            .then_some(())
    })
    .await;
    eprintln!("lowered: re-issued at Reporter after {lowered_after:?}");
    assert_eq!(token_level(&env, new_user), Some(20));
    assert_eq!(token_level(&env, new_group), Some(20));
    let metrics = env.metrics_text().await;
    assert!(
        metrics.contains("gitlab_token_operator_access_changes_total{reason=\"AccessLowered\"} 2"),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("access_changes"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Exactly one re-issue each: the lowered token stays (no flapping) over further re-checks.
    observe_reconciles(&env, 1e9, INTERVAL * 2).await;
    for (ns, name, id) in [("svc-u", "app", new_user), ("svc-g", "infra", new_group)] {
        let t = Api::<GitLabToken>::namespaced(env.client.clone(), ns)
            .get(name)
            .await
            .expect("get");
        assert_eq!(current_token_id(&t), Some(id), "{ns}/{name} not re-issued again");
    }
    env.stop().await;
}
