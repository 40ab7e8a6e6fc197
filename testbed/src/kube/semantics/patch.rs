//! Patch types the API server accepts: JSON merge patch (RFC 7386), JSON patch (RFC 6902 with
//! `test`), and strategic merge patch for built-in kinds (a documented approximation, see
//! [`super::strategic`]).
//!
//! JSON patch follows the Go `evanphx/json-patch` v4 library the real server uses: operations
//! apply in order to a working copy (all-or-nothing), `test` of `null` succeeds when the key is
//! absent from an existing parent object (kube-rs' finalizer helper relies on it), `remove` and
//! `replace` of a missing key fail, `add` to `.../-` appends.

use json_patch::PatchOperation;
use serde_json::Value;

/// Why a patch could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The patch document is malformed (HTTP 400 BadRequest).
    #[error("{0}")]
    Malformed(String),
    /// A JSON patch `test` failed or a path did not exist (HTTP 422 Invalid).
    #[error("{0}")]
    Unprocessable(String),
}

/// The patch media types the server understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    /// `application/merge-patch+json`
    Merge,
    /// `application/json-patch+json`
    Json,
    /// `application/strategic-merge-patch+json` (built-in kinds only; CRs answer 415)
    Strategic,
}

/// Most operations the real server accepts in one JSON patch.
pub const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

/// Applies a non-apply patch to `target` (the live object as JSON). `kind` is the object's Kind,
/// used by strategic merge to find list merge keys (e.g. `subjects` in RoleBinding is atomic,
/// `metadata.ownerReferences` merges on `uid`, `metadata.finalizers` is a set).
/// On error `target` is left unchanged.
pub fn apply_patch(
    target: &mut Value,
    patch: &Value,
    patch_kind: PatchKind,
    kind: &str,
) -> Result<(), PatchError> {
    match patch_kind {
        PatchKind::Merge => {
            if !patch.is_object() {
                return Err(PatchError::Malformed(
                    "invalid JSON merge patch: the patch document must be a JSON object".into(),
                ));
            }
            json_patch::merge(target, patch);
            Ok(())
        }
        PatchKind::Json => apply_json_patch(target, patch),
        PatchKind::Strategic => super::strategic::apply_strategic(target, patch, kind),
    }
}

/// RFC 6902 with the Go library's quirks (see the module docs).
fn apply_json_patch(target: &mut Value, patch: &Value) -> Result<(), PatchError> {
    let ops: Vec<PatchOperation> = match patch {
        Value::Array(list) => {
            // evanphx treats a `test` without `value` as testing for null.
            let mut list = list.clone();
            for op in &mut list {
                if let Value::Object(op) = op
                    && op.get("op").and_then(Value::as_str) == Some("test")
                {
                    op.entry("value").or_insert(Value::Null);
                }
            }
            serde_json::from_value(Value::Array(list))
                .map_err(|e| PatchError::Malformed(format!("invalid JSON patch: {e}")))?
        }
        _ => {
            return Err(PatchError::Malformed(
                "invalid JSON patch: the patch document must be a JSON array of operations".into(),
            ));
        }
    };
    if ops.len() > MAX_JSON_PATCH_OPERATIONS {
        return Err(PatchError::Malformed(format!(
            "The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, got {}",
            ops.len()
        )));
    }
    let mut work = target.clone();
    for (index, op) in ops.iter().enumerate() {
        if let PatchOperation::Test(test) = op
            && test.value.is_null()
            && absent_in_existing_object(&work, &test.path)
        {
            continue;
        }
        json_patch::patch_unsafe(&mut work, std::slice::from_ref(op)).map_err(|e| {
            PatchError::Unprocessable(format!("operation {index} ({}): {}", op_name(op), e.kind))
        })?;
    }
    *target = work;
    Ok(())
}

/// True when `path`'s parent is an object that lacks the last key (evanphx treats it as `null`).
fn absent_in_existing_object(doc: &Value, path: &json_patch::jsonptr::Pointer) -> bool {
    let Some((parent, last)) = path.split_back() else {
        return false;
    };
    match doc.pointer(parent.as_str()) {
        Some(Value::Object(map)) => !map.contains_key(last.decoded().as_ref()),
        _ => false,
    }
}

/// The operation's name for error messages.
fn op_name(op: &PatchOperation) -> &'static str {
    match op {
        PatchOperation::Add(_) => "add",
        PatchOperation::Remove(_) => "remove",
        PatchOperation::Replace(_) => "replace",
        PatchOperation::Move(_) => "move",
        PatchOperation::Copy(_) => "copy",
        PatchOperation::Test(_) => "test",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(target: Value, patch: Value, kind: PatchKind) -> Result<Value, PatchError> {
        let mut t = target;
        apply_patch(&mut t, &patch, kind, "ConfigMap").map(|()| t)
    }

    #[test]
    fn merge_patch_table() {
        let cases = [
            (
                json!({"a": 1, "b": {"c": 2}}),
                json!({"b": {"d": 3}}),
                json!({"a": 1, "b": {"c": 2, "d": 3}}),
            ),
            (json!({"a": 1, "b": 2}), json!({"a": null}), json!({"b": 2})),
            (json!({"l": [1, 2, 3]}), json!({"l": [4]}), json!({"l": [4]})),
            (json!({"a": {"b": 1}}), json!({"a": "x"}), json!({"a": "x"})),
            (
                json!({}),
                json!({"a": {"b": null, "c": 1}}),
                json!({"a": {"c": 1}}),
            ),
            (json!({"a": 1}), json!({"missing": null}), json!({"a": 1})),
        ];
        for (target, patch, want) in cases {
            assert_eq!(
                run(target, patch.clone(), PatchKind::Merge).unwrap(),
                want,
                "patch {patch}"
            );
        }
    }

    #[test]
    fn merge_patch_rejects_non_objects() {
        for patch in [json!([1]), json!("x"), json!(null)] {
            assert!(matches!(
                run(json!({}), patch, PatchKind::Merge),
                Err(PatchError::Malformed(_))
            ));
        }
    }

    #[test]
    fn json_patch_ok_table() {
        let base = json!({"metadata": {"name": "a", "finalizers": ["x"]}, "data": {"k": "v"}});
        let cases = [
            (
                json!([{"op": "add", "path": "/data/n", "value": "1"}]),
                "/data/n",
                json!("1"),
            ),
            (
                json!([{"op": "replace", "path": "/data/k", "value": "w"}]),
                "/data/k",
                json!("w"),
            ),
            (json!([{"op": "remove", "path": "/data/k"}]), "/data", json!({})),
            (
                json!([{"op": "add", "path": "/metadata/finalizers/-", "value": "y"}]),
                "/metadata/finalizers",
                json!(["x", "y"]),
            ),
            (
                json!([{"op": "move", "from": "/data/k", "path": "/data/m"}]),
                "/data",
                json!({"m": "v"}),
            ),
            (
                json!([{"op": "copy", "from": "/data/k", "path": "/data/m"}]),
                "/data",
                json!({"k": "v", "m": "v"}),
            ),
            (
                json!([{"op": "test", "path": "/metadata/finalizers/0", "value": "x"},
                       {"op": "remove", "path": "/metadata/finalizers/0"}]),
                "/metadata/finalizers",
                json!([]),
            ),
            (
                json!([{"op": "test", "path": "/metadata/annotations"},
                       {"op": "add", "path": "/metadata/annotations", "value": {"a": "b"}}]),
                "/metadata/annotations",
                json!({"a": "b"}),
            ),
            (
                json!([{"op": "test", "path": "/metadata/labels", "value": null},
                       {"op": "add", "path": "/metadata/labels", "value": {"a": "b"}}]),
                "/metadata/labels",
                json!({"a": "b"}),
            ),
        ];
        for (patch, pointer, want) in cases {
            let got = run(base.clone(), patch.clone(), PatchKind::Json).unwrap();
            assert_eq!(got.pointer(pointer), Some(&want), "patch {patch}");
        }
    }

    #[test]
    fn kube_rs_finalizer_add_on_object_without_finalizers() {
        let obj = json!({"metadata": {"name": "w"}});
        let patch = json!([{"op": "test", "path": "/metadata/finalizers", "value": null},
                           {"op": "add", "path": "/metadata/finalizers", "value": ["example.com/cleanup"]}]);
        let got = run(obj, patch, PatchKind::Json).unwrap();
        assert_eq!(
            got,
            json!({"metadata": {"name": "w", "finalizers": ["example.com/cleanup"]}})
        );
    }

    #[test]
    fn json_patch_failures_table() {
        let base = json!({"metadata": {"name": "a", "finalizers": ["x"]}, "data": {"k": "v"}});
        let unprocessable = [
            json!([{"op": "test", "path": "/metadata/finalizers", "value": null}]),
            json!([{"op": "test", "path": "/data/k", "value": "other"}]),
            json!([{"op": "test", "path": "/nope/deeper", "value": null}]),
            json!([{"op": "remove", "path": "/data/missing"}]),
            json!([{"op": "replace", "path": "/data/missing", "value": 1}]),
            json!([{"op": "add", "path": "/nope/x", "value": 1}]),
            json!([{"op": "remove", "path": "/metadata/finalizers/5"}]),
            json!([{"op": "test", "path": "/metadata/finalizers/3", "value": null}]),
        ];
        for patch in unprocessable {
            let mut t = base.clone();
            let err = apply_patch(&mut t, &patch, PatchKind::Json, "ConfigMap").unwrap_err();
            assert!(
                matches!(err, PatchError::Unprocessable(_)),
                "patch {patch}: {err:?}"
            );
            assert_eq!(t, base, "target untouched after failure");
        }
        let malformed = [
            json!({"op": "add"}),
            json!([{"op": "frobnicate", "path": "/a"}]),
            json!([{"op": "add", "value": 1}]),
            json!([{"op": "add", "path": "no-slash", "value": 1}]),
        ];
        for patch in malformed {
            assert!(
                matches!(
                    run(base.clone(), patch.clone(), PatchKind::Json),
                    Err(PatchError::Malformed(_))
                ),
                "patch {patch}"
            );
        }
    }

    #[test]
    fn json_patch_is_all_or_nothing() {
        let base = json!({"data": {"k": "v"}});
        let patch = json!([{"op": "add", "path": "/data/n", "value": "1"},
                           {"op": "test", "path": "/data/k", "value": "nope"}]);
        let mut t = base.clone();
        assert!(apply_patch(&mut t, &patch, PatchKind::Json, "ConfigMap").is_err());
        assert_eq!(t, base);
    }
}
