//! Field sets as structured-merge-diff keeps them, encoded as `FieldsV1`: a tree whose edges are
//! path elements (`f:<field>`, `k:<sorted key JSON>`, `v:<value JSON>`, `i:<index>`) and whose
//! nodes may be members of the set (`.` when the node also has children, `{}` for a leaf).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// A set of field paths (structured-merge-diff `fieldpath.Set`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet {
    member: bool,
    children: BTreeMap<String, FieldSet>,
}

/// One path: encoded path elements from the root (`["f:spec", "f:replicas"]`).
pub type FieldPath = Vec<String>;

impl FieldSet {
    /// The empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes a `fieldsV1` object; errors name the offending key.
    pub fn from_fields_v1(value: &Value) -> Result<Self, String> {
        let Value::Object(map) = value else {
            return Err("fieldsV1 must be a JSON object".into());
        };
        let mut node = FieldSet::new();
        for (key, child) in map {
            if key == "." {
                node.member = true;
                continue;
            }
            if !["f:", "k:", "v:", "i:"].iter().any(|p| key.starts_with(p)) {
                return Err(format!("invalid fieldsV1 path element {key:?}"));
            }
            let mut sub = FieldSet::from_fields_v1(child)?;
            if child.as_object().is_some_and(Map::is_empty) {
                sub.member = true;
            }
            node.children.insert(key.clone(), sub);
        }
        Ok(node)
    }

    /// Encodes the set as a `fieldsV1` object.
    pub fn to_fields_v1(&self) -> Value {
        let mut map = Map::new();
        if self.member && !self.children.is_empty() {
            map.insert(".".into(), Value::Object(Map::new()));
        }
        for (key, child) in &self.children {
            map.insert(key.clone(), child.to_fields_v1());
        }
        Value::Object(map)
    }

    /// True when the set holds no member.
    pub fn is_empty(&self) -> bool {
        !self.member && self.children.values().all(FieldSet::is_empty)
    }

    /// Adds `path` as a member.
    pub fn insert(&mut self, path: &[String]) {
        let mut node = self;
        for element in path {
            node = node.children.entry(element.clone()).or_default();
        }
        node.member = true;
    }

    /// True when `path` is a member.
    pub fn has(&self, path: &[String]) -> bool {
        self.node(path).is_some_and(|n| n.member)
    }

    /// True when `path` is a member or has a member below it.
    pub fn touches(&self, path: &[String]) -> bool {
        self.node(path).is_some_and(|n| !n.is_empty())
    }

    fn node(&self, path: &[String]) -> Option<&FieldSet> {
        let mut node = self;
        for element in path {
            node = node.children.get(element)?;
        }
        Some(node)
    }

    /// Every member path, in sorted order.
    pub fn members(&self) -> Vec<FieldPath> {
        let mut out = Vec::new();
        self.collect(&mut Vec::new(), &mut out);
        out
    }

    fn collect(&self, prefix: &mut FieldPath, out: &mut Vec<FieldPath>) {
        if self.member {
            out.push(prefix.clone());
        }
        for (key, child) in &self.children {
            prefix.push(key.clone());
            child.collect(prefix, out);
            prefix.pop();
        }
    }

    /// Members of either set.
    pub fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        for path in other.members() {
            out.insert(&path);
        }
        out
    }

    /// Members of `self` that are not members of `other` (member-wise, not recursive).
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet::new();
        for path in self.members() {
            if !other.has(&path) {
                out.insert(&path);
            }
        }
        out
    }

    /// Members of both sets.
    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet::new();
        for path in self.members() {
            if other.has(&path) {
                out.insert(&path);
            }
        }
        out
    }

    /// Keeps only the subtree under `element` (e.g. `f:status`), at the same place.
    pub fn only_under(&self, element: &str) -> FieldSet {
        let mut out = FieldSet::new();
        if let Some(child) = self.children.get(element) {
            out.children.insert(element.to_string(), child.clone());
        }
        out
    }
}

/// The `f:` element for a field or map key.
pub fn field_element(name: &str) -> String {
    format!("f:{name}")
}

/// The `v:` element for a set item.
pub fn value_element(item: &Value) -> String {
    format!("v:{item}")
}

/// The `k:` element for a list-map item: its key fields as JSON with sorted keys, or `None`
/// when the item is not an object or lacks every key field.
pub fn key_element(item: &Value, keys: &[String]) -> Option<String> {
    let map = item.as_object()?;
    let mut sorted: BTreeMap<&str, &Value> = BTreeMap::new();
    for key in keys {
        if let Some(v) = map.get(key) {
            sorted.insert(key, v);
        }
    }
    if sorted.is_empty() {
        return None;
    }
    let body: Vec<String> = sorted
        .iter()
        .map(|(k, v)| format!("{}:{}", Value::String((*k).to_string()), v))
        .collect();
    Some(format!("k:{{{}}}", body.join(",")))
}

/// Renders a path as structured-merge-diff prints it in conflicts: `.spec.x`,
/// `.spec.containers[name="c"].image`, `.metadata.finalizers[="a"]`, `.spec.l[0]`.
pub fn render_path(path: &[String]) -> String {
    let mut out = String::new();
    for element in path {
        if let Some(name) = element.strip_prefix("f:") {
            out.push('.');
            out.push_str(name);
        } else if let Some(key) = element.strip_prefix("k:") {
            let parts: Vec<String> = match serde_json::from_str::<Map<String, Value>>(key) {
                Ok(m) => m.iter().map(|(k, v)| format!("{k}={v}")).collect(),
                Err(_) => vec![key.to_string()],
            };
            out.push_str(&format!("[{}]", parts.join(",")));
        } else if let Some(value) = element.strip_prefix("v:") {
            out.push_str(&format!("[={value}]"));
        } else if let Some(index) = element.strip_prefix("i:") {
            out.push_str(&format!("[{index}]"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(elements: &[&str]) -> FieldPath {
        elements.iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn fields_v1_round_trip_table() {
        let cases = [
            json!({}),
            json!({"f:metadata": {"f:labels": {"f:app": {}}}}),
            json!({"f:data": {".": {}, "f:k": {}}, "f:metadata": {"f:labels": {".": {}, "f:app": {}}}}),
            json!({"f:spec": {"f:ports": {"k:{\"port\":80,\"protocol\":\"TCP\"}": {".": {}, "f:port": {}}}}}),
            json!({"f:metadata": {"f:finalizers": {"v:\"a\"": {}, "v:\"b\"": {}}}}),
        ];
        for fields in cases {
            let set = FieldSet::from_fields_v1(&fields).unwrap();
            assert_eq!(set.to_fields_v1(), fields);
        }
    }

    #[test]
    fn fields_v1_rejects_garbage() {
        for bad in [json!([]), json!({"x:y": {}}), json!({"f:a": 1})] {
            assert!(FieldSet::from_fields_v1(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn set_operations() {
        let mut a = FieldSet::new();
        a.insert(&p(&["f:spec", "f:a"]));
        a.insert(&p(&["f:spec", "f:b"]));
        let mut b = FieldSet::new();
        b.insert(&p(&["f:spec", "f:b"]));
        b.insert(&p(&["f:spec", "f:c"]));
        assert_eq!(a.intersection(&b).members(), vec![p(&["f:spec", "f:b"])]);
        assert_eq!(a.difference(&b).members(), vec![p(&["f:spec", "f:a"])]);
        assert_eq!(a.union(&b).members().len(), 3);
        assert!(a.touches(&p(&["f:spec"])));
        assert!(!a.has(&p(&["f:spec"])));
        assert!(a.difference(&a).is_empty());
        assert_eq!(a.only_under("f:status"), FieldSet::new());
    }

    #[test]
    fn elements_and_rendering() {
        let item = json!({"protocol": "TCP", "port": 80, "name": "http"});
        let keys = vec!["port".to_string(), "protocol".to_string()];
        let k = key_element(&item, &keys).unwrap();
        assert_eq!(k, "k:{\"port\":80,\"protocol\":\"TCP\"}");
        assert_eq!(key_element(&json!("x"), &keys), None);
        assert_eq!(value_element(&json!("a")), "v:\"a\"");
        let cases = [
            (p(&["f:spec", "f:holderIdentity"]), ".spec.holderIdentity"),
            (
                p(&["f:spec", "f:containers", "k:{\"name\":\"c\"}", "f:image"]),
                ".spec.containers[name=\"c\"].image",
            ),
            (
                p(&["f:metadata", "f:finalizers", "v:\"a\""]),
                ".metadata.finalizers[=\"a\"]",
            ),
            (p(&["f:spec", "f:l", "i:0"]), ".spec.l[0]"),
        ];
        for (path, want) in cases {
            assert_eq!(render_path(&path), want);
        }
    }
}
