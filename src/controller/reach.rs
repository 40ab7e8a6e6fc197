//! The operator's own reach (issue 11): which groups and projects its GitLab credential can reach
//! and at what level, for the connection's status. Read with
//! `GET /personal_access_tokens/self/associations?min_access_level=10` where GitLab has it
//! (17.4+), else from `GET /groups?min_access_level=10` (groups only, no level). Read again after
//! an hour; a GitLab failure keeps the last answer.

use chrono::{DateTime, TimeDelta, Utc};

use super::connection::LiveConnection;
use crate::{
    crd::{OperatorReach, ReachEntry},
    gitlab::{Associations, GitLabApi, GitLabError, ListedGroup},
};

/// How long a reach answer is shown before it is read again.
const MAX_AGE: TimeDelta = TimeDelta::hours(1);
/// Entries kept per list in the status.
const KEEP: usize = 50;
/// Guest: anything below is not reach.
const GUEST: u32 = 10;

/// Reads the reach again when it is older than an hour (or absent).
pub async fn refresh(live: &LiveConnection, now: DateTime<Utc>, reach: &mut Option<OperatorReach>) {
    if reach
        .as_ref()
        .is_some_and(|r| now >= r.checked_at && now - r.checked_at < MAX_AGE)
    {
        return;
    }
    if let Some(fresh) = read(live.api.as_ref(), now).await {
        *reach = Some(fresh);
    }
}

/// The reach now (`None`: GitLab failed; the caller keeps what it had).
pub async fn read(api: &dyn GitLabApi, now: DateTime<Utc>) -> Option<OperatorReach> {
    match api.associations(GUEST).await {
        Ok(a) => Some(from_associations(a, now)),
        // Older GitLab (no such route), or a token type the endpoint refuses.
        Err(GitLabError::NotFound { .. } | GitLabError::BadRequest { .. }) => {
            api.member_groups(GUEST).await.ok().map(|g| from_groups(g, now))
        }
        Err(e) => {
            tracing::debug!(error = %e, "could not read the operator's reach");
            None
        }
    }
}

/// The status entry from an `associations` answer.
pub fn from_associations(a: Associations, now: DateTime<Utc>) -> OperatorReach {
    let total = u32::try_from(a.groups.len() + a.projects.len()).unwrap_or(u32::MAX);
    let mut groups: Vec<ReachEntry> = a
        .groups
        .iter()
        .filter_map(|g| {
            Some(ReachEntry {
                path: g.full_path()?,
                access_level: g.access_levels,
            })
        })
        .collect();
    let mut projects: Vec<ReachEntry> = a
        .projects
        .iter()
        .map(|p| ReachEntry {
            path: p.path_with_namespace.clone(),
            access_level: p
                .access_levels
                .as_ref()
                .and_then(|l| l.project_access_level.max(l.group_access_level)),
        })
        .collect();
    groups.sort_by(|a, b| a.path.cmp(&b.path));
    projects.sort_by(|a, b| a.path.cmp(&b.path));
    groups.truncate(KEEP);
    projects.truncate(KEEP);
    OperatorReach {
        source: "associations".into(),
        checked_at: now,
        groups,
        projects,
        total,
    }
}

fn from_groups(list: Vec<ListedGroup>, now: DateTime<Utc>) -> OperatorReach {
    let total = u32::try_from(list.len()).unwrap_or(u32::MAX);
    let mut groups: Vec<ReachEntry> = list
        .into_iter()
        .map(|g| ReachEntry {
            path: g.full_path,
            access_level: None,
        })
        .collect();
    groups.sort_by(|a, b| a.path.cmp(&b.path));
    groups.truncate(KEEP);
    OperatorReach {
        source: "memberships".into(),
        checked_at: now,
        groups,
        projects: Vec::new(),
        total,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn associations_become_paths_and_levels() {
        let a: Associations = serde_json::from_value(serde_json::json!({
            "groups": [{"id": 3, "web_url": "https://gl.example/groups/acme/ops", "name": "Ops", "access_levels": 50},
                       {"id": 4, "web_url": "https://gl.example/groups/acme", "access_levels": null}],
            "projects": [{"id": 9, "path_with_namespace": "acme/ops/app",
                          "access_levels": {"project_access_level": 30, "group_access_level": 50}},
                         {"id": 10, "path_with_namespace": "other/x",
                          "access_levels": {"project_access_level": null, "group_access_level": null}}]
        }))
        .expect("decode");
        let now = DateTime::from_timestamp(1_800_000_000, 0).expect("time");
        let r = from_associations(a, now);
        assert_eq!(r.total, 4);
        assert_eq!(
            r.groups,
            vec![
                ReachEntry {
                    path: "acme".into(),
                    access_level: None
                },
                ReachEntry {
                    path: "acme/ops".into(),
                    access_level: Some(50)
                },
            ]
        );
        assert_eq!(
            r.projects[0],
            ReachEntry {
                path: "acme/ops/app".into(),
                access_level: Some(50)
            }
        );
        assert_eq!(r.projects[1].access_level, None);
    }
}
