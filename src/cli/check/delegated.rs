//! `check` explaining a delegated decision offline (issue 11): a policy with `gitlabAccess`
//! allows only while its GitLab identity has the role on the project in GitLab; offline, that
//! answer comes from a saved file (`--gitlab-access FILE`), else the verdict is undecided.
//!
//! The file maps each identity (`group:<full path>` or `user:<username>`) to the projects it
//! reaches and GitLab's `access_level` there (the share's level for a group, the `members/all`
//! level for a user), e.g. `{"group:acme/team-a": {"acme/platform/infra": 30}}` (YAML or JSON).

use std::{collections::BTreeMap, path::Path};

use super::CheckError;
use crate::{
    controller::delegation::{Judgement, judge},
    crd::AccessLevel,
    policy::{
        PolicyDecision,
        delegation::{Identity, level_from_gitlab},
    },
    reason::Reason,
};

/// Saved GitLab answers: identity → project path → `access_level`.
pub type SavedAccess = BTreeMap<String, BTreeMap<String, u32>>;

/// Reads a `--gitlab-access` file.
pub fn read(path: &Path) -> Result<SavedAccess, CheckError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CheckError::Usage(format!("--gitlab-access {}: {e}", path.display())))?;
    let saved: SavedAccess = serde_yaml_ng::from_str(&text).map_err(|e| {
        CheckError::Usage(format!(
            "--gitlab-access {}: not a map of identity to project to access_level: {e}",
            path.display()
        ))
    })?;
    for key in saved.keys() {
        Identity::parse(key)
            .map_err(|e| CheckError::Usage(format!("--gitlab-access {}: {e}", path.display())))?;
    }
    Ok(saved)
}

/// What a delegated allowance becomes given the saved answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Explained {
    /// Not delegated: the decision stands.
    Plain,
    /// GitLab's saved answer grants it; the sentence says why.
    Granted(String),
    /// GitLab's saved answer does not: reason and message.
    Denied(Reason, String),
    /// No saved answer for this identity and project: undecidable offline.
    Unknown(String),
}

/// Explains a decision whose allowing policy delegates to GitLab.
pub fn explain(
    decision: &PolicyDecision,
    project: &str,
    requested: AccessLevel,
    saved: &SavedAccess,
) -> Explained {
    let PolicyDecision::Allowed(a) = decision else {
        return Explained::Plain;
    };
    let Some(identity) = &a.delegate else {
        return Explained::Plain;
    };
    let key = identity.to_string();
    let Some(raw) = saved
        .get(&key)
        .map(|projects| projects.get(project).copied().unwrap_or(0))
    else {
        return Explained::Unknown(format!(
            "policy {} delegates to GitLab identity {key}, whose access on {project} only GitLab knows",
            a.policy
        ));
    };
    let level = level_from_gitlab(raw);
    let has = match level {
        Some(l) => format!("has {l} (access_level {raw})"),
        None => "has no access".to_string(),
    };
    match judge(requested, level, None) {
        Judgement::Grant(_) => Explained::Granted(format!(
            "policy {} delegates to GitLab identity {key}, which {has} on {project} (saved answer): at least the requested {requested}",
            a.policy
        )),
        _ => Explained::Denied(
            Reason::GitLabAccessDenied,
            format!(
                "denied: GitLab identity {key} {has} on project {project} in GitLab (saved answer), below the requested {requested} (policy {} delegates to it)",
                a.policy
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{NamespaceInfo, PolicySet, TokenRequest};

    #[test]
    fn saved_answers_decide_delegated_requests() {
        let policy: crate::crd::GitLabTokenPolicy = serde_yaml_ng::from_str(
            "apiVersion: gitlabtokens.io/v1alpha1\nkind: GitLabTokenPolicy\nmetadata: {name: follow}\nspec:\n  \
             namespaceSelector: {}\n  projects: ['**']\n  maxAccessLevel: maintainer\n  gitlabAccess: {group: acme/team-a}\n",
        )
        .expect("policy");
        let set = PolicySet::compile(&[policy]);
        let req = |level| TokenRequest {
            connection: "gitlab".into(),
            project_path: "acme/infra".into(),
            consumers: vec![],
            scopes: vec![],
            access_level: level,
            lifetime: None,
            renew_before: None,
            argocd_project: None,
            kind: Default::default(),
            group_path: None,
            write: false,
        };
        let ns = NamespaceInfo {
            name: "svc".into(),
            ..Default::default()
        };
        let saved: SavedAccess =
            serde_yaml_ng::from_str("group:acme/team-a: {acme/infra: 30}").expect("yaml");
        let dev = set.evaluate(&req(AccessLevel::Developer), &ns);
        assert!(matches!(
            explain(&dev, "acme/infra", AccessLevel::Developer, &saved),
            Explained::Granted(m) if m.contains("has developer (access_level 30)")
        ));
        let maint = set.evaluate(&req(AccessLevel::Maintainer), &ns);
        assert!(matches!(
            explain(&maint, "acme/infra", AccessLevel::Maintainer, &saved),
            Explained::Denied(Reason::GitLabAccessDenied, _)
        ));
        assert!(matches!(
            explain(&dev, "acme/infra", AccessLevel::Developer, &SavedAccess::new()),
            Explained::Unknown(_)
        ));
        let other: SavedAccess = serde_yaml_ng::from_str("group:acme/team-a: {acme/else: 50}").expect("yaml");
        assert!(matches!(
            explain(&dev, "acme/infra", AccessLevel::Developer, &other),
            Explained::Denied(_, m) if m.contains("has no access")
        ));
    }
}
