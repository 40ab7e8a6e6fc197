//! Custom resources served under `gitlabtokens.io/v1alpha1` (DESIGN §5), and the small value
//! types they share. CRD YAML is generated from these types (`gitlab-token-operator crds`).

mod condition;
mod connection;
mod credential;
mod duration;
mod policy;
mod policy_file;
mod reach;
mod token;
mod values;

pub use condition::{Condition, ConditionStatus, set_condition, summary};
pub use connection::{
    ConnectionCredentials, GitLabConnection, GitLabConnectionSpec, GitLabConnectionStatus, GitLabUserRef,
    RateLimit, SecretKeyReference, SelfRotation,
};
pub use connection::{PinnedHostKeys, SshHostKeyPolicy};
pub use credential::{CredentialKind, Owner};
pub use duration::{Days, DurationParseError, ShortDuration};
pub use policy::GitLabAccess;
pub use policy::GroupTokens;
pub use policy::{
    ArgoCdSelector, GitLabTokenPolicy, GitLabTokenPolicySpec, GitLabTokenPolicyStatus, LifetimeBounds,
    NamespaceSelector, RenewBeforeBounds, RotationStrategy,
};
pub use policy_file::{PolicyCeiling, PolicyFile, PolicyFileStatus};
pub use reach::{OperatorReach, ReachEntry};
pub use token::{
    ArgoCdRepoType, ArgoCdRepository, ConsumerRef, CurrentToken, DeletionPolicy, GitLabToken,
    GitLabTokenSpec, GitLabTokenStatus, HistoryEntry, ObjectName, PendingIssue, PendingOperation,
    PreviousToken, ProjectRef, ResolvedProject, RevokingToken, SecretTarget,
};
pub use values::{AccessLevel, ConsumerKind, Scope, SecretFormat};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// The API group of every kind this operator serves.
pub const API_GROUP: &str = "gitlabtokens.io";
/// The API version of every kind this operator serves.
pub const API_VERSION: &str = "v1alpha1";
/// Finalizer that makes deletion revoke the GitLab token first.
pub const FINALIZER: &str = "gitlabtokens.io/revoke";
/// Field manager for everything the operator writes (suffixed `/<concern>` where useful).
pub const FIELD_MANAGER: &str = "gitlab-token-operator";

/// Every CRD of the operator, in a stable order.
pub fn all_crds() -> Vec<CustomResourceDefinition> {
    vec![
        GitLabConnection::crd(),
        GitLabTokenPolicy::crd(),
        GitLabToken::crd(),
    ]
}

/// Renders CRDs as a multi-document YAML stream, the form `kubectl apply -f` and Helm read.
pub fn crds_to_yaml(crds: &[CustomResourceDefinition]) -> Result<String, serde_yaml_ng::Error> {
    let mut out = String::new();
    for crd in crds {
        out.push_str("---\n");
        out.push_str(&serde_yaml_ng::to_string(crd)?);
    }
    Ok(out)
}
