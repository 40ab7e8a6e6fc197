//! Every consumer kind gets the right Secret, the Secret works with the real client (git, skopeo,
//! the Helm index over HTTP, the GitLab API), the same Secret is refused for a scope it was not
//! given, the Flux stand-in (which reads Secrets exactly as Flux does) reports Ready, and two
//! sources with equal needs share one token.

mod e2e;

use std::collections::BTreeSet;

use base64::Engine;
use e2e::{Env, eventually, provider_crd};
use gitlab_token_operator::crd::GitLabToken;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, ResourceExt};
use serde_json::{Value, json};
use testbed::gitlab::TokenRecord;

const NS: &str = "team-a";
const REPORTER: u32 = 20;

/// Waits for the GitLabToken behind `secret` to be Ready and returns it with its Secret.
async fn issued(env: &Env, secret: &str) -> (GitLabToken, Secret) {
    let token = env
        .wait_token_condition(NS, secret, "Ready", "True", Some("Issued"))
        .await;
    // Ready means the write-ahead record is gone from the stored status, not just in memory.
    let status = token.status.as_ref().expect("status");
    assert!(status.pending.is_none(), "pending left in status: {status:?}");
    (token, env.wait_secret(NS, secret).await)
}

/// The GitLab record of the token a GitLabToken currently holds.
fn gitlab_record(env: &Env, token: &GitLabToken) -> TokenRecord {
    let id = token
        .status
        .as_ref()
        .and_then(|s| s.current.as_ref())
        .map(|c| c.token_id)
        .expect("current token");
    env.world
        .gitlab
        .tokens()
        .into_iter()
        .find(|t| t.id == id && t.kind == "project")
        .expect("GitLab knows the token")
}

/// Type, keys, ownership labels, and the GitLab token's project, scopes and role.
fn check_shape(
    env: &Env,
    token: &GitLabToken,
    secret: &Secret,
    type_: &str,
    keys: &[&str],
    project: &str,
    scopes: &[&str],
) -> TokenRecord {
    assert_eq!(secret.type_.as_deref(), Some(type_), "Secret type");
    let got: BTreeSet<&str> = secret
        .data
        .as_ref()
        .map(|d| d.keys().map(String::as_str).collect())
        .unwrap_or_default();
    assert_eq!(got, keys.iter().copied().collect(), "Secret keys");
    let labels = secret.labels();
    assert_eq!(
        labels.get("app.kubernetes.io/managed-by").map(String::as_str),
        Some("gitlab-token-operator")
    );
    assert_eq!(
        labels.get("gitlabtokens.io/token"),
        Some(&token.name_any()),
        "ownership label names the GitLabToken"
    );
    let record = gitlab_record(env, token);
    assert_eq!(record.resource.as_deref(), Some(project));
    assert_eq!(record.scopes, scopes, "GitLab token scopes");
    assert_eq!(record.access_level, Some(REPORTER));
    assert_eq!(record.state, "active");
    // GitLab ignores the username for access tokens; the Secret names the project's bot family.
    let bot = &token.status.as_ref().unwrap().current.as_ref().unwrap().bot_user;
    assert!(
        record.username.starts_with(&format!("{bot}_")),
        "the token's bot user {} is one of {bot}_*",
        record.username
    );
    record
}

/// `git clone` over HTTP with basic credentials; `Ok` when it cloned, `Err(stderr)` otherwise.
async fn git_clone(env: &Env, project: &str, user: &str, pass: &str) -> Result<(), String> {
    let url = format!("{}/{project}.git", env.world.gitlab_url());
    let authed = url.replacen("http://", &format!("http://{user}:{pass}@"), 1);
    let dir = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new("git")
        .args(["-c", "credential.helper=", "clone", "-q", &authed, "repo"])
        .current_dir(dir.path())
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .await
        .expect("git runs");
    if out.status.success() {
        assert!(dir.path().join("repo/.git").exists(), "a clone has a .git");
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// `skopeo inspect` of `<registry>/<image>` with either an authfile or `user:pass` creds.
async fn skopeo_inspect(env: &Env, image: &str, auth: SkopeoAuth<'_>) -> Result<Value, String> {
    skopeo(env, image, auth, false).await
}

/// `skopeo inspect` (`--raw`: the manifest itself, which works for non-image artifacts too).
async fn skopeo(env: &Env, image: &str, auth: SkopeoAuth<'_>, raw: bool) -> Result<Value, String> {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = tokio::process::Command::new("skopeo");
    cmd.args(["inspect", "--tls-verify=false"]);
    if raw {
        cmd.arg("--raw");
    }
    match auth {
        SkopeoAuth::File(json) => {
            let path = dir.path().join("auth.json");
            std::fs::write(&path, json).unwrap();
            cmd.arg("--authfile").arg(&path);
        }
        SkopeoAuth::Creds(user, pass) => {
            // An empty authfile so no ambient credentials are used.
            let path = dir.path().join("auth.json");
            std::fs::write(&path, "{}").unwrap();
            cmd.arg("--authfile").arg(&path);
            cmd.arg("--creds").arg(format!("{user}:{pass}"));
        }
    }
    let out = cmd
        .arg(format!("docker://{}/{image}", env.world.registry_host()))
        .env("HOME", dir.path())
        .output()
        .await
        .expect("skopeo runs");
    if out.status.success() {
        serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

enum SkopeoAuth<'a> {
    File(&'a str),
    Creds(&'a str, &'a str),
}

/// GET the Helm index of `acme/team-b/api` (channel stable) with basic auth: status and body.
async fn helm_index(env: &Env, user: &str, pass: &str) -> (u16, String) {
    let url = format!(
        "{}/api/v4/projects/acme%2Fteam-b%2Fapi/packages/helm/stable/index.yaml",
        env.world.gitlab_url()
    );
    let r = reqwest::Client::new()
        .get(url)
        .basic_auth(user, Some(pass))
        .send()
        .await
        .expect("GitLab answers");
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

/// GET /api/v4/projects/:id with `PRIVATE-TOKEN`: status and JSON body.
async fn api_project(env: &Env, project: &str, token: &str) -> (u16, Value) {
    let url = format!(
        "{}/api/v4/projects/{}",
        env.world.gitlab_url(),
        project.replace('/', "%2F")
    );
    let r = reqwest::Client::new()
        .get(url)
        .header("PRIVATE-TOKEN", token)
        .send()
        .await
        .expect("GitLab answers");
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// The single `auths` entry of a dockerconfigjson Secret: (registry key, username, password).
fn docker_auth(env: &Env, secret: &Secret) -> (String, String, String, String) {
    let raw = Env::secret_value(secret, ".dockerconfigjson");
    let cfg: Value = serde_json::from_str(&raw).expect(".dockerconfigjson is JSON");
    let auths = cfg["auths"].as_object().expect("auths");
    assert_eq!(auths.len(), 1, "one registry entry");
    let (host, entry) = auths.iter().next().unwrap();
    assert_eq!(
        host,
        &env.world.registry_host(),
        "keyed by the bare registry host"
    );
    let (user, pass) = (
        entry["username"].as_str().unwrap().to_string(),
        entry["password"].as_str().unwrap().to_string(),
    );
    let auth = base64::engine::general_purpose::STANDARD
        .decode(entry["auth"].as_str().unwrap())
        .unwrap();
    assert_eq!(String::from_utf8(auth).unwrap(), format!("{user}:{pass}"));
    (host.clone(), user, pass, raw)
}

fn annotated(api_version: &str, kind: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": api_version, "kind": kind,
        "metadata": {"name": name, "namespace": NS, "annotations": {"gitlabtokens.io/inject": "true"}},
        "spec": spec})
}

fn no_leak(env: &Env, secret_value: &str) {
    assert!(
        !env.operator_logs().contains(secret_value),
        "the token value leaked into the operator's logs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_repository_gets_basic_auth_that_clones_and_nothing_else() {
    let env = Env::start().await;
    let url = format!("{}/acme/team-a/app.git", env.world.gitlab_url());
    env.apply(annotated(
        "source.toolkit.fluxcd.io/v1",
        "GitRepository",
        "app",
        json!({"interval": "1m", "url": url, "ref": {"branch": "main"}}),
    ))
    .await;
    let (token, secret) = issued(&env, "app-gitlab-token").await;
    check_shape(
        &env,
        &token,
        &secret,
        "Opaque",
        &["username", "password"],
        "acme/team-a/app",
        &["read_repository"],
    );
    let (user, pass) = (
        Env::secret_value(&secret, "username"),
        Env::secret_value(&secret, "password"),
    );
    git_clone(&env, "acme/team-a/app", &user, &pass)
        .await
        .expect("git clone with the Secret");
    // Not given write_repository, read_registry, read_api or api: push, the registry and the
    // API refuse it.
    let push = env.git_push("acme/team-a/app", &user, &pass, "e2e-push").await;
    assert!(
        push.as_ref()
            .is_err_and(|e| e.contains("not allowed to upload code") || e.contains("403")),
        "a read_repository token pushed: {push:?}"
    );
    let refused = skopeo_inspect(&env, "acme/team-a/app:1.0.0", SkopeoAuth::Creds(&user, &pass)).await;
    assert!(refused.is_err(), "a read_repository token pulled an image");
    let (status, _) = api_project(&env, "acme/team-a/app", &pass).await;
    assert_eq!(status, 403, "a read_repository token used the API");
    env.wait_flux_ready(NS, "source.toolkit.fluxcd.io/v1", "GitRepository", "app")
        .await;
    no_leak(&env, &pass);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_repository_gets_read_api_basic_auth_for_the_index() {
    let env = Env::start().await;
    let url = format!(
        "{}/api/v4/projects/acme%2Fteam-b%2Fapi/packages/helm/stable",
        env.world.gitlab_url()
    );
    env.apply(annotated(
        "source.toolkit.fluxcd.io/v1",
        "HelmRepository",
        "charts",
        json!({"interval": "1m", "url": url}),
    ))
    .await;
    let (token, secret) = issued(&env, "charts-gitlab-token").await;
    check_shape(
        &env,
        &token,
        &secret,
        "Opaque",
        &["username", "password"],
        "acme/team-b/api",
        &["read_api"],
    );
    let (user, pass) = (
        Env::secret_value(&secret, "username"),
        Env::secret_value(&secret, "password"),
    );
    let (status, index) = helm_index(&env, &user, &pass).await;
    assert_eq!(status, 200, "Helm index with the Secret: {index}");
    assert!(
        index.contains("api:") && index.contains("version: 0.1.0"),
        "the index lists chart api 0.1.0: {index}"
    );
    // Not given read_repository or read_registry.
    let clone = git_clone(&env, "acme/team-b/api", &user, &pass).await;
    assert!(clone.is_err(), "a read_api token cloned");
    let refused = skopeo_inspect(&env, "acme/team-b/api:1.0.0", SkopeoAuth::Creds(&user, &pass)).await;
    assert!(refused.is_err(), "a read_api token pulled an image");
    env.wait_flux_ready(NS, "source.toolkit.fluxcd.io/v1", "HelmRepository", "charts")
        .await;
    no_leak(&env, &pass);
    env.stop().await;
}

/// Checks a registry consumer's dockerconfigjson: skopeo reads `image` with it (a Helm chart is
/// not an image: its manifest is read with `--raw`); git and the Helm index refuse its
/// credentials (no read_repository, no read_api).
async fn check_registry_secret(
    env: &Env,
    secret: &Secret,
    project: &str,
    image: &str,
    chart: bool,
) -> String {
    let (_, user, pass, raw) = docker_auth(env, secret);
    let inspected = skopeo(env, image, SkopeoAuth::File(&raw), chart)
        .await
        .expect("skopeo inspect with the Secret's authfile");
    if chart {
        assert_eq!(
            inspected["config"]["mediaType"], "application/vnd.cncf.helm.config.v1+json",
            "skopeo read the chart's manifest: {inspected}"
        );
    } else {
        assert!(
            inspected["Digest"]
                .as_str()
                .is_some_and(|d| d.starts_with("sha256:")),
            "skopeo saw a manifest: {inspected}"
        );
    }
    // Without the Secret the registry refuses the same read (it is not public).
    let anonymous = skopeo(env, image, SkopeoAuth::File("{}"), chart).await;
    assert!(anonymous.is_err(), "the registry served {image} anonymously");
    let clone = git_clone(env, project, &user, &pass).await;
    assert!(clone.is_err(), "a read_registry token cloned");
    let (status, _) = helm_index(env, &user, &pass).await;
    assert_eq!(status, 403, "a read_registry token read the Helm index");
    pass
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_repository_oci_gets_a_docker_config_that_pulls_the_chart() {
    let env = Env::start().await;
    let url = format!("oci://{}/acme/team-b/api", env.world.registry_host());
    env.apply(annotated(
        "source.toolkit.fluxcd.io/v1",
        "HelmRepository",
        "oci-charts",
        json!({"interval": "1m", "type": "oci", "url": url, "insecure": true}),
    ))
    .await;
    let (token, secret) = issued(&env, "oci-charts-gitlab-token").await;
    check_shape(
        &env,
        &token,
        &secret,
        "kubernetes.io/dockerconfigjson",
        &[".dockerconfigjson"],
        "acme/team-b/api",
        &["read_registry"],
    );
    let pass = check_registry_secret(
        &env,
        &secret,
        "acme/team-b/api",
        "acme/team-b/api/api:0.1.0",
        true,
    )
    .await;
    env.wait_flux_ready(NS, "source.toolkit.fluxcd.io/v1", "HelmRepository", "oci-charts")
        .await;
    no_leak(&env, &pass);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oci_repository_gets_a_docker_config_that_pulls_the_artifact() {
    let env = Env::start().await;
    let url = format!("oci://{}/acme/team-a/app", env.world.registry_host());
    env.apply(annotated(
        "source.toolkit.fluxcd.io/v1",
        "OCIRepository",
        "app-oci",
        json!({"interval": "1m", "url": url, "ref": {"tag": "1.0.0"}, "insecure": true}),
    ))
    .await;
    let (token, secret) = issued(&env, "app-oci-gitlab-token").await;
    check_shape(
        &env,
        &token,
        &secret,
        "kubernetes.io/dockerconfigjson",
        &[".dockerconfigjson"],
        "acme/team-a/app",
        &["read_registry"],
    );
    let pass = check_registry_secret(&env, &secret, "acme/team-a/app", "acme/team-a/app:1.0.0", false).await;
    env.wait_flux_ready(NS, "source.toolkit.fluxcd.io/v1", "OCIRepository", "app-oci")
        .await;
    no_leak(&env, &pass);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_repository_below_a_project_gets_a_docker_config_for_that_project() {
    let env = Env::start().await;
    let image = format!("{}/acme/team-b/api/worker", env.world.registry_host());
    env.apply(annotated(
        "image.toolkit.fluxcd.io/v1",
        "ImageRepository",
        "worker",
        json!({"interval": "1m", "image": image, "insecure": true}),
    ))
    .await;
    let (token, secret) = issued(&env, "worker-gitlab-token").await;
    // The image sits below the project: the token is for the longest prefix that is a project.
    check_shape(
        &env,
        &token,
        &secret,
        "kubernetes.io/dockerconfigjson",
        &[".dockerconfigjson"],
        "acme/team-b/api",
        &["read_registry"],
    );
    let pass = check_registry_secret(
        &env,
        &secret,
        "acme/team-b/api",
        "acme/team-b/api/worker:1.0.0",
        false,
    )
    .await;
    env.wait_flux_ready(NS, "image.toolkit.fluxcd.io/v1", "ImageRepository", "worker")
        .await;
    no_leak(&env, &pass);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitlab_provider_gets_an_api_token_that_works_on_its_project_only() {
    let env = Env::start_with(e2e::Options {
        extra: vec![provider_crd()],
        ..Default::default()
    })
    .await;
    let address = format!("{}/acme/team-a/app", env.world.gitlab_url());
    env.apply(annotated(
        "notification.toolkit.fluxcd.io/v1beta3",
        "Provider",
        "gitlab-status",
        json!({"type": "gitlab", "address": address}),
    ))
    .await;
    let (token, secret) = issued(&env, "gitlab-status-gitlab-token").await;
    check_shape(
        &env,
        &token,
        &secret,
        "Opaque",
        &["token"],
        "acme/team-a/app",
        &["api"],
    );
    let value = Env::secret_value(&secret, "token");
    let (status, body) = api_project(&env, "acme/team-a/app", &value).await;
    assert_eq!(status, 200, "GET /projects/:id with the Provider's token: {body}");
    assert_eq!(body["path_with_namespace"], "acme/team-a/app");
    // A project access token is confined to its project, whatever its scope.
    let (status, _) = api_project(&env, "acme/team-b/api", &value).await;
    assert_eq!(status, 404, "the Provider's token reached another project");
    // The shim pointed the Provider at its Secret (Flux's notification-controller reads spec.secretRef).
    let providers = env
        .flux_api(NS, "notification.toolkit.fluxcd.io/v1beta3", "Provider")
        .await;
    let p = providers.get("gitlab-status").await.unwrap();
    assert_eq!(
        p.data.pointer("/spec/secretRef/name"),
        Some(&json!("gitlab-status-gitlab-token"))
    );
    no_leak(&env, &value);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sources_with_equal_needs_share_one_gitlab_token() {
    let env = Env::start().await;
    let url = format!("{}/acme/team-a/app.git", env.world.gitlab_url());
    for name in ["app-main", "app-release"] {
        let mut source = annotated(
            "source.toolkit.fluxcd.io/v1",
            "GitRepository",
            name,
            json!({"interval": "1m", "url": url, "ref": {"branch": "main"}}),
        );
        source["metadata"]["annotations"]["gitlabtokens.io/secret-name"] = json!("app-git");
        env.apply(source).await;
    }
    let api: Api<GitLabToken> = Api::namespaced(env.client.clone(), NS);
    let token = eventually("one GitLabToken owned by both sources", || {
        let api = api.clone();
        async move {
            let t = api.get_opt("app-git").await.ok().flatten()?;
            let owners: BTreeSet<String> = t.owner_references().iter().map(|o| o.name.clone()).collect();
            (owners == ["app-main".to_string(), "app-release".to_string()].into()).then_some(t)
        }
    })
    .await;
    assert_eq!(token.spec.consumers.len(), 2, "both sources are consumers");
    let (token, secret) = issued(&env, "app-git").await;
    for name in ["app-main", "app-release"] {
        env.wait_flux_ready(NS, "source.toolkit.fluxcd.io/v1", "GitRepository", name)
            .await;
    }
    let all = api.list(&Default::default()).await.unwrap();
    assert_eq!(
        all.items.iter().map(|t| t.name_any()).collect::<Vec<_>>(),
        ["app-git"],
        "exactly one GitLabToken"
    );
    let minted = env.all_operator_tokens();
    assert_eq!(minted.len(), 1, "exactly one GitLab token: {minted:?}");
    assert_eq!(minted[0].id, gitlab_record(&env, &token).id);
    git_clone(
        &env,
        "acme/team-a/app",
        &Env::secret_value(&secret, "username"),
        &Env::secret_value(&secret, "password"),
    )
    .await
    .expect("the shared Secret clones");

    // Deleting one source keeps the shared token as it is; deleting the last one revokes it.
    let git = env
        .flux_api(NS, "source.toolkit.fluxcd.io/v1", "GitRepository")
        .await;
    env.delete(&git, "app-main").await;
    eventually("the GitLabToken to serve app-release only", || {
        let api = api.clone();
        async move {
            let t = api.get_opt("app-git").await.ok().flatten()?;
            let owners: Vec<String> = t.owner_references().iter().map(|o| o.name.clone()).collect();
            (owners == ["app-release"] && t.spec.consumers.len() == 1).then_some(())
        }
    })
    .await;
    let live: Vec<u64> = env.active_operator_tokens().iter().map(|t| t.id).collect();
    assert_eq!(live, [minted[0].id], "the same token keeps serving");
    env.delete(&git, "app-release").await;
    eventually("the GitLabToken to be deleted", || {
        let api = api.clone();
        async move { api.get_opt("app-git").await.ok()?.is_none().then_some(()) }
    })
    .await;
    let revoked = env
        .all_operator_tokens()
        .into_iter()
        .find(|t| t.id == minted[0].id)
        .expect("GitLab lists the token");
    assert_eq!(revoked.state, "revoked", "the last source went away");
    env.stop().await;
}
