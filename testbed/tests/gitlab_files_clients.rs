//! Repository files, members and shares driven by real clients: python-gitlab against the
//! emulator with the fronts, and the whole `World` serving files from its seeded repositories.

mod files_support;
mod gitlab_support;

use files_support::{APP, FilesWorld, b64, python};
use gitlab_support::http;
use serde_json::{Value, json};
use std::path::Path;
use testbed::gitlab::seed::{GroupSeed, UserSeed};

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
