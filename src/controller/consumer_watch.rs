//! Waking a token in an Overlap wait when one of its consumers changes, instead of polling: the
//! shims already watch every Flux source kind and Argo CD Applications; each change is passed here, and the tokens whose
//! overlap waits on that source (nudged, not finished) are reconciled at once. The token
//! controller still looks again after [`super::token::decide::OVERLAP_POLL`] as a safety net.
//!
//! Which tokens wait on which source is an index kept from the token watch ([`OverlapIndex`]),
//! so a source event costs a lookup, not a scan of every token.

use std::{
    collections::{HashMap, HashSet},
    sync::Mutex,
};

use futures::{Stream, StreamExt};
use kube::{ResourceExt, runtime::reflector::ObjectRef};
use tokio::sync::mpsc;

use crate::crd::GitLabToken;

/// A Flux source that changed: namespace, kind and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ConsumerChange {
    /// Its namespace.
    pub namespace: String,
    /// Its kind (`GitRepository`, …).
    pub kind: String,
    /// Its name.
    pub name: String,
}

/// The channel from the shim's source watchers to the token controller.
pub struct ConsumerChanges {
    tx: mpsc::UnboundedSender<ConsumerChange>,
    rx: Mutex<Option<mpsc::UnboundedReceiver<ConsumerChange>>>,
    /// The tokens in an Overlap wait, by the sources they wait on.
    pub waiting: std::sync::Arc<OverlapIndex>,
}

/// Tokens in an Overlap wait (nudged, previous not retired), by each consumer they wait on.
#[derive(Default)]
pub struct OverlapIndex {
    inner: Mutex<IndexMaps>,
}

#[derive(Default)]
struct IndexMaps {
    by_source: HashMap<ConsumerChange, HashSet<ObjectRef<GitLabToken>>>,
    by_token: HashMap<ObjectRef<GitLabToken>, Vec<ConsumerChange>>,
}

impl OverlapIndex {
    /// Records the token as it is now (from the token watch): indexed under its consumers while
    /// it waits, removed otherwise.
    pub fn observe(&self, token: &GitLabToken) {
        let key = ObjectRef::from_obj(token);
        let sources = if in_overlap_wait(token) {
            consumers_of(token)
        } else {
            Vec::new()
        };
        let Ok(mut maps) = self.inner.lock() else {
            return;
        };
        maps.replace(key, sources);
    }

    /// Forgets a deleted token.
    pub fn forget(&self, token: &GitLabToken) {
        if let Ok(mut maps) = self.inner.lock() {
            maps.replace(ObjectRef::from_obj(token), Vec::new());
        }
    }

    /// The tokens waiting on `source`.
    pub fn waiting_on(&self, source: &ConsumerChange) -> Vec<ObjectRef<GitLabToken>> {
        self.inner
            .lock()
            .ok()
            .and_then(|m| m.by_source.get(source).map(|s| s.iter().cloned().collect()))
            .unwrap_or_default()
    }
}

impl IndexMaps {
    fn replace(&mut self, key: ObjectRef<GitLabToken>, sources: Vec<ConsumerChange>) {
        for old in self.by_token.remove(&key).unwrap_or_default() {
            if let Some(set) = self.by_source.get_mut(&old) {
                set.remove(&key);
                if set.is_empty() {
                    self.by_source.remove(&old);
                }
            }
        }
        if sources.is_empty() {
            return;
        }
        for source in &sources {
            self.by_source
                .entry(source.clone())
                .or_default()
                .insert(key.clone());
        }
        self.by_token.insert(key, sources);
    }
}

impl Default for ConsumerChanges {
    fn default() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Self {
            tx,
            rx: Mutex::new(Some(rx)),
            waiting: Default::default(),
        }
    }
}

impl ConsumerChanges {
    /// Reports a change of a source (dropped when no token controller listens).
    pub fn notify(&self, change: ConsumerChange) {
        let _ = self.tx.send(change);
    }

    /// The tokens to reconcile, for the token controller (once; later calls get nothing). The
    /// token watch must feed [`Self::waiting`].
    pub fn token_triggers(&self) -> impl Stream<Item = ObjectRef<GitLabToken>> + Send + use<> {
        let rx = self.rx.lock().ok().and_then(|mut r| r.take());
        let waiting = self.waiting.clone();
        let changes = match rx {
            Some(rx) => tokio_stream::wrappers::UnboundedReceiverStream::new(rx).boxed(),
            None => futures::stream::empty().boxed(),
        };
        changes.flat_map(move |change| futures::stream::iter(waiting.waiting_on(&change)))
    }
}

/// Whether `token` is in an Overlap wait: nudged, previous not retired.
fn in_overlap_wait(token: &GitLabToken) -> bool {
    token
        .status
        .as_ref()
        .and_then(|s| s.previous.as_ref())
        .is_some_and(|p| p.nudged_at.is_some())
}

/// The sources `token` names as consumers (an Argo CD Application may live in another
/// namespace than its token).
fn consumers_of(token: &GitLabToken) -> Vec<ConsumerChange> {
    let own_namespace = token.namespace().unwrap_or_default();
    token
        .spec
        .consumers
        .iter()
        .map(|c| ConsumerChange {
            namespace: c.namespace.clone().unwrap_or_else(|| own_namespace.clone()),
            kind: c.kind.clone(),
            name: c.name.clone(),
        })
        .collect()
}

/// Whether `token` is in an Overlap wait (nudged, previous not retired) on the changed source.
pub fn waits_on(token: &GitLabToken, change: &ConsumerChange) -> bool {
    in_overlap_wait(token) && consumers_of(token).contains(change)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{GitLabTokenStatus, PreviousToken};

    fn token(nudged: bool) -> GitLabToken {
        let mut t: GitLabToken = serde_json::from_value(serde_json::json!({
            "apiVersion": "gitlabtokens.io/v1alpha1", "kind": "GitLabToken",
            "metadata": {"name": "app-gitlab-token", "namespace": "team-a"},
            "spec": {"project": "acme/app", "scopes": ["read_repository"], "secret": {"name": "app-gitlab-token", "format": "basic-auth"},
                     "consumers": [{"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository", "name": "app"}]}
        }))
        .expect("token");
        t.status = Some(GitLabTokenStatus {
            previous: Some(PreviousToken {
                token_id: 1,
                connection: None,
                project_id: None,
                revoke_after: chrono::Utc::now(),
                nudged_at: nudged.then(chrono::Utc::now),
                replaced_at: None,
                kind: Default::default(),
                group_id: None,
            }),
            ..Default::default()
        });
        t
    }

    fn change(ns: &str, kind: &str, name: &str) -> ConsumerChange {
        ConsumerChange {
            namespace: ns.into(),
            kind: kind.into(),
            name: name.into(),
        }
    }

    #[test]
    fn only_a_nudged_overlap_on_that_source_is_woken() {
        let waiting = token(true);
        assert!(waits_on(&waiting, &change("team-a", "GitRepository", "app")));
        assert!(
            !waits_on(&waiting, &change("team-b", "GitRepository", "app")),
            "another namespace"
        );
        assert!(
            !waits_on(&waiting, &change("team-a", "OCIRepository", "app")),
            "another kind"
        );
        assert!(
            !waits_on(&waiting, &change("team-a", "GitRepository", "web")),
            "another source"
        );
        assert!(
            !waits_on(&token(false), &change("team-a", "GitRepository", "app")),
            "not nudged yet"
        );
        let mut done = token(true);
        done.status = Some(GitLabTokenStatus::default());
        assert!(
            !waits_on(&done, &change("team-a", "GitRepository", "app")),
            "no overlap"
        );
    }

    #[test]
    fn the_index_follows_each_token_into_and_out_of_its_wait() {
        let index = OverlapIndex::default();
        let app = change("team-a", "GitRepository", "app");
        index.observe(&token(false));
        assert!(index.waiting_on(&app).is_empty(), "not nudged yet");
        let waiting = token(true);
        index.observe(&waiting);
        assert_eq!(index.waiting_on(&app), vec![ObjectRef::from_obj(&waiting)]);
        assert!(
            index
                .waiting_on(&change("team-b", "GitRepository", "app"))
                .is_empty()
        );
        let mut done = token(true);
        done.status = Some(GitLabTokenStatus::default());
        index.observe(&done);
        assert!(index.waiting_on(&app).is_empty(), "the overlap finished");
        index.observe(&waiting);
        index.forget(&waiting);
        assert!(index.waiting_on(&app).is_empty(), "deleted");
        let maps = index.inner.lock().unwrap();
        assert!(
            maps.by_source.is_empty() && maps.by_token.is_empty(),
            "nothing left behind"
        );
    }
}
