//! Wire tests of the emulator's project deploy keys (`lib/api/deploy_keys.rb`): create, attach,
//! enable, update, delete, the error shapes, and fingerprints equal to `ssh-keygen -l`'s.

mod gitlab_support;

use gitlab_support::world;
use reqwest::Method;
use serde_json::json;

const APP: &str = "/api/v4/projects/acme%2Fteam-a%2Fapp/deploy_keys";
const API: &str = "/api/v4/projects/acme%2Fteam-b%2Fapi/deploy_keys";
const SECRET: &str = "/api/v4/projects/other-org%2Fsecret-project/deploy_keys";

/// A fresh key: (public key line, MD5 fingerprint, SHA256 fingerprint) as `ssh-keygen` prints them.
fn key(kind: &str) -> (String, String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("k");
    let bits = if kind == "dsa" { "1024" } else { "256" };
    let args = ["-q", "-t", kind, "-b", bits, "-N", "", "-C", "test", "-f"];
    let out = std::process::Command::new("ssh-keygen")
        .args(args)
        .arg(&path)
        .output()
        .expect("ssh-keygen");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let public = std::fs::read_to_string(path.with_extension("pub")).expect("pub");
    let fingerprint = |hash: &str| {
        let out = std::process::Command::new("ssh-keygen")
            .args(["-l", "-E", hash, "-f"])
            .arg(path.with_extension("pub"))
            .output()
            .expect("ssh-keygen -l");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let fp = text.split_whitespace().nth(1).unwrap_or_default().to_string();
        fp.strip_prefix("MD5:").map(str::to_string).unwrap_or(fp)
    };
    (
        public.trim().to_string(),
        fingerprint("md5"),
        fingerprint("sha256"),
    )
}

#[tokio::test]
async fn create_returns_the_key_with_gitlab_fingerprints_and_lists_it() {
    let w = world().await;
    let (public, md5, sha256) = key("ed25519");
    let created = w
        .post(
            APP,
            w.op(),
            json!({"title": "flux", "key": format!("  {public}\n")}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.str("key"), public);
    assert_eq!(created.str("fingerprint"), md5);
    assert_eq!(created.str("fingerprint_sha256"), sha256);
    assert_eq!(created.body["can_push"], json!(false));
    assert_eq!(created.body["expires_at"], json!(null));
    let id = created.u64("id");
    let list = w.get(APP, w.op()).await;
    assert_eq!(list.body.as_array().map(Vec::len), Some(1));
    assert_eq!(list.body[0]["id"], json!(id));
    assert_eq!(list.header("x-total"), "1");
    let one = w.get(&format!("{APP}/{id}"), w.op()).await;
    assert_eq!(one.body, created.body);
    // Posting the same key again to the same project returns the link unchanged.
    let again = w
        .post(
            APP,
            w.op(),
            json!({"title": "other", "key": public, "can_push": true}),
        )
        .await;
    assert_eq!((again.status, again.body.clone()), (201, created.body.clone()));
    // The key is not enabled on acme/team-b/api.
    let other = w.get(&format!("{API}/{id}"), w.op()).await;
    assert_eq!(
        (other.status, other.body),
        (404, json!({"message": "404 Not found"}))
    );
}

#[tokio::test]
async fn attach_enable_update_and_delete_follow_gitlab() {
    let w = world().await;
    let (public, _, _) = key("ed25519");
    let created = w.post(APP, w.op(), json!({"title": "flux", "key": public})).await;
    let id = created.u64("id");
    // The operator administers acme/team-b/api too: the same key is attached with its own can_push.
    let attached = w
        .post(
            API,
            w.op(),
            json!({"title": "ignored", "key": public, "can_push": true}),
        )
        .await;
    assert_eq!(attached.status, 201);
    assert_eq!(
        (attached.u64("id"), attached.body["can_push"].clone()),
        (id, json!(true))
    );
    assert_eq!(attached.str("title"), "flux");
    // Update needs title or can_push.
    let empty = w
        .send(Method::PUT, &format!("{APP}/{id}"), Some(w.op()), Some(json!({})))
        .await;
    assert_eq!(
        (empty.status, empty.body),
        (
            400,
            json!({"error": "title, can_push are missing, at least one parameter must be provided"})
        )
    );
    let updated = w
        .send(
            Method::PUT,
            &format!("{APP}/{id}"),
            Some(w.op()),
            Some(json!({"title": "renamed", "can_push": true})),
        )
        .await;
    assert_eq!(updated.status, 200);
    assert_eq!(
        (updated.str("title"), updated.body["can_push"].clone()),
        ("renamed".into(), json!(true))
    );
    // Removing it from one project keeps it on the other; removing it twice is a 404.
    assert_eq!(w.delete(&format!("{APP}/{id}"), w.op()).await.status, 204);
    let gone = w.delete(&format!("{APP}/{id}"), w.op()).await;
    assert_eq!(
        (gone.status, gone.body),
        (404, json!({"message": "404 Deploy key Not Found"}))
    );
    assert_eq!(w.get(&format!("{API}/{id}"), w.op()).await.status, 200);
    // Enable it again on acme/team-a/app: 201 without can_push, the new link is read-only.
    let enabled = w.post(&format!("{APP}/{id}/enable"), w.op(), json!({})).await;
    assert_eq!(enabled.status, 201);
    assert!(enabled.body.get("can_push").is_none(), "{}", enabled.text);
    assert_eq!(
        w.get(&format!("{APP}/{id}"), w.op()).await.body["can_push"],
        json!(false)
    );
    // The stranger administers no project with this key: enabling it is a 404 for them.
    let stolen = w
        .post(
            &format!("{SECRET}/{id}/enable"),
            &w.seed.stranger_token,
            json!({}),
        )
        .await;
    assert_eq!(
        (stolen.status, stolen.body),
        (404, json!({"message": "404 Deploy key Not Found"}))
    );
    // Nor can they create it under their project: the fingerprint is taken.
    let dup = w
        .post(
            SECRET,
            &w.seed.stranger_token,
            json!({"title": "mine", "key": public}),
        )
        .await;
    assert_eq!(
        (dup.status, dup.body),
        (
            400,
            json!({"message": {"deploy_key.fingerprint_sha256": ["has already been taken"]}})
        )
    );
    // Removed from its last project, a private key is destroyed: the stranger may now add it.
    assert_eq!(w.delete(&format!("{APP}/{id}"), w.op()).await.status, 204);
    assert_eq!(w.delete(&format!("{API}/{id}"), w.op()).await.status, 204);
    let mine = w
        .post(
            SECRET,
            &w.seed.stranger_token,
            json!({"title": "mine", "key": public}),
        )
        .await;
    assert_eq!(mine.status, 201, "{}", mine.text);
    assert_ne!(mine.u64("id"), id);
}

#[tokio::test]
async fn validation_errors_and_permissions_have_gitlabs_shapes() {
    let w = world().await;
    let missing = w.post(APP, w.op(), json!({})).await;
    assert_eq!(
        (missing.status, missing.body),
        (400, json!({"error": "key is missing, title is missing"}))
    );
    let invalid = w
        .post(
            APP,
            w.op(),
            json!({"title": "t", "key": "ssh-ed25519 not-base64"}),
        )
        .await;
    assert_eq!(
        (invalid.status, invalid.body),
        (
            400,
            json!({"message": {"deploy_key.key": ["is invalid"],
                               "deploy_key.fingerprint_sha256": ["cannot be generated"]}})
        )
    );
    let (dsa, _, _) = key("dsa");
    let forbidden = w.post(APP, w.op(), json!({"title": "t", "key": dsa})).await;
    assert_eq!(
        (forbidden.status, forbidden.body),
        (
            400,
            json!({"message": {"deploy_key.key": ["type is forbidden. Must be RSA, ECDSA, ED25519, ECDSA_SK, or ED25519_SK"]}})
        )
    );
    let (public, _, _) = key("ecdsa");
    let past = w
        .post(
            APP,
            w.op(),
            json!({"title": "t", "key": public, "expires_at": "2020-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(
        (past.status, past.body),
        (400, json!({"message": {"deploy_key.key": ["has expired"]}}))
    );
    let future = (w.gl.clock().now() + chrono::Duration::days(30)).date_naive();
    let ok = w
        .post(
            APP,
            w.op(),
            json!({"title": "t", "key": public, "expires_at": format!("{future}T00:00:00Z")}),
        )
        .await;
    assert_eq!(ok.status, 201, "{}", ok.text);
    assert_eq!(ok.str("expires_at"), format!("{future}T00:00:00.000Z"));
    // A Developer may not manage deploy keys; an invisible project is a 404.
    let dev = w.get(APP, &w.seed.dev_token).await;
    assert_eq!((dev.status, dev.body), (403, json!({"message": "403 Forbidden"})));
    let hidden = w.get(SECRET, &w.seed.dev_token).await;
    assert_eq!(
        (hidden.status, hidden.body),
        (404, json!({"message": "404 Project Not Found"}))
    );
}
