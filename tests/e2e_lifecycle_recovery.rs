//! Token lifecycle under outside events (DESIGN §6.4, §6.6): a token revoked behind the
//! operator's back is replaced, deleting the source or its whole namespace leaves no active token
//! in GitLab, and a restarted operator mints nothing. Every test ends with a leak scan.

mod e2e;

use std::time::Instant;

use chrono::Duration as Days;
use e2e::{
    Env, OPERATOR_NS,
    lifecycle::{
        annotated_repo, credentials, git_repositories, gitlab_token, operator_api_calls, token_mints,
        wait_flux_ready, wait_secret_token,
    },
};
use gitlab_token_operator::crd::GitLabToken;
use kube::Api;

const TOKEN: &str = "app-gitlab-token";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_revoked_behind_the_operators_back_is_replaced_at_the_next_verification() {
    let started = Instant::now();
    let env = Env::start().await;
    let seen = env.watch_secret_values();
    seen.add(env.world.operator_token().expect("seeded"));
    let url = annotated_repo(&env, "team-a", "app", "acme/team-a/app", "1m").await;
    let t1 = env
        .wait_token_condition("team-a", TOKEN, "Ready", "True", Some("Issued"))
        .await;
    let s1 = t1.status.clone().expect("status");
    let c1 = s1.current.clone().expect("current");
    let project_id = s1.project.as_ref().expect("project").id;
    let secret1 = wait_secret_token(&env, "team-a", TOKEN, c1.token_id).await;
    let (user1, pass1) = credentials(&secret1);
    e2e::git_ls_remote(&url, &user1, &pass1)
        .await
        .expect("the first token works");

    // Someone revokes it in GitLab with an admin's (here: the operator's own) PAT.
    let response = reqwest::Client::new()
        .delete(format!(
            "{}/api/v4/projects/{project_id}/access_tokens/{}",
            env.world.gitlab_url(),
            c1.token_id
        ))
        .header("PRIVATE-TOKEN", env.world.operator_token().expect("seeded"))
        .send()
        .await
        .expect("GitLab answers");
    assert_eq!(response.status().as_u16(), 204);
    assert_eq!(gitlab_token(&env, c1.token_id).state, "revoked");
    assert!(e2e::git_ls_remote(&url, &user1, &pass1).await.is_err());

    // The next verification slot (6 h period, at least 90 min after the last check) is at most
    // 7.5 h away; renewal is days away, so only the verification can notice.
    assert!(s1.renewal_time.expect("renewal") > env.gitlab_now() + Days::days(5));
    let calls_before = env.world.gitlab.calls().len();
    env.world.advance_clock(Days::hours(8)).expect("clock");
    let t2 = env
        .wait_token("team-a", TOKEN, "a replacement token", |t| {
            t.status
                .as_ref()
                .and_then(|s| s.current.as_ref())
                .is_some_and(|c| c.token_id != c1.token_id)
        })
        .await;
    let s2 = t2.status.expect("status");
    let c2 = s2.current.expect("current");
    assert!(s2.previous.is_none(), "a dead token is not kept for an overlap");
    let h1 = s2
        .history
        .iter()
        .find(|h| h.token_id == c1.token_id)
        .expect("history of the revoked token");
    assert_eq!(h1.reason.as_deref(), Some("RevokedExternally"));
    env.wait_token_event("team-a", TOKEN, "TokenRevokedExternally")
        .await;
    let secret2 = wait_secret_token(&env, "team-a", TOKEN, c2.token_id).await;
    let (user2, pass2) = credentials(&secret2);
    e2e::git_ls_remote(&url, &user2, &pass2)
        .await
        .expect("the replacement works");
    assert_eq!(token_mints(&env, calls_before).len(), 1);
    let verified = env.world.gitlab.calls()[calls_before..]
        .iter()
        .filter(|c| {
            let path = c.path.split('?').next().unwrap_or_default();
            c.method == "GET" && path.ends_with(&format!("/projects/{project_id}/access_tokens"))
        })
        .count();
    assert!(
        verified >= 1,
        "the replacement did not come from a verification (one listing of the project's tokens)"
    );
    assert_eq!(env.active_operator_tokens().len(), 1);

    let scanned = env.assert_no_leaks(&seen.values()).await;
    eprintln!(
        "revoked externally: token {} replaced by {} after the clock moved 8 h ({verified} verification call(s)), \
         {} operator API calls for 2 tokens, leak scan {} values over {scanned} bytes, {:?}",
        c1.token_id,
        c2.token_id,
        operator_api_calls(&env),
        seen.values().len(),
        started.elapsed()
    );
    drop(seen);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_source_or_its_namespace_leaves_no_active_token() {
    let started = Instant::now();
    let env = Env::start().await;
    let seen = env.watch_secret_values();
    seen.add(env.world.operator_token().expect("seeded"));
    env.namespace("team-b").await;
    annotated_repo(&env, "team-a", "app", "acme/team-a/app", "1m").await;
    annotated_repo(&env, "team-b", "api", "acme/team-b/api", "1m").await;
    let a = env
        .wait_token_condition("team-a", TOKEN, "Ready", "True", Some("Issued"))
        .await;
    let b = env
        .wait_token_condition("team-b", "api-gitlab-token", "Ready", "True", Some("Issued"))
        .await;
    let a_id = a.status.and_then(|s| s.current).expect("current").token_id;
    let b_id = b.status.and_then(|s| s.current).expect("current").token_id;
    // Let the values land in the Secrets (and so in the leak scan) before tearing down.
    wait_secret_token(&env, "team-a", TOKEN, a_id).await;
    wait_secret_token(&env, "team-b", "api-gitlab-token", b_id).await;
    assert_eq!(env.active_operator_tokens().len(), 2);

    // Deleting the source: the shim deletes its GitLabToken, whose finalizer revokes.
    env.delete(&git_repositories(&env, "team-a").await, "app").await;
    let tokens_a: Api<GitLabToken> = Api::namespaced(env.client.clone(), "team-a");
    e2e::eventually("the GitLabToken of the deleted source to be gone", || {
        let api = tokens_a.clone();
        async move { api.get_opt(TOKEN).await.ok()?.is_none().then_some(()) }
    })
    .await;
    assert_eq!(gitlab_token(&env, a_id).state, "revoked");
    assert!(
        env.gitlab_tokens("acme/team-a/app")
            .iter()
            .all(|t| t.state != "active"),
        "an active token is left for the deleted source"
    );
    env.wait_token_event("team-a", TOKEN, "Revoked").await;

    // Deleting the namespace: the finalizer still revokes (the connection's credentials live in
    // the operator namespace), then the namespace goes away.
    let namespaces = env.namespaces();
    namespaces
        .delete("team-b", &Default::default())
        .await
        .expect("delete namespace");
    e2e::eventually("namespace team-b to be gone", || {
        let api = namespaces.clone();
        async move { api.get_opt("team-b").await.ok()?.is_none().then_some(()) }
    })
    .await;
    assert_eq!(gitlab_token(&env, b_id).state, "revoked");
    assert!(
        env.active_operator_tokens().is_empty(),
        "active tokens left behind"
    );
    let revocations: Vec<_> = env
        .world
        .gitlab
        .calls()
        .into_iter()
        .filter(|c| c.method == "DELETE" && c.path.contains("/access_tokens/") && c.status == 204)
        .collect();
    assert_eq!(revocations.len(), 2, "{revocations:?}");
    let operator_user = env
        .world
        .gitlab
        .calls()
        .into_iter()
        .find(|c| c.method == "POST" && c.path.ends_with("/access_tokens"))
        .and_then(|c| c.user);
    assert!(operator_user.is_some());
    assert!(
        revocations.iter().all(|c| c.user == operator_user),
        "revoked with other credentials than the connection's: {revocations:?}"
    );
    assert!(
        env.namespaces()
            .get_opt(OPERATOR_NS)
            .await
            .expect("get")
            .is_some(),
        "the operator namespace is untouched"
    );

    let scanned = env.assert_no_leaks(&seen.values()).await;
    eprintln!(
        "deletion: source deletion revoked {a_id}, namespace deletion revoked {b_id}, {} operator API calls for 2 \
         tokens, leak scan {} values over {scanned} bytes, {:?}",
        operator_api_calls(&env),
        seen.values().len(),
        started.elapsed()
    );
    drop(seen);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_the_operator_mints_nothing() {
    let started = Instant::now();
    let mut env = Env::start().await;
    let seen = env.watch_secret_values();
    seen.add(env.world.operator_token().expect("seeded"));
    annotated_repo(&env, "team-a", "app", "acme/team-a/app", "1m").await;
    let t1 = env
        .wait_token_condition("team-a", TOKEN, "Ready", "True", Some("Issued"))
        .await;
    let ready_since = |t: &GitLabToken| {
        t.status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.last_transition_time)
    };
    let ready_before = ready_since(&t1);
    let c1 = t1.status.and_then(|s| s.current).expect("current");
    let secret1 = wait_secret_token(&env, "team-a", TOKEN, c1.token_id).await;
    wait_flux_ready(&env, "team-a", "app").await;
    let calls_for_one_token = operator_api_calls(&env);

    env.kill_operator().await;
    let tokens_before = env.world.gitlab.tokens();
    let calls_before = env.world.gitlab.calls().len();
    env.start_operator().await;
    // The new process has reconciled the token (the only one) at least once, successfully.
    e2e::eventually("the restarted operator to reconcile the token", || async {
        (env.reconciles("token").await >= 1.0).then_some(())
    })
    .await;
    let t2 = env
        .wait_token_condition("team-a", TOKEN, "Ready", "True", None)
        .await;
    let events = env.token_event_reasons("team-a", TOKEN).await;
    assert_eq!(
        ready_since(&t2),
        ready_before,
        "the token left Ready across the restart: {:?}, events {events:?}",
        t2.status.as_ref().map(|s| &s.conditions)
    );
    assert_eq!(
        t2.status.and_then(|s| s.current).expect("current").token_id,
        c1.token_id
    );
    let mints = token_mints(&env, calls_before);
    assert!(mints.is_empty(), "the restart minted: {mints:?}");
    let tokens_after = env.world.gitlab.tokens();
    assert_eq!(
        tokens_after
            .iter()
            .map(|t| (t.id, t.state.clone()))
            .collect::<Vec<_>>(),
        tokens_before
            .iter()
            .map(|t| (t.id, t.state.clone()))
            .collect::<Vec<_>>(),
        "GitLab's tokens changed across the restart"
    );
    let secret2 = wait_secret_token(&env, "team-a", TOKEN, c1.token_id).await;
    assert_eq!(secret1.data, secret2.data, "the Secret was rewritten");
    let calls_after_restart = env.world.gitlab.calls().len() - calls_before;

    let scanned = env.assert_no_leaks(&seen.values()).await;
    eprintln!(
        "restart: 0 tokens minted, {calls_after_restart} GitLab calls after the restart, {calls_for_one_token} \
         operator API calls to issue the first token, leak scan {} values over {scanned} bytes, {:?}",
        seen.values().len(),
        started.elapsed()
    );
    drop(seen);
    env.stop().await;
}

/// The Secret's data edited by someone else (here the tenant overwrites the password): the
/// operator notices from the Secret's watch, even though it remembers what it wrote, and puts a
/// working token back; the overwritten token is not left active.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_whose_token_was_overwritten_gets_a_working_token_back() {
    use k8s_openapi::api::core::v1::Secret;
    use kube::api::{Patch, PatchParams};

    let env = Env::start().await;
    let url = annotated_repo(&env, "team-a", "app", "acme/team-a/app", "1m").await;
    let t1 = env
        .wait_token_condition("team-a", TOKEN, "Ready", "True", Some("Issued"))
        .await;
    let c1 = t1.status.expect("status").current.expect("current");
    wait_secret_token(&env, "team-a", TOKEN, c1.token_id).await;

    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), "team-a");
    secrets
        .patch(
            TOKEN,
            &PatchParams::default(),
            &Patch::Merge(&serde_json::json!({"stringData": {"password": "not-a-token"}})),
        )
        .await
        .expect("the tenant's edit");

    let t2 = env
        .wait_token("team-a", TOKEN, "a token issued for the edited Secret", |t| {
            t.status
                .as_ref()
                .and_then(|s| s.current.as_ref())
                .is_some_and(|c| c.token_id != c1.token_id)
        })
        .await;
    let c2 = t2.status.expect("status").current.expect("current");
    let secret = wait_secret_token(&env, "team-a", TOKEN, c2.token_id).await;
    let (user, pass) = credentials(&secret);
    assert_ne!(pass, "not-a-token");
    e2e::git_ls_remote(&url, &user, &pass)
        .await
        .expect("the Secret works again");
    e2e::eventually("the overwritten token to be revoked", || async {
        (gitlab_token(&env, c1.token_id).state == "revoked").then_some(())
    })
    .await;
    env.stop().await;
}
