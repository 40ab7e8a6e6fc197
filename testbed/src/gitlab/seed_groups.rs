//! Seeding shares (`Seeder::share`, `POST /-/testbed/seed` `shares`): a project or group shared
//! with a group at a level, optionally until a date.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::{
    model::Source,
    seed::{SeedError, Seeder},
};

/// A share of a project or group with a group (`project_group_links`, `group_group_links`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShareSeed {
    /// Full path of the shared project or group (a project wins if both exist).
    pub path: String,
    /// Full path of the invited group.
    pub group: String,
    /// The most the group's members get through the share; 0 removes the share.
    pub group_access: u32,
    /// The share ends on this date (00:00 UTC).
    #[serde(default)]
    pub expires_at: Option<NaiveDate>,
}

impl Seeder {
    /// Shares a project or group with a group (replacing an existing share), or removes the
    /// share when `group_access` is 0.
    pub fn share(&self, seed: ShareSeed) -> Result<(), SeedError> {
        if ![0, 10, 15, 20, 30, 40, 50].contains(&seed.group_access) {
            return Err(SeedError::Invalid(format!("group access {}", seed.group_access)));
        }
        let now = self.state().now();
        let mut store = self.state().store();
        let shared = match (store.find_project(&seed.path), store.find_group(&seed.path)) {
            (Some(p), _) => Source::Project(p.id),
            (None, Some(g)) => Source::Group(g.id),
            (None, None) => return Err(SeedError::UnknownSource(seed.path)),
        };
        let group = store
            .find_group(&seed.group)
            .map(|g| g.id)
            .ok_or(SeedError::UnknownGroup(seed.group.clone()))?;
        store.sharing.unshare(shared, group);
        if seed.group_access > 0 {
            store
                .sharing
                .share(shared, group, seed.group_access, seed.expires_at, now)
                .map_err(|e| SeedError::Invalid(e.to_string()))?;
        }
        Ok(())
    }
}
