//! The repository files, commits and branches API on the fronts' real bare repositories: reads
//! pinned to refs and commits, commits made through the API seen by `git clone` over smart HTTP,
//! GitLab's error shapes, and git access that follows group sharing and member changes at once.

mod files_support;
mod gitlab_support;

use files_support::{APP, FilesWorld, b64, git, sha256_hex};
use reqwest::Method;
use serde_json::{Value, json};
use testbed::gitlab::seed::{GroupSeed, MemberSeed, ShareSeed, TokenSeed, UserSeed};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_are_read_at_refs_and_changed_by_commits_that_git_clone_sees() {
    let w = FilesWorld::start().await;
    let readme = "# acme/team-a/app\n\nSeeded by the testbed.\n";
    let main = w
        .get(
            &format!("/api/v4/projects/{APP}/repository/branches/main"),
            w.op(),
        )
        .await;
    assert_eq!(main.status, 200, "{}", main.text);
    assert_eq!(
        (main.body["protected"].clone(), main.body["default"].clone()),
        (json!(true), json!(true))
    );
    let seeded = main.body["commit"]["id"].as_str().unwrap_or_default().to_string();
    assert_eq!(seeded.len(), 40);

    let file = w
        .get(
            &format!("/api/v4/projects/{APP}/repository/files/README.md?ref=main"),
            w.op(),
        )
        .await;
    assert_eq!(file.status, 200, "{}", file.text);
    assert_eq!(
        (
            file.str("content"),
            file.str("encoding"),
            file.u64("size"),
            file.str("content_sha256")
        ),
        (
            b64(readme),
            "base64".into(),
            readme.len() as u64,
            sha256_hex(readme)
        )
    );
    assert_eq!(
        (file.str("commit_id"), file.str("last_commit_id"), file.str("ref")),
        (seeded.clone(), seeded.clone(), "main".into())
    );
    assert_eq!(file.header("x-gitlab-blob-id"), file.str("blob_id"));
    // HEAD answers the same headers without a body, and the same 404s.
    let head = w
        .send(
            Method::HEAD,
            &format!("/api/v4/projects/{APP}/repository/files/README.md?ref=main"),
            Some(w.op()),
            None,
        )
        .await;
    assert_eq!((head.status, head.text.as_str()), (200, ""));
    assert_eq!(
        (
            head.header("x-gitlab-commit-id"),
            head.header("x-gitlab-size"),
            head.header("x-gitlab-file-path")
        ),
        (seeded.clone(), readme.len().to_string(), "README.md".to_string())
    );
    let head_missing = w
        .send(
            Method::HEAD,
            &format!("/api/v4/projects/{APP}/repository/files/nope?ref=main"),
            Some(w.op()),
            None,
        )
        .await;
    assert_eq!(head_missing.status, 404);

    // A policy file committed through the API (slashes URL-encoded in the path).
    let policy = "apiVersion: v1\ngrants: []\n";
    let path = format!("/api/v4/projects/{APP}/repository/files/policies%2Fbroker.yaml");
    let created = w
        .send(
            Method::POST,
            &path,
            Some(w.op()),
            Some(json!({"branch": "main", "content": policy, "commit_message": "Add policy"})),
        )
        .await;
    assert_eq!(
        (created.status, created.body.clone()),
        (
            201,
            json!({"file_path": "policies/broker.yaml", "branch": "main"})
        )
    );
    let v1 = w.get(&format!("{path}?ref=main"), w.op()).await;
    let first = v1.str("commit_id");
    assert_ne!(first, seeded);
    assert_eq!(
        (v1.str("last_commit_id"), v1.str("file_name")),
        (first.clone(), "broker.yaml".into())
    );
    let commit = w
        .get(
            &format!("/api/v4/projects/{APP}/repository/commits/{first}"),
            w.op(),
        )
        .await;
    assert_eq!(commit.status, 200);
    assert_eq!(
        (
            commit.body["parent_ids"].clone(),
            commit.str("title"),
            commit.body["stats"].clone(),
            commit.str("author_name")
        ),
        (
            json!([seeded]),
            "Add policy".into(),
            json!({"additions": 2, "deletions": 0, "total": 2}),
            "Token Operator".into()
        )
    );
    assert_eq!(commit.str("short_id"), first[..8]);

    // Edited by a second commit; the first stays readable by pinning its SHA.
    let edited = "apiVersion: v1\ngrants: [acme]\n";
    let base64_body = json!({"branch": "main", "content": b64(edited), "encoding": "base64", "commit_message": "Grant acme"});
    let updated = w.send(Method::PUT, &path, Some(w.op()), Some(base64_body)).await;
    assert_eq!(updated.status, 200, "{}", updated.text);
    let v2 = w.get(&format!("{path}?ref=main"), w.op()).await;
    assert_eq!(v2.str("content"), b64(edited));
    let pinned = w.get(&format!("{path}?ref={first}"), w.op()).await;
    assert_eq!(
        (pinned.str("content"), pinned.str("ref")),
        (b64(policy), first.clone())
    );
    // The seeded README's last commit is still the seed, whatever HEAD is now.
    let readme_now = w
        .get(
            &format!("/api/v4/projects/{APP}/repository/files/README.md?ref=main"),
            w.op(),
        )
        .await;
    assert_eq!(
        (readme_now.str("commit_id"), readme_now.str("last_commit_id")),
        (v2.str("commit_id"), seeded.clone())
    );
    let raw = w.get(&format!("{path}/raw?ref=main"), w.op()).await;
    assert_eq!(
        (raw.status, raw.text.as_str(), raw.header("x-gitlab-commit-id")),
        (200, edited, v2.str("commit_id"))
    );

    // git clone over smart HTTP sees the same commit and content.
    let (ok, stderr, dir) = w.clone("acme/team-a/app", w.op(), "op").await;
    assert!(ok, "{stderr}");
    assert_eq!(
        std::fs::read_to_string(dir.join("policies/broker.yaml")).unwrap_or_default(),
        edited
    );
    let head = git(&["rev-parse", "HEAD"], Some(&dir), w.dir.path()).await;
    assert_eq!(head.1, v2.str("commit_id"));

    // Delete, then the file is gone at main but present at the earlier commit.
    let deleted = w
        .send(
            Method::DELETE,
            &format!("{path}?branch=main&commit_message=Drop"),
            Some(w.op()),
            None,
        )
        .await;
    assert_eq!(deleted.status, 204, "{}", deleted.text);
    let missing = w.get(&format!("{path}?ref=main"), w.op()).await;
    assert_eq!(
        (missing.status, missing.body),
        (404, json!({"message": "404 File Not Found"}))
    );
    assert_eq!(w.get(&format!("{path}?ref={first}"), w.op()).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_errors_and_write_rules_match_gitlab() {
    let w = FilesWorld::start().await;
    let files = format!("/api/v4/projects/{APP}/repository/files");
    let cases: Vec<(String, u16, Value)> = vec![
        (
            format!("{files}/README.md"),
            400,
            json!({"error": "ref is missing"}),
        ),
        (
            format!("{files}/README.md?ref="),
            400,
            json!({"error": "ref is empty"}),
        ),
        (
            format!("{files}/README.md?ref=nope"),
            404,
            json!({"message": "404 Commit Not Found"}),
        ),
        (
            format!("{files}/nope.md?ref=main"),
            404,
            json!({"message": "404 File Not Found"}),
        ),
        (
            format!("/api/v4/projects/{APP}/repository/commits/nope"),
            404,
            json!({"message": "404 Commit Not Found"}),
        ),
        (
            format!("/api/v4/projects/{APP}/repository/branches/nope"),
            404,
            json!({"message": "404 Branch Not Found"}),
        ),
        (
            "/api/v4/projects/acme%2Fplatform%2Finfra/repository/files/README.md?ref=main".to_string(),
            404,
            json!({"message": "404 Commit Not Found"}),
        ),
    ];
    for (path, status, body) in cases {
        let resp = w.get(&path, w.op()).await;
        assert_eq!((resp.status, resp.body), (status, body), "{path}");
    }
    // Invisible project for a stranger; a Guest may not read code.
    let stranger = w
        .get(&format!("{files}/README.md?ref=main"), &w.seed.stranger_token)
        .await;
    assert_eq!(
        (stranger.status, stranger.body),
        (404, json!({"message": "404 Project Not Found"}))
    );
    let seed = w.gl.seed();
    seed.user(UserSeed {
        username: "gus".into(),
        name: None,
        admin: false,
    })
    .expect("user");
    let (_, gus) = seed
        .personal_token(TokenSeed {
            username: "gus".into(),
            name: "t".into(),
            scopes: vec!["api".into()],
            expires_at: None,
        })
        .expect("token");
    seed.member(MemberSeed {
        username: "gus".into(),
        path: "acme/team-a/app".into(),
        access_level: 10,
        expires_at: None,
    })
    .expect("member");
    let guest = w.get(&format!("{files}/README.md?ref=main"), &gus).await;
    assert_eq!(
        (guest.status, guest.body),
        (403, json!({"message": "403 Forbidden"}))
    );

    // Writes: a Developer may not push to the protected default branch, may to a new branch.
    let body = |branch: &str| json!({"branch": branch, "content": "x", "commit_message": "m", "start_branch": "main"});
    let dev_main = w
        .send(
            Method::POST,
            &format!("{files}/dev.txt"),
            Some(&w.seed.dev_token),
            Some(json!({"branch": "main", "content": "x", "commit_message": "m"})),
        )
        .await;
    assert_eq!(
        (dev_main.status, dev_main.body),
        (
            403,
            json!({"message": "403 Forbidden - You are not allowed to push into this branch"})
        )
    );
    let dev_branch = w
        .send(
            Method::POST,
            &format!("{files}/dev.txt"),
            Some(&w.seed.dev_token),
            Some(body("feature")),
        )
        .await;
    assert_eq!(dev_branch.status, 201, "{}", dev_branch.text);
    let on_branch = w.get(&format!("{files}/dev.txt?ref=feature"), w.op()).await;
    assert_eq!(on_branch.str("content"), b64("x"));
    assert_eq!(
        w.get(&format!("{files}/dev.txt?ref=main"), w.op()).await.status,
        404
    );
    let branch = w
        .get(
            &format!("/api/v4/projects/{APP}/repository/branches/feature"),
            &w.seed.dev_token,
        )
        .await;
    assert_eq!(
        (branch.body["protected"].clone(), branch.body["can_push"].clone()),
        (json!(false), json!(true))
    );
    let refusals: Vec<(Method, &str, Value, Value)> = vec![
        (
            Method::POST,
            "README.md",
            json!({"branch": "main", "content": "x", "commit_message": "m"}),
            json!({"message": "A file with this name already exists"}),
        ),
        (
            Method::PUT,
            "absent.md",
            json!({"branch": "main", "content": "x", "commit_message": "m"}),
            json!({"message": "A file with this name doesn't exist"}),
        ),
        (
            Method::POST,
            "y.md",
            json!({"branch": "elsewhere", "content": "x", "commit_message": "m"}),
            json!({"message": "You can only create or edit files when you are on a branch"}),
        ),
        (
            Method::POST,
            "y.md",
            json!({"content": "x"}),
            json!({"error": "branch is missing, commit_message is missing"}),
        ),
        (
            Method::PUT,
            "README.md",
            json!({"branch": "main", "content": "x", "commit_message": "m", "last_commit_id": "0123"}),
            json!({"message": "You are attempting to update a file that has changed since you started editing it."}),
        ),
    ];
    for (method, file, body, answer) in refusals {
        let resp = w
            .send(
                method.clone(),
                &format!("{files}/{file}"),
                Some(w.op()),
                Some(body.clone()),
            )
            .await;
        assert_eq!((resp.status, resp.body), (400, answer), "{method} {file} {body}");
    }
    let traversal = w.get(&format!("{files}/..%2Fsecret?ref=main"), w.op()).await;
    assert_eq!(traversal.status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_access_follows_shares_and_member_changes_at_once() {
    let w = FilesWorld::start().await;
    let seed = w.gl.seed();
    seed.group(GroupSeed {
        full_path: "ops".into(),
        name: None,
        visibility: None,
    })
    .expect("group");
    seed.user(UserSeed {
        username: "olga".into(),
        name: None,
        admin: false,
    })
    .expect("user");
    let (_, olga) = seed
        .personal_token(TokenSeed {
            username: "olga".into(),
            name: "t".into(),
            scopes: vec!["read_repository".into()],
            expires_at: None,
        })
        .expect("token");
    seed.member(MemberSeed {
        username: "olga".into(),
        path: "ops".into(),
        access_level: 50,
        expires_at: None,
    })
    .expect("member");
    let (ok, stderr, _) = w.clone("acme/team-a/app", &olga, "before").await;
    assert!(!ok && stderr.contains("could not be found"), "{stderr}");

    let share = |access: u32| ShareSeed {
        path: "acme/team-a/app".into(),
        group: "ops".into(),
        group_access: access,
        expires_at: None,
    };
    seed.share(share(20)).expect("share");
    let (ok, stderr, _) = w.clone("acme/team-a/app", &olga, "shared").await;
    assert!(ok, "a Reporter share lets ops' Owner clone: {stderr}");

    // Lowering olga's role in ops below Reporter lowers what the share gives her.
    seed.member(MemberSeed {
        username: "olga".into(),
        path: "ops".into(),
        access_level: 10,
        expires_at: None,
    })
    .expect("member");
    let (ok, stderr, _) = w.clone("acme/team-a/app", &olga, "guest").await;
    assert!(
        !ok && stderr.contains("You are not allowed to download code from this project."),
        "{stderr}"
    );

    seed.member(MemberSeed {
        username: "olga".into(),
        path: "ops".into(),
        access_level: 30,
        expires_at: None,
    })
    .expect("member");
    seed.share(share(0)).expect("unshare");
    let (ok, stderr, _) = w.clone("acme/team-a/app", &olga, "unshared").await;
    assert!(
        !ok && stderr.contains("could not be found"),
        "unsharing withdraws at once: {stderr}"
    );
}
