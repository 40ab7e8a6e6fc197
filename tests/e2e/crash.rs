//! Helpers of the crash and regression tests (issue 9): restart the operator with one crash point
//! armed (`FAILPOINTS`, needs the `failpoints` feature), wait for it to stop there, restart it
//! clean; issue a token for a source; ask for a renewal; observe a number of reconciles.

use kube::{
    ResourceExt,
    api::{Patch, PatchParams},
};

use super::*;

/// Exit code of an operator stopped at a crash point (`gitlab_token_operator::failpoints`).
pub const CRASH_EXIT: i32 = 86;

impl Env {
    /// Restarts the operator with only `failpoint` armed (it may stop before reporting ready).
    pub async fn arm_crash_point(&mut self, failpoint: &str) {
        self.kill_operator().await;
        let armed = format!("{failpoint}=return");
        self.spawn_operator(&[("FAILPOINTS", armed.as_str())]);
    }

    /// Waits up to `within` for the armed operator to stop at `failpoint`, then restarts it
    /// without failpoints (waiting for ready). `Err` says what happened instead.
    pub async fn expect_crash(&mut self, failpoint: &str, within: Duration) -> Result<(), String> {
        let code = self.wait_operator_exit(within).await;
        let reached = self
            .operator_logs()
            .contains(&format!("crash point {failpoint} reached"));
        self.start_operator().await;
        match (code, reached) {
            (Some(CRASH_EXIT), true) => Ok(()),
            (code, reached) => Err(format!(
                "the operator did not stop at crash point {failpoint} within {within:?} (exit code {code:?}, \
                 logged: {reached})"
            )),
        }
    }

    /// Asks GitLabToken `ns/name` for a renewal now (the manual renew annotation).
    pub async fn request_renewal(&self, ns: &str, name: &str) {
        let api: Api<GitLabToken> = Api::namespaced(self.client.clone(), ns);
        let at = chrono::Utc::now().to_rfc3339();
        let patch = json!({"metadata": {"annotations": {"gitlabtokens.io/renew-requested-at": at}}});
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("annotate");
    }

    /// Token reconciles this operator process finished, whatever their result.
    pub async fn token_reconciles(&self) -> f64 {
        self.metric(
            "gitlab_token_operator_reconciles_total",
            &[("controller", "token")],
        )
        .await
    }
}

/// The GitLabToken of an annotated source `app` (the shim's naming).
pub const APP_TOKEN: &str = "app-gitlab-token";
/// The project the `app` sources of these tests read.
pub const APP_PROJECT: &str = "acme/team-a/app";

/// Creates namespace `ns` (if needed) with an annotated source `app` for [`APP_PROJECT`], waits
/// until its token is Ready and in the Secret; returns (GitLabToken uid, token id).
pub async fn issued_app(env: &Env, ns: &str) -> (String, u64) {
    env.namespace(ns).await;
    super::lifecycle::annotated_repo(env, ns, "app", APP_PROJECT, "1m").await;
    let t = env
        .wait_token_condition(ns, APP_TOKEN, "Ready", "True", None)
        .await;
    let id = current_token_id(&t).expect("current");
    super::lifecycle::wait_secret_token(env, ns, APP_TOKEN, id).await;
    (t.uid().expect("uid"), id)
}

/// The current token id a GitLabToken's status records.
pub fn current_token_id(t: &GitLabToken) -> Option<u64> {
    t.status.as_ref()?.current.as_ref().map(|c| c.token_id)
}

/// GitLab's state of project token `id` (`active`, `revoked`, `expired`; empty when unknown).
pub fn token_state(env: &Env, id: u64) -> String {
    env.world
        .gitlab
        .tokens()
        .into_iter()
        .find(|t| t.id == id && t.kind == "project")
        .map(|t| t.state)
        .unwrap_or_default()
}

/// Waits until `n` more token reconciles have finished (any result), or `cap` has passed: a
/// bounded observation window. Returns how many were seen.
pub async fn observe_reconciles(env: &Env, n: f64, cap: Duration) -> f64 {
    let before = env.token_reconciles().await;
    let deadline = tokio::time::Instant::now() + cap;
    loop {
        let seen = env.token_reconciles().await - before;
        if seen >= n || tokio::time::Instant::now() >= deadline {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
