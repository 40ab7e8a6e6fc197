//! Crash points and renewals for the crash and regression tests: restart the operator with one
//! crash point armed (`FAILPOINTS`, needs the `failpoints` feature), wait for it to stop there,
//! restart it clean; ask a GitLabToken for a renewal.

use kube::api::{Patch, PatchParams};

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
