//! `GitLabConnection` (cluster-scoped): one GitLab instance and the operator's own credential.

use chrono::{DateTime, NaiveDate, Utc};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Condition, Days};

/// How the operator reaches one GitLab instance and which credential it uses there.
// kube's `printcolumn(...)` repeats `type_ = "string"` by design; the lint mistakes it for a duplicate.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "gitlabtokens.io",
    version = "v1alpha1",
    kind = "GitLabConnection",
    status = "GitLabConnectionStatus",
    shortname = "glconn",
    category = "gitlab",
    doc = "A GitLab instance and the operator's own GitLab credential for it.",
    printcolumn(name = "URL", type_ = "string", json_path = ".spec.url"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(name = "User", type_ = "string", json_path = ".status.user.username"),
    printcolumn(name = "Expires", type_ = "string", json_path = ".status.tokenExpiresAt"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(name = "Message", type_ = "string", json_path = ".status.summary")
)]
#[serde(rename_all = "camelCase")]
pub struct GitLabConnectionSpec {
    /// Base URL of GitLab, e.g. `https://gitlab.example.com` (a relative URL root is allowed).
    #[schemars(regex(pattern = r"^https?://[^\s/?#@]+(/[^\s?#@]*)?$"))]
    pub url: String,
    /// Container registry host with optional port, without scheme, e.g. `registry.example.com`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$"))]
    pub registry_host: Option<String>,
    /// PEM bundle of CAs to trust for GitLab's TLS certificate, in addition to none other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<String>,
    /// The operator's own GitLab token.
    pub credentials: ConnectionCredentials,
    /// Client-side rate limit for calls to this GitLab.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// Prefix of every token name the operator creates (`<prefix>-<cluster>-<uid>`).
    #[serde(default = "default_token_name_prefix")]
    #[schemars(regex(pattern = r"^[a-z0-9]([a-z0-9-]{0,18}[a-z0-9])?$"))]
    pub token_name_prefix: String,
    /// Marker of this cluster in token names; defaults to the operator's `--cluster-name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$"))]
    pub cluster_name: Option<String>,
    /// Policies kept in a GitLab repository (issue 11), applied in addition to the cluster's
    /// `GitLabTokenPolicy` objects, bounded by `policyFile.ceiling`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_file: Option<super::PolicyFile>,
    /// Git over SSH endpoint `host` or `host:port` (default: the URL's host, port 22), written as
    /// the host of every deploy key Secret's `known_hosts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$"))]
    pub ssh_host: Option<String>,
    /// The SSH host keys of GitLab, pinned (`ssh-ed25519 AAAA…`, as `ssh-keyscan` prints them
    /// after the host; check them against the instance's published fingerprints). Deploy key
    /// Secrets are refused (`SSHHostKeysMissing`) while none is pinned: never trust on first use.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ssh_host_keys: Vec<String>,
    /// `FetchAndPin`: while `sshHostKeys` is empty, the connection check fetches GitLab's SSH host
    /// keys once over SSH and pins them in `status.sshHostKeys` (shown with SHA256 fingerprints,
    /// with an event); later checks compare and refuse a changed key (`SSHHostKeyChanged`), never
    /// re-pinning silently. Default `Pinned`: `sshHostKeys` only.
    #[serde(default, skip_serializing_if = "SshHostKeyPolicy::is_default")]
    pub ssh_host_key_policy: SshHostKeyPolicy,
}

/// Where a connection's SSH host keys come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SshHostKeyPolicy {
    /// Only the admin's `spec.sshHostKeys` (the default).
    #[default]
    Pinned,
    /// Fetched once at the connection check and pinned in status (an explicit opt-in).
    FetchAndPin,
}

impl SshHostKeyPolicy {
    /// Whether this is the default (kept out of serialized specs).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// SSH host keys the connection check fetched and pinned (`spec.sshHostKeyPolicy: FetchAndPin`).
/// An admin clears the pin by removing `status.sshHostKeys` (the next check fetches again).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PinnedHostKeys {
    /// The SSH endpoint they were fetched from (`host` or `host:port`).
    pub host: String,
    /// The pinned keys, `<algorithm> <base64>`.
    pub keys: Vec<String>,
    /// Their SHA256 fingerprints (`SHA256:…`, as `ssh-keygen -lf` prints them), in key order.
    pub fingerprints: Vec<String>,
    /// When they were pinned.
    pub pinned_at: DateTime<Utc>,
    /// Set while the server presents a key that is not pinned (or the SSH endpoint moved): deploy
    /// key Secrets are refused with `SSHHostKeyChanged` until an admin clears or fixes the pin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed: Option<String>,
}

fn default_token_name_prefix() -> String {
    "gto".to_string()
}

/// Where the operator's own token lives and whether it rotates itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionCredentials {
    /// Secret holding the token; it must live in the operator's namespace.
    pub secret_ref: SecretKeyReference,
    /// Rotate the operator's own token before it expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_rotation: Option<SelfRotation>,
}

/// A key in a Secret in a named namespace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyReference {
    /// Namespace of the Secret (the operator's namespace).
    #[schemars(length(min = 1, max = 63))]
    pub namespace: String,
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key in the Secret's data.
    #[serde(default = "default_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

fn default_key() -> String {
    "token".to_string()
}

/// Self-rotation of the operator's own token (DESIGN §6.8).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SelfRotation {
    /// Turn self-rotation on.
    #[serde(default)]
    pub enabled: bool,
    /// Lifetime of each new token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifetime: Option<Days>,
    /// Rotate this long before expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_before: Option<Days>,
}

/// A token bucket: sustained requests per second and the burst above it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateLimit {
    /// Sustained rate.
    #[schemars(range(min = 1, max = 10000))]
    pub requests_per_second: u32,
    /// Requests allowed at once above the sustained rate.
    #[schemars(range(min = 1, max = 10000))]
    pub burst: u32,
}

/// What the operator knows about the connection.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitLabConnectionStatus {
    /// `Ready` and its reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The `Ready` message's first clause, at most 60 characters (the `Message` print column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// Generation the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The GitLab user the operator acts as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<GitLabUserRef>,
    /// Scopes of the operator's token.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// Expiry date of the operator's token (it dies at 00:00 UTC that day).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_expires_at: Option<NaiveDate>,
    /// GitLab's version string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gitlab_version: Option<String>,
    /// When the operator's own token was last rotated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotation_time: Option<DateTime<Utc>>,
    /// The GitLab-kept policy file: commit, validity, problems, what is in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_file: Option<super::PolicyFileStatus>,
    /// Which groups and projects the operator's GitLab credential reaches, at what level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reach: Option<super::OperatorReach>,
    /// SSH host keys fetched and pinned by the connection check (`sshHostKeyPolicy: FetchAndPin`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_host_keys: Option<PinnedHostKeys>,
}

/// A GitLab user by id and name.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitLabUserRef {
    /// Numeric user id.
    pub id: u64,
    /// Username.
    pub username: String,
}
