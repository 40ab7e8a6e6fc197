//! Strategic merge patch (`application/strategic-merge-patch+json`) for the built-in kinds the
//! emulator serves, approximating apimachinery `util/strategicpatch`:
//! - maps merge recursively; `null` deletes a key; scalars and type changes replace;
//! - lists merge only where Kubernetes declares a patch strategy ([`list_strategy`]): by patch
//!   merge key (`metadata.ownerReferences` by `uid`, ServiceAccount `secrets` by `name`,
//!   Namespace `status.conditions` by `type`) or as a set of scalars (`metadata.finalizers`);
//!   every other list is replaced;
//! - directives: `$patch: replace|delete|merge` in maps and as list elements,
//!   `$deleteFromPrimitiveList/<f>`, `$setElementOrder/<f>` and `$retainKeys` are honoured.
//!
//! Merged lists are ordered as apimachinery does (see the `strategic_order` module): items named
//! by the patch (or its `$setElementOrder`) in patch order, server-only items interleaved by
//! their previous position. `$patch: delete` on a map leaves an empty map, as the real server.
//!
//! Known simplifications: values added where the original had nothing are merged into an empty
//! value (nested directives are interpreted and nulls dropped; the real server stores the
//! patch value with nulls discarded); the real server's `$retainKeys` and `$setElementOrder`
//! consistency validations are not enforced; `$deleteFromPrimitiveList` applies after the
//! patch's own additions.

use serde_json::{Map, Value};

use super::patch::PatchError;
use super::strategic_order::order_like_patch;

/// How a list in a built-in kind merges under strategic merge patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListStrategy {
    /// No patch strategy: the patch's list replaces the original.
    Replace,
    /// `patchStrategy: merge` on scalars: union, deduplicated, original order first.
    MergePrimitive,
    /// `patchStrategy: merge` with `patchMergeKey`: items merge by that key.
    MergeKey(&'static str),
}

/// The strategy for the list at `path` (field names only) of `kind`, per the Go type markers of
/// the kinds the emulator serves.
pub fn list_strategy(kind: &str, path: &[&str]) -> ListStrategy {
    match (kind, path) {
        (_, ["metadata", "finalizers"]) => ListStrategy::MergePrimitive,
        (_, ["metadata", "ownerReferences"]) => ListStrategy::MergeKey("uid"),
        ("ServiceAccount", ["secrets"]) => ListStrategy::MergeKey("name"),
        ("Namespace", ["status", "conditions"]) => ListStrategy::MergeKey("type"),
        _ => ListStrategy::Replace,
    }
}

const PATCH: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const DELETE_PRIMITIVE: &str = "$deleteFromPrimitiveList/";
const SET_ORDER: &str = "$setElementOrder/";

/// Applies a strategic merge patch to `target` (unchanged on error).
pub fn apply_strategic(target: &mut Value, patch: &Value, kind: &str) -> Result<(), PatchError> {
    let Value::Object(patch) = patch else {
        return Err(PatchError::Malformed(
            "invalid strategic merge patch: the patch document must be a JSON object".into(),
        ));
    };
    let mut work = match target {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    let mut path = Vec::new();
    merge_map(&mut work, patch, kind, &mut path)?;
    *target = Value::Object(work);
    Ok(())
}

fn merge_map(
    orig: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    kind: &str,
    path: &mut Vec<String>,
) -> Result<(), PatchError> {
    match patch.get(PATCH) {
        None => {}
        // As apimachinery: `$patch: delete` on a map leaves an empty map.
        Some(Value::String(s)) if s == "delete" => {
            orig.clear();
            return Ok(());
        }
        Some(Value::String(s)) if s == "replace" => {
            let mut fresh = Map::new();
            let mut stripped = patch.clone();
            stripped.remove(PATCH);
            merge_map(&mut fresh, &stripped, kind, path)?;
            *orig = fresh;
            return Ok(());
        }
        Some(other) => return Err(PatchError::Malformed(format!("Unknown patch type: {other}"))),
    }
    if let Some(retain) = patch.get(RETAIN_KEYS) {
        let keep: Option<Vec<&str>> = retain
            .as_array()
            .and_then(|k| k.iter().map(Value::as_str).collect());
        let Some(keep) = keep else {
            return Err(PatchError::Malformed(
                "$retainKeys must be a list of strings".into(),
            ));
        };
        orig.retain(|k, _| keep.contains(&k.as_str()));
    }
    // `$setElementOrder` orders relative to the list as it was before this patch.
    let mut before: Vec<(String, Vec<Value>, Vec<Value>)> = Vec::new();
    for (key, value) in patch {
        if let Some(field) = key.strip_prefix(SET_ORDER) {
            let Value::Array(order) = value else {
                return Err(PatchError::Malformed(format!("{key} must be a list")));
            };
            let original = orig
                .get(field)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            before.push((field.to_string(), order.clone(), original));
        }
    }
    for (key, value) in patch {
        if key.starts_with('$') {
            continue;
        }
        path.push(key.clone());
        let result = merge_field(orig, key, value, kind, path);
        path.pop();
        result?;
    }
    for (key, value) in patch {
        if let Some(field) = key.strip_prefix(DELETE_PRIMITIVE) {
            let Value::Array(remove) = value else {
                return Err(PatchError::Malformed(format!("{key} must be a list")));
            };
            if let Some(Value::Array(items)) = orig.get_mut(field) {
                items.retain(|item| !remove.contains(item));
            }
        }
    }
    for (field, order, original) in before {
        path.push(field.clone());
        let merge_key = match strategy_at(kind, path) {
            ListStrategy::MergeKey(k) => Some(k),
            _ => None,
        };
        path.pop();
        if let Some(Value::Array(items)) = orig.get_mut(&field) {
            let merged = std::mem::take(items);
            *items = order_like_patch(merged, &order, &original, merge_key);
        }
    }
    Ok(())
}

fn strategy_at(kind: &str, path: &[String]) -> ListStrategy {
    let refs: Vec<&str> = path.iter().map(String::as_str).collect();
    list_strategy(kind, &refs)
}

fn merge_field(
    orig: &mut Map<String, Value>,
    key: &str,
    value: &Value,
    kind: &str,
    path: &mut Vec<String>,
) -> Result<(), PatchError> {
    match value {
        Value::Null => {
            orig.remove(key);
        }
        Value::Object(patch_map) => {
            let mut child = match orig.remove(key) {
                Some(Value::Object(m)) => m,
                _ => Map::new(),
            };
            merge_map(&mut child, patch_map, kind, path)?;
            orig.insert(key.to_string(), Value::Object(child));
        }
        Value::Array(patch_items) => {
            let original = match orig.remove(key) {
                Some(Value::Array(items)) => items,
                _ => Vec::new(),
            };
            let merged = merge_list(original, patch_items, strategy_at(kind, path), kind, path)?;
            orig.insert(key.to_string(), Value::Array(merged));
        }
        scalar => {
            orig.insert(key.to_string(), scalar.clone());
        }
    }
    Ok(())
}

fn merge_list(
    original: Vec<Value>,
    patch: &[Value],
    strategy: ListStrategy,
    kind: &str,
    path: &mut Vec<String>,
) -> Result<Vec<Value>, PatchError> {
    match strategy {
        ListStrategy::Replace => Ok(patch.to_vec()),
        ListStrategy::MergePrimitive => {
            if let Some(item) = original
                .iter()
                .chain(patch)
                .find(|i| i.is_object() || i.is_array())
            {
                return Err(PatchError::Malformed(format!(
                    "the list {} holds scalars, got {item}",
                    path.join(".")
                )));
            }
            let mut merged: Vec<Value> = Vec::with_capacity(original.len() + patch.len());
            for item in original.iter().chain(patch) {
                if !merged.contains(item) {
                    merged.push(item.clone());
                }
            }
            Ok(order_like_patch(merged, patch, &original, None))
        }
        ListStrategy::MergeKey(merge_key) => {
            let mut base = original;
            let mut items: Vec<&Map<String, Value>> = Vec::new();
            let mut replace = false;
            for item in patch {
                let Value::Object(item_map) = item else {
                    return Err(PatchError::Malformed(format!(
                        "the list {} merges on {merge_key:?} and holds objects, got {item}",
                        path.join(".")
                    )));
                };
                match item_map.get(PATCH) {
                    None => items.push(item_map),
                    Some(Value::String(d)) if d == "delete" => {
                        let Some(key_value) = item_map.get(merge_key) else {
                            return Err(no_merge_key(item, merge_key));
                        };
                        base.retain(|o| o.get(merge_key) != Some(key_value));
                    }
                    Some(Value::String(d)) if d == "replace" => replace = true,
                    Some(Value::String(d)) if d == "merge" => {
                        return Err(PatchError::Malformed(
                            "merging lists cannot yet be specified in the patch".into(),
                        ));
                    }
                    Some(other) => return Err(PatchError::Malformed(format!("Unknown patch type: {other}"))),
                }
            }
            if replace {
                return Ok(items.into_iter().map(|m| Value::Object(m.clone())).collect());
            }
            let mut merged = base.clone();
            for item_map in &items {
                let Some(key_value) = item_map.get(merge_key) else {
                    return Err(no_merge_key(&Value::Object((*item_map).clone()), merge_key));
                };
                let position = merged.iter().position(|o| o.get(merge_key) == Some(key_value));
                let mut target = match position.map(|i| std::mem::take(&mut merged[i])) {
                    Some(Value::Object(m)) => m,
                    _ => Map::new(),
                };
                merge_map(&mut target, item_map, kind, path)?;
                match position {
                    Some(i) => merged[i] = Value::Object(target),
                    None => merged.push(Value::Object(target)),
                }
            }
            let patch_items: Vec<Value> = items.into_iter().map(|m| Value::Object(m.clone())).collect();
            Ok(order_like_patch(merged, &patch_items, &base, Some(merge_key)))
        }
    }
}

fn no_merge_key(item: &Value, merge_key: &str) -> PatchError {
    PatchError::Malformed(format!(
        "map: {item} does not contain declared merge key: {merge_key}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn smp(kind: &str, target: Value, patch: Value) -> Result<Value, PatchError> {
        let mut t = target;
        apply_strategic(&mut t, &patch, kind).map(|()| t)
    }

    #[test]
    fn strategic_table() {
        let cases = [
            // maps merge, null deletes (kube-lease-manager release)
            (
                "Lease",
                json!({"spec": {"holderIdentity": "a", "leaseDurationSeconds": 5, "leaseTransitions": 1}}),
                json!({"spec": {"holderIdentity": null, "leaseDurationSeconds": null, "acquireTime": null}}),
                json!({"spec": {"leaseTransitions": 1}}),
            ),
            (
                "Lease",
                json!({"spec": {}}),
                json!({"spec": {"leaseTransitions": 2}}),
                json!({"spec": {"leaseTransitions": 2}}),
            ),
            // finalizers are a merged set
            (
                "ConfigMap",
                json!({"metadata": {"finalizers": ["a", "b"]}}),
                json!({"metadata": {"finalizers": ["c", "a"]}}),
                json!({"metadata": {"finalizers": ["c", "a", "b"]}}),
            ),
            (
                "ConfigMap",
                json!({"metadata": {"finalizers": ["a", "b"]}}),
                json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
                json!({"metadata": {"finalizers": ["b"]}}),
            ),
            // ownerReferences merge on uid
            (
                "Secret",
                json!({"metadata": {"ownerReferences": [{"uid": "1", "name": "a"}, {"uid": "2", "name": "b"}]}}),
                json!({"metadata": {"ownerReferences": [{"uid": "2", "name": "b2"}, {"uid": "3", "name": "c"}]}}),
                json!({"metadata": {"ownerReferences": [{"uid": "1", "name": "a"}, {"uid": "2", "name": "b2"}, {"uid": "3", "name": "c"}]}}),
            ),
            (
                "Secret",
                json!({"metadata": {"ownerReferences": [{"uid": "1", "name": "a"}, {"uid": "2", "name": "b"}]}}),
                json!({"metadata": {"ownerReferences": [{"uid": "1", "$patch": "delete"}]}}),
                json!({"metadata": {"ownerReferences": [{"uid": "2", "name": "b"}]}}),
            ),
            // ServiceAccount secrets merge by name; imagePullSecrets is atomic in core/v1
            (
                "ServiceAccount",
                json!({"secrets": [{"name": "a"}], "imagePullSecrets": [{"name": "x"}]}),
                json!({"secrets": [{"name": "b"}], "imagePullSecrets": [{"name": "y"}]}),
                json!({"secrets": [{"name": "b"}, {"name": "a"}], "imagePullSecrets": [{"name": "y"}]}),
            ),
            // RBAC lists are atomic
            (
                "RoleBinding",
                json!({"subjects": [{"kind": "User", "name": "a"}]}),
                json!({"subjects": [{"kind": "User", "name": "b"}]}),
                json!({"subjects": [{"kind": "User", "name": "b"}]}),
            ),
            // $patch directives on maps
            (
                "ConfigMap",
                json!({"data": {"a": "1", "b": "2"}}),
                json!({"data": {"$patch": "replace", "c": "3"}}),
                json!({"data": {"c": "3"}}),
            ),
            (
                "ConfigMap",
                json!({"data": {"a": "1"}, "x": 1}),
                json!({"data": {"$patch": "delete"}}),
                json!({"data": {}, "x": 1}),
            ),
            (
                "ConfigMap",
                json!({"data": {"a": "1", "b": "2"}}),
                json!({"data": {"$retainKeys": ["b", "c"], "c": "3"}}),
                json!({"data": {"b": "2", "c": "3"}}),
            ),
            // $setElementOrder
            (
                "ConfigMap",
                json!({"metadata": {"finalizers": ["a", "b", "c"]}}),
                json!({"metadata": {"$setElementOrder/finalizers": ["c", "a"]}}),
                // apimachinery interleaves: server-only "b" keeps its place before "c".
                json!({"metadata": {"finalizers": ["b", "c", "a"]}}),
            ),
            (
                "Namespace",
                json!({"status": {"conditions": [{"type": "A", "status": "True"}, {"type": "B", "status": "True"}]}}),
                json!({"status": {"$setElementOrder/conditions": [{"type": "B"}, {"type": "A"}],
                                  "conditions": [{"type": "A", "status": "False"}]}}),
                json!({"status": {"conditions": [{"type": "B", "status": "True"}, {"type": "A", "status": "False"}]}}),
            ),
            // new subtrees drop nulls
            (
                "ConfigMap",
                json!({}),
                json!({"data": {"a": null, "b": "1"}}),
                json!({"data": {"b": "1"}}),
            ),
        ];
        for (kind, target, patch, want) in cases {
            assert_eq!(
                smp(kind, target, patch.clone()).unwrap(),
                want,
                "{kind} patch {patch}"
            );
        }
    }

    #[test]
    fn strategic_errors() {
        let bad = [
            json!({"data": {"$patch": "frob"}}),
            json!({"metadata": {"ownerReferences": [{"name": "no-uid"}]}}),
            json!({"metadata": {"ownerReferences": ["scalar"]}}),
            json!({"metadata": {"finalizers": [{"a": 1}]}}),
            json!({"metadata": {"finalizers": [{"$patch": "replace"}, "z"]}}),
            json!({"metadata": {"ownerReferences": [{"$patch": "merge", "uid": "1"}]}}),
            json!({"metadata": {"ownerReferences": [{"$patch": "delete"}]}}),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": "x"}}),
            json!({"data": {"$retainKeys": "x"}}),
        ];
        for patch in bad {
            let base = json!({"data": {"a": "1"}, "metadata": {"finalizers": ["f"]}});
            let mut t = base.clone();
            let err = apply_strategic(&mut t, &patch, "ConfigMap").unwrap_err();
            assert!(matches!(err, PatchError::Malformed(_)), "{patch}");
            assert_eq!(t, base);
        }
        assert!(apply_strategic(&mut json!({}), &json!([1]), "ConfigMap").is_err());
    }

    #[test]
    fn list_strategy_table() {
        assert_eq!(
            list_strategy("Lease", &["metadata", "finalizers"]),
            ListStrategy::MergePrimitive
        );
        assert_eq!(list_strategy("Role", &["rules"]), ListStrategy::Replace);
        assert_eq!(
            list_strategy("Namespace", &["spec", "finalizers"]),
            ListStrategy::Replace
        );
        assert_eq!(
            list_strategy("ServiceAccount", &["secrets"]),
            ListStrategy::MergeKey("name")
        );
    }
}
