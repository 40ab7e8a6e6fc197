//! Deploy tokens and group access tokens minted through the REST API, used with the real clients
//! against the whole test world: `git` over HTTP, `skopeo` through `/jwt/auth`, and `curl` on the
//! Helm package registry. A project deploy token reaches its project only; a group deploy token
//! or group access token reaches every project below the group and nothing outside it.

use std::path::{Path, PathBuf};
use std::process::Output;

use base64::Engine as _;
use serde_json::{Value, json};
use testbed::world::{SEED_CHART_CHANNEL, SEED_IMAGE_TAG, World, WorldConfig};

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
    Env {
        world,
        dir,
        http: reqwest::Client::new(),
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

impl Env {
    async fn post(&self, path: &str, body: Value) -> Value {
        let resp = self
            .http
            .post(format!("{}/api/v4{path}", self.world.gitlab_url()))
            .header("PRIVATE-TOKEN", self.world.operator_token().expect("seeded"))
            .json(&body)
            .send()
            .await
            .expect("request");
        let status = resp.status().as_u16();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        assert!(status == 200 || status == 201, "{path}: {status} {v}");
        v
    }

    async fn delete(&self, path: &str) {
        let resp = self
            .http
            .delete(format!("{}/api/v4{path}", self.world.gitlab_url()))
            .header("PRIVATE-TOKEN", self.world.operator_token().expect("seeded"))
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), 204, "{path}");
    }

    fn project_id(&self, path: &str) -> u64 {
        self.world
            .seed
            .as_ref()
            .and_then(|s| s.projects.iter().find(|p| p.path == path))
            .map(|p| p.id)
            .expect("seeded project")
    }

    /// `git ls-remote` over HTTP with Basic credentials in the URL.
    fn git_ls_remote(&self, user: &str, token: &str, project: &str) -> Output {
        let url = format!(
            "{}/{project}.git",
            self.world.gitlab_url().replace(
                "http://",
                &format!("http://{}:{token}@", user.replace('+', "%2B"))
            )
        );
        std::process::Command::new("git")
            .args(["-c", "credential.helper=", "ls-remote", &url, "refs/heads/main"])
            .env("GIT_TERMINAL_PROMPT", "0")
            .output()
            .expect("git")
    }

    /// Pushes a new commit to `project` over HTTP with these credentials.
    fn git_push(&self, user: &str, token: &str, project: &str) -> Output {
        let url = format!(
            "{}/{project}.git",
            self.world.gitlab_url().replace(
                "http://",
                &format!("http://{}:{token}@", user.replace('+', "%2B"))
            )
        );
        let work = self
            .dir
            .path()
            .join(format!("push-{}", project.replace('/', "-")));
        let git = |args: &[&str], cwd: &Path| {
            std::process::Command::new("git")
                .args(args)
                .current_dir(cwd)
                .env("GIT_TERMINAL_PROMPT", "0")
                .env("GIT_AUTHOR_NAME", "t")
                .env("GIT_AUTHOR_EMAIL", "t@example.com")
                .env("GIT_COMMITTER_NAME", "t")
                .env("GIT_COMMITTER_EMAIL", "t@example.com")
                .output()
                .expect("git")
        };
        assert!(
            git(&["init", "-q", &work.to_string_lossy()], self.dir.path())
                .status
                .success()
        );
        std::fs::write(work.join("f.txt"), "x").expect("write");
        assert!(git(&["add", "f.txt"], &work).status.success());
        assert!(git(&["commit", "-q", "-m", "x"], &work).status.success());
        git(
            &[
                "-c",
                "credential.helper=",
                "push",
                &url,
                "HEAD:refs/heads/deploy-token",
            ],
            &work,
        )
    }

    fn authfile(&self, name: &str, user: &str, token: &str) -> PathBuf {
        let path = self.dir.path().join(format!("{name}.json"));
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{token}"));
        let body = json!({"auths": {self.world.registry_host(): {"auth": auth}}});
        std::fs::write(&path, body.to_string()).expect("write");
        path
    }

    /// `skopeo inspect` of the seeded image of `project`.
    fn skopeo(&self, authfile: &Path, project: &str) -> Output {
        let image = format!(
            "docker://{}/{project}:{SEED_IMAGE_TAG}",
            self.world.registry_host()
        );
        std::process::Command::new("skopeo")
            .args(["--insecure-policy", "inspect", "--tls-verify=false", "--authfile"])
            .arg(authfile)
            .arg(&image)
            .output()
            .expect("skopeo")
    }

    /// `skopeo copy` of the seeded image of `project` to tag `tag` of the same repository.
    fn skopeo_push(&self, authfile: &Path, project: &str, tag: &str) -> Output {
        let repo = format!("docker://{}/{project}", self.world.registry_host());
        std::process::Command::new("skopeo")
            .args([
                "--insecure-policy",
                "copy",
                "--src-tls-verify=false",
                "--dest-tls-verify=false",
            ])
            .arg("--authfile")
            .arg(authfile)
            .arg(format!("{repo}:{SEED_IMAGE_TAG}"))
            .arg(format!("{repo}:{tag}"))
            .output()
            .expect("skopeo")
    }

    /// `curl` of the Helm index of `project` with Basic credentials; returns (status, body).
    fn helm_index(&self, user: &str, token: &str, project: &str) -> (String, String) {
        let url = format!(
            "{}/api/v4/projects/{}/packages/helm/{SEED_CHART_CHANNEL}/index.yaml",
            self.world.gitlab_url(),
            self.project_id(project)
        );
        let out = std::process::Command::new("curl")
            .args([
                "-sS",
                "-o",
                "-",
                "-w",
                "\n%{http_code}",
                "-u",
                &format!("{user}:{token}"),
                &url,
            ])
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or_default();
        (code.to_string(), body.to_string())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn project_deploy_token_reaches_its_project_only_with_its_username() {
    let e = env().await;
    let t = e
        .post(
            "/projects/acme%2Fteam-a%2Fapp/deploy_tokens",
            json!({"name": "flux", "scopes": ["read_repository", "read_registry"]}),
        )
        .await;
    let (user, token) = (
        t["username"].as_str().expect("u"),
        t["token"].as_str().expect("t"),
    );
    assert_eq!(user, format!("gitlab+deploy-token-{}", t["id"]));

    let out = e.git_ls_remote(user, token, "acme/team-a/app");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !e.git_ls_remote("someone-else", token, "acme/team-a/app")
            .status
            .success()
    );
    let out = e.git_ls_remote(user, token, "acme/team-b/api");
    assert!(!out.status.success());
    // Deploy tokens have no Git push scope.
    let out = e.git_push(user, token, "acme/team-a/app");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("You are not allowed to upload code."),
        "{}",
        stderr(&out)
    );

    let auth = e.authfile("project-token", user, token);
    let out = e.skopeo(&auth, "acme/team-a/app");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!e.skopeo(&auth, "acme/team-b/api").status.success());
    // The wrong username is refused by /jwt/auth too.
    let wrong = e.authfile("wrong-user", "someone-else", token);
    assert!(!e.skopeo(&wrong, "acme/team-a/app").status.success());
    // Without write_registry the push is denied; with read_registry + write_registry it lands.
    let out = e.skopeo_push(&auth, "acme/team-a/app", "pushed");
    assert!(!out.status.success());
    let writer = e
        .post(
            "/projects/acme%2Fteam-a%2Fapp/deploy_tokens",
            json!({"name": "ci-push", "scopes": ["read_registry", "write_registry"]}),
        )
        .await;
    let writer_auth = e.authfile(
        "writer",
        writer["username"].as_str().expect("u"),
        writer["token"].as_str().expect("t"),
    );
    let out = e.skopeo_push(&writer_auth, "acme/team-a/app", "pushed");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !e.skopeo_push(&writer_auth, "acme/team-b/api", "pushed")
            .status
            .success()
    );
    // No read_package_registry: the Helm endpoint answers 403.
    let (code, _) = e.helm_index(user, token, "acme/platform/charts");
    assert_eq!(code, "403");

    // Deleted (GitLab's revoke for deploy tokens): every client is refused at once.
    e.delete(&format!(
        "/projects/acme%2Fteam-a%2Fapp/deploy_tokens/{}",
        t["id"]
    ))
    .await;
    assert!(!e.git_ls_remote(user, token, "acme/team-a/app").status.success());
    assert!(!e.skopeo(&auth, "acme/team-a/app").status.success());
    e.world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_deploy_token_covers_subgroup_projects_and_nothing_outside() {
    let e = env().await;
    let t = e
        .post(
            "/groups/acme/deploy_tokens",
            json!({"name": "acme-pull", "username": "acme-pull",
                   "scopes": ["read_repository", "read_registry", "read_package_registry"]}),
        )
        .await;
    let token = t["token"].as_str().expect("token");
    assert_eq!(t["username"], json!("acme-pull"));
    let resp = e
        .http
        .post(format!(
            "{}/api/v4/groups/acme/deploy_tokens",
            e.world.gitlab_url()
        ))
        .header("PRIVATE-TOKEN", e.world.operator_token().expect("seeded"))
        .json(&json!({"name": "bad", "username": "bad name!", "scopes": ["read_registry"]}))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 400);
    assert_eq!(
        resp.json::<Value>().await.expect("json"),
        json!({"message": "Username can contain only letters, digits, '_', '-', '+', and '.'"})
    );
    for project in ["acme/team-a/app", "acme/team-b/api", "acme/platform/infra"] {
        let out = e.git_ls_remote("acme-pull", token, project);
        assert!(out.status.success(), "{project}: {}", stderr(&out));
    }
    assert!(
        !e.git_ls_remote("acme-pull", token, "other-org/secret-project")
            .status
            .success()
    );
    let auth = e.authfile("group-token", "acme-pull", token);
    for project in ["acme/team-a/app", "acme/team-b/api"] {
        let out = e.skopeo(&auth, project);
        assert!(out.status.success(), "{project}: {}", stderr(&out));
    }
    let (code, body) = e.helm_index("acme-pull", token, "acme/platform/charts");
    assert_eq!(code, "200", "{body}");
    assert!(body.contains("charts-") || body.contains("charts/"), "{body}");
    let (code, _) = e.helm_index("acme-pull", token, "acme/team-b/api");
    assert_eq!(code, "200");
    let (code, _) = e.helm_index("acme-pull", token, "other-org/secret-project");
    assert_eq!(code, "404");
    e.delete(&format!("/groups/acme/deploy_tokens/{}", t["id"])).await;
    let (code, _) = e.helm_index("acme-pull", token, "acme/platform/charts");
    assert_eq!(code, "401");
    e.world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_access_token_serves_the_groups_projects_and_survives_rotation() {
    let e = env().await;
    let expires = (e.world.gitlab.state().now() + chrono::Duration::days(30)).date_naive();
    let t = e
        .post(
            "/groups/acme%2Fplatform/access_tokens",
            json!({"name": "platform-flux", "scopes": ["read_repository", "read_registry", "read_api"],
                   "access_level": 20, "expires_at": expires.to_string()}),
        )
        .await;
    let token = t["token"].as_str().expect("token").to_string();
    // Any non-empty username works for access tokens.
    for project in ["acme/platform/infra", "acme/platform/charts"] {
        let out = e.git_ls_remote("flux", &token, project);
        assert!(out.status.success(), "{project}: {}", stderr(&out));
    }
    let out = e.git_ls_remote("flux", &token, "acme/team-a/app");
    assert!(!out.status.success());
    let auth = e.authfile("grat", "flux", &token);
    let out = e.skopeo(&auth, "acme/platform/infra");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!e.skopeo(&auth, "acme/team-a/app").status.success());
    let (code, _) = e.helm_index("flux", &token, "acme/platform/charts");
    assert_eq!(code, "200");
    let (code, _) = e.helm_index("flux", &token, "acme/team-b/api");
    assert_eq!(code, "404");

    // Rotation: the old secret dies at once, the new one reaches the same projects.
    let rotated = e
        .post(
            &format!("/groups/acme%2Fplatform/access_tokens/{}/rotate", t["id"]),
            json!({"expires_at": expires.to_string()}),
        )
        .await;
    let new_token = rotated["token"].as_str().expect("token").to_string();
    assert_eq!(rotated["user_id"], t["user_id"]);
    assert!(
        !e.git_ls_remote("flux", &token, "acme/platform/infra")
            .status
            .success()
    );
    assert!(
        e.git_ls_remote("flux", &new_token, "acme/platform/charts")
            .status
            .success()
    );
    e.delete(&format!(
        "/groups/acme%2Fplatform/access_tokens/{}",
        rotated["id"]
    ))
    .await;
    assert!(
        !e.git_ls_remote("flux", &new_token, "acme/platform/charts")
            .status
            .success()
    );
    e.world.stop().await;
}
