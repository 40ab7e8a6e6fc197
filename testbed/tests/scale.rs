//! `testbed scale` at a small seeded size (30 sources over 3 namespaces, 5 projects) with the
//! real operator binary. Asserts counts only, never timings: every token issued exactly once,
//! nothing written to GitLab and nothing changed in Kubernetes at steady state or by a restart.
//! Calls and requests per token are bounded at what the code achieves today (issue 10's targets
//! at 10,000 sources are tighter; `make bench` reports them).

use std::{path::PathBuf, time::Duration};

use testbed::scale::{ScaleOptions, run};

/// The operator binary: `$GTO_OPERATOR_BIN`, else `<target>/debug/gitlab-token-operator`.
/// Missing is a failure, not a skip: `make test` builds `--bins` first.
fn operator_bin() -> PathBuf {
    let path = std::env::var_os("GTO_OPERATOR_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
            target.join("debug/gitlab-token-operator")
        });
    assert!(
        path.is_file(),
        "the operator binary {} is missing: run `cargo build --bins` (or `make test`) first, \
         or set GTO_OPERATOR_BIN",
        path.display()
    );
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_sources_issue_once_and_a_restart_writes_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut options = ScaleOptions::new(operator_bin(), dir.path().to_path_buf(), 30, 5);
    options.idle = Duration::from_secs(5);
    options.restart_window = Duration::from_secs(15);
    options.timeout = Duration::from_secs(240);
    options.progress = false;
    let report = run(options).await.expect("the benchmark runs");
    println!("{}", report.table());

    let issue = &report.issue;
    assert_eq!(
        (issue.tokens, issue.ready),
        (30, 30),
        "every source got a Ready GitLabToken"
    );
    assert_eq!(
        issue.traffic.gitlab.get("POST /projects/:id/access_tokens"),
        Some(&30),
        "one mint per token, no duplicates: {:?}",
        issue.traffic.gitlab
    );

    assert_eq!(
        issue.traffic.gitlab.get("GET /user"),
        None,
        "the connection is not checked again while tokens are issued (its own status write must \
         not wake it): {:?}",
        issue.traffic.gitlab
    );
    // Regression bounds on the request counts (issue 10's targets are 1.05 and 8 at 10,000 over
    // 1,000 projects; here 5 projects over 30 tokens add 0.17 project reads per token). Measured
    // after the reflector and no-op-write work: 1.17 and about 14; after sharing the token cache
    // and not repeating writes the cache has not seen yet, about 10.
    assert!(
        issue.gitlab_per_token <= 1.0 + 5.0 / 30.0 + 0.01,
        "GitLab calls per token {:.2}: {:?}",
        issue.gitlab_per_token,
        issue.traffic.gitlab
    );
    assert!(
        issue.kube_per_token <= 12.0,
        "Kubernetes requests per token {:.1}: {:?}",
        issue.kube_per_token,
        issue.traffic.kube
    );
    // Before: 1.1 reads per token (the shim's look for a user's GitLabToken of the same name, and
    // the token controller's whenever its cache was not at the version it last read). Now only a
    // cache still behind this process's own last write is read past.
    assert!(
        issue.traffic.kube_count("get gitlabtokens") <= 10,
        "GitLabTokens are read from the shared cache, not once per token: {:?}",
        issue.traffic.kube
    );
    assert!(
        issue.traffic.kube_count("patch gitrepositories") <= 60,
        "each source is patched twice (pointed at its Secret, then nudged once its token is \
         there), not again while the cache lags: {:?}",
        issue.traffic.kube
    );
    // kube-rs speaks HTTP/1.1: one connection per request in flight (bounded to 16) plus one
    // per open watch (about 17).
    assert!(
        issue.kube_connections_peak <= 40,
        "Kubernetes connections at once: {}",
        issue.kube_connections_peak
    );
    let steady = report.steady.as_ref().expect("steady phase ran");
    assert_eq!(
        steady.traffic.gitlab_writes(),
        0,
        "steady: {:?}",
        steady.traffic.gitlab
    );
    assert_eq!(
        steady.traffic.kube_writes(),
        0,
        "steady: {:?}",
        steady.traffic.kube
    );

    let edit = report.policy_edit.as_ref().expect("policy edit ran");
    assert!(
        edit.reevaluated_secs.is_some() && edit.reconciles >= 30,
        "the policy edit re-evaluated every token ({} reconciles)",
        edit.reconciles
    );
    assert!(
        edit.renewal_secs.is_some(),
        "the renewal asked for with the policy edit was done"
    );
    assert_eq!(
        edit.gitlab_besides_renewal(),
        0,
        "a policy edit that changes no decision mints or revokes nothing but the renewal asked \
         for with it: {:?}",
        edit.traffic.gitlab
    );
    assert_eq!(
        edit.traffic.gitlab_count("POST /projects/:id/access_tokens"),
        1,
        "exactly one mint, the renewal's: {:?}",
        edit.traffic.gitlab
    );

    let restart = report.restart.as_ref().expect("restart ran");
    assert_eq!(
        restart.ready_after, 30,
        "every token still Ready after the restart"
    );
    assert_eq!(
        restart.traffic.gitlab_writes(),
        0,
        "a restart writes nothing to GitLab: {:?}",
        restart.traffic.gitlab
    );
    assert_eq!(
        restart.traffic.gitlab_count("GET /projects/:id"),
        0,
        "a restart re-reads no project the ledgers recorded: {:?}",
        restart.traffic.gitlab
    );
    assert!(
        restart.traffic.gitlab_count("GET /user") <= 1,
        "a restart checks the connection once, however many events wake it: {:?}",
        restart.traffic.gitlab
    );
    assert_eq!(
        restart.traffic.kube_writes(),
        0,
        "a restart writes nothing to Kubernetes, not even a no-op: {:?}",
        restart.traffic.kube
    );
    assert!(
        restart.traffic.kube_count("get secrets") <= 1,
        "a restart reads no token's Secret (each status records the version it wrote), only the \
         connection's credentials: {:?}",
        restart.traffic.kube
    );
    assert!(
        report.late_source_secs.is_some(),
        "a source created right after a restart was served"
    );
    let interrupted = report.interrupted.as_ref().expect("the interrupted batch ran");
    assert!(
        matches!(interrupted.sigterm_full_queue, Some(Some(_))),
        "SIGTERM with a full queue: the operator exited by itself, before the 30 s grace ran out"
    );
    assert_eq!(
        (interrupted.tokens, interrupted.ready),
        (100, 100),
        "the restarted operator finished the interrupted batch"
    );
    assert_eq!(
        interrupted
            .traffic
            .gitlab_count("POST /projects/:id/access_tokens"),
        100,
        "one mint per token across the stop and the restart (nothing half-done was done twice): \
         {:?}",
        interrupted.traffic.gitlab
    );
    assert_eq!(
        restart.traffic.kube_changes, 0,
        "a restart changes nothing in Kubernetes: {:?}",
        restart.traffic.kube
    );
}
