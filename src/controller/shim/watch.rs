//! The shim's view of Flux sources: one reflector per served Flux kind, waking the namespace of
//! every change, and the sources of one namespace that carry `gitlabtokens.io/` annotations.

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Api, Client, Discovery, ResourceExt,
    api::{ApiResource, DynamicObject},
    runtime::{
        WatchStreamExt,
        reflector::{self, ObjectRef},
        watcher,
    },
};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::ShimState;
use crate::{controller::cache::NamespaceIndex, shim::annotations};

/// One served Flux kind's cache, and the names in it by namespace.
#[derive(Clone)]
pub struct KindCache {
    /// The kind at its served version.
    pub resource: ApiResource,
    /// Every object of the kind.
    pub store: reflector::Store<DynamicObject>,
    /// Their names by namespace.
    pub index: Arc<NamespaceIndex>,
}

/// The Flux kinds the shim serves, with the API versions it prefers (first served wins).
pub const FLUX_KINDS: [(&str, &str, &str, &[&str]); 5] = [
    (
        "source.toolkit.fluxcd.io",
        "GitRepository",
        "gitrepositories",
        &["v1", "v1beta2"],
    ),
    (
        "source.toolkit.fluxcd.io",
        "OCIRepository",
        "ocirepositories",
        &["v1", "v1beta2"],
    ),
    (
        "source.toolkit.fluxcd.io",
        "HelmRepository",
        "helmrepositories",
        &["v1", "v1beta2"],
    ),
    (
        "image.toolkit.fluxcd.io",
        "ImageRepository",
        "imagerepositories",
        &["v1", "v1beta2"],
    ),
    (
        "notification.toolkit.fluxcd.io",
        "Provider",
        "providers",
        &["v1beta3", "v1beta2"],
    ),
];

/// Watches every Flux kind once it is served, and wakes the namespace of every change.
pub fn spawn_kind_watchers(
    client: Client,
    state: Arc<ShimState>,
    wake: mpsc::UnboundedSender<ObjectRef<Namespace>>,
    ctx: Arc<crate::controller::context::Context>,
) {
    for (group, kind, plural, versions) in FLUX_KINDS {
        let (client, state, wake, ctx) = (client.clone(), state.clone(), wake.clone(), ctx.clone());
        tokio::spawn(async move {
            let mut concluded = false;
            let resource = loop {
                match served(&client, group, kind, plural, versions).await {
                    Ok(Some(ar)) => break ar,
                    Ok(None) => {
                        if !concluded {
                            concluded = true;
                            state.concluded_kinds.fetch_add(1, Ordering::SeqCst);
                        }
                        // The CRD is not installed (yet): look again later; the shim works without it.
                        tokio::time::sleep(Duration::from_secs(20)).await;
                    }
                    Err(e) => {
                        tracing::debug!(kind, error = %e, "discovery failed; retrying");
                        tokio::time::sleep(Duration::from_secs(2)).await;
                    }
                }
            };
            tracing::info!(kind, version = %resource.version, "serving annotated sources of this kind");
            let writer = reflector::store::Writer::<DynamicObject>::new(resource.clone());
            let reader = writer.as_reader();
            let index = Arc::new(NamespaceIndex::default());
            if let Ok(mut kinds) = state.kinds.write() {
                kinds.push(KindCache {
                    resource: resource.clone(),
                    store: reader,
                    index: index.clone(),
                });
            }
            let api = Api::<DynamicObject>::all_with(client, &resource);
            watcher(api, watcher::Config::default())
                .default_backoff()
                .modify(crate::controller::cache::slim)
                .reflect(writer)
                .for_each(|event| {
                    if let Ok(watcher::Event::InitDone) = &event
                        && !concluded
                    {
                        concluded = true;
                        state.concluded_kinds.fetch_add(1, Ordering::SeqCst);
                    }
                    if let Ok(event) = event {
                        index.follow(&event);
                        let objects: Vec<&DynamicObject> = match &event {
                            watcher::Event::Apply(o)
                            | watcher::Event::Delete(o)
                            | watcher::Event::InitApply(o) => vec![o],
                            _ => Vec::new(),
                        };
                        for o in objects {
                            if let Some(ns) = o.namespace() {
                                let _ = wake.send(ObjectRef::new(&ns));
                                ctx.consumer_changes.notify(
                                    crate::controller::consumer_watch::ConsumerChange {
                                        namespace: ns,
                                        kind: kind.to_string(),
                                        name: o.name_any(),
                                    },
                                );
                            }
                        }
                    }
                    futures::future::ready(())
                })
                .await;
        });
    }
}

/// The served version of a Flux kind; `Ok(None)` when the API server does not serve it.
async fn served(
    client: &Client,
    group: &str,
    kind: &str,
    plural: &str,
    versions: &[&str],
) -> Result<Option<ApiResource>, kube::Error> {
    let discovery = Discovery::new(client.clone()).filter(&[group]).run().await?;
    let Some(g) = discovery.get(group) else {
        return Ok(None);
    };
    Ok(versions.iter().find_map(|v| {
        g.versioned_resources(v)
            .into_iter()
            .find(|(ar, _)| ar.kind == kind && ar.plural == plural)
            .map(|(ar, _)| ar)
    }))
}

/// Every Flux kind the shim serves that the API server serves now, at its preferred version.
pub async fn served_flux_kinds(client: &Client) -> Result<Vec<ApiResource>, kube::Error> {
    let mut out = Vec::new();
    for (group, kind, plural, versions) in FLUX_KINDS {
        if let Some(ar) = served(client, group, kind, plural, versions).await? {
            out.push(ar);
        }
    }
    Ok(out)
}

/// One Flux source with `gitlabtokens.io/` annotations, as the shim sees it.
pub struct Source {
    /// The object, with `apiVersion` and `kind` filled in.
    pub value: Value,
    /// Its uid.
    pub uid: String,
    /// Its name.
    pub name: String,
    /// Its kind's resource.
    pub resource: ApiResource,
    /// Whether it opted in (`gitlabtokens.io/inject: "true"`).
    pub opted_in: bool,
}

/// Every live source in `namespace` with at least one `gitlabtokens.io/` annotation, earliest
/// first (the first source to name a Secret keeps it when needs conflict).
pub fn annotated_sources(state: &ShimState, namespace: &str) -> Vec<Source> {
    let kinds = state.kinds.read().map(|k| k.clone()).unwrap_or_default();
    let mut out = Vec::new();
    for KindCache {
        resource,
        store,
        index,
    } in kinds
    {
        let in_namespace = index
            .names(namespace)
            .into_iter()
            .filter_map(|name| store.get(&ObjectRef::new_with(&name, resource.clone()).within(namespace)));
        for obj in in_namespace {
            if obj.metadata.deletion_timestamp.is_some()
                || !obj
                    .annotations()
                    .keys()
                    .any(|k| k.starts_with(annotations::PREFIX))
            {
                continue;
            }
            let mut value = serde_json::to_value(obj.as_ref()).unwrap_or_default();
            value["apiVersion"] = json!(resource.api_version);
            value["kind"] = json!(resource.kind);
            out.push(Source {
                value,
                uid: obj.uid().unwrap_or_default(),
                name: obj.name_any(),
                resource: resource.clone(),
                opted_in: annotations::is_opted_in(obj.annotations()),
            });
        }
    }
    out.sort_by(|a, b| {
        let created = |s: &Source| {
            s.value
                .pointer("/metadata/creationTimestamp")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        created(a).cmp(&created(b)).then_with(|| a.name.cmp(&b.name))
    });
    out
}
