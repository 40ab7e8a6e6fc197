//! Leader election end to end: two operator processes over one Lease; the leader dies (SIGKILL)
//! or stops (SIGTERM) and the other takes over, without minting any token twice.

mod e2e;

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use e2e::{Env, LeaderElection, Options};
use serde_json::json;

/// `--lease-duration` of both replicas.
const LEASE: Duration = Duration::from_secs(3);

async fn two_replicas() -> Env {
    Env::start_with(Options {
        leader_election: Some(LeaderElection {
            replicas: 2,
            lease_duration: format!("{}s", LEASE.as_secs()),
        }),
        ..Default::default()
    })
    .await
}

/// The index of the leading replica: it holds the Lease, its gauge says 1, the other's 0.
async fn leader(env: &Env) -> usize {
    e2e::eventually("one replica to lead", || async {
        let holder = env.lease_holder().await?;
        let i = env.replicas.iter().position(|r| r.instance == holder)?;
        let other = 1 - i;
        let agreed = env.replica_leader_metric(i).await == Some(1)
            && env.replica_leader_metric(other).await == Some(0);
        agreed.then_some(i)
    })
    .await
}

/// An annotated GitRepository `name` in team-a for the seeded GitLab project `project`.
async fn annotated_source(env: &Env, name: &str, project: &str) -> String {
    let url = format!("{}/{project}.git", env.world.gitlab_url());
    env.apply(
        json!({"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
        "metadata": {"name": name, "namespace": "team-a", "annotations": {"gitlabtokens.io/inject": "true"}},
        "spec": {"interval": "1m", "url": url, "ref": {"branch": "main"}}}),
    )
    .await;
    url
}

/// Clones `url` with the credentials in the Secret `<name>-gitlab-token`.
async fn clones_with_secret(env: &Env, name: &str, url: &str) {
    let secret = env.wait_secret("team-a", &format!("{name}-gitlab-token")).await;
    let (user, pass) = (
        Env::secret_value(&secret, "username"),
        Env::secret_value(&secret, "password"),
    );
    let dir = tempfile::tempdir().unwrap();
    let authed = url.replacen("http://", &format!("http://{user}:{pass}@"), 1);
    let clone = tokio::process::Command::new("git")
        .args(["-c", "credential.helper=", "clone", "-q", &authed, "repo"])
        .current_dir(dir.path())
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .await
        .unwrap();
    assert!(
        clone.status.success(),
        "clone with {name}'s token: {}",
        String::from_utf8_lossy(&clone.stderr)
    );
}

/// Every token the operator created exists once per name, and GitLab saw exactly one successful
/// create call per token: no request was minted twice.
fn assert_minted_once(env: &Env, expected: usize) {
    let mut by_name: BTreeMap<String, usize> = BTreeMap::new();
    for t in env.world.gitlab.tokens() {
        if t.name.starts_with("gto-e2e-") {
            *by_name.entry(t.name).or_default() += 1;
        }
    }
    assert_eq!(by_name.len(), expected, "tokens by name: {by_name:?}");
    assert!(
        by_name.values().all(|n| *n == 1),
        "a token was minted twice: {by_name:?}"
    );
    let creates = env
        .world
        .gitlab
        .calls()
        .into_iter()
        .filter(|c| c.method == "POST" && c.path.contains("/access_tokens") && !c.path.contains("/rotate"))
        .filter(|c| (200..300).contains(&c.status))
        .count();
    assert_eq!(creates, expected, "successful token-create calls");
    assert_eq!(env.active_operator_tokens().len(), expected);
}

fn report(what: &str, d: Duration) {
    // Printed for the record (run with --nocapture to see it).
    println!("failover: {what}: {:.2}s", d.as_secs_f64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_is_replaced_within_the_lease_duration_without_double_minting() {
    let mut env = two_replicas().await;
    let first = leader(&env).await;
    let follower = 1 - first;

    let url_a = annotated_source(&env, "app", "acme/team-a/app").await;
    env.wait_token_condition("team-a", "app-gitlab-token", "Ready", "True", Some("Issued"))
        .await;
    assert_eq!(
        env.replica_leader_metric(follower).await,
        Some(0),
        "the follower serves metrics"
    );

    env.kill_replica(first).await;
    let killed = Instant::now();
    let url_b = annotated_source(&env, "infra", "acme/platform/infra").await;
    let next = env.replicas[follower].instance.clone();
    e2e::eventually("the follower to take the Lease", || async {
        (env.lease_holder().await.as_deref() == Some(next.as_str())).then_some(())
    })
    .await;
    let takeover = killed.elapsed();
    env.wait_token_condition("team-a", "infra-gitlab-token", "Ready", "True", Some("Issued"))
        .await;
    let issued = killed.elapsed();
    report("SIGKILL -> Lease taken over", takeover);
    report("SIGKILL -> next token issued", issued);

    // The Lease can only be taken once it expired (≤ LEASE after the kill) plus the library's
    // up-to-1s pause after force-releasing an expired lock (and slack for a loaded machine);
    // issuing adds the new leader's cache sync, connection check and GitLab calls.
    assert!(
        takeover <= LEASE + Duration::from_secs(3),
        "takeover took {takeover:?} with a {LEASE:?} lease"
    );
    assert!(
        issued <= LEASE + Duration::from_secs(8),
        "the next token took {issued:?}"
    );
    assert_eq!(env.replica_leader_metric(follower).await, Some(1));
    assert!(
        env.replica_logs(follower)
            .contains("acquired leadership; starting the controllers")
    );

    assert_minted_once(&env, 2);
    clones_with_secret(&env, "app", &url_a).await;
    clones_with_secret(&env, "infra", &url_b).await;
    for i in 0..2 {
        let logs = env.replica_logs(i);
        for name in ["app", "infra"] {
            let secret = env.wait_secret("team-a", &format!("{name}-gitlab-token")).await;
            let pass = Env::secret_value(&secret, "password");
            assert!(
                !logs.contains(&pass),
                "a token value leaked into operator-{i}'s logs"
            );
        }
    }
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_stopped_with_sigterm_releases_the_lease_for_an_immediate_takeover() {
    let mut env = two_replicas().await;
    let first = leader(&env).await;
    let follower = 1 - first;
    let url_a = annotated_source(&env, "app", "acme/team-a/app").await;
    env.wait_token_condition("team-a", "app-gitlab-token", "Ready", "True", Some("Issued"))
        .await;

    let terminated = Instant::now();
    assert!(
        env.terminate_replica(first).await,
        "the leader exits cleanly on SIGTERM"
    );
    let exited = terminated.elapsed();
    assert!(
        env.replica_logs(first).contains("released the leader Lease"),
        "the leader released its Lease:\n{}",
        env.replica_logs(first)
    );
    let url_b = annotated_source(&env, "infra", "acme/platform/infra").await;
    let next = env.replicas[follower].instance.clone();
    e2e::eventually("the follower to take the released Lease", || async {
        (env.lease_holder().await.as_deref() == Some(next.as_str())).then_some(())
    })
    .await;
    let takeover = terminated.elapsed();
    env.wait_token_condition("team-a", "infra-gitlab-token", "Ready", "True", Some("Issued"))
        .await;
    let issued = terminated.elapsed();
    report("SIGTERM -> leader exited", exited);
    report("SIGTERM -> released Lease taken over", takeover);
    report("SIGTERM -> next token issued", issued);

    // The follower sees the released Lease at its next poll (300 ms for a 3 s lease).
    assert!(
        takeover < LEASE / 2,
        "takeover after a release took {takeover:?}, not well under the {LEASE:?} lease"
    );
    assert_eq!(env.replica_leader_metric(follower).await, Some(1));
    assert_minted_once(&env, 2);
    clones_with_secret(&env, "app", &url_a).await;
    clones_with_secret(&env, "infra", &url_b).await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_loses_its_lease_exits_and_the_lease_goes_to_whoever_takes_it_next() {
    let mut env = two_replicas().await;
    let first = leader(&env).await;
    let follower = 1 - first;
    let leases: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
        kube::Api::namespaced(env.client.clone(), e2e::OPERATOR_NS);
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    // Someone else (a split network, a misbehaving peer) takes the Lease for an hour.
    let steal = json!({"spec": {"holderIdentity": "intruder", "renewTime": now, "acquireTime": now,
                                "leaseDurationSeconds": 3600}});
    leases
        .patch(
            e2e::LEASE_NAME,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&steal),
        )
        .await
        .unwrap();
    let stolen = Instant::now();
    assert_eq!(
        env.wait_replica_exit(first).await,
        Some(3),
        "the deposed leader exits with code 3"
    );
    report("Lease stolen -> old leader exited", stolen.elapsed());
    assert!(
        stolen.elapsed() < LEASE,
        "the deposed leader kept running for {:?}",
        stolen.elapsed()
    );
    assert!(env.replica_logs(first).contains("lost leadership; exiting"));
    // The follower respects the intruder's valid Lease…
    assert_eq!(env.replica_leader_metric(follower).await, Some(0));
    assert_eq!(env.lease_holder().await.as_deref(), Some("intruder"));
    // …and takes it as soon as it is released.
    let release = json!({"spec": {"holderIdentity": null, "renewTime": null, "acquireTime": null,
                                  "leaseDurationSeconds": null}});
    leases
        .patch(
            e2e::LEASE_NAME,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&release),
        )
        .await
        .unwrap();
    let next = env.replicas[follower].instance.clone();
    e2e::eventually("the follower to take the released Lease", || async {
        (env.lease_holder().await.as_deref() == Some(next.as_str())
            && env.replica_leader_metric(follower).await == Some(1))
        .then_some(())
    })
    .await;
    let url = annotated_source(&env, "app", "acme/team-a/app").await;
    env.wait_token_condition("team-a", "app-gitlab-token", "Ready", "True", Some("Issued"))
        .await;
    assert_minted_once(&env, 1);
    clones_with_secret(&env, "app", &url).await;
    env.stop().await;
}
