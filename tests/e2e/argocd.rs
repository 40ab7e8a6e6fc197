//! Shared set-up of the Argo CD end-to-end tests (issue 13): a world serving Argo CD, policies,
//! AppProjects, Application builders and waits.

use std::time::Duration;

use gitlab_token_operator::crd::GitLabToken;
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api,
    api::{ApiResource, DynamicObject, GroupVersionKind},
};
use serde_json::{Value, json};
use testbed::argocd::ArgoCdConfig;

use super::{Env, Options, eventually};

pub const ARGOCD: &str = "argocd";

/// A world serving Argo CD in `argocd` (the stand-in refreshes every second, watches `team-*`),
/// a policy for AppProject team-a (`argocd`, `team-a` → `acme/team-a/**`), AppProjects team-a
/// (sourceNamespaces team-a) and team-b.
pub async fn start() -> Env {
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

/// An Argo CD API resource.
pub fn ar(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("argoproj.io", "v1alpha1", kind), plural)
}

/// Applications in `ns`.
pub fn apps(env: &Env, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(env.client.clone(), ns, &ar("Application", "applications"))
}

/// An Application object with `source` (an object) or `sources` (an array).
pub fn app(ns: &str, name: &str, project: &str, inject: bool, spec_sources: Value) -> Value {
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

/// A Git source on the world's GitLab.
pub fn git_source(env: &Env, project: &str) -> Value {
    json!({"repoURL": format!("{}/{project}.git", env.world.gitlab_url()), "targetRevision": "HEAD", "path": "."})
}

/// Waits until the Application's last comparison satisfies `done`; returns it.
pub async fn wait_app(env: &Env, ns: &str, name: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
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

/// Whether the Application is Synced.
pub fn synced(o: &Value) -> bool {
    o.pointer("/status/sync/status") == Some(&json!("Synced"))
}

/// The ComparisonError message, if any.
pub fn comparison_error(o: &Value) -> Option<String> {
    o.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == "ComparisonError")
        .map(|c| c["message"].as_str().unwrap_or_default().to_string())
}

/// A Secret value as text.
pub fn value(secret: &Secret, key: &str) -> String {
    Env::secret_value(secret, key)
}

/// The one shim GitLabToken of Argo CD's namespace serving `url` for `project`, once Ready.
pub async fn ready_token(env: &Env, url: &str, app_project: &str) -> GitLabToken {
    let name = gitlab_token_operator::shim::argocd::token_name(app_project, url);
    env.wait_token_condition(ARGOCD, &name, "Ready", "True", Some("Issued"))
        .await
}
