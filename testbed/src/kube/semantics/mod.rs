//! Pure Kubernetes API semantics, free of I/O and of the HTTP layer: structural-schema
//! validation, pruning and defaulting; JSON merge, JSON and strategic merge patches; server-side
//! apply field ownership (`managedFields`). The server calls these; tests drive them by tables.
//!
//! # README: how the server uses this module
//! - Writes to CRs: [`schema::prune`] (its paths feed `fieldValidation=Strict`:
//!   `unknown field "spec.foo"`), then [`schema::apply_defaults`], then [`schema::validate`]
//!   (causes go into the 422 Status). Defaults also apply when reading from storage.
//! - Patches: [`patch::apply_patch`] (`Malformed` → 400, `Unprocessable` → 422 with the generic
//!   message), then the write path above.
//! - Ownership: [`managed::apply`] for `application/apply-patch+yaml` (errors → 409 `Conflict`,
//!   message from [`managed::apply_conflict_message`]); [`managed::record_update`] after every
//!   other create/update/patch. List/map knowledge: [`managed::SchemaListTypes`] for CRs,
//!   [`managed::BuiltinListTypes`] for built-in kinds.
//!
//! # Known deviations from the real server
//! - CRD `x-kubernetes-validations` (CEL) rules are not evaluated; validation ratcheting is not
//!   implemented; `anyOf`/`oneOf` failures report only the summary error.
//! - Validation field paths follow kube-openapi: list items `spec.items[0].name`, map values
//!   `spec.labels.key` (not `spec.labels[key]`); pruned paths use the same form.
//! - String `format`s: the common ones are checked (see `schema_format`), `uri`, `isbn`,
//!   `creditcard`, `ssn`, `rgbcolor`, `bsonobjectid`, `duration` are accepted unchecked.
//! - JSON patch: a patch with more than 10 000 operations is `Malformed` (the real server answers
//!   413).
//! - Strategic merge patch knows only the list strategies of the kinds the emulator serves
//!   (`metadata.finalizers` set, `metadata.ownerReferences` by `uid`, ServiceAccount `secrets`
//!   by `name`, Namespace `status.conditions` by `type`); every other list replaces (true for
//!   RBAC `rules`/`subjects`, ServiceAccount `imagePullSecrets`, Namespace `spec.finalizers`).
//!   List order follows apimachinery (patch items in patch order, new items before server-only
//!   ones, interleaved by previous position; Go's sort for >20 items is not mimicked exactly);
//!   `$retainKeys`/`$setElementOrder` consistency checks are not enforced; `$patch: merge` in a
//!   list and mixed scalar/object lists are rejected as malformed (400).
//! - Server-side apply: `null` in an applied configuration removes the field (the real merge
//!   keeps an explicit `null` that later decoding drops); merged set/map lists keep live order
//!   and append new items; the `ancient-changes` cap merges per apiVersion in time order without
//!   the real bucket bookkeeping; granular maps of built-ins are known only for labels,
//!   annotations, `data`, `binaryData`, `stringData` and `spec.selector.matchLabels`
//!   (other built-in maps are treated as structs, which changes only `.` entries).
//! - Untracked fields (never owned, never conflict): `apiVersion`, `kind`, and `metadata`
//!   `name`, `namespace`, `uid`, `resourceVersion`, `generation`, `creationTimestamp`,
//!   `managedFields`, `selfLink`, `deletionTimestamp`, `deletionGracePeriodSeconds`.
//! - Removal of a manager's last list item leaves an empty list (`[]`); the server's ObjectMeta
//!   round-trip must drop empty `finalizers`/`ownerReferences`.

#[cfg(test)]
mod crd_fixture_tests;
pub mod fieldset;
mod list_types;
pub mod managed;
#[cfg(test)]
mod managed_test_support;
#[cfg(test)]
mod managed_tests;
mod managed_walk;
pub mod patch;
pub mod schema;
mod schema_format;
#[cfg(test)]
mod schema_tests;
mod schema_validate;
#[cfg(test)]
mod ssa_flow_tests;
pub mod strategic;
mod strategic_order;

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
