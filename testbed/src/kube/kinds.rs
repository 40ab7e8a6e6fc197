//! Kind-specific server behaviour: defaults and status the server owns (Secret `stringData`,
//! Namespace phase/finalizers/label, CRD names and conditions) and the events.k8s.io ↔ core/v1
//! Event mapping (both share one storage, as in the real server).

use base64::Engine;
use serde_json::{Map, Value, json};

use super::resources::ResourceDef;
use super::semantics::FieldCause;
use super::status::{cause, invalid_value, required};

/// Server-side defaulting and normalisation of a kind before validation.
pub fn normalize(def: &ResourceDef, obj: &mut Value, old: Option<&Value>, now: &str) {
    match (def.group.as_str(), def.kind.as_str()) {
        ("", "Secret") => {
            if let Some(Value::Object(sd)) = obj.as_object_mut().and_then(|m| m.remove("stringData")) {
                let data = obj
                    .as_object_mut()
                    .map(|m| m.entry("data").or_insert_with(|| json!({})));
                if let Some(Value::Object(d)) = data {
                    for (k, v) in sd {
                        let s = v.as_str().unwrap_or_default();
                        d.insert(
                            k,
                            Value::String(base64::engine::general_purpose::STANDARD.encode(s)),
                        );
                    }
                }
            }
            if obj["type"].as_str().unwrap_or_default().is_empty() {
                obj["type"] = json!("Opaque");
            }
            drop_empty(obj, "data");
        }
        ("", "ConfigMap") => {
            drop_empty(obj, "data");
            drop_empty(obj, "binaryData");
        }
        ("", "Namespace") => {
            let name = obj.pointer("/metadata/name").cloned().unwrap_or(Value::Null);
            if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                let labels = m.entry("labels").or_insert_with(|| json!({}));
                if let Some(l) = labels.as_object_mut() {
                    l.insert("kubernetes.io/metadata.name".into(), name);
                }
            }
            match old {
                None => {
                    let mut fins: Vec<Value> = obj
                        .pointer("/spec/finalizers")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default();
                    if !fins.iter().any(|f| f == "kubernetes") {
                        fins.insert(0, json!("kubernetes"));
                    }
                    obj["spec"] = json!({"finalizers": fins});
                    obj["status"] = json!({"phase":"Active"});
                }
                Some(o) => {
                    if obj.pointer("/spec/finalizers").is_none() {
                        obj["spec"] = o["spec"].clone();
                    }
                    if obj.pointer("/status/phase").is_none() {
                        obj["status"] = o["status"].clone();
                    }
                }
            }
        }
        ("apiextensions.k8s.io", "CustomResourceDefinition") => normalize_crd(obj, old, now),
        _ => {}
    }
}

/// Extra Secret type rules that need metadata (service-account tokens name their account).
pub fn validate_secret_meta(obj: &Value) -> Vec<FieldCause> {
    if obj["type"] == "kubernetes.io/service-account-token"
        && obj
            .pointer("/metadata/annotations/kubernetes.io~1service-account.name")
            .is_none()
    {
        return vec![required(
            "metadata.annotations[kubernetes.io/service-account.name]",
        )];
    }
    Vec::new()
}

fn drop_empty(obj: &mut Value, field: &str) {
    if obj
        .get(field)
        .is_some_and(|v| v.as_object().is_some_and(Map::is_empty) || v.is_null())
        && let Some(m) = obj.as_object_mut()
    {
        m.remove(field);
    }
}

fn normalize_crd(obj: &mut Value, old: Option<&Value>, now: &str) {
    let kind = obj
        .pointer("/spec/names/kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if let Some(names) = obj.pointer_mut("/spec/names").and_then(Value::as_object_mut) {
        names
            .entry("singular")
            .or_insert_with(|| json!(kind.to_lowercase()));
        names
            .entry("listKind")
            .or_insert_with(|| json!(format!("{kind}List")));
    }
    if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
        spec.entry("conversion")
            .or_insert_with(|| json!({"strategy":"None"}));
    }
    let storage: Vec<Value> = obj
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|v| v["storage"].as_bool() == Some(true))
        .map(|v| v["name"].clone())
        .collect();
    let prev_status = old.map(|o| o["status"].clone()).filter(|s| s.is_object());
    let mut stored: Vec<Value> = prev_status
        .as_ref()
        .and_then(|s| s["storedVersions"].as_array().cloned())
        .unwrap_or_default();
    for s in storage {
        if !stored.contains(&s) {
            stored.push(s);
        }
    }
    let mut status =
        prev_status.unwrap_or_else(|| json!({"acceptedNames":{"plural":"","kind":""},"conditions":[]}));
    status["storedVersions"] = json!(stored);
    obj["status"] = status;
    if obj.pointer("/metadata/deletionTimestamp").is_some() {
        super::crd::set_condition(
            obj,
            "Terminating",
            true,
            "InstanceDeletionInProgress",
            "CustomResource deletion is in progress",
            now,
        );
    }
}

/// Top-level fields of the built-in kinds; anything else is dropped (as decoding into the Go
/// type does) and reported so `fieldValidation=Strict` can refuse it.
fn builtin_fields(def: &ResourceDef) -> Option<&'static [&'static str]> {
    Some(match (def.group.as_str(), def.kind.as_str()) {
        ("", "Secret") => &["data", "stringData", "type", "immutable"],
        ("", "ConfigMap") => &["data", "binaryData", "immutable"],
        ("", "Namespace") | ("apiextensions.k8s.io", _) => &["spec", "status"],
        ("", "ServiceAccount") => &["secrets", "imagePullSecrets", "automountServiceAccountToken"],
        ("coordination.k8s.io", _) => &["spec"],
        (_, "Role") => &["rules"],
        (_, "ClusterRole") => &["rules", "aggregationRule"],
        (_, "RoleBinding" | "ClusterRoleBinding") => &["roleRef", "subjects"],
        ("", "Event") => &[
            "involvedObject",
            "reason",
            "message",
            "source",
            "firstTimestamp",
            "lastTimestamp",
            "count",
            "type",
            "eventTime",
            "series",
            "action",
            "related",
            "reportingComponent",
            "reportingInstance",
        ],
        ("events.k8s.io", "Event") => &[
            "eventTime",
            "series",
            "reportingController",
            "reportingInstance",
            "action",
            "reason",
            "regarding",
            "related",
            "note",
            "type",
            "deprecatedSource",
            "deprecatedFirstTimestamp",
            "deprecatedLastTimestamp",
            "deprecatedCount",
        ],
        _ => return None,
    })
}

/// Drops unknown top-level fields of a built-in kind's request body; returns their names.
pub fn prune_builtin(def: &ResourceDef, obj: &mut Value) -> Vec<String> {
    let Some(known) = builtin_fields(def) else {
        return Vec::new();
    };
    let Some(m) = obj.as_object_mut() else {
        return Vec::new();
    };
    let unknown: Vec<String> = m
        .keys()
        .filter(|k| !["apiVersion", "kind", "metadata"].contains(&k.as_str()) && !known.contains(&k.as_str()))
        .cloned()
        .collect();
    for k in &unknown {
        m.remove(k);
    }
    unknown
}

/// Kind-specific validation of a write (`old` is the stored object on updates). Undecodable
/// base64 data is a 400; rule violations are returned as causes.
pub fn validate_kind(
    def: &ResourceDef,
    new: &Value,
    old: Option<&Value>,
) -> Result<Vec<FieldCause>, super::status::ApiError> {
    use super::status::ApiError;
    let mut causes = Vec::new();
    match (def.group.as_str(), def.kind.as_str()) {
        ("", "Secret") => {
            super::validation::decode_secret_data(new).map_err(ApiError::bad_request)?;
            causes.extend(super::validation::validate_secret(new, old));
            causes.extend(validate_secret_meta(new))
        }
        ("", "ConfigMap") => {
            let binary = json!({"data": new.get("binaryData").cloned().unwrap_or(Value::Null)});
            super::validation::decode_secret_data(&binary).map_err(|e| {
                ApiError::bad_request(e.replace("Secret", "ConfigMap").replace(".data", ".binaryData"))
            })?;
            causes.extend(super::validation::validate_configmap(new, old))
        }
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            causes.extend(super::validation::validate_binding(new, old))
        }
        ("apiextensions.k8s.io", _) => causes.extend(validate_crd(new, old)),
        _ => {}
    }
    if let Some(old) = old {
        causes.extend(super::validation::validate_finalizers_while_deleting(old, new));
        if old.pointer("/metadata/uid") != new.pointer("/metadata/uid") {
            causes.push(invalid_value(
                "metadata.uid",
                &new["metadata"]["uid"],
                "field is immutable",
            ));
        }
    }
    Ok(causes)
}

/// CRD validation: name = plural.group, exactly one storage version, schemas present, scope.
pub fn validate_crd(obj: &Value, old: Option<&Value>) -> Vec<FieldCause> {
    let mut out = Vec::new();
    let spec = &obj["spec"];
    let group = spec["group"].as_str().unwrap_or_default();
    let plural = spec
        .pointer("/names/plural")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if group.is_empty() {
        out.push(required("spec.group"));
    } else if !group.contains('.') {
        out.push(invalid_value(
            "spec.group",
            &spec["group"],
            "should be a domain with at least one dot",
        ));
    }
    if plural.is_empty() {
        out.push(required("spec.names.plural"));
    }
    if spec
        .pointer("/names/kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .is_empty()
    {
        out.push(required("spec.names.kind"));
    }
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if name != format!("{plural}.{group}") {
        out.push(invalid_value(
            "metadata.name",
            &json!(name),
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    match spec["scope"].as_str() {
        Some("Namespaced") | Some("Cluster") => {}
        _ => out.push(cause(
            "FieldValueNotSupported",
            "spec.scope",
            format!(
                "Unsupported value: {}: supported values: \"Cluster\", \"Namespaced\"",
                spec["scope"]
            ),
        )),
    }
    if spec["preserveUnknownFields"].as_bool() == Some(true) {
        out.push(invalid_value(
            "spec.preserveUnknownFields",
            &json!(true),
            "must be false in order to use defaults in the schema",
        ));
    }
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    if versions.is_empty() {
        out.push(required("spec.versions"));
    }
    let storage = versions
        .iter()
        .filter(|v| v["storage"].as_bool() == Some(true))
        .count();
    if !versions.is_empty() && storage != 1 {
        out.push(invalid_value(
            "spec.versions",
            &json!(versions.iter().map(|v| v["name"].clone()).collect::<Vec<_>>()),
            "must have exactly one version marked as storage version",
        ));
    }
    for (i, v) in versions.iter().enumerate() {
        match v.pointer("/schema/openAPIV3Schema") {
            None => out.push(required(&format!("spec.versions[{i}].schema.openAPIV3Schema"))),
            Some(s) => structural(
                s,
                &format!("spec.versions[{i}].schema.openAPIV3Schema"),
                true,
                &mut out,
            ),
        }
    }
    if let Some(old) = old {
        if old.pointer("/spec/scope") != spec.get("scope") {
            out.push(invalid_value("spec.scope", &spec["scope"], "field is immutable"));
        }
        if old.pointer("/spec/group") != spec.get("group") {
            out.push(invalid_value("spec.group", &spec["group"], "field is immutable"));
        }
    }
    out
}

fn structural(s: &Value, path: &str, root: bool, out: &mut Vec<FieldCause>) {
    let preserve = s["x-kubernetes-preserve-unknown-fields"].as_bool() == Some(true);
    let ios = s["x-kubernetes-int-or-string"].as_bool() == Some(true);
    if s.get("type").is_none() && !preserve && !ios && !root {
        out.push(required(&format!("{path}.type")));
    }
    if root && s.get("type").is_some_and(|t| t != "object") {
        out.push(invalid_value(
            &format!("{path}.type"),
            &s["type"],
            "must be object at the root",
        ));
    }
    if s.get("properties").is_some() && s.get("additionalProperties").is_some_and(|a| a.is_object()) {
        out.push(cause(
            "FieldValueForbidden",
            &format!("{path}.additionalProperties"),
            "Forbidden: additionalProperties and properties are mutual exclusive",
        ));
    }
    for (k, v) in s["properties"].as_object().into_iter().flatten() {
        if !(root && k == "metadata") {
            structural(v, &format!("{path}.properties[{k}]"), false, out);
        }
    }
    if let Some(items) = s.get("items").filter(|i| i.is_object()) {
        structural(items, &format!("{path}.items"), false, out);
    }
    if let Some(ap) = s.get("additionalProperties").filter(|a| a.is_object()) {
        structural(ap, &format!("{path}.additionalProperties"), false, out);
    }
}

/// events.k8s.io/v1 Event → stored (core/v1) form.
pub fn event_to_core(ev: &Value) -> Value {
    let mut core = ev.clone();
    let Some(m) = core.as_object_mut() else {
        return core;
    };
    m.insert("apiVersion".into(), json!("v1"));
    for (from, to) in [
        ("regarding", "involvedObject"),
        ("note", "message"),
        ("reportingController", "reportingComponent"),
        ("deprecatedSource", "source"),
        ("deprecatedFirstTimestamp", "firstTimestamp"),
        ("deprecatedLastTimestamp", "lastTimestamp"),
        ("deprecatedCount", "count"),
        ("related", "related"),
    ] {
        if let Some(v) = m.remove(from)
            && !v.is_null()
        {
            m.insert(to.into(), v);
        }
    }
    if m.get("involvedObject").is_none() {
        m.insert("involvedObject".into(), json!({}));
    }
    core
}

/// Stored (core/v1) Event → events.k8s.io/v1 form.
pub fn event_from_core(core: &Value) -> Value {
    let mut ev = core.clone();
    let Some(m) = ev.as_object_mut() else { return ev };
    m.insert("apiVersion".into(), json!("events.k8s.io/v1"));
    for (from, to) in [
        ("involvedObject", "regarding"),
        ("message", "note"),
        ("reportingComponent", "reportingController"),
        ("source", "deprecatedSource"),
        ("firstTimestamp", "deprecatedFirstTimestamp"),
        ("lastTimestamp", "deprecatedLastTimestamp"),
        ("count", "deprecatedCount"),
    ] {
        if let Some(v) = m.remove(from) {
            m.insert(to.into(), v);
        }
    }
    ev
}

/// A field name and the value an unset one shows.
type ZeroField = (&'static str, fn() -> Value);

/// The fields an Event of each API always shows, with the value Go's JSON encoding gives an
/// unset one: struct fields without `omitempty` effect (`metav1.Time` → `null`, an empty
/// `EventSource`/`ObjectReference` → `{}`) and strings without `omitempty` (`reportingComponent`).
/// The real server converts events.k8s.io/v1 ↔ v1 by copying fields only
/// (`deprecatedLastTimestamp` ↔ `lastTimestamp`, …; `Convert_v1_Event_To_core_Event`), so an
/// Event created with only `eventTime` shows `lastTimestamp: null` in the core view — present,
/// which is what lets `kubectl get events --sort-by=.lastTimestamp` sort instead of failing with
/// "couldn't find any field with path".
fn event_zero_fields(group: &str) -> &'static [ZeroField] {
    if group == "events.k8s.io" {
        &[
            ("eventTime", || Value::Null),
            ("regarding", || json!({})),
            ("deprecatedSource", || json!({})),
            ("deprecatedFirstTimestamp", || Value::Null),
            ("deprecatedLastTimestamp", || Value::Null),
        ]
    } else {
        &[
            ("involvedObject", || json!({})),
            ("source", || json!({})),
            ("firstTimestamp", || Value::Null),
            ("lastTimestamp", || Value::Null),
            ("eventTime", || Value::Null),
            ("reportingComponent", || json!("")),
            ("reportingInstance", || json!("")),
        ]
    }
}

/// Converts a stored object to what the client of `def` sees (apiVersion, event shape).
pub fn to_view(def: &ResourceDef, stored: &Value) -> Value {
    let mut v = if def.group == "events.k8s.io" {
        event_from_core(stored)
    } else {
        stored.clone()
    };
    if let Some(m) = v.as_object_mut() {
        m.insert("apiVersion".into(), json!(def.api_version()));
        m.insert("kind".into(), json!(def.kind));
        if def.kind == "Event" && (def.group.is_empty() || def.group == "events.k8s.io") {
            for (field, zero) in event_zero_fields(&def.group) {
                m.entry(*field).or_insert_with(zero);
            }
            let count = if def.group.is_empty() {
                "count"
            } else {
                "deprecatedCount"
            };
            if m.get(count).is_some_and(|c| c.is_null() || c == &json!(0)) {
                m.remove(count);
            }
        }
    }
    v
}

/// What a read returns: [`to_view`] plus the schema defaults of the served version, which the
/// real server applies when reading custom resources from storage (not written back).
pub fn read_view(def: &ResourceDef, stored: &Value) -> Value {
    let mut v = to_view(def, stored);
    if let Some(crd) = def.crd.as_ref().filter(|c| c.schema.is_object()) {
        let meta = v.as_object_mut().and_then(|m| m.remove("metadata"));
        super::semantics::schema::apply_defaults(&crd.schema, &mut v);
        if let (Some(m), Some(obj)) = (meta, v.as_object_mut()) {
            obj.insert("metadata".into(), m);
        }
    }
    v
}

/// Converts a client-shaped object of `def` to its stored form.
pub fn from_view(def: &ResourceDef, view: Value) -> Value {
    if def.group == "events.k8s.io" {
        event_to_core(&view)
    } else {
        view
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_mapping_round_trips() {
        let ev = json!({"apiVersion":"events.k8s.io/v1","kind":"Event","metadata":{"name":"e"},
            "regarding":{"name":"w1"},"note":"hi","reportingController":"c","reason":"Synced"});
        let core = event_to_core(&ev);
        assert_eq!(core["involvedObject"]["name"], "w1");
        assert_eq!(core["message"], "hi");
        assert_eq!(core["reportingComponent"], "c");
        assert_eq!(event_from_core(&core), ev);
    }

    #[test]
    fn crd_validation_catches_bad_names() {
        let crd = json!({"metadata":{"name":"x.example.com"},"spec":{"group":"example.com","scope":"Namespaced",
            "names":{"plural":"widgets","kind":"Widget"},"versions":[{"name":"v1","served":true,"storage":true,
            "schema":{"openAPIV3Schema":{"type":"object","properties":{"spec":{"properties":{}}}}}}]}});
        let errs = validate_crd(&crd, None);
        assert!(errs.iter().any(|e| e.field == "metadata.name"));
        assert!(errs.iter().any(|e| e.field.ends_with("properties[spec].type")));
    }
}
