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
use super::status::{ApiError, Subject, forbidden, options_invalid};
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

fn list_types(def: &ResourceDef) -> Box<dyn ListTypes + '_> {
    match &def.crd {
        Some(c) => Box::new(SchemaListTypes(&c.schema)),
        None => Box::new(BuiltinListTypes),
    }
}

fn meta_mut(obj: &mut Value) -> Result<&mut serde_json::Map<String, Value>, ApiError> {
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

fn finalizers_empty(def: &ResourceDef, obj: &Value) -> bool {
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
    match (def.group.as_str(), def.kind.as_str()) {
        ("", "Secret") => {
            validation::decode_secret_data(&new).map_err(ApiError::bad_request)?;
            causes.extend(validation::validate_secret(&new, old))
        }
        ("", "ConfigMap") => causes.extend(validation::validate_configmap(&new, old)),
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            causes.extend(validation::validate_binding(&new, old))
        }
        ("apiextensions.k8s.io", _) => causes.extend(kinds::validate_crd(&new, old)),
        _ => {}
    }
    if let Some(old) = old {
        causes.extend(validation::validate_finalizers_while_deleting(old, &new));
        if old.pointer("/metadata/uid") != new.pointer("/metadata/uid") {
            causes.push(super::status::invalid_value(
                "metadata.uid",
                &new["metadata"]["uid"],
                "field is immutable",
            ));
        }
    }
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
        name = format!("{}{suffix}", &g[..g.len().min(248)]);
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
    Ok(res)
}

/// Merges a write into the stored object per endpoint (main, `/status`, `/finalize`).
fn merge_for_write(def: &ResourceDef, existing: &Value, incoming: Value, sub: Option<&str>) -> Value {
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
            n
        }
        Some("finalize") => {
            let mut n = existing.clone();
            n["spec"]["finalizers"] = incoming.pointer("/spec/finalizers").cloned().unwrap_or(json!([]));
            n
        }
        _ => {
            let mut n = incoming.clone();
            if def.status_subresource && def.kind != "Namespace" {
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

/// The patch mechanisms, by Content-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchMode {
    /// A non-apply patch.
    Patch(super::semantics::patch::PatchKind),
    /// Server-side apply.
    Apply,
}

/// Maps a Content-Type to a patch mode, or 415.
pub fn patch_mode(content_type: &str, def: &ResourceDef) -> Result<PatchMode, ApiError> {
    use super::semantics::patch::PatchKind;
    let accepted = if def.is_custom() {
        "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/apply-patch+cbor"
    } else {
        "application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml, application/apply-patch+cbor"
    };
    let ct = content_type.split(';').next().unwrap_or_default().trim();
    Ok(match ct {
        "application/json-patch+json" => PatchMode::Patch(PatchKind::Json),
        "application/merge-patch+json" => PatchMode::Patch(PatchKind::Merge),
        "application/strategic-merge-patch+json" if !def.is_custom() => {
            PatchMode::Patch(PatchKind::Strategic)
        }
        "application/apply-patch+yaml" => PatchMode::Apply,
        _ => return Err(ApiError::unsupported_media(accepted)),
    })
}

/// PATCH: JSON merge / JSON / strategic patch or server-side apply.
#[allow(clippy::too_many_arguments)]
pub fn patch(
    st: &State,
    def: &ResourceDef,
    ns: &str,
    name: &str,
    body: &[u8],
    mode: PatchMode,
    sub: Option<&str>,
    force: bool,
    o: &WriteOpts,
) -> Result<(Arc<Value>, bool), ApiError> {
    use super::semantics::patch::{PatchError, apply_patch};
    if force && mode != PatchMode::Apply {
        return Err(options_invalid(
            "PatchOptions",
            "force",
            "Forbidden",
            "FieldValueForbidden",
            "may not be specified for non-apply patch",
        ));
    }
    let doc: Value = if mode == PatchMode::Apply {
        serde_yaml_ng::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?
    };
    if mode == PatchMode::Apply {
        if o.manager.is_empty() {
            return Err(options_invalid(
                "PatchOptions",
                "fieldManager",
                "Required value",
                "FieldValueRequired",
                "is required for apply patch",
            ));
        }
        let av = doc.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
        let k = doc.get("kind").and_then(Value::as_str).unwrap_or_default();
        if av != def.api_version() || k != def.kind {
            return Err(ApiError::bad_request(format!(
                "Incorrect version specified in apply patch. Specified patch version: {av}, expected: {}",
                def.api_version()
            )));
        }
        if doc.pointer("/metadata/managedFields").is_some() {
            return Err(ApiError::bad_request("metadata.managedFields must be nil"));
        }
    }
    let now = now_str();
    let ns_key = if def.namespaced { ns } else { "" };
    let lt = list_types(def);
    let mut created = false;
    let (res, _) = st.store.mutate(&def.storage, ns_key, name, |view, existing| {
        let Some(ex) = existing else {
            if mode != PatchMode::Apply || sub.is_some() {
                return Err(ApiError::not_found(&subj(def, name)));
            }
            let mut obj = managed::apply(None, &doc, &o.manager, force, None, lt.as_ref(), &now)
                .map_err(|c| conflict(def, name, &c))?;
            let obj_name = obj
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            if obj_name != name {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({obj_name}) does not match the name on the URL ({name})"
                )));
            }
            let mut obj2 = from_view(def, std::mem::take(&mut obj));
            prepare_new(def, ns, &mut obj2, &now)?;
            check_namespace(view, def, ns, name)?;
            created = true;
            return finish(def, None, obj2, o, None, Record::Skip, &now);
        };
        let live = to_view(def, ex);
        let result = match mode {
            PatchMode::Apply => managed::apply(Some(&live), &doc, &o.manager, force, sub, lt.as_ref(), &now)
                .map_err(|c| conflict(def, name, &c))?,
            PatchMode::Patch(kind) => {
                let mut t = live.clone();
                apply_patch(&mut t, &doc, kind, &def.kind).map_err(|e| match e {
                    PatchError::Malformed(m) => ApiError::bad_request(m),
                    PatchError::Unprocessable(_) => ApiError::generic_invalid(),
                })?;
                t
            }
        };
        let result = from_view(def, result);
        if rv_of(&result) != rv_of(ex) && result.pointer("/metadata/resourceVersion").is_some() {
            return Err(ApiError::stale(&subj(def, name)));
        }
        let new = merge_for_write(def, ex, result, sub);
        let record = if mode == PatchMode::Apply {
            Record::Skip
        } else {
            Record::Update(&o.manager)
        };
        finish(def, Some(ex), new, o, sub, record, &now)
    })?;
    st.after_write(&def.storage, &res);
    Ok((res, created))
}

fn conflict(def: &ResourceDef, name: &str, causes: &[FieldCause]) -> ApiError {
    if causes.iter().any(|c| c.reason != "FieldManagerConflict") {
        return ApiError::invalid(&kind_subj(def, name), causes);
    }
    let n = causes.len();
    let message = if n == 1 {
        format!(
            "Apply failed with 1 conflict: {}: {}",
            causes[0].message, causes[0].field
        )
    } else {
        let mut by_mgr: Vec<(String, Vec<String>)> = Vec::new();
        for c in causes {
            match by_mgr.iter_mut().find(|(m, _)| *m == c.message) {
                Some((_, f)) => f.push(c.field.clone()),
                None => by_mgr.push((c.message.clone(), vec![c.field.clone()])),
            }
        }
        let parts: Vec<String> = by_mgr
            .iter()
            .map(|(m, fs)| {
                let m = m.replacen("conflict with", "conflicts with", 1);
                format!("{m}:\n- {}", fs.join("\n- "))
            })
            .collect();
        format!("Apply failed with {n} conflicts: {}", parts.join("\n"))
    };
    ApiError {
        code: 409,
        reason: "Conflict",
        message,
        details: Some(json!({"causes": causes})),
        retry_after: None,
    }
}

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

/// A `Forbidden` cause helper re-exported for handlers.
pub fn forbidden_cause(field: &str, detail: &str) -> FieldCause {
    forbidden(field, detail)
}
