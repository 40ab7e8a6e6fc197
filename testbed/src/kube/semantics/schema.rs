//! Structural `openAPIV3Schema` handling for custom resources: validation (types, nullable,
//! required, enum, pattern, numeric bounds, lengths, item and property counts, `uniqueItems`,
//! formats, `additionalProperties`, `items`, `allOf/anyOf/oneOf/not`, int-or-string,
//! embedded resources, `x-kubernetes-list-type` set/map uniqueness), pruning of unknown fields,
//! and defaulting — as apiextensions-apiserver does.
//!
//! The server's order on writes is: [`prune`] → [`apply_defaults`] → [`validate`].
//! Known deviations: `x-kubernetes-validations` (CEL rules) are not evaluated; `anyOf`/`oneOf`
//! failures report only the summary error (kube-openapi also merges the best branch's errors);
//! validation ratcheting (unchanged invalid values tolerated on update) is not implemented;
//! root `metadata` is left to the server (ObjectMeta rules), only `name`/`generateName`
//! restrictions declared in the schema are checked here.

use serde_json::{Map, Value};

use super::FieldCause;
use super::schema_validate::{flag, validate_node};

/// Validates a whole object (apiVersion, kind, metadata, spec, status…) against the version's
/// `openAPIV3Schema`. Returns every violation; empty means valid.
pub fn validate(schema: &Value, object: &Value) -> Vec<FieldCause> {
    let mut out = Vec::new();
    validate_node(schema, object, "", &mut out);
    out
}

/// Fields of `ObjectMeta`; an embedded resource's `metadata` keeps only these.
const OBJECT_META_FIELDS: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

/// Removes fields the schema does not declare (honouring `x-kubernetes-preserve-unknown-fields`
/// and `x-kubernetes-embedded-resource`; `apiVersion`, `kind`, `metadata` at the root are kept).
/// Returns the dotted paths removed, so strict field validation can report them.
pub fn prune(schema: &Value, object: &mut Value) -> Vec<String> {
    let mut removed = Vec::new();
    prune_node(schema, object, "", true, &mut removed);
    removed
}

fn child_path(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn prune_node(schema: &Value, value: &mut Value, path: &str, root: bool, removed: &mut Vec<String>) {
    let Some(s) = schema.as_object() else {
        return;
    };
    match value {
        Value::Object(map) => {
            let preserve = flag(s, "x-kubernetes-preserve-unknown-fields");
            let embedded = flag(s, "x-kubernetes-embedded-resource");
            let props = s.get("properties").and_then(Value::as_object);
            let additional = s.get("additionalProperties");
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                let here = child_path(path, &key);
                // Type and object metadata of a resource are never pruned by the schema (even
                // when declared, e.g. `metadata: {type: object}`): the server round-trips them.
                let type_or_meta = matches!(key.as_str(), "apiVersion" | "kind" | "metadata");
                if let Some(prop) = props.and_then(|p| p.get(&key))
                    && !(root && type_or_meta)
                {
                    if let Some(v) = map.get_mut(&key) {
                        prune_node(prop, v, &here, false, removed);
                    }
                    continue;
                }
                if (root || embedded) && type_or_meta {
                    if embedded
                        && key == "metadata"
                        && let Some(Value::Object(meta)) = map.get_mut("metadata")
                    {
                        meta.retain(|k, _| OBJECT_META_FIELDS.contains(&k.as_str()));
                    }
                    continue;
                }
                match additional {
                    Some(a @ Value::Object(_)) => {
                        if let Some(v) = map.get_mut(&key) {
                            prune_node(a, v, &here, false, removed);
                        }
                    }
                    Some(Value::Bool(true)) => {}
                    _ if preserve => {}
                    _ => {
                        map.remove(&key);
                        removed.push(here);
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = s.get("items").filter(|i| i.is_object()) {
                for (i, item) in items.iter_mut().enumerate() {
                    prune_node(item_schema, item, &format!("{path}[{i}]"), false, removed);
                }
            }
        }
        _ => {}
    }
}

/// Applies `default` values from the schema where fields are absent (after pruning, as the real
/// server does on create/update and when reading from storage). A `null` in a non-nullable field
/// is replaced by its default, or dropped when it has none; `nullable: true` keeps `null`.
pub fn apply_defaults(schema: &Value, object: &mut Value) {
    default_node(schema, object);
}

fn default_node(schema: &Value, value: &mut Value) {
    let Some(s) = schema.as_object() else {
        return;
    };
    match value {
        Value::Object(map) => {
            if let Some(props) = s.get("properties").and_then(Value::as_object) {
                for (key, prop) in props {
                    default_member(map, key, prop);
                }
            }
            if let Some(additional @ Value::Object(_)) = s.get("additionalProperties") {
                let props = s.get("properties").and_then(Value::as_object);
                let keys: Vec<String> = map
                    .keys()
                    .filter(|k| props.is_none_or(|p| !p.contains_key(*k)))
                    .cloned()
                    .collect();
                for key in keys {
                    default_member(map, &key, additional);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = s.get("items").filter(|i| i.is_object()) {
                let default = item_schema.get("default");
                let nullable = item_schema
                    .get("nullable")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                for item in items.iter_mut() {
                    if item.is_null()
                        && !nullable
                        && let Some(d) = default
                    {
                        *item = d.clone();
                    }
                    default_node(item_schema, item);
                }
            }
        }
        _ => {}
    }
}

/// Defaults one property (or map value) `key` of `map` per `prop`, then recurses into it.
fn default_member(map: &mut Map<String, Value>, key: &str, prop: &Value) {
    let default = prop.get("default");
    let nullable = prop.get("nullable").and_then(Value::as_bool).unwrap_or(false);
    match map.get(key) {
        None => {
            if let Some(d) = default {
                map.insert(key.to_string(), d.clone());
            }
        }
        Some(Value::Null) if !nullable => match default {
            Some(d) => {
                map.insert(key.to_string(), d.clone());
            }
            None => {
                map.remove(key);
            }
        },
        Some(_) => {}
    }
    if let Some(v) = map.get_mut(key) {
        default_node(prop, v);
    }
}
