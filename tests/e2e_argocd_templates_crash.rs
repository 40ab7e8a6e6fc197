//! Crash tests for Argo CD credential templates (issue 13, group access tokens in the ledger):
//! the real binary, built with `failpoints`, stops after creating the first group token, and
//! after writing the successor's `repo-creds` Secret in an Overlap rotation; restarted
//! clean, then (the clock moved an hour, so the orphan sweep may act) every active group token
//! named for the template is accounted for by its status (at most two while an overlap is open),
//! the Secret holds an active accounted one, and Argo CD (the stand-in) compares the Application
//! through the template. Removing the annotation leaves no active group token.

mod e2e;

use std::time::Duration;

use e2e::{Env, Options, eventually, invariants::MARKER, lifecycle::secret_token_id};
use gitlab_token_operator::{crd::GitLabToken, shim::argocd_templates::template_token_name};
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, ResourceExt};
use serde_json::json;
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
        "metadata": {"name": "argocd-platform"},
        "spec": {"namespaceSelector": {"matchNames": [ARGOCD]}, "projects": ["acme/platform/**"],
                 "argoCD": {"appProjects": ["platform"]}, "overlapGrace": "30m",
                 "credentialKinds": ["ProjectAccessToken", "GroupAccessToken"], "groups": ["acme/platform"]}}),
    )
    .await;
    env
}

fn project(annotated: bool) -> serde_json::Value {
    let mut p = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "AppProject",
        "metadata": {"name": "platform", "namespace": ARGOCD},
        "spec": {"sourceRepos": ["*"], "destinations": [{"server": "*", "namespace": "*"}]}});
    if annotated {
        p["metadata"]["annotations"] =
            json!({"gitlabtokens.io/inject": "true", "gitlabtokens.io/group": "acme/platform"});
    }
    p
}

/// Active group tokens named for the GitLabToken `uid`.
fn active_group_tokens(env: &Env, uid: &str) -> Vec<u64> {
    env.world
        .gitlab
        .tokens()
        .into_iter()
        .filter(|t| t.kind == "group" && t.state == "active" && t.name == format!("{MARKER}{uid}"))
        .map(|t| t.id)
        .collect()
}

/// Problems with the template's ledger, Secret and the Application's comparison.
async fn problems(env: &Env, name: &str, uid: &str) -> Vec<String> {
    let mut out = Vec::new();
    let accounts = env.accounts().await;
    let Some(a) = accounts.iter().find(|a| a.namespace == ARGOCD && a.name == name) else {
        return vec![format!("GitLabToken {name} does not exist")];
    };
    let active = active_group_tokens(env, uid);
    for id in &active {
        if !a.ids.contains(id) {
            out.push(format!("active group token {id} is accounted for by no status"));
        }
    }
    let allowed = if a.overlap_open { 2 } else { 1 };
    if active.len() > allowed {
        out.push(format!(
            "{} active group tokens {active:?} (allowed {allowed})",
            active.len()
        ));
    }
    if !a.ready {
        out.push(format!("GitLabToken {name} is not Ready"));
        return out;
    }
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), ARGOCD);
    match secrets
        .get_opt(&a.secret)
        .await
        .ok()
        .flatten()
        .and_then(|s| secret_token_id(&s))
    {
        Some(id) if active.contains(&id) && a.ids.contains(&id) => {}
        other => out.push(format!(
            "the repo-creds Secret holds {other:?}, not an active accounted group token"
        )),
    }
    let app = e2e::argocd::apps(env, ARGOCD)
        .get_opt("infra")
        .await
        .ok()
        .flatten();
    let app = app
        .map(|o| serde_json::to_value(o).unwrap_or_default())
        .unwrap_or_default();
    if !e2e::argocd::synced(&app) || e2e::argocd::comparison_error(&app).is_some() {
        out.push(format!(
            "Application infra is not Synced through the template: {}",
            app["status"]
        ));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_any_step_of_a_templates_issue_or_overlap_leaves_accounted_group_tokens() {
    let mut env = start().await;
    let name = template_token_name("platform", "acme/platform");
    let mut failed = Vec::new();
    env.apply(project(true)).await;
    env.arm_crash_point("issue.after_create").await;
    env.apply(e2e::argocd::app(
        ARGOCD,
        "infra",
        "platform",
        true,
        e2e::argocd::git_source(&env, "acme/platform/infra"),
    ))
    .await;
    if let Err(e) = env.expect_crash("issue.after_create", TO_CRASH).await {
        failed.push(("issue.after_create", vec![e]));
    }
    let tokens: Api<GitLabToken> = Api::namespaced(env.client.clone(), ARGOCD);
    let uid = eventually("the template's GitLabToken", || async {
        tokens.get_opt(&name).await.ok().flatten().and_then(|t| t.uid())
    })
    .await;
    env.world
        .advance_clock(chrono::Duration::hours(1))
        .expect("clock");
    if let Err(p) = env.settle(SETTLE, || problems(&env, &name, &uid)).await {
        failed.push(("issue.after_create", p));
    }
    // An Overlap rotation stopped after the successor's Secret was written.
    for failpoint in ["issue.after_secret"] {
        env.arm_crash_point(failpoint).await;
        env.request_renewal(ARGOCD, &name).await;
        if let Err(e) = env.expect_crash(failpoint, TO_CRASH).await {
            failed.push((failpoint, vec![e]));
            continue;
        }
        env.world
            .advance_clock(chrono::Duration::hours(1))
            .expect("clock");
        if let Err(p) = env.settle(SETTLE, || problems(&env, &name, &uid)).await {
            failed.push((failpoint, p));
        }
    }
    // Withdrawal: the annotation removed, no active group token is left.
    env.apply(project(false)).await;
    let left = env
        .settle(SETTLE, || async {
            let active = active_group_tokens(&env, &uid);
            if active.is_empty() {
                Vec::new()
            } else {
                vec![format!(
                    "active group tokens {active:?} left after the annotation went away"
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
