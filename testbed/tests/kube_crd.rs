//! CRD conformance: serving (namespaced and cluster-scoped), schema validation, pruning,
//! defaults, status subresource, generation, server-side apply field ownership, Table output,
//! metadata-only responses, CRD deletion.

mod common;

use common::{Raw, eventually, install_crd, start};
use serde_json::json;

const W: &str = "/apis/example.com/v1/namespaces/default/widgets";
const APPLY: &str = "application/apply-patch+yaml";

fn widget(name: &str, spec: serde_json::Value) -> serde_json::Value {
    json!({"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":name},"spec":spec})
}

#[tokio::test]
async fn schema_validation_pruning_defaults_and_status() {
    let h = start().await;
    install_crd(&h, "Namespaced").await;
    let raw = Raw::new(&h, h.admin_token());
    let crd = eventually(10, "Established", || async {
        let (_, crd) = raw
            .get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com")
            .await;
        let conds = crd["status"]["conditions"].as_array()?;
        conds
            .iter()
            .any(|c| c["type"] == "Established" && c["status"] == "True")
            .then_some(crd.clone())
    })
    .await;
    let conds = crd["status"]["conditions"].as_array().expect("conditions");
    assert!(
        conds
            .iter()
            .any(|c| c["type"] == "NamesAccepted" && c["reason"] == "NoConflicts")
    );
    assert_eq!(crd["status"]["acceptedNames"]["kind"], "Widget");

    let (code, e) = raw
        .post(W, widget("bad", json!({"size":"big","color":"pink"})))
        .await;
    assert_eq!(
        (code, e["reason"].as_str(), e["details"]["kind"].as_str()),
        (422, Some("Invalid"), Some("Widget"))
    );
    let fields: Vec<&str> = e["details"]["causes"]
        .as_array()
        .expect("causes")
        .iter()
        .filter_map(|c| c["field"].as_str())
        .collect();
    assert!(
        fields.contains(&"spec.size") && fields.contains(&"spec.color"),
        "{e}"
    );
    assert!(
        e["message"]
            .as_str()
            .expect("m")
            .starts_with("Widget.example.com \"bad\" is invalid: "),
        "{e}"
    );
    let (code, e) = raw.post(W, widget("bad2", json!({}))).await;
    assert_eq!(
        (code, e["details"]["causes"][0]["reason"].as_str()),
        (422, Some("FieldValueRequired")),
        "{e}"
    );
    let (code, e) = raw.post(W, widget("neg", json!({"size":-1}))).await;
    assert_eq!(code, 422, "{e}");

    // Unknown fields are pruned (Strict: 400), defaults applied, status dropped on create.
    let mut w = widget("w1", json!({"size":1,"bogus":true}));
    w["status"] = json!({"phase":"Hacked"});
    w["extra"] = json!(1);
    let (code, body) = raw.post(&format!("{W}?fieldValidation=Strict"), w.clone()).await;
    assert_eq!(code, 400, "{body}");
    assert!(
        body["message"].as_str().expect("m").contains("unknown field"),
        "{body}"
    );
    let (code, body) = raw.post(W, w).await;
    assert_eq!(code, 201, "{body}");
    assert!(
        body["spec"].get("bogus").is_none() && body.get("extra").is_none(),
        "{body}"
    );
    assert_eq!(body["spec"]["color"], "blue");
    assert!(body.get("status").is_none(), "status ignored on create");
    assert_eq!(body["metadata"]["generation"], 1);

    // Main endpoint ignores status; /status ignores everything else; generation follows spec only.
    let (_, b) = raw
        .patch(
            &format!("{W}/w1"),
            "application/merge-patch+json",
            json!({"status":{"phase":"X"},"metadata":{"labels":{"a":"b"}}}),
        )
        .await;
    assert!(b.get("status").is_none());
    assert_eq!(
        b["metadata"]["generation"], 1,
        "metadata-only change keeps generation"
    );
    let (code, b) = raw.patch(&format!("{W}/w1/status"), "application/merge-patch+json",
        json!({"status":{"phase":"Ready","conditions":[{"type":"Ready","status":"True"}]},"spec":{"size":50},"metadata":{"labels":{"c":"d"}}})).await;
    assert_eq!(code, 200, "{b}");
    assert_eq!(
        (b["status"]["phase"].as_str(), b["spec"]["size"].as_i64()),
        (Some("Ready"), Some(1))
    );
    assert!(b["metadata"]["labels"].get("c").is_none());
    assert_eq!(b["metadata"]["generation"], 1);
    let (_, b) = raw
        .patch(
            &format!("{W}/w1"),
            "application/merge-patch+json",
            json!({"spec":{"size":2}}),
        )
        .await;
    assert_eq!(b["metadata"]["generation"], 2);
    // PUT needs a resourceVersion for CRs; strategic merge patch is 415.
    let mut put = b.clone();
    put["metadata"]
        .as_object_mut()
        .expect("meta")
        .remove("resourceVersion");
    let (code, _) = raw.put(&format!("{W}/w1"), put).await;
    assert_eq!(code, 422);
    let (code, e) = raw
        .patch(
            &format!("{W}/w1"),
            "application/strategic-merge-patch+json",
            json!({}),
        )
        .await;
    assert_eq!((code, e["reason"].as_str()), (415, Some("UnsupportedMediaType")));
    // Table with printer columns (filter expression) and metadata-only list.
    let resp = raw
        .http
        .get(format!("{}{W}", h.url()))
        .bearer_auth(h.admin_token())
        .header(
            "accept",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        )
        .send()
        .await
        .expect("table");
    let t: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(t["kind"], "Table");
    let cols: Vec<&str> = t["columnDefinitions"]
        .as_array()
        .expect("cols")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(cols, ["Name", "Size", "Ready", "Age"]);
    assert_eq!(t["rows"][0]["cells"][0], "w1");
    assert_eq!(t["rows"][0]["cells"][1], 2);
    assert_eq!(t["rows"][0]["cells"][2], "True");
    assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    let resp = raw
        .http
        .get(format!("{}{W}", h.url()))
        .bearer_auth(h.admin_token())
        .header(
            "accept",
            "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1",
        )
        .send()
        .await
        .expect("meta");
    let m: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(m["kind"], "PartialObjectMetadataList");
    assert!(m["items"][0].get("spec").is_none() && m["items"][0]["metadata"]["name"] == "w1");
}

#[tokio::test]
async fn server_side_apply_ownership_conflicts_and_removal() {
    let h = start().await;
    install_crd(&h, "Namespaced").await;
    let raw = Raw::new(&h, h.admin_token());
    let url = format!("{W}/w1");
    // Apply creates (201) and records an Apply entry.
    let (code, b) = raw
        .patch(
            &format!("{url}?fieldManager=alice"),
            APPLY,
            widget("w1", json!({"size":1,"note":"n","tags":["a"]})),
        )
        .await;
    assert_eq!(code, 201, "{b}");
    let mf = b["metadata"]["managedFields"].as_array().expect("mf");
    assert!(
        mf.iter()
            .any(|e| e["manager"] == "alice" && e["operation"] == "Apply"),
        "{b}"
    );
    // Apply needs a fieldManager; force only with apply.
    let (code, e) = raw.patch(&url, APPLY, widget("w1", json!({"size":1}))).await;
    assert_eq!((code, e["details"]["kind"].as_str()), (422, Some("PatchOptions")));
    let (code, _) = raw
        .patch(
            &format!("{url}?force=true"),
            "application/merge-patch+json",
            json!({}),
        )
        .await;
    assert_eq!(code, 422);
    // Another manager changing alice's field conflicts...
    let (code, e) = raw
        .patch(
            &format!("{url}?fieldManager=bob"),
            APPLY,
            widget("w1", json!({"size":5})),
        )
        .await;
    assert_eq!((code, e["reason"].as_str()), (409, Some("Conflict")), "{e}");
    assert_eq!(e["details"]["causes"][0]["reason"], "FieldManagerConflict");
    assert_eq!(e["details"]["causes"][0]["field"], ".spec.size");
    assert!(
        e["message"]
            .as_str()
            .expect("m")
            .starts_with("Apply failed with 1 conflict: conflict with \"alice\""),
        "{e}"
    );
    // ...same value is shared ownership, no conflict; set items are owned per item.
    let (code, b) = raw
        .patch(
            &format!("{url}?fieldManager=bob"),
            APPLY,
            widget("w1", json!({"size":1,"tags":["b"]})),
        )
        .await;
    assert_eq!(code, 200, "{b}");
    assert_eq!(b["spec"]["tags"], json!(["a", "b"]));
    // Force takes ownership.
    let (code, b) = raw
        .patch(
            &format!("{url}?fieldManager=bob&force=true"),
            APPLY,
            widget("w1", json!({"size":7,"tags":["b"]})),
        )
        .await;
    assert_eq!((code, b["spec"]["size"].as_i64()), (200, Some(7)), "{b}");
    // alice stops applying `note`: it is removed (nobody else owns it).
    let (code, b) = raw
        .patch(
            &format!("{url}?fieldManager=alice"),
            APPLY,
            widget("w1", json!({"tags":["a"]})),
        )
        .await;
    assert_eq!(code, 200, "{b}");
    assert!(b["spec"].get("note").is_none(), "{b}");
    assert_eq!(b["spec"]["size"], 7, "bob still owns size");
    // Re-applying the same intent is a no-op (no new resourceVersion).
    let rv = b["metadata"]["resourceVersion"].clone();
    let (_, b2) = raw
        .patch(
            &format!("{url}?fieldManager=alice"),
            APPLY,
            widget("w1", json!({"tags":["a"]})),
        )
        .await;
    assert_eq!(b2["metadata"]["resourceVersion"], rv);
    // An Update by a non-apply writer shows up as its own managedFields entry.
    let (_, b) = raw
        .patch(
            &format!("{url}?fieldManager=editor"),
            "application/merge-patch+json",
            json!({"spec":{"note":"again"}}),
        )
        .await;
    let mf = b["metadata"]["managedFields"].as_array().expect("mf");
    assert!(
        mf.iter()
            .any(|e| e["manager"] == "editor" && e["operation"] == "Update"),
        "{b}"
    );
    // Lease flow (kube-lease-manager): apply without force conflicts, strategic null releases.
    let leases = "/apis/coordination.k8s.io/v1/namespaces/default/leases";
    let (c, _) = raw.post(leases, json!({"metadata":{"name":"l"},"spec":{}})).await;
    assert_eq!(c, 201);
    let lease = |id: &str| json!({"apiVersion":"coordination.k8s.io/v1","kind":"Lease","spec":{"holderIdentity":id,"leaseDurationSeconds":10}});
    let (c, b) = raw
        .patch(&format!("{leases}/l?fieldManager=lm-a"), APPLY, lease("a"))
        .await;
    assert_eq!(c, 200, "{b}");
    let (c, e) = raw
        .patch(&format!("{leases}/l?fieldManager=lm-b"), APPLY, lease("b"))
        .await;
    assert_eq!((c, e["reason"].as_str()), (409, Some("Conflict")));
    let (c, b) = raw
        .patch(
            &format!("{leases}/l?fieldManager=lm-a"),
            "application/strategic-merge-patch+json",
            json!({"spec":{"holderIdentity":null,"leaseDurationSeconds":null}}),
        )
        .await;
    assert_eq!(c, 200, "{b}");
    let (c, b) = raw
        .patch(&format!("{leases}/l?fieldManager=lm-b"), APPLY, lease("b"))
        .await;
    assert_eq!((c, b["spec"]["holderIdentity"].as_str()), (200, Some("b")), "{b}");
}

#[tokio::test]
async fn cluster_scoped_crds_and_crd_deletion() {
    let h = start().await;
    install_crd(&h, "Cluster").await;
    let raw = Raw::new(&h, h.admin_token());
    let g = "/apis/example.com/v1/gizmos";
    let (code, b) = raw.post(g, json!({"apiVersion":"example.com/v1","kind":"Gizmo","metadata":{"name":"g1","namespace":"ignored"},"spec":{"size":1}})).await;
    assert_eq!(code, 201, "{b}");
    assert!(b["metadata"].get("namespace").is_none());
    assert_eq!(
        raw.get("/apis/example.com/v1/namespaces/default/gizmos/g1")
            .await
            .0,
        404
    );
    let (_, disc) = raw.get("/apis/example.com/v1").await;
    assert_eq!(disc["resources"][0]["namespaced"], false);
    assert_eq!(disc["resources"][1]["name"], "gizmos/status");
    let (code, _) = raw
        .delete(
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/gizmos.example.com",
            json!({}),
        )
        .await;
    assert_eq!(code, 200);
    eventually(10, "CRD and instances gone", || async {
        let crd = raw
            .get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/gizmos.example.com")
            .await
            .0;
        let served = raw.get(g).await.0;
        (crd == 404 && served == 404).then_some(())
    })
    .await;
    let (_, groups) = raw.get("/apis").await;
    assert!(
        !groups["groups"]
            .as_array()
            .expect("groups")
            .iter()
            .any(|x| x["name"] == "example.com")
    );
    // Re-creating the CRD serves an empty collection: the instances were deleted.
    install_crd(&h, "Cluster").await;
    let (_, list) = raw.get(g).await;
    assert_eq!(list["items"], json!([]));
    // Invalid CRDs are refused.
    let mut bad = common::widget_crd("Namespaced");
    bad["metadata"]["name"] = json!("wrong.example.com");
    let (code, e) = raw
        .post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", bad)
        .await;
    assert_eq!(
        (code, e["details"]["causes"][0]["field"].as_str()),
        (422, Some("metadata.name")),
        "{e}"
    );
}

#[tokio::test]
async fn multi_version_crds_serve_every_served_version() {
    let h = start().await;
    let raw = Raw::new(&h, h.admin_token());
    let mut crd = common::widget_crd("Namespaced");
    let mut v2 = crd["spec"]["versions"][0].clone();
    v2["name"] = json!("v1beta1");
    v2["storage"] = json!(false);
    crd["spec"]["versions"].as_array_mut().expect("versions").push(v2);
    let (code, b) = raw
        .post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
        .await;
    assert_eq!(code, 201, "{b}");
    assert_eq!(b["status"]["storedVersions"], json!(["v1"]));
    let (code, _) = raw.post(W, widget("w1", json!({"size":1}))).await;
    assert_eq!(code, 201);
    let (code, b) = raw
        .get("/apis/example.com/v1beta1/namespaces/default/widgets/w1")
        .await;
    assert_eq!(
        (code, b["apiVersion"].as_str()),
        (200, Some("example.com/v1beta1"))
    );
    let (_, groups) = raw.get("/apis").await;
    let g = groups["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .find(|g| g["name"] == "example.com")
        .cloned()
        .expect("group");
    assert_eq!(g["preferredVersion"]["version"], "v1");
    assert_eq!(g["versions"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn conflicting_crd_names_are_not_accepted() {
    let h = start().await;
    install_crd(&h, "Namespaced").await;
    let raw = Raw::new(&h, h.admin_token());
    eventually(10, "widgets accepted", || async {
        let (_, c) = raw
            .get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com")
            .await;
        c["status"]["conditions"]
            .as_array()?
            .iter()
            .any(|c| c["type"] == "NamesAccepted" && c["status"] == "True")
            .then_some(())
    })
    .await;
    let mut other = common::widget_crd("Namespaced");
    other["metadata"]["name"] = json!("things.example.com");
    other["spec"]["names"] = json!({"plural":"things","singular":"thing","kind":"Widget"});
    let (code, b) = raw
        .post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", other)
        .await;
    assert_eq!(code, 201, "{b}");
    let cond = eventually(10, "NamesAccepted=False", || async {
        let (_, c) = raw
            .get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/things.example.com")
            .await;
        c["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == "NamesAccepted" && c["status"] == "False")
            .cloned()
    })
    .await;
    assert_eq!(cond["reason"], "KindConflict");
    assert_eq!(cond["message"], "\"Widget\" is already in use");
    assert_eq!(
        raw.get("/apis/example.com/v1/namespaces/default/things").await.0,
        404,
        "not served"
    );
    assert_eq!(
        raw.get("/apis/example.com/v1/namespaces/default/widgets").await.0,
        200
    );
}

#[tokio::test]
async fn schema_defaults_added_later_apply_on_read() {
    let h = start().await;
    install_crd(&h, "Namespaced").await;
    let raw = Raw::new(&h, h.admin_token());
    let (code, _) = raw.post(W, widget("w1", json!({"size":1}))).await;
    assert_eq!(code, 201);
    let (code, b) = raw
        .patch(
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com",
            "application/json-patch+json",
            json!([{"op":"add","path":"/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/note/default","value":"n/a"}]),
        )
        .await;
    assert_eq!(code, 200, "{b}");
    assert_eq!(b["metadata"]["generation"], 2, "CRD spec change bumps generation");
    let (_, w) = raw.get(&format!("{W}/w1")).await;
    assert_eq!(w["spec"]["note"], "n/a", "{w}");
    let rv = w["metadata"]["resourceVersion"].clone();
    let (_, list) = raw.get(W).await;
    assert_eq!(list["items"][0]["spec"]["note"], "n/a");
    assert_eq!(
        list["items"][0]["metadata"]["resourceVersion"], rv,
        "defaults on read are not written back"
    );
}

#[tokio::test]
async fn status_apply_records_its_manager_and_removes_what_it_stops_applying() {
    let h = start().await;
    install_crd(&h, "Namespaced").await;
    let raw = Raw::new(&h, h.admin_token());
    let (code, b) = raw
        .patch(
            &format!("{W}/w1?fieldManager=alice"),
            APPLY,
            widget("w1", json!({"size":1})),
        )
        .await;
    assert_eq!(code, 201, "{b}");
    let status = |s: serde_json::Value| json!({"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"w1"},"status":s});
    let url = format!("{W}/w1/status?fieldManager=ctrl&force=true");
    let (code, b) = raw
        .patch(
            &url,
            APPLY,
            status(json!({"phase":"Issuing","conditions":[{"type":"Ready","status":"False"}]})),
        )
        .await;
    assert_eq!(code, 200, "{b}");
    let mf = b["metadata"]["managedFields"].as_array().expect("mf");
    assert!(
        mf.iter().any(|e| e["manager"] == "ctrl"
            && e["operation"] == "Apply"
            && e["subresource"] == "status"
            && e["fieldsV1"]["f:status"].get("f:phase").is_some()),
        "the status apply is recorded: {b}"
    );
    // Omitting a field this manager applied before removes it (it owns it alone).
    let (code, b) = raw
        .patch(
            &url,
            APPLY,
            status(json!({"conditions":[{"type":"Ready","status":"True"}]})),
        )
        .await;
    assert_eq!(code, 200, "{b}");
    assert!(
        b["status"].get("phase").is_none(),
        "phase stays after ctrl stopped applying it: {b}"
    );
    assert_eq!(b["status"]["conditions"][0]["status"], "True");
    assert_eq!(b["spec"]["size"], 1, "spec untouched");
}

#[tokio::test]
async fn scale_subresource_maps_replicas_paths() {
    let h = start().await;
    let raw = Raw::new(&h, h.admin_token());
    let mut crd = common::widget_crd("Namespaced");
    crd["spec"]["versions"][0]["subresources"]["scale"] = json!({"specReplicasPath":".spec.size","statusReplicasPath":".status.replicas","labelSelectorPath":".status.selector"});
    let status =
        &mut crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"];
    status["replicas"] = json!({"type":"integer"});
    status["selector"] = json!({"type":"string"});
    let (code, b) = raw
        .post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
        .await;
    assert_eq!(code, 201, "{b}");
    eventually(5, "served", || async {
        (raw.get(W).await.0 == 200).then_some(())
    })
    .await;
    let (_, disc) = raw.get("/apis/example.com/v1").await;
    let scale = disc["resources"]
        .as_array()
        .expect("res")
        .iter()
        .find(|r| r["name"] == "widgets/scale")
        .cloned()
        .expect("scale");
    assert_eq!(
        (scale["group"].as_str(), scale["kind"].as_str()),
        (Some("autoscaling"), Some("Scale"))
    );
    assert_eq!(raw.post(W, widget("w1", json!({"size":2}))).await.0, 201);
    let (code, s) = raw
        .patch(
            &format!("{W}/w1/status"),
            "application/merge-patch+json",
            json!({"status":{"replicas":2,"selector":"app=w"}}),
        )
        .await;
    assert_eq!(code, 200, "{s}");
    let (code, s) = raw.get(&format!("{W}/w1/scale")).await;
    assert_eq!(code, 200);
    assert_eq!(
        (
            s["kind"].as_str(),
            s["spec"]["replicas"].as_i64(),
            s["status"]["selector"].as_str()
        ),
        (Some("Scale"), Some(2), Some("app=w"))
    );
    let (code, s) = raw
        .patch(
            &format!("{W}/w1/scale"),
            "application/merge-patch+json",
            json!({"spec":{"replicas":5}}),
        )
        .await;
    assert_eq!((code, s["spec"]["replicas"].as_i64()), (200, Some(5)), "{s}");
    let (_, w) = raw.get(&format!("{W}/w1")).await;
    assert_eq!(w["spec"]["size"], 5);
    let (code, _) = raw
        .patch(
            &format!("{W}/w1/scale"),
            "application/merge-patch+json",
            json!({"spec":{"replicas":-1}}),
        )
        .await;
    assert_eq!(code, 422);
}
