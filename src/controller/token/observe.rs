//! What a `GitLabToken` reconcile looks at before deciding: the connection, the project as GitLab
//! names it, the policy verdict, and the target Secret.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, ResourceExt};

use super::{
    TokenError,
    decide::{Desired, SecretState},
};
use crate::{
    controller::{connection::LiveConnection, context::Context},
    crd::{GitLabToken, ResolvedProject, SecretFormat},
    gitlab::{Freshness, GitLabError},
    policy::{Allowance, NamespaceInfo, PolicyDecision, PolicySet, TokenRequest},
    reason::Reason,
    secret::{TOKEN_ID_ANNOTATION, secret_digest, secret_is_owned_by},
};

/// A request the operator will not serve, with what to tell the user.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// Why.
    pub reason: Reason,
    /// The condition message.
    pub message: String,
    /// The policy that decided or came closest.
    pub policy: Option<String>,
    /// The connection, when one was resolved.
    pub connection: Option<String>,
    /// The project, when it was resolved.
    pub project: Option<ResolvedProject>,
}

fn refuse(reason: Reason, message: impl Into<String>) -> Refusal {
    Refusal {
        reason,
        message: message.into(),
        policy: None,
        connection: None,
        project: None,
    }
}

/// Everything resolved for a token that may be served.
pub struct Resolved {
    /// The connection.
    pub connection: Arc<LiveConnection>,
    /// The project as GitLab names it.
    pub project: ResolvedProject,
    /// The policy verdict.
    pub allowance: Allowance,
    /// What the token must be.
    pub desired: Desired,
    /// The token name in GitLab: `<prefix>-<cluster>-<uid>`.
    pub token_name: String,
    /// For `docker-config` Secrets: the registry host key (checked against the connection's).
    pub registry_host: Option<String>,
    /// A delegated token whose GitLab identity's role fell below the live token's: from, to.
    pub lowered: Option<(crate::crd::AccessLevel, crate::crd::AccessLevel)>,
    /// For `ssh` Secrets: the `known_hosts` content from the connection's pinned host keys.
    pub known_hosts: Option<String>,
}

/// Resolves connection, project and policy. `Ok(Err(_))` is a refusal to report, `Err` a
/// failure to retry.
pub async fn resolve(token: &GitLabToken, ctx: &Context) -> Result<Result<Resolved, Refusal>, TokenError> {
    if let Err(message) = super::kinds::validate(&token.spec) {
        return Ok(Err(super::kinds::invalid(message)));
    }
    if let Err(r) = super::argocd::check_placement(token, &ctx.config.argocd_namespace) {
        return Ok(Err(r));
    }
    // An Argo CD request is selected by the namespace of the Applications it serves.
    let request_namespaces = super::argocd::request_namespaces(token);
    let ns_info = ctx.namespace_info(&request_namespaces[0]).await?;
    let policies = ctx.policy_set();

    let explicit = token.spec.connection_ref.as_ref().map(|c| c.name.as_str());
    let app_project = token.spec.argo_cd.as_ref().map(|a| a.project.as_str());
    let connection = match choose_connection_for(explicit, ctx, &policies, &ns_info, app_project) {
        Ok(c) => c,
        Err((reason, message)) => return Ok(Err(refuse(reason, message))),
    };
    if ctx.connections.is_deleting(&connection.name) {
        return Ok(Err(Refusal {
            connection: Some(connection.name.clone()),
            ..refuse(
                Reason::ConnectionDeleted,
                format!(
                    "GitLabConnection {} is being deleted; its tokens are revoked",
                    connection.name
                ),
            )
        }));
    }
    if !connection.ready {
        return Ok(Err(Refusal {
            connection: Some(connection.name.clone()),
            ..refuse(
                Reason::ConnectionNotReady,
                format!(
                    "GitLabConnection {} is not Ready; see its status",
                    connection.name
                ),
            )
        }));
    }

    let project = match project_of(token, &connection, ctx.now()).await {
        Ok(p) => p,
        Err(GitLabError::NotFound { .. }) => {
            return Ok(Err(Refusal {
                connection: Some(connection.name.clone()),
                ..refuse(
                    Reason::ProjectNotFound,
                    format!(
                        "GitLab project {:?} does not exist or the operator's user cannot see it",
                        token.spec.project
                    ),
                )
            }));
        }
        Err(e) => return Err(e.into()),
    };

    let registry_host = match registry_host_for(token, &connection) {
        Ok(h) => h,
        Err(r) => {
            return Ok(Err(Refusal {
                connection: Some(connection.name.clone()),
                ..r
            }));
        }
    };
    let mut request = match TokenRequest::from_spec(&token.spec, &connection.name, &project.path) {
        Ok(r) => r,
        Err(e) => return Ok(Err(refuse(Reason::UnsupportedKind, e))),
    };
    let group = match super::kinds::resolve_group(&token.spec, &connection, &project).await? {
        Ok(g) => g,
        Err((reason, message)) => {
            return Ok(Err(Refusal {
                connection: Some(connection.name.clone()),
                project: Some(project),
                ..refuse(reason, message)
            }));
        }
    };
    super::kinds::complete_request(&mut request, &token.spec, group.as_ref());
    let known_hosts = match super::kinds::known_hosts_for(token, &connection) {
        Ok(k) => k,
        Err(r) => {
            return Ok(Err(Refusal {
                connection: Some(connection.name.clone()),
                project: Some(project),
                ..r
            }));
        }
    };
    let mut decision = policies.evaluate(&request, &ns_info);
    for other in &request_namespaces[1..] {
        if !matches!(decision, PolicyDecision::Allowed(_)) {
            break;
        }
        decision = policies.evaluate(&request, &ctx.namespace_info(other).await?);
    }
    let allowance = match decision {
        PolicyDecision::Allowed(a) => a,
        PolicyDecision::Denied(d) => {
            return Ok(Err(Refusal {
                reason: d.reason,
                message: d.message(),
                policy: d.closest.clone(),
                connection: Some(connection.name.clone()),
                project: Some(project),
            }));
        }
    };
    let (access_level, lowered) = match &allowance.delegate {
        None => (token.spec.access_level, None),
        Some(identity) => match delegated_level(token, ctx, &connection, identity, &project).await? {
            Ok(granted) => granted,
            Err(message) => {
                // Once withdrawn, the refusal keeps saying so (not a fresh denial).
                let live = token.status.as_ref().is_some_and(|s| {
                    s.current.is_some()
                        || s.conditions
                            .iter()
                            .any(|c| c.type_ == "Ready" && c.reason == Reason::AccessWithdrawn.as_str())
                });
                return Ok(Err(Refusal {
                    reason: if live {
                        Reason::AccessWithdrawn
                    } else {
                        Reason::GitLabAccessDenied
                    },
                    message: format!("{message} (policy {} delegates to it)", allowance.policy),
                    policy: Some(allowance.policy.clone()),
                    connection: Some(connection.name.clone()),
                    project: Some(project),
                }));
            }
        },
    };
    let mut scopes = token.spec.scopes.clone();
    scopes.sort();
    scopes.dedup();
    let desired = Desired {
        connection: connection.name.clone(),
        project_id: project.id,
        scopes,
        access_level,
        strategy: super::kinds::strategy(token.spec.kind, allowance.rotation_strategy),
        kind: token.spec.kind,
        group_id: group.map(|g| g.id),
    };
    let cluster = connection
        .spec
        .cluster_name
        .clone()
        .unwrap_or_else(|| ctx.config.cluster_name.clone());
    let token_name = format!(
        "{}{}",
        token_name_marker(&connection.spec.token_name_prefix, &cluster),
        token.uid().unwrap_or_default()
    );
    Ok(Ok(Resolved {
        connection,
        project,
        allowance,
        desired,
        token_name,
        registry_host,
        lowered,
        known_hosts,
    }))
}

/// The role a delegated token gets now, and whether that lowers the live token (`Ok(Err)`: the
/// identity lacks access, with the message; `Err`: GitLab failed, which is never withdrawal).
async fn delegated_level(
    token: &GitLabToken,
    ctx: &Context,
    connection: &LiveConnection,
    identity: &crate::policy::delegation::Identity,
    project: &ResolvedProject,
) -> Result<
    Result<
        (
            crate::crd::AccessLevel,
            Option<(crate::crd::AccessLevel, crate::crd::AccessLevel)>,
        ),
        String,
    >,
    TokenError,
> {
    use crate::controller::delegation::{Judgement, answer_max_age, judge};
    let effective = ctx
        .delegation
        .effective_for(
            &connection.name,
            connection.api.as_ref(),
            identity,
            &project.path,
            ctx.now(),
            answer_max_age(ctx.config.access_recheck_interval),
            Some(&crate::controller::delegation::token_ref(token)),
        )
        .await?;
    let requested = token.spec.access_level;
    let live = token
        .status
        .as_ref()
        .and_then(|s| s.current.as_ref())
        .map(|c| c.access_level);
    let has = match effective.level {
        Some(l) => format!("has {l} (GitLab access_level {})", effective.raw),
        None => "has no access".to_string(),
    };
    Ok(match judge(requested, effective.level, live) {
        Judgement::Grant(level) => Ok((level, None)),
        Judgement::Lowered { from, to } => Ok((to, Some((from, to)))),
        Judgement::Deny => Err(format!(
            "denied: GitLab identity {identity} {has} on project {} in GitLab, below the requested {requested}",
            project.path
        )),
        Judgement::Withdraw => Err(format!(
            "access withdrawn: GitLab identity {identity} {has} on project {} in GitLab any more; the token is revoked and the Secret removed",
            project.path
        )),
    })
}

/// The start of every token name this operator gives on a connection: `<prefix>-<cluster>-`,
/// followed by the GitLabToken's uid. The orphan sweep recognises its own tokens by it.
pub fn token_name_marker(prefix: &str, cluster: &str) -> String {
    format!("{prefix}-{cluster}-")
}

/// The registry host a `docker-config` Secret is keyed by: the token's, else the connection's. It
/// must be the connection's registry (credentials are never written for another host).
fn registry_host_for(token: &GitLabToken, connection: &LiveConnection) -> Result<Option<String>, Refusal> {
    if token.spec.secret.format != SecretFormat::DockerConfig {
        return Ok(None);
    }
    // Registry hosts compare in their one normal form (`crate::shim::url`): `:443` is the default.
    let own = connection
        .spec
        .registry_host
        .as_deref()
        .map(|h| crate::shim::url::normalise_registry_host(h).unwrap_or_else(|_| h.to_ascii_lowercase()));
    match (token.spec.secret.registry_host.as_deref(), own) {
        (None, None) => Err(refuse(
            Reason::MissingRegistryHost,
            format!(
                "secret format docker-config needs a registry host and GitLabConnection {} names none; an admin must set spec.registryHost",
                connection.name
            ),
        )),
        (None, Some(own)) => Ok(Some(own)),
        (Some(asked), Some(own)) if crate::shim::url::same_registry(asked, &own) => {
            Ok(Some(asked.to_string()))
        }
        (Some(asked), own) => Err(refuse(
            Reason::ForeignHost,
            format!(
                "registry host {asked:?} is not the registry of GitLabConnection {} ({}); credentials are only written for it",
                connection.name,
                own.as_deref().unwrap_or("none")
            ),
        )),
    }
}

/// A namespace's name and labels, from the watch cache (see [`Context::namespace_info`]).
pub async fn namespace_info(ctx: &Context, namespace: &str) -> Result<NamespaceInfo, kube::Error> {
    ctx.namespace_info(namespace).await
}

/// The explicit connection; else the only one; else the one the namespace's policies name.
/// A connection that exists but failed its check is reported as not Ready, with its reason.
pub fn choose_connection(
    explicit: Option<&str>,
    ctx: &Context,
    policies: &PolicySet,
    namespace: &NamespaceInfo,
) -> Result<Arc<LiveConnection>, (Reason, String)> {
    choose_connection_for(explicit, ctx, policies, namespace, None)
}

/// [`choose_connection`] for a request that may come from an Argo CD AppProject: only policies
/// selecting that AppProject (`argoCD.appProjects`) name candidates, as they alone can allow it.
pub fn choose_connection_for(
    explicit: Option<&str>,
    ctx: &Context,
    policies: &PolicySet,
    namespace: &NamespaceInfo,
    argocd_project: Option<&str>,
) -> Result<Arc<LiveConnection>, (Reason, String)> {
    let unusable = |name: &str| {
        ctx.connections.not_ready_reason(name).map(|why| {
            (
                Reason::ConnectionNotReady,
                format!("GitLabConnection {name} is not Ready ({why}); see its status"),
            )
        })
    };
    if let Some(name) = explicit {
        return ctx.connections.get(name).ok_or_else(|| {
            unusable(name).unwrap_or_else(|| {
                (
                    Reason::ConnectionNotFound,
                    format!("GitLabConnection {name} does not exist (or is not checked yet)"),
                )
            })
        });
    }
    let all = ctx.connections.all();
    match (all.as_slice(), ctx.connections.known()) {
        ([only], 1) => return Ok(only.clone()),
        ([], 0) => {
            return Err((
                Reason::ConnectionNotFound,
                "no GitLabConnection exists; an admin must create one".into(),
            ));
        }
        ([], 1) => {
            let why = ctx
                .connections
                .not_ready_reasons()
                .into_iter()
                .next()
                .map_or_else(String::new, |(name, why)| format!(" ({name}: {why})"));
            return Err((
                Reason::ConnectionNotReady,
                format!("the only GitLabConnection is not Ready{why}; see its status"),
            ));
        }
        _ => {}
    }
    let candidates = policies.candidate_connections_for(namespace, argocd_project);
    let named: Vec<_> = candidates.named.iter().collect();
    match named.as_slice() {
        // Several connections and no policy selecting the namespace at all: the cause is the
        // missing policy, not the ambiguity (the shim and the token say the same).
        [] if !candidates.any => Err((
            Reason::NoPolicy,
            format!(
                "denied: no usable GitLabTokenPolicy selects namespace {}{} (so none names the connection to use either)",
                namespace.name,
                argocd_project.map_or_else(String::new, |p| format!(" and AppProject {p}"))
            ),
        )),
        [one] if !candidates.any => ctx.connections.get(one).ok_or_else(|| {
            unusable(one).unwrap_or_else(|| {
                (
                    Reason::ConnectionNotFound,
                    format!("GitLabConnection {one} does not exist"),
                )
            })
        }),
        _ => Err((
            Reason::AmbiguousConnection,
            format!(
                "{} connections exist and the policies for namespace {} do not single one out; set spec.connectionRef \
                 (or the gitlabtokens.io/connection annotation)",
                ctx.connections.known(),
                namespace.name
            ),
        )),
    }
}

/// The project as GitLab names it, from the connection's cache; asked afresh when a renewal is
/// due (so a rename, transfer or deletion is caught before minting into it).
async fn project_of(
    token: &GitLabToken,
    connection: &LiveConnection,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<ResolvedProject, GitLabError> {
    let status = token.status.as_ref();
    let renewal_due = status.and_then(|s| s.renewal_time).is_some_and(|t| t <= now);
    let renew_requested = token.annotations().get(super::act::RENEW_ANNOTATION)
        != status.and_then(|s| s.last_handled_renew_request.as_ref());
    let freshness = if renewal_due || renew_requested {
        Freshness::Refresh
    } else {
        Freshness::Cached
    };
    // What the ledger recorded for this spec and connection serves until the renewal re-resolves
    // it: a restart then asks GitLab nothing about projects it already knows.
    if freshness == Freshness::Cached
        && let Some(recorded) = status
            .filter(|s| s.connection.as_deref() == Some(connection.name.as_str()))
            .and_then(|s| s.project.as_ref())
            .filter(|p| names_project(&token.spec.project, p))
    {
        return Ok(recorded.clone());
    }
    let p = connection.resolve_project(&token.spec.project, freshness).await?;
    Ok(ResolvedProject {
        id: p.id,
        path: p.path_with_namespace.clone(),
    })
}

/// Whether a spec's `project` (a path in any case, or a numeric id) names the resolved project.
pub fn names_project(spec_project: &str, resolved: &ResolvedProject) -> bool {
    spec_project.eq_ignore_ascii_case(&resolved.path) || spec_project == resolved.id.to_string()
}

/// Classifies the target Secret.
pub async fn secret_state(
    ctx: &Context,
    token: &GitLabToken,
    registry_host: Option<&str>,
) -> Result<SecretState, kube::Error> {
    let namespace = token.namespace().unwrap_or_default();
    let name = &token.spec.secret.name;
    let recorded = token
        .status
        .as_ref()
        .and_then(|s| s.current.as_ref())
        .and_then(|c| c.secret_digest.clone())
        .unwrap_or_default();
    let inputs = secret_inputs(token, &recorded, registry_host);
    if let Some(state) = ctx.secrets.cached(&namespace, name, inputs) {
        return Ok(state);
    }
    if let Some(current) = token.status.as_ref().and_then(|s| s.current.as_ref())
        && let Some(live) = ctx.secrets.live_version(&namespace, name)
        && current.secret_version.as_deref() == Some(written_as(&live, inputs).as_str())
    {
        // Still the very Secret the operator wrote for this token (a restart lands here).
        let state = SecretState::Ours {
            token_id: Some(current.token_id),
            matches: true,
        };
        ctx.secrets.remember(&namespace, name, Some(live), inputs, &state);
        return Ok(state);
    }
    if token.status.as_ref().is_none_or(ledger_is_empty)
        && ctx.secrets.listed()
        && !ctx.secrets.holds(&namespace, name)
    {
        // Nothing this GitLabToken was ever given can be there (the metadata cache holds every
        // Secret the operator labels): absent, or someone else's, which the dry run before any
        // mint tells apart. A new token costs no read.
        return Ok(SecretState::Missing);
    }
    let secret = Api::<Secret>::namespaced(ctx.client.clone(), &namespace)
        .get_opt(name)
        .await?;
    let state = classify_secret(secret.as_ref(), token, registry_host);
    let version = secret.as_ref().and_then(|s| s.metadata.resource_version.clone());
    ctx.secrets.remember(&namespace, name, version, inputs, &state);
    Ok(state)
}

/// Whether a ledger names no token at all (none minted, none being minted or revoked).
fn ledger_is_empty(status: &crate::crd::GitLabTokenStatus) -> bool {
    status.current.is_none()
        && status.previous.is_none()
        && status.pending.is_none()
        && status.revoking.is_empty()
}

/// What a Secret's classification depends on besides the Secret itself: the owner, the digest
/// its status records, the format and the registry host.
pub fn secret_inputs(token: &GitLabToken, recorded_digest: &str, registry_host: Option<&str>) -> u64 {
    let uid = token.uid().unwrap_or_default();
    let format = format!("{:?}", token.spec.secret.format);
    crate::controller::secret_view::inputs_of(&[
        &token.name_any(),
        &uid,
        recorded_digest,
        &format,
        registry_host.unwrap_or_default(),
    ])
}

/// How a record names the Secret it wrote: `<resourceVersion>/<inputs>` (see
/// [`secret_inputs`]; a different build may hash differently, which only costs a read).
pub fn written_as(resource_version: &str, inputs: u64) -> String {
    format!("{resource_version}/{inputs:016x}")
}

/// Missing, foreign (no ownership label for this token), or ours with whether it still holds
/// exactly what was written.
pub fn classify_secret(
    secret: Option<&Secret>,
    token: &GitLabToken,
    registry_host: Option<&str>,
) -> SecretState {
    let Some(secret) = secret else {
        return SecretState::Missing;
    };
    if !secret_is_owned_by(&secret.metadata, &token.name_any()) {
        return SecretState::Foreign;
    }
    let token_id = secret
        .annotations()
        .get(TOKEN_ID_ANNOTATION)
        .and_then(|v| v.parse().ok());
    let recorded = token
        .status
        .as_ref()
        .and_then(|s| s.current.as_ref())
        .and_then(|c| c.secret_digest.clone());
    let uid = token.uid().unwrap_or_default();
    let matches =
        recorded.is_some_and(|d| d == secret_digest(secret, &uid)) && has_shape(secret, token, registry_host);
    SecretState::Ours { token_id, matches }
}

/// Whether the Secret has the type, keys and registry key the spec asks for now (a changed
/// format or registry host needs a new Secret, hence a new token: the old value is not kept).
fn has_shape(secret: &Secret, token: &GitLabToken, registry_host: Option<&str>) -> bool {
    let keys: Vec<&str> = secret.data.iter().flatten().map(|(k, _)| k.as_str()).collect();
    let type_ = secret.type_.as_deref().unwrap_or("Opaque");
    match token.spec.secret.format {
        SecretFormat::BasicAuth => {
            type_ == "Opaque" && keys.contains(&"username") && keys.contains(&"password")
        }
        SecretFormat::Token => type_ == "Opaque" && keys.contains(&"token"),
        SecretFormat::ArgoCdRepository => {
            type_ == "Opaque"
                && ["username", "password", "url", "type", "project"]
                    .iter()
                    .all(|k| keys.contains(k))
        }
        SecretFormat::ArgoCdRepoCreds => {
            type_ == "Opaque"
                && ["username", "password", "url", "type"]
                    .iter()
                    .all(|k| keys.contains(k))
                && secret
                    .labels()
                    .get(crate::secret::argocd::SECRET_TYPE_LABEL)
                    .is_some_and(|v| v == crate::secret::argocd::SECRET_TYPE_REPO_CREDS)
        }
        SecretFormat::Ssh => {
            type_ == "Opaque"
                && ["identity", "identity.pub", "known_hosts"]
                    .iter()
                    .all(|k| keys.contains(k))
        }
        SecretFormat::DockerConfig => {
            let config = secret.data.as_ref().and_then(|d| d.get(".dockerconfigjson"));
            let auths = config
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b.0).ok())
                .and_then(|v| v.get("auths").cloned());
            type_ == "kubernetes.io/dockerconfigjson"
                && registry_host.is_some_and(|h| auths.as_ref().is_some_and(|a| a.get(h).is_some()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_project_serves_the_same_spec_only() {
        let p = ResolvedProject {
            id: 42,
            path: "acme/team-a/app".into(),
        };
        assert!(names_project("acme/team-a/app", &p));
        assert!(
            names_project("Acme/Team-A/App", &p),
            "GitLab paths are case-insensitive"
        );
        assert!(names_project("42", &p));
        assert!(
            !names_project("acme/team-a/web", &p),
            "another project: resolve afresh"
        );
        assert!(!names_project("43", &p));
    }
}
