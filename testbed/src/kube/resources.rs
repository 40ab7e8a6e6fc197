//! The resource registry: built-in kinds and the versions served for each established CRD.

use std::sync::{Arc, RwLock};

use serde_json::Value;

use super::semantics::managed::{ListType, ListTypes};

/// What the server knows about one served group/version/resource.
#[derive(Debug, Clone)]
pub struct ResourceDef {
    /// API group, empty for core.
    pub group: String,
    /// Version.
    pub version: String,
    /// Plural resource name.
    pub plural: String,
    /// Singular name.
    pub singular: String,
    /// Kind.
    pub kind: String,
    /// List kind.
    pub list_kind: String,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// Short names for discovery.
    pub short_names: Vec<String>,
    /// Categories for discovery.
    pub categories: Vec<String>,
    /// Whether a `/status` subresource exists.
    pub status_subresource: bool,
    /// Storage key shared by all versions of the resource (e.g. `events`, `example.com/widgets`).
    pub storage: String,
    /// CRD-specific data when this is a custom resource.
    pub crd: Option<CrdVersion>,
    /// Extra field selectors the type supports.
    pub field_selectors: Vec<String>,
    /// DELETE returns the object instead of a Success Status.
    pub delete_returns_object: bool,
}

/// Per-version data of a custom resource.
#[derive(Debug, Clone)]
pub struct CrdVersion {
    /// `openAPIV3Schema`.
    pub schema: Value,
    /// `additionalPrinterColumns`.
    pub printer_columns: Vec<Value>,
    /// Name of the CRD object.
    pub crd_name: String,
    /// `subresources.scale` (specReplicasPath, statusReplicasPath, labelSelectorPath), if any.
    pub scale: Option<Value>,
}

impl ResourceDef {
    /// `group/version` or `version` for core.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Whether this is a custom resource.
    pub fn is_custom(&self) -> bool {
        self.crd.is_some()
    }

    /// Whether `metadata.generation` is maintained.
    pub fn tracks_generation(&self) -> bool {
        self.is_custom() || self.kind == "CustomResourceDefinition"
    }

    /// Field selectors as `&str`.
    pub fn field_selector_list(&self) -> Vec<&str> {
        self.field_selectors.iter().map(String::as_str).collect()
    }
}

#[allow(clippy::too_many_arguments)]
fn builtin(
    group: &str,
    version: &str,
    plural: &str,
    kind: &str,
    namespaced: bool,
    short: &[&str],
    storage: &str,
    fields: &[&str],
    status: bool,
) -> ResourceDef {
    ResourceDef {
        group: group.into(),
        version: version.into(),
        plural: plural.into(),
        singular: kind.to_lowercase(),
        kind: kind.into(),
        list_kind: format!("{kind}List"),
        namespaced,
        short_names: short.iter().map(|s| s.to_string()).collect(),
        categories: Vec::new(),
        status_subresource: status,
        storage: storage.into(),
        crd: None,
        field_selectors: fields.iter().map(|s| s.to_string()).collect(),
        delete_returns_object: kind == "ServiceAccount" || kind == "Namespace",
    }
}

/// The built-in kinds this emulator serves.
pub fn builtins() -> Vec<ResourceDef> {
    const EVENT_FIELDS: &[&str] = &[
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
    ];
    const RBAC: &str = "rbac.authorization.k8s.io";
    vec![
        builtin(
            "",
            "v1",
            "namespaces",
            "Namespace",
            false,
            &["ns"],
            "namespaces",
            &["status.phase"],
            true,
        ),
        builtin(
            "",
            "v1",
            "secrets",
            "Secret",
            true,
            &[],
            "secrets",
            &["type"],
            false,
        ),
        builtin(
            "",
            "v1",
            "configmaps",
            "ConfigMap",
            true,
            &["cm"],
            "configmaps",
            &[],
            false,
        ),
        builtin(
            "",
            "v1",
            "serviceaccounts",
            "ServiceAccount",
            true,
            &["sa"],
            "serviceaccounts",
            &[],
            false,
        ),
        builtin(
            "",
            "v1",
            "events",
            "Event",
            true,
            &["ev"],
            "events",
            EVENT_FIELDS,
            false,
        ),
        builtin(
            "events.k8s.io",
            "v1",
            "events",
            "Event",
            true,
            &["ev"],
            "events",
            &[],
            false,
        ),
        builtin(
            "coordination.k8s.io",
            "v1",
            "leases",
            "Lease",
            true,
            &[],
            "leases",
            &[],
            false,
        ),
        builtin(
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            "CustomResourceDefinition",
            false,
            &["crd", "crds"],
            "customresourcedefinitions",
            &[],
            true,
        ),
        builtin(RBAC, "v1", "roles", "Role", true, &[], "roles", &[], false),
        builtin(
            RBAC,
            "v1",
            "clusterroles",
            "ClusterRole",
            false,
            &[],
            "clusterroles",
            &[],
            false,
        ),
        builtin(
            RBAC,
            "v1",
            "rolebindings",
            "RoleBinding",
            true,
            &[],
            "rolebindings",
            &[],
            false,
        ),
        builtin(
            RBAC,
            "v1",
            "clusterrolebindings",
            "ClusterRoleBinding",
            false,
            &[],
            "clusterrolebindings",
            &[],
            false,
        ),
    ]
}

/// Builds the served resource definitions of a CRD object (only served versions).
pub fn defs_from_crd(crd: &Value) -> Vec<ResourceDef> {
    let spec = &crd["spec"];
    let group = spec["group"].as_str().unwrap_or_default();
    let names = &spec["names"];
    let plural = names["plural"].as_str().unwrap_or_default();
    let kind = names["kind"].as_str().unwrap_or_default();
    let strs = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(String::from))
            .collect()
    };
    let crd_name = crd
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    spec["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["served"].as_bool().unwrap_or(false))
        .map(|v| ResourceDef {
            group: group.into(),
            version: v["name"].as_str().unwrap_or_default().into(),
            plural: plural.into(),
            singular: names["singular"]
                .as_str()
                .map(String::from)
                .unwrap_or_else(|| kind.to_lowercase()),
            kind: kind.into(),
            list_kind: names["listKind"]
                .as_str()
                .map(String::from)
                .unwrap_or_else(|| format!("{kind}List")),
            namespaced: spec["scope"].as_str() != Some("Cluster"),
            short_names: strs(&names["shortNames"]),
            categories: strs(&names["categories"]),
            status_subresource: v.pointer("/subresources/status").is_some(),
            storage: format!("{group}/{plural}"),
            crd: Some(CrdVersion {
                scale: v.pointer("/subresources/scale").cloned(),
                schema: v
                    .pointer("/schema/openAPIV3Schema")
                    .cloned()
                    .unwrap_or(Value::Null),
                printer_columns: v["additionalPrinterColumns"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
                crd_name: crd_name.into(),
            }),
            field_selectors: v["selectableFields"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|f| {
                    f["jsonPath"]
                        .as_str()
                        .map(|p| p.trim_start_matches('.').to_string())
                })
                .collect(),
            delete_returns_object: false,
        })
        .collect()
}

/// Thread-safe registry of served resources.
#[derive(Debug, Default)]
pub struct Registry {
    defs: RwLock<Vec<Arc<ResourceDef>>>,
}

impl Registry {
    /// A registry with the built-in kinds.
    pub fn with_builtins() -> Self {
        Registry {
            defs: RwLock::new(builtins().into_iter().map(Arc::new).collect()),
        }
    }

    /// All served definitions.
    pub fn all(&self) -> Vec<Arc<ResourceDef>> {
        self.defs.read().map(|d| d.clone()).unwrap_or_default()
    }

    /// Looks up group/version/plural.
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceDef>> {
        self.all()
            .into_iter()
            .find(|d| d.group == group && d.version == version && d.plural == plural)
    }

    /// Any served version of a storage key (for GC, namespace cleanup).
    pub fn by_storage(&self, storage: &str) -> Option<Arc<ResourceDef>> {
        self.all().into_iter().find(|d| d.storage == storage)
    }

    /// Looks up by apiVersion and kind (owner references).
    pub fn by_kind(&self, api_version: &str, kind: &str) -> Option<Arc<ResourceDef>> {
        self.all()
            .into_iter()
            .find(|d| d.api_version() == api_version && d.kind == kind)
    }

    /// Replaces the definitions served for one CRD.
    pub fn set_crd(&self, crd_name: &str, defs: Vec<ResourceDef>) {
        if let Ok(mut all) = self.defs.write() {
            all.retain(|d| d.crd.as_ref().is_none_or(|c| c.crd_name != crd_name));
            all.extend(defs.into_iter().map(Arc::new));
        }
    }
}

/// List types of built-in kinds (patch merge keys and the SSA markers).
pub struct BuiltinListTypes;

impl ListTypes for BuiltinListTypes {
    fn list_type(&self, path: &[&str]) -> ListType {
        match path {
            ["metadata", "finalizers"] | ["spec", "finalizers"] => ListType::Set,
            ["metadata", "ownerReferences"] => ListType::Map(vec!["uid".into()]),
            ["status", "conditions"] => ListType::Map(vec!["type".into()]),
            ["secrets"] | ["imagePullSecrets"] => ListType::Map(vec!["name".into()]),
            _ => ListType::Atomic,
        }
    }
}

/// List types read from a CRD schema's `x-kubernetes-list-type` and `-list-map-keys`.
pub struct SchemaListTypes<'a>(pub &'a Value);

impl ListTypes for SchemaListTypes<'_> {
    fn list_type(&self, path: &[&str]) -> ListType {
        if path == ["metadata", "finalizers"] {
            return ListType::Set;
        }
        if path == ["metadata", "ownerReferences"] {
            return ListType::Map(vec!["uid".into()]);
        }
        let mut node = self.0;
        for seg in path {
            while let Some(items) = node.get("items").filter(|_| node.get("properties").is_none()) {
                node = items;
            }
            node = match node.get("properties").and_then(|p| p.get(*seg)) {
                Some(n) => n,
                None => match node.get("additionalProperties").filter(|a| a.is_object()) {
                    Some(a) => a,
                    None => return ListType::Atomic,
                },
            };
        }
        match node.get("x-kubernetes-list-type").and_then(Value::as_str) {
            Some("set") => ListType::Set,
            Some("map") => ListType::Map(
                node["x-kubernetes-list-map-keys"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|k| k.as_str().map(String::from))
                    .collect(),
            ),
            _ => ListType::Atomic,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn schema_list_types_follow_extensions() {
        let schema = json!({"type":"object","properties":{"status":{"type":"object","properties":{
            "conditions":{"type":"array","x-kubernetes-list-type":"map","x-kubernetes-list-map-keys":["type"],
              "items":{"type":"object","properties":{"type":{"type":"string"}}}},
            "tags":{"type":"array","x-kubernetes-list-type":"set","items":{"type":"string"}},
            "plain":{"type":"array","items":{"type":"string"}}}}}});
        let lt = SchemaListTypes(&schema);
        assert_eq!(
            lt.list_type(&["status", "conditions"]),
            ListType::Map(vec!["type".into()])
        );
        assert_eq!(lt.list_type(&["status", "tags"]), ListType::Set);
        assert_eq!(lt.list_type(&["status", "plain"]), ListType::Atomic);
        assert_eq!(lt.list_type(&["metadata", "finalizers"]), ListType::Set);
        assert_eq!(BuiltinListTypes.list_type(&["subjects"]), ListType::Atomic);
    }
}
