//! The write pipeline shared by every kind: create, update, patch, server-side apply, delete —
//! metadata rules, status subresource semantics, schema pruning/defaulting/validation,
//! generation, finalizers, managedFields and no-op detection.

use std::sync::Arc;

use rand::Rng;
use serde_json::{Value, json};

use super::kinds::{self, from_view, to_view};
use super::resources::{BuiltinListTypes, ResourceDef, SchemaListTypes};
use super::semantics::managed::{self, ListTypes};
use super::semantics::{FieldCause, schema};
use super::state::State;
use super::status::{ApiError, Subject};
use super::store::{Mutation, View, rv_of};
use super::validation;

/// Options shared by create/update/patch.
#[derive(Debug, Clone, Default)]
pub struct WriteOpts {
    /// Field manager for managedFields.
    pub manager: String,
    /// `dryRun=All`: validate but do not persist.
    pub dry_run: bool,
    /// `fieldValidation=Strict`: unknown fields are an error.
    pub strict: bool,
    /// Collects `Warning` header texts (dropped unknown fields); `None` for `fieldValidation=Ignore`.
    pub warnings: Option<Arc<std::sync::Mutex<Vec<String>>>>,
}

impl WriteOpts {
    fn warn_unknown(&self, fields: &[String]) {
        if let Some(w) = &self.warnings
            && let Ok(mut w) = w.lock()
        {
            w.extend(fields.iter().map(|f| format!("unknown field \"{f}\"")));
        }
    }
}

/// RFC 3339 UTC time with second precision.
pub fn now_str() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Subject for NotFound/AlreadyExists/Conflict (plural resource).
pub fn subj<'a>(def: &'a ResourceDef, name: &'a str) -> Subject<'a> {
    Subject {
        kind: &def.plural,
        group: &def.group,
        name,
    }
}

/// Subject for Invalid (Kind).
pub fn kind_subj<'a>(def: &'a ResourceDef, name: &'a str) -> Subject<'a> {
    Subject {
        kind: &def.kind,
        group: &def.group,
        name,
    }
}

pub(crate) fn list_types(def: &ResourceDef) -> Box<dyn ListTypes + '_> {
    match &def.crd {
        Some(c) => Box::new(SchemaListTypes(&c.schema)),
        None => Box::new(BuiltinListTypes),
    }
}

pub(crate) fn meta_mut(obj: &mut Value) -> Result<&mut serde_json::Map<String, Value>, ApiError> {
    if !obj.is_object() {
        return Err(ApiError::bad_request(
            "Object 'Kind' is missing in the request body: not a JSON object",
        ));
    }
    let m = obj
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("not an object"))?;
    let meta = m.entry("metadata").or_insert_with(|| json!({}));
    if !meta.is_object() {
        return Err(ApiError::bad_request("metadata must be an object"));
    }
    meta.as_object_mut()
        .ok_or_else(|| ApiError::bad_request("metadata must be an object"))
}

/// Drops unknown top-level fields of built-in kinds from a request body (400 under Strict).
pub fn prune_request(def: &ResourceDef, obj: &mut Value, o: &WriteOpts) -> Result<(), ApiError> {
    let unknown = kinds::prune_builtin(def, obj);
    o.warn_unknown(&unknown);
    if o.strict && !unknown.is_empty() {
        let fields: Vec<String> = unknown.iter().map(|p| format!("unknown field \"{p}\"")).collect();
        return Err(ApiError::bad_request(format!(
            "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
            def.kind,
            def.version,
            def.kind,
            fields.join(", ")
        )));
    }
    Ok(())
}

/// Checks or fills `apiVersion`/`kind` of a request body against the endpoint.
pub fn check_type_meta(def: &ResourceDef, obj: &mut Value) -> Result<(), ApiError> {
    let want_av = def.api_version();
    let Some(m) = obj.as_object_mut() else {
        return Err(ApiError::bad_request("the request body must be a JSON object"));
    };
    match m.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => {
            m.insert("apiVersion".into(), json!(want_av));
        }
        Some(av) if av != want_av => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({want_av})"
            )));
        }
        _ => {}
    }
    match m.get("kind").and_then(Value::as_str) {
        None | Some("") => {
            m.insert("kind".into(), json!(def.kind));
        }
        Some(k) if k != def.kind => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                def.kind
            )));
        }
        _ => {}
    }
    Ok(())
}

const META_FIELDS: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

/// Round-trips metadata through ObjectMeta: unknown fields and empty lists/maps dropped.
pub fn normalize_meta(obj: &mut Value) {
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        m.retain(|k, v| {
            META_FIELDS.contains(&k.as_str())
                && !v.is_null()
                && !v.as_array().is_some_and(Vec::is_empty)
                && !v.as_object().is_some_and(serde_json::Map::is_empty)
                && !v.as_str().is_some_and(str::is_empty)
        });
    }
}

pub(crate) fn finalizers_empty(def: &ResourceDef, obj: &Value) -> bool {
    let meta_empty = obj
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty);
    let spec_empty = def.kind != "Namespace"
        || obj
            .pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty);
    meta_empty && spec_empty
}

fn strip_times(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(mf) = v
        .pointer_mut("/metadata/managedFields")
        .and_then(Value::as_array_mut)
    {
        for e in mf {
            if let Some(m) = e.as_object_mut() {
                m.remove("time");
            }
        }
    }
    v
}

fn without(v: &Value, keys: &[&str]) -> Value {
    let mut v = v.clone();
    if let Some(m) = v.as_object_mut() {
        for k in keys {
            m.remove(*k);
        }
    }
    v
}

/// How the managedFields of a write are recorded.
pub enum Record<'a> {
    /// Non-apply write by this manager.
    Update(&'a str),
    /// Already recorded (apply) or internal write.
    Skip,
}

/// Finishes a write: normalisation, schema, validation, generation, managedFields, finalizer
/// deletion, and no-op detection.
#[allow(clippy::too_many_arguments)]
pub fn finish(
    def: &ResourceDef,
    existing: Option<&Arc<Value>>,
    mut new: Value,
    o: &WriteOpts,
    sub: Option<&str>,
    record: Record<'_>,
    now: &str,
) -> Result<Mutation, ApiError> {
    normalize_meta(&mut new);
    kinds::normalize(def, &mut new, existing.map(|e| e.as_ref()), now);
    let name = new
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let mut causes: Vec<FieldCause> = Vec::new();
    if let Some(crd) = &def.crd
        && crd.schema.is_object()
    {
        let mut view = to_view(def, &new);
        // Root metadata is ObjectMeta (normalised above), never pruned by the CR schema.
        let meta = view.as_object_mut().and_then(|m| m.remove("metadata"));
        let pruned = schema::prune(&crd.schema, &mut view);
        if let (Some(m), Some(obj)) = (meta.clone(), view.as_object_mut()) {
            obj.insert("metadata".into(), m);
        }
        o.warn_unknown(&pruned);
        if o.strict && !pruned.is_empty() {
            let fields: Vec<String> = pruned.iter().map(|p| format!("unknown field \"{p}\"")).collect();
            return Err(ApiError::bad_request(format!(
                "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
                def.kind,
                def.version,
                def.kind,
                fields.join(", ")
            )));
        }
        schema::apply_defaults(&crd.schema, &mut view);
        if let (Some(m), Some(obj)) = (meta, view.as_object_mut()) {
            obj.insert("metadata".into(), m);
        }
        causes.extend(schema::validate(&crd.schema, &view));
        new = from_view(def, view);
    }
    causes.extend(validation::validate_meta(def, &new));
    let old = existing.map(|e| e.as_ref());
    causes.extend(kinds::validate_kind(def, &new, old)?);
    if !causes.is_empty() {
        return Err(ApiError::invalid(&kind_subj(def, &name), &causes));
    }
    if def.tracks_generation() {
        let gen_of = |v: &Value| {
            v.pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(1)
        };
        let generation = match old {
            None => 1,
            Some(old) => {
                let skip: &[&str] = if def.status_subresource {
                    &["metadata", "status"]
                } else {
                    &["metadata"]
                };
                let skip = if def.kind == "CustomResourceDefinition" {
                    &["metadata", "status"][..]
                } else {
                    skip
                };
                let g = gen_of(old);
                if without(old, skip) != without(&new, skip) {
                    g + 1
                } else {
                    g
                }
            }
        };
        if let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) {
            m.insert("generation".into(), json!(generation));
        }
    }
    if let Record::Update(manager) = record {
        managed::record_update(old, &mut new, manager, sub, list_types(def).as_ref(), now);
    }
    normalize_meta(&mut new);
    if let Some(old) = existing {
        if old.pointer("/metadata/deletionTimestamp").is_some() && finalizers_empty(def, &new) {
            return Ok(if o.dry_run {
                Mutation::NoOp(Arc::new(new))
            } else {
                Mutation::Delete(new)
            });
        }
        if strip_times(old) == strip_times(&new) {
            return Ok(Mutation::NoOp(old.clone()));
        }
    }
    Ok(if o.dry_run {
        Mutation::NoOp(Arc::new(new))
    } else {
        Mutation::Put(new)
    })
}

const GEN_CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Prepares a new object: namespace, name/generateName, system fields.
pub fn prepare_new(def: &ResourceDef, ns: &str, obj: &mut Value, now: &str) -> Result<String, ApiError> {
    let meta = meta_mut(obj)?;
    if def.namespaced {
        match meta.get("namespace").and_then(Value::as_str) {
            None | Some("") => {
                meta.insert("namespace".into(), json!(ns));
            }
            Some(n) if n != ns => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            _ => {}
        }
    } else {
        meta.remove("namespace");
    }
    let mut name = meta
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if name.is_empty()
        && let Some(g) = meta
            .get("generateName")
            .and_then(Value::as_str)
            .filter(|g| !g.is_empty())
    {
        let mut rng = rand::rng();
        let suffix: String = (0..5)
            .map(|_| GEN_CHARS[rng.random_range(0..GEN_CHARS.len())] as char)
            .collect();
        let mut cut = g.len().min(248);
        while !g.is_char_boundary(cut) {
            cut -= 1;
        }
        name = format!("{}{suffix}", &g[..cut]);
        meta.insert("name".into(), json!(name));
    }
    for k in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "selfLink",
        "resourceVersion",
        "generation",
    ] {
        meta.remove(k);
    }
    meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    meta.insert("creationTimestamp".into(), json!(now));
    if name.is_empty() {
        let c = super::status::cause(
            "FieldValueRequired",
            "metadata.name",
            "Required value: name or generateName is required",
        );
        return Err(ApiError::invalid(&kind_subj(def, ""), &[c]));
    }
    if def.is_custom()
        && def.status_subresource
        && let Some(m) = obj.as_object_mut()
    {
        m.remove("status");
    }
    Ok(name)
}

/// Checks the target namespace exists and is not terminating.
pub fn check_namespace(view: &View<'_>, def: &ResourceDef, ns: &str, name: &str) -> Result<(), ApiError> {
    if !def.namespaced {
        return Ok(());
    }
    match view.get("namespaces", "", ns) {
        None => Err(ApiError::not_found(&Subject {
            kind: "namespaces",
            group: "",
            name: ns,
        })),
        Some(n) if n.pointer("/metadata/deletionTimestamp").is_some() => {
            let msg =
                format!("unable to create new content in namespace {ns} because it is being terminated");
            let cause = json!([{"reason":"NamespaceTerminating","message":format!("namespace {ns} is being terminated"),"field":"metadata.namespace"}]);
            Err(ApiError::forbidden(&subj(def, name), &msg).with_causes(cause))
        }
        _ => Ok(()),
    }
}

/// POST: creates an object.
pub fn create(
    st: &State,
    def: &ResourceDef,
    ns: &str,
    mut obj: Value,
    o: &WriteOpts,
) -> Result<Arc<Value>, ApiError> {
    check_type_meta(def, &mut obj)?;
    prune_request(def, &mut obj, o)?;
    let mut obj = from_view(def, obj);
    let now = now_str();
    let name = prepare_new(def, ns, &mut obj, &now)?;
    let ns_key = if def.namespaced { ns } else { "" };
    let (res, _) = st.store.mutate(&def.storage, ns_key, &name, |view, existing| {
        if let Some(e) = existing {
            return Err(ApiError::already_exists(
                &subj(def, &name),
                e.pointer("/metadata/deletionTimestamp").is_some(),
            ));
        }
        check_namespace(view, def, ns, &name)?;
        finish(def, None, obj, o, None, Record::Update(&o.manager), &now)
    })?;
    st.after_write(&def.storage, &res);
    if def.kind == "Namespace" && def.group.is_empty() && !o.dry_run {
        super::bootstrap::default_service_account(st, &name);
    }
    Ok(res)
}

/// Merges a write into the stored object per endpoint (main, `/status`, `/finalize`).
pub(crate) fn merge_for_write(
    def: &ResourceDef,
    existing: &Value,
    incoming: Value,
    sub: Option<&str>,
) -> Value {
    let mut new = match sub {
        Some("status") => {
            let mut n = existing.clone();
            match incoming.get("status") {
                Some(s) => n["status"] = s.clone(),
                None => {
                    if let Some(m) = n.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
            // A status apply records its manager's field set like any apply; without it, fields
            // the manager stops applying would never be removed.
            if let Some(mf) = incoming.pointer("/metadata/managedFields") {
                n["metadata"]["managedFields"] = mf.clone();
            }
            n
        }
        Some("finalize") => {
            let mut n = existing.clone();
            n["spec"]["finalizers"] = incoming.pointer("/spec/finalizers").cloned().unwrap_or(json!([]));
            n
        }
        _ => {
            let mut n = incoming.clone();
            if def.kind == "Namespace" && def.group.is_empty() {
                // Namespace spec changes only through /finalize (the strategy keeps the old spec).
                n["spec"] = existing["spec"].clone();
            }
            if def.status_subresource {
                match existing.get("status") {
                    Some(s) => n["status"] = s.clone(),
                    None => {
                        if let Some(m) = n.as_object_mut() {
                            m.remove("status");
                        }
                    }
                }
            }
            n
        }
    };
    if let (Some(nm), Some(em)) = (
        new.get_mut("metadata").and_then(Value::as_object_mut),
        existing["metadata"].as_object(),
    ) {
        for k in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "name",
            "namespace",
            "resourceVersion",
        ] {
            match em.get(k) {
                Some(v) => nm.insert(k.into(), v.clone()),
                None => nm.remove(k),
            };
        }
        if sub.is_some() {
            for k in ["labels", "annotations", "finalizers", "ownerReferences"] {
                match em.get(k) {
                    Some(v) => nm.insert(k.into(), v.clone()),
                    None => nm.remove(k),
                };
            }
        }
        match nm.get("managedFields") {
            None => {
                if let Some(v) = em.get("managedFields") {
                    nm.insert("managedFields".into(), v.clone());
                }
            }
            Some(Value::Array(a)) if a.is_empty() => {
                if let Some(v) = em.get("managedFields") {
                    nm.insert("managedFields".into(), v.clone());
                }
            }
            Some(Value::Array(a)) if a.len() == 1 && a[0].as_object().is_some_and(|o| o.is_empty()) => {
                nm.remove("managedFields");
            }
            _ => {}
        }
    }
    new
}

/// PUT: replaces an object (main endpoint or a subresource).
pub fn update(
    st: &State,
    def: &ResourceDef,
    ns: &str,
    name: &str,
    mut obj: Value,
    sub: Option<&str>,
    o: &WriteOpts,
) -> Result<Arc<Value>, ApiError> {
    if sub == Some("finalize") {
        obj.as_object_mut()
            .map(|m| m.entry("kind").or_insert(json!("Namespace")));
    }
    check_type_meta(def, &mut obj)?;
    prune_request(def, &mut obj, o)?;
    let obj = from_view(def, obj);
    let body_name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if body_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    if def.namespaced
        && let Some(bns) = obj
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        && bns != ns
    {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    let now = now_str();
    let ns_key = if def.namespaced { ns } else { "" };
    let (res, _) = st.store.mutate(&def.storage, ns_key, name, |_, existing| {
        let ex = existing.ok_or_else(|| ApiError::not_found(&subj(def, name)))?;
        match obj.pointer("/metadata/resourceVersion").and_then(Value::as_str).filter(|s| !s.is_empty()) {
            Some(rv) if rv != rv_of(ex).to_string() => return Err(ApiError::stale(&subj(def, name))),
            None if def.is_custom() => {
                let c = super::status::invalid_value("metadata.resourceVersion", &json!("0x0"), "must be specified for an update");
                return Err(ApiError::invalid(&kind_subj(def, name), &[c]));
            }
            _ => {}
        }
        if let Some(uid) = obj.pointer("/metadata/uid").and_then(Value::as_str).filter(|s| !s.is_empty()) {
            let have = ex.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default();
            if uid != have {
                return Err(ApiError::conflict(&subj(def, name), &format!("StorageError: invalid object, Code: 4, Key: /registry/{}/{ns}/{name}, ResourceVersion: 0, AdditionalErrorMsg: Precondition failed: UID in precondition: {uid}, UID in object meta: {have}", def.plural)));
            }
        }
        let new = merge_for_write(def, ex, obj, sub);
        finish(def, Some(ex), new, o, sub, Record::Update(&o.manager), &now)
    })?;
    st.after_write(&def.storage, &res);
    Ok(res)
}

#[cfg(test)]
#[path = "objects_tests.rs"]
mod tests;
