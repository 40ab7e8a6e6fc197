//! `check` explaining a delegated decision offline (issue 11): a policy with `gitlabAccess`
//! allows only while its GitLab identity has the role on the project in GitLab; offline, that
//! answer comes from a saved file (`--gitlab-access FILE`), else the verdict is undecided.
//!
//! The file maps each identity (`group:<full path>` or `user:<username>`) to the projects it
//! reaches and GitLab's `access_level` there (the share's level for a group, the `members/all`
//! level for a user), e.g. `{"group:acme/team-a": {"acme/platform/infra": 30}}` (YAML or JSON).
//! With `--online` the answers are asked of GitLab instead (`super::online`), and judged here
//! the same way.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    sync::Mutex,
};

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

/// A question only GitLab can answer: the connection, the identity and the project path.
pub type Question = (String, Identity, String);

/// GitLab's answers `check` decides delegated requests with, saved or asked live, and the
/// questions it met without an answer (what `--online` asks GitLab).
#[derive(Debug, Default)]
pub struct AccessAnswers {
    answers: SavedAccess,
    live: bool,
    missed: Mutex<BTreeSet<Question>>,
}

impl AccessAnswers {
    /// Answers read from a `--gitlab-access` file.
    pub fn saved(answers: SavedAccess) -> Self {
        Self {
            answers,
            ..Self::default()
        }
    }

    /// Answers GitLab gave just now (`--online`).
    pub fn live(answers: SavedAccess) -> Self {
        Self {
            answers,
            live: true,
            ..Self::default()
        }
    }

    /// The questions met without an answer so far.
    pub fn missed(&self) -> BTreeSet<Question> {
        self.missed.lock().map(|m| m.clone()).unwrap_or_default()
    }

    fn source(&self) -> &'static str {
        if self.live {
            "GitLab's live answer"
        } else {
            "saved answer"
        }
    }
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

/// Explains a decision whose allowing policy delegates to GitLab, for a new token (and what a
/// live one would become), judged as the operator judges ([`judge`]).
pub fn explain(
    decision: &PolicyDecision,
    connection: &str,
    project: &str,
    requested: AccessLevel,
    answers: &AccessAnswers,
) -> Explained {
    let PolicyDecision::Allowed(a) = decision else {
        return Explained::Plain;
    };
    let Some(identity) = &a.delegate else {
        return Explained::Plain;
    };
    let key = identity.to_string();
    let Some(raw) = answers
        .answers
        .get(&key)
        .map(|projects| projects.get(project).copied().unwrap_or(0))
    else {
        if let Ok(mut missed) = answers.missed.lock() {
            missed.insert((connection.to_string(), identity.clone(), project.to_string()));
        }
        return Explained::Unknown(format!(
            "policy {} delegates to GitLab identity {key}, whose access on {project} only GitLab knows",
            a.policy
        ));
    };
    let source = answers.source();
    let level = level_from_gitlab(raw);
    let has = match level {
        Some(l) => format!("has {l} (access_level {raw})"),
        None => "has no access".to_string(),
    };
    match judge(requested, level, None) {
        Judgement::Grant(_) => Explained::Granted(format!(
            "policy {} delegates to GitLab identity {key}, which {has} on {project} ({source}): at least the requested {requested}",
            a.policy
        )),
        _ => {
            // What the operator does to a token it already issued at the requested role.
            let live = match judge(requested, level, Some(Some(requested))) {
                Judgement::Lowered { to, .. } => format!(
                    "; a token already issued at {requested} would be re-issued at {to} ({})",
                    Reason::AccessLowered
                ),
                Judgement::Withdraw => format!(
                    "; a token already issued would be revoked and its Secret removed ({})",
                    Reason::AccessWithdrawn
                ),
                _ => String::new(),
            };
            Explained::Denied(
                Reason::GitLabAccessDenied,
                format!(
                    "denied: GitLab identity {key} {has} on project {project} in GitLab ({source}), below the requested {requested} (policy {} delegates to it){live}",
                    a.policy
                ),
            )
        }
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
        let saved = AccessAnswers::saved(
            serde_yaml_ng::from_str("group:acme/team-a: {acme/infra: 30}").expect("yaml"),
        );
        let dev = set.evaluate(&req(AccessLevel::Developer), &ns);
        assert!(matches!(
            explain(&dev, "gitlab", "acme/infra", AccessLevel::Developer, &saved),
            Explained::Granted(m) if m.contains("has developer (access_level 30)")
        ));
        let maint = set.evaluate(&req(AccessLevel::Maintainer), &ns);
        assert!(matches!(
            explain(&maint, "gitlab", "acme/infra", AccessLevel::Maintainer, &saved),
            Explained::Denied(Reason::GitLabAccessDenied, m) if m.contains("re-issued at developer (AccessLowered)")
        ));
        let none = AccessAnswers::default();
        assert!(matches!(
            explain(&dev, "gitlab", "acme/infra", AccessLevel::Developer, &none),
            Explained::Unknown(_)
        ));
        assert_eq!(
            none.missed().into_iter().collect::<Vec<_>>(),
            vec![(
                "gitlab".to_string(),
                Identity::Group("acme/team-a".into()),
                "acme/infra".to_string()
            )],
            "an unanswered question is kept for --online"
        );
        let other =
            AccessAnswers::live(serde_yaml_ng::from_str("group:acme/team-a: {acme/else: 50}").expect("yaml"));
        assert!(matches!(
            explain(&dev, "gitlab", "acme/infra", AccessLevel::Developer, &other),
            Explained::Denied(_, m) if m.contains("has no access") && m.contains("GitLab's live answer")
                && m.contains("revoked and its Secret removed (AccessWithdrawn)")
        ));
    }
}
