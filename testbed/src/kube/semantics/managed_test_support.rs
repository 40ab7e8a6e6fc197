//! Helpers shared by the managedFields test files.

use serde_json::{Value, json};

use super::managed::{BuiltinListTypes, apply};

/// Creation time used by the scenarios.
pub(super) const T0: &str = "2025-01-01T00:00:00Z";
/// A later write time.
pub(super) const T1: &str = "2025-01-01T00:00:05Z";
/// A still later write time.
pub(super) const T2: &str = "2025-01-01T00:00:10Z";

/// The built-in list-type oracle for `kind`.
pub(super) fn builtin(kind: &str) -> BuiltinListTypes {
    BuiltinListTypes { kind: kind.into() }
}

/// The object's `managedFields` entries.
pub(super) fn entries(obj: &Value) -> Vec<Value> {
    obj.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// (manager, operation, fieldsV1) of every entry.
pub(super) fn summary(obj: &Value) -> Vec<(String, String, Value)> {
    entries(obj)
        .iter()
        .map(|e| {
            (
                e["manager"].as_str().unwrap_or_default().to_string(),
                e["operation"].as_str().unwrap_or_default().to_string(),
                e["fieldsV1"].clone(),
            )
        })
        .collect()
}

/// The `fieldsV1` of the entry of `manager` with `operation`, if any.
pub(super) fn fields_of(obj: &Value, manager: &str, operation: &str) -> Option<Value> {
    summary(obj)
        .into_iter()
        .find(|(m, o, _)| m == manager && o == operation)
        .map(|(_, _, f)| f)
}

/// A ConfigMap `a` with these labels and data.
pub(super) fn configmap(labels: Value, data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": "a", "namespace": "default", "uid": "u1", "resourceVersion": "5", "labels": labels},
           "data": data})
}

/// kube-lease-manager's acquire body for `holder`.
pub(super) fn lease_apply(holder: &str) -> Value {
    json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "spec": {
        "acquireTime": format!("2025-01-01T00:00:00.00000{}Z", holder.len()),
        "renewTime": format!("2025-01-01T00:00:00.00000{}Z", holder.len()),
        "holderIdentity": holder, "leaseDurationSeconds": 15}})
}

/// Applies with built-in list types at `T1`, panicking on conflicts.
pub(super) fn apply_ok(live: Option<&Value>, applied: &Value, manager: &str, force: bool) -> Value {
    match apply(
        live,
        applied,
        manager,
        force,
        None,
        &builtin(kind_of(applied)),
        T1,
    ) {
        Ok(v) => v,
        Err(causes) => panic!("unexpected conflicts: {causes:?}"),
    }
}

/// The object's `kind`.
pub(super) fn kind_of(obj: &Value) -> &str {
    obj.get("kind").and_then(Value::as_str).unwrap_or_default()
}
