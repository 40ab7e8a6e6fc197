//! Issue 11, end to end with the real binary: policies kept in a GitLab repository. A commit that
//! edits the file takes effect; a grant beyond the connection's ceiling is refused; an invalid
//! edit keeps the previous version in force and says why in the connection's status; deleting the
//! file withdraws its grants (tokens revoked). Waits end on conditions, with a deadline.

mod e2e;

use e2e::{CONNECTION, Env, Options, crash::current_token_id, crash::token_state, eventually};
use gitlab_token_operator::crd::{GitLabConnection, PolicyFileStatus};
use kube::Api;
use reqwest::Method;
use serde_json::{Value, json};

/// The project holding the policy file, and the file.
const REPO: &str = "acme%2Fplatform%2Finfra";
const FILE: &str = "clusters%2Fprod%2Ftoken-policies.yaml";

async fn start() -> Env {
    Env::start_with(Options {
        operator_env: vec![("GTO_ACCESS_RECHECK_INTERVAL".into(), "6s".into())],
        ..Options::default()
    })
    .await
}

fn policy_doc(projects: &str, level: &str) -> String {
    format!(
        "apiVersion: gitlabtokens.io/v1alpha1\nkind: GitLabTokenPolicy\nmetadata:\n  name: payments\nspec:\n  \
         namespaceSelector: {{matchNames: ['svc-*', 'kube-*']}}\n  projects: {projects}\n  scopes: [read_repository, api]\n  \
         maxAccessLevel: {level}\n"
    )
}

/// Commits the file (create, update or delete) as the operator's GitLab user, who owns `acme`.
async fn commit(env: &Env, method: Method, content: Option<&str>) {
    let url = format!(
        "{}/api/v4/projects/{REPO}/repository/files/{FILE}",
        env.world.gitlab_url()
    );
    let mut body = json!({"branch": "main", "commit_message": "token policies"});
    if let Some(c) = content {
        body["content"] = json!(c);
    }
    let resp = reqwest::Client::new()
        .request(method.clone(), url)
        .header("PRIVATE-TOKEN", env.world.operator_token().expect("token"))
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    assert!(
        (200..300).contains(&status),
        "{method} file: {status} {}",
        resp.text().await.unwrap_or_default()
    );
}

async fn file_status(env: &Env) -> Option<PolicyFileStatus> {
    Api::<GitLabConnection>::all(env.client.clone())
        .get(CONNECTION)
        .await
        .ok()?
        .status?
        .policy_file
}

/// Waits until the connection reports the file in `state` at a commit other than `not`.
async fn wait_file(env: &Env, state: &str, not: Option<&str>) -> PolicyFileStatus {
    eventually(&format!("policy file {state}"), || async {
        file_status(env)
            .await
            .filter(|s| s.state == state && s.commit.as_deref() != not)
    })
    .await
}

fn token(ns: &str, name: &str, project: &str, level: &str) -> Value {
    json!({"apiVersion": "gitlabtokens.io/v1alpha1", "kind": "GitLabToken",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"project": project, "scopes": ["read_repository"], "accessLevel": level,
                 "secret": {"name": name, "format": "basic-auth"}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gitlab_kept_policy_follows_commits_within_the_cluster_ceiling() {
    let env = start().await;
    env.namespace("svc-p").await;
    commit(
        &env,
        Method::POST,
        Some(&policy_doc("['acme/team-a/*']", "maintainer")),
    )
    .await;
    let (url, registry) = (env.world.gitlab_url(), env.world.registry_host());
    env.apply(json!({"apiVersion": "gitlabtokens.io/v1alpha1", "kind": "GitLabConnection",
        "metadata": {"name": CONNECTION},
        "spec": {"url": url, "registryHost": registry,
                 "credentials": {"secretRef": {"namespace": e2e::OPERATOR_NS, "name": "gitlab-operator-token", "key": "token"}},
                 "policyFile": {"project": "acme/platform/infra", "path": "clusters/prod/token-policies.yaml", "ref": "main",
                                "ceiling": {"namespaces": ["svc-*"], "maxAccessLevel": "developer",
                                            "scopes": ["read_repository", "read_api"], "maxLifetime": "30d"}}}}))
        .await;
    let v1 = wait_file(&env, "Valid", None).await;
    assert_eq!(v1.policies, ["gitlab:gitlab/payments"]);
    assert_eq!(v1.applied_commit, v1.commit);
    // The operator's own reach, from GitLab's associations: Owner of acme and other-org.
    let reach = Api::<GitLabConnection>::all(env.client.clone())
        .get(CONNECTION)
        .await
        .expect("get")
        .status
        .and_then(|s| s.reach)
        .expect("reach in status");
    assert_eq!(reach.source, "associations");
    let level_of = |path: &str| {
        reach
            .groups
            .iter()
            .find(|g| g.path == path)
            .and_then(|g| g.access_level)
    };
    assert_eq!(
        (level_of("acme"), level_of("other-org")),
        (Some(50), Some(50)),
        "{reach:?}"
    );
    assert!(
        reach
            .projects
            .iter()
            .any(|p| p.path == "acme/team-a/app" && p.access_level == Some(50))
    );

    // In force, within the ceiling: Developer is served; Maintainer (the file's own bound) is not.
    env.apply(token("svc-p", "app", "acme/team-a/app", "developer"))
        .await;
    env.apply(token("svc-p", "maint", "acme/team-a/app", "maintainer"))
        .await;
    env.apply(token("svc-p", "api", "acme/team-b/api", "reporter"))
        .await;
    let app = env
        .wait_token_condition("svc-p", "app", "Ready", "True", None)
        .await;
    let app_id = current_token_id(&app).expect("issued");
    assert_eq!(
        app.status.as_ref().and_then(|s| s.policy.clone()).as_deref(),
        Some("gitlab:gitlab/payments")
    );
    let maint = env
        .wait_token_condition("svc-p", "maint", "Ready", "False", Some("PolicyDenied"))
        .await;
    let msg = format!("{:?}", maint.status.as_ref().map(|s| &s.conditions));
    assert!(
        msg.contains("maxAccessLevel developer"),
        "the ceiling's role: {msg}"
    );
    env.wait_token_condition("svc-p", "api", "Ready", "False", Some("PolicyDenied"))
        .await;

    // An edit by commit takes effect: team-b's projects too.
    commit(
        &env,
        Method::PUT,
        Some(&policy_doc("['acme/team-a/*', 'acme/team-b/*']", "maintainer")),
    )
    .await;
    let v2 = wait_file(&env, "Valid", v1.commit.as_deref()).await;
    env.wait_token_condition("svc-p", "api", "Ready", "True", None)
        .await;

    // An invalid edit: the previous version stays in force, and the status says why.
    commit(&env, Method::PUT, Some(&policy_doc("['acme/team-a/*']", "owner"))).await;
    let bad = wait_file(&env, "Invalid", v2.commit.as_deref()).await;
    eprintln!("invalid edit: {}", bad.message);
    assert_eq!(bad.applied_commit, v2.commit, "the last valid version stays");
    assert!(bad.message.contains("owner"), "{}", bad.message);
    assert!(bad.message.contains("stays in force"), "{}", bad.message);
    let api_token = env
        .wait_token_condition("svc-p", "api", "Ready", "True", None)
        .await;
    let api_id = current_token_id(&api_token).expect("issued");
    assert_eq!(token_state(&env, app_id), "active");
    assert_eq!(token_state(&env, api_id), "active");

    // Deleting the file withdraws its grants: the tokens are revoked.
    commit(&env, Method::DELETE, None).await;
    let gone = wait_file(&env, "Missing", Some("none")).await;
    assert_eq!(gone.applied_commit, None);
    assert!(gone.policies.is_empty());
    eventually("tokens revoked after the file was deleted", || async {
        (token_state(&env, app_id) != "active" && token_state(&env, api_id) != "active").then_some(())
    })
    .await;
    env.wait_token_condition("svc-p", "app", "Ready", "False", Some("NoPolicy"))
        .await;
    env.stop().await;
}
