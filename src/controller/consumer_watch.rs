//! Waking a token in an Overlap wait when one of its consumers changes, instead of polling: the
//! shims already watch every Flux source kind and Argo CD Applications; each change is passed here, and the tokens whose
//! overlap waits on that source (nudged, not finished) are reconciled at once. The token
//! controller still looks again after [`super::token::decide::OVERLAP_POLL`] as a safety net.

use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt};
use kube::{
    ResourceExt,
    runtime::reflector::{ObjectRef, Store},
};
use tokio::sync::mpsc;

use crate::crd::GitLabToken;

/// A Flux source that changed: namespace, kind and name.
#[derive(Clone, Debug, PartialEq, Eq)]
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
}

impl Default for ConsumerChanges {
    fn default() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Self {
            tx,
            rx: Mutex::new(Some(rx)),
        }
    }
}

impl ConsumerChanges {
    /// Reports a change of a source (dropped when no token controller listens).
    pub fn notify(&self, change: ConsumerChange) {
        let _ = self.tx.send(change);
    }

    /// The tokens to reconcile, for the token controller (once; later calls get nothing).
    pub fn token_triggers(
        &self,
        tokens: Store<GitLabToken>,
    ) -> impl Stream<Item = ObjectRef<GitLabToken>> + Send + use<> {
        let rx = self.rx.lock().ok().and_then(|mut r| r.take());
        let tokens = Arc::new(tokens);
        let changes = match rx {
            Some(rx) => tokio_stream::wrappers::UnboundedReceiverStream::new(rx).boxed(),
            None => futures::stream::empty().boxed(),
        };
        changes.flat_map(move |change| {
            let waiting: Vec<ObjectRef<GitLabToken>> = tokens
                .state()
                .iter()
                .filter(|t| waits_on(t, &change))
                .map(|t| ObjectRef::from_obj(t.as_ref()))
                .collect();
            futures::stream::iter(waiting)
        })
    }
}

/// Whether `token` is in an Overlap wait (nudged, previous not retired) on the changed source.
pub fn waits_on(token: &GitLabToken, change: &ConsumerChange) -> bool {
    let own_namespace = token.namespace().unwrap_or_default();
    token
        .status
        .as_ref()
        .and_then(|s| s.previous.as_ref())
        .is_some_and(|p| p.nudged_at.is_some())
        && token.spec.consumers.iter().any(|c| {
            // An Argo CD Application may live in another namespace than its token.
            c.namespace.as_deref().unwrap_or(&own_namespace) == change.namespace
                && c.kind == change.kind
                && c.name == change.name
        })
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
}
