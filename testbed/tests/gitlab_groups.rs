//! Wire tests of members and sharing in the GitLab emulator: levels through shares are
//! `min(share, role)`, group shares carry direct members only, subgroup members do not travel,
//! expiry and removal count at once, and every error has GitLab's shape.

mod gitlab_support;
mod groups_support;

use chrono::Days;
use gitlab_support::world;
use groups_support::{APP, all_levels, ops, pairs, user};
use reqwest::Method;
use serde_json::{Value, json};
use testbed::gitlab::seed::GroupSeed;

#[tokio::test]
async fn project_share_caps_levels_and_unsharing_withdraws_at_once() {
    let w = world().await;
    let (ops_id, (olga_id, olga), _, (sam_id, _)) = ops(&w);
    let share = w
        .post(
            &format!("/api/v4/projects/{APP}/share"),
            w.op(),
            json!({"group_id": ops_id, "group_access": 30}),
        )
        .await;
    assert_eq!(share.status, 201, "{}", share.text);
    let app_id = w.get(&format!("/api/v4/projects/{APP}"), w.op()).await.u64("id");
    assert_eq!(
        share.body,
        json!({"id": share.u64("id"), "project_id": app_id, "group_id": ops_id, "group_access": 30, "expires_at": null})
    );
    // Owner of ops → min(30, 50); Reporter → 20; the subgroup's Maintainer does not travel.
    assert_eq!(
        all_levels(&w, "projects", APP).await,
        pairs(&[("dev", 30), ("olga", 30), ("operator", 50), ("rex", 20)])
    );
    let one = w
        .get(&format!("/api/v4/projects/{APP}/members/all/{olga_id}"), w.op())
        .await;
    assert_eq!((one.status, one.u64("access_level")), (200, 30));
    for path in [format!("members/{olga_id}"), format!("members/all/{sam_id}")] {
        let resp = w.get(&format!("/api/v4/projects/{APP}/{path}"), w.op()).await;
        assert_eq!(
            (resp.status, resp.body),
            (404, json!({"message": "404 Not found"})),
            "{path}"
        );
    }
    let project = w.get(&format!("/api/v4/projects/{APP}"), &olga).await;
    assert_eq!(project.status, 200, "the share makes the private project visible");
    assert_eq!(
        project.body["shared_with_groups"],
        json!([{"group_id": ops_id, "group_name": "Ops", "group_full_path": "ops",
                "group_access_level": 30, "expires_at": null}])
    );
    let again = w
        .post(
            &format!("/api/v4/projects/{APP}/share"),
            w.op(),
            json!({"group_id": ops_id, "group_access": 20}),
        )
        .await;
    assert_eq!(
        (again.status, again.body),
        (409, json!({"message": "Group already shared with this group"}))
    );

    let gone = w
        .delete(&format!("/api/v4/projects/{APP}/share/{ops_id}"), w.op())
        .await;
    assert_eq!(gone.status, 204);
    assert_eq!(
        all_levels(&w, "projects", APP).await,
        pairs(&[("dev", 30), ("operator", 50)])
    );
    let hidden = w.get(&format!("/api/v4/projects/{APP}"), &olga).await;
    assert_eq!(
        (hidden.status, hidden.body),
        (404, json!({"message": "404 Project Not Found"}))
    );
    let twice = w
        .delete(&format!("/api/v4/projects/{APP}/share/{ops_id}"), w.op())
        .await;
    assert_eq!(
        (twice.status, twice.body),
        (404, json!({"message": "404 Group Link Not Found"}))
    );
}

#[tokio::test]
async fn share_requests_are_validated_and_authorised_like_gitlab() {
    let w = world().await;
    let (ops_id, _, _, _) = ops(&w);
    let private =
        w.gl.seed()
            .group(GroupSeed {
                full_path: "hidden".into(),
                ..GroupSeed::default()
            })
            .expect("group");
    let cases = [
        (
            w.op().to_string(),
            json!({"group_access": 30}),
            400,
            json!({"error": "group_id is missing"}),
        ),
        (
            w.op().to_string(),
            json!({"group_id": ops_id, "group_access": 50}),
            400,
            json!({"error": "group_access does not have a valid value"}),
        ),
        (
            w.op().to_string(),
            json!({"group_id": private, "group_access": 30}),
            404,
            json!({"message": "404 Group Not Found"}),
        ),
        (
            w.seed.dev_token.clone(),
            json!({"group_id": ops_id, "group_access": 30}),
            403,
            json!({"message": "403 Forbidden"}),
        ),
    ];
    for (token, body, status, answer) in cases {
        let resp = w
            .post(&format!("/api/v4/projects/{APP}/share"), &token, body.clone())
            .await;
        assert_eq!((resp.status, resp.body), (status, answer), "{body}");
    }
    // Sharing a group needs Owner of it: a Developer gets the service's 404.
    let dev = w
        .post(
            "/api/v4/groups/acme%2Fteam-a/share",
            &w.seed.dev_token,
            json!({"group_id": ops_id, "group_access": 30}),
        )
        .await;
    assert_eq!((dev.status, dev.body), (404, json!({"message": "Not Found"})));
}

#[tokio::test]
async fn group_share_reaches_projects_below_with_direct_members_only_until_it_expires() {
    let w = world().await;
    let (ops_id, (_, olga), _, _) = ops(&w);
    let in_two_days = w.gl.clock().today().checked_add_days(Days::new(2)).expect("date");
    let expires = in_two_days.format("%Y-%m-%d").to_string();
    let resp = w
        .post(
            "/api/v4/groups/acme%2Fplatform/share",
            w.op(),
            json!({"group_id": ops_id, "group_access": 20, "expires_at": expires}),
        )
        .await;
    assert_eq!(resp.status, 201, "{}", resp.text);
    assert_eq!(resp.str("full_path"), "acme/platform");
    let shared = json!([{"group_id": ops_id, "group_name": "Ops", "group_full_path": "ops",
                         "group_access_level": 20, "expires_at": expires}]);
    assert_eq!(resp.body["shared_with_groups"], shared);
    assert_eq!(
        w.get("/api/v4/groups/acme%2Fplatform", w.op()).await.body["shared_with_groups"],
        shared
    );
    let dup = w
        .post(
            "/api/v4/groups/acme%2Fplatform/share",
            w.op(),
            json!({"group_id": ops_id, "group_access": 30}),
        )
        .await;
    assert_eq!(
        (dup.status, dup.body),
        (
            409,
            json!({"message": "Shared group The group has already been shared with this group"})
        )
    );
    // Only ops' direct members travel (olga, rex), capped at Reporter; sam (ops/core) does not.
    let infra = all_levels(&w, "projects", "acme%2Fplatform%2Finfra").await;
    assert_eq!(infra, pairs(&[("olga", 20), ("operator", 50), ("rex", 20)]));
    assert_eq!(
        w.get("/api/v4/projects/acme%2Fplatform%2Finfra", &olga)
            .await
            .status,
        200
    );

    w.gl.clock().advance(chrono::Duration::days(2));
    assert_eq!(
        all_levels(&w, "projects", "acme%2Fplatform%2Finfra").await,
        pairs(&[("operator", 50)])
    );
    assert_eq!(
        w.get("/api/v4/projects/acme%2Fplatform%2Finfra", &olga)
            .await
            .status,
        404
    );
    assert_eq!(
        w.get("/api/v4/groups/acme%2Fplatform", w.op()).await.body["shared_with_groups"],
        json!([])
    );
    let unshare = w
        .delete(&format!("/api/v4/groups/acme%2Fplatform/share/{ops_id}"), w.op())
        .await;
    assert_eq!(unshare.status, 204, "the expired link is still there to delete");
    let again = w
        .delete(&format!("/api/v4/groups/acme%2Fplatform/share/{ops_id}"), w.op())
        .await;
    assert_eq!(
        (again.status, again.body),
        (404, json!({"message": "404 Not Found"}))
    );
}

#[tokio::test]
async fn member_writes_validate_authorise_and_count_at_once() {
    let w = world().await;
    let (nina, nina_token) = user(&w, "nina");
    let members = format!("/api/v4/projects/{APP}/members");
    let tomorrow = w.gl.clock().today().checked_add_days(Days::new(1)).expect("date");
    let expires = tomorrow.format("%Y-%m-%d").to_string();
    let created = w
        .post(
            &members,
            w.op(),
            json!({"user_id": nina, "access_level": 20, "expires_at": expires}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(
        (
            created.u64("id"),
            created.str("username"),
            created.u64("access_level"),
            created.str("expires_at")
        ),
        (nina, "nina".into(), 20, expires.clone())
    );
    let yesterday =
        w.gl.clock()
            .today()
            .pred_opt()
            .expect("date")
            .format("%Y-%m-%d")
            .to_string();
    let cases: Vec<(String, Value, u16, Value)> = vec![
        (
            w.op().into(),
            json!({"user_id": nina, "access_level": 30}),
            409,
            json!({"message": "Member already exists"}),
        ),
        (
            w.op().into(),
            json!({"user_id": 9999, "access_level": 30}),
            404,
            json!({"message": "404 User Not Found"}),
        ),
        (
            w.op().into(),
            json!({"username": "maint", "access_level": 35}),
            400,
            json!({"message": {"access_level": ["is not included in the list"]}}),
        ),
        (
            w.op().into(),
            json!({"username": "maint"}),
            400,
            json!({"error": "access_level is missing"}),
        ),
        (
            w.op().into(),
            json!({"username": "maint", "access_level": 30, "expires_at": yesterday}),
            400,
            json!({"message": {"expires_at": ["cannot be a date in the past"]}}),
        ),
        (
            w.seed.dev_token.clone(),
            json!({"username": "maint", "access_level": 10}),
            403,
            json!({"message": "403 Forbidden"}),
        ),
    ];
    for (token, body, status, answer) in cases {
        let resp = w.post(&members, &token, body.clone()).await;
        assert_eq!((resp.status, resp.body), (status, answer), "{body}");
    }
    // A Maintainer cannot grant Owner.
    let above = w
        .post(
            "/api/v4/projects/acme%2Fteam-b%2Fapi/members",
            &w.seed.maint_token,
            json!({"user_id": nina, "access_level": 50}),
        )
        .await;
    assert_eq!(above.status, 403);

    let edited = w
        .send(
            Method::PUT,
            &format!("{members}/{nina}"),
            Some(w.op()),
            Some(json!({"access_level": 30})),
        )
        .await;
    assert_eq!(
        (
            edited.status,
            edited.u64("access_level"),
            edited.str("expires_at")
        ),
        (200, 30, expires.clone())
    );
    assert!(
        all_levels(&w, "projects", APP)
            .await
            .contains(&("nina".to_string(), 30))
    );
    let not_member = w
        .send(
            Method::PUT,
            &format!("{members}/9999"),
            Some(w.op()),
            Some(json!({"access_level": 30})),
        )
        .await;
    assert_eq!(
        (not_member.status, not_member.body),
        (404, json!({"message": "404 Not found"}))
    );
    // The membership ends on its expiry date.
    w.gl.clock().advance(chrono::Duration::days(1));
    assert!(
        !all_levels(&w, "projects", APP)
            .await
            .iter()
            .any(|(u, _)| u == "nina")
    );
    assert_eq!(
        w.get(&format!("/api/v4/projects/{APP}"), &nina_token)
            .await
            .status,
        404
    );

    // Group membership is inherited by the group's projects; a member may leave on their own.
    let group = w
        .post(
            "/api/v4/groups/acme%2Fteam-a/members",
            w.op(),
            json!({"user_id": nina.to_string(), "access_level": "40"}),
        )
        .await;
    assert_eq!(
        (group.status, group.u64("access_level")),
        (201, 40),
        "{}",
        group.text
    );
    assert!(
        all_levels(&w, "projects", APP)
            .await
            .contains(&("nina".to_string(), 40))
    );
    let left = w
        .delete(
            &format!("/api/v4/groups/acme%2Fteam-a/members/{nina}"),
            &nina_token,
        )
        .await;
    assert_eq!(left.status, 204);
    assert!(
        !all_levels(&w, "projects", APP)
            .await
            .iter()
            .any(|(u, _)| u == "nina")
    );
    let again = w
        .delete(&format!("/api/v4/groups/acme%2Fteam-a/members/{nina}"), w.op())
        .await;
    assert_eq!(
        (again.status, again.body),
        (404, json!({"message": "404 Not found"}))
    );
}

#[tokio::test]
async fn a_groups_project_listing_includes_projects_shared_with_it_unless_with_shared_is_false() {
    let w = world().await;
    let (ops_id, _, _, _) = ops(&w);
    let share = w
        .post(
            &format!("/api/v4/projects/{APP}/share"),
            w.op(),
            json!({"group_id": ops_id, "group_access": 30}),
        )
        .await;
    assert_eq!(share.status, 201, "{}", share.text);
    let paths = |resp: &gitlab_support::Resp| -> Vec<String> {
        resp.body
            .as_array()
            .expect("a list")
            .iter()
            .map(|p| p["path_with_namespace"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    // GitLab's default `with_shared=true`: the shared project is listed, with its shares.
    let all = w.get("/api/v4/groups/ops/projects", w.op()).await;
    assert_eq!(all.status, 200, "{}", all.text);
    assert!(
        paths(&all).contains(&"acme/team-a/app".to_string()),
        "{:?}",
        paths(&all)
    );
    let app = all
        .body
        .as_array()
        .and_then(|l| l.iter().find(|p| p["path_with_namespace"] == "acme/team-a/app"))
        .expect("app");
    assert_eq!(app["shared_with_groups"][0]["group_access_level"], 30);
    let own = w
        .get("/api/v4/groups/ops/projects?with_shared=false", w.op())
        .await;
    assert_eq!(own.status, 200);
    assert!(
        !paths(&own).contains(&"acme/team-a/app".to_string()),
        "{:?}",
        paths(&own)
    );
    // The namespace's own listing carries each project's shares (what delegation reads).
    let team = w
        .get("/api/v4/groups/acme%2Fteam-a/projects?with_shared=false", w.op())
        .await;
    let app = team
        .body
        .as_array()
        .and_then(|l| l.iter().find(|p| p["path_with_namespace"] == "acme/team-a/app"))
        .cloned()
        .expect("app in its namespace");
    assert_eq!(app["shared_with_groups"][0]["group_full_path"], "ops");
}
