//! End-to-end ownership flows: the kube-lease-manager protocol of kube-api.md §12 and a
//! controller applying status through the `/status` subresource with list-map conditions.

use serde_json::json;

use super::managed::{SchemaListTypes, apply, record_update};
use super::managed_test_support::*;

#[test]
fn kube_lease_manager_flow() {
    let lt = builtin("Lease");
    // 1. create {"metadata":{"name":"L"},"spec":{}}
    let mut lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                           "metadata": {"name": "L", "namespace": "ns", "uid": "u"}, "spec": {}});
    record_update(None, &mut lease, "kube-lease-manager-a", None, &lt, T0);
    assert_eq!(
        fields_of(&lease, "kube-lease-manager-a", "Update"),
        Some(json!({"f:spec": {}}))
    );
    // 2. A acquires via SSA without force.
    let lease = apply(
        Some(&lease),
        &lease_apply("a"),
        "kube-lease-manager-a",
        false,
        None,
        &lt,
        T1,
    )
    .unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "a");
    let mut bumped = lease.clone();
    bumped["spec"]["leaseTransitions"] = json!(1);
    record_update(Some(&lease), &mut bumped, "kube-lease-manager-a", None, &lt, T1);
    // 3. B cannot acquire while A holds it.
    let err = apply(
        Some(&bumped),
        &lease_apply("bb"),
        "kube-lease-manager-bb",
        false,
        None,
        &lt,
        T2,
    )
    .unwrap_err();
    let fields: Vec<&str> = err.iter().map(|c| c.field.as_str()).collect();
    assert_eq!(
        fields,
        vec![".spec.acquireTime", ".spec.holderIdentity", ".spec.renewTime"]
    );
    assert!(
        err.iter()
            .all(|c| c.message == "conflict with \"kube-lease-manager-a\"")
    );
    // 4. A releases with a strategic merge patch of nulls.
    let mut released = bumped.clone();
    let patch = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "spec": {
        "acquireTime": null, "renewTime": null, "holderIdentity": null, "leaseDurationSeconds": null}});
    super::patch::apply_patch(&mut released, &patch, super::patch::PatchKind::Strategic, "Lease").unwrap();
    record_update(
        Some(&bumped),
        &mut released,
        "kube-lease-manager-a",
        None,
        &lt,
        T2,
    );
    assert_eq!(released["spec"], json!({"leaseTransitions": 1}));
    assert_eq!(fields_of(&released, "kube-lease-manager-a", "Apply"), None);
    // 5. B acquires.
    let taken = apply(
        Some(&released),
        &lease_apply("bb"),
        "kube-lease-manager-bb",
        false,
        None,
        &lt,
        T2,
    )
    .unwrap();
    assert_eq!(taken["spec"]["holderIdentity"], "bb");
    assert_eq!(taken["spec"]["leaseTransitions"], 1);
    assert_eq!(
        fields_of(&taken, "kube-lease-manager-bb", "Apply"),
        Some(
            json!({"f:spec": {"f:acquireTime": {}, "f:holderIdentity": {}, "f:leaseDurationSeconds": {}, "f:renewTime": {}}})
        )
    );
}

#[test]
fn status_subresource_apply_tracks_only_status_with_list_map_conditions() {
    let schema = json!({"type": "object", "properties": {
        "spec": {"type": "object", "properties": {"x": {"type": "string"}}},
        "status": {"type": "object", "properties": {
            "phase": {"type": "string"},
            "conditions": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"],
                           "items": {"type": "object", "properties": {"type": {"type": "string"}, "status": {"type": "string"}}}}}}}});
    let lt = SchemaListTypes { schema: &schema };
    let live = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "uid": "u"},
                      "spec": {"x": "1"},
                      "status": {"conditions": [{"type": "Synced", "status": "True"}]}});
    let applied = json!({"apiVersion": "example.com/v1", "kind": "Widget",
                         "metadata": {"name": "w", "labels": {"ignored": "yes"}}, "spec": {"x": "ignored"},
                         "status": {"phase": "Ready", "conditions": [{"type": "Ready", "status": "True"}]}});
    let obj = apply(
        Some(&live),
        &applied,
        "widget-controller",
        false,
        Some("status"),
        &lt,
        T1,
    )
    .unwrap();
    assert_eq!(obj["spec"], json!({"x": "1"}));
    assert!(obj["metadata"].get("labels").is_none());
    assert_eq!(
        obj["status"]["conditions"],
        json!([{"type": "Synced", "status": "True"}, {"type": "Ready", "status": "True"}])
    );
    let entry = entries(&obj)
        .into_iter()
        .find(|e| e["manager"] == "widget-controller")
        .unwrap();
    assert_eq!(entry["subresource"], "status");
    assert_eq!(
        entry["fieldsV1"],
        json!({"f:status": {"f:conditions": {"k:{\"type\":\"Ready\"}": {".": {}, "f:status": {}, "f:type": {}}}, "f:phase": {}}})
    );
    // The pre-existing fields were attributed to before-first-apply.
    assert!(entries(&obj).iter().any(|e| e["manager"] == "before-first-apply"));
    // A later status update by another manager conflicts with the subresource Apply owner.
    let err = apply(
        Some(&obj),
        &json!({"apiVersion": "example.com/v1", "kind": "Widget", "status": {"phase": "Failed"}}),
        "other",
        false,
        Some("status"),
        &lt,
        T2,
    )
    .unwrap_err();
    assert_eq!(
        err[0].message,
        "conflict with \"widget-controller\" with subresource \"status\""
    );
    assert_eq!(err[0].field, ".status.phase");
}
