//! Policies kept in a GitLab repository (issue 11): the file's format, its validation (the same
//! schema and the same problems as `GitLabTokenPolicy` objects), and the cluster-side ceiling
//! that cuts every policy in it down to what the cluster admin allows.
//!
//! The file holds one or more YAML documents, each a complete `GitLabTokenPolicy` object
//! (`apiVersion: gitlabtokens.io/v1alpha1`, `kind: GitLabTokenPolicy`, `metadata.name`, `spec`).
//! Its policies govern only the connection that names the file and are reported as
//! `gitlab:<connection>/<name>`.

use std::collections::BTreeSet;

use serde::Deserialize;

use super::compile::{CompiledPolicy, DEFAULT_ALLOWED_SCOPES, compile_policy};
use crate::crd::{Days, GitLabTokenPolicy, ObjectName, PolicyCeiling};

/// The name a GitLab-kept policy is reported under.
pub fn policy_name(connection: &str, name: &str) -> String {
    format!("gitlab:{connection}/{name}")
}

/// Parses, validates and bounds a policy file. `Err` lists every problem, one sentence each,
/// prefixed with the document (and policy name) it is in; nothing of an invalid file applies.
pub fn load(
    text: &str,
    connection: &str,
    ceiling: &PolicyCeiling,
) -> Result<Vec<CompiledPolicy>, Vec<String>> {
    let mut problems = Vec::new();
    let mut names = BTreeSet::new();
    let mut out = Vec::new();
    if let Err(e) = super::compile::namespace_globs(&ceiling.namespaces) {
        return Err(vec![format!(
            "the connection's policyFile.ceiling.namespaces: {e}"
        )]);
    }
    for (i, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let n = i + 1;
        let value = match serde_json::Value::deserialize(doc) {
            Ok(serde_json::Value::Null) => continue,
            Ok(v) => v,
            Err(e) => {
                problems.push(format!("document {n}: not YAML: {e}"));
                break;
            }
        };
        let name = value
            .pointer("/metadata/name")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string();
        let at = if name.is_empty() {
            format!("document {n}")
        } else {
            format!("document {n} ({name})")
        };
        let api_version = value.get("apiVersion").and_then(|v| v.as_str());
        let kind = value.get("kind").and_then(|v| v.as_str());
        if api_version != Some("gitlabtokens.io/v1alpha1") || kind != Some("GitLabTokenPolicy") {
            problems.push(format!(
                "{at}: apiVersion/kind must be gitlabtokens.io/v1alpha1 GitLabTokenPolicy, not {}/{}",
                api_version.unwrap_or("?"),
                kind.unwrap_or("?")
            ));
            continue;
        }
        if name.is_empty() {
            problems.push(format!("{at}: metadata.name is required"));
            continue;
        }
        if !names.insert(name.clone()) {
            problems.push(format!("{at}: a second policy named {name}"));
            continue;
        }
        let policy: GitLabTokenPolicy = match serde_json::from_value(value) {
            Ok(p) => p,
            Err(e) => {
                problems.push(format!("{at}: {e}"));
                continue;
            }
        };
        if let Some(other) = policy
            .spec
            .connection_ref
            .as_ref()
            .filter(|c| c.name != connection)
        {
            problems.push(format!(
                "{at}: connectionRef: a policy kept in GitLab governs only connection {connection}, not {}",
                other.name
            ));
            continue;
        }
        // Validated exactly as the object would be in the cluster, before the ceiling.
        if let Err(u) = compile_policy(&policy) {
            problems.extend(u.problems.into_iter().map(|p| format!("{at}: {p}")));
            continue;
        }
        match bound(policy, connection, ceiling) {
            Ok(bounded) => match compile_policy(&bounded) {
                Ok(c) => match c.with_namespace_ceiling(&ceiling.namespaces) {
                    Ok(c) => out.push(c),
                    Err(e) => problems.push(format!("{at}: {e}")),
                },
                Err(u) => problems.extend(
                    u.problems
                        .into_iter()
                        .map(|p| format!("{at}: within the cluster's ceiling, {p}")),
                ),
            },
            Err(e) => problems.push(format!("{at}: {e}")),
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// Cuts a policy down to the ceiling: this connection only, the lower role, the common scopes,
/// the shorter lifetime; renamed `gitlab:<connection>/<name>`.
fn bound(
    mut p: GitLabTokenPolicy,
    connection: &str,
    ceiling: &PolicyCeiling,
) -> Result<GitLabTokenPolicy, String> {
    let name = p.metadata.name.clone().unwrap_or_default();
    p.metadata.name = Some(policy_name(connection, &name));
    p.spec.connection_ref = Some(ObjectName {
        name: connection.to_string(),
    });
    p.spec.max_access_level = p.spec.max_access_level.min(ceiling.max_access_level);
    let allowed = |s: &[crate::crd::Scope]| {
        if s.is_empty() {
            DEFAULT_ALLOWED_SCOPES.to_vec()
        } else {
            s.to_vec()
        }
    };
    let ceiling_scopes = allowed(&ceiling.scopes);
    let scopes: Vec<_> = allowed(&p.spec.scopes)
        .into_iter()
        .filter(|s| ceiling_scopes.contains(s))
        .collect();
    if scopes.is_empty() {
        return Err(format!(
            "scopes: none of the policy's scopes is within the cluster's ceiling ({})",
            ceiling_scopes
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    p.spec.scopes = scopes;
    let max: Days = p.spec.lifetime.max.min(ceiling.max_lifetime);
    p.spec.lifetime.max = max;
    p.spec.lifetime.default = p.spec.lifetime.default.min(max);
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        crd::{AccessLevel, Scope},
        policy::{NamespaceInfo, PolicyDecision, PolicySet, TokenRequest},
    };

    fn ceiling() -> PolicyCeiling {
        PolicyCeiling {
            namespaces: vec!["svc-*".into()],
            max_access_level: AccessLevel::Developer,
            scopes: vec![Scope::ReadRepository, Scope::ReadApi],
            max_lifetime: Days::new(30).expect("days"),
        }
    }

    const FILE: &str = "apiVersion: gitlabtokens.io/v1alpha1
kind: GitLabTokenPolicy
metadata: {name: payments}
spec:
  namespaceSelector: {matchNames: ['*']}
  projects: ['acme/payments/**']
  scopes: [read_repository, api]
  maxAccessLevel: maintainer
  lifetime: {default: 60d, max: 90d}
---
apiVersion: gitlabtokens.io/v1alpha1
kind: GitLabTokenPolicy
metadata: {name: docs}
spec:
  namespaceSelector: {matchNames: ['docs']}
  projects: ['acme/docs/*']
";

    fn req(level: AccessLevel, scopes: Vec<Scope>) -> TokenRequest {
        TokenRequest {
            connection: "gitlab".into(),
            project_path: "acme/payments/api".into(),
            consumers: vec![],
            scopes,
            access_level: level,
            lifetime: None,
            renew_before: None,
            argocd_project: None,
            kind: Default::default(),
            group_path: None,
            write: false,
        }
    }

    fn ns(name: &str) -> NamespaceInfo {
        NamespaceInfo {
            name: name.into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_valid_file_is_bounded_by_the_ceiling() {
        let policies = load(FILE, "gitlab", &ceiling()).expect("valid");
        let names: Vec<_> = policies.iter().map(|p| p.name.clone()).collect();
        assert_eq!(names, ["gitlab:gitlab/payments", "gitlab:gitlab/docs"]);
        let p = &policies[0];
        assert_eq!(p.max_access_level, AccessLevel::Developer);
        assert_eq!(p.scopes, vec![Scope::ReadRepository]);
        assert_eq!(p.lifetime_max.get(), 30);
        assert_eq!(p.lifetime_default.get(), 30);
        assert_eq!(p.connection.as_deref(), Some("gitlab"));
        let set = PolicySet::compile_with(&[], policies);
        let allowed = |level, scopes, namespace: &str| {
            matches!(
                set.evaluate(&req(level, scopes), &ns(namespace)),
                PolicyDecision::Allowed(_)
            )
        };
        assert!(allowed(
            AccessLevel::Developer,
            vec![Scope::ReadRepository],
            "svc-pay"
        ));
        // Beyond the ceiling: role, scope, namespace.
        assert!(!allowed(
            AccessLevel::Maintainer,
            vec![Scope::ReadRepository],
            "svc-pay"
        ));
        assert!(!allowed(AccessLevel::Reporter, vec![Scope::Api], "svc-pay"));
        assert!(!allowed(
            AccessLevel::Reporter,
            vec![Scope::ReadRepository],
            "kube-system"
        ));
        let mut other = req(AccessLevel::Reporter, vec![Scope::ReadRepository]);
        other.connection = "elsewhere".into();
        assert!(matches!(
            set.evaluate(&other, &ns("svc-pay")),
            PolicyDecision::Denied(_)
        ));
    }

    #[test]
    fn invalid_files_name_every_problem_like_policy_objects() {
        let bad = "apiVersion: gitlabtokens.io/v1alpha1
kind: GitLabTokenPolicy
metadata: {name: a}
spec:
  namespaceSelector: {}
  projects: ['acme/[x']
  maxAccessLevel: owner
---
apiVersion: v1
kind: ConfigMap
metadata: {name: b}
---
apiVersion: gitlabtokens.io/v1alpha1
kind: GitLabTokenPolicy
metadata: {name: c}
spec:
  namespaceSelector: {}
  projects: ['acme/[x']
  connectionRef: {name: other}
---
apiVersion: gitlabtokens.io/v1alpha1
kind: GitLabTokenPolicy
metadata: {name: d}
spec:
  namespaceSelector: {}
  projects: ['acme/x/[y']
";
        let problems = load(bad, "gitlab", &ceiling()).expect_err("invalid");
        assert_eq!(problems.len(), 4, "{problems:#?}");
        assert!(problems[0].starts_with("document 1 (a): "), "{}", problems[0]);
        assert!(
            problems[0].contains("owner"),
            "serde's schema error: {}",
            problems[0]
        );
        assert!(problems[1].contains("ConfigMap"));
        assert!(problems[2].contains("governs only connection gitlab"));
        // The same sentence the policy controller writes for the object.
        assert!(
            problems[3].starts_with("document 4 (d): projects: \"acme/x/[y\" is not a valid glob"),
            "{}",
            problems[3]
        );
        assert_eq!(load("a: [", "gitlab", &ceiling()).expect_err("yaml").len(), 1);
        let no_common_scope = FILE.replace("[read_repository, api]", "[api]");
        let problems = load(&no_common_scope, "gitlab", &ceiling()).expect_err("scopes");
        assert!(
            problems[0].contains("none of the policy's scopes"),
            "{problems:?}"
        );
    }
}
