//! The controllers `run` starts: GitLab connections, tokens, policy statuses and the shim, each
//! with the watches that wake it.

use std::{sync::Arc, time::Duration};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::{
    Api, ResourceExt,
    core::PartialObjectMeta,
    runtime::{
        Controller, Predicate, WatchStreamExt,
        controller::Action,
        predicates,
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};
use tokio::sync::watch;

use super::{gated, on_clock_moves};
use crate::{
    controller::{
        connection_cleanup,
        context::Context,
        policy as policy_controller,
        shim::{self, ShimContext, ShimState},
        token,
    },
    crd::{GitLabConnection, GitLabToken, GitLabTokenPolicy},
    secret::MANAGED_BY_LABEL,
};

/// The token controller's cache of every `GitLabToken` (the reader is shared with the shim), and
/// how it wakes the shim.
pub(super) struct TokenCache {
    /// Shared.
    pub reader: Store<GitLabToken>,
    /// Fed by the token controller's watch.
    pub writer: reflector::store::Writer<GitLabToken>,
    /// The shim's wake-ups from that watch.
    pub shim_wakes: ShimWakes,
    /// The cached names by namespace (shared with the shim).
    pub index: Arc<crate::controller::cache::NamespaceIndex>,
}

/// Wakes the shim for the namespace of a shim-managed `GitLabToken` that changed or went.
#[derive(Clone)]
pub(super) struct ShimWakes(pub tokio::sync::mpsc::UnboundedSender<ObjectRef<Namespace>>);

impl ShimWakes {
    fn touched(&self, token: &GitLabToken) {
        if shim::is_shims(token)
            && let Some(ns) = token.metadata.namespace.as_deref()
        {
            let _ = self.0.send(ObjectRef::new(ns));
        }
    }
}

/// A predicate over a connection's pinned SSH host keys (`status.sshHostKeys`).
fn pinned_host_keys(c: &GitLabConnection) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let pin = c.status.as_ref().and_then(|s| s.ssh_host_keys.as_ref())?;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_string(pin).unwrap_or_default().hash(&mut hasher);
    Some(hasher.finish())
}

pub(super) async fn connection_controller(
    ctx: Arc<Context>,
    clock_moves: Option<watch::Receiver<u64>>,
    stopped: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let connections = Api::<GitLabConnection>::all(client.clone());
    let secrets = Api::<Secret>::namespaced(client.clone(), &ctx.config.namespace);
    // Our own status writes must not trigger a second check of GitLab (two calls each): react to
    // spec, annotations, finalizers, deletion and the pinned SSH host keys (an admin clears them
    // to have them pinned again); the periodic re-check is the requeue.
    let (store, writer) = reflector::store();
    let _ = ctx.connection_cache.set(store.clone());
    let listed = ctx.clone();
    let connection_events = watcher(connections, watcher::Config::default())
        .default_backoff()
        .modify(crate::controller::cache::slim)
        .reflect(writer)
        .inspect(move |event| {
            if matches!(event, Ok(watcher::Event::InitDone)) {
                listed
                    .connections_listed
                    .store(true, std::sync::atomic::Ordering::SeqCst);
            }
        })
        .applied_objects()
        .predicate_filter(
            predicates::generation
                .combine(predicates::annotations)
                .combine(predicates::finalizers)
                .combine(pinned_host_keys),
            Default::default(),
        );
    Controller::for_stream(connection_events, store.clone())
        .watches(secrets, watcher::Config::default(), move |secret| {
            // A credentials Secret changed: recheck every connection that names it.
            let ns = secret.metadata.namespace.clone().unwrap_or_default();
            let name = secret.metadata.name.clone().unwrap_or_default();
            store
                .state()
                .into_iter()
                .filter(|c| {
                    let r = &c.spec.credentials.secret_ref;
                    r.namespace == ns && r.name == name
                })
                .map(|c| ObjectRef::from_obj(c.as_ref()))
                .collect::<Vec<_>>()
        })
        .reconcile_all_on(on_clock_moves(clock_moves))
        .graceful_shutdown_on(stopped)
        .run(
            connection_cleanup::reconcile,
            connection_cleanup::error_policy,
            ctx,
        )
        .for_each(|_| async {})
        .await;
}

pub(super) async fn token_controller(
    ctx: Arc<Context>,
    policy_events: futures::stream::BoxStream<'static, Result<GitLabTokenPolicy, watcher::Error>>,
    namespace_events: futures::stream::BoxStream<
        'static,
        Result<PartialObjectMeta<Namespace>, watcher::Error>,
    >,
    concurrency: u16,
    clock_moves: Option<watch::Receiver<u64>>,
    cache: TokenCache,
    stopped: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let tokens = Api::<GitLabToken>::all(client.clone());
    // One cache of every GitLabToken, shared with the shim (which wakes, per namespace, on its
    // own tokens' changes): a second cache of them cost as much memory as the first.
    // Our own status writes must not wake us: react to spec, annotations, finalizers, deletion.
    let TokenCache {
        reader,
        writer,
        shim_wakes,
        index,
    } = cache;
    let overlaps = ctx.consumer_changes.waiting.clone();
    let listed = ctx.clone();
    let token_events = watcher(tokens, watcher::Config::default())
        .default_backoff()
        .modify(crate::controller::cache::slim)
        .reflect(writer)
        .inspect(move |event| {
            if let Ok(event) = event {
                index.follow(event);
            }
        })
        .inspect(move |event| match event {
            Ok(watcher::Event::Apply(t) | watcher::Event::InitApply(t)) => {
                overlaps.observe(t);
                shim_wakes.touched(t);
            }
            Ok(watcher::Event::Delete(t)) => {
                overlaps.forget(t);
                shim_wakes.touched(t);
            }
            Ok(watcher::Event::InitDone) => {
                listed
                    .tokens_listed
                    .store(true, std::sync::atomic::Ordering::SeqCst);
            }
            _ => {}
        })
        .applied_objects()
        .predicate_filter(
            predicates::generation
                .combine(predicates::annotations)
                .combine(predicates::finalizers),
            Default::default(),
        );
    let consumer_triggers = ctx.consumer_changes.token_triggers();
    let all_tokens = reader.clone();
    let by_connection = reader.clone();
    let by_namespace = reader.clone();
    let deleting = ctx.connections.clone();
    let managed = watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}=gitlab-token-operator"));
    let (secrets, secrets_writer) = reflector::store();
    ctx.secrets.set_store(secrets);
    let secrets_listed = ctx.clone();
    Controller::for_stream(token_events, reader)
        .owns_stream(
            watcher(Api::<PartialObjectMeta<Secret>>::all(client.clone()), managed)
                .default_backoff()
                .modify(crate::controller::cache::slim)
                .reflect(secrets_writer)
                .inspect(move |event| {
                    if matches!(event, Ok(watcher::Event::InitDone)) {
                        secrets_listed.secrets.set_listed();
                    }
                })
                .touched_objects(),
        )
        .watches_stream(policy_events, move |_policy| {
            // A policy change can allow, deny or reshape any token.
            all_tokens
                .state()
                .iter()
                .map(|t| ObjectRef::from_obj(t.as_ref()))
                .collect::<Vec<_>>()
        })
        .watches_stream(namespace_events, move |ns| {
            // Relabelling a namespace can take it out of (or into) a policy's selector.
            let name = ns.name_any();
            by_namespace
                .state()
                .iter()
                .filter(|t| t.metadata.namespace.as_deref() == Some(name.as_str()))
                .map(|t| ObjectRef::from_obj(t.as_ref()))
                .collect::<Vec<_>>()
        })
        .watches(
            Api::<GitLabConnection>::all(client.clone()),
            watcher::Config::default(),
            move |conn| {
                let name = conn.name_any();
                // Known before the tokens reconcile (the connection controller may run later):
                // a deleted connection's tokens are withdrawn.
                deleting.set_deleting(&name, conn.metadata.deletion_timestamp.is_some());
                by_connection
                    .state()
                    .iter()
                    .filter(|t| {
                        t.status
                            .as_ref()
                            .and_then(|s| s.connection.as_deref())
                            .is_none_or(|c| c == name)
                    })
                    .map(|t| ObjectRef::from_obj(t.as_ref()))
                    .collect::<Vec<_>>()
            },
        )
        .with_config(kube::runtime::controller::Config::default().concurrency(concurrency))
        .reconcile_all_on(on_clock_moves(clock_moves))
        .reconcile_on(consumer_triggers)
        // An answer about a delegating policy's GitLab identity changed (issue 11).
        .reconcile_on(crate::controller::delegation_refresh::token_triggers(&ctx))
        .graceful_shutdown_on(stopped)
        .run(gated(token::reconcile), token::error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

pub(super) async fn policy_status_controller(
    ctx: Arc<Context>,
    stopped: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    Controller::new(
        Api::<GitLabTokenPolicy>::all(ctx.client.clone()),
        watcher::Config::default(),
    )
    .graceful_shutdown_on(stopped)
    .run(
        policy_controller::reconcile,
        |_, _: &kube::Error, _| Action::requeue(Duration::from_secs(30)),
        ctx,
    )
    .for_each(|_| async {})
    .await;
}

pub(super) async fn shim_controller(
    ctx: Arc<Context>,
    (tokens, token_index): (Store<GitLabToken>, Arc<crate::controller::cache::NamespaceIndex>),
    token_wakes: tokio::sync::mpsc::UnboundedReceiver<ObjectRef<Namespace>>,
    stopped: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let state = Arc::new(ShimState::default());
    let (wake_tx, wake_rx) = tokio::sync::mpsc::unbounded_channel();
    shim::spawn_kind_watchers(client.clone(), state.clone(), wake_tx, ctx.clone());
    let controller = Controller::new(Api::<Namespace>::all(client.clone()), watcher::Config::default());
    let namespaces = controller.store();
    let every_namespace = move || {
        namespaces
            .state()
            .iter()
            .map(|n| ObjectRef::from_obj(n.as_ref()))
            .collect::<Vec<_>>()
    };
    let (by_connection, by_policy) = (every_namespace.clone(), every_namespace);
    controller
        .reconcile_on(tokio_stream::wrappers::UnboundedReceiverStream::new(token_wakes))
        .watches(
            Api::<GitLabConnection>::all(client.clone()),
            watcher::Config::default(),
            move |_| by_connection(),
        )
        .watches(
            Api::<GitLabTokenPolicy>::all(client.clone()),
            watcher::Config::default(),
            move |_| by_policy(),
        )
        .reconcile_on(tokio_stream::wrappers::UnboundedReceiverStream::new(wake_rx))
        .graceful_shutdown_on(stopped)
        .run(
            shim::reconcile,
            |_, _: &shim::ShimError, _| Action::requeue(Duration::from_secs(10)),
            Arc::new(ShimContext {
                ctx,
                state,
                tokens,
                token_index,
            }),
        )
        .for_each(|_| async {})
        .await;
}
