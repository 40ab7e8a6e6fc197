//! [`ClientConfig`]: how to reach one GitLab (URL, token, trust, limits, timeouts), with
//! defaults and a mapping from a `GitLabConnection` spec.

use std::{fmt, sync::Arc, time::Duration};

use secrecy::SecretString;

use super::{
    RequestObserver,
    ratelimit::{ConnectionBudget, RateLimitConfig},
    retry::RetryPolicy,
};
use crate::crd::GitLabConnectionSpec;

/// Everything needed to build a [`GitLabClient`](super::GitLabClient) for one connection.
#[derive(Clone)]
pub struct ClientConfig {
    /// GitLab base URL, e.g. `https://gitlab.example.com` (a relative URL root is allowed).
    pub url: String,
    /// The operator's own token, sent as `PRIVATE-TOKEN`.
    pub token: SecretString,
    /// PEM CA bundle: when set, the only CAs trusted; when unset, the platform's trust store.
    pub ca_bundle: Option<String>,
    /// Client-side token bucket.
    pub rate_limit: RateLimitConfig,
    /// A bucket of its own for `GET /projects/:id` (GitLab.com limits it apart), if any.
    pub project_read_limit: Option<RateLimitConfig>,
    /// The connection's budget, shared by every client built for it (outlives them, keeps
    /// `Retry-After`); `None`: the client makes its own from `rate_limit` and `project_read_limit`.
    pub budget: Option<Arc<ConnectionBudget>>,
    /// Retries of safe requests.
    pub retry: RetryPolicy,
    /// TCP + TLS connect timeout.
    pub connect_timeout: Duration,
    /// Whole-request timeout (headers and body).
    pub request_timeout: Duration,
    /// Longest `Retry-After` the client honours before its next request (longer values are capped).
    pub max_retry_after: Duration,
    /// Most pages one list call follows before failing (100 items each).
    pub max_pages: u32,
    /// Told about every HTTP attempt.
    pub observer: Option<Arc<dyn RequestObserver>>,
}

impl ClientConfig {
    /// Defaults for a GitLab at `url` authenticated with `token`.
    pub fn new(url: impl Into<String>, token: SecretString) -> Self {
        Self {
            url: url.into(),
            token,
            ca_bundle: None,
            rate_limit: RateLimitConfig::default(),
            project_read_limit: None,
            budget: None,
            retry: RetryPolicy::default(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(300),
            max_pages: 100,
            observer: None,
        }
    }

    /// Settings from a `GitLabConnection` spec (URL, CA bundle, rate limit) and its token.
    /// Without a `rateLimit` the budget is GitLab.com's, project reads limited apart; with one,
    /// the admin has described their GitLab and that single bucket applies to every request.
    pub fn from_connection(spec: &GitLabConnectionSpec, token: SecretString) -> Self {
        let mut config = Self::new(spec.url.clone(), token);
        config.ca_bundle = spec.ca_bundle.clone().filter(|pem| !pem.trim().is_empty());
        match &spec.rate_limit {
            Some(rl) => {
                config.rate_limit = RateLimitConfig {
                    requests_per_second: f64::from(rl.requests_per_second),
                    burst: rl.burst,
                };
            }
            None => {
                config.rate_limit = RateLimitConfig::GITLAB_COM;
                config.project_read_limit = Some(RateLimitConfig::GITLAB_COM_PROJECT_READS);
            }
        }
        config
    }
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("url", &self.url)
            .field("token", &"[REDACTED]")
            .field("ca_bundle", &self.ca_bundle.as_ref().map(|_| "<pem>"))
            .field("rate_limit", &self.rate_limit)
            .field("project_read_limit", &self.project_read_limit)
            .field("retry", &self.retry)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("max_retry_after", &self.max_retry_after)
            .field("max_pages", &self.max_pages)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_spec_settings_are_carried_over() {
        let spec: GitLabConnectionSpec = serde_json::from_value(serde_json::json!({
            "url": "https://gitlab.example.com",
            "caBundle": "  ",
            "credentials": {"secretRef": {"namespace": "gto", "name": "gitlab"}},
            "rateLimit": {"requestsPerSecond": 3, "burst": 7}
        }))
        .unwrap();
        let config = ClientConfig::from_connection(&spec, SecretString::from("glpat-x"));
        assert_eq!(config.url, "https://gitlab.example.com");
        assert_eq!(config.ca_bundle, None, "a blank bundle means none");
        assert_eq!(
            config.rate_limit,
            RateLimitConfig {
                requests_per_second: 3.0,
                burst: 7
            }
        );
        assert_eq!(
            config.project_read_limit, None,
            "the admin's own limit applies alone"
        );
        assert!(!format!("{config:?}").contains("glpat-x"));
        let spec: GitLabConnectionSpec = serde_json::from_value(serde_json::json!({
            "url": "https://gitlab.com",
            "credentials": {"secretRef": {"namespace": "gto", "name": "gitlab"}}
        }))
        .unwrap();
        let config = ClientConfig::from_connection(&spec, SecretString::from("glpat-x"));
        assert_eq!(config.rate_limit, RateLimitConfig::GITLAB_COM);
        assert_eq!(
            config.project_read_limit,
            Some(RateLimitConfig::GITLAB_COM_PROJECT_READS)
        );
    }
}
