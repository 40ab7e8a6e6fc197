//! Pure Kubernetes API semantics, free of I/O and of the HTTP layer: structural-schema
//! validation, pruning and defaulting; JSON merge, JSON and strategic merge patches; server-side
//! apply field ownership (`managedFields`). The server calls these; tests drive them by tables.

pub mod fieldset;
mod list_types;
pub mod managed;
#[cfg(test)]
mod managed_tests;
mod managed_walk;
pub mod patch;
pub mod schema;
mod schema_format;
#[cfg(test)]
mod schema_tests;
mod schema_validate;
pub mod strategic;

use serde::Serialize;

/// One field-level problem, as in a Status `details.causes` entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldCause {
    /// `FieldValueRequired`, `FieldValueInvalid`, `FieldValueNotSupported`, `FieldValueTypeInvalid`,
    /// `FieldValueDuplicate`, `FieldValueTooLong`, `FieldValueForbidden`, `FieldManagerConflict`, …
    pub reason: String,
    /// Human-readable message, as the real server words it.
    pub message: String,
    /// Dotted field path, e.g. `spec.replicas` or `spec.items[0].name`.
    pub field: String,
}
