//! Wire tests of the GitLab calls delegation, GitLab-kept policies and the reach status make,
//! against a scripted GitLab answering with documented shapes: the effective level of a group
//! (project and ancestor-group shares, cached) and of a user (`members/all`, 404 = none), an
//! outage that is an error (never "no access"), the repository file, and the reach fallback on
//! a GitLab without `self/associations`.

mod gitlab_client_support;

use axum::http::Method;
use chrono::{DateTime, TimeDelta};
use gitlab_client_support::*;
use gitlab_token_operator::{
    controller::{delegation::DelegationCache, reach},
    crd::AccessLevel,
    gitlab::{GitLabApi, GitLabError},
    policy::delegation::Identity,
};

const PROJECT_SHARED: &str = r#"{"id": 812, "path_with_namespace": "acme/platform/infra",
  "shared_with_groups": [{"group_id": 7, "group_name": "Ops", "group_full_path": "acme/ops",
                          "group_access_level": 20, "expires_at": null}]}"#;
const GROUP_ACME: &str = r#"{"id": 1, "full_path": "acme", "shared_with_groups": []}"#;
const GROUP_PLATFORM: &str = r#"{"id": 2, "full_path": "acme/platform", "shared_with_groups": [
  {"group_id": 7, "group_name": "Ops", "group_full_path": "acme/ops", "group_access_level": 30, "expires_at": null},
  {"group_id": 8, "group_name": "Old", "group_full_path": "acme/old", "group_access_level": 40, "expires_at": "2020-01-01"}]}"#;

fn now() -> DateTime<chrono::Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).expect("time")
}

#[tokio::test]
async fn a_groups_level_is_the_highest_live_share_and_answers_are_cached_per_project_and_group() {
    let gl = FakeGitLab::start().await;
    gl.on_seq(
        Method::GET,
        "/api/v4/projects/acme%2Fplatform%2Finfra",
        vec![reply(200, PROJECT_SHARED)],
    );
    gl.on_seq(Method::GET, "/api/v4/groups/acme", vec![reply(200, GROUP_ACME)]);
    gl.on_seq(
        Method::GET,
        "/api/v4/groups/acme%2Fplatform",
        vec![reply(200, GROUP_PLATFORM)],
    );
    let client = gl.client();
    let cache = DelegationCache::default();
    let ask = |who: Identity, at| {
        let (cache, client) = (&cache, &client);
        async move {
            cache
                .effective(
                    "gitlab",
                    client,
                    &who,
                    "acme/platform/infra",
                    at,
                    TimeDelta::seconds(150),
                )
                .await
        }
    };
    // The parent group's share (Developer) beats the project's own (Reporter).
    let ops = ask(Identity::Group("acme/ops".into()), now())
        .await
        .expect("answer");
    assert_eq!((ops.level, ops.raw), (Some(AccessLevel::Developer), 30));
    // An expired share grants nothing; a group the project lies in is Owner, with no call.
    assert_eq!(
        ask(Identity::Group("acme/old".into()), now())
            .await
            .expect("answer")
            .level,
        None
    );
    let calls = gl.seen().len();
    assert_eq!(calls, 3, "one project and two group reads for both questions");
    let own = ask(Identity::Group("acme/platform".into()), now())
        .await
        .expect("answer");
    assert_eq!((own.level, own.raw), (Some(AccessLevel::Maintainer), 50));
    assert_eq!(gl.seen().len(), calls, "inside the group: no GitLab call");
    // Past the cache's age, asked again.
    ask(
        Identity::Group("acme/ops".into()),
        now() + TimeDelta::seconds(151),
    )
    .await
    .expect("answer");
    assert_eq!(gl.seen().len(), 6);
}

#[tokio::test]
async fn a_users_level_comes_from_members_all_and_an_outage_is_an_error() {
    let gl = FakeGitLab::start().await;
    gl.on_seq(
        Method::GET,
        "/api/v4/users",
        vec![reply(
            200,
            r#"[{"id": 42, "username": "Deployer", "name": "D", "state": "active"}]"#,
        )],
    );
    gl.on_seq(
        Method::GET,
        "/api/v4/projects/acme%2Fapp/members/all/42",
        vec![
            reply(200, r#"{"id": 42, "username": "deployer", "access_level": 30}"#),
            reply(404, r#"{"message":"404 Not found"}"#),
            reply(503, r#"{"message":"503 Service Unavailable"}"#),
        ],
    );
    let client = gl.client();
    let cache = DelegationCache::default();
    let who = Identity::User("deployer".into());
    let at = |s| now() + TimeDelta::seconds(s);
    let first = cache
        .effective("gitlab", &client, &who, "acme/app", at(0), TimeDelta::seconds(1))
        .await
        .expect("answer");
    assert_eq!(first.level, Some(AccessLevel::Developer));
    let users = gl.seen().iter().filter(|s| s.path == "/api/v4/users").count();
    assert_eq!(users, 1);
    assert_eq!(
        gl.seen()
            .iter()
            .find(|s| s.path == "/api/v4/users")
            .and_then(|s| s.query_param("username")),
        Some("deployer".into())
    );
    let removed = cache
        .effective("gitlab", &client, &who, "acme/app", at(2), TimeDelta::seconds(1))
        .await
        .expect("answer");
    assert_eq!(
        (removed.level, removed.raw),
        (None, 0),
        "404 on members/all is no membership"
    );
    let outage = cache
        .effective("gitlab", &client, &who, "acme/app", at(4), TimeDelta::seconds(1))
        .await;
    assert!(
        matches!(
            outage,
            Err(GitLabError::Server { .. }) | Err(GitLabError::Timeout)
        ),
        "an outage is an error, never no access: {outage:?}"
    );
    assert_eq!(
        gl.seen().iter().filter(|s| s.path == "/api/v4/users").count(),
        1,
        "the user id is cached for an hour"
    );
}

#[tokio::test]
async fn the_repository_file_and_the_reach_fallback() {
    let gl = FakeGitLab::start().await;
    gl.on_seq(
        Method::GET,
        "/api/v4/projects/acme%2Fcfg/repository/files/clusters%2Fprod%2Fp.yaml",
        vec![reply(
            200,
            r#"{"file_name": "p.yaml", "file_path": "clusters/prod/p.yaml", "size": 3, "encoding": "base64",
                "content": "YTogMQ==", "ref": "main", "blob_id": "b", "commit_id": "c1", "last_commit_id": "c0"}"#,
        )],
    );
    // No associations on this GitLab (older than 17.4): the membership list instead.
    gl.on_seq(
        Method::GET,
        "/api/v4/groups",
        vec![reply(
            200,
            r#"[{"id": 1, "full_path": "acme"}, {"id": 2, "full_path": "acme/ops"}]"#,
        )],
    );
    let client = gl.client();
    let file = client
        .repository_file("acme/cfg", "clusters/prod/p.yaml", "main")
        .await
        .expect("file");
    assert_eq!(
        (file.last_commit_id.as_deref(), file.content.as_str()),
        (Some("c0"), "YTogMQ==")
    );
    let seen = gl.seen();
    assert_eq!(
        seen.last().and_then(|s| s.query_param("ref")),
        Some("main".into())
    );
    let r = reach::read(&client, now()).await.expect("reach");
    assert_eq!(r.source, "memberships");
    let paths: Vec<_> = r.groups.iter().map(|g| g.path.as_str()).collect();
    assert_eq!(paths, ["acme", "acme/ops"]);
    assert!(
        gl.seen()
            .iter()
            .any(|s| s.path == "/api/v4/personal_access_tokens/self/associations"),
        "associations asked first"
    );
    assert_eq!(
        gl.seen()
            .iter()
            .find(|s| s.path == "/api/v4/groups")
            .and_then(|s| s.query_param("min_access_level")),
        Some("10".into())
    );
}
