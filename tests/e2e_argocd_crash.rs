//! Crash tests for Argo CD requests (issue 13 with issue 9's ledger): the real binary, built with
//! the `failpoints` feature, stops at each step boundary of issuing an Argo CD repository token
//! and of its Overlap rotation, is restarted clean, and then (once the clock moved an hour, so the
//! orphan sweep may act) every active token is accounted for by a `GitLabToken` status, the
//! repository Secret in Argo CD's namespace holds an active accounted token, and Argo CD (the
//! stand-in) compares the Application successfully with it. Withdrawing the Applications leaves
//! no active token.

mod e2e;

use std::time::Duration;

use e2e::{Env, Options, eventually};
use gitlab_token_operator::{crd::GitLabToken, shim::argocd::token_name};
use kube::{
    Api, ResourceExt,
    api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind},
};
use serde_json::{Value, json};
use testbed::argocd::ArgoCdConfig;

const ARGOCD: &str = "argocd";
const TO_CRASH: Duration = Duration::from_secs(30);
const SETTLE: Duration = Duration::from_secs(90);

async fn start() -> Env {
    let env = Env::start_with(Options {
        operator_env: vec![("GTO_SWEEP_INTERVAL".into(), "1s".into())],
        argocd: Some(ArgoCdConfig {
            refresh_interval: Duration::from_secs(1),
            repo_error_grace_period: Duration::ZERO,
            ..ArgoCdConfig::default()
        }),
        ..Options::default()
    })
    .await;
    env.apply(
        json!({"apiVersion": "gitlabtokens.io/v1alpha1", "kind": "GitLabTokenPolicy",
        "metadata": {"name": "argocd-team-a"},
        "spec": {"namespaceSelector": {"matchNames": [ARGOCD]}, "projects": ["acme/**"],
                 "argoCD": {"appProjects": ["team-a"]}, "overlapGrace": "30m"}}),
    )
    .await;
    env.apply(json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "AppProject",
        "metadata": {"name": "team-a", "namespace": ARGOCD},
        "spec": {"sourceRepos": ["*"], "destinations": [{"server": "*", "namespace": "*"}]}}))
        .await;
    env
}

fn apps(env: &Env) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Application"),
        "applications",
    );
    Api::namespaced_with(env.client.clone(), ARGOCD, &ar)
}

fn url(env: &Env, project: &str) -> String {
    format!("{}/{project}.git", env.world.gitlab_url())
}

async fn annotated_app(env: &Env, name: &str, project: &str) {
    env.apply(
        json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": {"name": name, "namespace": ARGOCD, "annotations": {"gitlabtokens.io/inject": "true"}},
        "spec": {"project": "team-a",
                 "source": {"repoURL": url(env, project), "targetRevision": "HEAD", "path": "."},
                 "destination": {"server": "https://kubernetes.default.svc", "namespace": "default"}}}),
    )
    .await;
}

async fn uid_of(env: &Env, name: &str) -> String {
    let api: Api<GitLabToken> = Api::namespaced(env.client.clone(), ARGOCD);
    eventually(&format!("GitLabToken {ARGOCD}/{name}"), || {
        let api = api.clone();
        async move { api.get_opt(name).await.ok().flatten().and_then(|t| t.uid()) }
    })
    .await
}

/// Problems with the Application's token, Secret and comparison; empty when all hold.
async fn problems(env: &Env, token: &str, uid: &str, app: &str) -> Vec<String> {
    let mut out = env.ledger_violations(Some(&[uid.to_string()])).await;
    out.extend(env.secret_problem(ARGOCD, token).await);
    if out.is_empty() {
        let obj = apps(env).get_opt(app).await.ok().flatten();
        let status: Value = obj
            .map(|o| serde_json::to_value(o).unwrap_or_default()["status"].clone())
            .unwrap_or_default();
        let synced = status.pointer("/sync/status") == Some(&json!("Synced"));
        let error = status["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "ComparisonError");
        if !synced || error {
            out.push(format!(
                "Application {app} is not Synced with the Secret: {status}"
            ));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_any_step_of_issue_or_overlap_leaves_one_accounted_token_argo_cd_uses() {
    let mut env = start().await;
    let mut failed = Vec::new();
    let mut served = Vec::new();
    for (failpoint, app, project) in [
        ("issue.after_pending", "app-pending", "acme/team-a/app"),
        ("issue.after_create", "app-create", "acme/platform/infra"),
        ("issue.after_secret", "app-secret", "acme/team-b/api"),
    ] {
        env.arm_crash_point(failpoint).await;
        annotated_app(&env, app, project).await;
        if let Err(e) = env.expect_crash(failpoint, TO_CRASH).await {
            failed.push((failpoint, vec![e]));
            continue;
        }
        let token = token_name("team-a", &url(&env, project));
        let uid = uid_of(&env, &token).await;
        env.world
            .advance_clock(chrono::Duration::hours(1))
            .expect("clock");
        match env.settle(SETTLE, || problems(&env, &token, &uid, app)).await {
            Ok(t) => eprintln!("crash point {failpoint}: settled after {t:?}"),
            Err(p) => failed.push((failpoint, p)),
        }
        served.push((token, uid, app));
    }
    // An Overlap rotation stopped after the successor's Secret was written.
    let (token, uid, app) = served.first().cloned().expect("a served Application");
    for failpoint in ["issue.after_secret"] {
        env.arm_crash_point(failpoint).await;
        env.request_renewal(ARGOCD, &token).await;
        if let Err(e) = env.expect_crash(failpoint, TO_CRASH).await {
            failed.push(("overlap issue.after_secret", vec![e]));
            continue;
        }
        env.world
            .advance_clock(chrono::Duration::hours(1))
            .expect("clock");
        if let Err(p) = env.settle(SETTLE, || problems(&env, &token, &uid, app)).await {
            failed.push(("overlap issue.after_secret", p));
        }
    }
    // Withdrawal: every Application deleted, no active token is left for any of them.
    for (_, _, app) in &served {
        apps(&env).delete(app, &DeleteParams::default()).await.unwrap();
    }
    let uids: Vec<String> = served.iter().map(|(_, u, _)| u.clone()).collect();
    let left = env
        .settle(SETTLE, || async {
            let active: Vec<u64> = env
                .active_marker_tokens()
                .into_iter()
                .filter(|t| uids.iter().any(|u| t.name.ends_with(u)))
                .map(|t| t.id)
                .collect();
            if active.is_empty() {
                Vec::new()
            } else {
                vec![format!(
                    "active tokens {active:?} left after the Applications went away"
                )]
            }
        })
        .await;
    if let Err(p) = left {
        failed.push(("withdrawal", p));
    }
    env.stop().await;
    assert!(
        failed.is_empty(),
        "crash points whose invariants failed: {failed:#?}"
    );
}
