//! The in-memory GitLab database: entities, id sequences, path resolution, memberships
//! (inherited through groups, highest level wins) and visibility.

use std::collections::{BTreeMap, HashMap};

use super::model::{DeployToken, GUEST, Group, Membership, Project, Source, Token, User, UserType};

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
    /// Direct memberships.
    pub members: Vec<Membership>,
    /// PAT/PrAT/GrAT records by id.
    pub tokens: BTreeMap<u64, Token>,
    /// Deploy tokens by id.
    pub deploy_tokens: BTreeMap<u64, DeployToken>,
    /// Token digest index.
    pub digests: HashMap<[u8; 32], Credential>,
    /// Lower-cased full path → group id.
    group_paths: HashMap<String, u64>,
    /// Lower-cased `path_with_namespace` → project id.
    project_paths: HashMap<String, u64>,
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
            members: Vec::new(),
            tokens: BTreeMap::new(),
            deploy_tokens: BTreeMap::new(),
            digests: HashMap::new(),
            group_paths: HashMap::new(),
            project_paths: HashMap::new(),
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

    /// Direct membership level of a user on a source (0 when none).
    pub fn direct_level(&self, user_id: u64, source: Source) -> u32 {
        self.members
            .iter()
            .filter(|m| m.user_id == user_id && m.source == source)
            .map(|m| m.access_level)
            .max()
            .unwrap_or(0)
    }

    /// Effective level: direct plus inherited from ancestor groups, highest wins.
    pub fn effective_level(&self, user_id: u64, source: Source) -> u32 {
        let groups: Vec<u64> = match source {
            Source::Project(pid) => match self.projects.get(&pid) {
                Some(p) => self.group_chain(p.namespace_id).iter().map(|g| g.id).collect(),
                None => return 0,
            },
            Source::Group(gid) => self.group_chain(gid).iter().map(|g| g.id).collect(),
        };
        let inherited = groups
            .into_iter()
            .map(|g| self.direct_level(user_id, Source::Group(g)))
            .max();
        self.direct_level(user_id, source).max(inherited.unwrap_or(0))
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
                        .members
                        .iter()
                        .any(|m| m.user_id == u.id && self.source_within(m.source, g.id))
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
