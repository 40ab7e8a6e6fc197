//! Lenient query-string parsing (kube-rs sends `?&a=b` and bare `?`), Go `ParseBool` semantics.

use std::collections::HashMap;

use super::status::ApiError;

/// Parsed query parameters; empty pairs ignored, later values win.
#[derive(Debug, Clone, Default)]
pub struct Query {
    map: HashMap<String, String>,
}

impl Query {
    /// Parses a raw query string (without the `?`).
    pub fn parse(raw: Option<&str>) -> Self {
        let mut map = HashMap::new();
        if let Some(raw) = raw {
            for (k, v) in url::form_urlencoded::parse(raw.as_bytes()) {
                if !k.is_empty() {
                    map.insert(k.into_owned(), v.into_owned());
                }
            }
        }
        Query { map }
    }

    /// A parameter's value, `None` when absent or empty.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.map.get(key).map(String::as_str).filter(|s| !s.is_empty())
    }

    /// A boolean parameter (Go `ParseBool`); absent → false; malformed → 400.
    pub fn flag(&self, key: &str) -> Result<bool, ApiError> {
        match self.get(key) {
            None => Ok(false),
            Some(v) => parse_bool(v).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "invalid value for {key}: strconv.ParseBool: parsing {v:?}: invalid syntax"
                ))
            }),
        }
    }

    /// An unsigned integer parameter; malformed → 400.
    pub fn number(&self, key: &str) -> Result<Option<u64>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.parse::<i64>().map(|n| Some(n.max(0) as u64)).map_err(|_| {
                ApiError::bad_request(format!("invalid value for {key}: {v:?} is not an integer"))
            }),
        }
    }
}

/// Go `strconv.ParseBool`.
pub fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerates_leading_ampersand_and_bare() {
        let q = Query::parse(Some("&watch=true&&timeoutSeconds=290&resourceVersion=0"));
        assert!(q.flag("watch").unwrap());
        assert_eq!(q.number("timeoutSeconds").unwrap(), Some(290));
        assert_eq!(q.get("resourceVersion"), Some("0"));
        let q = Query::parse(Some(""));
        assert!(!q.flag("watch").unwrap());
    }

    #[test]
    fn go_parse_bool_table() {
        for (v, want) in [
            ("1", Some(true)),
            ("T", Some(true)),
            ("False", Some(false)),
            ("yes", None),
        ] {
            assert_eq!(parse_bool(v), want, "{v}");
        }
    }
}
