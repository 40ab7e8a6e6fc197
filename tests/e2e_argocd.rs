//! Argo CD as a second consumer (issue 13), with the real operator binary and the Argo CD
//! stand-in (which picks credentials exactly as Argo CD's `db.GetRepository` does and fetches
//! with real git): annotated Applications get project-scoped repository Secrets in Argo CD's
//! namespace that Argo CD fetches with; another AppProject cannot use them; apps in other
//! namespaces need their AppProject's `sourceNamespaces`; policies decide by AppProject;
//! denial, withdrawal and deletion revoke; a rotation while Argo CD refreshes in a loop never
//! makes a comparison fail.

mod e2e;

use e2e::{
    argocd::{
        ARGOCD, app, apps, ar, comparison_error, git_source, ready_token, start, synced, value, wait_app,
    },
    eventually,
};
use gitlab_token_operator::crd::GitLabToken;
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, DynamicObject, Patch, PatchParams},
};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_annotated_application_gets_a_project_scoped_secret_argo_cd_fetches_with() {
    let env = start().await;
    let source = git_source(&env, "acme/team-a/app");
    let url = source["repoURL"].as_str().unwrap().to_string();
    // Before the operator serves it, Argo CD cannot read the private project.
    env.apply(app(ARGOCD, "other", "team-b", false, source.clone()))
        .await;
    let refused = wait_app(&env, ARGOCD, "other", "refused", |o| {
        comparison_error(o).is_some()
    })
    .await;
    assert!(
        comparison_error(&refused)
            .unwrap()
            .contains("authentication required"),
        "{refused}"
    );

    env.apply(app(ARGOCD, "web", "team-a", true, source.clone()))
        .await;
    let token = ready_token(&env, &url, "team-a").await;
    let secret = env.wait_secret(ARGOCD, &token.spec.secret.name).await;
    // Exactly the repository Secret Argo CD reads: label, keys, scope.
    assert_eq!(
        secret
            .labels()
            .get("argocd.argoproj.io/secret-type")
            .map(String::as_str),
        Some("repository")
    );
    assert_eq!(value(&secret, "type"), "git");
    assert_eq!(value(&secret, "url"), url);
    assert_eq!(value(&secret, "project"), "team-a");
    assert!(value(&secret, "password").starts_with("glpat-") || !value(&secret, "password").is_empty());
    let keys: Vec<&String> = secret.data.as_ref().unwrap().keys().collect();
    assert_eq!(keys, ["password", "project", "type", "url", "username"]);
    let spec = token.spec.argo_cd.as_ref().expect("spec.argoCD");
    assert_eq!(
        (spec.project.as_str(), spec.application_namespaces.clone()),
        ("team-a", vec![ARGOCD.to_string()])
    );
    assert_eq!(
        token.status.as_ref().and_then(|s| s.policy.clone()).as_deref(),
        Some("argocd-team-a")
    );
    // The GitLab token: acme/team-a/app, read_repository, Reporter.
    let record = env
        .world
        .gitlab
        .tokens()
        .into_iter()
        .find(|t| {
            Some(t.id)
                == token
                    .status
                    .as_ref()
                    .and_then(|s| s.current.as_ref())
                    .map(|c| c.token_id)
        })
        .expect("GitLab knows the token");
    assert_eq!(record.scopes, ["read_repository"]);

    // Argo CD fetches with it ...
    wait_app(&env, ARGOCD, "web", "Synced", synced).await;
    // ... and an Application of another AppProject on the same repository still cannot.
    apps(&env, ARGOCD)
        .patch(
            "other",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"argocd.argoproj.io/refresh": "hard"}}})),
        )
        .await
        .unwrap();
    let still = wait_app(&env, ARGOCD, "other", "refreshed again", |o| {
        o.pointer("/metadata/annotations/argocd.argoproj.io~1refresh")
            .is_none()
    })
    .await;
    assert!(
        comparison_error(&still).is_some_and(|m| m.contains("authentication required")),
        "AppProject team-b used team-a's credential: {still}"
    );
    let tokens: Api<GitLabToken> = Api::namespaced(env.client.clone(), ARGOCD);
    assert_eq!(
        tokens.list(&Default::default()).await.unwrap().items.len(),
        1,
        "the unannotated Application gets nothing"
    );

    // Multi-source Application of the same AppProject and repository: the same token serves both.
    let helm = json!({"repoURL": format!("{}/api/v4/projects/acme%2Fteam-a%2Fapp/packages/helm/stable", env.world.gitlab_url()),
        "chart": "nothing", "targetRevision": "1.0.0"});
    env.apply(app(
        ARGOCD,
        "web-multi",
        "team-a",
        true,
        json!([source.clone(), helm]),
    ))
    .await;
    let both = eventually("the shared token to list both Applications", || {
        let tokens = tokens.clone();
        let name = token.name_any();
        async move {
            let t = tokens.get_opt(&name).await.ok()??;
            (t.spec.consumers.len() == 2).then_some(t)
        }
    })
    .await;
    assert_eq!(
        both.status
            .as_ref()
            .and_then(|s| s.current.as_ref())
            .map(|c| c.token_id),
        token
            .status
            .as_ref()
            .and_then(|s| s.current.as_ref())
            .map(|c| c.token_id),
        "no new token for a second consumer"
    );
    let helm_token = eventually("a helm repository token for the chart source", || {
        let tokens = tokens.clone();
        async move {
            let list = tokens.list(&Default::default()).await.ok()?.items;
            list.into_iter().find(|t| {
                t.spec
                    .argo_cd
                    .as_ref()
                    .is_some_and(|a| a.repo_type.as_str() == "helm")
            })
        }
    })
    .await;
    assert_eq!(
        helm_token
            .spec
            .scopes
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>(),
        ["read_api"]
    );

    // Deleting every Application that uses a repository revokes its token and removes the Secret.
    let id = token
        .status
        .as_ref()
        .and_then(|s| s.current.as_ref())
        .map(|c| c.token_id)
        .unwrap();
    for name in ["web", "web-multi"] {
        apps(&env, ARGOCD)
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
    }
    eventually("the GitLab token to be revoked", || async {
        env.world
            .gitlab
            .tokens()
            .into_iter()
            .find(|t| t.id == id && t.state == "revoked")
            .map(|_| ())
    })
    .await;
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), ARGOCD);
    eventually("the repository Secret to be gone", || {
        let secrets = secrets.clone();
        let name = token.spec.secret.name.clone();
        async move { secrets.get_opt(&name).await.ok()?.is_none().then_some(()) }
    })
    .await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_in_other_namespaces_denials_and_withdrawal() {
    let env = start().await;
    let source = git_source(&env, "acme/team-a/app");
    let url = source["repoURL"].as_str().unwrap().to_string();

    // team-a is in AppProject team-a's sourceNamespaces: served, scoped to team-a.
    env.apply(app("team-a", "web", "team-a", true, source.clone()))
        .await;
    let token = ready_token(&env, &url, "team-a").await;
    assert_eq!(
        token.spec.argo_cd.as_ref().unwrap().application_namespaces,
        ["team-a"]
    );
    wait_app(&env, "team-a", "web", "Synced", synced).await;

    // team-b is not in AppProject team-a's sourceNamespaces: refused with an event, nothing minted.
    let minted = env.all_operator_tokens().len();
    env.apply(app(
        "team-b",
        "web",
        "team-a",
        true,
        git_source(&env, "acme/team-a/infra-missing"),
    ))
    .await;
    let note = env
        .wait_warning("team-b", "web", "ArgoCDNamespaceNotPermitted")
        .await;
    assert!(note.contains("sourceNamespaces"), "{note}");

    // AppProject team-b: no policy selects it; the GitLabToken says so, the Application gets the event.
    env.apply(app(
        ARGOCD,
        "api",
        "team-b",
        true,
        git_source(&env, "acme/team-a/app"),
    ))
    .await;
    let denied_name = gitlab_token_operator::shim::argocd::token_name("team-b", &url);
    let denied = env
        .wait_token_condition(ARGOCD, &denied_name, "Ready", "False", Some("NoPolicy"))
        .await;
    assert!(denied.status.as_ref().unwrap().current.is_none());
    env.wait_warning(ARGOCD, "api", "NoPolicy").await;
    assert!(
        env.metric(
            "gitlab_token_operator_policy_denials_total",
            &[("reason", "NoPolicy")]
        )
        .await
            >= 1.0
    );
    assert!(
        env.metric(
            "gitlab_token_operator_policy_denials_total",
            &[("reason", "ArgoCDNamespaceNotPermitted")]
        )
        .await
            >= 1.0
    );
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), ARGOCD);
    assert!(
        secrets.get_opt(&denied_name).await.unwrap().is_none(),
        "no Secret for a denied request"
    );
    assert_eq!(
        env.all_operator_tokens().len(),
        minted,
        "nothing minted for refused requests"
    );

    // Withdrawal: the annotation removed, the token is revoked.
    let id = token
        .status
        .as_ref()
        .and_then(|s| s.current.as_ref())
        .map(|c| c.token_id)
        .unwrap();
    apps(&env, "team-a")
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"gitlabtokens.io/inject": null}}})),
        )
        .await
        .unwrap();
    eventually("the withdrawn token to be revoked", || async {
        env.world
            .gitlab
            .tokens()
            .into_iter()
            .find(|t| t.id == id && t.state == "revoked")
            .map(|_| ())
    })
    .await;

    // An AppProject going away withdraws the tokens of its Applications.
    apps(&env, "team-a")
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"gitlabtokens.io/inject": "true"}}})),
        )
        .await
        .unwrap();
    let tokens: Api<GitLabToken> = Api::namespaced(env.client.clone(), ARGOCD);
    let again = eventually("a new token for the re-annotated Application", || {
        let tokens = tokens.clone();
        let name = token.name_any();
        async move {
            let t = tokens.get_opt(&name).await.ok()??;
            let new = t.status.as_ref()?.current.as_ref()?.token_id;
            (new != id).then_some(new)
        }
    })
    .await;
    let projects =
        Api::<DynamicObject>::namespaced_with(env.client.clone(), ARGOCD, &ar("AppProject", "appprojects"));
    projects.delete("team-a", &DeleteParams::default()).await.unwrap();
    eventually("the token of the deleted AppProject to be revoked", || async {
        env.world
            .gitlab
            .tokens()
            .into_iter()
            .find(|t| t.id == again && t.state == "revoked")
            .map(|_| ())
    })
    .await;
    env.wait_warning("team-a", "web", "ArgoCDProjectNotFound").await;
    env.stop().await;
}
