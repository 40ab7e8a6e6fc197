//! Patch types the API server accepts: JSON merge patch (RFC 7386), JSON patch (RFC 6902 with
//! `test`), and strategic merge patch for built-in kinds (a documented approximation).
//! PLACEHOLDER signatures: the semantics helper replaces the bodies.

use serde_json::Value;

/// Why a patch could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The patch document is malformed (HTTP 400 BadRequest).
    #[error("{0}")]
    Malformed(String),
    /// A JSON patch `test` failed or a path did not exist (HTTP 422 Invalid).
    #[error("{0}")]
    Unprocessable(String),
}

/// The patch media types the server understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    /// `application/merge-patch+json`
    Merge,
    /// `application/json-patch+json`
    Json,
    /// `application/strategic-merge-patch+json` (built-in kinds only; CRs answer 415)
    Strategic,
}

/// Applies a non-apply patch to `target` (the live object as JSON). `kind` is the object's Kind,
/// used by strategic merge to find list merge keys (e.g. `subjects` in RoleBinding is atomic,
/// `metadata.ownerReferences` merges on `uid`, `metadata.finalizers` is a set).
pub fn apply_patch(target: &mut Value, patch: &Value, patch_kind: PatchKind, kind: &str) -> Result<(), PatchError> {
    let _ = (target, patch, patch_kind, kind);
    Err(PatchError::Malformed("patching is not implemented yet".into()))
}
