//! When to send a request again, and after how long.
//!
//! Only requests that are safe to repeat are retried on 5xx, timeouts and connection errors:
//! GETs and the revoke DELETE. Create and rotate are never retried on those failures, because a
//! lost response may mean GitLab already minted or rotated the token (DESIGN §6.3, gitlab-api.md
//! §11.3.4); the caller's write-ahead record decides what to do. A 429 is different: GitLab (or
//! its throttle in front) refused the request before doing anything, so every request may be
//! sent again once `Retry-After` has passed, if that wait is short enough to wait inline.

use std::time::Duration;

use super::GitLabError;

/// Whether a request may be repeated after an ambiguous failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idempotency {
    /// Repeating it cannot change the outcome (GET, revoke).
    Safe,
    /// It creates or rotates a secret: never repeat after an ambiguous failure.
    Unsafe,
}

/// Bounded exponential backoff with jitter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Total attempts per request, the first included (1 disables retries).
    pub max_attempts: u32,
    /// Delay before the first retry (before jitter).
    pub base_delay: Duration,
    /// Upper bound of any single delay.
    pub max_delay: Duration,
    /// A 429 asking to wait longer than this is returned to the caller instead of waited out.
    pub max_inline_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(10),
            max_inline_retry_after: Duration::from_secs(60),
        }
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Give the error to the caller.
    GiveUp,
    /// Try again after this backoff (the rate limiter adds any 429 wait on top).
    RetryAfter(Duration),
}

impl RetryPolicy {
    /// The backoff before retry number `retry` (0-based), given a jitter sample in `[0, 1]`:
    /// "equal jitter", i.e. between half and all of `base * 2^retry`, capped at `max_delay`.
    pub fn backoff(&self, retry: u32, jitter: f64) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(retry.min(20)))
            .min(self.max_delay);
        let jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            1.0
        };
        exp.mul_f64(0.5 + 0.5 * jitter)
    }

    /// Decides after failed attempt number `attempt` (1-based) of a request.
    pub fn decide(
        &self,
        attempt: u32,
        idempotency: Idempotency,
        err: &GitLabError,
        jitter: f64,
    ) -> RetryDecision {
        if attempt >= self.max_attempts {
            return RetryDecision::GiveUp;
        }
        let retry = attempt.saturating_sub(1);
        match err {
            GitLabError::RateLimited { retry_after } => match retry_after {
                Some(wait) if *wait > self.max_inline_retry_after => RetryDecision::GiveUp,
                // The limiter's gate holds the request for `Retry-After`; no extra backoff.
                Some(_) => RetryDecision::RetryAfter(Duration::ZERO),
                None => RetryDecision::RetryAfter(self.backoff(retry, jitter).max(Duration::from_secs(1))),
            },
            GitLabError::Server { .. } | GitLabError::Timeout | GitLabError::Transport { .. }
                if idempotency == Idempotency::Safe =>
            {
                RetryDecision::RetryAfter(self.backoff(retry, jitter))
            }
            _ => RetryDecision::GiveUp,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(300),
            max_inline_retry_after: Duration::from_secs(60),
        }
    }

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        let p = policy();
        let ms = Duration::from_millis;
        let cases = [
            (0, 0.0, ms(50)),
            (0, 1.0, ms(100)),
            (1, 0.0, ms(100)),
            (1, 1.0, ms(200)),
            (2, 1.0, ms(300)),
            (30, 0.5, ms(225)),
            (0, f64::NAN, ms(100)),
        ];
        for (retry, jitter, want) in cases {
            assert_eq!(p.backoff(retry, jitter), want, "retry {retry} jitter {jitter}");
        }
    }

    #[test]
    fn decisions_by_error_and_idempotency() {
        use Idempotency::{Safe, Unsafe};
        let p = policy();
        let server = GitLabError::Server {
            status: 502,
            message: String::new(),
        };
        let transport = GitLabError::Transport {
            message: String::new(),
        };
        let bad = GitLabError::BadRequest {
            message: String::new(),
        };
        let short_429 = GitLabError::RateLimited {
            retry_after: Some(Duration::from_secs(1)),
        };
        let long_429 = GitLabError::RateLimited {
            retry_after: Some(Duration::from_secs(600)),
        };
        let bare_429 = GitLabError::RateLimited { retry_after: None };
        let retry = |d: RetryDecision| matches!(d, RetryDecision::RetryAfter(_));
        let cases: &[(u32, Idempotency, &GitLabError, bool)] = &[
            (1, Safe, &server, true),
            (2, Safe, &server, true),
            (3, Safe, &server, false),
            (1, Unsafe, &server, false),
            (1, Safe, &GitLabError::Timeout, true),
            (1, Unsafe, &GitLabError::Timeout, false),
            (1, Safe, &transport, true),
            (1, Unsafe, &transport, false),
            (1, Safe, &bad, false),
            (1, Unsafe, &short_429, true),
            (1, Safe, &long_429, false),
            (1, Unsafe, &bare_429, true),
            (3, Safe, &short_429, false),
        ];
        for (attempt, idem, err, want) in cases {
            assert_eq!(
                retry(p.decide(*attempt, *idem, err, 0.5)),
                *want,
                "{attempt} {idem:?} {err:?}"
            );
        }
        assert_eq!(
            p.decide(1, Safe, &short_429, 0.5),
            RetryDecision::RetryAfter(Duration::ZERO)
        );
        assert_eq!(
            p.decide(1, Safe, &bare_429, 0.0),
            RetryDecision::RetryAfter(Duration::from_secs(1))
        );
    }
}
