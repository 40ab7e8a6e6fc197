//! Controllers the real control plane runs: the garbage collector (owner references, background,
//! foreground and orphan propagation), the namespace lifecycle controller, and CRD instance cleanup.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Value, json};

use super::crd;
use super::deletion::{self, DeleteOpts};
use super::objects::now_str;
use super::selector::LabelSelector;
use super::state::State;

struct Node {
    namespace: String,
    deleting: bool,
    finalizers: Vec<String>,
}

fn finalizers(o: &Value) -> Vec<String> {
    o.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str().map(String::from))
        .collect()
}

fn str_at<'a>(o: &'a Value, p: &str) -> &'a str {
    o.pointer(p).and_then(Value::as_str).unwrap_or_default()
}

fn remove_finalizer(st: &State, storage: &str, o: &Value, fin: &str) -> bool {
    let Some(def) = st.registry.by_storage(storage) else {
        return false;
    };
    let fin = fin.to_string();
    deletion::system_update(
        st,
        &def,
        str_at(o, "/metadata/namespace"),
        str_at(o, "/metadata/name"),
        move |obj| {
            let Some(list) = obj
                .pointer_mut("/metadata/finalizers")
                .and_then(Value::as_array_mut)
            else {
                return false;
            };
            let before = list.len();
            list.retain(|f| f.as_str() != Some(fin.as_str()));
            list.len() != before
        },
    )
    .is_ok_and(|r| r.is_some())
}

fn delete_obj(st: &State, storage: &str, o: &Value, policy: &str) -> bool {
    let Some(def) = st.registry.by_storage(storage) else {
        return false;
    };
    if o.pointer("/metadata/deletionTimestamp").is_some() {
        return false;
    }
    let d = DeleteOpts {
        policy: Some(policy.into()),
        ..Default::default()
    };
    deletion::delete(
        st,
        &def,
        str_at(o, "/metadata/namespace"),
        str_at(o, "/metadata/name"),
        &d,
    )
    .is_ok()
}

/// The ClusterRole aggregation controller: roles with `aggregationRule` get the union of the
/// rules of every ClusterRole matching one of its selectors.
fn aggregate_cluster_roles(st: &State) -> bool {
    let roles = st.store.list("clusterroles", None, None).items;
    let Some(def) = st.registry.by_storage("clusterroles") else {
        return false;
    };
    let mut changed = false;
    for role in roles.iter().filter(|r| r.get("aggregationRule").is_some()) {
        let selectors: Vec<LabelSelector> = role["aggregationRule"]["clusterRoleSelectors"]
            .as_array()
            .into_iter()
            .flatten()
            .map(LabelSelector::from_object)
            .collect();
        let mut rules: Vec<Value> = Vec::new();
        for other in roles
            .iter()
            .filter(|o| o["metadata"]["name"] != role["metadata"]["name"])
        {
            if selectors.iter().any(|s| s.matches(other)) {
                for r in other["rules"].as_array().into_iter().flatten() {
                    if !rules.contains(r) {
                        rules.push(r.clone());
                    }
                }
            }
        }
        let want = Value::Array(rules);
        let r = deletion::system_update(st, &def, "", str_at(role, "/metadata/name"), |obj| {
            if obj.get("rules").unwrap_or(&Value::Null) == &want
                || (want == json!([]) && obj.get("rules").is_none())
            {
                return false;
            }
            obj["rules"] = want.clone();
            true
        });
        changed |= r.is_ok_and(|r| r.is_some());
    }
    changed
}

/// The CRD naming controller (accepted names, NamesAccepted/Established, conflicts).
fn name_crds(st: &State) -> bool {
    let crds = st.store.list("customresourcedefinitions", None, None).items;
    let Some(def) = st.registry.by_storage("customresourcedefinitions") else {
        return false;
    };
    let now = now_str();
    let mut changed = false;
    for c in &crds {
        let conflict = crd::name_conflict(crds.iter().map(|o| o.as_ref()), c);
        let r = deletion::system_update(st, &def, "", str_at(c, "/metadata/name"), |obj| {
            crd::reconcile_names(obj, conflict.as_ref(), &now)
        });
        changed |= r.is_ok_and(|r| r.is_some());
    }
    changed
}

/// The Warning event the garbage collector records when a namespaced dependent names an owner
/// that lives in another namespace (the owner counts as absent).
fn owner_ref_invalid_namespace_event(st: &State, dependent: &Value, r: &Value) {
    let Some(def) = st.registry.find("", "v1", "events") else {
        return;
    };
    let ns = str_at(dependent, "/metadata/namespace");
    let name = str_at(dependent, "/metadata/name");
    let now = now_str();
    let ev = json!({"apiVersion":"v1","kind":"Event",
        "metadata":{"generateName": format!("{name}.")},
        "involvedObject":{"apiVersion":dependent["apiVersion"],"kind":dependent["kind"],"name":name,"namespace":ns,
            "uid":dependent["metadata"]["uid"]},
        "reason":"OwnerRefInvalidNamespace","type":"Warning","source":{"component":"garbage-collector-controller"},
        "reportingComponent":"garbage-collector-controller",
        "message": format!("ownerRef [{}/{}, namespace: {ns}, name: {}, uid: {}] does not exist in namespace \"{ns}\"",
            r["apiVersion"].as_str().unwrap_or_default(), r["kind"].as_str().unwrap_or_default(),
            r["name"].as_str().unwrap_or_default(), r["uid"].as_str().unwrap_or_default()),
        "firstTimestamp":now,"lastTimestamp":now,"count":1});
    let o = super::objects::WriteOpts {
        manager: "garbage-collector-controller".into(),
        ..Default::default()
    };
    let _ = super::objects::create(st, &def, ns, ev, &o);
}

/// One sweep; returns whether anything changed.
pub fn pass(st: &State) -> bool {
    let mut changed = aggregate_cluster_roles(st);
    changed |= name_crds(st);
    let all = st.store.all_in(None);
    let mut nodes: HashMap<String, Node> = HashMap::new();
    for (_, o) in &all {
        nodes.insert(
            str_at(o, "/metadata/uid").to_string(),
            Node {
                namespace: str_at(o, "/metadata/namespace").to_string(),
                deleting: o.pointer("/metadata/deletionTimestamp").is_some(),
                finalizers: finalizers(o),
            },
        );
    }
    let mut dependents: HashMap<String, Vec<bool>> = HashMap::new();
    for (storage, o) in &all {
        let Some(refs) = o.pointer("/metadata/ownerReferences").and_then(Value::as_array) else {
            continue;
        };
        let ns = str_at(o, "/metadata/namespace");
        let mut live = 0;
        let mut orphaning = Vec::new();
        let mut foreground = false;
        let mut invalid_ns: Vec<Value> = Vec::new();
        for r in refs {
            let uid = r["uid"].as_str().unwrap_or_default();
            dependents
                .entry(uid.to_string())
                .or_default()
                .push(r["blockOwnerDeletion"].as_bool() == Some(true));
            match nodes.get(uid) {
                Some(n) if n.namespace.is_empty() || n.namespace == ns => {
                    if n.deleting && n.finalizers.iter().any(|f| f == "orphan") {
                        orphaning.push(uid.to_string());
                    } else {
                        live += 1;
                        if n.deleting && n.finalizers.iter().any(|f| f == "foregroundDeletion") {
                            foreground = true;
                        }
                    }
                }
                Some(_) => invalid_ns.push(r.clone()),
                None => {}
            }
        }
        if live == 0 && !ns.is_empty() && o.pointer("/metadata/deletionTimestamp").is_none() {
            for r in &invalid_ns {
                owner_ref_invalid_namespace_event(st, o, r);
            }
        }
        if !orphaning.is_empty() {
            if let Some(def) = st.registry.by_storage(storage) {
                let r = deletion::system_update(st, &def, ns, str_at(o, "/metadata/name"), |obj| {
                    if let Some(list) = obj
                        .pointer_mut("/metadata/ownerReferences")
                        .and_then(Value::as_array_mut)
                    {
                        list.retain(|r| !orphaning.iter().any(|u| r["uid"].as_str() == Some(u)));
                    }
                    true
                });
                changed |= r.is_ok_and(|r| r.is_some());
            }
            continue;
        }
        if live == 0 {
            changed |= delete_obj(st, storage, o, "Background");
        } else if foreground && live == refs.len() {
            // Every owner is alive, one is deleting in foreground: the dependent goes first.
            changed |= delete_obj(st, storage, o, "Foreground");
        } else if foreground {
            changed |= delete_obj(st, storage, o, "Foreground");
        }
    }
    for (storage, o) in &all {
        if o.pointer("/metadata/deletionTimestamp").is_none() {
            continue;
        }
        let uid = str_at(o, "/metadata/uid");
        let fins = finalizers(o);
        let deps = dependents.get(uid);
        if fins.iter().any(|f| f == "foregroundDeletion") && !deps.is_some_and(|d| d.iter().any(|b| *b)) {
            changed |= remove_finalizer(st, storage, o, "foregroundDeletion");
        }
        if fins.iter().any(|f| f == "orphan") && deps.is_none() {
            changed |= remove_finalizer(st, storage, o, "orphan");
        }
        if storage == "customresourcedefinitions"
            && fins
                .iter()
                .any(|f| f == "customresourcecleanup.apiextensions.k8s.io")
        {
            let cr_storage = format!("{}/{}", str_at(o, "/spec/group"), str_at(o, "/spec/names/plural"));
            let items = st.store.list(&cr_storage, None, None).items;
            for cr in &items {
                changed |= delete_obj(st, &cr_storage, cr, "Background");
            }
            if items.is_empty() {
                changed |= remove_finalizer(st, storage, o, "customresourcecleanup.apiextensions.k8s.io");
            }
        }
        if storage == "namespaces" {
            changed |= namespace_cleanup(st, o);
        }
    }
    changed
}

fn namespace_cleanup(st: &State, ns_obj: &Value) -> bool {
    let ns = str_at(ns_obj, "/metadata/name").to_string();
    let content: Vec<(String, Arc<Value>)> = st
        .store
        .all_in(Some(&ns))
        .into_iter()
        .filter(|(s, _)| s != "namespaces")
        .collect();
    let mut changed = false;
    for (storage, o) in &content {
        changed |= delete_obj(st, storage, o, "Background");
    }
    let mut remaining: HashMap<String, usize> = HashMap::new();
    let mut fin_left: HashMap<String, usize> = HashMap::new();
    for (storage, o) in st
        .store
        .all_in(Some(&ns))
        .into_iter()
        .filter(|(s, _)| s != "namespaces")
    {
        let res = match storage.split_once('/') {
            Some((g, p)) => format!("{p}.{g}"),
            None => storage.clone(),
        };
        *remaining.entry(res).or_default() += 1;
        for f in finalizers(&o) {
            *fin_left.entry(f).or_default() += 1;
        }
    }
    let summary = |m: &HashMap<String, usize>, what: &str| {
        let mut v: Vec<String> = m
            .iter()
            .map(|(k, n)| format!("{k} {what} {n} resource instances"))
            .collect();
        v.sort();
        v.join(", ")
    };
    let now = now_str();
    let cond = |t: &str, bad: bool, ok_reason: &str, bad_reason: &str, msg: String| json!({"type":t,"status": if bad {"True"} else {"False"},"reason": if bad {bad_reason} else {ok_reason},"message":msg,"lastTransitionTime":now});
    let conditions = vec![
        cond(
            "NamespaceDeletionDiscoveryFailure",
            false,
            "ResourcesDiscovered",
            "DiscoveryFailed",
            "All resources successfully discovered".into(),
        ),
        cond(
            "NamespaceDeletionGroupVersionParsingFailure",
            false,
            "ParsedGroupVersions",
            "GroupVersionParsingFailed",
            "All legacy kube types successfully parsed".into(),
        ),
        cond(
            "NamespaceDeletionContentFailure",
            false,
            "ContentDeleted",
            "ContentDeletionFailed",
            "All content successfully deleted, may be waiting on finalization".into(),
        ),
        cond(
            "NamespaceContentRemaining",
            !remaining.is_empty(),
            "ContentRemoved",
            "SomeResourcesRemain",
            if remaining.is_empty() {
                "All content successfully removed".into()
            } else {
                format!("Some resources are remaining: {}", summary(&remaining, "has"))
            },
        ),
        cond(
            "NamespaceFinalizersRemaining",
            !fin_left.is_empty(),
            "ContentHasNoFinalizers",
            "SomeFinalizersRemain",
            if fin_left.is_empty() {
                "All content-preserving finalizers finished".into()
            } else {
                format!(
                    "Some content in the namespace has finalizers remaining: {}",
                    summary(&fin_left, "in")
                )
            },
        ),
    ];
    let Some(def) = st.registry.by_storage("namespaces") else {
        return changed;
    };
    let empty = remaining.is_empty();
    let strip = |cs: &Value| -> Vec<Value> {
        cs.as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                let mut c = c.clone();
                if let Some(m) = c.as_object_mut() {
                    m.remove("lastTransitionTime");
                }
                c
            })
            .collect()
    };
    let r = deletion::system_update(st, &def, "", &ns, |obj| {
        let mut did = false;
        if strip(&obj["status"]["conditions"]) != strip(&json!(conditions)) {
            obj["status"]["conditions"] = json!(conditions);
            did = true;
        }
        if empty && let Some(list) = obj.pointer_mut("/spec/finalizers").and_then(Value::as_array_mut) {
            let before = list.len();
            list.retain(|f| f != "kubernetes");
            did |= list.len() != before;
        }
        did
    });
    changed | r.is_ok_and(|r| r.is_some())
}

/// Runs the controllers until the state is dropped (woken by writes, plus a periodic sweep).
pub async fn run(st: std::sync::Weak<State>) {
    loop {
        let Some(s) = st.upgrade() else { return };
        let interval = s.config.gc_interval;
        let notified = async { s.gc_wake.notified().await };
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep(interval) => {}
        }
        for _ in 0..20 {
            if !pass(&s) {
                break;
            }
        }
        drop(s);
    }
}
