//! What the shim tells and writes on sources: Warning events (refusals no `GitLabToken` can
//! carry, ignored annotations), and the `spec.secretRef` it sets and later removes again.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::{
    Api,
    api::{DynamicObject, Patch, PatchParams},
    runtime::events::{Event, EventType},
};
use serde_json::{Value, json};

use super::{ShimState, watch::Source};
use crate::{
    controller::{
        cache::{Written, fingerprint},
        context::Context,
    },
    crd::FIELD_MANAGER,
    reason::Reason,
    shim::{MAX_MESSAGE, Refusal, annotations::SECRET_REF_SET, bounded, warnings::annotation_warnings},
};

fn reference(namespace: &str, source: &Source) -> ObjectReference {
    ObjectReference {
        api_version: Some(source.resource.api_version.clone()),
        kind: Some(source.resource.kind.clone()),
        name: Some(source.name.clone()),
        namespace: Some(namespace.to_string()),
        uid: Some(source.uid.clone()),
        ..Default::default()
    }
}

/// Records `fingerprint` under `key`; whether it differs from the last one (report only then).
fn is_new(state: &ShimState, key: String, fingerprint: String) -> bool {
    state
        .reported
        .lock()
        .map(|mut m| m.insert(key, fingerprint.clone()) != Some(fingerprint))
        .unwrap_or(true)
}

/// Forgets what was reported about a source (it is served now).
pub fn clear_report(state: &ShimState, uid: &str) {
    if let Ok(mut m) = state.reported.lock() {
        m.remove(uid);
    }
}

/// A refusal no `GitLabToken` carries, reported once per change: Warning event on the source,
/// a metric and an info log.
pub async fn report(ctx: &Context, state: &ShimState, namespace: &str, source: &Source, refusal: &Refusal) {
    let note = refusal.note();
    if !is_new(
        state,
        source.uid.clone(),
        format!("{}:{note}", refusal.reason.as_str()),
    ) {
        return;
    }
    ctx.metrics.denied(refusal.reason.as_str());
    let event = Event {
        type_: EventType::Warning,
        reason: refusal.reason.as_str().to_string(),
        note: Some(note.clone()),
        action: "Inject".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &reference(namespace, source)).await {
        tracing::warn!(error = %e, "could not publish event on source");
    }
    tracing::info!(namespace, source = %source.name, reason = refusal.reason.as_str(), "refused: {note}");
}

/// Warns (once per change) about annotations the shim ignores on a source: an `inject` value
/// other than "true"/"false", unknown `gitlabtokens.io/` keys (with a did-you-mean).
pub async fn warn_ignored(ctx: &Context, state: &ShimState, namespace: &str, source: &Source) {
    let annotations = crate::shim::infer::annotations_of(&source.value);
    let warnings = annotation_warnings(&annotations);
    let key = format!("{}/ignored", source.uid);
    if warnings.is_empty() {
        if let Ok(mut m) = state.reported.lock() {
            m.remove(&key);
        }
        return;
    }
    let note = bounded(&warnings.join("; "), MAX_MESSAGE);
    if !is_new(state, key, note.clone()) {
        return;
    }
    let event = Event {
        type_: EventType::Warning,
        reason: Reason::IgnoredAnnotation.as_str().to_string(),
        note: Some(note.clone()),
        action: "Inject".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &reference(namespace, source)).await {
        tracing::warn!(error = %e, "could not publish event on source");
    }
    tracing::info!(namespace, source = %source.name, "ignored annotations: {note}");
}

fn params() -> PatchParams {
    PatchParams {
        field_manager: Some(format!("{FIELD_MANAGER}/shim")),
        ..Default::default()
    }
}

/// Points a source without `spec.secretRef` at its Secret, and records on the source (annotation
/// [`SECRET_REF_SET`]) that the shim set it. A patch already made whose event the cache has not
/// seen yet is not sent again (`written`).
pub async fn point_at_secret(
    ctx: &Context,
    written: &Written,
    namespace: &str,
    source: &Source,
    secret: &str,
) -> kube::Result<()> {
    let points = source
        .value
        .pointer("/spec/secretRef/name")
        .and_then(Value::as_str)
        == Some(secret);
    let marked = crate::shim::infer::annotations_of(&source.value)
        .get(SECRET_REF_SET)
        .is_some_and(|set| set == secret);
    let cached = source
        .value
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str);
    let what = fingerprint(&secret);
    if (points && marked) || written.in_flight(&source.uid, cached, what) {
        // Already done (a write that changes nothing is still a request, per source per reconcile).
        return Ok(());
    }
    let api = Api::<DynamicObject>::namespaced_with(ctx.client.clone(), namespace, &source.resource);
    let patch = json!({
        "metadata": {"annotations": {SECRET_REF_SET: secret}},
        "spec": {"secretRef": {"name": secret}},
    });
    let patched = api.patch(&source.name, &params(), &Patch::Merge(&patch)).await?;
    written.record(&source.uid, patched.metadata.resource_version, what);
    Ok(())
}

/// For a source that no longer opts in: removes the `spec.secretRef` the shim set (only when it
/// still names the Secret the shim set; one the user changed since is theirs) and the marker.
/// Nothing to do (`Ok(false)`) without the marker.
pub async fn release_secret_ref(ctx: &Context, namespace: &str, source: &Source) -> kube::Result<bool> {
    let Some(set) = crate::shim::infer::annotations_of(&source.value)
        .get(SECRET_REF_SET)
        .cloned()
    else {
        return Ok(false);
    };
    let current = source
        .value
        .pointer("/spec/secretRef/name")
        .and_then(Value::as_str);
    let mut patch = json!({"metadata": {"annotations": {SECRET_REF_SET: null}}});
    if current == Some(set.as_str()) {
        patch["spec"] = json!({"secretRef": null});
    }
    let api = Api::<DynamicObject>::namespaced_with(ctx.client.clone(), namespace, &source.resource);
    api.patch(&source.name, &params(), &Patch::Merge(&patch)).await?;
    tracing::info!(
        namespace,
        source = %source.name,
        secret = %set,
        "the source no longer opts in; removed the spec.secretRef the operator had set"
    );
    Ok(true)
}
