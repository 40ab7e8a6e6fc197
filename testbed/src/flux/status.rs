//! When a Flux source is due for a fetch, and the status Flux writes afterwards — pure functions.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

/// The annotation `flux reconcile` sets to ask for an immediate reconcile.
pub const REQUESTED_AT: &str = "reconcile.fluxcd.io/requestedAt";

/// Parses a Go duration as Flux specs use (`1m`, `5m0s`, `1h30m`, `500ms`).
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(digits);
        let value: f64 = num.parse().ok()?;
        let unit_len = tail.find(|c: char| c.is_ascii_digit()).unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let secs = match unit {
            "h" => value * 3600.0,
            "m" => value * 60.0,
            "s" => value,
            "ms" => value / 1000.0,
            _ => return None,
        };
        total += Duration::from_secs_f64(secs);
        rest = tail;
    }
    Some(total)
}

/// What the controller knows about an object when deciding whether to fetch.
#[derive(Debug, Clone)]
pub struct DueInput<'a> {
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// `status.observedGeneration`.
    pub observed_generation: Option<i64>,
    /// The `requestedAt` annotation.
    pub requested_at: Option<&'a str>,
    /// `status.lastHandledReconcileAt`.
    pub last_handled: Option<&'a str>,
    /// Time since the last fetch by this controller (None: never fetched).
    pub since_last_fetch: Option<Duration>,
    /// The retry delay when the last fetch failed, else the interval.
    pub next_after: Duration,
}

/// `None` when a fetch is due now, else how long to wait.
pub fn wait_before_fetch(input: &DueInput<'_>) -> Option<Duration> {
    let spec_changed = input.generation != input.observed_generation;
    let requested = input.requested_at.is_some() && input.requested_at != input.last_handled;
    match input.since_last_fetch {
        _ if spec_changed || requested => None,
        None => None,
        Some(elapsed) if elapsed >= input.next_after => None,
        Some(elapsed) => Some(input.next_after - elapsed),
    }
}

/// Outcome of one fetch, as it shows in status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Fetched: the revision.
    Ready(String),
    /// Failed with a Flux reason (`AuthenticationFailed`, …) and message.
    Failed {
        /// PascalCase reason.
        reason: String,
        /// Message.
        message: String,
    },
}

/// Builds the new `status` from the old one: `Ready` (and `FetchFailed` on failure) conditions
/// with transition times kept when the status did not change, `observedGeneration`,
/// `lastHandledReconcileAt` and, on success, an `artifact` with every field Flux's CRDs require
/// (`path`, `url`, `revision`, `digest`, `lastUpdateTime`; `artifact_path` is `<kind>/<ns>/<name>`).
pub fn next_status(
    old: &Value,
    generation: Option<i64>,
    requested_at: Option<&str>,
    outcome: &Outcome,
    artifact_path: &str,
    now: DateTime<Utc>,
) -> Value {
    let stamp = now.to_rfc3339_opts(SecondsFormat::Secs, true);
    let old_conditions = old
        .get("conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let keep_time = |type_: &str, status: &str| -> String {
        old_conditions
            .iter()
            .find(|c| c["type"] == type_ && c["status"] == status)
            .and_then(|c| c["lastTransitionTime"].as_str())
            .map(str::to_string)
            .unwrap_or_else(|| stamp.clone())
    };
    let condition = |type_: &str, status: &str, reason: &str, message: &str| {
        json!({"type": type_, "status": status, "reason": reason, "message": message,
               "observedGeneration": generation, "lastTransitionTime": keep_time(type_, status)})
    };
    let mut status = old.as_object().cloned().unwrap_or_default();
    match outcome {
        Outcome::Ready(revision) => {
            let message = format!("stored artifact for revision '{revision}'");
            status.insert(
                "conditions".into(),
                json!([condition("Ready", "True", "Succeeded", &message)]),
            );
            let same = old.pointer("/artifact/revision").and_then(Value::as_str) == Some(revision.as_str());
            if !same {
                let digest = sha256_hex(revision);
                let path = format!("{artifact_path}/{}.tar.gz", &digest[..16]);
                let url = format!("http://source-controller.flux-system.svc.cluster.local./{path}");
                status.insert(
                    "artifact".into(),
                    json!({"revision": revision, "lastUpdateTime": stamp, "path": path, "url": url,
                           "digest": format!("sha256:{digest}")}),
                );
            }
        }
        Outcome::Failed { reason, message } => {
            status.insert(
                "conditions".into(),
                json!([
                    condition("Ready", "False", reason, message),
                    condition("FetchFailed", "True", reason, message)
                ]),
            );
        }
    }
    if let Some(g) = generation {
        status.insert("observedGeneration".into(), json!(g));
    }
    if let Some(r) = requested_at {
        status.insert("lastHandledReconcileAt".into(), json!(r));
    }
    Value::Object(status)
}

fn sha256_hex(text: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn go_durations() {
        let cases = [
            ("1m", Some(60.0)),
            ("5m0s", Some(300.0)),
            ("1h30m", Some(5400.0)),
            ("500ms", Some(0.5)),
            ("", None),
            ("3d", None),
        ];
        for (s, want) in cases {
            assert_eq!(parse_go_duration(s).map(|d| d.as_secs_f64()), want, "{s}");
        }
    }

    #[test]
    fn due_table() {
        let base = DueInput {
            generation: Some(2),
            observed_generation: Some(2),
            requested_at: None,
            last_handled: None,
            since_last_fetch: Some(Duration::from_secs(10)),
            next_after: Duration::from_secs(60),
        };
        assert_eq!(wait_before_fetch(&base), Some(Duration::from_secs(50)));
        assert_eq!(
            wait_before_fetch(&DueInput {
                observed_generation: Some(1),
                ..base.clone()
            }),
            None
        );
        assert_eq!(
            wait_before_fetch(&DueInput {
                requested_at: Some("t1"),
                ..base.clone()
            }),
            None
        );
        assert_eq!(
            wait_before_fetch(&DueInput {
                requested_at: Some("t1"),
                last_handled: Some("t1"),
                ..base.clone()
            }),
            Some(Duration::from_secs(50))
        );
        assert_eq!(
            wait_before_fetch(&DueInput {
                since_last_fetch: None,
                ..base.clone()
            }),
            None
        );
        assert_eq!(
            wait_before_fetch(&DueInput {
                since_last_fetch: Some(Duration::from_secs(61)),
                ..base
            }),
            None
        );
    }

    #[test]
    fn failure_then_success_rewrites_conditions_and_keeps_stable_times() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let t1 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 5, 0).unwrap();
        let failed = Outcome::Failed {
            reason: "AuthenticationFailed".into(),
            message: "401".into(),
        };
        let s1 = next_status(&json!({}), Some(1), Some("r1"), &failed, "gitrepository/ns/n", t0);
        assert_eq!(s1["conditions"][1]["type"], "FetchFailed");
        assert_eq!(s1["lastHandledReconcileAt"], "r1");
        let s2 = next_status(&s1, Some(1), Some("r1"), &failed, "gitrepository/ns/n", t1);
        assert_eq!(s2["conditions"][0]["lastTransitionTime"], "2026-01-01T00:00:00Z");
        let s3 = next_status(
            &s2,
            Some(1),
            None,
            &Outcome::Ready("main@sha1:ab".into()),
            "gitrepository/ns/n",
            t1,
        );
        assert_eq!(s3["conditions"].as_array().unwrap().len(), 1);
        assert_eq!(s3["conditions"][0]["status"], "True");
        assert_eq!(s3["conditions"][0]["lastTransitionTime"], "2026-01-01T00:05:00Z");
        assert_eq!(s3["artifact"]["revision"], "main@sha1:ab");
        assert!(
            s3["artifact"]["path"]
                .as_str()
                .unwrap()
                .starts_with("gitrepository/ns/n/")
        );
        assert!(s3["artifact"]["digest"].as_str().unwrap().starts_with("sha256:"));
        assert_eq!(s3["observedGeneration"], 1);
    }
}
