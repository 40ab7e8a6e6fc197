//! Scale: 10,000 objects over 1,000 namespaces, with every change fanned out to several watchers
//! and the whole collection paged back.

mod common;

use std::time::Instant;

use common::{Raw, start};
use futures::StreamExt;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_objects_over_a_thousand_namespaces_with_fanout() {
    let h = start().await;
    let raw = Raw::new(&h, h.admin_token());
    let baseline = h.object_count();
    let t0 = Instant::now();
    futures::stream::iter(0..1000)
        .map(|i| {
            let raw = &raw;
            async move {
                raw.post(
                    "/api/v1/namespaces",
                    json!({"metadata":{"name":format!("ns-{i}")}}),
                )
                .await
                .0
            }
        })
        .buffer_unordered(16)
        .for_each(|c| async move { assert_eq!(c, 201) })
        .await;
    let start_rv = h.resource_version();
    let watchers: Vec<_> = (0..3)
        .map(|_| {
            let w = Raw::new(&h, h.admin_token());
            tokio::spawn(async move {
                let lines = w
                    .watch_lines(
                        &format!("/api/v1/configmaps?watch=true&resourceVersion={start_rv}"),
                        10_000,
                        300,
                    )
                    .await;
                lines.iter().filter(|l| l["type"] == "ADDED").count()
            })
        })
        .collect();
    // Watchers resume from `start_rv`: every create below reaches them whenever they connect.
    futures::stream::iter(0..10_000)
        .map(|i| {
            let raw = &raw;
            async move {
                let ns = format!("ns-{}", i % 1000);
                raw.post(&format!("/api/v1/namespaces/{ns}/configmaps"), json!({"metadata":{"name":format!("c-{i}"),"labels":{"i":(i % 7).to_string()}},"data":{"k":"v"}})).await.0
            }
        })
        .buffer_unordered(16)
        .for_each(|c| async move { assert_eq!(c, 201) })
        .await;
    let write_time = t0.elapsed();
    for w in watchers {
        assert_eq!(
            w.await.expect("watcher"),
            10_000,
            "every watcher saw every object"
        );
    }
    let mut total = 0;
    let mut cont = String::new();
    loop {
        let (code, page) = raw
            .get(&format!("/api/v1/configmaps?limit=500&continue={cont}"))
            .await;
        assert_eq!(code, 200);
        total += page["items"].as_array().expect("items").len();
        match page["metadata"]["continue"].as_str() {
            Some(c) => cont = c.to_string(),
            None => break,
        }
    }
    assert_eq!(total, 10_000);
    let (_, sel) = raw.get("/api/v1/configmaps?labelSelector=i%3D3").await;
    assert_eq!(sel["items"].as_array().expect("items").len(), 10_000 / 7 + 1);
    let (_, one) = raw.get("/api/v1/namespaces/ns-42/configmaps").await;
    assert_eq!(one["items"].as_array().expect("items").len(), 10);
    assert_eq!(
        h.object_count(),
        baseline + 11_000 + 1_000,
        "plus a default ServiceAccount per namespace"
    );
    eprintln!(
        "11,000 creates with 3 watchers in {write_time:?}; total {:?}",
        t0.elapsed()
    );
}
