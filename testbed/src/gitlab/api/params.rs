//! Request parameters as Grape sees them (query string, form body or JSON body, merged), and
//! GitLab's offset pagination with `x-*` and `Link` headers.

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

/// Merged request parameters; array keys (`scopes[]`) are stored without the brackets.
#[derive(Debug, Default, Clone)]
pub struct Params {
    values: HashMap<String, Vec<Value>>,
}

fn add_pairs(values: &mut HashMap<String, Vec<Value>>, raw: &[u8]) {
    for (k, v) in url::form_urlencoded::parse(raw) {
        let key = k.strip_suffix("[]").unwrap_or(&k).to_string();
        values.entry(key).or_default().push(Value::String(v.into_owned()));
    }
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
                for (k, v) in map {
                    let entry = values.entry(k).or_default();
                    entry.clear();
                    match v {
                        Value::Array(items) => entry.extend(items),
                        other => entry.push(other),
                    }
                }
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

    /// A string parameter (numbers are accepted as strings, as Grape coerces).
    pub fn str(&self, name: &str) -> Option<String> {
        match self.values.get(name)?.last()? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    /// A required, non-blank string; Grape's `<name> is missing` otherwise.
    pub fn required(&self, name: &str) -> Result<String, ApiError> {
        match self.str(name) {
            Some(s) if !s.trim().is_empty() => Ok(s),
            _ => Err(ApiError::Param(format!("{name} is missing"))),
        }
    }

    /// An array of strings (a single value counts as a one-element array).
    pub fn list(&self, name: &str) -> Option<Vec<String>> {
        let items = self.values.get(name)?;
        Some(
            items
                .iter()
                .filter_map(|v| match v {
                    Value::String(s) => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                })
                .collect(),
        )
    }

    /// An integer parameter; Grape's `<name> is invalid` when not an integer.
    pub fn int(&self, name: &str) -> Result<Option<i64>, ApiError> {
        match self.values.get(name).and_then(|v| v.last()) {
            None => Ok(None),
            Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(|| invalid(name)),
            Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| invalid(name)),
            Some(_) => Err(invalid(name)),
        }
    }

    /// A boolean parameter; Grape's `<name> is invalid` otherwise.
    pub fn bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.values.get(name).and_then(|v| v.last()) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) => match s.as_str() {
                "true" | "1" | "yes" | "t" => Ok(Some(true)),
                "false" | "0" | "no" | "f" => Ok(Some(false)),
                _ => Err(invalid(name)),
            },
            Some(_) => Err(invalid(name)),
        }
    }

    /// A `YYYY-MM-DD` date; Grape's `<name> is invalid` otherwise.
    pub fn date(&self, name: &str) -> Result<Option<NaiveDate>, ApiError> {
        match self.str(name) {
            None => Ok(None),
            Some(s) if s.is_empty() => Ok(None),
            Some(s) => NaiveDate::parse_from_str(&s, "%Y-%m-%d")
                .map(Some)
                .map_err(|_| invalid(name)),
        }
    }

    /// An ISO-8601 datetime (or a bare date, meaning its midnight UTC).
    pub fn datetime(&self, name: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
        match self.str(name) {
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
