//! Several operator replicas electing a leader over one Lease (failover tests).

use super::*;

impl Env {
    /// Starts replica `i` (`operator-<i>`) with `--leader-elect`; waits for its /readyz.
    pub async fn start_replica(&mut self, i: usize, lease_duration: &str) {
        self.start_process(i, Some(lease_duration), &[]).await;
    }

    /// Starts replica `i` as an operator process WITHOUT leader election (`GTO_LEADER_ELECT=false`,
    /// explicitly), with `extra` environment; waits for its /readyz. Several such processes act at
    /// once, as two `run` processes started by mistake or an old leader during a hand-over.
    pub async fn start_unelected(&mut self, i: usize, extra: &[(&str, &str)]) {
        self.start_process(i, None, extra).await;
    }

    async fn start_process(&mut self, i: usize, lease_duration: Option<&str>, extra: &[(&str, &str)]) {
        let replica = Replica {
            instance: format!("operator-{i}"),
            metrics_addr: format!("127.0.0.1:{}", free_port()),
            log_path: self.dir.path().join(format!("operator-{i}.log")),
            child: None,
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&replica.log_path)
            .expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_gitlab-token-operator"))
            .args([
                "run",
                "--namespace",
                OPERATOR_NS,
                "--cluster-name",
                "e2e",
                "--log-format",
                "json",
                "--lease-name",
                LEASE_NAME,
            ])
            .args(match lease_duration {
                Some(d) => vec![
                    "--leader-elect".to_string(),
                    "--lease-duration".into(),
                    d.to_string(),
                ],
                None => Vec::new(),
            })
            .env(
                "GTO_LEADER_ELECT",
                if lease_duration.is_some() { "true" } else { "false" },
            )
            .arg("--instance")
            .arg(&replica.instance)
            .arg("--metrics-addr")
            .arg(&replica.metrics_addr)
            .arg("--clock-offset-file")
            .arg(self.world.clock_offset_path())
            .env("KUBECONFIG", self.world.kubeconfig_path())
            .env("RUST_LOG", "info,gitlab_token_operator=debug")
            .envs(self.operator_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(extra.iter().copied())
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .expect("operator binary runs");
        let url = format!("http://{}/readyz", replica.metrics_addr);
        let replica = Replica {
            child: Some(child),
            ..replica
        };
        match self.replicas.get_mut(i) {
            Some(slot) => *slot = replica,
            None => self.replicas.push(replica),
        }
        eventually(&format!("operator-{i} to report ready"), || {
            let url = url.clone();
            async move {
                reqwest::get(&url)
                    .await
                    .ok()
                    .filter(|r| r.status() == 200)
                    .map(|_| ())
            }
        })
        .await;
    }

    /// SIGKILLs replica `i` (a crash: the Lease is not released).
    pub async fn kill_replica(&mut self, i: usize) {
        if let Some(mut child) = self.replicas[i].child.take() {
            let _ = child.kill().await;
        }
    }

    /// Sends SIGTERM to replica `i` and waits for it to exit; returns whether it exited cleanly.
    pub async fn terminate_replica(&mut self, i: usize) -> bool {
        let Some(mut child) = self.replicas[i].child.take() else {
            return false;
        };
        let pid = child.id().expect("running").to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .expect("kill runs");
        assert!(sent.success(), "SIGTERM to {pid}");
        match tokio::time::timeout(WAIT, child.wait()).await {
            Ok(Ok(status)) => status.success(),
            _ => {
                let _ = child.kill().await;
                false
            }
        }
    }

    /// Waits (up to [`WAIT`]) for replica `i` to exit on its own; returns its exit code.
    pub async fn wait_replica_exit(&mut self, i: usize) -> Option<i32> {
        let mut child = self.replicas[i].child.take()?;
        match tokio::time::timeout(WAIT, child.wait()).await {
            Ok(Ok(status)) => status.code(),
            _ => {
                let _ = child.kill().await;
                None
            }
        }
    }

    /// The Lease's current holder identity, if any.
    pub async fn lease_holder(&self) -> Option<String> {
        let api: Api<k8s_openapi::api::coordination::v1::Lease> =
            Api::namespaced(self.client.clone(), OPERATOR_NS);
        api.get_opt(LEASE_NAME)
            .await
            .ok()
            .flatten()?
            .spec?
            .holder_identity
            .filter(|h| !h.is_empty())
    }

    /// Replica `i`'s `gitlab_token_operator_leader` gauge (None when it does not answer).
    pub async fn replica_leader_metric(&self, i: usize) -> Option<i64> {
        let url = format!("http://{}/metrics", self.replicas[i].metrics_addr);
        let text = reqwest::get(&url).await.ok()?.text().await.ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("gitlab_token_operator_leader "))
            .and_then(|v| v.trim().parse().ok())
    }

    /// Everything replica `i` logged so far.
    pub fn replica_logs(&self, i: usize) -> String {
        std::fs::read_to_string(&self.replicas[i].log_path).unwrap_or_default()
    }
}
