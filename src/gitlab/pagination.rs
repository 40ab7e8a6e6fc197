//! Offset pagination (gitlab-api.md §1.4): follow `x-next-page`, or else `Link: <…>; rel="next"`,
//! until neither names a next page. `x-total`/`x-total-pages` are not relied on (GitLab omits
//! them on large results). A `Link` to another origin is refused so the operator's token header
//! never travels to a host it was not configured for.

use http::HeaderMap;
use url::Url;

use super::GitLabError;

/// Items per page the client asks for (GitLab's maximum).
pub const PER_PAGE: u32 = 100;

/// The URL of the page after the one at `current`, from that page's response headers.
pub fn next_page_url(headers: &HeaderMap, current: &Url) -> Result<Option<Url>, GitLabError> {
    if let Some(value) = headers.get("x-next-page") {
        let text = value.to_str().unwrap_or("").trim();
        if text.is_empty() {
            return Ok(None);
        }
        let page: u32 = text.parse().map_err(|_| GitLabError::InvalidResponse {
            message: format!("x-next-page is not a page number: {}", super::error::cap(text)),
        })?;
        return Ok(Some(with_page(current, page)));
    }
    for value in headers.get_all(http::header::LINK) {
        let Ok(text) = value.to_str() else { continue };
        if let Some(next) = link_next(text) {
            let url = current.join(next).map_err(|e| GitLabError::InvalidResponse {
                message: format!("Link rel=\"next\" is not a URL: {e}"),
            })?;
            if url.origin() != current.origin() {
                return Err(GitLabError::InvalidResponse {
                    message: "Link rel=\"next\" points to another host; not following it".into(),
                });
            }
            return Ok(Some(url));
        }
    }
    Ok(None)
}

/// `current` with its `page` query parameter set to `page` (other parameters kept in order).
pub fn with_page(current: &Url, page: u32) -> Url {
    let pairs: Vec<(String, String)> = current
        .query_pairs()
        .filter(|(k, _)| k != "page")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let mut url = current.clone();
    {
        let mut q = url.query_pairs_mut();
        q.clear();
        for (k, v) in &pairs {
            q.append_pair(k, v);
        }
        q.append_pair("page", &page.to_string());
    }
    url
}

/// The target of the `rel="next"` entry of an RFC 8288 `Link` header value.
fn link_next(header: &str) -> Option<&str> {
    header.split(',').find_map(|entry| {
        let entry = entry.trim();
        let (target, params) = entry.strip_prefix('<')?.split_once('>')?;
        let is_next = params.split(';').any(|p| {
            let Some((name, value)) = p.trim().split_once('=') else {
                return false;
            };
            name.trim().eq_ignore_ascii_case("rel")
                && value
                    .trim()
                    .trim_matches('"')
                    .split_ascii_whitespace()
                    .any(|r| r.eq_ignore_ascii_case("next"))
        });
        is_next.then_some(target)
    })
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn next_page_from_headers() {
        let cur =
            url("https://gl.example.com/api/v4/projects/1/access_tokens?state=active&per_page=100&page=1");
        let link = r#"<https://gl.example.com/api/v4/projects/1/access_tokens?page=2&per_page=100>; rel="next", <https://gl.example.com/api/v4/projects/1/access_tokens?page=1&per_page=100>; rel="first""#;
        let cases: Vec<(HeaderMap, Option<&str>)> = vec![
            (
                headers(&[("x-next-page", "2")]),
                Some(
                    "https://gl.example.com/api/v4/projects/1/access_tokens?state=active&per_page=100&page=2",
                ),
            ),
            (headers(&[("x-next-page", "")]), None),
            (headers(&[("x-next-page", ""), ("link", link)]), None),
            (
                headers(&[("link", link)]),
                Some("https://gl.example.com/api/v4/projects/1/access_tokens?page=2&per_page=100"),
            ),
            (
                headers(&[("link", r#"<https://gl.example.com/x?page=1>; rel="first""#)]),
                None,
            ),
            (headers(&[]), None),
        ];
        for (h, want) in cases {
            let got = next_page_url(&h, &cur).unwrap().map(|u| u.to_string());
            assert_eq!(got.as_deref(), want, "{h:?}");
        }
    }

    #[test]
    fn foreign_or_garbled_next_pages_are_errors() {
        let cur = url("https://gl.example.com/api/v4/projects?page=1");
        let foreign = headers(&[(
            "link",
            r#"<https://evil.example.net/api/v4/projects?page=2>; rel="next""#,
        )]);
        assert_eq!(
            next_page_url(&foreign, &cur).unwrap_err().reason(),
            "InvalidResponse"
        );
        let garbled = headers(&[("x-next-page", "two")]);
        assert_eq!(
            next_page_url(&garbled, &cur).unwrap_err().reason(),
            "InvalidResponse"
        );
    }

    #[test]
    fn link_rel_parsing() {
        assert_eq!(link_next(r#"<a>; rel="prev", <b>; rel="next""#), Some("b"));
        assert_eq!(link_next(r#"<b>; rel=next"#), Some("b"));
        assert_eq!(link_next(r#"<b>; title="x"; rel="last next""#), Some("b"));
        assert_eq!(link_next(r#"<a>; rel="nextish""#), None);
        assert_eq!(link_next("garbage"), None);
    }
}
