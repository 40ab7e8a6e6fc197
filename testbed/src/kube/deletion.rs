//! DELETE: preconditions, finalizers, propagation policies, namespace termination; and the
//! internal edits controllers make (finalizer and owner-reference removal).

use std::sync::Arc;

use serde_json::{Value, json};

use super::kinds;
use super::objects::{finalizers_empty, meta_mut, normalize_meta, now_str, subj};
use super::resources::ResourceDef;
use super::state::State;
use super::status::{ApiError, Subject};
use super::store::{Mutation, rv_of};

/// DELETE options.
#[derive(Debug, Clone, Default)]
pub struct DeleteOpts {
    /// `Orphan`, `Background` or `Foreground`.
    pub policy: Option<String>,
    /// uid precondition.
    pub uid: Option<String>,
    /// resourceVersion precondition.
    pub rv: Option<String>,
    /// Dry run.
    pub dry_run: bool,
    /// `orphanDependents: false` was given (a pending delete then answers 202).
    pub orphan_false: bool,
}

/// Result of a delete.
pub enum Deleted {
    /// Removed from storage (object = final state).
    Gone(Arc<Value>),
    /// Marked for deletion, waiting on finalizers.
    Pending(Arc<Value>),
}

const IMMORTAL: &[&str] = &["default", "kube-system", "kube-public"];

/// DELETE of one object, honouring preconditions, finalizers and propagation policy.
pub fn delete(
    st: &State,
    def: &ResourceDef,
    ns: &str,
    name: &str,
    d: &DeleteOpts,
) -> Result<Deleted, ApiError> {
    if def.kind == "Namespace" && IMMORTAL.contains(&name) {
        return Err(ApiError::forbidden(
            &subj(def, name),
            "this namespace may not be deleted",
        ));
    }
    let ns_key = if def.namespaced { ns } else { "" };
    let now = now_str();
    let (res, ev) = st.store.mutate(&def.storage, ns_key, name, |_, existing| {
        let ex = existing.ok_or_else(|| ApiError::not_found(&subj(def, name)))?;
        let ks = Subject { kind: &def.kind, group: &def.group, name };
        if let Some(uid) = &d.uid
            && ex.pointer("/metadata/uid").and_then(Value::as_str) != Some(uid) {
                let have = ex.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default();
                return Err(ApiError::conflict(&ks, &format!("the UID in the precondition ({uid}) does not match the UID in record ({have}). The object might have been deleted and then recreated")));
            }
        if let Some(rv) = &d.rv
            && *rv != rv_of(ex).to_string() {
                return Err(ApiError::conflict(&ks, &format!("the ResourceVersion in the precondition ({rv}) does not match the ResourceVersion in record ({}). The object might have been modified", rv_of(ex))));
            }
        let deleting = ex.pointer("/metadata/deletionTimestamp").is_some();
        if def.kind == "Namespace" && deleting && !finalizers_empty(def, ex) {
            return Err(ApiError::conflict(&subj(def, name), "The system is ensuring all content is removed from this namespace.  Upon completion, this namespace will automatically be purged by the system."));
        }
        let mut obj = (**ex).clone();
        let mut fins: Vec<Value> = obj.pointer("/metadata/finalizers").and_then(Value::as_array).cloned().unwrap_or_default();
        let mut add = |f: &str| {
            if !fins.iter().any(|x| x == f) {
                fins.push(json!(f));
            }
        };
        match d.policy.as_deref() {
            Some("Orphan") => add("orphan"),
            Some("Foreground") => add("foregroundDeletion"),
            _ => {}
        }
        if def.kind == "CustomResourceDefinition" && !deleting {
            add("customresourcecleanup.apiextensions.k8s.io");
        }
        let pending = !fins.is_empty() || !finalizers_empty(def, &obj);
        if !pending {
            return Ok(if d.dry_run { Mutation::NoOp(ex.clone()) } else { Mutation::Delete(obj) });
        }
        let meta = meta_mut(&mut obj)?;
        if !fins.is_empty() {
            meta.insert("finalizers".into(), Value::Array(fins));
        }
        if !deleting {
            meta.insert("deletionTimestamp".into(), json!(now));
            meta.insert("deletionGracePeriodSeconds".into(), json!(0));
            if let Some(g) = meta.get("generation").and_then(Value::as_i64).filter(|g| *g > 0) {
                meta.insert("generation".into(), json!(g + 1));
            }
        }
        if def.kind == "Namespace" {
            obj["status"]["phase"] = json!("Terminating");
        }
        if def.kind == "CustomResourceDefinition" {
            kinds::normalize(def, &mut obj, Some(ex), &now);
        }
        if d.dry_run || obj == **ex {
            return Ok(Mutation::NoOp(if d.dry_run { Arc::new(obj) } else { ex.clone() }));
        }
        Ok(Mutation::Put(obj))
    })?;
    st.after_write(&def.storage, &res);
    let gone = ev == Some(super::store::EventType::Deleted)
        || (d.dry_run && finalizers_empty(def, &res) && res.pointer("/metadata/deletionTimestamp").is_none());
    Ok(if gone {
        Deleted::Gone(res)
    } else {
        Deleted::Pending(res)
    })
}

/// An internal (controller) edit of a stored object: `f` changes it and says whether it did.
/// Removing the last finalizer of a deleting object deletes it.
pub fn system_update<F>(
    st: &State,
    def: &ResourceDef,
    ns: &str,
    name: &str,
    f: F,
) -> Result<Option<Arc<Value>>, ApiError>
where
    F: FnOnce(&mut Value) -> bool,
{
    let ns_key = if def.namespaced { ns } else { "" };
    let (res, ev) = st.store.mutate(&def.storage, ns_key, name, |_, existing| {
        let ex = existing.ok_or_else(|| ApiError::not_found(&subj(def, name)))?;
        let mut obj = (**ex).clone();
        if !f(&mut obj) {
            return Ok(Mutation::NoOp(ex.clone()));
        }
        normalize_meta(&mut obj);
        if ex.pointer("/metadata/deletionTimestamp").is_some() && finalizers_empty(def, &obj) {
            return Ok(Mutation::Delete(obj));
        }
        Ok(Mutation::Put(obj))
    })?;
    if ev.is_some() {
        st.after_write(&def.storage, &res);
    }
    Ok(ev.map(|_| res))
}
