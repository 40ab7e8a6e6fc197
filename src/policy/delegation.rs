//! Delegation to GitLab (issue 11): which GitLab identity bounds a delegating policy's tokens, and
//! GitLab's rule for a group's effective level on a project (pure; the lookups live in
//! `crate::controller::delegation`).

use std::fmt;

use crate::crd::{AccessLevel, GitLabAccess};

/// A GitLab identity whose access on a project bounds what a policy grants.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Identity {
    /// A group by full path.
    Group(String),
    /// A user or service account by username.
    User(String),
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Group(g) => write!(f, "group:{g}"),
            Self::User(u) => write!(f, "user:{u}"),
        }
    }
}

impl Identity {
    /// Parses `group:<full path>` or `user:<username>` (the namespace annotation's value).
    pub fn parse(value: &str) -> Result<Self, String> {
        let value = value.trim();
        let (kind, name) = value
            .split_once(':')
            .ok_or_else(|| format!("{value:?} is not group:<full path> or user:<username>"))?;
        let name = name.trim();
        match kind.trim() {
            "group" => group_path(name).map(|g| Self::Group(g.to_string())),
            "user" => username(name).map(|u| Self::User(u.to_string())),
            other => Err(format!(
                "{other:?} is not an identity kind (group:<full path> or user:<username>)"
            )),
        }
    }
}

/// Where a delegating policy takes its identity from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccessSource {
    /// The same identity for every namespace.
    Fixed(Identity),
    /// Each namespace names its own in this annotation.
    NamespaceAnnotation(String),
}

fn group_path(path: &str) -> Result<&str, String> {
    let ok = !path.is_empty()
        && path.split('/').all(|seg| {
            !seg.is_empty()
                && seg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        });
    if ok {
        Ok(path)
    } else {
        Err(format!(
            "{path:?} is not a GitLab group full path (like acme/team-a)"
        ))
    }
}

fn username(name: &str) -> Result<&str, String> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(name)
    } else {
        Err(format!("{name:?} is not a GitLab username"))
    }
}

/// Checks `gitlabAccess`: exactly one of its fields, each well-formed. `Err` lists problems.
pub fn compile_access(access: &GitLabAccess) -> Result<AccessSource, Vec<String>> {
    let mut problems = Vec::new();
    let set = [
        access.group.is_some(),
        access.user.is_some(),
        access.namespace_annotation.is_some(),
    ]
    .into_iter()
    .filter(|b| *b)
    .count();
    if set != 1 {
        problems.push(format!(
            "gitlabAccess: exactly one of group, user and namespaceAnnotation must be set ({set} are)"
        ));
        return Err(problems);
    }
    if let Some(g) = &access.group {
        return group_path(g)
            .map(|g| AccessSource::Fixed(Identity::Group(g.to_string())))
            .map_err(|e| vec![format!("gitlabAccess.group: {e}")]);
    }
    if let Some(u) = &access.user {
        return username(u)
            .map(|u| AccessSource::Fixed(Identity::User(u.to_string())))
            .map_err(|e| vec![format!("gitlabAccess.user: {e}")]);
    }
    let key = access.namespace_annotation.clone().unwrap_or_default();
    let name = key.rsplit('/').next().unwrap_or_default();
    let prefix_ok = key.matches('/').count() <= 1 && key.split_once('/').is_none_or(|(p, _)| !p.is_empty());
    if name.is_empty()
        || name.len() > 63
        || !prefix_ok
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        problems.push(format!(
            "gitlabAccess.namespaceAnnotation: {key:?} is not a valid annotation key"
        ));
        return Err(problems);
    }
    Ok(AccessSource::NamespaceAnnotation(key))
}

/// An `access_level` as GitLab reports it, as a token role: Owner (50) counts as Maintainer (the
/// highest role a project token may have); below Guest (minimal access, 5) is no access.
pub fn level_from_gitlab(value: u32) -> Option<AccessLevel> {
    AccessLevel::ALL
        .into_iter()
        .rev()
        .find(|l| l.gitlab_value() <= value)
}

/// One `shared_with_groups` entry of a project or one of its ancestor groups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareLink {
    /// The invited group's full path.
    pub group_full_path: String,
    /// The share's `group_access_level`.
    pub group_access_level: u32,
    /// The share's last day (`expires_at`: it grants nothing from that date on).
    pub expires_at: Option<chrono::NaiveDate>,
}

/// GitLab's effective level of group `group` on the project `project_path`, given the project's
/// shares and its ancestor groups' shares: Owner when the project lies in the group or one of its
/// subgroups; else the highest level of a live share of the project, or of one of its ancestor
/// groups, with the group (a share carries the group's members at most at the share's level).
/// `0` when none.
pub fn group_level_on_project<'a>(
    group: &str,
    project_path: &str,
    shares: impl IntoIterator<Item = &'a ShareLink>,
    today: chrono::NaiveDate,
) -> u32 {
    const OWNER: u32 = 50;
    let within = project_path
        .strip_prefix(group)
        .is_some_and(|rest| rest.starts_with('/'));
    if within {
        return OWNER;
    }
    shares
        .into_iter()
        .filter(|l| l.group_full_path.eq_ignore_ascii_case(group))
        .filter(|l| l.expires_at.is_none_or(|d| d > today))
        .map(|l| l.group_access_level)
        .max()
        .unwrap_or(0)
}

/// The ancestor groups of a project path, nearest last (`a/b/c/app` → `a`, `a/b`, `a/b/c`).
pub fn ancestor_groups(project_path: &str) -> Vec<String> {
    let segments: Vec<&str> = project_path.split('/').collect();
    (1..segments.len()).map(|n| segments[..n].join("/")).collect()
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use super::*;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date")
    }

    fn link(g: &str, level: u32, expires: Option<&str>) -> ShareLink {
        ShareLink {
            group_full_path: g.into(),
            group_access_level: level,
            expires_at: expires.map(day),
        }
    }

    #[test]
    fn identities_parse_and_print() {
        assert_eq!(
            Identity::parse("group:acme/team-a"),
            Ok(Identity::Group("acme/team-a".into()))
        );
        assert_eq!(
            Identity::parse(" user:svc-1 "),
            Ok(Identity::User("svc-1".into()))
        );
        assert_eq!(Identity::Group("a/b".into()).to_string(), "group:a/b");
        for bad in [
            "acme/team-a",
            "group:",
            "group:/a",
            "group:a//b",
            "team:x",
            "user:a b",
        ] {
            assert!(Identity::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn exactly_one_source() {
        let none = GitLabAccess::default();
        assert!(compile_access(&none).is_err());
        let two = GitLabAccess {
            group: Some("a".into()),
            user: Some("b".into()),
            ..Default::default()
        };
        assert!(compile_access(&two).unwrap_err()[0].contains("(2 are)"));
        let ann = GitLabAccess {
            namespace_annotation: Some("gitlabtokens.io/gitlab-identity".into()),
            ..Default::default()
        };
        assert_eq!(
            compile_access(&ann),
            Ok(AccessSource::NamespaceAnnotation(
                "gitlabtokens.io/gitlab-identity".into()
            ))
        );
        let bad = GitLabAccess {
            namespace_annotation: Some("a/b/c".into()),
            ..Default::default()
        };
        assert!(compile_access(&bad).is_err());
    }

    #[test]
    fn gitlab_levels_map_to_token_roles() {
        assert_eq!(level_from_gitlab(50), Some(AccessLevel::Maintainer));
        assert_eq!(level_from_gitlab(30), Some(AccessLevel::Developer));
        assert_eq!(level_from_gitlab(15), Some(AccessLevel::Planner));
        assert_eq!(level_from_gitlab(5), None);
        assert_eq!(level_from_gitlab(0), None);
    }

    #[test]
    fn group_level_follows_gitlabs_rules() {
        let today = day("2026-12-06");
        let shares = [
            link("acme/ops", 30, None),
            link("acme/ops", 20, None),
            link("acme/old", 40, Some("2026-12-06")),
            link("acme/soon", 40, Some("2026-12-07")),
        ];
        // In the group or a subgroup: owner; a sibling with a common prefix is not within.
        assert_eq!(
            group_level_on_project("acme/team", "acme/team/sub/app", [], today),
            50
        );
        assert_eq!(
            group_level_on_project("acme/team", "acme/team-b/app", [], today),
            0
        );
        // The highest live share wins; an expired one grants nothing from its date on.
        assert_eq!(group_level_on_project("acme/ops", "x/app", &shares, today), 30);
        assert_eq!(group_level_on_project("acme/old", "x/app", &shares, today), 0);
        assert_eq!(group_level_on_project("acme/soon", "x/app", &shares, today), 40);
        assert_eq!(group_level_on_project("acme/none", "x/app", &shares, today), 0);
    }

    #[test]
    fn ancestors_of_a_project() {
        assert_eq!(ancestor_groups("a/b/c/app"), vec!["a", "a/b", "a/b/c"]);
        assert!(ancestor_groups("app").is_empty());
    }
}
