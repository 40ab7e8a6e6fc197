//! The shim (DESIGN §3): annotated Flux sources become `GitLabToken`s. It reconciles per
//! namespace, because sources in one namespace that name the same Secret share one token:
//! infer each source's needs ([`crate::shim`]), resolve registry paths to their project, group
//! by Secret, server-side apply one `GitLabToken` per Secret owned by the sources it serves,
//! point sources without `spec.secretRef` at their Secret, and delete tokens no source needs.
//! Refusals become a Warning event on the source and a metric; the token controller reports
//! policy verdicts on the `GitLabToken` it creates.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use futures::StreamExt;
use k8s_openapi::{api::core::v1::Namespace, apimachinery::pkg::apis::meta::v1::OwnerReference};
use kube::{
    Api, Client, Discovery, ResourceExt,
    api::{ApiResource, DeleteParams, DynamicObject, ListParams, ObjectMeta, Patch, PatchParams},
    runtime::{
        WatchStreamExt,
        controller::Action,
        events::{Event, EventType},
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{
    context::Context,
    token::observe::{choose_connection, namespace_info},
};
use crate::{
    crd::{FIELD_MANAGER, GitLabConnection, GitLabToken},
    gitlab::{GitLabApi, GitLabError},
    policy::PolicySet,
    reason::Reason,
    shim::{
        ConnectionFacts, ProjectHint, Refusal, SourceNeed, annotations, infer::infer_source, spec_for_sources,
    },
};

/// Label on every `GitLabToken` the shim manages.
pub const SHIM_LABEL: &str = "gitlabtokens.io/shim";

/// The Flux kinds the shim serves, with the API versions it prefers (first served wins).
pub const FLUX_KINDS: [(&str, &str, &str, &[&str]); 5] = [
    (
        "source.toolkit.fluxcd.io",
        "GitRepository",
        "gitrepositories",
        &["v1", "v1beta2"],
    ),
    (
        "source.toolkit.fluxcd.io",
        "OCIRepository",
        "ocirepositories",
        &["v1", "v1beta2"],
    ),
    (
        "source.toolkit.fluxcd.io",
        "HelmRepository",
        "helmrepositories",
        &["v1", "v1beta2"],
    ),
    (
        "image.toolkit.fluxcd.io",
        "ImageRepository",
        "imagerepositories",
        &["v1", "v1beta2"],
    ),
    (
        "notification.toolkit.fluxcd.io",
        "Provider",
        "providers",
        &["v1beta3", "v1beta2"],
    ),
];

/// What the shim keeps between reconciles.
#[derive(Default)]
pub struct ShimState {
    kinds: RwLock<Vec<(ApiResource, Store<DynamicObject>)>>,
    projects: Mutex<HashMap<(String, String), String>>,
    reported: Mutex<HashMap<String, String>>,
    /// Flux kinds whose first discovery found them not served, or whose store has listed.
    concluded_kinds: AtomicUsize,
    /// Set once the shim's view was complete (see [`view_complete`]).
    complete: AtomicBool,
}

/// Why a shim reconcile failed (retried).
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    /// The Kubernetes API failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// GitLab failed while resolving a registry path.
    #[error("GitLab: {0}")]
    GitLab(#[from] GitLabError),
}

/// Shared by shim reconciles.
pub struct ShimContext {
    /// The operator context.
    pub ctx: Arc<Context>,
    /// The shim's state.
    pub state: Arc<ShimState>,
}

/// Watches every Flux kind once it is served, and wakes the namespace of every change.
pub fn spawn_kind_watchers(
    client: Client,
    state: Arc<ShimState>,
    wake: mpsc::UnboundedSender<ObjectRef<Namespace>>,
) {
    for (group, kind, plural, versions) in FLUX_KINDS {
        let (client, state, wake) = (client.clone(), state.clone(), wake.clone());
        tokio::spawn(async move {
            let mut concluded = false;
            let resource = loop {
                match served(&client, group, kind, plural, versions).await {
                    Ok(Some(ar)) => break ar,
                    Ok(None) => {
                        if !concluded {
                            concluded = true;
                            state.concluded_kinds.fetch_add(1, Ordering::SeqCst);
                        }
                        // The CRD is not installed (yet): look again later; the shim works without it.
                        tokio::time::sleep(Duration::from_secs(20)).await;
                    }
                    Err(e) => {
                        tracing::debug!(kind, error = %e, "discovery failed; retrying");
                        tokio::time::sleep(Duration::from_secs(2)).await;
                    }
                }
            };
            tracing::info!(kind, version = %resource.version, "serving annotated sources of this kind");
            let writer = reflector::store::Writer::<DynamicObject>::new(resource.clone());
            let reader = writer.as_reader();
            if let Ok(mut kinds) = state.kinds.write() {
                kinds.push((resource.clone(), reader));
            }
            let api = Api::<DynamicObject>::all_with(client, &resource);
            watcher(api, watcher::Config::default())
                .default_backoff()
                .reflect(writer)
                .for_each(|event| {
                    if let Ok(watcher::Event::InitDone) = &event
                        && !concluded
                    {
                        concluded = true;
                        state.concluded_kinds.fetch_add(1, Ordering::SeqCst);
                    }
                    if let Ok(event) = event {
                        let objects: Vec<&DynamicObject> = match &event {
                            watcher::Event::Apply(o)
                            | watcher::Event::Delete(o)
                            | watcher::Event::InitApply(o) => vec![o],
                            _ => Vec::new(),
                        };
                        for o in objects {
                            if let Some(ns) = o.namespace() {
                                let _ = wake.send(ObjectRef::new(&ns));
                            }
                        }
                    }
                    futures::future::ready(())
                })
                .await;
        });
    }
}

/// The served version of a Flux kind; `Ok(None)` when the API server does not serve it.
async fn served(
    client: &Client,
    group: &str,
    kind: &str,
    plural: &str,
    versions: &[&str],
) -> Result<Option<ApiResource>, kube::Error> {
    let discovery = Discovery::new(client.clone()).filter(&[group]).run().await?;
    let Some(g) = discovery.get(group) else {
        return Ok(None);
    };
    Ok(versions.iter().find_map(|v| {
        g.versioned_resources(v)
            .into_iter()
            .find(|(ar, _)| ar.kind == kind && ar.plural == plural)
            .map(|(ar, _)| ar)
    }))
}

/// Whether the shim sees everything its decisions depend on: every Flux kind discovered (and
/// listed when served), the policies listed, and every GitLabConnection checked once. Before
/// that, a source would look absent or refused and its token would be deleted — which is what
/// every restart or leader failover did, re-minting every token.
async fn view_complete(sc: &ShimContext) -> Result<bool, ShimError> {
    if sc.state.complete.load(Ordering::SeqCst) {
        return Ok(true);
    }
    if sc.state.concluded_kinds.load(Ordering::SeqCst) < FLUX_KINDS.len() {
        return Ok(false);
    }
    let policies_listed = tokio::time::timeout(Duration::from_millis(50), sc.ctx.policies.wait_until_ready())
        .await
        .is_ok_and(|r| r.is_ok());
    if !policies_listed {
        return Ok(false);
    }
    let connections = Api::<GitLabConnection>::all(sc.ctx.client.clone())
        .list_metadata(&ListParams::default())
        .await?;
    if !connections
        .items
        .iter()
        .all(|c| sc.ctx.connections.checked(&c.name_any()))
    {
        return Ok(false);
    }
    sc.state.complete.store(true, Ordering::SeqCst);
    Ok(true)
}

/// One annotated source as the shim sees it.
struct Source {
    value: Value,
    uid: String,
    name: String,
    resource: ApiResource,
}

/// Reconciles the annotated sources of one namespace.
pub async fn reconcile(ns: Arc<Namespace>, sc: Arc<ShimContext>) -> Result<Action, ShimError> {
    let ctx = &sc.ctx;
    let namespace = ns.name_any();
    if !ctx.config.serves_namespace(&namespace) || ns.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    if !view_complete(&sc).await? {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let sources = annotated_sources(&sc.state, &namespace);
    let tokens: Api<GitLabToken> = Api::namespaced(ctx.client.clone(), &namespace);
    let existing = tokens
        .list(&ListParams::default().labels(&format!("{SHIM_LABEL}=true")))
        .await?;
    if sources.is_empty() && existing.items.is_empty() {
        return Ok(Action::await_change());
    }

    let ns_info = namespace_info(ctx, &namespace).await?;
    let policies = ctx.policy_set();
    let mut groups: BTreeMap<String, Vec<(SourceNeed, &Source)>> = BTreeMap::new();
    let mut refusals: Vec<(&Source, Refusal)> = Vec::new();
    for source in &sources {
        match need_of(source, &sc, &policies, &ns_info).await? {
            Ok(need) => groups
                .entry(need.request.secret_name.clone())
                .or_default()
                .push((need, source)),
            Err(r) => refusals.push((source, r)),
        }
    }

    let mut wanted = Vec::new();
    for (secret_name, members) in &groups {
        let needs: Vec<SourceNeed> = members.iter().map(|(n, _)| n.clone()).collect();
        let Some(shared) = spec_for_sources(&needs) else {
            continue;
        };
        for (consumer, refusal) in &shared.conflicts {
            if let Some((_, s)) = members.iter().find(|(n, _)| &n.request.consumer == consumer) {
                refusals.push((s, refusal.clone()));
            }
        }
        let foreign = existing.items.iter().all(|t| t.name_any() != *secret_name)
            && tokens.get_opt(secret_name).await?.is_some();
        if foreign {
            for (_, s) in members {
                refusals.push((
                    s,
                    Refusal::new(
                        Reason::ConflictingRequest,
                        format!("a GitLabToken named {secret_name} exists and was not created by the shim; use another gitlabtokens.io/secret-name"),
                    ),
                ));
            }
            continue;
        }
        let served: Vec<&Source> = members
            .iter()
            .filter(|(n, _)| shared.served.contains(&n.request.consumer))
            .map(|(_, s)| *s)
            .collect();
        let owners: Vec<OwnerReference> = served
            .iter()
            .map(|s| OwnerReference {
                api_version: s.resource.api_version.clone(),
                kind: s.resource.kind.clone(),
                name: s.name.clone(),
                uid: s.uid.clone(),
                ..Default::default()
            })
            .collect();
        let token = GitLabToken {
            metadata: ObjectMeta {
                name: Some(secret_name.clone()),
                namespace: Some(namespace.clone()),
                labels: Some([(SHIM_LABEL.to_string(), "true".to_string())].into()),
                owner_references: Some(owners),
                ..Default::default()
            },
            spec: shared.spec.clone(),
            status: None,
        };
        let mut body = serde_json::to_value(&token).unwrap_or_default();
        body["apiVersion"] = json!("gitlabtokens.io/v1alpha1");
        body["kind"] = json!("GitLabToken");
        if let Some(o) = body.as_object_mut() {
            o.remove("status");
        }
        tokens
            .patch(
                secret_name,
                &PatchParams::apply(&format!("{FIELD_MANAGER}/shim")).force(),
                &Patch::Apply(&body),
            )
            .await?;
        wanted.push(secret_name.clone());
        for (need, s) in members
            .iter()
            .filter(|(n, _)| shared.served.contains(&n.request.consumer))
        {
            if need.request.set_secret_ref {
                point_at_secret(ctx, &namespace, s, secret_name).await?;
            }
            clear_report(&sc.state, &s.uid);
        }
    }
    // A source refused for a passing reason (connection down, GitLab unreachable) keeps the
    // token it has: an outage must never revoke working credentials.
    let passing: Vec<&str> = refusals
        .iter()
        .filter(|(_, r)| is_passing(r.reason))
        .map(|(s, _)| s.uid.as_str())
        .collect();
    let kept = |t: &GitLabToken| {
        t.owner_references()
            .iter()
            .any(|o| passing.contains(&o.uid.as_str()))
    };
    for stale in existing
        .items
        .iter()
        .filter(|t| !wanted.contains(&t.name_any()) && !kept(t))
    {
        tracing::info!(namespace = %namespace, token = %stale.name_any(), "no annotated source needs this token any more; deleting it");
        tokens
            .delete(&stale.name_any(), &DeleteParams::background())
            .await?;
    }
    for (source, refusal) in refusals {
        report(ctx, &sc.state, &namespace, source, &refusal).await;
    }
    Ok(Action::requeue(Duration::from_secs(600)))
}

/// Refusals that say nothing about the request itself, only about the moment.
fn is_passing(reason: Reason) -> bool {
    matches!(
        reason,
        Reason::ConnectionNotReady
            | Reason::ConnectionNotFound
            | Reason::AmbiguousConnection
            | Reason::GitLabUnavailable
            | Reason::RateLimited
    )
}

fn annotated_sources(state: &ShimState, namespace: &str) -> Vec<Source> {
    let kinds = state.kinds.read().map(|k| k.clone()).unwrap_or_default();
    let mut out = Vec::new();
    for (resource, store) in kinds {
        for obj in store.state() {
            if obj.namespace().as_deref() != Some(namespace)
                || obj.metadata.deletion_timestamp.is_some()
                || !annotations::is_opted_in(obj.annotations())
            {
                continue;
            }
            let mut value = serde_json::to_value(obj.as_ref()).unwrap_or_default();
            value["apiVersion"] = json!(resource.api_version);
            value["kind"] = json!(resource.kind);
            out.push(Source {
                value,
                uid: obj.uid().unwrap_or_default(),
                name: obj.name_any(),
                resource: resource.clone(),
            });
        }
    }
    // Earliest first: the first source to name a Secret keeps it when needs conflict.
    out.sort_by(|a, b| {
        let created = |s: &Source| {
            s.value
                .pointer("/metadata/creationTimestamp")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        created(a).cmp(&created(b)).then_with(|| a.name.cmp(&b.name))
    });
    out
}

async fn need_of(
    source: &Source,
    sc: &ShimContext,
    policies: &PolicySet,
    ns_info: &crate::policy::NamespaceInfo,
) -> Result<Result<SourceNeed, Refusal>, ShimError> {
    let explicit = annotations::parse(
        source
            .value
            .pointer("/metadata/annotations")
            .and_then(|a| serde_json::from_value(a.clone()).ok())
            .as_ref()
            .unwrap_or(&BTreeMap::new()),
    )
    .ok()
    .and_then(|a| a.connection);
    let connection = match choose_connection(explicit.as_deref(), &sc.ctx, policies, ns_info) {
        Ok(c) => c,
        Err((reason, message)) => return Ok(Err(Refusal::new(reason, message))),
    };
    let facts = match ConnectionFacts::new(&connection.spec.url, connection.spec.registry_host.as_deref()) {
        Ok(f) => f,
        Err(e) => return Ok(Err(Refusal::new(Reason::ConnectionNotReady, e))),
    };
    let request = match infer_source(&source.value, &facts) {
        Ok(r) => r,
        Err(r) => return Ok(Err(r)),
    };
    let project = match &request.project {
        ProjectHint::RegistryPath { path, candidates } => {
            match resolve_registry_path(
                &sc.state,
                &connection.name,
                connection.api.as_ref(),
                path,
                candidates,
            )
            .await?
            {
                Some(p) => p,
                None => {
                    return Ok(Err(Refusal::new(
                        Reason::ProjectNotFound,
                        format!(
                            "no prefix of registry path {path:?} is a GitLab project the operator can see"
                        ),
                    )));
                }
            }
        }
        other => other.as_spec_project().unwrap_or_default(),
    };
    Ok(Ok(SourceNeed { request, project }))
}

/// The longest prefix of a registry path that is a GitLab project (cached per connection).
async fn resolve_registry_path(
    state: &ShimState,
    connection: &str,
    api: &dyn GitLabApi,
    path: &str,
    candidates: &[String],
) -> Result<Option<String>, GitLabError> {
    let key = (connection.to_string(), path.to_string());
    if let Some(hit) = state.projects.lock().ok().and_then(|m| m.get(&key).cloned()) {
        return Ok(Some(hit));
    }
    for candidate in candidates {
        match api.project(candidate).await {
            Ok(p) => {
                if let Ok(mut m) = state.projects.lock() {
                    m.insert(key, p.path_with_namespace.clone());
                }
                return Ok(Some(p.path_with_namespace));
            }
            Err(GitLabError::NotFound { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

async fn point_at_secret(ctx: &Context, namespace: &str, source: &Source, secret: &str) -> kube::Result<()> {
    let api = Api::<DynamicObject>::namespaced_with(ctx.client.clone(), namespace, &source.resource);
    let patch = json!({"spec": {"secretRef": {"name": secret}}});
    let params = PatchParams {
        field_manager: Some(format!("{FIELD_MANAGER}/shim")),
        ..Default::default()
    };
    api.patch(&source.name, &params, &Patch::Merge(&patch))
        .await
        .map(|_| ())
}

fn clear_report(state: &ShimState, uid: &str) {
    if let Ok(mut m) = state.reported.lock() {
        m.remove(uid);
    }
}

/// A refusal is reported once per change: Warning event on the source, and a metric.
async fn report(ctx: &Context, state: &ShimState, namespace: &str, source: &Source, refusal: &Refusal) {
    let fingerprint = format!("{}:{}", refusal.reason.as_str(), refusal.message);
    let new = state
        .reported
        .lock()
        .map(|mut m| m.insert(source.uid.clone(), fingerprint.clone()) != Some(fingerprint))
        .unwrap_or(true);
    if !new {
        return;
    }
    ctx.metrics.denied(refusal.reason.as_str());
    let reference = k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some(source.resource.api_version.clone()),
        kind: Some(source.resource.kind.clone()),
        name: Some(source.name.clone()),
        namespace: Some(namespace.to_string()),
        uid: Some(source.uid.clone()),
        ..Default::default()
    };
    let event = Event {
        type_: EventType::Warning,
        reason: refusal.reason.as_str().to_string(),
        note: Some(format!("{} ({})", refusal.message, refusal.reason.what_to_do())),
        action: "Inject".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &reference).await {
        tracing::warn!(error = %e, "could not publish event on source");
    }
    tracing::info!(namespace, source = %source.name, reason = refusal.reason.as_str(), "refused: {}", refusal.message);
}
