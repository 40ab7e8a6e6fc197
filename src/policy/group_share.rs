//! Which group, if any, serves a namespace's source with one shared group access token: a policy
//! selecting the namespace and connection opts in with `groupTokens: SharedPerNamespace`, allows
//! `GroupAccessToken`, matches the project, and names a group above it (issue 12 item 3).

use super::{NamespaceInfo, PolicySet};
use crate::crd::{CredentialKind, GroupTokens};

impl PolicySet {
    /// The group (full path) whose shared group access token serves `project_path` in this
    /// namespace: the shortest group above the project that an opted-in policy allows, so every
    /// project of that group shares one token. `None`: the source is served as before.
    pub fn shared_group(
        &self,
        namespace: &NamespaceInfo,
        connection: &str,
        project_path: &str,
    ) -> Option<String> {
        let segments: Vec<&str> = project_path.split('/').collect();
        self.usable
            .iter()
            .filter(|p| {
                p.group_tokens == GroupTokens::SharedPerNamespace
                    && p.credential_kinds.contains(&CredentialKind::GroupAccessToken)
                    && p.selects_namespace(&namespace.name, &namespace.labels)
                    && p.selects_connection(connection)
                    && p.selects_argocd_project(None)
                    && p.matches_project(project_path)
            })
            .find_map(|p| {
                (1..segments.len())
                    .map(|n| segments[..n].join("/"))
                    .find(|group| p.matches_group(group))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::GitLabTokenPolicy;

    fn set(yaml: &str) -> PolicySet {
        let p: GitLabTokenPolicy = serde_yaml_ng::from_str(yaml).unwrap();
        PolicySet::compile(&[p])
    }

    fn ns(name: &str) -> NamespaceInfo {
        NamespaceInfo {
            name: name.into(),
            labels: Default::default(),
            annotations: Default::default(),
        }
    }

    const SHARED: &str = concat!(
        "apiVersion: gitlabtokens.io/v1alpha1\nkind: GitLabTokenPolicy\nmetadata: {name: p}\nspec:\n",
        "  namespaceSelector: {matchNames: [\"team-*\"]}\n  projects: [\"acme/**\"]\n",
        "  credentialKinds: [ProjectAccessToken, GroupAccessToken]\n",
        "  groups: [\"acme/platform\", \"acme/platform/*\"]\n",
    );

    #[test]
    fn the_shortest_allowed_group_above_the_project_serves_it() {
        let s = set(&format!("{SHARED}  groupTokens: SharedPerNamespace\n"));
        assert_eq!(s.unusable().count(), 0);
        let team = ns("team-a");
        assert_eq!(
            s.shared_group(&team, "gitlab", "acme/platform/infra").as_deref(),
            Some("acme/platform")
        );
        assert_eq!(
            s.shared_group(&team, "gitlab", "acme/platform/sub/charts")
                .as_deref(),
            Some("acme/platform"),
            "a subgroup's project shares its ancestor's token"
        );
        assert_eq!(
            s.shared_group(&team, "gitlab", "acme/team-a/app"),
            None,
            "no allowed group above"
        );
        assert_eq!(
            s.shared_group(&team, "gitlab", "other/platform/x"),
            None,
            "project not allowed"
        );
        assert_eq!(
            s.shared_group(&ns("prod"), "gitlab", "acme/platform/infra"),
            None,
            "namespace not selected"
        );
    }

    #[test]
    fn sharing_is_opt_in_and_needs_group_tokens() {
        let s = set(SHARED);
        assert_eq!(
            s.shared_group(&ns("team-a"), "gitlab", "acme/platform/infra"),
            None,
            "PerToken by default"
        );
        let bad = SHARED.replace("GroupAccessToken", "DeployToken") + "  groupTokens: SharedPerNamespace\n";
        let s = set(&bad);
        let problems: Vec<String> = s.unusable().flat_map(|u| u.problems.clone()).collect();
        assert!(
            problems
                .iter()
                .any(|p| p.contains("groupTokens: SharedPerNamespace needs GroupAccessToken")),
            "{problems:?}"
        );
    }
}
