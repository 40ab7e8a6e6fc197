//! Watch conformance: resume from a resourceVersion, in-stream 410 after compaction, bookmarks,
//! streaming lists, timeouts, selector transitions, and kube-rs `watcher`/`Controller` unchanged.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{Raw, eventually, start, start_with};
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::CustomResource;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{Controller, WatchStreamExt, controller::Action, watcher};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use testbed::kube::KubeServerConfig;

const CMS: &str = "/api/v1/namespaces/default/configmaps";

async fn post_cm(raw: &Raw, name: &str, labels: serde_json::Value) -> u64 {
    let (code, body) = raw
        .post(CMS, json!({"metadata":{"name":name,"labels":labels}}))
        .await;
    assert_eq!(code, 201, "{body}");
    body["metadata"]["resourceVersion"]
        .as_str()
        .expect("rv")
        .parse()
        .expect("num")
}

#[tokio::test]
async fn watch_resumes_from_resource_version_and_reports_410_in_stream() {
    let h = start().await;
    let raw = Raw::new(&h, h.admin_token());
    let rv1 = post_cm(&raw, "a", json!({})).await;
    post_cm(&raw, "b", json!({})).await;
    let (code, _) = raw.delete(&format!("{CMS}/a"), json!({})).await;
    assert_eq!(code, 200);
    let lines = raw
        .watch_lines(
            &format!("{CMS}?&watch=true&timeoutSeconds=5&resourceVersion={rv1}"),
            2,
            5,
        )
        .await;
    assert_eq!(lines[0]["type"], "ADDED");
    assert_eq!(lines[0]["object"]["metadata"]["name"], "b");
    assert_eq!(lines[0]["object"]["kind"], "ConfigMap");
    assert_eq!(lines[1]["type"], "DELETED");
    let del_rv: u64 = lines[1]["object"]["metadata"]["resourceVersion"]
        .as_str()
        .expect("rv")
        .parse()
        .expect("n");
    assert_eq!(
        del_rv,
        h.resource_version(),
        "DELETED carries the deletion revision"
    );
    // Without RV: synthetic ADDED for current state.
    let lines = raw
        .watch_lines(&format!("{CMS}?watch=1&timeoutSeconds=1"), 5, 5)
        .await;
    assert_eq!(lines.len(), 1);
    assert_eq!(
        (
            lines[0]["type"].as_str(),
            lines[0]["object"]["metadata"]["name"].as_str()
        ),
        (Some("ADDED"), Some("b"))
    );
    // Compaction: an old RV gets an in-stream ERROR 410 on HTTP 200.
    h.controls().compact();
    let lines = raw
        .watch_lines(&format!("{CMS}?&watch=true&resourceVersion={rv1}"), 3, 5)
        .await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["type"], "ERROR");
    assert_eq!(
        (
            lines[0]["object"]["code"].as_u64(),
            lines[0]["object"]["reason"].as_str()
        ),
        (Some(410), Some("Expired"))
    );
    // Continue tokens from before compaction are expired too (HTTP 410).
    post_cm(&raw, "c", json!({})).await;
    let (_, page) = raw.get(&format!("{CMS}?limit=1")).await;
    let tok = page["metadata"]["continue"]
        .as_str()
        .expect("continue")
        .to_string();
    post_cm(&raw, "d", json!({})).await;
    h.controls().compact();
    let (code, body) = raw.get(&format!("{CMS}?limit=1&continue={tok}")).await;
    assert_eq!((code, body["reason"].as_str()), (410, Some("Expired")));
}

#[tokio::test]
async fn bookmarks_streaming_lists_timeouts_and_selector_transitions() {
    let cfg = KubeServerConfig {
        bookmark_interval: Duration::from_millis(200),
        ..Default::default()
    };
    let h = start_with(cfg).await;
    let raw = Raw::new(&h, h.admin_token());
    let rv = post_cm(&raw, "a", json!({"app":"x"})).await;
    let lines = raw
        .watch_lines(
            &format!("{CMS}?&watch=true&allowWatchBookmarks=true&resourceVersion={rv}"),
            1,
            5,
        )
        .await;
    assert_eq!(lines[0]["type"], "BOOKMARK");
    assert_eq!(
        (
            lines[0]["object"]["kind"].as_str(),
            lines[0]["object"]["apiVersion"].as_str()
        ),
        (Some("ConfigMap"), Some("v1"))
    );
    assert_eq!(lines[0]["object"]["metadata"]["resourceVersion"], rv.to_string());
    // Streaming list: initial ADDED then the annotated end bookmark.
    let q = "?&watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&resourceVersion=0";
    let lines = raw.watch_lines(&format!("{CMS}{q}"), 2, 5).await;
    assert_eq!(lines[0]["type"], "ADDED");
    assert_eq!(lines[1]["type"], "BOOKMARK");
    assert_eq!(
        lines[1]["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
    let (code, body) = raw.get(&format!("{CMS}?watch=true&sendInitialEvents=true")).await;
    assert_eq!(code, 422, "{body}");
    // timeoutSeconds ends the stream.
    let started = std::time::Instant::now();
    let lines = raw
        .watch_lines(
            &format!("{CMS}?watch=true&timeoutSeconds=1&resourceVersion={rv}"),
            10,
            10,
        )
        .await;
    assert!(lines.is_empty() && started.elapsed() < Duration::from_secs(5));
    // Selector transitions: an object that stops matching is DELETED for that watcher.
    let raw2 = Raw::new(&h, h.admin_token());
    let watch = tokio::spawn(async move {
        raw2.watch_lines(
            &format!("{CMS}?watch=true&labelSelector=app%3Dx&resourceVersion={rv}"),
            2,
            10,
        )
        .await
    });
    // The watch starts from `rv`, so the changes below reach it whenever it connects.
    let (code, _) = raw
        .patch(
            &format!("{CMS}/a"),
            "application/merge-patch+json",
            json!({"metadata":{"labels":{"app":"y"}}}),
        )
        .await;
    assert_eq!(code, 200);
    let (code, _) = raw
        .patch(
            &format!("{CMS}/a"),
            "application/merge-patch+json",
            json!({"metadata":{"labels":{"app":"x"}}}),
        )
        .await;
    assert_eq!(code, 200);
    let lines = watch.await.expect("join");
    let types: Vec<&str> = lines
        .iter()
        .filter_map(|l| l["type"].as_str())
        .filter(|t| *t != "BOOKMARK")
        .collect();
    assert_eq!(types, ["DELETED", "ADDED"]);
}

#[tokio::test]
async fn kube_rs_watcher_survives_dropped_watches() {
    let h = start().await;
    let client = h.admin_client().await.expect("client");
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let mut stream = watcher(api.clone(), watcher::Config::default())
        .applied_objects()
        .boxed();
    let cm = |n: &str| serde_json::from_value::<ConfigMap>(json!({"metadata":{"name":n}})).expect("cm");
    api.create(&PostParams::default(), &cm("one"))
        .await
        .expect("create");
    let next = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("event")
        .expect("item")
        .expect("ok");
    assert_eq!(next.metadata.name.as_deref(), Some("one"));
    let watches_before = h.controls().count("watch", "configmaps", "*");
    h.controls().drop_watches();
    api.create(&PostParams::default(), &cm("two"))
        .await
        .expect("create");
    let next = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("event")
        .expect("item")
        .expect("ok");
    assert_eq!(next.metadata.name.as_deref(), Some("two"));
    eventually(10, "the watcher re-watched", || async {
        (h.controls().count("watch", "configmaps", "*") > watches_before).then_some(())
    })
    .await;
}

/// A namespaced test CRD, matching `common::widget_crd("Namespaced")`.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, JsonSchema)]
#[kube(
    group = "example.com",
    version = "v1",
    kind = "Widget",
    namespaced,
    status = "WidgetStatus"
)]
pub struct WidgetSpec {
    size: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    color: Option<String>,
}

/// Status of the test CRD.
#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
pub struct WidgetStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    phase: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct ReconcileError(#[from] kube::Error);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_controller_reconciles_and_owns_children() {
    let h = start().await;
    common::install_crd(&h, "Namespaced").await;
    let client = h.admin_client().await.expect("client");
    let widgets: Api<Widget> = Api::namespaced(client.clone(), "default");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let count = Arc::new(AtomicUsize::new(0));
    let ctx = Arc::new((client.clone(), count.clone()));
    async fn reconcile(
        w: Arc<Widget>,
        ctx: Arc<(kube::Client, Arc<AtomicUsize>)>,
    ) -> Result<Action, ReconcileError> {
        ctx.1.fetch_add(1, Ordering::SeqCst);
        let ns = w.metadata.namespace.clone().unwrap_or_default();
        let name = w.metadata.name.clone().unwrap_or_default();
        let oref = kube::Resource::controller_owner_ref(w.as_ref(), &()).expect("owner ref");
        let child = json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":format!("{name}-child"),"ownerReferences":[oref]},
            "data":{"size": w.spec.size.to_string()}});
        let cms: Api<ConfigMap> = Api::namespaced(ctx.0.clone(), &ns);
        cms.patch(
            &format!("{name}-child"),
            &PatchParams::apply("widget-controller").force(),
            &Patch::Apply(child),
        )
        .await?;
        let ws: Api<Widget> = Api::namespaced(ctx.0.clone(), &ns);
        ws.patch_status(
            &name,
            &PatchParams::apply("widget-controller").force(),
            &Patch::Apply(json!({"apiVersion":"example.com/v1","kind":"Widget","status":{"phase":"Ready"}})),
        )
        .await?;
        Ok(Action::await_change())
    }
    fn error_policy(_: Arc<Widget>, _: &ReconcileError, _: Arc<(kube::Client, Arc<AtomicUsize>)>) -> Action {
        Action::requeue(Duration::from_millis(200))
    }
    let controller = tokio::spawn(
        Controller::new(widgets.clone(), watcher::Config::default())
            .owns(cms.clone(), watcher::Config::default())
            .run(reconcile, error_policy, ctx)
            .for_each(|_| async {}),
    );
    let w = Widget::new("w1", WidgetSpec { size: 3, color: None });
    widgets
        .create(&PostParams::default(), &w)
        .await
        .expect("create widget");
    eventually(15, "child ConfigMap and status", || async {
        let child = cms.get_opt("w1-child").await.ok().flatten()?;
        let w = widgets.get("w1").await.ok()?;
        (child.data?.get("size")? == "3" && w.status?.phase.as_deref() == Some("Ready")).then_some(())
    })
    .await;
    let got = widgets.get("w1").await.expect("get");
    assert_eq!(got.spec.color.as_deref(), Some("blue"), "schema default applied");
    assert_eq!(
        got.metadata.generation,
        Some(1),
        "status writes do not bump generation"
    );
    // Editing the owned child triggers a reconcile (owns() uses the metadata watcher), which restores it.
    let before = count.load(Ordering::SeqCst);
    cms.patch(
        "w1-child",
        &PatchParams::default(),
        &Patch::Merge(json!({"data":{"size":"99"}})),
    )
    .await
    .expect("edit child");
    eventually(15, "reconcile restores child", || async {
        let child = cms.get("w1-child").await.ok()?;
        (count.load(Ordering::SeqCst) > before && child.data?.get("size")? == "3").then_some(())
    })
    .await;
    // Deleting the owner garbage-collects the child.
    widgets.delete("w1", &Default::default()).await.expect("delete");
    eventually(15, "child collected", || async {
        cms.get_opt("w1-child").await.ok()?.is_none().then_some(())
    })
    .await;
    controller.abort();
    let lp = ListParams::default();
    assert!(widgets.list(&lp).await.expect("list").items.is_empty());
}

#[tokio::test]
async fn kube_rs_streaming_list_watcher_and_metadata_watcher() {
    let h = start().await;
    let client = h.admin_client().await.expect("client");
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let cm = serde_json::from_value::<ConfigMap>(json!({"metadata":{"name":"pre","labels":{"k":"v"}}}))
        .expect("cm");
    api.create(&PostParams::default(), &cm).await.expect("create");
    let mut stream = watcher(api.clone(), watcher::Config::default().streaming_lists())
        .applied_objects()
        .boxed();
    let first = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("event")
        .expect("item")
        .expect("ok");
    assert_eq!(first.metadata.name.as_deref(), Some("pre"));
    let meta_api: Api<kube::core::PartialObjectMeta<ConfigMap>> =
        Api::namespaced(h.admin_client().await.expect("client"), "default");
    let mut meta = watcher(meta_api, watcher::Config::default().labels("k=v"))
        .applied_objects()
        .boxed();
    let m = tokio::time::timeout(Duration::from_secs(10), meta.next())
        .await
        .expect("event")
        .expect("item")
        .expect("ok");
    assert_eq!(m.metadata.name.as_deref(), Some("pre"));
    assert_eq!(
        m.types.as_ref().map(|t| t.kind.as_str()),
        Some("PartialObjectMetadata")
    );
}
