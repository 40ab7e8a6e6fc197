//! The Argo CD shim (issue 13): annotated `Application`s become `GitLabToken`s in Argo CD's
//! namespace, one per (AppProject, repository), whose Secrets are project-scoped Argo CD
//! `repository` Secrets.
//!
//! Where things live, and why: Argo CD reads repository Secrets only in its own namespace, and a
//! Secret is owned (and garbage-collected) by its `GitLabToken` only within one namespace, so the
//! `GitLabToken` lives in Argo CD's namespace too. Applications may live elsewhere (apps in any
//! namespace), where no ownerReference can reach, so the shim owns the lifecycle instead: every
//! pass computes the tokens all annotated Applications need and deletes the labelled tokens
//! nobody needs (the token's finalizer revokes it in GitLab). The Applications a token serves
//! are its `spec.consumers` (with their namespaces): they are nudged on rotation and get its
//! events. A refusal that concerns one repository is carried by a refused `GitLabToken` of that
//! name (a condition, events on the Application, a metric); one that concerns the whole
//! Application (bad annotation, missing AppProject, namespace not permitted, no connection) is a
//! Warning event on the Application and a metric (Argo CD itself puts the AppProject problems in
//! the Application's conditions).

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{Arc, Mutex},
    time::Duration,
};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, ListParams},
    runtime::events::{Event, EventType},
};
use serde_json::Value;

use super::{
    api_presence::Presence,
    templates,
    tokens::{apply, body, refused_spec, spec_for},
    watch::{self, ArgoView},
};
use crate::{
    controller::{
        context::Context,
        shim::{is_passing, resolve::ProjectCache},
        token::observe::choose_connection_for,
    },
    crd::{ConsumerRef, GitLabConnection, GitLabToken},
    reason::Reason,
    shim::{
        ProjectHint, Refusal, ShimAnnotations,
        argocd::{
            ARGOCD_API_VERSION, ARGOCD_LABEL, RepoNeed, SourceVerdict, app_project, application_annotations,
            classify, namespace_permitted, sources, token_name,
        },
        shim_refusal, shown,
        url::ConnectionFacts,
    },
};

/// What the Argo CD shim keeps between passes.
pub struct ArgoShim {
    pub(super) ctx: Arc<Context>,
    pub(super) view: Arc<ArgoView>,
    projects: ProjectCache,
    reported: Mutex<HashMap<String, String>>,
    presence: Presence,
    held: Mutex<String>,
}

/// Runs the shim until `stopped`: a pass on every change of an Application or AppProject, and
/// at least once a minute (sooner while something is retried).
pub async fn run(ctx: Arc<Context>, stopped: impl std::future::Future<Output = ()> + Send + 'static) {
    let view = Arc::new(ArgoView::default());
    watch::spawn(
        ctx.client.clone(),
        ctx.config.argocd_namespace.clone(),
        view.clone(),
        ctx.clone(),
    );
    let shim = ArgoShim {
        ctx,
        view,
        projects: ProjectCache::default(),
        reported: Mutex::new(HashMap::new()),
        presence: Presence::default(),
        held: Mutex::new(String::new()),
    };
    tokio::pin!(stopped);
    let mut wait = Duration::from_secs(60);
    loop {
        tokio::select! {
            _ = shim.view.wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = &mut stopped => return,
        }
        wait = match pass(&shim).await {
            Ok(false) => Duration::from_secs(60),
            Ok(true) => Duration::from_secs(5),
            Err(e) => {
                tracing::warn!(error = %e, "Argo CD shim pass failed; retrying");
                Duration::from_secs(5)
            }
        };
    }
}

/// Whether everything a pass decides on has been seen once (else an Application would look
/// absent and its token be deleted): both Argo CD kinds, the policies and every connection.
async fn view_complete(shim: &ArgoShim) -> Result<bool, kube::Error> {
    if !shim.view.complete() {
        return Ok(false);
    }
    let policies_listed =
        tokio::time::timeout(Duration::from_millis(50), shim.ctx.policies.wait_until_ready())
            .await
            .is_ok_and(|r| r.is_ok());
    if !policies_listed {
        return Ok(false);
    }
    let connections = Api::<GitLabConnection>::all(shim.ctx.client.clone())
        .list_metadata(&ListParams::default())
        .await?;
    Ok(connections
        .items
        .iter()
        .all(|c| shim.ctx.connections.checked(&c.name_any())))
}

/// One Application as the shim sees it.
#[derive(Clone)]
pub(super) struct App {
    pub(super) namespace: String,
    pub(super) name: String,
    pub(super) uid: String,
    pub(super) value: Value,
}

impl App {
    /// The Application as a consumer of its tokens.
    pub(super) fn consumer(&self) -> ConsumerRef {
        ConsumerRef {
            api_version: ARGOCD_API_VERSION.into(),
            kind: "Application".into(),
            name: self.name.clone(),
            namespace: Some(self.namespace.clone()),
        }
    }
}

/// One repository need of one Application, with what decides whether it can share a token.
pub(super) struct Member {
    pub(super) app: App,
    pub(super) app_project: String,
    pub(super) need: RepoNeed,
    pub(super) connection: String,
    pub(super) project: String,
    pub(super) ann: ShimAnnotations,
}

impl Member {
    fn agrees(&self, other: &Member) -> bool {
        self.connection == other.connection
            && self.project == other.project
            && self.ann.access_level == other.ann.access_level
            && self.ann.extra_scopes == other.ann.extra_scopes
            && self.ann.lifetime == other.ann.lifetime
            && self.ann.renew_before == other.ann.renew_before
    }
}

/// The annotated Applications the operator serves, oldest first.
pub(super) fn opted_in_apps(shim: &ArgoShim) -> Vec<App> {
    let store = shim.view.applications.read().ok().and_then(|a| a.clone());
    let mut out: Vec<App> = store
        .map(|(_, s)| s.state())
        .unwrap_or_default()
        .into_iter()
        .filter(|a| a.metadata.deletion_timestamp.is_none() && crate::shim::is_opted_in(a.annotations()))
        .map(|a| App {
            namespace: a.namespace().unwrap_or_default(),
            name: a.name_any(),
            uid: a.uid().unwrap_or_default(),
            value: serde_json::to_value(a.as_ref()).unwrap_or_default(),
        })
        .filter(|a| shim.ctx.config.serves_namespace(&a.namespace))
        .collect();
    let created = |a: &App| {
        a.value
            .pointer("/metadata/creationTimestamp")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    out.sort_by(|a, b| {
        created(a)
            .cmp(&created(b))
            .then_with(|| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)))
    });
    out
}

/// The AppProjects in Argo CD's namespace (one snapshot per pass, shared with the templates).
pub(super) fn app_projects(shim: &ArgoShim) -> Vec<std::sync::Arc<kube::api::DynamicObject>> {
    let Some(store) = shim.view.projects.read().ok().and_then(|p| p.clone()) else {
        return Vec::new();
    };
    let namespace = shim.ctx.config.argocd_namespace.as_str();
    store
        .state()
        .into_iter()
        .filter(|p| p.namespace().as_deref() == Some(namespace))
        .collect()
}

fn app_project_object(projects: &[std::sync::Arc<kube::api::DynamicObject>], name: &str) -> Option<Value> {
    projects
        .iter()
        .find(|p| p.name_any() == name)
        .map(|p| serde_json::to_value(p.as_ref()).unwrap_or_default())
}

/// The token name and repository URL a per-repository refusal is carried under.
type Carrier = (String, String);

/// Everything one pass found: the needs by token name, and the refusals (with the token name
/// that can carry them, when the refusal concerns one repository).
#[derive(Default)]
struct Plan {
    groups: BTreeMap<String, Vec<Member>>,
    refusals: Vec<(App, Option<Carrier>, Refusal)>,
}

/// `apps`: the annotated Applications (one snapshot per pass, shared with the templates);
/// `claimed`: sources a credential template serves (they get no repository Secret).
async fn plan(
    shim: &ArgoShim,
    apps: Vec<App>,
    projects: &[std::sync::Arc<kube::api::DynamicObject>],
    claimed: &BTreeSet<(String, String)>,
) -> Plan {
    let ctx = &shim.ctx;
    let policies = ctx.policy_set();
    let mut plan = Plan::default();
    for app in apps {
        let project_name = app_project(&app.value);
        let annotations = app.value["metadata"]["annotations"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default();
        let ann = match application_annotations(&annotations) {
            Ok(a) => a,
            Err(r) => {
                plan.refusals.push((app, None, r));
                continue;
            }
        };
        let Some(project) = app_project_object(projects, &project_name) else {
            let r = Refusal::new(
                Reason::ArgoCdProjectNotFound,
                format!(
                    "AppProject {} does not exist in Argo CD's namespace {}",
                    shown(&project_name),
                    ctx.config.argocd_namespace
                ),
            );
            plan.refusals.push((app, None, r));
            continue;
        };
        if !namespace_permitted(&project, &app.namespace, &ctx.config.argocd_namespace) {
            let r = Refusal::new(
                Reason::ArgoCdNamespaceNotPermitted,
                format!(
                    "namespace {} is not in AppProject {}'s spec.sourceNamespaces, so Argo CD refuses the Application",
                    app.namespace, project_name
                ),
            );
            plan.refusals.push((app, None, r));
            continue;
        }
        let ns_info = match ctx.namespace_info(&app.namespace).await {
            Ok(n) => n,
            Err(e) => {
                let r = Refusal::new(Reason::GitLabUnavailable, format!("reading namespace: {e}"));
                plan.refusals.push((app, None, r));
                continue;
            }
        };
        let connection = match choose_connection_for(
            ann.connection.as_deref(),
            ctx,
            &policies,
            &ns_info,
            Some(&project_name),
        ) {
            Ok(c) => c,
            Err((reason, message)) => {
                plan.refusals.push((app, None, Refusal::new(reason, message)));
                continue;
            }
        };
        let facts = match ConnectionFacts::new(&connection.spec.url, connection.spec.registry_host.as_deref())
        {
            Ok(f) => f,
            Err(e) => {
                plan.refusals
                    .push((app, None, Refusal::new(Reason::ConnectionNotReady, e)));
                continue;
            }
        };
        for (url, chart) in sources(&app.value) {
            if claimed.contains(&(app.uid.clone(), url.clone())) {
                continue;
            }
            let name = token_name(&project_name, &url);
            let need = match classify(&url, chart, &facts) {
                SourceVerdict::NotGitLab => continue,
                SourceVerdict::Refused(r) => {
                    plan.refusals.push((app.clone(), Some((name, url)), r));
                    continue;
                }
                SourceVerdict::Need(n) => n,
            };
            let project = match &need.project {
                ProjectHint::RegistryPath { path, candidates } => {
                    match shim
                        .projects
                        .resolve(&connection.name, connection.api.as_ref(), candidates)
                        .await
                    {
                        Ok(Some(p)) => p,
                        Ok(None) => {
                            let r = Refusal::new(
                                Reason::ProjectNotFound,
                                format!(
                                    "no prefix of registry path {} is a GitLab project the operator can see",
                                    shown(path)
                                ),
                            );
                            plan.refusals.push((app.clone(), Some((name, url)), r));
                            continue;
                        }
                        Err(e) => {
                            let r = Refusal::new(
                                Reason::GitLabUnavailable,
                                format!(
                                    "resolving the registry path on GitLabConnection {}: {e}",
                                    connection.name
                                ),
                            );
                            plan.refusals.push((app.clone(), Some((name, url)), r));
                            continue;
                        }
                    }
                }
                other => other.as_spec_project().unwrap_or_default(),
            };
            plan.groups.entry(name).or_default().push(Member {
                app: app.clone(),
                app_project: project_name.clone(),
                need,
                connection: connection.name.clone(),
                project,
                ann: ann.clone(),
            });
        }
    }
    plan
}

/// A Warning event on the Application and a metric, once per change of the refusal.
async fn report(shim: &ArgoShim, app: &App, refusal: &Refusal) {
    let reference = ObjectReference {
        api_version: Some(ARGOCD_API_VERSION.into()),
        kind: Some("Application".into()),
        name: Some(app.name.clone()),
        namespace: Some(app.namespace.clone()),
        uid: Some(app.uid.clone()),
        ..Default::default()
    };
    report_on(shim, reference, refusal).await;
}

/// A Warning event on an Argo CD object (keyed by its uid) and a metric, once per change of
/// the refusal.
pub(super) async fn report_on(shim: &ArgoShim, reference: ObjectReference, refusal: &Refusal) {
    let note = refusal.note();
    let fingerprint = format!("{}:{note}", refusal.reason.as_str());
    let uid = reference.uid.clone().unwrap_or_default();
    let new = shim
        .reported
        .lock()
        .map(|mut m| m.insert(uid, fingerprint.clone()) != Some(fingerprint))
        .unwrap_or(true);
    if !new {
        return;
    }
    shim.ctx.metrics.denied(refusal.reason.as_str());
    let kind = reference.kind.clone().unwrap_or_default();
    let (namespace, name) = (
        reference.namespace.clone().unwrap_or_default(),
        reference.name.clone().unwrap_or_default(),
    );
    let event = Event {
        type_: EventType::Warning,
        reason: refusal.reason.as_str().to_string(),
        note: Some(note.clone()),
        action: "Inject".into(),
        secondary: None,
    };
    if let Err(e) = shim.ctx.recorder.publish(&event, &reference).await {
        tracing::warn!(error = %e, kind, "could not publish event on Argo CD object");
    }
    tracing::info!(%namespace, kind, %name, reason = refusal.reason.as_str(), "refused: {note}");
}

/// One pass over every annotated Application. `Ok(true)`: something is to be retried soon.
async fn pass(shim: &ArgoShim) -> Result<bool, kube::Error> {
    let ctx = &shim.ctx;
    let namespace = ctx.config.argocd_namespace.clone();
    if !ctx.config.serves_namespace(&namespace) {
        return Ok(false);
    }
    if !view_complete(shim).await? {
        return Ok(true);
    }
    let tokens: Api<GitLabToken> = Api::namespaced(ctx.client.clone(), &namespace);
    let existing = tokens
        .list(&ListParams::default().labels(&format!("{ARGOCD_LABEL}=true")))
        .await?
        .items;
    let apps = opted_in_apps(shim);
    let projects = app_projects(shim);
    let template_plan = templates::plan(shim, &apps, &projects, &existing).await;
    let Plan { groups, mut refusals } = plan(shim, apps, &projects, &template_plan.claimed).await;
    if groups.is_empty() && refusals.is_empty() && existing.is_empty() && template_plan.is_empty() {
        return Ok(false);
    }
    let mut retry = false;
    let mut wanted: BTreeSet<String> = BTreeSet::new();
    let mut served: BTreeSet<String> = BTreeSet::new();
    retry |= templates::apply_all(shim, &tokens, &existing, template_plan, &mut wanted, &mut served).await?;
    for (name, members) in &groups {
        let first = &members[0];
        let (agree, disagree): (Vec<&Member>, Vec<&Member>) = members.iter().partition(|m| m.agrees(first));
        for m in disagree {
            let r = Refusal::new(
                Reason::ConflictingRequest,
                format!(
                    "Application {}/{} uses {} in AppProject {} like {}/{}, but asks for different token settings (connection, access level, scopes, lifetime); one Secret serves them all, so make the annotations equal",
                    m.app.namespace,
                    m.app.name,
                    m.need.url,
                    m.app_project,
                    first.app.namespace,
                    first.app.name
                ),
            );
            refusals.push((m.app.clone(), None, r));
        }
        if existing.iter().all(|t| t.name_any() != *name) && tokens.get_opt(name).await?.is_some() {
            for m in &agree {
                let r = Refusal::new(
                    Reason::ConflictingRequest,
                    format!(
                        "a GitLabToken named {name} exists in {namespace} and was not created by the operator's Argo CD shim"
                    ),
                );
                refusals.push((m.app.clone(), None, r));
            }
            continue;
        }
        match apply(
            &tokens,
            &existing,
            name,
            &body(&namespace, name, spec_for(&agree), None),
        )
        .await?
        {
            Ok(()) => {
                wanted.insert(name.clone());
                for m in &agree {
                    served.insert(m.app.uid.clone());
                }
            }
            Err(message) => {
                for m in &agree {
                    refusals.push((
                        m.app.clone(),
                        None,
                        Refusal::new(Reason::GitLabTokenRejected, message.clone()),
                    ));
                }
            }
        }
    }
    // An Application refused for a passing reason keeps the tokens it has.
    let passing: BTreeSet<(String, String)> = refusals
        .iter()
        .filter(|(_, _, r)| is_passing(r.reason))
        .map(|(a, _, _)| (a.namespace.clone(), a.name.clone()))
        .collect();
    retry |= !passing.is_empty();
    let kept = |t: &GitLabToken| {
        shim_refusal(t).is_none()
            && t.spec
                .consumers
                .iter()
                .any(|c| passing.contains(&(c.namespace.clone().unwrap_or_default(), c.name.clone())))
    };
    for (app, carrier, refusal) in &refusals {
        let carried = match carrier {
            Some((name, url)) if !wanted.contains(name) && !is_passing(refusal.reason) => {
                let live = existing.iter().find(|t| t.name_any() == *name);
                let foreign = live.is_none() && tokens.get_opt(name).await?.is_some();
                if foreign || live.is_some_and(|t| t.metadata.deletion_timestamp.is_some()) {
                    false
                } else {
                    let spec = refused_spec(app, &app_project(&app.value), url);
                    match apply(
                        &tokens,
                        &existing,
                        name,
                        &body(&namespace, name, spec, Some(refusal)),
                    )
                    .await?
                    {
                        Ok(()) => {
                            wanted.insert(name.clone());
                            true
                        }
                        Err(_) => false,
                    }
                }
            }
            _ => false,
        };
        if !carried {
            report(shim, app, refusal).await;
        }
    }
    if let Ok(mut m) = shim.reported.lock() {
        m.retain(|uid, _| !served.contains(uid) || refusals.iter().any(|(a, _, _)| a.uid == *uid));
    }
    let stale: Vec<&GitLabToken> = existing
        .iter()
        .filter(|t| !wanted.contains(&t.name_any()) && !kept(t) && t.metadata.deletion_timestamp.is_none())
        .collect();
    // Argo CD's API missing (or just back) looks like every Application deleted: keep them.
    // Asked on every pass, so the grace starts when the API is seen back, not at the next deletion.
    if let Some(held) = shim.presence.hold(&ctx.client, ctx.now()).await? {
        ctx.metrics
            .argocd_tokens_held
            .set(i64::try_from(stale.len()).unwrap_or(i64::MAX));
        report_held(shim, &stale, &held).await;
        return Ok(true);
    }
    ctx.metrics.argocd_tokens_held.set(0);
    for stale in stale {
        tracing::info!(namespace = %namespace, token = %stale.name_any(), "no annotated Application needs this token any more; deleting it");
        tokens
            .delete(&stale.name_any(), &DeleteParams::background())
            .await?;
    }
    Ok(retry)
}

/// Says (log, Warning event on each kept token) that tokens no Application needs are kept
/// because Argo CD's API is missing or just back; once per change of what is kept and why.
async fn report_held(shim: &ArgoShim, stale: &[&GitLabToken], held: &super::api_presence::Held) {
    let why = &held.why;
    let names: Vec<String> = stale.iter().map(|t| t.name_any()).collect();
    let fingerprint = if names.is_empty() {
        String::new()
    } else {
        format!("{why}|{}", names.join(","))
    };
    let new = shim
        .held
        .lock()
        .map(|mut h| std::mem::replace(&mut *h, fingerprint.clone()) != fingerprint)
        .unwrap_or(true);
    if !new || names.is_empty() {
        return;
    }
    let note = format!(
        "{why}: {} GitLabToken(s) no Application is seen to need are kept, not revoked, until Argo CD's API is back and settled ({} minutes); delete them to revoke now",
        names.len(),
        super::api_presence::RETURN_GRACE.num_minutes()
    );
    tracing::warn!(tokens = ?names, "{note}");
    for token in stale {
        shim.ctx
            .event(
                *token,
                true,
                Reason::ArgoCdApiMissing.as_str(),
                // Distinct actions: the recorder folds repeats of one action into a series.
                if held.returned {
                    "KeepAfterReturn"
                } else {
                    "KeepWhileMissing"
                },
                note.clone(),
            )
            .await;
    }
}
