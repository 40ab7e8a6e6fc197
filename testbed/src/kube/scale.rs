//! The `/scale` subresource of custom resources (`autoscaling/v1` Scale), mapped onto the CRD's
//! `specReplicasPath`, `statusReplicasPath` and `labelSelectorPath`.

use serde_json::{Value, json};

use super::objects::{WriteOpts, subj};
use super::patching::{PatchMode, patch};
use super::resources::ResourceDef;
use super::semantics::patch::{PatchError, PatchKind, apply_patch};
use super::state::State;
use super::status::{ApiError, invalid_value};
use super::store::rv_of;

fn pointer(path: &str) -> String {
    path.trim_start_matches('.')
        .split('.')
        .fold(String::new(), |acc, seg| format!("{acc}/{seg}"))
}

/// The Scale view of a stored custom resource.
pub fn scale_of(def: &ResourceDef, obj: &Value) -> Value {
    let paths = def
        .crd
        .as_ref()
        .and_then(|c| c.scale.clone())
        .unwrap_or(Value::Null);
    let at = |k: &str| paths[k].as_str().and_then(|p| obj.pointer(&pointer(p)).cloned());
    let mut meta = json!({});
    for k in ["name", "namespace", "uid", "resourceVersion", "creationTimestamp"] {
        if let Some(v) = obj["metadata"].get(k) {
            meta[k] = v.clone();
        }
    }
    let mut status = json!({"replicas": at("statusReplicasPath").unwrap_or(json!(0))});
    if let Some(sel) = at("labelSelectorPath") {
        status["selector"] = sel;
    }
    json!({"kind":"Scale","apiVersion":"autoscaling/v1","metadata":meta,
        "spec":{"replicas": at("specReplicasPath").unwrap_or(json!(0))},"status":status})
}

/// GET, PUT or PATCH (merge/JSON) of `/scale`; writes change only the spec replicas path.
#[allow(clippy::too_many_arguments)]
pub fn handle(
    st: &State,
    def: &ResourceDef,
    ns: &str,
    name: &str,
    verb: &str,
    content_type: &str,
    body: &[u8],
    o: &WriteOpts,
) -> Result<Value, ApiError> {
    let ns_key = if def.namespaced { ns } else { "" };
    let live = st
        .store
        .get(&def.storage, ns_key, name)
        .ok_or_else(|| ApiError::not_found(&subj(def, name)))?;
    let current = scale_of(def, &live);
    let wanted = match verb {
        "get" => return Ok(current),
        "update" => serde_json::from_slice::<Value>(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding Scale: {e}")))?,
        _ => {
            let kind = match content_type.split(';').next().unwrap_or_default().trim() {
                "application/merge-patch+json" => PatchKind::Merge,
                "application/json-patch+json" => PatchKind::Json,
                _ => {
                    return Err(ApiError::unsupported_media(
                        "application/json-patch+json, application/merge-patch+json",
                    ));
                }
            };
            let doc: Value = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            let mut s = current.clone();
            apply_patch(&mut s, &doc, kind, "Scale").map_err(|e| match e {
                PatchError::Malformed(m) => ApiError::bad_request(m),
                PatchError::Unprocessable(_) => ApiError::generic_invalid(),
            })?;
            s
        }
    };
    if let Some(rv) = wanted
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .filter(|r| !r.is_empty())
        && rv != rv_of(&live).to_string()
    {
        return Err(ApiError::stale(&subj(def, name)));
    }
    let Some(replicas) = wanted
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .filter(|r| *r >= 0)
    else {
        let c = invalid_value(
            "spec.replicas",
            &wanted["spec"]["replicas"],
            "must be greater than or equal to 0",
        );
        return Err(ApiError::invalid(
            &super::status::Subject {
                kind: "Scale",
                group: "autoscaling",
                name,
            },
            &[c],
        ));
    };
    let spec_path = def
        .crd
        .as_ref()
        .and_then(|c| c.scale.as_ref())
        .and_then(|s| s["specReplicasPath"].as_str())
        .unwrap_or(".spec.replicas");
    let mut merge = json!(replicas);
    for seg in spec_path.trim_start_matches('.').split('.').rev() {
        merge = json!({ seg: merge });
    }
    let body = serde_json::to_vec(&merge).map_err(ApiError::internal)?;
    let (obj, _) = patch(
        st,
        def,
        ns,
        name,
        &body,
        PatchMode::Patch(PatchKind::Merge),
        None,
        false,
        o,
    )?;
    Ok(scale_of(def, &obj))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_paths_to_pointers() {
        assert_eq!(pointer(".spec.replicas"), "/spec/replicas");
        assert_eq!(pointer(".status.selector"), "/status/selector");
    }
}
