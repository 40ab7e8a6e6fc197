//! Label selectors (`k`, `!k`, `=`, `==`, `!=`, `in`, `notin`, `>`, `<`) and field selectors.

use serde_json::Value;

use super::status::ApiError;

/// One label requirement.
#[derive(Debug, Clone, PartialEq)]
pub enum LabelReq {
    /// Key present.
    Exists(String),
    /// Key absent.
    NotExists(String),
    /// Value in set.
    In(String, Vec<String>),
    /// Key absent or value not in set.
    NotIn(String, Vec<String>),
    /// Integer value greater than.
    Gt(String, i64),
    /// Integer value less than.
    Lt(String, i64),
}

/// A parsed label selector (AND of requirements).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelSelector(pub Vec<LabelReq>);

fn split_top(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur);
    out
}

fn bad(req: &str, why: &str) -> ApiError {
    ApiError::bad_request(format!("unable to parse requirement: {why}: {req:?}"))
}

fn parse_set(req: &str, rest: &str) -> Result<Vec<String>, ApiError> {
    let rest = rest.trim();
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| bad(req, "found '', expected: '('"))?;
    Ok(inner
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect())
}

fn valid_key(k: &str) -> bool {
    !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
}

impl LabelSelector {
    /// Parses the `labelSelector` query value; errors are 400 BadRequest.
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        let mut reqs = Vec::new();
        for part in split_top(s) {
            let p = part.trim();
            if p.is_empty() {
                continue;
            }
            let req = if let Some(k) = p.strip_prefix('!') {
                LabelReq::NotExists(k.trim().to_string())
            } else if let Some(i) = p.find("!=") {
                LabelReq::NotIn(p[..i].trim().into(), vec![p[i + 2..].trim().into()])
            } else if let Some(i) = p.find("==") {
                LabelReq::In(p[..i].trim().into(), vec![p[i + 2..].trim().into()])
            } else if let Some(i) = p.find('=') {
                LabelReq::In(p[..i].trim().into(), vec![p[i + 1..].trim().into()])
            } else if let Some(i) = p.find('>') {
                let n = p[i + 1..]
                    .trim()
                    .parse()
                    .map_err(|_| bad(p, "for 'gt', 'lt' operators, the value must be an integer"))?;
                LabelReq::Gt(p[..i].trim().into(), n)
            } else if let Some(i) = p.find('<') {
                let n = p[i + 1..]
                    .trim()
                    .parse()
                    .map_err(|_| bad(p, "for 'gt', 'lt' operators, the value must be an integer"))?;
                LabelReq::Lt(p[..i].trim().into(), n)
            } else if let Some(i) = p.find(" notin ").or_else(|| p.find(" notin(")) {
                LabelReq::NotIn(p[..i].trim().into(), parse_set(p, &p[i + 6..])?)
            } else if let Some(i) = p.find(" in ").or_else(|| p.find(" in(")) {
                LabelReq::In(p[..i].trim().into(), parse_set(p, &p[i + 3..])?)
            } else {
                LabelReq::Exists(p.to_string())
            };
            let key = match &req {
                LabelReq::Exists(k) | LabelReq::NotExists(k) | LabelReq::In(k, _) | LabelReq::NotIn(k, _) => {
                    k
                }
                LabelReq::Gt(k, _) | LabelReq::Lt(k, _) => k,
            };
            if !valid_key(key) {
                return Err(bad(p, "invalid label key"));
            }
            reqs.push(req);
        }
        Ok(LabelSelector(reqs))
    }

    /// Builds a selector from a `LabelSelector` object (`matchLabels`, `matchExpressions`).
    pub fn from_object(v: &Value) -> Self {
        let mut reqs = Vec::new();
        if let Some(m) = v.get("matchLabels").and_then(Value::as_object) {
            for (k, val) in m {
                reqs.push(LabelReq::In(
                    k.clone(),
                    vec![val.as_str().unwrap_or_default().to_string()],
                ));
            }
        }
        for e in v
            .get("matchExpressions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let k = e["key"].as_str().unwrap_or_default().to_string();
            let vals: Vec<String> = e["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|x| x.as_str().map(String::from))
                .collect();
            reqs.push(match e["operator"].as_str().unwrap_or_default() {
                "In" => LabelReq::In(k, vals),
                "NotIn" => LabelReq::NotIn(k, vals),
                "Exists" => LabelReq::Exists(k),
                _ => LabelReq::NotExists(k),
            });
        }
        LabelSelector(reqs)
    }

    /// Whether an object's labels satisfy every requirement.
    pub fn matches(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels");
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            LabelReq::Exists(k) => get(k).is_some(),
            LabelReq::NotExists(k) => get(k).is_none(),
            LabelReq::In(k, vs) => get(k).is_some_and(|v| vs.iter().any(|x| x == v)),
            LabelReq::NotIn(k, vs) => get(k).is_none_or(|v| !vs.iter().any(|x| x == v)),
            LabelReq::Gt(k, n) => get(k).and_then(|v| v.parse::<i64>().ok()).is_some_and(|v| v > *n),
            LabelReq::Lt(k, n) => get(k).and_then(|v| v.parse::<i64>().ok()).is_some_and(|v| v < *n),
        })
    }
}

/// One field requirement: path, wanted value, and whether equality is negated.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldReq {
    /// Field label, e.g. `metadata.name`.
    pub field: String,
    /// Value compared with.
    pub value: String,
    /// `!=` instead of `=`.
    pub negated: bool,
}

/// A parsed field selector (AND).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldSelector(pub Vec<FieldReq>);

fn split_escaped(s: &str, sep: char) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut esc = false;
    for c in s.chars() {
        if esc {
            if let Some(l) = out.last_mut() {
                l.push(c)
            }
            esc = false;
        } else if c == '\\' {
            esc = true;
        } else if c == sep {
            out.push(String::new());
        } else {
            if let Some(l) = out.last_mut() {
                l.push(c)
            }
        }
    }
    out
}

impl FieldSelector {
    /// Parses `fieldSelector`, checking each field against `supported` (plus metadata.name/namespace).
    pub fn parse(s: &str, supported: &[&str]) -> Result<Self, ApiError> {
        let mut reqs = Vec::new();
        for part in split_escaped(s, ',') {
            if part.trim().is_empty() {
                continue;
            }
            let (field, value, negated) = if let Some(i) = part.find("!=") {
                (&part[..i], &part[i + 2..], true)
            } else if let Some(i) = part.find("==") {
                (&part[..i], &part[i + 2..], false)
            } else if let Some(i) = part.find('=') {
                (&part[..i], &part[i + 1..], false)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{s}'; can't understand '{part}'"
                )));
            };
            let field = field.trim();
            if field != "metadata.name" && field != "metadata.namespace" && !supported.contains(&field) {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {field}"
                )));
            }
            reqs.push(FieldReq {
                field: field.into(),
                value: value.trim().into(),
                negated,
            });
        }
        Ok(FieldSelector(reqs))
    }

    /// The value `metadata.name=` pins, if any.
    pub fn name(&self) -> Option<&str> {
        self.0
            .iter()
            .find(|r| r.field == "metadata.name" && !r.negated)
            .map(|r| r.value.as_str())
    }

    /// Whether the object satisfies every requirement.
    pub fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|r| {
            let ptr = format!("/{}", r.field.replace('.', "/"));
            let actual = match obj.pointer(&ptr) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(v) => v.to_string(),
            };
            (actual == r.value) != r.negated
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_selector_table() {
        let obj = json!({"metadata":{"labels":{"env":"dev","tier":"web","n":"7"}}});
        let none = json!({"metadata":{}});
        let cases = [
            ("env=dev", true, false),
            ("env==dev", true, false),
            ("env!=prod", true, true),
            ("env in (dev, sandbox)", true, false),
            ("env notin (dev)", false, true),
            ("env", true, false),
            ("!env", false, true),
            ("n>5", true, false),
            ("n<5", false, false),
            ("env=dev,tier=web", true, false),
            ("env=dev,tier=db", false, false),
        ];
        for (sel, on_obj, on_none) in cases {
            let s = LabelSelector::parse(sel).unwrap();
            assert_eq!(s.matches(&obj), on_obj, "{sel}");
            assert_eq!(s.matches(&none), on_none, "{sel} on empty");
        }
        assert!(LabelSelector::parse("a in x").is_err());
        assert!(LabelSelector::parse("n>x").is_err());
    }

    #[test]
    fn field_selector_table() {
        let obj = json!({"metadata":{"name":"a","namespace":"ns"},"type":"Opaque"});
        let s = FieldSelector::parse("metadata.name=a,metadata.namespace!=x", &[]).unwrap();
        assert!(s.matches(&obj));
        assert_eq!(s.name(), Some("a"));
        assert!(
            FieldSelector::parse("type=Opaque", &["type"])
                .unwrap()
                .matches(&obj)
        );
        let e = FieldSelector::parse("spec.foo=1", &[]).unwrap_err();
        assert_eq!(e.message, "field label not supported: spec.foo");
    }
}
