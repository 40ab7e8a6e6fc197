//! Minimal decoder for the Kubernetes protobuf envelope (`k8s\0` + runtime.Unknown) for the kinds
//! kubectl's typed clients send as protobuf (`kubectl create namespace|secret|configmap|
//! serviceaccount`). Decodes to the JSON form; responses stay JSON (clients accept `*/*`).

use base64::Engine;
use serde_json::{Map, Value, json};

/// Why a protobuf body could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("protobuf decode error: {0}")]
pub struct DecodeError(&'static str);

struct Reader<'a> {
    buf: &'a [u8],
}

enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for i in 0..10 {
            let (&b, rest) = self.buf.split_first().ok_or(DecodeError("truncated varint"))?;
            self.buf = rest;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError("varint too long"))
    }

    fn next(&mut self) -> Result<Option<(u64, Field<'a>)>, DecodeError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let f = match key & 7 {
            0 => Field::Varint(self.varint()?),
            2 => {
                let n = usize::try_from(self.varint()?).map_err(|_| DecodeError("length"))?;
                if n > self.buf.len() {
                    return Err(DecodeError("truncated bytes"));
                }
                let (b, rest) = self.buf.split_at(n);
                self.buf = rest;
                Field::Bytes(b)
            }
            1 => {
                self.skip(8)?;
                Field::Varint(0)
            }
            5 => {
                self.skip(4)?;
                Field::Varint(0)
            }
            _ => return Err(DecodeError("unsupported wire type")),
        };
        Ok(Some((key >> 3, f)))
    }

    fn skip(&mut self, n: usize) -> Result<(), DecodeError> {
        if n > self.buf.len() {
            return Err(DecodeError("truncated fixed"));
        }
        self.buf = &self.buf[n..];
        Ok(())
    }
}

fn fields(b: &[u8]) -> Result<Vec<(u64, Field<'_>)>, DecodeError> {
    let mut r = Reader { buf: b };
    let mut out = Vec::new();
    while let Some(f) = r.next()? {
        out.push(f);
    }
    Ok(out)
}

fn string(b: &[u8]) -> Result<String, DecodeError> {
    String::from_utf8(b.to_vec()).map_err(|_| DecodeError("invalid utf-8"))
}

/// Decodes a map entry `{1: key, 2: value}`; `bytes_value` base64-encodes the value.
fn map_entry(b: &[u8], bytes_value: bool, into: &mut Map<String, Value>) -> Result<(), DecodeError> {
    let (mut k, mut v) = (String::new(), Value::String(String::new()));
    for (n, f) in fields(b)? {
        if let Field::Bytes(x) = f {
            match n {
                1 => k = string(x)?,
                2 if bytes_value => v = json!(base64::engine::general_purpose::STANDARD.encode(x)),
                2 => v = json!(string(x)?),
                _ => {}
            }
        }
    }
    into.insert(k, v);
    Ok(())
}

fn object_meta(b: &[u8]) -> Result<Value, DecodeError> {
    let mut m = Map::new();
    let (mut labels, mut annotations, mut finalizers) = (Map::new(), Map::new(), Vec::new());
    for (n, f) in fields(b)? {
        if let Field::Bytes(x) = f {
            match n {
                1 => drop(m.insert("name".into(), json!(string(x)?))),
                2 => drop(m.insert("generateName".into(), json!(string(x)?))),
                3 => drop(m.insert("namespace".into(), json!(string(x)?))),
                11 => map_entry(x, false, &mut labels)?,
                12 => map_entry(x, false, &mut annotations)?,
                14 => finalizers.push(json!(string(x)?)),
                _ => {}
            }
        }
    }
    if !labels.is_empty() {
        m.insert("labels".into(), Value::Object(labels));
    }
    if !annotations.is_empty() {
        m.insert("annotations".into(), Value::Object(annotations));
    }
    if !finalizers.is_empty() {
        m.insert("finalizers".into(), Value::Array(finalizers));
    }
    Ok(Value::Object(m))
}

fn string_fields(b: &[u8], names: &[(u64, &str)]) -> Result<Value, DecodeError> {
    let mut m = Map::new();
    for (n, f) in fields(b)? {
        if let (Field::Bytes(x), Some((_, k))) = (f, names.iter().find(|(i, _)| *i == n)) {
            m.insert((*k).into(), json!(string(x)?));
        }
    }
    Ok(Value::Object(m))
}

fn push(obj: &mut Map<String, Value>, key: &str, v: Value) {
    if let Some(Value::Array(a)) = obj.get_mut(key) {
        a.push(v);
    } else {
        obj.insert(key.into(), Value::Array(vec![v]));
    }
}

/// rbac/v1 PolicyRule: verbs 1, apiGroups 2, resources 3, resourceNames 4, nonResourceURLs 5.
fn policy_rule(b: &[u8]) -> Result<Value, DecodeError> {
    let keys = [
        "verbs",
        "apiGroups",
        "resources",
        "resourceNames",
        "nonResourceURLs",
    ];
    let mut m = Map::new();
    for (n, f) in fields(b)? {
        let key = usize::try_from(n)
            .ok()
            .and_then(|i| i.checked_sub(1))
            .and_then(|i| keys.get(i));
        if let (Field::Bytes(x), Some(k)) = (f, key) {
            push(&mut m, k, json!(string(x)?));
        }
    }
    Ok(Value::Object(m))
}

/// SelfSubjectAccessReviewSpec: resourceAttributes (1) or nonResourceAttributes (2).
fn review_spec(b: &[u8]) -> Result<Value, DecodeError> {
    let mut spec = Map::new();
    for (n, f) in fields(b)? {
        match (n, f) {
            (1, Field::Bytes(x)) => {
                let names = [
                    (1, "namespace"),
                    (2, "verb"),
                    (3, "group"),
                    (4, "version"),
                    (5, "resource"),
                    (6, "subresource"),
                    (7, "name"),
                ];
                spec.insert("resourceAttributes".into(), string_fields(x, &names)?);
            }
            (2, Field::Bytes(x)) => {
                spec.insert(
                    "nonResourceAttributes".into(),
                    string_fields(x, &[(1, "path"), (2, "verb")])?,
                );
            }
            _ => {}
        }
    }
    Ok(Value::Object(spec))
}

/// Decodes an enveloped protobuf body of a supported kind into JSON.
pub fn decode(body: &[u8]) -> Result<Value, DecodeError> {
    let raw = body
        .strip_prefix(b"k8s\0")
        .ok_or(DecodeError("missing k8s envelope magic"))?;
    let (mut api_version, mut kind, mut inner) = (String::new(), String::new(), &[][..]);
    for (n, f) in fields(raw)? {
        match (n, f) {
            (1, Field::Bytes(tm)) => {
                for (n, f) in fields(tm)? {
                    if let Field::Bytes(x) = f {
                        match n {
                            1 => api_version = string(x)?,
                            2 => kind = string(x)?,
                            _ => {}
                        }
                    }
                }
            }
            (2, Field::Bytes(x)) => inner = x,
            _ => {}
        }
    }
    let mut obj = Map::new();
    obj.insert("apiVersion".into(), json!(api_version));
    obj.insert("kind".into(), json!(kind));
    let (mut data, mut string_data, mut binary) = (Map::new(), Map::new(), Map::new());
    for (n, f) in fields(inner)? {
        match (kind.as_str(), n, f) {
            (_, 1, Field::Bytes(x)) => drop(obj.insert("metadata".into(), object_meta(x)?)),
            ("Secret", 2, Field::Bytes(x)) => map_entry(x, true, &mut data)?,
            ("Secret", 3, Field::Bytes(x)) => drop(obj.insert("type".into(), json!(string(x)?))),
            ("Secret", 4, Field::Bytes(x)) => map_entry(x, false, &mut string_data)?,
            ("Secret", 5, Field::Varint(v)) | ("ConfigMap", 4, Field::Varint(v)) => {
                drop(obj.insert("immutable".into(), json!(v != 0)))
            }
            ("ConfigMap", 2, Field::Bytes(x)) => map_entry(x, false, &mut data)?,
            ("ConfigMap", 3, Field::Bytes(x)) => map_entry(x, true, &mut binary)?,
            ("Role" | "ClusterRole", 2, Field::Bytes(x)) => push(&mut obj, "rules", policy_rule(x)?),
            ("RoleBinding" | "ClusterRoleBinding", 2, Field::Bytes(x)) => {
                let names = [(1, "kind"), (2, "apiGroup"), (3, "name"), (4, "namespace")];
                push(&mut obj, "subjects", string_fields(x, &names)?)
            }
            ("RoleBinding" | "ClusterRoleBinding", 3, Field::Bytes(x)) => {
                let names = [(1, "apiGroup"), (2, "kind"), (3, "name")];
                drop(obj.insert("roleRef".into(), string_fields(x, &names)?))
            }
            ("TokenRequest", 2, Field::Bytes(x)) => {
                let mut spec = Map::new();
                for (n, f) in fields(x)? {
                    match (n, f) {
                        (1, Field::Bytes(a)) => push(&mut spec, "audiences", json!(string(a)?)),
                        (4, Field::Varint(v)) => drop(spec.insert("expirationSeconds".into(), json!(v))),
                        _ => {}
                    }
                }
                drop(obj.insert("spec".into(), Value::Object(spec)))
            }
            ("SelfSubjectRulesReview", 2, Field::Bytes(x)) => {
                drop(obj.insert("spec".into(), string_fields(x, &[(1, "namespace")])?))
            }
            ("SelfSubjectAccessReview", 2, Field::Bytes(x)) => {
                drop(obj.insert("spec".into(), review_spec(x)?))
            }
            ("Namespace" | "ServiceAccount", _, _) => {}
            _ => {}
        }
    }
    const KINDS: &[&str] = &[
        "Namespace",
        "Secret",
        "ConfigMap",
        "ServiceAccount",
        "SelfSubjectAccessReview",
        "SelfSubjectRulesReview",
        "TokenRequest",
        "Role",
        "ClusterRole",
        "RoleBinding",
        "ClusterRoleBinding",
    ];
    if !KINDS.contains(&kind.as_str()) {
        return Err(DecodeError("kind not supported in protobuf"));
    }
    for (k, m) in [
        ("data", data),
        ("stringData", string_data),
        ("binaryData", binary),
    ] {
        if !m.is_empty() {
            obj.insert(k.into(), Value::Object(m));
        }
    }
    Ok(Value::Object(obj))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ld(field: u8, b: &[u8]) -> Vec<u8> {
        let mut v = vec![(field << 3) | 2, b.len() as u8];
        v.extend_from_slice(b);
        v
    }

    #[test]
    fn decodes_a_secret() {
        let meta = [ld(1, b"s1"), ld(3, b"apps")].concat();
        let entry = [ld(1, b"password"), ld(2, b"hunter2")].concat();
        let secret = [ld(1, &meta), ld(2, &entry), ld(3, b"Opaque")].concat();
        let tm = [ld(1, b"v1"), ld(2, b"Secret")].concat();
        let body = [b"k8s\0".to_vec(), ld(1, &tm), ld(2, &secret)].concat();
        let v = decode(&body).unwrap();
        assert_eq!(v["metadata"]["name"], "s1");
        assert_eq!(v["data"]["password"], "aHVudGVyMg==");
        assert_eq!(v["type"], "Opaque");
        assert!(decode(b"nope").is_err());
    }
}
