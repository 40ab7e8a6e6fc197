//! The Helm package registry through the fronts with curl: GitLab's index format with relative
//! chart URLs, chart downloads matching the index digest, and refusals by scope, token state,
//! role and visibility.

mod fronts_common;

use fronts_common::*;
use sha2::{Digest, Sha256};

#[tokio::test]
async fn helm_index_and_chart_downloads_follow_gitlab_rules() {
    let world = World::start().await;
    world
        .fronts
        .seed_helm_chart(APP, "stable", "mychart", "0.1.0")
        .unwrap();
    world
        .fronts
        .seed_helm_chart(APP, "stable", "mychart", "0.2.0")
        .unwrap();
    world
        .fronts
        .seed_helm_chart(APP, "beta", "other", "1.0.0-rc.1")
        .unwrap();
    world
        .fronts
        .seed_helm_chart(PUBLIC_LIB, "stable", "lib", "2.0.0")
        .unwrap();
    assert!(
        world
            .fronts
            .seed_helm_chart(APP, "bad..channel", "x", "1.0.0")
            .is_err()
    );
    let repo =
        |id: &str, channel: &str| format!("{}/api/v4/projects/{id}/packages/helm/{channel}", world.url);
    let alice = format!("alice:{ALICE_RW}");

    // Index for a user with read_api (Developer), newest version first, relative URLs.
    let r = curl(&["-u", &alice, &format!("{}/index.yaml", repo("10", "stable"))]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let index: serde_yaml_ng::Value = serde_yaml_ng::from_slice(&r.body).unwrap();
    assert_eq!(index["apiVersion"].as_str(), Some("v1"));
    assert_eq!(
        index["serverInfo"]["contextPath"].as_str(),
        Some("/api/v4/projects/10/packages/helm")
    );
    let versions = index["entries"]["mychart"].as_sequence().unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0]["version"].as_str(), Some("0.2.0"));
    assert_eq!(versions[0]["urls"][0].as_str(), Some("charts/mychart-0.2.0.tgz"));
    assert!(
        index["entries"]["other"].is_null(),
        "other channel must not leak in"
    );

    // The chart URL resolves against the repo URL as a directory; its sha256 is the index digest.
    let url = format!(
        "{}/{}",
        repo("10", "stable"),
        versions[0]["urls"][0].as_str().unwrap()
    );
    let r = curl(&["-u", &alice, &url]).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        format!("{:x}", Sha256::digest(&r.body)),
        versions[0]["digest"].as_str().unwrap()
    );
    let tar = world.scratch("helm").join("chart.tgz");
    std::fs::write(&tar, &r.body).unwrap();
    let listing = run("tar", &["tzf", tar.to_str().unwrap()], None, &[]).await;
    assert!(
        listing.stdout.contains("mychart/Chart.yaml"),
        "{}",
        listing.stdout
    );

    // The project may be named by its URL-encoded full path; the reporter can read too.
    let r = curl(&[
        "-u",
        &format!("rita:{RITA_READ}"),
        &format!("{}/index.yaml", repo("acme%2Fteam-a%2Fapp", "beta")),
    ])
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("1.0.0-rc.1"));

    // Refusals: wrong scope 403, revoked/expired 401 (token-state form), unknown 401, guest 403.
    let index_url = format!("{}/index.yaml", repo("10", "stable"));
    let r = curl(&["-u", &format!("alice:{ALICE_REGISTRY_ONLY}"), &index_url]).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["error"], "insufficient_scope");
    let r = curl(&["-u", &format!("alice:{ALICE_REVOKED}"), &index_url]).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"], "invalid_token");
    let r = curl(&["-u", &format!("alice:{ALICE_EXPIRED}"), &url]).await;
    assert_eq!(r.status, 401);
    assert!(
        r.json()["error_description"]
            .as_str()
            .unwrap()
            .contains("expired")
    );
    let r = curl(&["-u", "alice:glpat-unknown", &index_url]).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["message"], "401 Unauthorized");
    let r = curl(&["-u", &format!("gina:{GINA_API}"), &index_url]).await;
    assert_eq!(r.status, 403);

    // Anonymous: private 401 with a Basic challenge, public 200.
    let r = curl(&[&index_url]).await;
    assert_eq!(r.status, 401);
    assert!(
        r.headers.to_lowercase().contains("www-authenticate: basic"),
        "{}",
        r.headers
    );
    let r = curl(&[&format!("{}/index.yaml", repo("11", "stable"))]).await;
    assert_eq!(r.status, 200);
    assert!(r.text().contains("charts/lib-2.0.0.tgz"));

    // Unknown project (with credentials) 404, unknown chart 404, invalid channel 400.
    let r = curl(&["-u", &alice, &format!("{}/index.yaml", repo("999", "stable"))]).await;
    assert_eq!(r.status, 404);
    let r = curl(&[
        "-u",
        &alice,
        &format!("{}/charts/mychart-9.9.9.tgz", repo("10", "stable")),
    ])
    .await;
    assert_eq!(r.status, 404);
    let r = curl(&[
        "-u",
        &alice,
        &format!("{}/index.yaml", repo("10", "bad..channel")),
    ])
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "channel is invalid");
    world.fronts.shutdown().await;
}
