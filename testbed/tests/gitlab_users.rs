//! Wire tests of `GET /users` (users by username, as delegation looks a GitLab identity up).

mod gitlab_support;

use gitlab_support::world;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn users_by_username_match_exactly_and_case_insensitively() {
    let w = world().await;
    let found = w.get("/api/v4/users?username=DEV", w.op()).await;
    assert_eq!(found.status, 200);
    let list = found.body.as_array().expect("array");
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["username"], "dev");
    assert!(list[0]["id"].as_u64().is_some());
    assert_eq!(list[0]["bot"], false);
    // A prefix is not a match; an unknown name is an empty list, not a 404.
    for name in ["de", "nobody"] {
        let none = w.get(&format!("/api/v4/users?username={name}"), w.op()).await;
        assert_eq!((none.status, none.body), (200, json!([])), "{name}");
    }
    // Without a filter: every human user, newest first, paginated.
    let all = w.get("/api/v4/users?per_page=2", w.op()).await;
    assert_eq!(all.status, 200);
    assert_eq!(all.header("x-total"), "4");
    let ids: Vec<u64> = all
        .body
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|u| u["id"].as_u64())
        .collect();
    assert!(ids.windows(2).all(|p| p[0] > p[1]), "{ids:?}");
    // Signed-in callers only.
    let anon = w
        .send(Method::GET, "/api/v4/users?username=dev", None, None)
        .await;
    assert_eq!(anon.status, 401);
}
