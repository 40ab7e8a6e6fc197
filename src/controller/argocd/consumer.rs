//! Argo CD Applications as consumers of a rotated token (DESIGN §6.3 for Argo CD): the nudge is
//! a hard refresh (`argocd.argoproj.io/refresh: hard`), and an Application has caught up when
//! Argo CD handled it — the controller removes the annotation in the same write that records the
//! comparison — and that comparison, made at or after the nudge, succeeded (no
//! `ComparisonError`/`InvalidSpecError`, sync status known). A hard refresh bypasses Argo CD's
//! revision cache and repo-error grace period, so the comparison really used the credential
//! (`reference/argocd-secrets.md` §6).

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use serde_json::{Value, json};

/// The annotation that asks Argo CD for a refresh; the controller removes it once handled.
pub const REFRESH_ANNOTATION: &str = "argocd.argoproj.io/refresh";

/// The patch of a nudge.
pub fn nudge_patch() -> Value {
    json!({"metadata": {"annotations": {REFRESH_ANNOTATION: "hard"}}})
}

/// When the Application was last compared (`status.reconciledAt`, whole seconds).
fn reconciled_at(app: &Value) -> Option<DateTime<Utc>> {
    app.pointer("/status/reconciledAt")
        .and_then(Value::as_str)
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// Whether a comparison at or after `since` happened and the refresh asked for is handled.
/// `reconciledAt` has whole seconds, so `since` is truncated to its second.
fn handled_since(app: &Value, since: DateTime<Utc>) -> bool {
    let since = since.duration_trunc(TimeDelta::seconds(1)).unwrap_or(since);
    let pending = app
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(REFRESH_ANNOTATION))
        .is_some();
    !pending && reconciled_at(app).is_some_and(|t| t >= since)
}

fn error_conditions(app: &Value) -> impl Iterator<Item = &Value> {
    app.pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|c| matches!(c["type"].as_str(), Some("ComparisonError" | "InvalidSpecError")))
}

/// Whether the Application (whole object) compared successfully after a nudge at `nudged_at`.
pub fn caught_up(app: &Value, nudged_at: DateTime<Utc>) -> bool {
    let sync_known = app
        .pointer("/status/sync/status")
        .and_then(Value::as_str)
        .is_some_and(|s| s != "Unknown");
    handled_since(app, nudged_at) && sync_known && error_conditions(app).next().is_none()
}

/// How go-git, Helm and registries word a refused credential in a `ComparisonError`
/// (`reference/argocd-secrets.md` §7), compared lower-cased.
const REFUSAL_WORDS: &[&str] = &[
    "authentication required",
    "authorization failed",
    "401 unauthorized",
    "403 forbidden",
    "unauthorized",
];

/// Whether a comparison at or after `since` failed because the credentials were refused.
pub fn auth_failed_since(app: &Value, since: DateTime<Utc>) -> bool {
    handled_since(app, since)
        && error_conditions(app).any(|c| {
            let m = c["message"].as_str().unwrap_or_default().to_lowercase();
            REFUSAL_WORDS.iter().any(|w| m.contains(w))
        })
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn app(annotation: bool, reconciled: &str, sync: &str, error: Option<&str>) -> Value {
        let mut a = json!({"metadata": {"annotations": {}}, "status": {"reconciledAt": reconciled, "sync": {"status": sync}}});
        if annotation {
            a["metadata"]["annotations"][REFRESH_ANNOTATION] = json!("hard");
        }
        if let Some(m) = error {
            a["status"]["conditions"] = json!([{"type": "ComparisonError", "message": m}]);
        }
        a
    }

    #[test]
    fn caught_up_needs_the_refresh_handled_after_the_nudge_and_a_clean_comparison() {
        let at = Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap() + TimeDelta::milliseconds(400);
        assert!(caught_up(&app(false, "2026-01-01T12:00:00Z", "Synced", None), at));
        assert!(caught_up(
            &app(false, "2026-01-01T12:00:05Z", "OutOfSync", None),
            at
        ));
        // Not handled yet: the annotation is still there.
        assert!(!caught_up(&app(true, "2026-01-01T12:00:05Z", "Synced", None), at));
        // Compared before the nudge.
        assert!(!caught_up(
            &app(false, "2026-01-01T11:59:59Z", "Synced", None),
            at
        ));
        // Compared after, but failed.
        let failed = app(
            false,
            "2026-01-01T12:00:05Z",
            "Unknown",
            Some(
                "Failed to load target state: failed to generate manifest for source 1 of 1: rpc error: code = Unknown desc = failed to list refs: authentication required",
            ),
        );
        assert!(!caught_up(&failed, at));
        assert!(auth_failed_since(&failed, at));
        assert!(!auth_failed_since(
            &app(
                false,
                "2026-01-01T12:00:05Z",
                "Unknown",
                Some("repository not found")
            ),
            at
        ));
        assert!(!caught_up(
            &app(false, "2026-01-01T12:00:05Z", "Unknown", None),
            at
        ));
    }
}
