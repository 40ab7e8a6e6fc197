//! Looking at what happened: events, metrics, Flux readiness, GitLab tokens, git pushes.

use super::*;

/// A minimal CRD for notification.toolkit.fluxcd.io `Provider` (served `v1beta3`, any fields):
/// there is no Flux fixture for it, and the shim serves Providers of type `gitlab`.
pub fn provider_crd() -> Value {
    json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "providers.notification.toolkit.fluxcd.io"},
        "spec": {"group": "notification.toolkit.fluxcd.io", "scope": "Namespaced",
            "names": {"kind": "Provider", "listKind": "ProviderList", "plural": "providers", "singular": "provider"},
            "versions": [{"name": "v1beta3", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}})
}

impl Env {
    /// Every core/v1 Event in `ns` about the object named `name`: (type, reason, message).
    pub async fn events_about(&self, ns: &str, name: &str) -> Vec<(String, String, String)> {
        let api: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(self.client.clone(), ns);
        let list = api
            .list(&Default::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        list.into_iter()
            .filter(|e| e.involved_object.name.as_deref() == Some(name))
            .map(|e| {
                (
                    e.type_.unwrap_or_default(),
                    e.reason.unwrap_or_default(),
                    e.message.unwrap_or_default(),
                )
            })
            .collect()
    }

    /// Waits for a Warning Event with `reason` about `name` in `ns`, returning its message.
    pub async fn wait_warning(&self, ns: &str, name: &str, reason: &str) -> String {
        eventually(
            &format!("a Warning {reason} event on {ns}/{name}"),
            || async move {
                self.events_about(ns, name)
                    .await
                    .into_iter()
                    .find(|(t, r, _)| t == "Warning" && r == reason)
                    .map(|(_, _, m)| m)
            },
        )
        .await
    }

    /// The operator's /metrics exposition.
    pub async fn metrics_text(&self) -> String {
        let url = format!("http://{}/metrics", self.metrics_addr);
        match reqwest::get(&url).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// Sum of a metric's samples whose label set contains every `label="value"` in `labels`.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let text = self.metrics_text().await;
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
                (metric == name && labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\""))))
                    .then(|| value.parse::<f64>().ok())
                    .flatten()
            })
            .sum()
    }

    /// Every GitLab token (any state) the operator created (name prefix `gto-e2e-`).
    pub fn all_operator_tokens(&self) -> Vec<testbed::gitlab::TokenRecord> {
        self.world
            .gitlab
            .tokens()
            .into_iter()
            .filter(|t| t.name.starts_with("gto-e2e-"))
            .collect()
    }

    /// Waits until the Flux stand-in reports `Ready=True` on a source.
    pub async fn wait_flux_ready(&self, ns: &str, group_version: &str, kind: &str, name: &str) {
        let api = self.flux_api(ns, group_version, kind).await;
        eventually(&format!("{kind} {ns}/{name} to be Ready in Flux"), || {
            let api = api.clone();
            async move {
                let o = api.get(name).await.ok()?;
                let ready = o
                    .data
                    .pointer("/status/conditions")?
                    .as_array()?
                    .iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True");
                ready.then_some(())
            }
        })
        .await;
    }
}

impl Env {
    /// Clones `project` with basic credentials, commits, and pushes a new branch `branch`:
    /// `Ok` when the push was accepted, `Err(stderr)` when git refused (clone or push).
    pub async fn git_push(&self, project: &str, user: &str, pass: &str, branch: &str) -> Result<(), String> {
        let url = format!("{}/{project}.git", self.world.gitlab_url());
        let authed = url.replacen("http://", &format!("http://{user}:{pass}@"), 1);
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let git = |args: Vec<String>, cwd: PathBuf| async move {
            let out = Command::new("git")
                .args([
                    "-c",
                    "credential.helper=",
                    "-c",
                    "user.name=e2e",
                    "-c",
                    "user.email=e2e@example.com",
                ])
                .args(&args)
                .current_dir(cwd)
                .env("GIT_TERMINAL_PROMPT", "0")
                .output()
                .await
                .map_err(|e| e.to_string())?;
            if out.status.success() {
                Ok(())
            } else {
                Err(String::from_utf8_lossy(&out.stderr).into_owned())
            }
        };
        let repo = dir.path().join("repo");
        git(
            vec!["clone".into(), "-q".into(), authed, "repo".into()],
            dir.path().to_path_buf(),
        )
        .await?;
        git(
            vec![
                "commit".into(),
                "-q".into(),
                "--allow-empty".into(),
                "-m".into(),
                "e2e".into(),
            ],
            repo.clone(),
        )
        .await?;
        git(
            vec![
                "push".into(),
                "-q".into(),
                "origin".into(),
                format!("HEAD:refs/heads/{branch}"),
            ],
            repo,
        )
        .await
    }
}
