//! Sources in one namespace naming the same Secret share one `GitLabToken` when their needs
//! agree; otherwise the earlier one is served and each later one is refused (DESIGN §3).

use crate::{
    crd::{ConsumerRef, DeletionPolicy, GitLabTokenSpec, ObjectName, SecretTarget},
    reason::Reason,
};

use super::{Refusal, annotations::SECRET_NAME, infer::InferredRequest};

/// One source's request with its project resolved (registry paths to their longest existing
/// project prefix; paths and ids as written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceNeed {
    /// What the source asked for.
    pub request: InferredRequest,
    /// The value for `GitLabTokenSpec.project`.
    pub project: String,
}

impl SourceNeed {
    /// A need whose project needs no lookup (path or id hints); `None` for registry paths.
    pub fn without_lookup(request: InferredRequest) -> Option<Self> {
        let project = request.project.as_spec_project()?;
        Some(Self { request, project })
    }
}

/// The token a group of sources shares, and who is left out.
#[derive(Debug, Clone, PartialEq)]
pub struct SharedToken {
    /// The `GitLabToken` spec serving every agreeing source.
    pub spec: GitLabTokenSpec,
    /// Sources the token serves, sorted.
    pub served: Vec<ConsumerRef>,
    /// Sources refused with `ConflictingRequest`, in input order.
    pub conflicts: Vec<(ConsumerRef, Refusal)>,
}

fn show<T: std::fmt::Debug>(v: &T) -> String {
    format!("{v:?}")
}

/// Whether two sources can share one token: same Secret, connection, project, scopes, role,
/// Secret format, registry host, credential kind and group, and no two different explicit lifetimes or renew-befores.
/// `Err` lists each difference as `field: a vs b`.
pub fn needs_agree(a: &SourceNeed, b: &SourceNeed) -> Result<(), Vec<String>> {
    let (x, y) = (&a.request, &b.request);
    let mut d = Vec::new();
    let mut cmp = |field: &str, l: String, r: String| {
        if l != r {
            d.push(format!("{field}: {l} vs {r}"));
        }
    };
    cmp("secret", x.secret_name.clone(), y.secret_name.clone());
    cmp("connection", show(&x.connection), show(&y.connection));
    // One group access token reaches every project below its group: the projects may differ.
    let same_group_token = x.credential_kind == crate::crd::CredentialKind::GroupAccessToken
        && x.group.is_some()
        && x.group == y.group;
    if !same_group_token {
        cmp("project", a.project.clone(), b.project.clone());
    }
    let scopes = |s: &[crate::crd::Scope]| s.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",");
    cmp("scopes", scopes(&x.scopes), scopes(&y.scopes));
    cmp(
        "accessLevel",
        x.access_level.to_string(),
        y.access_level.to_string(),
    );
    cmp("secretFormat", show(&x.secret_format), show(&y.secret_format));
    cmp("registryHost", show(&x.registry_host), show(&y.registry_host));
    cmp(
        "credentialKind",
        x.credential_kind.to_string(),
        y.credential_kind.to_string(),
    );
    cmp("group", show(&x.group), show(&y.group));
    if let (Some(l), Some(r)) = (x.lifetime, y.lifetime) {
        cmp("lifetime", l.to_string(), r.to_string());
    }
    if let (Some(l), Some(r)) = (x.renew_before, y.renew_before) {
        cmp("renewBefore", l.to_string(), r.to_string());
    }
    if d.is_empty() { Ok(()) } else { Err(d) }
}

/// Builds the shared `GitLabTokenSpec` for sources naming one Secret, given earliest first:
/// the first is always served, later ones join when their needs agree, and explicit lifetimes
/// fill in where the first left them to the policy. `None` for an empty list.
pub fn spec_for_sources(needs: &[SourceNeed]) -> Option<SharedToken> {
    let first = needs.first()?;
    let mut merged = first.clone();
    let mut served = vec![first.request.consumer.clone()];
    let mut conflicts = Vec::new();
    for n in &needs[1..] {
        match needs_agree(&merged, n) {
            Ok(()) => {
                merged.request.lifetime = merged.request.lifetime.or(n.request.lifetime);
                merged.request.renew_before = merged.request.renew_before.or(n.request.renew_before);
                served.push(n.request.consumer.clone());
            }
            Err(diffs) => {
                let c = &first.request.consumer;
                conflicts.push((
                    n.request.consumer.clone(),
                    Refusal::new(
                        Reason::ConflictingRequest,
                        format!(
                            "Secret {:?} already serves {} {} with different needs ({}); give this source its own {SECRET_NAME} or make its needs match",
                            first.request.secret_name,
                            c.kind,
                            c.name,
                            diffs.join("; ")
                        ),
                    ),
                ));
            }
        }
    }
    served.sort();
    served.dedup();
    let r = &merged.request;
    Some(SharedToken {
        spec: GitLabTokenSpec {
            kind: r.credential_kind,
            group: r.group.clone(),
            connection_ref: r
                .connection
                .as_ref()
                .map(|name| ObjectName { name: name.clone() }),
            project: merged.project.clone(),
            scopes: r.scopes.clone(),
            access_level: r.access_level,
            lifetime: r.lifetime,
            renew_before: r.renew_before,
            secret: SecretTarget {
                name: r.secret_name.clone(),
                format: r.secret_format,
                registry_host: r.registry_host.clone(),
            },
            consumers: served.clone(),
            deletion_policy: DeletionPolicy::Revoke,
            argo_cd: None,
        },
        served,
        conflicts,
    })
}
