//! PATCH: JSON merge, JSON and strategic merge patches and server-side apply, with the
//! SSA conflict Status the real server returns.

use std::sync::Arc;

use serde_json::{Value, json};

use super::kinds::{from_view, to_view};
use super::objects::{
    Record, WriteOpts, check_namespace, finish, kind_subj, list_types, merge_for_write, now_str, prepare_new,
    prune_request, subj,
};
use super::resources::ResourceDef;
use super::semantics::FieldCause;
use super::semantics::managed;
use super::state::State;
use super::status::{ApiError, options_invalid};
use super::store::rv_of;

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
        let mut result = result;
        prune_request(def, &mut result, o)?;
        let result = from_view(def, result);
        if rv_of(&result) != rv_of(ex) && result.pointer("/metadata/resourceVersion").is_some() {
            return Err(ApiError::stale(&subj(def, name)));
        }
        // merge_for_write carries a subresource write's managedFields over (the API server does).
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
