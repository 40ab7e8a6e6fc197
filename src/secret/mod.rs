//! The Secret written for a token, in exactly the shape Flux reads (DESIGN §3;
//! `reference/flux-secrets.md` §1–§4, §9, §14). Pure builders: no I/O.
//!
//! - `basic-auth`: `Opaque`, keys `username`, `password` (GitRepository https, HelmRepository HTTP).
//! - `docker-config`: `kubernetes.io/dockerconfigjson`, key `.dockerconfigjson` with
//!   `{"auths":{"<bare host[:port]>":{"username","password","auth"}}}` (OCI, ImageRepository, Helm oci).
//! - `token`: `Opaque`, key `token` (notification Provider `gitlab`).
//! - `ssh`: `Opaque`, keys `identity` (OpenSSH private key), `identity.pub`, `known_hosts`
//!   (GitRepository over `ssh://` with a deploy key).
//!
//! Ownership: the Secret has one ownerReference, to its `GitLabToken`, with `controller: true`
//! (so `Controller::owns` maps Secret events back, and garbage collection removes the Secret after
//! the `GitLabToken`'s finalizer has revoked the token) and `blockOwnerDeletion: false` (no
//! `gitlabtokens/finalizers` RBAC needed). Sources are never owners of the Secret, so consumer
//! churn does not delete it.
//!
//! Token handling: the token is exposed only while the data bytes are built. The returned
//! [`BuiltSecret`] redacts its Debug output; the inner k8s `Secret` does not (`ByteString`'s Debug
//! prints the bytes), so never `{:?}` the value of [`BuiltSecret::into_secret`].

use std::{collections::BTreeMap, fmt};

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use k8s_openapi::{
    ByteString,
    api::core::v1::Secret,
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference},
};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::crd::{API_GROUP, API_VERSION, ArgoCdRepository, SecretFormat};

pub mod argocd;
pub mod ssh;

/// Label every operator-written Secret carries: `app.kubernetes.io/managed-by`.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY_VALUE: &str = "gitlab-token-operator";
/// Label naming the `GitLabToken` a Secret belongs to.
pub const TOKEN_LABEL: &str = "gitlabtokens.io/token";
/// Annotation with the GitLab token id.
pub const TOKEN_ID_ANNOTATION: &str = "gitlabtokens.io/token-id";
/// Annotation with the expiry date (`YYYY-MM-DD`; the token dies at 00:00 UTC that day).
pub const EXPIRES_AT_ANNOTATION: &str = "gitlabtokens.io/expires-at";
/// Annotation with the planned renewal time (RFC 3339, UTC).
pub const RENEWAL_TIME_ANNOTATION: &str = "gitlabtokens.io/renewal-time";

/// Secret type for Opaque Secrets.
pub const TYPE_OPAQUE: &str = "Opaque";
/// Secret type registry clients require.
pub const TYPE_DOCKER_CONFIG_JSON: &str = "kubernetes.io/dockerconfigjson";
/// Key of the docker config in a `kubernetes.io/dockerconfigjson` Secret.
pub const DOCKER_CONFIG_KEY: &str = ".dockerconfigjson";

/// Why a Secret could not be built. Never carries token material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretBuildError {
    /// `docker-config` needs a registry host and none was given.
    #[error(
        "secret format docker-config needs a registry host, but neither the GitLabToken nor the connection names one"
    )]
    MissingRegistryHost,
    /// The registry host is not a bare `host[:port]`.
    #[error("registry host {0:?} is not a bare host[:port] (no scheme, path or credentials)")]
    InvalidRegistryHost(String),
    /// The bot username is empty (git and registries need a non-empty username).
    #[error("the token's bot username is empty")]
    EmptyUsername,
    /// GitLab returned an empty token.
    #[error("the token value is empty")]
    EmptyToken,
    /// `argocd-repository` needs `spec.argoCD` and the GitLabToken has none.
    #[error("secret format argocd-repository needs spec.argoCD (url, type, project)")]
    MissingArgoCdRepository,
    /// The owner has no name, namespace or uid yet (not read from the API server).
    #[error("the GitLabToken has no {0} (build the Secret from an object read from the API server)")]
    OwnerIncomplete(&'static str),
    /// `ssh` needs `known_hosts` (the connection's pinned host keys) and none was given.
    #[error("secret format ssh needs known_hosts, but the connection pins no SSH host keys")]
    MissingKnownHosts,
    /// The SSH key material is unusable.
    #[error("{0}")]
    Ssh(#[from] ssh::SshError),
}

/// The `GitLabToken` that owns the Secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner<'a> {
    /// Its name (also the value of [`TOKEN_LABEL`]).
    pub name: &'a str,
    /// Its namespace (the Secret's namespace).
    pub namespace: &'a str,
    /// Its uid.
    pub uid: &'a str,
}

/// Everything a Secret is built from besides the token value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretParams<'a> {
    /// The owning `GitLabToken`.
    pub owner: Owner<'a>,
    /// Secret name.
    pub name: &'a str,
    /// Shape of the Secret.
    pub format: SecretFormat,
    /// Registry host key for `docker-config` (the GitLabToken's, else the connection's).
    pub registry_host: Option<&'a str>,
    /// The token's bot username.
    pub username: &'a str,
    /// GitLab token id.
    pub token_id: u64,
    /// Expiry date.
    pub expires_at: NaiveDate,
    /// Planned renewal time.
    pub renewal_time: DateTime<Utc>,
    /// For `argocd-repository`: the repository the Secret describes.
    pub argo_cd: Option<&'a ArgoCdRepository>,
    /// For `ssh`: the `known_hosts` content (the connection's pinned host keys).
    pub known_hosts: Option<&'a str>,
}

/// A built Secret whose Debug output shows metadata and key names only.
#[derive(Clone, PartialEq)]
pub struct BuiltSecret(Secret);

impl BuiltSecret {
    /// The Secret to apply. Its Debug output prints the data bytes: do not log it.
    pub fn into_secret(self) -> Secret {
        self.0
    }

    /// Read access to the Secret (same caution as [`BuiltSecret::into_secret`]).
    pub fn secret(&self) -> &Secret {
        &self.0
    }

    /// The digest of the data, keyed by the owner uid (see [`secret_digest`]).
    pub fn digest(&self, owner_uid: &str) -> String {
        secret_digest(&self.0, owner_uid)
    }
}

impl fmt::Debug for BuiltSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<&String> = self
            .0
            .data
            .as_ref()
            .map(|d| d.keys().collect())
            .unwrap_or_default();
        f.debug_struct("BuiltSecret")
            .field("name", &self.0.metadata.name)
            .field("namespace", &self.0.metadata.namespace)
            .field("type", &self.0.type_)
            .field("labels", &self.0.metadata.labels)
            .field("annotations", &self.0.metadata.annotations)
            .field("data_keys", &keys)
            .finish_non_exhaustive()
    }
}

/// Whether `host` is a bare `host[:port]` as registry clients look it up.
pub fn is_bare_registry_host(host: &str) -> bool {
    let (name, port) = match host.rsplit_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (host, None),
    };
    let name_ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') && !l.starts_with('-')
        });
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.parse::<u16>().is_ok_and(|n| n > 0));
    name_ok && port_ok
}

/// Builds the Secret for a token in the shape its consumers read.
pub fn build_secret(
    params: &SecretParams<'_>,
    token: &SecretString,
) -> Result<BuiltSecret, SecretBuildError> {
    let o = params.owner;
    for (what, v) in [("name", o.name), ("namespace", o.namespace), ("uid", o.uid)] {
        if v.is_empty() {
            return Err(SecretBuildError::OwnerIncomplete(what));
        }
    }
    if params.username.is_empty() {
        return Err(SecretBuildError::EmptyUsername);
    }
    if token.expose_secret().is_empty() {
        return Err(SecretBuildError::EmptyToken);
    }
    let (type_, data) = match params.format {
        SecretFormat::BasicAuth => (
            TYPE_OPAQUE,
            BTreeMap::from([
                (
                    "username".to_string(),
                    ByteString(params.username.as_bytes().to_vec()),
                ),
                (
                    "password".to_string(),
                    ByteString(token.expose_secret().as_bytes().to_vec()),
                ),
            ]),
        ),
        SecretFormat::Ssh => {
            let known_hosts = params
                .known_hosts
                .filter(|k| !k.trim().is_empty())
                .ok_or(SecretBuildError::MissingKnownHosts)?;
            let public = ssh::public_of(token)?;
            (
                TYPE_OPAQUE,
                BTreeMap::from([
                    (
                        "identity".to_string(),
                        ByteString(token.expose_secret().as_bytes().to_vec()),
                    ),
                    ("identity.pub".to_string(), ByteString(public.into_bytes())),
                    (
                        "known_hosts".to_string(),
                        ByteString(known_hosts.as_bytes().to_vec()),
                    ),
                ]),
            )
        }
        SecretFormat::Token => (
            TYPE_OPAQUE,
            BTreeMap::from([(
                "token".to_string(),
                ByteString(token.expose_secret().as_bytes().to_vec()),
            )]),
        ),
        SecretFormat::ArgoCdRepository => {
            let repo = params.argo_cd.ok_or(SecretBuildError::MissingArgoCdRepository)?;
            (TYPE_OPAQUE, argocd::repository_data(repo, params.username, token))
        }
        SecretFormat::ArgoCdRepoCreds => {
            let repo = params.argo_cd.ok_or(SecretBuildError::MissingArgoCdRepository)?;
            (TYPE_OPAQUE, argocd::repo_creds_data(repo, params.username, token))
        }
        SecretFormat::DockerConfig => {
            let host = params
                .registry_host
                .ok_or(SecretBuildError::MissingRegistryHost)?;
            if !is_bare_registry_host(host) {
                return Err(SecretBuildError::InvalidRegistryHost(host.to_string()));
            }
            let auth = B64.encode(format!("{}:{}", params.username, token.expose_secret()));
            let config = serde_json::json!({
                "auths": { host: {
                    "username": params.username,
                    "password": token.expose_secret(),
                    "auth": auth,
                }}
            });
            (
                TYPE_DOCKER_CONFIG_JSON,
                BTreeMap::from([(
                    DOCKER_CONFIG_KEY.to_string(),
                    ByteString(config.to_string().into_bytes()),
                )]),
            )
        }
    };
    let mut labels = BTreeMap::from([
        (MANAGED_BY_LABEL.to_string(), MANAGED_BY_VALUE.to_string()),
        (TOKEN_LABEL.to_string(), o.name.to_string()),
    ]);
    if params.format == SecretFormat::ArgoCdRepository {
        labels.insert(
            argocd::SECRET_TYPE_LABEL.to_string(),
            argocd::SECRET_TYPE_REPOSITORY.to_string(),
        );
    }
    if params.format == SecretFormat::ArgoCdRepoCreds {
        labels.insert(
            argocd::SECRET_TYPE_LABEL.to_string(),
            argocd::SECRET_TYPE_REPO_CREDS.to_string(),
        );
    }
    let annotations = BTreeMap::from([
        (TOKEN_ID_ANNOTATION.to_string(), params.token_id.to_string()),
        (
            EXPIRES_AT_ANNOTATION.to_string(),
            params.expires_at.format("%Y-%m-%d").to_string(),
        ),
        (
            RENEWAL_TIME_ANNOTATION.to_string(),
            params.renewal_time.to_rfc3339_opts(SecondsFormat::Secs, true),
        ),
    ]);
    Ok(BuiltSecret(Secret {
        metadata: ObjectMeta {
            name: Some(params.name.to_string()),
            namespace: Some(o.namespace.to_string()),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: Some(vec![owner_reference(o)]),
            ..ObjectMeta::default()
        },
        type_: Some(type_.to_string()),
        data: Some(data),
        immutable: None,
        string_data: None,
    }))
}

/// The ownerReference a managed Secret carries to its `GitLabToken`.
pub fn owner_reference(owner: Owner<'_>) -> OwnerReference {
    OwnerReference {
        api_version: format!("{API_GROUP}/{API_VERSION}"),
        kind: "GitLabToken".to_string(),
        name: owner.name.to_string(),
        uid: owner.uid.to_string(),
        controller: Some(true),
        block_owner_deletion: Some(false),
    }
}

/// The data keys the operator writes (every format's): only these, and the type, are the
/// operator's; keys other writers add (`ca.crt`, `known_hosts`, …) are kept by server-side apply
/// and are never an edit.
pub const OPERATOR_KEYS: [&str; 4] = ["username", "password", "token", DOCKER_CONFIG_KEY];

/// HMAC-SHA256 over the Secret's type and the operator's data keys ([`OPERATOR_KEYS`]), keyed by
/// the `GitLabToken` uid, as lowercase hex.
///
/// Stored in status to notice edits; a token has far too much entropy for the digest to be
/// reversed, and the key makes equal tokens in different objects look unrelated.
pub fn secret_digest(secret: &Secret, owner_uid: &str) -> String {
    let mut msg = Vec::new();
    let mut put = |bytes: &[u8]| {
        msg.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
        msg.extend_from_slice(bytes);
    };
    put(secret.type_.as_deref().unwrap_or(TYPE_OPAQUE).as_bytes());
    // An Argo CD repository Secret's url, type, project and name are the operator's too.
    let argocd = secret
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(argocd::SECRET_TYPE_LABEL))
        .is_some();
    let ours = |k: &String| {
        OPERATOR_KEYS.contains(&k.as_str()) || (argocd && argocd::ARGOCD_KEYS.contains(&k.as_str()))
    };
    for (k, v) in secret.data.iter().flatten().filter(|(k, _)| ours(k)) {
        put(k.as_bytes());
        put(&v.0);
    }
    for (k, v) in secret.string_data.iter().flatten().filter(|(k, _)| ours(k)) {
        put(k.as_bytes());
        put(v.as_bytes());
    }
    hex(&hmac_sha256(owner_uid.as_bytes(), &msg))
}

fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let inner = Sha256::new()
        .chain_update(k.map(|b| b ^ 0x36))
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(k.map(|b| b ^ 0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether a Secret carries the operator's ownership label (the shim never takes over others).
pub fn secret_is_owned(meta: &ObjectMeta) -> bool {
    meta.labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_BY_LABEL))
        .is_some_and(|v| v == MANAGED_BY_VALUE)
}

/// Whether a Secret is owned by the operator on behalf of this `GitLabToken`.
pub fn secret_is_owned_by(meta: &ObjectMeta, token_name: &str) -> bool {
    secret_is_owned(meta)
        && meta
            .labels
            .as_ref()
            .and_then(|l| l.get(TOKEN_LABEL))
            .is_some_and(|v| v == token_name)
}

#[cfg(test)]
mod tests;
