//! The validation walk behind [`super::schema::validate`], following kube-openapi's schema
//! validator as apiextensions-apiserver converts its results to field errors: paths are
//! `spec.items[0].name` for list items and `spec.labels.key` for map values (kube-openapi joins
//! map keys with `.`), messages are `<path> in body <rule>`.

use serde_json::{Map, Value};

use super::FieldCause;

/// Validates `value` at `path` against `schema`, appending every violation to `out`.
pub(super) fn validate_node(schema: &Value, value: &Value, path: &str, out: &mut Vec<FieldCause>) {
    let Some(s) = schema.as_object() else {
        return;
    };
    let types = declared_types(s);
    if value.is_null() {
        if !types.is_empty() && !flag(s, "nullable") {
            out.push(type_invalid(path, &types, "null"));
        }
        return;
    }
    let actual = json_type(value);
    if !types.is_empty() && !type_matches(&types, actual, value) {
        out.push(type_invalid(path, &types, actual));
        return;
    }
    if let Some(Value::Array(allowed)) = s.get("enum")
        && !allowed.iter().any(|a| json_equal(a, value))
    {
        out.push(not_supported(path, value, allowed));
    }
    match value {
        Value::String(text) => validate_string(s, text, path, out),
        Value::Number(_) => validate_number(s, value, path, out),
        Value::Array(items) => validate_array(s, items, path, out),
        Value::Object(map) => validate_object(s, map, path, out),
        _ => {}
    }
    validate_combinators(s, value, path, out);
}

/// `type`, or `integer,string` for `x-kubernetes-int-or-string`.
fn declared_types(s: &Map<String, Value>) -> Vec<&str> {
    if flag(s, "x-kubernetes-int-or-string") {
        return vec!["integer", "string"];
    }
    match s.get("type") {
        Some(Value::String(t)) if !t.is_empty() => vec![t.as_str()],
        _ => Vec::new(),
    }
}

/// True when `s[key]` is `true`.
pub(super) fn flag(s: &Map<String, Value>, key: &str) -> bool {
    s.get(key).and_then(Value::as_bool).unwrap_or(false)
}

/// The JSON type name kube-openapi infers for a decoded value.
fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// kube-openapi accepts integral floats for `integer` and integers for `number`.
fn type_matches(types: &[&str], actual: &str, value: &Value) -> bool {
    if types.contains(&actual) {
        return true;
    }
    match actual {
        "number" => types.contains(&"integer") && value.as_f64().is_some_and(is_json_integer),
        "integer" => types.contains(&"number"),
        _ => false,
    }
}

/// go-openapi's `IsFloat64AJSONInteger`: integral after truncation, within a relative 1e-9.
fn is_json_integer(f: f64) -> bool {
    if !f.is_finite() {
        return false;
    }
    let g = f.trunc();
    let diff = (f - g).abs();
    f == g || diff / (f.abs() + g.abs()) < 1e-9
}

/// Numeric-aware equality (`1` equals `1.0`), as Go compares decoded enum values.
fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn validate_string(s: &Map<String, Value>, text: &str, path: &str, out: &mut Vec<FieldCause>) {
    let chars = text.chars().count() as u64;
    if let Some(max) = s.get("maxLength").and_then(Value::as_u64)
        && chars > max
    {
        let unit = if max == 1 { "byte" } else { "bytes" };
        out.push(cause(
            "FieldValueTooLong",
            path,
            format!("Too long: may not be more than {max} {unit}"),
        ));
    }
    if let Some(min) = s.get("minLength").and_then(Value::as_u64)
        && chars < min
    {
        out.push(invalid(
            path,
            &go_quote(text),
            &format!("{path} in body should be at least {min} chars long"),
        ));
    }
    if let Some(pattern) = s.get("pattern").and_then(Value::as_str)
        && let Ok(re) = regex::Regex::new(pattern)
        && !re.is_match(text)
    {
        out.push(invalid(
            path,
            &go_quote(text),
            &format!("{path} in body should match '{pattern}'"),
        ));
    }
    if let Some(format) = s.get("format").and_then(Value::as_str)
        && !super::schema_format::format_ok(format, text)
    {
        out.push(cause(
            "FieldValueTypeInvalid",
            path,
            format!(
                "Invalid value: {q}: {path} in body must be of type {format}: {q}",
                q = go_quote(text)
            ),
        ));
    }
}

fn validate_number(s: &Map<String, Value>, value: &Value, path: &str, out: &mut Vec<FieldCause>) {
    let Some(n) = value.as_f64() else {
        return;
    };
    let shown = render_value(value);
    if let Some(max) = s.get("maximum").and_then(Value::as_f64) {
        let exclusive = flag(s, "exclusiveMaximum");
        if n > max || (exclusive && n == max) {
            let rule = if exclusive {
                "less than"
            } else {
                "less than or equal to"
            };
            out.push(invalid(
                path,
                &shown,
                &format!("{path} in body should be {rule} {}", go_float(max)),
            ));
        }
    }
    if let Some(min) = s.get("minimum").and_then(Value::as_f64) {
        let exclusive = flag(s, "exclusiveMinimum");
        if n < min || (exclusive && n == min) {
            let rule = if exclusive {
                "greater than"
            } else {
                "greater than or equal to"
            };
            out.push(invalid(
                path,
                &shown,
                &format!("{path} in body should be {rule} {}", go_float(min)),
            ));
        }
    }
    if let Some(factor) = s.get("multipleOf").and_then(Value::as_f64)
        && factor > 0.0
        && !is_json_integer(n / factor)
    {
        out.push(invalid(
            path,
            &shown,
            &format!("{path} in body should be a multiple of {}", go_float(factor)),
        ));
    }
}

fn validate_array(s: &Map<String, Value>, items: &[Value], path: &str, out: &mut Vec<FieldCause>) {
    if let Some(item_schema) = s.get("items").filter(|i| i.is_object()) {
        for (i, item) in items.iter().enumerate() {
            validate_node(item_schema, item, &format!("{path}[{i}]"), out);
        }
    }
    let len = items.len() as u64;
    if let Some(min) = s.get("minItems").and_then(Value::as_u64)
        && len < min
    {
        out.push(invalid(
            path,
            &len.to_string(),
            &format!("{path} in body should have at least {min} items"),
        ));
    }
    if let Some(max) = s.get("maxItems").and_then(Value::as_u64)
        && len > max
    {
        let unit = if max == 1 { "item" } else { "items" };
        out.push(cause(
            "FieldValueTooMany",
            path,
            format!("Too many: {len}: must have at most {max} {unit}"),
        ));
    }
    if flag(s, "uniqueItems") && (1..items.len()).any(|i| items[..i].iter().any(|p| json_equal(p, &items[i])))
    {
        out.push(invalid(
            path,
            "\"\"",
            &format!("{path} in body shouldn't contain duplicates"),
        ));
    }
    match s.get("x-kubernetes-list-type").and_then(Value::as_str) {
        Some("set") => {
            for i in 1..items.len() {
                if items[..i].iter().any(|p| json_equal(p, &items[i])) {
                    out.push(duplicate(&format!("{path}[{i}]"), &items[i]));
                }
            }
        }
        Some("map") => {
            let keys: Vec<&str> = match s.get("x-kubernetes-list-map-keys") {
                Some(Value::Array(k)) => k.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            let key_of = |item: &Value| -> Value {
                let mut m = Map::new();
                for k in &keys {
                    if let Some(v) = item.get(*k) {
                        m.insert((*k).to_string(), v.clone());
                    }
                }
                Value::Object(m)
            };
            let seen: Vec<Value> = items.iter().map(key_of).collect();
            for i in 1..seen.len() {
                if items[i].is_object() && seen[..i].iter().any(|p| json_equal_deep(p, &seen[i])) {
                    out.push(duplicate(&format!("{path}[{i}]"), &seen[i]));
                }
            }
        }
        _ => {}
    }
}

/// Deep equality with numeric awareness for key tuples.
fn json_equal_deep(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_equal_deep(v, w)))
        }
        _ => json_equal(a, b),
    }
}

fn validate_object(s: &Map<String, Value>, map: &Map<String, Value>, path: &str, out: &mut Vec<FieldCause>) {
    let count = map.len() as u64;
    if let Some(min) = s.get("minProperties").and_then(Value::as_u64)
        && count < min
    {
        out.push(invalid(
            path,
            &count.to_string(),
            &format!("{path} in body should have at least {min} properties"),
        ));
        return;
    }
    if let Some(max) = s.get("maxProperties").and_then(Value::as_u64)
        && count > max
    {
        let unit = if max == 1 { "item" } else { "items" };
        out.push(cause(
            "FieldValueTooMany",
            path,
            format!("Too many: {count}: must have at most {max} {unit}"),
        ));
        return;
    }
    let props = s.get("properties").and_then(Value::as_object);
    let additional = s.get("additionalProperties").filter(|a| a.is_object());
    let child = |key: &str| {
        if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        }
    };
    if let Some(additional) = additional {
        for (key, value) in map {
            if props.is_none_or(|p| !p.contains_key(key)) {
                validate_node(additional, value, &child(key), out);
            }
        }
    }
    if let Some(props) = props {
        for (key, prop) in props {
            if let Some(value) = map.get(key) {
                validate_node(prop, value, &child(key), out);
            }
        }
    }
    if let Some(Value::Array(required)) = s.get("required") {
        for key in required.iter().filter_map(Value::as_str) {
            if !map.contains_key(key) {
                out.push(cause("FieldValueRequired", &child(key), "Required value".into()));
            }
        }
    }
    if flag(s, "x-kubernetes-embedded-resource") {
        for key in ["apiVersion", "kind"] {
            let here = child(key);
            match map.get(key) {
                None => out.push(cause(
                    "FieldValueRequired",
                    &here,
                    "Required value: must not be empty".into(),
                )),
                Some(Value::String(text)) if text.is_empty() => {
                    out.push(invalid(&here, "\"\"", "must not be empty"));
                }
                Some(Value::String(_)) => {}
                Some(other) => out.push(invalid(&here, &render_value(other), "must be a string")),
            }
        }
    }
}

fn validate_combinators(s: &Map<String, Value>, value: &Value, path: &str, out: &mut Vec<FieldCause>) {
    let passes = |sub: &Value| {
        let mut errs = Vec::new();
        validate_node(sub, value, path, &mut errs);
        errs.is_empty()
    };
    if let Some(Value::Array(all)) = s.get("allOf") {
        for sub in all {
            validate_node(sub, value, path, out);
        }
    }
    if let Some(Value::Array(any)) = s.get("anyOf")
        && !any.is_empty()
        && !any.iter().any(passes)
    {
        out.push(invalid(
            path,
            "\"\"",
            &format!("{path} in body must validate at least one schema (anyOf)"),
        ));
    }
    if let Some(Value::Array(one)) = s.get("oneOf")
        && !one.is_empty()
        && one.iter().filter(|sub| passes(sub)).count() != 1
    {
        out.push(invalid(
            path,
            "\"\"",
            &format!("{path} in body must validate one and only one schema (oneOf)"),
        ));
    }
    if let Some(not) = s.get("not").filter(|n| n.is_object())
        && passes(not)
    {
        out.push(invalid(
            path,
            "\"\"",
            &format!("{path} in body must not validate the schema (not)"),
        ));
    }
}

fn cause(reason: &str, field: &str, message: String) -> FieldCause {
    FieldCause {
        reason: reason.into(),
        message,
        field: field.into(),
    }
}

/// `Invalid value: <shown>: <detail>`.
fn invalid(path: &str, shown: &str, detail: &str) -> FieldCause {
    cause(
        "FieldValueInvalid",
        path,
        format!("Invalid value: {shown}: {detail}"),
    )
}

fn type_invalid(path: &str, types: &[&str], actual: &str) -> FieldCause {
    let want = types.join(",");
    cause(
        "FieldValueTypeInvalid",
        path,
        format!("Invalid value: \"{actual}\": {path} in body must be of type {want}: \"{actual}\""),
    )
}

fn not_supported(path: &str, value: &Value, allowed: &[Value]) -> FieldCause {
    let quoted: Vec<String> = allowed
        .iter()
        .map(|a| match a {
            Value::String(s) => go_quote(s),
            other => go_quote(&other.to_string()),
        })
        .collect();
    cause(
        "FieldValueNotSupported",
        path,
        format!(
            "Unsupported value: {}: supported values: {}",
            render_value(value),
            quoted.join(", ")
        ),
    )
}

fn duplicate(path: &str, value: &Value) -> FieldCause {
    cause(
        "FieldValueDuplicate",
        path,
        format!("Duplicate value: {}", render_value(value)),
    )
}

/// Renders a bad value as apimachinery's `ErrorBody` does: strings Go-quoted, numbers and
/// booleans bare, everything else as JSON.
pub(super) fn render_value(value: &Value) -> String {
    match value {
        Value::String(s) => go_quote(s),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => go_float(f),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

/// Go's `%v` for a float64 (integral values without a decimal point).
pub(super) fn go_float(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e21 {
        format!("{}", f as i128)
    } else {
        format!("{f}")
    }
}

/// Go's `%q` for a string (close enough: escapes quotes, backslashes and control characters).
pub(super) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
