//! [`ProjectCache`]: one connection's project lookups (`GET /projects/:id`), so that issuing a
//! token costs no project read when its project was seen recently (GitLab.com allows 400 such
//! reads a minute per user).
//!
//! Entries are keyed by what callers ask for (a numeric id, or a full path compared
//! case-insensitively, as GitLab does) and every answer is also filed under the project's id and
//! canonical path. A 404 is cached briefly (a project created a moment later is found soon); other
//! failures are never cached. Concurrent misses of one key make a single GitLab call. Callers
//! force a fresh read where a rename or transfer matters: at renewal, and when a token call for
//! the project answered 404 ([`Freshness::Refresh`]).

use std::{
    collections::HashMap,
    future::Future,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use super::{GitLabError, Project, ratelimit::Monotonic};

/// How fresh a lookup must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// A cached answer (found, or a recent 404) will do.
    Cached,
    /// Ask GitLab now (renewal, or a 404 from a token call: the project may have been renamed,
    /// transferred or deleted); the answer replaces the cached one.
    Refresh,
}

/// How long answers are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProjectCacheConfig {
    /// A found project.
    pub ttl: Duration,
    /// A 404.
    pub not_found_ttl: Duration,
    /// Most keys kept; past it, expired entries go first, then the oldest.
    pub max_entries: usize,
}

impl Default for ProjectCacheConfig {
    /// Found projects for an hour (renewal and 404s refresh sooner), 404s for a minute, 50,000 keys.
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(3600),
            not_found_ttl: Duration::from_secs(60),
            max_entries: 50_000,
        }
    }
}

/// Counters of a cache, for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProjectCacheStats {
    /// Answered from the cache (found projects and cached 404s).
    pub hits: u64,
    /// Asked GitLab because nothing usable was cached.
    pub misses: u64,
    /// Asked GitLab because the caller said [`Freshness::Refresh`].
    pub refreshes: u64,
}

#[derive(Debug, Clone)]
enum Answer {
    Found(Arc<Project>),
    NotFound(GitLabError),
}

#[derive(Debug, Clone)]
struct Entry {
    answer: Answer,
    at: Instant,
    /// Which fetch filed it (increasing), so a refresh can tell answers fetched after it asked.
    seq: u64,
}

/// The project lookups of one connection (shared by every reconcile using it).
#[derive(Debug)]
pub struct ProjectCache {
    config: ProjectCacheConfig,
    clock: Arc<dyn Monotonic>,
    entries: Mutex<HashMap<String, Entry>>,
    in_flight: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    seq: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    refreshes: AtomicU64,
}

/// The cache key of a project reference: an id as is, a path trimmed of slashes and lowercased.
pub fn project_key(project: &str) -> String {
    project.trim().trim_matches('/').to_lowercase()
}

impl ProjectCache {
    /// An empty cache on `clock`.
    pub fn new(config: ProjectCacheConfig, clock: Arc<dyn Monotonic>) -> Self {
        Self {
            config,
            clock,
            entries: Mutex::default(),
            in_flight: Mutex::default(),
            seq: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            refreshes: AtomicU64::new(0),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The counters so far.
    pub fn stats(&self) -> ProjectCacheStats {
        ProjectCacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            refreshes: self.refreshes.load(Ordering::Relaxed),
        }
    }

    /// A usable cached answer for `key` (already normalised), if any.
    fn cached(&self, key: &str) -> Option<Result<Arc<Project>, GitLabError>> {
        let now = self.clock.now();
        let entries = self.entries();
        let entry = entries.get(key)?;
        let ttl = match entry.answer {
            Answer::Found(_) => self.config.ttl,
            Answer::NotFound(_) => self.config.not_found_ttl,
        };
        if now.saturating_duration_since(entry.at) >= ttl {
            return None;
        }
        Some(match &entry.answer {
            Answer::Found(p) => Ok(p.clone()),
            Answer::NotFound(e) => Err(e.clone()),
        })
    }

    /// Files GitLab's answer for `key`; a found project also under its id and canonical path.
    fn store(&self, key: &str, answer: &Result<Arc<Project>, GitLabError>) {
        let at = self.clock.now();
        let seq = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
        let mut entries = self.entries();
        if entries.len() >= self.config.max_entries {
            self.evict(&mut entries, at);
        }
        match answer {
            Ok(project) => {
                let entry = Entry {
                    answer: Answer::Found(project.clone()),
                    at,
                    seq,
                };
                for k in [
                    key.to_string(),
                    project.id.to_string(),
                    project_key(&project.path_with_namespace),
                ] {
                    entries.insert(k, entry.clone());
                }
            }
            Err(e @ GitLabError::NotFound { .. }) => {
                entries.insert(
                    key.to_string(),
                    Entry {
                        answer: Answer::NotFound(e.clone()),
                        at,
                        seq,
                    },
                );
            }
            Err(_) => {}
        }
    }

    fn evict(&self, entries: &mut HashMap<String, Entry>, now: Instant) {
        let (ttl, nf) = (self.config.ttl, self.config.not_found_ttl);
        entries.retain(|_, e| {
            let limit = match e.answer {
                Answer::Found(_) => ttl,
                Answer::NotFound(_) => nf,
            };
            now.saturating_duration_since(e.at) < limit
        });
        if entries.len() >= self.config.max_entries {
            let mut ages: Vec<(Instant, String)> = entries.iter().map(|(k, e)| (e.at, k.clone())).collect();
            ages.sort();
            for (_, k) in ages.into_iter().take(entries.len() / 2 + 1) {
                entries.remove(&k);
            }
        }
    }

    /// Drops what is cached for `project` (an id or a path), e.g. after GitLab said 404 for it.
    pub fn invalidate(&self, project: &str) {
        let key = project_key(project);
        let mut entries = self.entries();
        if let Some(Entry {
            answer: Answer::Found(p),
            ..
        }) = entries.remove(&key)
        {
            entries.remove(&p.id.to_string());
            entries.remove(&project_key(&p.path_with_namespace));
        }
    }

    /// Resolves `project` (an id or a full path): from the cache when `freshness` allows and an
    /// answer is fresh, else with `fetch` (the GitLab call), whose answer is cached. Concurrent
    /// callers missing the same key wait for one `fetch`.
    pub async fn resolve<F, Fut>(
        &self,
        project: &str,
        freshness: Freshness,
        fetch: F,
    ) -> Result<Arc<Project>, GitLabError>
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = Result<Project, GitLabError>>,
    {
        let key = project_key(project);
        if freshness == Freshness::Cached
            && let Some(answer) = self.cached(&key)
        {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return answer;
        }
        let lock = {
            let mut in_flight = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
            in_flight.entry(key.clone()).or_default().clone()
        };
        let asked = self.seq.load(Ordering::SeqCst);
        let _turn = lock.lock().await;
        // Someone else may have fetched while this caller waited: a refresh needs an answer
        // fetched after it asked, a cached lookup any fresh one.
        let fresh_enough = |e: &Entry| freshness == Freshness::Cached || e.seq > asked;
        if self.entries().get(&key).is_some_and(fresh_enough)
            && let Some(answer) = self.cached(&key)
        {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return answer;
        }
        match freshness {
            Freshness::Cached => self.misses.fetch_add(1, Ordering::Relaxed),
            Freshness::Refresh => self.refreshes.fetch_add(1, Ordering::Relaxed),
        };
        let answer = fetch(project.trim().trim_matches('/').to_string())
            .await
            .map(Arc::new);
        if freshness == Freshness::Refresh && answer.is_err() {
            self.invalidate(&key);
        }
        self.store(&key, &answer);
        drop(_turn);
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        if in_flight.get(&key).is_some_and(|l| Arc::strong_count(l) <= 2) {
            in_flight.remove(&key);
        }
        answer
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;
    use crate::gitlab::ratelimit::ManualMonotonic;

    fn project(id: u64, path: &str) -> Project {
        serde_json::from_value(serde_json::json!({"id": id, "path_with_namespace": path})).unwrap()
    }

    fn not_found() -> GitLabError {
        GitLabError::NotFound {
            message: "404 Project Not Found".into(),
        }
    }

    /// A fake GitLab: `path → project`, counting calls.
    struct Fake {
        projects: Mutex<HashMap<String, Project>>,
        calls: AtomicUsize,
    }

    impl Fake {
        fn new(list: &[(u64, &str)]) -> Arc<Self> {
            let mut projects = HashMap::new();
            for (id, path) in list {
                projects.insert(path.to_lowercase(), project(*id, path));
                projects.insert(id.to_string(), project(*id, path));
            }
            Arc::new(Self {
                projects: Mutex::new(projects),
                calls: AtomicUsize::new(0),
            })
        }

        async fn get(self: Arc<Self>, key: String) -> Result<Project, GitLabError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            tokio::task::yield_now().await;
            self.projects
                .lock()
                .unwrap()
                .get(&key.to_lowercase())
                .cloned()
                .ok_or_else(not_found)
        }

        fn rename(&self, id: u64, from: &str, to: &str) {
            let mut p = self.projects.lock().unwrap();
            p.remove(from);
            p.insert(to.into(), project(id, to));
            p.insert(id.to_string(), project(id, to));
        }

        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }
    }

    fn cache() -> (ProjectCache, Arc<ManualMonotonic>) {
        let clock = ManualMonotonic::new();
        (
            ProjectCache::new(ProjectCacheConfig::default(), clock.clone()),
            clock,
        )
    }

    #[tokio::test]
    async fn a_hit_costs_no_call_and_id_and_path_share_the_answer() {
        let (cache, _) = cache();
        let gl = Fake::new(&[(7, "acme/App")]);
        let p = cache
            .resolve("acme/app/", Freshness::Cached, |k| gl.clone().get(k))
            .await
            .unwrap();
        assert_eq!((p.id, p.path_with_namespace.as_str()), (7, "acme/App"));
        for key in ["acme/app", "ACME/App", "7"] {
            let again = cache
                .resolve(key, Freshness::Cached, |k| gl.clone().get(k))
                .await
                .unwrap();
            assert_eq!(again.id, 7, "{key}");
        }
        assert_eq!(gl.calls(), 1);
        assert_eq!(
            cache.stats(),
            ProjectCacheStats {
                hits: 3,
                misses: 1,
                refreshes: 0
            }
        );
    }

    #[tokio::test]
    async fn answers_expire_and_404s_are_cached_briefly() {
        let (cache, clock) = cache();
        let gl = Fake::new(&[(7, "acme/app")]);
        let get = |k| gl.clone().get(k);
        cache.resolve("acme/app", Freshness::Cached, get).await.unwrap();
        let missing = cache.resolve("acme/new", Freshness::Cached, get).await;
        assert_eq!(missing.unwrap_err().reason(), "NotFound");
        let missing = cache.resolve("acme/new", Freshness::Cached, get).await;
        assert_eq!(missing.unwrap_err().reason(), "NotFound");
        assert_eq!(gl.calls(), 2, "the second 404 came from the cache");
        gl.rename(8, "none", "acme/new");
        clock.advance(Duration::from_secs(61));
        assert_eq!(
            cache
                .resolve("acme/new", Freshness::Cached, get)
                .await
                .unwrap()
                .id,
            8,
            "a 404 is forgotten after a minute"
        );
        assert_eq!(gl.calls(), 3);
        cache.resolve("acme/app", Freshness::Cached, get).await.unwrap();
        assert_eq!(gl.calls(), 3, "a found project lives an hour");
        clock.advance(Duration::from_secs(3600));
        cache.resolve("acme/app", Freshness::Cached, get).await.unwrap();
        assert_eq!(gl.calls(), 4, "…and is read again after it");
    }

    #[tokio::test]
    async fn other_errors_are_never_cached() {
        let (cache, _) = cache();
        let calls = AtomicUsize::new(0);
        for _ in 0..2 {
            let err = cache
                .resolve("acme/app", Freshness::Cached, |_| async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Err(GitLabError::Timeout)
                })
                .await
                .unwrap_err();
            assert_eq!(err, GitLabError::Timeout);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_refresh_catches_a_rename() {
        let (cache, _) = cache();
        let gl = Fake::new(&[(7, "acme/app")]);
        let get = |k| gl.clone().get(k);
        cache.resolve("acme/app", Freshness::Cached, get).await.unwrap();
        gl.rename(7, "acme/app", "acme/renamed");
        // Cached: still the old answer, no call.
        let stale = cache.resolve("7", Freshness::Cached, get).await.unwrap();
        assert_eq!(stale.path_with_namespace, "acme/app");
        assert_eq!(gl.calls(), 1);
        // Renewal re-resolves by id: the new path, filed under it too.
        let fresh = cache.resolve("7", Freshness::Refresh, get).await.unwrap();
        assert_eq!(fresh.path_with_namespace, "acme/renamed");
        assert_eq!(gl.calls(), 2);
        let by_new_path = cache
            .resolve("acme/renamed", Freshness::Cached, get)
            .await
            .unwrap();
        assert_eq!(by_new_path.id, 7);
        assert_eq!(gl.calls(), 2);
        // A 404 on the old path (a token call said so) refreshes it: gone, and cached as gone.
        let old = cache.resolve("acme/app", Freshness::Refresh, get).await;
        assert_eq!(old.unwrap_err().reason(), "NotFound");
        assert_eq!(
            cache
                .resolve("acme/app", Freshness::Cached, get)
                .await
                .unwrap_err()
                .reason(),
            "NotFound"
        );
        assert_eq!(gl.calls(), 3);
        assert_eq!(cache.stats().refreshes, 2);
    }

    #[tokio::test]
    async fn concurrent_misses_make_one_call() {
        let (cache, _) = cache();
        let gl = Fake::new(&[(7, "acme/app")]);
        let lookups = (0..50).map(|_| cache.resolve("acme/app", Freshness::Cached, |k| gl.clone().get(k)));
        let answers = futures::future::join_all(lookups).await;
        assert!(answers.iter().all(|a| a.as_ref().is_ok_and(|p| p.id == 7)));
        assert_eq!(gl.calls(), 1);
        let stats = cache.stats();
        assert_eq!((stats.misses, stats.hits), (1, 49));
    }

    #[tokio::test]
    async fn the_cache_is_bounded() {
        let clock = ManualMonotonic::new();
        let config = ProjectCacheConfig {
            max_entries: 10,
            ..ProjectCacheConfig::default()
        };
        let cache = ProjectCache::new(config, clock.clone());
        for i in 0..40u64 {
            clock.advance(Duration::from_millis(1));
            let path = format!("acme/p-{i}");
            cache
                .resolve(&path, Freshness::Cached, |k| async move { Ok(project(i, &k)) })
                .await
                .unwrap();
            assert!(cache.entries().len() <= 12, "{} entries", cache.entries().len());
        }
    }
}
