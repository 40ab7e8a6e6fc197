//! Whether Argo CD's API is really there before the shim concludes that Applications are gone.
//!
//! Deleting the Application or AppProject CRD makes the API server delete every object of it
//! (the `customresourcecleanup` finalizer: watchers see each one deleted) and then answer 404 for
//! the resource. To the shim that looks like every Application deleted, which would revoke every
//! Argo CD token, although the usual cause is an Argo CD re-install or an upgrade gone wrong. So
//! while either CRD is missing or being deleted, and for [`RETURN_GRACE`] (operator clock) after
//! both are back (Applications are restored with them, by GitOps or a backup), the shim deletes no
//! token it no longer sees a need for: it keeps them and says so (log, Warning event on each kept
//! token). With both CRDs present and settled, a deleted Application revokes as before.

use std::sync::Mutex;

use chrono::{DateTime, TimeDelta, Utc};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{Api, Client};

/// The CRDs the shim reads (`<plural>.<group>`).
pub const CRDS: [&str; 2] = ["applications.argoproj.io", "appprojects.argoproj.io"];

/// How long after Argo CD's CRDs return tokens no Application needs are still kept.
pub const RETURN_GRACE: TimeDelta = TimeDelta::minutes(10);

/// What the shim remembers about the API between passes.
#[derive(Debug, Default)]
pub struct Presence {
    state: Mutex<State>,
}

#[derive(Debug, Default, Clone, PartialEq)]
struct State {
    /// Why the API is missing, while it is.
    missing: Option<String>,
    /// When it came back (the grace runs from here).
    back_at: Option<DateTime<Utc>>,
}

/// Why a CRD is not usable (absent or being deleted); `Ok(None)`: both are served. Without the
/// right to read CRDs (an older chart), asks discovery whether both kinds are served.
async fn missing(client: &Client) -> Result<Option<String>, kube::Error> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for name in CRDS {
        match api.get_opt(name).await {
            Ok(None) => return Ok(Some(format!("CustomResourceDefinition {name} does not exist"))),
            Ok(Some(crd)) if crd.metadata.deletion_timestamp.is_some() => {
                return Ok(Some(format!("CustomResourceDefinition {name} is being deleted")));
            }
            Ok(Some(_)) => {}
            Err(kube::Error::Api(s)) if s.code == 403 => {
                let kind = if name.starts_with("applications") {
                    "Application"
                } else {
                    "AppProject"
                };
                if super::watch::served(client, kind).await?.is_none() {
                    return Ok(Some(format!("the API server does not serve {kind}")));
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// Why tokens no Application needs are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// What the user reads.
    pub why: String,
    /// Kept in the grace after the CRDs returned (else: a CRD is missing or being deleted).
    pub returned: bool,
}

/// The pure decision: given what was seen now, whether to keep unneeded tokens, and why.
fn decide(state: &mut State, missing: Option<String>, now: DateTime<Utc>) -> Option<Held> {
    if let Some(why) = missing {
        state.missing = Some(why.clone());
        state.back_at = None;
        return Some(Held { why, returned: false });
    }
    if state.missing.take().is_some() {
        state.back_at = Some(now);
    }
    match state.back_at {
        Some(at) if now < at + RETURN_GRACE => Some(Held {
            why: format!(
                "Argo CD's CRDs returned at {}; Applications restored with them have until {} to reappear",
                at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                (at + RETURN_GRACE).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
            returned: true,
        }),
        _ => {
            state.back_at = None;
            None
        }
    }
}

impl Presence {
    /// Why tokens no Application needs must be kept now (`None`: delete them as usual).
    pub async fn hold(&self, client: &Client, now: DateTime<Utc>) -> Result<Option<Held>, kube::Error> {
        let missing = missing(client).await?;
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(decide(&mut state, missing, now))
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn tokens_are_kept_while_a_crd_is_missing_and_for_the_grace_after_it_returns() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap();
        let mut s = State::default();
        // Present from the start: nothing held, no grace.
        assert_eq!(decide(&mut s, None, t0), None);
        // Missing: held, with the reason.
        let why = "CustomResourceDefinition applications.argoproj.io does not exist".to_string();
        assert_eq!(
            decide(&mut s, Some(why.clone()), t0),
            Some(Held { why, returned: false })
        );
        // Back: held for the grace, from the moment it was seen back.
        let back = t0 + TimeDelta::minutes(30);
        assert!(decide(&mut s, None, back).is_some_and(|h| h.returned && h.why.contains("returned")));
        assert!(decide(&mut s, None, back + RETURN_GRACE - TimeDelta::seconds(1)).is_some());
        // Grace over: deleted Applications revoke again.
        assert_eq!(decide(&mut s, None, back + RETURN_GRACE), None);
        assert_eq!(decide(&mut s, None, back + RETURN_GRACE * 2), None);
        // Deleted again during a grace: the grace restarts after the next return.
        assert!(decide(&mut s, Some("x".into()), back).is_some());
        let again = back + TimeDelta::hours(2);
        assert!(decide(&mut s, None, again).is_some());
        assert_eq!(decide(&mut s, None, again + RETURN_GRACE), None);
    }
}
