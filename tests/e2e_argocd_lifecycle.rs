//! Argo CD lifecycle end to end (issue 13): rotation while the Argo CD stand-in refreshes in a
//! loop never fails a comparison; an Overlap waits for Argo CD to compare with the new token, or
//! for the grace; a Helm chart is fetched with the operator's Secret; a restart keeps every token.

mod e2e;

use e2e::{
    argocd::{ARGOCD, app, git_source, ready_token, start, synced, value, wait_app},
    eventually,
};
use gitlab_token_operator::crd::GitLabToken;
use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams},
};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_while_argo_cd_refreshes_never_fails_a_comparison() {
    let env = start().await;
    let source = git_source(&env, "acme/team-a/app");
    let url = source["repoURL"].as_str().unwrap().to_string();
    env.apply(app(ARGOCD, "web", "team-a", true, source)).await;
    let token = ready_token(&env, &url, "team-a").await;
    wait_app(&env, ARGOCD, "web", "Synced", synced).await;
    let old = token
        .status
        .as_ref()
        .and_then(|s| s.current.as_ref())
        .map(|c| c.token_id)
        .unwrap();
    let standin = env.world.argocd.as_ref().expect("stand-in");
    let before = standin.refreshes().len();

    // Ask for a renewal now: Overlap mints a successor, rewrites the Secret, hard-refreshes the
    // Application, and revokes the old token once Argo CD compared successfully with the new one.
    let tokens: Api<GitLabToken> = Api::namespaced(env.client.clone(), ARGOCD);
    tokens
        .patch(
            &token.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"gitlabtokens.io/renew-requested-at": chrono::Utc::now().to_rfc3339()}}})),
        )
        .await
        .unwrap();
    eventually(
        "the old token to be revoked after Argo CD used the new one",
        || async {
            env.world
                .gitlab
                .tokens()
                .into_iter()
                .find(|t| t.id == old && t.state == "revoked")
                .map(|_| ())
        },
    )
    .await;
    let rotated = tokens.get(&token.name_any()).await.unwrap();
    let new = rotated
        .status
        .as_ref()
        .and_then(|s| s.current.as_ref())
        .map(|c| c.token_id)
        .unwrap();
    assert_ne!(new, old);
    let history = rotated.status.as_ref().unwrap().history.clone();
    let reason = history
        .iter()
        .find(|h| h.token_id == old)
        .and_then(|h| h.reason.clone());
    assert_eq!(reason.as_deref(), Some("Rotated"), "{history:?}");
    // Revoked because Argo CD caught up, not because the 10-minute grace ended.
    let hard = standin
        .refreshes()
        .into_iter()
        .skip(before)
        .filter(|r| {
            r.name == "web"
                && matches!(
                    r.refresh,
                    testbed::argocd::status::Refresh::Requested { hard: true }
                )
        })
        .count();
    assert!(hard >= 1, "the operator never asked Argo CD for a hard refresh");
    // Argo CD keeps comparing after the old token is gone: two more comparisons of `web`.
    let seen = standin.refreshes().iter().filter(|r| r.name == "web").count();
    eventually("two comparisons after the old token's revocation", || async {
        (standin.refreshes().iter().filter(|r| r.name == "web").count() >= seen + 2).then_some(())
    })
    .await;
    // Every comparison of the Application from its first success on (before the Secret existed
    // it could not fetch), during and after the rotation, succeeded.
    let web: Vec<_> = standin
        .refreshes()
        .into_iter()
        .filter(|r| r.name == "web")
        .skip_while(|r| r.outcome.is_err())
        .collect();
    let failed: Vec<_> = web.iter().filter(|r| r.outcome.is_err()).collect();
    assert!(
        failed.is_empty(),
        "comparisons failed during rotation: {failed:?}"
    );
    assert!(
        web.len() >= 3,
        "too few comparisons to mean anything: {}",
        web.len()
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_helm_chart_is_fetched_with_its_secret_and_a_restart_keeps_every_token() {
    let mut env = start().await;
    // The platform's charts, for AppProject team-a.
    env.apply(
        json!({"apiVersion": "gitlabtokens.io/v1alpha1", "kind": "GitLabTokenPolicy",
        "metadata": {"name": "argocd-platform-charts"},
        "spec": {"namespaceSelector": {"matchNames": [ARGOCD]}, "projects": ["acme/platform/charts"],
                 "argoCD": {"appProjects": ["team-a"]}, "consumers": ["Application"]}}),
    )
    .await;
    let charts_id = env
        .world
        .seed
        .as_ref()
        .and_then(|s| s.projects.iter().find(|p| p.path == "acme/platform/charts"))
        .map(|p| p.id)
        .expect("seeded project");
    let helm_url = format!(
        "{}/api/v4/projects/{charts_id}/packages/helm/stable",
        env.world.gitlab_url()
    );
    let git = git_source(&env, "acme/team-a/app");
    let git_url = git["repoURL"].as_str().unwrap().to_string();
    env.apply(app(ARGOCD, "web", "team-a", true, git)).await;
    env.apply(app(
        ARGOCD,
        "charts",
        "team-a",
        true,
        json!({"repoURL": helm_url, "chart": "charts", "targetRevision": testbed::world::SEED_CHART_VERSION}),
    ))
    .await;
    let helm = ready_token(&env, &helm_url, "team-a").await;
    let git_token = ready_token(&env, &git_url, "team-a").await;
    let secret = env.wait_secret(ARGOCD, &helm.spec.secret.name).await;
    assert_eq!(value(&secret, "type"), "helm");
    assert_eq!(value(&secret, "name"), "gitlab-team-a-stable");
    assert_eq!(
        helm.status.as_ref().and_then(|s| s.policy.clone()).as_deref(),
        Some("argocd-platform-charts")
    );
    let synced_chart = wait_app(&env, ARGOCD, "charts", "Synced", synced).await;
    assert_eq!(
        synced_chart["status"]["sync"]["revision"],
        testbed::world::SEED_CHART_VERSION,
        "Argo CD resolved the chart from GitLab's package registry with the Secret"
    );
    wait_app(&env, ARGOCD, "web", "Synced", synced).await;

    // A restart: the shim waits for its view before deciding, so nothing is deleted or re-minted.
    let ids = |t: &GitLabToken| {
        t.status
            .as_ref()
            .and_then(|s| s.current.as_ref())
            .map(|c| c.token_id)
    };
    let before: Vec<Option<u64>> = vec![ids(&git_token), ids(&helm)];
    let minted = env.all_operator_tokens().len();
    env.kill_operator().await;
    env.start_operator().await;
    // A change after the restart proves the new process's shim ran a full pass.
    env.apply(app(
        ARGOCD,
        "web-2",
        "team-a",
        true,
        git_source(&env, "acme/team-a/app"),
    ))
    .await;
    let tokens: Api<GitLabToken> = Api::namespaced(env.client.clone(), ARGOCD);
    eventually("the restarted shim to add web-2 to the shared token", || {
        let tokens = tokens.clone();
        let name = git_token.name_any();
        async move {
            let t = tokens.get_opt(&name).await.ok()??;
            (t.spec.consumers.len() == 2).then_some(())
        }
    })
    .await;
    let after: Vec<Option<u64>> = vec![
        ids(&tokens.get(&git_token.name_any()).await.unwrap()),
        ids(&tokens.get(&helm.name_any()).await.unwrap()),
    ];
    assert_eq!(after, before, "a restart changed the tokens");
    assert_eq!(env.all_operator_tokens().len(), minted, "a restart minted tokens");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overlap_waits_for_argo_cd_and_ends_with_the_grace_when_it_never_refreshes() {
    let env = start().await;
    // Namespace apps-x is allowed by the AppProject and the policy, but Argo CD does not watch it
    // (its application.namespaces are team-*): the Application is never compared.
    env.namespace("apps-x").await;
    env.apply(
        json!({"apiVersion": "gitlabtokens.io/v1alpha1", "kind": "GitLabTokenPolicy",
        "metadata": {"name": "argocd-apps-x"},
        "spec": {"namespaceSelector": {"matchNames": ["apps-x"]}, "projects": ["acme/team-a/**"],
                 "argoCD": {"appProjects": ["apps-x"]}, "overlapGrace": "10m"}}),
    )
    .await;
    env.apply(json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "AppProject",
        "metadata": {"name": "apps-x", "namespace": ARGOCD},
        "spec": {"sourceRepos": ["*"], "sourceNamespaces": ["apps-x"],
                 "destinations": [{"server": "*", "namespace": "*"}]}}))
        .await;
    let source = git_source(&env, "acme/team-a/app");
    let url = source["repoURL"].as_str().unwrap().to_string();
    env.apply(app("apps-x", "web", "apps-x", true, source)).await;
    let token = ready_token(&env, &url, "apps-x").await;
    let old = token
        .status
        .as_ref()
        .and_then(|s| s.current.as_ref())
        .map(|c| c.token_id)
        .unwrap();
    let tokens: Api<GitLabToken> = Api::namespaced(env.client.clone(), ARGOCD);
    tokens
        .patch(
            &token.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"gitlabtokens.io/renew-requested-at": chrono::Utc::now().to_rfc3339()}}})),
        )
        .await
        .unwrap();
    // The successor is in the Secret and the Application was asked for a hard refresh ...
    let overlapping = eventually("the overlap to start with the Application nudged", || {
        let tokens = tokens.clone();
        let name = token.name_any();
        async move {
            let t = tokens.get_opt(&name).await.ok()??;
            let s = t.status.as_ref()?;
            (s.previous.as_ref()?.token_id == old && s.previous.as_ref()?.nudged_at.is_some()).then_some(t)
        }
    })
    .await;
    let nudged = wait_app(&env, "apps-x", "web", "asked for a hard refresh", |o| {
        o.pointer("/metadata/annotations/argocd.argoproj.io~1refresh") == Some(&json!("hard"))
    })
    .await;
    assert!(
        nudged.pointer("/status/reconciledAt").is_none(),
        "Argo CD never compared it"
    );
    let new = overlapping
        .status
        .as_ref()
        .and_then(|s| s.current.as_ref())
        .map(|c| c.token_id)
        .unwrap();
    assert_ne!(new, old);
    // ... and the old token stays alive while Argo CD has not used the new one.
    let state = |id: u64| {
        env.world
            .gitlab
            .tokens()
            .into_iter()
            .find(|t| t.id == id)
            .map(|t| t.state)
            .unwrap_or_default()
    };
    let reconciles = env.token_reconciles().await;
    eventually("a few more token reconciles during the overlap", || async {
        (env.token_reconciles().await >= reconciles + 2.0).then_some(())
    })
    .await;
    assert_eq!(state(old), "active", "revoked before Argo CD used the new token");
    // The grace (10 minutes on the operator's clock) ends: the old token is revoked.
    env.world
        .advance_clock(chrono::Duration::minutes(11))
        .expect("clock");
    eventually("the old token to be revoked once the grace ended", || async {
        (state(old) == "revoked").then_some(())
    })
    .await;
    assert_eq!(state(new), "active");
    env.stop().await;
}
