//! One group access token shared per namespace (issue 12 item 3), real binary: a policy with
//! `groupTokens: SharedPerNamespace` serves two annotated GitRepositories of two projects below
//! its group with ONE group access token through one Secret (GitLab shows exactly one group
//! token); that Secret is refused by GitLab for a project outside the group; a source outside
//! the group keeps its own project token; an Overlap rotation passes a consumer loop with no
//! failure; the token stays while any source remains and is revoked when the last one goes; a
//! crash at any issue step of the shared token leaves exactly one working, recorded group token.

mod e2e;

use chrono::Utc;
use std::time::Duration;

use e2e::{
    Env, Options, eventually,
    lifecycle::{
        ConsumerLoop, annotated_repo, credentials, git_ls_remote, git_repositories, secret_token_id,
        token_values_of, wait_flux_ready,
    },
};
use gitlab_token_operator::crd::{CredentialKind, GitLabToken};
use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams},
};
use serde_json::{Value, json};

const NS: &str = "team-a";
const SHARED: &str = "acme-platform-group-git";

fn shared_policy() -> Value {
    json!({"apiVersion": "gitlabtokens.io/v1alpha1", "kind": "GitLabTokenPolicy",
        "metadata": {"name": "team-group-shared"},
        "spec": {"namespaceSelector": {"matchNames": ["team-*"]}, "projects": ["acme/**"],
                 "credentialKinds": ["ProjectAccessToken", "GroupAccessToken"],
                 "groups": ["acme/platform"],
                 "groupTokens": "SharedPerNamespace"}})
}

/// Active group access tokens in GitLab.
fn active_group_tokens(env: &Env) -> Vec<testbed::gitlab::TokenRecord> {
    env.world
        .gitlab
        .tokens()
        .into_iter()
        .filter(|t| t.kind == "group" && t.state == "active")
        .collect()
}

fn group_record(env: &Env, id: u64) -> testbed::gitlab::TokenRecord {
    env.world
        .gitlab
        .tokens()
        .into_iter()
        .find(|t| t.kind == "group" && t.id == id)
        .unwrap_or_else(|| panic!("GitLab has no group token {id}"))
}

fn consumer_names(t: &GitLabToken) -> Vec<String> {
    t.spec.consumers.iter().map(|c| c.name.clone()).collect()
}

async fn secret_ref(env: &Env, name: &str) -> Option<String> {
    let api = git_repositories(env, NS).await;
    let o = api.get(name).await.ok()?;
    o.data
        .pointer("/spec/secretRef/name")
        .and_then(Value::as_str)
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sources_below_a_group_share_one_group_token_until_the_last_goes() {
    let env = Env::start().await;
    let seen = env.watch_secret_values();
    seen.add(env.world.operator_token().expect("seeded"));
    env.apply(shared_policy()).await;

    let calls_before = env.world.gitlab.calls().len();
    let infra = annotated_repo(&env, NS, "infra", "acme/platform/infra", "2s").await;
    let charts = annotated_repo(&env, NS, "charts", "acme/platform/charts", "2s").await;

    let t1 = env
        .wait_token(NS, SHARED, "issued and serving both sources", |t| {
            consumer_names(t) == ["charts", "infra"]
                && t.status.as_ref().is_some_and(|s| {
                    s.current.is_some()
                        && s.conditions
                            .iter()
                            .any(|c| c.type_ == "Ready" && c.reason == "Issued")
                })
        })
        .await;
    let issue_calls = env.world.gitlab.calls().len() - calls_before;
    println!("shared group token: 2 sources served by 1 group token with {issue_calls} GitLab calls");
    let app = annotated_repo(&env, NS, "app", "acme/team-a/app", "2s").await;
    assert_eq!(t1.spec.kind, CredentialKind::GroupAccessToken);
    assert_eq!(t1.spec.group.as_deref(), Some("acme/platform"));
    let c1 = t1
        .status
        .as_ref()
        .and_then(|s| s.current.clone())
        .expect("current");
    let groups = active_group_tokens(&env);
    assert_eq!(
        groups.len(),
        1,
        "GitLab shows exactly one group token: {groups:?}"
    );
    assert_eq!(groups[0].id, c1.token_id);
    assert_eq!(groups[0].resource.as_deref(), Some("acme/platform"));

    // Both sources point at the one shared Secret; the source outside the group has its own.
    for name in ["infra", "charts"] {
        eventually(&format!("{name} to point at the shared Secret"), || async {
            (secret_ref(&env, name).await.as_deref() == Some(SHARED)).then_some(())
        })
        .await;
    }
    let own = env
        .wait_token_condition(NS, "app-gitlab-token", "Ready", "True", Some("Issued"))
        .await;
    assert_eq!(
        own.spec.kind,
        CredentialKind::ProjectAccessToken,
        "outside the group: its own token"
    );

    let secret1 = eventually("the shared Secret to hold the group token", || async {
        let s = env.wait_secret(NS, SHARED).await;
        (secret_token_id(&s) == Some(c1.token_id)).then_some(s)
    })
    .await;
    let (user1, pass1) = credentials(&secret1);
    git_ls_remote(&infra, &user1, &pass1)
        .await
        .expect("infra with the shared Secret");
    git_ls_remote(&charts, &user1, &pass1)
        .await
        .expect("charts with the shared Secret");
    assert!(
        git_ls_remote(&app, &user1, &pass1).await.is_err(),
        "GitLab refuses the group token for a project outside the group"
    );
    wait_flux_ready(&env, NS, "infra").await;
    wait_flux_ready(&env, NS, "charts").await;
    wait_flux_ready(&env, NS, "app").await;

    // Overlap rotation (group tokens are replaced new-first) with a consumer loop: no failure.
    let consumer = ConsumerLoop::start(&env, NS, SHARED, &charts);
    eventually("the loop to succeed three times", || async {
        (consumer.ok_so_far() >= 3).then_some(())
    })
    .await;
    let tokens: Api<GitLabToken> = Api::namespaced(env.client.clone(), NS);
    let patch =
        json!({"metadata": {"annotations": {"gitlabtokens.io/renew-requested-at": Utc::now().to_rfc3339()}}});
    tokens
        .patch(SHARED, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("ask for a renewal");
    let t2 = env
        .wait_token(NS, SHARED, "a new group token and the old one revoked", |t| {
            t.status.as_ref().is_some_and(|s| {
                s.previous.is_none()
                    && s.revoking.is_empty()
                    && s.current.as_ref().is_some_and(|c| c.token_id != c1.token_id)
            })
        })
        .await;
    let c2 = t2
        .status
        .as_ref()
        .and_then(|s| s.current.clone())
        .expect("current");
    let before = consumer.ok_so_far();
    eventually("the loop to use the new token", || async {
        (consumer.ok_so_far() >= before + 3).then_some(())
    })
    .await;
    let report = consumer.finish().await;
    println!(
        "shared group token: rotation consumer loop {} runs, {} failures, token ids {:?}",
        report.ok,
        report.failures.len(),
        report.ids
    );
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(report.ids, [c1.token_id, c2.token_id]);
    assert_eq!(group_record(&env, c1.token_id).state, "revoked");
    assert_eq!(
        active_group_tokens(&env).len(),
        1,
        "still exactly one group token"
    );

    // One source leaves: the token stays (same token, the other source still served).
    let repos = git_repositories(&env, NS).await;
    env.delete(&repos, "infra").await;
    let t3 = env
        .wait_token(NS, SHARED, "serving charts only", |t| {
            consumer_names(t) == ["charts"]
        })
        .await;
    let c3 = t3
        .status
        .as_ref()
        .and_then(|s| s.current.clone())
        .expect("current");
    assert_eq!(
        c3.token_id, c2.token_id,
        "a source leaving does not replace the shared token"
    );
    assert_eq!(group_record(&env, c2.token_id).state, "active");
    let secret2 = env.wait_secret(NS, SHARED).await;
    let (user2, pass2) = credentials(&secret2);
    git_ls_remote(&charts, &user2, &pass2)
        .await
        .expect("charts still served");

    // The last one leaves: the group token is revoked.
    env.delete(&repos, "charts").await;
    eventually("the group token to be revoked", || async {
        (group_record(&env, c2.token_id).state == "revoked").then_some(())
    })
    .await;
    assert!(active_group_tokens(&env).is_empty());
    assert!(git_ls_remote(&charts, &user2, &pass2).await.is_err(), "revoked");

    let mut values = seen.values();
    values.extend(token_values_of(&secret1));
    values.extend(token_values_of(&secret2));
    assert!(env.assert_no_leaks(&values).await > 0);
    env.stop().await;
}

/// What is wrong with namespace `ns`'s shared token after a crash and restart (empty: nothing):
/// exactly one active group token for the `GitLabToken`, recorded as current, in the Secret, and
/// working for both projects.
async fn shared_problems(env: &Env, ns: &str, urls: &[String]) -> Vec<String> {
    let api: Api<GitLabToken> = Api::namespaced(env.client.clone(), ns);
    let Ok(Some(t)) = api.get_opt(SHARED).await else {
        return vec!["no shared GitLabToken".into()];
    };
    let uid = t.uid().unwrap_or_default();
    let active: Vec<u64> = env
        .world
        .gitlab
        .tokens()
        .into_iter()
        .filter(|r| r.kind == "group" && r.state == "active" && r.name.ends_with(&uid))
        .map(|r| r.id)
        .collect();
    let mut problems = Vec::new();
    let current = t
        .status
        .as_ref()
        .and_then(|s| s.current.as_ref())
        .map(|c| c.token_id);
    if active.len() != 1 || current != active.first().copied() {
        problems.push(format!("active group tokens {active:?}, current {current:?}"));
    }
    if t.status.as_ref().is_some_and(|s| s.pending.is_some()) {
        problems.push("a pending record is left".into());
    }
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(env.client.clone(), ns);
    match secrets.get_opt(SHARED).await.ok().flatten() {
        Some(secret) if current.is_some() && secret_token_id(&secret) == current => {
            let (user, pass) = credentials(&secret);
            for url in urls {
                if git_ls_remote(url, &user, &pass).await.is_err() {
                    problems.push(format!("the shared Secret does not clone {url}"));
                }
            }
        }
        _ => problems.push("the shared Secret does not hold the current token".into()),
    }
    problems
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_any_issue_step_of_a_shared_group_token_leaves_one_working_token() {
    let mut env = Env::start_with(Options {
        operator_env: vec![("GTO_SWEEP_INTERVAL".into(), "1s".into())],
        ..Default::default()
    })
    .await;
    env.apply(shared_policy()).await;
    let mut failed = Vec::new();
    for (failpoint, ns) in [
        ("issue.after_pending", "team-gp"),
        ("issue.after_create", "team-gc"),
        ("issue.after_secret", "team-gs"),
    ] {
        env.namespace(ns).await;
        env.arm_crash_point(failpoint).await;
        let infra = annotated_repo(&env, ns, "infra", "acme/platform/infra", "1m").await;
        let charts = annotated_repo(&env, ns, "charts", "acme/platform/charts", "1m").await;
        if let Err(e) = env.expect_crash(failpoint, Duration::from_secs(30)).await {
            failed.push((failpoint, vec![e]));
            continue;
        }
        env.world
            .advance_clock(chrono::Duration::hours(1))
            .expect("clock");
        let urls = [infra, charts];
        match env
            .settle(Duration::from_secs(90), || shared_problems(&env, ns, &urls))
            .await
        {
            Ok(t) => {
                eprintln!("crash point {failpoint} (shared group token): settled {t:?} after the restart")
            }
            Err(problems) => failed.push((failpoint, problems)),
        }
    }
    env.stop().await;
    assert!(
        failed.is_empty(),
        "crash points whose invariants failed: {failed:#?}"
    );
}
