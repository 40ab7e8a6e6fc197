//! A stand-in for Argo CD's application-controller and repo-server (issue 13, item 4). For every
//! `Application` in Argo CD's namespace (and in the namespaces it is configured to watch) it
//! refreshes on `timeout.reconciliation`, when its sources change and when the
//! `argocd.argoproj.io/refresh` annotation is set (and removes it); checks the `AppProject`
//! (existence, `sourceNamespaces`, `sourceRepos` plus project-scoped repositories); reads the
//! `repository` and `repo-creds` Secrets of Argo CD's namespace live on each refresh and picks
//! credentials exactly as `db.GetRepository` does ([`repos`]); resolves each source's revision
//! with the real protocols ([`fetch`]); and writes `status` as the controller does ([`status`]).
//!
//! Git sources are handled as the repo-server does: refs listed over smart HTTP as go-git does
//! (every refresh), then the commit fetched with the real git client into a local clone kept per
//! repository ([`checkout`]) when it is not there yet, and the source type discovered from the
//! files at `path`.
//!
//! Known simplifications: no manifests are rendered and nothing is deployed (a resolved
//! Application has no resources, so it is `Synced`/`Healthy`); no Redis revision, manifest or
//! Helm index caches (every refresh lists refs, as a hard refresh does); no destination or
//! cluster checks, sync operations, hooks, finalizers or Kubernetes Events; git only over
//! http(s) (no SSH); Helm over OCI resolves only exact versions; refresh interval without jitter;
//! AppProject changes are seen on the next refresh of each Application.

pub mod checkout;
pub mod fetch;
pub mod project;
pub mod repos;
pub mod status;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, Client, Discovery, ResourceExt,
    api::{ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams},
    runtime::{Controller, controller::Action, watcher},
};
use serde_json::{Value, json};
use tokio::{sync::watch, task::JoinHandle};

use repos::{SECRET_TYPE_LABEL, TYPE_REPO_CREDS, TYPE_REPOSITORY};
use status::{Comparison, Condition, REFRESH_ANNOTATION, Refresh};

/// Argo CD's API group.
pub const GROUP: &str = "argoproj.io";
/// The served version of its CRDs.
pub const VERSION: &str = "v1alpha1";

/// Tunables of the stand-in (Argo CD's names in brackets).
#[derive(Debug, Clone)]
pub struct ArgoCdConfig {
    /// Argo CD's control-plane namespace: Secrets and AppProjects are read only there.
    pub namespace: String,
    /// Other namespaces whose Applications are reconciled (`application.namespaces`; shell
    /// globs). Applications elsewhere are ignored, as Argo CD ignores them.
    pub application_namespaces: Vec<String>,
    /// Periodic refresh (`timeout.reconciliation`, default 120 s; no jitter).
    pub refresh_interval: Duration,
    /// A repository error seen on a periodic refresh is written only after it has lasted this
    /// long (`--repo-error-grace-period-seconds`, default 180 s); the first occurrence is
    /// always dropped. Requested refreshes and changed sources bypass it.
    pub repo_error_grace_period: Duration,
    /// Limit for one request to a remote.
    pub fetch_timeout: Duration,
    /// Create the `default` AppProject when missing, as argocd-server does at start.
    pub create_default_project: bool,
}

impl Default for ArgoCdConfig {
    fn default() -> Self {
        Self {
            namespace: "argocd".into(),
            application_namespaces: Vec::new(),
            refresh_interval: Duration::from_secs(120),
            repo_error_grace_period: Duration::from_secs(180),
            fetch_timeout: Duration::from_secs(15),
            create_default_project: true,
        }
    }
}

/// One refresh the stand-in made, for tests and the demo.
#[derive(Debug, Clone)]
pub struct RefreshRecord {
    /// Application namespace.
    pub namespace: String,
    /// Application name.
    pub name: String,
    /// When it finished.
    pub at: DateTime<Utc>,
    /// Why it ran.
    pub refresh: Refresh,
    /// The revisions, or the message written (or withheld during the grace period).
    pub outcome: Result<Vec<String>, String>,
    /// Whether the status was written (false when a repository error was withheld).
    pub written: bool,
}

struct Context {
    client: Client,
    config: ArgoCdConfig,
    applications: ApiResource,
    projects: ApiResource,
    http: reqwest::Client,
    checkouts: checkout::Checkouts,
    first_repo_error: Mutex<HashMap<String, Instant>>,
    log: Arc<Mutex<Vec<RefreshRecord>>>,
}

/// A running stand-in; stop it with [`ArgoCdStandIn::stop`].
pub struct ArgoCdStandIn {
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
    log: Arc<Mutex<Vec<RefreshRecord>>>,
}

/// Errors of the stand-in's own API calls (not of fetches, which end up in status).
#[derive(Debug, thiserror::Error)]
pub enum ArgoCdError {
    /// The Kubernetes API refused or failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

impl ArgoCdStandIn {
    /// Starts the controller; it waits until the Application and AppProject CRDs are served.
    pub fn start(client: Client, config: ArgoCdConfig) -> Self {
        crate::init_crypto();
        let (shutdown, rx) = watch::channel(false);
        let log = Arc::new(Mutex::new(Vec::new()));
        let http = reqwest::Client::builder()
            .timeout(config.fetch_timeout)
            .redirect(reqwest::redirect::Policy::limited(10))
            .build()
            .unwrap_or_default();
        let task = tokio::spawn(run(client, config, http, log.clone(), rx));
        Self { shutdown, task, log }
    }

    /// Every refresh so far, oldest first.
    pub fn refreshes(&self) -> Vec<RefreshRecord> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Stops the controller and waits for it.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

async fn served(client: &Client) -> Option<(ApiResource, ApiResource)> {
    let discovery = Discovery::new(client.clone()).filter(&[GROUP]).run().await.ok()?;
    let group = discovery.get(GROUP)?;
    let find = |kind: &str| {
        group
            .versioned_resources(VERSION)
            .into_iter()
            .find(|(ar, _)| ar.kind == kind)
            .map(|(ar, _)| ar)
    };
    Some((find("Application")?, find("AppProject")?))
}

async fn run(
    client: Client,
    config: ArgoCdConfig,
    http: reqwest::Client,
    log: Arc<Mutex<Vec<RefreshRecord>>>,
    mut shutdown: watch::Receiver<bool>,
) {
    // Most worlds never install Argo CD's CRDs: poll discovery with a backoff up to 4 s.
    let mut pause = Duration::from_millis(250);
    let (applications, projects) = loop {
        if let Some(found) = served(&client).await {
            break found;
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.changed() => return,
        }
        pause = (pause * 2).min(Duration::from_secs(4));
    };
    let checkouts = match checkout::Checkouts::new(config.fetch_timeout) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(%e, "argocd stand-in cannot create its checkout directory");
            return;
        }
    };
    let api = Api::<DynamicObject>::all_with(client.clone(), &applications);
    let ctx = Arc::new(Context {
        checkouts,
        client,
        config,
        applications: applications.clone(),
        projects,
        http,
        first_repo_error: Mutex::new(HashMap::new()),
        log,
    });
    let mut stop = shutdown.clone();
    Controller::new_with(api, watcher::Config::default(), applications)
        .graceful_shutdown_on(async move {
            let _ = stop.wait_for(|v| *v).await;
        })
        .run(
            reconcile,
            |obj, error, _| {
                tracing::warn!(name = %obj.name_any(), %error, "argocd stand-in reconcile failed");
                Action::requeue(Duration::from_secs(1))
            },
            ctx,
        )
        .for_each(|_| async {})
        .await;
}

fn watched(config: &ArgoCdConfig, namespace: &str) -> bool {
    namespace == config.namespace
        || config
            .application_namespaces
            .iter()
            .any(|p| project::glob_match(p, namespace, None))
}

async fn list_secrets(ctx: &Context, type_: &str) -> Result<Vec<Secret>, kube::Error> {
    let api = Api::<Secret>::namespaced(ctx.client.clone(), &ctx.config.namespace);
    let mut list = api
        .list(&ListParams::default().labels(&format!("{SECRET_TYPE_LABEL}={type_}")))
        .await?
        .items;
    list.sort_by_key(|s| s.name_any());
    Ok(list)
}

async fn get_project(ctx: &Context, name: &str) -> Result<Option<Value>, kube::Error> {
    let api = Api::<DynamicObject>::namespaced_with(ctx.client.clone(), &ctx.config.namespace, &ctx.projects);
    if name == "default" && ctx.config.create_default_project {
        ensure_default_project(&api).await?;
    }
    Ok(api
        .get_opt(name)
        .await?
        .map(|p| serde_json::to_value(p).unwrap_or_default()))
}

/// argocd-server's `initializeDefaultProject`: everything allowed.
async fn ensure_default_project(api: &Api<DynamicObject>) -> Result<(), kube::Error> {
    if api.get_opt("default").await?.is_some() {
        return Ok(());
    }
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": format!("{GROUP}/{VERSION}"), "kind": "AppProject",
        "metadata": {"name": "default"},
        "spec": {"sourceRepos": ["*"], "destinations": [{"server": "*", "namespace": "*"}],
                 "clusterResourceWhitelist": [{"group": "*", "kind": "*"}]}
    }))
    .map_err(kube::Error::SerdeError)?;
    match api.create(&PostParams::default(), &obj).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

async fn reconcile(app: Arc<DynamicObject>, ctx: Arc<Context>) -> Result<Action, ArgoCdError> {
    let namespace = app.namespace().unwrap_or_default();
    if !watched(&ctx.config, &namespace) || app.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let spec = app.data.get("spec").cloned().unwrap_or_default();
    let old_status = app.data.get("status").cloned().unwrap_or_else(|| json!({}));
    let refresh = match status::need_refresh(
        app.annotations(),
        &spec,
        &old_status,
        Utc::now(),
        ctx.config.refresh_interval,
    ) {
        Ok(r) => r,
        Err(wait) => return Ok(Action::requeue(wait)),
    };
    let name = app.name_any();
    let key = format!("{namespace}/{name}");
    let project_name = match spec["project"].as_str() {
        Some(p) if !p.is_empty() => p.to_string(),
        _ => "default".to_string(),
    };
    let repositories = list_secrets(&ctx, TYPE_REPOSITORY).await?;
    let templates = list_secrets(&ctx, TYPE_REPO_CREDS).await?;
    let project = get_project(&ctx, &project_name).await?;
    let (sources, _) = status::sources(&spec);
    let problems = project::check_project(
        project.as_ref(),
        &repos::project_repository_urls(&repositories, &project_name),
        &name,
        &namespace,
        &project_name,
        &ctx.config.namespace,
        &spec,
    );
    let now = Utc::now();
    let (new_status, outcome, written) = if !problems.is_empty() {
        let conditions: Vec<Condition> = problems
            .iter()
            .map(|p| Condition {
                type_: p.type_.into(),
                message: p.message.clone(),
            })
            .collect();
        let message = problems
            .iter()
            .map(|p| p.message.clone())
            .collect::<Vec<_>>()
            .join("; ");
        (
            status::project_error_status(&old_status, &conditions, now),
            Err(message),
            true,
        )
    } else {
        let comparison = compare(&ctx, &sources, &repositories, &templates, &project_name).await;
        let write = match &comparison {
            Comparison::Resolved(_) => {
                lock(&ctx.first_repo_error).remove(&key);
                true
            }
            Comparison::Failed(_) => withhold_decision(&ctx, &key, refresh),
        };
        let outcome = match &comparison {
            Comparison::Resolved(list) => Ok(list.iter().map(|(r, _)| r.clone()).collect()),
            Comparison::Failed(m) => Err(format!("Failed to load target state: {m}")),
        };
        (
            status::compared_status(&old_status, &spec, &ctx.config.namespace, &comparison, now),
            outcome,
            write,
        )
    };
    // Recorded before the status is written: whoever sees the status also sees the record.
    lock(&ctx.log).push(RefreshRecord {
        namespace,
        name,
        at: now,
        refresh,
        outcome,
        written,
    });
    if written {
        persist(&ctx, &app, &old_status, &new_status).await?;
    }
    Ok(Action::requeue(if ctx.config.refresh_interval.is_zero() {
        Duration::from_secs(3600)
    } else {
        ctx.config.refresh_interval
    }))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// `CompareAppState`'s repo-error grace period: true when the error is to be written.
fn withhold_decision(ctx: &Context, key: &str, refresh: Refresh) -> bool {
    if refresh.force_resolve() {
        return true;
    }
    let mut first = lock(&ctx.first_repo_error);
    match first.get(key) {
        Some(seen) => seen.elapsed() > ctx.config.repo_error_grace_period,
        None => {
            first.insert(key.to_string(), Instant::now());
            false
        }
    }
}

/// `GetRepoObjs`: per source, `GetRepository` then the repo-server's revision resolution.
async fn compare(
    ctx: &Context,
    sources: &[Value],
    repositories: &[Secret],
    templates: &[Secret],
    project: &str,
) -> Comparison {
    let n = sources.len();
    let mut resolved = Vec::new();
    for (i, source) in sources.iter().enumerate() {
        let url = source["repoURL"].as_str().unwrap_or_default();
        let repo = match repos::get_repository(repositories, templates, url, project) {
            Ok(r) => r,
            Err(e) => return Comparison::Failed(format!("failed to get repo {url:?}: {e}")),
        };
        match resolve_source(ctx, source, &repo).await {
            Ok(r) => resolved.push(r),
            Err(e) => {
                return Comparison::Failed(format!(
                    "failed to generate manifest for source {} of {n}: {e}",
                    i + 1
                ));
            }
        }
    }
    Comparison::Resolved(resolved)
}

fn explicit_type(source: &Value) -> Option<&'static str> {
    [
        ("helm", "Helm"),
        ("kustomize", "Kustomize"),
        ("directory", "Directory"),
        ("plugin", "Plugin"),
    ]
    .into_iter()
    .find(|(k, _)| source.get(*k).is_some_and(|v| !v.is_null()))
    .map(|(_, t)| t)
}

/// The repo-server's `GenerateManifest` up to manifest rendering; errors in gRPC form.
async fn resolve_source(
    ctx: &Context,
    source: &Value,
    repo: &repos::Repository,
) -> Result<(String, String), String> {
    let unknown = |m: String| format!("rpc error: code = Unknown desc = {m}");
    let revision = source["targetRevision"].as_str().unwrap_or_default();
    let url = source["repoURL"].as_str().unwrap_or_default();
    if let Some(chart) = source["chart"].as_str().filter(|c| !c.is_empty()) {
        let oci = repo.enable_oci || url.starts_with("oci://") || !url.contains("://");
        let version = if oci {
            fetch::helm_oci_resolve(&ctx.http, repo, chart, revision).await
        } else {
            fetch::helm_resolve(&ctx.http, repo, chart, revision).await
        };
        return Ok((version.map_err(unknown)?, "Helm".into()));
    }
    let explicit = explicit_type(source);
    if url.starts_with("oci://") || repo.type_ == "oci" {
        let digest = fetch::oci_resolve(&ctx.http, repo, revision)
            .await
            .map_err(unknown)?;
        return Ok((digest, explicit.unwrap_or("Directory").into()));
    }
    let sha = fetch::git_resolve(&ctx.http, repo, revision)
        .await
        .map_err(unknown)?;
    let path = source["path"].as_str().unwrap_or_default();
    // A ref-only source of a multi-source Application generates nothing: no checkout.
    if source.get("ref").is_some_and(|r| r.is_string()) && path.is_empty() {
        return Ok((sha, String::new()));
    }
    let discovered = ctx.checkouts.checkout(repo, &sha, path).await?;
    Ok((sha, explicit.map(str::to_string).unwrap_or(discovered)))
}

/// `persistReconciliationStatus`: one merge patch of status and annotations, the refresh
/// annotation removed (the Application CRD has no status subresource).
async fn persist(ctx: &Context, app: &DynamicObject, old: &Value, new: &Value) -> Result<(), kube::Error> {
    let mut patch = json!({});
    if let Some(d) = status::merge_diff(old, new) {
        patch["status"] = d;
    }
    if app.annotations().contains_key(REFRESH_ANNOTATION) {
        patch["metadata"] = json!({"annotations": {REFRESH_ANNOTATION: null}});
    }
    if patch.as_object().is_some_and(|m| m.is_empty()) {
        return Ok(());
    }
    let api = Api::<DynamicObject>::namespaced_with(
        ctx.client.clone(),
        &app.namespace().unwrap_or_default(),
        &ctx.applications,
    );
    api.patch(&app.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}
