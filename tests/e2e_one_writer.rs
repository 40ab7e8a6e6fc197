//! One writer by default (issue 14 item 4), with the real binary: leader election is on unless
//! switched off, so a second instance started with the defaults only follows; and a metrics
//! port that cannot be bound stops the process at once with a clear error.

mod e2e;

use std::{process::Stdio, time::Duration};

use e2e::{CHART_LEASE_NAME, Env, OPERATOR_NS};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_gitlab-token-operator");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

async fn metrics_of(addr: &str) -> String {
    match reqwest::get(format!("http://{addr}/metrics")).await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

fn sample(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_instance_started_with_the_defaults_does_not_act() {
    let env = Env::start().await;
    // The first instance (the harness's, with the defaults) leads.
    e2e::eventually("the first instance to hold the Lease", || async {
        let text = reqwest::get(format!("http://{}/metrics", env.metrics_addr))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        (sample(&text, "gitlab_token_operator_leader ") == 1.0).then_some(())
    })
    .await;
    // A second one, also with the defaults (no --leader-elect flag at all), plain logs to a file.
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("second.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let second_addr = format!("127.0.0.1:{}", free_port());
    let mut second = tokio::process::Command::new(BIN)
        .args([
            "run",
            "--namespace",
            OPERATOR_NS,
            "--cluster-name",
            "e2e",
            "--log-format",
            "plain",
            "--lease-name",
            CHART_LEASE_NAME,
            "--metrics-addr",
            &second_addr,
        ])
        .arg("--clock-offset-file")
        .arg(env.world.clock_offset_path())
        .env("KUBECONFIG", &env.operator_kubeconfig)
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .expect("second instance runs");
    e2e::eventually("the second instance to campaign", || async {
        let text = metrics_of(&second_addr).await;
        text.contains("gitlab_token_operator_leader ").then_some(())
    })
    .await;

    env.apply(
        json!({"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
        "metadata": {"name": "app", "namespace": "team-a", "annotations": {"gitlabtokens.io/inject": "true"}},
        "spec": {"interval": "1m", "url": format!("{}/acme/team-a/app.git", env.world.gitlab_url()),
                 "ref": {"branch": "main"}}}),
    )
    .await;
    env.wait_token_condition("team-a", "app-gitlab-token", "Ready", "True", Some("Issued"))
        .await;
    let text = metrics_of(&second_addr).await;
    assert_eq!(sample(&text, "gitlab_token_operator_leader "), 0.0, "{text}");
    assert_eq!(
        sample(&text, "gitlab_token_operator_reconciles_total"),
        0.0,
        "the follower reconciled nothing"
    );
    assert_eq!(
        sample(&text, "gitlab_token_operator_tokens_issued_total"),
        0.0,
        "the follower issued nothing"
    );
    assert_eq!(env.all_operator_tokens().len(), 1, "exactly one token minted");
    assert!(second.try_wait().unwrap().is_none(), "the follower keeps running");
    let _ = second.kill().await;
    let logs = std::fs::read_to_string(&log_path).unwrap();
    assert!(logs.contains("campaigning for leadership"), "{logs}");
    assert!(!logs.contains("acquired leadership"), "{logs}");
    assert!(
        !logs.contains('\u{1b}'),
        "plain logs written to a file carry no colour codes: {logs:?}"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metrics_port_in_use_stops_the_process_at_once() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    // No cluster at all: binding comes first, so the port is what it reports.
    let run = tokio::process::Command::new(BIN)
        .args(["run", "--metrics-addr", &addr])
        .env("KUBECONFIG", dir.path().join("no-such-kubeconfig"))
        .env_remove("KUBERNETES_SERVICE_HOST")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("the process stops on its own instead of running on")
        .expect("the binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(out.status.code().is_some(), "exited, not killed: {stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on --metrics-addr {addr}")),
        "{stderr}"
    );
    assert!(
        stderr.contains("is a second gitlab-token-operator running?"),
        "{stderr}"
    );
    drop(taken);
}
