//! HTTP Basic credentials as the fronts read them (git, `/jwt/auth`, Helm), and the shared
//! authentication step against the [`AccessOracle`].

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::HeaderMap;
use http::header::AUTHORIZATION;

use crate::gitlab::access::{AccessOracle, CredentialError, Principal};

/// Username and password from an `Authorization: Basic` header. No `Debug`: the password is a token.
pub(crate) struct BasicCredentials {
    /// Login (not checked for access tokens, but must be non-empty).
    pub username: String,
    /// The token.
    pub password: String,
}

/// What the request's `Authorization` header holds, as far as HTTP Basic is concerned.
pub(crate) enum BasicAuth {
    /// No `Authorization` header, or another scheme (Bearer, …): anonymous for these fronts.
    Absent,
    /// A `Basic` header that does not decode to `user:password`.
    Malformed,
    /// Decoded credentials.
    Present(BasicCredentials),
}

/// Reads HTTP Basic credentials from the request headers.
pub(crate) fn parse_basic(headers: &HeaderMap) -> BasicAuth {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return BasicAuth::Absent;
    };
    let Ok(value) = value.to_str() else {
        return BasicAuth::Malformed;
    };
    let mut parts = value.trim().splitn(2, ' ');
    let scheme = parts.next().unwrap_or_default();
    if !scheme.eq_ignore_ascii_case("basic") {
        return BasicAuth::Absent;
    }
    let encoded = parts.next().unwrap_or_default().trim();
    let Ok(decoded) = STANDARD.decode(encoded) else {
        return BasicAuth::Malformed;
    };
    let Ok(decoded) = String::from_utf8(decoded) else {
        return BasicAuth::Malformed;
    };
    match decoded.split_once(':') {
        Some((user, pass)) => BasicAuth::Present(BasicCredentials {
            username: user.to_owned(),
            password: pass.to_owned(),
        }),
        None => BasicAuth::Malformed,
    }
}

/// Outcome of authenticating a request: anonymous, a principal, or refused credentials.
pub(crate) enum Authn {
    /// No credentials were sent.
    Anonymous,
    /// The credentials belong to this principal.
    User(Principal),
    /// Credentials were sent and refused (malformed, empty, unknown, expired or revoked).
    Refused(CredentialError),
}

/// Authenticates the request's Basic credentials through the oracle. GitLab refuses an empty
/// username or password outright.
pub(crate) fn authenticate(oracle: &dyn AccessOracle, headers: &HeaderMap) -> Authn {
    match parse_basic(headers) {
        BasicAuth::Absent => Authn::Anonymous,
        BasicAuth::Malformed => Authn::Refused(CredentialError::Unknown),
        BasicAuth::Present(c) if c.username.is_empty() || c.password.is_empty() => {
            Authn::Refused(CredentialError::Unknown)
        }
        BasicAuth::Present(c) => match oracle.authenticate(&c.username, &c.password) {
            Ok(p) => Authn::User(p),
            Err(e) => Authn::Refused(e),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn parses_basic_headers_by_table() {
        // (header, expected: None = absent, Some(None) = malformed, Some(Some((u, p))))
        type Case<'a> = (&'a str, Option<Option<(&'a str, &'a str)>>);
        let cases: &[Case] = &[
            ("Basic dXNlcjpwYXNz", Some(Some(("user", "pass")))),
            ("basic   dXNlcjpwOmFzcw==", Some(Some(("user", "p:ass")))),
            ("Basic OnRvaw==", Some(Some(("", "tok")))),
            ("Basic dXNlcg==", Some(None)),
            ("Basic !!!", Some(None)),
            ("Bearer abc", None),
        ];
        for (value, want) in cases {
            let got = match parse_basic(&headers(value)) {
                BasicAuth::Absent => None,
                BasicAuth::Malformed => Some(None),
                BasicAuth::Present(c) => Some(Some((c.username, c.password))),
            };
            let want = want.map(|o| o.map(|(u, p)| (u.to_owned(), p.to_owned())));
            assert_eq!(got, want, "{value}");
        }
        assert!(matches!(parse_basic(&HeaderMap::new()), BasicAuth::Absent));
    }
}
