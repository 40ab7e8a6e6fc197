//! `GitLabState`: the store behind a lock, the clock, settings, faults, rate-limit windows and the
//! call log, shared by the REST API, the control API and the protocol fronts.

use std::{
    collections::HashMap,
    sync::{Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{
    clock::Clock,
    model::{Source, TokenKind, fmt_date, fmt_time},
    repos::Repositories,
    store::{Credential, Store},
    tokens::{AuthFailure, Authenticated, digest},
    traffic::{ArmedFault, CallRecord, FaultAction, RateLimitConfig, RateVerdict, count_request, take_fault},
};

/// Runtime settings (changeable through the controls).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Maximum token lifetime in days (365 by default).
    pub max_token_lifetime_days: u32,
    /// The authenticated-API throttle; None = disabled (GitLab's self-managed default).
    pub rate_limit: Option<RateLimitConfig>,
    /// Latency added to every API request.
    pub latency: Option<Duration>,
    /// Base URL (`http://127.0.0.1:PORT`).
    pub base_url: String,
    /// Registry host used in image locations (`127.0.0.1:PORT` unless set).
    pub registry_host: String,
    /// `host:port` of Git over SSH when an SSH front runs (`ssh_url_to_repo` follows it).
    pub ssh_host: Option<String>,
    /// Version reported by `/version`.
    pub version: String,
}

/// A token as shown by the leak audit: every PAT/PrAT/GrAT/deploy token with its state, never its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenRecord {
    /// Record id (deploy tokens have their own id space).
    pub id: u64,
    /// `personal`, `project`, `group` or `deploy`.
    pub kind: String,
    /// Name.
    pub name: String,
    /// Owner username (bot for resource tokens; login username for deploy tokens).
    pub username: String,
    /// Full path of the project or group the token belongs to.
    pub resource: Option<String>,
    /// Scopes.
    pub scopes: Vec<String>,
    /// Role of the token's bot (resource tokens).
    pub access_level: Option<u32>,
    /// Creation time.
    pub created_at: String,
    /// Expiry (date for PAT-type tokens, datetime for deploy tokens).
    pub expires_at: Option<String>,
    /// `active`, `expired`, `revoked` or `deleted`.
    pub state: String,
    /// Predecessor in the rotation family.
    pub previous_id: Option<u64>,
}

/// The whole emulator state.
#[derive(Debug)]
pub struct GitLabState {
    store: Mutex<Store>,
    clock: Clock,
    settings: Mutex<Settings>,
    calls: Mutex<Vec<CallRecord>>,
    faults: Mutex<Vec<ArmedFault>>,
    windows: Mutex<HashMap<String, (i64, u64)>>,
    repositories: Mutex<Option<Repositories>>,
    reuse_detections: Mutex<Vec<ReuseDetection>>,
}

/// One firing of GitLab's reuse detection: a revoked token presented to a rotate endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReuseDetection {
    /// The revoked token that was presented.
    pub presented: u64,
    /// Its active descendants revoked as a consequence.
    pub revoked: Vec<u64>,
    /// When (emulator clock).
    pub at: DateTime<Utc>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl GitLabState {
    /// A fresh, empty state.
    pub fn new(settings: Settings, clock: Clock) -> Self {
        let mut store = Store::default();
        store.use_clock(clock.clone());
        Self {
            store: Mutex::new(store),
            clock,
            settings: Mutex::new(settings),
            calls: Mutex::new(Vec::new()),
            faults: Mutex::new(Vec::new()),
            windows: Mutex::new(HashMap::new()),
            repositories: Mutex::new(None),
            reuse_detections: Mutex::new(Vec::new()),
        }
    }

    /// Locks the store. Never hold it across an await.
    pub fn store(&self) -> MutexGuard<'_, Store> {
        lock(&self.store)
    }

    /// The clock.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// A copy of the settings.
    pub fn settings(&self) -> Settings {
        lock(&self.settings).clone()
    }

    /// Changes settings.
    pub fn update_settings(&self, f: impl FnOnce(&mut Settings)) {
        f(&mut lock(&self.settings));
    }

    /// Appends to the call log.
    pub fn record_call(&self, record: CallRecord) {
        lock(&self.calls).push(record);
    }

    /// The call log.
    pub fn calls(&self) -> Vec<CallRecord> {
        lock(&self.calls).clone()
    }

    /// How many calls were recorded (without copying them).
    pub fn call_count(&self) -> usize {
        lock(&self.calls).len()
    }

    /// Empties the call log.
    pub fn clear_calls(&self) {
        lock(&self.calls).clear();
    }

    /// Arms a fault rule.
    pub fn add_fault(&self, fault: ArmedFault) {
        lock(&self.faults).push(fault);
    }

    /// Disarms all faults.
    pub fn clear_faults(&self) {
        lock(&self.faults).clear();
    }

    /// The armed faults (with remaining counts).
    pub fn faults(&self) -> Vec<ArmedFault> {
        lock(&self.faults).clone()
    }

    /// Takes the fault for a request, if one matches.
    pub fn take_fault(&self, method: &str, path: &str) -> Option<FaultAction> {
        take_fault(&mut lock(&self.faults), method, path)
    }

    /// Records a firing of reuse detection.
    pub fn record_reuse_detection(&self, detection: ReuseDetection) {
        lock(&self.reuse_detections).push(detection);
    }

    /// Every firing of reuse detection so far (crash tests assert there is none).
    pub fn reuse_detections(&self) -> Vec<ReuseDetection> {
        lock(&self.reuse_detections).clone()
    }

    /// Forgets all rate-limit windows.
    pub fn reset_rate_limits(&self) {
        lock(&self.windows).clear();
    }

    /// Counts a request of `key` (a user or an IP) against the throttle, if enabled.
    pub fn count_request(&self, key: &str, authenticated: bool) -> Option<RateVerdict> {
        let config = self.settings().rate_limit?;
        let name = if authenticated {
            "throttle_authenticated_api"
        } else {
            "throttle_unauthenticated_api"
        };
        let now = self.clock.now();
        let mut windows = lock(&self.windows);
        let window = windows.entry(key.to_string()).or_insert((0, 0));
        Some(count_request(window, &config, now, name))
    }

    /// The username a presented secret belongs to, without recording use (for throttling keys).
    pub fn peek_username(&self, secret: &str) -> Option<String> {
        let store = self.store();
        match store.digests.get(&digest(secret)).copied()? {
            Credential::Token(id) => {
                let user_id = store.tokens.get(&id)?.user_id;
                store.users.get(&user_id).map(|u| u.username.clone())
            }
            Credential::Deploy(id) => store.deploy_tokens.get(&id).map(|d| d.username.clone()),
        }
    }

    /// Authenticates a secret for the REST API (records use).
    pub fn authenticate_secret(&self, secret: &str, ip: Option<&str>) -> Result<Authenticated, AuthFailure> {
        let now = self.clock.now();
        self.store().authenticate_secret(secret, now, ip)
    }

    /// Every token with its state and never its value (leak audit).
    pub fn tokens(&self) -> Vec<TokenRecord> {
        let now = self.clock.now();
        let today = now.date_naive();
        let store = self.store();
        let resource_path = |source: Source| match source {
            Source::Project(id) => store.projects.get(&id).map(|p| store.project_path(p)),
            Source::Group(id) => store.groups.get(&id).map(|g| g.full_path.clone()),
        };
        let mut out: Vec<TokenRecord> = store
            .tokens
            .values()
            .map(|t| TokenRecord {
                id: t.id,
                kind: match t.kind {
                    TokenKind::Personal => "personal",
                    TokenKind::Project => "project",
                    TokenKind::Group => "group",
                }
                .into(),
                name: t.name.clone(),
                username: store
                    .users
                    .get(&t.user_id)
                    .map(|u| u.username.clone())
                    .unwrap_or_default(),
                resource: t.resource.and_then(resource_path),
                scopes: t.scopes.clone(),
                access_level: t.resource.map(|s| store.direct_level(t.user_id, s)),
                created_at: fmt_time(t.created_at),
                expires_at: t.expires_at.map(fmt_date),
                state: if t.revoked {
                    "revoked"
                } else if t.expired_on(today) {
                    "expired"
                } else {
                    "active"
                }
                .into(),
                previous_id: t.previous_id,
            })
            .collect();
        out.extend(store.deploy_tokens.values().map(|d| {
            TokenRecord {
                id: d.id,
                kind: "deploy".into(),
                name: d.name.clone(),
                username: d.username.clone(),
                resource: resource_path(d.resource),
                scopes: d.scopes.clone(),
                access_level: None,
                created_at: fmt_time(d.created_at),
                expires_at: d.expires_at.map(fmt_time),
                state: if d.deleted {
                    "deleted"
                } else if d.revoked {
                    "revoked"
                } else if d.expired_at(now) {
                    "expired"
                } else {
                    "active"
                }
                .into(),
                previous_id: None,
            }
        }));
        out
    }

    /// Serves the repository endpoints from these bare repositories (the fronts').
    pub fn attach_repositories(&self, repositories: Repositories) {
        *lock(&self.repositories) = Some(repositories);
    }

    /// The attached repositories, if any.
    pub fn repositories(&self) -> Option<Repositories> {
        lock(&self.repositories).clone()
    }

    /// The current instant on the emulator clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }
}
