//! The credential-kind part of a policy check: which kinds a policy allows (default: project access
//! tokens and deploy keys), on which groups group-level credentials may be minted, and whether a
//! deploy key may push.

use super::{CompiledPolicy, TokenRequest, Violation, list};
use crate::crd::CredentialKind;

/// The violations of `r`'s kind, group and push access against policy `p`.
pub(super) fn check_kind(p: &CompiledPolicy, r: &TokenRequest) -> Vec<Violation> {
    let name = &p.name;
    let mut v = Vec::new();
    if !p.credential_kinds.contains(&r.kind) {
        let hint = if r.kind == CredentialKind::GroupAccessToken {
            " (group access tokens are opt-in: their reach is the whole group)"
        } else {
            ""
        };
        v.push(Violation {
            field: "kind",
            message: format!(
                "kind: {} is not allowed by policy {name} (allowed: {}){hint}",
                r.kind,
                list(&p.credential_kinds)
            ),
        });
    }
    if let Some(group) = &r.group_path
        && !p.matches_group(group)
    {
        let allowed = if p.group_patterns.is_empty() {
            "none".to_string()
        } else {
            list(&p.group_patterns)
        };
        v.push(Violation {
            field: "group",
            message: format!(
                "group: {group} matches none of policy {name}'s groups ({allowed}); group-level credentials reach every project below the group"
            ),
        });
    }
    if r.write && r.kind == CredentialKind::DeployKey && !p.allow_deploy_key_push {
        v.push(Violation {
            field: "write",
            message: format!(
                "write: policy {name} does not allow deploy keys with push access (allowDeployKeyPush)"
            ),
        });
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        crd::{AccessLevel, ConsumerKind, GitLabTokenPolicy, Scope},
        policy::{NamespaceInfo, PolicyDecision, evaluate},
    };

    fn policy(name: &str, extra: &str) -> GitLabTokenPolicy {
        let doc = format!(
            "apiVersion: gitlabtokens.io/v1alpha1\nkind: GitLabTokenPolicy\nmetadata:\n  name: {name}\nspec:\n  namespaceSelector: {{matchNames: [team-a]}}\n  projects: ['acme/**']\n  scopes: [read_repository, write_repository, read_registry, read_package_registry]\n{extra}"
        );
        serde_yaml_ng::from_str(&doc).unwrap()
    }

    fn req(kind: CredentialKind, group: Option<&str>, write: bool) -> TokenRequest {
        TokenRequest {
            connection: "gitlab".into(),
            project_path: "acme/team-a/app".into(),
            consumers: vec![ConsumerKind::GitRepository],
            scopes: vec![Scope::ReadRepository],
            access_level: AccessLevel::Reporter,
            lifetime: None,
            renew_before: None,
            kind,
            group_path: group.map(str::to_string),
            write,
            argocd_project: None,
        }
    }

    fn verdict(p: &GitLabTokenPolicy, r: &TokenRequest) -> Result<(), Vec<&'static str>> {
        let ns = NamespaceInfo {
            name: "team-a".into(),
            ..Default::default()
        };
        match evaluate(r, &ns, std::slice::from_ref(p)) {
            PolicyDecision::Allowed(_) => Ok(()),
            PolicyDecision::Denied(d) => Err(d.violations.iter().map(|v| v.field).collect()),
        }
    }

    #[test]
    fn default_kinds_are_project_tokens_and_deploy_keys() {
        let p = policy("default", "");
        use CredentialKind::*;
        assert_eq!(verdict(&p, &req(ProjectAccessToken, None, false)), Ok(()));
        assert_eq!(verdict(&p, &req(DeployKey, None, false)), Ok(()));
        assert_eq!(verdict(&p, &req(DeployToken, None, false)), Err(vec!["kind"]));
        assert_eq!(
            verdict(&p, &req(GroupAccessToken, Some("acme/team-a"), false)),
            Err(vec!["kind", "group"])
        );
        assert_eq!(verdict(&p, &req(DeployKey, None, true)), Err(vec!["write"]));
    }

    #[test]
    fn group_kinds_are_opt_in_and_bounded_by_group_globs() {
        use CredentialKind::*;
        let p = policy(
            "groups",
            "  credentialKinds: [ProjectAccessToken, DeployToken, GroupAccessToken, DeployKey]\n  groups: ['acme/team-a']\n  allowDeployKeyPush: true\n",
        );
        assert_eq!(
            verdict(&p, &req(GroupAccessToken, Some("acme/team-a"), false)),
            Ok(())
        );
        assert_eq!(verdict(&p, &req(DeployToken, Some("acme/team-a"), false)), Ok(()));
        assert_eq!(verdict(&p, &req(DeployToken, None, false)), Ok(()));
        assert_eq!(
            verdict(&p, &req(GroupAccessToken, Some("acme"), false)),
            Err(vec!["group"]),
            "the parent group reaches more than the policy allows"
        );
        assert_eq!(verdict(&p, &req(DeployKey, None, true)), Ok(()));
    }

    #[test]
    fn group_tokens_without_groups_make_the_policy_unusable() {
        let p = policy("bad", "  credentialKinds: [GroupAccessToken]\n");
        let err = super::super::compile::compile_policy(&p).unwrap_err();
        assert!(err.problems[0].contains("groups is empty"), "{:?}", err.problems);
    }
}
