//! Unit tests of the write pipeline.
use super::*;
use crate::kube::resources::{builtins, defs_from_crd};

fn widget_def() -> ResourceDef {
    let crd = json!({"metadata":{"name":"widgets.example.com"},"spec":{"group":"example.com","scope":"Namespaced",
        "names":{"plural":"widgets","kind":"Widget"},"versions":[{"name":"v1","served":true,"storage":true,
        "subresources":{"status":{}},"schema":{"openAPIV3Schema":{"type":"object","x-kubernetes-preserve-unknown-fields":true}}}]}});
    defs_from_crd(&crd).remove(0)
}

#[test]
fn metadata_round_trip_drops_empty_and_unknown() {
    let mut o =
        json!({"metadata":{"name":"a","finalizers":[],"labels":{},"bogus":1,"annotations":{"k":"v"}}});
    normalize_meta(&mut o);
    assert_eq!(o, json!({"metadata":{"name":"a","annotations":{"k":"v"}}}));
}

#[test]
fn status_subresource_merge_rules() {
    let def = widget_def();
    let live =
        json!({"metadata":{"name":"w","uid":"u","labels":{"a":"1"}},"spec":{"x":1},"status":{"p":"old"}});
    let body = json!({"metadata":{"name":"w","labels":{"a":"2"}},"spec":{"x":2},"status":{"p":"new"}});
    let main = merge_for_write(&def, &live, body.clone(), None);
    assert_eq!(
        (main["spec"]["x"].as_i64(), main["status"]["p"].as_str()),
        (Some(2), Some("old"))
    );
    assert_eq!(main["metadata"]["uid"], "u");
    let status = merge_for_write(&def, &live, body, Some("status"));
    assert_eq!(
        (status["spec"]["x"].as_i64(), status["status"]["p"].as_str()),
        (Some(1), Some("new"))
    );
    assert_eq!(status["metadata"]["labels"]["a"], "1");
}

#[test]
fn status_write_keeps_the_managed_fields_the_apply_computed() {
    // Without the status manager's entry, a later status apply could never remove a field it
    // stopped applying (e.g. a cleared write-ahead record).
    let def = widget_def();
    let live =
        json!({"metadata":{"name":"w","uid":"u","managedFields":[{"manager":"shim"}]},"status":{"p":"old"}});
    let body = json!({"metadata":{"name":"w","managedFields":[{"manager":"shim"},{"manager":"ctl","subresource":"status"}]},
        "status":{"p":"new"}});
    let status = merge_for_write(&def, &live, body, Some("status"));
    assert_eq!(status["metadata"]["managedFields"][1]["manager"], "ctl");
    assert_eq!(status["status"]["p"], "new");
}

#[test]
fn finish_bumps_generation_detects_noops_and_completes_deletion() {
    let def = widget_def();
    let now = "2025-01-01T00:00:00Z";
    let o = WriteOpts::default();
    let live = Arc::new(json!({"apiVersion":"example.com/v1","kind":"Widget",
        "metadata":{"name":"w","namespace":"d","uid":"u","generation":1,"resourceVersion":"5"},"spec":{"x":1}}));
    let same = (*live).clone();
    assert!(matches!(
        finish(&def, Some(&live), same, &o, None, Record::Skip, now),
        Ok(Mutation::NoOp(_))
    ));
    let mut changed = (*live).clone();
    changed["spec"]["x"] = json!(2);
    let Ok(Mutation::Put(v)) = finish(&def, Some(&live), changed, &o, None, Record::Skip, now) else {
        panic!("put")
    };
    assert_eq!(v["metadata"]["generation"], 2);
    let mut labels_only = (*live).clone();
    labels_only["metadata"]["labels"] = json!({"a":"b"});
    let Ok(Mutation::Put(v)) = finish(&def, Some(&live), labels_only, &o, None, Record::Skip, now) else {
        panic!("put")
    };
    assert_eq!(v["metadata"]["generation"], 1);
    let mut deleting = (*live).clone();
    deleting["metadata"]["deletionTimestamp"] = json!(now);
    deleting["metadata"]["finalizers"] = json!(["x/y"]);
    let deleting = Arc::new(deleting);
    let mut released = (*deleting).clone();
    released["metadata"]["finalizers"] = json!([]);
    assert!(matches!(
        finish(&def, Some(&deleting), released, &o, None, Record::Skip, now),
        Ok(Mutation::Delete(_))
    ));
    let mut added = (*deleting).clone();
    added["metadata"]["finalizers"] = json!(["x/y", "new/one"]);
    let err = finish(&def, Some(&deleting), added, &o, None, Record::Skip, now)
        .err()
        .expect("forbidden");
    assert_eq!(err.code, 422);
    let cm = builtins()
        .into_iter()
        .find(|d| d.kind == "ConfigMap")
        .expect("cm");
    let bad = json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"Bad"}});
    assert_eq!(
        finish(&cm, None, bad, &o, None, Record::Skip, now)
            .err()
            .map(|e| e.code),
        Some(422)
    );
}
