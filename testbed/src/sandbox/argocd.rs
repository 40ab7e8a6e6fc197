//! The sandbox's Argo CD part (issue 13): one annotated Application beside the Flux sources. The
//! admin adds an AppProject and a policy that selects it; the operator writes a project-scoped
//! repository Secret into Argo CD's namespace; the Argo CD stand-in fetches with it and reports
//! the Application `Synced`.

use std::time::Duration;

use kube::{
    Api, Client,
    api::{ApiResource, DynamicObject, GroupVersionKind},
};
use serde_json::{Value, json};

use super::{checks::eventually, scenario::Scenario, setup::apply};

/// Argo CD's namespace in the sandbox.
pub const ARGOCD_NS: &str = "argocd";
/// The AppProject of the demo Application.
pub const APP_PROJECT: &str = "team-a";

/// The stand-in's settings for the demo: a refresh every 3 s, errors shown at once.
pub fn standin_config() -> crate::argocd::ArgoCdConfig {
    crate::argocd::ArgoCdConfig {
        refresh_interval: Duration::from_secs(3),
        repo_error_grace_period: Duration::ZERO,
        ..crate::argocd::ArgoCdConfig::default()
    }
}

/// What the admin adds for Argo CD: its namespace, an AppProject, a policy selecting it.
pub fn admin_objects() -> Vec<Value> {
    vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ARGOCD_NS}}),
        json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "AppProject",
            "metadata": {"name": APP_PROJECT, "namespace": ARGOCD_NS},
            "spec": {"sourceRepos": ["*"], "destinations": [{"server": "*", "namespace": "*"}]}}),
        json!({"apiVersion": "gitlabtokens.io/v1alpha1", "kind": "GitLabTokenPolicy",
            "metadata": {"name": "argocd-team-a"},
            "spec": {"namespaceSelector": {"matchNames": [ARGOCD_NS]}, "projects": ["acme/team-a/**"],
                     "argoCD": {"appProjects": [APP_PROJECT]}}}),
    ]
}

/// The demo Application: the team's repository, annotated.
pub fn application(gitlab_url: &str) -> Value {
    json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": {"name": "web", "namespace": ARGOCD_NS,
                     "annotations": {"gitlabtokens.io/inject": "true"}},
        "spec": {"project": APP_PROJECT,
                 "source": {"repoURL": format!("{gitlab_url}/acme/team-a/app.git"), "targetRevision": "HEAD", "path": "."},
                 "destination": {"server": "https://kubernetes.default.svc", "namespace": "team-a"}}})
}

fn resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("argoproj.io", "v1alpha1", kind), plural)
}

async fn repository_secret(client: &Client) -> Option<String> {
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), ARGOCD_NS);
    let list = secrets
        .list(&kube::api::ListParams::default().labels("argocd.argoproj.io/secret-type=repository"))
        .await
        .ok()?;
    list.items.into_iter().find_map(|s| {
        let data = s.data.as_ref()?;
        let text = |k: &str| data.get(k).map(|v| String::from_utf8_lossy(&v.0).into_owned());
        let scoped = text("project").as_deref() == Some(APP_PROJECT);
        let has_token = text("password").is_some_and(|p| !p.is_empty());
        let kind = text("type")?;
        (scoped && has_token).then(|| {
            format!(
                "{} (type {kind}, project {APP_PROJECT})",
                s.metadata.name.clone().unwrap_or_default()
            )
        })
    })
}

impl Scenario<'_> {
    /// The Argo CD steps: the Application applied, its Secret written, Argo CD Synced with it.
    pub async fn argocd(&mut self) {
        let app = application(&self.world.gitlab_url());
        let applied = apply(&self.client, &app)
            .await
            .map(|_| "argocd/web (AppProject team-a)".to_string());
        if !self
            .ledger
            .record("Argo CD Application annotated", "applied", applied)
        {
            return;
        }
        let client = self.client.clone();
        let secret = eventually(self.wait, || repository_secret(&client)).await;
        self.ledger.record(
            "Argo CD repository Secret",
            "in argocd, scoped to team-a",
            secret.ok_or_else(|| "no project-scoped repository Secret appeared".to_string()),
        );
        let apps: Api<DynamicObject> = Api::namespaced_with(
            self.client.clone(),
            ARGOCD_NS,
            &resource("Application", "applications"),
        );
        let synced = eventually(self.wait, || {
            let apps = apps.clone();
            async move {
                let o = serde_json::to_value(apps.get_opt("web").await.ok()??).ok()?;
                (o.pointer("/status/sync/status") == Some(&json!("Synced"))).then(|| {
                    format!(
                        "Synced at {}",
                        o.pointer("/status/sync/revision")
                            .and_then(Value::as_str)
                            .unwrap_or("?")
                    )
                })
            }
        })
        .await;
        self.ledger.record(
            "Argo CD fetches with it",
            "Application Synced",
            synced.ok_or_else(|| "the Application never became Synced".to_string()),
        );
    }
}
