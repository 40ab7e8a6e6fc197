//! Wire tests of the token lifecycle: create rules, rotation, self-rotation, reuse detection,
//! revocation, listing with state, and expiry at 00:00 UTC of `expires_at` (via the clock).

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
            w.op(),
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
    let missing = w.delete(&format!("{APP}/424242"), w.op()).await;
    assert_eq!(
        missing.body,
        json!({"message": "404 Could not find project access token with token_id: 424242 Not Found"})
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
