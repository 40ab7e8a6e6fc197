//! In-memory object store: objects as `Arc<Value>` per storage key, a cluster-global
//! resourceVersion counter, a bounded event log for watch resumption, and a broadcast fan-out of
//! `Arc` events (no per-watcher copies of the world).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;
use tokio::sync::broadcast;

use super::status::ApiError;

/// Kind of change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Object created.
    Added,
    /// Object changed.
    Modified,
    /// Object removed (object = last state with the deletion RV).
    Deleted,
}

impl EventType {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One committed change.
#[derive(Debug)]
pub struct Event {
    /// Change type.
    pub kind: EventType,
    /// Revision of the change.
    pub rv: u64,
    /// Storage key.
    pub storage: String,
    /// The object after the change (for Deleted: last state with the deletion RV).
    pub obj: Arc<Value>,
    /// The object before the change (None for Added).
    pub prev: Option<Arc<Value>>,
    /// The object serialised once and shared by every watcher that can use it verbatim.
    pub json: std::sync::OnceLock<String>,
}

/// The outcome a mutation closure asks for.
pub enum Mutation {
    /// Nothing changes; the response is this object.
    NoOp(Arc<Value>),
    /// Store this object (created or replaced).
    Put(Value),
    /// Remove the object; the value is its final state.
    Delete(Value),
}

type Key = (String, String);

/// Location of an object by uid.
#[derive(Debug, Clone)]
pub struct UidEntry {
    /// Storage key.
    pub storage: String,
    /// Namespace ("" for cluster-scoped).
    pub namespace: String,
    /// Name.
    pub name: String,
}

/// Read-only view handed to mutation closures.
pub struct View<'a> {
    inner: &'a Inner,
}

impl View<'_> {
    /// Gets an object.
    pub fn get(&self, storage: &str, ns: &str, name: &str) -> Option<Arc<Value>> {
        self.inner
            .objects
            .get(storage)?
            .get(&(ns.to_string(), name.to_string()))
            .cloned()
    }
}

#[derive(Default)]
struct Inner {
    rv: u64,
    objects: HashMap<String, BTreeMap<Key, Arc<Value>>>,
    uids: HashMap<String, UidEntry>,
    log: VecDeque<Arc<Event>>,
    /// Events with rv <= compacted are no longer available.
    compacted: u64,
}

/// Why a watch cannot start from a revision.
#[derive(Debug)]
pub struct TooOld {
    /// Oldest revision still resumable minus one.
    pub oldest: u64,
}

/// The object store.
pub struct Store {
    inner: Mutex<Inner>,
    tx: broadcast::Sender<Arc<Event>>,
    history: usize,
}

/// A consistent snapshot for a list or a watch start.
pub struct Snapshot {
    /// Store revision at the snapshot.
    pub rv: u64,
    /// Objects, sorted by (namespace, name).
    pub items: Vec<Arc<Value>>,
}

fn set_rv(obj: &mut Value, rv: u64) {
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        m.insert("resourceVersion".into(), Value::String(rv.to_string()));
    }
}

/// Reads `metadata.resourceVersion` as a number.
pub fn rv_of(obj: &Value) -> u64 {
    obj.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

impl Store {
    /// A store keeping `history` events for watch resumption.
    pub fn new(history: usize, fanout_capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(fanout_capacity.max(16));
        Store {
            inner: Mutex::new(Inner {
                rv: 1,
                ..Default::default()
            }),
            tx,
            history: history.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Current global revision.
    pub fn rv(&self) -> u64 {
        self.lock().rv
    }

    /// Gets one object.
    pub fn get(&self, storage: &str, ns: &str, name: &str) -> Option<Arc<Value>> {
        View { inner: &self.lock() }.get(storage, ns, name)
    }

    /// Finds an object by uid.
    pub fn by_uid(&self, uid: &str) -> Option<UidEntry> {
        self.lock().uids.get(uid).cloned()
    }

    /// Snapshot of a storage key, optionally one namespace, starting after `after` (exclusive).
    pub fn list(&self, storage: &str, ns: Option<&str>, after: Option<&Key>) -> Snapshot {
        let inner = self.lock();
        let items = Self::collect(&inner, storage, ns, after);
        Snapshot { rv: inner.rv, items }
    }

    /// The state of a storage key at revision `at`, rebuilt by undoing the retained events after
    /// it (a true snapshot for continue tokens and `resourceVersionMatch=Exact`). `None` when
    /// `at` is older than the retained history or newer than the store.
    pub fn list_at(&self, storage: &str, ns: Option<&str>, after: Option<&Key>, at: u64) -> Option<Snapshot> {
        let inner = self.lock();
        if at < inner.compacted || at > inner.rv {
            return None;
        }
        if at == inner.rv {
            return Some(Snapshot {
                rv: at,
                items: Self::collect(&inner, storage, ns, after),
            });
        }
        let mut map: BTreeMap<Key, Arc<Value>> = inner.objects.get(storage).cloned().unwrap_or_default();
        for ev in inner
            .log
            .iter()
            .rev()
            .take_while(|e| e.rv > at)
            .filter(|e| e.storage == storage)
        {
            let key = |o: &Value| {
                let s = |p: &str| {
                    o.pointer(p)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string()
                };
                (s("/metadata/namespace"), s("/metadata/name"))
            };
            match (&ev.kind, &ev.prev) {
                (EventType::Added, _) => {
                    map.remove(&key(&ev.obj));
                }
                (_, Some(prev)) => {
                    map.insert(key(prev), prev.clone());
                }
                (_, None) => {}
            }
        }
        Some(Snapshot {
            rv: at,
            items: Self::collect_map(&map, ns, after),
        })
    }

    fn collect(inner: &Inner, storage: &str, ns: Option<&str>, after: Option<&Key>) -> Vec<Arc<Value>> {
        match inner.objects.get(storage) {
            Some(map) => Self::collect_map(map, ns, after),
            None => Vec::new(),
        }
    }

    fn collect_map(
        map: &BTreeMap<Key, Arc<Value>>,
        ns: Option<&str>,
        after: Option<&Key>,
    ) -> Vec<Arc<Value>> {
        use std::ops::Bound::*;
        let lower = match (after, ns) {
            (Some(k), _) => Excluded(k.clone()),
            (None, Some(n)) => Included((n.to_string(), String::new())),
            (None, None) => Unbounded,
        };
        map.range((lower, Unbounded))
            .take_while(|((kns, _), _)| ns.is_none_or(|n| n == kns))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Storage keys that currently hold objects.
    pub fn storages(&self) -> Vec<String> {
        self.lock()
            .objects
            .iter()
            .filter(|(_, m)| !m.is_empty())
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Every object of every storage key in one namespace (or all when `None`).
    pub fn all_in(&self, ns: Option<&str>) -> Vec<(String, Arc<Value>)> {
        let inner = self.lock();
        let mut out = Vec::new();
        for storage in inner.objects.keys() {
            for v in Self::collect(&inner, storage, ns, None) {
                out.push((storage.clone(), v));
            }
        }
        out
    }

    /// Runs a read-modify-write under the store lock and commits its result.
    /// Returns the resulting object and the event type (None for no-ops).
    pub fn mutate<F>(
        &self,
        storage: &str,
        ns: &str,
        name: &str,
        f: F,
    ) -> Result<(Arc<Value>, Option<EventType>), ApiError>
    where
        F: FnOnce(&View<'_>, Option<&Arc<Value>>) -> Result<Mutation, ApiError>,
    {
        let mut inner = self.lock();
        let key = (ns.to_string(), name.to_string());
        let existing = inner.objects.get(storage).and_then(|m| m.get(&key)).cloned();
        let m = f(&View { inner: &inner }, existing.as_ref())?;
        let (obj, kind) = match m {
            Mutation::NoOp(o) => return Ok((o, None)),
            Mutation::Put(mut v) => {
                inner.rv += 1;
                set_rv(&mut v, inner.rv);
                let obj = Arc::new(v);
                let kind = if existing.is_some() {
                    EventType::Modified
                } else {
                    EventType::Added
                };
                if let Some(uid) = obj.pointer("/metadata/uid").and_then(Value::as_str) {
                    let e = UidEntry {
                        storage: storage.into(),
                        namespace: ns.into(),
                        name: name.into(),
                    };
                    inner.uids.insert(uid.to_string(), e);
                }
                inner
                    .objects
                    .entry(storage.to_string())
                    .or_default()
                    .insert(key, obj.clone());
                (obj, kind)
            }
            Mutation::Delete(mut v) => {
                if existing.is_none() {
                    return Err(ApiError::internal("delete of a missing object"));
                }
                inner.rv += 1;
                set_rv(&mut v, inner.rv);
                let obj = Arc::new(v);
                if let Some(m) = inner.objects.get_mut(storage) {
                    m.remove(&key);
                }
                if let Some(uid) = obj.pointer("/metadata/uid").and_then(Value::as_str) {
                    inner.uids.remove(uid);
                }
                (obj, EventType::Deleted)
            }
        };
        let ev = Arc::new(Event {
            kind,
            rv: inner.rv,
            storage: storage.into(),
            obj: obj.clone(),
            prev: existing,
            json: std::sync::OnceLock::new(),
        });
        inner.log.push_back(ev.clone());
        while inner.log.len() > self.history {
            if let Some(old) = inner.log.pop_front() {
                inner.compacted = old.rv;
            }
        }
        let _ = self.tx.send(ev);
        Ok((obj, Some(kind)))
    }

    /// Subscribes to changes after revision `from`: the retained backlog plus a live receiver.
    /// With `initial`, also returns the current objects of `storage` (for synthetic ADDED events).
    #[allow(clippy::type_complexity)]
    pub fn watch_from(
        &self,
        storage: &str,
        from: Option<u64>,
        ns: Option<&str>,
    ) -> Result<
        (
            u64,
            Vec<Arc<Value>>,
            Vec<Arc<Event>>,
            broadcast::Receiver<Arc<Event>>,
        ),
        TooOld,
    > {
        let inner = self.lock();
        let rx = self.tx.subscribe();
        match from {
            None => Ok((inner.rv, Self::collect(&inner, storage, ns, None), Vec::new(), rx)),
            Some(n) => {
                if n < inner.compacted {
                    return Err(TooOld {
                        oldest: inner.compacted,
                    });
                }
                let backlog = inner
                    .log
                    .iter()
                    .filter(|e| e.rv > n && e.storage == storage)
                    .cloned()
                    .collect();
                Ok((n.max(inner.compacted), Vec::new(), backlog, rx))
            }
        }
    }

    /// Whether list snapshots at `rv` are still consistent (not compacted away).
    pub fn retained(&self, rv: u64) -> bool {
        rv >= self.lock().compacted
    }

    /// Drops all event history up to now: watches from older revisions get 410.
    pub fn compact(&self) {
        let mut inner = self.lock();
        inner.log.clear();
        inner.compacted = inner.rv;
    }

    /// Number of stored objects (all kinds).
    pub fn len(&self) -> usize {
        self.lock().objects.values().map(BTreeMap::len).sum()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn commits_bump_global_rv_and_log() {
        let s = Store::new(2, 16);
        let put = |name: &str| {
            s.mutate("cm", "ns", name, |_, _| {
                Ok(Mutation::Put(json!({"metadata":{"name":name}})))
            })
            .unwrap()
        };
        let (a, k) = put("a");
        assert_eq!(k, Some(EventType::Added));
        let (b, _) = put("b");
        assert!(rv_of(&b) > rv_of(&a));
        let (_, k) = put("a");
        assert_eq!(k, Some(EventType::Modified));
        // history of 2: the first event is gone.
        assert!(s.watch_from("cm", Some(rv_of(&a) - 1), None).is_err());
        let (_, _, backlog, _) = s.watch_from("cm", Some(rv_of(&a)), None).unwrap();
        assert_eq!(backlog.len(), 2);
        assert_eq!(s.list("cm", Some("ns"), None).items.len(), 2);
        assert_eq!(s.list("cm", Some("other"), None).items.len(), 0);
    }

    #[test]
    fn list_at_rebuilds_past_snapshots() {
        let s = Store::new(100, 16);
        let put = |name: &str, v: i64| {
            s.mutate("cm", "ns", name, |_, _| {
                Ok(Mutation::Put(
                    json!({"metadata":{"name":name,"namespace":"ns"},"v":v}),
                ))
            })
            .unwrap()
            .0
        };
        put("a", 1);
        let at = rv_of(&put("b", 1));
        put("a", 2);
        put("c", 1);
        s.mutate("cm", "ns", "b", |_, e| {
            Ok(Mutation::Delete((**e.unwrap()).clone()))
        })
        .unwrap();
        let snap = s.list_at("cm", Some("ns"), None, at).unwrap();
        let got: Vec<(String, i64)> = snap
            .items
            .iter()
            .map(|o| {
                (
                    o["metadata"]["name"].as_str().unwrap().to_string(),
                    o["v"].as_i64().unwrap(),
                )
            })
            .collect();
        assert_eq!(got, [("a".to_string(), 1), ("b".to_string(), 1)]);
        assert_eq!(s.list_at("cm", None, None, s.rv()).unwrap().items.len(), 2);
        assert!(s.list_at("cm", None, None, s.rv() + 1).is_none());
        s.compact();
        assert!(s.list_at("cm", None, None, at).is_none());
    }
}
