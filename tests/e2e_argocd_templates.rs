//! Argo CD credential templates end to end (issue 13): an AppProject annotated with a GitLab
//! group gets a `repo-creds` Secret for the group's URL prefix, backed by a group access token;
//! two Applications on two projects of the group fetch through it (no per-repository Secret), a
//! project outside the group is not served; rotation while the stand-in refreshes in a loop never
//! fails a comparison; removing the annotation revokes the group token and deletes the Secret; a
//! policy without `GroupAccessToken` refuses with its reason (condition, event, metric).

mod e2e;

use e2e::{
    Env,
    argocd::{ARGOCD, app, comparison_error, git_source, start, synced, value, wait_app},
    eventually,
};
use gitlab_token_operator::{crd::GitLabToken, shim::argocd_templates::template_token_name};
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api,
    api::{ListParams, Patch, PatchParams},
};
use serde_json::{Value, json};

/// A policy for AppProject `platform` on group `acme/platform`, with or without group tokens.
fn platform_policy(group_tokens: bool) -> Value {
    let mut spec = json!({"namespaceSelector": {"matchNames": [ARGOCD]}, "projects": ["acme/platform/**"],
        "argoCD": {"appProjects": ["platform"]}, "overlapGrace": "10m"});
    if group_tokens {
        spec["credentialKinds"] = json!(["ProjectAccessToken", "GroupAccessToken"]);
        spec["groups"] = json!(["acme/platform"]);
    }
    json!({"apiVersion": "gitlabtokens.io/v1alpha1", "kind": "GitLabTokenPolicy",
        "metadata": {"name": "argocd-platform"}, "spec": spec})
}

/// AppProject `platform`, asking for a template for `acme/platform` when `annotated`.
fn platform_project(annotated: bool) -> Value {
    // Server-side apply: leaving the annotations out removes those the test set before.
    let mut project = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "AppProject",
        "metadata": {"name": "platform", "namespace": ARGOCD},
        "spec": {"sourceRepos": ["*"], "destinations": [{"server": "*", "namespace": "*"}]}});
    if annotated {
        project["metadata"]["annotations"] =
            json!({"gitlabtokens.io/inject": "true", "gitlabtokens.io/group": "acme/platform"});
    }
    project
}

/// Argo CD's credential Secrets in its namespace with `secret-type` `kind`.
async fn argo_secrets(env: &Env, kind: &str) -> Vec<Secret> {
    let api: Api<Secret> = Api::namespaced(env.client.clone(), ARGOCD);
    api.list(&ListParams::default().labels(&format!("argocd.argoproj.io/secret-type={kind}")))
        .await
        .expect("list")
        .items
}

/// The GitLab record of a group access token.
fn group_token_state(env: &Env, id: u64) -> String {
    env.world
        .gitlab
        .tokens()
        .into_iter()
        .find(|t| t.kind == "group" && t.id == id)
        .map(|t| t.state)
        .unwrap_or_default()
}

fn current_id(t: &GitLabToken) -> u64 {
    t.status
        .as_ref()
        .and_then(|s| s.current.as_ref())
        .map(|c| c.token_id)
        .expect("current token")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_template_serves_its_repositories_rotates_without_a_failed_fetch_and_is_revoked() {
    let env = start().await;
    env.apply(platform_policy(true)).await;
    env.apply(platform_project(true)).await;
    // Two Applications on two projects of the group, opted in; one of the same AppProject on a
    // project outside the group; one of another AppProject on the group (the blast radius).
    env.apply(app(
        ARGOCD,
        "infra",
        "platform",
        true,
        git_source(&env, "acme/platform/infra"),
    ))
    .await;
    env.apply(app(
        ARGOCD,
        "charts",
        "platform",
        true,
        git_source(&env, "acme/platform/charts"),
    ))
    .await;
    env.apply(app(
        ARGOCD,
        "outside",
        "platform",
        false,
        git_source(&env, "acme/team-a/app"),
    ))
    .await;
    env.apply(app(
        ARGOCD,
        "borrower",
        "team-b",
        false,
        git_source(&env, "acme/platform/infra"),
    ))
    .await;

    let name = template_token_name("platform", "acme/platform");
    let token = env
        .wait_token_condition(ARGOCD, &name, "Ready", "True", Some("Issued"))
        .await;
    let current = token.status.as_ref().and_then(|s| s.current.clone()).unwrap();
    assert_eq!(
        current.kind,
        gitlab_token_operator::crd::CredentialKind::GroupAccessToken
    );
    assert!(current.group_id.is_some(), "the ledger records the group");
    // The Applications of the group are the token's consumers (nudged on rotation), with the
    // AppProject: the shim adds each as it sees it, so wait for the set rather than read it once.
    let consumers_of = |t: &GitLabToken| {
        let mut c: Vec<String> = t
            .spec
            .consumers
            .iter()
            .map(|c| format!("{}/{}", c.kind, c.name))
            .collect();
        c.sort();
        c
    };
    let token = env
        .wait_token(ARGOCD, &name, "both Applications as consumers", |t| {
            consumers_of(t).len() >= 3
        })
        .await;
    assert_eq!(
        consumers_of(&token),
        ["AppProject/platform", "Application/charts", "Application/infra"]
    );

    // One repo-creds Secret with the group's prefix and no project key; no repository Secret.
    let secret = env.wait_secret(ARGOCD, &name).await;
    let labels = secret.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels.get("argocd.argoproj.io/secret-type").map(String::as_str),
        Some("repo-creds")
    );
    assert_eq!(
        value(&secret, "url"),
        format!("{}/acme/platform/", env.world.gitlab_url())
    );
    assert_eq!(value(&secret, "type"), "git");
    let mut keys: Vec<&String> = secret.data.as_ref().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["password", "type", "url", "username"]);
    assert!(
        argo_secrets(&env, "repository").await.is_empty(),
        "a per-repository Secret was written"
    );
    assert_eq!(argo_secrets(&env, "repo-creds").await.len(), 1);

    wait_app(&env, ARGOCD, "infra", "Synced", synced).await;
    wait_app(&env, ARGOCD, "charts", "Synced", synced).await;
    // Blast radius: Argo CD cannot scope templates, so another AppProject's Application under
    // the prefix fetches with it too (documented in the admin guide).
    wait_app(&env, ARGOCD, "borrower", "Synced", synced).await;
    // Outside the group, the template does not apply: Argo CD fetches anonymously and fails.
    let outside = wait_app(&env, ARGOCD, "outside", "failing to fetch", |o| {
        comparison_error(o).is_some()
    })
    .await;
    let error = comparison_error(&outside).unwrap();
    assert!(error.contains("authentication required"), "{error}");

    // Rotation (Overlap, as for every group token) while the stand-in refreshes every second.
    let standin = env.world.argocd.as_ref().expect("stand-in");
    let before = standin.refreshes().len();
    let tokens: Api<GitLabToken> = Api::namespaced(env.client.clone(), ARGOCD);
    tokens
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"gitlabtokens.io/renew-requested-at": chrono::Utc::now().to_rfc3339()}}})),
        )
        .await
        .unwrap();
    let old = current.token_id;
    eventually(
        "the old group token to be revoked after Argo CD used the new one",
        || async { (group_token_state(&env, old) == "revoked").then_some(()) },
    )
    .await;
    let rotated = tokens.get(&name).await.unwrap();
    let new = current_id(&rotated);
    assert_ne!(new, old);
    assert_eq!(group_token_state(&env, new), "active");
    let history = rotated.status.as_ref().unwrap().history.clone();
    let reason = history
        .iter()
        .find(|h| h.token_id == old)
        .and_then(|h| h.reason.clone());
    assert_eq!(reason.as_deref(), Some("Rotated"), "{history:?}");
    // Revoked because both Applications compared with the new token (the grace is 10 minutes).
    for app_name in ["infra", "charts"] {
        let hard = standin
            .refreshes()
            .into_iter()
            .skip(before)
            .filter(|r| {
                r.name == app_name
                    && matches!(
                        r.refresh,
                        testbed::argocd::status::Refresh::Requested { hard: true }
                    )
            })
            .count();
        assert!(hard >= 1, "{app_name} was never hard-refreshed");
    }
    // Argo CD keeps comparing after the old token is gone: two more comparisons of each.
    let count = |name: &str| standin.refreshes().iter().filter(|r| r.name == name).count();
    let seen: Vec<usize> = ["infra", "charts", "borrower"].iter().map(|n| count(n)).collect();
    eventually(
        "two comparisons of each Application after the revocation",
        || async {
            ["infra", "charts", "borrower"]
                .iter()
                .zip(&seen)
                .all(|(n, s)| count(n) >= s + 2)
                .then_some(())
        },
    )
    .await;
    // Every comparison of the served Applications from their first success on succeeded.
    let mut fetches = 0;
    let mut failures = Vec::new();
    for app_name in ["infra", "charts", "borrower"] {
        let served: Vec<_> = standin
            .refreshes()
            .into_iter()
            .filter(|r| r.name == app_name)
            .skip_while(|r| r.outcome.is_err())
            .collect();
        fetches += served.len();
        failures.extend(served.into_iter().filter(|r| r.outcome.is_err()));
    }
    println!(
        "template rotation: {fetches} comparisons through the template, {} failed",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "comparisons failed during rotation: {failures:?}"
    );
    assert!(fetches >= 6, "too few comparisons to mean anything: {fetches}");

    // Removing the annotation withdraws the template: token gone, group token revoked, Secret gone.
    env.apply(platform_project(false)).await;
    eventually("the template's GitLabToken to be deleted", || async {
        tokens.get_opt(&name).await.ok()?.is_none().then_some(())
    })
    .await;
    eventually("the group token to be revoked", || async {
        (group_token_state(&env, new) == "revoked").then_some(())
    })
    .await;
    eventually("the repo-creds Secret to be deleted", || async {
        argo_secrets(&env, "repo-creds").await.is_empty().then_some(())
    })
    .await;
    // The Applications, no longer claimed by a template, get their own repository Secrets
    // (the policy allows acme/platform/** project tokens for AppProject platform).
    eventually("per-repository Secrets for the opted-in Applications", || async {
        (argo_secrets(&env, "repository").await.len() == 2).then_some(())
    })
    .await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_without_group_access_tokens_refuses_the_template_with_its_reason() {
    let env = start().await;
    env.apply(platform_policy(false)).await;
    env.apply(platform_project(true)).await;
    // No opted-in Application uses the group yet: said on the AppProject, nothing minted.
    let waiting = env.wait_warning(ARGOCD, "platform", "ArgoCDGroupUnused").await;
    assert!(waiting.contains("acme/platform/"), "{waiting}");

    env.apply(app(
        ARGOCD,
        "infra",
        "platform",
        true,
        git_source(&env, "acme/platform/infra"),
    ))
    .await;
    let name = template_token_name("platform", "acme/platform");
    let refused = env
        .wait_token_condition(ARGOCD, &name, "Ready", "False", Some("PolicyDenied"))
        .await;
    let message = refused
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(message.contains("GroupAccessToken"), "{message}");
    // The refusal reaches the AppProject (and the Application) as an event, and the metric.
    let note = env.wait_warning(ARGOCD, "platform", "PolicyDenied").await;
    assert!(note.contains("GroupAccessToken"), "{note}");
    env.wait_warning(ARGOCD, "infra", "PolicyDenied").await;
    assert!(
        env.metric(
            "gitlab_token_operator_policy_denials_total",
            &[("reason", "PolicyDenied")]
        )
        .await
            >= 1.0
    );
    // Nothing minted, no Secret, and the Application's source is left to the template.
    assert!(
        env.world.gitlab.tokens().iter().all(|t| t.kind != "group"),
        "a group token was minted"
    );
    assert!(argo_secrets(&env, "repo-creds").await.is_empty());
    assert!(argo_secrets(&env, "repository").await.is_empty());

    // Allowing group tokens on the group serves it.
    env.apply(platform_policy(true)).await;
    let issued = env
        .wait_token_condition(ARGOCD, &name, "Ready", "True", Some("Issued"))
        .await;
    wait_app(&env, ARGOCD, "infra", "Synced", synced).await;
    // Deleting the AppProject withdraws the template: group token revoked, Secret deleted.
    let id = current_id(&issued);
    let projects = Api::<kube::api::DynamicObject>::namespaced_with(
        env.client.clone(),
        ARGOCD,
        &e2e::argocd::ar("AppProject", "appprojects"),
    );
    env.delete(&projects, "platform").await;
    eventually("the group token to be revoked with its AppProject", || async {
        (group_token_state(&env, id) == "revoked").then_some(())
    })
    .await;
    eventually("the repo-creds Secret to be deleted", || async {
        argo_secrets(&env, "repo-creds").await.is_empty().then_some(())
    })
    .await;
    env.stop().await;
}
