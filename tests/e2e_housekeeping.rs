//! Housekeeping the real binary does on its own: the orphan sweep (DESIGN §6.7), and serving a
//! source stored under an older API version the Flux CRDs still serve (`v1beta2`).

mod e2e;

use e2e::{Env, Options, eventually};
use gitlab_token_operator::crd::GitLabToken;
use kube::{Api, ResourceExt};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v1beta2_oci_repository_is_served_like_v1() {
    let env = Env::start().await;
    let registry = env.world.registry_host();
    env.apply(json!({"apiVersion": "source.toolkit.fluxcd.io/v1beta2", "kind": "OCIRepository",
        "metadata": {"name": "legacy", "namespace": "team-a", "annotations": {"gitlabtokens.io/inject": "true"}},
        "spec": {"interval": "1m", "url": format!("oci://{registry}/acme/team-a/app"), "ref": {"tag": "1.0.0"}, "insecure": true}}))
        .await;
    env.wait_token_condition("team-a", "legacy-gitlab-token", "Ready", "True", None)
        .await;
    let secret = env.wait_secret("team-a", "legacy-gitlab-token").await;
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/dockerconfigjson"));
    let config = Env::secret_value(&secret, ".dockerconfigjson");
    assert!(
        config.contains(&format!("\"{registry}\"")),
        "keyed by the bare registry host: {config}"
    );
    env.stop().await;
}

async fn mint(env: &Env, project_id: u64, name: &str) -> u64 {
    let expires = (env.gitlab_now() + chrono::Duration::days(30))
        .date_naive()
        .to_string();
    let body =
        json!({"name": name, "scopes": ["read_repository"], "access_level": 20, "expires_at": expires});
    let resp = reqwest::Client::new()
        .post(format!(
            "{}/api/v4/projects/{project_id}/access_tokens",
            env.world.gitlab_url()
        ))
        .header("PRIVATE-TOKEN", env.world.operator_token().unwrap())
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    resp.json::<serde_json::Value>().await.unwrap()["id"]
        .as_u64()
        .unwrap()
}

fn state_of(env: &Env, id: u64) -> String {
    env.world
        .gitlab
        .tokens()
        .into_iter()
        .find(|t| t.id == id && t.kind == "project")
        .map(|t| t.state)
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_orphan_sweep_revokes_old_tokens_with_our_marker_that_no_ledger_accounts_for() {
    let env = Env::start_with(Options {
        operator_env: vec![("GTO_SWEEP_INTERVAL".into(), "1s".into())],
        ..Default::default()
    })
    .await;
    let url = format!("{}/acme/team-a/app.git", env.world.gitlab_url());
    env.apply(
        json!({"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
        "metadata": {"name": "app", "namespace": "team-a", "annotations": {"gitlabtokens.io/inject": "true"}},
        "spec": {"interval": "1m", "url": url, "ref": {"branch": "main"}}}),
    )
    .await;
    let token = env
        .wait_token_condition("team-a", "app-gitlab-token", "Ready", "True", None)
        .await;
    let status = token.status.clone().unwrap();
    let (project, current) = (status.project.unwrap().id, status.current.unwrap().token_id);
    let uid = token.uid().unwrap();

    // As if a crash lost a token issued for this GitLabToken, next to look-alikes to be spared.
    let lost = mint(&env, project, &format!("gto-e2e-{uid}")).await;
    let gone_owner = mint(&env, project, "gto-e2e-00000000-0000-0000-0000-000000000000").await;
    let hand_made = mint(&env, project, "hand-made").await;

    // Young tokens may be an issue in flight: several sweeps pass and nothing is revoked.
    let sweeps_before = env.operator_logs().matches("orphan sweep done").count();
    eventually("two more sweeps", || async {
        (env.operator_logs().matches("orphan sweep done").count() >= sweeps_before + 2).then_some(())
    })
    .await;
    assert_eq!(state_of(&env, lost), "active", "a young token was swept");

    // An hour later the lost token and the deleted GitLabToken's token are orphans (no policy
    // allows Retain, so nothing may outlive its ledger); nothing else is touched.
    env.world.advance_clock(chrono::Duration::hours(1)).unwrap();
    eventually("the orphans to be revoked", || async {
        (state_of(&env, lost) == "revoked" && state_of(&env, gone_owner) == "revoked").then_some(())
    })
    .await;
    for (id, what) in [(current, "the live token"), (hand_made, "a hand-made token")] {
        assert_eq!(state_of(&env, id), "active", "{what} was revoked");
    }
    assert!(
        env.metric(
            "gitlab_token_operator_tokens_revoked_total",
            &[("reason", "Orphaned")]
        )
        .await
            >= 1.0
    );
    let api: Api<GitLabToken> = Api::namespaced(env.client.clone(), "team-a");
    assert_eq!(
        api.get("app-gitlab-token")
            .await
            .unwrap()
            .status
            .unwrap()
            .current
            .unwrap()
            .token_id,
        current
    );
    env.stop().await;
}

/// Issue 9: a GitLabToken deleted after an admin removed its connection by hand (finalizer
/// stripped) cannot revoke its token; it hands it to the orphan sweep (event `HandedToSweep`,
/// the handover ConfigMap), lets go, and the sweep of a connection created later to the same
/// GitLab revokes it and clears the record. Nothing else is touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_whose_connection_was_removed_by_hand_is_handed_to_the_sweep() {
    use e2e::{CONNECTION, OPERATOR_NS, crash::issued_app};
    use gitlab_token_operator::crd::GitLabConnection;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{DeleteParams, Patch, PatchParams};

    let mut env = Env::start_with(Options {
        operator_env: vec![("GTO_SWEEP_INTERVAL".into(), "1s".into())],
        ..Default::default()
    })
    .await;
    let (uid, id) = issued_app(&env, "team-a").await;
    // A group access token (another kind, held on a group's endpoints) is handed over too.
    env.apply(
        json!({"apiVersion": "gitlabtokens.io/v1alpha1", "kind": "GitLabTokenPolicy",
        "metadata": {"name": "team-groups"},
        "spec": {"namespaceSelector": {"matchNames": ["team-a"]}, "projects": ["acme/**"],
                 "scopes": ["read_repository"],
                 "credentialKinds": ["ProjectAccessToken", "GroupAccessToken"],
                 "groups": ["acme/platform"]}}),
    )
    .await;
    env.apply(
        json!({"apiVersion": "gitlabtokens.io/v1alpha1", "kind": "GitLabToken",
        "metadata": {"name": "platform", "namespace": "team-a"},
        "spec": {"project": "acme/platform/infra", "kind": "GroupAccessToken", "group": "acme/platform",
                 "scopes": ["read_repository"], "secret": {"name": "platform", "format": "basic-auth"}}}),
    )
    .await;
    let group_token = env
        .wait_token_condition("team-a", "platform", "Ready", "True", Some("Issued"))
        .await;
    let group_id = e2e::crash::current_token_id(&group_token).expect("group token issued");
    let group_state = |env: &Env| {
        env.world
            .gitlab
            .tokens()
            .into_iter()
            .find(|t| t.kind == "group" && t.id == group_id)
            .map(|t| t.state)
            .unwrap_or_default()
    };
    // A bystander on another namespace keeps its token through all of this (until its own deletion).
    let (_, bystander) = issued_app(&env, "team-b").await;

    // The admin lets go of the connection by hand while the operator is down (a running operator
    // still holds the connection's client and revokes through it: ConnectionDeleted).
    env.kill_operator().await;
    let connections: Api<GitLabConnection> = Api::all(env.client.clone());
    let spec = connections.get(CONNECTION).await.expect("connection").spec;
    connections
        .patch(
            CONNECTION,
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"finalizers": null}})),
        )
        .await
        .expect("finalizer removed");
    connections
        .delete(CONNECTION, &DeleteParams::default())
        .await
        .expect("connection deleted");
    eventually("the connection to be gone", || async {
        connections
            .get_opt(CONNECTION)
            .await
            .ok()
            .flatten()
            .is_none()
            .then_some(())
    })
    .await;
    env.start_operator().await;

    // Deleting the source: the token cannot be revoked, so it is handed over, evented, and let go.
    env.delete(&e2e::lifecycle::git_repositories(&env, "team-a").await, "app")
        .await;
    let message = env
        .wait_warning("team-a", "app-gitlab-token", "HandedToSweep")
        .await;
    assert!(
        message.contains(&id.to_string()) && message.contains("gitlab-token-operator-handover"),
        "the event names the token and the record: {message}"
    );
    let tokens: Api<GitLabToken> = Api::namespaced(env.client.clone(), "team-a");
    tokens
        .delete("platform", &DeleteParams::default())
        .await
        .expect("group token deleted");
    eventually("the group token's GitLabToken to be released", || async {
        tokens
            .get_opt("platform")
            .await
            .ok()
            .flatten()
            .is_none()
            .then_some(())
    })
    .await;
    eventually("the GitLabToken to be released", || async {
        tokens
            .get_opt("app-gitlab-token")
            .await
            .ok()
            .flatten()
            .is_none()
            .then_some(())
    })
    .await;
    let record = || async {
        Api::<ConfigMap>::namespaced(env.client.clone(), OPERATOR_NS)
            .get_opt("gitlab-token-operator-handover")
            .await
            .expect("read")
            .and_then(|c| c.data)
            .and_then(|d| d.get("tokens.json").cloned())
            .unwrap_or_default()
    };
    let recorded = record().await;
    assert!(
        recorded.contains(&format!("\"tokenId\": {id}")) && recorded.contains(&uid),
        "the handover record names the token and its owner: {recorded}"
    );
    assert_eq!(
        state_of(&env, id),
        "active",
        "no connection: nobody could revoke it yet"
    );
    assert!(
        recorded.contains(&format!("\"tokenId\": {group_id}")) && recorded.contains("GroupAccessToken"),
        "the record names the group token with its kind: {recorded}"
    );
    assert_eq!(group_state(&env), "active");
    assert!(!recorded.contains("glpat-"), "no token value in the record");

    // A connection to the same GitLab appears: its sweep revokes the handed-over token.
    env.apply(
        json!({"apiVersion": "gitlabtokens.io/v1alpha1", "kind": "GitLabConnection",
        "metadata": {"name": "gitlab-again"}, "spec": spec}),
    )
    .await;
    eventually(
        "the handed-over token to be revoked and the record cleared",
        || async {
            let now = record().await;
            let cleared = !now.contains(&format!("\"tokenId\": {id}"))
                && !now.contains(&format!("\"tokenId\": {group_id}"));
            (state_of(&env, id) == "revoked" && group_state(&env) == "revoked" && cleared).then_some(())
        },
    )
    .await;
    assert_eq!(
        state_of(&env, bystander),
        "active",
        "the sweep touched another token"
    );
    assert!(
        env.metric(
            "gitlab_token_operator_tokens_revoked_total",
            &[("reason", "HandedToSweep")]
        )
        .await
            >= 1.0
    );
    env.stop().await;
}
