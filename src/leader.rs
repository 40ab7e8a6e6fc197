//! Leader election over a `coordination.k8s.io/v1` Lease (kube-lease-manager): with several
//! replicas exactly one runs the controllers; every replica serves health and metrics.
//!
//! Design: a replica waits (following) until it holds the Lease, then runs the controllers. When
//! it stops being sure it holds the Lease — another identity holds it, or the Lease could not be
//! confirmed before it expires — it logs why and **exits the process** (code 3). Stopping
//! in-flight reconciles from the outside cannot be made safe (a GitLab call may be half done), while
//! an exit is exactly the crash the operator already survives; Kubernetes restarts the container,
//! which rejoins as a follower. On graceful shutdown (SIGTERM) the controllers stop first, then the
//! Lease is released, so a follower takes over within one poll interval instead of a lease duration.
//!
//! kube-lease-manager alone would let a follower notice a released Lease only at the old expiry,
//! and gives the leader no bound on a renewal that hangs; so a watchdog GETs the Lease every
//! [`LeaderConfig::poll`]: a follower that sees it free starts a fresh contender at once, and a
//! leader steps down (exits) when its last confirmed renewal expires before the next poll.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use futures::{FutureExt, future::BoxFuture};
use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use kube_lease_manager::{LeaseCreateMode, LeaseManager, LeaseManagerError, LeaseParams};
use tokio::sync::{oneshot, watch};

use crate::{http::HealthState, metrics::Metrics};

/// Exit code when leadership is lost (so Kubernetes restarts the replica as a follower).
pub const LOST_LEADERSHIP_EXIT_CODE: i32 = 3;

/// The shortest lease the election accepts (the renewal grace must be at least one second).
pub const MIN_LEASE_DURATION: Duration = Duration::from_secs(2);

/// Where and as whom to campaign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderConfig {
    /// Name of the Lease.
    pub lease_name: String,
    /// Namespace of the Lease (the operator's).
    pub namespace: String,
    /// This replica's holder identity.
    pub identity: String,
    /// How long a lease stays valid after its last renewal.
    pub duration: Duration,
}

impl LeaderConfig {
    /// Lease duration in whole seconds (at least 2).
    pub fn duration_secs(&self) -> u64 {
        self.duration.as_secs().max(MIN_LEASE_DURATION.as_secs())
    }

    /// Seconds before expiry at which the leader renews: a third of the duration, at least 1.
    pub fn grace_secs(&self) -> u64 {
        (self.duration_secs() / 3).max(1)
    }

    /// How often the watchdog reads the Lease: a tenth of the duration, between 200 ms and 2 s.
    pub fn poll(&self) -> Duration {
        (Duration::from_secs(self.duration_secs()) / 10)
            .clamp(Duration::from_millis(200), Duration::from_secs(2))
    }

    /// How long one watchdog read may take: half the grace, at least one poll interval.
    pub fn read_timeout(&self) -> Duration {
        (Duration::from_secs(self.grace_secs()) / 2).max(self.poll())
    }
}

/// Parses a `--lease-duration` (`15s`, `1m`), refusing anything under [`MIN_LEASE_DURATION`].
pub fn parse_lease_duration(s: &str) -> Result<Duration, String> {
    let d = s
        .parse::<crate::crd::ShortDuration>()
        .map(|d| d.to_std())
        .map_err(|e| e.to_string())?;
    if d < MIN_LEASE_DURATION {
        return Err(format!(
            "the lease duration must be at least {}s",
            MIN_LEASE_DURATION.as_secs()
        ));
    }
    Ok(d)
}

/// The identity a replica campaigns with: its instance name (POD_NAME), else host name and pid.
pub fn identity(instance: Option<&str>, hostname: &str, pid: u32) -> String {
    match instance.map(str::trim).filter(|s| !s.is_empty()) {
        Some(name) => name.to_string(),
        None => format!("{hostname}-{pid}"),
    }
}

/// Why the election could not start.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// The Lease could not be read or created.
    #[error("cannot set up the leader Lease: {0}")]
    Lease(#[from] LeaseManagerError),
    /// The election's own thread, runtime or client could not be started.
    #[error("cannot start the leader election: {0}")]
    Start(String),
}

/// What the watchdog learnt from one read of the Lease.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Holder {
    /// Nobody holds it.
    Free,
    /// This identity holds it until the given time.
    Us(SystemTime),
    /// Another identity holds it.
    Other(String),
}

/// Reads the holder of a Lease spec (renewal + duration gives our validity).
fn holder_of(lease: &Lease, identity: &str) -> Holder {
    let Some(spec) = &lease.spec else {
        return Holder::Free;
    };
    match spec.holder_identity.as_deref() {
        None | Some("") => Holder::Free,
        Some(h) if h == identity => {
            let valid_until = match (&spec.renew_time, spec.lease_duration_seconds) {
                (Some(renew), Some(secs)) if secs > 0 => {
                    SystemTime::from(renew.0) + Duration::from_secs(secs.unsigned_abs().into())
                }
                _ => SystemTime::UNIX_EPOCH,
            };
            Holder::Us(valid_until)
        }
        Some(other) => Holder::Other(other.to_string()),
    }
}

/// A running campaign: tells whether this replica leads, and releases the Lease on shutdown.
pub struct Election {
    is_leader: watch::Receiver<bool>,
    release: Option<oneshot::Sender<oneshot::Sender<()>>>,
}

impl Election {
    /// Creates the Lease if needed and starts campaigning in the background, on a thread of its
    /// own with its own runtime and Kubernetes client: a busy controller runtime (tokio does not
    /// preempt) or a client full of reconcile requests must never delay a renewal until the
    /// Lease expires (seen at 10,000 sources: the leader stepped down mid-issue).
    pub async fn start(
        kube_config: kube::Config,
        config: LeaderConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Election, LeaderError> {
        let (tx, rx) = watch::channel(false);
        let (release_tx, release_rx) = oneshot::channel();
        let (started_tx, started_rx) = oneshot::channel::<Result<(), LeaderError>>();
        metrics.leader.set(0);
        std::thread::Builder::new()
            .name("leader-election".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = started_tx.send(Err(LeaderError::Start(e.to_string())));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let client = match Client::try_from(kube_config) {
                        Ok(c) => c,
                        Err(e) => {
                            let _ = started_tx.send(Err(LeaderError::Start(e.to_string())));
                            return;
                        }
                    };
                    let manager = match new_manager(&client, &config).await {
                        Ok(m) => m,
                        Err(e) => {
                            let _ = started_tx.send(Err(e.into()));
                            return;
                        }
                    };
                    let _ = started_tx.send(Ok(()));
                    let api = Api::<Lease>::namespaced(client.clone(), &config.namespace);
                    campaign(client, api, config, manager, tx, release_rx, metrics).await;
                });
            })
            .map_err(|e| LeaderError::Start(e.to_string()))?;
        started_rx
            .await
            .map_err(|_| LeaderError::Start("the election thread ended".into()))??;
        Ok(Election {
            is_leader: rx,
            release: Some(release_tx),
        })
    }

    /// Whether this replica holds the Lease now (changes as it does).
    pub fn is_leader(&self) -> watch::Receiver<bool> {
        self.is_leader.clone()
    }

    /// Waits until this replica leads.
    pub async fn acquired(&self) {
        let mut rx = self.is_leader.clone();
        let _ = rx.wait_for(|l| *l).await;
    }

    /// Releases the Lease if held (call after the controllers have stopped) and ends the campaign.
    pub async fn release(mut self) {
        if let Some(tx) = self.release.take() {
            let (done_tx, done_rx) = oneshot::channel();
            if tx.send(done_tx).is_ok() {
                let _ = done_rx.await;
            }
        }
    }
}

async fn new_manager(client: &Client, config: &LeaderConfig) -> Result<LeaseManager, LeaseManagerError> {
    let params = LeaseParams::new(
        config.identity.clone(),
        config.duration_secs(),
        config.grace_secs(),
    );
    LeaseManager::new(
        client.clone(),
        &config.lease_name,
        &config.namespace,
        params,
        LeaseCreateMode::AutoCreate,
    )
    .await
}

/// How a leader's term ended.
enum Term {
    /// Shutdown asked for the Lease back.
    Released(oneshot::Sender<()>),
    /// The Lease is (or may be) someone else's.
    Lost(String),
}

/// How a follower's wait ended.
enum Wait {
    /// We hold the Lease.
    Acquired,
    /// The Lease was released: start a fresh contender to take it now.
    Freed,
    /// Shutdown came first.
    Released(oneshot::Sender<()>),
}

async fn campaign(
    client: Client,
    api: Api<Lease>,
    config: LeaderConfig,
    mut manager: LeaseManager,
    tx: watch::Sender<bool>,
    mut release_rx: oneshot::Receiver<oneshot::Sender<()>>,
    metrics: Arc<Metrics>,
) {
    let identity = config.identity.as_str();
    tracing::info!(lease = %config.lease_name, identity, "campaigning for leadership");
    loop {
        match follow(&manager, &api, &config, &mut release_rx).await {
            Wait::Acquired => break,
            Wait::Released(done) => {
                // A cancelled contention may have taken the Lease unseen; release() only
                // touches a Lease that is ours or already expired.
                let _ = tokio::time::timeout(config.read_timeout(), manager.release()).await;
                let _ = done.send(());
                return;
            }
            Wait::Freed => match new_manager(&client, &config).await {
                Ok(fresh) => manager = fresh,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the leader Lease; retrying");
                    tokio::time::sleep(config.poll()).await;
                }
            },
        }
    }
    metrics.leader.set(1);
    let _ = tx.send(true);
    tracing::info!(lease = %config.lease_name, identity, "acquired leadership; starting the controllers");
    match lead(&manager, &api, &config, &mut release_rx).await {
        Term::Released(done) => {
            match tokio::time::timeout(config.duration, manager.release()).await {
                Ok(Ok(())) => tracing::info!(lease = %config.lease_name, "released the leader Lease"),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cannot release the leader Lease; it expires on its own")
                }
                Err(_) => tracing::warn!("releasing the leader Lease timed out; it expires on its own"),
            }
            metrics.leader.set(0);
            let _ = tx.send(false);
            let _ = done.send(());
        }
        Term::Lost(why) => {
            metrics.leader.set(0);
            let _ = tx.send(false);
            tracing::error!(
                lease = %config.lease_name,
                identity,
                reason = %why,
                "lost leadership; exiting so that the restarted replica rejoins as a follower"
            );
            std::process::exit(LOST_LEADERSHIP_EXIT_CODE);
        }
    }
}

/// Reads the Lease, bounded by [`LeaderConfig::read_timeout`].
async fn read_holder(api: &Api<Lease>, config: &LeaderConfig) -> Option<Holder> {
    match tokio::time::timeout(config.read_timeout(), api.get(&config.lease_name)).await {
        Ok(Ok(lease)) => Some(holder_of(&lease, &config.identity)),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "reading the leader Lease failed");
            None
        }
        Err(_) => None,
    }
}

/// Waits for the Lease while following; a released Lease is reported at the next poll.
async fn follow(
    manager: &LeaseManager,
    api: &Api<Lease>,
    config: &LeaderConfig,
    release_rx: &mut oneshot::Receiver<oneshot::Sender<()>>,
) -> Wait {
    let mut changed: BoxFuture<'_, Result<bool, LeaseManagerError>> = manager.changed().boxed();
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + config.poll(), config.poll());
    loop {
        tokio::select! {
            biased;
            done = &mut *release_rx => match done {
                Ok(done) => return Wait::Released(done),
                Err(_) => std::future::pending::<()>().await,
            },
            result = &mut changed => match result {
                Ok(true) => return Wait::Acquired,
                Ok(false) => changed = manager.changed().boxed(),
                Err(e) => {
                    tracing::warn!(error = %e, "leader election: cannot contend for the Lease; retrying");
                    changed = changed_after(manager, config.poll());
                }
            },
            _ = tick.tick() => {
                if read_holder(api, config).await == Some(Holder::Free) {
                    return Wait::Freed;
                }
            }
        }
    }
}

/// `manager.changed()` after a pause, to retry a failed contention or renewal without spinning.
fn changed_after(manager: &LeaseManager, pause: Duration) -> BoxFuture<'_, Result<bool, LeaseManagerError>> {
    async move {
        tokio::time::sleep(pause).await;
        manager.changed().await
    }
    .boxed()
}

/// Renews the Lease while leading; returns when shutdown asks for it or leadership is in doubt.
async fn lead(
    manager: &LeaseManager,
    api: &Api<Lease>,
    config: &LeaderConfig,
    release_rx: &mut oneshot::Receiver<oneshot::Sender<()>>,
) -> Term {
    let mut valid_until = match read_holder(api, config).await {
        Some(Holder::Us(until)) => until,
        Some(Holder::Other(other)) => return Term::Lost(format!("the Lease is held by {other}")),
        Some(Holder::Free) => return Term::Lost("the Lease was released".into()),
        None => return Term::Lost("cannot confirm the Lease after acquiring it".into()),
    };
    let mut changed: BoxFuture<'_, Result<bool, LeaseManagerError>> = manager.changed().boxed();
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + config.poll(), config.poll());
    loop {
        tokio::select! {
            biased;
            done = &mut *release_rx => match done {
                Ok(done) => return Term::Released(done),
                Err(_) => std::future::pending::<()>().await,
            },
            result = &mut changed => match result {
                Ok(false) => return Term::Lost("another replica holds the Lease".into()),
                Ok(true) => changed = manager.changed().boxed(),
                Err(e) => {
                    // The watchdog below decides whether the Lease is still ours.
                    tracing::warn!(error = %e, "renewing the leader Lease failed; retrying");
                    changed = changed_after(manager, config.poll());
                }
            },
            _ = tick.tick() => {
                match read_holder(api, config).await {
                    Some(Holder::Us(until)) => valid_until = until,
                    Some(Holder::Other(other)) => return Term::Lost(format!("the Lease is held by {other}")),
                    Some(Holder::Free) => return Term::Lost("the Lease was released by someone else".into()),
                    None => {}
                }
                if expires_before_next_poll(valid_until, SystemTime::now(), config.poll()) {
                    return Term::Lost("the Lease could not be renewed before it expires".into());
                }
            }
        }
    }
}

/// Whether a lease valid until `valid_until` may expire before the watchdog looks again.
fn expires_before_next_poll(valid_until: SystemTime, now: SystemTime, poll: Duration) -> bool {
    now + poll >= valid_until
}

/// The leadership gate of `run`: without election this replica leads at once; with it, the
/// replica reports ready (it serves health and metrics) and waits until it holds the Lease.
/// `None` when shutdown came first.
pub async fn gate(
    enabled: bool,
    kube_config: kube::Config,
    config: LeaderConfig,
    health: &HealthState,
    metrics: Arc<Metrics>,
    stopped: impl std::future::Future<Output = ()>,
) -> Result<Option<Option<Election>>, LeaderError> {
    if !enabled {
        metrics.leader.set(1);
        return Ok(Some(None));
    }
    let election = Election::start(kube_config, config, metrics).await?;
    health.set_ready(true);
    tokio::select! {
        _ = election.acquired() => Ok(Some(Some(election))),
        _ = stopped => {
            election.release().await;
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::{api::coordination::v1::LeaseSpec, apimachinery::pkg::apis::meta::v1::MicroTime};

    use super::*;

    fn cfg(secs: u64) -> LeaderConfig {
        LeaderConfig {
            lease_name: "l".into(),
            namespace: "ns".into(),
            identity: "me".into(),
            duration: Duration::from_secs(secs),
        }
    }

    #[test]
    fn timings_follow_the_duration() {
        // (duration, grace, poll ms)
        for (secs, grace, poll_ms) in [
            (2, 1, 200),
            (3, 1, 300),
            (15, 5, 1500),
            (60, 20, 2000),
            (1, 1, 200),
        ] {
            let c = cfg(secs);
            assert_eq!(c.grace_secs(), grace, "{secs}s");
            assert!(c.grace_secs() < c.duration_secs());
            assert_eq!(c.poll(), Duration::from_millis(poll_ms), "{secs}s");
            assert!(c.read_timeout() >= c.poll() && c.read_timeout() < Duration::from_secs(c.grace_secs()));
            // The leader sees its renewal (at expiry - grace) before the watchdog would fire.
            assert!(2 * c.poll() <= Duration::from_secs(c.grace_secs()), "{secs}s");
        }
    }

    #[test]
    fn lease_durations_parse_or_are_refused() {
        for (input, want) in [
            ("15s", Some(15)),
            ("3s", Some(3)),
            ("2s", Some(2)),
            ("1m", Some(60)),
            ("1s", None),
            ("0s", None),
            ("soon", None),
            ("", None),
        ] {
            assert_eq!(
                parse_lease_duration(input).ok().map(|d| d.as_secs()),
                want,
                "{input:?}"
            );
        }
    }

    #[test]
    fn identity_prefers_the_instance_name() {
        assert_eq!(identity(Some("pod-1"), "host", 7), "pod-1");
        assert_eq!(identity(Some("  "), "host", 7), "host-7");
        assert_eq!(identity(None, "host", 7), "host-7");
    }

    #[test]
    fn holder_is_read_from_the_spec() {
        let renew = k8s_openapi::jiff::Timestamp::from_second(1_000).unwrap();
        let lease = |holder: Option<&str>| Lease {
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_string),
                renew_time: Some(MicroTime(renew)),
                lease_duration_seconds: Some(3),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            holder_of(&lease(Some("me")), "me"),
            Holder::Us(SystemTime::UNIX_EPOCH + Duration::from_secs(1_003))
        );
        assert_eq!(holder_of(&lease(Some("you")), "me"), Holder::Other("you".into()));
        assert_eq!(holder_of(&lease(None), "me"), Holder::Free);
        assert_eq!(holder_of(&lease(Some("")), "me"), Holder::Free);
        assert_eq!(holder_of(&Lease::default(), "me"), Holder::Free);
    }

    #[test]
    fn watchdog_fires_only_when_the_lease_may_lapse_before_the_next_look() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        let poll = Duration::from_millis(300);
        for (until_ms, fires) in [
            (100_000, true),
            (100_300, true),
            (100_301, false),
            (101_000, false),
            (99_000, true),
        ] {
            let until = SystemTime::UNIX_EPOCH + Duration::from_millis(until_ms);
            assert_eq!(expires_before_next_poll(until, t, poll), fires, "{until_ms}");
        }
    }
}
