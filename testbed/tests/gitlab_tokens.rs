//! Wire tests of the token lifecycle: create rules, scopes, listing with state filters and
//! pagination, revocation, group tokens, and expiry at 00:00 UTC of `expires_at` (via the clock).
//! Rotation lives in `gitlab_rotation.rs`.

mod gitlab_support;

use chrono::{Days, NaiveDate, TimeZone, Utc};
use gitlab_support::world;
use serde_json::json;

const APP: &str = "/api/v4/projects/acme%2Fteam-a%2Fapp/access_tokens";

fn date(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

#[tokio::test]
async fn create_returns_201_with_a_fresh_bot_and_token_once() {
    let w = world().await;
    let today = w.gl.clock().today();
    let resp = w
        .create_prat(
            "acme/team-a/app",
            json!({"name": "flux-pull", "scopes": ["read_repository", "read_api"],
                                               "access_level": 20, "description": "managed"}),
        )
        .await;
    assert_eq!(resp.status, 201, "{}", resp.text);
    assert!(resp.str("token").starts_with("glpat-"));
    assert_eq!(resp.u64("access_level"), 20);
    assert_eq!(resp.body["active"], json!(true));
    assert_eq!(resp.body["revoked"], json!(false));
    assert_eq!(resp.str("description"), "managed");
    assert_eq!(
        resp.str("expires_at"),
        date(today + Days::new(365)),
        "default expiry is the max lifetime"
    );
    assert!(resp.str("created_at").ends_with('Z'));
    // Acting with it: /user is the bot.
    let me = w.get("/api/v4/user", &resp.str("token")).await;
    assert_eq!(me.u64("id"), resp.u64("user_id"));
    assert_eq!(me.body["bot"], json!(true));
    let project_id = w
        .get("/api/v4/projects/acme%2Fteam-a%2Fapp", w.op())
        .await
        .u64("id");
    assert!(
        me.str("username")
            .starts_with(&format!("project_{project_id}_bot_")),
        "{}",
        me.str("username")
    );
    // A second token gets a second bot.
    let other = w
        .create_prat(
            "acme/team-a/app",
            json!({"name": "flux-pull", "scopes": ["read_api"]}),
        )
        .await;
    assert_ne!(other.u64("user_id"), resp.u64("user_id"));
    assert_eq!(other.u64("access_level"), 40, "default role is Maintainer");
    // The value never shows again.
    let listed = w.get(APP, w.op()).await;
    assert!(
        listed
            .body
            .as_array()
            .expect("array")
            .iter()
            .all(|t| t.get("token").is_none())
    );
    let one = w.get(&format!("{APP}/{}", resp.u64("id")), w.op()).await;
    assert_eq!((one.status, one.body.get("token")), (200, None));
}

#[tokio::test]
async fn create_validates_parameters_grape_style() {
    let w = world().await;
    let cases = [
        (json!({}), "name is missing, scopes is missing"),
        (json!({"name": "x"}), "scopes is missing"),
        (
            json!({"name": "x", "scopes": ["read_user"]}),
            "scopes does not have a valid value",
        ),
        (
            json!({"name": "x", "scopes": ["api"], "access_level": 60}),
            "access_level does not have a valid value",
        ),
        (
            json!({"name": "x", "scopes": ["api"], "access_level": "high"}),
            "access_level is invalid",
        ),
        (
            json!({"name": "x", "scopes": ["api"], "expires_at": "next week"}),
            "expires_at is invalid",
        ),
    ];
    for (body, error) in cases {
        let resp = w.create_prat("acme/team-a/app", body.clone()).await;
        assert_eq!(
            (resp.status, resp.body.clone()),
            (400, json!({"error": error})),
            "{body}"
        );
    }
}

#[tokio::test]
async fn create_enforces_roles_and_lifetime() {
    let w = world().await;
    let today = w.gl.clock().today();
    let body = json!({"name": "x", "scopes": ["api"]});
    // Developer: permission failure is a 400, not a 403.
    let dev = w.post(APP, &w.seed.dev_token, body.clone()).await;
    assert_eq!(
        (dev.status, dev.body.clone()),
        (
            400,
            json!({"message": "400 Bad request - User does not have permission to create project access token"})
        )
    );
    // Maintainer cannot mint an Owner token.
    let maint_path = "/api/v4/projects/acme%2Fteam-b%2Fapi/access_tokens";
    let owner = w
        .post(
            maint_path,
            &w.seed.maint_token,
            json!({"name": "x", "scopes": ["api"], "access_level": 50}),
        )
        .await;
    assert_eq!(
        owner.body,
        json!({"message": "400 Bad request - Access level of the token contains permissions not held by the creating user"})
    );
    let maint_ok = w
        .post(
            maint_path,
            &w.seed.maint_token,
            json!({"name": "x", "scopes": ["api"], "access_level": 40}),
        )
        .await;
    assert_eq!(maint_ok.status, 201);
    // Invisible project: 404.
    let hidden = w
        .post(
            "/api/v4/projects/other-org%2Fsecret-project/access_tokens",
            &w.seed.dev_token,
            body.clone(),
        )
        .await;
    assert_eq!(
        (hidden.status, hidden.body.clone()),
        (404, json!({"message": "404 Project Not Found"}))
    );
    // Lifetime: today+365 is fine, today+366 is not.
    let max = today + Days::new(365);
    let ok = w
        .create_prat(
            "acme/team-a/app",
            json!({"name": "x", "scopes": ["api"], "expires_at": date(max)}),
        )
        .await;
    assert_eq!((ok.status, ok.str("expires_at")), (201, date(max)));
    let too_far = w
        .create_prat(
            "acme/team-a/app",
            json!({"name": "x", "scopes": ["api"], "expires_at": date(max + Days::new(1))}),
        )
        .await;
    assert_eq!(
        too_far.body,
        json!({"message": format!("400 Bad request - Expiration date must be before {}", date(max))})
    );
    // Configurable lifetime.
    w.gl.set_max_token_lifetime_days(30);
    let short = w
        .create_prat(
            "acme/team-a/app",
            json!({"name": "x", "scopes": ["api"], "expires_at": date(today + Days::new(31))}),
        )
        .await;
    assert_eq!(short.status, 400);
    // A bot token (even Owner-level with api) cannot create tokens.
    let bot = w
        .create_prat(
            "acme/team-a/app",
            json!({"name": "bot", "scopes": ["api"], "access_level": 50}),
        )
        .await;
    let by_bot = w.post(APP, &bot.str("token"), body).await;
    assert_eq!(by_bot.status, 400);
}

#[tokio::test]
async fn scopes_gate_writes_and_reads() {
    let w = world().await;
    let (_, read_api) =
        w.gl.seed()
            .personal_token(testbed::gitlab::seed::TokenSeed {
                username: "operator".into(),
                name: "ro".into(),
                scopes: vec!["read_api".into()],
                expires_at: None,
            })
            .expect("seed");
    assert_eq!(w.get(APP, &read_api).await.status, 200);
    let write = w
        .post(APP, &read_api, json!({"name": "x", "scopes": ["api"]}))
        .await;
    assert_eq!(
        (write.status, write.str("error"), write.str("scope")),
        (403, "insufficient_scope".into(), "api".into())
    );
}

#[tokio::test]
async fn list_needs_maintainer_and_filters_by_state_with_pagination() {
    let w = world().await;
    let dev = w.get(APP, &w.seed.dev_token).await;
    assert_eq!(
        (dev.status, dev.body.clone()),
        (401, json!({"message": "401 Unauthorized"}))
    );
    let mut ids = Vec::new();
    for i in 0..5 {
        let t = w
            .create_prat(
                "acme/team-a/app",
                json!({"name": format!("t{i}"), "scopes": ["read_api"]}),
            )
            .await;
        ids.push(t.u64("id"));
    }
    assert_eq!(w.delete(&format!("{APP}/{}", ids[1]), w.op()).await.status, 204);
    let all = w.get(&format!("{APP}?per_page=2&page=3"), w.op()).await;
    assert_eq!(
        (
            all.header("x-total"),
            all.header("x-total-pages"),
            all.header("x-next-page")
        ),
        ("5".into(), "3".into(), "".into())
    );
    assert_eq!(all.body.as_array().map(Vec::len), Some(1));
    let active = w.get(&format!("{APP}?state=active"), w.op()).await;
    assert_eq!(active.header("x-total"), "4");
    let inactive = w.get(&format!("{APP}?state=inactive"), w.op()).await;
    assert_eq!(
        inactive
            .body
            .as_array()
            .map(|a| a.iter().map(|t| t["id"].as_u64()).collect::<Vec<_>>()),
        Some(vec![Some(ids[1])])
    );
    assert_eq!(inactive.body[0]["revoked"], json!(true));
    assert_eq!(inactive.body[0]["active"], json!(false));
    let bad = w.get(&format!("{APP}?state=bogus"), w.op()).await;
    assert_eq!(bad.body, json!({"error": "state does not have a valid value"}));
    let search = w.get(&format!("{APP}?search=T3&sort=name_desc"), w.op()).await;
    assert_eq!(search.body.as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn revoked_tokens_stay_listed_and_refuse_auth() {
    let w = world().await;
    let t = w
        .create_prat("acme/team-a/app", json!({"name": "x", "scopes": ["api"]}))
        .await;
    let path = format!("{APP}/{}", t.u64("id"));
    let by_dev = w.delete(&path, &w.seed.dev_token).await;
    assert_eq!(by_dev.status, 400, "{}", by_dev.text);
    assert_eq!(w.delete(&path, w.op()).await.status, 204);
    let shown = w.get(&path, w.op()).await;
    assert_eq!(
        (shown.body["revoked"].clone(), shown.body["active"].clone()),
        (json!(true), json!(false))
    );
    assert_eq!(w.get("/api/v4/user", &t.str("token")).await.status, 401);
    // Kept 30 days after revocation (17.9+), then gone from the API (the audit still has it).
    w.gl.clock().advance(chrono::Duration::days(30));
    assert_eq!(w.get(&path, w.op()).await.status, 200);
    w.gl.clock().advance(chrono::Duration::days(1));
    assert_eq!(w.get(&path, w.op()).await.status, 404);
    assert!(
        w.gl.tokens()
            .iter()
            .any(|r| r.id == t.u64("id") && r.state == "revoked")
    );
    w.gl.clock().advance(chrono::Duration::days(-31));
    let missing = w.delete(&format!("{APP}/424242"), w.op()).await;
    assert_eq!(
        missing.body,
        json!({"message": "404 project Access Token Not Found"})
    );
}

#[tokio::test]
async fn tokens_die_at_midnight_utc_of_their_expiry_date() {
    let w = world().await;
    let today = w.gl.clock().today();
    let expires = today + Days::new(10);
    let t = w
        .create_prat(
            "acme/team-a/app",
            json!({"name": "x", "scopes": ["api"], "expires_at": date(expires)}),
        )
        .await;
    let clock = w.gl.clock();
    clock.freeze();
    let eve = Utc.from_utc_datetime(&(expires - Days::new(1)).and_hms_opt(23, 59, 59).expect("time"));
    clock.set(eve);
    assert_eq!(w.get("/api/v4/user", &t.str("token")).await.status, 200);
    let listed = w.get(&format!("{APP}/{}", t.u64("id")), w.op()).await;
    assert_eq!(listed.body["active"], json!(true));
    clock.advance(chrono::Duration::seconds(1));
    let dead = w.get("/api/v4/user", &t.str("token")).await;
    assert_eq!(dead.status, 401);
    assert_eq!(
        dead.body,
        json!({"error": "invalid_token",
        "error_description": "Token is expired. You can either do re-authorization or token refresh."})
    );
    let listed = w.get(&format!("{APP}/{}", t.u64("id")), w.op()).await;
    assert_eq!(
        (listed.body["active"].clone(), listed.body["revoked"].clone()),
        (json!(false), json!(false))
    );
    // On the expiry date itself the token is in neither state set; the day after it is inactive.
    assert_eq!(
        w.get(&format!("{APP}?state=inactive"), w.op())
            .await
            .header("x-total"),
        "0"
    );
    clock.advance(chrono::Duration::days(1));
    assert_eq!(
        w.get(&format!("{APP}?state=inactive"), w.op())
            .await
            .header("x-total"),
        "1"
    );
    let audit =
        w.gl.tokens()
            .into_iter()
            .find(|r| r.id == t.u64("id"))
            .expect("audited");
    assert_eq!(audit.state, "expired");
}

#[tokio::test]
async fn group_tokens_need_owner_and_reach_subgroup_projects() {
    let w = world().await;
    let path = "/api/v4/groups/acme%2Fteam-b/access_tokens";
    let by_maint = w
        .post(path, &w.seed.maint_token, json!({"name": "g", "scopes": ["api"]}))
        .await;
    assert_eq!(
        by_maint.body,
        json!({"message": "400 Bad request - User does not have permission to create group access token"})
    );
    assert_eq!(w.get(path, &w.seed.maint_token).await.status, 401);
    let t = w
        .post(
            path,
            w.op(),
            json!({"name": "g", "scopes": ["read_api"], "access_level": 20}),
        )
        .await;
    assert_eq!((t.status, t.str("resource_type")), (201, "group".into()));
    let me = w.get("/api/v4/user", &t.str("token")).await;
    assert!(me.str("username").starts_with("group_"));
    assert_eq!(
        w.get("/api/v4/projects/acme%2Fteam-b%2Fapi", &t.str("token"))
            .await
            .status,
        200
    );
    assert_eq!(
        w.get("/api/v4/projects/acme%2Fteam-a%2Fapp", &t.str("token"))
            .await
            .status,
        404
    );
    let rotated = w
        .post(&format!("{path}/{}/rotate", t.u64("id")), w.op(), json!({}))
        .await;
    assert_eq!((rotated.status, rotated.u64("user_id")), (200, t.u64("user_id")));
    assert_eq!(
        w.delete(&format!("{path}/{}", rotated.u64("id")), w.op())
            .await
            .status,
        204
    );
}
