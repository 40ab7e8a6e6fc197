//! kubectl where users look: Events created through events.k8s.io/v1 (as kube-rs's Recorder
//! does, with only `eventTime`) and through core/v1 sort with `--sort-by=.lastTimestamp`, show in
//! `-o wide` and in `kubectl describe`.

mod common;

use common::{kubectl::Kubectl, start};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::{
    Api,
    api::{DynamicObject, PostParams},
    core::{ApiResource, GroupVersionKind},
};
use serde_json::{Value, json};

fn dynamic(
    api_version: &str,
    kind: &str,
    plural: &str,
    ns: &str,
    client: &kube::Client,
) -> Api<DynamicObject> {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
    Api::namespaced_with(client.clone(), ns, &ar)
}

async fn create(api: &Api<DynamicObject>, body: Value) {
    let obj: DynamicObject = serde_json::from_value(body).expect("object");
    api.create(&PostParams::default(), &obj).await.expect("create");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_sorts_lists_and_describes_events_of_both_apis() {
    let h = start().await;
    let client = h.admin_client().await.expect("client");
    for ns in ["apps", "recorder-only"] {
        let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).expect("ns");
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .expect("namespace");
    }
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "cm"}})).expect("cm");
    let cm = Api::<ConfigMap>::namespaced(client.clone(), "apps")
        .create(&PostParams::default(), &cm)
        .await
        .expect("configmap");
    let uid = cm.metadata.uid.clone().unwrap_or_default();
    let regarding =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "namespace": "apps", "name": "cm", "uid": uid});

    // Like kube-rs's Recorder: events.k8s.io/v1 with eventTime and no deprecated* fields.
    for ns in ["apps", "recorder-only"] {
        let new_api = dynamic("events.k8s.io/v1", "Event", "events", ns, &client);
        create(
            &new_api,
            json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "cm.recorded", "namespace": ns},
            "eventTime": "2026-01-03T00:00:00.000000Z", "reportingController": "gitlab-token-operator",
            "reportingInstance": "gitlab-token-operator-0", "action": "Issue", "reason": "Issued",
            "type": "Normal", "note": "issued token", "regarding": regarding}),
        )
        .await;
    }
    // Core/v1 events as kubelet-style recorders write them.
    let core_api = dynamic("v1", "Event", "events", "apps", &client);
    for (name, last, count) in [
        ("cm.older", "2026-01-01T00:00:00Z", 1),
        ("cm.newer", "2026-01-02T00:00:00Z", 3),
    ] {
        create(&core_api, json!({"apiVersion": "v1", "kind": "Event",
            "metadata": {"name": name, "namespace": "apps"},
            "involvedObject": regarding, "reason": format!("Reason-{name}"), "message": format!("message of {name}"),
            "type": "Warning", "source": {"component": "legacy-controller"},
            "firstTimestamp": "2025-12-31T00:00:00Z", "lastTimestamp": last, "count": count})).await;
    }

    // The core view of the Recorder's event: the fields the real conversion leaves unset are
    // present with Go's zero encoding, the mapped ones carried over.
    let core_view = core_api.get("cm.recorded").await.expect("core view");
    let v = serde_json::to_value(&core_view).expect("json");
    assert_eq!(v["lastTimestamp"], Value::Null, "{v}");
    assert!(
        v.as_object()
            .is_some_and(|m| m.contains_key("lastTimestamp") && m.contains_key("firstTimestamp")),
        "{v}"
    );
    assert_eq!(v["source"], json!({}));
    assert_eq!(v["reportingComponent"], json!("gitlab-token-operator"));
    assert_eq!(v["involvedObject"]["name"], json!("cm"));
    assert_eq!(v["message"], json!("issued token"));
    assert!(v.get("count").is_none(), "{v}");

    let dir = tempfile::tempdir().expect("tempdir");
    let kc = Kubectl {
        kubeconfig: dir.path().join("kubeconfig"),
        cache: dir.path().join("cache"),
    };
    h.write_kubeconfig(&kc.kubeconfig, h.admin_token())
        .expect("kubeconfig");
    h.allow_anonymous_admin();
    tokio::task::spawn_blocking(move || {
        // Only Recorder-style events: every lastTimestamp is null, and sorting still works.
        let only = kc.run(&["get", "events", "-n", "recorder-only", "--sort-by=.lastTimestamp"]);
        assert!(only.contains("Issued") && only.contains("configmap/cm"), "{only}");

        // Mixed: nulls sort first, then by lastTimestamp.
        let sorted = kc.run(&["get", "events", "-n", "apps", "--sort-by=.lastTimestamp"]);
        let order: Vec<&str> = sorted
            .lines()
            .skip(1)
            .filter_map(|l| {
                l.split_whitespace()
                    .find(|w| w.starts_with("Reason-") || *w == "Issued")
            })
            .collect();
        assert_eq!(
            order,
            ["Issued", "Reason-cm.older", "Reason-cm.newer"],
            "{sorted}"
        );
        let header = sorted.lines().next().unwrap_or_default();
        for column in ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"] {
            assert!(header.contains(column), "{sorted}");
        }

        // -o wide: SOURCE falls back to reportingComponent; COUNT from count (1 when unset).
        let wide = kc.run(&[
            "get",
            "events",
            "-n",
            "apps",
            "-o",
            "wide",
            "--sort-by=.lastTimestamp",
        ]);
        let row = |needle: &str| {
            wide.lines()
                .find(|l| l.contains(needle))
                .unwrap_or_default()
                .to_string()
        };
        assert!(
            wide.lines().next().unwrap_or_default().contains("COUNT"),
            "{wide}"
        );
        assert!(row("Reason-cm.newer").contains("legacy-controller"), "{wide}");
        assert!(
            row("Reason-cm.newer").split_whitespace().any(|w| w == "3"),
            "{wide}"
        );
        assert!(row("Issued").contains("gitlab-token-operator"), "{wide}");

        // describe lists the object's events (found through involvedObject field selectors).
        let described = kc.run(&["describe", "configmap", "cm", "-n", "apps"]);
        let events = described.split("Events:").nth(1).unwrap_or_default();
        for needle in [
            "Issued",
            "issued token",
            "gitlab-token-operator",
            "Reason-cm.newer",
            "legacy-controller",
        ] {
            assert!(events.contains(needle), "{needle} missing from:\n{described}");
        }
        assert!(events.contains("(x3 over"), "{described}");
    })
    .await
    .expect("kubectl steps");
}

/// The operator's own CRDs from `crds/`, applied with kubectl.
fn operator_crds() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../crds")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_explain_reads_the_crd_schemas_from_openapi_v3() {
    let h = start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let kc = Kubectl {
        kubeconfig: dir.path().join("kubeconfig"),
        cache: dir.path().join("cache"),
    };
    h.write_kubeconfig(&kc.kubeconfig, h.admin_token())
        .expect("kubeconfig");
    h.allow_anonymous_admin();
    let crds = operator_crds();
    let schema: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(crds.join("gitlabtokens.gitlabtokens.io.yaml")).expect("crd"),
    )
    .expect("yaml");
    let spec = &schema["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let spec_doc = spec["description"]
        .as_str()
        .expect("spec description")
        .to_string();
    let format_doc = spec["properties"]["secret"]["properties"]["format"]["description"]
        .as_str()
        .expect("format description")
        .to_string();
    let fields: Vec<String> = spec["properties"]
        .as_object()
        .expect("spec properties")
        .keys()
        .cloned()
        .collect();
    tokio::task::spawn_blocking(move || {
        // Before any CRD: nothing to explain.
        let missing = kc.fails(&["explain", "gitlabtokens.spec"]);
        assert!(missing.contains("gitlabtokens"), "{missing}");

        kc.run(&["apply", "-f", crds.to_str().expect("path")]);
        kc.run(&[
            "wait",
            "--for=condition=Established",
            "crd/gitlabtokens.gitlabtokens.io",
            "--timeout=20s",
        ]);

        let spec_out = kc.run(&["explain", "gitlabtokens.spec"]);
        assert!(spec_out.contains("GROUP:      gitlabtokens.io"), "{spec_out}");
        assert!(spec_out.contains("KIND:       GitLabToken"), "{spec_out}");
        assert!(spec_out.contains("FIELD: spec <Object>"), "{spec_out}");
        assert!(spec_out.contains(&spec_doc), "{spec_out}");
        for f in &fields {
            assert!(
                spec_out.contains(&format!("  {f}\t")),
                "field {f} missing:\n{spec_out}"
            );
        }

        let format_out = kc.run(&["explain", "gitlabtokens.spec.secret.format"]);
        assert!(format_out.contains("FIELD: format <string>"), "{format_out}");
        assert!(format_out.contains(&format_doc), "{format_out}");
        assert!(
            format_out.contains("ENUM:") && format_out.contains("docker-config"),
            "{format_out}"
        );

        // The whole object: metadata resolves through the ObjectMeta reference.
        let top = kc.run(&["explain", "gitlabtokens"]);
        assert!(top.contains("metadata\t<ObjectMeta>"), "{top}");
        let recursive = kc.run(&["explain", "gitlabtokens.spec", "--recursive"]);
        assert!(recursive.contains("format\t<string>"), "{recursive}");

        // A field that does not exist is refused as kubectl refuses it on a real cluster.
        let bad = kc.fails(&["explain", "gitlabtokens.spec.nosuchfield"]);
        assert!(bad.contains("nosuchfield"), "{bad}");
    })
    .await
    .expect("kubectl steps");
}
