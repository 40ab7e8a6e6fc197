//! Shared set-up of the Argo CD stand-in tests: a world with the stand-in (short refresh, no
//! repo-error grace), Argo CD's real CRDs, and helpers for Secrets, AppProjects and Applications.

use std::{collections::BTreeMap, time::Duration};

use base64::Engine;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::{
    Api, Client,
    api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};
use testbed::{
    argocd::ArgoCdConfig,
    world::{World, WorldConfig, fixtures_dir, install_crds},
};

pub const NS: &str = "argocd";

pub struct Env {
    pub world: World,
    pub client: Client,
    _dir: tempfile::TempDir,
}

impl Env {
    pub async fn start(refresh: Duration) -> Env {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("testbed=warn")
            .with_test_writer()
            .try_init();
        let dir = tempfile::tempdir().unwrap();
        let mut config = WorldConfig::new(dir.path());
        config.flux = false;
        config.argocd = Some(ArgoCdConfig {
            refresh_interval: refresh,
            repo_error_grace_period: Duration::ZERO,
            application_namespaces: vec!["tenant-*".into()],
            ..ArgoCdConfig::default()
        });
        let world = World::start(config).await.expect("world starts");
        let client = world.kube.admin_client().await.unwrap();
        let installed = install_crds(&client, &fixtures_dir().join("argocd-crds"))
            .await
            .expect("Argo CD CRDs install");
        assert!(
            installed.contains(&"applications.argoproj.io".to_string()),
            "{installed:?}"
        );
        for ns in [NS, "tenant-a"] {
            let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
            Api::<Namespace>::all(client.clone())
                .create(&PostParams::default(), &ns)
                .await
                .unwrap();
        }
        Env {
            world,
            client,
            _dir: dir,
        }
    }

    pub fn seed(&self) -> &testbed::gitlab::DefaultSeed {
        self.world.seed.as_ref().expect("seeded")
    }

    pub fn git_url(&self, path: &str) -> String {
        format!("{}/{path}.git", self.world.gitlab_url())
    }

    pub fn api(&self, ns: &str, kind: &str, plural: &str) -> Api<DynamicObject> {
        let ar = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("argoproj.io", "v1alpha1", kind),
            plural,
        );
        Api::namespaced_with(self.client.clone(), ns, &ar)
    }

    pub fn apps(&self, ns: &str) -> Api<DynamicObject> {
        self.api(ns, "Application", "applications")
    }

    pub async fn put_secret(&self, name: &str, secret_type: &str, pairs: &[(&str, &str)]) {
        // `data`, not `stringData`: a key left out of the next apply is then removed.
        let data: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), base64::engine::general_purpose::STANDARD.encode(v)))
            .collect();
        let secret: Secret = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "labels": {"argocd.argoproj.io/secret-type": secret_type}},
            "data": data,
        }))
        .unwrap();
        Api::<Secret>::namespaced(self.client.clone(), NS)
            .patch(name, &PatchParams::apply("test").force(), &Patch::Apply(&secret))
            .await
            .unwrap();
    }

    pub async fn project(&self, name: &str, spec: Value) {
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "AppProject",
            "metadata": {"name": name}, "spec": spec,
        }))
        .unwrap();
        self.api(NS, "AppProject", "appprojects")
            .create(&PostParams::default(), &obj)
            .await
            .unwrap();
    }

    pub async fn app(&self, ns: &str, name: &str, project: &str, source: Value) {
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": {"name": name},
            "spec": {"project": project, "source": source,
                     "destination": {"server": "https://kubernetes.default.svc", "namespace": "default"}},
        }))
        .unwrap();
        self.apps(ns).create(&PostParams::default(), &obj).await.unwrap();
    }

    /// Waits until the Application's status satisfies `done`, and returns the object.
    pub async fn wait(&self, ns: &str, name: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
        loop {
            let obj = serde_json::to_value(self.apps(ns).get(name).await.unwrap()).unwrap();
            if done(&obj) {
                return obj;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{ns}/{name} never {what}: {}",
                obj["status"]
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn synced(&self, ns: &str, name: &str) -> Value {
        self.wait(ns, name, "Synced", |o| {
            o.pointer("/status/sync/status") == Some(&json!("Synced"))
        })
        .await
    }

    /// Waits for a condition of `type_` and returns its message.
    pub async fn condition(&self, ns: &str, name: &str, type_: &str) -> String {
        let obj = self
            .wait(ns, name, type_, |o| condition_message(o, type_).is_some())
            .await;
        condition_message(&obj, type_).unwrap()
    }

    pub fn refreshes_of(&self, name: &str) -> Vec<testbed::argocd::RefreshRecord> {
        let standin = self.world.argocd.as_ref().expect("Argo CD stand-in");
        standin
            .refreshes()
            .into_iter()
            .filter(|r| r.name == name)
            .collect()
    }
}

pub fn condition_message(obj: &Value, type_: &str) -> Option<String> {
    obj.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .map(|c| c["message"].as_str().unwrap_or_default().to_string())
}

/// The commit `HEAD` points at, asked of the git front with the real git client.
pub async fn head_sha(url: &str, user: &str, password: &str) -> String {
    let header = format!(
        "Authorization: Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    );
    let out = tokio::process::Command::new("git")
        .args(["-c", "credential.helper=", "ls-remote", url, "HEAD"])
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_COUNT", "1")
        .env("GIT_CONFIG_KEY_0", "http.extraHeader")
        .env("GIT_CONFIG_VALUE_0", header)
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .split('\t')
        .next()
        .unwrap()
        .to_string()
}

pub fn auth_failure(source_index: usize, of: usize) -> String {
    format!(
        "Failed to load target state: failed to generate manifest for source {source_index} of {of}: rpc error: code = Unknown desc = failed to list refs: authentication required: HTTP Basic: Access denied\n"
    )
}

pub async fn refresh(env: &Env, ns: &str, name: &str, kind: &str) {
    let patch = json!({"metadata": {"annotations": {"argocd.argoproj.io/refresh": kind}}});
    env.apps(ns)
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    env.wait(ns, name, "consumed the refresh annotation", |o| {
        o.pointer("/metadata/annotations/argocd.argoproj.io~1refresh")
            .is_none()
    })
    .await;
}
