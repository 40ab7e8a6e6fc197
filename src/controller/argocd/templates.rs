//! Credential templates for AppProjects (issue 13): an `AppProject` annotated
//! `gitlabtokens.io/inject: "true"` and `gitlabtokens.io/group` gets a `GitLabToken` of kind
//! `GroupAccessToken` whose Secret is an Argo CD `repo-creds` template for the group's URL prefix
//! (`shim::argocd_templates`).
//!
//! Which Applications it serves, and waits for: the annotated Applications of that AppProject
//! whose Git repoURLs lie below the prefix. Their sources get no `repository` Secret of their own
//! (one would win over the template, `reference/argocd-secrets.md` §3); they are the token's
//! consumers, hard-refreshed on rotation, and an `Overlap` ends once each compared successfully
//! with the new token (or the grace ends). The AppProject is a consumer too: it gets the token's
//! events (refusals included), and is never nudged.
//!
//! The group token needs a project below the group (the token controller checks it against the
//! policy's `projects` and mints on the group): the first such repository of those Applications,
//! kept for the token's life once chosen so an Application leaving does not re-mint it.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::ResourceExt;
use serde_json::Value;

use super::shim::{App, ArgoShim};
use crate::{
    controller::token::{kinds::project_is_below, observe::choose_connection_for},
    crd::{
        ArgoCdRepoType, ArgoCdRepository, ConsumerRef, CredentialKind, DeletionPolicy, GitLabToken,
        GitLabTokenSpec, ObjectName, Scope, SecretFormat, SecretTarget,
    },
    reason::Reason,
    shim::{
        ProjectHint, Refusal,
        argocd::{ARGOCD_API_VERSION, SourceVerdict, app_project, classify, namespace_permitted, sources},
        argocd_templates::{
            TemplateRequest, app_project_annotations, template_token_name, template_url, under_template,
        },
        url::ConnectionFacts,
    },
};

/// An annotated AppProject, as events are published on it.
#[derive(Clone)]
pub(super) struct ProjectRef {
    /// Name.
    pub(super) name: String,
    /// Uid (the key of its last reported refusal).
    pub(super) uid: String,
}

impl ProjectRef {
    /// The object reference events are published on.
    pub(super) fn reference(&self, namespace: &str) -> ObjectReference {
        ObjectReference {
            api_version: Some(ARGOCD_API_VERSION.into()),
            kind: Some("AppProject".into()),
            name: Some(self.name.clone()),
            namespace: Some(namespace.into()),
            uid: Some(self.uid.clone()),
            ..Default::default()
        }
    }
}

/// What the templates of one pass need.
#[derive(Default)]
pub(super) struct TemplatePlan {
    /// Template tokens to apply: (AppProject, token name, spec).
    pub(super) tokens: Vec<(ProjectRef, String, GitLabTokenSpec)>,
    /// Sources served by a template: (Application uid, repoURL as written).
    pub(super) claimed: BTreeSet<(String, String)>,
    /// Refusals of whole AppProjects, with the template token they concern.
    pub(super) refusals: Vec<(ProjectRef, String, Refusal)>,
}

fn opted_in_projects(projects: &[std::sync::Arc<kube::api::DynamicObject>]) -> Vec<(ProjectRef, Value)> {
    let mut out: Vec<(ProjectRef, Value)> = projects
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && crate::shim::is_opted_in(p.annotations()))
        .map(|p| {
            (
                ProjectRef {
                    name: p.name_any(),
                    uid: p.uid().unwrap_or_default(),
                },
                serde_json::to_value(p.as_ref()).unwrap_or_default(),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    out
}

fn annotations_of(v: &Value) -> std::collections::BTreeMap<String, String> {
    v["metadata"]["annotations"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// The Applications of `project` whose Git sources lie below `url`, with the GitLab projects
/// of those sources; records the claimed sources.
fn members(
    apps: &[App],
    project: &(ProjectRef, Value),
    argocd_namespace: &str,
    url: &str,
    facts: &ConnectionFacts,
    claimed: &mut BTreeSet<(String, String)>,
) -> (Vec<ConsumerRef>, Vec<String>) {
    let (mut consumers, mut paths) = (Vec::new(), Vec::new());
    for app in apps.iter().filter(|a| {
        app_project(&a.value) == project.0.name
            && namespace_permitted(&project.1, &a.namespace, argocd_namespace)
    }) {
        for (source, chart) in sources(&app.value) {
            if chart || !under_template(&source, url) {
                continue;
            }
            let SourceVerdict::Need(need) = classify(&source, false, facts) else {
                continue;
            };
            let ProjectHint::Path(path) = need.project else {
                continue;
            };
            if need.repo_type != ArgoCdRepoType::Git {
                continue;
            }
            claimed.insert((app.uid.clone(), source));
            consumers.push(app.consumer());
            paths.push(path);
        }
    }
    consumers.sort();
    consumers.dedup();
    paths.sort();
    (consumers, paths)
}

/// The template token's spec.
fn spec(
    request: &TemplateRequest,
    project: &ProjectRef,
    argocd_namespace: &str,
    anchor: String,
    url: String,
    mut consumers: Vec<ConsumerRef>,
) -> GitLabTokenSpec {
    let mut scopes = vec![Scope::ReadRepository];
    scopes.extend(request.ann.extra_scopes.iter().copied());
    scopes.sort();
    scopes.dedup();
    consumers.insert(
        0,
        ConsumerRef {
            api_version: ARGOCD_API_VERSION.into(),
            kind: "AppProject".into(),
            name: project.name.clone(),
            namespace: Some(argocd_namespace.into()),
        },
    );
    GitLabTokenSpec {
        connection_ref: request
            .ann
            .connection
            .as_ref()
            .map(|c| ObjectName { name: c.clone() }),
        project: anchor,
        scopes,
        access_level: request.ann.access_level,
        lifetime: request.ann.lifetime,
        renew_before: request.ann.renew_before,
        secret: SecretTarget {
            name: String::new(),
            format: SecretFormat::ArgoCdRepoCreds,
            registry_host: None,
        },
        consumers,
        deletion_policy: DeletionPolicy::Revoke,
        kind: CredentialKind::GroupAccessToken,
        group: Some(request.group.clone()),
        argo_cd: Some(ArgoCdRepository {
            url,
            repo_type: ArgoCdRepoType::Git,
            project: project.name.clone(),
            application_namespaces: vec![argocd_namespace.into()],
        }),
    }
}

/// Plans every template (`existing`: the shim's live tokens, for the anchor kept).
pub(super) async fn plan(
    shim: &ArgoShim,
    apps: &[App],
    projects: &[std::sync::Arc<kube::api::DynamicObject>],
    existing: &[GitLabToken],
) -> TemplatePlan {
    let ctx = &shim.ctx;
    let namespace = ctx.config.argocd_namespace.clone();
    let mut out = TemplatePlan::default();
    let projects = opted_in_projects(projects);
    if projects.is_empty() {
        return out;
    }
    let policies = ctx.policy_set();
    let mut prefixes: BTreeSet<String> = BTreeSet::new();
    for project in &projects {
        let p = &project.0;
        let request = match app_project_annotations(&annotations_of(&project.1)) {
            Ok(r) => r,
            Err(r) => {
                out.refusals.push((p.clone(), String::new(), r));
                continue;
            }
        };
        let name = template_token_name(&p.name, &request.group);
        let refuse = |out: &mut TemplatePlan, reason: Reason, message: String| {
            out.refusals
                .push((p.clone(), name.clone(), Refusal::new(reason, message)));
        };
        let ns_info = match ctx.namespace_info(&namespace).await {
            Ok(n) => n,
            Err(e) => {
                refuse(
                    &mut out,
                    Reason::GitLabUnavailable,
                    format!("reading namespace: {e}"),
                );
                continue;
            }
        };
        let connection = match choose_connection_for(
            request.ann.connection.as_deref(),
            ctx,
            &policies,
            &ns_info,
            Some(&p.name),
        ) {
            Ok(c) => c,
            Err((reason, message)) => {
                refuse(&mut out, reason, message);
                continue;
            }
        };
        let facts = match ConnectionFacts::new(&connection.spec.url, connection.spec.registry_host.as_deref())
        {
            Ok(f) => f,
            Err(e) => {
                refuse(&mut out, Reason::ConnectionNotReady, e);
                continue;
            }
        };
        let url = template_url(&connection.spec.url, &request.group);
        if !prefixes.insert(crate::shim::argocd::normalise_url(&url)) {
            refuse(
                &mut out,
                Reason::ConflictingRequest,
                format!(
                    "another AppProject (first by name) already has the repo-creds template for {url}; Argo CD would pick one of two templates for the same prefix at random, so only one is kept"
                ),
            );
            continue;
        }
        let (consumers, paths) = members(apps, project, &namespace, &url, &facts, &mut out.claimed);
        let group = request.group.to_lowercase();
        let kept = existing
            .iter()
            .find(|t| t.name_any() == name)
            .map(|t| t.spec.project.clone())
            .filter(|anchor| project_is_below(&anchor.to_lowercase(), &group));
        let Some(anchor) = kept.or_else(|| paths.first().cloned()) else {
            refuse(
                &mut out,
                Reason::ArgoCdGroupUnused,
                format!(
                    "no Application of AppProject {} annotated gitlabtokens.io/inject uses a repository below {url} yet; the group token is minted once one does (its project is checked against the policy)",
                    p.name
                ),
            );
            continue;
        };
        let spec = spec(&request, p, &namespace, anchor, url, consumers);
        out.tokens.push((p.clone(), name, spec));
    }
    out
}

impl TemplatePlan {
    /// Whether no AppProject asks for a template.
    pub(super) fn is_empty(&self) -> bool {
        self.tokens.is_empty() && self.refusals.is_empty()
    }
}

/// Applies the planned template tokens and reports the refusals on their AppProjects; marks
/// the tokens kept in `wanted` and the AppProjects served in `served`. `Ok(true)`: retry soon
/// (a passing refusal, which keeps the template in place).
pub(super) async fn apply_all(
    shim: &ArgoShim,
    api: &kube::Api<GitLabToken>,
    existing: &[GitLabToken],
    plan: TemplatePlan,
    wanted: &mut BTreeSet<String>,
    served: &mut BTreeSet<String>,
) -> Result<bool, kube::Error> {
    let namespace = shim.ctx.config.argocd_namespace.clone();
    let mut refusals = plan.refusals;
    for (project, name, spec) in plan.tokens {
        if existing.iter().all(|t| t.name_any() != name) && api.get_opt(&name).await?.is_some() {
            let r = Refusal::new(
                Reason::ConflictingRequest,
                format!(
                    "a GitLabToken named {name} exists in {namespace} and was not created by the operator's Argo CD shim"
                ),
            );
            refusals.push((project, String::new(), r));
            continue;
        }
        match super::tokens::apply(
            api,
            existing,
            &name,
            &super::tokens::body(&namespace, &name, spec, None),
        )
        .await?
        {
            Ok(()) => {
                wanted.insert(name);
                served.insert(project.uid.clone());
            }
            Err(message) => {
                refusals.push((project, name, Refusal::new(Reason::GitLabTokenRejected, message)))
            }
        }
    }
    let mut retry = false;
    for (project, name, refusal) in &refusals {
        // A passing refusal (connection or GitLab unavailable) keeps the template in place.
        if crate::controller::shim::is_passing(refusal.reason) {
            retry = true;
            if existing.iter().any(|t| t.name_any() == *name) {
                wanted.insert(name.clone());
            }
        }
        super::shim::report_on(shim, project.reference(&namespace), refusal).await;
    }
    Ok(retry)
}
