//! What every controller shares: the Kubernetes client, the operator's settings, the clock,
//! metrics, the event recorder, and the live GitLab connections.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{DateTime, Utc};
use kube::{
    Client, Resource,
    runtime::{
        events::{Event, EventType, Recorder, Reporter},
        reflector::Store,
    },
};

use super::connection::Connections;
use crate::{
    clock::Clock,
    crd::{GitLabConnection, GitLabTokenPolicy},
    gitlab::NewToken,
    metrics::Metrics,
    policy::{NamespaceInfo, PolicySet},
};

/// Operator-wide settings from the command line.
#[derive(Clone, Debug)]
pub struct OperatorConfig {
    /// The operator's own namespace: connection credentials must live here.
    pub namespace: String,
    /// Marker of this cluster in token names.
    pub cluster_name: String,
    /// Namespaces whose sources and tokens are served (empty: all).
    pub watch_namespaces: Vec<String>,
    /// How often GitLab is asked whether a token is still active.
    pub verify_interval: Duration,
    /// How often each connection's projects are swept for orphaned tokens.
    pub sweep_interval: Duration,
    /// Within this interval a delegated token is re-checked against GitLab (issue 11).
    pub access_recheck_interval: Duration,
    /// Name events are reported under (`reportingController`).
    pub controller_name: String,
    /// This replica's identity (`reportingInstance`), e.g. the pod name.
    pub instance: String,
    /// Whether this process acts only while holding the leader Lease: then a write-ahead record of
    /// another process is a dead leader's and is recovered at once.
    pub exclusive: bool,
    /// Argo CD's control-plane namespace: its repository Secrets (and their GitLabTokens) live
    /// here; empty when Argo CD is not served.
    pub argocd_namespace: String,
}

impl OperatorConfig {
    /// Whether a namespace is served.
    pub fn serves_namespace(&self, namespace: &str) -> bool {
        self.watch_namespaces.is_empty()
            || self.watch_namespaces.iter().any(|n| n == namespace)
            // Argo CD's namespace is served whenever Argo CD is: its repository Secrets live there.
            || (!self.argocd_namespace.is_empty() && self.argocd_namespace == namespace)
    }
}

/// Shared by every reconcile.
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// Settings.
    pub config: OperatorConfig,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Event recorder.
    pub recorder: Recorder,
    /// Live GitLab connections, maintained by the connection controller.
    pub connections: Arc<Connections>,
    /// Every `GitLabTokenPolicy`, kept current by a watch.
    pub policies: Store<GitLabTokenPolicy>,
    /// The connection controller's cache of every `GitLabConnection` (set when it starts).
    pub connection_cache: std::sync::OnceLock<Store<GitLabConnection>>,
    /// Set once that cache has listed every `GitLabConnection` (its watch's first `InitDone`).
    pub connections_listed: std::sync::atomic::AtomicBool,
    /// Set once the token controller's cache has listed every `GitLabToken`.
    pub tokens_listed: std::sync::atomic::AtomicBool,
    /// Namespaces' labels, kept current by a watch (policy selectors read them on every reconcile).
    pub namespaces: Store<kube::core::PartialObjectMeta<k8s_openapi::api::core::v1::Namespace>>,
    /// This process: written into write-ahead records so another process leaves them alone.
    pub incarnation: String,
    /// Per `GitLabToken` uid, the resourceVersion of our last read or write: status writes are
    /// conditional on it, so of two writers only one may record intent and mint.
    /// Per `GitLabToken` uid: the resourceVersion last read or written, and (when this process
    /// wrote it) a fingerprint of the status written at that version.
    fences: Mutex<HashMap<String, (String, Option<u64>)>>,
    /// Minted tokens whose Secret write has not succeeded yet, by `GitLabToken` uid. The value
    /// exists nowhere else: the write is retried from here, and a restart (which loses it)
    /// revokes the token instead.
    unstored: Mutex<HashMap<String, NewToken>>,
    /// Consecutive failed reconciles per `GitLabToken` uid, for exponential backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// Per-project listings of active tokens, shared by every token's liveness check.
    pub liveness: super::token::liveness::LivenessCache,
    /// The managed Secrets' metadata and last classification (reads only what may have changed).
    pub secrets: super::secret_view::SecretView,
    /// Flux source changes, from the shim's watchers to tokens waiting on their consumers.
    pub consumer_changes: super::consumer_watch::ConsumerChanges,
    /// GitLab's answers about delegating policies' identities, shared by every reconcile.
    pub delegation: super::delegation::DelegationCache,
    /// Policies in force from each connection's GitLab-kept policy file: the commit and the
    /// policies (validated and bounded by the ceiling).
    pub file_policies: Mutex<std::collections::BTreeMap<String, super::policy_file::InForce>>,
    /// What the orphan sweep remembers between its runs.
    pub sweep_memory: super::sweep::SweepMemory,
    /// The last compiled policy set and the policy versions it was compiled from.
    compiled_policies: Mutex<Option<(PolicyVersions, Arc<PolicySet>)>>,
}

/// Policies by name and resourceVersion: what a compiled policy set was compiled from.
type PolicyVersions = Vec<(String, String)>;

impl Context {
    /// Builds the context.
    pub fn new(
        client: Client,
        config: OperatorConfig,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
        policies: Store<GitLabTokenPolicy>,
        namespaces: Store<kube::core::PartialObjectMeta<k8s_openapi::api::core::v1::Namespace>>,
    ) -> Self {
        let reporter = Reporter {
            controller: config.controller_name.clone(),
            instance: Some(config.instance.clone()),
        };
        let recorder = Recorder::new(client.clone(), reporter);
        let incarnation = format!("{}/{:08x}", config.instance, rand::random::<u32>());
        Self {
            client,
            config,
            clock,
            metrics,
            recorder,
            connections: Arc::new(Connections::default()),
            policies,
            connection_cache: std::sync::OnceLock::new(),
            connections_listed: std::sync::atomic::AtomicBool::new(false),
            tokens_listed: std::sync::atomic::AtomicBool::new(false),
            namespaces,
            incarnation,
            fences: Mutex::default(),
            unstored: Mutex::default(),
            failures: Mutex::default(),
            liveness: Default::default(),
            secrets: Default::default(),
            consumer_changes: Default::default(),
            delegation: Default::default(),
            file_policies: Default::default(),
            sweep_memory: Default::default(),
            compiled_policies: Mutex::default(),
        }
    }

    /// Consecutive failed reconciles of this object so far.
    pub fn failures(&self, uid: &str) -> u32 {
        self.failures
            .lock()
            .ok()
            .and_then(|f| f.get(uid).copied())
            .unwrap_or(0)
    }

    /// Counts a failed reconcile (`failed`) or resets the count after a success.
    pub fn note_outcome(&self, uid: &str, failed: bool) {
        if let Ok(mut f) = self.failures.lock() {
            if failed {
                *f.entry(uid.to_string()).or_default() += 1;
            } else {
                f.remove(uid);
            }
        }
    }

    /// The resourceVersion the next status write of this `GitLabToken` must be conditional on.
    pub fn fence(&self, uid: &str) -> Option<String> {
        self.fences.lock().ok()?.get(uid).map(|(rv, _)| rv.clone())
    }

    /// The fingerprint of the status this process wrote at the current fence, if it did.
    pub fn written_status(&self, uid: &str) -> Option<u64> {
        self.fences.lock().ok()?.get(uid).and_then(|(_, h)| *h)
    }

    /// Whether the connection controller has checked every `GitLabConnection` since this process
    /// started (from its cache, without a request; `false` before the cache has listed).
    pub fn every_connection_checked(&self) -> bool {
        let Some(cache) = self.connection_cache.get() else {
            return false;
        };
        // Not the store's own readiness signal: polling that from here could take the wake-up
        // meant for the connection controller waiting on it.
        self.connections_listed.load(std::sync::atomic::Ordering::SeqCst)
            && cache
                .state()
                .iter()
                .all(|c| self.connections.checked(&kube::ResourceExt::name_any(c.as_ref())))
    }

    /// Records a status write: the new resourceVersion and a fingerprint of what was written.
    pub fn set_written(&self, uid: &str, resource_version: Option<String>, fingerprint: u64) {
        if let Ok(mut f) = self.fences.lock() {
            match resource_version {
                Some(rv) => f.insert(uid.to_string(), (rv, Some(fingerprint))),
                None => f.remove(uid),
            };
        }
    }

    /// Records the resourceVersion last read or written (`None` forgets it).
    pub fn set_fence(&self, uid: &str, resource_version: Option<String>) {
        if let Ok(mut f) = self.fences.lock() {
            match resource_version {
                // The same version keeps what is known of it; another one forgets that.
                Some(rv) if f.get(uid).is_some_and(|(known, _)| *known == rv) => {}
                Some(rv) => {
                    f.insert(uid.to_string(), (rv, None));
                }
                None => {
                    f.remove(uid);
                }
            };
        }
    }

    /// Keeps a minted token whose Secret write failed, to retry the write.
    pub fn keep_unstored(&self, uid: &str, token: NewToken) {
        if let Ok(mut u) = self.unstored.lock() {
            u.insert(uid.to_string(), token);
        }
    }

    /// The minted token waiting for its Secret write, if this process holds one.
    pub fn unstored(&self, uid: &str) -> Option<NewToken> {
        self.unstored.lock().ok()?.get(uid).cloned()
    }

    /// Drops a held token value (stored, or revoked).
    pub fn forget_unstored(&self, uid: &str) {
        if let Ok(mut u) = self.unstored.lock() {
            u.remove(uid);
        }
    }

    /// A namespace's name and labels from the watch cache (a GET only when the cache lacks it).
    pub async fn namespace_info(&self, namespace: &str) -> kube::Result<NamespaceInfo> {
        use kube::ResourceExt;
        let key = kube::runtime::reflector::ObjectRef::new(namespace);
        let (labels, annotations) = match self.namespaces.get(&key) {
            Some(ns) => (ns.labels().clone(), ns.annotations().clone()),
            None => kube::Api::<k8s_openapi::api::core::v1::Namespace>::all(self.client.clone())
                .get_opt(namespace)
                .await?
                .map(|n| (n.labels().clone(), n.annotations().clone()))
                .unwrap_or_default(),
        };
        Ok(NamespaceInfo {
            name: namespace.to_string(),
            labels,
            annotations,
        })
    }

    /// Every policy as of the cache, compiled for evaluation: compiled once per change of the
    /// policies (by name and resourceVersion) and shared by every reconcile.
    pub fn policy_set(&self) -> Arc<PolicySet> {
        use kube::ResourceExt;
        let state = self.policies.state();
        let mut key: Vec<(String, String)> = state
            .iter()
            .map(|p| (p.name_any(), p.resource_version().unwrap_or_default()))
            .collect();
        key.sort();
        let files: Vec<(String, Vec<crate::policy::CompiledPolicy>)> = self
            .file_policies
            .lock()
            .map(|f| {
                f.iter()
                    .map(|(conn, in_force)| {
                        (conn.clone(), in_force.commit.clone(), in_force.policies.clone())
                    })
                    .map(|(conn, commit, policies)| {
                        key.push((format!("gitlab:{conn}"), commit));
                        (conn, policies)
                    })
                    .collect()
            })
            .unwrap_or_default();
        if let Ok(cache) = self.compiled_policies.lock()
            && let Some((k, set)) = cache.as_ref()
            && *k == key
        {
            return set.clone();
        }
        let policies: Vec<GitLabTokenPolicy> = state.iter().map(|p| p.as_ref().clone()).collect();
        let extra = files.into_iter().flat_map(|(_, p)| p).collect();
        let set = Arc::new(PolicySet::compile_with(&policies, extra));
        if let Ok(mut cache) = self.compiled_policies.lock() {
            *cache = Some((key, set.clone()));
        }
        set
    }

    /// Now, per the injected clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Publishes an event about `obj`; failures to publish are logged, never fatal.
    pub async fn event<K>(&self, obj: &K, warning: bool, reason: &str, action: &str, note: String)
    where
        K: Resource<DynamicType = ()>,
    {
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.to_string(),
            note: Some(note),
            action: action.to_string(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &obj.object_ref(&())).await {
            tracing::warn!(error = %e, reason, "could not publish event");
        }
    }
}
