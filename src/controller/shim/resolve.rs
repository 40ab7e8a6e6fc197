//! Registry paths to GitLab projects: the longest prefix of an OCI path that is a project,
//! looked up at most [`crate::shim::MAX_PROJECT_DEPTH`] − 1 times per path and cached per
//! connection and prefix, misses included, so one deep path cannot spend a connection's rate
//! budget that every namespace shares.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use crate::gitlab::{GitLabApi, GitLabError};

/// How long a found project is remembered (a rename is seen after this).
pub const HIT_TTL: Duration = Duration::from_secs(3600);
/// How long "no project here" is remembered (a project created later is seen after this).
pub const MISS_TTL: Duration = Duration::from_secs(300);
/// Most remembered prefixes; the cache starts over when full.
pub const MAX_ENTRIES: usize = 10_000;

/// (connection, prefix) → (`Some(canonical path)` or `None` for "not a project", when learnt).
type Entries = HashMap<(String, String), (Option<String>, Instant)>;

/// Lookup results by (connection, prefix), misses included.
#[derive(Default)]
pub struct ProjectCache {
    entries: Mutex<Entries>,
}

impl ProjectCache {
    /// A cached answer still fresh at `now`.
    fn get(&self, connection: &str, prefix: &str, now: Instant) -> Option<Option<String>> {
        let entries = self.entries.lock().ok()?;
        let (answer, at) = entries.get(&(connection.to_string(), prefix.to_string()))?;
        let ttl = if answer.is_some() { HIT_TTL } else { MISS_TTL };
        (now.duration_since(*at) < ttl).then(|| answer.clone())
    }

    fn put(&self, connection: &str, prefix: &str, answer: Option<String>, now: Instant) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
            entries.insert((connection.to_string(), prefix.to_string()), (answer, now));
        }
    }

    /// The longest of `candidates` (longest first) that GitLab knows as a project, asking
    /// GitLab only for prefixes without a fresh cached answer. `Ok(None)`: none is a project.
    pub async fn resolve(
        &self,
        connection: &str,
        api: &dyn GitLabApi,
        candidates: &[String],
    ) -> Result<Option<String>, GitLabError> {
        for candidate in candidates {
            match self.get(connection, candidate, Instant::now()) {
                Some(Some(hit)) => return Ok(Some(hit)),
                Some(None) => continue,
                None => {}
            }
            match api.project(candidate).await {
                Ok(p) => {
                    self.put(
                        connection,
                        candidate,
                        Some(p.path_with_namespace.clone()),
                        Instant::now(),
                    );
                    return Ok(Some(p.path_with_namespace));
                }
                Err(GitLabError::NotFound { .. }) => {
                    self.put(connection, candidate, None, Instant::now());
                }
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }
}
