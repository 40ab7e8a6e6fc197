//! SSH deploy keys end to end, real binary, real OpenSSH and git (issue 12): an annotated `ssh://`
//! GitRepository is refused until the connection pins GitLab's SSH host keys (never trust on
//! first use), then gets an ed25519 deploy key Secret (`identity`, `identity.pub`, `known_hosts`)
//! that the Flux stand-in and real `git` clone with, that another project refuses, that survives
//! an Overlap rotation with a consumer loop that never fails, and whose keys leave GitLab when
//! the source goes.

mod e2e;

use std::{path::Path, time::Duration};

use chrono::Utc;
use e2e::{
    Env, eventually,
    lifecycle::{secret_token_id, token_values_of, wait_flux_ready},
};
use gitlab_token_operator::crd::{CredentialKind, GitLabToken};
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api,
    api::{Patch, PatchParams},
};
use serde_json::{Value, json};
use tokio::process::Command;

const NS: &str = "team-a";
const SOURCE: &str = "app";
const SECRET: &str = "app-gitlab-token";
const PROJECT: &str = "acme/team-a/app";

/// `git ls-remote` over SSH with the Secret's identity and known_hosts, strict host checking.
async fn ssh_ls_remote(dir: &Path, url: &str, secret: &Secret) -> Result<(), String> {
    let key = dir.join(format!("id-{}", rand_suffix()));
    let known = dir.join(format!("kh-{}", rand_suffix()));
    std::fs::write(&key, Env::secret_value(secret, "identity")).map_err(|e| e.to_string())?;
    std::fs::write(&known, Env::secret_value(secret, "known_hosts")).map_err(|e| e.to_string())?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).map_err(|e| e.to_string())?;
    }
    let ssh = format!(
        "ssh -i {} -o IdentitiesOnly=yes -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes -o BatchMode=yes",
        key.display(),
        known.display()
    );
    let out = Command::new("git")
        .args(["ls-remote", "-q", url])
        .env("GIT_SSH_COMMAND", ssh)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .await
        .map_err(|e| e.to_string());
    let _ = std::fs::remove_file(&key);
    let _ = std::fs::remove_file(&known);
    let out = out?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// A fresh file name suffix (the loop and the test clone at the same time).
fn rand_suffix() -> String {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst).to_string()
}

/// The deploy keys GitLab has enabled on a project, as its API lists them.
async fn deploy_keys(env: &Env, project: &str) -> Vec<Value> {
    let url = format!(
        "{}/api/v4/projects/{}/deploy_keys",
        env.world.gitlab_url(),
        project.replace('/', "%2F")
    );
    let resp = reqwest::Client::new()
        .get(url)
        .header("PRIVATE-TOKEN", env.world.operator_token().expect("seeded"))
        .send()
        .await
        .expect("list deploy keys");
    assert_eq!(resp.status(), 200);
    resp.json::<Vec<Value>>().await.expect("json")
}

/// Re-applies the test connection (same field manager, so every field is restated) with the SSH
/// endpoint and the pinned host keys.
async fn pin_ssh(env: &Env, address: &str, host_keys: &[String]) {
    let (url, registry) = (env.world.gitlab_url(), env.world.registry_host());
    env.apply(json!({"apiVersion": "gitlabtokens.io/v1alpha1", "kind": "GitLabConnection",
        "metadata": {"name": e2e::CONNECTION},
        "spec": {"url": url, "registryHost": registry, "sshHost": address, "sshHostKeys": host_keys,
                 "credentials": {"secretRef": {"namespace": e2e::OPERATOR_NS, "name": "gitlab-operator-token", "key": "token"}}}}))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_git_repository_gets_a_deploy_key_that_clones_rotates_and_goes() {
    let env = Env::start().await;
    let seen = env.watch_secret_values();
    seen.add(env.world.operator_token().expect("seeded"));
    let ssh = env.world.ssh().expect("Git over SSH must run here (make deps)");
    let scratch = tempfile::tempdir().expect("tempdir");
    let url = ssh.clone_url(PROJECT);

    // The SSH endpoint is known but no host key is pinned: refused, nothing minted.
    pin_ssh(&env, &ssh.address(), &[]).await;
    env.apply(
        json!({"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
        "metadata": {"name": SOURCE, "namespace": NS, "annotations": {"gitlabtokens.io/inject": "true"}},
        "spec": {"interval": "2s", "url": url, "ref": {"branch": "main"}}}),
    )
    .await;
    let refused = env
        .wait_token_condition(NS, SECRET, "Ready", "False", Some("SSHHostKeysMissing"))
        .await;
    assert_eq!(refused.spec.kind, CredentialKind::DeployKey);
    assert!(
        deploy_keys(&env, PROJECT).await.is_empty(),
        "nothing minted without pinned host keys"
    );

    // Pinned: a deploy key, read-only, titled with the operator's marker, in an ssh Secret.
    pin_ssh(&env, &ssh.address(), &[ssh.host_public_key().to_string()]).await;
    let t1 = env
        .wait_token_condition(NS, SECRET, "Ready", "True", Some("Issued"))
        .await;
    let c1 = t1
        .status
        .as_ref()
        .and_then(|s| s.current.clone())
        .expect("current");
    assert_eq!(c1.kind, CredentialKind::DeployKey);
    let keys = deploy_keys(&env, PROJECT).await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!(keys[0]["id"], c1.token_id);
    assert_eq!(keys[0]["can_push"], false);
    assert!(keys[0]["expires_at"].is_string(), "the operator sets expires_at");
    assert_eq!(keys[0]["title"].as_str(), Some(c1.name.as_str()));
    let secret1 = env.wait_secret(NS, SECRET).await;
    assert_eq!(secret_token_id(&secret1), Some(c1.token_id));
    let public = Env::secret_value(&secret1, "identity.pub");
    assert_eq!(keys[0]["key"].as_str().map(str::trim), Some(public.trim()));
    assert!(Env::secret_value(&secret1, "identity").starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"));
    assert_eq!(
        Env::secret_value(&secret1, "known_hosts").trim(),
        format!(
            "[127.0.0.1]:{} {}",
            ssh.port(),
            ssh.host_public_key()
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ")
        )
    );

    // Flux clones with it; real git clones with it; another project refuses it.
    wait_flux_ready(&env, NS, SOURCE).await;
    ssh_ls_remote(scratch.path(), &url, &secret1)
        .await
        .expect("clone with the deploy key");
    let elsewhere = ssh_ls_remote(scratch.path(), &ssh.clone_url("acme/team-b/api"), &secret1).await;
    assert!(elsewhere.is_err(), "the key reaches only its project");

    // Overlap rotation with a consumer loop that reads the Secret before every clone.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let loop_task = {
        let (stop, url, dir) = (stop.clone(), url.clone(), scratch.path().to_path_buf());
        let api: Api<Secret> = Api::namespaced(env.client.clone(), NS);
        tokio::spawn(async move {
            let (mut ok, mut failures, mut ids) = (0usize, Vec::new(), Vec::new());
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let secret = api.get(SECRET).await.expect("Secret readable");
                let id = secret_token_id(&secret);
                if id.is_some() && !ids.contains(&id) {
                    ids.push(id);
                }
                match ssh_ls_remote(&dir, &url, &secret).await {
                    Ok(()) => ok += 1,
                    Err(e) => failures.push((id, e)),
                }
                // Pacing only (shared machine); nothing waits on this.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (ok, failures, ids)
        })
    };
    let calls_before = env.world.gitlab.calls().len();
    let tokens: Api<GitLabToken> = Api::namespaced(env.client.clone(), NS);
    let patch =
        json!({"metadata": {"annotations": {"gitlabtokens.io/renew-requested-at": Utc::now().to_rfc3339()}}});
    tokens
        .patch(SECRET, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("ask for a renewal");
    let t2 = env
        .wait_token(NS, SECRET, "a new deploy key and the old one removed", |t| {
            t.status.as_ref().is_some_and(|s| {
                s.previous.is_none()
                    && s.revoking.is_empty()
                    && s.current.as_ref().is_some_and(|c| c.token_id != c1.token_id)
            })
        })
        .await;
    let c2 = t2
        .status
        .as_ref()
        .and_then(|s| s.current.clone())
        .expect("current");
    let keys = deploy_keys(&env, PROJECT).await;
    let ids: Vec<u64> = keys.iter().filter_map(|k| k["id"].as_u64()).collect();
    assert_eq!(ids, vec![c2.token_id], "only the new key stays on the project");
    let rotation_calls: Vec<String> = env.world.gitlab.calls()[calls_before..]
        .iter()
        .filter(|c| c.path.contains("/deploy_keys"))
        .map(|c| format!("{} {}", c.method, c.path))
        .collect();
    let secret2 = eventually("the Secret to hold the new key", || {
        let api: Api<Secret> = Api::namespaced(env.client.clone(), NS);
        async move {
            api.get_opt(SECRET)
                .await
                .ok()
                .flatten()
                .filter(|s| secret_token_id(s) == Some(c2.token_id))
        }
    })
    .await;
    // Keep the loop on the new key for a few clones, then stop it.
    eventually("clones with the new key", || async {
        ssh_ls_remote(scratch.path(), &url, &secret2).await.ok()
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (ok, failures, seen_ids) = loop_task.await.expect("consumer loop");
    println!(
        "deploy key rotation: consumer loop {ok} clones, {} failures; key ids {seen_ids:?}; deploy key calls during rotation: {rotation_calls:?}",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "consumer failures during rotation: {failures:?}"
    );
    assert!(ok > 0);
    assert_eq!(
        rotation_calls.iter().filter(|c| c.starts_with("POST")).count(),
        1,
        "one new key per rotation: {rotation_calls:?}"
    );
    let old = ssh_ls_remote(scratch.path(), &url, &secret1).await;
    assert!(old.is_err(), "the removed key no longer clones");

    // Deletion of the source removes the key from GitLab.
    let git = env
        .flux_api(NS, "source.toolkit.fluxcd.io/v1", "GitRepository")
        .await;
    env.delete(&git, SOURCE).await;
    eventually("the deploy keys to leave GitLab", || async {
        deploy_keys(&env, PROJECT).await.is_empty().then_some(())
    })
    .await;

    let mut values = seen.values();
    values.extend(token_values_of(&secret1));
    values.extend(token_values_of(&secret2));
    let scanned = env.assert_no_leaks(&values).await;
    assert!(scanned > 0);
    env.stop().await;
}

/// A crash at each issue step of a deploy key (after the write-ahead record, after GitLab created
/// the key, after the Secret was written) leaves, once restarted, exactly one key of this
/// GitLabToken on the project: the one the Secret and the ledger hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_any_deploy_key_issue_step_leaves_exactly_the_key_the_secret_holds() {
    let mut env = Env::start().await;
    let ssh = env.world.ssh().expect("Git over SSH must run here (make deps)");
    let (address, host_key, url) = (
        ssh.address(),
        ssh.host_public_key().to_string(),
        ssh.clone_url(PROJECT),
    );
    pin_ssh(&env, &address, &[host_key]).await;
    let scratch = tempfile::tempdir().expect("tempdir");
    for (failpoint, ns) in [
        ("issue.after_pending", "team-kp"),
        ("issue.after_create", "team-kc"),
        ("issue.after_secret", "team-ks"),
    ] {
        env.namespace(ns).await;
        env.arm_crash_point(failpoint).await;
        env.apply(
            json!({"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
            "metadata": {"name": SOURCE, "namespace": ns, "annotations": {"gitlabtokens.io/inject": "true"}},
            "spec": {"interval": "1m", "url": url, "ref": {"branch": "main"}}}),
        )
        .await;
        env.expect_crash(failpoint, Duration::from_secs(30))
            .await
            .expect("crashed there");
        // Past the in-flight record's takeover time, so the restarted process recovers it.
        env.world
            .advance_clock(chrono::Duration::hours(1))
            .expect("clock");
        let t = env
            .wait_token(ns, SECRET, "Ready with nothing pending", |t| {
                t.status.as_ref().is_some_and(|s| {
                    s.pending.is_none()
                        && s.revoking.is_empty()
                        && s.current.is_some()
                        && s.conditions
                            .iter()
                            .any(|c| c.type_ == "Ready" && format!("{:?}", c.status) == "True")
                })
            })
            .await;
        let uid = kube::ResourceExt::uid(&t).expect("uid");
        let current = t
            .status
            .as_ref()
            .and_then(|s| s.current.clone())
            .expect("current");
        let ours = eventually(
            &format!("{failpoint}: one key of this GitLabToken left"),
            || async {
                let ours: Vec<u64> = deploy_keys(&env, PROJECT)
                    .await
                    .iter()
                    .filter(|k| k["title"].as_str().is_some_and(|t| t.ends_with(&uid)))
                    .filter_map(|k| k["id"].as_u64())
                    .collect();
                (ours.len() == 1).then_some(ours)
            },
        )
        .await;
        assert_eq!(
            ours,
            vec![current.token_id],
            "{failpoint}: the key left is the current one"
        );
        let secret = env.wait_secret(ns, SECRET).await;
        assert_eq!(secret_token_id(&secret), Some(current.token_id), "{failpoint}");
        ssh_ls_remote(scratch.path(), &url, &secret)
            .await
            .unwrap_or_else(|e| panic!("{failpoint}: the Secret's key clones: {e}"));
    }
    env.stop().await;
}
