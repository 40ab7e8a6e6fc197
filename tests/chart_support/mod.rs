//! Helpers of `tests/chart.rs`: parse `helm template` output, compute what the RBAC grants, read PromQL selectors.

use std::collections::BTreeSet;

use serde::Deserialize;
use serde_json::Value;

/// The output of one `helm template`.
pub struct Rendered {
    /// The raw multi-document YAML (comments included).
    pub text: String,
    /// Every non-empty document.
    pub docs: Vec<Value>,
}

impl Rendered {
    /// Parses helm's multi-document output.
    pub fn parse(text: &str) -> Self {
        let docs = serde_yaml_ng::Deserializer::from_str(text)
            .map(|d| {
                Value::deserialize(d).unwrap_or_else(|e| panic!("helm rendered invalid YAML: {e}\n{text}"))
            })
            .filter(|v| !v.is_null())
            .collect();
        Self {
            text: text.to_string(),
            docs,
        }
    }

    /// The only document of `kind`.
    pub fn one(&self, kind: &str) -> &Value {
        let found = self.kinds(&[kind]);
        assert_eq!(found.len(), 1, "expected one {kind}, found {}", found.len());
        found[0]
    }

    /// Every document whose kind is one of `kinds`.
    pub fn kinds(&self, kinds: &[&str]) -> Vec<&Value> {
        self.docs
            .iter()
            .filter(|d| kinds.iter().any(|k| d["kind"] == *k))
            .collect()
    }

    /// The documents as text, with their comments.
    pub fn raw_docs(&self) -> Vec<String> {
        self.text
            .split("\n---\n")
            .map(|d| format!("\n{}\n", d.trim_start_matches("---\n")))
            .collect()
    }
}

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

/// Each metric starting with `prefix` in a PromQL expression, with the label names its selector uses.
pub fn metric_selectors(expr: &str, prefix: &str) -> Vec<(String, BTreeSet<String>)> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find(prefix) {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(tail.len());
        let name = tail[..end].to_string();
        let mut labels = BTreeSet::new();
        let after = &tail[end..];
        let consumed = if let Some(sel) = after.strip_prefix('{') {
            let close = sel.find('}').expect("unclosed selector");
            for matcher in sel[..close].split(',') {
                let label = matcher.split(['=', '!', '~']).next().unwrap_or_default().trim();
                if !label.is_empty() {
                    labels.insert(label.to_string());
                }
            }
            end + 1 + close + 1
        } else {
            end
        };
        out.push((name, labels));
        rest = &tail[consumed..];
    }
    out
}

/// Label names in every `by (…)` clause of a PromQL expression.
pub fn grouping_labels(expr: &str) -> BTreeSet<String> {
    expr.split("by (")
        .skip(1)
        .flat_map(|s| s.split(')').next().unwrap_or_default().split(','))
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_and_groupings_are_read_from_promql() {
        let e =
            r#"sum by (result) (increase(p_a_total{controller="c", result!="s"}[5m])) > p_b - p_c{x=~"y"}"#;
        let got = metric_selectors(e, "p_");
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].0, "p_a_total");
        assert_eq!(
            got[0].1,
            BTreeSet::from(["controller".to_string(), "result".to_string()])
        );
        assert_eq!(got[1], ("p_b".to_string(), BTreeSet::new()));
        assert_eq!(got[2].1, BTreeSet::from(["x".to_string()]));
        assert_eq!(grouping_labels(e), BTreeSet::from(["result".to_string()]));
    }
}
