//! Server-side apply and field ownership: `managedFields` entries (FieldsV1) per manager and
//! operation, conflicts with other managers, and removal of fields a manager stops applying —
//! structured-merge-diff semantics as the real server's field manager runs them.
//!
//! Assumptions about the caller (the server):
//! - For `/status` (`subresource = Some("status")`) only `applied.status` is merged and tracked;
//!   the rest of `applied` is ignored.
//! - For the main resource of a CR with a status subresource the server passes `applied` without
//!   `status` (and keeps the stored status in `new` for [`record_update`]), so status is neither
//!   changed nor tracked there.
//! - Validation, pruning, defaulting and the checks of §5.4 (apiVersion/kind present, no
//!   `managedFields` in the body, name matches the URL) happen in the server.

use serde_json::{Map, Value};

use super::FieldCause;
use super::fieldset::{FieldSet, render_path};
use super::managed_walk::{Walker, prune_empty_ancestors, remove_path};

pub use super::list_types::{BuiltinListTypes, SchemaListTypes, builtin_is_map};

/// How lists under a path merge, from `x-kubernetes-list-type`/`-map-keys` (CRDs) or the
/// built-in types' knowledge. Default for unknown lists is `Atomic`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListType {
    /// Replaced as a whole, owned as a whole.
    Atomic,
    /// Items are scalars, each owned separately.
    Set,
    /// Items are objects keyed by these fields, each owned separately.
    Map(Vec<String>),
}

/// Answers how the list at a schema path (field names only, no indices, e.g. `["spec", "ports"]`)
/// merges. The server builds one from the CRD schema or from built-in kind knowledge.
pub trait ListTypes {
    /// The list type at `path`.
    fn list_type(&self, path: &[&str]) -> ListType;

    /// True when the object at `path` is a granular map (labels, `additionalProperties`) whose
    /// entries are owned one by one, rather than a struct. Defaults to [`builtin_is_map`].
    fn is_map(&self, path: &[&str]) -> bool {
        builtin_is_map(path)
    }

    /// True when the object at `path` is `x-kubernetes-map-type: atomic` (owned as a whole).
    fn is_atomic_map(&self, path: &[&str]) -> bool {
        let _ = path;
        false
    }
}

/// The operation recorded in a `managedFields` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Server-side apply.
    Apply,
    /// Any other write (create, update, patch).
    Update,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// Most `Update` entries kept; older ones are merged into `ancient-changes` entries.
pub const MAX_UPDATE_MANAGERS: usize = 10;

/// One decoded `managedFields` entry.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    manager: String,
    operation: Operation,
    api_version: String,
    time: String,
    subresource: Option<String>,
    set: FieldSet,
}

impl Entry {
    /// Entry identity: manager, operation, subresource, and apiVersion for `Update`.
    fn is(&self, manager: &str, operation: Operation, api_version: &str, subresource: Option<&str>) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource.as_deref() == subresource
            && (operation == Operation::Apply || self.api_version == api_version)
    }

    /// How the real server prints the manager in conflicts.
    fn describe(&self) -> String {
        let mut out = format!("{:?}", self.manager);
        if let Some(sub) = &self.subresource {
            out.push_str(&format!(" with subresource {sub:?}"));
        }
        if self.operation == Operation::Update {
            out.push_str(&format!(" using {}", self.api_version));
        }
        out
    }

    fn decode(value: &Value) -> Option<Entry> {
        let operation = match value.get("operation")?.as_str()? {
            "Apply" => Operation::Apply,
            "Update" => Operation::Update,
            _ => return None,
        };
        let text = |k: &str| value.get(k).and_then(Value::as_str).map(String::from);
        let set = match value.get("fieldsV1") {
            Some(f) => FieldSet::from_fields_v1(f).ok()?,
            None => FieldSet::new(),
        };
        Some(Entry {
            manager: text("manager")?,
            operation,
            api_version: text("apiVersion").unwrap_or_default(),
            time: text("time").unwrap_or_default(),
            subresource: text("subresource").filter(|s| !s.is_empty()),
            set,
        })
    }

    fn encode(&self) -> Value {
        let mut m = Map::new();
        m.insert("manager".into(), Value::String(self.manager.clone()));
        m.insert("operation".into(), Value::String(self.operation.as_str().into()));
        m.insert("apiVersion".into(), Value::String(self.api_version.clone()));
        m.insert("time".into(), Value::String(self.time.clone()));
        m.insert("fieldsType".into(), Value::String("FieldsV1".into()));
        m.insert("fieldsV1".into(), self.set.to_fields_v1());
        if let Some(sub) = &self.subresource {
            m.insert("subresource".into(), Value::String(sub.clone()));
        }
        Value::Object(m)
    }
}

fn managed_fields(object: &Value) -> Option<&Vec<Value>> {
    object.get("metadata")?.get("managedFields")?.as_array()
}

fn decode_entries(object: Option<&Value>) -> Vec<Entry> {
    object
        .and_then(managed_fields)
        .map(|l| l.iter().filter_map(Entry::decode).collect())
        .unwrap_or_default()
}

/// Drops empty entries, caps `Update` entries, sorts as the real server and stores the list
/// (or removes `managedFields` when nothing is left).
fn store_entries(object: &mut Value, mut entries: Vec<Entry>) {
    entries.retain(|e| !e.set.is_empty());
    cap_updates(&mut entries);
    entries.sort_by(|a, b| {
        (
            a.operation.as_str(),
            &a.time,
            &a.manager,
            &a.api_version,
            &a.subresource,
        )
            .cmp(&(
                b.operation.as_str(),
                &b.time,
                &b.manager,
                &b.api_version,
                &b.subresource,
            ))
    });
    let Some(obj) = object.as_object_mut() else {
        return;
    };
    let meta = obj.entry("metadata").or_insert_with(|| Value::Object(Map::new()));
    let Some(meta) = meta.as_object_mut() else {
        return;
    };
    if entries.is_empty() {
        meta.remove("managedFields");
    } else {
        meta.insert(
            "managedFields".into(),
            Value::Array(entries.iter().map(Entry::encode).collect()),
        );
    }
}

/// Merges the oldest `Update` entries into `ancient-changes` (one per apiVersion) until at most
/// [`MAX_UPDATE_MANAGERS`] remain.
fn cap_updates(entries: &mut Vec<Entry>) {
    const BUCKET: &str = "ancient-changes";
    let mut updates: Vec<usize> = (0..entries.len())
        .filter(|&i| entries[i].operation == Operation::Update)
        .collect();
    if updates.len() <= MAX_UPDATE_MANAGERS {
        return;
    }
    updates.sort_by(|&a, &b| entries[a].time.cmp(&entries[b].time));
    let mut count = updates.len();
    let mut drop = Vec::new();
    for &i in &updates {
        if count <= MAX_UPDATE_MANAGERS {
            break;
        }
        if entries[i].manager == BUCKET {
            continue;
        }
        let version = entries[i].api_version.clone();
        let bucket = entries
            .iter()
            .position(|e| e.manager == BUCKET && e.api_version == version);
        match bucket {
            Some(b) => {
                entries[b].set = entries[b].set.union(&entries[i].set);
                entries[b].time = entries[i].time.clone();
                drop.push(i);
                count -= 1;
            }
            None => entries[i].manager = BUCKET.into(),
        }
    }
    let mut index = 0;
    entries.retain(|_| {
        index += 1;
        !drop.contains(&(index - 1))
    });
}

fn api_version(object: &Value) -> String {
    object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// Server-side apply: merges `applied` (the user's partial intent) into `live` (None when
/// creating) for `manager`. Fields other managers own with a different value conflict unless
/// `force` (then ownership moves); fields this manager applied before but omits now are removed
/// when no other manager owns them. Returns the new object with `metadata.managedFields`
/// updated, or the conflicts (reason `FieldManagerConflict`, message
/// `conflict with "<manager>"[ using <apiVersion>]`, field as `.spec.x`).
/// `subresource` is `Some("status")` for `/status` applies. `now` is an RFC 3339 time.
pub fn apply(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    subresource: Option<&str>,
    list_types: &dyn ListTypes,
    now: &str,
) -> Result<Value, Vec<FieldCause>> {
    let walker = Walker { types: list_types };
    let version = api_version(applied);
    let mut entries = decode_entries(live);
    if let Some(live) = live
        && entries.is_empty()
    {
        let set = walker.compare(None, Some(live)).added;
        entries.push(Entry {
            manager: "before-first-apply".into(),
            operation: Operation::Update,
            api_version: api_version(live),
            time: now.into(),
            subresource: None,
            set,
        });
    }
    let config = match subresource {
        Some(sub) => {
            let mut only = Map::new();
            if let Some(part) = applied.get(sub) {
                only.insert(sub.to_string(), part.clone());
            }
            Value::Object(only)
        }
        None => applied.clone(),
    };
    let mut config_set = walker.to_set(&config);
    if let Some(sub) = subresource {
        config_set = config_set.only_under(&format!("f:{sub}"));
    }
    let mut merged = walker.merge(live, &config, &mut Vec::new());
    if let Some(meta) = merged.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }

    let mine = entries
        .iter()
        .position(|e| e.is(manager, Operation::Apply, &version, subresource));
    let last_set = mine.map(|i| entries[i].set.clone()).unwrap_or_default();
    let previous = mine.map(|i| entries[i].clone());
    match mine {
        Some(i) => entries[i].set = config_set.clone(),
        None => entries.push(Entry {
            manager: manager.into(),
            operation: Operation::Apply,
            api_version: version.clone(),
            time: now.into(),
            subresource: subresource.map(String::from),
            set: config_set.clone(),
        }),
    }
    let me = mine.unwrap_or(entries.len() - 1);

    // Fields this manager stops applying go away unless someone (incl. its new set) owns them.
    let owned = entries.iter().fold(FieldSet::new(), |acc, e| acc.union(&e.set));
    for path in last_set.members() {
        if !owned.touches(&path) {
            remove_path(&mut merged, &path, &|p| walker.map_keys(p));
            prune_empty_ancestors(&mut merged, &path, &|p| owned.touches(p), &|p| walker.map_keys(p));
        }
    }

    let comparison = walker.compare(live, Some(&merged));
    let changed = comparison.added.union(&comparison.modified);
    let mut conflicts: Vec<(String, String)> = Vec::new();
    for (i, entry) in entries.iter_mut().enumerate() {
        if i == me {
            continue;
        }
        let clash = entry.set.intersection(&changed);
        if clash.is_empty() {
            continue;
        }
        for path in clash.members() {
            conflicts.push((entry.describe(), render_path(&path)));
        }
        if force {
            entry.set = entry.set.difference(&clash);
        }
    }
    if !force && !conflicts.is_empty() {
        conflicts.sort();
        return Err(conflicts
            .into_iter()
            .map(|(who, field)| FieldCause {
                reason: "FieldManagerConflict".into(),
                message: format!("conflict with {who}"),
                field,
            })
            .collect());
    }
    for entry in entries.iter_mut() {
        entry.set = entry.set.difference(&comparison.removed);
    }
    entries[me].api_version = version;
    // As the real field manager: the applier's time moves only when the object changed.
    let object_changed =
        !comparison.added.is_empty() || !comparison.modified.is_empty() || !comparison.removed.is_empty();
    entries[me].time = match previous {
        Some(p) if !object_changed => p.time,
        _ => now.into(),
    };
    store_entries(&mut merged, entries);
    Ok(merged)
}

/// Records ownership for a non-apply write (create, update, patch) by `manager`: the fields that
/// changed between `old` (None on create) and `new` become owned by `manager` with operation
/// `Update` (and are taken from other managers). Mutates `new`'s `metadata.managedFields`.
///
/// As the real server: a `managedFields` list in `new` that is absent, `[]` or not decodable
/// keeps the stored entries; a list of only empty entries (`[{}]`) resets tracking (no entries);
/// any other valid list replaces the stored entries (kubectl's client-side → server-side apply
/// migration rewrites them with a JSON patch).
pub fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    subresource: Option<&str>,
    list_types: &dyn ListTypes,
    now: &str,
) {
    let walker = Walker { types: list_types };
    let given = managed_fields(new).cloned().unwrap_or_default();
    if !given.is_empty() && given.iter().all(|e| e.as_object().is_some_and(Map::is_empty)) {
        store_entries(new, Vec::new());
        return;
    }
    // As the real server: a missing, empty or undecodable list keeps the stored entries.
    let decoded: Vec<Entry> = given.iter().filter_map(Entry::decode).collect();
    let mut entries = if decoded.is_empty() || decoded.len() != given.len() {
        decode_entries(old)
    } else {
        decoded
    };
    let version = api_version(new);
    let comparison = walker.compare(old, Some(new));
    let changed = comparison.added.union(&comparison.modified);
    let mine = entries
        .iter()
        .position(|e| e.is(manager, Operation::Update, &version, subresource));
    for (i, entry) in entries.iter_mut().enumerate() {
        if Some(i) != mine {
            entry.set = entry.set.difference(&changed);
        }
        entry.set = entry.set.difference(&comparison.removed);
    }
    match mine {
        Some(i) => {
            // The time moves whenever this write took (or kept) any field by changing it.
            let taken = changed.difference(&comparison.removed);
            entries[i].set = entries[i].set.union(&taken);
            if !taken.is_empty() {
                entries[i].time = now.into();
            }
        }
        None => entries.push(Entry {
            manager: manager.into(),
            operation: Operation::Update,
            api_version: version,
            time: now.into(),
            subresource: subresource.map(String::from),
            set: changed.difference(&comparison.removed),
        }),
    }
    store_entries(new, entries);
}

/// The Status message the real server gives for apply conflicts:
/// `Apply failed with 1 conflict: conflict with "m": .spec.x`, or for several
/// `Apply failed with 2 conflicts: conflicts with "m":\n- .spec.a\n- .spec.b`.
pub fn apply_conflict_message(causes: &[FieldCause]) -> String {
    if let [only] = causes {
        return format!("Apply failed with 1 conflict: {}: {}", only.message, only.field);
    }
    let mut by_manager: Vec<(&str, Vec<&str>)> = Vec::new();
    for cause in causes {
        let who = cause
            .message
            .strip_prefix("conflict with ")
            .unwrap_or(&cause.message);
        match by_manager.iter_mut().find(|(m, _)| *m == who) {
            Some((_, fields)) => fields.push(&cause.field),
            None => by_manager.push((who, vec![&cause.field])),
        }
    }
    by_manager.sort();
    let mut lines = Vec::new();
    for (who, fields) in by_manager {
        lines.push(format!("conflicts with {who}:"));
        lines.extend(fields.into_iter().map(|f| format!("- {f}")));
    }
    format!(
        "Apply failed with {} conflicts: {}",
        causes.len(),
        lines.join("\n")
    )
}
