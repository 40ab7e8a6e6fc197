//! Objects a fresh cluster has: the four default namespaces, `cluster-admin` bound to
//! `system:masters`, and the user-facing aggregated ClusterRoles `admin`, `edit` and `view`
//! (their rules come from the `system:aggregate-to-*` roles and any ClusterRole labelled
//! `rbac.authorization.k8s.io/aggregate-to-<role>: "true"`, e.g. a chart's CRD roles).

use serde_json::{Value, json};

use super::objects::now_str;
use super::state::State;
use super::store::Mutation;

fn put(st: &State, storage: &str, name: &str, obj: Value) {
    let _ = st.store.mutate(storage, "", name, |_, _| Ok(Mutation::Put(obj)));
}

fn meta(name: &str, now: &str, labels: Value) -> Value {
    json!({"name":name,"uid":uuid::Uuid::new_v4().to_string(),"creationTimestamp":now,"labels":labels})
}

fn role(name: &str, now: &str, labels: Value, rules: Value) -> Value {
    json!({"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRole","metadata":meta(name, now, labels),"rules":rules})
}

/// The `default` ServiceAccount the service-account controller creates in every namespace.
pub fn default_service_account(st: &State, ns: &str) {
    let sa = json!({"apiVersion":"v1","kind":"ServiceAccount","metadata":{"name":"default","namespace":ns,
        "uid":uuid::Uuid::new_v4().to_string(),"creationTimestamp":now_str()}});
    let _ = st.store.mutate("serviceaccounts", ns, "default", |_, existing| {
        Ok(match existing {
            Some(e) => Mutation::NoOp(e.clone()),
            None => Mutation::Put(sa),
        })
    });
}

/// Seeds a new store.
pub fn seed(st: &State) {
    let now = now_str();
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let obj = json!({"apiVersion":"v1","kind":"Namespace","metadata":meta(ns, &now, json!({"kubernetes.io/metadata.name":ns})),
            "spec":{"finalizers":["kubernetes"]},"status":{"phase":"Active"}});
        put(st, "namespaces", ns, obj);
        default_service_account(st, ns);
    }
    let boot = json!({"kubernetes.io/bootstrapping":"rbac-defaults"});
    let all =
        json!([{"apiGroups":["*"],"resources":["*"],"verbs":["*"]},{"nonResourceURLs":["*"],"verbs":["*"]}]);
    put(
        st,
        "clusterroles",
        "cluster-admin",
        role("cluster-admin", &now, boot.clone(), all),
    );
    let binding = json!({"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRoleBinding","metadata":meta("cluster-admin", &now, boot.clone()),
        "roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"cluster-admin"},
        "subjects":[{"apiGroup":"rbac.authorization.k8s.io","kind":"Group","name":"system:masters"}]});
    put(st, "clusterrolebindings", "cluster-admin", binding);
    let read = json!(["get", "list", "watch"]);
    let write = json!(["create", "delete", "deletecollection", "patch", "update"]);
    let view_rules = json!([
        {"apiGroups":[""],"resources":["configmaps","serviceaccounts","events","namespaces"],"verbs":read},
        {"apiGroups":["events.k8s.io"],"resources":["events"],"verbs":read},
        {"apiGroups":["coordination.k8s.io"],"resources":["leases"],"verbs":read}]);
    let edit_rules = json!([
        {"apiGroups":[""],"resources":["configmaps","secrets","serviceaccounts"],"verbs":write},
        {"apiGroups":[""],"resources":["secrets"],"verbs":read},
        {"apiGroups":["coordination.k8s.io"],"resources":["leases"],"verbs":write}]);
    let admin_rules = json!([
        {"apiGroups":["rbac.authorization.k8s.io"],"resources":["roles","rolebindings"],"verbs":["create","delete","deletecollection","get","list","patch","update","watch"]},
        {"apiGroups":["authorization.k8s.io"],"resources":["localsubjectaccessreviews"],"verbs":["create"]}]);
    let agg = |to: &str| {
        let mut l = boot.clone();
        l[format!("rbac.authorization.k8s.io/aggregate-to-{to}")] = json!("true");
        l
    };
    put(
        st,
        "clusterroles",
        "system:aggregate-to-view",
        role("system:aggregate-to-view", &now, agg("view"), view_rules),
    );
    put(
        st,
        "clusterroles",
        "system:aggregate-to-edit",
        role("system:aggregate-to-edit", &now, agg("edit"), edit_rules),
    );
    put(
        st,
        "clusterroles",
        "system:aggregate-to-admin",
        role("system:aggregate-to-admin", &now, agg("admin"), admin_rules),
    );
    // admin ⊇ edit ⊇ view, as in the real bootstrap policy.
    let aggregated = [
        ("view", vec!["view"]),
        ("edit", vec!["edit", "view"]),
        ("admin", vec!["admin", "edit", "view"]),
    ];
    for (name, from) in aggregated {
        let mut labels = boot.clone();
        if name != "admin" {
            let up = if name == "view" {
                vec!["edit", "admin"]
            } else {
                vec!["admin"]
            };
            for u in up {
                labels[format!("rbac.authorization.k8s.io/aggregate-to-{u}")] = json!("true");
            }
        }
        let selectors: Vec<Value> = from
            .iter()
            .map(|f| json!({"matchLabels":{format!("rbac.authorization.k8s.io/aggregate-to-{f}"):"true"}}))
            .collect();
        let mut obj = role(name, &now, labels, json!([]));
        obj["aggregationRule"] = json!({"clusterRoleSelectors": selectors});
        put(st, "clusterroles", name, obj);
    }
}
