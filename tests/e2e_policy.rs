//! Policy and refusals end to end: what the policy allows is issued; every refusal (policy
//! verdicts, foreign hosts, SSH, bad annotations, foreign Secrets, unknown projects, conflicting
//! sources) is a Ready=False reason on the GitLabToken when one exists, a Warning Event on the
//! source, a `policy_denials_total` sample, and no token in GitLab, ever.

mod e2e;

use e2e::Env;
use gitlab_token_operator::{crd::GitLabToken, shim::refused::REFUSED_REASON};
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, ResourceExt};
use serde_json::{Value, json};

const NS: &str = "team-a";
const DENIALS: &str = "gitlab_token_operator_policy_denials_total";

fn git_source(ns: &str, name: &str, url: &str, annotations: &[(&str, &str)]) -> Value {
    let mut ann = serde_json::Map::new();
    ann.insert("gitlabtokens.io/inject".into(), json!("true"));
    for (k, v) in annotations {
        ann.insert(format!("gitlabtokens.io/{k}"), json!(v));
    }
    json!({"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
        "metadata": {"name": name, "namespace": ns, "annotations": ann},
        "spec": {"interval": "1m", "url": url, "ref": {"branch": "main"}}})
}

fn repo_url(env: &Env, project: &str) -> String {
    format!("{}/{project}.git", env.world.gitlab_url())
}

/// Asserts GitLab never minted a token for the operator and was never asked to.
fn assert_nothing_minted(env: &Env) {
    let minted = env.all_operator_tokens();
    assert!(minted.is_empty(), "GitLab holds operator tokens: {minted:?}");
    let creates: Vec<_> = env
        .world
        .gitlab
        .calls()
        .into_iter()
        .filter(|c| c.method == "POST" && c.path.contains("access_tokens"))
        .collect();
    assert!(
        creates.is_empty(),
        "the operator asked GitLab for a token: {creates:?}"
    );
}

/// The refusal as the GitLabToken reports it: Ready=False with `reason`, message containing `says`.
async fn token_refused(env: &Env, ns: &str, name: &str, reason: &str, says: &str) -> GitLabToken {
    let t = env
        .wait_token_condition(ns, name, "Ready", "False", Some(reason))
        .await;
    let ready = t
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .unwrap();
    assert!(
        ready.message.contains(says),
        "Ready message {:?} should say {says:?}",
        ready.message
    );
    assert!(
        t.status.as_ref().unwrap().current.is_none(),
        "no current token: {:?}",
        t.status
    );
    t
}

/// The refusal as the source sees it (Warning event) and as /metrics counts it.
async fn source_refused(env: &Env, ns: &str, source: &str, reason: &str, says: &str) {
    let message = env.wait_warning(ns, source, reason).await;
    assert!(
        message.contains(says),
        "event message {message:?} should say {says:?}"
    );
    let count = env.metric(DENIALS, &[("reason", reason)]).await;
    assert!(count >= 1.0, "{DENIALS}{{reason={reason:?}}} is {count}");
}

/// A refusal decided before any token spec exists (the shim cannot form a request): still a
/// GitLabToken named after the Secret, carrying the refusal, which the token controller reports
/// and never serves; the same reason on the source's event.
async fn shim_refused(env: &Env, source: &str, reason: &str, says: &str) {
    let name = format!("{source}-gitlab-token");
    let t = token_refused(env, NS, &name, reason, says).await;
    assert_eq!(
        t.annotations().get(REFUSED_REASON).map(String::as_str),
        Some(reason),
        "the refusal is carried on the GitLabToken"
    );
    let owners: Vec<&str> = t.owner_references().iter().map(|o| o.name.as_str()).collect();
    assert_eq!(owners, [source], "owned by the refused source");
    source_refused(env, NS, source, reason, says).await;
    let reasons: Vec<String> = env
        .events_about(NS, source)
        .await
        .into_iter()
        .filter(|(ty, _, _)| ty == "Warning")
        .map(|(_, r, _)| r)
        .collect();
    assert!(
        reasons.iter().all(|r| r == reason),
        "the source's events name the GitLabToken's reason {reason} only: {reasons:?}"
    );
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), NS);
    assert!(
        secrets
            .get_opt(&format!("{source}-gitlab-token"))
            .await
            .unwrap()
            .is_none(),
        "no Secret for an unusable request"
    );
    assert_nothing_minted(env);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_most_the_policy_allows_is_issued() {
    let env = Env::start().await;
    let url = repo_url(&env, "acme/team-a/app");
    env.apply(git_source(
        NS,
        "pusher",
        &url,
        &[
            ("access-level", "developer"),
            ("write", "true"),
            ("lifetime", "90d"),
        ],
    ))
    .await;
    let t = env
        .wait_token_condition(NS, "pusher-gitlab-token", "Ready", "True", Some("Issued"))
        .await;
    let status = t.status.unwrap();
    assert_eq!(status.policy.as_deref(), Some("teams"));
    let id = status.current.unwrap().token_id;
    let record = env
        .all_operator_tokens()
        .into_iter()
        .find(|r| r.id == id)
        .expect("the token exists in GitLab");
    assert_eq!(record.scopes, ["read_repository", "write_repository"]);
    assert_eq!(record.access_level, Some(30), "developer");
    assert_eq!(record.state, "active");
    assert_eq!(env.metric(DENIALS, &[]).await, 0.0, "nothing was denied");
    // write: "true" means the Secret pushes.
    let secret = env.wait_secret(NS, "pusher-gitlab-token").await;
    env.git_push(
        "acme/team-a/app",
        &Env::secret_value(&secret, "username"),
        &Env::secret_value(&secret, "password"),
        "e2e-automation",
    )
    .await
    .expect("the write Secret pushes");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_denies_project_scopes_access_level_and_lifetime_and_mints_nothing() {
    let env = Env::start().await;
    let app = repo_url(&env, "acme/team-a/app");
    let cases = [
        (
            git_source(
                NS,
                "foreign-project",
                &repo_url(&env, "other-org/secret-project"),
                &[],
            ),
            "project: other-org/secret-project matches none of policy teams's projects",
        ),
        (
            git_source(NS, "extra-scope", &app, &[("scopes", "write_registry")]),
            "scopes: write_registry",
        ),
        (
            git_source(NS, "escalate", &app, &[("access-level", "maintainer")]),
            "accessLevel: maintainer is above policy teams's maxAccessLevel developer",
        ),
        (
            git_source(NS, "long-lived", &app, &[("lifetime", "120d")]),
            "lifetime: 120d is longer than policy teams's lifetime.max 90d",
        ),
    ];
    for (source, _) in &cases {
        env.apply(source.clone()).await;
    }
    for (source, says) in &cases {
        let name = source["metadata"]["name"].as_str().unwrap();
        let t = token_refused(&env, NS, &format!("{name}-gitlab-token"), "PolicyDenied", says).await;
        let denied = t
            .status
            .as_ref()
            .unwrap()
            .conditions
            .iter()
            .any(|c| c.type_ == "Denied" && format!("{:?}", c.status) == "True");
        assert!(denied, "Denied=True on {name}");
        source_refused(&env, NS, name, "PolicyDenied", says).await;
    }
    assert!(env.metric(DENIALS, &[("reason", "PolicyDenied")]).await >= 4.0);
    assert_nothing_minted(&env);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_no_policy_selects_is_denied_not_pending() {
    let env = Env::start().await;
    env.namespace("staging").await;
    let url = repo_url(&env, "acme/team-a/app");
    env.apply(git_source("staging", "app", &url, &[])).await;
    token_refused(
        &env,
        "staging",
        "app-gitlab-token",
        "NoPolicy",
        "no usable GitLabTokenPolicy selects this namespace",
    )
    .await;
    source_refused(&env, "staging", "app", "NoPolicy", "no usable GitLabTokenPolicy").await;
    assert_nothing_minted(&env);
    // Once an admin's policy selects the namespace, the same request is served.
    env.apply(
        json!({"apiVersion": "gitlabtokens.io/v1alpha1", "kind": "GitLabTokenPolicy",
        "metadata": {"name": "staging"},
        "spec": {"namespaceSelector": {"matchNames": ["staging"]}, "projects": ["acme/team-a/*"],
                 "scopes": ["read_repository"]}}),
    )
    .await;
    let t = env
        .wait_token_condition("staging", "app-gitlab-token", "Ready", "True", Some("Issued"))
        .await;
    assert_eq!(t.status.unwrap().policy.as_deref(), Some("staging"));
    assert_eq!(env.all_operator_tokens().len(), 1);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_on_another_host_gets_no_credentials() {
    let env = Env::start().await;
    env.apply(git_source(
        NS,
        "github",
        "https://github.com/acme/team-a/app.git",
        &[],
    ))
    .await;
    shim_refused(&env, "github", "ForeignHost", "github.com").await;
    // A registry URL on another registry is refused the same way.
    env.apply(
        json!({"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "OCIRepository",
        "metadata": {"name": "ghcr", "namespace": NS, "annotations": {"gitlabtokens.io/inject": "true"}},
        "spec": {"interval": "1m", "url": "oci://ghcr.io/acme/team-a/app", "ref": {"tag": "1.0.0"}}}),
    )
    .await;
    shim_refused(&env, "ghcr", "ForeignHost", "ghcr.io").await;
    assert!(env.metric(DENIALS, &[("reason", "ForeignHost")]).await >= 2.0);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ssh_url_off_the_connections_ssh_endpoint_is_refused_naming_ssh_host() {
    // ssh:// sources are served with deploy keys (tests/e2e_deploy_keys.rs); one whose host:port
    // is not the connection's SSH endpoint (spec.sshHost, else GitLab's host on port 22) is foreign.
    let env = Env::start().await;
    let host = env.world.gitlab_url().replace("http://", "");
    let url = format!("ssh://git@{host}/acme/team-a/app.git");
    env.apply(git_source(NS, "over-ssh", &url, &[])).await;
    shim_refused(&env, "over-ssh", "ForeignHost", "spec.sshHost").await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_annotation_is_refused_naming_it() {
    let env = Env::start().await;
    let url = repo_url(&env, "acme/team-a/app");
    env.apply(git_source(NS, "typo", &url, &[("access-level", "superuser")]))
        .await;
    shim_refused(&env, "typo", "InvalidAnnotation", "gitlabtokens.io/access-level").await;
    // Fixing the annotation serves the source.
    env.apply(git_source(NS, "typo", &url, &[("access-level", "developer")]))
        .await;
    env.wait_token_condition(NS, "typo-gitlab-token", "Ready", "True", Some("Issued"))
        .await;
    assert_eq!(env.all_operator_tokens().len(), 1);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_the_operator_did_not_create_is_never_taken_over() {
    let env = Env::start().await;
    env.apply(json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "app-gitlab-token", "namespace": NS, "labels": {"owner": "someone"}},
        "stringData": {"username": "human", "password": "hunter2"}}))
        .await;
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), NS);
    let before = secrets.get("app-gitlab-token").await.unwrap();
    let url = repo_url(&env, "acme/team-a/app");
    env.apply(git_source(NS, "app", &url, &[])).await;
    token_refused(
        &env,
        NS,
        "app-gitlab-token",
        "SecretNotOwned",
        "was not created by the operator",
    )
    .await;
    source_refused(
        &env,
        NS,
        "app",
        "SecretNotOwned",
        "was not created by the operator",
    )
    .await;
    let after = secrets.get("app-gitlab-token").await.unwrap();
    assert_eq!(
        after.resource_version(),
        before.resource_version(),
        "the Secret was written"
    );
    assert_eq!(after.data, before.data);
    assert_eq!(after.labels(), before.labels());
    assert_eq!(after.annotations(), before.annotations());
    assert_nothing_minted(&env);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gitlabtoken_the_shim_did_not_create_is_never_taken_over() {
    let env = Env::start().await;
    // A user's own GitLabToken, under the name the shim gives a source's token.
    env.apply(
        json!({"apiVersion": "gitlabtokens.io/v1alpha1", "kind": "GitLabToken",
        "metadata": {"name": "app-gitlab-token", "namespace": NS},
        "spec": {"project": "acme/team-a/app", "scopes": ["read_repository"],
                 "secret": {"name": "mine", "format": "basic-auth"}}}),
    )
    .await;
    env.wait_token_condition(NS, "app-gitlab-token", "Ready", "True", Some("Issued"))
        .await;
    let tokens: Api<GitLabToken> = Api::namespaced(env.client.clone(), NS);
    let before = tokens.get("app-gitlab-token").await.unwrap();
    let url = repo_url(&env, "acme/team-a/app");
    env.apply(git_source(NS, "app", &url, &[])).await;
    source_refused(
        &env,
        NS,
        "app",
        "ConflictingRequest",
        "exists and was not created by the shim",
    )
    .await;
    let after = tokens.get("app-gitlab-token").await.unwrap();
    assert_eq!(after.spec, before.spec, "the user's GitLabToken keeps its spec");
    assert_eq!(after.labels(), before.labels(), "and gets no shim label");
    assert_eq!(
        after.owner_references(),
        before.owner_references(),
        "and no owner"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_gitlab_does_not_know_is_refused() {
    let env = Env::start().await;
    let url = repo_url(&env, "acme/team-a/missing");
    env.apply(git_source(NS, "missing", &url, &[])).await;
    token_refused(
        &env,
        NS,
        "missing-gitlab-token",
        "ProjectNotFound",
        "acme/team-a/missing",
    )
    .await;
    source_refused(&env, NS, "missing", "ProjectNotFound", "acme/team-a/missing").await;
    assert_nothing_minted(&env);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_path_below_no_project_is_refused() {
    let env = Env::start().await;
    let image = format!("{}/acme/nowhere/img", env.world.registry_host());
    env.apply(
        json!({"apiVersion": "image.toolkit.fluxcd.io/v1", "kind": "ImageRepository",
        "metadata": {"name": "nowhere", "namespace": NS, "annotations": {"gitlabtokens.io/inject": "true"}},
        "spec": {"interval": "1m", "image": image, "insecure": true}}),
    )
    .await;
    shim_refused(&env, "nowhere", "ProjectNotFound", "acme/nowhere/img").await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn narrowing_the_policy_revokes_a_token_it_no_longer_allows() {
    let env = Env::start().await;
    let url = repo_url(&env, "acme/team-a/app");
    env.apply(git_source(NS, "app", &url, &[])).await;
    let t = env
        .wait_token_condition(NS, "app-gitlab-token", "Ready", "True", Some("Issued"))
        .await;
    let id = t.status.unwrap().current.unwrap().token_id;
    env.apply(
        json!({"apiVersion": "gitlabtokens.io/v1alpha1", "kind": "GitLabTokenPolicy",
        "metadata": {"name": "teams"},
        "spec": {"namespaceSelector": {"matchNames": ["team-*"]}, "projects": ["acme/platform/**"],
                 "scopes": ["read_repository", "read_registry", "read_api", "api", "write_repository"],
                 "maxAccessLevel": "developer"}}),
    )
    .await;
    token_refused(
        &env,
        NS,
        "app-gitlab-token",
        "PolicyDenied",
        "project: acme/team-a/app matches none of policy teams's projects",
    )
    .await;
    source_refused(&env, NS, "app", "PolicyDenied", "acme/team-a/app").await;
    let record = env
        .all_operator_tokens()
        .into_iter()
        .find(|r| r.id == id)
        .expect("GitLab still lists the token");
    assert_eq!(
        record.state, "revoked",
        "a token the policy no longer allows stays live"
    );
    assert!(env.active_operator_tokens().is_empty());
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_source_with_other_needs_for_the_same_secret_is_refused() {
    let env = Env::start().await;
    let url = repo_url(&env, "acme/team-a/app");
    env.apply(git_source(NS, "first", &url, &[("secret-name", "app-git")]))
        .await;
    let first = env
        .wait_token_condition(NS, "app-git", "Ready", "True", Some("Issued"))
        .await;
    env.apply(git_source(
        NS,
        "second",
        &url,
        &[("secret-name", "app-git"), ("access-level", "developer")],
    ))
    .await;
    source_refused(&env, NS, "second", "ConflictingRequest", "accessLevel").await;
    let tokens: Api<GitLabToken> = Api::namespaced(env.client.clone(), NS);
    let t = tokens.get("app-git").await.unwrap();
    let owners: Vec<String> = t.owner_references().iter().map(|o| o.name.clone()).collect();
    assert_eq!(owners, ["first"], "only the first source is served");
    assert_eq!(t.spec.access_level.to_string(), "reporter");
    let minted = env.all_operator_tokens();
    assert_eq!(minted.len(), 1, "only the first source's token: {minted:?}");
    assert_eq!(
        Some(minted[0].id),
        first.status.unwrap().current.map(|c| c.token_id)
    );
    assert_eq!(
        minted[0].access_level,
        Some(20),
        "reporter, not the second's developer"
    );

    // Once the first source is gone, the second is served with what it asked for.
    let git = env
        .flux_api(NS, "source.toolkit.fluxcd.io/v1", "GitRepository")
        .await;
    env.delete(&git, "first").await;
    let old_id = minted[0].id;
    let t = e2e::eventually("the GitLabToken to serve the second source", || {
        let tokens = tokens.clone();
        async move {
            let t = tokens.get_opt("app-git").await.ok().flatten()?;
            let ready = t
                .status
                .as_ref()?
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && format!("{:?}", c.status) == "True");
            let id = t.status.as_ref()?.current.as_ref()?.token_id;
            (ready && id != old_id).then_some(t)
        }
    })
    .await;
    let owners: Vec<String> = t.owner_references().iter().map(|o| o.name.clone()).collect();
    assert_eq!(owners, ["second"]);
    let new_id = t.status.unwrap().current.unwrap().token_id;
    let tokens_now = env.all_operator_tokens();
    let new = tokens_now.iter().find(|r| r.id == new_id).expect("new token");
    assert_eq!((new.state.as_str(), new.access_level), ("active", Some(30)));
    e2e::eventually("the first source's token to be revoked", || async {
        env.all_operator_tokens()
            .iter()
            .any(|r| r.id == old_id && r.state == "revoked")
            .then_some(())
    })
    .await;
    env.stop().await;
}
