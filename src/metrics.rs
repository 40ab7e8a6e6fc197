//! Prometheus metrics (DESIGN §8), prefix `gitlab_token_operator_`. Per-token series are
//! removed when the token goes away, so cardinality follows the number of `GitLabToken`s.

use std::sync::atomic::AtomicU64;

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

/// Identifies one `GitLabToken`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabels {
    /// Namespace of the GitLabToken.
    pub namespace: String,
    /// Name of the GitLabToken.
    pub name: String,
    /// Canonical GitLab project path.
    pub project: String,
}

/// A labelled reason (refusals, revocations).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// PascalCase reason.
    pub reason: String,
}

/// Rotation strategy label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StrategyLabels {
    /// `Overlap` or `InPlace`.
    pub strategy: String,
}

/// One GitLab API call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GitLabRequestLabels {
    /// GitLabConnection name.
    pub connection: String,
    /// Operation, e.g. `create_project_access_token`.
    pub operation: String,
    /// HTTP status, or `error` for transport failures.
    pub code: String,
}

/// Operation of a GitLab call, for the latency histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GitLabOperationLabels {
    /// GitLabConnection name.
    pub connection: String,
    /// Operation.
    pub operation: String,
}

/// A connection.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnectionLabels {
    /// GitLabConnection name.
    pub connection: String,
}

/// One delegation re-check's outcome on a connection.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RecheckLabels {
    /// GitLabConnection name.
    pub connection: String,
    /// `unchanged`, `changed` or `failed`.
    pub outcome: String,
}

/// One reconcile outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    /// Which controller (`token`, `connection`, `shim`, `policy`).
    pub controller: String,
    /// `success` or the error's reason.
    pub result: String,
}

/// Which controller a duration belongs to.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    /// Which controller.
    pub controller: String,
}

/// Every metric the operator exports.
pub struct Metrics {
    registry: Registry,
    /// Expiry (00:00 UTC of `expires_at`) of each token, Unix seconds.
    pub token_expiration: Family<TokenLabels, Gauge<f64, AtomicU64>>,
    /// Planned renewal of each token, Unix seconds.
    pub token_renewal: Family<TokenLabels, Gauge<f64, AtomicU64>>,
    /// 1 when the token's `Ready` condition is True, else 0.
    pub token_ready: Family<TokenLabels, Gauge>,
    /// Tokens created in GitLab.
    pub tokens_issued: Counter,
    /// Tokens replaced before expiry.
    pub tokens_rotated: Family<StrategyLabels, Counter>,
    /// Tokens revoked, by reason.
    pub tokens_revoked: Family<ReasonLabels, Counter>,
    /// Requests refused, by reason.
    pub policy_denials: Family<ReasonLabels, Counter>,
    /// GitLab API calls.
    pub gitlab_requests: Family<GitLabRequestLabels, Counter>,
    /// GitLab API latency.
    pub gitlab_request_duration: Family<GitLabOperationLabels, Histogram>,
    /// Last `RateLimit-Remaining` GitLab reported.
    pub gitlab_rate_limit_remaining: Family<ConnectionLabels, Gauge>,
    /// Reconciles by controller and result.
    pub reconciles: Family<ReconcileLabels, Counter>,
    /// Reconcile latency by controller.
    pub reconcile_duration: Family<ControllerLabels, Histogram>,
    /// 1 while this replica leads (holds the Lease, or runs without election), else 0.
    pub leader: Gauge,
    /// Delegated tokens GitLab took access from, by reason (`AccessWithdrawn`, `AccessLowered`).
    pub access_changes: Family<ReasonLabels, Counter>,
    /// Delegation answers re-asked of GitLab, by connection and outcome (one GitLab call each).
    pub access_rechecks: Family<RecheckLabels, Counter>,
    /// Delegation answers cached and re-checked every interval, by connection.
    pub access_answers: Family<ConnectionLabels, Gauge>,
    /// Argo CD tokens no Application is seen to need, kept because Argo CD's CRDs are missing or just back.
    pub argocd_tokens_held: Gauge,
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("gitlab_token_operator");
        let m = Self {
            token_expiration: Family::default(),
            token_renewal: Family::default(),
            token_ready: Family::default(),
            tokens_issued: Counter::default(),
            tokens_rotated: Family::default(),
            tokens_revoked: Family::default(),
            policy_denials: Family::default(),
            gitlab_requests: Family::default(),
            gitlab_request_duration: Family::new_with_constructor(latency_histogram),
            gitlab_rate_limit_remaining: Family::default(),
            reconciles: Family::default(),
            reconcile_duration: Family::new_with_constructor(latency_histogram),
            leader: Gauge::default(),
            access_changes: Family::default(),
            access_rechecks: Family::default(),
            access_answers: Family::default(),
            argocd_tokens_held: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "token_expiration_timestamp_seconds",
            "When the token stops working (00:00 UTC of its expiry date)",
            m.token_expiration.clone(),
        );
        registry.register(
            "token_renewal_timestamp_seconds",
            "When the token will be renewed",
            m.token_renewal.clone(),
        );
        registry.register(
            "token_ready_status",
            "1 when the token is Ready",
            m.token_ready.clone(),
        );
        registry.register(
            "tokens_issued",
            "Tokens created in GitLab",
            m.tokens_issued.clone(),
        );
        registry.register(
            "tokens_rotated",
            "Tokens replaced before expiry",
            m.tokens_rotated.clone(),
        );
        registry.register(
            "tokens_revoked",
            "Tokens revoked in GitLab",
            m.tokens_revoked.clone(),
        );
        registry.register(
            "policy_denials",
            "Token requests refused",
            m.policy_denials.clone(),
        );
        registry.register(
            "gitlab_requests",
            "GitLab API requests",
            m.gitlab_requests.clone(),
        );
        registry.register(
            "gitlab_request_duration_seconds",
            "GitLab API request latency",
            m.gitlab_request_duration.clone(),
        );
        registry.register(
            "gitlab_rate_limit_remaining",
            "RateLimit-Remaining last reported by GitLab",
            m.gitlab_rate_limit_remaining.clone(),
        );
        registry.register(
            "reconciles",
            "Reconciles by controller and result",
            m.reconciles.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Reconcile latency by controller",
            m.reconcile_duration.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica leads (holds the leader Lease, or runs without election)",
            m.leader.clone(),
        );
        registry.register(
            "access_changes",
            "Delegated tokens whose access GitLab withdrew or lowered",
            m.access_changes.clone(),
        );
        registry.register(
            "access_rechecks",
            "Delegation answers re-asked of GitLab (one call each), by outcome",
            m.access_rechecks.clone(),
        );
        registry.register(
            "access_answers",
            "Delegation answers cached and re-checked once per interval",
            m.access_answers.clone(),
        );
        registry.register(
            "argocd_tokens_held",
            "Argo CD tokens no Application is seen to need, kept (not revoked) because Argo CD's CRDs are missing or just back",
            m.argocd_tokens_held.clone(),
        );
        Self { registry, ..m }
    }

    /// Records the schedule and readiness of a token.
    pub fn observe_token(
        &self,
        labels: &TokenLabels,
        expires_unix: Option<i64>,
        renewal_unix: Option<i64>,
        ready: bool,
    ) {
        match expires_unix {
            Some(t) => {
                self.token_expiration.get_or_create(labels).set(t as f64);
            }
            None => {
                self.token_expiration.remove(labels);
            }
        }
        match renewal_unix {
            Some(t) => {
                self.token_renewal.get_or_create(labels).set(t as f64);
            }
            None => {
                self.token_renewal.remove(labels);
            }
        }
        self.token_ready.get_or_create(labels).set(i64::from(ready));
    }

    /// Drops every series of a token that no longer exists.
    pub fn forget_token(&self, labels: &TokenLabels) {
        self.token_expiration.remove(labels);
        self.token_renewal.remove(labels);
        self.token_ready.remove(labels);
    }

    /// Counts a refusal.
    pub fn denied(&self, reason: &str) {
        self.policy_denials
            .get_or_create(&ReasonLabels {
                reason: reason.into(),
            })
            .inc();
    }

    /// Counts one delegation re-check (`unchanged`, `changed`, `failed`) and records how many
    /// answers the connection keeps.
    pub fn access_rechecked(&self, connection: &str, outcome: &str, answers: usize) {
        self.access_rechecks
            .get_or_create(&RecheckLabels {
                connection: connection.into(),
                outcome: outcome.into(),
            })
            .inc();
        self.access_answers
            .get_or_create(&ConnectionLabels {
                connection: connection.into(),
            })
            .set(i64::try_from(answers).unwrap_or(i64::MAX));
    }

    /// Counts a delegated token whose access GitLab withdrew or lowered.
    pub fn access_changed(&self, reason: &str) {
        self.access_changes
            .get_or_create(&ReasonLabels {
                reason: reason.into(),
            })
            .inc();
    }

    /// Counts a revocation.
    pub fn revoked(&self, reason: &str) {
        self.tokens_revoked
            .get_or_create(&ReasonLabels {
                reason: reason.into(),
            })
            .inc();
    }

    /// Records one reconcile.
    pub fn reconciled(&self, controller: &str, result: &str, seconds: f64) {
        self.reconciles
            .get_or_create(&ReconcileLabels {
                controller: controller.into(),
                result: result.into(),
            })
            .inc();
        self.reconcile_duration
            .get_or_create(&ControllerLabels {
                controller: controller.into(),
            })
            .observe(seconds);
    }

    /// Renders the OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_the_designed_names_and_forgets_deleted_tokens() {
        let m = Metrics::new();
        let t = TokenLabels {
            namespace: "team-a".into(),
            name: "app".into(),
            project: "acme/app".into(),
        };
        m.observe_token(&t, Some(1_800_000_000), Some(1_790_000_000), true);
        m.tokens_issued.inc();
        m.denied("PolicyDenied");
        m.revoked("Deleted");
        m.reconciled("token", "success", 0.01);
        let text = m.render();
        for name in [
            "gitlab_token_operator_token_expiration_timestamp_seconds{",
            "gitlab_token_operator_token_renewal_timestamp_seconds{",
            "gitlab_token_operator_token_ready_status{",
            "gitlab_token_operator_tokens_issued_total 1",
            "gitlab_token_operator_policy_denials_total{reason=\"PolicyDenied\"} 1",
            "gitlab_token_operator_tokens_revoked_total{reason=\"Deleted\"} 1",
            "gitlab_token_operator_reconcile_duration_seconds_bucket",
            "gitlab_token_operator_leader 0",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
        m.forget_token(&t);
        assert!(!m.render().contains("namespace=\"team-a\""));
    }
}
