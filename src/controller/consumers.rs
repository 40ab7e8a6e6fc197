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
        "Application" => "applications",
        _ => return None,
    };
    Some(ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(group, version, &consumer.kind),
        plural,
    ))
}

/// Whether the consumer is an Argo CD Application (nudged with a hard refresh).
fn is_application(consumer: &ConsumerRef) -> bool {
    consumer.kind == "Application" && consumer.api_version.starts_with("argoproj.io/")
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
    let namespace = consumer.namespace.as_deref().unwrap_or(namespace);
    let api = Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &ar);
    let patch = if is_application(consumer) {
        super::argocd::consumer::nudge_patch()
    } else {
        json!({"metadata": {"annotations": {REQUESTED_AT: nudge_value(at)}}})
    };
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

/// Reasons Flux gives a failed fetch, which are an authentication failure when the message says
/// the remote refused the credentials: source-controller's `GitOperationFailed` (GitRepository),
/// `Failed` (HelmRepository index), `OCIArtifactPullFailed` (OCIRepository) and
/// image-reflector-controller's `ReadOperationFailed` (ImageRepository).
const FETCH_FAILURE_REASONS: &[&str] = &[
    "GitOperationFailed",
    "Failed",
    "OCIArtifactPullFailed",
    "ReadOperationFailed",
];

/// How go-git, go-containerregistry and Helm's getter word a refusal of the credentials
/// (compared lower-cased): go-git's `authentication required` (401) and `authorization failed`
/// (403), a registry's `UNAUTHORIZED`/`DENIED` codes, and HTTP status texts.
const REFUSAL_WORDS: &[&str] = &[
    "authentication required",
    "authorization failed",
    "unauthorized",
    "denied:",
    "403 forbidden",
    "access denied",
];

/// Whether a Flux `Ready=False` condition's reason and message mean the credentials were
/// refused: `AuthenticationFailed` (the Secret yields no usable credentials), or a fetch failure
/// whose message carries the remote's refusal.
pub fn is_auth_refusal(reason: &str, message: &str) -> bool {
    if reason == "AuthenticationFailed" {
        return true;
    }
    let lower = message.to_lowercase();
    FETCH_FAILURE_REASONS.contains(&reason) && REFUSAL_WORDS.iter().any(|w| lower.contains(w))
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
        .any(|c| {
            c["type"] == "Ready"
                && c["status"] == "False"
                && is_auth_refusal(
                    c["reason"].as_str().unwrap_or_default(),
                    c["message"].as_str().unwrap_or_default(),
                )
        });
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
        let ns = consumer.namespace.as_deref().unwrap_or(namespace);
        let api = Api::<DynamicObject>::namespaced_with(client.clone(), ns, &ar);
        if let Some(obj) = api.get_opt(&consumer.name).await? {
            if is_application(consumer) {
                let app = serde_json::to_value(&obj).unwrap_or_default();
                out.caught_up &= super::argocd::consumer::caught_up(&app, nudged_at);
                out.auth_failed |= super::argocd::consumer::auth_failed_since(&app, nudged_at);
                continue;
            }
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
        let git_refused = json!({"lastHandledReconcileAt": nudge_value(at), "conditions": [{"type": "Ready", "status": "False", "reason": "GitOperationFailed",
            "message": "failed to checkout and determine revision: unable to clone 'https://gitlab.example.com/acme/app.git': authentication required: HTTP Basic: Access denied"}]});
        assert!(auth_failed_since(&git_refused, at));
        let other = json!({"lastHandledReconcileAt": nudge_value(at), "conditions": [{"type": "Ready", "status": "False", "reason": "GitOperationFailed",
            "message": "failed to checkout and determine revision: unable to clone 'https://gitlab.example.com/acme/app.git': repository not found: The project you were looking for could not be found"}]});
        assert!(!auth_failed_since(&other, at));
    }

    /// The words real Flux controllers write (source-controller's gitrepository, helmrepository
    /// and ocirepository controllers over go-git, Helm's getter and go-containerregistry;
    /// image-reflector-controller's scan), refusals and not.
    #[test]
    fn auth_refusals_are_recognised_in_real_flux_messages() {
        let refused = [
            (
                "GitOperationFailed",
                "failed to checkout and determine revision: unable to clone 'https://gitlab.example.com/acme/app.git': authentication required: HTTP Basic: Access denied. If a password was provided for Git authentication, the password was incorrect or you're required to use a token instead of a password.",
            ),
            (
                "GitOperationFailed",
                "failed to checkout and determine revision: unable to clone 'https://gitlab.example.com/acme/app.git': authorization failed: ",
            ),
            (
                "GitOperationFailed",
                "failed to checkout and determine revision: unable to list remote for 'https://gitlab.example.com/acme/app.git': authentication required",
            ),
            (
                "AuthenticationFailed",
                "failed to get secret 'tenant/app-token': secrets \"app-token\" not found",
            ),
            (
                "AuthenticationFailed",
                "failed to configure authentication options: invalid 'password' requires 'username' to be set",
            ),
            (
                "Failed",
                "failed to fetch Helm repository index: failed to cache index to temporary file: failed to fetch https://gitlab.example.com/api/v4/projects/7/packages/helm/stable/index.yaml : 401 Unauthorized",
            ),
            (
                "Failed",
                "failed to fetch Helm repository index: failed to cache index to temporary file: failed to fetch https://gitlab.example.com/api/v4/projects/7/packages/helm/stable/index.yaml : 403 Forbidden",
            ),
            (
                "OCIArtifactPullFailed",
                "failed to determine artifact digest: GET https://registry.gitlab.example.com/v2/acme/app/manifests/latest: UNAUTHORIZED: authentication required; [map[Action:pull Class: Name:acme/app Type:repository]]",
            ),
            (
                "OCIArtifactPullFailed",
                "failed to determine artifact digest: GET https://gitlab.example.com/jwt/auth?scope=repository%3Aacme%2Fapp%3Apull&service=container_registry: unexpected status code 401 Unauthorized: {\"message\":\"HTTP Basic: Access denied\"}",
            ),
            (
                "ReadOperationFailed",
                "scan failed: GET https://registry.gitlab.example.com/v2/acme/app/tags/list: DENIED: access forbidden",
            ),
            (
                "ReadOperationFailed",
                "scan failed: GET https://registry.gitlab.example.com/v2/acme/app/tags/list: UNAUTHORIZED: authentication required; [map[Action:pull Class: Name:acme/app Type:repository]]",
            ),
        ];
        for (reason, message) in refused {
            assert!(is_auth_refusal(reason, message), "{reason}: {message}");
        }
        let not_refused = [
            (
                "GitOperationFailed",
                "failed to checkout and determine revision: unable to clone 'https://gitlab.example.com/acme/app.git': repository not found: The project you were looking for could not be found or you don't have permission to view it.",
            ),
            (
                "GitOperationFailed",
                "failed to checkout and determine revision: unable to clone 'https://gitlab.example.com/acme/app.git': dial tcp: lookup gitlab.example.com: no such host",
            ),
            (
                "Failed",
                "failed to fetch Helm repository index: failed to cache index to temporary file: failed to fetch https://gitlab.example.com/api/v4/projects/7/packages/helm/stable/index.yaml : 404 Not Found",
            ),
            (
                "IndexationFailed",
                "failed to load Helm repository from index YAML: no API version specified",
            ),
            (
                "OCIArtifactPullFailed",
                "failed to determine artifact digest: GET https://registry.gitlab.example.com/v2/acme/app/manifests/v9: MANIFEST_UNKNOWN: manifest unknown; map[Tag:v9]",
            ),
            (
                "ReadOperationFailed",
                "scan failed: GET https://registry.gitlab.example.com/v2/acme/app/tags/list: NAME_UNKNOWN: repository name not known to registry",
            ),
            ("ArtifactFailed", "unauthorized words under an unrelated reason"),
        ];
        for (reason, message) in not_refused {
            assert!(!is_auth_refusal(reason, message), "{reason}: {message}");
        }
    }

    #[test]
    fn consumer_resources_cover_the_flux_kinds() {
        let r = |api: &str, kind: &str| {
            consumer_resource(&ConsumerRef {
                api_version: api.into(),
                kind: kind.into(),
                name: "x".into(),
                namespace: None,
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
