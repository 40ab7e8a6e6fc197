//! What the operator's caches (reflectors) keep of each object: everything it reads, nothing it
//! never reads. At 10,000 sources the bookkeeping fields the API server adds to every object
//! (`managedFields`, and the copy of the whole object `kubectl apply` leaves in an annotation)
//! are most of each cached object's size.

use std::{
    collections::{BTreeSet, HashMap},
    hash::{DefaultHasher, Hash, Hasher},
    sync::Mutex,
};

use kube::Resource;

/// The annotation `kubectl apply` (client-side) stores the applied object in.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drops the fields no controller reads from an object before it is cached.
pub fn slim<K: Resource>(obj: &mut K) {
    let meta = obj.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
}

/// Whether a cache holds an older version of an object than `known` (one this process read or
/// wrote). resourceVersions are the API server's monotonic revision counter (decimal); ones that
/// do not parse are compared for equality only, as opaque strings must be.
pub fn is_behind(cached: Option<&str>, known: &str) -> bool {
    match (
        cached.and_then(|c| c.parse::<u64>().ok()),
        known.parse::<u64>().ok(),
    ) {
        (Some(cached), Some(known)) => cached < known,
        _ => cached != Some(known),
    }
}

/// A fingerprint of what a write said.
pub fn fingerprint(what: &impl Hash) -> u64 {
    let mut h = DefaultHasher::new();
    what.hash(&mut h);
    h.finish()
}

/// What this process last wrote to each object and the resourceVersion the API server answered:
/// a reconcile whose cache has not caught up with that write yet does not send the same write
/// again (at 10,000 sources, one source patch in ten was such a repeat). Entries go once the
/// cache has caught up.
#[derive(Default)]
pub struct Written {
    by_object: Mutex<HashMap<String, (String, u64)>>,
}

impl Written {
    /// Records a write of `fingerprint` to `object` (any unique key) answered at `version`.
    pub fn record(&self, object: &str, version: Option<String>, fingerprint: u64) {
        if let Ok(mut m) = self.by_object.lock() {
            match version {
                Some(v) => m.insert(object.to_string(), (v, fingerprint)),
                None => m.remove(object),
            };
        }
    }

    /// Whether `fingerprint` is what this process wrote to `object` at a version the cache (at
    /// `cached`) has not seen yet: then the write is done and only the cache lags. An object the
    /// cache does not hold (`None`) may have been deleted since: never in flight.
    pub fn in_flight(&self, object: &str, cached: Option<&str>, fingerprint: u64) -> bool {
        let Ok(mut m) = self.by_object.lock() else {
            return false;
        };
        let Some(cached) = cached else {
            return false;
        };
        match m.get(object) {
            Some((version, _)) if !is_behind(Some(cached), version) => {
                m.remove(object);
                false
            }
            Some((_, written)) => *written == fingerprint,
            None => false,
        }
    }
}

/// The names of a cache's objects by namespace, kept from its watch's events, so a reconcile of
/// one namespace looks up its own objects instead of scanning all (at 10,000 sources, the scans
/// were most of the operator's CPU). A name whose deletion a relist swallowed stays behind; the
/// cache lookup that follows finds nothing there.
#[derive(Default)]
pub struct NamespaceIndex {
    names: Mutex<HashMap<String, BTreeSet<String>>>,
}

impl NamespaceIndex {
    /// Records an object that was added or changed.
    pub fn insert(&self, namespace: &str, name: &str) {
        if let Ok(mut m) = self.names.lock() {
            m.entry(namespace.to_string())
                .or_default()
                .insert(name.to_string());
        }
    }

    /// Forgets a deleted object.
    pub fn remove(&self, namespace: &str, name: &str) {
        if let Ok(mut m) = self.names.lock()
            && let Some(names) = m.get_mut(namespace)
        {
            names.remove(name);
            if names.is_empty() {
                m.remove(namespace);
            }
        }
    }

    /// The names recorded in a namespace.
    pub fn names(&self, namespace: &str) -> Vec<String> {
        self.names
            .lock()
            .ok()
            .and_then(|m| m.get(namespace).map(|n| n.iter().cloned().collect()))
            .unwrap_or_default()
    }

    /// Follows one watch event (objects without a namespace are not indexed).
    pub fn follow<K: Resource>(&self, event: &kube::runtime::watcher::Event<K>) {
        use kube::runtime::watcher::Event;
        match event {
            Event::Apply(o) | Event::InitApply(o) => {
                if let (Some(ns), Some(name)) = (&o.meta().namespace, &o.meta().name) {
                    self.insert(ns, name);
                }
            }
            Event::Delete(o) => {
                if let (Some(ns), Some(name)) = (&o.meta().namespace, &o.meta().name) {
                    self.remove(ns, name);
                }
            }
            Event::Init | Event::InitDone => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::{
        api::core::v1::ConfigMap,
        apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, ObjectMeta},
    };

    use super::*;

    #[test]
    fn bookkeeping_goes_and_what_controllers_read_stays() {
        let mut cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some("app".into()),
                annotations: Some(
                    [
                        (LAST_APPLIED.to_string(), "{\"big\":true}".to_string()),
                        ("gitlabtokens.io/inject".to_string(), "true".to_string()),
                    ]
                    .into(),
                ),
                managed_fields: Some(vec![ManagedFieldsEntry::default()]),
                ..Default::default()
            },
            ..Default::default()
        };
        slim(&mut cm);
        assert_eq!(cm.metadata.managed_fields, None);
        let annotations = cm.metadata.annotations.expect("annotations kept");
        assert_eq!(
            annotations.keys().collect::<Vec<_>>(),
            vec!["gitlabtokens.io/inject"]
        );
        assert_eq!(cm.metadata.name.as_deref(), Some("app"));
    }

    #[test]
    fn the_cache_is_behind_only_when_older_than_what_was_read_or_written() {
        assert!(is_behind(Some("99"), "100"));
        assert!(is_behind(None, "100"));
        assert!(!is_behind(Some("100"), "100"));
        // Another writer's later version includes ours.
        assert!(!is_behind(Some("101"), "100"));
        // Not a number: opaque, compared for equality only.
        assert!(is_behind(Some("abc"), "abd"));
        assert!(!is_behind(Some("abc"), "abc"));
    }

    #[test]
    fn a_write_is_in_flight_until_the_cache_catches_up_and_only_for_the_same_content() {
        let written = Written::default();
        let (a, b) = (fingerprint(&"secret-a"), fingerprint(&"secret-b"));
        written.record("ns/src", Some("100".into()), a);
        assert!(written.in_flight("ns/src", Some("99"), a));
        // Something else to write: not the write in flight.
        assert!(!written.in_flight("ns/src", Some("99"), b));
        assert!(!written.in_flight("ns/other", Some("99"), a));
        // Not in the cache at all: perhaps deleted since the write, so written again.
        assert!(!written.in_flight("ns/src", None, a));
        // The cache caught up: the entry goes, and the cached object decides from then on.
        assert!(!written.in_flight("ns/src", Some("100"), a));
        assert!(!written.in_flight("ns/src", Some("99"), a));
    }

    #[test]
    fn a_namespace_index_follows_adds_and_deletes() {
        use kube::runtime::watcher::Event;
        let cm = |ns: &str, name: &str| ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(ns.into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let index = NamespaceIndex::default();
        index.follow(&Event::InitApply(cm("a", "one")));
        index.follow(&Event::Apply(cm("a", "two")));
        index.follow(&Event::Apply(cm("b", "three")));
        assert_eq!(index.names("a"), ["one", "two"]);
        index.follow(&Event::Delete(cm("a", "one")));
        assert_eq!(index.names("a"), ["two"]);
        assert_eq!(index.names("b"), ["three"]);
        index.follow(&Event::Delete(cm("b", "three")));
        assert!(index.names("b").is_empty());
        assert!(index.names("c").is_empty());
    }
}
