//! The object walks behind server-side apply: the field set of an applied configuration
//! (structured-merge-diff `ToFieldSet`), the comparison of two objects (`Compare`: added,
//! modified and removed fields), the merge of a configuration into a live object, and the
//! removal of a field path from an object.

use serde_json::{Map, Value};

use super::fieldset::{FieldPath, FieldSet, field_element, key_element, value_element};
use super::managed::{ListType, ListTypes};

/// Fields of the root and of `metadata` that are never tracked (the server strips them).
fn stripped(path: &[String], key: &str) -> bool {
    match path {
        [] => matches!(key, "apiVersion" | "kind"),
        [m] if m == "f:metadata" => matches!(
            key,
            "name"
                | "namespace"
                | "uid"
                | "resourceVersion"
                | "generation"
                | "creationTimestamp"
                | "managedFields"
                | "selfLink"
                | "deletionTimestamp"
                | "deletionGracePeriodSeconds"
        ),
        _ => false,
    }
}

/// The schema path (field names and map keys, no list elements) of an encoded path.
fn names(path: &[String]) -> Vec<&str> {
    path.iter().filter_map(|e| e.strip_prefix("f:")).collect()
}

/// Walks objects with the list-type and map knowledge of one kind.
pub(super) struct Walker<'a> {
    /// The list/map oracle for the kind.
    pub types: &'a dyn ListTypes,
}

/// Fields that differ between two objects.
#[derive(Debug, Default)]
pub(super) struct Comparison {
    /// Present only in the new object.
    pub added: FieldSet,
    /// Present in both with different values.
    pub modified: FieldSet,
    /// Present only in the old object.
    pub removed: FieldSet,
}

impl Walker<'_> {
    fn list_type(&self, path: &[String]) -> ListType {
        self.types.list_type(&names(path))
    }

    fn is_map(&self, path: &[String]) -> bool {
        self.types.is_map(&names(path))
    }

    fn is_atomic_map(&self, path: &[String]) -> bool {
        self.types.is_atomic_map(&names(path))
    }

    /// The key fields of the list at `path` (empty unless it is a list-map).
    pub fn map_keys(&self, path: &[String]) -> Vec<String> {
        match self.list_type(path) {
            ListType::Map(keys) => keys,
            _ => Vec::new(),
        }
    }

    /// The set an applied configuration manages: leaves, atomic lists, empty maps, nulls, map
    /// entries and list items (never plain struct fields that have children).
    pub fn to_set(&self, value: &Value) -> FieldSet {
        let mut set = FieldSet::new();
        self.to_set_at(value, &mut Vec::new(), &mut set);
        set
    }

    fn to_set_at(&self, value: &Value, path: &mut FieldPath, set: &mut FieldSet) {
        match value {
            Value::Object(_) if !path.is_empty() && self.is_atomic_map(path) => set.insert(path),
            Value::Object(map) => {
                let granular = self.is_map(path);
                for (key, child) in map {
                    if stripped(path, key) {
                        continue;
                    }
                    path.push(field_element(key));
                    self.to_set_at(child, path, set);
                    let empty = child.as_object().is_some_and(Map::is_empty);
                    let root_metadata = path.len() == 1 && path[0] == "f:metadata";
                    if (empty || granular) && !root_metadata {
                        set.insert(path);
                    }
                    path.pop();
                }
            }
            Value::Array(items) => match self.list_type(path) {
                ListType::Atomic => set.insert(path),
                ListType::Set => {
                    for item in items {
                        path.push(value_element(item));
                        set.insert(path);
                        path.pop();
                    }
                }
                ListType::Map(keys) => {
                    let elements: Option<Vec<String>> = items.iter().map(|i| key_element(i, &keys)).collect();
                    let Some(elements) = elements else {
                        set.insert(path);
                        return;
                    };
                    for (item, element) in items.iter().zip(elements) {
                        path.push(element);
                        self.to_set_at(item, path, set);
                        set.insert(path);
                        path.pop();
                    }
                }
            },
            _ => set.insert(path),
        }
    }

    /// Compares `old` with `new` (either may be absent).
    pub fn compare(&self, old: Option<&Value>, new: Option<&Value>) -> Comparison {
        let mut out = Comparison::default();
        self.compare_at(old, new, &mut Vec::new(), &mut out);
        out
    }

    fn compare_at(
        &self,
        old: Option<&Value>,
        new: Option<&Value>,
        path: &mut FieldPath,
        out: &mut Comparison,
    ) {
        let is_obj = |v: Option<&Value>| v.is_none_or(Value::is_object);
        let is_arr = |v: Option<&Value>| v.is_none_or(Value::is_array);
        let empty_obj = |v: Option<&Value>| v.is_none_or(|v| v.as_object().is_some_and(Map::is_empty));
        if old.is_none() && new.is_none() {
            return;
        }
        let atomic_map = !path.is_empty() && self.is_atomic_map(path);
        if is_obj(old) && is_obj(new) && !(empty_obj(old) && empty_obj(new)) && !atomic_map {
            // structured-merge-diff's post-item hook: every non-leaf node present on one side
            // only is added/removed itself (root `metadata` is stripped from tracking).
            let root_metadata = path.len() == 1 && path[0] == "f:metadata";
            if !path.is_empty() && !root_metadata {
                mark_presence(old, new, path, out);
            }
            let mut keys: Vec<&String> = Vec::new();
            for v in [old, new].into_iter().flatten() {
                if let Value::Object(m) = v {
                    keys.extend(m.keys().filter(|k| !stripped(path, k)));
                }
            }
            keys.sort();
            keys.dedup();
            for key in keys {
                path.push(field_element(key));
                self.compare_at(
                    old.and_then(|o| o.get(key)),
                    new.and_then(|n| n.get(key)),
                    path,
                    out,
                );
                path.pop();
            }
            return;
        }
        let both_empty = items(old).is_empty() && items(new).is_empty();
        if is_arr(old) && is_arr(new) && !both_empty {
            match self.list_type(path) {
                ListType::Atomic => {}
                ListType::Set => {
                    mark_presence(old, new, path, out);
                    let (o, n) = (items(old), items(new));
                    for item in o.iter().filter(|i| !n.contains(i)) {
                        path.push(value_element(item));
                        out.removed.insert(path);
                        path.pop();
                    }
                    for item in n.iter().filter(|i| !o.contains(i)) {
                        path.push(value_element(item));
                        out.added.insert(path);
                        path.pop();
                    }
                    return;
                }
                ListType::Map(keys) => {
                    let keyed = |list: &[Value]| -> Option<Vec<(String, Value)>> {
                        list.iter()
                            .map(|i| key_element(i, &keys).map(|k| (k, i.clone())))
                            .collect()
                    };
                    if let (Some(o), Some(n)) = (keyed(items(old)), keyed(items(new))) {
                        mark_presence(old, new, path, out);
                        let mut elements: Vec<&String> = o.iter().chain(n.iter()).map(|(k, _)| k).collect();
                        elements.sort();
                        elements.dedup();
                        for element in elements {
                            let find = |l: &[(String, Value)]| {
                                l.iter().find(|(k, _)| k == element).map(|(_, v)| v.clone())
                            };
                            let (oi, ni) = (find(&o), find(&n));
                            path.push(element.clone());
                            mark_presence(oi.as_ref(), ni.as_ref(), path, out);
                            self.compare_at(oi.as_ref(), ni.as_ref(), path, out);
                            path.pop();
                        }
                        return;
                    }
                }
            }
        }
        leaf(old, new, path, out);
    }

    /// Merges an applied configuration into `live` per the list types; `null` in the
    /// configuration removes the field.
    pub fn merge(&self, live: Option<&Value>, config: &Value, path: &mut FieldPath) -> Value {
        match (live, config) {
            (_, Value::Object(_)) if !path.is_empty() && self.is_atomic_map(path) => config.clone(),
            (Some(Value::Object(l)), Value::Object(c)) => {
                let mut out = l.clone();
                for (key, value) in c {
                    if value.is_null() {
                        out.remove(key);
                        continue;
                    }
                    path.push(field_element(key));
                    let merged = self.merge(l.get(key), value, path);
                    path.pop();
                    out.insert(key.clone(), merged);
                }
                Value::Object(out)
            }
            (None, Value::Object(_)) => self.merge(Some(&Value::Object(Map::new())), config, path),
            (Some(Value::Array(l)), Value::Array(c)) => match self.list_type(path) {
                ListType::Atomic => config.clone(),
                ListType::Set => {
                    let mut out = l.clone();
                    out.extend(c.iter().filter(|i| !l.contains(i)).cloned());
                    Value::Array(out)
                }
                ListType::Map(keys) => {
                    let mut out = l.clone();
                    for item in c {
                        let Some(element) = key_element(item, &keys) else {
                            return config.clone();
                        };
                        let position = out
                            .iter()
                            .position(|o| key_element(o, &keys).as_ref() == Some(&element));
                        path.push(element);
                        match position {
                            Some(i) => out[i] = self.merge(Some(&out[i].clone()), item, path),
                            None => out.push(self.merge(None, item, path)),
                        }
                        path.pop();
                    }
                    Value::Array(out)
                }
            },
            _ => config.clone(),
        }
    }
}

/// The items of an optional list (empty when absent).
fn items(v: Option<&Value>) -> &[Value] {
    v.and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default()
}

/// Records that a member node (map, list item) appeared or disappeared.
fn mark_presence(old: Option<&Value>, new: Option<&Value>, path: &FieldPath, out: &mut Comparison) {
    match (old, new) {
        (None, Some(_)) => out.added.insert(path),
        (Some(_), None) => out.removed.insert(path),
        _ => {}
    }
}

/// The leaf rule: absent → added/removed, different → modified.
fn leaf(old: Option<&Value>, new: Option<&Value>, path: &FieldPath, out: &mut Comparison) {
    match (old, new) {
        (None, Some(_)) => out.added.insert(path),
        (Some(_), None) => out.removed.insert(path),
        (Some(a), Some(b)) if a != b => out.modified.insert(path),
        _ => {}
    }
}

/// Removes the value at `path` from `object` (no-op when absent).
pub(super) fn remove_path(object: &mut Value, path: &[String], keys_of: &dyn Fn(&[String]) -> Vec<String>) {
    let Some((last, parent_path)) = path.split_last() else {
        return;
    };
    let Some(parent) = locate(object, parent_path, keys_of) else {
        return;
    };
    match parent {
        Value::Object(map) => {
            if let Some(name) = last.strip_prefix("f:") {
                map.remove(name);
            }
        }
        Value::Array(items) => {
            let keys = keys_of(parent_path);
            items.retain(|item| !matches_element(item, last, &keys));
        }
        _ => {}
    }
}

/// After `path` was removed, removes its named-field ancestors that are now empty objects and
/// that `owned` does not touch: server-side apply treats named fields as members of the set
/// it prunes, so a struct nobody owns any more goes away whole instead of lingering as `{}`.
pub(super) fn prune_empty_ancestors(
    object: &mut Value,
    path: &[String],
    owned: &dyn Fn(&[String]) -> bool,
    keys_of: &dyn Fn(&[String]) -> Vec<String>,
) {
    for len in (1..path.len()).rev() {
        let ancestor = &path[..len];
        if !ancestor[len - 1].starts_with("f:") || owned(ancestor) {
            return;
        }
        let empty =
            locate(object, ancestor, keys_of).is_some_and(|v| v.as_object().is_some_and(|m| m.is_empty()));
        if !empty {
            return;
        }
        remove_path(object, ancestor, keys_of);
    }
}

fn locate<'v>(
    object: &'v mut Value,
    path: &[String],
    keys_of: &dyn Fn(&[String]) -> Vec<String>,
) -> Option<&'v mut Value> {
    let mut current = object;
    for (i, element) in path.iter().enumerate() {
        current = match current {
            Value::Object(map) => map.get_mut(element.strip_prefix("f:")?)?,
            Value::Array(items) => {
                let keys = keys_of(&path[..i]);
                items
                    .iter_mut()
                    .find(|item| matches_element(item, element, &keys))?
            }
            _ => return None,
        };
    }
    Some(current)
}

fn matches_element(item: &Value, element: &str, keys: &[String]) -> bool {
    if element.starts_with("k:") {
        key_element(item, keys).as_deref() == Some(element)
    } else if element.starts_with("v:") {
        value_element(item) == element
    } else {
        false
    }
}
