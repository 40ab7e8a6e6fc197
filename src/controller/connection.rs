//! The `GitLabConnection` controller: checks the operator's own GitLab token (user, scopes,
//! expiry, GitLab version), keeps a live client per connection for the other controllers, and
//! rotates the operator's token itself when `selfRotation` is on (DESIGN §6.8).
//!
//! Self-rotation is crash-safe: the credentials Secret is annotated before the rotate call and
//! the new value is written back before it is used. If an annotated attempt finds the stored
//! token revoked, the new value was lost; the operator then reports `SelfRotationLost` and never
//! presents the old token to a rotate endpoint again (GitLab would revoke the whole family).

use std::{
    collections::BTreeMap,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams},
    runtime::controller::Action,
};
use secrecy::SecretString;
use serde_json::json;

use super::{
    conditions::condition,
    connection_error::{NotReady, not_ready},
    context::Context,
    self_rotation::{clear_rotation_mark, lost_or, rotate_own_token, self_rotation_due},
};
use crate::{
    crd::{FIELD_MANAGER, GitLabConnection, GitLabConnectionStatus, GitLabUserRef, set_condition},
    gitlab::{
        ClientConfig, ConnectionBudget, Freshness, GitLabApi, GitLabClient, GitLabError, Monotonic, Project,
        ProjectCache, ProjectCacheConfig, RequestObserver, SystemMonotonic, User,
    },
    metrics::{ConnectionLabels, GitLabOperationLabels, GitLabRequestLabels, Metrics},
};

pub use super::self_rotation::SELF_ROTATION_ANNOTATION;

/// A connection the other controllers can use.
pub struct LiveConnection {
    /// Name of the GitLabConnection.
    pub name: String,
    /// Its spec when last reconciled.
    pub spec: crate::crd::GitLabConnectionSpec,
    /// The client, authenticated with the operator's token.
    pub api: Arc<GitLabClient>,
    /// Who the operator is on this GitLab.
    pub user: Option<User>,
    /// Whether the last check passed.
    pub ready: bool,
    /// The connection's project lookups (outlive this object; see [`Self::resolve_project`]).
    pub projects: Arc<ProjectCache>,
    cache_key: String,
    /// When GitLab last confirmed the token (the injected clock), if it did.
    checked_at: Option<chrono::DateTime<chrono::Utc>>,
    /// SSH host keys the check fetched and pinned (`spec.sshHostKeyPolicy: FetchAndPin`).
    pub ssh_host_key_pin: Option<crate::crd::PinnedHostKeys>,
}

impl LiveConnection {
    /// Resolves a project (a numeric id or a full path) on this connection: from the
    /// connection's cache when `freshness` is [`Freshness::Cached`] and a recent answer exists
    /// (a found project for an hour, a 404 for a minute), else with one `GET /projects/:id`
    /// (concurrent callers of one key share it). Use [`Freshness::Refresh`] at renewal and after a
    /// token call answered 404, so renames, transfers and deletions are caught.
    pub async fn resolve_project(
        &self,
        project: &str,
        freshness: Freshness,
    ) -> Result<Arc<Project>, GitLabError> {
        let api = self.api.clone();
        self.projects
            .resolve(project, freshness, |key| async move { api.project(&key).await })
            .await
    }

    /// Publishes the last `RateLimit-Remaining` GitLab reported on this connection.
    pub fn report_rate_limit(&self, metrics: &Metrics) {
        if let Some(r) = self.api.rate_limit_remaining() {
            let labels = ConnectionLabels {
                connection: self.name.clone(),
            };
            metrics
                .gitlab_rate_limit_remaining
                .get_or_create(&labels)
                .set(i64::try_from(r).unwrap_or(i64::MAX));
        }
    }
}

/// What a connection owns across client rebuilds and re-checks: its GitLab budget (rate,
/// burst, `Retry-After` gate) and its project lookups.
#[derive(Debug)]
pub struct ConnectionShared {
    /// Spent by every client built for the connection.
    pub budget: Arc<ConnectionBudget>,
    /// Project lookups (see [`LiveConnection::resolve_project`]).
    pub projects: Arc<ProjectCache>,
}

/// The live connections by name, and why the others are not usable.
pub struct Connections {
    live: RwLock<BTreeMap<String, Arc<LiveConnection>>>,
    not_ready: RwLock<BTreeMap<String, String>>,
    deleting: RwLock<std::collections::BTreeSet<String>>,
    /// Per connection name; kept while the connection is not ready, so a rebuilt client
    /// inherits the budget and any `Retry-After` window (issue 9 item 11).
    shared: RwLock<BTreeMap<String, Arc<ConnectionShared>>>,
    clock: Arc<dyn Monotonic>,
}

impl Default for Connections {
    fn default() -> Self {
        Self::with_clock(Arc::new(SystemMonotonic))
    }
}

impl Connections {
    /// No connections yet; budgets and caches run on `clock` (tests move it by hand).
    pub fn with_clock(clock: Arc<dyn Monotonic>) -> Self {
        Self {
            live: RwLock::default(),
            not_ready: RwLock::default(),
            deleting: RwLock::default(),
            shared: RwLock::default(),
            clock,
        }
    }

    /// The budget and project cache of connection `name`: made on first use, and on later
    /// calls reconfigured to `config`'s limits without losing spent tokens or the gate.
    pub fn shared(&self, name: &str, config: &ClientConfig) -> Arc<ConnectionShared> {
        if let Some(existing) = self.shared.read().ok().and_then(|m| m.get(name).cloned()) {
            existing
                .budget
                .reconfigure(config.rate_limit, config.project_read_limit);
            return existing;
        }
        let made = Arc::new(ConnectionShared {
            budget: Arc::new(ConnectionBudget::new(
                config.rate_limit,
                config.project_read_limit,
                self.clock.clone(),
            )),
            projects: Arc::new(ProjectCache::new(
                ProjectCacheConfig::default(),
                self.clock.clone(),
            )),
        });
        match self.shared.write() {
            Ok(mut m) => m.entry(name.to_string()).or_insert(made).clone(),
            Err(_) => made,
        }
    }

    /// How long GitLab's `Retry-After` keeps connection `name` from sending (zero: not blocked).
    pub fn blocked_for(&self, name: &str) -> Duration {
        self.shared
            .read()
            .ok()
            .and_then(|m| m.get(name).map(|s| s.budget.blocked_for()))
            .unwrap_or_default()
    }

    /// The usable connection named `name`.
    pub fn get(&self, name: &str) -> Option<Arc<LiveConnection>> {
        self.live.read().ok()?.get(name).cloned()
    }

    /// Every usable connection.
    pub fn all(&self) -> Vec<Arc<LiveConnection>> {
        self.live
            .read()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Every known connection that is not usable, with why.
    pub fn not_ready_reasons(&self) -> Vec<(String, String)> {
        self.not_ready
            .read()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    }

    /// Why a known connection is not usable (None when it is, or is unknown).
    pub fn not_ready_reason(&self, name: &str) -> Option<String> {
        self.not_ready.read().ok()?.get(name).cloned()
    }

    /// How many connections exist, usable or not.
    pub fn known(&self) -> usize {
        let live = self.live.read().map(|m| m.len()).unwrap_or(0);
        live + self.not_ready.read().map(|m| m.len()).unwrap_or(0)
    }

    fn put(&self, conn: Arc<LiveConnection>) {
        if let Ok(mut m) = self.not_ready.write() {
            m.remove(&conn.name);
        }
        if let Ok(mut m) = self.live.write() {
            m.insert(conn.name.clone(), conn);
        }
    }

    /// Whether the connection controller has checked `name` at least once since start (every
    /// check ends with the connection live or marked not ready).
    pub fn checked(&self, name: &str) -> bool {
        self.get(name).is_some() || self.not_ready_reason(name).is_some()
    }

    /// Marks a connection unusable, with the message users will see.
    pub fn mark_not_ready(&self, name: &str, message: String) {
        if let Ok(mut m) = self.live.write() {
            m.remove(name);
        }
        if let Ok(mut m) = self.not_ready.write() {
            m.insert(name.to_string(), message);
        }
    }

    /// Whether the connection is being deleted (its tokens are being revoked through it).
    pub fn is_deleting(&self, name: &str) -> bool {
        self.deleting.read().is_ok_and(|d| d.contains(name))
    }

    /// Marks a connection as being deleted (true) or gone/alive again (false).
    pub fn set_deleting(&self, name: &str, deleting: bool) {
        if let Ok(mut d) = self.deleting.write() {
            if deleting {
                d.insert(name.to_string());
            } else {
                d.remove(name);
            }
        }
    }

    /// Forgets a deleted connection.
    pub fn remove(&self, name: &str) {
        if let Ok(mut m) = self.live.write() {
            m.remove(name);
        }
        if let Ok(mut m) = self.not_ready.write() {
            m.remove(name);
        }
    }
}

/// Counts and times GitLab calls for one connection.
struct MetricsObserver {
    connection: String,
    metrics: Arc<Metrics>,
}

impl RequestObserver for MetricsObserver {
    fn on_request(&self, operation: &'static str, status: Option<u16>, duration: Duration) {
        let code = status.map_or_else(|| "error".to_string(), |s| s.to_string());
        let labels = GitLabRequestLabels {
            connection: self.connection.clone(),
            operation: operation.into(),
            code,
        };
        self.metrics.gitlab_requests.get_or_create(&labels).inc();
        let op = GitLabOperationLabels {
            connection: self.connection.clone(),
            operation: operation.into(),
        };
        self.metrics
            .gitlab_request_duration
            .get_or_create(&op)
            .observe(duration.as_secs_f64());
    }
}

/// How often a healthy connection is re-checked.
const RECHECK: Duration = Duration::from_secs(600);
/// How soon a failing connection is retried.
const RETRY: Duration = Duration::from_secs(30);

/// Reconciles one connection (never fails: every problem becomes `Ready=False`).
pub async fn reconcile(conn: Arc<GitLabConnection>, ctx: Arc<Context>) -> Result<Action, kube::Error> {
    let started = Instant::now();
    let name = conn.name_any();
    let now = ctx.now();
    let mut status = conn.status.clone().unwrap_or_default();
    let generation = conn.metadata.generation;
    let outcome = check(&conn, &ctx, &mut status).await;
    let file_event = match (&outcome, ctx.connections.get(&name)) {
        (Ok(_), Some(live)) => {
            super::reach::refresh(&live, ctx.now(), &mut status.reach).await;
            super::policy_file::refresh(&conn, &live, &ctx, &mut status.policy_file).await
        }
        _ => None,
    };
    let (ready, reason, message) = match &outcome {
        Ok(msg) => (true, "Connected", msg.clone()),
        Err(e) => {
            ctx.connections
                .mark_not_ready(&name, format!("{}: {}", e.reason, e.message));
            (false, e.reason, e.message.clone())
        }
    };
    set_condition(
        &mut status.conditions,
        condition("Ready", ready, reason, message.clone(), generation, now),
    );
    status.summary = crate::crd::summary(&status.conditions);
    status.observed_generation = generation;
    let api: Api<GitLabConnection> = Api::all(ctx.client.clone());
    if conn.status.as_ref() != Some(&status) {
        let params = PatchParams::apply(&format!("{FIELD_MANAGER}/connection")).force();
        let body =
            json!({"apiVersion": "gitlabtokens.io/v1alpha1", "kind": "GitLabConnection", "status": status});
        api.patch_status(&name, &params, &Patch::Apply(&body)).await?;
        let was = conn
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"));
        let was_ready = was.is_some_and(|c| c.status == crate::crd::ConditionStatus::True);
        log_state_change(
            &name,
            was.map(|c| (was_ready, c.reason.as_str())),
            ready,
            reason,
            &message,
        );
        if was_ready != ready || !ready {
            ctx.event(conn.as_ref(), !ready, reason, "Check", message).await;
        }
    }
    if let Some((reason, note)) = file_event {
        let warning = reason.severity() == crate::reason::Severity::Warning;
        ctx.event(conn.as_ref(), warning, reason.as_str(), "ReadPolicyFile", note)
            .await;
    }
    ctx.metrics.reconciled(
        "connection",
        if ready { "success" } else { reason },
        started.elapsed().as_secs_f64(),
    );
    let next = if ready && conn.spec.policy_file.is_some() {
        // The GitLab-kept policy file is read again within the re-check interval.
        RECHECK.min(ctx.config.access_recheck_interval)
    } else if ready {
        RECHECK
    } else {
        // Never before GitLab's Retry-After window closes: a check inside it would be refused.
        RETRY.max(ctx.connections.blocked_for(&name))
    };
    Ok(Action::requeue(next))
}

/// Logs (info, or warn when it stops working) a connection whose Ready state or reason changed;
/// a re-check with the same outcome is quiet.
fn log_state_change(name: &str, was: Option<(bool, &str)>, ready: bool, reason: &str, message: &str) {
    if was == Some((ready, reason)) {
        return;
    }
    match (ready, was) {
        (true, _) => tracing::info!(connection = name, "GitLabConnection is Ready: {message}"),
        (false, Some((true, _))) => {
            tracing::warn!(
                connection = name,
                reason,
                "GitLabConnection stopped working: {message}"
            )
        }
        (false, _) => tracing::info!(
            connection = name,
            reason,
            "GitLabConnection is not Ready: {message}"
        ),
    }
}

async fn check(
    conn: &GitLabConnection,
    ctx: &Context,
    status: &mut GitLabConnectionStatus,
) -> Result<String, NotReady> {
    let name = conn.name_any();
    let spec = &conn.spec;
    let creds = &spec.credentials.secret_ref;
    if creds.namespace != ctx.config.namespace {
        ctx.connections.remove(&name);
        return Err(not_ready(
            "CredentialsOutsideOperatorNamespace",
            format!(
                "credentials.secretRef must name a Secret in the operator's namespace {:?}, not {:?}",
                ctx.config.namespace, creds.namespace
            ),
        ));
    }
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &creds.namespace);
    let secret = match secrets.get_opt(&creds.name).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            ctx.connections.remove(&name);
            return Err(not_ready(
                "CredentialsNotFound",
                format!(
                    "Secret {}/{} does not exist; create it with the operator's GitLab token under key {:?}",
                    creds.namespace, creds.name, creds.key
                ),
            ));
        }
        Err(e) => {
            return Err(not_ready(
                "CredentialsUnreadable",
                format!("cannot read Secret {}/{}: {e}", creds.namespace, creds.name),
            ));
        }
    };
    let token = read_token(&secret, &creds.key).ok_or_else(|| {
        not_ready(
            "CredentialsNotFound",
            format!(
                "Secret {}/{} has no non-empty key {:?}",
                creds.namespace, creds.name, creds.key
            ),
        )
    })?;
    let key = format!(
        "{}/{}",
        conn.metadata.generation.unwrap_or_default(),
        secret.resource_version().unwrap_or_default()
    );
    let live = match ctx.connections.get(&name).filter(|c| c.cache_key == key) {
        Some(c) => c,
        None => Arc::new(build(&name, conn, token, key, &ctx.metrics, &ctx.connections)?),
    };

    if let Some(message) = recently_confirmed(&live, conn, ctx.now()) {
        // A second trigger right after a check (a Secret event racing the first reconcile at
        // start) does not ask GitLab again; the periodic re-check still does.
        return Ok(message);
    }
    let in_flight = secret.annotations().contains_key(SELF_ROTATION_ANNOTATION);
    let version = live
        .api
        .version()
        .await
        .map_err(|e| lost_or(&e, in_flight, &spec.url))?;
    let user = live
        .api
        .current_user()
        .await
        .map_err(|e| lost_or(&e, in_flight, &spec.url))?;
    let own = live
        .api
        .personal_access_token_self()
        .await
        .map_err(|e| lost_or(&e, in_flight, &spec.url))?;
    live.report_rate_limit(&ctx.metrics);
    if in_flight {
        // The stored token works, so whatever happened before, the Secret is good.
        clear_rotation_mark(&secrets, &creds.name)
            .await
            .map_err(|e| not_ready("CredentialsUnwritable", e.to_string()))?;
    }
    status.user = Some(GitLabUserRef {
        id: user.id,
        username: user.username.clone(),
    });
    status.scopes = own.scopes.clone();
    status.token_expires_at = own.expires_at;
    status.gitlab_version = Some(version.version.clone());
    let ssh_host = super::token::kinds::ssh_host_of(spec);
    if let Some(pin) =
        super::host_key_pin::refresh(conn, ssh_host.as_deref(), &mut status.ssh_host_keys, ctx.now()).await
    {
        let (reason, note) = pin.reason_and_note();
        let warning = reason.severity() == crate::reason::Severity::Warning;
        if warning {
            ctx.metrics.denied(reason.as_str());
        }
        ctx.event(conn, warning, reason.as_str(), "PinSSHHostKeys", note.to_string())
            .await;
    }
    let ready = LiveConnection {
        name: name.clone(),
        spec: spec.clone(),
        api: live.api.clone(),
        user: Some(user.clone()),
        ready: true,
        projects: live.projects.clone(),
        cache_key: live.cache_key.clone(),
        checked_at: Some(ctx.now()),
        ssh_host_key_pin: status.ssh_host_keys.clone(),
    };
    if !own.scopes.iter().any(|s| s == "api") {
        ctx.connections.remove(&name);
        return Err(not_ready(
            "MissingApiScope",
            format!(
                "the operator's token has scopes {:?}; it needs `api` to manage project access tokens",
                own.scopes
            ),
        ));
    }
    ctx.connections.put(Arc::new(ready));

    if let Some(rotation) = spec.credentials.self_rotation.as_ref().filter(|r| r.enabled)
        && let Some(expires) = own.expires_at
    {
        let lifetime = rotation.lifetime.map_or(90, |d| d.get());
        let renew_before = rotation.renew_before.map_or((lifetime / 3).max(1), |d| d.get());
        let today = ctx.now().date_naive();
        if self_rotation_due(today, expires, renew_before) {
            rotate_own_token(
                ctx,
                live.api.as_ref(),
                &live.spec.url,
                &secrets,
                creds,
                today,
                lifetime,
            )
            .await?;
            status.last_rotation_time = Some(ctx.now());
            return Ok(format!(
                "connected as {}; rotated the operator's token",
                user.username
            ));
        }
    }
    Ok(format!(
        "connected as {} to GitLab {}",
        user.username, version.version
    ))
}

/// How long a passed check stands for repeated triggers of the same configuration.
const CONFIRMED_FOR: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

/// The Ready message of a check of this same configuration that passed within
/// [`CONFIRMED_FOR`], if there is one.
fn recently_confirmed(
    live: &LiveConnection,
    conn: &GitLabConnection,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<String> {
    let checked_at = live.checked_at.filter(|_| live.ready)?;
    if conn.status.as_ref().and_then(|s| s.ssh_host_keys.as_ref()) != live.ssh_host_key_pin.as_ref() {
        // An admin cleared (or edited) the pinned host keys: check, and pin, again now.
        return None;
    }
    if now.signed_duration_since(checked_at) >= CONFIRMED_FOR || now < checked_at {
        return None;
    }
    let ready = conn
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")?;
    (ready.status == crate::crd::ConditionStatus::True
        && ready.observed_generation == conn.metadata.generation)
        .then(|| ready.message.clone())
}

fn read_token(secret: &Secret, key: &str) -> Option<SecretString> {
    let bytes = secret.data.as_ref()?.get(key)?;
    let text = std::str::from_utf8(&bytes.0).ok()?.trim();
    (!text.is_empty()).then(|| SecretString::from(text.to_string()))
}

/// A client for the connection, spending the connection's budget (kept across rebuilds in
/// `connections`) and sharing its project cache.
fn build(
    name: &str,
    conn: &GitLabConnection,
    token: SecretString,
    cache_key: String,
    metrics: &Arc<Metrics>,
    connections: &Connections,
) -> Result<LiveConnection, NotReady> {
    let mut config = ClientConfig::from_connection(&conn.spec, token);
    config.observer = Some(Arc::new(MetricsObserver {
        connection: name.to_string(),
        metrics: metrics.clone(),
    }));
    let shared = connections.shared(name, &config);
    config.budget = Some(shared.budget.clone());
    let api = Arc::new(GitLabClient::new(config).map_err(|e| not_ready("InvalidConnection", e.to_string()))?);
    Ok(LiveConnection {
        name: name.to_string(),
        spec: conn.spec.clone(),
        api,
        user: None,
        ready: false,
        projects: shared.projects.clone(),
        cache_key,
        checked_at: None,
        ssh_host_key_pin: None,
    })
}

#[cfg(test)]
#[path = "connection_budget_tests.rs"]
mod budget_tests;
