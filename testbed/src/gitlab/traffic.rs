//! Traffic controls: injected faults (per route pattern, count-limited), the per-user fixed-window
//! rate limiter with GitLab's `RateLimit-*` headers, and the API call log.

use chrono::{DateTime, Utc};
use globset::{Glob, GlobMatcher};
use serde::{Deserialize, Serialize};

/// Quota of the authenticated-API throttle (Rack::Attack style fixed window, per user or IP).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimitConfig {
    /// Requests allowed per window.
    pub limit: u32,
    /// Window length in seconds.
    pub period_secs: u64,
}

impl Default for RateLimitConfig {
    /// GitLab's self-managed default when enabled: 7,200 requests per hour.
    fn default() -> Self {
        Self {
            limit: 7200,
            period_secs: 3600,
        }
    }
}

/// What an injected fault does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultAction {
    /// Delay the request by `ms`, then serve it normally.
    Latency {
        /// Milliseconds.
        ms: u64,
    },
    /// Answer with this status (500, 502, 503, 504) without running the handler.
    Status {
        /// HTTP status code.
        status: u16,
    },
    /// Answer 429 `Retry later` with `Retry-After`.
    RateLimited {
        /// Seconds for `Retry-After`.
        retry_after: u64,
    },
    /// Hold the request `ms` without running it (the client times out first), then answer 504.
    Hang {
        /// Milliseconds.
        ms: u64,
    },
    /// Run the handler (its effects happen) but hold the response `ms` before sending it: a lost
    /// response when the client times out first.
    HangAfter {
        /// Milliseconds.
        ms: u64,
    },
}

/// A fault injection rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultRule {
    /// HTTP method to match (any when absent), case-insensitive.
    #[serde(default)]
    pub method: Option<String>,
    /// Glob over the raw request path (`*` also crosses `/`), e.g. `/api/v4/projects/*/access_tokens*`.
    pub path: String,
    /// What to do.
    pub action: FaultAction,
    /// How many requests it hits before disarming (forever when absent).
    #[serde(default)]
    pub times: Option<u32>,
}

/// An armed fault rule.
#[derive(Debug, Clone)]
pub struct ArmedFault {
    /// The rule as given.
    pub rule: FaultRule,
    matcher: GlobMatcher,
}

impl ArmedFault {
    /// Compiles the rule's path pattern.
    pub fn new(rule: FaultRule) -> Result<Self, globset::Error> {
        let matcher = Glob::new(&rule.path)?.compile_matcher();
        Ok(Self { rule, matcher })
    }

    /// Whether the rule applies to a request.
    pub fn matches(&self, method: &str, path: &str) -> bool {
        self.rule
            .method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(method))
            && self.matcher.is_match(path)
    }
}

/// Takes the first matching armed fault, counting it down.
pub fn take_fault(faults: &mut Vec<ArmedFault>, method: &str, path: &str) -> Option<FaultAction> {
    let index = faults.iter().position(|f| f.matches(method, path))?;
    let action = faults[index].rule.action.clone();
    if let Some(times) = faults[index].rule.times.as_mut() {
        *times = times.saturating_sub(1);
        if *times == 0 {
            faults.remove(index);
        }
    }
    Some(action)
}

/// One request as seen by the emulator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallRecord {
    /// When it finished (emulator clock).
    pub at: DateTime<Utc>,
    /// HTTP method (or `BASIC` for a failed HTTP Basic check made by a front).
    pub method: String,
    /// Path and query, with `private_token`/`access_token` values redacted.
    pub path: String,
    /// Response status.
    pub status: u16,
    /// Acting username, when known.
    pub user: Option<String>,
}

/// Result of counting one request against the throttle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateVerdict {
    /// Whether the request is throttled.
    pub throttled: bool,
    /// `RateLimit-Name`.
    pub name: &'static str,
    /// `RateLimit-Limit` (normalised to one minute).
    pub limit_per_minute: u64,
    /// `RateLimit-Observed`.
    pub observed: u64,
    /// `RateLimit-Remaining`.
    pub remaining: u64,
    /// Window end.
    pub reset: DateTime<Utc>,
    /// Seconds until the window ends.
    pub retry_after: u64,
}

/// Counts a request in its fixed window: `(window index, count)` keyed per user or IP.
pub fn count_request(
    window: &mut (i64, u64),
    config: &RateLimitConfig,
    now: DateTime<Utc>,
    name: &'static str,
) -> RateVerdict {
    let period = i64::try_from(config.period_secs.max(1)).unwrap_or(i64::MAX);
    let index = now.timestamp().div_euclid(period);
    if window.0 != index {
        *window = (index, 0);
    }
    window.1 += 1;
    let limit = u64::from(config.limit);
    let reset = DateTime::from_timestamp((index + 1).saturating_mul(period), 0).unwrap_or(now);
    let retry_after = u64::try_from(reset.timestamp() - now.timestamp())
        .unwrap_or(0)
        .max(1);
    RateVerdict {
        throttled: window.1 > limit,
        name,
        limit_per_minute: (limit * 60).div_ceil(config.period_secs.max(1)),
        observed: window.1,
        remaining: limit.saturating_sub(window.1),
        reset,
        retry_after,
    }
}

/// Redacts token-carrying query parameters from a path and query.
pub fn redact_query(path_and_query: &str) -> String {
    let Some((path, query)) = path_and_query.split_once('?') else {
        return path_and_query.to_string();
    };
    let parts: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if matches!(k, "private_token" | "access_token" | "job_token") => {
                format!("{k}=[REDACTED]")
            }
            _ => pair.to_string(),
        })
        .collect();
    format!("{path}?{}", parts.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_table() {
        let cases = [
            ("/api/v4/user", "/api/v4/user"),
            (
                "/api/v4/user?private_token=glpat-x",
                "/api/v4/user?private_token=[REDACTED]",
            ),
            ("/p?a=1&access_token=s&b=2", "/p?a=1&access_token=[REDACTED]&b=2"),
        ];
        for (input, want) in cases {
            assert_eq!(redact_query(input), want);
        }
    }

    #[test]
    fn fixed_window_throttles_after_limit_and_resets() {
        let config = RateLimitConfig {
            limit: 2,
            period_secs: 60,
        };
        let t0 = DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
        let mut window = (0, 0);
        let v1 = count_request(&mut window, &config, t0, "throttle_authenticated_api");
        assert!(!v1.throttled && v1.remaining == 1 && v1.limit_per_minute == 2);
        let v2 = count_request(&mut window, &config, t0, "throttle_authenticated_api");
        assert!(!v2.throttled && v2.remaining == 0);
        let v3 = count_request(&mut window, &config, t0 + chrono::Duration::seconds(10), "x");
        assert!(v3.throttled && v3.observed == 3 && v3.retry_after == 50);
        let v4 = count_request(&mut window, &config, t0 + chrono::Duration::seconds(60), "x");
        assert!(!v4.throttled && v4.observed == 1);
    }

    #[test]
    fn faults_count_down_and_match_method_and_glob() {
        let rule = FaultRule {
            method: Some("POST".into()),
            path: "/api/v4/projects/*/access_tokens*".into(),
            action: FaultAction::Status { status: 503 },
            times: Some(1),
        };
        let mut faults = vec![ArmedFault::new(rule).unwrap_or_else(|e| panic!("{e}"))];
        assert_eq!(
            take_fault(&mut faults, "GET", "/api/v4/projects/1/access_tokens"),
            None
        );
        assert_eq!(
            take_fault(
                &mut faults,
                "post",
                "/api/v4/projects/acme%2Fx/access_tokens/5/rotate"
            ),
            Some(FaultAction::Status { status: 503 })
        );
        assert!(faults.is_empty());
    }
}
