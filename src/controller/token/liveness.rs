//! "Is the current token still alive?" answered per project, not per token: one list of a
//! project's active tokens serves every `GitLabToken` on that project for a while, so the
//! periodic check costs one GitLab call per project and interval, never one per token.

use std::{
    collections::{BTreeSet, HashMap},
    sync::Mutex,
};

use chrono::{DateTime, TimeDelta, Utc};

use super::ledger::Location;
use crate::gitlab::{GitLabApi, GitLabError};

/// One project's active token ids as GitLab listed them, and when.
#[derive(Clone, Debug)]
struct Listing {
    fetched_at: DateTime<Utc>,
    active: BTreeSet<u64>,
}

/// Active-token listings per connection and project, shared by every reconcile.
#[derive(Debug, Default)]
pub struct LivenessCache {
    listings: Mutex<HashMap<Location, Listing>>,
}

impl LivenessCache {
    /// Whether `token_id` (created at `created_at`) is active on `at`: from a listing younger
    /// than `max_age` taken after the token was created, else from a fresh list (one GitLab
    /// call, cached for every token on that project). A token missing from a cached listing is
    /// looked up once more in a fresh one before it is called dead.
    pub async fn is_active(
        &self,
        api: &dyn GitLabApi,
        at: &Location,
        token_id: u64,
        created_at: DateTime<Utc>,
        now: DateTime<Utc>,
        max_age: TimeDelta,
    ) -> Result<bool, GitLabError> {
        let cached = self
            .listings
            .lock()
            .ok()
            .and_then(|l| l.get(at).cloned())
            .filter(|l| (now - l.fetched_at) < max_age && l.fetched_at >= created_at && now >= l.fetched_at);
        if let Some(listing) = cached
            && listing.active.contains(&token_id)
        {
            return Ok(true);
        }
        let listed = api.list_active_credentials(at.kind, at.owner()).await?;
        let listing = Listing {
            fetched_at: now,
            active: listed.iter().filter(|t| t.active).map(|t| t.id).collect(),
        };
        let alive = listing.active.contains(&token_id);
        if let Ok(mut l) = self.listings.lock() {
            l.insert(at.clone(), listing);
        }
        Ok(alive)
    }
}
