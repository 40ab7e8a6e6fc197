//! Reading manifests for `check`: multi-document YAML (or JSON) files, `kind: List` flattened,
//! every object sorted by what it is.

use std::{collections::BTreeMap, path::Path};

use serde::Deserialize;
use serde_json::Value;

use crate::crd::{GitLabConnection, GitLabTokenPolicy};

/// An object read from a file, with where it came from.
#[derive(Debug, Clone)]
pub struct Doc {
    /// The file it was read from.
    pub file: String,
    /// The object.
    pub value: Value,
}

/// Everything `check` read, sorted by kind.
#[derive(Debug, Default)]
pub struct Manifests {
    /// `GitLabTokenPolicy` objects.
    pub policies: Vec<GitLabTokenPolicy>,
    /// `GitLabConnection` objects.
    pub connections: Vec<GitLabConnection>,
    /// Labels of `Namespace` objects, by name.
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
    /// Everything else (Flux sources and other objects), in file order.
    pub others: Vec<Doc>,
    /// Annotations of `Namespace` objects, by name (a delegating policy may read its identity there).
    pub namespace_annotations: BTreeMap<String, BTreeMap<String, String>>,
}

/// Why a manifest could not be read; always names the file.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file could not be read.
    #[error("cannot read {file}: {error}")]
    Io {
        /// The file.
        file: String,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The file is not YAML/JSON.
    #[error("{file} is not valid YAML: {error}")]
    Yaml {
        /// The file.
        file: String,
        /// The parse error.
        error: serde_yaml_ng::Error,
    },
    /// An object of a known kind does not fit its schema.
    #[error("{file}: {kind} {name:?} is not valid: {error}")]
    Invalid {
        /// The file.
        file: String,
        /// Its kind.
        kind: String,
        /// Its name.
        name: String,
        /// What is wrong.
        error: String,
    },
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

/// Reads every document of a file; `kind: List` objects are replaced by their items.
pub fn read_file(path: &Path) -> Result<Vec<Doc>, ManifestError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|error| ManifestError::Io {
        file: file.clone(),
        error,
    })?;
    parse_documents(&file, &text)
}

/// Parses a multi-document YAML (or JSON) text.
pub fn parse_documents(file: &str, text: &str) -> Result<Vec<Doc>, ManifestError> {
    let mut out = Vec::new();
    for de in serde_yaml_ng::Deserializer::from_str(text) {
        let value = Value::deserialize(de).map_err(|error| ManifestError::Yaml {
            file: file.to_string(),
            error,
        })?;
        push_flattened(file, value, &mut out);
    }
    Ok(out)
}

fn push_flattened(file: &str, value: Value, out: &mut Vec<Doc>) {
    match value {
        Value::Null => {}
        Value::Object(ref m) if m.get("kind").and_then(Value::as_str) == Some("List") => {
            if let Some(Value::Array(items)) = m.get("items") {
                for item in items.clone() {
                    push_flattened(file, item, out);
                }
            }
        }
        value => out.push(Doc {
            file: file.to_string(),
            value,
        }),
    }
}

impl Manifests {
    /// Sorts documents by kind, parsing policies and connections strictly.
    pub fn sort(docs: Vec<Doc>) -> Result<Self, ManifestError> {
        let mut m = Self::default();
        for doc in docs {
            let group = str_at(&doc.value, "/apiVersion")
                .split_once('/')
                .map(|(g, _)| g)
                .unwrap_or_default();
            let kind = str_at(&doc.value, "/kind").to_string();
            let invalid = |error: String| ManifestError::Invalid {
                file: doc.file.clone(),
                kind: kind.clone(),
                name: str_at(&doc.value, "/metadata/name").to_string(),
                error,
            };
            match (group, kind.as_str()) {
                ("gitlabtokens.io", "GitLabTokenPolicy") => {
                    let p: GitLabTokenPolicy =
                        serde_json::from_value(doc.value.clone()).map_err(|e| invalid(e.to_string()))?;
                    m.policies.push(p);
                }
                ("gitlabtokens.io", "GitLabConnection") => {
                    let c: GitLabConnection =
                        serde_json::from_value(doc.value.clone()).map_err(|e| invalid(e.to_string()))?;
                    m.connections.push(c);
                }
                ("", "Namespace") if str_at(&doc.value, "/apiVersion") == "v1" => {
                    let name = str_at(&doc.value, "/metadata/name").to_string();
                    let labels: BTreeMap<String, String> = doc
                        .value
                        .pointer("/metadata/labels")
                        .cloned()
                        .map(serde_json::from_value)
                        .transpose()
                        .map_err(|e| invalid(format!("metadata.labels: {e}")))?
                        .unwrap_or_default();
                    let annotations: BTreeMap<String, String> = doc
                        .value
                        .pointer("/metadata/annotations")
                        .cloned()
                        .map(serde_json::from_value)
                        .transpose()
                        .map_err(|e| invalid(format!("metadata.annotations: {e}")))?
                        .unwrap_or_default();
                    m.namespace_annotations.insert(name.clone(), annotations);
                    m.namespaces.insert(name, labels);
                }
                _ => m.others.push(doc),
            }
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_document_yaml_and_lists_are_flattened_and_sorted() {
        let text = r#"
---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Namespace
  metadata: {name: team-a, labels: {tier: gold}}
- apiVersion: source.toolkit.fluxcd.io/v1
  kind: GitRepository
  metadata: {name: app}
---
---
apiVersion: gitlabtokens.io/v1alpha1
kind: GitLabTokenPolicy
metadata: {name: p}
spec:
  namespaceSelector: {matchNames: ["team-*"]}
  projects: ["acme/**"]
"#;
        let docs = parse_documents("f.yaml", text).unwrap();
        assert_eq!(docs.len(), 3);
        let m = Manifests::sort(docs).unwrap();
        assert_eq!(m.policies.len(), 1);
        assert_eq!(m.namespaces["team-a"]["tier"], "gold");
        assert_eq!(m.others.len(), 1);
        assert_eq!(m.others[0].file, "f.yaml");
    }

    #[test]
    fn bad_policy_and_bad_yaml_name_the_file() {
        let e = Manifests::sort(
            parse_documents(
                "p.yaml",
                "apiVersion: gitlabtokens.io/v1alpha1\nkind: GitLabTokenPolicy\nmetadata: {name: p}\nspec: {}\n",
            )
            .unwrap(),
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("p.yaml: GitLabTokenPolicy \"p\" is not valid"),
            "{e}"
        );
        let e = parse_documents("x.yaml", "a: [").unwrap_err();
        assert!(e.to_string().starts_with("x.yaml is not valid YAML"), "{e}");
    }
}
