//! `GitLabTokenPolicy` (cluster-scoped): which namespaces may get which tokens (DESIGN §5).

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{AccessLevel, Condition, ConsumerKind, CredentialKind, Days, Scope, ShortDuration};

/// An admin's rule: namespaces it selects may get tokens for matching projects within bounds.
// kube's `printcolumn(...)` repeats `type_ = "string"` by design; the lint mistakes it for a duplicate.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "gitlabtokens.io",
    version = "v1alpha1",
    kind = "GitLabTokenPolicy",
    status = "GitLabTokenPolicyStatus",
    shortname = "gltp",
    category = "gitlab",
    doc = "Which namespaces may get which GitLab tokens, with bounds on scopes, role and lifetime.",
    printcolumn(name = "Connection", type_ = "string", json_path = ".spec.connectionRef.name"),
    printcolumn(name = "Max Level", type_ = "string", json_path = ".spec.maxAccessLevel"),
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
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(name = "Message", type_ = "string", json_path = ".status.summary")
)]
#[serde(rename_all = "camelCase")]
pub struct GitLabTokenPolicySpec {
    /// The connection this policy governs; absent means every connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_ref: Option<super::ObjectName>,
    /// Namespaces the policy applies to.
    pub namespace_selector: NamespaceSelector,
    /// Globs over canonical project paths (`acme/platform/**`, `acme/team-a/*`).
    #[schemars(length(min = 1))]
    pub projects: Vec<String>,
    /// Consumer kinds allowed; empty means all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub consumers: Vec<ConsumerKind>,
    /// Scopes allowed; empty means the read-only ones (`read_repository`, `read_registry`, `read_api`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<Scope>,
    /// Highest role a token may get.
    #[serde(default = "default_max_access_level")]
    pub max_access_level: AccessLevel,
    /// Token lifetime bounds.
    #[serde(default)]
    pub lifetime: LifetimeBounds,
    /// How early to renew.
    #[serde(default)]
    pub renew_before: RenewBeforeBounds,
    /// How tokens are replaced.
    #[serde(default)]
    pub rotation_strategy: RotationStrategy,
    /// How long an `Overlap` rotation keeps the old token when consumers do not report Ready.
    #[serde(default = "default_overlap_grace")]
    pub overlap_grace: ShortDuration,
    /// Whether tokens this policy allows may set `deletionPolicy: Retain` (default false: deletion
    /// always revokes, so a tenant cannot keep a live token once its request is gone).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_retain: bool,
    /// Argo CD requests this policy selects, by AppProject (the Application's namespace must also
    /// match `namespaceSelector`); absent means none: a policy without it never serves Argo CD.
    #[serde(default, rename = "argoCD", skip_serializing_if = "Option::is_none")]
    pub argo_cd: Option<ArgoCdSelector>,
    /// Delegation to GitLab: a GitLab identity whose access on the project, in GitLab, now, bounds
    /// what the selected namespaces get (issue 11). Absent: the globs above decide alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gitlab_access: Option<GitLabAccess>,
    /// Credential kinds allowed; empty means `ProjectAccessToken` and `DeployKey` (deploy keys are
    /// asked for by `ssh://` sources). `GroupAccessToken` is opt-in and needs `groups`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub credential_kinds: Vec<CredentialKind>,
    /// Globs over group full paths (`acme/team-a`) on which group-level credentials (group access
    /// tokens, group deploy tokens) may be minted; empty allows none. Their reach is the whole group.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Whether deploy keys this policy allows may get push access (`gitlabtokens.io/write`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_deploy_key_push: bool,
    /// `SharedPerNamespace`: annotated sources in a selected namespace whose project sits below a
    /// group of `groups` share ONE group access token per group and consumer shape instead of one
    /// project token each (needs `GroupAccessToken` in `credentialKinds`). Default `PerToken`.
    #[serde(default, skip_serializing_if = "GroupTokens::is_default")]
    pub group_tokens: GroupTokens,
}

/// Which Argo CD requests a policy selects.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArgoCdSelector {
    /// AppProject name globs (`team-a`, `team-*`); the request's AppProject must match one.
    #[schemars(length(min = 1))]
    pub app_projects: Vec<String>,
}

/// The GitLab identity whose effective access on a project bounds a delegating policy's tokens.
/// Exactly one of `group`, `user` and `namespaceAnnotation` is set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitLabAccess {
    /// A GitLab group by full path (`acme/team-a`): projects in it or its subgroups, and projects
    /// (or their parent groups) shared with it, at the share's level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// A GitLab username (a user or a service account): its effective role on the project, as
    /// GitLab's `members/all` reports it (inherited and shared memberships included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// A namespace annotation naming the identity per namespace (`group:acme/team-a` or
    /// `user:deployer`); only cluster admins may set it (SECURITY.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_annotation: Option<String>,
}

fn default_max_access_level() -> AccessLevel {
    AccessLevel::Reporter
}

fn default_overlap_grace() -> ShortDuration {
    ShortDuration::from_secs(600)
}

/// Namespaces by name globs and labels; both parts must match when both are given.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceSelector {
    /// Namespace name globs (`team-*`); empty matches every name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_names: Vec<String>,
    /// Labels the namespace must carry; empty matches every namespace.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
}

/// Lifetime default and maximum, in whole days.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LifetimeBounds {
    /// Lifetime when the request names none (default 30d).
    #[serde(default = "default_lifetime")]
    pub default: Days,
    /// Longest lifetime allowed (default 90d).
    #[serde(default = "default_max_lifetime")]
    pub max: Days,
}

impl Default for LifetimeBounds {
    fn default() -> Self {
        Self {
            default: default_lifetime(),
            max: default_max_lifetime(),
        }
    }
}

fn default_lifetime() -> Days {
    Days::new(30).expect("30 is within bounds")
}

fn default_max_lifetime() -> Days {
    Days::new(90).expect("90 is within bounds")
}

/// Renew-before default and minimum; absent default means one third of the lifetime.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RenewBeforeBounds {
    /// Renew this long before expiry when the request names nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Days>,
    /// Requests may not renew later than this before expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<Days>,
}

/// How a token is replaced before it expires (DESIGN §6.3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RotationStrategy {
    /// New token first, consumers nudged, old token revoked once they are Ready (new bot user).
    #[default]
    Overlap,
    /// GitLab's rotate endpoint: same bot user, old token dies at once.
    InPlace,
}

/// Whether the shim serves a namespace's sources below an allowed group with one shared group
/// access token (issue 12 item 3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum GroupTokens {
    /// Group access tokens only where a source or `GitLabToken` asks for one (the default).
    #[default]
    PerToken,
    /// One group access token per namespace, group and consumer shape, shared by every source
    /// below the group that does not name its own Secret or credential kind.
    SharedPerNamespace,
}

impl GroupTokens {
    /// Whether this is the default (kept out of serialized specs).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// What the operator found when reading the policy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitLabTokenPolicyStatus {
    /// `Ready=False` when a glob or bound is unusable.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The `Ready` message's first clause, at most 60 characters (the `Message` print column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// Generation the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
