//! Shared helpers of the groups/sharing wire tests: extra users with PATs, memberships, the
//! `ops` group fixture and `members/all` as sorted `(username, level)` pairs.

#![allow(dead_code)]

use testbed::gitlab::seed::{GroupSeed, MemberSeed, TokenSeed, UserSeed};

use super::gitlab_support::World;

/// `acme/team-a/app`, URL-encoded.
pub const APP: &str = "acme%2Fteam-a%2Fapp";

/// Creates a user with an `api` PAT; returns `(id, token)`.
pub fn user(w: &World, username: &str) -> (u64, String) {
    let seed = w.gl.seed();
    let id = seed
        .user(UserSeed {
            username: username.into(),
            name: Some(username.to_uppercase()),
            admin: false,
        })
        .expect("user");
    let (_, token) = seed
        .personal_token(TokenSeed {
            username: username.into(),
            name: "pat".into(),
            scopes: vec!["api".into()],
            expires_at: None,
        })
        .expect("token");
    (id, token)
}

pub fn member(w: &World, username: &str, path: &str, level: u32) {
    w.gl.seed()
        .member(MemberSeed {
            username: username.into(),
            path: path.into(),
            access_level: level,
            expires_at: None,
        })
        .expect("member");
}

/// A user's id and PAT.
pub type Account = (u64, String);

/// The internal group `ops` (visible to every signed-in user) with Owner `olga`, Reporter `rex`
/// and `sam`, Maintainer of the subgroup `ops/core` only. Returns (ops id, olga, rex, sam).
pub fn ops(w: &World) -> (u64, Account, Account, Account) {
    let seed = w.gl.seed();
    let id = seed
        .group(GroupSeed {
            full_path: "ops".into(),
            name: Some("Ops".into()),
            visibility: Some("internal".into()),
        })
        .expect("group");
    seed.group(GroupSeed {
        full_path: "ops/core".into(),
        ..GroupSeed::default()
    })
    .expect("subgroup");
    let (olga, rex, sam) = (user(w, "olga"), user(w, "rex"), user(w, "sam"));
    member(w, "olga", "ops", 50);
    member(w, "rex", "ops", 20);
    member(w, "sam", "ops/core", 40);
    (id, olga, rex, sam)
}

/// `members/all` of a project or group as `username → access_level`.
pub async fn all_levels(w: &World, kind: &str, id: &str) -> Vec<(String, u64)> {
    let resp = w
        .get(&format!("/api/v4/{kind}/{id}/members/all?per_page=100"), w.op())
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text);
    let mut rows: Vec<(String, u64)> = resp
        .body
        .as_array()
        .expect("array")
        .iter()
        .map(|m| {
            (
                m["username"].as_str().unwrap_or_default().to_string(),
                m["access_level"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    rows.sort();
    rows
}

pub fn pairs(items: &[(&str, u64)]) -> Vec<(String, u64)> {
    items.iter().map(|(u, l)| (u.to_string(), *l)).collect()
}
