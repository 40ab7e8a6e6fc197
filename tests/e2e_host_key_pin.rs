//! Opt-in fetch-and-pin of GitLab's SSH host keys (issue 12 item 1), real binary against the
//! testbed's OpenSSH front: with `spec.sshHostKeyPolicy: FetchAndPin` and no `spec.sshHostKeys`
//! the connection check pins the key sshd presents in `status.sshHostKeys` (with the SHA256
//! fingerprint `ssh-keygen` computes, and an `SSHHostKeysPinned` event), deploy key Secrets carry
//! it and Flux's stand-in clones with strict host checking; a changed endpoint is refused with
//! `SSHHostKeyChanged` (event, and the deploy key request refused) without re-pinning; clearing
//! the pin (the documented admin action) pins again.

mod e2e;

use e2e::{Env, eventually, lifecycle::wait_flux_ready};
use gitlab_token_operator::crd::{CredentialKind, GitLabConnection, PinnedHostKeys};
use kube::{
    Api,
    api::{Patch, PatchParams},
};
use serde_json::json;
use tokio::process::Command;

const NS: &str = "team-a";
const SECRET: &str = "app-gitlab-token";

/// Re-applies the test connection with the SSH endpoint and the fetch-and-pin opt-in.
async fn connection(env: &Env, ssh_host: &str) {
    let (url, registry) = (env.world.gitlab_url(), env.world.registry_host());
    env.apply(json!({"apiVersion": "gitlabtokens.io/v1alpha1", "kind": "GitLabConnection",
        "metadata": {"name": e2e::CONNECTION},
        "spec": {"url": url, "registryHost": registry, "sshHost": ssh_host,
                 "sshHostKeyPolicy": "FetchAndPin",
                 "credentials": {"secretRef": {"namespace": e2e::OPERATOR_NS, "name": "gitlab-operator-token", "key": "token"}}}}))
        .await;
}

/// The annotated `ssh://` GitRepository `app` with `url`.
async fn source(env: &Env, url: &str) {
    env.apply(
        json!({"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
        "metadata": {"name": "app", "namespace": NS, "annotations": {"gitlabtokens.io/inject": "true"}},
        "spec": {"interval": "2s", "url": url, "ref": {"branch": "main"}}}),
    )
    .await;
}

/// The connection's pin once `check` holds for it.
async fn wait_pin(env: &Env, what: &str, check: impl Fn(&PinnedHostKeys) -> bool) -> PinnedHostKeys {
    let api: Api<GitLabConnection> = Api::all(env.client.clone());
    eventually(what, || async {
        let c = api.get(e2e::CONNECTION).await.ok()?;
        c.status?.ssh_host_keys.filter(|p| check(p))
    })
    .await
}

/// `ssh-keygen -lf`'s SHA256 fingerprint of a public key line (an independent computation).
async fn ssh_keygen_fingerprint(key: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key.pub");
    std::fs::write(&path, format!("{key}\n")).unwrap();
    let out = Command::new("ssh-keygen")
        .args(["-l", "-E", "sha256", "-f"])
        .arg(&path)
        .output()
        .await
        .expect("ssh-keygen runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .expect("a fingerprint")
        .to_string()
}

/// Whether the operator published an event with `reason` on the connection.
async fn connection_event(env: &Env, reason: &str) -> bool {
    env.all_events().await.iter().any(|e| {
        e["reason"] == reason
            && (e["regarding"]["kind"] == "GitLabConnection"
                || e["involvedObject"]["kind"] == "GitLabConnection")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetched_host_keys_are_pinned_shown_used_and_never_silently_replaced() {
    let env = Env::start().await;
    let ssh = env.world.ssh().expect("Git over SSH must run here (make deps)");
    let host_key: String = ssh
        .host_public_key()
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");

    // Opt in: the check pins the key sshd presents, with its fingerprint, and says so.
    connection(&env, &ssh.address()).await;
    let pin = wait_pin(&env, "the host key pinned", |_| true).await;
    assert_eq!(pin.host, ssh.address());
    assert_eq!(
        pin.keys,
        std::slice::from_ref(&host_key),
        "exactly the key sshd presents"
    );
    assert_eq!(pin.fingerprints, [ssh_keygen_fingerprint(&host_key).await]);
    assert_eq!(pin.changed, None);
    eventually("an SSHHostKeysPinned event", || async {
        connection_event(&env, "SSHHostKeysPinned").await.then_some(())
    })
    .await;

    // A deploy key Secret carries the pinned key; Flux's stand-in checks it strictly.
    source(&env, &ssh.clone_url("acme/team-a/app")).await;
    let t = env
        .wait_token_condition(NS, SECRET, "Ready", "True", Some("Issued"))
        .await;
    assert_eq!(t.spec.kind, CredentialKind::DeployKey);
    let secret = env.wait_secret(NS, SECRET).await;
    assert_eq!(
        Env::secret_value(&secret, "known_hosts").trim(),
        format!("[127.0.0.1]:{} {host_key}", ssh.port())
    );
    wait_flux_ready(&env, NS, "app").await;

    // The endpoint moves (same server, another name): refused, the pin is kept as it was.
    // The source follows the endpoint's new name (else it would be a foreign host).
    let moved = format!("localhost:{}", ssh.port());
    connection(&env, &moved).await;
    source(
        &env,
        &ssh.clone_url("acme/team-a/app").replace("127.0.0.1", "localhost"),
    )
    .await;
    let changed = wait_pin(&env, "the pin marked changed", |p| p.changed.is_some()).await;
    assert_eq!(
        (changed.host.as_str(), &changed.keys),
        (ssh.address().as_str(), &pin.keys)
    );
    assert!(
        changed
            .changed
            .as_deref()
            .unwrap()
            .contains(&format!("moved from {} to {moved}", ssh.address())),
        "{changed:?}"
    );
    eventually("an SSHHostKeyChanged event", || async {
        connection_event(&env, "SSHHostKeyChanged").await.then_some(())
    })
    .await;
    let refused = env
        .wait_token_condition(NS, SECRET, "Ready", "False", Some("SSHHostKeyChanged"))
        .await;
    let message = refused
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(message.contains("clears status.sshHostKeys"), "{message}");

    // The admin clears the pin: the next check pins the new endpoint, the request is served.
    let api: Api<GitLabConnection> = Api::all(env.client.clone());
    api.patch_status(
        e2e::CONNECTION,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"sshHostKeys": null}})),
    )
    .await
    .expect("clear the pin");
    // A spec-neutral touch so the check runs now rather than at its next interval.
    api.patch(
        e2e::CONNECTION,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {"e2e/touch": "1"}}})),
    )
    .await
    .expect("touch");
    let repinned = wait_pin(&env, "the new endpoint pinned", |p| p.host == moved).await;
    assert_eq!(repinned.keys, pin.keys);
    assert_eq!(repinned.changed, None);
    env.wait_token_condition(NS, SECRET, "Ready", "True", None).await;
    env.stop().await;
}
