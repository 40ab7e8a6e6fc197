//! Policy evaluation (DESIGN §5): may this namespace get this token?
//!
//! Pure: the caller resolves the connection and the project's canonical `path_with_namespace`
//! first, then asks. A request is allowed when at least one usable policy that selects its
//! namespace and connection allows all of it; otherwise the answer names the closest policy
//! (fewest violations, ties by name) and every field it violates.

#[cfg(test)]
mod argocd_tests;
mod compile;
pub mod delegation;
pub mod gitlab_file;
mod group_share;
mod kinds;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

pub use compile::{
    CompiledPolicy, DEFAULT_ALLOWED_SCOPES, MAX_POLICY_LIFETIME_DAYS, UnusablePolicy, compile_policy,
};

use crate::{
    crd::{
        AccessLevel, ConsumerKind, CredentialKind, Days, GitLabTokenPolicy, GitLabTokenSpec,
        RotationStrategy, Scope, ShortDuration,
    },
    reason::Reason,
};

/// What is asked for, with the project already resolved to its canonical path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// The connection the token would be minted on.
    pub connection: String,
    /// GitLab's `path_with_namespace` for the project (never the user's spelling).
    pub project_path: String,
    /// Kinds of the objects that will read the token (empty for a bare `GitLabToken`).
    pub consumers: Vec<ConsumerKind>,
    /// Scopes asked for.
    pub scopes: Vec<Scope>,
    /// Role asked for.
    pub access_level: AccessLevel,
    /// Lifetime asked for (`None`: the policy default).
    pub lifetime: Option<Days>,
    /// Renew-before asked for (`None`: the policy default or one third of the lifetime).
    pub renew_before: Option<Days>,
    /// The Argo CD AppProject the request is for (`None`: not an Argo CD request).
    pub argocd_project: Option<String>,
    /// Kind of credential asked for.
    pub kind: CredentialKind,
    /// For a group-level credential: the group's canonical full path.
    pub group_path: Option<String>,
    /// Push access asked for (a deploy key with `gitlabtokens.io/write`).
    pub write: bool,
}

impl TokenRequest {
    /// Builds the request for a `GitLabToken` spec; `Err` names a consumer kind that is not a Flux kind.
    pub fn from_spec(spec: &GitLabTokenSpec, connection: &str, canonical_path: &str) -> Result<Self, String> {
        let mut consumers = Vec::new();
        for c in &spec.consumers {
            let kind: ConsumerKind = c.kind.parse()?;
            if !consumers.contains(&kind) {
                consumers.push(kind);
            }
        }
        Ok(Self {
            connection: connection.to_string(),
            project_path: canonical_path.to_string(),
            consumers,
            scopes: spec.scopes.clone(),
            access_level: spec.access_level,
            lifetime: spec.lifetime,
            renew_before: spec.renew_before,
            argocd_project: spec.argo_cd.as_ref().map(|a| a.project.clone()),
            kind: spec.kind,
            group_path: None,
            write: false,
        })
    }
}

/// The namespace a request comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamespaceInfo {
    /// Namespace name.
    pub name: String,
    /// Namespace labels.
    pub labels: BTreeMap<String, String>,
    /// Namespace annotations (a delegating policy may read its GitLab identity from one).
    pub annotations: BTreeMap<String, String>,
}

/// The outcome of evaluating a request against every policy.
#[derive(Debug, Clone, PartialEq)]
pub enum PolicyDecision {
    /// A policy allows all of the request.
    Allowed(Allowance),
    /// No policy does.
    Denied(Denial),
}

/// The winning policy and the effective token settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Allowance {
    /// Name of the policy that allowed it (first by name when several do).
    pub policy: String,
    /// Effective lifetime.
    pub lifetime: Days,
    /// Effective renew-before (always shorter than the lifetime).
    pub renew_before: Days,
    /// Rotation strategy of the policy.
    pub rotation_strategy: RotationStrategy,
    /// Overlap grace of the policy.
    pub overlap_grace: ShortDuration,
    /// Whether the token may be left alive when its GitLabToken is deleted (`deletionPolicy: Retain`).
    pub allow_retain: bool,
    /// A delegating policy's GitLab identity: the grant holds only while it has at least the
    /// requested role on the project in GitLab (the caller asks GitLab).
    pub delegate: Option<delegation::Identity>,
}

/// One violated field of a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The request field (`project`, `consumers`, `scopes`, `accessLevel`, `lifetime`, `renewBefore`).
    pub field: &'static str,
    /// A sentence starting with the field name.
    pub message: String,
}

/// Why a request is denied.
#[derive(Debug, Clone, PartialEq)]
pub struct Denial {
    /// `PolicyDenied` (a policy selects but does not allow) or `NoPolicy`.
    pub reason: Reason,
    /// The policy that came closest (fewest violations, ties by name).
    pub closest: Option<String>,
    /// Every field the closest policy violates.
    pub violations: Vec<Violation>,
    /// Unusable policies that would otherwise select this namespace and connection.
    pub unusable: Vec<UnusablePolicy>,
}

impl Denial {
    /// The condition message: which policy came closest and every violated field.
    pub fn message(&self) -> String {
        let mut out = match (&self.closest, self.reason) {
            (Some(p), _) => format!(
                "denied: no policy allows the whole request; closest is {p}: {}",
                self.violations
                    .iter()
                    .map(|v| v.message.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            (None, _) => {
                "denied: no usable GitLabTokenPolicy selects this namespace and connection".to_string()
            }
        };
        for u in &self.unusable {
            out.push_str(&format!(
                "; policy {} is unusable: {}",
                u.name,
                u.problems.join("; ")
            ));
        }
        out
    }
}

/// Policies compiled once, to evaluate many requests.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    usable: Vec<CompiledPolicy>,
    unusable: Vec<(Option<String>, UnusablePolicy)>,
}

/// Connections that policies selecting a namespace name (to pick a connection when none is named).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectionCandidates {
    /// Some selecting policy has no `connectionRef` (it governs every connection).
    pub any: bool,
    /// Connections named by selecting policies.
    pub named: BTreeSet<String>,
}

impl PolicySet {
    /// Compiles every policy; unusable ones are kept aside to be reported.
    pub fn compile(policies: &[GitLabTokenPolicy]) -> Self {
        let mut set = Self::default();
        for p in policies {
            match compile_policy(p) {
                Ok(c) => set.usable.push(c),
                Err(u) => set
                    .unusable
                    .push((p.spec.connection_ref.as_ref().map(|c| c.name.clone()), u)),
            }
        }
        set.usable.sort_by(|a, b| a.name.cmp(&b.name));
        set.unusable.sort_by(|a, b| a.1.name.cmp(&b.1.name));
        set
    }

    /// Compiles the cluster's policies and adds policies compiled elsewhere (GitLab-kept ones,
    /// already validated and bounded by their ceiling).
    pub fn compile_with(policies: &[GitLabTokenPolicy], extra: Vec<CompiledPolicy>) -> Self {
        let mut set = Self::compile(policies);
        set.usable.extend(extra);
        set.usable.sort_by(|a, b| a.name.cmp(&b.name));
        set
    }

    /// Policies that cannot be used, with their problems.
    pub fn unusable(&self) -> impl Iterator<Item = &UnusablePolicy> {
        self.unusable.iter().map(|(_, u)| u)
    }

    /// Connections usable policies selecting this namespace govern.
    pub fn candidate_connections(&self, namespace: &NamespaceInfo) -> ConnectionCandidates {
        self.candidate_connections_for(namespace, None)
    }

    /// Connections usable policies selecting this namespace and, for an Argo CD request, its
    /// AppProject (`argoCD.appProjects`) govern: the same selection [`Self::evaluate`] makes.
    pub fn candidate_connections_for(
        &self,
        namespace: &NamespaceInfo,
        argocd_project: Option<&str>,
    ) -> ConnectionCandidates {
        let mut out = ConnectionCandidates::default();
        for p in self.usable.iter().filter(|p| {
            p.selects_namespace(&namespace.name, &namespace.labels)
                && p.selects_argocd_project(argocd_project)
        }) {
            match &p.connection {
                None => out.any = true,
                Some(c) => {
                    out.named.insert(c.clone());
                }
            }
        }
        out
    }

    /// Evaluates one request (see the module docs).
    pub fn evaluate(&self, request: &TokenRequest, namespace: &NamespaceInfo) -> PolicyDecision {
        let selecting = self.usable.iter().filter(|p| {
            p.selects_namespace(&namespace.name, &namespace.labels)
                && p.selects_connection(&request.connection)
                && p.selects_argocd_project(request.argocd_project.as_deref())
        });
        let mut closest: Option<(&CompiledPolicy, Vec<Violation>)> = None;
        // A policy that grants on its own wins over one that still needs GitLab's word.
        let mut delegated: Option<Allowance> = None;
        for p in selecting {
            match check(p, request, namespace) {
                Ok(allowance) if allowance.delegate.is_none() => return PolicyDecision::Allowed(allowance),
                Ok(allowance) => {
                    delegated.get_or_insert(allowance);
                }
                Err(v) => {
                    // Policies are sorted by name, so strict `<` keeps the first name on ties.
                    if closest.as_ref().is_none_or(|(_, best)| v.len() < best.len()) {
                        closest = Some((p, v));
                    }
                }
            }
        }
        if let Some(allowance) = delegated {
            return PolicyDecision::Allowed(allowance);
        }
        let unusable = self
            .unusable
            .iter()
            .filter(|(conn, _)| conn.as_deref().is_none_or(|c| c == request.connection))
            .map(|(_, u)| u.clone())
            .collect();
        PolicyDecision::Denied(match closest {
            Some((p, violations)) => Denial {
                reason: Reason::PolicyDenied,
                closest: Some(p.name.clone()),
                violations,
                unusable,
            },
            None => Denial {
                reason: Reason::NoPolicy,
                closest: None,
                violations: Vec::new(),
                unusable,
            },
        })
    }
}

/// Evaluates a request against policies (compiles them first; use [`PolicySet`] for many requests).
pub fn evaluate(
    request: &TokenRequest,
    namespace: &NamespaceInfo,
    policies: &[GitLabTokenPolicy],
) -> PolicyDecision {
    PolicySet::compile(policies).evaluate(request, namespace)
}

/// One third of a lifetime in whole days, rounded down, at least one day.
pub fn one_third(lifetime: Days) -> Days {
    Days::new((lifetime.get() / 3).max(1)).unwrap_or(lifetime)
}

fn list<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn are(n: usize) -> &'static str {
    if n == 1 { "is" } else { "are" }
}

/// Checks every field of a request against one policy; `Err` lists each violated field.
fn check(p: &CompiledPolicy, r: &TokenRequest, ns: &NamespaceInfo) -> Result<Allowance, Vec<Violation>> {
    let name = &p.name;
    let mut v = Vec::new();

    let delegate = match &p.gitlab_access {
        None => None,
        Some(delegation::AccessSource::Fixed(id)) => Some(id.clone()),
        Some(delegation::AccessSource::NamespaceAnnotation(key)) => match ns.annotations.get(key) {
            None => {
                v.push(Violation {
                    field: "gitlabAccess",
                    message: format!(
                        "gitlabAccess: namespace {} has no annotation {key}, which policy {name} reads its GitLab identity from",
                        ns.name
                    ),
                });
                None
            }
            Some(value) => match delegation::Identity::parse(value) {
                Ok(id) => Some(id),
                Err(e) => {
                    v.push(Violation {
                        field: "gitlabAccess",
                        message: format!("gitlabAccess: namespace {}'s annotation {key}: {e}", ns.name),
                    });
                    None
                }
            },
        },
    };

    if !p.matches_project(&r.project_path) {
        v.push(Violation {
            field: "project",
            message: format!(
                "project: {} matches none of policy {name}'s projects ({})",
                r.project_path,
                list(&p.project_patterns)
            ),
        });
    }

    if !p.consumers.is_empty() {
        if r.consumers.is_empty() {
            v.push(Violation {
                field: "consumers",
                message: format!(
                    "consumers: the request names no consumer, but policy {name} allows only {}",
                    list(&p.consumers)
                ),
            });
        } else {
            let bad: Vec<_> = r.consumers.iter().filter(|k| !p.consumers.contains(k)).collect();
            if !bad.is_empty() {
                v.push(Violation {
                    field: "consumers",
                    message: format!(
                        "consumers: {} {} not allowed by policy {name} (allowed: {})",
                        list(&bad),
                        are(bad.len()),
                        list(&p.consumers)
                    ),
                });
            }
        }
    }

    let bad: Vec<_> = r.scopes.iter().filter(|s| !p.scopes.contains(s)).collect();
    if !bad.is_empty() {
        v.push(Violation {
            field: "scopes",
            message: format!(
                "scopes: {} {} not allowed by policy {name} (allowed: {})",
                list(&bad),
                are(bad.len()),
                list(&p.scopes)
            ),
        });
    }

    v.extend(kinds::check_kind(p, r));

    if r.access_level > p.max_access_level {
        v.push(Violation {
            field: "accessLevel",
            message: format!(
                "accessLevel: {} is above policy {name}'s maxAccessLevel {}",
                r.access_level, p.max_access_level
            ),
        });
    }

    let lifetime = r.lifetime.unwrap_or(p.lifetime_default);
    if lifetime > p.lifetime_max {
        let what = if r.lifetime.is_some() {
            ""
        } else {
            " (the policy default)"
        };
        v.push(Violation {
            field: "lifetime",
            message: format!(
                "lifetime: {lifetime}{what} is longer than policy {name}'s lifetime.max {}",
                p.lifetime_max
            ),
        });
    }

    let renew_before = match r.renew_before {
        Some(rb) => {
            if let Some(min) = p.renew_before_min.filter(|m| rb < *m) {
                v.push(Violation {
                    field: "renewBefore",
                    message: format!(
                        "renewBefore: {rb} is shorter than policy {name}'s renewBefore.min {min}"
                    ),
                });
            }
            rb
        }
        None => {
            let base = p
                .renew_before_default
                .filter(|d| *d < lifetime)
                .unwrap_or_else(|| one_third(lifetime));
            p.renew_before_min.map_or(base, |m| base.max(m))
        }
    };
    if renew_before >= lifetime {
        v.push(Violation {
            field: "renewBefore",
            message: format!(
                "renewBefore: {renew_before} is not shorter than the lifetime {lifetime}; ask for a longer lifetime or renew later"
            ),
        });
    }

    if v.is_empty() {
        Ok(Allowance {
            policy: name.clone(),
            lifetime,
            renew_before,
            rotation_strategy: p.rotation_strategy,
            overlap_grace: p.overlap_grace,
            allow_retain: p.allow_retain,
            delegate,
        })
    } else {
        Err(v)
    }
}
