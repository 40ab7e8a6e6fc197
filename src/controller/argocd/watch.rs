//! The Argo CD shim's view: reflectors over `Application`s (every namespace) and `AppProject`s
//! (Argo CD's namespace) once Argo CD's CRDs are served, waking the shim on every change.

use std::{
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use futures::StreamExt;
use kube::{
    Api, Client, Discovery, ResourceExt,
    api::{ApiResource, DynamicObject},
    runtime::{WatchStreamExt, reflector, reflector::Store, watcher},
};
use tokio::sync::Notify;

/// Argo CD's API group.
pub const GROUP: &str = "argoproj.io";
/// The version of its CRDs the shim reads.
pub const VERSION: &str = "v1alpha1";

/// The shim's caches.
#[derive(Default)]
pub struct ArgoView {
    /// Applications (all namespaces), once served.
    pub applications: RwLock<Option<(ApiResource, Store<DynamicObject>)>>,
    /// AppProjects in Argo CD's namespace, once served.
    pub projects: RwLock<Option<Store<DynamicObject>>>,
    /// Both kinds listed at least once (or found not served).
    pub listed: [AtomicBool; 2],
    /// Wakes the shim.
    pub wake: Notify,
}

impl ArgoView {
    /// Whether both kinds were listed (or found not served) at least once.
    pub fn complete(&self) -> bool {
        self.listed.iter().all(|l| l.load(Ordering::SeqCst))
    }
}

/// The Argo CD resource of `kind` if the API server serves it.
pub(super) async fn served(client: &Client, kind: &str) -> Result<Option<ApiResource>, kube::Error> {
    let discovery = Discovery::new(client.clone()).filter(&[GROUP]).run().await?;
    Ok(discovery.get(GROUP).and_then(|g| {
        g.versioned_resources(VERSION)
            .into_iter()
            .find(|(ar, _)| ar.kind == kind)
            .map(|(ar, _)| ar)
    }))
}

/// Starts the two reflectors (each waits until its kind is served).
/// Application changes also wake tokens whose overlap waits on that Application (`ctx`).
pub fn spawn(
    client: Client,
    argocd_namespace: String,
    view: Arc<ArgoView>,
    ctx: Arc<crate::controller::context::Context>,
) {
    for (i, kind) in ["Application", "AppProject"].into_iter().enumerate() {
        let (client, view, namespace, ctx) = (
            client.clone(),
            view.clone(),
            argocd_namespace.clone(),
            ctx.clone(),
        );
        tokio::spawn(async move {
            let resource = loop {
                match served(&client, kind).await {
                    Ok(Some(ar)) => break ar,
                    Ok(None) => {
                        // Argo CD is not installed (yet): nothing to serve, look again later.
                        if !view.listed[i].swap(true, Ordering::SeqCst) {
                            view.wake.notify_one();
                        }
                        tokio::time::sleep(Duration::from_secs(20)).await;
                    }
                    Err(e) => {
                        tracing::debug!(kind, error = %e, "discovery failed; retrying");
                        tokio::time::sleep(Duration::from_secs(2)).await;
                    }
                }
            };
            tracing::info!(kind, "serving annotated Argo CD Applications");
            view.listed[i].store(false, Ordering::SeqCst);
            let writer = reflector::store::Writer::<DynamicObject>::new(resource.clone());
            let reader = writer.as_reader();
            let api = if kind == "Application" {
                if let Ok(mut a) = view.applications.write() {
                    *a = Some((resource.clone(), reader));
                }
                Api::<DynamicObject>::all_with(client, &resource)
            } else {
                if let Ok(mut p) = view.projects.write() {
                    *p = Some(reader);
                }
                Api::<DynamicObject>::namespaced_with(client, &namespace, &resource)
            };
            watcher(api, watcher::Config::default())
                .default_backoff()
                .modify(crate::controller::cache::slim)
                .reflect(writer)
                .for_each(|event| {
                    if let Ok(watcher::Event::InitDone) = &event {
                        view.listed[i].store(true, Ordering::SeqCst);
                    }
                    if let Ok(watcher::Event::Apply(o) | watcher::Event::Delete(o)) = &event
                        && kind == "Application"
                        && let Some(ns) = o.namespace()
                    {
                        ctx.consumer_changes
                            .notify(crate::controller::consumer_watch::ConsumerChange {
                                namespace: ns,
                                kind: kind.to_string(),
                                name: o.name_any(),
                            });
                    }
                    if matches!(
                        event,
                        Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_) | watcher::Event::InitDone)
                    ) {
                        view.wake.notify_one();
                    }
                    futures::future::ready(())
                })
                .await;
        });
    }
}
