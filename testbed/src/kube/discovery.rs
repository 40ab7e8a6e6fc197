//! Legacy discovery documents (`/api`, `/apis`, per group/version), `/version`.

use serde_json::{Value, json};

use super::resources::ResourceDef;
use super::state::State;

/// `GET /api`.
pub fn api_versions(addr: &str) -> Value {
    json!({"kind":"APIVersions","versions":["v1"],
        "serverAddressByClientCIDRs":[{"clientCIDR":"0.0.0.0/0","serverAddress":addr}]})
}

fn version_order(a: &str, b: &str) -> std::cmp::Ordering {
    // Kubernetes version priority: GA > beta > alpha, higher numbers first.
    fn key(v: &str) -> (i32, i64, i64) {
        let Some(rest) = v.strip_prefix('v') else {
            return (0, 0, 0);
        };
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let major = digits.parse().unwrap_or(0);
        let tail = &rest[digits.len()..];
        let (stage, minor) = if tail.is_empty() {
            (3, 0)
        } else if let Some(n) = tail.strip_prefix("beta") {
            (2, n.parse().unwrap_or(0))
        } else if let Some(n) = tail.strip_prefix("alpha") {
            (1, n.parse().unwrap_or(0))
        } else {
            (0, 0)
        };
        (stage, major, minor)
    }
    key(b).cmp(&key(a))
}

/// `GET /apis`: every non-core group with its served versions.
pub fn api_groups(st: &State) -> Value {
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for d in st.registry.all() {
        if d.group.is_empty() {
            continue;
        }
        match groups.iter_mut().find(|(g, _)| *g == d.group) {
            Some((_, vs)) => {
                if !vs.contains(&d.version) {
                    vs.push(d.version.clone());
                }
            }
            None => groups.push((d.group.clone(), vec![d.version.clone()])),
        }
    }
    let mut list = Vec::new();
    for (g, mut vs) in groups {
        vs.sort_by(|a, b| version_order(a, b));
        let versions: Vec<Value> = vs
            .iter()
            .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
            .collect();
        list.push(json!({"name": g, "versions": versions, "preferredVersion": versions[0].clone()}));
    }
    list.push(json!({"name":"authorization.k8s.io","versions":[{"groupVersion":"authorization.k8s.io/v1","version":"v1"}],
        "preferredVersion":{"groupVersion":"authorization.k8s.io/v1","version":"v1"}}));
    json!({"kind":"APIGroupList","apiVersion":"v1","groups":list})
}

fn resource_entries(d: &ResourceDef) -> Vec<Value> {
    let mut e = json!({"name": d.plural, "singularName": d.singular, "namespaced": d.namespaced, "kind": d.kind,
        "verbs":["create","delete","deletecollection","get","list","patch","update","watch"]});
    if !d.short_names.is_empty() {
        e["shortNames"] = json!(d.short_names);
    }
    if !d.categories.is_empty() {
        e["categories"] = json!(d.categories);
    }
    let mut out = vec![e];
    if d.status_subresource {
        out.push(
            json!({"name": format!("{}/status", d.plural), "singularName": "", "namespaced": d.namespaced,
            "kind": d.kind, "verbs":["get","patch","update"]}),
        );
    }
    if d.crd.as_ref().is_some_and(|c| c.scale.is_some()) {
        out.push(
            json!({"name": format!("{}/scale", d.plural), "singularName": "", "namespaced": d.namespaced,
            "group": "autoscaling", "version": "v1", "kind": "Scale", "verbs":["get","patch","update"]}),
        );
    }
    if d.kind == "ServiceAccount" && d.group.is_empty() {
        out.push(
            json!({"name":"serviceaccounts/token","singularName":"","namespaced":true,
            "group":"authentication.k8s.io","version":"v1","kind":"TokenRequest","verbs":["create"]}),
        );
    }
    if d.kind == "Namespace" {
        out.push(json!({"name":"namespaces/finalize","singularName":"","namespaced":false,"kind":"Namespace","verbs":["update"]}));
    }
    out
}

/// `GET /api/v1` or `/apis/{g}/{v}`; None when the group/version is not served.
pub fn resource_list(st: &State, group: &str, version: &str) -> Option<Value> {
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    let mut resources: Vec<Value> = st
        .registry
        .all()
        .iter()
        .filter(|d| d.group == group && d.version == version)
        .flat_map(|d| resource_entries(d))
        .collect();
    if group == "authorization.k8s.io" && version == "v1" {
        resources.push(
            json!({"name":"selfsubjectaccessreviews","singularName":"","namespaced":false,
            "kind":"SelfSubjectAccessReview","verbs":["create"]}),
        );
        resources.push(
            json!({"name":"selfsubjectrulesreviews","singularName":"","namespaced":false,
            "kind":"SelfSubjectRulesReview","verbs":["create"]}),
        );
    }
    if resources.is_empty() {
        return None;
    }
    Some(json!({"kind":"APIResourceList","apiVersion":"v1","groupVersion":gv,"resources":resources}))
}

/// `GET /version`.
pub fn version() -> Value {
    json!({"major":"1","minor":"33","gitVersion":"v1.33.0","gitCommit":"0000000000000000000000000000000000000000",
        "gitTreeState":"clean","buildDate":"2025-01-01T00:00:00Z","goVersion":"go1.24.0","compiler":"gc",
        "platform":"linux/amd64"})
}

/// `/openapi/v2` body: a protobuf gnostic Document with only `swagger: "2.0"` (no definitions, so
/// kubectl's client-side schema validation finds nothing to check and skips).
pub const OPENAPI_V2_PB: &[u8] = &[0x0a, 0x03, 0x32, 0x2e, 0x30];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_priority() {
        let mut v = vec!["v1beta1", "v1", "v2alpha1", "v2", "v1beta2"];
        v.sort_by(|a, b| version_order(a, b));
        assert_eq!(v, ["v2", "v1", "v1beta2", "v1beta1", "v2alpha1"]);
    }
}
