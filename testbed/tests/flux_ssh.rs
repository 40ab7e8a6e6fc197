//! The Flux stand-in on `ssh://` GitRepositories, against the whole test world with real git and
//! OpenSSH: a Secret with `identity`, `identity.pub` and `known_hosts` for a registered deploy
//! key turns Ready; a missing `known_hosts` or `identity`, a wrong host key and a project the key
//! is not enabled on fail as source-controller reports them.

use std::time::Duration;

use k8s_openapi::{
    ByteString,
    api::core::v1::{Namespace, Secret},
};
use kube::{
    Api, Client,
    api::{ApiResource, DynamicObject, GroupVersionKind, PostParams},
};
use serde_json::{Value, json};
use testbed::world::{World, WorldConfig, fixtures_dir, install_crds};

fn secret(name: &str, data: &[(&str, &str)]) -> Secret {
    Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Default::default()
    }
}

/// Waits until the GitRepository's Ready condition has `status`; returns (reason, message).
async fn wait_ready(api: &Api<DynamicObject>, name: &str, status: &str) -> (String, String) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    loop {
        let obj = api.get(name).await.expect("get");
        let cond = obj
            .data
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
            .cloned();
        if let Some(c) = cond.filter(|c| c["status"] == status) {
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

fn keypair(dir: &std::path::Path, name: &str) -> (String, String) {
    let path = dir.join(name);
    let out = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&path)
        .output()
        .expect("ssh-keygen");
    assert!(out.status.success());
    (
        std::fs::read_to_string(&path).expect("private"),
        std::fs::read_to_string(path.with_extension("pub")).expect("public"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_git_repository_reads_identity_and_known_hosts_like_flux() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().expect("tempdir");
    let world = World::start(WorldConfig::new(dir.path().join("state")))
        .await
        .expect("world");
    let ssh = world.ssh().expect("Git over SSH must run here (make deps)");
    let client: Client = world.kube.admin_client().await.expect("client");
    install_crds(&client, &fixtures_dir().join("flux-crds"))
        .await
        .expect("Flux CRDs");
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "tenant"}})).expect("ns");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("namespace");

    let (identity, public) = keypair(dir.path(), "flux");
    let resp = reqwest::Client::new()
        .post(format!(
            "{}/api/v4/projects/acme%2Fteam-a%2Fapp/deploy_keys",
            world.gitlab_url()
        ))
        .header("PRIVATE-TOKEN", world.operator_token().expect("seeded"))
        .json(&json!({"title": "flux-tenant", "key": public.trim()}))
        .send()
        .await
        .expect("deploy key");
    assert_eq!(resp.status(), 201);

    let known_hosts = ssh.known_hosts();
    let (_, other) = keypair(dir.path(), "other-host");
    let other_host: Vec<&str> = other.split_whitespace().take(2).collect();
    let wrong_known_hosts = format!("[127.0.0.1]:{} {}\n", ssh.port(), other_host.join(" "));
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "tenant");
    for s in [
        secret(
            "good",
            &[
                ("identity", &identity),
                ("identity.pub", &public),
                ("known_hosts", &known_hosts),
            ],
        ),
        secret(
            "no-known-hosts",
            &[("identity", &identity), ("identity.pub", &public)],
        ),
        secret(
            "pub-only",
            &[("identity.pub", &public), ("known_hosts", &known_hosts)],
        ),
        secret(
            "wrong-host",
            &[("identity", &identity), ("known_hosts", &wrong_known_hosts)],
        ),
    ] {
        secrets.create(&PostParams::default(), &s).await.expect("secret");
    }
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("source.toolkit.fluxcd.io", "v1", "GitRepository"),
        "gitrepositories",
    );
    let git: Api<DynamicObject> = Api::namespaced_with(client.clone(), "tenant", &ar);
    let cases = [
        ("app", "acme/team-a/app", "good"),
        ("no-known-hosts", "acme/team-a/app", "no-known-hosts"),
        ("pub-only", "acme/team-a/app", "pub-only"),
        ("wrong-host", "acme/team-a/app", "wrong-host"),
        ("elsewhere", "acme/team-b/api", "good"),
    ];
    for (name, project, secret_name) in cases {
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
            "metadata": {"name": name},
            "spec": {"interval": "1m", "url": ssh.clone_url(project), "ref": {"branch": "main"},
                     "secretRef": {"name": secret_name}}
        }))
        .expect("object");
        git.create(&PostParams::default(), &obj).await.expect("create");
    }

    let (reason, message) = wait_ready(&git, "app", "True").await;
    assert_eq!(reason, "Succeeded");
    assert!(message.contains("main@sha1:"), "{message}");

    let (reason, message) = wait_ready(&git, "no-known-hosts", "False").await;
    assert_eq!(reason, "AuthenticationFailed");
    assert!(message.contains("'known_hosts' is required"), "{message}");

    let (reason, message) = wait_ready(&git, "pub-only", "False").await;
    assert_eq!(reason, "AuthenticationFailed");
    assert!(message.contains("'identity' is required"), "{message}");

    let (reason, message) = wait_ready(&git, "wrong-host", "False").await;
    assert_eq!(reason, "GitOperationFailed");
    assert!(message.contains("knownhosts: key mismatch"), "{message}");

    let (reason, message) = wait_ready(&git, "elsewhere", "False").await;
    assert_eq!(reason, "GitOperationFailed");
    assert!(message.contains("could not be found"), "{message}");
    world.stop().await;
}
