//! The in-memory GitLab database: entities, id sequences, path resolution, memberships
//! (inherited through groups, highest level wins) and visibility.

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDate;

use super::{
    clock::Clock,
    groups::Sharing,
    model::{DeployToken, GUEST, Group, Membership, Project, Source, Token, User, UserType},
};

/// What a token digest points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// A PAT/PrAT/GrAT record id.
    Token(u64),
    /// A deploy token id.
    Deploy(u64),
}

/// All emulator data. Mutated only under the state's lock.
#[derive(Debug)]
pub struct Store {
    /// Users by id (humans and bots).
    pub users: BTreeMap<u64, User>,
    /// Groups by id (add through `insert_group`, which indexes paths).
    pub groups: BTreeMap<u64, Group>,
    /// Projects by id (add through `insert_project`, which indexes paths).
    pub projects: BTreeMap<u64, Project>,
    /// Direct memberships by (user, source); change through `set_member`.
    members: BTreeMap<(u64, Source), Membership>,
    /// PAT/PrAT/GrAT records by id.
    pub tokens: BTreeMap<u64, Token>,
    /// Deploy tokens by id.
    pub deploy_tokens: BTreeMap<u64, DeployToken>,
    /// Token digest index.
    pub digests: HashMap<[u8; 32], Credential>,
    /// SSH keys (users' and deploy keys) and deploy key links.
    pub ssh: super::ssh_keys::SshKeys,
    /// Lower-cased full path → group id.
    group_paths: HashMap<String, u64>,
    /// Lower-cased `path_with_namespace` → project id.
    project_paths: HashMap<String, u64>,
    /// Share links and membership expiry dates (see `groups`).
    pub sharing: Sharing,
    /// The emulator clock (expiry of memberships and shares).
    clock: Clock,
    next_user: u64,
    next_group: u64,
    next_project: u64,
    next_token: u64,
    next_deploy: u64,
}

impl Default for Store {
    fn default() -> Self {
        Self {
            users: BTreeMap::new(),
            groups: BTreeMap::new(),
            projects: BTreeMap::new(),
            members: BTreeMap::new(),
            tokens: BTreeMap::new(),
            deploy_tokens: BTreeMap::new(),
            digests: HashMap::new(),
            ssh: super::ssh_keys::SshKeys::default(),
            group_paths: HashMap::new(),
            project_paths: HashMap::new(),
            sharing: Sharing::default(),
            clock: Clock::new(),
            // Distinct ranges so that mixing up a group id and a project id fails loudly.
            next_user: 1,
            next_group: 10,
            next_project: 100,
            next_token: 1000,
            next_deploy: 1,
        }
    }
}

impl Store {
    /// Uses `clock` (the state's) for expiry decisions.
    pub fn use_clock(&mut self, clock: Clock) {
        self.clock = clock;
    }

    /// Today on the emulator clock.
    pub fn today(&self) -> NaiveDate {
        self.clock.today()
    }

    /// Allocates a user id.
    pub fn next_user_id(&mut self) -> u64 {
        bump(&mut self.next_user)
    }
    /// Allocates a group id.
    pub fn next_group_id(&mut self) -> u64 {
        bump(&mut self.next_group)
    }
    /// Allocates a project id.
    pub fn next_project_id(&mut self) -> u64 {
        bump(&mut self.next_project)
    }
    /// Allocates a PAT/PrAT/GrAT record id.
    pub fn next_token_id(&mut self) -> u64 {
        bump(&mut self.next_token)
    }
    /// Allocates a deploy token id.
    pub fn next_deploy_id(&mut self) -> u64 {
        bump(&mut self.next_deploy)
    }

    /// User by username (case-insensitive).
    pub fn user_by_name(&self, username: &str) -> Option<&User> {
        self.users
            .values()
            .find(|u| u.username.eq_ignore_ascii_case(username))
    }

    /// Adds a group (its parent must already be stored) and indexes its path.
    pub fn insert_group(&mut self, group: Group) {
        self.group_paths.insert(group.full_path.to_lowercase(), group.id);
        self.groups.insert(group.id, group);
    }

    /// Adds a project (its group must already be stored) and indexes its path.
    pub fn insert_project(&mut self, project: Project) {
        self.project_paths
            .insert(self.project_path(&project).to_lowercase(), project.id);
        self.projects.insert(project.id, project);
    }

    /// Group by numeric id or full path (case-insensitive).
    pub fn find_group(&self, key: &str) -> Option<&Group> {
        let id = match key.parse::<u64>() {
            Ok(id) => id,
            Err(_) => *self.group_paths.get(&key.to_lowercase())?,
        };
        self.groups.get(&id)
    }

    /// Project by numeric id or full path (case-insensitive).
    pub fn find_project(&self, key: &str) -> Option<&Project> {
        let id = match key.parse::<u64>() {
            Ok(id) => id,
            Err(_) => *self.project_paths.get(&key.to_lowercase())?,
        };
        self.projects.get(&id)
    }

    /// `path_with_namespace` of a project.
    pub fn project_path(&self, p: &Project) -> String {
        match self.groups.get(&p.namespace_id) {
            Some(g) => format!("{}/{}", g.full_path, p.path),
            None => p.path.clone(),
        }
    }

    /// `name_with_namespace` of a project (`Acme / Platform / infra`).
    pub fn project_name_with_namespace(&self, p: &Project) -> String {
        let mut names: Vec<String> = self
            .group_chain(p.namespace_id)
            .iter()
            .rev()
            .map(|g| g.name.clone())
            .collect();
        names.push(p.name.clone());
        names.join(" / ")
    }

    /// Full display name of a group (`Acme / Platform`).
    pub fn group_full_name(&self, group_id: u64) -> String {
        let names: Vec<String> = self
            .group_chain(group_id)
            .iter()
            .rev()
            .map(|g| g.name.clone())
            .collect();
        names.join(" / ")
    }

    /// The group and its ancestors, innermost first.
    pub fn group_chain(&self, group_id: u64) -> Vec<&Group> {
        let mut chain = Vec::new();
        let mut next = Some(group_id);
        while let Some(id) = next {
            let Some(g) = self.groups.get(&id) else { break };
            if chain.iter().any(|c: &&Group| c.id == g.id) {
                break;
            }
            chain.push(g);
            next = g.parent_id;
        }
        chain
    }

    /// Whether `group_id` is `ancestor` or lies below it.
    pub fn group_within(&self, group_id: u64, ancestor: u64) -> bool {
        self.group_chain(group_id).iter().any(|g| g.id == ancestor)
    }

    /// Adds or replaces a direct membership (without an expiry date).
    pub fn set_member(&mut self, membership: Membership) {
        self.sharing
            .set_member_expiry(membership.user_id, membership.source, None);
        self.members
            .insert((membership.user_id, membership.source), membership);
    }

    /// Removes a direct membership; false when there was none.
    pub fn remove_member(&mut self, user_id: u64, source: Source) -> bool {
        self.sharing.set_member_expiry(user_id, source, None);
        self.members.remove(&(user_id, source)).is_some()
    }

    /// A direct membership still in force (not past its expiry date).
    pub fn direct_member(&self, user_id: u64, source: Source) -> Option<&Membership> {
        let today = self.today();
        self.members
            .get(&(user_id, source))
            .filter(|m| self.in_force(m, today))
    }

    /// Whether a membership has not reached its expiry date (`expires_at` ≤ today ends it).
    fn in_force(&self, m: &Membership, today: NaiveDate) -> bool {
        self.sharing
            .member_expiry(m.user_id, m.source)
            .is_none_or(|d| today < d)
    }

    /// A user's direct memberships still in force.
    pub fn memberships_of(&self, user_id: u64) -> impl Iterator<Item = &Membership> {
        let today = self.today();
        self.members
            .range((user_id, Source::Project(0))..=(user_id, Source::Group(u64::MAX)))
            .map(|(_, m)| m)
            .filter(move |m| self.in_force(m, today))
    }

    /// Direct membership level of a user on a source (0 when none or expired).
    pub fn direct_level(&self, user_id: u64, source: Source) -> u32 {
        self.direct_member(user_id, source)
            .map(|m| m.access_level)
            .unwrap_or(0)
    }

    /// Effective level: direct, inherited from ancestor groups, or through shares (capped at the
    /// share's level); the highest wins (`groups::group_level`/`project_level`).
    pub fn effective_level(&self, user_id: u64, source: Source) -> u32 {
        match source {
            Source::Project(pid) => self.project_level(user_id, pid),
            Source::Group(gid) => self.group_level(user_id, gid),
        }
    }

    /// Whether a (possibly anonymous) user can see a project.
    pub fn can_see_project(&self, user: Option<&User>, p: &Project) -> bool {
        match user {
            None => p.visibility == "public",
            Some(u) => {
                u.is_admin
                    || p.visibility != "private"
                    || self.effective_level(u.id, Source::Project(p.id)) >= GUEST
            }
        }
    }

    /// Whether a (possibly anonymous) user can see a group: public/internal visibility, an
    /// inherited membership, or a membership somewhere below it.
    pub fn can_see_group(&self, user: Option<&User>, g: &Group) -> bool {
        match user {
            None => g.visibility == "public",
            Some(u) => {
                u.is_admin
                    || g.visibility != "private"
                    || self.effective_level(u.id, Source::Group(g.id)) >= GUEST
                    || self
                        .memberships_of(u.id)
                        .any(|m| self.source_within(m.source, g.id))
            }
        }
    }

    fn source_within(&self, source: Source, group_id: u64) -> bool {
        match source {
            Source::Group(id) => self.group_within(id, group_id),
            Source::Project(pid) => self
                .projects
                .get(&pid)
                .is_some_and(|p| self.group_within(p.namespace_id, group_id)),
        }
    }

    /// Bot users that belong to a project or group's access tokens.
    pub fn is_bot(&self, user_id: u64) -> bool {
        self.users
            .get(&user_id)
            .is_some_and(|u| u.user_type == UserType::ProjectBot)
    }

    /// Projects in a group, optionally including subgroups.
    pub fn group_projects(&self, group_id: u64, include_subgroups: bool) -> Vec<&Project> {
        self.projects
            .values()
            .filter(|p| {
                p.namespace_id == group_id
                    || (include_subgroups && self.group_within(p.namespace_id, group_id))
            })
            .collect()
    }
}

fn bump(counter: &mut u64) -> u64 {
    let id = *counter;
    *counter += 1;
    id
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::gitlab::model::{DEVELOPER, MAINTAINER, OWNER, REPORTER};

    fn world() -> Store {
        let now = Utc::now();
        let mut s = Store::default();
        let group = |id, path: &str, parent| Group {
            id,
            name: path.into(),
            path: path.rsplit('/').next().unwrap_or(path).into(),
            full_path: path.into(),
            parent_id: parent,
            visibility: "private".into(),
            description: String::new(),
            created_at: now,
        };
        s.insert_group(group(10, "acme", None));
        s.insert_group(group(11, "acme/team", Some(10)));
        s.insert_group(group(12, "other", None));
        for (id, ns, path, visibility) in [(100, 11, "app", "private"), (101, 12, "pub", "public")] {
            s.insert_project(Project {
                id,
                name: path.into(),
                path: path.into(),
                namespace_id: ns,
                visibility: visibility.into(),
                archived: false,
                default_branch: "main".into(),
                description: String::new(),
                images: vec![],
                has_repository: true,
                has_chart: false,
                created_at: now,
            });
        }
        for (user, source, level) in [
            (1, Source::Group(10), OWNER),
            (2, Source::Group(11), DEVELOPER),
            (2, Source::Project(100), MAINTAINER),
            (3, Source::Project(100), REPORTER),
        ] {
            s.set_member(Membership {
                source,
                user_id: user,
                access_level: level,
                created_at: now,
            });
        }
        s
    }

    #[test]
    fn effective_levels_inherit_and_take_the_highest() {
        let s = world();
        let cases = [
            (1, Source::Project(100), OWNER),
            (1, Source::Group(11), OWNER),
            (2, Source::Project(100), MAINTAINER),
            (2, Source::Group(10), 0),
            (3, Source::Group(11), 0),
            (1, Source::Project(101), 0),
        ];
        for (user, source, level) in cases {
            assert_eq!(s.effective_level(user, source), level, "{user} {source:?}");
        }
        assert_eq!(s.direct_level(1, Source::Project(100)), 0);
    }

    #[test]
    fn paths_resolve_case_insensitively_and_by_id() {
        let s = world();
        assert_eq!(s.find_project("ACME/Team/App").map(|p| p.id), Some(100));
        assert_eq!(s.find_project("100").map(|p| p.id), Some(100));
        assert!(s.find_project("acme/team").is_none());
        assert_eq!(s.find_group("acme/TEAM").map(|g| g.id), Some(11));
        assert_eq!(s.project_path(&s.projects[&100]), "acme/team/app");
    }

    #[test]
    fn visibility_follows_membership_below_and_public_flags() {
        let s = world();
        let user = |id| User {
            id,
            username: format!("u{id}"),
            name: String::new(),
            user_type: crate::gitlab::model::UserType::Human,
            is_admin: false,
            created_at: Utc::now(),
        };
        let (app, public) = (&s.projects[&100], &s.projects[&101]);
        assert!(s.can_see_project(Some(&user(3)), app));
        assert!(!s.can_see_project(Some(&user(4)), app));
        assert!(s.can_see_project(None, public) && !s.can_see_project(None, app));
        // A project member sees the ancestor groups, not unrelated ones.
        assert!(s.can_see_group(Some(&user(3)), &s.groups[&10]));
        assert!(!s.can_see_group(Some(&user(3)), &s.groups[&12]));
    }
}
