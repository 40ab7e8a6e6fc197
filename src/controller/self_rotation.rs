//! The operator rotating its own GitLab token (`selfRotation`, DESIGN §6.8), crash-safe: the
//! credentials Secret is annotated before the rotate call and the new value is written back
//! before it is used; an annotated attempt that finds the stored token dead is `SelfRotationLost`.

use std::{collections::BTreeMap, time::Duration};

use chrono::{Days as ChronoDays, NaiveDate};
use k8s_openapi::{ByteString, api::core::v1::Secret};
use kube::{
    Api,
    api::{Patch, PatchParams},
};
use secrecy::ExposeSecret;
use serde_json::json;

use super::{
    connection_error::{NotReady, gitlab_not_ready, not_ready},
    context::Context,
};
use crate::{
    crd::SecretKeyReference,
    gitlab::{GitLabApi, GitLabError},
};

/// Annotation on the credentials Secret while a self-rotation is in flight.
pub const SELF_ROTATION_ANNOTATION: &str = "gitlabtokens.io/self-rotation-started-at";

/// Whether the operator's token is inside its renewal window (`renew_before` days before expiry).
pub fn self_rotation_due(today: NaiveDate, expires_at: NaiveDate, renew_before_days: u32) -> bool {
    expires_at
        .checked_sub_days(ChronoDays::new(u64::from(renew_before_days)))
        .is_none_or(|start| today >= start)
}

/// A failed check's [`NotReady`]: `SelfRotationLost` when an interrupted rotation left a dead token.
pub(super) fn lost_or(e: &GitLabError, in_flight: bool, url: &str) -> NotReady {
    if in_flight && e.is_credential_failure() {
        return not_ready(
            "SelfRotationLost",
            "a self-rotation was interrupted and the stored token no longer works; put a new token with `api` scope \
             into the credentials Secret (the operator will not present the old one to GitLab's rotate endpoint again)",
        );
    }
    gitlab_not_ready(e, url)
}

/// Removes the in-flight mark from the credentials Secret.
pub(super) async fn clear_rotation_mark(secrets: &Api<Secret>, name: &str) -> kube::Result<()> {
    let patch = json!({"metadata": {"annotations": {SELF_ROTATION_ANNOTATION: null}}});
    secrets
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
}

/// Rotates the operator's token through `api` and stores the new value in the Secret.
pub(super) async fn rotate_own_token(
    ctx: &Context,
    api: &dyn GitLabApi,
    url: &str,
    secrets: &Api<Secret>,
    credentials: &SecretKeyReference,
    today: NaiveDate,
    lifetime_days: u32,
) -> Result<(), NotReady> {
    let (secret_name, key) = (credentials.name.as_str(), credentials.key.as_str());
    let mark = json!({"metadata": {"annotations": {SELF_ROTATION_ANNOTATION: ctx.now().to_rfc3339()}}});
    secrets
        .patch(secret_name, &PatchParams::default(), &Patch::Merge(&mark))
        .await
        .map_err(|e| {
            not_ready(
                "CredentialsUnwritable",
                format!("cannot mark the credentials Secret before rotating: {e}"),
            )
        })?;
    let expires = today
        .checked_add_days(ChronoDays::new(u64::from(lifetime_days)))
        .unwrap_or(today);
    let new = api
        .rotate_personal_access_token_self(expires)
        .await
        .map_err(|e| gitlab_not_ready(&e, url))?;
    // GitLab has rotated the operator's token; the new value lives only in this process.
    crate::crash_point!("selfrotate.after_rotate");
    let encoded = ByteString(new.token.expose_secret().as_bytes().to_vec());
    let mut data = BTreeMap::new();
    data.insert(key.to_string(), encoded);
    let write = json!({"metadata": {"annotations": {SELF_ROTATION_ANNOTATION: null}}, "data": data});
    let mut last = None;
    for attempt in 0..5u32 {
        match secrets
            .patch(secret_name, &PatchParams::default(), &Patch::Merge(&write))
            .await
        {
            Ok(_) => {
                // Stored, but the connection's status does not record the rotation yet.
                crate::crash_point!("selfrotate.after_store");
                ctx.metrics
                    .tokens_rotated
                    .get_or_create(&crate::metrics::StrategyLabels {
                        strategy: "SelfRotation".into(),
                    })
                    .inc();
                return Ok(());
            }
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(200 * 2u64.pow(attempt))).await;
    }
    Err(not_ready(
        "SelfRotationLost",
        format!(
            "rotated the operator's token but could not store it: {}",
            last.map(|e| e.to_string()).unwrap_or_default()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn self_rotation_window_table() {
        let d = |m, day| NaiveDate::from_ymd_opt(2026, m, day).unwrap();
        let cases = [
            (d(3, 1), d(3, 31), 10, false),
            (d(3, 21), d(3, 31), 10, true),
            (d(3, 20), d(3, 31), 10, false),
            (d(3, 31), d(3, 31), 10, true),
            (d(4, 2), d(3, 31), 10, true),
            (d(1, 1), d(3, 31), 400, true),
        ];
        for (today, expires, before, want) in cases {
            assert_eq!(
                self_rotation_due(today, expires, before),
                want,
                "{today} {expires} {before}"
            );
        }
    }
}
