//! RBAC authorization evaluated from the stored Role/ClusterRole/(Cluster)RoleBinding objects,
//! plus the bootstrap policy (system:masters, discovery, self-reviews), with real 403 texts.

use serde_json::Value;

use super::state::{State, UserInfo};

/// What a request wants to do.
#[derive(Debug, Clone, Default)]
pub struct Attrs {
    /// RBAC verb (`get`, `list`, …) or lower-case HTTP method for non-resource requests.
    pub verb: String,
    /// API group ("" for core).
    pub group: String,
    /// Plural resource; empty for non-resource requests.
    pub resource: String,
    /// Subresource, if any.
    pub subresource: String,
    /// Namespace, empty for cluster scope.
    pub namespace: String,
    /// Object name, if any.
    pub name: String,
    /// Non-resource path (when `resource` is empty).
    pub path: String,
}

const DISCOVERY: &[&str] = &[
    "/api",
    "/api/*",
    "/apis",
    "/apis/*",
    "/openapi",
    "/openapi/*",
    "/version",
    "/version/",
];
const PUBLIC: &[&str] = &["/healthz", "/livez", "/readyz", "/version", "/version/"];

fn any_match(list: &Value, want: &str) -> bool {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .any(|s| s == "*" || s == want)
}

fn path_match(list: &[&str], path: &str) -> bool {
    list.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => path.starts_with(prefix),
        None => *p == path,
    })
}

/// Whether one PolicyRule allows the request.
pub fn rule_allows(rule: &Value, a: &Attrs) -> bool {
    if !any_match(&rule["verbs"], &a.verb) {
        return false;
    }
    if a.resource.is_empty() {
        let urls: Vec<&str> = rule["nonResourceURLs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        return path_match(&urls, &a.path);
    }
    if !any_match(&rule["apiGroups"], &a.group) {
        return false;
    }
    let combined = if a.subresource.is_empty() {
        a.resource.clone()
    } else {
        format!("{}/{}", a.resource, a.subresource)
    };
    let res_ok = rule["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .any(|r| {
            r == "*" || r == combined || (!a.subresource.is_empty() && r == format!("*/{}", a.subresource))
        });
    if !res_ok {
        return false;
    }
    match rule["resourceNames"].as_array().filter(|n| !n.is_empty()) {
        None => true,
        Some(names) => !a.name.is_empty() && names.iter().any(|n| n.as_str() == Some(&a.name)),
    }
}

fn subject_matches(s: &Value, user: &UserInfo, binding_ns: &str) -> bool {
    let name = s["name"].as_str().unwrap_or_default();
    match s["kind"].as_str().unwrap_or_default() {
        "User" => name == user.name,
        "Group" => user.groups.iter().any(|g| g == name),
        "ServiceAccount" => {
            let ns = s["namespace"]
                .as_str()
                .filter(|n| !n.is_empty())
                .unwrap_or(binding_ns);
            user.name == format!("system:serviceaccount:{ns}:{name}")
        }
        _ => false,
    }
}

fn role_rules(st: &State, role_ref: &Value, binding_ns: &str) -> Vec<Value> {
    let name = role_ref["name"].as_str().unwrap_or_default();
    let obj = match role_ref["kind"].as_str() {
        Some("ClusterRole") => st.store.get("clusterroles", "", name),
        Some("Role") => st.store.get("roles", binding_ns, name),
        _ => None,
    };
    obj.and_then(|o| o["rules"].as_array().cloned())
        .unwrap_or_default()
}

/// Decides whether `user` may do `a`; `Err` carries the reason-less denial.
pub fn authorize(st: &State, user: &UserInfo, a: &Attrs) -> bool {
    if user.groups.iter().any(|g| g == "system:masters") {
        return true;
    }
    if a.resource.is_empty() {
        if path_match(PUBLIC, &a.path) {
            return true;
        }
        if user.groups.iter().any(|g| g == "system:authenticated") && path_match(DISCOVERY, &a.path) {
            return true;
        }
    }
    if user.groups.iter().any(|g| g == "system:authenticated")
        && a.group == "authorization.k8s.io"
        && a.verb == "create"
        && (a.resource == "selfsubjectaccessreviews" || a.resource == "selfsubjectrulesreviews")
    {
        return true;
    }
    for crb in st.store.list("clusterrolebindings", None, None).items {
        if crb["subjects"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| subject_matches(s, user, ""))
            && role_rules(st, &crb["roleRef"], "")
                .iter()
                .any(|r| rule_allows(r, a))
        {
            return true;
        }
    }
    if !a.namespace.is_empty() {
        for rb in st.store.list("rolebindings", Some(&a.namespace), None).items {
            if rb["subjects"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|s| subject_matches(s, user, &a.namespace))
                && role_rules(st, &rb["roleRef"], &a.namespace)
                    .iter()
                    .any(|r| rule_allows(r, a))
            {
                return true;
            }
        }
    }
    false
}

/// The 403 message body after `... is forbidden: `.
pub fn denial(user: &UserInfo, a: &Attrs) -> String {
    if a.resource.is_empty() {
        return format!("User \"{}\" cannot {} path \"{}\"", user.name, a.verb, a.path);
    }
    let res = if a.subresource.is_empty() {
        a.resource.clone()
    } else {
        format!("{}/{}", a.resource, a.subresource)
    };
    let scope = if a.namespace.is_empty() {
        "at the cluster scope".to_string()
    } else {
        format!("in the namespace \"{}\"", a.namespace)
    };
    format!(
        "User \"{}\" cannot {} resource \"{res}\" in API group \"{}\" {scope}",
        user.name, a.verb, a.group
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn attrs(verb: &str, res: &str, sub: &str, name: &str) -> Attrs {
        Attrs {
            verb: verb.into(),
            group: "".into(),
            resource: res.into(),
            subresource: sub.into(),
            name: name.into(),
            ..Default::default()
        }
    }

    #[test]
    fn rule_matching_table() {
        let pods = json!({"apiGroups":[""],"resources":["pods"],"verbs":["get"]});
        let status = json!({"apiGroups":[""],"resources":["*/status"],"verbs":["*"]});
        let named =
            json!({"apiGroups":[""],"resources":["secrets"],"verbs":["get","list"],"resourceNames":["s1"]});
        let cases = [
            (&pods, attrs("get", "pods", "", "p"), true),
            (&pods, attrs("get", "pods", "status", "p"), false),
            (&pods, attrs("list", "pods", "", ""), false),
            (&status, attrs("update", "pods", "status", "p"), true),
            (&status, attrs("update", "pods", "", "p"), false),
            (&named, attrs("get", "secrets", "", "s1"), true),
            (&named, attrs("get", "secrets", "", "s2"), false),
            (&named, attrs("list", "secrets", "", ""), false),
        ];
        for (rule, a, want) in cases {
            assert_eq!(rule_allows(rule, &a), want, "{rule} {a:?}");
        }
    }

    #[test]
    fn denial_texts() {
        let u = UserInfo::new("alice", &[]);
        let mut a = attrs("get", "widgets", "", "w1");
        a.group = "example.com".into();
        a.namespace = "team-a".into();
        assert_eq!(
            denial(&u, &a),
            "User \"alice\" cannot get resource \"widgets\" in API group \"example.com\" in the namespace \"team-a\""
        );
        a.namespace.clear();
        assert!(denial(&u, &a).ends_with("at the cluster scope"));
    }
}
