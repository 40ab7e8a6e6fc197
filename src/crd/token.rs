//! `GitLabToken` (namespaced): one GitLab project access token and the Secret it lives in.

use chrono::{DateTime, NaiveDate, Utc};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{AccessLevel, Condition, CredentialKind, Days, Scope, SecretFormat};

/// A project access token the operator keeps alive in a Secret.
// kube's `printcolumn(...)` repeats `type_ = "string"` by design; the lint mistakes it for a duplicate.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "gitlabtokens.io",
    version = "v1alpha1",
    kind = "GitLabToken",
    namespaced,
    status = "GitLabTokenStatus",
    shortname = "gltoken",
    category = "gitlab",
    doc = "A GitLab project access token kept alive in a Secret: issued, renewed and revoked by the operator.",
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
    printcolumn(name = "Project", type_ = "string", json_path = ".status.project.path"),
    printcolumn(name = "Expires", type_ = "string", json_path = ".status.current.expiresAt"),
    printcolumn(name = "Renewal", type_ = "string", json_path = ".status.renewalTime"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(name = "Message", type_ = "string", json_path = ".status.summary")
)]
#[serde(rename_all = "camelCase")]
pub struct GitLabTokenSpec {
    /// The connection to use; absent means the only connection, else the one of the policy that allows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_ref: Option<ObjectName>,
    /// GitLab project path (`group/sub/project`) or numeric id.
    #[schemars(length(min = 1, max = 1024))]
    pub project: String,
    /// Scopes of the token.
    #[schemars(length(min = 1))]
    pub scopes: Vec<Scope>,
    /// Role of the token's bot user.
    #[serde(default = "default_access_level")]
    pub access_level: AccessLevel,
    /// Lifetime of each token; absent means the policy default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifetime: Option<Days>,
    /// Renew this long before expiry; absent means the policy default or one third of the lifetime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_before: Option<Days>,
    /// The Secret to write.
    pub secret: SecretTarget,
    /// Flux sources to nudge after rotation (same namespace).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub consumers: Vec<ConsumerRef>,
    /// What happens to the GitLab token when this object is deleted.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// For `secret.format: argocd-repository`: the Argo CD repository the Secret describes.
    #[serde(default, rename = "argoCD", skip_serializing_if = "Option::is_none")]
    pub argo_cd: Option<ArgoCdRepository>,
    /// Which kind of GitLab credential to keep (default `ProjectAccessToken`).
    #[serde(default, skip_serializing_if = "CredentialKind::is_default")]
    pub kind: CredentialKind,
    /// Group path or id the credential lives on: required for `GroupAccessToken`, optional for
    /// `DeployToken` (a group deploy token), refused for the other kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub group: Option<String>,
}

/// The Argo CD repository an `argocd-repository` Secret describes (`reference/argocd-secrets.md` §2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArgoCdRepository {
    /// The repository URL written to the Secret's `url` key (what Argo CD clones or pulls).
    #[schemars(length(min = 1, max = 2048))]
    pub url: String,
    /// The Secret's `type` key.
    #[serde(rename = "type", default)]
    pub repo_type: ArgoCdRepoType,
    /// The AppProject the Secret is scoped to (its `project` key): only that project's Applications use it.
    #[schemars(length(min = 1, max = 253))]
    pub project: String,
    /// Namespaces of the Applications served (policies select the request by each of them and
    /// by `project`); empty means Argo CD's own namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub application_namespaces: Vec<String>,
}

/// Argo CD's repository `type`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ArgoCdRepoType {
    /// Git over HTTPS.
    #[default]
    Git,
    /// Helm chart repository over HTTP(S) (GitLab's package registry).
    Helm,
    /// OCI registry (`oci://` URL).
    Oci,
}

impl ArgoCdRepoType {
    /// The value of the Secret's `type` key.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Git => "git",
            Self::Helm => "helm",
            Self::Oci => "oci",
        }
    }
}

fn default_access_level() -> AccessLevel {
    AccessLevel::Reporter
}

/// A reference to a cluster-scoped object by name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ObjectName {
    /// Name of the object.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// The Secret a token is written to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretTarget {
    /// Secret name in the token's namespace.
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"))]
    pub name: String,
    /// Keys and type of the Secret.
    pub format: SecretFormat,
    /// Registry host for `docker-config`; defaults to the connection's registry host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$"))]
    pub registry_host: Option<String>,
}

/// A Flux source in the token's namespace.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerRef {
    /// `group/version` of the source.
    pub api_version: String,
    /// Kind of the source.
    pub kind: String,
    /// Name of the source.
    pub name: String,
    /// Namespace of the consumer when not the token's (Argo CD Applications in other namespaces).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// What deletion does to the GitLab token.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DeletionPolicy {
    /// Revoke current and previous tokens in GitLab.
    #[default]
    Revoke,
    /// Leave them to expire.
    Retain,
}

/// Where the token stands. Never holds the token value.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitLabTokenStatus {
    /// `Ready`, `Issuing`, `Denied`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The `Ready` message's first clause, at most 60 characters (the `Message` print column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// Generation the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The policy that allowed the token (or came closest when denied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// The connection in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<String>,
    /// The project as GitLab names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<ResolvedProject>,
    /// The token in the Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<CurrentToken>,
    /// The token being retired by an `Overlap` rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<PreviousToken>,
    /// Write-ahead record of a GitLab call in flight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<PendingIssue>,
    /// When the token will be renewed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewal_time: Option<DateTime<Utc>>,
    /// The last issued tokens, newest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<HistoryEntry>,
    /// Tokens being revoked, kept until GitLab confirms each one dead (revoked, expired or 404).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revoking: Vec<RevokingToken>,
    /// The `gitlabtokens.io/renew-requested-at` value last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_renew_request: Option<String>,
}

/// A project as GitLab resolved it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedProject {
    /// Numeric id.
    pub id: u64,
    /// Canonical `path_with_namespace`.
    pub path: String,
}

/// Alias kept for readability where a project is referenced rather than resolved.
pub type ProjectRef = ResolvedProject;

/// The live token.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CurrentToken {
    /// GitLab token id (changes on every rotation).
    pub token_id: u64,
    /// Kind of credential (absent: `ProjectAccessToken`), so it is revoked at the right endpoint.
    #[serde(default, skip_serializing_if = "CredentialKind::is_default")]
    pub kind: CredentialKind,
    /// GitLab group id it lives on, for group-level credentials (then revoked there, not on the project).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<u64>,
    /// Connection that minted it (where it must be revoked); absent only in records written before the ledger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<String>,
    /// GitLab project id it belongs to (where it must be revoked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<u64>,
    /// Token name in GitLab (`<prefix>-<cluster>-<uid>`).
    pub name: String,
    /// Username written to the Secret (`project_<id>_bot`; GitLab ignores it for access tokens).
    pub bot_user: String,
    /// Bot user id (kept across in-place rotations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bot_user_id: Option<u64>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Expiry date: the token dies at 00:00 UTC that day.
    pub expires_at: NaiveDate,
    /// Scopes granted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<Scope>,
    /// Role granted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_level: Option<AccessLevel>,
    /// Digest of the Secret content written for this token, to notice edits (never the token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_digest: Option<String>,
    /// The Secret as the operator wrote it for this token: its resourceVersion and a digest of
    /// what its shape was written for (`<resourceVersion>/<digest>`). While the live Secret is
    /// still at that version, it is known intact without reading it (a restart reads nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_version: Option<String>,
    /// When GitLab last confirmed the token active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_verified: Option<DateTime<Utc>>,
}

/// A token kept alive while consumers move to its successor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreviousToken {
    /// GitLab token id.
    pub token_id: u64,
    /// Kind of credential (absent: `ProjectAccessToken`), so it is revoked at the right endpoint.
    #[serde(default, skip_serializing_if = "CredentialKind::is_default")]
    pub kind: CredentialKind,
    /// GitLab group id it lives on, for group-level credentials (then revoked there, not on the project).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<u64>,
    /// Connection that minted it (where it must be revoked); absent only in records written before the ledger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<String>,
    /// GitLab project id it belongs to (where it must be revoked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<u64>,
    /// Revoke at the latest at this time (end of the overlap grace).
    pub revoke_after: DateTime<Utc>,
    /// The `requestedAt` value consumers were nudged with (the overlap waits until each has
    /// handled a reconcile requested at or after it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nudged_at: Option<DateTime<Utc>>,
    /// When the Secret was recorded as carrying the successor (the value every nudge for this
    /// overlap writes, so two writers nudge alike and any reconcile requested later counts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced_at: Option<DateTime<Utc>>,
}

/// A token the operator has withdrawn and keeps trying to revoke until GitLab confirms it dead.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RevokingToken {
    /// GitLab token id.
    pub token_id: u64,
    /// Kind of credential (absent: `ProjectAccessToken`), so it is revoked at the right endpoint.
    #[serde(default, skip_serializing_if = "CredentialKind::is_default")]
    pub kind: CredentialKind,
    /// GitLab group id it lives on, for group-level credentials (then revoked there, not on the project).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<u64>,
    /// Connection that minted it.
    pub connection: String,
    /// GitLab project id it belongs to.
    pub project_id: u64,
    /// Why it is being revoked (`Rotated`, `PolicyWithdrawn`, `Deleted`, …).
    pub reason: String,
    /// When it was withdrawn.
    pub since: DateTime<Utc>,
    /// Failed revocation attempts so far.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attempts: u32,
    /// Earliest time of the next attempt (after a failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt: Option<DateTime<Utc>>,
    /// The last failure, as GitLab or the network reported it (never a token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// What a pending GitLab call was doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PendingOperation {
    /// Creating a new token.
    Issue,
    /// Rotating the current token in place.
    Rotate,
}

/// Write-ahead record: set before calling GitLab, cleared once the Secret holds the result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PendingIssue {
    /// The token name sent to GitLab, so a restart can find what was created.
    pub token_name: String,
    /// Kind of credential (absent: `ProjectAccessToken`), so it is revoked at the right endpoint.
    #[serde(default, skip_serializing_if = "CredentialKind::is_default")]
    pub kind: CredentialKind,
    /// GitLab group id it lives on, for group-level credentials (then revoked there, not on the project).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<u64>,
    /// Connection that minted it (where it must be revoked); absent only in records written before the ledger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<String>,
    /// GitLab project id it belongs to (where it must be revoked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<u64>,
    /// The operator process that wrote the record; another process waits for it to finish or time out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// Issue or rotate.
    pub operation: PendingOperation,
    /// When the call started.
    pub started_at: DateTime<Utc>,
    /// For a rotation, the token id being rotated (never presented again once pending).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotating_token_id: Option<u64>,
}

/// One issued token in the history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    /// GitLab token id.
    pub token_id: u64,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Expiry date.
    pub expires_at: NaiveDate,
    /// When the operator revoked it (or saw it revoked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime<Utc>>,
    /// Why it ended (`Rotated`, `Revoked`, `RevokedExternally`, `Deleted`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl GitLabToken {
    /// The object as a server-side apply body: `apiVersion` and `kind` set, no `status` (a status
    /// in an apply to the main resource would be ignored, and must never be claimed).
    pub fn apply_body(&self) -> serde_json::Value {
        let mut body = serde_json::to_value(self).unwrap_or_default();
        body["apiVersion"] = serde_json::json!("gitlabtokens.io/v1alpha1");
        body["kind"] = serde_json::json!("GitLabToken");
        if let Some(o) = body.as_object_mut() {
            o.remove("status");
        }
        body
    }
}
