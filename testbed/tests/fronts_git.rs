//! Git smart HTTP through the fronts with the real `git` client: clone, fetch and push, each
//! also refused with the wrong scope, role, a revoked token, or no credentials.

mod fronts_common;

use fronts_common::*;

/// Environment for git: no prompts, no user/system config, fixed identity.
fn git_env(home: &str) -> Vec<(&'static str, String)> {
    vec![
        ("GIT_TERMINAL_PROMPT", "0".into()),
        ("GIT_CONFIG_NOSYSTEM", "1".into()),
        ("HOME", home.into()),
        ("GIT_AUTHOR_NAME", "Tester".into()),
        ("GIT_AUTHOR_EMAIL", "tester@example.invalid".into()),
        ("GIT_COMMITTER_NAME", "Tester".into()),
        ("GIT_COMMITTER_EMAIL", "tester@example.invalid".into()),
    ]
}

struct Git {
    home: String,
}

impl Git {
    async fn run(&self, cwd: Option<&std::path::Path>, args: &[&str]) -> Run {
        let env = git_env(&self.home);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut all = vec!["-c", "credential.helper="];
        all.extend_from_slice(args);
        run("git", &all, cwd, &env).await
    }
}

fn url_with(world: &World, user: &str, token: &str, path: &str) -> String {
    if user.is_empty() {
        format!("{}/{path}.git", world.url)
    } else {
        format!("http://{user}:{token}@{}/{path}.git", world.host)
    }
}

#[tokio::test]
async fn clone_fetch_and_push_follow_gitlab_rules() {
    let world = World::start().await;
    world.fronts.seed_repository("acme/team-a/app").await.unwrap();
    world.fronts.seed_repository("acme/public-lib").await.unwrap();
    world.fronts.seed_repository("acme/old").await.unwrap();
    let scratch = world.scratch("git");
    let git = Git {
        home: world.scratch("home").to_string_lossy().into_owned(),
    };
    let dir = |name: &str| scratch.join(name).to_string_lossy().into_owned();

    // Developer with read/write_repository: clone (protocol v2), commit, push.
    let bare = world.bare("acme/team-a/app");
    assert!(
        git.run(Some(&bare), &["config", "core.logAllRefUpdates", "true"])
            .await
            .ok
    );
    let app = url_with(&world, "alice", ALICE_RW, "acme/team-a/app");
    let r = git.run(None, &["clone", &app, &dir("alice")]).await;
    assert!(r.ok, "clone: {}", r.stderr);
    let readme = std::fs::read_to_string(scratch.join("alice/README.md")).unwrap();
    assert!(readme.starts_with("# acme/team-a/app"), "{readme}");
    let work = scratch.join("alice");
    std::fs::write(work.join("change.txt"), "pushed by alice\n").unwrap();
    assert!(git.run(Some(&work), &["add", "change.txt"]).await.ok);
    assert!(git.run(Some(&work), &["commit", "-q", "-m", "change"]).await.ok);
    let r = git.run(Some(&work), &["push", "origin", "main"]).await;
    assert!(r.ok, "push: {}", r.stderr);
    let local = git.run(Some(&work), &["rev-parse", "HEAD"]).await.stdout;
    let remote = git.run(Some(&bare), &["rev-parse", "main"]).await.stdout;
    assert_eq!(
        local.trim(),
        remote.trim(),
        "the bare repository received the push"
    );
    let reflog = git
        .run(Some(&bare), &["log", "-g", "--format=%gn", "-1", "main"])
        .await;
    assert_eq!(
        reflog.stdout.trim(),
        "alice",
        "REMOTE_USER names the pusher: {}",
        reflog.stderr
    );

    // A large (chunked) push with 150 branches of distinct tips, so that clones send more than
    // 1 KiB of wants (gzip request bodies).
    let blob: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(work.join("big.bin"), blob).unwrap();
    assert!(git.run(Some(&work), &["add", "big.bin"]).await.ok);
    assert!(git.run(Some(&work), &["commit", "-q", "-m", "big"]).await.ok);
    let mut stream = String::new();
    for i in 0..150 {
        let msg = format!("branch {i}\n");
        stream.push_str(&format!(
            "commit refs/heads/branch-{i:03}\ncommitter T <t@example.invalid> 1704067200 +0000\n\
             data {}\n{msg}from refs/heads/main^0\n\n",
            msg.len()
        ));
    }
    std::fs::write(scratch.join("fast-import.txt"), stream).unwrap();
    let script = format!(
        "git fast-import --quiet < {}",
        scratch.join("fast-import.txt").display()
    );
    let r = run("sh", &["-c", &script], Some(&work), &[]).await;
    assert!(r.ok, "fast-import: {}", r.stderr);
    let r = git
        .run(
            Some(&work),
            &[
                "push",
                "origin",
                "main",
                "refs/heads/branch-*:refs/heads/branch-*",
            ],
        )
        .await;
    assert!(r.ok, "big push: {}", r.stderr);
    let r = git
        .run(
            None,
            &["-c", "protocol.version=0", "clone", "-q", &app, &dir("v0")],
        )
        .await;
    assert!(r.ok, "v0 clone: {}", r.stderr);
    assert!(scratch.join("v0/big.bin").exists());
    let r = git
        .run(
            Some(&scratch.join("v0")),
            &["fetch", "origin", "+refs/heads/*:refs/remotes/mirror/*"],
        )
        .await;
    assert!(r.ok, "fetch with many refs: {}", r.stderr);
    let branches = git
        .run(
            Some(&scratch.join("v0")),
            &["branch", "-r", "--list", "mirror/branch-*"],
        )
        .await;
    assert_eq!(branches.stdout.lines().count(), 150);

    // Reporter with read_repository: clone works, push is refused (scope and role).
    let rita = url_with(&world, "rita", RITA_READ, "acme/team-a/app");
    let r = git.run(None, &["clone", "-q", &rita, &dir("rita")]).await;
    assert!(r.ok, "reporter clone: {}", r.stderr);
    let r = git
        .run(
            Some(&scratch.join("rita")),
            &["push", "origin", "HEAD:refs/heads/rita"],
        )
        .await;
    assert!(
        !r.ok && r.stderr.contains("403"),
        "reporter push must be refused: {}",
        r.stderr
    );

    // Wrong scope: a registry-only token cannot clone; a read-only token cannot push.
    let r = git
        .run(
            None,
            &[
                "clone",
                "-q",
                &url_with(&world, "alice", ALICE_REGISTRY_ONLY, "acme/team-a/app"),
                &dir("x1"),
            ],
        )
        .await;
    assert!(
        !r.ok && r.stderr.contains("403"),
        "registry-only clone: {}",
        r.stderr
    );
    let r = git
        .run(
            Some(&work),
            &[
                "push",
                &url_with(&world, "alice", ALICE_REPO_ONLY, "acme/team-a/app"),
                "HEAD:refs/heads/ro",
            ],
        )
        .await;
    assert!(!r.ok && r.stderr.contains("403"), "read-only push: {}", r.stderr);

    // Guest with `api` cannot read the code; revoked and expired tokens fail authentication.
    let r = git
        .run(
            None,
            &[
                "clone",
                "-q",
                &url_with(&world, "gina", GINA_API, "acme/team-a/app"),
                &dir("x2"),
            ],
        )
        .await;
    assert!(!r.ok && r.stderr.contains("403"), "guest clone: {}", r.stderr);
    for token in [ALICE_REVOKED, ALICE_EXPIRED, "glpat-unknown"] {
        let r = git
            .run(
                None,
                &[
                    "clone",
                    "-q",
                    &url_with(&world, "alice", token, "acme/team-a/app"),
                    &dir("x3"),
                ],
            )
            .await;
        assert!(
            !r.ok && r.stderr.contains("Authentication failed"),
            "bad token clone: {}",
            r.stderr
        );
    }

    // Anonymous: public clone works, private clone and any push need credentials.
    let r = git
        .run(
            None,
            &[
                "clone",
                "-q",
                &url_with(&world, "", "", "acme/public-lib"),
                &dir("anon"),
            ],
        )
        .await;
    assert!(r.ok, "anonymous public clone: {}", r.stderr);
    let r = git
        .run(
            Some(&scratch.join("anon")),
            &["push", "origin", "HEAD:refs/heads/anon"],
        )
        .await;
    assert!(
        !r.ok && r.stderr.contains("terminal prompts disabled"),
        "anonymous push: {}",
        r.stderr
    );
    let r = git
        .run(
            None,
            &[
                "clone",
                "-q",
                &url_with(&world, "", "", "acme/team-a/app"),
                &dir("x4"),
            ],
        )
        .await;
    assert!(
        !r.ok && r.stderr.contains("terminal prompts disabled"),
        "anonymous private clone: {}",
        r.stderr
    );

    // Archived project: fetch is fine, push is refused even for its maintainer.
    let old = url_with(&world, "alice", ALICE_RW, "acme/old");
    let r = git.run(None, &["clone", "-q", &old, &dir("old")]).await;
    assert!(r.ok, "archived clone: {}", r.stderr);
    let r = git
        .run(
            Some(&scratch.join("old")),
            &["push", "origin", "HEAD:refs/heads/x"],
        )
        .await;
    assert!(!r.ok && r.stderr.contains("403"), "archived push: {}", r.stderr);

    // Credentials up front in an extraHeader (no 401 round trip) also work.
    let header = format!(
        "http.extraHeader=Authorization: Basic {}",
        basic("oauth2", RITA_READ)
    );
    let r = git
        .run(
            None,
            &[
                "-c",
                &header,
                "ls-remote",
                &url_with(&world, "", "", "acme/team-a/app"),
                "main",
            ],
        )
        .await;
    assert!(
        r.ok && r.stdout.contains("refs/heads/main"),
        "extraHeader ls-remote: {}",
        r.stderr
    );
    world.fronts.shutdown().await;
}

#[tokio::test]
async fn raw_http_answers_match_gitlab() {
    let world = World::start().await;
    world.fronts.seed_repository("acme/team-a/app").await.unwrap();
    let refs = |path: &str| format!("{}/{path}/info/refs?service=git-upload-pack", world.url);
    let alice = format!("alice:{ALICE_RW}");

    // First request without credentials: the Basic challenge with GitLab's body.
    let r = curl(&[&refs("acme/team-a/app.git")]).await;
    assert_eq!(r.status, 401);
    assert!(
        r.headers.contains("WWW-Authenticate: Basic realm=\"GitLab\"")
            || r.headers
                .to_lowercase()
                .contains("www-authenticate: basic realm=\"gitlab\""),
        "{}",
        r.headers
    );
    assert_eq!(r.text(), "HTTP Basic: Access denied\n");

    // With credentials: the smart advertisement (v0), case-insensitive project path.
    let r = curl(&["-u", &alice, &refs("ACME/Team-A/app.git")]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.headers
            .to_lowercase()
            .contains("content-type: application/x-git-upload-pack-advertisement")
    );
    assert!(r.body.starts_with(b"001e# service=git-upload-pack\n0000"));

    // Protocol v2 is passed through via Git-Protocol.
    let r = curl(&[
        "-u",
        &alice,
        "-H",
        "Git-Protocol: version=2",
        &refs("acme/team-a/app.git"),
    ])
    .await;
    assert!(r.text().contains("version 2"), "{}", r.text());

    // Revoked token: 401 again; unknown project with valid credentials: 404.
    let r = curl(&[
        "-u",
        &format!("alice:{ALICE_REVOKED}"),
        &refs("acme/team-a/app.git"),
    ])
    .await;
    assert_eq!(r.status, 401);
    let r = curl(&["-u", &alice, &refs("acme/nope.git")]).await;
    assert_eq!(r.status, 404);
    // A project without a repository: 404 with GitLab's message; a wrong scope: 403.
    let r = curl(&["-u", &alice, &refs("acme/old.git")]).await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (404, "A repository for this project does not exist yet.\n")
    );
    let r = curl(&[
        "-u",
        &format!("alice:{ALICE_REGISTRY_ONLY}"),
        &refs("acme/team-a/app.git"),
    ])
    .await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (403, "You are not allowed to download code.\n")
    );

    // The path without `.git` is redirected; unknown paths are GitLab's JSON 404.
    let r = curl(&[&refs("acme/team-a/app")]).await;
    assert_eq!(r.status, 301);
    assert!(
        r.headers
            .contains("/acme/team-a/app.git/info/refs?service=git-upload-pack"),
        "{}",
        r.headers
    );
    let r = curl(&[&format!("{}/api/v4/nothing", world.url)]).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json(), serde_json::json!({"message": "404 Not Found"}));

    // An RPC with the wrong content type is refused by the backend itself (415).
    let r = curl(&[
        "-u",
        &alice,
        "-X",
        "POST",
        "--data-binary",
        "0000",
        &format!("{}/acme/team-a/app.git/git-upload-pack", world.url),
    ])
    .await;
    assert_eq!(r.status, 415, "{}", r.text());
}
