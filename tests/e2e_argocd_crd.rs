//! Argo CD's CRDs removed and restored, end to end (issue 13): deleting the Application CRD
//! deletes every Application (the API server's CRD cleanup) and then 404s the resource; the
//! operator keeps every Argo CD token, says so, and resumes when the CRD returns; an Application
//! really deleted once the CRD is back and settled still revokes its token.

mod e2e;

use e2e::{
    argocd::{ARGOCD, app, apps, git_source, ready_token, start},
    eventually,
};
use gitlab_token_operator::crd::GitLabToken;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, ListParams},
};
use serde_json::json;

fn state(env: &e2e::Env, id: u64) -> String {
    env.world
        .gitlab
        .tokens()
        .into_iter()
        .find(|t| t.id == id)
        .map(|t| t.state)
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_argo_cds_crd_keeps_the_tokens_and_a_real_deletion_afterwards_revokes() {
    let env = start().await;
    let source = git_source(&env, "acme/team-a/app");
    let url = source["repoURL"].as_str().unwrap().to_string();
    env.apply(app(ARGOCD, "web", "team-a", true, source.clone()))
        .await;
    let token = ready_token(&env, &url, "team-a").await;
    let id = token
        .status
        .as_ref()
        .and_then(|s| s.current.as_ref())
        .map(|c| c.token_id)
        .unwrap();
    let tokens: Api<GitLabToken> = Api::namespaced(env.client.clone(), ARGOCD);

    // Delete the Application CRD: the API server deletes every Application, then answers 404.
    let crds: Api<CustomResourceDefinition> = Api::all(env.client.clone());
    crds.delete("applications.argoproj.io", &DeleteParams::default())
        .await
        .expect("delete CRD");
    eventually("the Application resource to answer 404", || async {
        match apps(&env, ARGOCD).list(&ListParams::default()).await {
            Err(kube::Error::Api(s)) if s.code == 404 => Some(()),
            _ => None,
        }
    })
    .await;
    // The operator saw no Application needing the token and kept it, saying why (on the token).
    let note = env
        .wait_warning(ARGOCD, &token.name_any(), "ArgoCDAPIMissing")
        .await;
    assert!(note.contains("applications.argoproj.io"), "{note}");
    assert!(note.contains("1 GitLabToken"), "{note}");
    let held = || async { env.metric("gitlab_token_operator_argocd_tokens_held", &[]).await };
    assert_eq!(held().await, 1.0);
    // The event is published by the pass that found the token unneeded and kept it.
    let kept = tokens.get_opt(&token.name_any()).await.unwrap();
    assert!(
        kept.is_some_and(|t| t.metadata.deletion_timestamp.is_none()),
        "the token was deleted with the CRD"
    );
    assert_eq!(state(&env, id), "active", "revoked because the CRD went away");

    // The CRD returns, and the Application is restored with it: the same token serves it.
    testbed::world::install_crds(&env.client, &testbed::world::fixtures_dir().join("argocd-crds"))
        .await
        .expect("reinstall CRDs");
    env.wait_crd_served(
        &json!({"spec": {"group": "argoproj.io", "names": {"kind": "Application"},
        "versions": [{"name": "v1alpha1"}]}}),
    )
    .await;
    env.apply(app(ARGOCD, "web", "team-a", true, source)).await;
    eventually("the restored Application to need its token again", || async {
        (held().await == 0.0).then_some(())
    })
    .await;
    let back = ready_token(&env, &url, "team-a").await;
    assert_eq!(
        back.status
            .as_ref()
            .and_then(|s| s.current.as_ref())
            .map(|c| c.token_id),
        Some(id),
        "a new token was minted: the old one had been withdrawn"
    );
    assert_eq!(state(&env, id), "active");

    // Deleted right after the CRD returned, the Application's token is still kept (others may
    // still be on their way back) ...
    env.delete(&apps(&env, ARGOCD), "web").await;
    eventually(
        "the token kept during the grace after the CRD returned",
        || async { (held().await == 1.0).then_some(()) },
    )
    .await;
    let name = token.name_any();
    let notes: Vec<String> = env
        .events_about(ARGOCD, &name)
        .await
        .into_iter()
        .filter(|(t, r, _)| t == "Warning" && r == "ArgoCDAPIMissing")
        .map(|(_, _, m)| m)
        .collect();
    assert!(
        notes
            .iter()
            .any(|m| m.contains("returned at") && m.contains("to reappear")),
        "{notes:?}"
    );
    assert_eq!(state(&env, id), "active");
    // ... and once the CRD is back and settled (the grace, on the operator's clock), a really
    // deleted Application revokes its token.
    env.world
        .advance_clock(chrono::Duration::minutes(11))
        .expect("clock");
    eventually("the token of the deleted Application to be revoked", || async {
        (state(&env, id) == "revoked").then_some(())
    })
    .await;
    assert_eq!(held().await, 0.0);
    eventually("its GitLabToken to be gone", || async {
        tokens
            .get_opt(&token.name_any())
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    env.stop().await;
}
