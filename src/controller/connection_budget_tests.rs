//! The connection's GitLab budget and project cache, against the GitLab emulator: both belong
//! to the connection (by name), not to one client object.

use super::*;
use crate::gitlab::ratelimit::ManualMonotonic;
use testbed::gitlab::{FaultAction, FaultRule, GitLabConfig, GitLabServer, seed_default};

fn connection(url: &str) -> GitLabConnection {
    serde_json::from_value(json!({
        "apiVersion": "gitlabtokens.io/v1alpha1", "kind": "GitLabConnection",
        "metadata": {"name": "gitlab", "generation": 1},
        "spec": {"url": url, "credentials": {"secretRef": {"namespace": "gto", "name": "gitlab"}}}
    }))
    .unwrap()
}

/// Issue 9 item 11: GitLab answers `Retry-After: 120`; the connection is marked not ready and
/// re-checked with a new client, as the controller does. No request may reach GitLab inside
/// the window (counted at the emulator), and the first one after it goes out. Time is the
/// connections' injected clock, moved by hand: nothing sleeps.
#[tokio::test]
async fn a_retry_after_window_outlives_a_rebuilt_client() {
    testbed::init_crypto();
    let gitlab = GitLabServer::start(GitLabConfig::default()).await.unwrap();
    let seed = seed_default(&gitlab.seed()).unwrap();
    gitlab
        .add_fault(FaultRule {
            method: Some("GET".into()),
            path: "/api/v4/version".into(),
            action: FaultAction::RateLimited { retry_after: 120 },
            times: Some(1),
        })
        .unwrap();
    let sent = || {
        gitlab
            .calls()
            .iter()
            .filter(|c| c.path.starts_with("/api/v4/"))
            .count()
    };
    let clock = ManualMonotonic::new();
    let connections = Connections::with_clock(clock.clone());
    let conn = connection(&gitlab.url());
    let metrics = Arc::new(Metrics::default());
    let token = || SecretString::from(seed.operator_token.clone());

    let first = build("gitlab", &conn, token(), "1/1".into(), &metrics, &connections).unwrap();
    let err = first.api.version().await.unwrap_err();
    assert_eq!(
        err,
        GitLabError::RateLimited {
            retry_after: Some(Duration::from_secs(120))
        }
    );
    assert_eq!(sent(), 1);
    connections.mark_not_ready("gitlab", "RateLimited".into());
    assert_eq!(connections.blocked_for("gitlab"), Duration::from_secs(120));

    // The re-check builds a new client object: it must not send inside the window.
    let second = build("gitlab", &conn, token(), "1/2".into(), &metrics, &connections).unwrap();
    assert!(!Arc::ptr_eq(&first.api, &second.api), "a rebuilt client");
    // Up to a minute before the end a request is refused at once; in the last minute it would
    // wait inline for the window to close (RetryPolicy::max_inline_retry_after), never send.
    for (advance, left) in [(0, 120), (30, 90), (29, 61)] {
        clock.advance(Duration::from_secs(advance));
        let err = second.api.version().await.unwrap_err();
        assert_eq!(
            err,
            GitLabError::RateLimited {
                retry_after: Some(Duration::from_secs(left))
            }
        );
        assert_eq!(
            second.api.current_user().await.unwrap_err().reason(),
            "RateLimited"
        );
        assert_eq!(sent(), 1, "nothing sent {left} s before the window closes");
    }
    clock.advance(Duration::from_secs(61));
    assert!(second.api.version().await.is_ok());
    assert_eq!(sent(), 2, "the first request after the window goes out");
    assert!(
        Arc::ptr_eq(&first.projects, &second.projects),
        "the project cache belongs to the connection too"
    );
}

#[tokio::test]
async fn project_lookups_are_cached_per_connection() {
    testbed::init_crypto();
    let gitlab = GitLabServer::start(GitLabConfig::default()).await.unwrap();
    let seed = seed_default(&gitlab.seed()).unwrap();
    let project_reads = || {
        gitlab
            .calls()
            .iter()
            .filter(|c| c.path.starts_with("/api/v4/projects/"))
            .count()
    };
    let connections = Connections::with_clock(ManualMonotonic::new());
    let conn = connection(&gitlab.url());
    let metrics = Arc::new(Metrics::default());
    let token = SecretString::from(seed.operator_token.clone());
    let live = build("gitlab", &conn, token, "1/1".into(), &metrics, &connections).unwrap();
    let p = live
        .resolve_project("acme/team-a/app", Freshness::Cached)
        .await
        .unwrap();
    assert_eq!(p.path_with_namespace, "acme/team-a/app");
    let by_id = live
        .resolve_project(&p.id.to_string(), Freshness::Cached)
        .await
        .unwrap();
    assert_eq!(by_id.id, p.id);
    assert_eq!(project_reads(), 1);
    let missing = live.resolve_project("acme/nope", Freshness::Cached).await;
    assert_eq!(missing.unwrap_err().reason(), "NotFound");
    let missing = live.resolve_project("acme/nope", Freshness::Cached).await;
    assert_eq!(missing.unwrap_err().reason(), "NotFound");
    assert_eq!(project_reads(), 2, "the 404 is cached");
    live.resolve_project("acme/team-a/app", Freshness::Refresh)
        .await
        .unwrap();
    assert_eq!(project_reads(), 3, "a refresh asks GitLab");
}
