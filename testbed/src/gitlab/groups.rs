//! Sharing and membership expiry, and GitLab's effective access level built on them
//! (`gitlab-access-and-ssh.md` §3.4): a project or group shared with a group (`project_group_links`,
//! `group_group_links`) gives that group's members `min(share level, their role)`, membership and
//! shares end on their `expires_at` date, and of several paths the highest level wins.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};

use super::{model::Source, store::Store};

/// A project or group shared with (invited) group `group_id` at `group_access`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareLink {
    /// Link id (the `id` of `ProjectGroupLink`).
    pub id: u64,
    /// The shared project or group.
    pub shared: Source,
    /// The invited group.
    pub group_id: u64,
    /// The most the invited group's members get through this link.
    pub group_access: u32,
    /// The link grants nothing from this date on (00:00 UTC).
    pub expires_at: Option<NaiveDate>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

impl ShareLink {
    /// Whether the link still grants access on `today`.
    pub fn live_on(&self, today: NaiveDate) -> bool {
        self.expires_at.is_none_or(|d| today < d)
    }
}

/// Why a share could not be created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ShareError {
    /// The same group is already invited to this project or group (409 in GitLab).
    #[error("already shared with this group")]
    Duplicate,
    /// A group cannot be shared with itself.
    #[error("a group cannot be shared with itself")]
    SelfShare,
}

/// Share links and membership expiry dates (the store's side tables).
#[derive(Debug, Default)]
pub struct Sharing {
    links: BTreeMap<(Source, u64), ShareLink>,
    next_link: u64,
    member_expiry: BTreeMap<(u64, Source), NaiveDate>,
}

impl Sharing {
    /// Adds a link; a group shared with a group already invited is refused, as GitLab does.
    pub fn share(
        &mut self,
        shared: Source,
        group_id: u64,
        group_access: u32,
        expires_at: Option<NaiveDate>,
        now: DateTime<Utc>,
    ) -> Result<ShareLink, ShareError> {
        if shared == Source::Group(group_id) {
            return Err(ShareError::SelfShare);
        }
        if self.links.contains_key(&(shared, group_id)) {
            return Err(ShareError::Duplicate);
        }
        self.next_link += 1;
        let link = ShareLink {
            id: self.next_link,
            shared,
            group_id,
            group_access,
            expires_at,
            created_at: now,
        };
        self.links.insert((shared, group_id), link.clone());
        Ok(link)
    }

    /// Removes a link; false when there was none.
    pub fn unshare(&mut self, shared: Source, group_id: u64) -> bool {
        self.links.remove(&(shared, group_id)).is_some()
    }

    /// The link between `shared` and `group_id`, expired or not.
    pub fn link(&self, shared: Source, group_id: u64) -> Option<&ShareLink> {
        self.links.get(&(shared, group_id))
    }

    /// Links of a shared project or group still in force on `today`, by invited group id.
    pub fn live_links(&self, shared: Source, today: NaiveDate) -> impl Iterator<Item = &ShareLink> {
        self.links
            .range((shared, 0)..=(shared, u64::MAX))
            .map(|(_, l)| l)
            .filter(move |l| l.live_on(today))
    }

    /// Sets or clears the expiry date of a direct membership.
    pub fn set_member_expiry(&mut self, user_id: u64, source: Source, expires_at: Option<NaiveDate>) {
        match expires_at {
            Some(d) => self.member_expiry.insert((user_id, source), d),
            None => self.member_expiry.remove(&(user_id, source)),
        };
    }

    /// The expiry date of a direct membership, if it has one.
    pub fn member_expiry(&self, user_id: u64, source: Source) -> Option<NaiveDate> {
        self.member_expiry.get(&(user_id, source)).copied()
    }
}

impl Store {
    /// Effective level in a group: direct or inherited from an ancestor, or through a group
    /// shared with one of the chain's groups (which carries only that group's *direct* members),
    /// each share capped at its level; the highest wins.
    pub fn group_level(&self, user_id: u64, group_id: u64) -> u32 {
        let today = self.today();
        self.group_chain(group_id)
            .iter()
            .map(|g| {
                let through_shares = self
                    .sharing
                    .live_links(Source::Group(g.id), today)
                    .map(|l| {
                        l.group_access
                            .min(self.direct_level(user_id, Source::Group(l.group_id)))
                    })
                    .max()
                    .unwrap_or(0);
                self.direct_level(user_id, Source::Group(g.id))
                    .max(through_shares)
            })
            .max()
            .unwrap_or(0)
    }

    /// Effective level in a project: direct, from its namespace's groups (with their shares), or
    /// through groups the project is shared with (their direct, inherited and shared-in members,
    /// not their subgroups'), each share capped at its level; the highest wins.
    pub fn project_level(&self, user_id: u64, project_id: u64) -> u32 {
        let Some(p) = self.projects.get(&project_id) else {
            return 0;
        };
        let today = self.today();
        let shared = self
            .sharing
            .live_links(Source::Project(project_id), today)
            .map(|l| l.group_access.min(self.group_level(user_id, l.group_id)))
            .max()
            .unwrap_or(0);
        self.direct_level(user_id, Source::Project(project_id))
            .max(self.group_level(user_id, p.namespace_id))
            .max(shared)
    }

    /// The level of the highest direct membership in a group or its ancestors (GitLab's
    /// `highest_group_member`, which ignores shares); 0 when none.
    pub fn highest_group_member(&self, user_id: u64, group_id: u64) -> u32 {
        self.group_chain(group_id)
            .iter()
            .map(|g| self.direct_level(user_id, Source::Group(g.id)))
            .max()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use crate::gitlab::{
        clock::Clock,
        model::{DEVELOPER, GUEST, Group, MAINTAINER, Membership, OWNER, Project, REPORTER, Source},
        store::Store,
    };

    /// acme(10) > acme/team(11) > acme/team/sub(12); ops(13) > ops/core(14); app(100) in acme/team.
    fn world(clock: &Clock) -> Store {
        let now = clock.now();
        let mut s = Store::default();
        s.use_clock(clock.clone());
        for (id, path, parent) in [
            (10, "acme", None),
            (11, "acme/team", Some(10)),
            (12, "acme/team/sub", Some(11)),
            (13, "ops", None),
            (14, "ops/core", Some(13)),
            (15, "sec", None),
        ] {
            s.insert_group(Group {
                id,
                name: path.into(),
                path: path.rsplit('/').next().unwrap_or(path).into(),
                full_path: path.into(),
                parent_id: parent,
                visibility: "private".into(),
                description: String::new(),
                created_at: now,
            });
        }
        s.insert_project(Project {
            id: 100,
            name: "app".into(),
            path: "app".into(),
            namespace_id: 11,
            visibility: "private".into(),
            archived: false,
            default_branch: "main".into(),
            description: String::new(),
            images: vec![],
            has_repository: true,
            has_chart: false,
            created_at: now,
        });
        // 1 Owner of ops; 2 Reporter of ops/core (subgroup); 3 Owner of sec; 4 Maintainer of ops.
        for (user, gid, level) in [
            (1, 13, OWNER),
            (2, 14, REPORTER),
            (3, 15, OWNER),
            (4, 13, MAINTAINER),
        ] {
            s.set_member(Membership {
                source: Source::Group(gid),
                user_id: user,
                access_level: level,
                created_at: now,
            });
        }
        s
    }

    #[test]
    fn project_share_caps_and_carries_direct_inherited_and_shared_in_members_only() {
        let clock = Clock::new();
        let mut s = world(&clock);
        let now = clock.now();
        s.sharing
            .share(Source::Project(100), 13, DEVELOPER, None, now)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            s.project_level(1, 100),
            DEVELOPER,
            "Owner of ops capped at the share"
        );
        assert_eq!(s.project_level(4, 100), DEVELOPER);
        assert_eq!(s.project_level(2, 100), 0, "subgroup members do not travel");
        assert_eq!(s.project_level(3, 100), 0);
        // A group shared with ops (sec → ops at Reporter): sec's direct members reach ops,
        // and through ops the project, at min(30, min(20, 50)) = 20.
        s.sharing
            .share(Source::Group(13), 15, REPORTER, None, now)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.group_level(3, 13), REPORTER);
        assert_eq!(s.group_level(3, 14), REPORTER, "inherited down into ops/core");
        assert_eq!(s.project_level(3, 100), REPORTER);
        // A direct membership above the share wins.
        s.set_member(Membership {
            source: Source::Project(100),
            user_id: 3,
            access_level: MAINTAINER,
            created_at: now,
        });
        assert_eq!(s.project_level(3, 100), MAINTAINER);
        assert!(s.sharing.unshare(Source::Project(100), 13));
        assert_eq!(s.project_level(1, 100), 0, "unsharing withdraws at once");
    }

    #[test]
    fn group_share_reaches_subgroups_and_projects_and_expires() {
        let clock = Clock::new();
        let mut s = world(&clock);
        let today = clock.today();
        let tomorrow = today.succ_opt();
        s.sharing
            .share(Source::Group(10), 13, GUEST, tomorrow, clock.now())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.group_level(1, 12), GUEST);
        assert_eq!(s.project_level(1, 100), GUEST);
        assert_eq!(
            s.project_level(2, 100),
            0,
            "group shares carry direct members only"
        );
        clock.advance(chrono::Duration::days(1));
        assert_eq!(s.project_level(1, 100), 0, "an expired share grants nothing");
        assert_eq!(
            s.sharing.share(Source::Group(10), 13, GUEST, None, Utc::now()),
            Err(super::ShareError::Duplicate)
        );
    }

    #[test]
    fn expired_memberships_grant_nothing() {
        let clock = Clock::new();
        let mut s = world(&clock);
        s.sharing
            .set_member_expiry(1, Source::Group(13), clock.today().succ_opt());
        assert_eq!(s.group_level(1, 14), OWNER);
        clock.advance(chrono::Duration::days(1));
        assert_eq!(s.group_level(1, 14), 0);
        assert_eq!(s.highest_group_member(4, 14), MAINTAINER);
    }
}
