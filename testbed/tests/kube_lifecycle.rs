//! Deletion conformance: finalizers, owner-reference garbage collection (background,
//! foreground, orphan) and namespace deletion cascading to everything in it.

mod common;

use common::{Raw, eventually, install_crd, start};
use serde_json::json;

const W: &str = "/apis/example.com/v1/namespaces/default/widgets";
const CMS: &str = "/api/v1/namespaces/default/configmaps";

#[tokio::test]
async fn finalizers_delay_deletion_until_removed() {
    let h = start().await;
    install_crd(&h, "Namespaced").await;
    let raw = Raw::new(&h, h.admin_token());
    let (code, w) = raw
        .post(
            W,
            json!({"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"w1"},"spec":{"size":1}}),
        )
        .await;
    assert_eq!(code, 201, "{w}");
    // The kube-rs finalizer helper's patches: test null on an absent list, then add.
    let jp = "application/json-patch+json";
    let (code, w) = raw
        .patch(
            &format!("{W}/w1"),
            jp,
            json!([{"op":"test","path":"/metadata/finalizers","value":null},
        {"op":"add","path":"/metadata/finalizers","value":["example.com/cleanup"]}]),
        )
        .await;
    assert_eq!(code, 200, "{w}");
    let (code, w) = raw.delete(&format!("{W}/w1"), json!({})).await;
    assert_eq!(code, 200);
    assert_eq!(w["kind"], "Widget", "pending deletion returns the object");
    assert!(w["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(
        w["metadata"]["generation"], 2,
        "first deletion mark bumps generation"
    );
    let rv: u64 = w["metadata"]["resourceVersion"]
        .as_str()
        .expect("rv")
        .parse()
        .expect("n");
    // New finalizers are refused while deleting.
    let (code, e) = raw
        .patch(
            &format!("{W}/w1"),
            "application/merge-patch+json",
            json!({"metadata":{"finalizers":["example.com/cleanup","other/x"]}}),
        )
        .await;
    assert_eq!(code, 422, "{e}");
    assert!(
        e["message"]
            .as_str()
            .expect("m")
            .contains("no new finalizers can be added if the object is being deleted")
    );
    let (code, _) = raw.get(&format!("{W}/w1")).await;
    assert_eq!(code, 200, "still readable");
    let raw2 = Raw::new(&h, h.admin_token());
    let watch = tokio::spawn(async move {
        raw2.watch_lines(&format!("{W}?watch=true&resourceVersion={rv}"), 1, 10)
            .await
    });
    let (code, w) = raw
        .patch(
            &format!("{W}/w1"),
            jp,
            json!([{"op":"test","path":"/metadata/finalizers/0","value":"example.com/cleanup"},
        {"op":"remove","path":"/metadata/finalizers/0"}]),
        )
        .await;
    assert_eq!(code, 200, "{w}");
    let (code, _) = raw.get(&format!("{W}/w1")).await;
    assert_eq!(code, 404, "gone once finalizers are empty");
    let lines = watch.await.expect("join");
    assert_eq!(lines[0]["type"], "DELETED", "watchers see only DELETED");
}

async fn cm_with_owners(raw: &Raw, name: &str, owners: &[&serde_json::Value], block: bool, fin: bool) {
    let refs: Vec<serde_json::Value> = owners
        .iter()
        .map(|o| {
            json!({"apiVersion":"v1","kind":"ConfigMap",
        "name":o["metadata"]["name"],"uid":o["metadata"]["uid"],"blockOwnerDeletion":block})
        })
        .collect();
    let mut meta = json!({"name":name,"ownerReferences":refs});
    if fin {
        meta["finalizers"] = json!(["example.com/hold"]);
    }
    let (code, b) = raw.post(CMS, json!({"metadata":meta})).await;
    assert_eq!(code, 201, "{b}");
}

async fn gone(raw: &Raw, name: &str) {
    eventually(10, &format!("{name} deleted"), || async {
        (raw.get(&format!("{CMS}/{name}")).await.0 == 404).then_some(())
    })
    .await;
}

#[tokio::test]
async fn garbage_collection_background_foreground_orphan() {
    let h = start().await;
    let raw = Raw::new(&h, h.admin_token());
    let mk = |n: &str| {
        let raw = &raw;
        let n = n.to_string();
        async move { raw.post(CMS, json!({"metadata":{"name":n}})).await.1 }
    };
    // Background: dependents with no live owner go; with one live owner they stay.
    let (o1, o2) = (mk("owner1").await, mk("owner2").await);
    cm_with_owners(&raw, "dep-single", &[&o1], false, false).await;
    cm_with_owners(&raw, "dep-both", &[&o1, &o2], false, false).await;
    let (code, _) = raw
        .delete(
            &format!("{CMS}/owner1"),
            json!({"propagationPolicy":"Background"}),
        )
        .await;
    assert_eq!(code, 200);
    gone(&raw, "dep-single").await;
    assert_eq!(
        raw.get(&format!("{CMS}/dep-both")).await.0,
        200,
        "still has a live owner"
    );

    // Foreground: the owner waits (foregroundDeletion) for blocking dependents.
    let o3 = mk("owner3").await;
    cm_with_owners(&raw, "dep-block", &[&o3], true, true).await;
    let (code, o) = raw
        .delete(
            &format!("{CMS}/owner3"),
            json!({"propagationPolicy":"Foreground"}),
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(o["metadata"]["finalizers"], json!(["foregroundDeletion"]));
    eventually(10, "dependent marked deleting", || async {
        raw.get(&format!("{CMS}/dep-block")).await.1["metadata"]["deletionTimestamp"]
            .as_str()
            .map(|_| ())
    })
    .await;
    assert_eq!(
        raw.get(&format!("{CMS}/owner3")).await.0,
        200,
        "owner waits for blocking dependent"
    );
    let (code, _) = raw
        .patch(
            &format!("{CMS}/dep-block"),
            "application/merge-patch+json",
            json!({"metadata":{"finalizers":null}}),
        )
        .await;
    assert_eq!(code, 200);
    gone(&raw, "dep-block").await;
    gone(&raw, "owner3").await;

    // Orphan: the dependent stays, its ownerReference is removed.
    let o4 = mk("owner4").await;
    cm_with_owners(&raw, "dep-orphan", &[&o4], false, false).await;
    let (code, _) = raw
        .delete(&format!("{CMS}/owner4"), json!({"propagationPolicy":"Orphan"}))
        .await;
    assert_eq!(code, 200);
    gone(&raw, "owner4").await;
    let (code, d) = raw.get(&format!("{CMS}/dep-orphan")).await;
    assert_eq!(code, 200);
    assert!(d["metadata"].get("ownerReferences").is_none(), "{d}");

    // An owner reference to a uid that never existed is collected.
    cm_with_owners(
        &raw,
        "dep-ghost",
        &[&json!({"metadata":{"name":"ghost","uid":"00000000-0000-0000-0000-000000000000"}})],
        false,
        false,
    )
    .await;
    gone(&raw, "dep-ghost").await;
}

#[tokio::test]
async fn namespace_deletion_cascades() {
    let h = start().await;
    install_crd(&h, "Namespaced").await;
    let raw = Raw::new(&h, h.admin_token());
    let (code, ns) = raw
        .post("/api/v1/namespaces", json!({"metadata":{"name":"team-a"}}))
        .await;
    assert_eq!(code, 201);
    assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
    assert_eq!(ns["status"]["phase"], "Active");
    assert_eq!(ns["metadata"]["labels"]["kubernetes.io/metadata.name"], "team-a");
    assert_eq!(
        raw.get("/api/v1/namespaces/team-a/serviceaccounts/default")
            .await
            .0,
        200,
        "default SA created"
    );
    for i in 0..3 {
        let (c, _) = raw
            .post(
                "/api/v1/namespaces/team-a/configmaps",
                json!({"metadata":{"name":format!("c{i}")}}),
            )
            .await;
        assert_eq!(c, 201);
    }
    let (c, _) = raw
        .post(
            "/api/v1/namespaces/team-a/secrets",
            json!({"metadata":{"name":"s"},"stringData":{"a":"b"}}),
        )
        .await;
    assert_eq!(c, 201);
    let (c, _) = raw
        .post(
            "/apis/example.com/v1/namespaces/team-a/widgets",
            json!({"apiVersion":"example.com/v1","kind":"Widget",
        "metadata":{"name":"held","finalizers":["example.com/cleanup"]},"spec":{"size":1}}),
        )
        .await;
    assert_eq!(c, 201);
    let (code, ns) = raw.delete("/api/v1/namespaces/team-a", json!({})).await;
    assert_eq!(code, 200);
    assert_eq!(ns["status"]["phase"], "Terminating");
    let (code, e) = raw
        .post(
            "/api/v1/namespaces/team-a/configmaps",
            json!({"metadata":{"name":"late"}}),
        )
        .await;
    assert_eq!(
        (code, e["details"]["causes"][0]["reason"].as_str()),
        (403, Some("NamespaceTerminating"))
    );
    let (code, e) = raw.delete("/api/v1/namespaces/team-a", json!({})).await;
    assert_eq!((code, e["reason"].as_str()), (409, Some("Conflict")));
    eventually(10, "content removed except the held widget", || async {
        let (_, l) = raw.get("/api/v1/namespaces/team-a/configmaps").await;
        let (_, s) = raw.get("/api/v1/namespaces/team-a/secrets").await;
        (l["items"].as_array()?.is_empty() && s["items"].as_array()?.is_empty()).then_some(())
    })
    .await;
    let cond = eventually(10, "SomeFinalizersRemain condition", || async {
        let (_, ns) = raw.get("/api/v1/namespaces/team-a").await;
        ns["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == "NamespaceFinalizersRemaining" && c["status"] == "True")
            .cloned()
    })
    .await;
    assert!(
        cond["message"]
            .as_str()
            .expect("m")
            .contains("example.com/cleanup in 1 resource instances"),
        "{cond}"
    );
    let (c, _) = raw
        .patch(
            "/apis/example.com/v1/namespaces/team-a/widgets/held",
            "application/merge-patch+json",
            json!({"metadata":{"finalizers":null}}),
        )
        .await;
    assert_eq!(c, 200);
    eventually(10, "namespace gone", || async {
        (raw.get("/api/v1/namespaces/team-a").await.0 == 404).then_some(())
    })
    .await;
    let (code, e) = raw.delete("/api/v1/namespaces/default", json!({})).await;
    assert_eq!(
        (code, e["message"].as_str()),
        (
            403,
            Some("namespaces \"default\" is forbidden: this namespace may not be deleted")
        )
    );
}

#[tokio::test]
async fn namespace_finalize_endpoint_releases_custom_spec_finalizers() {
    let h = start().await;
    let raw = Raw::new(&h, h.admin_token());
    let (code, ns) = raw
        .post(
            "/api/v1/namespaces",
            json!({"metadata":{"name":"held"},"spec":{"finalizers":["example.com/x"]}}),
        )
        .await;
    assert_eq!(code, 201);
    assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes", "example.com/x"]));
    assert_eq!(raw.delete("/api/v1/namespaces/held", json!({})).await.0, 200);
    let ns = eventually(
        10,
        "kubernetes finalizer removed by the namespace controller",
        || async {
            let (_, ns) = raw.get("/api/v1/namespaces/held").await;
            (ns["spec"]["finalizers"] == json!(["example.com/x"])).then_some(ns)
        },
    )
    .await;
    assert_eq!(ns["status"]["phase"], "Terminating");
    let mut fin = ns.clone();
    fin["spec"]["finalizers"] = json!([]);
    let (code, b) = raw.put("/api/v1/namespaces/held/finalize", fin).await;
    assert_eq!(code, 200, "{b}");
    assert_eq!(raw.get("/api/v1/namespaces/held").await.0, 404);
}

#[tokio::test]
async fn owners_in_another_namespace_count_as_absent() {
    let h = start().await;
    let raw = Raw::new(&h, h.admin_token());
    assert_eq!(
        raw.post("/api/v1/namespaces", json!({"metadata":{"name":"other"}}))
            .await
            .0,
        201
    );
    let (_, owner) = raw.post(CMS, json!({"metadata":{"name":"owner"}})).await;
    let (code, _) = raw
        .post(
            "/api/v1/namespaces/other/configmaps",
            json!({"metadata":{"name":"dep","ownerReferences":[{"apiVersion":"v1","kind":"ConfigMap","name":"owner","uid":owner["metadata"]["uid"]}]}}),
        )
        .await;
    assert_eq!(code, 201);
    eventually(10, "cross-namespace dependent collected", || async {
        (raw.get("/api/v1/namespaces/other/configmaps/dep").await.0 == 404).then_some(())
    })
    .await;
    let (_, events) = raw
        .get("/api/v1/namespaces/other/events?fieldSelector=reason%3DOwnerRefInvalidNamespace")
        .await;
    let ev = &events["items"][0];
    assert_eq!(
        (ev["type"].as_str(), ev["involvedObject"]["name"].as_str()),
        (Some("Warning"), Some("dep")),
        "{events}"
    );
    assert_eq!(
        raw.get(&format!("{CMS}/owner")).await.0,
        200,
        "the owner is untouched"
    );
    // A pending delete with orphanDependents=false answers 202 Accepted.
    let (code, _) = raw
        .post(
            CMS,
            json!({"metadata":{"name":"held","finalizers":["example.com/x"]}}),
        )
        .await;
    assert_eq!(code, 201);
    let (code, obj) = raw
        .delete(&format!("{CMS}/held"), json!({"orphanDependents":false}))
        .await;
    assert_eq!((code, obj["kind"].as_str()), (202, Some("ConfigMap")));
}

#[derive(Debug, thiserror::Error)]
#[error("never")]
struct Never;

#[tokio::test]
async fn kube_rs_finalizer_helper_round_trip() {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::runtime::controller::Action;
    use kube::runtime::finalizer::{Event as Fin, finalizer};
    use std::sync::Arc;
    let h = start().await;
    let client = h.admin_client().await.expect("client");
    let api: kube::Api<ConfigMap> = kube::Api::namespaced(client, "default");
    let cm: ConfigMap = serde_json::from_value(json!({"metadata":{"name":"f"}})).expect("cm");
    api.create(&Default::default(), &cm).await.expect("create");
    let run = |obj: ConfigMap| {
        let api = api.clone();
        async move {
            let mut seen = None;
            finalizer(&api, "example.com/cleanup", Arc::new(obj), |ev| {
                seen = Some(match ev {
                    Fin::Apply(_) => "apply",
                    Fin::Cleanup(_) => "cleanup",
                });
                async { Ok::<_, Never>(Action::await_change()) }
            })
            .await
            .expect("finalizer");
            seen
        }
    };
    // First pass adds the finalizer (JSON patch `test` null + add), second pass applies.
    assert_eq!(run(api.get("f").await.expect("get")).await, None);
    let got = api.get("f").await.expect("get");
    assert_eq!(
        got.metadata.finalizers.as_deref(),
        Some(&["example.com/cleanup".to_string()][..])
    );
    assert_eq!(run(got).await, Some("apply"));
    api.delete("f", &Default::default()).await.expect("delete");
    let deleting = api.get("f").await.expect("still there");
    assert!(deleting.metadata.deletion_timestamp.is_some());
    assert_eq!(run(deleting).await, Some("cleanup"));
    assert!(
        api.get_opt("f").await.expect("get_opt").is_none(),
        "gone after the finalizer is removed"
    );
}
