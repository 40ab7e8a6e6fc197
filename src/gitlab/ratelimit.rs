//! Client-side rate limiting for one GitLab connection: a token bucket (requests per second plus
//! a burst) that callers wait on asynchronously, and a gate closed by GitLab's 429 `Retry-After`
//! so that no request at all goes out before GitLab said it may.
//!
//! Time is passed in (`reserve(now)`), so the arithmetic is tested without sleeping.

use std::{
    sync::{
        Mutex,
        atomic::{AtomicI64, Ordering},
    },
    time::{Duration, Instant},
};

/// Sustained rate and burst of a token bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimitConfig {
    /// Tokens added per second.
    pub requests_per_second: f64,
    /// Bucket size: requests allowed at once after a quiet period.
    pub burst: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            requests_per_second: 10.0,
            burst: 20,
        }
    }
}

#[derive(Debug)]
struct BucketState {
    /// Tokens available at `updated`; negative when callers have reserved future tokens.
    tokens: f64,
    updated: Instant,
    /// No request may start before this instant (set from 429 `Retry-After`).
    blocked_until: Option<Instant>,
}

/// A token bucket shared by every request on one connection.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    state: Mutex<BucketState>,
    remaining: AtomicI64,
}

impl RateLimiter {
    /// A full bucket with the given rate and burst (both clamped to at least 1 and a small rate).
    pub fn new(config: RateLimitConfig, now: Instant) -> Self {
        let rate = if config.requests_per_second.is_finite() {
            config.requests_per_second.max(0.01)
        } else {
            10.0
        };
        let burst = f64::from(config.burst.max(1));
        Self {
            rate,
            burst,
            state: Mutex::new(BucketState {
                tokens: burst,
                updated: now,
                blocked_until: None,
            }),
            remaining: AtomicI64::new(-1),
        }
    }

    /// Takes one token at `now` and returns how long the caller must wait before sending.
    /// Reservations queue up fairly: each caller gets the next free slot.
    pub fn reserve(&self, now: Instant) -> Duration {
        let mut s = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let elapsed = now.saturating_duration_since(s.updated).as_secs_f64();
        s.tokens = (s.tokens + elapsed * self.rate).min(self.burst);
        s.updated = s.updated.max(now);
        let gate = s
            .blocked_until
            .map_or(Duration::ZERO, |until| until.saturating_duration_since(now));
        s.tokens -= 1.0;
        let bucket = if s.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-s.tokens / self.rate)
        };
        bucket.max(gate)
    }

    /// Closes the gate until `until` (a 429's `Retry-After`); an earlier time never shortens it.
    pub fn block_until(&self, until: Instant) {
        let mut s = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        s.blocked_until = Some(s.blocked_until.map_or(until, |b| b.max(until)));
    }

    /// Waits (asynchronously) for a token and for any 429 gate to open.
    pub async fn acquire(&self) {
        let wait = self.reserve(Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        // The gate may have been closed by a 429 seen while this caller was queued.
        loop {
            let gate = {
                let s = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                s.blocked_until.map_or(Duration::ZERO, |until| {
                    until.saturating_duration_since(Instant::now())
                })
            };
            if gate.is_zero() {
                return;
            }
            tokio::time::sleep(gate).await;
        }
    }

    /// Records GitLab's last `RateLimit-Remaining` header value.
    pub fn record_remaining(&self, remaining: u64) {
        self.remaining
            .store(i64::try_from(remaining).unwrap_or(i64::MAX), Ordering::Relaxed);
    }

    /// GitLab's last reported `RateLimit-Remaining`, if any response carried one.
    pub fn remaining(&self) -> Option<u64> {
        u64::try_from(self.remaining.load(Ordering::Relaxed)).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn approx(a: Duration, b: Duration) -> bool {
        a.abs_diff(b) < Duration::from_micros(10)
    }

    #[test]
    fn burst_is_free_then_requests_are_spaced_by_the_rate() {
        let t0 = Instant::now();
        let rl = RateLimiter::new(
            RateLimitConfig {
                requests_per_second: 10.0,
                burst: 3,
            },
            t0,
        );
        for _ in 0..3 {
            assert_eq!(rl.reserve(t0), Duration::ZERO);
        }
        // Queued callers get successive slots 100 ms apart.
        assert!(approx(rl.reserve(t0), ms(100)));
        assert!(approx(rl.reserve(t0), ms(200)));
        assert!(approx(rl.reserve(t0), ms(300)));
    }

    #[test]
    fn bucket_refills_over_time_up_to_burst() {
        let t0 = Instant::now();
        let rl = RateLimiter::new(
            RateLimitConfig {
                requests_per_second: 2.0,
                burst: 2,
            },
            t0,
        );
        assert_eq!(rl.reserve(t0), Duration::ZERO);
        assert_eq!(rl.reserve(t0), Duration::ZERO);
        // One second refills two tokens.
        let t1 = t0 + ms(1000);
        assert_eq!(rl.reserve(t1), Duration::ZERO);
        assert_eq!(rl.reserve(t1), Duration::ZERO);
        assert!(approx(rl.reserve(t1), ms(500)));
        // A long pause never banks more than the burst.
        let t2 = t1 + Duration::from_secs(60);
        assert_eq!(rl.reserve(t2), Duration::ZERO);
        assert_eq!(rl.reserve(t2), Duration::ZERO);
        assert!(approx(rl.reserve(t2), ms(500)));
    }

    #[test]
    fn retry_after_gate_delays_even_with_tokens_left() {
        let t0 = Instant::now();
        let rl = RateLimiter::new(RateLimitConfig::default(), t0);
        rl.block_until(t0 + ms(1500));
        assert!(approx(rl.reserve(t0 + ms(500)), ms(1000)));
        // An earlier block never shortens a later one.
        rl.block_until(t0 + ms(200));
        assert!(approx(rl.reserve(t0 + ms(500)), ms(1000)));
        assert_eq!(rl.reserve(t0 + ms(1500)), Duration::ZERO);
    }

    #[test]
    fn degenerate_configs_are_clamped() {
        let t0 = Instant::now();
        let rl = RateLimiter::new(
            RateLimitConfig {
                requests_per_second: f64::NAN,
                burst: 0,
            },
            t0,
        );
        assert_eq!(rl.reserve(t0), Duration::ZERO);
        assert!(approx(rl.reserve(t0), ms(100)));
    }

    #[test]
    fn remaining_is_unknown_until_recorded() {
        let rl = RateLimiter::new(RateLimitConfig::default(), Instant::now());
        assert_eq!(rl.remaining(), None);
        rl.record_remaining(1999);
        assert_eq!(rl.remaining(), Some(1999));
    }

    #[tokio::test]
    async fn acquire_waits_out_the_gate() {
        let rl = RateLimiter::new(RateLimitConfig::default(), Instant::now());
        let start = Instant::now();
        rl.block_until(start + ms(150));
        rl.acquire().await;
        assert!(start.elapsed() >= ms(150));
    }
}
