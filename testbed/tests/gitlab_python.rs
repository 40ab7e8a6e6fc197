//! The GitLab emulator driven by the real python-gitlab client (pinned in hack/python-gitlab.txt):
//! project access tokens created, listed by `state`, rotated and revoked, with booleans and
//! integers given as strings, form-encoded arrays, and Grape's error bodies for invalid values.

mod gitlab_support;

use std::path::PathBuf;

use gitlab_support::world;
use serde_json::{Value, json};
use tokio::process::Command;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Installs python-gitlab into `.tools/venv` (when missing) and returns the venv's python.
async fn python() -> String {
    let out = Command::new("bash")
        .arg(repo_root().join("hack/python-gitlab.sh"))
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
async fn python_gitlab_manages_project_access_tokens_with_grape_coercion() {
    let w = world().await;
    let python = python().await;
    let out = Command::new(&python)
        .arg(repo_root().join("testbed/tests/python/gitlab_coercion.py"))
        .env("GITLAB_URL", w.gl.url())
        .env("GITLAB_TOKEN", w.op())
        .env("PROJECT", "acme/team-a/app")
        .output()
        .await
        .expect("run the python-gitlab script");
    assert!(
        out.status.success(),
        "python-gitlab script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let facts: Value = serde_json::from_slice(&out.stdout).expect("the script prints JSON");

    assert_eq!(
        facts["created"],
        json!({"access_level": 30, "scopes": ["read_repository", "read_api"], "has_token": true,
               "expires_at": "2027-01-31"})
    );
    assert_eq!(
        facts["rotated"],
        json!({"new_id_differs": true, "expires_at": "2027-02-28"})
    );
    // Active: only the rotated successor; inactive: the rotated original and the revoked one.
    assert_eq!(facts["active_names"], json!(["py-created"]));
    assert_eq!(facts["active_ids"], json!([facts["rotated_id"]]));
    assert_eq!(facts["inactive_names"], json!(["py-created", "py-second"]));
    assert_eq!(facts["string_paging"], json!({"len": 1, "page": "2"}));
    assert_eq!(
        facts["bad_state"],
        json!([400, "state does not have a valid value"])
    );

    assert_eq!(facts["membership_true_variants_agree"], json!(true));
    assert!(
        facts["membership_true"]
            .as_array()
            .is_some_and(|a| a.contains(&json!("acme/team-a/app"))),
        "{facts}"
    );
    assert_eq!(facts["archived_no_vs_false"], json!(true));
    assert_eq!(facts["bad_bool"], json!([400, "archived is invalid"]));
    assert_eq!(facts["bad_int"], json!([400, "min_access_level is invalid"]));

    assert_eq!(
        facts["level_not_allowed"],
        json!([400, "access_level does not have a valid value"])
    );
    assert_eq!(facts["level_not_int"], json!([400, "access_level is invalid"]));
    assert_eq!(
        facts["several"],
        json!([
            400,
            "name is missing, scopes does not have a valid value, access_level is invalid"
        ])
    );
    assert_eq!(
        facts["form_array"],
        json!([201, ["read_api", "read_repository"], 20])
    );
    assert_eq!(
        facts["form_bare_scope"],
        json!([400, {"error": "scopes is invalid"}])
    );
}
