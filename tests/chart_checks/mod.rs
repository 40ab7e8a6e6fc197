//! Parts of `tests/chart.rs`: `helm template` output parsing here, RBAC and alert checks in submodules.

use serde::Deserialize;
use serde_json::Value;

mod alerts;
mod rbac;

/// The output of one `helm template`.
pub struct Rendered {
    /// The raw multi-document YAML (comments included).
    pub text: String,
    /// Every non-empty document.
    pub docs: Vec<Value>,
}

impl Rendered {
    /// Parses helm's multi-document output.
    pub fn parse(text: &str) -> Self {
        let docs = serde_yaml_ng::Deserializer::from_str(text)
            .map(|d| {
                Value::deserialize(d).unwrap_or_else(|e| panic!("helm rendered invalid YAML: {e}\n{text}"))
            })
            .filter(|v| !v.is_null())
            .collect();
        Self {
            text: text.to_string(),
            docs,
        }
    }

    /// The only document of `kind`.
    pub fn one(&self, kind: &str) -> &Value {
        let found = self.kinds(&[kind]);
        assert_eq!(found.len(), 1, "expected one {kind}, found {}", found.len());
        found[0]
    }

    /// Every document whose kind is one of `kinds`.
    pub fn kinds(&self, kinds: &[&str]) -> Vec<&Value> {
        self.docs
            .iter()
            .filter(|d| kinds.iter().any(|k| d["kind"] == *k))
            .collect()
    }

    /// The documents as text, with their comments.
    pub fn raw_docs(&self) -> Vec<String> {
        self.text
            .split("\n---\n")
            .map(|d| format!("\n{}\n", d.trim_start_matches("---\n")))
            .collect()
    }
}
