//! How Flux reads credentials from a Secret, per consumer kind (flux-secrets.md §1–§4, §7, §14).
//! Pure: the caller fetches the Secret (live, as source-controller does: no cache).

use std::collections::BTreeMap;

use base64::Engine;
use k8s_openapi::api::core::v1::Secret;

/// Credentials a fetch presents.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// Nothing usable: an anonymous attempt.
    Anonymous,
    /// HTTP Basic.
    Basic {
        /// User name.
        username: String,
        /// Password or token.
        password: String,
    },
    /// `Authorization: Bearer` (GitRepository `bearerToken`).
    Bearer(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Anonymous => f.write_str("Anonymous"),
            Self::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
            Self::Bearer(_) => f.write_str("Bearer(<redacted>)"),
        }
    }
}

const DOCKER_CONFIG_JSON: &str = "kubernetes.io/dockerconfigjson";
const DOCKER_CFG: &str = "kubernetes.io/dockercfg";

fn data(secret: &Secret) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (k, v) in secret.data.iter().flatten() {
        out.insert(k.clone(), String::from_utf8_lossy(&v.0).into_owned());
    }
    for (k, v) in secret.string_data.iter().flatten() {
        out.insert(k.clone(), v.clone());
    }
    out
}

/// GitRepository over HTTP(S): `bearerToken` wins; else `username`/`password` (a password
/// without a username is an error); else anonymous.
pub fn git_credentials(secret: &Secret) -> Result<Credentials, String> {
    let d = data(secret);
    if let Some(token) = d.get("bearerToken") {
        return Ok(Credentials::Bearer(token.clone()));
    }
    match (d.get("username"), d.get("password")) {
        (Some(u), p) => Ok(Credentials::Basic {
            username: u.clone(),
            password: p.cloned().unwrap_or_default(),
        }),
        (None, Some(_)) => Err("invalid secret data: 'password' requires 'username' to be set".into()),
        (None, None) => Ok(Credentials::Anonymous),
    }
}

/// HelmRepository (HTTP): `username` and `password`, both or neither, any Secret type.
pub fn helm_http_credentials(secret: &Secret) -> Result<Credentials, String> {
    basic_pair(&data(secret))
}

fn basic_pair(d: &BTreeMap<String, String>) -> Result<Credentials, String> {
    match (d.get("username"), d.get("password")) {
        (Some(u), Some(p)) => Ok(Credentials::Basic {
            username: u.clone(),
            password: p.clone(),
        }),
        (Some(_), None) => Err("malformed basic auth - has 'username' but missing 'password'".into()),
        (None, Some(_)) => Err("malformed basic auth - has 'password' but missing 'username'".into()),
        (None, None) => Ok(Credentials::Anonymous),
    }
}

/// OCIRepository and ImageRepository: only `kubernetes.io/dockerconfigjson` (or legacy
/// dockercfg) Secrets contribute; the `auths` key must be exactly `host/repository` or the host.
/// Anything else silently means anonymous (go-containerregistry k8schain).
pub fn registry_credentials(secret: &Secret, host: &str, repository: &str) -> Credentials {
    let d = data(secret);
    let auths = match secret.type_.as_deref() {
        Some(DOCKER_CONFIG_JSON) => d
            .get(".dockerconfigjson")
            .and_then(|j| serde_json::from_str::<serde_json::Value>(j).ok())
            .and_then(|v| v.get("auths").cloned()),
        Some(DOCKER_CFG) => d.get(".dockercfg").and_then(|j| serde_json::from_str(j).ok()),
        _ => None,
    };
    let Some(auths) = auths else {
        return Credentials::Anonymous;
    };
    let full = format!("{host}/{repository}");
    [full.as_str(), host]
        .iter()
        .find_map(|key| auths.get(*key))
        .and_then(entry_credentials)
        .unwrap_or(Credentials::Anonymous)
}

/// HelmRepository `type: oci`: a dockerconfigjson Secret is looked up by host (normalised, an
/// entry for another host is an error); any other type needs `username` + `password`.
pub fn helm_oci_credentials(secret: &Secret, secret_name: &str, host: &str) -> Result<Credentials, String> {
    let d = data(secret);
    if secret.type_.as_deref() != Some(DOCKER_CONFIG_JSON) {
        return match basic_pair(&d)? {
            Credentials::Anonymous => Ok(Credentials::Anonymous),
            creds => Ok(creds),
        };
    }
    let auths = d
        .get(".dockerconfigjson")
        .and_then(|j| serde_json::from_str::<serde_json::Value>(j).ok())
        .and_then(|v| v.get("auths").cloned())
        .unwrap_or_default();
    let found = auths
        .as_object()
        .into_iter()
        .flatten()
        .find(|(k, _)| normalise_host(k) == host);
    match found.and_then(|(_, v)| entry_credentials(v)) {
        Some(c) => Ok(c),
        None => Err(format!(
            "no auth config for '{host}' in the docker-registry Secret '{secret_name}'"
        )),
    }
}

fn normalise_host(key: &str) -> &str {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    k.split('/').next().unwrap_or(k)
}

fn entry_credentials(entry: &serde_json::Value) -> Option<Credentials> {
    let s = |k: &str| entry.get(k).and_then(|v| v.as_str()).filter(|v| !v.is_empty());
    if let (Some(u), Some(p)) = (s("username"), s("password")) {
        return Some(Credentials::Basic {
            username: u.into(),
            password: p.into(),
        });
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(s("auth")?)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (u, p) = text.split_once(':')?;
    Some(Credentials::Basic {
        username: u.into(),
        password: p.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn secret(type_: Option<&str>, pairs: &[(&str, &str)]) -> Secret {
        Secret {
            type_: type_.map(String::from),
            data: Some(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    fn basic(u: &str, p: &str) -> Credentials {
        Credentials::Basic {
            username: u.into(),
            password: p.into(),
        }
    }

    #[test]
    fn git_reads_keys_not_type() {
        let cases: Vec<(Secret, Result<Credentials, ()>)> = vec![
            (
                secret(Some("Opaque"), &[("username", "bot"), ("password", "t")]),
                Ok(basic("bot", "t")),
            ),
            (
                secret(
                    Some("kubernetes.io/basic-auth"),
                    &[("username", "bot"), ("password", "t")],
                ),
                Ok(basic("bot", "t")),
            ),
            (
                secret(
                    None,
                    &[("bearerToken", "b"), ("username", "u"), ("password", "p")],
                ),
                Ok(Credentials::Bearer("b".into())),
            ),
            (secret(None, &[("password", "t")]), Err(())),
            (secret(None, &[("token", "t")]), Ok(Credentials::Anonymous)),
            (
                secret(
                    Some(DOCKER_CONFIG_JSON),
                    &[(".dockerconfigjson", r#"{"auths":{}}"#)],
                ),
                Ok(Credentials::Anonymous),
            ),
        ];
        for (s, want) in cases {
            assert_eq!(git_credentials(&s).map_err(|_| ()), want, "{s:?}");
        }
    }

    #[test]
    fn helm_http_needs_both_keys() {
        assert_eq!(
            helm_http_credentials(&secret(None, &[("username", "u"), ("password", "p")])),
            Ok(basic("u", "p"))
        );
        assert!(helm_http_credentials(&secret(None, &[("username", "u")])).is_err());
        assert_eq!(
            helm_http_credentials(&secret(None, &[("token", "x")])),
            Ok(Credentials::Anonymous)
        );
    }

    #[test]
    fn registry_needs_dockerconfigjson_type_and_exact_host_key() {
        let auth = base64::engine::general_purpose::STANDARD.encode("bot:tok");
        let json = format!(r#"{{"auths":{{"reg.example:5000":{{"auth":"{auth}"}}}}}}"#);
        let good = secret(Some(DOCKER_CONFIG_JSON), &[(".dockerconfigjson", &json)]);
        assert_eq!(
            registry_credentials(&good, "reg.example:5000", "acme/app"),
            basic("bot", "tok")
        );
        // The port is part of the host.
        assert_eq!(
            registry_credentials(&good, "reg.example", "acme/app"),
            Credentials::Anonymous
        );
        // Same JSON in an Opaque Secret contributes nothing.
        let opaque = secret(Some("Opaque"), &[(".dockerconfigjson", &json)]);
        assert_eq!(
            registry_credentials(&opaque, "reg.example:5000", "acme/app"),
            Credentials::Anonymous
        );
        // A scheme in the key does not match.
        let schemed = format!(r#"{{"auths":{{"https://reg.example:5000":{{"auth":"{auth}"}}}}}}"#);
        let s = secret(Some(DOCKER_CONFIG_JSON), &[(".dockerconfigjson", &schemed)]);
        assert_eq!(
            registry_credentials(&s, "reg.example:5000", "acme/app"),
            Credentials::Anonymous
        );
        // Username/password fields also work, and the full repository key wins.
        let both = r#"{"auths":{"reg.example:5000/acme/app":{"username":"a","password":"b"},"reg.example:5000":{"username":"c","password":"d"}}}"#;
        let s = secret(Some(DOCKER_CONFIG_JSON), &[(".dockerconfigjson", both)]);
        assert_eq!(
            registry_credentials(&s, "reg.example:5000", "acme/app"),
            basic("a", "b")
        );
    }

    #[test]
    fn helm_oci_accepts_docker_config_by_host_or_basic_pair() {
        let json = r#"{"auths":{"https://reg.example:5000":{"username":"a","password":"b"}}}"#;
        let s = secret(Some(DOCKER_CONFIG_JSON), &[(".dockerconfigjson", json)]);
        assert_eq!(
            helm_oci_credentials(&s, "x", "reg.example:5000"),
            Ok(basic("a", "b"))
        );
        assert!(
            helm_oci_credentials(&s, "x", "other:5000")
                .unwrap_err()
                .contains("no auth config for 'other:5000'")
        );
        let pair = secret(Some("Opaque"), &[("username", "u"), ("password", "p")]);
        assert_eq!(
            helm_oci_credentials(&pair, "x", "reg.example:5000"),
            Ok(basic("u", "p"))
        );
    }

    #[test]
    fn debug_never_shows_secrets() {
        let shown = format!(
            "{:?} {:?}",
            basic("bot", "glpat-secret"),
            Credentials::Bearer("glpat-secret".into())
        );
        assert!(!shown.contains("glpat-secret"));
    }
}
