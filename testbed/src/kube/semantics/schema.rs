//! Structural `openAPIV3Schema` handling for custom resources: validation (types, required, enum,
//! pattern, min/max, lengths, items), pruning of unknown fields, and defaulting — as
//! apiextensions-apiserver does. PLACEHOLDER signatures: the semantics helper replaces the bodies.

use serde_json::Value;

use super::FieldCause;

/// Validates a whole object (apiVersion, kind, metadata, spec, status…) against the version's
/// `openAPIV3Schema`. Returns every violation; empty means valid.
pub fn validate(_schema: &Value, _object: &Value) -> Vec<FieldCause> {
    Vec::new()
}

/// Removes fields the schema does not declare (honouring `x-kubernetes-preserve-unknown-fields`
/// and `x-kubernetes-embedded-resource`; `apiVersion`, `kind`, `metadata` at the root are kept).
/// Returns the dotted paths removed, so strict field validation can report them.
pub fn prune(_schema: &Value, _object: &mut Value) -> Vec<String> {
    Vec::new()
}

/// Applies `default` values from the schema where fields are absent (after pruning, as the real
/// server does on create/update and when reading from storage).
pub fn apply_defaults(_schema: &Value, _object: &mut Value) {}
