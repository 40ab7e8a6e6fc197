//! Flux sources as the token controller sees them: nudging them to re-read their Secret
//! (`reconcile.fluxcd.io/requestedAt`) and checking they caught up (Ready, and
//! `status.lastHandledReconcileAt` at or after the nudge).

use chrono::{DateTime, SecondsFormat, Utc};
use kube::{
    Api, Client,
    api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams},
};
use serde_json::{Value, json};

use crate::crd::{ConsumerRef, FIELD_MANAGER};

/// The annotation Flux watches for on-demand reconciles.
pub const REQUESTED_AT: &str = "reconcile.fluxcd.io/requestedAt";

/// The API resource of a consumer reference, for the Flux kinds this operator serves.
pub fn consumer_resource(consumer: &ConsumerRef) -> Option<ApiResource> {
    let (group, version) = consumer.api_version.split_once('/')?;
    let plural = match consumer.kind.as_str() {
        "GitRepository" => "gitrepositories",
        "OCIRepository" => "ocirepositories",
        "HelmRepository" => "helmrepositories",
        "ImageRepository" => "imagerepositories",
        "Provider" => "providers",
        _ => return None,
    };
    Some(ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(group, version, &consumer.kind),
        plural,
    ))
}

/// The value written to `requestedAt` for a nudge at `at` (RFC 3339 with nanoseconds, as `flux reconcile`).
pub fn nudge_value(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// Sets `requestedAt` on the consumer. A consumer that no longer exists is not an error.
pub async fn nudge(
    client: &Client,
    namespace: &str,
    consumer: &ConsumerRef,
    at: DateTime<Utc>,
) -> kube::Result<bool> {
    let Some(ar) = consumer_resource(consumer) else {
        return Ok(false);
    };
    let api = Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &ar);
    let patch = json!({"metadata": {"annotations": {REQUESTED_AT: nudge_value(at)}}});
    let params = PatchParams {
        field_manager: Some(format!("{FIELD_MANAGER}/nudge")),
        ..Default::default()
    };
    match api.patch(&consumer.name, &params, &Patch::Merge(&patch)).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether a consumer's status shows a successful reconcile handled at or after `nudged_at`.
pub fn caught_up(status: &Value, nudged_at: DateTime<Utc>) -> bool {
    let handled = status
        .get("lastHandledReconcileAt")
        .and_then(Value::as_str)
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc));
    let ready = status
        .get("conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True");
    ready && handled.is_some_and(|h| h >= nudged_at)
}

/// Whether a consumer's status shows an authentication failure handled at or after `since`.
pub fn auth_failed_since(status: &Value, since: DateTime<Utc>) -> bool {
    let handled = status
        .get("lastHandledReconcileAt")
        .and_then(Value::as_str)
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .is_some_and(|t| t.with_timezone(&Utc) >= since);
    let refused = status
        .get("conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "False" && c["reason"] == "AuthenticationFailed");
    handled && refused
}

/// What the consumers report after a nudge.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConsumerReport {
    /// Every existing consumer is Ready after the nudge.
    pub caught_up: bool,
    /// Some consumer was refused by GitLab after the nudge (the new token may be dead).
    pub auth_failed: bool,
}

/// Reads every existing consumer after a nudge at `nudged_at` (missing consumers do not block).
pub async fn report(
    client: &Client,
    namespace: &str,
    consumers: &[ConsumerRef],
    nudged_at: DateTime<Utc>,
) -> kube::Result<ConsumerReport> {
    let mut out = ConsumerReport {
        caught_up: true,
        auth_failed: false,
    };
    for consumer in consumers {
        let Some(ar) = consumer_resource(consumer) else {
            continue;
        };
        let api = Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &ar);
        if let Some(obj) = api.get_opt(&consumer.name).await? {
            let status = obj.data.get("status").unwrap_or(&Value::Null);
            out.caught_up &= caught_up(status, nudged_at);
            out.auth_failed |= auth_failed_since(status, nudged_at);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn caught_up_needs_ready_and_a_handled_nudge_not_older_than_ours() {
        let at = Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap();
        let ready = |handled: &str| json!({"lastHandledReconcileAt": handled, "conditions": [{"type": "Ready", "status": "True"}]});
        assert!(caught_up(&ready(&nudge_value(at)), at));
        assert!(caught_up(&ready("2026-01-01T12:00:01Z"), at));
        assert!(!caught_up(&ready("2026-01-01T11:59:59Z"), at));
        assert!(!caught_up(
            &json!({"conditions": [{"type": "Ready", "status": "True"}]}),
            at
        ));
        let failing = json!({"lastHandledReconcileAt": nudge_value(at), "conditions": [{"type": "Ready", "status": "False"}]});
        assert!(!caught_up(&failing, at));
    }

    #[test]
    fn auth_failures_count_only_after_the_nudge() {
        let at = Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap();
        let refused = |handled: &str| json!({"lastHandledReconcileAt": handled, "conditions": [{"type": "Ready", "status": "False", "reason": "AuthenticationFailed"}]});
        assert!(auth_failed_since(&refused(&nudge_value(at)), at));
        assert!(!auth_failed_since(&refused("2026-01-01T11:00:00Z"), at));
        let other = json!({"lastHandledReconcileAt": nudge_value(at), "conditions": [{"type": "Ready", "status": "False", "reason": "GitOperationFailed"}]});
        assert!(!auth_failed_since(&other, at));
    }

    #[test]
    fn consumer_resources_cover_the_flux_kinds() {
        let r = |api: &str, kind: &str| {
            consumer_resource(&ConsumerRef {
                api_version: api.into(),
                kind: kind.into(),
                name: "x".into(),
            })
        };
        assert_eq!(
            r("source.toolkit.fluxcd.io/v1", "OCIRepository").unwrap().plural,
            "ocirepositories"
        );
        assert_eq!(
            r("notification.toolkit.fluxcd.io/v1beta3", "Provider")
                .unwrap()
                .version,
            "v1beta3"
        );
        assert!(r("v1", "ConfigMap").is_none());
        assert!(r("nogroup", "GitRepository").is_none());
    }
}
