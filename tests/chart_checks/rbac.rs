//! RBAC: the rendered bindings grant exactly what the operator's code needs, with no wildcards and a comment per rule.

use std::collections::BTreeSet;

use serde_json::Value;

use super::Rendered;
use crate::{NAMESPACE, render, render_all_features};

/// One permission: a verb on a resource (optionally one named object), cluster-wide (`namespace: None`) or in a
/// namespace.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Grant {
    /// `None`: every namespace (and cluster-scoped objects).
    pub namespace: Option<String>,
    /// API group (`""` is core).
    pub group: String,
    /// Resource or `resource/subresource`.
    pub resource: String,
    /// Verb.
    pub verb: String,
    /// The one object name the rule is limited to.
    pub name: Option<String>,
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|s| s.as_str().expect("RBAC lists hold strings").to_string())
        .collect()
}

/// Everything the rendered bindings grant to ServiceAccount `sa` of namespace `sa_namespace`.
pub fn effective_grants(r: &Rendered, sa: &str, sa_namespace: &str) -> BTreeSet<Grant> {
    let mut out = BTreeSet::new();
    for binding in r.kinds(&["ClusterRoleBinding", "RoleBinding"]) {
        let ours = binding["subjects"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| s["kind"] == "ServiceAccount" && s["name"] == sa && s["namespace"] == sa_namespace);
        if !ours {
            continue;
        }
        let scope = match binding["kind"].as_str() {
            Some("RoleBinding") => Some(binding["metadata"]["namespace"].as_str().unwrap().to_string()),
            _ => None,
        };
        let role_kind = binding["roleRef"]["kind"].as_str().unwrap();
        let role_name = &binding["roleRef"]["name"];
        let role = r
            .kinds(&[role_kind])
            .into_iter()
            .find(|role| {
                &role["metadata"]["name"] == role_name
                    && (role_kind == "ClusterRole"
                        || role["metadata"]["namespace"] == binding["metadata"]["namespace"])
            })
            .unwrap_or_else(|| panic!("{binding} refers to a {role_kind} the chart does not render"));
        for rule in role["rules"].as_array().unwrap() {
            let names = strings(&rule["resourceNames"]);
            let names: Vec<Option<String>> = if names.is_empty() {
                vec![None]
            } else {
                names.into_iter().map(Some).collect()
            };
            for group in strings(&rule["apiGroups"]) {
                for resource in strings(&rule["resources"]) {
                    for verb in strings(&rule["verbs"]) {
                        for name in &names {
                            out.insert(Grant {
                                namespace: scope.clone(),
                                group: group.clone(),
                                resource: resource.clone(),
                                verb: verb.clone(),
                                name: name.clone(),
                            });
                        }
                    }
                }
            }
        }
    }
    out
}

/// What the operator's code does with the API (see the comments in templates/rbac.yaml): group, resource, verbs.
const CLUSTER_WIDE: &[(&str, &str, &[&str])] = &[
    (
        "gitlabtokens.io",
        "gitlabconnections",
        &["get", "list", "watch", "patch"],
    ),
    (
        "gitlabtokens.io",
        "gitlabtokenpolicies",
        &["get", "list", "watch"],
    ),
    ("gitlabtokens.io", "gitlabtokens", &["get", "list", "watch"]),
    ("gitlabtokens.io", "gitlabconnections/status", &["patch"]),
    ("gitlabtokens.io", "gitlabtokenpolicies/status", &["patch"]),
    ("", "secrets", &["get", "list", "watch"]),
    ("", "namespaces", &["get", "list", "watch"]),
    ("events.k8s.io", "events", &["create", "patch"]),
    (
        "source.toolkit.fluxcd.io",
        "gitrepositories",
        &["get", "list", "watch"],
    ),
    (
        "source.toolkit.fluxcd.io",
        "ocirepositories",
        &["get", "list", "watch"],
    ),
    (
        "source.toolkit.fluxcd.io",
        "helmrepositories",
        &["get", "list", "watch"],
    ),
    (
        "image.toolkit.fluxcd.io",
        "imagerepositories",
        &["get", "list", "watch"],
    ),
    (
        "notification.toolkit.fluxcd.io",
        "providers",
        &["get", "list", "watch"],
    ),
];
/// Writes in every served namespace.
const PER_SERVED_NAMESPACE: &[(&str, &str, &[&str])] = &[
    ("gitlabtokens.io", "gitlabtokens", &["create", "patch", "delete"]),
    ("gitlabtokens.io", "gitlabtokens/status", &["update"]),
    ("", "secrets", &["create", "patch", "delete"]),
    ("source.toolkit.fluxcd.io", "gitrepositories", &["patch"]),
    ("source.toolkit.fluxcd.io", "ocirepositories", &["patch"]),
    ("source.toolkit.fluxcd.io", "helmrepositories", &["patch"]),
    ("image.toolkit.fluxcd.io", "imagerepositories", &["patch"]),
    ("notification.toolkit.fluxcd.io", "providers", &["patch"]),
];
/// Argo CD (all-features values): Applications read cluster-wide.
const ARGOCD_CLUSTER_WIDE: &[(&str, &str, &[&str])] =
    &[("argoproj.io", "applications", &["get", "list", "watch"])];
/// Argo CD: its two CRDs, read by name (a CRD being removed keeps the tokens).
fn argocd_crd_grants() -> BTreeSet<Grant> {
    ["applications.argoproj.io", "appprojects.argoproj.io"]
        .into_iter()
        .map(|name| Grant {
            namespace: None,
            group: "apiextensions.k8s.io".into(),
            resource: "customresourcedefinitions".into(),
            verb: "get".into(),
            name: Some(name.into()),
        })
        .collect()
}
/// Argo CD: the rotation's hard refresh, wherever tenant writes are granted.
const ARGOCD_PER_SERVED_NAMESPACE: &[(&str, &str, &[&str])] = &[("argoproj.io", "applications", &["patch"])];
/// Argo CD: AppProjects, read in Argo CD's namespace only.
const ARGOCD_NAMESPACE: &[(&str, &str, &[&str])] =
    &[("argoproj.io", "appprojects", &["get", "list", "watch"])];

/// Writes in the operator's namespace.
const OPERATOR_NAMESPACE: &[(&str, &str, &[&str])] =
    &[("", "secrets", &["patch"]), ("", "configmaps", &["create"])];

/// Writes in the operator's namespace: the table, plus read and replace of the handover ConfigMap only.
fn operator_namespace_grants() -> BTreeSet<Grant> {
    let mut want = expand(Some(NAMESPACE), OPERATOR_NAMESPACE);
    for verb in ["get", "update"] {
        want.insert(Grant {
            namespace: Some(NAMESPACE.into()),
            group: String::new(),
            resource: "configmaps".into(),
            verb: verb.into(),
            name: Some("gitlab-token-operator-handover".into()),
        });
    }
    want
}

fn expand(scope: Option<&str>, table: &[(&str, &str, &[&str])]) -> BTreeSet<Grant> {
    table
        .iter()
        .flat_map(|(g, r, verbs)| {
            verbs.iter().map(move |v| Grant {
                namespace: scope.map(str::to_string),
                group: g.to_string(),
                resource: r.to_string(),
                verb: v.to_string(),
                name: None,
            })
        })
        .collect()
}

#[test]
fn rbac_grants_exactly_what_the_code_needs_and_no_wildcards() {
    // Default values: tenant writes cluster-wide.
    let r = render(&[]);
    let sa = r.one("Deployment")["spec"]["template"]["spec"]["serviceAccountName"]
        .as_str()
        .unwrap()
        .to_string();
    let have = effective_grants(&r, &sa, NAMESPACE);
    let mut want = expand(None, CLUSTER_WIDE);
    want.extend(expand(None, PER_SERVED_NAMESPACE));
    want.extend(operator_namespace_grants());
    want.extend(lease_grants());
    assert_eq!(have, want, "default RBAC differs from what the operator needs");

    // Argo CD on, every namespace served: Applications cluster-wide, AppProjects in its namespace.
    let argo = render(&["--set", "argocd.enabled=true", "--set", "argocd.namespace=gitops"]);
    let have = effective_grants(&argo, &sa, NAMESPACE);
    let mut want = expand(None, CLUSTER_WIDE);
    want.extend(expand(None, PER_SERVED_NAMESPACE));
    want.extend(expand(None, ARGOCD_CLUSTER_WIDE));
    want.extend(argocd_crd_grants());
    want.extend(expand(None, ARGOCD_PER_SERVED_NAMESPACE));
    want.extend(expand(Some("gitops"), ARGOCD_NAMESPACE));
    want.extend(operator_namespace_grants());
    want.extend(lease_grants());
    assert_eq!(have, want, "Argo CD RBAC differs from what the operator needs");

    // Leader election switched off (development): no Lease access at all.
    let off = render(&["--set", "leaderElection.enabled=false"]);
    let have = effective_grants(&off, &sa, NAMESPACE);
    let mut want = expand(None, CLUSTER_WIDE);
    want.extend(expand(None, PER_SERVED_NAMESPACE));
    want.extend(operator_namespace_grants());
    assert_eq!(
        have, want,
        "RBAC without leader election differs from what the operator needs"
    );

    // watchNamespaces: tenant writes only there and in Argo CD's namespace (Argo CD on); leader
    // election: one named Lease.
    let r = render_all_features();
    let have = effective_grants(&r, &sa, NAMESPACE);
    let mut want = expand(None, CLUSTER_WIDE);
    want.extend(expand(None, ARGOCD_CLUSTER_WIDE));
    want.extend(argocd_crd_grants());
    for ns in ["team-a", "team-b", "argocd"] {
        want.extend(expand(Some(ns), PER_SERVED_NAMESPACE));
        want.extend(expand(Some(ns), ARGOCD_PER_SERVED_NAMESPACE));
    }
    want.extend(expand(Some("argocd"), ARGOCD_NAMESPACE));
    want.extend(operator_namespace_grants());
    want.extend(lease_grants());
    assert_eq!(
        have, want,
        "all-features RBAC differs from what the operator needs"
    );

    for r in [render(&[]), render_all_features()] {
        for doc in r.kinds(&["ClusterRole", "Role"]) {
            for rule in doc["rules"].as_array().unwrap() {
                for field in ["apiGroups", "resources", "verbs", "resourceNames"] {
                    for v in rule[field].as_array().into_iter().flatten() {
                        assert!(!v.as_str().unwrap().contains('*'), "wildcard in {field}: {rule}");
                    }
                }
                assert!(rule.get("nonResourceURLs").is_none());
            }
        }
    }
}

#[test]
fn every_rbac_rule_carries_a_comment_saying_what_needs_it() {
    for r in [render(&[]), render_all_features()] {
        let mut rules = 0;
        for doc in r.raw_docs() {
            if !(doc.contains("\nkind: ClusterRole\n") || doc.contains("\nkind: Role\n")) {
                continue;
            }
            let lines: Vec<&str> = doc.lines().collect();
            for (i, line) in lines.iter().enumerate() {
                if line.trim_start().starts_with("- apiGroups:") {
                    rules += 1;
                    let prev = lines[i - 1].trim_start();
                    assert!(
                        prev.starts_with('#'),
                        "RBAC rule without a comment:\n{}",
                        lines[i - 1..=i].join("\n")
                    );
                }
            }
        }
        assert!(rules >= 15, "found only {rules} rules");
    }
}

/// Leader election's grants in the release namespace: create any Lease, get and patch the chart's one.
fn lease_grants() -> BTreeSet<Grant> {
    let mut want = expand(Some(NAMESPACE), &[("coordination.k8s.io", "leases", &["create"])]);
    for verb in ["get", "patch"] {
        want.insert(Grant {
            namespace: Some(NAMESPACE.into()),
            group: "coordination.k8s.io".into(),
            resource: "leases".into(),
            verb: verb.into(),
            name: Some("gto-gitlab-token-operator".into()),
        });
    }
    want
}
