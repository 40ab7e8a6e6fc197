//! Scenario tests for [`super::managed`]: managedFields shapes of kubectl and kube-rs writes,
//! server-side apply conflicts, forced ownership moves and removal of dropped fields.

use serde_json::{Value, json};

use super::FieldCause;
use super::managed::{SchemaListTypes, apply, apply_conflict_message, record_update};
use super::managed_test_support::*;

#[test]
fn kubectl_create_records_update_entry_with_parent_members() {
    let mut obj = configmap(json!({"app": "x"}), json!({"k": "v"}));
    record_update(None, &mut obj, "kubectl-create", None, &builtin("ConfigMap"), T0);
    assert_eq!(
        entries(&obj),
        vec![
            json!({"manager": "kubectl-create", "operation": "Update", "apiVersion": "v1", "time": T0,
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:data": {".": {}, "f:k": {}}, "f:metadata": {"f:labels": {".": {}, "f:app": {}}}}})
        ]
    );
}

#[test]
fn update_moves_changed_fields_and_drops_emptied_entries() {
    let mut v1 = configmap(json!({"app": "x"}), json!({"k": "v"}));
    record_update(None, &mut v1, "creator", None, &builtin("ConfigMap"), T0);
    let mut v2 = v1.clone();
    v2["data"]["k"] = json!("w");
    v2["data"]["n"] = json!("1");
    record_update(Some(&v1), &mut v2, "editor", None, &builtin("ConfigMap"), T1);
    assert_eq!(
        fields_of(&v2, "creator", "Update"),
        Some(json!({"f:data": {}, "f:metadata": {"f:labels": {".": {}, "f:app": {}}}}))
    );
    assert_eq!(
        fields_of(&v2, "editor", "Update"),
        Some(json!({"f:data": {"f:k": {}, "f:n": {}}}))
    );
    // Removing the label and data map takes them away from everyone.
    let mut v3 = v2.clone();
    v3["metadata"].as_object_mut().unwrap().remove("labels");
    v3.as_object_mut().unwrap().remove("data");
    record_update(Some(&v2), &mut v3, "cleaner", None, &builtin("ConfigMap"), T2);
    assert_eq!(entries(&v3), Vec::<Value>::new());
    assert!(v3["metadata"].get("managedFields").is_none());
}

#[test]
fn noop_update_keeps_entries_and_time() {
    let mut v1 = configmap(json!({"app": "x"}), json!({"k": "v"}));
    record_update(None, &mut v1, "m", None, &builtin("ConfigMap"), T0);
    let mut v2 = v1.clone();
    record_update(Some(&v1), &mut v2, "m", None, &builtin("ConfigMap"), T2);
    assert_eq!(v2, v1);
    let mut v3 = v1.clone();
    record_update(Some(&v1), &mut v3, "other", None, &builtin("ConfigMap"), T2);
    assert_eq!(v3, v1, "a no-op by another manager adds no entry");
}

#[test]
fn managed_fields_reset_and_empty_list_rules() {
    let mut v1 = configmap(json!({"app": "x"}), json!({"k": "v"}));
    record_update(None, &mut v1, "m", None, &builtin("ConfigMap"), T0);
    let mut reset = v1.clone();
    reset["metadata"]["managedFields"] = json!([{}]);
    record_update(Some(&v1), &mut reset, "m", None, &builtin("ConfigMap"), T1);
    assert!(reset["metadata"].get("managedFields").is_none());
    let mut empty = v1.clone();
    empty["metadata"]["managedFields"] = json!([]);
    record_update(Some(&v1), &mut empty, "m", None, &builtin("ConfigMap"), T1);
    assert_eq!(entries(&empty), entries(&v1));
    let mut garbage = v1.clone();
    garbage["metadata"]["managedFields"] = json!([{"manager": "x", "operation": "Bogus"}]);
    record_update(Some(&v1), &mut garbage, "m", None, &builtin("ConfigMap"), T1);
    assert_eq!(
        entries(&garbage),
        entries(&v1),
        "undecodable managedFields keep the stored ones"
    );
    let mut rewritten = v1.clone();
    rewritten["metadata"]["managedFields"][0]["manager"] = json!("kubectl");
    rewritten["metadata"]["managedFields"][0]["operation"] = json!("Apply");
    record_update(
        Some(&v1),
        &mut rewritten,
        "kubectl",
        None,
        &builtin("ConfigMap"),
        T1,
    );
    assert_eq!(summary(&rewritten)[0].0, "kubectl");
    assert_eq!(summary(&rewritten)[0].1, "Apply");
}

#[test]
fn apply_creates_with_apply_entry_and_strips_untracked_fields() {
    let applied = json!({"apiVersion": "v1", "kind": "ConfigMap",
                         "metadata": {"name": "a", "namespace": "default", "labels": {"app": "x"}},
                         "data": {"k": "v"}});
    let obj = apply_ok(None, &applied, "kubectl", false);
    assert_eq!(obj["data"], json!({"k": "v"}));
    assert_eq!(
        entries(&obj),
        vec![
            json!({"manager": "kubectl", "operation": "Apply", "apiVersion": "v1", "time": T1,
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:data": {"f:k": {}}, "f:metadata": {"f:labels": {"f:app": {}}}}})
        ]
    );
}

#[test]
fn reapply_removes_fields_the_manager_stops_applying() {
    let first = json!({"apiVersion": "v1", "kind": "ConfigMap",
                       "metadata": {"name": "a", "labels": {"app": "x", "tier": "web"}}, "data": {"k": "v", "j": "w"}});
    let live = apply_ok(None, &first, "kubectl", false);
    let second = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "labels": {"app": "x"}},
                        "data": {"k": "v"}});
    let obj = apply_ok(Some(&live), &second, "kubectl", false);
    assert_eq!(obj["metadata"]["labels"], json!({"app": "x"}));
    assert_eq!(obj["data"], json!({"k": "v"}));
    assert_eq!(
        fields_of(&obj, "kubectl", "Apply"),
        Some(json!({"f:data": {"f:k": {}}, "f:metadata": {"f:labels": {"f:app": {}}}}))
    );
}

#[test]
fn omitted_field_owned_by_another_manager_is_kept_and_released() {
    let mut live = apply_ok(
        None,
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "v", "j": "w"}}),
        "a",
        false,
    );
    // b applies the same value for j: shared ownership, no conflict.
    live = apply_ok(
        Some(&live),
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"j": "w"}}),
        "b",
        false,
    );
    assert_eq!(
        fields_of(&live, "b", "Apply"),
        Some(json!({"f:data": {"f:j": {}}}))
    );
    let obj = apply_ok(
        Some(&live),
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"k": "v"}}),
        "a",
        false,
    );
    assert_eq!(obj["data"], json!({"k": "v", "j": "w"}));
    assert_eq!(
        fields_of(&obj, "a", "Apply"),
        Some(json!({"f:data": {"f:k": {}}}))
    );
}

#[test]
fn conflicts_table() {
    let base = apply_ok(
        None,
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "v", "j": "w"}}),
        "owner",
        false,
    );
    let mut edited = base.clone();
    edited["data"]["j"] = json!("edited");
    record_update(
        Some(&base),
        &mut edited,
        "kubectl-edit",
        None,
        &builtin("ConfigMap"),
        T1,
    );
    let cases = [
        (
            json!({"data": {"k": "x"}}),
            vec![(".data.k", "conflict with \"owner\"")],
        ),
        (
            json!({"data": {"j": "x"}}),
            vec![(".data.j", "conflict with \"kubectl-edit\" using v1")],
        ),
        (
            json!({"data": {"k": "x", "j": "y"}}),
            vec![
                (".data.j", "conflict with \"kubectl-edit\" using v1"),
                (".data.k", "conflict with \"owner\""),
            ],
        ),
        (json!({"data": {"k": "v", "new": "1"}}), vec![]),
    ];
    for (body, want) in cases {
        let mut applied = body.clone();
        applied["apiVersion"] = json!("v1");
        applied["kind"] = json!("ConfigMap");
        let got = apply(
            Some(&edited),
            &applied,
            "intruder",
            false,
            None,
            &builtin("ConfigMap"),
            T2,
        );
        let want: Vec<FieldCause> = want
            .iter()
            .map(|(f, m)| FieldCause {
                reason: "FieldManagerConflict".into(),
                message: (*m).into(),
                field: (*f).into(),
            })
            .collect();
        match got {
            Ok(_) => assert!(want.is_empty(), "{body}: expected conflicts {want:?}"),
            Err(causes) => assert_eq!(causes, want, "{body}"),
        }
    }
}

#[test]
fn force_moves_ownership() {
    let live = apply_ok(
        None,
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "v", "j": "w"}}),
        "owner",
        false,
    );
    let obj = apply_ok(
        Some(&live),
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"k": "forced"}}),
        "taker",
        true,
    );
    assert_eq!(obj["data"], json!({"k": "forced", "j": "w"}));
    assert_eq!(
        fields_of(&obj, "owner", "Apply"),
        Some(json!({"f:data": {"f:j": {}}}))
    );
    assert_eq!(
        fields_of(&obj, "taker", "Apply"),
        Some(json!({"f:data": {"f:k": {}}}))
    );
    // owner re-applying its old value now conflicts with taker.
    let again = apply(
        Some(&obj),
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"k": "v", "j": "w"}}),
        "owner",
        false,
        None,
        &builtin("ConfigMap"),
        T2,
    );
    assert_eq!(again.unwrap_err()[0].message, "conflict with \"taker\"");
}

#[test]
fn sets_and_owner_references_are_granular() {
    let lt = builtin("Secret");
    let a = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "finalizers": ["a/x"],
                   "ownerReferences": [{"apiVersion": "v1", "kind": "X", "name": "o", "uid": "1"}]}});
    let live = apply(None, &a, "a", false, None, &lt, T0).unwrap();
    assert_eq!(
        fields_of(&live, "a", "Apply"),
        Some(json!({"f:metadata": {"f:finalizers": {"v:\"a/x\"": {}},
            "f:ownerReferences": {"k:{\"uid\":\"1\"}": {".": {}, "f:apiVersion": {}, "f:kind": {}, "f:name": {}, "f:uid": {}}}}}))
    );
    let b = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"finalizers": ["b/y"]}});
    let both = apply(Some(&live), &b, "b", false, None, &lt, T1).unwrap();
    assert_eq!(both["metadata"]["finalizers"], json!(["a/x", "b/y"]));
    let a_drops = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}});
    let after = apply(Some(&both), &a_drops, "a", false, None, &lt, T2).unwrap();
    assert_eq!(after["metadata"]["finalizers"], json!(["b/y"]));
    assert!(
        after["metadata"]
            .get("ownerReferences")
            .is_none_or(|o| o == &json!([]))
    );
}

#[test]
fn atomic_lists_conflict_as_a_whole() {
    let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "items": {"type": "array", "items": {"type": "string"}}}}}});
    let lt = SchemaListTypes { schema: &schema };
    let w = |items: Value| json!({"apiVersion": "example.com/v1", "kind": "W", "metadata": {"name": "w"}, "spec": {"items": items}});
    let live = apply(None, &w(json!(["a"])), "one", false, None, &lt, T0).unwrap();
    assert_eq!(
        fields_of(&live, "one", "Apply"),
        Some(json!({"f:spec": {"f:items": {}}}))
    );
    let err = apply(Some(&live), &w(json!(["a", "b"])), "two", false, None, &lt, T1).unwrap_err();
    assert_eq!(err[0].field, ".spec.items");
    let forced = apply(Some(&live), &w(json!(["b"])), "two", true, None, &lt, T1).unwrap();
    assert_eq!(forced["spec"]["items"], json!(["b"]));
    assert_eq!(fields_of(&forced, "one", "Apply"), None);
}

#[test]
fn reapply_without_changes_keeps_time() {
    let applied =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "v"}});
    let live = apply(None, &applied, "m", false, None, &builtin("ConfigMap"), T0).unwrap();
    let again = apply(Some(&live), &applied, "m", false, None, &builtin("ConfigMap"), T2).unwrap();
    assert_eq!(again, live);
}

#[test]
fn update_entries_are_capped() {
    let lt = builtin("ConfigMap");
    let mut obj = configmap(json!({}), json!({}));
    for i in 0..12 {
        let mut next = obj.clone();
        next["data"][format!("k{i}")] = json!("v");
        record_update(
            Some(&obj),
            &mut next,
            &format!("m{i:02}"),
            None,
            &lt,
            &format!("2025-01-01T00:00:{i:02}Z"),
        );
        obj = next;
    }
    let managers: Vec<String> = summary(&obj).into_iter().map(|(m, _, _)| m).collect();
    assert_eq!(managers.len(), 10, "{managers:?}");
    assert!(managers.contains(&"ancient-changes".to_string()));
    assert!(managers.contains(&"m11".to_string()));
}

#[test]
fn conflict_message_table() {
    let c = |m: &str, f: &str| FieldCause {
        reason: "FieldManagerConflict".into(),
        message: format!("conflict with {m}"),
        field: f.into(),
    };
    assert_eq!(
        apply_conflict_message(&[c("\"kube-lease-manager-ab12\"", ".spec.holderIdentity")]),
        "Apply failed with 1 conflict: conflict with \"kube-lease-manager-ab12\": .spec.holderIdentity"
    );
    assert_eq!(
        apply_conflict_message(&[c("\"m\"", ".spec.a"), c("\"m\"", ".spec.b")]),
        "Apply failed with 2 conflicts: conflicts with \"m\":\n- .spec.a\n- .spec.b"
    );
}

#[test]
fn custom_resource_create_marks_added_parents_as_members() {
    let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "projectPath": {"type": "string"},
        "scopes": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
        "source": {"type": "object", "properties": {"name": {"type": "string"}}}}}}});
    let lt = SchemaListTypes { schema: &schema };
    let mut obj = json!({"apiVersion": "example.com/v1", "kind": "Token",
        "metadata": {"name": "t", "namespace": "ns", "finalizers": ["example.com/cleanup"]},
        "spec": {"projectPath": "g/p", "scopes": ["api"], "source": {"name": "s"}}});
    record_update(None, &mut obj, "kubectl-client-side-apply", None, &lt, T0);
    assert_eq!(
        fields_of(&obj, "kubectl-client-side-apply", "Update"),
        Some(json!({
            "f:metadata": {"f:finalizers": {".": {}, "v:\"example.com/cleanup\"": {}}},
            "f:spec": {".": {}, "f:projectPath": {}, "f:scopes": {".": {}, "v:\"api\"": {}},
                       "f:source": {".": {}, "f:name": {}}}
        }))
    );
    // kube-rs' finalizer helper removes the finalizer with a JSON patch (no fieldManager).
    let mut next = obj.clone();
    next["metadata"].as_object_mut().unwrap().remove("finalizers");
    record_update(Some(&obj), &mut next, "unknown", None, &lt, T1);
    assert_eq!(
        fields_of(&next, "kubectl-client-side-apply", "Update"),
        Some(
            json!({"f:spec": {".": {}, "f:projectPath": {}, "f:scopes": {".": {}, "v:\"api\"": {}},
                               "f:source": {".": {}, "f:name": {}}}})
        )
    );
    assert_eq!(fields_of(&next, "unknown", "Update"), None);
}

#[test]
fn apply_null_removes_the_field() {
    let live = apply_ok(
        None,
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "v", "j": "w"}}),
        "m",
        false,
    );
    let obj = apply_ok(
        Some(&live),
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"k": "v", "j": null}}),
        "m",
        false,
    );
    assert_eq!(obj["data"], json!({"k": "v"}));
}

#[test]
fn entry_times_move_only_when_the_write_changed_something() {
    let lt = builtin("ConfigMap");
    let mut v1 = configmap(json!({"app": "x"}), json!({"k": "v"}));
    record_update(None, &mut v1, "m", None, &lt, T0);
    let mut v2 = v1.clone();
    v2["data"]["k"] = json!("changed");
    record_update(Some(&v1), &mut v2, "m", None, &lt, T1);
    assert_eq!(
        entries(&v2)[0]["time"],
        T1,
        "changing an owned field refreshes the time"
    );
    let applied = json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"k": "changed"}});
    let shared = apply(Some(&v2), &applied, "sharer", false, None, &lt, T2).unwrap();
    assert_eq!(shared["data"], v2["data"]);
    let sharer = entries(&shared)
        .into_iter()
        .find(|e| e["manager"] == "sharer")
        .unwrap();
    assert_eq!(sharer["time"], T2);
    let again = apply(
        Some(&shared),
        &applied,
        "sharer",
        false,
        None,
        &lt,
        "2030-01-01T00:00:00Z",
    )
    .unwrap();
    assert_eq!(again, shared, "a no-op apply keeps the entry time");
}

#[test]
fn a_struct_the_manager_stops_applying_goes_away_whole_unless_someone_else_owns_part_of_it() {
    let w = |spec: serde_json::Value| json!({"apiVersion": "example.com/v1", "kind": "W", "metadata": {"name": "a"}, "spec": spec});
    let live = apply_ok(
        None,
        &w(json!({"keep": 1, "pending": {"a": 1, "b": 2}})),
        "m",
        false,
    );
    let obj = apply_ok(Some(&live), &w(json!({"keep": 1})), "m", false);
    assert_eq!(
        obj["spec"],
        json!({"keep": 1}),
        "no empty `pending: {{}}` left behind"
    );

    let shared = apply_ok(Some(&live), &w(json!({"pending": {"a": 1}})), "other", false);
    let obj = apply_ok(Some(&shared), &w(json!({"keep": 1})), "m", false);
    assert_eq!(obj["spec"], json!({"keep": 1, "pending": {"a": 1}}));
}
