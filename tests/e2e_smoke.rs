//! The shortest end-to-end story: an annotated GitRepository gets a Secret that clones.

mod e2e;

use e2e::Env;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn annotated_git_repository_gets_a_secret_that_clones_and_is_refused_push() {
    let env = Env::start().await;
    let url = format!("{}/acme/team-a/app.git", env.world.gitlab_url());
    env.apply(
        json!({"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
        "metadata": {"name": "app", "namespace": "team-a", "annotations": {"gitlabtokens.io/inject": "true"}},
        "spec": {"interval": "1m", "url": url, "ref": {"branch": "main"}}}),
    )
    .await;
    let token = env
        .wait_token_condition("team-a", "app-gitlab-token", "Ready", "True", Some("Issued"))
        .await;
    let secret = env.wait_secret("team-a", "app-gitlab-token").await;
    let (user, pass) = (
        Env::secret_value(&secret, "username"),
        Env::secret_value(&secret, "password"),
    );
    assert_eq!(
        user,
        token.status.as_ref().unwrap().current.as_ref().unwrap().bot_user
    );

    let dir = tempfile::tempdir().unwrap();
    let authed = url.replacen("http://", &format!("http://{user}:{pass}@"), 1);
    let clone = tokio::process::Command::new("git")
        .args(["-c", "credential.helper=", "clone", "-q", &authed, "repo"])
        .current_dir(dir.path())
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .await
        .unwrap();
    assert!(
        clone.status.success(),
        "clone: {}",
        String::from_utf8_lossy(&clone.stderr)
    );

    let flux = env
        .flux_api("team-a", "source.toolkit.fluxcd.io/v1", "GitRepository")
        .await;
    e2e::eventually("the Flux stand-in to report Ready", || {
        let flux = flux.clone();
        async move {
            let o = flux.get("app").await.ok()?;
            let ready = o
                .data
                .pointer("/status/conditions")?
                .as_array()?
                .iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            ready.then_some(())
        }
    })
    .await;
    assert!(
        !env.operator_logs().contains(&pass),
        "the token value leaked into the operator's logs"
    );
    assert_eq!(env.active_operator_tokens().len(), 1);
    // The operator did all this as the chart's ServiceAccount, under the chart's RBAC.
    if std::env::var("GTO_E2E_OPERATOR_IDENTITY").as_deref() != Ok("admin") {
        let sa = format!(
            "system:serviceaccount:{}:gto-gitlab-token-operator",
            e2e::OPERATOR_NS
        );
        let controls = env.world.kube.controls();
        assert!(
            controls.count("create", "secrets", &sa) >= 1,
            "the Secret was not created as {sa}"
        );
        assert!(
            controls.count("update", "gitlabtokens/status", &sa) >= 1,
            "status was not written as {sa}"
        );
    }
    env.stop().await;
}
