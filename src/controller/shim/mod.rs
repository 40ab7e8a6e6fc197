//! The shim (DESIGN §3): annotated Flux sources become `GitLabToken`s. It reconciles per
//! namespace, because sources in one namespace that name the same Secret share one token:
//! infer each source's needs ([`crate::shim`]), resolve registry paths to their project, group
//! by Secret, server-side apply one `GitLabToken` per Secret owned by the sources it serves,
//! point sources without `spec.secretRef` at their Secret, and delete tokens no source needs.
//!
//! Every request is visible: a source refused before a token spec exists gets a `GitLabToken`
//! carrying the refusal ([`crate::shim::refused`]), which the token controller reports and never
//! serves; only where no such token can exist (no valid Secret name, the name taken by another
//! request, the API server refusing the object) is the refusal a Warning event on the source
//! alone (and a row in `gitlab-token-operator status`). One source's failure never stops the
//! others in its namespace.

pub mod group_share;
mod report;
pub(crate) mod resolve;
mod watch;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use k8s_openapi::{api::core::v1::Namespace, apimachinery::pkg::apis::meta::v1::OwnerReference};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, ObjectMeta, Patch, PatchParams},
    runtime::{
        controller::Action,
        reflector::{ObjectRef, Store},
    },
};

pub use self::watch::{FLUX_KINDS, served_flux_kinds, spawn_kind_watchers};
use self::{
    report::{clear_report, point_at_secret, release_secret_ref, report, warn_ignored},
    resolve::ProjectCache,
    watch::{Source, annotated_sources},
};
use super::{
    cache::{Written, fingerprint},
    context::Context,
    token::observe::{choose_connection, namespace_info},
};
use crate::{
    crd::{FIELD_MANAGER, GitLabToken, GitLabTokenSpec},
    gitlab::GitLabError,
    policy::{NamespaceInfo, PolicySet},
    reason::Reason,
    shim::{
        ConnectionFacts, ProjectHint, Refusal, SourceNeed, annotations,
        infer::infer_source,
        refused::{self, refusal_annotations, refused_spec, refused_token_name},
        shim_refusal, shown, spec_for_sources,
    },
};

/// Label on every `GitLabToken` the shim manages.
pub const SHIM_LABEL: &str = "gitlabtokens.io/shim";

/// Whether the shim manages a `GitLabToken` (it carries [`SHIM_LABEL`]).
pub fn is_shims(token: &GitLabToken) -> bool {
    token.labels().get(SHIM_LABEL).map(String::as_str) == Some("true")
}

/// What the shim keeps between reconciles.
#[derive(Default)]
pub struct ShimState {
    kinds: RwLock<Vec<watch::KindCache>>,
    projects: ProjectCache,
    reported: Mutex<HashMap<String, String>>,
    /// Flux kinds whose first discovery found them not served, or whose store has listed.
    concluded_kinds: AtomicUsize,
    /// Set once the shim's view was complete (see [`view_complete`]).
    complete: AtomicBool,
    /// Writes made whose events the caches may not have seen yet (not sent twice).
    written: Written,
}

/// Why a shim reconcile failed (retried).
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    /// The Kubernetes API failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

/// Shared by shim reconciles.
pub struct ShimContext {
    /// The operator context.
    pub ctx: Arc<Context>,
    /// The shim's state.
    pub state: Arc<ShimState>,
    /// Every `GitLabToken`: the token controller's cache, shared (reconciles read it instead of
    /// listing; the shim's own are those [`is_shims`] says).
    pub tokens: Store<GitLabToken>,
    /// Their names by namespace (fed by the token controller's watch).
    pub token_index: Arc<super::cache::NamespaceIndex>,
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
    let tokens_listed = sc.ctx.tokens_listed.load(Ordering::SeqCst);
    if !policies_listed || !tokens_listed {
        return Ok(false);
    }
    if !sc.ctx.every_connection_checked() {
        return Ok(false);
    }
    sc.state.complete.store(true, Ordering::SeqCst);
    Ok(true)
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
    let mut retry_soon = false;
    let all = annotated_sources(&sc.state, &namespace);
    for source in &all {
        warn_ignored(ctx, &sc.state, &namespace, source).await;
        if !source.opted_in
            && let Err(e) = release_secret_ref(ctx, &namespace, source).await
        {
            tracing::warn!(namespace = %namespace, source = %source.name, error = %e, "cannot remove the spec.secretRef the operator set");
            retry_soon = true;
        }
    }
    let sources: Vec<&Source> = all.iter().filter(|s| s.opted_in).collect();
    let tokens: Api<GitLabToken> = Api::namespaced(ctx.client.clone(), &namespace);
    // From the token controller's cache of every GitLabToken (the shim's are those with its
    // label; the others are a user's, never taken over). One that lags behind our own apply only
    // costs a no-op re-apply.
    let in_namespace: Vec<Arc<GitLabToken>> = sc
        .token_index
        .names(&namespace)
        .into_iter()
        .filter_map(|name| sc.tokens.get(&ObjectRef::new(&name).within(&namespace)))
        .collect();
    let existing = ExistingTokens {
        foreign: in_namespace
            .iter()
            .filter(|t| !is_shims(t))
            .map(|t| t.name_any())
            .collect(),
        items: in_namespace
            .iter()
            .filter(|t| is_shims(t))
            .map(|t| t.as_ref().clone())
            .collect(),
    };
    if sources.is_empty() && existing.items.is_empty() {
        return Ok(requeue(retry_soon, Action::await_change()));
    }

    let ns_info = namespace_info(ctx, &namespace).await?;
    let policies = ctx.policy_set();
    let mut groups: BTreeMap<String, Vec<(SourceNeed, &Source)>> = BTreeMap::new();
    let mut refusals: Vec<(&Source, Refusal)> = Vec::new();
    for source in sources {
        match need_of(source, &sc, &policies, &ns_info).await {
            Ok(need) => groups
                .entry(need.request.secret_name.clone())
                .or_default()
                .push((need, source)),
            Err(r) => refusals.push((source, r)),
        }
    }

    let mut wanted: BTreeSet<String> = BTreeSet::new();
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
        let served: Vec<&Source> = members
            .iter()
            .filter(|(n, _)| shared.served.contains(&n.request.consumer))
            .map(|(_, s)| *s)
            .collect();
        if existing.foreign.contains(secret_name) {
            for s in served {
                refusals.push((s, foreign_token(secret_name)));
            }
            continue;
        }
        let body = token_body(&namespace, secret_name, &served, &shared.spec, None);
        match apply(&tokens, &sc.state.written, secret_name, &body, &existing.items).await {
            Ok(()) => {}
            Err(Rejected::Refused(message)) => {
                for s in served {
                    refusals.push((s, Refusal::new(Reason::GitLabTokenRejected, message.clone())));
                }
                continue;
            }
            Err(Rejected::Failed(e)) => {
                tracing::warn!(namespace = %namespace, token = %secret_name, error = %e, "cannot write the GitLabToken; retrying");
                retry_soon = true;
                continue;
            }
        }
        wanted.insert(secret_name.clone());
        for (need, s) in members
            .iter()
            .filter(|(n, _)| shared.served.contains(&n.request.consumer))
        {
            if need.request.set_secret_ref
                && let Err(e) = point_at_secret(ctx, &sc.state.written, &namespace, s, secret_name).await
            {
                tracing::warn!(namespace = %namespace, source = %s.name, error = %e, "cannot set the source's spec.secretRef; retrying");
                retry_soon = true;
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
    // Kept tokens that serve (not ones that carry an earlier refusal: those are rewritten).
    let kept_served = |t: &GitLabToken| kept(t) && shim_refusal(t).is_none();
    let mut claimed: BTreeSet<String> = wanted.clone();
    claimed.extend(
        existing
            .items
            .iter()
            .filter(|t| kept_served(t))
            .map(|t| t.name_any()),
    );
    let mut unseen: Vec<(&Source, Refusal)> = Vec::new();
    for (source, refusal) in refusals {
        if is_passing(refusal.reason) && existing.items.iter().any(|t| kept_served(t) && owns(t, source)) {
            // Its own GitLabToken stays and speaks for it (the token controller's verdict).
            continue;
        }
        match carry_refusal(
            &tokens,
            &sc.state.written,
            &namespace,
            source,
            &refusal,
            &existing,
            &claimed,
        )
        .await?
        {
            Carried::Yes(name) => {
                claimed.insert(name.clone());
                wanted.insert(name);
                clear_report(&sc.state, &source.uid);
            }
            Carried::Later(name) => {
                claimed.insert(name);
                retry_soon = true;
            }
            Carried::No => unseen.push((source, refusal)),
        }
    }
    for stale in existing
        .items
        .iter()
        .filter(|t| !wanted.contains(&t.name_any()) && !kept(t) && t.metadata.deletion_timestamp.is_none())
    {
        tracing::info!(namespace = %namespace, token = %stale.name_any(), "no annotated source needs this token any more; deleting it");
        match tokens
            .delete(&stale.name_any(), &DeleteParams::background())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    for (source, refusal) in unseen {
        report(ctx, &sc.state, &namespace, source, &refusal).await;
    }
    Ok(requeue(retry_soon, Action::requeue(Duration::from_secs(600))))
}

/// The namespace's shim `GitLabToken`s as the reflector holds them.
struct ExistingTokens {
    /// The shim's `GitLabToken`s in the namespace.
    items: Vec<GitLabToken>,
    /// Names of the others there (a user's): never taken over.
    foreign: BTreeSet<String>,
}

fn requeue(soon: bool, otherwise: Action) -> Action {
    if soon {
        Action::requeue(Duration::from_secs(5))
    } else {
        otherwise
    }
}

fn owns(token: &GitLabToken, source: &Source) -> bool {
    token.owner_references().iter().any(|o| o.uid == source.uid)
}

fn foreign_token(secret_name: &str) -> Refusal {
    Refusal::new(
        Reason::ConflictingRequest,
        format!(
            "a GitLabToken named {secret_name} exists and was not created by the shim; use another {}",
            annotations::SECRET_NAME
        ),
    )
}

/// Whether a refusal's `GitLabToken` was written.
enum Carried {
    /// Yes, under this name.
    Yes(String),
    /// Not yet: the served token of that name is being replaced (deleted first, so its token is
    /// revoked); the refused one follows on the next reconcile.
    Later(String),
    /// No token can carry it (no valid name, the name is taken, the API server refused): the
    /// refusal is reported on the source alone.
    No,
}

/// Writes the `GitLabToken` that makes a refused source visible, named after its Secret.
async fn carry_refusal(
    tokens: &Api<GitLabToken>,
    written: &Written,
    namespace: &str,
    source: &Source,
    refusal: &Refusal,
    existing: &ExistingTokens,
    claimed: &BTreeSet<String>,
) -> Result<Carried, ShimError> {
    let Some(name) = refused_token_name(&source.value) else {
        return Ok(Carried::No);
    };
    if claimed.contains(&name) {
        return Ok(Carried::No);
    }
    match existing.items.iter().find(|t| t.name_any() == name) {
        Some(t) if t.metadata.deletion_timestamp.is_some() => return Ok(Carried::Later(name)),
        // A served token of this name (a token may be live): deleted below as no longer
        // wanted, so its token is revoked; never turned into a refused one in place.
        Some(t) if shim_refusal(t).is_none() => return Ok(Carried::Later(name)),
        Some(_) => {}
        None if existing.foreign.contains(&name) => return Ok(Carried::No),
        None => {}
    }
    let spec = refused_spec(&source.value, &name);
    let body = token_body(namespace, &name, &[source], &spec, Some(refusal));
    match apply(tokens, written, &name, &body, &existing.items).await {
        Ok(()) => Ok(Carried::Yes(name)),
        Err(Rejected::Refused(message)) => {
            tracing::warn!(namespace, source = %source.name, "the API server refused the refused source's GitLabToken: {message}");
            Ok(Carried::No)
        }
        Err(Rejected::Failed(e)) => Err(e.into()),
    }
}

/// The server-side apply body of a shim `GitLabToken` owned by `owners`, with the refusal it
/// carries (if any) as annotations.
fn token_body(
    namespace: &str,
    name: &str,
    owners: &[&Source],
    spec: &GitLabTokenSpec,
    refusal: Option<&Refusal>,
) -> serde_json::Value {
    let owners: Vec<OwnerReference> = owners
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
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            labels: Some([(SHIM_LABEL.to_string(), "true".to_string())].into()),
            annotations: refusal.map(|r| refusal_annotations(r).into_iter().collect()),
            owner_references: Some(owners),
            ..Default::default()
        },
        spec: spec.clone(),
        status: None,
    };
    token.apply_body()
}

/// Why a `GitLabToken` write failed.
enum Rejected {
    /// The API server refused this object (4xx): a problem of this request only.
    Refused(String),
    /// Anything else (unreachable, 5xx): retried.
    Failed(kube::Error),
}

/// Whether the live `GitLabToken` already says everything `body` would apply (spec, the shim
/// label, the owners and the refusal annotations): then nothing is written.
fn already_applied(live: &GitLabToken, body: &serde_json::Value) -> bool {
    let Ok(want) = serde_json::from_value::<GitLabToken>(body.clone()) else {
        return false;
    };
    let owners = |t: &GitLabToken| -> BTreeSet<(String, String, String, String)> {
        t.metadata
            .owner_references
            .iter()
            .flatten()
            .map(|o| {
                (
                    o.api_version.clone(),
                    o.kind.clone(),
                    o.name.clone(),
                    o.uid.clone(),
                )
            })
            .collect()
    };
    let carried = |t: &GitLabToken| -> Vec<Option<String>> {
        [refused::REFUSED_REASON, refused::REFUSED_MESSAGE]
            .iter()
            .map(|k| t.annotations().get(*k).cloned())
            .collect()
    };
    live.metadata.deletion_timestamp.is_none()
        && live.spec == want.spec
        && is_shims(live)
        && owners(live) == owners(&want)
        && carried(live) == carried(&want)
}

async fn apply(
    tokens: &Api<GitLabToken>,
    written: &Written,
    name: &str,
    body: &serde_json::Value,
    existing: &[GitLabToken],
) -> Result<(), Rejected> {
    let cached = existing.iter().find(|t| t.name_any() == name);
    if cached.is_some_and(|t| already_applied(t, body)) {
        return Ok(());
    }
    let key = format!("{}/{name}", tokens.namespace().unwrap_or_default());
    let what = fingerprint(&body.to_string());
    if written.in_flight(
        &key,
        cached.and_then(|t| t.metadata.resource_version.as_deref()),
        what,
    ) {
        // Applied already; the cache has not seen it yet.
        return Ok(());
    }
    match tokens
        .patch(
            name,
            &PatchParams::apply(&format!("{FIELD_MANAGER}/shim")).force(),
            &Patch::Apply(body),
        )
        .await
    {
        Ok(applied) => {
            written.record(&key, applied.metadata.resource_version, what);
            Ok(())
        }
        Err(kube::Error::Api(s)) if (400..500).contains(&s.code) && s.code != 429 => {
            Err(Rejected::Refused(format!(
                "the API server refused GitLabToken {name} ({} {}): {}",
                s.code,
                s.reason,
                crate::shim::bounded(&s.message, 600)
            )))
        }
        Err(e) => Err(Rejected::Failed(e)),
    }
}

/// Refusals that say nothing about the request itself, only about the moment.
pub(crate) fn is_passing(reason: Reason) -> bool {
    matches!(
        reason,
        Reason::ConnectionNotReady
            | Reason::ConnectionNotFound
            | Reason::AmbiguousConnection
            | Reason::GitLabUnavailable
            | Reason::RateLimited
    )
}

/// What one source needs, or why it is refused. Never fails the namespace: GitLab errors while
/// resolving a registry path are this source's (passing) refusal.
async fn need_of(
    source: &Source,
    sc: &ShimContext,
    policies: &PolicySet,
    ns_info: &NamespaceInfo,
) -> Result<SourceNeed, Refusal> {
    let explicit = annotations::parse(&crate::shim::infer::annotations_of(&source.value))
        .ok()
        .and_then(|a| a.connection);
    let connection = match choose_connection(explicit.as_deref(), &sc.ctx, policies, ns_info) {
        Ok(c) => c,
        Err((reason, message)) => return Err(connection_refusal(reason, message, policies, ns_info)),
    };
    let facts = ConnectionFacts::new(&connection.spec.url, connection.spec.registry_host.as_deref())
        .map(|f| f.with_ssh_host(connection.spec.ssh_host.clone()))
        .map_err(|e| Refusal::new(Reason::ConnectionNotReady, e))?;
    let request = infer_source(&source.value, &facts)?;
    let project = match &request.project {
        ProjectHint::RegistryPath { path, candidates } => {
            match sc
                .state
                .projects
                .resolve(&connection.name, connection.api.as_ref(), candidates)
                .await
            {
                Ok(Some(p)) => p,
                Ok(None) => {
                    return Err(Refusal::new(
                        Reason::ProjectNotFound,
                        format!(
                            "no prefix of registry path {} is a GitLab project the operator can see",
                            shown(path)
                        ),
                    ));
                }
                Err(e) => return Err(gitlab_refusal(&e, &connection.name)),
            }
        }
        other => other.as_spec_project().unwrap_or_default(),
    };
    let need = SourceNeed { request, project };
    // Numeric ids have no path to place below a group: served as before.
    let group = (!need.project.bytes().all(|b| b.is_ascii_digit()))
        .then(|| policies.shared_group(ns_info, &connection.name, &need.project))
        .flatten();
    Ok(group_share::share_by_group(need, &source.value, group))
}

/// The connection could not be chosen ([`choose_connection`] names the cause, `NoPolicy` included).
fn connection_refusal(
    reason: Reason,
    message: String,
    _policies: &PolicySet,
    _ns: &NamespaceInfo,
) -> Refusal {
    Refusal::new(reason, message)
}

/// A GitLab failure while resolving a registry path: this source waits and is retried.
fn gitlab_refusal(e: &GitLabError, connection: &str) -> Refusal {
    let reason = match e {
        GitLabError::RateLimited { .. } => Reason::RateLimited,
        _ => Reason::GitLabUnavailable,
    };
    Refusal::new(
        reason,
        format!("resolving the registry path on GitLabConnection {connection} failed: {e}"),
    )
}
