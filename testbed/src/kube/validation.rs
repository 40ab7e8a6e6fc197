//! Object metadata and built-in kind validation (names, labels, annotations, owner references,
//! Secrets, ConfigMaps, immutability, RBAC roleRef) with the real server's messages.

use base64::Engine;
use serde_json::Value;

use super::resources::ResourceDef;
use super::semantics::FieldCause;
use super::status::{cause, forbidden, invalid_value, required};

const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const MAX_SECRET: usize = 1024 * 1024;

/// DNS-1123 label: ≤63, `[a-z0-9]([-a-z0-9]*[a-z0-9])?`.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// DNS-1123 subdomain: ≤253, dot-separated labels.
pub fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

fn is_qualified_name_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric()
}

/// Label/annotation key: optional DNS-subdomain prefix + `/` + qualified name.
pub fn is_qualified_name(s: &str) -> bool {
    match s.split_once('/') {
        Some((prefix, name)) => is_dns_subdomain(prefix) && is_qualified_name_part(name),
        None => is_qualified_name_part(s),
    }
}

/// Label value: empty or a qualified name part.
pub fn is_label_value(s: &str) -> bool {
    s.is_empty() || is_qualified_name_part(s)
}

/// Validates the metadata common to all kinds.
pub fn validate_meta(def: &ResourceDef, obj: &Value) -> Vec<FieldCause> {
    let mut out = Vec::new();
    let meta = &obj["metadata"];
    let name = meta["name"].as_str().unwrap_or_default();
    if name.is_empty() {
        out.push(cause(
            "FieldValueRequired",
            "metadata.name",
            "Required value: name or generateName is required",
        ));
    } else {
        let label_only = def.kind == "Namespace";
        let ok = if label_only {
            is_dns_label(name)
        } else {
            is_dns_subdomain(name)
        };
        if !ok {
            out.push(invalid_value(
                "metadata.name",
                &meta["name"],
                if label_only { LABEL_MSG } else { SUBDOMAIN_MSG },
            ));
        }
    }
    if let Some(labels) = meta["labels"].as_object() {
        for (k, v) in labels {
            if !is_qualified_name(k) {
                out.push(invalid_value("metadata.labels", &Value::String(k.clone()), "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"));
            }
            match v.as_str() {
                Some(s) if is_label_value(s) => {}
                _ => out.push(invalid_value("metadata.labels", v, "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character")),
            }
        }
    }
    if let Some(ann) = meta["annotations"].as_object() {
        let mut total = 0;
        for (k, v) in ann {
            total += k.len() + v.as_str().map_or(0, str::len);
            if !is_qualified_name(&k.to_lowercase()) {
                out.push(invalid_value("metadata.annotations", &Value::String(k.clone()), "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"));
            }
        }
        if total > 262144 {
            out.push(cause(
                "FieldValueTooLong",
                "metadata.annotations",
                "Too long: must have at most 262144 bytes",
            ));
        }
    }
    if let Some(refs) = meta["ownerReferences"].as_array() {
        let mut controllers = 0;
        for (i, r) in refs.iter().enumerate() {
            for f in ["apiVersion", "kind", "name", "uid"] {
                if r[f].as_str().unwrap_or_default().is_empty() {
                    out.push(required(&format!("metadata.ownerReferences[{i}].{f}")));
                }
            }
            if r["controller"].as_bool() == Some(true) {
                controllers += 1;
            }
        }
        if controllers > 1 {
            out.push(invalid_value(
                "metadata.ownerReferences",
                &Value::Array(refs.clone()),
                "Only one reference can have Controller set to true",
            ));
        }
    }
    out
}

/// Checks that no finalizer is added while the object is being deleted.
pub fn validate_finalizers_while_deleting(old: &Value, new: &Value) -> Vec<FieldCause> {
    if old.pointer("/metadata/deletionTimestamp").is_none() {
        return Vec::new();
    }
    let list = |v: &Value| -> Vec<String> {
        v.pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(String::from))
            .collect()
    };
    let before = list(old);
    let added: Vec<String> = list(new).into_iter().filter(|f| !before.contains(f)).collect();
    if added.is_empty() {
        return Vec::new();
    }
    let quoted: Vec<String> = added.iter().map(|a| format!("{a:?}")).collect();
    vec![forbidden(
        "metadata.finalizers",
        &format!(
            "no new finalizers can be added if the object is being deleted, found new finalizers []string{{{}}}",
            quoted.join(", ")
        ),
    )]
}

fn key_ok(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 253
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
}

/// Decodes Secret `data` values; the error is a 400 decode message.
pub fn decode_secret_data(obj: &Value) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut out = Vec::new();
    if let Some(data) = obj["data"].as_object() {
        for (k, v) in data {
            let s = v.as_str().ok_or_else(|| format!("Secret in version \"v1\" cannot be handled as a Secret: json: cannot unmarshal {} into Go struct field Secret.data of type []uint8", kind_name(v)))?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|e| format!("Secret in version \"v1\" cannot be handled as a Secret: illegal base64 data at input byte {}", match e { base64::DecodeError::InvalidByte(i, _) => i, _ => s.len() }))?;
            out.push((k.clone(), bytes));
        }
    }
    Ok(out)
}

fn kind_name(v: &Value) -> &'static str {
    match v {
        Value::Number(_) => "number",
        Value::Bool(_) => "bool",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
        _ => "null",
    }
}

/// Secret validation: keys, size, type-specific required keys, immutability.
pub fn validate_secret(obj: &Value, old: Option<&Value>) -> Vec<FieldCause> {
    let mut out = Vec::new();
    let data = decode_secret_data(obj).unwrap_or_default();
    let mut total = 0;
    for (k, v) in &data {
        total += v.len();
        if !key_ok(k) {
            out.push(invalid_value("data", &Value::String(k.clone()), "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"));
        }
    }
    if total > MAX_SECRET {
        out.push(cause(
            "FieldValueTooLong",
            "data",
            format!("Too long: may not be more than {MAX_SECRET} bytes"),
        ));
    }
    let get = |k: &str| data.iter().find(|(n, _)| n == k).map(|(_, v)| v);
    match obj["type"].as_str().unwrap_or("Opaque") {
        "kubernetes.io/dockerconfigjson" => match get(".dockerconfigjson") {
            None => out.push(required("data[.dockerconfigjson]")),
            Some(b) => {
                if let Err(e) = serde_json::from_slice::<serde_json::Map<String, Value>>(b) {
                    out.push(invalid_value(
                        "data[.dockerconfigjson]",
                        &Value::String("<secret contents redacted>".into()),
                        &e.to_string(),
                    ));
                }
            }
        },
        "kubernetes.io/dockercfg" => match get(".dockercfg") {
            None => out.push(required("data[.dockercfg]")),
            Some(b) => {
                if let Err(e) = serde_json::from_slice::<serde_json::Map<String, Value>>(b) {
                    out.push(invalid_value(
                        "data[.dockercfg]",
                        &Value::String("<secret contents redacted>".into()),
                        &e.to_string(),
                    ));
                }
            }
        },
        "kubernetes.io/basic-auth" if get("username").is_none() && get("password").is_none() => {
            out.push(required("data[username]"));
            out.push(required("data[password]"));
        }
        "kubernetes.io/ssh-auth" if get("ssh-privatekey").is_none() => {
            out.push(required("data[ssh-privatekey]"));
        }
        "kubernetes.io/tls" => {
            for k in ["tls.key", "tls.crt"] {
                if get(k).is_none() {
                    out.push(required(&format!("data[{k}]")));
                }
            }
        }
        _ => {}
    }
    if let Some(old) = old {
        if old["type"] != obj["type"] {
            out.push(invalid_value("type", &obj["type"], "field is immutable"));
        }
        out.extend(immutable_checks(old, obj, &["data"]));
    }
    out
}

/// ConfigMap validation: keys, size, duplicates between data and binaryData, immutability.
pub fn validate_configmap(obj: &Value, old: Option<&Value>) -> Vec<FieldCause> {
    let mut out = Vec::new();
    let mut total = 0;
    for f in ["data", "binaryData"] {
        for (k, v) in obj[f].as_object().into_iter().flatten() {
            total += v.as_str().map_or(0, str::len);
            if !key_ok(k) {
                out.push(invalid_value(
                    f,
                    &Value::String(k.clone()),
                    "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
                ));
            }
            if f == "binaryData" && obj["data"].get(k).is_some() {
                out.push(invalid_value(
                    "data",
                    &Value::String(k.clone()),
                    "duplicate of key present in binaryData",
                ));
            }
        }
    }
    if total > MAX_SECRET {
        out.push(cause(
            "FieldValueTooLong",
            "",
            format!("Too long: must have at most {MAX_SECRET} bytes"),
        ));
    }
    if let Some(old) = old {
        out.extend(immutable_checks(old, obj, &["data", "binaryData"]));
    }
    out
}

fn immutable_checks(old: &Value, new: &Value, fields: &[&str]) -> Vec<FieldCause> {
    let mut out = Vec::new();
    if old["immutable"].as_bool() != Some(true) {
        return out;
    }
    for f in fields {
        if old[*f] != new[*f] {
            out.push(forbidden(f, "field is immutable when `immutable` is set"));
        }
    }
    if new["immutable"].as_bool() != Some(true) {
        out.push(forbidden(
            "immutable",
            "field is immutable when `immutable` is set",
        ));
    }
    out
}

/// RBAC binding validation: roleRef required and immutable, subjects well-formed.
pub fn validate_binding(obj: &Value, old: Option<&Value>) -> Vec<FieldCause> {
    let mut out = Vec::new();
    let rr = &obj["roleRef"];
    for f in ["kind", "name"] {
        if rr[f].as_str().unwrap_or_default().is_empty() {
            out.push(required(&format!("roleRef.{f}")));
        }
    }
    if let Some(old) = old
        && old["roleRef"] != obj["roleRef"]
    {
        out.push(invalid_value("roleRef", &obj["roleRef"], "cannot change roleRef"));
    }
    for (i, s) in obj["subjects"].as_array().into_iter().flatten().enumerate() {
        if s["name"].as_str().unwrap_or_default().is_empty() {
            out.push(required(&format!("subjects[{i}].name")));
        }
        match s["kind"].as_str().unwrap_or_default() {
            "User" | "Group" => {}
            "ServiceAccount" => {
                if s["namespace"].as_str().unwrap_or_default().is_empty()
                    && obj.pointer("/metadata/namespace").is_none()
                {
                    out.push(required(&format!("subjects[{i}].namespace")));
                }
            }
            other => out.push(cause(
                "FieldValueNotSupported",
                &format!("subjects[{i}].kind"),
                format!(
                    "Unsupported value: {other:?}: supported values: \"ServiceAccount\", \"User\", \"Group\""
                ),
            )),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_table() {
        for (n, sub, label) in [
            ("a", true, true),
            ("a.b", true, false),
            ("A", false, false),
            ("-a", false, false),
            ("a_b", false, false),
        ] {
            assert_eq!(is_dns_subdomain(n), sub, "{n}");
            assert_eq!(is_dns_label(n), label, "{n}");
        }
        assert!(is_qualified_name("app.kubernetes.io/name"));
        assert!(!is_qualified_name("bad key"));
    }

    #[test]
    fn secret_rules() {
        let ok =
            json!({"type":"kubernetes.io/dockerconfigjson","data":{".dockerconfigjson":"eyJhdXRocyI6e319"}});
        assert!(validate_secret(&ok, None).is_empty());
        let bad = json!({"type":"kubernetes.io/dockerconfigjson","data":{".dockerconfigjson":"bm9wZQ=="}});
        assert_eq!(validate_secret(&bad, None)[0].field, "data[.dockerconfigjson]");
        let missing = json!({"type":"kubernetes.io/basic-auth","data":{}});
        assert_eq!(validate_secret(&missing, None).len(), 2);
        let imm = json!({"immutable":true,"data":{"a":"YQ=="}});
        let changed = json!({"immutable":true,"data":{"a":"Yg=="}});
        assert_eq!(
            validate_secret(&changed, Some(&imm))[0].message,
            "Forbidden: field is immutable when `immutable` is set"
        );
        assert!(decode_secret_data(&json!({"data":{"a":"!!"}})).is_err());
    }
}
