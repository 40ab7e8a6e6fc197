//! Test controls (latency, injected errors, counters), many worlds at once, and the
//! events.k8s.io ↔ core/v1 Event mapping used by kube-rs' Recorder.

mod common;

use std::time::{Duration, Instant};

use common::{Raw, start};
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference};
use kube::api::{Api, ListParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use serde_json::json;

#[tokio::test]
async fn latency_errors_and_counters() {
    let h = start().await;
    h.add_user_token("t", "carol", &["system:masters"]);
    let raw = Raw::new(&h, "t");
    h.controls().set_latency(Duration::from_millis(150));
    let t0 = Instant::now();
    assert_eq!(raw.get("/api/v1/namespaces/default/configmaps").await.0, 200);
    assert!(t0.elapsed() >= Duration::from_millis(150));
    h.controls().set_latency(Duration::ZERO);
    h.controls()
        .set_latency_for("get", "secrets", Duration::from_millis(150));
    let t0 = Instant::now();
    assert_eq!(raw.get("/api/v1/namespaces/default/configmaps").await.0, 200);
    assert!(
        t0.elapsed() < Duration::from_millis(150),
        "other resources are not slowed"
    );
    let t0 = Instant::now();
    assert_eq!(raw.get("/api/v1/namespaces/default/secrets/none").await.0, 404);
    assert!(t0.elapsed() >= Duration::from_millis(150));
    h.controls().set_latency_for("get", "secrets", Duration::ZERO);
    h.controls().inject_errors("create", "configmaps", 1.0, 503);
    let (c, e) = raw
        .post(
            "/api/v1/namespaces/default/configmaps",
            json!({"metadata":{"name":"a"}}),
        )
        .await;
    assert_eq!((c, e["reason"].as_str()), (503, Some("ServiceUnavailable")));
    assert_eq!(
        raw.get("/api/v1/namespaces/default/configmaps").await.0,
        200,
        "other verbs unaffected"
    );
    h.controls().clear_errors();
    h.controls().inject_errors("*", "secrets", 1.0, 429);
    let (c, e) = raw.get("/api/v1/namespaces/default/secrets").await;
    assert_eq!((c, e["details"]["retryAfterSeconds"].as_u64()), (429, Some(1)));
    h.controls().clear_errors();
    assert_eq!(
        raw.post(
            "/api/v1/namespaces/default/configmaps",
            json!({"metadata":{"name":"a"}})
        )
        .await
        .0,
        201
    );
    assert_eq!(h.controls().count("create", "configmaps", "carol"), 2);
    assert_eq!(h.controls().count("list", "configmaps", "carol"), 3);
    assert_eq!(h.controls().count("*", "secrets", "*"), 2);
    assert_eq!(h.controls().count("create", "configmaps", "someone-else"), 0);
    // An apply that creates is one request (a `patch`), though RBAC asks for `create` too.
    let (code, _) = raw
        .patch(
            "/api/v1/namespaces/default/configmaps/b?fieldManager=carol",
            "application/apply-patch+yaml",
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b"}}),
        )
        .await;
    assert_eq!(code, 201);
    assert_eq!(h.controls().count("patch", "configmaps", "carol"), 1);
    assert_eq!(h.controls().count("create", "configmaps", "carol"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_worlds_at_once_are_isolated() {
    let worlds = futures::future::join_all((0..4).map(|_| start())).await;
    let mut urls: Vec<String> = worlds.iter().map(|w| w.url()).collect();
    urls.dedup();
    assert_eq!(urls.len(), 4);
    for (i, w) in worlds.iter().enumerate() {
        let api: Api<ConfigMap> = Api::namespaced(w.admin_client().await.expect("client"), "default");
        for j in 0..=i {
            let cm: ConfigMap =
                serde_json::from_value(json!({"metadata":{"name":format!("c{j}")}})).expect("cm");
            api.create(&Default::default(), &cm).await.expect("create");
        }
    }
    for (i, w) in worlds.iter().enumerate() {
        let api: Api<ConfigMap> = Api::namespaced(w.admin_client().await.expect("client"), "default");
        assert_eq!(
            api.list(&ListParams::default()).await.expect("list").items.len(),
            i + 1
        );
    }
}

#[tokio::test]
async fn recorder_events_are_visible_as_core_events() {
    let h = start().await;
    let client = h.admin_client().await.expect("client");
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "widget-controller".into(),
            instance: Some("host-1".into()),
        },
    );
    let reference = ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("ConfigMap".into()),
        name: Some("thing".into()),
        namespace: Some("default".into()),
        uid: Some("u-1".into()),
        ..Default::default()
    };
    let ev = Event {
        type_: EventType::Normal,
        reason: "Synced".into(),
        note: Some("all good".into()),
        action: "Reconciling".into(),
        secondary: None,
    };
    recorder.publish(&ev, &reference).await.expect("publish");
    recorder
        .publish(&ev, &reference)
        .await
        .expect("publish again (series patch)");
    let raw = Raw::new(&h, h.admin_token());
    let (c, list) = raw
        .get("/api/v1/namespaces/default/events?fieldSelector=involvedObject.name%3Dthing,reason%3DSynced")
        .await;
    assert_eq!(c, 200, "{list}");
    let items = list["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{list}");
    let core = &items[0];
    assert_eq!(
        (core["apiVersion"].as_str(), core["message"].as_str()),
        (Some("v1"), Some("all good"))
    );
    assert_eq!(core["reportingComponent"], "widget-controller");
    assert_eq!(core["involvedObject"]["kind"], "ConfigMap");
    let (_, ev) = raw
        .get(&format!(
            "/apis/events.k8s.io/v1/namespaces/default/events/{}",
            core["metadata"]["name"].as_str().expect("n")
        ))
        .await;
    assert_eq!(
        (ev["note"].as_str(), ev["regarding"]["name"].as_str()),
        (Some("all good"), Some("thing"))
    );
    assert_eq!(ev["series"]["count"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_watches_and_closes_the_port() {
    let h = start().await;
    let raw = Raw::new(&h, h.admin_token());
    let url = h.url();
    let watch = tokio::spawn(async move {
        let t0 = Instant::now();
        let lines = raw.watch_lines("/api/v1/namespaces?watch=true", 100, 20).await;
        (lines.len(), t0.elapsed())
    });
    let raw2 = Raw::new(&h, h.admin_token());
    common::eventually(5, "watch open", || async {
        (h.controls().count("watch", "namespaces", "*") == 1).then_some(())
    })
    .await;
    h.shutdown().await;
    let (lines, took) = watch.await.expect("watch task");
    assert_eq!(lines, 4, "initial ADDED events for the default namespaces");
    assert!(
        took < Duration::from_secs(10),
        "watch ended by shutdown, took {took:?}"
    );
    let after = raw2.http.get(format!("{url}/livez")).send().await;
    assert!(after.is_err(), "port closed after shutdown");
}

#[tokio::test]
async fn an_admission_denial_refuses_writes_like_a_webhook_dry_runs_included() {
    let h = start().await;
    h.add_user_token("t", "carol", &["system:masters"]);
    let raw = Raw::new(&h, "t");
    assert_eq!(
        raw.post("/api/v1/namespaces", json!({"metadata":{"name":"frozen"}}))
            .await
            .0,
        201
    );
    h.controls().deny_admission(testbed::kube::AdmissionDenial {
        webhook: "freeze.example.com".into(),
        resource: "secrets".into(),
        namespace: "frozen".into(),
        code: 422,
        message: "no Secrets here".into(),
    });
    let secret = json!({"metadata":{"name":"s"},"stringData":{"k":"v"}});
    let (code, body) = raw
        .post("/api/v1/namespaces/frozen/secrets", secret.clone())
        .await;
    assert_eq!(code, 422);
    assert_eq!(
        body["message"],
        "admission webhook \"freeze.example.com\" denied the request: no Secrets here"
    );
    let (code, _) = raw
        .post("/api/v1/namespaces/frozen/secrets?dryRun=All", secret.clone())
        .await;
    assert_eq!(code, 422, "webhooks without side effects see dry runs too");
    assert_eq!(
        raw.get("/api/v1/namespaces/frozen/secrets").await.0,
        200,
        "reads pass"
    );
    assert_eq!(
        raw.post("/api/v1/namespaces/default/secrets", secret.clone())
            .await
            .0,
        201,
        "other namespaces pass"
    );
    h.controls().clear_admission_denials();
    assert_eq!(raw.post("/api/v1/namespaces/frozen/secrets", secret).await.0, 201);
}
