//! Wire tests of the GitLab emulator's read endpoints, error shapes, `:id` resolution and pagination.

mod gitlab_support;

use gitlab_support::world;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn user_version_and_metadata_answer_for_the_token_owner() {
    let w = world().await;
    let user = w.get("/api/v4/user", w.op()).await;
    assert_eq!(user.status, 200);
    assert_eq!(user.str("username"), "operator");
    assert_eq!(user.body["bot"], json!(false));
    let version = w.get("/api/v4/version", w.op()).await;
    assert_eq!(version.status, 200);
    assert!(version.str("version").starts_with("17."));
    assert_eq!(w.get("/api/v4/metadata", w.op()).await.status, 200);
}

#[tokio::test]
async fn bearer_header_works_like_private_token() {
    let w = world().await;
    let resp = gitlab_support::http()
        .get(w.url("/api/v4/user"))
        .bearer_auth(w.op())
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 200);
}

#[tokio::test]
async fn missing_and_unknown_tokens_get_the_message_form() {
    let w = world().await;
    let anon = w.send(Method::GET, "/api/v4/user", None, None).await;
    assert_eq!(
        (anon.status, anon.body.clone()),
        (401, json!({"message": "401 Unauthorized"}))
    );
    let unknown = w.get("/api/v4/user", "glpat-doesnotexist0000000").await;
    assert_eq!(
        (unknown.status, unknown.body.clone()),
        (401, json!({"message": "401 Unauthorized"}))
    );
    assert_eq!(unknown.header("www-authenticate"), "");
}

#[tokio::test]
async fn insufficient_scope_is_the_oauth_form_without_challenge() {
    let w = world().await;
    let (_, read_only) =
        w.gl.seed()
            .personal_token(testbed::gitlab::seed::TokenSeed {
                username: "operator".into(),
                name: "ro".into(),
                scopes: vec!["read_repository".into()],
                expires_at: None,
            })
            .expect("seed token");
    let resp = w.get("/api/v4/projects/acme%2Fteam-a%2Fapp", &read_only).await;
    assert_eq!(resp.status, 403);
    assert_eq!(
        resp.body,
        json!({"error": "insufficient_scope",
               "error_description": "The request requires higher privileges than provided by the access token.",
               "scope": "api read_api"})
    );
    // rack-oauth2's Forbidden has no challenge header (unlike the 401 invalid_token answers).
    assert_eq!(resp.header("www-authenticate"), "");
}

#[tokio::test]
async fn project_resolves_by_id_and_encoded_path_but_not_literal_slashes() {
    let w = world().await;
    let by_path = w.get("/api/v4/projects/acme%2Fteam-a%2Fapp", w.op()).await;
    assert_eq!(by_path.status, 200);
    assert_eq!(by_path.str("path_with_namespace"), "acme/team-a/app");
    assert_eq!(
        by_path.str("http_url_to_repo"),
        format!("{}/acme/team-a/app.git", w.gl.url())
    );
    assert_eq!(by_path.body["namespace"]["full_path"], json!("acme/team-a"));
    assert_eq!(by_path.body["namespace"]["kind"], json!("group"));
    assert_eq!(by_path.body["archived"], json!(false));
    let id = by_path.u64("id");
    let by_id = w.get(&format!("/api/v4/projects/{id}"), w.op()).await;
    assert_eq!(by_id.str("path_with_namespace"), "acme/team-a/app");
    // Case-insensitive like GitLab's path lookup.
    assert_eq!(
        w.get("/api/v4/projects/ACME%2Fteam-a%2FApp", w.op())
            .await
            .u64("id"),
        id
    );
    let literal = w.get("/api/v4/projects/acme/team-a/app", w.op()).await;
    assert_eq!(literal.status, 404);
    assert_eq!(literal.body, json!({"message": "404 Not Found"}));
}

#[tokio::test]
async fn invisible_and_absent_projects_are_both_404_project_not_found() {
    let w = world().await;
    for path in [
        "/api/v4/projects/other-org%2Fsecret-project",
        "/api/v4/projects/acme%2Fnope",
        "/api/v4/projects/99999",
    ] {
        let resp = w.get(path, &w.seed.dev_token).await;
        assert_eq!(
            (resp.status, resp.body.clone()),
            (404, json!({"message": "404 Project Not Found"})),
            "{path}"
        );
    }
    let group = w.get("/api/v4/groups/other-org", &w.seed.dev_token).await;
    assert_eq!(
        (group.status, group.body.clone()),
        (404, json!({"message": "404 Group Not Found"}))
    );
}

#[tokio::test]
async fn archived_and_public_projects_and_anonymous_reads() {
    let w = world().await;
    let legacy = w.get("/api/v4/projects/acme%2Fplatform%2Flegacy", w.op()).await;
    assert_eq!(legacy.body["archived"], json!(true));
    let anon_public = w
        .send(Method::GET, "/api/v4/projects/acme%2Fplatform%2Fdocs", None, None)
        .await;
    assert_eq!(
        (anon_public.status, anon_public.str("visibility")),
        (200, "public".into())
    );
    let anon_private = w
        .send(Method::GET, "/api/v4/projects/acme%2Fteam-a%2Fapp", None, None)
        .await;
    assert_eq!(anon_private.status, 404);
    let anon_list = w.send(Method::GET, "/api/v4/projects", None, None).await;
    let paths: Vec<_> = anon_list
        .body
        .as_array()
        .expect("array")
        .iter()
        .map(|p| p["path_with_namespace"].clone())
        .collect();
    assert_eq!(paths, vec![json!("acme/platform/docs")]);
}

#[tokio::test]
async fn unknown_api_routes_and_wrong_methods() {
    let w = world().await;
    let unknown = w.get("/api/v4/nothing/here", w.op()).await;
    assert_eq!(
        (unknown.status, unknown.body.clone()),
        (404, json!({"message": "404 Not Found"}))
    );
    let wrong = w.send(Method::PUT, "/api/v4/user", Some(w.op()), None).await;
    assert_eq!(
        (wrong.status, wrong.body.clone()),
        (405, json!({"message": "405 Method Not Allowed"}))
    );
}

#[tokio::test]
async fn project_list_filters_membership_and_search() {
    let w = world().await;
    let dev = w.seed.dev_token.clone();
    let mine = w.get("/api/v4/projects?membership=true", &dev).await;
    let paths: Vec<_> = mine
        .body
        .as_array()
        .expect("array")
        .iter()
        .map(|p| p["path_with_namespace"].clone())
        .collect();
    assert_eq!(paths, vec![json!("acme/team-a/app")]);
    // Without membership the public project shows up too.
    assert_eq!(
        w.get("/api/v4/projects", &dev)
            .await
            .body
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    let search = w.get("/api/v4/projects?search=INF", w.op()).await;
    let found: Vec<_> = search
        .body
        .as_array()
        .expect("array")
        .iter()
        .map(|p| p["path"].clone())
        .collect();
    assert_eq!(found, vec![json!("infra")]);
    let all = w.get("/api/v4/projects?membership=true", w.op()).await;
    assert_eq!(all.header("x-total"), "7", "operator is Owner of both top groups");
    let stranger = w
        .get("/api/v4/projects?membership=true", &w.seed.stranger_token)
        .await;
    assert_eq!(stranger.header("x-total"), "1", "stranger only has other-org");
}

#[tokio::test]
async fn pagination_headers_and_links() {
    let w = world().await;
    let p2 = w
        .get(
            "/api/v4/projects?membership=true&per_page=4&page=2&order_by=id&sort=asc",
            w.op(),
        )
        .await;
    assert_eq!(p2.status, 200);
    assert_eq!(p2.body.as_array().map(Vec::len), Some(3));
    let got: Vec<_> = [
        "x-page",
        "x-per-page",
        "x-next-page",
        "x-prev-page",
        "x-total",
        "x-total-pages",
    ]
    .iter()
    .map(|h| p2.header(h))
    .collect();
    assert_eq!(got, vec!["2", "4", "", "1", "7", "2"]);
    let link = p2.header("link");
    let base = w.url("/api/v4/projects");
    assert!(
        link.contains(&format!(
            "<{base}?membership=true&order_by=id&sort=asc&page=1&per_page=4>; rel=\"prev\""
        )),
        "{link}"
    );
    assert!(
        link.contains("rel=\"first\"") && link.contains("rel=\"last\"") && !link.contains("rel=\"next\"")
    );
    let p1 = w
        .get(
            "/api/v4/projects?membership=true&per_page=4&order_by=id&sort=asc",
            w.op(),
        )
        .await;
    assert_eq!(
        (p1.header("x-next-page"), p1.header("x-prev-page")),
        ("2".into(), "".into())
    );
    let ids = |r: &gitlab_support::Resp| {
        r.body
            .as_array()
            .expect("array")
            .iter()
            .map(|p| p["id"].as_u64())
            .collect::<Vec<_>>()
    };
    let (first, second) = (ids(&p1), ids(&p2));
    assert!(
        first.iter().all(|id| !second.contains(id)),
        "pages do not overlap"
    );
    let big = w.get("/api/v4/projects?per_page=1000", w.op()).await;
    assert_eq!(big.header("x-per-page"), "100");
    let bad = w.get("/api/v4/projects?page=abc", w.op()).await;
    assert_eq!(
        (bad.status, bad.body.clone()),
        (400, json!({"error": "page is invalid"}))
    );
}

#[tokio::test]
async fn groups_and_group_projects() {
    let w = world().await;
    let g = w.get("/api/v4/groups/acme%2Fplatform", w.op()).await;
    assert_eq!((g.status, g.str("full_path")), (200, "acme/platform".into()));
    let acme = w.get("/api/v4/groups/acme", w.op()).await;
    assert_eq!(g.body["parent_id"], acme.body["id"]);
    assert_eq!(acme.body["parent_id"], json!(null));
    let direct = w.get("/api/v4/groups/acme/projects", w.op()).await;
    assert_eq!(direct.body.as_array().map(Vec::len), Some(0));
    let nested = w
        .get("/api/v4/groups/acme/projects?include_subgroups=true", w.op())
        .await;
    assert_eq!(nested.header("x-total"), "6");
    // dev sees team-a (and, through its project, can read the parent group).
    assert_eq!(
        w.get("/api/v4/groups/acme%2Fteam-a", &w.seed.dev_token)
            .await
            .status,
        200
    );
    assert_eq!(
        w.get("/api/v4/groups/acme%2Fteam-b", &w.seed.dev_token)
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn registry_repositories_carry_locations() {
    let w = world().await;
    let repos = w
        .get(
            "/api/v4/projects/acme%2Fteam-b%2Fapi/registry/repositories",
            w.op(),
        )
        .await;
    assert_eq!(repos.status, 200);
    let host = w.gl.url().trim_start_matches("http://").to_string();
    let locations: Vec<_> = repos
        .body
        .as_array()
        .expect("array")
        .iter()
        .map(|r| r["location"].clone())
        .collect();
    assert_eq!(
        locations,
        vec![
            json!(format!("{host}/acme/team-b/api")),
            json!(format!("{host}/acme/team-b/api/worker"))
        ]
    );
    let none = w
        .get(
            "/api/v4/projects/acme%2Fplatform%2Fcharts/registry/repositories",
            w.op(),
        )
        .await;
    assert_eq!(none.body, json!([]));
    // A registry on its own port.
    w.gl.set_registry_host("registry.test:5050");
    let moved = w
        .get(
            "/api/v4/projects/acme%2Fteam-a%2Fapp/registry/repositories",
            w.op(),
        )
        .await;
    assert_eq!(
        moved.body[0]["location"],
        json!("registry.test:5050/acme/team-a/app")
    );
    let project = w.get("/api/v4/projects/acme%2Fteam-a%2Fapp", w.op()).await;
    assert_eq!(
        project.str("container_registry_image_prefix"),
        "registry.test:5050/acme/team-a/app"
    );
}

#[tokio::test]
async fn members_report_effective_inherited_levels() {
    let w = world().await;
    let op = w.get("/api/v4/user", w.op()).await.u64("id");
    let dev = w.get("/api/v4/user", &w.seed.dev_token).await.u64("id");
    let inherited = w
        .get(
            &format!("/api/v4/projects/acme%2Fteam-a%2Fapp/members/all/{op}"),
            w.op(),
        )
        .await;
    assert_eq!((inherited.status, inherited.u64("access_level")), (200, 50));
    let direct = w
        .get(
            &format!("/api/v4/projects/acme%2Fteam-a%2Fapp/members/{op}"),
            w.op(),
        )
        .await;
    assert_eq!(
        (direct.status, direct.body.clone()),
        (404, json!({"message": "404 Not found"}))
    );
    let dev_level = w
        .get(
            &format!("/api/v4/projects/acme%2Fteam-a%2Fapp/members/all/{dev}"),
            &w.seed.dev_token,
        )
        .await;
    assert_eq!(dev_level.u64("access_level"), 30);
    let list = w
        .get("/api/v4/projects/acme%2Fteam-a%2Fapp/members/all", w.op())
        .await;
    let names: Vec<_> = list
        .body
        .as_array()
        .expect("array")
        .iter()
        .map(|m| m["username"].clone())
        .collect();
    assert_eq!(names, vec![json!("operator"), json!("dev")]);
    let group_member = w
        .get(
            &format!("/api/v4/groups/acme%2Fplatform/members/all/{op}"),
            w.op(),
        )
        .await;
    assert_eq!(group_member.u64("access_level"), 50);
}

#[tokio::test]
async fn deploy_tokens_are_created_listed_and_deleted_but_cannot_call_the_api() {
    let w = world().await;
    let base = "/api/v4/projects/acme%2Fteam-a%2Fapp/deploy_tokens";
    let created = w
        .post(
            base,
            w.op(),
            json!({"name": "flux-pull", "scopes": ["read_repository", "read_registry"],
                                   "expires_at": "2099-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert!(created.str("token").starts_with("gldt-"));
    let id = created.u64("id");
    assert_eq!(created.str("username"), format!("gitlab+deploy-token-{id}"));
    assert_eq!(created.str("expires_at"), "2099-01-01T00:00:00.000Z");
    assert_eq!(w.get("/api/v4/user", &created.str("token")).await.status, 401);
    let bad = w
        .post(base, w.op(), json!({"name": "x", "scopes": ["api"]}))
        .await;
    assert_eq!(bad.body, json!({"error": "scopes does not have a valid value"}));
    let dev = w
        .post(
            base,
            &w.seed.dev_token,
            json!({"name": "x", "scopes": ["read_repository"]}),
        )
        .await;
    assert_eq!(
        (dev.status, dev.body.clone()),
        (403, json!({"message": "403 Forbidden"}))
    );
    let list = w.get(base, w.op()).await;
    assert_eq!(list.body.as_array().map(Vec::len), Some(1));
    assert!(list.body[0].get("token").is_none());
    assert_eq!(w.delete(&format!("{base}/{id}"), w.op()).await.status, 204);
    assert_eq!(w.get(base, w.op()).await.body, json!([]));
    assert_eq!(w.get(&format!("{base}/{id}"), w.op()).await.status, 404);
}

#[tokio::test]
async fn group_deploy_tokens_need_owner_and_cover_subgroup_projects() {
    let w = world().await;
    let base = "/api/v4/groups/acme%2Fteam-b/deploy_tokens";
    // Maintainer may list but not create (Owner only).
    assert_eq!(w.get(base, &w.seed.maint_token).await.status, 200);
    let by_maint = w
        .post(
            base,
            &w.seed.maint_token,
            json!({"name": "g", "scopes": ["read_registry"]}),
        )
        .await;
    assert_eq!(
        (by_maint.status, by_maint.body.clone()),
        (403, json!({"message": "403 Forbidden"}))
    );
    let created = w
        .post(
            base,
            w.op(),
            json!({"name": "g", "scopes": ["read_registry"], "username": "team-b-pull"}),
        )
        .await;
    assert_eq!(
        (created.status, created.str("username")),
        (201, "team-b-pull".into())
    );
    let oracle = w.gl.oracle();
    let principal = oracle
        .authenticate("team-b-pull", &created.str("token"))
        .expect("deploy token");
    assert!(
        oracle
            .project_access(Some(&principal), "acme/team-b/api")
            .is_some()
    );
    assert!(
        oracle
            .project_access(Some(&principal), "acme/team-a/app")
            .is_none()
    );
    // Expired deploy tokens (datetime expiry) are refused with their state.
    let soon = (w.gl.clock().now() + chrono::Duration::hours(1)).to_rfc3339();
    let short = w
        .post(
            base,
            w.op(),
            json!({"name": "s", "scopes": ["read_registry"], "expires_at": soon}),
        )
        .await;
    assert_eq!(short.status, 201, "{}", short.text);
    w.gl.clock().advance(chrono::Duration::hours(1));
    let username = short.str("username");
    assert_eq!(
        oracle.authenticate(&username, &short.str("token")),
        Err(testbed::gitlab::access::CredentialError::Expired)
    );
    let active = w.get(&format!("{base}?active=true"), w.op()).await;
    assert_eq!(active.body.as_array().map(Vec::len), Some(1));
}
