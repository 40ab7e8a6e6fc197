//! RBAC authorization evaluated from the stored Role/ClusterRole/(Cluster)RoleBinding objects,
//! plus the bootstrap policy (system:masters, discovery, self-reviews), with real 403 texts.

use axum::response::Response;
use serde_json::{Value, json};

use super::status::{ApiError, Subject};

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

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(String::from))
        .collect()
}

/// Rules of `rules` the user does not hold (in `namespace`, or cluster-wide when empty).
fn missing_rules(st: &State, user: &UserInfo, rules: &[Value], namespace: &str) -> Vec<String> {
    let mut missing = Vec::new();
    for rule in rules {
        let verbs = strs(&rule["verbs"]);
        let urls = strs(&rule["nonResourceURLs"]);
        let groups = strs(&rule["apiGroups"]);
        let resources = strs(&rule["resources"]);
        let names = strs(&rule["resourceNames"]);
        let names = if names.is_empty() {
            vec![String::new()]
        } else {
            names
        };
        let mut held = true;
        for verb in &verbs {
            for path in &urls {
                let a = Attrs {
                    verb: verb.clone(),
                    path: path.clone(),
                    ..Default::default()
                };
                held &= authorize(st, user, &a);
            }
            for g in &groups {
                for res in &resources {
                    let (resource, sub) = res.split_once('/').unwrap_or((res.as_str(), ""));
                    for n in &names {
                        let a = Attrs {
                            verb: verb.clone(),
                            group: g.clone(),
                            resource: resource.into(),
                            subresource: sub.into(),
                            namespace: namespace.into(),
                            name: n.clone(),
                            path: String::new(),
                        };
                        held &= authorize(st, user, &a);
                    }
                }
            }
        }
        if !held {
            let q = |v: &[String]| v.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(" ");
            let mut parts = Vec::new();
            if !groups.is_empty() {
                parts.push(format!("APIGroups:[{}]", q(&groups)));
            }
            if !resources.is_empty() {
                parts.push(format!("Resources:[{}]", q(&resources)));
            }
            if !urls.is_empty() {
                parts.push(format!("NonResourceURLs:[{}]", q(&urls)));
            }
            parts.push(format!("Verbs:[{}]", q(&verbs)));
            missing.push(format!("{{{}}}", parts.join(", ")));
        }
    }
    missing
}

/// RBAC escalation prevention: a user may only create/update roles granting permissions it
/// holds (or with `escalate`), and bindings to roles whose permissions it holds (or with `bind`).
pub fn check_escalation(
    st: &State,
    user: &UserInfo,
    kind: &str,
    namespace: &str,
    obj: &Value,
) -> Result<(), ApiError> {
    if user.groups.iter().any(|g| g == "system:masters") {
        return Ok(());
    }
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let group = "rbac.authorization.k8s.io";
    let (plural, rules, special) = match kind {
        "Role" | "ClusterRole" => {
            let plural = if kind == "Role" { "roles" } else { "clusterroles" };
            let a = Attrs {
                verb: "escalate".into(),
                group: group.into(),
                resource: plural.into(),
                namespace: namespace.into(),
                name: name.into(),
                ..Default::default()
            };
            (
                plural,
                obj["rules"].as_array().cloned().unwrap_or_default(),
                authorize(st, user, &a),
            )
        }
        "RoleBinding" | "ClusterRoleBinding" => {
            let plural = if kind == "RoleBinding" {
                "rolebindings"
            } else {
                "clusterrolebindings"
            };
            let rr = &obj["roleRef"];
            let role_res = if rr["kind"] == "Role" {
                "roles"
            } else {
                "clusterroles"
            };
            let a = Attrs {
                verb: "bind".into(),
                group: group.into(),
                resource: role_res.into(),
                namespace: namespace.into(),
                name: rr["name"].as_str().unwrap_or_default().into(),
                ..Default::default()
            };
            (plural, role_rules(st, rr, namespace), authorize(st, user, &a))
        }
        _ => return Ok(()),
    };
    if special {
        return Ok(());
    }
    let missing = missing_rules(st, user, &rules, namespace);
    if missing.is_empty() {
        return Ok(());
    }
    let groups: Vec<String> = user.groups.iter().map(|g| format!("{g:?}")).collect();
    let why = format!(
        "user {:?} (groups=[{}]) is attempting to grant RBAC permissions not currently held:\n{}",
        user.name,
        groups.join(" "),
        missing.join("\n")
    );
    Err(ApiError::forbidden(
        &Subject {
            kind: plural,
            group,
            name,
        },
        &why,
    ))
}

/// Answers a SelfSubjectAccessReview for the requesting user.
pub fn self_review(
    st: &State,
    user: &UserInfo,
    headers: &http::HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let mut review = super::http::parse_body(headers, body)?;
    let spec = &review["spec"];
    let attrs = if let Some(ra) = spec.get("resourceAttributes") {
        let s = |k: &str| ra[k].as_str().unwrap_or_default().to_string();
        Attrs {
            verb: s("verb"),
            group: s("group"),
            resource: s("resource"),
            subresource: s("subresource"),
            namespace: s("namespace"),
            name: s("name"),
            path: String::new(),
        }
    } else if let Some(nr) = spec.get("nonResourceAttributes") {
        Attrs {
            verb: nr["verb"].as_str().unwrap_or_default().into(),
            path: nr["path"].as_str().unwrap_or_default().into(),
            ..Default::default()
        }
    } else {
        let c = super::status::required("spec.resourceAttributes");
        return Err(ApiError::invalid(
            &Subject {
                kind: "SelfSubjectAccessReview",
                group: "authorization.k8s.io",
                name: "",
            },
            &[c],
        ));
    };
    let allowed = authorize(st, user, &attrs);
    review["status"] = if allowed {
        json!({"allowed": true})
    } else {
        json!({"allowed": false})
    };
    review["apiVersion"] = json!("authorization.k8s.io/v1");
    review["kind"] = json!("SelfSubjectAccessReview");
    if review.get("metadata").is_none() {
        review["metadata"] = json!({});
    }
    Ok(super::http::json_response(201, &review))
}

/// Answers a SelfSubjectRulesReview (`kubectl auth can-i --list`): every rule bound to the
/// user cluster-wide or in `spec.namespace`, plus the bootstrap discovery rules.
pub fn rules_review(
    st: &State,
    user: &UserInfo,
    headers: &http::HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let mut review = super::http::parse_body(headers, body)?;
    let ns = review
        .pointer("/spec/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let mut rules: Vec<Value> = Vec::new();
    if user.groups.iter().any(|g| g == "system:masters") {
        rules.push(json!({"apiGroups":["*"],"resources":["*"],"verbs":["*"]}));
        rules.push(json!({"nonResourceURLs":["*"],"verbs":["*"]}));
    }
    if user.groups.iter().any(|g| g == "system:authenticated") {
        rules.push(json!({"apiGroups":["authorization.k8s.io"],"resources":["selfsubjectaccessreviews","selfsubjectrulesreviews"],"verbs":["create"]}));
        rules.push(json!({"nonResourceURLs": DISCOVERY, "verbs":["get"]}));
    }
    rules.push(json!({"nonResourceURLs": PUBLIC, "verbs":["get"]}));
    for crb in st.store.list("clusterrolebindings", None, None).items {
        if crb["subjects"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| subject_matches(s, user, ""))
        {
            rules.extend(role_rules(st, &crb["roleRef"], ""));
        }
    }
    if !ns.is_empty() {
        for rb in st.store.list("rolebindings", Some(&ns), None).items {
            if rb["subjects"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|s| subject_matches(s, user, &ns))
            {
                rules.extend(role_rules(st, &rb["roleRef"], &ns));
            }
        }
    }
    let (resource, non_resource): (Vec<Value>, Vec<Value>) = rules
        .into_iter()
        .partition(|r| r.get("nonResourceURLs").is_none());
    review["status"] =
        json!({"resourceRules": resource, "nonResourceRules": non_resource, "incomplete": false});
    review["apiVersion"] = json!("authorization.k8s.io/v1");
    review["kind"] = json!("SelfSubjectRulesReview");
    if review.get("metadata").is_none() {
        review["metadata"] = json!({});
    }
    Ok(super::http::json_response(201, &review))
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
