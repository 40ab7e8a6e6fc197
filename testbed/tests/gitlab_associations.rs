//! Wire tests of group lists (`subgroups`, `descendant_groups`, `/groups`), the
//! `personal_access_tokens/self/associations` answer, and the share/member controls.

mod gitlab_support;
mod groups_support;

use chrono::Days;
use gitlab_support::world;
use groups_support::{APP, all_levels, ops, pairs};
use reqwest::Method;
use serde_json::json;
use testbed::gitlab::seed::TokenSeed;

#[tokio::test]
async fn subgroups_and_group_lists_filter_by_visibility_and_level() {
    let w = world().await;
    let subs = w.get("/api/v4/groups/acme/subgroups?per_page=2", w.op()).await;
    assert_eq!(subs.status, 200);
    let names: Vec<&str> = subs
        .body
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|g| g["name"].as_str())
        .collect();
    assert_eq!(names, ["Platform", "Team A"]);
    assert_eq!(
        (subs.header("x-total"), subs.header("x-next-page")),
        ("3".into(), "2".into())
    );
    let dev = w.get("/api/v4/groups/acme/subgroups", &w.seed.dev_token).await;
    let names: Vec<&str> = dev
        .body
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|g| g["full_path"].as_str())
        .collect();
    assert_eq!(names, ["acme/team-a"], "private siblings stay invisible");
    let owned = w
        .get("/api/v4/groups?min_access_level=50&order_by=id", w.op())
        .await;
    let paths: Vec<&str> = owned
        .body
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|g| g["full_path"].as_str())
        .collect();
    assert_eq!(
        paths,
        ["acme", "acme/platform", "acme/team-a", "acme/team-b", "other-org"]
    );
    let desc = w.get("/api/v4/groups/acme/descendant_groups", w.op()).await;
    assert_eq!(desc.body.as_array().map(Vec::len), Some(3));
    let missing = w.get("/api/v4/groups/nope/subgroups", w.op()).await;
    assert_eq!(
        (missing.status, missing.body),
        (404, json!({"message": "404 Group Not Found"}))
    );
}

#[tokio::test]
async fn associations_list_reach_with_gitlab_access_levels() {
    let w = world().await;
    let (ops_id, (_, olga), _, _) = ops(&w);
    let dev = w
        .get(
            "/api/v4/personal_access_tokens/self/associations?min_access_level=10",
            &w.seed.dev_token,
        )
        .await;
    assert_eq!(dev.status, 200, "{}", dev.text);
    let team_a = &dev.body["groups"][0];
    assert_eq!(dev.body["groups"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        (
            team_a["name"].clone(),
            team_a["access_levels"].clone(),
            team_a["visibility"].clone()
        ),
        (json!("Team A"), json!(30), json!("private"))
    );
    assert_eq!(dev.body["projects"].as_array().map(Vec::len), Some(1));
    let app = &dev.body["projects"][0];
    assert_eq!(app["path_with_namespace"], json!("acme/team-a/app"));
    assert_eq!(
        app["access_levels"],
        json!({"project_access_level": null, "group_access_level": 30})
    );
    assert_eq!(app["namespace"]["full_path"], json!("acme/team-a"));
    // Without min_access_level: everything visible, the public docs project included.
    let all = w
        .get(
            "/api/v4/personal_access_tokens/self/associations",
            &w.seed.dev_token,
        )
        .await;
    let paths: Vec<&str> = all.body["projects"]
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|p| p["path_with_namespace"].as_str())
        .collect();
    assert!(
        paths.contains(&"acme/platform/docs") && paths.contains(&"acme/team-a/app"),
        "{paths:?}"
    );
    // A share makes the project reachable (effective level), yet GitLab's access_levels ignore it.
    w.post(
        &format!("/api/v4/projects/{APP}/share"),
        w.op(),
        json!({"group_id": ops_id, "group_access": 30}),
    )
    .await;
    let shared = w
        .get(
            "/api/v4/personal_access_tokens/self/associations?min_access_level=30",
            &olga,
        )
        .await;
    assert_eq!(
        shared.body["projects"][0]["path_with_namespace"],
        json!("acme/team-a/app")
    );
    assert_eq!(
        shared.body["projects"][0]["access_levels"],
        json!({"project_access_level": null, "group_access_level": null})
    );
    assert_eq!(
        w.get(
            "/api/v4/personal_access_tokens/self/associations?min_access_level=40",
            &olga
        )
        .await
        .body["projects"],
        json!([])
    );
    // Pagination: both lists cut by the same page params; headers count the projects.
    let page = w
        .get(
            "/api/v4/personal_access_tokens/self/associations?min_access_level=10&per_page=2&page=2",
            w.op(),
        )
        .await;
    assert_eq!(page.body["projects"].as_array().map(Vec::len), Some(2));
    assert_eq!(page.body["groups"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        (page.header("x-page"), page.header("x-total")),
        ("2".into(), "7".into())
    );
    let bad = w
        .get(
            "/api/v4/personal_access_tokens/self/associations?min_access_level=35",
            w.op(),
        )
        .await;
    assert_eq!(
        (bad.status, bad.body),
        (
            400,
            json!({"error": "min_access_level does not have a valid value"})
        )
    );
    // Any scope will do.
    let (_, registry_only) =
        w.gl.seed()
            .personal_token(TokenSeed {
                username: "dev".into(),
                name: "r".into(),
                scopes: vec!["read_registry".into()],
                expires_at: None,
            })
            .expect("token");
    assert_eq!(
        w.get("/api/v4/personal_access_tokens/self/associations", &registry_only)
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn controls_seed_shares_and_expiring_members_over_http() {
    let w = world().await;
    let tomorrow = w.gl.clock().today().checked_add_days(Days::new(1)).expect("date");
    let seeded = w
        .send(
            Method::POST,
            "/-/testbed/seed",
            None,
            Some(json!({
                "users": [{"username": "olga"}, {"username": "tmp"}],
                "groups": [{"full_path": "ops/core"}],
                "members": [{"username": "olga", "path": "ops", "access_level": 40},
                            {"username": "tmp", "path": "acme/team-a/app", "access_level": 30,
                             "expires_at": tomorrow.format("%Y-%m-%d").to_string()}],
                "shares": [{"path": "acme/team-a/app", "group": "ops", "group_access": 20}],
            })),
        )
        .await;
    assert_eq!(seeded.status, 201, "{}", seeded.text);
    assert_eq!(
        all_levels(&w, "projects", APP).await,
        pairs(&[("dev", 30), ("olga", 20), ("operator", 50), ("tmp", 30)])
    );
    w.gl.clock().advance(chrono::Duration::days(1));
    let unshare = w
        .send(
            Method::POST,
            "/-/testbed/seed",
            None,
            Some(json!({"shares": [{"path": "acme/team-a/app", "group": "ops", "group_access": 0}]})),
        )
        .await;
    assert_eq!(unshare.status, 201);
    assert_eq!(
        all_levels(&w, "projects", APP).await,
        pairs(&[("dev", 30), ("operator", 50)])
    );
    let bad = w
        .send(
            Method::POST,
            "/-/testbed/seed",
            None,
            Some(json!({"shares": [{"path": "acme/team-a/app", "group": "nope", "group_access": 20}]})),
        )
        .await;
    assert_eq!(
        (bad.status, bad.body),
        (400, json!({"error": "unknown group \"nope\""}))
    );
}
