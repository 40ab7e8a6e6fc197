//! kube-lease-manager (the operator's leader election) runs unchanged against the emulator: it
//! relies on SSA conflicts between managers and strategic-merge `null` releasing fields.

mod common;

use std::time::Duration;

use common::start;
use kube_lease_manager::LeaseManagerBuilder;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_one_lease_holder_at_a_time() {
    let h = start().await;
    let client = h.admin_client().await.expect("client");
    let build = |id: &str| {
        LeaseManagerBuilder::new(client.clone(), "leader")
            .with_namespace("default")
            .with_identity(id)
            .with_duration(3)
            .with_grace(1)
            .build()
    };
    let a = build("a").await.expect("manager a");
    let b = build("b").await.expect("manager b");
    assert!(
        tokio::time::timeout(Duration::from_secs(10), a.changed())
            .await
            .expect("a in time")
            .expect("a changed")
    );
    // b keeps trying but cannot take a lease a holds and renews.
    let b_try = tokio::time::timeout(Duration::from_millis(1500), b.changed()).await;
    assert!(
        b_try.is_err(),
        "b must not become leader while a holds the lease: {b_try:?}"
    );
    a.release().await.expect("release");
    assert!(
        tokio::time::timeout(Duration::from_secs(15), b.changed())
            .await
            .expect("b in time")
            .expect("b changed")
    );
    let raw = common::Raw::new(&h, h.admin_token());
    let (_, lease) = raw
        .get("/apis/coordination.k8s.io/v1/namespaces/default/leases/leader")
        .await;
    assert_eq!(lease["spec"]["holderIdentity"], "b", "{lease}");
}
