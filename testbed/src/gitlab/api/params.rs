//! Request parameters as Grape sees them (query string, form body or JSON body, merged) and
//! coerced as Grape does (dry-types `Params` coercions), and GitLab's offset pagination with `x-*`
//! and `Link` headers.
//!
//! Coercion follows Grape's `PrimitiveCoercer`/`ArrayCoercer` over dry-types' `Params` types:
//! - Boolean: exactly the strings `1 on On ON t true True TRUE T y yes Yes YES Y` and
//!   `0 off Off OFF f false False FALSE F n no No NO N` (and JSON `true`/`false`, `1`/`0`);
//! - Integer: Ruby's `Integer(s, 10)` (surrounding blanks, a sign, `_` between digits); a JSON
//!   float is truncated as Ruby's `Integer(Float)` does; `true`/arrays/objects are invalid;
//! - String: numbers and booleans become strings; an array or object is invalid;
//! - `Array[String]`: only an array (`x[]=a&x[]=b`, or a JSON array) is an array; a scalar
//!   (`x=a`) is invalid, as Grape's `Params::Array` refuses it; `x=` is the empty array;
//! - an empty string for a non-string parameter counts as not given.
//!
//! Every failure is Grape's `{"error":"<name> is invalid"}` (400).

use std::{collections::HashMap, sync::Arc};

use axum::{
    Json,
    body::Bytes,
    extract::{FromRequest, Request},
    http::{HeaderMap, HeaderValue, Uri, header},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;

use crate::gitlab::{error::ApiError, state::GitLabState};

/// dry-types' `Params` strings that coerce to `true`.
const TRUE_VALUES: &[&str] = &[
    "1", "on", "On", "ON", "t", "true", "True", "TRUE", "T", "y", "yes", "Yes", "YES", "Y",
];
/// dry-types' `Params` strings that coerce to `false`.
const FALSE_VALUES: &[&str] = &[
    "0", "off", "Off", "OFF", "f", "false", "False", "FALSE", "F", "n", "no", "No", "NO", "N",
];

/// Merged request parameters: a form/query key given as `name[]` is an array stored under `name`;
/// a repeated plain key keeps its last value (as Rack does); JSON values are kept as they came.
#[derive(Debug, Default, Clone)]
pub struct Params {
    values: HashMap<String, Value>,
}

fn add_pairs(values: &mut HashMap<String, Value>, raw: &[u8]) {
    for (k, v) in url::form_urlencoded::parse(raw) {
        let v = Value::String(v.into_owned());
        match k.strip_suffix("[]") {
            Some(key) => match values
                .entry(key.to_string())
                .or_insert_with(|| Value::Array(Vec::new()))
            {
                Value::Array(items) => items.push(v),
                other => *other = Value::Array(vec![v]),
            },
            None => {
                values.insert(k.into_owned(), v);
            }
        }
    }
}

/// Ruby's `Integer(s, 10)`: blanks around, an optional sign, digits with single `_` between them.
fn ruby_integer(s: &str) -> Option<i64> {
    let t = s.trim_matches(|c: char| c.is_ascii_whitespace());
    let (sign, digits) = match t.as_bytes().first() {
        Some(b'-') => (-1, &t[1..]),
        Some(b'+') => (1, &t[1..]),
        _ => (1, t),
    };
    let well_formed = !digits.is_empty()
        && digits
            .split('_')
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()));
    if !well_formed {
        return None;
    }
    digits.replace('_', "").parse::<i64>().ok().map(|n| sign * n)
}

/// Ruby's `Integer(x)` on a JSON number: integers as they are, floats truncated.
fn json_integer(n: &serde_json::Number) -> Option<i64> {
    n.as_i64().or_else(|| {
        n.as_f64()
            .filter(|f| f.is_finite() && f.abs() < 9.2e18)
            .map(|f| f.trunc() as i64)
    })
}

/// dry-types' `Params::Bool` (`BOOLEAN_MAP.fetch(input.to_s)`).
fn grape_bool(v: &Value) -> Option<bool> {
    let text = match v {
        Value::Bool(b) => return Some(*b),
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    if TRUE_VALUES.contains(&text.as_str()) {
        Some(true)
    } else if FALSE_VALUES.contains(&text.as_str()) {
        Some(false)
    } else {
        None
    }
}

/// Grape's `Coercible::String` for one value (arrays and objects are refused).
fn grape_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn is_blank_str(v: &Value) -> bool {
    matches!(v, Value::String(s) if s.is_empty())
}

impl Params {
    /// Parses a query string and a body (JSON or form-encoded, by content type).
    pub fn parse(query: Option<&str>, content_type: Option<&str>, body: &[u8]) -> Result<Self, ApiError> {
        let mut values = HashMap::new();
        if let Some(q) = query {
            add_pairs(&mut values, q.as_bytes());
        }
        let is_json = content_type.is_some_and(|c| c.starts_with("application/json"));
        if is_json && !body.is_empty() {
            let parsed: Value = serde_json::from_slice(body)
                .map_err(|_| ApiError::BadRequest("Request body is not valid JSON".into()))?;
            if let Value::Object(map) = parsed {
                values.extend(map);
            }
        } else if !body.is_empty() {
            add_pairs(&mut values, body);
        }
        Ok(Self { values })
    }

    /// Whether the parameter was given at all.
    pub fn has(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    /// A string parameter, leniently: numbers and booleans as strings, anything else as absent.
    pub fn str(&self, name: &str) -> Option<String> {
        self.values.get(name).and_then(grape_string)
    }

    /// A `type: String` parameter as Grape coerces it; an array or object is `<name> is invalid`.
    pub fn text(&self, name: &str) -> Result<Option<String>, ApiError> {
        match self.values.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => grape_string(v).map(Some).ok_or_else(|| invalid(name)),
        }
    }

    /// A required, non-blank string; Grape's `<name> is missing` otherwise.
    pub fn required(&self, name: &str) -> Result<String, ApiError> {
        match self.text(name)? {
            Some(s) if !s.trim().is_empty() => Ok(s),
            _ => Err(ApiError::Param(format!("{name} is missing"))),
        }
    }

    /// An `Array[String]` parameter as Grape coerces it: an array (elements as strings), the
    /// empty string as the empty array; a scalar or an array holding null/arrays/objects is
    /// `<name> is invalid`.
    pub fn array(&self, name: &str) -> Result<Option<Vec<String>>, ApiError> {
        match self.values.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) if is_blank_str(v) => Ok(Some(Vec::new())),
            Some(Value::Array(items)) => items
                .iter()
                .map(grape_string)
                .collect::<Option<Vec<_>>>()
                .map(Some)
                .ok_or_else(|| invalid(name)),
            Some(_) => Err(invalid(name)),
        }
    }

    /// An array of strings, leniently: what [`Params::array`] accepts, else absent.
    pub fn list(&self, name: &str) -> Option<Vec<String>> {
        self.array(name).ok().flatten()
    }

    /// A required `Array[String]` whose elements must be among `allowed`; Grape's `<name> is
    /// missing`, `<name> is invalid` or `<name> does not have a valid value`.
    pub fn required_values(&self, name: &str, allowed: &[&str]) -> Result<Vec<String>, ApiError> {
        match self.array(name)? {
            None => Err(ApiError::Param(format!("{name} is missing"))),
            Some(items) if items.is_empty() => Err(ApiError::Param(format!("{name} is missing"))),
            Some(items) if items.iter().any(|s| !allowed.contains(&s.as_str())) => {
                Err(ApiError::Param(format!("{name} does not have a valid value")))
            }
            Some(items) => Ok(items),
        }
    }

    /// An integer parameter; Grape's `<name> is invalid` when not an integer.
    pub fn int(&self, name: &str) -> Result<Option<i64>, ApiError> {
        match self.values.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) if is_blank_str(v) => Ok(None),
            Some(Value::Number(n)) => json_integer(n).map(Some).ok_or_else(|| invalid(name)),
            Some(Value::String(s)) => ruby_integer(s).map(Some).ok_or_else(|| invalid(name)),
            Some(_) => Err(invalid(name)),
        }
    }

    /// A boolean parameter; Grape's `<name> is invalid` otherwise.
    pub fn bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.values.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) if is_blank_str(v) => Ok(None),
            Some(v) => grape_bool(v).map(Some).ok_or_else(|| invalid(name)),
        }
    }

    /// A string parameter restricted to `allowed`; Grape's `<name> does not have a valid value`.
    pub fn one_of(&self, name: &str, allowed: &[&str]) -> Result<Option<String>, ApiError> {
        match self.text(name)? {
            Some(s) if !allowed.contains(&s.as_str()) => {
                Err(ApiError::Param(format!("{name} does not have a valid value")))
            }
            other => Ok(other),
        }
    }

    /// A `Date`: `YYYY-MM-DD`, `YYYYMMDD`, `YYYY/MM/DD` or an ISO-8601 datetime's date (the
    /// machine forms of Ruby's `Date.parse`); Grape's `<name> is invalid` otherwise.
    pub fn date(&self, name: &str) -> Result<Option<NaiveDate>, ApiError> {
        match self.text(name)? {
            None => Ok(None),
            Some(s) if s.is_empty() => Ok(None),
            Some(s) => {
                let s = s.trim();
                ["%Y-%m-%d", "%Y%m%d", "%Y/%m/%d"]
                    .iter()
                    .find_map(|f| NaiveDate::parse_from_str(s, f).ok())
                    .or_else(|| DateTime::parse_from_rfc3339(s).ok().map(|t| t.date_naive()))
                    .or_else(|| {
                        s.get(..10)
                            .filter(|_| s.as_bytes().get(10) == Some(&b'T'))
                            .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
                    })
                    .map(Some)
                    .ok_or_else(|| invalid(name))
            }
        }
    }

    /// An ISO-8601 datetime (or a bare date, meaning its midnight UTC).
    pub fn datetime(&self, name: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
        match self.text(name)? {
            None => Ok(None),
            Some(s) if s.is_empty() => Ok(None),
            Some(s) => {
                if let Ok(t) = DateTime::parse_from_rfc3339(&s) {
                    return Ok(Some(t.with_timezone(&Utc)));
                }
                NaiveDate::parse_from_str(&s, "%Y-%m-%d")
                    .ok()
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
                    .map(|t| Some(t.and_utc()))
                    .ok_or_else(|| invalid(name))
            }
        }
    }
}

/// Grape validation failures gathered across parameters and answered together (`, `-joined).
#[derive(Debug, Default)]
pub struct Failures(Vec<String>);

impl Failures {
    /// Keeps a parameter's value, or records its Grape failure (other errors pass through).
    pub fn check<T>(&mut self, result: Result<T, ApiError>) -> Result<Option<T>, ApiError> {
        match result {
            Ok(v) => Ok(Some(v)),
            Err(ApiError::Param(e)) => {
                self.0.push(e);
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Records a failure message.
    pub fn push(&mut self, message: impl Into<String>) {
        self.0.push(message.into());
    }

    /// `Ok` when nothing failed, else one Grape error naming every failure.
    pub fn finish(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Param(self.0.join(", ")))
        }
    }
}

fn invalid(name: &str) -> ApiError {
    ApiError::Param(format!("{name} is invalid"))
}

impl FromRequest<Arc<GitLabState>> for Params {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<GitLabState>) -> Result<Self, Self::Rejection> {
        let query = req.uri().query().map(str::to_string);
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = Bytes::from_request(req, state)
            .await
            .map_err(|_| ApiError::BadRequest("Could not read the request body".into()))?;
        Params::parse(query.as_deref(), content_type.as_deref(), &body)
    }
}

/// One page of a list, as chosen by `page` and `per_page`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageSpec {
    /// 1-based page.
    pub page: usize,
    /// Items per page (1..=100, default 20).
    pub per_page: usize,
}

impl PageSpec {
    /// Reads `page`/`per_page` (non-integers are Grape errors; out-of-range values are clamped).
    pub fn from_params(params: &Params) -> Result<Self, ApiError> {
        let page = params.int("page")?.unwrap_or(1).max(1);
        let per_page = params.int("per_page")?.unwrap_or(20);
        let per_page = if per_page < 1 { 20 } else { per_page.min(100) };
        Ok(Self {
            page: usize::try_from(page).unwrap_or(1),
            per_page: usize::try_from(per_page).unwrap_or(20),
        })
    }
}

/// Builds the pagination headers for `total` items.
pub fn page_headers(spec: PageSpec, total: usize, base_url: &str, uri: &Uri) -> HeaderMap {
    let total_pages = total.div_ceil(spec.per_page).max(1);
    let next = (spec.page < total_pages).then_some(spec.page + 1);
    let prev = (spec.page > 1).then(|| (spec.page - 1).min(total_pages));
    let mut headers = HeaderMap::new();
    let mut put = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    };
    put("x-page", spec.page.to_string());
    put("x-per-page", spec.per_page.to_string());
    put("x-next-page", next.map(|n| n.to_string()).unwrap_or_default());
    put("x-prev-page", prev.map(|n| n.to_string()).unwrap_or_default());
    put("x-total", total.to_string());
    put("x-total-pages", total_pages.to_string());
    let link_to = |page: usize| {
        let mut pairs: Vec<(String, String)> = uri
            .query()
            .map(|q| url::form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        pairs.retain(|(k, _)| k != "page" && k != "per_page" && k != "private_token" && k != "access_token");
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in &pairs {
            query.append_pair(k, v);
        }
        query.append_pair("page", &page.to_string());
        query.append_pair("per_page", &spec.per_page.to_string());
        format!("<{}{}?{}>", base_url, uri.path(), query.finish())
    };
    let mut links = Vec::new();
    if let Some(p) = prev {
        links.push(format!("{}; rel=\"prev\"", link_to(p)));
    }
    if let Some(n) = next {
        links.push(format!("{}; rel=\"next\"", link_to(n)));
    }
    links.push(format!("{}; rel=\"first\"", link_to(1)));
    links.push(format!("{}; rel=\"last\"", link_to(total_pages)));
    put("link", links.join(", "));
    headers
}

/// Answers one page of `items` with GitLab's pagination headers.
pub fn paginate(items: Vec<Value>, spec: PageSpec, base_url: &str, uri: &Uri) -> Response {
    let total = items.len();
    let headers = page_headers(spec, total, base_url, uri);
    let start = (spec.page - 1).saturating_mul(spec.per_page);
    let page: Vec<Value> = items.into_iter().skip(start).take(spec.per_page).collect();
    (headers, Json(page)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_merge_query_form_and_json() {
        let p = Params::parse(
            Some("scopes[]=api&scopes[]=read_api&page=2"),
            None,
            b"name=x&access_level=30",
        )
        .unwrap_or_default();
        assert_eq!(
            p.list("scopes"),
            Some(vec!["api".to_string(), "read_api".to_string()])
        );
        assert_eq!(p.int("access_level"), Ok(Some(30)));
        assert_eq!(p.required("name"), Ok("x".to_string()));
        let j = Params::parse(
            None,
            Some("application/json"),
            br#"{"scopes":["api"],"access_level":"x"}"#,
        )
        .unwrap_or_default();
        assert_eq!(
            j.int("access_level"),
            Err(ApiError::Param("access_level is invalid".into()))
        );
        assert_eq!(j.required("name"), Err(ApiError::Param("name is missing".into())));
        assert!(Params::parse(None, Some("application/json"), b"{").is_err());
    }

    #[test]
    fn booleans_coerce_as_dry_types_params_bool() {
        for t in TRUE_VALUES {
            let p = Params::parse(Some(&format!("archived={t}")), None, b"").unwrap_or_default();
            assert_eq!(p.bool("archived"), Ok(Some(true)), "{t}");
        }
        for f in FALSE_VALUES {
            let p = Params::parse(Some(&format!("archived={f}")), None, b"").unwrap_or_default();
            assert_eq!(p.bool("archived"), Ok(Some(false)), "{f}");
        }
        for bad in ["tRue", "yES", "2", "truthy", "1.0"] {
            let p = Params::parse(Some(&format!("archived={bad}")), None, b"").unwrap_or_default();
            assert_eq!(p.bool("archived"), Err(invalid("archived")), "{bad}");
        }
        let j = Params::parse(
            None,
            Some("application/json"),
            br#"{"a":true,"b":0,"c":"Yes","d":[true],"e":""}"#,
        )
        .unwrap_or_default();
        assert_eq!(
            (j.bool("a"), j.bool("b"), j.bool("c"), j.bool("d"), j.bool("e")),
            (
                Ok(Some(true)),
                Ok(Some(false)),
                Ok(Some(true)),
                Err(invalid("d")),
                Ok(None)
            )
        );
    }

    #[test]
    fn integers_coerce_as_ruby_integer_base_10() {
        let cases: &[(&str, Option<i64>)] = &[
            ("30", Some(30)),
            (" 30 ", Some(30)),
            ("+30", Some(30)),
            ("-5", Some(-5)),
            ("1_000", Some(1000)),
            ("030", Some(30)),
            ("3_", None),
            ("1__0", None),
            ("0x1e", None),
            ("30.0", None),
            ("thirty", None),
        ];
        for (raw, want) in cases {
            let q = format!("access_level={}", raw.replace(' ', "%20").replace('+', "%2B"));
            let p = Params::parse(Some(&q), None, b"").unwrap_or_default();
            let got = p.int("access_level");
            match want {
                Some(n) => assert_eq!(got, Ok(Some(*n)), "{raw}"),
                None => assert_eq!(got, Err(invalid("access_level")), "{raw}"),
            }
        }
        let j = Params::parse(
            None,
            Some("application/json"),
            br#"{"a":"40","b":40.7,"c":true,"d":null}"#,
        )
        .unwrap_or_default();
        assert_eq!(
            (j.int("a"), j.int("b"), j.int("c"), j.int("d")),
            (Ok(Some(40)), Ok(Some(40)), Err(invalid("c")), Ok(None))
        );
    }

    #[test]
    fn arrays_only_from_brackets_or_json_arrays() {
        let allowed = &["api", "read_api"];
        let p = |q: &str| Params::parse(Some(q), None, b"").unwrap_or_default();
        assert_eq!(
            p("scopes[]=api&scopes[]=read_api").required_values("scopes", allowed),
            Ok(vec!["api".to_string(), "read_api".to_string()])
        );
        assert_eq!(
            p("scopes=api").required_values("scopes", allowed),
            Err(invalid("scopes"))
        );
        assert_eq!(
            p("scopes[]=api&scopes[]=sudo").required_values("scopes", allowed),
            Err(ApiError::Param("scopes does not have a valid value".into()))
        );
        assert_eq!(
            p("").required_values("scopes", allowed),
            Err(ApiError::Param("scopes is missing".into()))
        );
        let j = |b: &str| Params::parse(None, Some("application/json"), b.as_bytes()).unwrap_or_default();
        assert_eq!(j(r#"{"scopes":"api"}"#).array("scopes"), Err(invalid("scopes")));
        assert_eq!(
            j(r#"{"scopes":["api",null]}"#).array("scopes"),
            Err(invalid("scopes"))
        );
        assert_eq!(
            j(r#"{"ids":[1,"2"]}"#).array("ids"),
            Ok(Some(vec!["1".into(), "2".into()]))
        );
        assert_eq!(j(r#"{"name":["x"]}"#).text("name"), Err(invalid("name")));
        assert_eq!(j(r#"{"name":12}"#).text("name"), Ok(Some("12".into())));
    }

    #[test]
    fn dates_take_the_machine_forms_of_date_parse() {
        let want = NaiveDate::from_ymd_opt(2027, 1, 31);
        for raw in [
            "2027-01-31",
            "20270131",
            "2027/01/31",
            "2027-01-31T10:00:00Z",
            "2027-01-31T10:00:00",
        ] {
            let p = Params::parse(Some(&format!("expires_at={raw}")), None, b"").unwrap_or_default();
            assert_eq!(p.date("expires_at"), Ok(want), "{raw}");
        }
        let p = Params::parse(Some("expires_at=2027-02-30"), None, b"").unwrap_or_default();
        assert_eq!(p.date("expires_at"), Err(invalid("expires_at")));
    }

    #[test]
    fn failures_are_joined_in_order() {
        let p = Params::parse(Some("access_level=x&scopes=api"), None, b"").unwrap_or_default();
        let mut f = Failures::default();
        assert_eq!(f.check(p.required("name")), Ok(None));
        assert_eq!(f.check(p.array("scopes")), Ok(None));
        assert_eq!(f.check(p.int("access_level")), Ok(None));
        assert_eq!(
            f.finish(),
            Err(ApiError::Param(
                "name is missing, scopes is invalid, access_level is invalid".into()
            ))
        );
    }

    #[test]
    fn page_spec_table() {
        let cases = [
            ("", 1, 20),
            ("page=3&per_page=5", 3, 5),
            ("per_page=500", 1, 100),
            ("page=0&per_page=0", 1, 20),
        ];
        for (q, page, per_page) in cases {
            let p = Params::parse(Some(q), None, b"").unwrap_or_default();
            assert_eq!(PageSpec::from_params(&p), Ok(PageSpec { page, per_page }), "{q}");
        }
    }

    #[test]
    fn headers_on_middle_and_last_page() {
        let uri: Uri = "/api/v4/projects?search=a&page=2&per_page=2"
            .parse()
            .unwrap_or_default();
        let h = page_headers(PageSpec { page: 2, per_page: 2 }, 5, "http://h", &uri);
        let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).unwrap_or("?").to_string();
        assert_eq!(
            (get("x-next-page"), get("x-prev-page"), get("x-total-pages")),
            ("3".into(), "1".into(), "3".into())
        );
        assert!(get("link").contains("<http://h/api/v4/projects?search=a&page=3&per_page=2>; rel=\"next\""));
        let h = page_headers(PageSpec { page: 3, per_page: 2 }, 5, "http://h", &uri);
        assert_eq!(h.get("x-next-page").map(|v| v.as_bytes().to_vec()), Some(vec![]));
    }
}
