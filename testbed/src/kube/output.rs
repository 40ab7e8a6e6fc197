//! Response shapes: content negotiation (full objects, PartialObjectMetadata, Table), list
//! envelopes, Table columns for built-ins and CRD printer columns (simple JSONPath), ages.

use serde_json::{Value, json};

use super::kinds::read_view;
use super::resources::ResourceDef;
use super::status::ApiError;

/// Which representation the client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// The object itself.
    Full,
    /// `PartialObjectMetadata(List)`.
    Meta,
    /// `Table` with the given row object mode.
    Table(Include),
}

/// `includeObject` of a Table request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Include {
    /// No row objects.
    None,
    /// PartialObjectMetadata row objects (default).
    Metadata,
    /// Full row objects.
    Object,
}

/// Picks the first acceptable representation from an Accept header.
pub fn negotiate(accept: Option<&str>, include: Option<&str>) -> Result<Shape, ApiError> {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return Ok(Shape::Full);
    };
    let include = match include {
        Some("None") => Include::None,
        Some("Object") => Include::Object,
        _ => Include::Metadata,
    };
    for part in accept.split(',') {
        let mut it = part.split(';').map(str::trim);
        let media = it.next().unwrap_or_default();
        let params: Vec<(&str, &str)> = it.filter_map(|p| p.split_once('=')).collect();
        let as_ = params.iter().find(|(k, _)| *k == "as").map(|(_, v)| *v);
        let json_ok = matches!(media, "application/json" | "*/*" | "application/*");
        if !json_ok {
            continue;
        }
        match as_ {
            None => return Ok(Shape::Full),
            Some("Table") => return Ok(Shape::Table(include)),
            Some("PartialObjectMetadata") | Some("PartialObjectMetadataList") => return Ok(Shape::Meta),
            Some(_) => continue,
        }
    }
    Err(ApiError::new(
        406,
        "NotAcceptable",
        "only the following media types are accepted: application/json, application/yaml, application/vnd.kubernetes.protobuf",
    ))
}

/// The PartialObjectMetadata of a stored object.
pub fn partial(stored: &Value) -> Value {
    json!({"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1","metadata":stored["metadata"].clone()})
}

/// One object in the requested shape.
pub fn render_one(def: &ResourceDef, stored: &Value, shape: Shape) -> Value {
    match shape {
        Shape::Full => read_view(def, stored),
        Shape::Meta => partial(stored),
        Shape::Table(inc) => table(def, std::slice::from_ref(&stored), inc, None, None),
    }
}

/// A list envelope in the requested shape.
pub fn render_list(
    def: &ResourceDef,
    items: &[&Value],
    shape: Shape,
    rv: u64,
    cont: Option<String>,
) -> Value {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if let Some(c) = &cont {
        meta["continue"] = json!(c);
    }
    match shape {
        Shape::Full => json!({"kind": def.list_kind, "apiVersion": def.api_version(), "metadata": meta,
            "items": items.iter().map(|o| read_view(def, o)).collect::<Vec<_>>()}),
        Shape::Meta => {
            json!({"kind":"PartialObjectMetadataList","apiVersion":"meta.k8s.io/v1","metadata":meta,
            "items": items.iter().map(|o| partial(o)).collect::<Vec<_>>()})
        }
        Shape::Table(inc) => table(def, items, inc, Some(rv), cont),
    }
}

type Cell = Box<dyn Fn(&Value) -> Value>;

fn col(name: &str, ty: &str, format: &str, priority: i64, f: Cell) -> (Value, Cell) {
    (
        json!({"name":name,"type":ty,"format":format,"description":name,"priority":priority}),
        f,
    )
}

fn ptr(p: &'static str) -> Cell {
    Box::new(move |o: &Value| o.pointer(p).cloned().unwrap_or(Value::Null))
}

fn age(p: &'static str) -> Cell {
    Box::new(move |o: &Value| {
        o.pointer(p)
            .and_then(Value::as_str)
            .map(|t| json!(human_age(t)))
            .unwrap_or(Value::Null)
    })
}

fn count(p: &'static str) -> Cell {
    Box::new(move |o: &Value| json!(o.pointer(p).and_then(Value::as_object).map_or(0, |m| m.len())))
}

fn columns(def: &ResourceDef) -> Vec<(Value, Cell)> {
    let name = || col("Name", "string", "name", 0, ptr("/metadata/name"));
    let created = || col("Age", "string", "", 0, age("/metadata/creationTimestamp"));
    if let Some(crd) = &def.crd {
        let mut cols = vec![name()];
        if crd.printer_columns.is_empty() {
            cols.push(col("Age", "date", "", 0, age("/metadata/creationTimestamp")));
        }
        for pc in &crd.printer_columns {
            let path = pc["jsonPath"].as_str().unwrap_or_default().to_string();
            let ty = pc["type"].as_str().unwrap_or("string").to_string();
            let ty2 = ty.clone();
            let f: Cell = Box::new(move |o: &Value| cell_value(&ty2, &jsonpath(o, &path)));
            cols.push(col(
                pc["name"].as_str().unwrap_or_default(),
                &ty,
                pc["format"].as_str().unwrap_or_default(),
                pc["priority"].as_i64().unwrap_or(0),
                f,
            ));
        }
        return cols;
    }
    match (def.group.as_str(), def.kind.as_str()) {
        ("", "Namespace") => vec![
            name(),
            col("Status", "string", "", 0, ptr("/status/phase")),
            created(),
        ],
        ("", "Secret") => vec![
            name(),
            col("Type", "string", "", 0, ptr("/type")),
            col("Data", "integer", "", 0, count("/data")),
            created(),
        ],
        ("", "ConfigMap") => vec![
            name(),
            col(
                "Data",
                "integer",
                "",
                0,
                Box::new(|o: &Value| {
                    json!(
                        o["data"].as_object().map_or(0, |m| m.len())
                            + o["binaryData"].as_object().map_or(0, |m| m.len())
                    )
                }),
            ),
            created(),
        ],
        ("", "ServiceAccount") => vec![
            name(),
            col(
                "Secrets",
                "integer",
                "",
                0,
                Box::new(|o: &Value| json!(o["secrets"].as_array().map_or(0, Vec::len))),
            ),
            created(),
        ],
        ("coordination.k8s.io", "Lease") => vec![
            name(),
            col("Holder", "string", "", 0, ptr("/spec/holderIdentity")),
            created(),
        ],
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => vec![
            name(),
            col(
                "Role",
                "string",
                "",
                0,
                Box::new(|o: &Value| {
                    json!(format!(
                        "{}/{}",
                        o["roleRef"]["kind"].as_str().unwrap_or_default(),
                        o["roleRef"]["name"].as_str().unwrap_or_default()
                    ))
                }),
            ),
            created(),
        ],
        ("", "Event") => vec![
            col(
                "Last Seen",
                "string",
                "",
                0,
                Box::new(|o: &Value| json!(event_seen(o, true))),
            ),
            col("Type", "string", "", 0, ptr("/type")),
            col("Reason", "string", "", 0, ptr("/reason")),
            col(
                "Object",
                "string",
                "",
                0,
                Box::new(|o: &Value| {
                    json!(format!(
                        "{}/{}",
                        o["involvedObject"]["kind"]
                            .as_str()
                            .unwrap_or_default()
                            .to_lowercase(),
                        o["involvedObject"]["name"].as_str().unwrap_or_default()
                    ))
                }),
            ),
            col("Message", "string", "", 0, ptr("/message")),
            col("Subobject", "string", "", 1, ptr("/involvedObject/fieldPath")),
            col(
                "Source",
                "string",
                "",
                1,
                Box::new(|o: &Value| {
                    let component = o["source"]["component"]
                        .as_str()
                        .filter(|c| !c.is_empty())
                        .or(o["reportingComponent"].as_str())
                        .unwrap_or_default();
                    match o["source"]["host"].as_str().filter(|h| !h.is_empty()) {
                        Some(host) => json!(format!("{component}, {host}")),
                        None => json!(component),
                    }
                }),
            ),
            col(
                "First Seen",
                "string",
                "",
                1,
                Box::new(|o: &Value| json!(event_seen(o, false))),
            ),
            col(
                "Count",
                "string",
                "",
                1,
                Box::new(|o: &Value| {
                    let count = o
                        .pointer("/series/count")
                        .or(o.get("count"))
                        .and_then(Value::as_i64);
                    json!(count.filter(|c| *c > 0).unwrap_or(1).to_string())
                }),
            ),
            col("Name", "string", "name", 1, ptr("/metadata/name")),
        ],
        _ => vec![
            name(),
            col("Created At", "date", "", 0, ptr("/metadata/creationTimestamp")),
        ],
    }
}

/// The real Event printer's LAST SEEN / FIRST SEEN: `firstTimestamp`, else `eventTime`; the last
/// is `series.lastObservedTime`, else `lastTimestamp`, else the first; unset is `<unknown>`.
fn event_seen(o: &Value, last: bool) -> String {
    let text = |p: &str| o.pointer(p).and_then(Value::as_str).filter(|t| !t.is_empty());
    let first = text("/firstTimestamp").or(text("/eventTime"));
    let seen = if last {
        text("/series/lastObservedTime")
            .or(text("/lastTimestamp"))
            .or(first)
    } else {
        first
    };
    seen.map(human_age).unwrap_or_else(|| "<unknown>".into())
}

fn cell_value(ty: &str, vals: &[Value]) -> Value {
    let Some(v) = vals.first() else { return Value::Null };
    match ty {
        "integer" => v.as_i64().map(|n| json!(n)).unwrap_or(Value::Null),
        "number" => v.as_f64().map(|n| json!(n)).unwrap_or(Value::Null),
        "boolean" => v.as_bool().map(|b| json!(b)).unwrap_or(Value::Null),
        "date" => v.as_str().map(|t| json!(human_age(t))).unwrap_or(Value::Null),
        _ => {
            let parts: Vec<String> = vals
                .iter()
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    o => o.to_string(),
                })
                .collect();
            json!(parts.join(","))
        }
    }
}

/// Builds a Table for the given objects.
pub fn table(
    def: &ResourceDef,
    items: &[&Value],
    inc: Include,
    rv: Option<u64>,
    cont: Option<String>,
) -> Value {
    let cols = columns(def);
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            let view = read_view(def, o);
            let cells: Vec<Value> = cols.iter().map(|(_, f)| f(&view)).collect();
            let mut row = json!({"cells": cells});
            match inc {
                Include::None => {}
                Include::Metadata => row["object"] = partial(o),
                Include::Object => row["object"] = view,
            }
            row
        })
        .collect();
    let mut meta = json!({});
    if let Some(rv) = rv {
        meta["resourceVersion"] = json!(rv.to_string());
    }
    if let Some(c) = cont {
        meta["continue"] = json!(c);
    }
    json!({"kind":"Table","apiVersion":"meta.k8s.io/v1","metadata":meta,
        "columnDefinitions": cols.iter().map(|(d, _)| d.clone()).collect::<Vec<_>>(), "rows": rows})
}

/// Evaluates a simple JSONPath (`.a.b`, `[0]`, `[*]`, `[?(@.k=="v")]`, optional `{}` wrapper).
pub fn jsonpath(obj: &Value, path: &str) -> Vec<Value> {
    let p = path
        .trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .trim_start_matches('$');
    let mut cur = vec![obj.clone()];
    let mut rest = p;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let key = &r[..end];
            cur = cur.iter().filter_map(|v| v.get(key).cloned()).collect();
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let Some(end) = r.find(']') else { return Vec::new() };
            let inner = &r[..end];
            rest = &r[end + 1..];
            if inner == "*" {
                cur = cur
                    .iter()
                    .flat_map(|v| v.as_array().cloned().unwrap_or_default())
                    .collect();
            } else if let Some(f) = inner.strip_prefix("?(@.").and_then(|f| f.strip_suffix(')')) {
                let (k, want) = match f.split_once("==") {
                    Some((k, v)) => (k.trim(), Some(v.trim().trim_matches(|c| c == '"' || c == '\''))),
                    None => (f.trim(), None),
                };
                cur = cur
                    .iter()
                    .flat_map(|v| v.as_array().cloned().unwrap_or_default())
                    .filter(|item| match (item.get(k), want) {
                        (Some(Value::String(s)), Some(w)) => s == w,
                        (Some(v), Some(w)) => *v == w,
                        (Some(_), None) => true,
                        (None, _) => false,
                    })
                    .collect();
            } else if let Ok(i) = inner.parse::<usize>() {
                cur = cur.iter().filter_map(|v| v.get(i).cloned()).collect();
            } else {
                let key = inner.trim_matches(|c| c == '\'' || c == '"');
                cur = cur.iter().filter_map(|v| v.get(key).cloned()).collect();
            }
        } else {
            return Vec::new();
        }
    }
    cur
}

/// apimachinery `HumanDuration` of the time since an RFC 3339 timestamp.
pub fn human_age(ts: &str) -> String {
    match chrono::DateTime::parse_from_rfc3339(ts) {
        Ok(t) => human_duration((chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds()),
        Err(_) => "<invalid>".into(),
    }
}

/// apimachinery `HumanDuration` for a number of seconds.
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    let s = secs.max(0);
    let (m, h) = (s / 60, s / 3600);
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        if s % 60 == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{}s", s % 60)
        }
    } else if m < 180 {
        format!("{m}m")
    } else if h < 8 {
        if m % 60 == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{}m", m % 60)
        }
    } else if h < 48 {
        format!("{h}h")
    } else if h < 24 * 8 {
        if h % 24 == 0 {
            format!("{}d", h / 24)
        } else {
            format!("{}d{}h", h / 24, h % 24)
        }
    } else if h < 24 * 365 * 2 {
        format!("{}d", h / 24)
    } else if h < 24 * 365 * 8 {
        let d = (h / 24) % 365;
        if d == 0 {
            format!("{}y", h / 24 / 365)
        } else {
            format!("{}y{d}d", h / 24 / 365)
        }
    } else {
        format!("{}y", h / 24 / 365)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_duration_table() {
        for (s, want) in [
            (45, "45s"),
            (207, "3m27s"),
            (720, "12m"),
            (5 * 3600 + 180, "5h3m"),
            (20 * 3600, "20h"),
            ((3 * 24 + 4) * 3600, "3d4h"),
            (40 * 86400, "40d"),
        ] {
            assert_eq!(human_duration(s), want);
        }
    }

    #[test]
    fn jsonpath_filters() {
        let o = json!({"status":{"conditions":[{"type":"A","status":"False"},{"type":"Ready","status":"True","message":"ok"}]},"spec":{"url":"u"}});
        assert_eq!(
            jsonpath(&o, ".status.conditions[?(@.type==\"Ready\")].status"),
            vec![json!("True")]
        );
        assert_eq!(jsonpath(&o, ".spec.url"), vec![json!("u")]);
        assert_eq!(jsonpath(&o, ".status.conditions[0].type"), vec![json!("A")]);
        assert!(jsonpath(&o, ".spec.missing").is_empty());
    }

    #[test]
    fn negotiation() {
        let t = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(negotiate(Some(t), None).unwrap(), Shape::Table(Include::Metadata));
        assert_eq!(
            negotiate(
                Some("application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"),
                None
            )
            .unwrap(),
            Shape::Meta
        );
        assert_eq!(negotiate(None, None).unwrap(), Shape::Full);
        assert!(negotiate(Some("application/json;as=Foo"), None).is_err());
    }
}
