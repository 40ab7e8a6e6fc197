//! Argo CD as a second consumer (issue 13), with the real operator binary and the Argo CD
//! stand-in (which picks credentials exactly as Argo CD's `db.GetRepository` does and fetches
//! with real git): annotated Applications get project-scoped repository Secrets in Argo CD's
//! namespace that Argo CD fetches with; another AppProject cannot use them; apps in other
//! namespaces need their AppProject's `sourceNamespaces`; policies decide by AppProject;
//! denial, withdrawal and deletion revoke; a rotation while Argo CD refreshes in a loop never
//! makes a comparison fail.

mod e2e;

use std::time::Duration;

use e2e::{Env, Options, eventually};
use gitlab_token_operator::crd::GitLabToken;
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, ResourceExt,
    api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams},
};
use serde_json::{Value, json};
use testbed::argocd::ArgoCdConfig;

const ARGOCD: &str = "argocd";

async fn start() -> Env {
    let env = Env::start_with(Options {
        argocd: Some(ArgoCdConfig {
            refresh_interval: Duration::from_secs(1),
            repo_error_grace_period: Duration::ZERO,
            application_namespaces: vec!["team-*".into()],
            ..ArgoCdConfig::default()
        }),
        ..Options::default()
    })
    .await;
    env.namespace("team-b").await;
    // Argo CD requests of AppProject team-a, from Argo CD's namespace or team-a, for acme/team-a.
    env.apply(
        json!({"apiVersion": "gitlabtokens.io/v1alpha1", "kind": "GitLabTokenPolicy",
        "metadata": {"name": "argocd-team-a"},
        "spec": {"namespaceSelector": {"matchNames": [ARGOCD, "team-a"]}, "projects": ["acme/team-a/**"],
                 "argoCD": {"appProjects": ["team-a"]}, "overlapGrace": "10m"}}),
    )
    .await;
    for (name, namespaces) in [("team-a", json!(["team-a"])), ("team-b", json!([]))] {
        env.apply(json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "AppProject",
            "metadata": {"name": name, "namespace": ARGOCD},
            "spec": {"sourceRepos": ["*"], "sourceNamespaces": namespaces,
                     "destinations": [{"server": "*", "namespace": "*"}]}}))
            .await;
    }
    env
}

fn ar(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("argoproj.io", "v1alpha1", kind), plural)
}

fn apps(env: &Env, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(env.client.clone(), ns, &ar("Application", "applications"))
}

fn app(ns: &str, name: &str, project: &str, inject: bool, spec_sources: Value) -> Value {
    let mut spec = json!({"project": project,
        "destination": {"server": "https://kubernetes.default.svc", "namespace": "default"}});
    if spec_sources.is_array() {
        spec["sources"] = spec_sources;
    } else {
        spec["source"] = spec_sources;
    }
    let mut obj = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": {"name": name, "namespace": ns}, "spec": spec});
    if inject {
        obj["metadata"]["annotations"] = json!({"gitlabtokens.io/inject": "true"});
    }
    obj
}

fn git_source(env: &Env, project: &str) -> Value {
    json!({"repoURL": format!("{}/{project}.git", env.world.gitlab_url()), "targetRevision": "HEAD", "path": "."})
}

/// Waits until the Application's last comparison satisfies `done`; returns it.
async fn wait_app(env: &Env, ns: &str, name: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let api = apps(env, ns);
    eventually(&format!("Application {ns}/{name} {what}"), || {
        let api = api.clone();
        let done = &done;
        async move {
            let obj = serde_json::to_value(api.get_opt(name).await.ok()??).ok()?;
            done(&obj).then_some(obj)
        }
    })
    .await
}

fn synced(o: &Value) -> bool {
    o.pointer("/status/sync/status") == Some(&json!("Synced"))
}

fn comparison_error(o: &Value) -> Option<String> {
    o.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == "ComparisonError")
        .map(|c| c["message"].as_str().unwrap_or_default().to_string())
}

fn value(secret: &Secret, key: &str) -> String {
    Env::secret_value(secret, key)
}

/// The one shim GitLabToken of Argo CD's namespace serving `url` for `project`, once Ready.
async fn ready_token(env: &Env, url: &str, app_project: &str) -> GitLabToken {
    let name = gitlab_token_operator::shim::argocd::token_name(app_project, url);
    env.wait_token_condition(ARGOCD, &name, "Ready", "True", Some("Issued"))
        .await
}

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
