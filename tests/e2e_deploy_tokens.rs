//! Deploy tokens and group access tokens end to end, real binary (issue 12): a `GitLabToken` of
//! kind `DeployToken` gets GitLab's `gitlab+deploy-token-N` username in its Secret, clones through
//! the Flux stand-in and real git, survives an Overlap rotation (deploy tokens cannot be rotated
//! in place) with a consumer loop that never fails, and is revoked on deletion; a
//! `GroupAccessToken` (opt-in, its policy names the group) serves two projects of its group and
//! is refused outside it; kinds a policy does not allow are denied with their reason.

mod e2e;

use chrono::Utc;
use e2e::{
    Env,
    lifecycle::{
        ConsumerLoop, credentials, git_ls_remote, secret_token_id, token_values_of, wait_flux_ready,
    },
};
use gitlab_token_operator::crd::{CredentialKind, GitLabToken};
use kube::{
    Api,
    api::{DeleteParams, Patch, PatchParams},
};
use serde_json::{Value, json};

const NS: &str = "team-a";

/// A policy for team namespaces that opts in to deploy tokens and, when `groups` names any, to
/// group tokens on them (a policy allowing group tokens on no group is unusable).
fn kinds_policy(groups: &[&str]) -> Value {
    let mut kinds = vec!["ProjectAccessToken", "DeployToken"];
    if !groups.is_empty() {
        kinds.push("GroupAccessToken");
    }
    json!({"apiVersion": "gitlabtokens.io/v1alpha1", "kind": "GitLabTokenPolicy",
        "metadata": {"name": "team-kinds"},
        "spec": {"namespaceSelector": {"matchNames": ["team-*"]}, "projects": ["acme/**"],
                 "scopes": ["read_repository", "read_registry"],
                 "credentialKinds": kinds,
                 "groups": groups}})
}

fn token(name: &str, project: &str, kind: &str, group: Option<&str>, consumers: &[&str]) -> Value {
    let consumers: Vec<Value> = consumers
        .iter()
        .map(|c| json!({"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository", "name": c}))
        .collect();
    let mut spec = json!({"project": project, "kind": kind, "scopes": ["read_repository"],
        "secret": {"name": name, "format": "basic-auth"}, "consumers": consumers});
    if let Some(g) = group {
        spec["group"] = json!(g);
    }
    json!({"apiVersion": "gitlabtokens.io/v1alpha1", "kind": "GitLabToken",
        "metadata": {"name": name, "namespace": NS}, "spec": spec})
}

async fn git_source(env: &Env, name: &str, project: &str, secret: &str) -> String {
    let url = format!("{}/{project}.git", env.world.gitlab_url());
    env.apply(
        json!({"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"interval": "2s", "url": url, "ref": {"branch": "main"}, "secretRef": {"name": secret}}}),
    )
    .await;
    url
}

/// The emulator's record of a token by kind (`deploy`, `group`) and id.
fn record(env: &Env, kind: &str, id: u64) -> testbed::gitlab::TokenRecord {
    env.world
        .gitlab
        .tokens()
        .into_iter()
        .find(|t| t.kind == kind && t.id == id)
        .unwrap_or_else(|| panic!("GitLab has no {kind} token {id}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_token_pulls_rotates_by_overlap_and_is_revoked_on_deletion() {
    let env = Env::start().await;
    let seen = env.watch_secret_values();
    seen.add(env.world.operator_token().expect("seeded"));

    // The default policy does not allow deploy tokens: denied, with the kind named.
    let url = git_source(&env, "app", "acme/team-a/app", "pull").await;
    env.apply(token("pull", "acme/team-a/app", "DeployToken", None, &["app"]))
        .await;
    let denied = env
        .wait_token_condition(NS, "pull", "Ready", "False", Some("PolicyDenied"))
        .await;
    let message = denied
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(message.contains("kind: DeployToken is not allowed"), "{message}");

    env.apply(kinds_policy(&[])).await;
    let calls_before = env.world.gitlab.calls().len();
    let t1 = env
        .wait_token_condition(NS, "pull", "Ready", "True", Some("Issued"))
        .await;
    let issue_calls = env.world.gitlab.calls().len() - calls_before;
    let c1 = t1
        .status
        .as_ref()
        .and_then(|s| s.current.clone())
        .expect("current");
    assert_eq!(c1.kind, CredentialKind::DeployToken);
    let r1 = record(&env, "deploy", c1.token_id);
    assert_eq!(r1.state, "active");
    assert_eq!(r1.scopes, vec!["read_repository".to_string()]);
    let secret1 = env.wait_secret(NS, "pull").await;
    let (user1, pass1) = credentials(&secret1);
    assert_eq!(user1, format!("gitlab+deploy-token-{}", c1.token_id));
    assert_eq!(user1, r1.username, "the Secret carries GitLab's username");
    git_ls_remote(&url, &user1, &pass1)
        .await
        .expect("clone with the deploy token");
    let other = format!("{}/acme/team-b/api.git", env.world.gitlab_url());
    assert!(
        git_ls_remote(&other, &user1, &pass1).await.is_err(),
        "a project deploy token reaches its project only"
    );
    wait_flux_ready(&env, NS, "app").await;

    // Overlap rotation: new token first, the loop never fails, the old one is revoked.
    let consumer = ConsumerLoop::start(&env, NS, "pull", &url);
    let tokens: Api<GitLabToken> = Api::namespaced(env.client.clone(), NS);
    let patch =
        json!({"metadata": {"annotations": {"gitlabtokens.io/renew-requested-at": Utc::now().to_rfc3339()}}});
    tokens
        .patch("pull", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("ask for a renewal");
    let t2 = env
        .wait_token(NS, "pull", "a new deploy token and the old one revoked", |t| {
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
    e2e::eventually("the loop to use the new token", || async {
        (consumer.ok_so_far() > 0).then_some(())
    })
    .await;
    let secret2 = e2e::eventually("the Secret to hold the new token", || async {
        let s = env.wait_secret(NS, "pull").await;
        (secret_token_id(&s) == Some(c2.token_id)).then_some(s)
    })
    .await;
    let (user2, pass2) = credentials(&secret2);
    e2e::eventually("a clone with the new token", || async {
        git_ls_remote(&url, &user2, &pass2).await.ok()
    })
    .await;
    let report = consumer.finish().await;
    println!(
        "deploy token: {issue_calls} GitLab calls to issue; rotation consumer loop {} clones, {} failures, ids {:?}",
        report.ok,
        report.failures.len(),
        report.ids
    );
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(user2, format!("gitlab+deploy-token-{}", c2.token_id));
    // GitLab deletes a deploy token on DELETE (the emulator records it as `deleted`).
    assert_ne!(record(&env, "deploy", c1.token_id).state, "active");
    assert!(
        git_ls_remote(&url, &user1, &pass1).await.is_err(),
        "the old token is dead"
    );

    // Deletion revokes.
    tokens
        .delete("pull", &DeleteParams::default())
        .await
        .expect("delete");
    e2e::eventually("the deploy token to be revoked", || async {
        (record(&env, "deploy", c2.token_id).state != "active").then_some(())
    })
    .await;

    let mut values = seen.values();
    values.extend(token_values_of(&secret1));
    values.extend(token_values_of(&secret2));
    assert!(env.assert_no_leaks(&values).await > 0);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_access_token_serves_the_projects_of_its_group_only() {
    let env = Env::start().await;
    let seen = env.watch_secret_values();
    seen.add(env.world.operator_token().expect("seeded"));
    let infra = git_source(&env, "infra", "acme/platform/infra", "platform").await;
    let charts = git_source(&env, "charts", "acme/platform/charts", "platform").await;

    // Opt-in per policy: a policy naming another group does not allow it.
    env.apply(kinds_policy(&["acme/team-b"])).await;
    env.apply(token(
        "platform",
        "acme/platform/infra",
        "GroupAccessToken",
        Some("acme/platform"),
        &["infra", "charts"],
    ))
    .await;
    env.wait_token_condition(NS, "platform", "Ready", "False", Some("PolicyDenied"))
        .await;
    // The project must sit below the group.
    env.apply(kinds_policy(&["acme/platform"])).await;
    let t1 = env
        .wait_token_condition(NS, "platform", "Ready", "True", Some("Issued"))
        .await;
    let c1 = t1
        .status
        .as_ref()
        .and_then(|s| s.current.clone())
        .expect("current");
    assert_eq!(c1.kind, CredentialKind::GroupAccessToken);
    assert!(c1.group_id.is_some(), "the ledger records the group");
    let r1 = record(&env, "group", c1.token_id);
    assert_eq!(r1.resource.as_deref(), Some("acme/platform"));
    let secret = env.wait_secret(NS, "platform").await;
    let (user, pass) = credentials(&secret);
    git_ls_remote(&infra, &user, &pass).await.expect("infra");
    git_ls_remote(&charts, &user, &pass).await.expect("charts");
    let outside = format!("{}/acme/team-a/app.git", env.world.gitlab_url());
    assert!(
        git_ls_remote(&outside, &user, &pass).await.is_err(),
        "refused outside its group"
    );
    wait_flux_ready(&env, NS, "infra").await;
    wait_flux_ready(&env, NS, "charts").await;

    // A project outside the group is refused with its reason.
    env.apply(token(
        "astray",
        "acme/team-a/app",
        "GroupAccessToken",
        Some("acme/platform"),
        &[],
    ))
    .await;
    env.wait_token_condition(NS, "astray", "Ready", "False", Some("ProjectOutsideGroup"))
        .await;

    let tokens: Api<GitLabToken> = Api::namespaced(env.client.clone(), NS);
    tokens
        .delete("platform", &DeleteParams::default())
        .await
        .expect("delete");
    e2e::eventually("the group token to be revoked", || async {
        (record(&env, "group", c1.token_id).state == "revoked").then_some(())
    })
    .await;
    let mut values = seen.values();
    values.extend(token_values_of(&secret));
    assert!(env.assert_no_leaks(&values).await > 0);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_orphan_sweep_covers_the_groups_a_ledger_names() {
    let env = Env::start_with(e2e::Options {
        operator_env: vec![("GTO_SWEEP_INTERVAL".into(), "1s".into())],
        ..Default::default()
    })
    .await;
    env.apply(kinds_policy(&["acme/platform"])).await;
    env.apply(token(
        "platform",
        "acme/platform/infra",
        "GroupAccessToken",
        Some("acme/platform"),
        &[],
    ))
    .await;
    let t = env
        .wait_token_condition(NS, "platform", "Ready", "True", Some("Issued"))
        .await;
    let c = t
        .status
        .as_ref()
        .and_then(|s| s.current.clone())
        .expect("current");
    let group = c.group_id.expect("group id in the ledger");
    let uid = kube::ResourceExt::uid(&t).expect("uid");

    // As if a crash lost a group token minted for this GitLabToken (our marker, no ledger entry).
    let expires = (env.gitlab_now() + chrono::Duration::days(30))
        .date_naive()
        .to_string();
    let resp = reqwest::Client::new()
        .post(format!(
            "{}/api/v4/groups/{group}/access_tokens",
            env.world.gitlab_url()
        ))
        .header("PRIVATE-TOKEN", env.world.operator_token().expect("seeded"))
        .json(
            &json!({"name": format!("gto-e2e-{uid}"), "scopes": ["read_repository"],
                      "access_level": 20, "expires_at": expires}),
        )
        .send()
        .await
        .expect("mint");
    assert_eq!(resp.status(), 201);
    let lost = resp.json::<Value>().await.expect("json")["id"]
        .as_u64()
        .expect("id");
    env.world
        .advance_clock(chrono::Duration::hours(1))
        .expect("clock");
    e2e::eventually("the lost group token to be swept", || async {
        (record(&env, "group", lost).state == "revoked").then_some(())
    })
    .await;
    assert_eq!(
        record(&env, "group", c.token_id).state,
        "active",
        "the live group token stays"
    );
    env.stop().await;
}
