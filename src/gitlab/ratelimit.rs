//! Client-side rate limiting for one GitLab connection: a token bucket (requests per second plus
//! a burst) that callers wait on asynchronously, and a gate closed by GitLab's 429 `Retry-After`
//! so that no request at all goes out before GitLab said it may.
//!
//! [`ConnectionBudget`] is what a connection owns: the general bucket, the bucket of
//! `GET /projects/:id` (GitLab.com limits it separately) and the `Retry-After` gate. It is kept
//! per connection name by the connection controller and handed to every client it builds, so a
//! rebuilt client never starts with a fresh budget or forgets a `Retry-After` window.
//!
//! Time comes from a [`Monotonic`] clock (`reserve(now)` takes it explicitly), so the arithmetic
//! and the gate are tested without sleeping.

use std::{
    fmt,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicI64, Ordering},
    },
    time::{Duration, Instant},
};

/// A source of monotonic time for budgets and caches (the system's, or a test's hand-moved one).
pub trait Monotonic: Send + Sync + fmt::Debug {
    /// Now.
    fn now(&self) -> Instant;
}

/// The system's monotonic clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemMonotonic;

impl Monotonic for SystemMonotonic {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that moves only when told (tests).
#[derive(Debug)]
pub struct ManualMonotonic {
    at: Mutex<Instant>,
}

impl ManualMonotonic {
    /// A clock standing at the system's now.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            at: Mutex::new(Instant::now()),
        })
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let mut at = self.at.lock().unwrap_or_else(|p| p.into_inner());
        *at += by;
    }
}

impl Monotonic for ManualMonotonic {
    fn now(&self) -> Instant {
        *self.at.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Sustained rate and burst of a token bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimitConfig {
    /// Tokens added per second.
    pub requests_per_second: f64,
    /// Bucket size: requests allowed at once after a quiet period.
    pub burst: u32,
}

impl RateLimitConfig {
    /// GitLab.com's limit for authenticated API traffic is 2,000 requests a minute per user,
    /// counted in fixed one-minute windows (gitlab-api.md, "Rate limits"). A token bucket of rate
    /// `r` and burst `b` lets at most `b + 60·r` requests through in any minute, whatever the
    /// window alignment, so 30/s (1,800 a minute) with a burst of 200 stays within 2,000 — the
    /// operator never earns a 429 from GitLab.com on its own — while a burst of 200 lets a
    /// handful of new sources start at once.
    pub const GITLAB_COM: Self = Self {
        requests_per_second: 30.0,
        burst: 200,
    };

    /// GitLab.com limits `GET /projects/:id` to 400 requests a minute per user (permanent since
    /// April 2025; anchors.md §16): 6/s (360 a minute) with a burst of 40 is at most 400 in any
    /// minute. Applied on top of the general budget, and only while the connection sets no
    /// `rateLimit` of its own (self-managed GitLab has this limit off by default since 18.0).
    pub const GITLAB_COM_PROJECT_READS: Self = Self {
        requests_per_second: 6.0,
        burst: 40,
    };
}

impl Default for RateLimitConfig {
    /// [`RateLimitConfig::GITLAB_COM`].
    fn default() -> Self {
        Self::GITLAB_COM
    }
}

#[derive(Debug)]
struct BucketState {
    rate: f64,
    burst: f64,
    /// Tokens available at `updated`; negative when callers have reserved future tokens.
    tokens: f64,
    updated: Instant,
    /// No request may start before this instant (set from 429 `Retry-After`).
    blocked_until: Option<Instant>,
}

fn clamp_rate(config: RateLimitConfig) -> (f64, f64) {
    let rate = if config.requests_per_second.is_finite() {
        config.requests_per_second.max(0.01)
    } else {
        10.0
    };
    (rate, f64::from(config.burst.max(1)))
}

/// A token bucket shared by every request on one connection.
#[derive(Debug)]
pub struct RateLimiter {
    state: Mutex<BucketState>,
    remaining: AtomicI64,
    clock: Arc<dyn Monotonic>,
}

impl RateLimiter {
    /// A full bucket with the given rate and burst (both clamped to at least 1 and a small rate),
    /// on the system clock.
    pub fn new(config: RateLimitConfig, now: Instant) -> Self {
        Self::at(config, now, Arc::new(SystemMonotonic))
    }

    /// A full bucket on `clock`.
    pub fn with_clock(config: RateLimitConfig, clock: Arc<dyn Monotonic>) -> Self {
        Self::at(config, clock.now(), clock)
    }

    fn at(config: RateLimitConfig, now: Instant, clock: Arc<dyn Monotonic>) -> Self {
        let (rate, burst) = clamp_rate(config);
        Self {
            state: Mutex::new(BucketState {
                rate,
                burst,
                tokens: burst,
                updated: now,
                blocked_until: None,
            }),
            remaining: AtomicI64::new(-1),
            clock,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BucketState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Changes rate and burst, keeping reservations already made and any `Retry-After` gate.
    pub fn reconfigure(&self, config: RateLimitConfig) {
        let (rate, burst) = clamp_rate(config);
        let mut s = self.lock();
        s.rate = rate;
        s.burst = burst;
        s.tokens = s.tokens.min(burst);
    }

    /// The current rate and burst.
    pub fn config(&self) -> RateLimitConfig {
        let s = self.lock();
        RateLimitConfig {
            requests_per_second: s.rate,
            // The burst was built from a u32, so it fits.
            burst: s.burst as u32,
        }
    }

    /// Takes one token at `now` and returns how long the caller must wait before sending.
    /// Reservations queue up fairly: each caller gets the next free slot.
    pub fn reserve(&self, now: Instant) -> Duration {
        let mut s = self.lock();
        let elapsed = now.saturating_duration_since(s.updated).as_secs_f64();
        s.tokens = (s.tokens + elapsed * s.rate).min(s.burst);
        s.updated = s.updated.max(now);
        let gate = s
            .blocked_until
            .map_or(Duration::ZERO, |until| until.saturating_duration_since(now));
        s.tokens -= 1.0;
        let bucket = if s.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-s.tokens / s.rate)
        };
        bucket.max(gate)
    }

    /// Tokens in the bucket now, without taking one (negative: callers are queued for later
    /// slots), and the refill rate: what background work checks before it takes its turn.
    pub fn available(&self) -> (f64, f64) {
        let now = self.clock.now();
        let s = self.lock();
        let elapsed = now.saturating_duration_since(s.updated).as_secs_f64();
        ((s.tokens + elapsed * s.rate).min(s.burst), s.rate)
    }

    /// Closes the gate until `until` (a 429's `Retry-After`); an earlier time never shortens it.
    pub fn block_until(&self, until: Instant) {
        let mut s = self.lock();
        s.blocked_until = Some(s.blocked_until.map_or(until, |b| b.max(until)));
    }

    /// Closes the gate for `wait` from now on this limiter's clock.
    pub fn block_for(&self, wait: Duration) {
        self.block_until(self.clock.now() + wait);
    }

    /// How long the `Retry-After` gate stays closed from now (zero when open).
    pub fn blocked_for(&self) -> Duration {
        let now = self.clock.now();
        self.lock()
            .blocked_until
            .map_or(Duration::ZERO, |until| until.saturating_duration_since(now))
    }

    /// Waits (asynchronously) for a token and for any 429 gate to open.
    pub async fn acquire(&self) {
        let wait = self.reserve(self.clock.now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        // The gate may have been closed by a 429 seen while this caller was queued.
        loop {
            let gate = self.blocked_for();
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

/// Operation name of `GET /projects/:id` (as the client reports it), which has its own bucket.
pub const PROJECT_READ_OPERATION: &str = "project";

/// The GitLab budget of one connection: the general token bucket with the `Retry-After` gate,
/// and the bucket of project reads. Outlives any client built for the connection.
#[derive(Debug)]
pub struct ConnectionBudget {
    general: RateLimiter,
    project_reads: RateLimiter,
    project_reads_limited: AtomicBool,
}

impl ConnectionBudget {
    /// A full budget: `general` for every request, `project_reads` (when set) also for
    /// `GET /projects/:id`.
    pub fn new(
        general: RateLimitConfig,
        project_reads: Option<RateLimitConfig>,
        clock: Arc<dyn Monotonic>,
    ) -> Self {
        Self {
            general: RateLimiter::with_clock(general, clock.clone()),
            project_reads: RateLimiter::with_clock(project_reads.unwrap_or(general), clock),
            project_reads_limited: AtomicBool::new(project_reads.is_some()),
        }
    }

    /// Applies a changed connection spec; tokens spent and the gate are kept.
    pub fn reconfigure(&self, general: RateLimitConfig, project_reads: Option<RateLimitConfig>) {
        if self.general.config() != clamp_config(general) {
            self.general.reconfigure(general);
        }
        if let Some(p) = project_reads
            && self.project_reads.config() != clamp_config(p)
        {
            self.project_reads.reconfigure(p);
        }
        self.project_reads_limited
            .store(project_reads.is_some(), Ordering::Relaxed);
    }

    /// The general bucket's settings.
    pub fn general(&self) -> RateLimitConfig {
        self.general.config()
    }

    /// The project-read bucket's settings, when project reads are limited apart.
    pub fn project_reads(&self) -> Option<RateLimitConfig> {
        self.project_reads_limited
            .load(Ordering::Relaxed)
            .then(|| self.project_reads.config())
    }

    /// Waits for the budget to admit one request of `operation`. When GitLab's `Retry-After`
    /// keeps the gate closed longer than `max_wait`, returns at once with the time left and
    /// takes nothing: the caller answers "rate limited" without sending.
    pub async fn admit(&self, operation: &str, max_wait: Duration) -> Result<(), Duration> {
        let gate = self.general.blocked_for();
        if gate > max_wait {
            return Err(gate);
        }
        if operation == PROJECT_READ_OPERATION && self.project_reads_limited.load(Ordering::Relaxed) {
            self.project_reads.acquire().await;
        }
        self.general.acquire().await;
        Ok(())
    }

    /// How long background work (the delegation re-check) should wait so that it takes a
    /// request only while the general bucket still holds a quarter of its burst: issuing,
    /// rotation and revocation, which take theirs at once, always find the budget first.
    pub fn background_wait(&self) -> Duration {
        let (available, rate) = self.general.available();
        let reserve = (f64::from(self.general.config().burst) / 4.0).max(1.0);
        let gate = self.general.blocked_for();
        if available >= reserve {
            gate
        } else {
            gate.max(Duration::from_secs_f64((reserve - available) / rate.max(0.01)))
        }
    }

    /// Closes the gate for `wait` (a 429's `Retry-After`) for every client of the connection.
    pub fn block_for(&self, wait: Duration) {
        self.general.block_for(wait);
    }

    /// How long the `Retry-After` gate stays closed from now.
    pub fn blocked_for(&self) -> Duration {
        self.general.blocked_for()
    }

    /// Records GitLab's last `RateLimit-Remaining` header value.
    pub fn record_remaining(&self, remaining: u64) {
        self.general.record_remaining(remaining);
    }

    /// GitLab's last reported `RateLimit-Remaining`.
    pub fn remaining(&self) -> Option<u64> {
        self.general.remaining()
    }
}

fn clamp_config(config: RateLimitConfig) -> RateLimitConfig {
    let (rate, burst) = clamp_rate(config);
    RateLimitConfig {
        requests_per_second: rate,
        burst: burst as u32,
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
    fn background_work_waits_until_a_quarter_of_the_burst_is_left_for_foreground_work() {
        let clock = ManualMonotonic::new();
        let config = RateLimitConfig {
            requests_per_second: 10.0,
            burst: 8,
        };
        let budget = ConnectionBudget::new(config, None, clock.clone());
        assert_eq!(budget.background_wait(), Duration::ZERO, "a full bucket");
        // Foreground work takes 7 of 8: background waits until 2 are back (100 ms).
        for _ in 0..7 {
            budget.general.reserve(clock.now());
        }
        assert!(
            approx(budget.background_wait(), ms(100)),
            "{:?}",
            budget.background_wait()
        );
        clock.advance(ms(100));
        assert!(approx(budget.background_wait(), Duration::ZERO));
        // A 429 gate holds background work too.
        budget.block_for(Duration::from_secs(3));
        assert!(budget.background_wait() >= Duration::from_secs(2));
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
        let rl = RateLimiter::new(
            RateLimitConfig {
                requests_per_second: 10.0,
                burst: 20,
            },
            t0,
        );
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
    fn the_default_budget_never_exceeds_gitlab_com_limits_in_any_minute() {
        // At most burst + 60 × rate requests pass in any 60 s, however the window is aligned.
        let worst = |c: RateLimitConfig| f64::from(c.burst) + 60.0 * c.requests_per_second;
        assert_eq!(RateLimitConfig::default(), RateLimitConfig::GITLAB_COM);
        assert!(worst(RateLimitConfig::GITLAB_COM) <= 2000.0);
        assert!(worst(RateLimitConfig::GITLAB_COM_PROJECT_READS) <= 400.0);
        // …and not far below them either.
        assert!(worst(RateLimitConfig::GITLAB_COM) >= 1900.0);
        assert!(worst(RateLimitConfig::GITLAB_COM_PROJECT_READS) >= 380.0);
        // Counted with the bucket itself: a full minute of requests at t = 0..60 s.
        let t0 = Instant::now();
        for (config, limit) in [
            (RateLimitConfig::GITLAB_COM, 2000),
            (RateLimitConfig::GITLAB_COM_PROJECT_READS, 400),
        ] {
            let rl = RateLimiter::new(config, t0);
            let mut sent = 0;
            while rl.reserve(t0) < Duration::from_secs(60) {
                sent += 1;
            }
            assert!(sent <= limit, "{sent} requests within a minute");
        }
    }

    #[test]
    fn reconfiguring_keeps_the_gate_and_spent_tokens() {
        let clock = ManualMonotonic::new();
        let t0 = clock.now();
        let rl = RateLimiter::with_clock(
            RateLimitConfig {
                requests_per_second: 1.0,
                burst: 2,
            },
            clock.clone(),
        );
        rl.block_for(Duration::from_secs(120));
        assert_eq!(rl.reserve(t0), Duration::from_secs(120));
        rl.reconfigure(RateLimitConfig {
            requests_per_second: 100.0,
            burst: 50,
        });
        assert_eq!(rl.blocked_for(), Duration::from_secs(120), "the gate survives");
        assert_eq!(rl.config().burst, 50);
        clock.advance(Duration::from_secs(119));
        assert_eq!(rl.blocked_for(), Duration::from_secs(1));
    }

    #[tokio::test]
    async fn a_long_gate_refuses_at_once_and_a_short_one_is_waited() {
        let clock = ManualMonotonic::new();
        let budget = ConnectionBudget::new(
            RateLimitConfig::GITLAB_COM,
            Some(RateLimitConfig::GITLAB_COM_PROJECT_READS),
            clock.clone(),
        );
        budget.block_for(Duration::from_secs(120));
        assert_eq!(
            budget.admit("version", Duration::from_secs(60)).await,
            Err(Duration::from_secs(120))
        );
        clock.advance(Duration::from_secs(100));
        assert_eq!(
            budget.admit("project", Duration::from_secs(10)).await,
            Err(Duration::from_secs(20)),
            "project reads share the gate"
        );
        clock.advance(Duration::from_secs(20));
        assert_eq!(budget.admit("version", Duration::from_secs(60)).await, Ok(()));
    }

    #[test]
    fn project_reads_have_their_own_bucket_only_while_limited() {
        let clock = ManualMonotonic::new();
        let general = RateLimitConfig {
            requests_per_second: 100.0,
            burst: 100,
        };
        let budget = ConnectionBudget::new(general, Some(RateLimitConfig::GITLAB_COM_PROJECT_READS), clock);
        assert_eq!(
            budget.project_reads(),
            Some(RateLimitConfig::GITLAB_COM_PROJECT_READS)
        );
        budget.reconfigure(general, None);
        assert_eq!(budget.project_reads(), None);
        assert_eq!(budget.general(), general);
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
