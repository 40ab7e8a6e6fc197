//! CRD naming controller: accepted names, `NamesAccepted`/`Established` conditions, and name
//! conflicts between CRDs of one group (a conflicting CRD is not served).

use serde_json::{Value, json};

/// Sets (or replaces) a condition in `obj.status.conditions`; keeps `lastTransitionTime` when
/// the status does not change. Returns whether anything changed.
pub fn set_condition(obj: &mut Value, ty: &str, ok: bool, reason: &str, message: &str, now: &str) -> bool {
    let status = if ok { "True" } else { "False" };
    if !obj["status"].is_object() {
        obj["status"] = json!({});
    }
    if !obj["status"]["conditions"].is_array() {
        obj["status"]["conditions"] = json!([]);
    }
    let Some(list) = obj["status"]["conditions"].as_array_mut() else {
        return false;
    };
    let new = |since: &str| json!({"type":ty,"status":status,"reason":reason,"message":message,"lastTransitionTime":since});
    match list.iter_mut().find(|c| c["type"] == ty) {
        Some(c) if c["status"] == status && c["reason"] == reason && c["message"] == message => false,
        Some(c) => {
            let since = if c["status"] == status {
                c["lastTransitionTime"].as_str().unwrap_or(now).to_string()
            } else {
                now.to_string()
            };
            *c = new(&since);
            true
        }
        None => {
            list.push(new(now));
            true
        }
    }
}

fn names_of(crd: &Value) -> Vec<(&'static str, String)> {
    let n = &crd["spec"]["names"];
    let s = |k: &str| n[k].as_str().unwrap_or_default().to_string();
    let mut out = vec![
        ("PluralConflict", s("plural")),
        ("SingularConflict", s("singular")),
        ("KindConflict", s("kind")),
        ("ListKindConflict", s("listKind")),
    ];
    for sn in n["shortNames"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        out.push(("ShortNamesConflict", sn.to_string()));
    }
    out
}

fn accepted(crd: &Value) -> bool {
    crd["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "NamesAccepted" && c["status"] == "True")
}

/// The first name of `crd` already taken by another accepted CRD of the same group.
pub fn name_conflict<'a>(
    others: impl IntoIterator<Item = &'a Value>,
    crd: &Value,
) -> Option<(&'static str, String)> {
    let group = &crd["spec"]["group"];
    let me = &crd["metadata"]["name"];
    let taken: Vec<String> = others
        .into_iter()
        .filter(|o| &o["spec"]["group"] == group && &o["metadata"]["name"] != me && accepted(o))
        .flat_map(|o| {
            let kinds = [
                o["spec"]["names"]["kind"].clone(),
                o["spec"]["names"]["listKind"].clone(),
            ];
            let resources = names_of(o).into_iter().map(|(_, n)| n);
            resources
                .chain(kinds.into_iter().filter_map(|k| k.as_str().map(String::from)))
                .collect::<Vec<_>>()
        })
        .filter(|n| !n.is_empty())
        .collect();
    names_of(crd)
        .into_iter()
        .find(|(_, n)| !n.is_empty() && taken.contains(n))
        .map(|(reason, n)| (reason, format!("{n:?} is already in use")))
}

/// Brings a CRD's accepted names and conditions in line with the conflict check; returns
/// whether it changed.
pub fn reconcile_names(crd: &mut Value, conflict: Option<&(&'static str, String)>, now: &str) -> bool {
    let mut changed = false;
    match conflict {
        Some((reason, msg)) => {
            changed |= set_condition(crd, "NamesAccepted", false, reason, msg, now);
            changed |= set_condition(
                crd,
                "Established",
                false,
                "NotAccepted",
                "not all names are accepted",
                now,
            );
        }
        None => {
            let names = crd["spec"]["names"].clone();
            if crd["status"]["acceptedNames"] != names {
                crd["status"]["acceptedNames"] = names;
                changed = true;
            }
            changed |= set_condition(
                crd,
                "NamesAccepted",
                true,
                "NoConflicts",
                "no conflicts found",
                now,
            );
            changed |= set_condition(
                crd,
                "Established",
                true,
                "InitialNamesAccepted",
                "the initial names have been accepted",
                now,
            );
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd(name: &str, plural: &str, kind: &str, ok: bool) -> Value {
        let mut c = json!({"metadata":{"name":name},"spec":{"group":"example.com","names":{"plural":plural,"singular":plural.trim_end_matches('s'),"kind":kind,"listKind":format!("{kind}List")}}});
        if ok {
            reconcile_names(&mut c, None, "t");
        }
        c
    }

    #[test]
    fn conflicts_table() {
        let widgets = crd("widgets.example.com", "widgets", "Widget", true);
        let cases = [
            (
                crd("things.example.com", "things", "Widget", false),
                Some("KindConflict"),
            ),
            (
                crd("widgets2.example.com", "widgets", "Other", false),
                Some("PluralConflict"),
            ),
            (crd("gadgets.example.com", "gadgets", "Gadget", false), None),
            (crd("widgets.example.com", "widgets", "Widget", false), None),
        ];
        for (c, want) in cases {
            assert_eq!(name_conflict([&widgets], &c).map(|(r, _)| r), want, "{c}");
        }
        let mut c = crd("things.example.com", "things", "Widget", false);
        let conflict = name_conflict([&widgets], &c);
        assert!(reconcile_names(&mut c, conflict.as_ref(), "t"));
        assert!(!accepted(&c));
        assert!(!reconcile_names(&mut c, conflict.as_ref(), "t"), "idempotent");
    }
}
