//! The kinds of GitLab credential a `GitLabToken` can stand for, and where each kind lives in
//! GitLab (a project or a group), so issuing, revoking, verifying and sweeping go to the right
//! endpoint (gitlab-api.md §3, §4, §8; gitlab-access-and-ssh.md §1).

use std::{fmt, str::FromStr};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Which kind of GitLab credential a `GitLabToken` holds.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
pub enum CredentialKind {
    /// A project access token (bot user on the project); the default.
    #[default]
    ProjectAccessToken,
    /// An SSH deploy key registered on the project (Git over SSH only).
    DeployKey,
    /// A deploy token on the project, or on a group when `group` is set (no REST API access).
    DeployToken,
    /// A group access token (bot user on the group: reaches every project below it).
    GroupAccessToken,
}

impl CredentialKind {
    /// Every kind, in declaration order.
    pub const ALL: [CredentialKind; 4] = [
        Self::ProjectAccessToken,
        Self::DeployKey,
        Self::DeployToken,
        Self::GroupAccessToken,
    ];

    /// Kinds a policy allows when its `credentialKinds` list is empty.
    pub const DEFAULT_ALLOWED: [CredentialKind; 2] = [Self::ProjectAccessToken, Self::DeployKey];

    /// The PascalCase spelling used in specs, status and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ProjectAccessToken => "ProjectAccessToken",
            Self::DeployKey => "DeployKey",
            Self::DeployToken => "DeployToken",
            Self::GroupAccessToken => "GroupAccessToken",
        }
    }

    /// Whether this is the default kind (kept out of serialized records for compatibility).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// Whether a credential of this kind must live on a group (`group` set) rather than a project.
    pub fn requires_group(self) -> bool {
        self == Self::GroupAccessToken
    }

    /// Whether a credential of this kind may live on a group.
    pub fn allows_group(self) -> bool {
        matches!(self, Self::DeployToken | Self::GroupAccessToken)
    }

    /// Whether GitLab can rotate this kind in place (`…/rotate`); the others rotate by Overlap.
    pub fn rotates_in_place(self) -> bool {
        matches!(self, Self::ProjectAccessToken | Self::GroupAccessToken)
    }

    /// The endpoint collection of this kind on `owner` (`projects/7/deploy_keys`), with the
    /// owner segment already encoded: the one home of the kind-to-endpoint mapping.
    pub fn collection(self, owner: Owner) -> String {
        let what = match self {
            Self::ProjectAccessToken | Self::GroupAccessToken => "access_tokens",
            Self::DeployKey => "deploy_keys",
            Self::DeployToken => "deploy_tokens",
        };
        match owner {
            Owner::Project(id) => format!("projects/{id}/{what}"),
            Owner::Group(id) => format!("groups/{id}/{what}"),
        }
    }
}

impl fmt::Display for CredentialKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CredentialKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                let all: Vec<&str> = Self::ALL.iter().map(|k| k.as_str()).collect();
                format!("{s:?} is not a credential kind (one of {})", all.join(", "))
            })
    }
}

/// Where a credential lives in GitLab: a project or a group, by numeric id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Owner {
    /// `projects/:id`.
    Project(u64),
    /// `groups/:id`.
    Group(u64),
}

impl Owner {
    /// The owner of a ledger record: its group when it names one, else its project.
    pub fn of(project_id: u64, group_id: Option<u64>) -> Self {
        group_id.map_or(Self::Project(project_id), Self::Group)
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Project(id) => write!(f, "project {id}"),
            Self::Group(id) => write!(f, "group {id}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_and_owner_has_its_own_endpoint() {
        let cases = [
            (
                CredentialKind::ProjectAccessToken,
                Owner::Project(7),
                "projects/7/access_tokens",
            ),
            (
                CredentialKind::GroupAccessToken,
                Owner::Group(3),
                "groups/3/access_tokens",
            ),
            (
                CredentialKind::DeployKey,
                Owner::Project(7),
                "projects/7/deploy_keys",
            ),
            (
                CredentialKind::DeployToken,
                Owner::Project(7),
                "projects/7/deploy_tokens",
            ),
            (
                CredentialKind::DeployToken,
                Owner::Group(3),
                "groups/3/deploy_tokens",
            ),
        ];
        for (kind, owner, want) in cases {
            assert_eq!(kind.collection(owner), want);
        }
        assert_eq!(Owner::of(7, None), Owner::Project(7));
        assert_eq!(Owner::of(7, Some(3)), Owner::Group(3));
    }

    #[test]
    fn kinds_parse_and_default() {
        assert_eq!(
            "deploykey".parse::<CredentialKind>(),
            Ok(CredentialKind::DeployKey)
        );
        assert!("ssh".parse::<CredentialKind>().unwrap_err().contains("DeployKey"));
        assert!(CredentialKind::ProjectAccessToken.is_default());
        assert!(!CredentialKind::DeployToken.rotates_in_place());
        assert!(CredentialKind::GroupAccessToken.requires_group());
        assert!(!CredentialKind::DeployKey.allows_group());
    }
}
