//! A stand-in for Flux's source-controller and image-reflector-controller (issue: test world,
//! part 2, §2). For every GitRepository, OCIRepository, HelmRepository and ImageRepository it
//! reconciles on `spec.interval`, on spec changes and whenever `reconcile.fluxcd.io/requestedAt`
//! changes; reads the referenced Secret live and exactly as Flux does ([`credentials`]); fetches
//! with the real protocol ([`fetch`]); and writes status as Flux does ([`status`]).
//!
//! Known simplifications: the stand-in lists refs (`git ls-remote`) instead of cloning, reads a
//! manifest or tag list instead of pulling layers. Failures carry the reasons and messages of
//! the real controllers (see [`SourceKind`]'s `failure`): a refused git fetch is
//! `GitOperationFailed` "… authentication required: …", a Secret that yields no credentials is
//! `AuthenticationFailed`. `ssh://` GitRepositories read `identity` and `known_hosts` and list
//! refs over real OpenSSH ([`ssh`]). It does not implement TLS client certificates, proxies,
//! cloud providers or verification.

pub mod credentials;
pub mod fetch;
pub mod ssh;
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
    api::{ApiResource, DynamicObject, Patch, PatchParams},
    runtime::{Controller, controller::Action, watcher},
};
use serde_json::{Value, json};
use tokio::{sync::watch, task::JoinHandle};

use credentials::Credentials;
use fetch::{FetchError, RegistryProbe};
use status::{DueInput, Outcome, REQUESTED_AT};

/// The Flux kinds the stand-in reconciles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceKind {
    /// `source.toolkit.fluxcd.io` GitRepository.
    GitRepository,
    /// `source.toolkit.fluxcd.io` OCIRepository.
    OciRepository,
    /// `source.toolkit.fluxcd.io` HelmRepository.
    HelmRepository,
    /// `image.toolkit.fluxcd.io` ImageRepository.
    ImageRepository,
}

impl SourceKind {
    /// Every kind.
    pub const ALL: [SourceKind; 4] = [
        Self::GitRepository,
        Self::OciRepository,
        Self::HelmRepository,
        Self::ImageRepository,
    ];

    /// Kubernetes kind name.
    pub fn kind(self) -> &'static str {
        match self {
            Self::GitRepository => "GitRepository",
            Self::OciRepository => "OCIRepository",
            Self::HelmRepository => "HelmRepository",
            Self::ImageRepository => "ImageRepository",
        }
    }

    /// API group.
    pub fn group(self) -> &'static str {
        match self {
            Self::ImageRepository => "image.toolkit.fluxcd.io",
            _ => "source.toolkit.fluxcd.io",
        }
    }

    /// How this kind's controller reports a failed fetch: reason and message, as in
    /// source-controller (`GitOperationFailed` "failed to checkout and determine revision: unable
    /// to clone '<url>': authentication required: …", HelmRepository `Failed` "failed to fetch
    /// Helm repository index: …", OCIRepository `OCIArtifactPullFailed` "failed to determine
    /// artifact digest: …") and image-reflector-controller (`ReadOperationFailed` "scan failed:
    /// …"). Credentials that cannot be built from the Secret are `AuthenticationFailed` everywhere.
    fn failure(self, url: &str, error: FetchError) -> Outcome {
        let (reason, message) = match (self, error) {
            (Self::GitRepository, FetchError::Config(m)) => (
                "AuthenticationFailed",
                format!("failed to configure authentication options: {m}"),
            ),
            (Self::ImageRepository, FetchError::Config(m)) => (
                "AuthenticationFailed",
                format!("failed to configure authentication options: {m}"),
            ),
            (_, FetchError::Config(m)) => ("AuthenticationFailed", m),
            (Self::GitRepository, e) => (
                "GitOperationFailed",
                format!("failed to checkout and determine revision: unable to clone '{url}': {e}"),
            ),
            (Self::HelmRepository, FetchError::Invalid(m)) => (
                "IndexationFailed",
                format!("failed to load Helm repository from index YAML: {m}"),
            ),
            (Self::HelmRepository, e) => (
                "Failed",
                format!(
                    "failed to fetch Helm repository index: failed to cache index to temporary file: {e}"
                ),
            ),
            (Self::OciRepository, e) => (
                "OCIArtifactPullFailed",
                format!("failed to determine artifact digest: {e}"),
            ),
            (Self::ImageRepository, e) => ("ReadOperationFailed", format!("scan failed: {e}")),
        };
        Outcome::Failed {
            reason: reason.into(),
            message,
        }
    }
}

/// Tunables of the stand-in.
#[derive(Debug, Clone)]
pub struct FluxConfig {
    /// Limit for one fetch.
    pub fetch_timeout: Duration,
    /// First retry delay after a failed fetch (doubles up to `max_retry`, never beyond the interval).
    pub min_retry: Duration,
    /// Longest retry delay.
    pub max_retry: Duration,
}

impl Default for FluxConfig {
    fn default() -> Self {
        Self {
            fetch_timeout: Duration::from_secs(15),
            min_retry: Duration::from_millis(750),
            max_retry: Duration::from_secs(30),
        }
    }
}

/// One fetch the stand-in made, for tests and the demo.
#[derive(Debug, Clone)]
pub struct FetchRecord {
    /// Kind of the source.
    pub kind: SourceKind,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// When it finished.
    pub at: DateTime<Utc>,
    /// The revision, or the reason and message of the failure.
    pub outcome: Outcome,
}

#[derive(Default)]
struct ObjectState {
    last_fetch: Option<Instant>,
    failures: u32,
}

struct KindContext {
    client: Client,
    kind: SourceKind,
    resource: ApiResource,
    http: reqwest::Client,
    config: FluxConfig,
    state: Mutex<HashMap<String, ObjectState>>,
    log: Arc<Mutex<Vec<FetchRecord>>>,
}

/// A running stand-in; stop it with [`FluxStandIn::stop`].
pub struct FluxStandIn {
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    log: Arc<Mutex<Vec<FetchRecord>>>,
}

/// Errors of the stand-in's own API calls (not of fetches, which end up in status).
#[derive(Debug, thiserror::Error)]
pub enum FluxError {
    /// The Kubernetes API refused or failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

impl FluxStandIn {
    /// Starts one controller per kind; a kind whose CRD is not served yet is waited for.
    pub fn start(client: Client, config: FluxConfig) -> Self {
        crate::init_crypto();
        let (shutdown, rx) = watch::channel(false);
        let log = Arc::new(Mutex::new(Vec::new()));
        let http = reqwest::Client::builder()
            .timeout(config.fetch_timeout)
            .redirect(reqwest::redirect::Policy::limited(5))
            .build()
            .unwrap_or_default();
        let tasks = SourceKind::ALL
            .into_iter()
            .map(|kind| {
                tokio::spawn(run_kind(
                    client.clone(),
                    kind,
                    http.clone(),
                    config.clone(),
                    log.clone(),
                    rx.clone(),
                ))
            })
            .collect();
        Self { shutdown, tasks, log }
    }

    /// Every fetch so far, oldest first.
    pub fn fetches(&self) -> Vec<FetchRecord> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Stops every controller and waits for them.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

async fn served_resource(client: &Client, kind: SourceKind) -> Option<ApiResource> {
    let discovery = Discovery::new(client.clone())
        .filter(&[kind.group()])
        .run()
        .await
        .ok()?;
    let group = discovery.get(kind.group())?;
    ["v1", "v1beta2"].iter().find_map(|v| {
        group
            .versioned_resources(v)
            .into_iter()
            .find(|(ar, _)| ar.kind == kind.kind())
            .map(|(ar, _)| ar)
    })
}

async fn run_kind(
    client: Client,
    kind: SourceKind,
    http: reqwest::Client,
    config: FluxConfig,
    log: Arc<Mutex<Vec<FetchRecord>>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let resource = loop {
        if let Some(ar) = served_resource(&client, kind).await {
            break ar;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(300)) => {}
            _ = shutdown.changed() => return,
        }
    };
    let api = Api::<DynamicObject>::all_with(client.clone(), &resource);
    let ctx = Arc::new(KindContext {
        client,
        kind,
        resource: resource.clone(),
        http,
        config,
        state: Mutex::new(HashMap::new()),
        log,
    });
    let mut stop = shutdown.clone();
    Controller::new_with(api, watcher::Config::default(), resource)
        .graceful_shutdown_on(async move {
            let _ = stop.wait_for(|v| *v).await;
        })
        .run(
            reconcile,
            |obj, error, _| {
                tracing::warn!(name = %obj.name_any(), %error, "flux stand-in reconcile failed");
                Action::requeue(Duration::from_secs(2))
            },
            ctx,
        )
        .for_each(|_| async {})
        .await;
}

async fn reconcile(obj: Arc<DynamicObject>, ctx: Arc<KindContext>) -> Result<Action, FluxError> {
    let spec = obj.data.get("spec").cloned().unwrap_or_default();
    if obj.metadata.deletion_timestamp.is_some() || spec["suspend"] == json!(true) {
        return Ok(Action::await_change());
    }
    let uid = obj.uid().unwrap_or_default();
    let interval = spec["interval"]
        .as_str()
        .and_then(status::parse_go_duration)
        .unwrap_or(Duration::from_secs(60));
    let old_status = obj.data.get("status").cloned().unwrap_or_default();
    let requested_at = obj.annotations().get(REQUESTED_AT).cloned();
    let (since, failures) = {
        let states = ctx.state.lock().unwrap_or_else(|p| p.into_inner());
        states
            .get(&uid)
            .map(|s| (s.last_fetch.map(|t| t.elapsed()), s.failures))
            .unwrap_or((None, 0))
    };
    let next_after = retry_delay(&ctx.config, failures, interval);
    let due = DueInput {
        generation: obj.metadata.generation,
        observed_generation: old_status["observedGeneration"].as_i64(),
        requested_at: requested_at.as_deref(),
        last_handled: old_status["lastHandledReconcileAt"].as_str(),
        since_last_fetch: since,
        next_after,
    };
    if let Some(wait) = status::wait_before_fetch(&due) {
        return Ok(Action::requeue(wait));
    }

    let namespace = obj.namespace().unwrap_or_default();
    let outcome = fetch_source(&ctx, &namespace, &spec).await;
    let failed = matches!(outcome, Outcome::Failed { .. });
    if let Ok(mut states) = ctx.state.lock() {
        let s = states.entry(uid).or_default();
        s.last_fetch = Some(Instant::now());
        s.failures = if failed { failures + 1 } else { 0 };
    }
    if let Ok(mut log) = ctx.log.lock() {
        log.push(FetchRecord {
            kind: ctx.kind,
            namespace: namespace.clone(),
            name: obj.name_any(),
            at: Utc::now(),
            outcome: outcome.clone(),
        });
    }
    let artifact_path = format!(
        "{}/{namespace}/{}",
        ctx.kind.kind().to_lowercase(),
        obj.name_any()
    );
    let new_status = status::next_status(
        &old_status,
        obj.metadata.generation,
        requested_at.as_deref(),
        &outcome,
        &artifact_path,
        Utc::now(),
    );
    if new_status != old_status {
        let api = Api::<DynamicObject>::namespaced_with(ctx.client.clone(), &namespace, &ctx.resource);
        api.patch_status(
            &obj.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({"status": new_status})),
        )
        .await?;
    }
    let after = if failed {
        retry_delay(&ctx.config, failures + 1, interval)
    } else {
        interval
    };
    Ok(Action::requeue(after))
}

fn retry_delay(config: &FluxConfig, failures: u32, interval: Duration) -> Duration {
    if failures == 0 {
        return interval;
    }
    let exp = config
        .min_retry
        .saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    exp.min(config.max_retry).min(interval)
}

async fn read_secret(
    ctx: &KindContext,
    namespace: &str,
    spec: &Value,
) -> Result<Option<(String, Secret)>, Outcome> {
    let Some(name) = spec.pointer("/secretRef/name").and_then(Value::as_str) else {
        return Ok(None);
    };
    let api = Api::<Secret>::namespaced(ctx.client.clone(), namespace);
    match api.get_opt(name).await {
        Ok(Some(s)) => Ok(Some((name.to_string(), s))),
        Ok(None) => Err(auth_failed(format!(
            "failed to get secret '{namespace}/{name}': secrets \"{name}\" not found"
        ))),
        Err(e) => Err(auth_failed(format!(
            "failed to get secret '{namespace}/{name}': {e}"
        ))),
    }
}

fn auth_failed(message: String) -> Outcome {
    Outcome::Failed {
        reason: "AuthenticationFailed".into(),
        message,
    }
}

async fn fetch_source(ctx: &KindContext, namespace: &str, spec: &Value) -> Outcome {
    let secret = match read_secret(ctx, namespace, spec).await {
        Ok(s) => s,
        Err(outcome) => return outcome,
    };
    let result = match ctx.kind {
        SourceKind::GitRepository => fetch_git(ctx, spec, secret.as_ref()).await,
        SourceKind::HelmRepository if spec["type"] == json!("oci") => {
            fetch_helm_oci(ctx, spec, secret.as_ref()).await
        }
        SourceKind::HelmRepository => fetch_helm(ctx, spec, secret.as_ref()).await,
        SourceKind::OciRepository => fetch_oci(ctx, spec, secret.as_ref()).await,
        SourceKind::ImageRepository => fetch_image(ctx, spec, secret.as_ref()).await,
    };
    match result {
        Ok(revision) => Outcome::Ready(revision),
        Err(e) => ctx.kind.failure(spec["url"].as_str().unwrap_or_default(), e),
    }
}

type NamedSecret = (String, Secret);

async fn fetch_git(
    ctx: &KindContext,
    spec: &Value,
    secret: Option<&NamedSecret>,
) -> Result<String, FetchError> {
    let url = spec["url"].as_str().unwrap_or_default();
    if url.starts_with("ssh://") {
        // `failure` adds source-controller's "failed to configure authentication options: ".
        let auth = ssh::ssh_auth(secret.map(|(_, s)| s)).map_err(FetchError::Config)?;
        return ssh::ls_remote(url, &auth, ctx.config.fetch_timeout).await;
    }
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(FetchError::Other(format!(
            "the stand-in only fetches http(s) URLs, not '{url}'"
        )));
    }
    let creds = match secret {
        Some((_, s)) => credentials::git_credentials(s).map_err(FetchError::Config)?,
        None => Credentials::Anonymous,
    };
    fetch::git_ls_remote(url, &creds, ctx.config.fetch_timeout).await
}

async fn fetch_helm(
    ctx: &KindContext,
    spec: &Value,
    secret: Option<&NamedSecret>,
) -> Result<String, FetchError> {
    let url = spec["url"].as_str().unwrap_or_default();
    if url.starts_with("oci://") {
        return Err(FetchError::Other(
            "'oci' URL scheme cannot be used with 'default' HelmRepository type".into(),
        ));
    }
    let creds = match secret {
        Some((_, s)) => credentials::helm_http_credentials(s)
            .map_err(|e| FetchError::Config(format!("failed to detect authentication methods: {e}")))?,
        None => Credentials::Anonymous,
    };
    fetch::helm_index(&ctx.http, url, &creds).await
}

fn split_registry(reference: &str) -> Option<(String, String)> {
    let (host, path) = reference.split_once('/')?;
    Some((host.to_string(), path.trim_matches('/').to_string()))
}

fn registry_base(spec: &Value, host: &str) -> String {
    let scheme = if spec["insecure"] == json!(true) {
        "http"
    } else {
        "https"
    };
    format!("{scheme}://{host}")
}

/// `spec.url` of an OCI source (`oci://<host>/<path>`) as host and repository path.
fn oci_reference(spec: &Value) -> Result<(String, String), FetchError> {
    let url = spec["url"].as_str().unwrap_or_default();
    url.strip_prefix("oci://")
        .and_then(split_registry)
        .ok_or_else(|| {
            FetchError::Other(format!(
                "URL must be in format 'oci://<domain>/<path>', got '{url}'"
            ))
        })
}

async fn fetch_oci(
    ctx: &KindContext,
    spec: &Value,
    secret: Option<&NamedSecret>,
) -> Result<String, FetchError> {
    let (host, repo) = oci_reference(spec)?;
    let creds = secret
        .map(|(_, s)| credentials::registry_credentials(s, &host, &repo))
        .unwrap_or(Credentials::Anonymous);
    let tag = spec
        .pointer("/ref/tag")
        .and_then(Value::as_str)
        .unwrap_or("latest")
        .to_string();
    fetch::registry_fetch(
        &ctx.http,
        &registry_base(spec, &host),
        &repo,
        &RegistryProbe::Manifest(tag),
        &creds,
    )
    .await
}

async fn fetch_image(
    ctx: &KindContext,
    spec: &Value,
    secret: Option<&NamedSecret>,
) -> Result<String, FetchError> {
    let image = spec["image"].as_str().unwrap_or_default();
    let (host, repo) =
        split_registry(image).ok_or_else(|| FetchError::Other(format!("invalid image '{image}'")))?;
    let creds = secret
        .map(|(_, s)| credentials::registry_credentials(s, &host, &repo))
        .unwrap_or(Credentials::Anonymous);
    fetch::registry_fetch(
        &ctx.http,
        &registry_base(spec, &host),
        &repo,
        &RegistryProbe::Tags,
        &creds,
    )
    .await
}

async fn fetch_helm_oci(
    ctx: &KindContext,
    spec: &Value,
    secret: Option<&NamedSecret>,
) -> Result<String, FetchError> {
    let (host, repo) = oci_reference(spec)?;
    let creds = match secret {
        Some((name, s)) => credentials::helm_oci_credentials(s, name, &host).map_err(FetchError::Config)?,
        None => Credentials::Anonymous,
    };
    // What HelmChart would do first: authenticate for the repository. A repository path that is
    // a namespace of charts answers 404 once authenticated, which still proves the credentials.
    match fetch::registry_fetch(
        &ctx.http,
        &registry_base(spec, &host),
        &repo,
        &RegistryProbe::Tags,
        &creds,
    )
    .await
    {
        Ok(r) => Ok(r),
        Err(FetchError::NotFound(_)) => Ok("authenticated".into()),
        Err(e) => Err(e),
    }
}
