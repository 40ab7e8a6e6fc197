//! Issue 9 item 5: a `GitLabToken` deleted while a mint may be in flight, with its connection not
//! live, keeps its finalizer until the in-flight token is resolved on its project — it is never
//! released with a live token nobody accounts for.

mod e2e;

use std::time::Duration;

use e2e::{
    Env, OPERATOR_NS, Options,
    crash::{APP_PROJECT as PROJECT, APP_TOKEN as TOKEN, CRASH_EXIT},
    eventually,
    lifecycle::{annotated_repo, git_repositories},
};
use gitlab_token_operator::crd::GitLabToken;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, ResourceExt, api::DeleteParams};
use serde_json::json;

const NS: &str = "team-a";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_waits_for_an_in_flight_mint_while_the_connection_is_down() {
    let mut env = Env::start_with(Options::default()).await;
    env.arm_crash_point("issue.after_create").await;
    annotated_repo(&env, NS, "app", PROJECT, "1m").await;
    assert_eq!(
        env.wait_operator_exit(Duration::from_secs(30)).await,
        Some(CRASH_EXIT),
        "the operator stops right after GitLab minted the token"
    );
    let tokens: Api<GitLabToken> = Api::namespaced(env.client.clone(), NS);
    let token = tokens.get(TOKEN).await.expect("the GitLabToken");
    let uid = token.uid().expect("uid");
    let pending = token.status.as_ref().and_then(|s| s.pending.clone());
    assert!(
        pending.is_some(),
        "the write-ahead record names the mint in flight"
    );
    let minted: Vec<u64> = env
        .active_marker_tokens()
        .into_iter()
        .filter(|t| t.name.ends_with(&uid))
        .map(|t| t.id)
        .collect();
    assert_eq!(minted.len(), 1, "one token minted before the crash");

    // The connection goes down (its credentials are gone), then the source is deleted.
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), OPERATOR_NS);
    secrets
        .delete("gitlab-operator-token", &DeleteParams::default())
        .await
        .expect("delete the credentials");
    env.delete(&git_repositories(&env, NS).await, "app").await;
    env.start_operator().await;

    // Several reconciles later the GitLabToken still holds its finalizer and its record.
    let before = env.token_reconciles().await;
    eventually("the operator to try the deletion a few times", || async {
        (env.token_reconciles().await >= before + 3.0).then_some(())
    })
    .await;
    let held = tokens.get(TOKEN).await.expect("still there");
    assert!(held.metadata.deletion_timestamp.is_some());
    assert!(
        held.status.as_ref().and_then(|s| s.pending.as_ref()).is_some(),
        "the in-flight record is kept while the connection is down"
    );
    assert_eq!(
        env.active_marker_tokens()
            .iter()
            .filter(|t| minted.contains(&t.id))
            .count(),
        1,
        "nothing revoked it yet, and nothing forgot it"
    );

    // The connection comes back: the in-flight token is revoked and the object released.
    let value = env.world.operator_token().expect("seeded").to_string();
    env.apply(json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "gitlab-operator-token", "namespace": OPERATOR_NS},
        "stringData": {"token": value}}))
        .await;
    eventually("the GitLabToken to be released with no live token", || async {
        let gone = tokens.get_opt(TOKEN).await.ok().flatten().is_none();
        let live = env.active_marker_tokens().iter().any(|t| t.name.ends_with(&uid));
        (gone && !live).then_some(())
    })
    .await;
    env.stop().await;
}
