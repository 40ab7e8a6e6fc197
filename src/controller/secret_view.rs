//! The token controller's view of the Secrets it manages, so a reconcile reads a Secret's data
//! only when it may have changed: the Secret watch is metadata-only (a reflector of the
//! operator-labelled Secrets), and the classification of the last full read is kept with the
//! resourceVersion it was read at. While the reflector shows that same resourceVersion (and the
//! recorded digest and requested shape are unchanged), the Secret is as classified; anything else
//! (another writer, a lagging cache, our own write) reads it again.

use std::{
    collections::HashMap,
    hash::{DefaultHasher, Hash, Hasher},
    sync::{Mutex, OnceLock},
};

use k8s_openapi::api::core::v1::Secret;
use kube::{
    core::PartialObjectMeta,
    runtime::reflector::{ObjectRef, Store},
};

use super::token::decide::SecretState;

/// A classification and what it was made from.
#[derive(Clone, Debug)]
struct Seen {
    resource_version: String,
    inputs: u64,
    state: SecretState,
}

/// Metadata of the managed Secrets plus the last classification of each.
#[derive(Default)]
pub struct SecretView {
    meta: OnceLock<Store<PartialObjectMeta<Secret>>>,
    listed: std::sync::atomic::AtomicBool,
    seen: Mutex<HashMap<(String, String), Seen>>,
}

/// Fingerprint of what a classification depends on besides the Secret itself.
pub fn inputs_of(parts: &[&str]) -> u64 {
    let mut h = DefaultHasher::new();
    parts.hash(&mut h);
    h.finish()
}

impl SecretView {
    /// Installs the metadata reflector (once, when the token controller starts).
    pub fn set_store(&self, store: Store<PartialObjectMeta<Secret>>) {
        let _ = self.meta.set(store);
    }

    /// Records that the reflector has listed every operator-labelled Secret (its first `InitDone`).
    pub fn set_listed(&self) {
        self.listed.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether the reflector has listed: from then on a Secret it does not hold carries no
    /// operator label (or was created a moment ago, which a write finds out).
    pub fn listed(&self) -> bool {
        self.meta.get().is_some() && self.listed.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The resourceVersion the metadata reflector holds for an operator-labelled Secret.
    pub fn live_version(&self, namespace: &str, name: &str) -> Option<String> {
        let store = self.meta.get()?;
        store
            .get(&ObjectRef::new(name).within(namespace))
            .and_then(|m| m.metadata.resource_version.clone())
    }

    /// Whether the reflector holds the Secret (it holds only operator-labelled ones).
    pub fn holds(&self, namespace: &str, name: &str) -> bool {
        self.live_version(namespace, name).is_some()
    }

    /// The classification still valid for `namespace/name`, if the Secret is unchanged since it
    /// was read and `inputs` are the same.
    pub fn cached(&self, namespace: &str, name: &str, inputs: u64) -> Option<SecretState> {
        let live = self.live_version(namespace, name)?;
        let seen = self.seen.lock().ok()?;
        let s = seen.get(&(namespace.to_string(), name.to_string()))?;
        (s.resource_version == live && s.inputs == inputs).then(|| s.state.clone())
    }

    /// Records the classification of a full read at `resource_version`.
    pub fn remember(
        &self,
        namespace: &str,
        name: &str,
        resource_version: Option<String>,
        inputs: u64,
        state: &SecretState,
    ) {
        let Ok(mut seen) = self.seen.lock() else { return };
        let key = (namespace.to_string(), name.to_string());
        match resource_version {
            Some(resource_version) => {
                seen.insert(
                    key,
                    Seen {
                        resource_version,
                        inputs,
                        state: state.clone(),
                    },
                );
            }
            None => {
                seen.remove(&key);
            }
        }
    }

    /// Forgets what was read of `namespace/name` (after our own write).
    pub fn forget(&self, namespace: &str, name: &str) {
        if let Ok(mut seen) = self.seen.lock() {
            seen.remove(&(namespace.to_string(), name.to_string()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::{reflector, watcher};

    fn meta(ns: &str, name: &str, rv: &str) -> PartialObjectMeta<Secret> {
        let mut m = PartialObjectMeta::<Secret>::default();
        m.metadata.name = Some(name.into());
        m.metadata.namespace = Some(ns.into());
        m.metadata.resource_version = Some(rv.into());
        m
    }

    #[test]
    fn a_classification_holds_only_while_version_and_inputs_are_unchanged() {
        let (store, mut writer) = reflector::store();
        let view = SecretView::default();
        let ours = SecretState::Ours {
            token_id: Some(7),
            matches: true,
        };
        assert_eq!(view.cached("a", "s", 1), None, "no reflector yet: read");
        view.set_store(store);
        view.remember("a", "s", Some("10".into()), 1, &ours);
        assert_eq!(view.cached("a", "s", 1), None, "not in the reflector: read");
        writer.apply_watcher_event(&watcher::Event::Apply(meta("a", "s", "10")));
        assert_eq!(view.cached("a", "s", 1), Some(ours.clone()));
        assert_eq!(
            view.cached("a", "s", 2),
            None,
            "another recorded digest or shape: read"
        );
        writer.apply_watcher_event(&watcher::Event::Apply(meta("a", "s", "11")));
        assert_eq!(view.cached("a", "s", 1), None, "changed since: read");
        view.remember("a", "s", Some("11".into()), 1, &ours);
        assert_eq!(view.cached("a", "s", 1), Some(ours));
        view.forget("a", "s");
        assert_eq!(view.cached("a", "s", 1), None, "after our own write: read");
        assert!(view.holds("a", "s") && !view.holds("a", "other"));
    }
}
