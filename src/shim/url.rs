//! Strict parsing of source URLs and host checks against a connection (DESIGN §4).
//!
//! The parser is deliberately stricter than browsers: it refuses rather than normalises
//! anything that could make the checked string differ from what a client contacts (user-info,
//! `..` or `.` segments in any spelling, backslashes, queries, fragments, control characters,
//! empty segments). Hosts compare case-insensitively with default ports normalised.

use percent_encoding::percent_decode_str;

use crate::reason::Reason;

use super::Refusal;

/// Where the connection's GitLab and registry live, normalised for comparisons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionFacts {
    /// `http` or `https`.
    pub scheme: String,
    /// Lower-case host (IDNA-normalised).
    pub host: String,
    /// Effective port (443/80 when not written).
    pub port: u16,
    /// Path segments of a relative URL root (`https://example.com/gitlab` → `["gitlab"]`).
    pub root: Vec<String>,
    /// Registry host, lower case, `:443` removed.
    pub registry_host: Option<String>,
    /// Git over SSH endpoint `host[:port]` (`spec.sshHost`); `None`: GitLab's host, port 22.
    pub ssh_host: Option<String>,
}

impl ConnectionFacts {
    /// Builds the facts from a connection's `url` and `registryHost`; `Err` explains a bad value.
    pub fn new(gitlab_url: &str, registry_host: Option<&str>) -> Result<Self, String> {
        let u = parse_http_like(gitlab_url, &["http", "https"])
            .map_err(|r| format!("GitLabConnection url {gitlab_url:?}: {}", r.message))?;
        let mut root = Vec::new();
        for s in u.segments {
            if s.raw != s.decoded || s.decoded.contains('/') {
                return Err(format!(
                    "GitLabConnection url {gitlab_url:?}: percent-encoding in the URL root"
                ));
            }
            root.push(s.decoded);
        }
        let registry_host = match registry_host {
            None => None,
            Some(h) => Some(
                normalise_registry_host(h)
                    .map_err(|e| format!("GitLabConnection registryHost {h:?}: {e}"))?,
            ),
        };
        Ok(Self {
            scheme: u.scheme,
            host: u.host,
            port: u.port,
            root,
            registry_host,
            ssh_host: None,
        })
    }

    /// The same facts with the connection's SSH endpoint (`spec.sshHost`).
    pub fn with_ssh_host(self, ssh_host: Option<String>) -> Self {
        Self { ssh_host, ..self }
    }

    /// The GitLab base URL for messages (`https://host[:port]/root`).
    pub fn gitlab_base(&self) -> String {
        let default = if self.scheme == "https" { 443 } else { 80 };
        let port = if self.port == default {
            String::new()
        } else {
            format!(":{}", self.port)
        };
        let root: String = self.root.iter().map(|s| format!("/{s}")).collect();
        format!("{}://{}{port}{root}", self.scheme, self.host)
    }
}

fn registry_key(host: &str, port: u16) -> String {
    if port == 443 {
        host.to_string()
    } else {
        format!("{host}:{port}")
    }
}

/// The one normal form of a registry `host[:port]` for comparisons (every comparison of
/// registry hosts goes through it): lower case, IDNA, the default `:443` removed, any other
/// port kept. `Err` says why the value is no `host[:port]`.
pub fn normalise_registry_host(host: &str) -> Result<String, String> {
    normalise_authority(host.trim(), "https").map(|(h, port)| registry_key(&h, port))
}

/// Whether two registry hosts name the same registry (`Registry.example.com:443` is
/// `registry.example.com`); a value that is no host never matches.
pub fn same_registry(a: &str, b: &str) -> bool {
    matches!(
        (normalise_registry_host(a), normalise_registry_host(b)),
        (Ok(x), Ok(y)) if x == y
    )
}

/// One path segment as written and percent-decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// As written.
    pub raw: String,
    /// Percent-decoded.
    pub decoded: String,
}

impl Segment {
    /// Whether the segment was written with an encoded slash (`%2F`).
    pub fn has_encoded_slash(&self) -> bool {
        self.decoded.contains('/')
    }
}

/// A parsed `scheme://authority/path` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedUrl {
    /// Lower-case scheme.
    pub scheme: String,
    /// The authority as written (for registry lookup keys).
    pub authority: String,
    /// Lower-case host.
    pub host: String,
    /// Effective port.
    pub port: u16,
    /// Path segments (a single trailing slash dropped).
    pub segments: Vec<Segment>,
}

fn invalid(msg: impl Into<String>) -> Refusal {
    Refusal::new(Reason::InvalidUrl, msg)
}

/// Normalises `host[:port]` through the WHATWG URL parser: lower case, IDNA, effective port.
fn normalise_authority(authority: &str, scheme: &str) -> Result<(String, u16), String> {
    if authority.is_empty() {
        return Err("has no host".into());
    }
    if authority.contains('@') {
        return Err("contains user-info (credentials); remove the user@ part".into());
    }
    if authority
        .bytes()
        .any(|b| matches!(b, b'%' | b'/' | b'\\' | b'?' | b'#') || b.is_ascii_whitespace())
    {
        return Err("has characters that are not allowed in a host".into());
    }
    let u = url::Url::parse(&format!("{scheme}://{authority}/"))
        .map_err(|e| format!("has an invalid host ({e})"))?;
    let host = u
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or("has no host")?
        .to_ascii_lowercase();
    let port = u.port_or_known_default().ok_or("has no port")?;
    Ok((host, port))
}

/// Parses `scheme://authority/path` with one of `schemes`; refuses anything ambiguous.
pub fn parse_http_like(raw: &str, schemes: &[&str]) -> Result<ParsedUrl, Refusal> {
    if raw.is_empty() {
        return Err(invalid("the URL is empty"));
    }
    if raw.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(invalid(format!("{raw:?} contains spaces or control characters")));
    }
    if raw.contains('\\') {
        return Err(invalid(format!("{raw:?} contains a backslash")));
    }
    let Some((scheme, rest)) = raw.split_once("://") else {
        return Err(invalid(format!(
            "{raw:?} is not a URL of the form scheme://host/path"
        )));
    };
    let scheme = scheme.to_ascii_lowercase();
    if !schemes.contains(&scheme.as_str()) {
        return Err(invalid(format!(
            "{raw:?} has scheme {scheme:?}; expected {}",
            schemes.join(" or ")
        )));
    }
    if rest.contains('?') || rest.contains('#') {
        return Err(invalid(format!(
            "{raw:?} has a query or fragment, which a source URL must not have"
        )));
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    // The default port of oci:// (and of a registry) is the HTTPS one.
    let port_scheme = if scheme == "http" { "http" } else { "https" };
    let (host, port) =
        normalise_authority(authority, port_scheme).map_err(|e| invalid(format!("{raw:?} {e}")))?;
    let segments = parse_path(path).map_err(|e| invalid(format!("{raw:?} {e}")))?;
    Ok(ParsedUrl {
        scheme,
        authority: authority.to_string(),
        host,
        port,
        segments,
    })
}

/// Splits an absolute path into decoded segments, refusing empty, `.` and `..` segments.
fn parse_path(path: &str) -> Result<Vec<Segment>, String> {
    let mut out = Vec::new();
    if path.is_empty() || path == "/" {
        return Ok(out);
    }
    let body = path.strip_prefix('/').unwrap_or(path);
    let body = body.strip_suffix('/').unwrap_or(body);
    for raw in body.split('/') {
        if raw.is_empty() {
            return Err("has an empty path segment (double slash)".into());
        }
        let decoded = percent_decode_str(raw)
            .decode_utf8()
            .map_err(|_| format!("has a path segment {raw:?} that does not decode to UTF-8"))?
            .into_owned();
        // Also inside an encoded-slash segment (`a%2F..%2Fb`), which some servers decode.
        if decoded.split('/').any(|p| p == "." || p == "..") {
            return Err("has a '.' or '..' path segment".into());
        }
        if decoded.bytes().any(|b| b.is_ascii_control() || b == b'\\') {
            return Err(format!(
                "has a path segment {raw:?} with encoded control characters or backslashes"
            ));
        }
        out.push(Segment {
            raw: raw.to_string(),
            decoded,
        });
    }
    Ok(out)
}

/// Checks that a URL is on the connection's GitLab (scheme, host, port) under its URL root,
/// and returns the path segments below the root.
pub fn gitlab_path<'a>(
    url: &'a ParsedUrl,
    conn: &ConnectionFacts,
    raw: &str,
) -> Result<&'a [Segment], Refusal> {
    if url.host != conn.host || url.port != conn.port || url.scheme != conn.scheme {
        return Err(Refusal::new(
            Reason::ForeignHost,
            format!("{raw:?} is not on the connection's GitLab {}", conn.gitlab_base()),
        ));
    }
    let n = conn.root.len();
    let under_root =
        url.segments.len() >= n && url.segments.iter().zip(&conn.root).all(|(s, r)| s.decoded == *r);
    if !under_root {
        return Err(Refusal::new(
            Reason::ForeignHost,
            format!(
                "{raw:?} is not under the connection's GitLab URL root {}",
                conn.gitlab_base()
            ),
        ));
    }
    Ok(&url.segments[n..])
}

/// A registry reference (`host[:port]/path`) checked against the connection's registry host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryRef {
    /// The host[:port] as written: the key Flux looks credentials up by.
    pub authority: String,
    /// The repository path (`group/project[/image...]`).
    pub path: String,
}

/// Parses `oci://host[:port]/path` (OCIRepository, HelmRepository `type: oci`).
pub fn parse_oci_url(raw: &str, conn: &ConnectionFacts) -> Result<RegistryRef, Refusal> {
    let url = parse_http_like(raw, &["oci"])?;
    registry_ref(&url, conn, raw)
}

/// Parses an ImageRepository `spec.image` (`host[:port]/path`, no scheme, no tag).
pub fn parse_image(raw: &str, conn: &ConnectionFacts) -> Result<RegistryRef, Refusal> {
    if raw.contains("://") {
        return Err(invalid(format!("{raw:?} must not include a URL scheme")));
    }
    let first = raw.split('/').next().unwrap_or_default();
    let looks_like_host = first.contains('.') || first.contains(':') || first == "localhost";
    if !raw.contains('/') || !looks_like_host {
        return Err(Refusal::new(
            Reason::ForeignHost,
            format!(
                "{raw:?} names no registry host, so it is a Docker Hub image, not the connection's registry"
            ),
        ));
    }
    let url = parse_http_like(&format!("oci://{raw}"), &["oci"]).map_err(|r| {
        invalid(
            r.message
                .replace(&format!("\"oci://{raw}\""), &format!("{raw:?}")),
        )
    })?;
    registry_ref(&url, conn, raw)
}

/// Whether `c` is a Distribution repository path component: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
pub fn is_repository_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-')) {
            return false;
        }
    }
    true
}

fn registry_ref(url: &ParsedUrl, conn: &ConnectionFacts, raw: &str) -> Result<RegistryRef, Refusal> {
    let Some(registry) = &conn.registry_host else {
        return Err(Refusal::new(
            Reason::MissingRegistryHost,
            format!("{raw:?} is a registry reference but the connection has no registryHost"),
        ));
    };
    if registry_key(&url.host, url.port) != *registry {
        return Err(Refusal::new(
            Reason::ForeignHost,
            format!("{raw:?} is not on the connection's registry {registry}"),
        ));
    }
    let mut parts = Vec::new();
    for s in &url.segments {
        if s.raw != s.decoded {
            return Err(invalid(format!(
                "{raw:?} has percent-encoding in the repository path"
            )));
        }
        if s.raw.contains('@') || s.raw.contains(':') {
            return Err(invalid(format!("{raw:?} must not include a tag or digest")));
        }
        if !is_repository_component(&s.raw) {
            return Err(invalid(format!(
                "{raw:?} has repository path segment {:?}; registry path components are lower case \
                 [a-z0-9] joined by single '.', '_', '__' or dashes",
                s.raw
            )));
        }
        parts.push(s.raw.as_str());
    }
    if parts.len() < 2 {
        return Err(invalid(format!(
            "{raw:?} does not name a project path (group/project) on the registry"
        )));
    }
    Ok(RegistryRef {
        authority: url.authority.clone(),
        path: parts.join("/"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> ConnectionFacts {
        ConnectionFacts::new("https://GitLab.Example.com/", Some("registry.example.com")).unwrap()
    }

    #[test]
    fn connection_facts_normalise() {
        let c =
            ConnectionFacts::new("https://example.com:443/gitlab", Some("Registry.Example.com:443")).unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.root.clone()),
            ("example.com", 443, vec!["gitlab".to_string()])
        );
        assert_eq!(c.registry_host.as_deref(), Some("registry.example.com"));
        assert_eq!(c.gitlab_base(), "https://example.com/gitlab");
        let c = ConnectionFacts::new("http://127.0.0.1:8080", Some("127.0.0.1:5000")).unwrap();
        assert_eq!(c.gitlab_base(), "http://127.0.0.1:8080");
        assert_eq!(c.registry_host.as_deref(), Some("127.0.0.1:5000"));
        for bad in [
            "gitlab.example.com",
            "ftp://x",
            "https://u:p@x",
            "https://x/a%2Fb",
            "https://x/?q",
        ] {
            assert!(ConnectionFacts::new(bad, None).is_err(), "{bad}");
        }
        assert!(ConnectionFacts::new("https://x", Some("https://registry")).is_err());
    }

    #[test]
    fn http_parse_table() {
        // (url, Ok(decoded segments) | Err(message fragment))
        let table: &[(&str, Result<&[&str], &str>)] = &[
            ("https://gitlab.example.com/a/b.git", Ok(&["a", "b.git"])),
            ("https://gitlab.example.com/a/b/", Ok(&["a", "b"])),
            ("HTTPS://GITLAB.example.com:443/a/b", Ok(&["a", "b"])),
            ("https://gitlab.example.com/a%2Fb/c", Ok(&["a/b", "c"])),
            ("https://gitlab.example.com/a%41/c", Ok(&["aA", "c"])),
            ("https://user@gitlab.example.com/a/b", Err("user-info")),
            ("https://user:pw@gitlab.example.com/a/b", Err("user-info")),
            ("https://gitlab.example.com/a/../b", Err("'..'")),
            ("https://gitlab.example.com/a/%2e%2E/b", Err("'..'")),
            ("https://gitlab.example.com/./a/b", Err("'..'")),
            ("https://gitlab.example.com/a//b", Err("double slash")),
            ("https://gitlab.example.com\\a/b", Err("backslash")),
            ("https://gitlab.example.com/a/b?x=1", Err("query")),
            ("https://gitlab.example.com/a/b#frag", Err("query or fragment")),
            ("https://gitlab.example.com/a b", Err("spaces")),
            ("https://gitlab.example.com/a/%ff", Err("UTF-8")),
            ("https://gitlab.example.com/a/%0a", Err("control")),
            ("https:///a/b", Err("no host")),
            ("https://gitlab.example.com:99999/a", Err("invalid host")),
            ("https://gitlab%2eexample.com/a", Err("not allowed in a host")),
            ("gitlab.example.com/a/b", Err("scheme://host/path")),
            ("ftp://gitlab.example.com/a/b", Err("expected http or https")),
            ("", Err("empty")),
        ];
        for (raw, want) in table {
            let got = parse_http_like(raw, &["http", "https"]);
            match (want, got) {
                (Ok(segs), Ok(u)) => {
                    assert_eq!(
                        u.segments.iter().map(|s| s.decoded.as_str()).collect::<Vec<_>>(),
                        *segs,
                        "{raw}"
                    );
                    assert_eq!((u.host.as_str(), u.port), ("gitlab.example.com", 443), "{raw}");
                }
                (Err(frag), Err(r)) => {
                    assert_eq!(r.reason, Reason::InvalidUrl, "{raw}");
                    assert!(r.message.contains(frag), "{raw}: {}", r.message);
                }
                (w, g) => panic!("{raw}: want {w:?}, got {g:?}"),
            }
        }
    }

    #[test]
    fn gitlab_origin_and_root_checks() {
        let c = ConnectionFacts::new("https://example.com/gitlab", None).unwrap();
        let ok = parse_http_like("https://EXAMPLE.com:443/gitlab/a/b", &["https"]).unwrap();
        let segs = gitlab_path(&ok, &c, "x").unwrap();
        assert_eq!(
            segs.iter().map(|s| s.decoded.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        for (raw, frag) in [
            ("https://example.com/a/b", "URL root"),
            ("https://example.com/Gitlab/a/b", "URL root"),
            (
                "https://example.com:8443/gitlab/a/b",
                "not on the connection's GitLab",
            ),
            ("http://example.com/gitlab/a/b", "not on the connection's GitLab"),
            (
                "https://evil.example.com/gitlab/a/b",
                "not on the connection's GitLab",
            ),
        ] {
            let u = parse_http_like(raw, &["http", "https"]).unwrap();
            let r = gitlab_path(&u, &c, raw).unwrap_err();
            assert_eq!(r.reason, Reason::ForeignHost, "{raw}");
            assert!(r.message.contains(frag), "{raw}: {}", r.message);
        }
    }

    #[test]
    fn registry_refs_table() {
        let c = conn();
        let ok: &[(&str, &str, &str)] = &[
            (
                "oci://registry.example.com/acme/app",
                "registry.example.com",
                "acme/app",
            ),
            (
                "oci://Registry.Example.com/acme/app/img",
                "Registry.Example.com",
                "acme/app/img",
            ),
            (
                "oci://registry.example.com:443/acme/app",
                "registry.example.com:443",
                "acme/app",
            ),
        ];
        for (raw, auth, path) in ok {
            let r = parse_oci_url(raw, &c).unwrap();
            assert_eq!((r.authority.as_str(), r.path.as_str()), (*auth, *path), "{raw}");
        }
        let bad: &[(&str, Reason, &str)] = &[
            (
                "oci://registry.example.com/acme/app..x",
                Reason::InvalidUrl,
                "lower case",
            ),
            (
                "oci://registry.example.com/acme/-app",
                Reason::InvalidUrl,
                "lower case",
            ),
            (
                "oci://ghcr.io/acme/app",
                Reason::ForeignHost,
                "registry registry.example.com",
            ),
            (
                "oci://registry.example.com:5050/acme/app",
                Reason::ForeignHost,
                "not on the connection's registry",
            ),
            (
                "oci://gitlab.example.com/acme/app",
                Reason::ForeignHost,
                "registry",
            ),
            (
                "oci://registry.example.com/acme/app:1.0",
                Reason::InvalidUrl,
                "tag or digest",
            ),
            (
                "oci://registry.example.com/acme/app@sha256:abc",
                Reason::InvalidUrl,
                "tag or digest",
            ),
            (
                "oci://registry.example.com/Acme/app",
                Reason::InvalidUrl,
                "lower case",
            ),
            (
                "oci://registry.example.com/acme",
                Reason::InvalidUrl,
                "group/project",
            ),
            (
                "oci://registry.example.com/acme%2Fapp/x",
                Reason::InvalidUrl,
                "percent-encoding",
            ),
            (
                "oci://u:p@registry.example.com/acme/app",
                Reason::InvalidUrl,
                "user-info",
            ),
            (
                "https://registry.example.com/acme/app",
                Reason::InvalidUrl,
                "expected oci",
            ),
        ];
        for (raw, reason, frag) in bad {
            let r = parse_oci_url(raw, &c).unwrap_err();
            assert_eq!(r.reason, *reason, "{raw}: {}", r.message);
            assert!(r.message.contains(frag), "{raw}: {}", r.message);
        }
        let none = ConnectionFacts::new("https://gitlab.example.com", None).unwrap();
        assert_eq!(
            parse_oci_url("oci://registry.example.com/a/b", &none)
                .unwrap_err()
                .reason,
            Reason::MissingRegistryHost
        );
    }

    #[test]
    fn registry_hosts_have_one_normal_form() {
        for (a, b, same) in [
            ("registry.example.com", "registry.example.com:443", true),
            ("Registry.Example.com:443", "registry.example.com", true),
            ("registry.example.com:5050", "registry.example.com", false),
            ("registry.example.com:5050", "REGISTRY.example.com:5050", true),
            ("127.0.0.1:5000", "127.0.0.1:5000", true),
            ("registry.example.com", "gitlab.example.com", false),
            ("https://registry.example.com", "registry.example.com", false),
        ] {
            assert_eq!(same_registry(a, b), same, "{a} vs {b}");
        }
        assert_eq!(
            normalise_registry_host("Registry.Example.com:443").as_deref(),
            Ok("registry.example.com")
        );
        assert!(normalise_registry_host("").is_err());
    }

    #[test]
    fn repository_components_table() {
        let table = [
            ("app", true),
            ("my-app", true),
            ("my--app", true),
            ("a.b", true),
            ("a_b", true),
            ("a__b", true),
            ("a___b", false),
            ("a..b", false),
            ("a._b", false),
            ("-a", false),
            ("a-", false),
            ("A", false),
            ("", false),
            ("a.", false),
        ];
        for (c, ok) in table {
            assert_eq!(is_repository_component(c), ok, "{c:?}");
        }
    }

    #[test]
    fn image_refs_table() {
        let c = conn();
        let r = parse_image("registry.example.com/acme/app/web", &c).unwrap();
        assert_eq!(
            (r.authority.as_str(), r.path.as_str()),
            ("registry.example.com", "acme/app/web")
        );
        let bad: &[(&str, Reason, &str)] = &[
            ("nginx", Reason::ForeignHost, "Docker Hub"),
            ("library/nginx", Reason::ForeignHost, "Docker Hub"),
            ("ghcr.io/stefanprodan/podinfo", Reason::ForeignHost, "registry"),
            (
                "https://registry.example.com/acme/app",
                Reason::InvalidUrl,
                "URL scheme",
            ),
            ("registry.example.com/acme/app:v1", Reason::InvalidUrl, "tag"),
            ("registry.example.com/acme/../app", Reason::InvalidUrl, "'..'"),
        ];
        for (raw, reason, frag) in bad {
            let r = parse_image(raw, &c).unwrap_err();
            assert_eq!(r.reason, *reason, "{raw}: {}", r.message);
            assert!(r.message.contains(frag), "{raw}: {}", r.message);
        }
    }
}
