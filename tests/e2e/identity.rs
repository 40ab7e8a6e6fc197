//! The operator's identity in the tests: the Helm chart's ServiceAccount and rendered RBAC.

use super::*;

impl Env {
    /// Loads the chart's ServiceAccount and RBAC into the emulator and writes a kubeconfig for that
    /// ServiceAccount (or the admin one when `GTO_E2E_OPERATOR_IDENTITY=admin`).
    pub(super) async fn install_operator_identity(&self) {
        if std::env::var("GTO_E2E_OPERATOR_IDENTITY").as_deref() == Ok("admin") {
            let admin = self.world.kube.admin_token().to_string();
            self.world
                .kube
                .write_kubeconfig(&self.operator_kubeconfig, &admin)
                .expect("kubeconfig");
            return;
        }
        let mut service_account = None;
        let argocd = self.argocd;
        for object in chart_rbac_with(argocd) {
            let mut object = object;
            if object["kind"] == "ServiceAccount" {
                service_account = object
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .map(str::to_string);
            }
            let in_argocd = argocd && object.pointer("/metadata/namespace") == Some(&json!("argocd"));
            if !in_argocd
                && matches!(
                    object["kind"].as_str(),
                    Some("ServiceAccount" | "Role" | "RoleBinding")
                )
            {
                object["metadata"]["namespace"] = json!(OPERATOR_NS);
            }
            self.apply(object).await;
        }
        let service_account = service_account.expect("the chart renders a ServiceAccount");
        let token = format!("sa-{}", uuid_like());
        self.world
            .kube
            .add_service_account_token(&token, OPERATOR_NS, &service_account);
        self.world
            .kube
            .write_kubeconfig(&self.operator_kubeconfig, &token)
            .expect("kubeconfig");
    }
}

fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{nanos:x}{:x}", std::process::id())
}

/// The ServiceAccount and RBAC objects the chart renders for release `gto` in the operator namespace.
pub fn chart_rbac() -> Vec<Value> {
    chart_rbac_with(false)
}

/// Like [`chart_rbac`], with Argo CD served (`argocd.enabled`, namespace `argocd`) when `argocd`.
pub fn chart_rbac_with(argocd: bool) -> Vec<Value> {
    let chart = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/gitlab-token-operator");
    let argocd_values: &[&str] = if argocd {
        &["--set", "argocd.enabled=true", "--set", "argocd.namespace=argocd"]
    } else {
        &[]
    };
    let out = std::process::Command::new(helm())
        .args(["template", "gto"])
        .arg(&chart)
        .args(["--namespace", OPERATOR_NS])
        .args(argocd_values)
        .env("HELM_CACHE_HOME", std::env::temp_dir().join("gto-e2e-helm-cache"))
        .output()
        .expect("helm runs");
    assert!(
        out.status.success(),
        "helm template failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    serde_yaml_ng::Deserializer::from_str(&text)
        .filter_map(|doc| <Value as serde::Deserialize>::deserialize(doc).ok())
        .filter(|v| {
            matches!(
                v["kind"].as_str(),
                Some("ServiceAccount" | "ClusterRole" | "ClusterRoleBinding" | "Role" | "RoleBinding")
            )
        })
        .collect()
}
