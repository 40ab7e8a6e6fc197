//! What an admin does before tenants arrive: CRDs (ours, Flux's, a minimal notification
//! Provider), the operator namespace with its GitLab credentials, a `GitLabConnection` and a
//! `GitLabTokenPolicy`.

use std::path::Path;

use kube::{
    Api, Client,
    api::{ApiResource, DynamicObject, Patch, PatchParams},
    core::GroupVersionKind,
};
use serde_json::{Value, json};

use crate::world::{World, WorldError, install_crds};

/// Namespace the operator runs in.
pub const OPERATOR_NS: &str = "gitlab-token-operator";
/// Name of the connection.
pub const CONNECTION: &str = "gitlab";
/// Name of the policy.
pub const POLICY: &str = "teams";
/// Our API group/version.
pub const GTO_API: &str = "gitlabtokens.io/v1alpha1";

/// The resource of `GitLabToken` (the testbed does not link the operator's types).
pub fn token_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("gitlabtokens.io", "v1alpha1", "GitLabToken"),
        "gitlabtokens",
    )
}

/// The resource of `GitLabConnection`.
pub fn connection_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("gitlabtokens.io", "v1alpha1", "GitLabConnection"),
        "gitlabconnections",
    )
}

/// A minimal `Provider` CRD (v1beta3, any spec): Flux's notification CRDs are not in the fixtures,
/// and the operator only reads `spec.type`, `spec.address` and `spec.secretRef`.
pub fn provider_crd() -> Value {
    let open = json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "providers.notification.toolkit.fluxcd.io"},
        "spec": {
            "group": "notification.toolkit.fluxcd.io",
            "names": {"kind": "Provider", "listKind": "ProviderList", "plural": "providers", "singular": "provider"},
            "scope": "Namespaced",
            "versions": [{
                "name": "v1beta3", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "apiVersion": {"type": "string"}, "kind": {"type": "string"},
                    "metadata": {"type": "object"}, "spec": open.clone(), "status": open}}},
                "subresources": {"status": {}}
            }]
        }
    })
}

/// Installs our CRDs from `crds_dir`, Flux's from `flux_dir` and the minimal Provider CRD
/// (written to `scratch` first); returns how many were installed.
pub async fn install_all_crds(
    client: &Client,
    crds_dir: &Path,
    flux_dir: &Path,
    scratch: &Path,
) -> Result<(usize, usize), WorldError> {
    for (dir, hint) in [
        (crds_dir, "pass --crds-dir or run from the workspace"),
        (flux_dir, "set GTO_FIXTURES_DIR to the shared fixtures folder"),
    ] {
        if !dir.is_dir() {
            return Err(WorldError::Start(format!(
                "no CRD folder at {}: {hint}",
                dir.display()
            )));
        }
    }
    let ours = install_crds(client, crds_dir).await?;
    let extra = scratch.join("provider-crd");
    std::fs::create_dir_all(&extra)?;
    let yaml = serde_yaml_ng::to_string(&provider_crd()).map_err(|e| WorldError::Start(e.to_string()))?;
    std::fs::write(extra.join("provider.yaml"), yaml)?;
    let mut flux = install_crds(client, flux_dir).await?;
    flux.extend(install_crds(client, &extra).await?);
    Ok((ours.len(), flux.len()))
}

/// Server-side applies any object (field manager `sandbox`), discovering its resource.
pub async fn apply(client: &Client, object: &Value) -> Result<DynamicObject, String> {
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    let kind = object["kind"].as_str().unwrap_or_default();
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let (ar, caps) = kube::discovery::pinned_kind(client, &gvk)
        .await
        .map_err(|e| format!("{kind} is not served: {e}"))?;
    let api: Api<DynamicObject> = match object.pointer("/metadata/namespace").and_then(Value::as_str) {
        Some(ns) if caps.scope == kube::discovery::Scope::Namespaced => {
            Api::namespaced_with(client.clone(), ns, &ar)
        }
        _ => Api::all_with(client.clone(), &ar),
    };
    api.patch(
        name,
        &PatchParams::apply("sandbox").force(),
        &Patch::Apply(object),
    )
    .await
    .map_err(|e| format!("applying {kind} {name}: {e}"))
}

/// The admin's objects: namespaces, credentials Secret, connection, policy.
pub fn admin_objects(world: &World, tenant_namespaces: &[&str]) -> Result<Vec<Value>, String> {
    let token = world
        .operator_token()
        .ok_or("the world was started without its seed (no operator token)")?;
    let mut objects: Vec<Value> = std::iter::once(OPERATOR_NS)
        .chain(tenant_namespaces.iter().copied())
        .map(|ns| json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}))
        .collect();
    objects.push(json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "gitlab-operator-token", "namespace": OPERATOR_NS},
        "stringData": {"token": token}}));
    objects.push(json!({"apiVersion": GTO_API, "kind": "GitLabConnection",
        "metadata": {"name": CONNECTION},
        "spec": {"url": world.gitlab_url(), "registryHost": world.registry_host(),
                 "credentials": {"secretRef": {"namespace": OPERATOR_NS, "name": "gitlab-operator-token", "key": "token"}}}}));
    objects.push(json!({"apiVersion": GTO_API, "kind": "GitLabTokenPolicy",
        "metadata": {"name": POLICY},
        "spec": {"namespaceSelector": {"matchNames": ["team-*"]},
                 "projects": ["acme/team-a/**", "acme/platform/**"],
                 "scopes": ["read_repository", "read_registry", "read_api", "api"],
                 "maxAccessLevel": "developer"}}));
    Ok(objects)
}

/// A condition of `object` (`status.conditions[type == type_]`).
pub fn condition<'a>(object: &'a Value, type_: &str) -> Option<&'a Value> {
    object
        .pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

/// Whether `object` has `Ready=True`.
pub fn is_ready(object: &Value) -> bool {
    condition(object, "Ready").is_some_and(|c| c["status"] == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_are_found_by_type() {
        let o = json!({"status": {"conditions": [
            {"type": "Issuing", "status": "False"},
            {"type": "Ready", "status": "True", "reason": "Issued"}]}});
        assert!(is_ready(&o));
        assert_eq!(condition(&o, "Ready").unwrap()["reason"], "Issued");
        assert!(condition(&o, "Denied").is_none());
        assert!(!is_ready(&json!({})));
        assert!(!is_ready(
            &json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}})
        ));
    }

    #[test]
    fn the_provider_crd_is_namespaced_v1beta3_and_open() {
        let crd = provider_crd();
        assert_eq!(crd["spec"]["scope"], "Namespaced");
        let v = &crd["spec"]["versions"][0];
        assert_eq!(v["name"], "v1beta3");
        assert_eq!(
            v.pointer("/schema/openAPIV3Schema/properties/spec/x-kubernetes-preserve-unknown-fields"),
            Some(&json!(true))
        );
    }
}
