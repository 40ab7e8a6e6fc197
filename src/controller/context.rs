//! What every controller shares: the Kubernetes client, the operator's settings, the clock,
//! metrics, the event recorder, and the live GitLab connections.

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use kube::{
    Client, Resource,
    runtime::{
        events::{Event, EventType, Recorder, Reporter},
        reflector::Store,
    },
};

use super::connection::Connections;
use crate::{clock::Clock, crd::GitLabTokenPolicy, metrics::Metrics, policy::PolicySet};

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
    /// Name events are reported under (`reportingController`).
    pub controller_name: String,
    /// This replica's identity (`reportingInstance`), e.g. the pod name.
    pub instance: String,
}

impl OperatorConfig {
    /// Whether a namespace is served.
    pub fn serves_namespace(&self, namespace: &str) -> bool {
        self.watch_namespaces.is_empty() || self.watch_namespaces.iter().any(|n| n == namespace)
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
}

impl Context {
    /// Builds the context.
    pub fn new(
        client: Client,
        config: OperatorConfig,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
        policies: Store<GitLabTokenPolicy>,
    ) -> Self {
        let reporter = Reporter {
            controller: config.controller_name.clone(),
            instance: Some(config.instance.clone()),
        };
        let recorder = Recorder::new(client.clone(), reporter);
        Self {
            client,
            config,
            clock,
            metrics,
            recorder,
            connections: Arc::new(Connections::default()),
            policies,
        }
    }

    /// Every policy as of the cache, compiled for evaluation.
    pub fn policy_set(&self) -> PolicySet {
        let policies: Vec<GitLabTokenPolicy> =
            self.policies.state().iter().map(|p| p.as_ref().clone()).collect();
        PolicySet::compile(&policies)
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
