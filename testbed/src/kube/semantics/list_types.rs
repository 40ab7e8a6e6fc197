//! Ready-made [`ListTypes`] oracles: one for built-in kinds (their Go list/map markers) and one
//! read from a CRD version's `openAPIV3Schema` (`x-kubernetes-list-type`, `-list-map-keys`,
//! `additionalProperties`, `x-kubernetes-preserve-unknown-fields`).

use serde_json::Value;

use super::managed::{ListType, ListTypes};

/// True for the maps every kind shares or the built-ins the emulator serves declare
/// (`metadata.labels`, `metadata.annotations`, ConfigMap/Secret `data`, `binaryData`,
/// `stringData`): their entries are owned one by one.
pub fn builtin_is_map(path: &[&str]) -> bool {
    matches!(
        path,
        ["metadata", "labels" | "annotations"]
            | ["data" | "binaryData" | "stringData"]
            | ["spec", "selector", "matchLabels"]
    )
}

/// The list type of `metadata` lists, shared by every kind.
fn metadata_list_type(path: &[&str]) -> Option<ListType> {
    match path {
        ["metadata", "finalizers"] => Some(ListType::Set),
        ["metadata", "ownerReferences"] => Some(ListType::Map(vec!["uid".into()])),
        ["metadata", ..] => Some(ListType::Atomic),
        _ => None,
    }
}

/// List and map knowledge of a built-in kind (by Kind name).
#[derive(Debug, Clone)]
pub struct BuiltinListTypes {
    /// The Kind, e.g. `ServiceAccount`.
    pub kind: String,
}

impl ListTypes for BuiltinListTypes {
    fn list_type(&self, path: &[&str]) -> ListType {
        if let Some(t) = metadata_list_type(path) {
            return t;
        }
        match (self.kind.as_str(), path) {
            ("ServiceAccount", ["secrets"]) => ListType::Map(vec!["name".into()]),
            ("Namespace" | "CustomResourceDefinition", ["status", "conditions"]) => {
                ListType::Map(vec!["type".into()])
            }
            _ => ListType::Atomic,
        }
    }

    fn is_map(&self, path: &[&str]) -> bool {
        builtin_is_map(path)
    }
}

/// List and map knowledge read from a CRD version's `openAPIV3Schema`.
#[derive(Debug, Clone, Copy)]
pub struct SchemaListTypes<'a> {
    /// The version's `openAPIV3Schema`.
    pub schema: &'a Value,
}

/// Where a path lands in a schema.
enum Lookup<'a> {
    Found(&'a Value),
    /// Below a `x-kubernetes-preserve-unknown-fields` node without declared properties.
    Schemaless,
    Missing,
}

impl<'a> SchemaListTypes<'a> {
    fn lookup(&self, path: &[&str]) -> Lookup<'a> {
        let mut node = self.schema;
        for segment in path {
            while let Some(items) = node.get("items").filter(|i| i.is_object()) {
                node = items;
            }
            if let Some(prop) = node.get("properties").and_then(|p| p.get(*segment)) {
                node = prop;
            } else if let Some(additional) = node.get("additionalProperties").filter(|a| a.is_object()) {
                node = additional;
            } else if node
                .get("x-kubernetes-preserve-unknown-fields")
                .and_then(Value::as_bool)
                == Some(true)
                || node.get("additionalProperties") == Some(&Value::Bool(true))
            {
                return Lookup::Schemaless;
            } else {
                return Lookup::Missing;
            }
        }
        Lookup::Found(node)
    }
}

impl ListTypes for SchemaListTypes<'_> {
    fn list_type(&self, path: &[&str]) -> ListType {
        if let Some(t) = metadata_list_type(path) {
            return t;
        }
        let Lookup::Found(node) = self.lookup(path) else {
            return ListType::Atomic;
        };
        match node.get("x-kubernetes-list-type").and_then(Value::as_str) {
            Some("set") => ListType::Set,
            Some("map") => {
                let keys = node
                    .get("x-kubernetes-list-map-keys")
                    .and_then(Value::as_array)
                    .map(|k| k.iter().filter_map(Value::as_str).map(String::from).collect())
                    .unwrap_or_default();
                ListType::Map(keys)
            }
            _ => ListType::Atomic,
        }
    }

    fn is_atomic_map(&self, path: &[&str]) -> bool {
        match self.lookup(path) {
            Lookup::Found(node) => {
                node.get("x-kubernetes-map-type").and_then(Value::as_str) == Some("atomic")
            }
            _ => false,
        }
    }

    fn is_map(&self, path: &[&str]) -> bool {
        if path.first() == Some(&"metadata") {
            return builtin_is_map(path);
        }
        match self.lookup(path) {
            Lookup::Found(node) => {
                let atomic = node.get("x-kubernetes-map-type").and_then(Value::as_str) == Some("atomic");
                let declared = node.get("properties").is_some();
                let additional = node
                    .get("additionalProperties")
                    .is_some_and(|a| a.is_object() || a == true);
                let preserve = node
                    .get("x-kubernetes-preserve-unknown-fields")
                    .and_then(Value::as_bool)
                    == Some(true);
                !atomic && !declared && (additional || preserve)
            }
            Lookup::Schemaless => true,
            Lookup::Missing => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn builtin_table() {
        let sa = BuiltinListTypes {
            kind: "ServiceAccount".into(),
        };
        assert_eq!(sa.list_type(&["secrets"]), ListType::Map(vec!["name".into()]));
        assert_eq!(sa.list_type(&["imagePullSecrets"]), ListType::Atomic);
        assert_eq!(sa.list_type(&["metadata", "finalizers"]), ListType::Set);
        assert_eq!(
            sa.list_type(&["metadata", "ownerReferences"]),
            ListType::Map(vec!["uid".into()])
        );
        let rb = BuiltinListTypes {
            kind: "RoleBinding".into(),
        };
        assert_eq!(rb.list_type(&["subjects"]), ListType::Atomic);
        assert!(rb.is_map(&["metadata", "labels"]));
        assert!(!rb.is_map(&["roleRef"]));
    }

    #[test]
    fn schema_table() {
        let schema = json!({"type": "object", "properties": {
            "spec": {"type": "object", "properties": {
                "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
                "ports": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["port", "protocol"],
                          "items": {"type": "object", "properties": {"port": {"type": "integer"},
                              "inner": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}}}}},
                "plain": {"type": "array", "items": {"type": "string"}},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "frozen": {"type": "object", "x-kubernetes-map-type": "atomic", "additionalProperties": {"type": "string"}},
                "raw": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
            }},
            "status": {"type": "object", "properties": {"conditions": {"type": "array", "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"], "items": {"type": "object"}}}}
        }});
        let t = SchemaListTypes { schema: &schema };
        assert_eq!(t.list_type(&["spec", "tags"]), ListType::Set);
        assert_eq!(
            t.list_type(&["spec", "ports"]),
            ListType::Map(vec!["port".into(), "protocol".into()])
        );
        assert_eq!(t.list_type(&["spec", "ports", "inner"]), ListType::Set);
        assert_eq!(t.list_type(&["spec", "plain"]), ListType::Atomic);
        assert_eq!(t.list_type(&["spec", "raw", "x"]), ListType::Atomic);
        assert_eq!(
            t.list_type(&["status", "conditions"]),
            ListType::Map(vec!["type".into()])
        );
        assert_eq!(t.list_type(&["metadata", "finalizers"]), ListType::Set);
        assert!(t.is_map(&["spec", "labels"]));
        assert!(!t.is_map(&["spec", "frozen"]));
        assert!(t.is_atomic_map(&["spec", "frozen"]));
        assert!(!t.is_atomic_map(&["spec", "labels"]));
        assert!(t.is_map(&["spec", "raw"]));
        assert!(t.is_map(&["spec", "raw", "deep"]));
        assert!(!t.is_map(&["spec"]));
        assert!(t.is_map(&["metadata", "annotations"]));
    }
}
