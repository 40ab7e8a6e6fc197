//! The Flux stand-in against the whole test world: it turns Ready with a correct Secret and
//! reports source-controller's failure reasons and messages for a wrong key set, a wrong Secret
//! type, and a revoked token —
//! reading Secrets exactly as Flux does and fetching with the real protocols.

use std::time::Duration;

use base64::Engine;
use k8s_openapi::{
    ByteString,
    api::core::v1::{Namespace, Secret},
};
use kube::{
    Api, Client,
    api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};
use testbed::world::{World, WorldConfig, fixtures_dir, install_crds};

struct Minted {
    id: u64,
    project_id: u64,
    username: String,
    token: String,
}

async fn mint(world: &World, project: &str, scopes: &[&str]) -> Minted {
    let http = reqwest::Client::new();
    let base = format!("{}/api/v4", world.gitlab_url());
    let pat = world.operator_token().expect("seeded");
    let encoded = project.replace('/', "%2F");
    let p: Value = http
        .get(format!("{base}/projects/{encoded}"))
        .header("PRIVATE-TOKEN", pat)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let project_id = p["id"].as_u64().unwrap();
    let expires = (chrono::Utc::now() + chrono::Duration::days(30))
        .date_naive()
        .to_string();
    let body = json!({"name": "standin-test", "scopes": scopes, "access_level": 20, "expires_at": expires});
    let resp = http
        .post(format!("{base}/projects/{project_id}/access_tokens"))
        .header("PRIVATE-TOKEN", pat)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let t: Value = resp.json().await.unwrap();
    let user_id = t["user_id"].as_u64().unwrap();
    let m: Value = http
        .get(format!("{base}/projects/{project_id}/members/all/{user_id}"))
        .header("PRIVATE-TOKEN", pat)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    Minted {
        id: t["id"].as_u64().unwrap(),
        project_id,
        username: m["username"].as_str().unwrap().into(),
        token: t["token"].as_str().unwrap().into(),
    }
}

async fn revoke(world: &World, m: &Minted) {
    let url = format!(
        "{}/api/v4/projects/{}/access_tokens/{}",
        world.gitlab_url(),
        m.project_id,
        m.id
    );
    let resp = reqwest::Client::new()
        .delete(url)
        .header("PRIVATE-TOKEN", world.operator_token().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
}

fn secret(name: &str, type_: &str, data: &[(&str, String)]) -> Secret {
    Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        type_: Some(type_.into()),
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Default::default()
    }
}

fn docker_config(host: &str, m: &Minted) -> String {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", m.username, m.token));
    json!({"auths": {host: {"username": m.username, "password": m.token, "auth": auth}}}).to_string()
}

fn source_api(client: &Client, ns: &str, kind: &str, plural: &str) -> Api<DynamicObject> {
    let group = if kind == "ImageRepository" {
        "image.toolkit.fluxcd.io"
    } else {
        "source.toolkit.fluxcd.io"
    };
    let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, "v1", kind), plural);
    Api::namespaced_with(client.clone(), ns, &ar)
}

async fn create_source(api: &Api<DynamicObject>, kind: &str, name: &str, spec: Value) {
    let group = if kind == "ImageRepository" {
        "image.toolkit.fluxcd.io"
    } else {
        "source.toolkit.fluxcd.io"
    };
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": format!("{group}/v1"), "kind": kind, "metadata": {"name": name}, "spec": spec
    }))
    .unwrap();
    api.create(&PostParams::default(), &obj).await.unwrap();
}

/// Waits until the source's Ready condition has `status` and returns its reason.
async fn wait_ready(api: &Api<DynamicObject>, name: &str, status: &str) -> (String, String) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    loop {
        let obj = api.get(name).await.unwrap();
        let cond = obj
            .data
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
            .cloned();
        if let Some(c) = &cond
            && c["status"] == status
        {
            return (
                c["reason"].as_str().unwrap_or_default().into(),
                c["message"].as_str().unwrap_or_default().into(),
            );
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} never became Ready={status}: {:?}",
            obj.data.get("status")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn nudge(api: &Api<DynamicObject>, name: &str, value: &str) {
    let patch = json!({"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": value}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

async fn world_with_flux() -> (World, Client, tempfile::TempDir) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("testbed=warn")
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir().unwrap();
    let world = World::start(WorldConfig::new(dir.path()))
        .await
        .expect("world starts");
    let client = world.kube.admin_client().await.unwrap();
    install_crds(&client, &fixtures_dir().join("flux-crds"))
        .await
        .expect("Flux CRDs install");
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "tenant"}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    (world, client, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_repository_ready_with_basic_auth_and_refused_for_wrong_keys_and_revoked_tokens() {
    let (world, client, _dir) = world_with_flux().await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "tenant");
    let git = source_api(&client, "tenant", "GitRepository", "gitrepositories");
    let url = format!("{}/acme/team-a/app.git", world.gitlab_url());

    let m = mint(&world, "acme/team-a/app", &["read_repository"]).await;
    secrets
        .create(
            &PostParams::default(),
            &secret(
                "good",
                "Opaque",
                &[("username", m.username.clone()), ("password", m.token.clone())],
            ),
        )
        .await
        .unwrap();
    create_source(
        &git,
        "GitRepository",
        "app",
        json!({"interval": "1m", "url": url, "ref": {"branch": "main"}, "secretRef": {"name": "good"}}),
    )
    .await;
    let (reason, message) = wait_ready(&git, "app", "True").await;
    assert_eq!(reason, "Succeeded");
    assert!(message.contains("main@sha1:"), "{message}");

    // Flux never reads a `token` key for git: the fetch is anonymous and refused.
    secrets
        .create(
            &PostParams::default(),
            &secret("wrong-keys", "Opaque", &[("token", m.token.clone())]),
        )
        .await
        .unwrap();
    create_source(
        &git,
        "GitRepository",
        "wrong-keys",
        json!({"interval": "1m", "url": url, "ref": {"branch": "main"}, "secretRef": {"name": "wrong-keys"}}),
    )
    .await;
    let (reason, message) = wait_ready(&git, "wrong-keys", "False").await;
    assert_eq!(reason, "GitOperationFailed");
    assert!(
        message.starts_with(&format!(
            "failed to checkout and determine revision: unable to clone '{url}': authentication required"
        )),
        "{message}"
    );

    // Revoked behind the consumer's back: the next reconcile (nudged) fails.
    revoke(&world, &m).await;
    nudge(&git, "app", "after-revoke").await;
    let (reason, message) = wait_ready(&git, "app", "False").await;
    assert_eq!(reason, "GitOperationFailed");
    assert!(
        message.starts_with(&format!(
            "failed to checkout and determine revision: unable to clone '{url}': authentication required"
        )),
        "{message}"
    );
    let obj = git.get("app").await.unwrap();
    assert_eq!(
        obj.data.pointer("/status/lastHandledReconcileAt"),
        Some(&json!("after-revoke"))
    );
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_sources_need_a_dockerconfigjson_secret_and_helm_reads_basic_auth() {
    let (world, client, _dir) = world_with_flux().await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "tenant");
    let host = world.registry_host();
    let m = mint(&world, "acme/team-a/app", &["read_registry"]).await;
    let config = docker_config(&host, &m);
    secrets
        .create(
            &PostParams::default(),
            &secret(
                "pull",
                "kubernetes.io/dockerconfigjson",
                &[(".dockerconfigjson", config.clone())],
            ),
        )
        .await
        .unwrap();
    // The same JSON in an Opaque Secret contributes nothing: anonymous pull, refused.
    secrets
        .create(
            &PostParams::default(),
            &secret("opaque", "Opaque", &[(".dockerconfigjson", config)]),
        )
        .await
        .unwrap();

    let oci = source_api(&client, "tenant", "OCIRepository", "ocirepositories");
    let spec = |secret: &str| json!({"interval": "1m", "url": format!("oci://{host}/acme/team-a/app"), "ref": {"tag": testbed::world::SEED_IMAGE_TAG}, "insecure": true, "secretRef": {"name": secret}});
    create_source(&oci, "OCIRepository", "app", spec("pull")).await;
    create_source(&oci, "OCIRepository", "opaque", spec("opaque")).await;
    let (_, message) = wait_ready(&oci, "app", "True").await;
    assert!(message.contains("sha256:"), "{message}");
    let (reason, message) = wait_ready(&oci, "opaque", "False").await;
    assert_eq!(reason, "OCIArtifactPullFailed");
    assert!(
        message.starts_with("failed to determine artifact digest: GET http://"),
        "{message}"
    );

    let images = source_api(&client, "tenant", "ImageRepository", "imagerepositories");
    create_source(&images, "ImageRepository", "app", json!({"interval": "1m", "image": format!("{host}/acme/team-a/app"), "insecure": true, "secretRef": {"name": "pull"}})).await;
    wait_ready(&images, "app", "True").await;

    let h = mint(&world, "acme/team-b/api", &["read_api"]).await;
    secrets
        .create(
            &PostParams::default(),
            &secret(
                "helm",
                "Opaque",
                &[("username", h.username.clone()), ("password", h.token.clone())],
            ),
        )
        .await
        .unwrap();
    let helm = source_api(&client, "tenant", "HelmRepository", "helmrepositories");
    let helm_url = format!(
        "{}/api/v4/projects/{}/packages/helm/stable",
        world.gitlab_url(),
        h.project_id
    );
    create_source(
        &helm,
        "HelmRepository",
        "charts",
        json!({"interval": "1m", "url": helm_url, "secretRef": {"name": "helm"}}),
    )
    .await;
    wait_ready(&helm, "charts", "True").await;
    // A registry-only token is refused by the Helm package registry (403: the scope is too small).
    secrets
        .create(
            &PostParams::default(),
            &secret(
                "helm-wrong-scope",
                "Opaque",
                &[("username", m.username.clone()), ("password", m.token.clone())],
            ),
        )
        .await
        .unwrap();
    create_source(
        &helm,
        "HelmRepository",
        "wrong-scope",
        json!({"interval": "1m", "url": helm_url, "secretRef": {"name": "helm-wrong-scope"}}),
    )
    .await;
    let (reason, message) = wait_ready(&helm, "wrong-scope", "False").await;
    assert_eq!(reason, "Failed");
    assert_eq!(
        message,
        format!(
            "failed to fetch Helm repository index: failed to cache index to temporary file: failed to fetch {helm_url}/index.yaml : 403 Forbidden"
        )
    );
    world.stop().await;
}
