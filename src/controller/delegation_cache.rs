//! GitLab's answers about delegating policies' identities (issue 11), cached per connection and
//! shared by every token, every re-check and `check --online` (one home for the lookups).
//!
//! What is asked, per identity kind:
//! - a group identity: nothing when the project lies inside the group; else the project's
//!   `shared_with_groups` and each ancestor group's (`GET /groups/:id`, one answer per group for
//!   every project below it). The project's own shares come from one listing of its namespace
//!   (`GET /groups/:ns/projects?with_shared=false`, 100 projects a page) as soon as two watched
//!   projects share a namespace, else from `GET /projects/:id`;
//! - a user or service account: `GET /users?username=` (kept for an hour) and
//!   `GET /projects/:id/members/all/:user_id` (GitLab computes inheritance and shares itself).
//!
//! Every answer records the tokens that used it. [`DelegationCache::refresh_one`] re-asks GitLab
//! for each answer once per re-check interval, on a slot of its own within the interval (so the
//! re-checks of many answers are spread, not bunched), and returns the tokens to reconcile when
//! the answer changed: one call per answer and interval, whatever the number of tokens.
//!
//! Failures (outage, rate limit, 5xx) are never cached and never change an answer: a GitLab
//! outage is never taken for withdrawn access.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Mutex,
    time::Duration,
};

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::mpsc;

use crate::{
    crd::AccessLevel,
    gitlab::{GitLabApi, GitLabError, SharedWithGroup},
    policy::delegation::{Identity, ShareLink, ancestor_groups, group_level_on_project, level_from_gitlab},
};

/// How long a user id looked up by username is kept (not re-asked by the refresher).
const USER_TTL: TimeDelta = TimeDelta::hours(1);

/// A token that used an answer: reconciled when the answer changes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenRef {
    /// The GitLabToken's namespace.
    pub namespace: String,
    /// The GitLabToken's name.
    pub name: String,
}

/// What one cached GitLab answer says.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Answer {
    /// A project's or group's live shares (empty: none, or the group is not visible).
    Shares(Vec<ShareLink>),
    /// A namespace's projects (lowercased full path → its shares) and the pages the listing
    /// took (0: the namespace is no group, e.g. a user's).
    Listing {
        projects: BTreeMap<String, Vec<ShareLink>>,
        pages: usize,
    },
    /// A username's user id (`None`: no such user).
    UserId(Option<u64>),
    /// A user's effective `access_level` on a project (0: not a member).
    Level(u32),
}

/// Which GitLab answer.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Key {
    ProjectShares(String),
    GroupShares(String),
    NamespaceProjects(String),
    User(String),
    Member(String, u64),
}

impl Key {
    /// Whether the refresher re-asks this answer every interval (a user id is only re-read
    /// when a token asks after an hour; a user namespace has nothing to list).
    fn refreshed(&self, answer: &Answer) -> bool {
        !matches!(self, Key::User(_)) && !matches!(answer, Answer::Listing { pages: 0, .. })
    }
}

/// One answer: when GitLab gave it, when it was last used, the tokens that used it (and when
/// they last did), and when a failed refresh is tried again.
#[derive(Debug)]
struct Entry {
    at: DateTime<Utc>,
    used: DateTime<Utc>,
    answer: Answer,
    dependents: HashMap<TokenRef, DateTime<Utc>>,
    /// The projects a namespace listing served (and when last), to weigh it against its pages.
    served: HashMap<String, DateTime<Utc>>,
    retry_at: Option<DateTime<Utc>>,
}

/// Cached GitLab answers for delegation, per connection, shared by every reconcile, with the
/// channel that wakes the tokens whose answer changed.
#[derive(Debug)]
pub struct DelegationCache {
    entries: Mutex<HashMap<(String, Key), Entry>>,
    /// The pages each namespace's listing took last (a listing is kept only while it serves at
    /// least as many watched projects as it costs calls).
    listing_pages: Mutex<HashMap<(String, String), usize>>,
    tx: mpsc::UnboundedSender<TokenRef>,
    rx: Mutex<Option<mpsc::UnboundedReceiver<TokenRef>>>,
}

impl Default for DelegationCache {
    fn default() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Self {
            entries: Mutex::default(),
            listing_pages: Mutex::default(),
            tx,
            rx: Mutex::new(Some(rx)),
        }
    }
}

/// The effective level an identity has on a project, and how it was found (for messages).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Effective {
    /// The role, as a token role (`None`: no access at all).
    pub level: Option<AccessLevel>,
    /// GitLab's raw `access_level` (50 for Owner, 0 for none).
    pub raw: u32,
}

/// What one refresh did.
#[derive(Debug)]
pub struct Refreshed {
    /// Whether GitLab's answer differs from the cached one.
    pub changed: bool,
    /// The tokens that used the answer (to reconcile when it changed).
    pub dependents: Vec<TokenRef>,
}

impl DelegationCache {
    /// The identity's effective level on `project_path` (answers younger than `max_age` reused).
    pub async fn effective(
        &self,
        connection: &str,
        api: &dyn GitLabApi,
        identity: &Identity,
        project_path: &str,
        now: DateTime<Utc>,
        max_age: TimeDelta,
    ) -> Result<Effective, GitLabError> {
        self.effective_for(connection, api, identity, project_path, now, max_age, None)
            .await
    }

    /// [`Self::effective`], recording `asker` as a user of every answer it took (so a change
    /// found by the refresher wakes it).
    #[allow(clippy::too_many_arguments)]
    pub async fn effective_for(
        &self,
        connection: &str,
        api: &dyn GitLabApi,
        identity: &Identity,
        project_path: &str,
        now: DateTime<Utc>,
        max_age: TimeDelta,
        asker: Option<&TokenRef>,
    ) -> Result<Effective, GitLabError> {
        let ask = Ask {
            cache: self,
            connection,
            api,
            now,
            max_age,
            asker,
        };
        let raw = match identity {
            Identity::Group(group) => {
                if group_level_on_project(group, project_path, [], now.date_naive()) > 0 {
                    50
                } else {
                    let mut links = ask.project_links(project_path).await?;
                    for ancestor in ancestor_groups(project_path) {
                        if let Answer::Shares(s) = ask.get(Key::GroupShares(ancestor), max_age).await? {
                            links.extend(s);
                        }
                    }
                    group_level_on_project(group, project_path, &links, now.date_naive())
                }
            }
            Identity::User(name) => match ask.get(Key::User(name.clone()), USER_TTL).await? {
                Answer::UserId(Some(id)) => {
                    match ask.get(Key::Member(project_path.into(), id), max_age).await? {
                        Answer::Level(l) => l,
                        _ => 0,
                    }
                }
                _ => 0,
            },
        };
        Ok(Effective {
            level: level_from_gitlab(raw),
            raw,
        })
    }

    /// The tokens whose answer changed, for the token controller (once; later calls get none).
    pub fn take_triggers(&self) -> Option<mpsc::UnboundedReceiver<TokenRef>> {
        self.rx.lock().ok().and_then(|mut r| r.take())
    }

    /// Wakes `tokens` (dropped when no token controller listens).
    pub fn wake(&self, tokens: impl IntoIterator<Item = TokenRef>) {
        for t in tokens {
            let _ = self.tx.send(t);
        }
    }

    /// When the next answer of `connection` falls due for its re-check (`None`: none cached).
    pub fn next_due(&self, connection: &str, interval: Duration) -> Option<DateTime<Utc>> {
        let entries = self.entries.lock().ok()?;
        entries
            .iter()
            .filter(|((c, k), e)| c == connection && k.refreshed(&e.answer))
            .map(|((c, k), e)| due_at(c, k, e, interval))
            .min()
    }

    /// Forgets the answers of connections that no longer exist (`known` says which do; one
    /// that is not usable for now keeps its answers and their tokens).
    pub fn retain_connections(&self, known: impl Fn(&str) -> bool) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.retain(|(c, _), _| known(c));
        }
    }

    /// How many answers of `connection` are cached and re-checked (for tests and metrics).
    pub fn refreshed_answers(&self, connection: &str) -> usize {
        self.entries.lock().map_or(0, |e| {
            e.iter()
                .filter(|((c, k), e)| c == connection && k.refreshed(&e.answer))
                .count()
        })
    }

    /// Re-asks GitLab for the most overdue answer of `connection` due at `now`, if any: first
    /// forgetting the tokens, and the answers, not used for three intervals (a delegated token
    /// uses its answers at least once an interval, see `delegation::cap_wait`). A namespace
    /// listing that serves fewer watched projects than it takes pages is dropped instead (its
    /// tokens woken to read their projects one by one). `Some(Err)`: GitLab failed; the answer
    /// stays as it was and is tried again a quarter interval later.
    pub async fn refresh_one(
        &self,
        connection: &str,
        api: &dyn GitLabApi,
        now: DateTime<Utc>,
        interval: Duration,
    ) -> Option<Result<Refreshed, GitLabError>> {
        let key = {
            let mut entries = self.entries.lock().ok()?;
            let stale = now - TimeDelta::from_std(interval * 3).unwrap_or(TimeDelta::hours(1));
            entries.retain(|(c, _), e| {
                if c == connection {
                    e.dependents.retain(|_, last| *last >= stale);
                    e.used >= stale
                } else {
                    true
                }
            });
            let key = entries
                .iter()
                .filter(|((c, k), e)| c == connection && k.refreshed(&e.answer))
                .map(|((c, k), e)| (due_at(c, k, e, interval), k.clone()))
                .filter(|(due, _)| *due <= now)
                .min()?
                .1;
            // A listing that costs more pages than the watched projects it serves gives way to
            // one read per project: its tokens are woken to ask those.
            let id = (connection.to_string(), key.clone());
            if let Some(e) = entries.get_mut(&id)
                && let Answer::Listing { pages, .. } = e.answer
            {
                e.served.retain(|_, last| *last >= stale);
                if e.served.len() < pages {
                    let dependents = e.dependents.keys().cloned().collect();
                    entries.remove(&id);
                    return Some(Ok(Refreshed {
                        changed: true,
                        dependents,
                    }));
                }
            }
            key
        };
        let fetched = fetch(api, &key).await;
        let mut entries = self.entries.lock().ok()?;
        let entry = entries.get_mut(&(connection.to_string(), key))?;
        Some(match fetched {
            Ok(answer) => {
                let changed = answer != entry.answer;
                entry.answer = answer;
                entry.at = now;
                entry.retry_at = None;
                Ok(Refreshed {
                    changed,
                    dependents: entry.dependents.keys().cloned().collect(),
                })
            }
            Err(e) => {
                let backoff = (interval / 4).max(Duration::from_secs(1));
                entry.retry_at = Some(now + TimeDelta::from_std(backoff).unwrap_or(TimeDelta::seconds(60)));
                Err(e)
            }
        })
    }

    fn cached(&self, connection: &str, key: &Key, now: DateTime<Utc>, max_age: TimeDelta) -> Option<Answer> {
        let entries = self.entries.lock().ok()?;
        let e = entries.get(&(connection.to_string(), key.clone()))?;
        (now >= e.at && now - e.at < max_age).then(|| e.answer.clone())
    }

    fn note(&self, connection: &str, key: &Key, asker: Option<&TokenRef>, now: DateTime<Utc>) {
        if let Ok(mut entries) = self.entries.lock()
            && let Some(e) = entries.get_mut(&(connection.to_string(), key.clone()))
        {
            e.used = e.used.max(now);
            if let Some(t) = asker {
                e.dependents.insert(t.clone(), now);
            }
        }
    }

    fn note_served(&self, connection: &str, key: &Key, project: &str, now: DateTime<Utc>) {
        if let Ok(mut entries) = self.entries.lock()
            && let Some(e) = entries.get_mut(&(connection.to_string(), key.clone()))
        {
            e.served.insert(project.to_ascii_lowercase(), now);
        }
    }

    fn store(&self, connection: &str, key: Key, now: DateTime<Utc>, answer: Answer) {
        if let (Key::NamespaceProjects(ns), Answer::Listing { pages, .. }) = (&key, &answer)
            && let Ok(mut sizes) = self.listing_pages.lock()
        {
            sizes.insert((connection.to_string(), ns.to_ascii_lowercase()), *pages);
        }
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        let mut dependents = HashMap::new();
        if let (Key::NamespaceProjects(ns), Answer::Listing { pages, .. }) = (&key, &answer)
            && *pages > 0
        {
            // The listing replaces the namespace's one-project answers: their tokens move over.
            let singles: Vec<(String, Key)> = entries
                .keys()
                .filter(|(c, k)| {
                    c == connection
                        && matches!(k, Key::ProjectShares(p) if parent(p).is_some_and(|n| n.eq_ignore_ascii_case(ns)))
                })
                .cloned()
                .collect();
            for single in singles {
                if let Some(e) = entries.remove(&single) {
                    dependents.extend(e.dependents);
                }
            }
        }
        let entry = entries
            .entry((connection.to_string(), key))
            .or_insert_with(|| Entry {
                at: now,
                used: now,
                answer: answer.clone(),
                dependents: HashMap::new(),
                served: HashMap::new(),
                retry_at: None,
            });
        entry.at = now;
        entry.answer = answer;
        entry.retry_at = None;
        entry.dependents.extend(dependents);
    }

    /// Whether one listing of `ns` is worth it: at least two watched projects share the
    /// namespace, and at least as many as the pages its last listing took.
    fn worth_listing(&self, connection: &str, ns: &str, project: &str) -> bool {
        let pages = self
            .listing_pages
            .lock()
            .ok()
            .and_then(|p| p.get(&(connection.to_string(), ns.to_ascii_lowercase())).copied())
            .unwrap_or(1);
        self.entries.lock().is_ok_and(|entries| {
            let others = entries
                .keys()
                .filter(|(c, k)| {
                    c == connection
                        && matches!(k, Key::ProjectShares(p)
                            if !p.eq_ignore_ascii_case(project) && parent(p).is_some_and(|n| n.eq_ignore_ascii_case(ns)))
                })
                .count();
            others + 1 >= pages.max(2)
        })
    }
}

/// One question to the cache: where answers come from and who asks.
struct Ask<'a> {
    cache: &'a DelegationCache,
    connection: &'a str,
    api: &'a dyn GitLabApi,
    now: DateTime<Utc>,
    max_age: TimeDelta,
    asker: Option<&'a TokenRef>,
}

impl Ask<'_> {
    /// The answer for `key`: cached when younger than `max_age`, else asked now.
    async fn get(&self, key: Key, max_age: TimeDelta) -> Result<Answer, GitLabError> {
        let answer = match self.cache.cached(self.connection, &key, self.now, max_age) {
            Some(a) => a,
            None => {
                let a = fetch(self.api, &key).await?;
                self.cache
                    .store(self.connection, key.clone(), self.now, a.clone());
                a
            }
        };
        self.cache.note(self.connection, &key, self.asker, self.now);
        Ok(answer)
    }

    /// The project's own shares: from its namespace's listing when there is one (or two
    /// watched projects make one worth it), else from the project.
    async fn project_links(&self, project: &str) -> Result<Vec<ShareLink>, GitLabError> {
        if let Some(ns) = parent(project) {
            let key = Key::NamespaceProjects(ns.to_string());
            let listed = self
                .cache
                .cached(self.connection, &key, self.now, self.max_age)
                .is_some();
            if listed || self.cache.worth_listing(self.connection, ns, project) {
                // A listing that does not hold the project (a user namespace, or a project
                // newer than the listing) falls back to the project's own answer.
                if let Answer::Listing { projects, .. } = self.get(key.clone(), self.max_age).await?
                    && let Some(links) = projects.get(&project.to_ascii_lowercase())
                {
                    self.cache.note_served(self.connection, &key, project, self.now);
                    return Ok(links.clone());
                }
            }
        }
        match self
            .get(Key::ProjectShares(project.to_string()), self.max_age)
            .await?
        {
            Answer::Shares(s) => Ok(s),
            _ => Ok(Vec::new()),
        }
    }
}

/// Asks GitLab for one answer (the one home of every delegation call).
async fn fetch(api: &dyn GitLabApi, key: &Key) -> Result<Answer, GitLabError> {
    Ok(match key {
        Key::ProjectShares(p) => Answer::Shares(links(&api.project(p).await?.shared_with_groups)),
        // A group the operator cannot see shares nothing it could know of.
        Key::GroupShares(g) => match api.group(g).await {
            Ok(g) => Answer::Shares(links(&g.shared_with_groups)),
            Err(GitLabError::NotFound { .. }) => Answer::Shares(Vec::new()),
            Err(e) => return Err(e),
        },
        Key::NamespaceProjects(ns) => match api.group_projects(ns).await {
            Ok(list) => Answer::Listing {
                pages: list.len().div_ceil(100).max(1),
                projects: list
                    .iter()
                    .map(|p| {
                        (
                            p.path_with_namespace.to_ascii_lowercase(),
                            links(&p.shared_with_groups),
                        )
                    })
                    .collect(),
            },
            Err(GitLabError::NotFound { .. }) => Answer::Listing {
                projects: BTreeMap::new(),
                pages: 0,
            },
            Err(e) => return Err(e),
        },
        Key::User(name) => Answer::UserId(api.user_by_username(name).await?.map(|u| u.id)),
        Key::Member(p, id) => match api.project_member_all(p, *id).await {
            Ok(m) => Answer::Level(m.access_level),
            Err(GitLabError::NotFound { .. }) => Answer::Level(0),
            Err(e) => return Err(e),
        },
    })
}

fn links(shares: &[SharedWithGroup]) -> Vec<ShareLink> {
    shares
        .iter()
        .map(|s| ShareLink {
            group_full_path: s.group_full_path.clone(),
            group_access_level: s.group_access_level,
            expires_at: s.expires_at,
        })
        .collect()
}

/// A project's namespace (`a/b/app` → `a/b`).
fn parent(project: &str) -> Option<&str> {
    project.rsplit_once('/').map(|(ns, _)| ns)
}

/// When an answer is next re-asked: after a failure, at its retry time; else at the first slot
/// of its own after it was fetched (slots repeat every interval at a phase taken from the
/// answer's key), so no answer is older than one interval at its re-check and the re-checks of
/// many answers spread over the interval.
fn due_at(connection: &str, key: &Key, entry: &Entry, interval: Duration) -> DateTime<Utc> {
    if let Some(retry) = entry.retry_at {
        return retry;
    }
    let period = i64::try_from(interval.as_millis()).unwrap_or(i64::MAX).max(1000);
    let phase = i64::try_from(crate::schedule::seed_from(&format!("{connection}/{key:?}")) % (period as u64))
        .unwrap_or_default();
    let at = entry.at.timestamp_millis();
    let into = (at - phase).rem_euclid(period);
    DateTime::from_timestamp_millis(at - into + period).unwrap_or(entry.at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(at: DateTime<Utc>) -> Entry {
        Entry {
            at,
            used: at,
            answer: Answer::Level(30),
            dependents: HashMap::new(),
            served: HashMap::new(),
            retry_at: None,
        }
    }

    #[test]
    fn answers_fall_due_on_their_own_slot_within_one_interval() {
        let interval = Duration::from_secs(300);
        let at = DateTime::from_timestamp(1_800_000_000, 0).expect("time");
        let mut dues = std::collections::BTreeSet::new();
        for p in 0..60 {
            let key = Key::Member(format!("acme/p{p}"), 7);
            let due = due_at("gitlab", &key, &entry(at), interval);
            assert!(due > at && due <= at + TimeDelta::seconds(300), "{due}");
            // Fetched again at its slot: due exactly one interval later.
            let again = due_at("gitlab", &key, &entry(due), interval);
            assert_eq!(again - due, TimeDelta::seconds(300));
            dues.insert(due.timestamp() / 10);
        }
        // Spread over the interval, not bunched.
        assert!(dues.len() >= 20, "{dues:?}");
        let mut failed = entry(at);
        failed.retry_at = Some(at + TimeDelta::seconds(75));
        assert_eq!(
            due_at("gitlab", &Key::GroupShares("acme".into()), &failed, interval),
            at + TimeDelta::seconds(75)
        );
    }

    #[test]
    fn user_ids_and_user_namespaces_are_not_refreshed() {
        assert!(!Key::User("a".into()).refreshed(&Answer::UserId(Some(1))));
        let none = Answer::Listing {
            projects: BTreeMap::new(),
            pages: 0,
        };
        assert!(!Key::NamespaceProjects("alice".into()).refreshed(&none));
        assert!(Key::GroupShares("acme".into()).refreshed(&Answer::Shares(vec![])));
    }
}
