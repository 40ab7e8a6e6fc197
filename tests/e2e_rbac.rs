//! A tenant with namespace-edit rights (including creating GitLabTokens and Flux sources in its
//! own namespace) cannot read the operator's GitLab credential, cannot create or edit policies or
//! connections, and cannot obtain a token its namespace's policy does not allow. The operator
//! itself runs with the chart's RBAC in every e2e test (see `tests/e2e/mod.rs`).

mod e2e;

use e2e::{Env, OPERATOR_NS};
use gitlab_token_operator::crd::{GitLabConnection, GitLabToken, GitLabTokenPolicy};
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api,
    api::{Patch, PatchParams, PostParams},
};
use serde_json::json;

fn is_forbidden<T: std::fmt::Debug>(result: &Result<T, kube::Error>) -> bool {
    matches!(result, Err(kube::Error::Api(s)) if s.code == 403)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_editor_cannot_reach_credentials_policies_connections_or_tokens_beyond_policy() {
    let env = Env::start().await;
    // namespace-edit rights in team-a: everything tenants normally manage, GitLabTokens included.
    env.apply(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "namespace-edit", "namespace": "team-a"},
        "rules": [
            {"apiGroups": [""], "resources": ["secrets", "configmaps", "serviceaccounts"], "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
            {"apiGroups": ["source.toolkit.fluxcd.io", "image.toolkit.fluxcd.io"], "resources": ["gitrepositories", "ocirepositories", "helmrepositories", "imagerepositories"], "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
            {"apiGroups": ["gitlabtokens.io"], "resources": ["gitlabtokens"], "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]}
        ]})).await;
    env.apply(
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "alice-edit", "namespace": "team-a"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "namespace-edit"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}]}),
    )
    .await;
    env.world.kube.add_user_token("alice-token", "alice", &[]);
    let alice = env
        .world
        .kube
        .client_for("alice-token")
        .await
        .expect("client for alice");

    // The operator's own GitLab credential is out of reach.
    let operator_secrets: Api<Secret> = Api::namespaced(alice.clone(), OPERATOR_NS);
    assert!(
        is_forbidden(&operator_secrets.get("gitlab-operator-token").await),
        "alice read the operator credential"
    );
    assert!(
        is_forbidden(&operator_secrets.list(&Default::default()).await),
        "alice listed operator Secrets"
    );

    // Policies and connections are admin objects.
    let policies: Api<GitLabTokenPolicy> = Api::all(alice.clone());
    let own_policy: GitLabTokenPolicy = serde_json::from_value(json!({
        "apiVersion": "gitlabtokens.io/v1alpha1", "kind": "GitLabTokenPolicy", "metadata": {"name": "alice-allows-everything"},
        "spec": {"namespaceSelector": {"matchNames": ["*"]}, "projects": ["**"], "maxAccessLevel": "maintainer"}}))
    .unwrap();
    assert!(
        is_forbidden(&policies.create(&PostParams::default(), &own_policy).await),
        "alice created a policy"
    );
    let widen = json!({"spec": {"projects": ["**"]}});
    assert!(
        is_forbidden(
            &policies
                .patch("teams", &PatchParams::default(), &Patch::Merge(&widen))
                .await
        ),
        "alice edited a policy"
    );
    let connections: Api<GitLabConnection> = Api::all(alice.clone());
    let redirect = json!({"spec": {"url": "https://evil.example"}});
    assert!(is_forbidden(
        &connections
            .patch("gitlab", &PatchParams::default(), &Patch::Merge(&redirect))
            .await
    ));
    assert!(
        is_forbidden(&connections.delete("gitlab", &Default::default()).await),
        "alice deleted the connection"
    );
    let elsewhere: Api<GitLabToken> = Api::namespaced(alice.clone(), OPERATOR_NS);
    let token = |name: &str, project: &str, level: &str| -> GitLabToken {
        serde_json::from_value(
            json!({"apiVersion": "gitlabtokens.io/v1alpha1", "kind": "GitLabToken",
            "metadata": {"name": name},
            "spec": {"project": project, "scopes": ["read_repository"], "accessLevel": level,
                     "secret": {"name": name, "format": "basic-auth"}}}),
        )
        .unwrap()
    };
    assert!(is_forbidden(
        &elsewhere
            .create(&PostParams::default(), &token("x", "acme/team-a/app", "reporter"))
            .await
    ));

    // In her own namespace she may ask, but policy decides: a project outside acme/** and a
    // role above the policy's maximum are both denied, and nothing is minted in GitLab.
    let own: Api<GitLabToken> = Api::namespaced(alice.clone(), "team-a");
    own.create(
        &PostParams::default(),
        &token("foreign-project", "other-org/secret-project", "reporter"),
    )
    .await
    .unwrap();
    own.create(
        &PostParams::default(),
        &token("too-high", "acme/team-a/app", "maintainer"),
    )
    .await
    .unwrap();
    let denied = env
        .wait_token_condition(
            "team-a",
            "foreign-project",
            "Ready",
            "False",
            Some("PolicyDenied"),
        )
        .await;
    let message = denied
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap()
        .message;
    assert!(
        message.contains("project"),
        "the denial names the project: {message}"
    );
    let too_high = env
        .wait_token_condition("team-a", "too-high", "Ready", "False", Some("PolicyDenied"))
        .await;
    let message = too_high
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap()
        .message;
    assert!(
        message.contains("accessLevel"),
        "the denial names the access level: {message}"
    );
    assert!(
        env.gitlab_tokens("other-org/secret-project").is_empty(),
        "a token was minted for a denied project"
    );
    assert!(
        env.gitlab_tokens("acme/team-a/app")
            .iter()
            .all(|t| t.access_level != Some(40)),
        "a maintainer token was minted"
    );
    assert!(
        env.active_operator_tokens().is_empty(),
        "no request of alice's was allowed, so no token may exist"
    );
    env.stop().await;
}
