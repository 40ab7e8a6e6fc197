//! Git over SSH against the test world with real `git` and `ssh`: deploy keys registered through
//! the REST API clone their project (and public ones), are refused elsewhere, when removed, when
//! expired, and on push without `can_push`; users' keys act as the user; the host key is checked
//! strictly. Only the `ssh://git@127.0.0.1:PORT/…` form is used: the scp-like form means port 22.
//! These tests fail (not skip) when openssh-server or the `git` user is missing: run `make deps`.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::{Value, json};
use testbed::world::{World, WorldConfig};

const NOT_FOUND: &str =
    "The project you were looking for could not be found or you don't have permission to view it.";

struct Env {
    world: World,
    dir: tempfile::TempDir,
    http: reqwest::Client,
}

async fn env() -> Env {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = WorldConfig::new(dir.path().join("state"));
    config.flux = false;
    let world = World::start(config).await.expect("world");
    world
        .ssh()
        .expect("Git over SSH must run here (make deps installs openssh-server)");
    Env {
        world,
        dir,
        http: reqwest::Client::new(),
    }
}

impl Env {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A fresh ed25519 key pair; returns (private key path, public key line).
    fn keypair(&self, name: &str) -> (PathBuf, String) {
        let key = self.path(name);
        let out = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
            .arg(&key)
            .output()
            .expect("ssh-keygen");
        assert!(out.status.success());
        let public = std::fs::read_to_string(key.with_extension("pub")).expect("pub");
        (key, public.trim().to_string())
    }

    fn known_hosts(&self) -> PathBuf {
        let path = self.path("known_hosts");
        std::fs::write(&path, self.world.ssh().expect("ssh").known_hosts()).expect("write");
        path
    }

    fn url(&self, project: &str) -> String {
        self.world.ssh().expect("ssh").clone_url(project)
    }

    /// Runs git with `GIT_SSH_COMMAND` using `key` and a strict `known_hosts`.
    fn git(&self, key: &Path, known_hosts: &Path, cwd: &Path, args: &[&str]) -> Output {
        let ssh = format!(
            "ssh -i {} -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes -o BatchMode=yes",
            key.display(),
            known_hosts.display()
        );
        std::process::Command::new("git")
            .args(args)
            .current_dir(cwd)
            .env("GIT_SSH_COMMAND", ssh)
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .output()
            .expect("git")
    }

    fn clone(&self, key: &Path, project: &str, into: &str) -> Output {
        let known_hosts = self.known_hosts();
        let url = self.url(project);
        self.git(key, &known_hosts, self.dir.path(), &["clone", "-q", &url, into])
    }

    /// Commits a file in a clone and pushes `main`.
    fn commit_and_push(&self, key: &Path, clone: &str, file: &str) -> Output {
        let repo = self.path(clone);
        std::fs::write(repo.join(file), file).expect("write");
        let kh = self.known_hosts();
        assert!(self.git(key, &kh, &repo, &["add", file]).status.success());
        assert!(
            self.git(key, &kh, &repo, &["commit", "-q", "-m", file])
                .status
                .success()
        );
        self.git(key, &kh, &repo, &["push", "-q", "origin", "HEAD:main"])
    }

    async fn api(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let token = self.world.operator_token().expect("seeded");
        let mut req = self
            .http
            .request(method, format!("{}/api/v4{path}", self.world.gitlab_url()))
            .header("PRIVATE-TOKEN", token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn add_deploy_key(
        &self,
        project: &str,
        public: &str,
        can_push: bool,
        expires_at: Option<String>,
    ) -> u64 {
        let encoded = project.replace('/', "%2F");
        let mut body = json!({"title": "flux", "key": public, "can_push": can_push});
        if let Some(t) = expires_at {
            body["expires_at"] = json!(t);
        }
        let (status, v) = self
            .api(
                reqwest::Method::POST,
                &format!("/projects/{encoded}/deploy_keys"),
                Some(body),
            )
            .await;
        assert_eq!(status, 201, "{v}");
        v["id"].as_u64().expect("id")
    }

    /// `main`'s commit as git smart HTTP (operator PAT) sees it.
    fn http_head(&self, project: &str) -> String {
        let token = self.world.operator_token().expect("seeded");
        let url = format!(
            "{}/{project}.git",
            self.world
                .gitlab_url()
                .replace("http://", &format!("http://operator:{token}@"))
        );
        let out = std::process::Command::new("git")
            .args(["ls-remote", &url, "refs/heads/main"])
            .output()
            .expect("git");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string()
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn head_of(dir: &Path) -> String {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(dir)
        .output()
        .expect("git");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_key_clones_its_project_and_pushes_only_with_can_push() {
    let e = env().await;
    let (key, public) = e.keypair("flux");
    let key_id = e.add_deploy_key("acme/team-a/app", &public, false, None).await;

    let out = e.clone(&key, "acme/team-a/app", "app");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(head_of(&e.path("app")), e.http_head("acme/team-a/app"));
    // GitLab's `ssh_url_to_repo` off port 22 is the URL that was just cloned.
    let (_, project) = e
        .api(reqwest::Method::GET, "/projects/acme%2Fteam-a%2Fapp", None)
        .await;
    assert_eq!(project["ssh_url_to_repo"], json!(e.url("acme/team-a/app")));

    // Another private project: the key is known but not enabled there.
    let out = e.clone(&key, "acme/team-b/api", "api");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains(&format!("remote: {NOT_FOUND}")), "{err}");
    assert!(err.contains("remote: ========"), "{err}");
    assert!(
        err.contains("fatal: Could not read from remote repository."),
        "{err}"
    );

    // Public projects are readable by any key.
    let out = e.clone(&key, "acme/platform/docs", "docs");
    assert!(out.status.success(), "{}", stderr(&out));

    // Push without can_push is refused and changes nothing.
    let before = e.http_head("acme/team-a/app");
    let out = e.commit_and_push(&key, "app", "refused.txt");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("This deploy key does not have write access to this project."),
        "{}",
        stderr(&out)
    );
    assert_eq!(e.http_head("acme/team-a/app"), before);

    // With can_push the same push lands, visible over HTTP.
    let (status, v) = e
        .api(
            reqwest::Method::PUT,
            &format!("/projects/acme%2Fteam-a%2Fapp/deploy_keys/{key_id}"),
            Some(json!({"can_push": true})),
        )
        .await;
    assert_eq!((status, v["can_push"].clone()), (200, json!(true)));
    let out = e.commit_and_push(&key, "app", "allowed.txt");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(e.http_head("acme/team-a/app"), head_of(&e.path("app")));
    assert_ne!(e.http_head("acme/team-a/app"), before);

    // `ssh -T`: gitlab-shell's greeting for a deploy key.
    let ssh = e.world.ssh().expect("ssh");
    let out = std::process::Command::new("ssh")
        .arg("-i")
        .arg(&key)
        .arg("-p")
        .arg(ssh.port().to_string())
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", e.known_hosts().display()))
        .args([
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-T",
            "git@127.0.0.1",
        ])
        .output()
        .expect("ssh");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "Welcome to GitLab, Anonymous!"
    );

    // Removed from its only project: the key is destroyed and no longer authenticates.
    let (status, _) = e
        .api(
            reqwest::Method::DELETE,
            &format!("/projects/acme%2Fteam-a%2Fapp/deploy_keys/{key_id}"),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let out = e.clone(&key, "acme/team-a/app", "app-again");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("Permission denied (publickey)"),
        "{}",
        stderr(&out)
    );
    e.world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_unknown_and_archived_are_refused_and_host_keys_are_strict() {
    let e = env().await;
    let (key, public) = e.keypair("expiring");
    let tomorrow = (e.world.gitlab.state().now() + chrono::Duration::days(1)).to_rfc3339();
    e.add_deploy_key("acme/team-a/app", &public, true, Some(tomorrow))
        .await;
    let out = e.clone(&key, "acme/team-a/app", "before-expiry");
    assert!(out.status.success(), "{}", stderr(&out));
    e.world.advance_clock(chrono::Duration::days(2)).expect("clock");
    let out = e.clone(&key, "acme/team-a/app", "after-expiry");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("remote: Your SSH key has expired."),
        "{}",
        stderr(&out)
    );

    // A key GitLab never saw.
    let (stranger, _) = e.keypair("stranger");
    let out = e.clone(&stranger, "acme/team-a/app", "stranger-clone");
    assert!(
        stderr(&out).contains("Permission denied (publickey)"),
        "{}",
        stderr(&out)
    );

    // Archived projects refuse pushes even with can_push.
    let (archiver, public) = e.keypair("archiver");
    e.add_deploy_key("acme/platform/legacy", &public, true, None)
        .await;
    let out = e.clone(&archiver, "acme/platform/legacy", "legacy");
    assert!(out.status.success(), "{}", stderr(&out));
    let out = e.commit_and_push(&archiver, "legacy", "x.txt");
    assert!(
        stderr(&out).contains("You can't push code to an archived project."),
        "{}",
        stderr(&out)
    );

    // A known_hosts entry with another key: ssh refuses before authenticating.
    let (_, other_host) = e.keypair("not-the-host");
    let port = e.world.ssh().expect("ssh").port();
    let wrong = e.path("wrong_known_hosts");
    let host_key: Vec<&str> = other_host.split_whitespace().take(2).collect();
    std::fs::write(&wrong, format!("[127.0.0.1]:{port} {}\n", host_key.join(" "))).expect("write");
    let url = e.url("acme/platform/legacy");
    let out = e.git(&archiver, &wrong, e.dir.path(), &["ls-remote", &url]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("Host key verification failed."),
        "{}",
        stderr(&out)
    );
    // The world publishes the right entry for `[127.0.0.1]:PORT`.
    let env_file = e.world.env_file();
    assert!(
        env_file.contains(&format!("GITLAB_SSH_HOST=127.0.0.1:{port}")),
        "{env_file}"
    );
    assert!(
        env_file.contains(e.world.ssh().expect("ssh").host_public_key()),
        "{env_file}"
    );
    e.world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_keys_act_as_their_user() {
    let e = env().await;
    let (key, public) = e.keypair("dana");
    let state = e.world.gitlab.state();
    let dev = state.store().user_by_name("dev").map(|u| u.id).expect("dev");
    state
        .add_user_ssh_key(dev, "laptop", &public, None)
        .expect("add key");
    // Developer on acme/team-a: clone and push.
    let out = e.clone(&key, "acme/team-a/app", "app");
    assert!(out.status.success(), "{}", stderr(&out));
    let out = e.commit_and_push(&key, "app", "dev.txt");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(e.http_head("acme/team-a/app"), head_of(&e.path("app")));
    // No membership in acme/team-b.
    let out = e.clone(&key, "acme/team-b/api", "api");
    assert!(stderr(&out).contains(NOT_FOUND), "{}", stderr(&out));
    // The same key cannot become a deploy key: one fingerprint space.
    let (status, v) = e
        .api(
            reqwest::Method::POST,
            "/projects/acme%2Fteam-b%2Fapi/deploy_keys",
            Some(json!({"title": "dup", "key": public})),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        v,
        json!({"message": {"deploy_key.fingerprint_sha256": ["has already been taken"]}})
    );
    e.world.stop().await;
}
