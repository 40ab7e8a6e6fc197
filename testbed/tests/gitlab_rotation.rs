//! Wire tests of rotation: by id, self-rotation (resource and personal routes), reuse detection
//! revoking the whole token family, and the `personal_access_tokens/self` endpoints.

mod gitlab_support;

use chrono::{Days, NaiveDate};
use gitlab_support::world;
use serde_json::json;

const APP: &str = "/api/v4/projects/acme%2Fteam-a%2Fapp/access_tokens";

fn date(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

#[tokio::test]
async fn rotate_revokes_at_once_and_keeps_the_bot() {
    let w = world().await;
    let today = w.gl.clock().today();
    let old = w
        .create_prat(
            "acme/team-a/app",
            json!({"name": "flux", "scopes": ["read_api"], "access_level": 30}),
        )
        .await;
    let rotated = w
        .post(&format!("{APP}/{}/rotate", old.u64("id")), w.op(), json!({}))
        .await;
    assert_eq!(rotated.status, 200, "{}", rotated.text);
    assert_ne!(rotated.u64("id"), old.u64("id"));
    assert_eq!(rotated.u64("user_id"), old.u64("user_id"));
    assert_eq!(
        (rotated.str("name"), rotated.u64("access_level")),
        ("flux".into(), 30)
    );
    assert_eq!(rotated.body["scopes"], json!(["read_api"]));
    assert_eq!(
        rotated.str("expires_at"),
        date(today + Days::new(7)),
        "default rotation expiry is one week"
    );
    assert_ne!(rotated.str("token"), old.str("token"));
    let dead = w.get("/api/v4/user", &old.str("token")).await;
    assert_eq!(dead.status, 401);
    assert_eq!(dead.str("error"), "invalid_token");
    assert_eq!(
        dead.str("error_description"),
        "Token was revoked. You have to re-authorize from the user."
    );
    assert!(
        dead.header("www-authenticate")
            .contains("error=\"invalid_token\"")
    );
    assert_eq!(w.get("/api/v4/user", &rotated.str("token")).await.status, 200);
    // Rotating the old one again by id: plain 400, no family revocation.
    let again = w
        .post(&format!("{APP}/{}/rotate", old.u64("id")), w.op(), json!({}))
        .await;
    assert_eq!(
        again.body,
        json!({"message": "400 Bad request - Token already revoked"})
    );
    assert_eq!(w.get("/api/v4/user", &rotated.str("token")).await.status, 200);
    // Explicit expiry, limited by the lifetime.
    let explicit = w
        .post(
            &format!("{APP}/{}/rotate", rotated.u64("id")),
            w.op(),
            json!({"expires_at": date(today + Days::new(90))}),
        )
        .await;
    assert_eq!(explicit.str("expires_at"), date(today + Days::new(90)));
    let too_far = w
        .post(
            &format!("{APP}/{}/rotate", explicit.u64("id")),
            w.op(),
            json!({"expires_at": date(today + Days::new(400))}),
        )
        .await;
    assert_eq!(too_far.status, 400);
    // The chain stays listed: same name and user, different ids.
    let listed = w.get(APP, w.op()).await;
    let chain: Vec<_> = listed
        .body
        .as_array()
        .expect("array")
        .iter()
        .filter(|t| t["user_id"] == json!(old.u64("user_id")))
        .collect();
    assert_eq!(chain.len(), 3);
    assert_eq!(chain.iter().filter(|t| t["active"] == json!(true)).count(), 1);
}

#[tokio::test]
async fn rotate_by_id_checks_the_caller() {
    let w = world().await;
    let t = w
        .create_prat(
            "acme/team-a/app",
            json!({"name": "x", "scopes": ["api"], "access_level": 50}),
        )
        .await;
    let path = format!("{APP}/{}/rotate", t.u64("id"));
    // Developer: 401 (never 404 for non-admins).
    assert_eq!(
        w.post(&path, &w.seed.dev_token, json!({})).await.body,
        json!({"message": "401 Unauthorized"})
    );
    assert_eq!(
        w.post(&format!("{APP}/999999/rotate"), w.op(), json!({}))
            .await
            .status,
        401
    );
    // A token of another project through this project's path: 401.
    let other = w
        .create_prat("acme/platform/infra", json!({"name": "x", "scopes": ["api"]}))
        .await;
    assert_eq!(
        w.post(&format!("{APP}/{}/rotate", other.u64("id")), w.op(), json!({}))
            .await
            .status,
        401
    );
    // A bot cannot rotate another token, even with Owner role and `api`; a bot of another
    // project does not even see this one.
    let sibling = w
        .create_prat(
            "acme/team-a/app",
            json!({"name": "s", "scopes": ["api"], "access_level": 50}),
        )
        .await;
    assert_eq!(w.post(&path, &sibling.str("token"), json!({})).await.status, 401);
    assert_eq!(w.post(&path, &other.str("token"), json!({})).await.status, 404);
    // Maintainer may not rotate an Owner-level token.
    let team_b = "/api/v4/projects/acme%2Fteam-b%2Fapi/access_tokens";
    let owner_token = w
        .post(
            team_b,
            w.op(),
            json!({"name": "o", "scopes": ["api"], "access_level": 50}),
        )
        .await;
    let by_maint = w
        .post(
            &format!("{team_b}/{}/rotate", owner_token.u64("id")),
            &w.seed.maint_token,
            json!({}),
        )
        .await;
    assert_eq!(
        by_maint.body,
        json!({"message": "400 Bad request - Not eligible to rotate tokens with permissions not held by the user"})
    );
}

#[tokio::test]
async fn self_rotation_of_a_project_token() {
    let w = world().await;
    let plain = w
        .create_prat("acme/team-a/app", json!({"name": "x", "scopes": ["read_api"]}))
        .await;
    let forbidden = w
        .post(&format!("{APP}/self/rotate"), &plain.str("token"), json!({}))
        .await;
    assert_eq!(
        (forbidden.status, forbidden.str("scope")),
        (403, "api self_rotate".into())
    );
    let t = w
        .create_prat(
            "acme/team-a/app",
            json!({"name": "x", "scopes": ["self_rotate", "read_api"]}),
        )
        .await;
    let rotated = w
        .post(&format!("{APP}/self/rotate"), &t.str("token"), json!({}))
        .await;
    assert_eq!(rotated.status, 200, "{}", rotated.text);
    assert_eq!(
        (rotated.u64("user_id"), rotated.u64("access_level")),
        (t.u64("user_id"), 40)
    );
    assert_eq!(w.get("/api/v4/user", &t.str("token")).await.status, 401);
    // Through another project's path: 401.
    let elsewhere = w
        .post(
            "/api/v4/projects/acme%2Fteam-a%2Fapp/access_tokens/self/rotate",
            w.op(),
            json!({}),
        )
        .await;
    assert_eq!(
        elsewhere.status, 405,
        "a human PAT may not use the resource self-rotate route"
    );
    let infra = w
        .create_prat("acme/platform/infra", json!({"name": "x", "scopes": ["api"]}))
        .await;
    assert_eq!(
        w.post(&format!("{APP}/self/rotate"), &infra.str("token"), json!({}))
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn reuse_of_a_rotated_token_revokes_the_whole_family() {
    let w = world().await;
    let t0 = w
        .create_prat("acme/team-a/app", json!({"name": "x", "scopes": ["api"]}))
        .await;
    let t1 = w
        .post(
            "/api/v4/personal_access_tokens/self/rotate",
            &t0.str("token"),
            json!({}),
        )
        .await;
    assert_eq!(t1.status, 200);
    assert!(
        t1.body.get("access_level").is_none(),
        "the PAT entity has no access_level"
    );
    let t2 = w
        .post(&format!("{APP}/self/rotate"), &t1.str("token"), json!({}))
        .await;
    assert_eq!(t2.status, 200);
    assert_eq!(w.get("/api/v4/user", &t2.str("token")).await.status, 200);
    // Replaying the oldest secret on a rotate path kills every descendant.
    let replay = w
        .post(
            "/api/v4/personal_access_tokens/self/rotate",
            &t0.str("token"),
            json!({}),
        )
        .await;
    assert_eq!(
        (replay.status, replay.str("error")),
        (401, "invalid_token".into())
    );
    let dead = w.get("/api/v4/user", &t2.str("token")).await;
    assert_eq!(
        dead.str("error_description"),
        "Token was revoked. You have to re-authorize from the user."
    );
    let states: Vec<_> =
        w.gl.tokens()
            .into_iter()
            .filter(|t| t.name == "x")
            .map(|t| t.state)
            .collect();
    assert_eq!(states, vec!["revoked", "revoked", "revoked"]);
    // The firing is on record for the crash tests (presented token, revoked descendants).
    let fired = w.gl.state().reuse_detections();
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(fired[0].revoked.len(), 1, "only the active descendant: {fired:?}");
    // A revoked token on a non-rotate path does not trigger it.
    let a0 = w
        .create_prat("acme/team-a/app", json!({"name": "y", "scopes": ["api"]}))
        .await;
    let a1 = w
        .post(&format!("{APP}/self/rotate"), &a0.str("token"), json!({}))
        .await;
    assert_eq!(w.get("/api/v4/user", &a0.str("token")).await.status, 401);
    assert_eq!(w.get("/api/v4/user", &a1.str("token")).await.status, 200);
}

#[tokio::test]
async fn personal_access_token_self_get_rotate_revoke() {
    let w = world().await;
    let me = w.get("/api/v4/personal_access_tokens/self", w.op()).await;
    assert_eq!((me.status, me.str("name")), (200, "gitlab-token-operator".into()));
    assert_eq!(me.body["scopes"], json!(["api"]));
    assert!(me.body.get("access_level").is_none());
    // Any scope may inspect itself; a bot token too.
    let bot = w
        .create_prat(
            "acme/team-a/app",
            json!({"name": "b", "scopes": ["read_repository"], "access_level": 20}),
        )
        .await;
    let bot_self = w
        .get("/api/v4/personal_access_tokens/self", &bot.str("token"))
        .await;
    assert_eq!((bot_self.status, bot_self.u64("id")), (200, bot.u64("id")));
    let rotated = w
        .post("/api/v4/personal_access_tokens/self/rotate", w.op(), json!({}))
        .await;
    assert_eq!(rotated.status, 200);
    assert_eq!(w.get("/api/v4/user", w.op()).await.status, 401);
    let new = rotated.str("token");
    assert_eq!(
        w.delete("/api/v4/personal_access_tokens/self", &new).await.status,
        204
    );
    assert_eq!(
        w.get("/api/v4/personal_access_tokens/self", &new)
            .await
            .str("error"),
        "invalid_token"
    );
}
