//! Turning a `GitLabTokenPolicy` into matchers once, and finding what makes a policy unusable.

use std::collections::BTreeMap;

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

use crate::crd::{
    AccessLevel, ConsumerKind, CredentialKind, Days, GitLabTokenPolicy, RotationStrategy, Scope,
    ShortDuration,
};

/// Scopes a policy allows when its `scopes` list is empty.
pub const DEFAULT_ALLOWED_SCOPES: [Scope; 3] = [Scope::ReadRepository, Scope::ReadRegistry, Scope::ReadApi];

/// Longest lifetime a policy may name (GitLab's default maximum token lifetime).
pub const MAX_POLICY_LIFETIME_DAYS: u32 = 365;

/// A policy whose globs compiled and whose bounds are consistent.
#[derive(Debug, Clone)]
pub struct CompiledPolicy {
    /// Policy name.
    pub name: String,
    /// Connection the policy is limited to (`None`: every connection).
    pub connection: Option<String>,
    /// Namespace name globs (empty: every name).
    namespace_globs: Option<GlobSet>,
    /// Labels a namespace must carry.
    pub match_labels: BTreeMap<String, String>,
    /// Project globs over canonical paths.
    projects: GlobSet,
    /// The project globs as written (for messages).
    pub project_patterns: Vec<String>,
    /// Allowed consumer kinds (empty: all).
    pub consumers: Vec<ConsumerKind>,
    /// Allowed scopes (defaults applied).
    pub scopes: Vec<Scope>,
    /// Highest role allowed.
    pub max_access_level: AccessLevel,
    /// Default lifetime.
    pub lifetime_default: Days,
    /// Longest lifetime.
    pub lifetime_max: Days,
    /// Default renew-before (`None`: one third of the lifetime).
    pub renew_before_default: Option<Days>,
    /// Shortest renew-before a request may ask for.
    pub renew_before_min: Option<Days>,
    /// How tokens are replaced.
    pub rotation_strategy: RotationStrategy,
    /// Overlap grace.
    pub overlap_grace: ShortDuration,
    /// Whether tokens it allows may be retained on deletion.
    pub allow_retain: bool,
    /// AppProject globs of `argoCD.appProjects` (`None`: the policy selects no Argo CD request).
    argocd_projects: Option<GlobSet>,
    /// The GitLab identity bounding its tokens (`None`: not delegating).
    pub gitlab_access: Option<super::delegation::AccessSource>,
    /// A GitLab-kept policy's cluster-side ceiling on namespace names (`None`: no ceiling).
    namespace_ceiling: Option<GlobSet>,
    /// Allowed credential kinds (defaults applied).
    pub credential_kinds: Vec<CredentialKind>,
    /// Group globs for group-level credentials (`None`: no group allowed).
    groups: Option<GlobSet>,
    /// The group globs as written (for messages).
    pub group_patterns: Vec<String>,
    /// Whether deploy keys may get push access.
    pub allow_deploy_key_push: bool,
    /// Whether sources below its groups share one group access token per namespace.
    pub group_tokens: crate::crd::GroupTokens,
}

/// Namespace name globs as one set (`Err`: the first problem).
pub(super) fn namespace_globs(patterns: &[String]) -> Result<GlobSet, String> {
    let mut problems = Vec::new();
    glob_set("namespaces", patterns, &mut problems).ok_or_else(|| problems.join("; "))
}

/// Why a policy cannot be used at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnusablePolicy {
    /// Policy name.
    pub name: String,
    /// Every problem found, one sentence each.
    pub problems: Vec<String>,
}

fn glob(pattern: &str) -> Result<Glob, globset::Error> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
}

fn glob_set(field: &str, patterns: &[String], problems: &mut Vec<String>) -> Option<GlobSet> {
    let mut builder = GlobSetBuilder::new();
    let mut ok = true;
    for p in patterns {
        if p.trim().is_empty() || p.trim() != p {
            problems.push(format!("{field}: {p:?} is empty or has surrounding spaces"));
            ok = false;
            continue;
        }
        match glob(p) {
            Ok(g) => {
                builder.add(g);
            }
            Err(e) => {
                problems.push(format!("{field}: {p:?} is not a valid glob ({})", e.kind()));
                ok = false;
            }
        }
    }
    if !ok {
        return None;
    }
    match builder.build() {
        Ok(set) => Some(set),
        Err(e) => {
            problems.push(format!("{field}: {e}"));
            None
        }
    }
}

/// Compiles a policy; `Err` lists every problem that makes it unusable (for its `Ready=False`).
pub fn compile_policy(policy: &GitLabTokenPolicy) -> Result<CompiledPolicy, UnusablePolicy> {
    let name = policy.metadata.name.clone().unwrap_or_default();
    let spec = &policy.spec;
    let mut problems = Vec::new();

    let namespace_globs = if spec.namespace_selector.match_names.is_empty() {
        Some(None)
    } else {
        glob_set(
            "namespaceSelector.matchNames",
            &spec.namespace_selector.match_names,
            &mut problems,
        )
        .map(Some)
    };
    if spec.projects.is_empty() {
        problems.push("projects: the list is empty, so no project can match".to_string());
    }
    let projects = glob_set("projects", &spec.projects, &mut problems);
    let argocd_projects = match &spec.argo_cd {
        None => Some(None),
        Some(a) if a.app_projects.is_empty() => {
            problems.push("argoCD.appProjects: the list is empty, so no AppProject can match".to_string());
            None
        }
        Some(a) => glob_set("argoCD.appProjects", &a.app_projects, &mut problems).map(Some),
    };

    let (ld, lm) = (spec.lifetime.default, spec.lifetime.max);
    if lm.get() > MAX_POLICY_LIFETIME_DAYS {
        problems.push(format!(
            "lifetime.max: {lm} is longer than GitLab's {MAX_POLICY_LIFETIME_DAYS}d limit"
        ));
    }
    if ld > lm {
        problems.push(format!("lifetime.default: {ld} is longer than lifetime.max {lm}"));
    }
    if let (Some(d), Some(m)) = (spec.renew_before.default, spec.renew_before.min)
        && d < m
    {
        problems.push(format!(
            "renewBefore.default: {d} is shorter than renewBefore.min {m}"
        ));
    }
    if let Some(m) = spec.renew_before.min
        && m >= lm
    {
        problems.push(format!(
            "renewBefore.min: {m} is not shorter than lifetime.max {lm}, so no lifetime fits"
        ));
    }
    let gitlab_access = match spec.gitlab_access.as_ref().map(super::delegation::compile_access) {
        None => None,
        Some(Ok(source)) => Some(source),
        Some(Err(found)) => {
            problems.extend(found);
            None
        }
    };
    let credential_kinds = if spec.credential_kinds.is_empty() {
        CredentialKind::DEFAULT_ALLOWED.to_vec()
    } else {
        spec.credential_kinds.clone()
    };
    if credential_kinds.contains(&CredentialKind::GroupAccessToken) && spec.groups.is_empty() {
        problems.push(
            "credentialKinds: GroupAccessToken is allowed but groups is empty, so no group can match"
                .to_string(),
        );
    }
    if spec.group_tokens == crate::crd::GroupTokens::SharedPerNamespace
        && !credential_kinds.contains(&CredentialKind::GroupAccessToken)
    {
        problems
            .push("groupTokens: SharedPerNamespace needs GroupAccessToken in credentialKinds".to_string());
    }
    let groups = if spec.groups.is_empty() {
        Some(None)
    } else {
        glob_set("groups", &spec.groups, &mut problems).map(Some)
    };
    match (namespace_globs, projects, argocd_projects, groups) {
        (Some(namespace_globs), Some(projects), Some(argocd_projects), Some(groups))
            if problems.is_empty() =>
        {
            Ok(CompiledPolicy {
                name,
                connection: spec.connection_ref.as_ref().map(|c| c.name.clone()),
                namespace_globs,
                match_labels: spec.namespace_selector.match_labels.clone(),
                projects,
                project_patterns: spec.projects.clone(),
                consumers: spec.consumers.clone(),
                scopes: if spec.scopes.is_empty() {
                    DEFAULT_ALLOWED_SCOPES.to_vec()
                } else {
                    spec.scopes.clone()
                },
                max_access_level: spec.max_access_level,
                lifetime_default: ld,
                lifetime_max: lm,
                renew_before_default: spec.renew_before.default,
                renew_before_min: spec.renew_before.min,
                rotation_strategy: spec.rotation_strategy,
                overlap_grace: spec.overlap_grace,
                allow_retain: spec.allow_retain,
                argocd_projects,
                gitlab_access,
                namespace_ceiling: None,
                credential_kinds,
                groups,
                group_patterns: spec.groups.clone(),
                allow_deploy_key_push: spec.allow_deploy_key_push,
                group_tokens: spec.group_tokens,
            })
        }
        _ => Err(UnusablePolicy { name, problems }),
    }
}

impl CompiledPolicy {
    /// Whether the namespace selector matches (names and labels, both when both are given).
    pub fn selects_namespace(&self, name: &str, labels: &BTreeMap<String, String>) -> bool {
        let names_ok = self.namespace_globs.as_ref().is_none_or(|g| g.is_match(name));
        let labels_ok = self.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v));
        let ceiling_ok = self.namespace_ceiling.as_ref().is_none_or(|g| g.is_match(name));
        names_ok && labels_ok && ceiling_ok
    }

    /// Limits the namespaces the policy may select to these name globs (a GitLab-kept policy's
    /// ceiling).
    pub fn with_namespace_ceiling(mut self, patterns: &[String]) -> Result<Self, String> {
        self.namespace_ceiling = Some(namespace_globs(patterns)?);
        Ok(self)
    }

    /// Whether the policy governs this connection.
    pub fn selects_connection(&self, connection: &str) -> bool {
        self.connection.as_deref().is_none_or(|c| c == connection)
    }

    /// Whether the policy selects a request of this Argo CD AppProject (`None`: not an Argo CD
    /// request, selected as before). Only policies with `argoCD` select Argo CD requests.
    pub fn selects_argocd_project(&self, app_project: Option<&str>) -> bool {
        match (app_project, &self.argocd_projects) {
            (None, _) => true,
            (Some(p), Some(globs)) => globs.is_match(p),
            (Some(_), None) => false,
        }
    }

    /// Whether a canonical project path matches one of the project globs (case-sensitive).
    pub fn matches_project(&self, path: &str) -> bool {
        self.projects.is_match(path)
    }

    /// Whether group-level credentials may be minted on this group (its canonical full path).
    pub fn matches_group(&self, path: &str) -> bool {
        self.groups.as_ref().is_some_and(|g| g.is_match(path))
    }
}
