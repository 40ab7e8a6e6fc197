//! The repository files, commits and branches API on the fronts' real bare repositories: reads
//! pinned to refs and commits, commits made through the API seen by `git clone` over smart HTTP,
//! GitLab's error shapes, and git access that follows group sharing and member changes at once.

mod gitlab_support;

use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use gitlab_support::{Resp, http};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use testbed::gitlab::{
    DefaultSeed, GitLabConfig, GitLabHandle, GitLabServer,
    fronts::{Fronts, FrontsConfig},
    seed::{GroupSeed, MemberSeed, ShareSeed, TokenSeed, UserSeed},
    seed_default,
};

const APP: &str = "acme%2Fteam-a%2Fapp";

/// The emulator with the real fronts (git smart HTTP) and `acme/team-a/app` seeded.
struct FilesWorld {
    gl: GitLabHandle,
    seed: DefaultSeed,
    _fronts: Arc<Fronts>,
    dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl FilesWorld {
    async fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let bound = GitLabServer::bind(GitLabConfig::default()).await.expect("bind");
        let config = FrontsConfig {
            data_dir: dir.path().join("gitlab"),
            gitlab_url: bound.url(),
        };
        let fronts = Fronts::start(config, bound.oracle())
            .await
            .unwrap_or_else(|e| panic!("fronts did not start (git/docker-registry/openssl installed?): {e}"));
        bound.state().attach_repositories(fronts.repositories());
        let gl = bound.serve(Some(fronts.router()));
        let seed = seed_default(&gl.seed()).expect("seed");
        fronts
            .seed_repository("acme/team-a/app")
            .await
            .expect("seed repository");
        Self {
            gl,
            seed,
            _fronts: Arc::new(fronts),
            dir,
            http: http(),
        }
    }

    async fn send(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> Resp {
        let mut req = self.http.request(method, format!("{}{path}", self.gl.url()));
        if let Some(t) = token {
            req = req.header("PRIVATE-TOKEN", t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            text,
            body,
        }
    }

    async fn get(&self, path: &str, token: &str) -> Resp {
        self.send(Method::GET, path, Some(token), None).await
    }

    fn op(&self) -> &str {
        &self.seed.operator_token
    }

    /// `git clone` of a project with a token; (success, stderr, clone dir).
    async fn clone(&self, project: &str, token: &str, name: &str) -> (bool, String, std::path::PathBuf) {
        let target = self.dir.path().join("clones").join(name);
        let host = self.gl.url().trim_start_matches("http://").to_string();
        let url = format!("http://oauth2:{token}@{host}/{project}.git");
        let out = git(
            &["clone", "-q", &url, &target.to_string_lossy()],
            None,
            self.dir.path(),
        )
        .await;
        (out.0, out.2, target)
    }
}

/// Runs git with a clean configuration; (success, stdout, stderr).
async fn git(args: &[&str], cwd: Option<&Path>, home: &Path) -> (bool, String, String) {
    let mut cmd = tokio::process::Command::new("git");
    if let Some(d) = cwd {
        cmd.current_dir(d);
    }
    let out = cmd
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", home)
        .kill_on_drop(true)
        .output()
        .await
        .expect("run git");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

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

/// Installs python-gitlab into `.tools/venv` (when missing) and returns the venv's python.
async fn python() -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../hack/python-gitlab.sh");
    let out = tokio::process::Command::new("bash")
        .arg(script)
        .output()
        .await
        .expect("run hack/python-gitlab.sh");
    assert!(
        out.status.success(),
        "hack/python-gitlab.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_gitlab_drives_files_members_and_shares() {
    let w = FilesWorld::start().await;
    let seed = w.gl.seed();
    let ops = seed
        .group(GroupSeed {
            full_path: "ops".into(),
            name: None,
            visibility: Some("internal".into()),
        })
        .expect("group");
    let nina = seed
        .user(UserSeed {
            username: "nina".into(),
            name: None,
            admin: false,
        })
        .expect("user");
    let python = python().await;
    let out = tokio::process::Command::new(&python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/groups_files.py"))
        .env("GITLAB_URL", w.gl.url())
        .env("GITLAB_TOKEN", w.op())
        .env("PROJECT", "acme/team-a/app")
        .env("GROUP_ID", ops.to_string())
        .env("USER_ID", nina.to_string())
        .output()
        .await
        .expect("run the python-gitlab script");
    assert!(
        out.status.success(),
        "python-gitlab script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let facts: Value = serde_json::from_slice(&out.stdout).expect("the script prints JSON");
    let expected = json!({
        "readme": "# acme/team-a/app\n\nSeeded by the testbed.\n",
        "readme_commit_is_last": true,
        "created": {"file_path": "policies/broker.yaml", "branch": "main"},
        "raw_after_edit": "grants: [acme]\n",
        "pinned_first": "grants: []\n",
        "head_is_new": true,
        "deleted": [404, "404 File Not Found"],
        "bad_ref": [404, "404 Commit Not Found"],
        "member_created": ["nina", 20, "2099-01-31"],
        "member_duplicate": [409, "Member already exists"],
        "member_all": [["dev", 30], ["nina", 30], ["operator", 50]],
        "member_gone": [404, "404 Not found"],
        "shared_with_groups": [{"group_id": ops, "group_name": "Ops", "group_full_path": "ops",
                                "group_access_level": 20, "expires_at": null}],
        "share_again": [409, "Group already shared with this group"],
        "after_unshare": [],
        "subgroups": ["acme/platform", "acme/team-a", "acme/team-b"],
        "group_share": [[ops, 10]],
        "group_after_unshare": [],
    });
    assert_eq!(facts, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_world_serves_repository_files_from_its_seeded_repositories() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = testbed::world::WorldConfig::new(dir.path());
    config.flux = false;
    let world = testbed::world::World::start(config).await.expect("world");
    let token = world.operator_token().expect("seeded").to_string();
    let resp = http()
        .get(format!(
            "{}/api/v4/projects/{APP}/repository/files/README.md?ref=main",
            world.gitlab_url()
        ))
        .header("PRIVATE-TOKEN", token)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 200);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(
        body["content"],
        json!(b64("# acme/team-a/app\n\nSeeded by the testbed.\n"))
    );
    world.stop().await;
}
