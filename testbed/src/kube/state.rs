//! Shared server state: registry, store, controls, identities, and the controller wake-up.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Notify;

use super::controls::Controls;
use super::resources::{Registry, defs_from_crd};
use super::store::Store;

/// An authenticated identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    /// User name (`system:serviceaccount:<ns>:<name>` for service accounts).
    pub name: String,
    /// Groups, including `system:authenticated`.
    pub groups: Vec<String>,
}

impl UserInfo {
    /// Builds a user with `system:authenticated` (and SA groups when the name is an SA).
    pub fn new(name: &str, groups: &[&str]) -> Self {
        let mut g: Vec<String> = groups.iter().map(|s| s.to_string()).collect();
        if let Some(rest) = name.strip_prefix("system:serviceaccount:")
            && let Some((ns, _)) = rest.split_once(':')
        {
            for extra in [
                "system:serviceaccounts".to_string(),
                format!("system:serviceaccounts:{ns}"),
            ] {
                if !g.contains(&extra) {
                    g.push(extra);
                }
            }
        }
        if !g.iter().any(|x| x == "system:authenticated") {
            g.push("system:authenticated".into());
        }
        UserInfo {
            name: name.into(),
            groups: g,
        }
    }

    /// The anonymous user.
    pub fn anonymous() -> Self {
        UserInfo {
            name: "system:anonymous".into(),
            groups: vec!["system:unauthenticated".into()],
        }
    }
}

/// Tunables of one server instance.
#[derive(Debug, Clone)]
pub struct KubeServerConfig {
    /// Events kept for watch resumption (older ones → 410).
    pub history: usize,
    /// Capacity of the broadcast fan-out (a watcher lagging more than this is disconnected).
    pub fanout_capacity: usize,
    /// Interval between BOOKMARK events on watches that allow them.
    pub bookmark_interval: Duration,
    /// Interval of the garbage collector / namespace controller safety sweep.
    pub gc_interval: Duration,
}

impl Default for KubeServerConfig {
    fn default() -> Self {
        KubeServerConfig {
            history: 20_000,
            fanout_capacity: 16_384,
            bookmark_interval: Duration::from_secs(30),
            gc_interval: Duration::from_secs(2),
        }
    }
}

/// Everything a request handler needs.
pub struct State {
    /// Served resources.
    pub registry: Registry,
    /// Objects and events.
    pub store: Arc<Store>,
    /// Test controls.
    pub controls: Controls,
    /// Bearer token → identity.
    pub tokens: RwLock<HashMap<String, UserInfo>>,
    /// Wakes the garbage collector / namespace controller.
    pub gc_wake: Notify,
    /// Configuration.
    pub config: KubeServerConfig,
}

impl State {
    /// A fresh state with the default namespaces.
    pub fn new(config: KubeServerConfig) -> Arc<Self> {
        let store = Arc::new(Store::new(config.history, config.fanout_capacity));
        let st = Arc::new(State {
            registry: Registry::with_builtins(),
            controls: Controls::new(store.clone()),
            store,
            tokens: RwLock::default(),
            gc_wake: Notify::new(),
            config,
        });
        super::bootstrap::seed(&st);
        st
    }

    /// Resolves a bearer token.
    pub fn user_for(&self, token: &str) -> Option<UserInfo> {
        self.tokens.read().ok()?.get(token).cloned()
    }

    /// Whether any owner of an object is absent (by uid and namespace) or being deleted; only then
    /// does a write need the garbage collector (keeps steady-state writes free of GC sweeps).
    fn owner_missing_or_deleting(&self, meta: &Value, ns: &str) -> bool {
        meta["ownerReferences"].as_array().into_iter().flatten().any(|r| {
            let uid = r["uid"].as_str().unwrap_or_default();
            match self.store.by_uid(uid) {
                None => true,
                Some(e) if !e.namespace.is_empty() && e.namespace != ns => true,
                Some(e) => self
                    .store
                    .get(&e.storage, &e.namespace, &e.name)
                    .is_none_or(|o| o.pointer("/metadata/deletionTimestamp").is_some()),
            }
        })
    }

    /// Hook after every committed write: CRD (un)registration and controller wake-up.
    pub fn after_write(&self, storage: &str, obj: &Value) {
        if storage == "customresourcedefinitions" {
            let name = obj
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let alive = self.store.get(storage, "", name).is_some();
            let others = self.store.list(storage, None, None).items;
            let alive = alive && super::crd::name_conflict(others.iter().map(|o| o.as_ref()), obj).is_none();
            self.gc_wake.notify_one();
            self.registry
                .set_crd(name, if alive { defs_from_crd(obj) } else { Vec::new() });
        }
        if storage == "clusterroles" {
            self.gc_wake.notify_one();
        }
        let meta = &obj["metadata"];
        let ns = meta["namespace"].as_str().unwrap_or_default();
        let gone = self
            .store
            .get(storage, ns, meta["name"].as_str().unwrap_or_default())
            .is_none();
        if gone || meta.get("deletionTimestamp").is_some() || self.owner_missing_or_deleting(meta, ns) {
            self.gc_wake.notify_one();
        }
    }
}
