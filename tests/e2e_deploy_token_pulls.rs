//! Deploy tokens asked for by a source annotation, end to end with the real binary and real
//! clients (issue 12 items 4 and 6): `gitlabtokens.io/credential-kind: DeployToken` on a Flux
//! source makes its `GitLabToken` a deploy token (denied, with the kind named, until a policy
//! allows it); the Secret carries GitLab's `gitlab+deploy-token-N` username; `skopeo` pulls from
//! the registry with an OCIRepository's Secret (GitLab's `/jwt/auth` takes deploy tokens with
//! `read_registry` and refuses one without it), and `helm` pulls charts over HTTP (package
//! registry, `read_package_registry`) and OCI with HelmRepository Secrets; a pull loop across an
//! Overlap rotation never fails; deleting the source revokes the token.

mod e2e;

use chrono::Utc;
use e2e::{
    Env, eventually,
    lifecycle::{credentials, git_ls_remote, secret_token_id, token_values_of},
};
use gitlab_token_operator::crd::{CredentialKind, GitLabToken};
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api,
    api::{Patch, PatchParams},
};
use serde_json::{Value, json};
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

const NS: &str = "team-a";
const SRC: &str = "source.toolkit.fluxcd.io/v1";

/// A policy for team namespaces that opts in to deploy tokens with the scopes pulls need.
fn deploy_token_policy() -> Value {
    json!({"apiVersion": "gitlabtokens.io/v1alpha1", "kind": "GitLabTokenPolicy",
        "metadata": {"name": "team-deploy-tokens"},
        "spec": {"namespaceSelector": {"matchNames": ["team-*"]}, "projects": ["acme/**"],
                 "scopes": ["read_repository", "read_registry", "read_package_registry"],
                 "credentialKinds": ["ProjectAccessToken", "DeployToken"]}})
}

/// A Flux source opted in and asking for a deploy token.
fn deploy_token_source(kind: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": SRC, "kind": kind,
        "metadata": {"name": name, "namespace": NS, "annotations": {
            "gitlabtokens.io/inject": "true",
            "gitlabtokens.io/credential-kind": "DeployToken"}},
        "spec": spec})
}

/// The emulator's record of deploy token `id`.
fn deploy_record(env: &Env, id: u64) -> testbed::gitlab::TokenRecord {
    env.world
        .gitlab
        .tokens()
        .into_iter()
        .find(|t| t.kind == "deploy" && t.id == id)
        .unwrap_or_else(|| panic!("GitLab has no deploy token {id}"))
}

/// Waits for the source's token to be issued; returns the token, its current id and the Secret.
async fn issued(env: &Env, secret: &str) -> (GitLabToken, u64, Secret) {
    let t = env
        .wait_token_condition(NS, secret, "Ready", "True", Some("Issued"))
        .await;
    let current = t
        .status
        .as_ref()
        .and_then(|s| s.current.clone())
        .expect("current");
    assert_eq!(
        current.kind,
        CredentialKind::DeployToken,
        "the annotation asked for a deploy token"
    );
    assert_eq!(t.spec.kind, CredentialKind::DeployToken);
    let id = current.token_id;
    let secret = eventually("the Secret to hold the issued token", || async {
        let s = env.wait_secret(NS, secret).await;
        (secret_token_id(&s) == Some(id)).then_some(s)
    })
    .await;
    (t, id, secret)
}

/// The single `auths` entry of a dockerconfigjson Secret: (username, password, the raw JSON).
fn docker_auth(secret: &Secret) -> (String, String, String) {
    let raw = Env::secret_value(secret, ".dockerconfigjson");
    let cfg: Value = serde_json::from_str(&raw).expect(".dockerconfigjson is JSON");
    let auths = cfg["auths"].as_object().expect("auths");
    assert_eq!(auths.len(), 1, "one registry entry");
    let entry = auths.values().next().unwrap();
    (
        entry["username"].as_str().unwrap().to_string(),
        entry["password"].as_str().unwrap().to_string(),
        raw,
    )
}

/// `skopeo inspect --raw` of `docker://<registry>/<image>` with an authfile (`{}`: anonymous).
async fn skopeo_inspect(registry: &str, image: &str, authfile: &str) -> Result<Value, String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("auth.json");
    std::fs::write(&path, authfile).unwrap();
    let out = tokio::process::Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false", "--authfile"])
        .arg(&path)
        .arg(format!("docker://{registry}/{image}"))
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

/// An authfile with `user:pass` for `registry`.
fn authfile(registry: &str, user: &str, pass: &str) -> String {
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    json!({"auths": {registry: {"auth": auth}}}).to_string()
}

/// Runs helm with its config, cache and data in a fresh directory (no ambient credentials);
/// `Ok(file names pulled)` or `Err(stderr)`.
async fn helm(args: &[&str], registry_config: Option<&str>) -> Result<Vec<String>, String> {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let mut cmd = tokio::process::Command::new(e2e::helm());
    cmd.args(args)
        .arg("--destination")
        .arg(&out_dir)
        .env("HOME", dir.path())
        .env("HELM_CACHE_HOME", dir.path().join("cache"))
        .env("HELM_CONFIG_HOME", dir.path().join("config"))
        .env("HELM_DATA_HOME", dir.path().join("data"));
    let config = dir.path().join("registry.json");
    std::fs::write(&config, registry_config.unwrap_or("{}")).unwrap();
    cmd.arg("--registry-config").arg(&config);
    let out = cmd.output().await.expect("helm runs");
    if out.status.success() {
        Ok(std::fs::read_dir(&out_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// What a pull loop measured: successful pulls, failures (token id, stderr), token ids used.
type PullReport = (usize, Vec<(Option<u64>, String)>, Vec<u64>);

/// A loop of real `skopeo inspect` runs, each with the Secret's authfile as read just before.
struct PullLoop {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<PullReport>,
}

impl PullLoop {
    fn start(env: &Env, secret: &str, image: &str) -> PullLoop {
        let api: Api<Secret> = Api::namespaced(env.client.clone(), NS);
        let (stop, ok) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
        let (stop2, ok2) = (stop.clone(), ok.clone());
        let (secret, image, registry) = (secret.to_string(), image.to_string(), env.world.registry_host());
        let task = tokio::spawn(async move {
            let (mut failures, mut ids) = (Vec::new(), Vec::new());
            while !stop2.load(Ordering::SeqCst) {
                let s = api.get(&secret).await.expect("the Secret stays readable");
                let id = secret_token_id(&s);
                if let Some(id) = id
                    && !ids.contains(&id)
                {
                    ids.push(id);
                }
                let (_, pass, raw) = docker_auth(&s);
                match skopeo_inspect(&registry, &image, &raw).await {
                    Ok(_) => {
                        ok2.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) => failures.push((id, e.replace(&pass, "<token>"))),
                }
                // Pacing only (the machine is shared); nothing waits on this.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (ok2.load(Ordering::SeqCst), failures, ids)
        });
        PullLoop { stop, ok, task }
    }

    fn ok_so_far(&self) -> usize {
        self.ok.load(Ordering::SeqCst)
    }

    async fn finish(self) -> PullReport {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.expect("pull loop")
    }
}

/// Asks for a renewal now and waits until a new deploy token is current and the old one gone.
async fn rotate(env: &Env, name: &str, old: u64) -> u64 {
    let tokens: Api<GitLabToken> = Api::namespaced(env.client.clone(), NS);
    let patch =
        json!({"metadata": {"annotations": {"gitlabtokens.io/renew-requested-at": Utc::now().to_rfc3339()}}});
    tokens
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("ask for a renewal");
    let t = env
        .wait_token(NS, name, "a new deploy token and the old one revoked", |t| {
            t.status.as_ref().is_some_and(|s| {
                s.previous.is_none()
                    && s.revoking.is_empty()
                    && s.current.as_ref().is_some_and(|c| c.token_id != old)
            })
        })
        .await;
    t.status.and_then(|s| s.current).expect("current").token_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn annotated_sources_get_deploy_tokens_that_skopeo_pulls_with_across_a_rotation() {
    let env = Env::start().await;
    let seen = env.watch_secret_values();
    seen.add(env.world.operator_token().expect("seeded"));
    let registry = env.world.registry_host();
    let image = "acme/team-a/app:1.0.0";

    // The default policy does not allow deploy tokens: the kind the annotation asked for is named.
    env.apply(deploy_token_source(
        "OCIRepository",
        "app-oci",
        json!({"interval": "2s", "url": format!("oci://{registry}/acme/team-a/app"),
               "ref": {"tag": "1.0.0"}, "insecure": true}),
    ))
    .await;
    let denied = env
        .wait_token_condition(NS, "app-oci-gitlab-token", "Ready", "False", Some("PolicyDenied"))
        .await;
    let message = denied
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(message.contains("kind: DeployToken is not allowed"), "{message}");
    assert_eq!(denied.spec.kind, CredentialKind::DeployToken);

    let calls_before = env.world.gitlab.calls().len();
    env.apply(deploy_token_policy()).await;
    let (_, id1, secret1) = issued(&env, "app-oci-gitlab-token").await;
    println!(
        "deploy token for an OCIRepository: {} GitLab calls from the policy allowing it to the Secret",
        env.world.gitlab.calls().len() - calls_before
    );
    let r1 = deploy_record(&env, id1);
    assert_eq!(r1.scopes, ["read_registry"], "only what an OCIRepository needs");
    assert_eq!(r1.resource.as_deref(), Some("acme/team-a/app"));
    let (user1, pass1, raw1) = docker_auth(&secret1);
    assert_eq!(user1, format!("gitlab+deploy-token-{id1}"));
    assert_eq!(user1, r1.username, "the Secret carries GitLab's username");
    let manifest = skopeo_inspect(&registry, image, &raw1)
        .await
        .expect("skopeo pulls with the deploy token Secret");
    assert!(manifest["layers"].is_array(), "a manifest: {manifest}");
    assert!(
        skopeo_inspect(&registry, image, "{}").await.is_err(),
        "the registry refuses the same pull anonymously"
    );
    assert!(
        skopeo_inspect(&registry, "acme/team-b/api/worker:1.0.0", &raw1)
            .await
            .is_err(),
        "a project deploy token reaches its own project's registry only"
    );
    env.wait_flux_ready(NS, SRC, "OCIRepository", "app-oci").await;

    // A GitRepository asking for a deploy token gets one with read_repository only: it clones,
    // and GitLab's /jwt/auth refuses it for the registry (no read_registry).
    let git_url = format!("{}/acme/team-a/app.git", env.world.gitlab_url());
    env.apply(deploy_token_source(
        "GitRepository",
        "app",
        json!({"interval": "2s", "url": git_url, "ref": {"branch": "main"}}),
    ))
    .await;
    let (_, git_id, git_secret) = issued(&env, "app-gitlab-token").await;
    assert_eq!(deploy_record(&env, git_id).scopes, ["read_repository"]);
    let (git_user, git_pass) = credentials(&git_secret);
    assert_eq!(git_user, format!("gitlab+deploy-token-{git_id}"));
    git_ls_remote(&git_url, &git_user, &git_pass)
        .await
        .expect("git with the deploy token");
    let refused = skopeo_inspect(&registry, image, &authfile(&registry, &git_user, &git_pass)).await;
    assert!(
        refused.is_err(),
        "a deploy token without read_registry pulled from the registry"
    );
    env.wait_flux_ready(NS, SRC, "GitRepository", "app").await;

    // Overlap rotation with a pull loop reading the Secret before every pull: no failure.
    let pulls = PullLoop::start(&env, "app-oci-gitlab-token", image);
    eventually("the pull loop to succeed three times", || async {
        (pulls.ok_so_far() >= 3).then_some(())
    })
    .await;
    let id2 = rotate(&env, "app-oci-gitlab-token", id1).await;
    let secret2 = eventually("the Secret to hold the new token", || async {
        let s = env.wait_secret(NS, "app-oci-gitlab-token").await;
        (secret_token_id(&s) == Some(id2)).then_some(s)
    })
    .await;
    let before = pulls.ok_so_far();
    eventually("the pull loop to pull with the new token", || async {
        (pulls.ok_so_far() >= before + 3).then_some(())
    })
    .await;
    let (ok, failures, ids) = pulls.finish().await;
    println!(
        "deploy token skopeo pull loop across an Overlap rotation: {ok} pulls, {} failures, token ids {ids:?}",
        failures.len()
    );
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(ids, [id1, id2], "the loop used the old token, then the new one");
    assert_ne!(deploy_record(&env, id1).state, "active");
    assert!(
        skopeo_inspect(&registry, image, &raw1).await.is_err(),
        "the registry refuses a revoked deploy token"
    );
    let (user2, _, raw2) = docker_auth(&secret2);
    assert_eq!(user2, format!("gitlab+deploy-token-{id2}"));

    // Deleting the source revokes its token.
    let oci = env.flux_api(NS, SRC, "OCIRepository").await;
    env.delete(&oci, "app-oci").await;
    eventually("the deploy token to be revoked", || async {
        (deploy_record(&env, id2).state != "active").then_some(())
    })
    .await;
    assert!(
        skopeo_inspect(&registry, image, &raw2).await.is_err(),
        "the registry refuses the deleted source's token"
    );

    let mut values = seen.values();
    values.extend([pass1, git_pass]);
    values.extend(token_values_of(&secret2));
    assert!(env.assert_no_leaks(&values).await > 0);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_pulls_charts_over_http_and_oci_with_deploy_token_secrets() {
    let env = Env::start().await;
    let seen = env.watch_secret_values();
    seen.add(env.world.operator_token().expect("seeded"));
    env.apply(deploy_token_policy()).await;
    let registry = env.world.registry_host();

    // HTTP: GitLab's Helm package registry, read with read_package_registry (no read_api).
    let repo = format!(
        "{}/api/v4/projects/acme%2Fteam-b%2Fapi/packages/helm/stable",
        env.world.gitlab_url()
    );
    env.apply(deploy_token_source(
        "HelmRepository",
        "charts",
        json!({"interval": "2s", "url": repo}),
    ))
    .await;
    let (_, http_id, http_secret) = issued(&env, "charts-gitlab-token").await;
    let record = deploy_record(&env, http_id);
    assert_eq!(record.scopes, ["read_package_registry"]);
    let (user, pass) = credentials(&http_secret);
    assert_eq!(user, format!("gitlab+deploy-token-{http_id}"));
    let pulled = helm(
        &[
            "pull",
            "api",
            "--version",
            "0.1.0",
            "--repo",
            &repo,
            "--username",
            &user,
            "--password",
            &pass,
        ],
        None,
    )
    .await
    .expect("helm pulls the chart over HTTP with the Secret");
    assert_eq!(pulled, ["api-0.1.0.tgz"]);
    let anonymous = helm(&["pull", "api", "--version", "0.1.0", "--repo", &repo], None).await;
    assert!(
        anonymous.is_err(),
        "the package registry served a private chart anonymously"
    );
    env.wait_flux_ready(NS, SRC, "HelmRepository", "charts").await;

    // OCI: the chart in the container registry, read with read_registry.
    env.apply(deploy_token_source(
        "HelmRepository",
        "oci-charts",
        json!({"interval": "2s", "type": "oci", "url": format!("oci://{registry}/acme/team-b/api"), "insecure": true}),
    ))
    .await;
    let (_, oci_id, oci_secret) = issued(&env, "oci-charts-gitlab-token").await;
    assert_eq!(deploy_record(&env, oci_id).scopes, ["read_registry"]);
    let (oci_user, oci_pass, raw) = docker_auth(&oci_secret);
    assert_eq!(oci_user, format!("gitlab+deploy-token-{oci_id}"));
    let chart = format!("oci://{registry}/acme/team-b/api/api");
    let pulled = helm(&["pull", &chart, "--version", "0.1.0"], Some(&raw))
        .await
        .expect("helm pulls the OCI chart with the Secret as its registry config");
    assert_eq!(pulled, ["api-0.1.0.tgz"]);
    assert!(
        helm(&["pull", &chart, "--version", "0.1.0"], None).await.is_err(),
        "the registry served a private chart anonymously"
    );
    // The HTTP Secret's deploy token has no read_registry: the registry refuses it.
    let cross = helm(
        &["pull", &chart, "--version", "0.1.0"],
        Some(&authfile(&registry, &user, &pass)),
    )
    .await;
    assert!(
        cross.is_err(),
        "a read_package_registry deploy token pulled from the registry"
    );
    env.wait_flux_ready(NS, SRC, "HelmRepository", "oci-charts").await;

    let mut values = seen.values();
    values.extend([pass, oci_pass]);
    assert!(env.assert_no_leaks(&values).await > 0);
    env.stop().await;
}
