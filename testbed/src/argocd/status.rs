//! When an Application is due for a refresh, and the status the application-controller writes
//! afterwards (argo-cd v3.5.1 `controller/appcontroller.go` `needRefreshAppStatus`,
//! `processAppRefreshQueueItem`, `persistAppStatus`; `controller/state.go` `CompareAppState`;
//! `types.go` `SetConditions`). Pure functions over JSON.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};

/// The annotation that requests a refresh (`normal` or `hard`); the controller removes it.
pub const REFRESH_ANNOTATION: &str = "argocd.argoproj.io/refresh";

/// Why a refresh happens now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresh {
    /// The refresh annotation: resolve revisions without caches; `hard` also drops manifests.
    Requested {
        /// `argocd.argoproj.io/refresh: hard`.
        hard: bool,
    },
    /// `spec.source(s)` differ from what was compared: resolved without caches.
    SourceChanged,
    /// Never reconciled, or `reconciledAt` older than the refresh interval.
    Expired,
}

impl Refresh {
    /// `CompareWithLatestForceResolve` (the caller bypasses the repo-error grace period).
    pub fn force_resolve(self) -> bool {
        !matches!(self, Self::Expired)
    }
}

/// The sources an Application compares: `spec.sources` when non-empty, else `spec.source`.
pub fn sources(spec: &Value) -> (Vec<Value>, bool) {
    match spec.get("sources").and_then(Value::as_array) {
        Some(list) if !list.is_empty() => (list.clone(), true),
        _ => (
            vec![spec.get("source").cloned().unwrap_or_else(|| json!({}))],
            false,
        ),
    }
}

/// `needRefreshAppStatus` for the reasons the stand-in models: `Err(wait)` when nothing is due.
pub fn need_refresh(
    annotations: &std::collections::BTreeMap<String, String>,
    spec: &Value,
    status: &Value,
    now: DateTime<Utc>,
    interval: Duration,
) -> Result<Refresh, Duration> {
    if let Some(kind) = annotations.get(REFRESH_ANNOTATION) {
        return Ok(Refresh::Requested { hard: kind == "hard" });
    }
    let (srcs, multi) = sources(spec);
    let compared = if multi {
        status
            .pointer("/sync/comparedTo/sources")
            .cloned()
            .unwrap_or(Value::Null)
    } else {
        status
            .pointer("/sync/comparedTo/source")
            .cloned()
            .unwrap_or(Value::Null)
    };
    let current = if multi {
        Value::Array(srcs)
    } else {
        srcs[0].clone()
    };
    if !same_source(&current, &compared) {
        return Ok(Refresh::SourceChanged);
    }
    let reconciled = status
        .get("reconciledAt")
        .and_then(Value::as_str)
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc));
    let Some(at) = reconciled else {
        return Ok(Refresh::Expired);
    };
    let elapsed = (now - at).to_std().unwrap_or(Duration::ZERO);
    if interval.is_zero() {
        return Err(Duration::from_secs(3600));
    }
    if elapsed >= interval {
        Ok(Refresh::Expired)
    } else {
        Err(interval - elapsed)
    }
}

/// Source equality ignoring empty values (Go's `omitempty` serialisation of `ApplicationSource`).
fn same_source(a: &Value, b: &Value) -> bool {
    strip_empty(a) == strip_empty(b)
}

fn strip_empty(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), strip_empty(v)))
                .filter(|(_, v)| !is_empty(v))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_empty).collect()),
        other => other.clone(),
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Bool(b) => !b,
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
        Value::Number(n) => n.as_f64() == Some(0.0),
    }
}

/// A condition as Argo CD writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// `ComparisonError`, `InvalidSpecError`, `UnknownError`, …
    pub type_: String,
    /// Message.
    pub message: String,
}

fn stamp(now: DateTime<Utc>) -> String {
    now.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `SetConditions`: keeps conditions of types not evaluated, replaces evaluated ones (keeping the
/// old timestamp of an identical type+message), sorts by `type/message/time`.
pub fn set_conditions(
    old: &[Value],
    new: &[Condition],
    evaluated: &[&str],
    now: DateTime<Utc>,
) -> Vec<Value> {
    let mut out: Vec<Value> = old
        .iter()
        .filter(|c| !evaluated.contains(&c["type"].as_str().unwrap_or_default()))
        .cloned()
        .collect();
    for c in new {
        let existing = old.iter().find(|o| o["type"] == c.type_.as_str());
        match existing {
            Some(o) if o["message"] == c.message.as_str() => out.push(o.clone()),
            _ => out.push(json!({"type": c.type_, "message": c.message, "lastTransitionTime": stamp(now)})),
        }
    }
    let key = |c: &Value| {
        format!(
            "{}/{}/{}",
            c["type"].as_str().unwrap_or_default(),
            c["message"].as_str().unwrap_or_default(),
            c["lastTransitionTime"].as_str().unwrap_or_default()
        )
    };
    out.sort_by_key(key);
    out
}

fn conditions_of(status: &Value) -> Vec<Value> {
    status
        .get("conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// The status after a refresh refused by project checks (`refreshAppConditions` errors): the
/// problems as conditions, sync and health `Unknown`; nothing else changes.
pub fn project_error_status(old: &Value, problems: &[Condition], now: DateTime<Utc>) -> Value {
    let mut status = old.as_object().cloned().unwrap_or_default();
    let conditions = set_conditions(
        &conditions_of(old),
        problems,
        &["InvalidSpecError", "UnknownError"],
        now,
    );
    put_conditions(&mut status, conditions);
    let mut sync = old
        .get("sync")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    sync.insert("status".into(), json!("Unknown"));
    status.insert("sync".into(), Value::Object(sync));
    set_health(&mut status, old, "Unknown", now);
    Value::Object(status)
}

fn put_conditions(status: &mut Map<String, Value>, conditions: Vec<Value>) {
    if conditions.is_empty() {
        status.remove("conditions");
    } else {
        status.insert("conditions".into(), Value::Array(conditions));
    }
}

/// `persistAppStatus`: health's `lastTransitionTime` moves only when the health status changes.
fn set_health(status: &mut Map<String, Value>, old: &Value, health: &str, now: DateTime<Utc>) {
    let old_health = old.pointer("/health/status").and_then(Value::as_str);
    let time = match old_health {
        Some(h) if h == health => old.pointer("/health/lastTransitionTime").cloned(),
        _ => Some(json!(stamp(now))),
    };
    let mut h = json!({"status": health});
    if let Some(t) = time.filter(|t| !t.is_null()) {
        h["lastTransitionTime"] = t;
    }
    status.insert("health".into(), h);
}

/// Result of comparing every source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Comparison {
    /// Every source resolved: per source, its revision and source type (empty for ref-only).
    Resolved(Vec<(String, String)>),
    /// `Failed to load target state: …` (the revisions stay the target revisions).
    Failed(String),
}

/// The status after a comparison (`CompareAppState` + `processAppRefreshQueueItem`). The
/// stand-in renders no manifests: a resolved Application has no resources, so it is `Synced`
/// and `Healthy` as Argo CD reports an Application whose sources yield nothing.
pub fn compared_status(
    old: &Value,
    spec: &Value,
    argocd_namespace: &str,
    comparison: &Comparison,
    now: DateTime<Utc>,
) -> Value {
    let (srcs, multi) = sources(spec);
    let mut status = old.as_object().cloned().unwrap_or_default();
    let mut new_conditions = Vec::new();
    let target: Vec<String> = srcs
        .iter()
        .map(|s| s["targetRevision"].as_str().unwrap_or_default().to_string())
        .collect();
    let (code, revisions, types) = match comparison {
        Comparison::Resolved(list) => (
            "Synced",
            list.iter().map(|(r, _)| r.clone()).collect::<Vec<_>>(),
            list.iter().map(|(_, t)| t.clone()).collect::<Vec<_>>(),
        ),
        Comparison::Failed(message) => {
            new_conditions.push(Condition {
                type_: "ComparisonError".into(),
                message: format!("Failed to load target state: {message}"),
            });
            ("Unknown", target, Vec::new())
        }
    };
    let mut compared_to = Map::new();
    if multi {
        compared_to.insert("sources".into(), Value::Array(srcs.clone()));
    } else {
        compared_to.insert("source".into(), srcs[0].clone());
    }
    compared_to.insert(
        "destination".into(),
        spec.get("destination").cloned().unwrap_or_else(|| json!({})),
    );
    if let Some(ignore) = spec.get("ignoreDifferences") {
        compared_to.insert("ignoreDifferences".into(), ignore.clone());
    }
    let mut sync = Map::new();
    sync.insert("status".into(), json!(code));
    sync.insert("comparedTo".into(), Value::Object(compared_to));
    if multi {
        sync.insert("revisions".into(), json!(revisions));
    } else if let Some(r) = revisions.first().filter(|r| !r.is_empty()) {
        sync.insert("revision".into(), json!(r));
    }
    status.insert("sync".into(), Value::Object(sync));
    // refreshAppConditions cleared the project errors; CompareAppState sets ComparisonError.
    let conditions = set_conditions(
        &conditions_of(old),
        &[],
        &["InvalidSpecError", "UnknownError"],
        now,
    );
    let conditions = set_conditions(&conditions, &new_conditions, &["ComparisonError"], now);
    put_conditions(&mut status, conditions);
    set_health(&mut status, old, "Healthy", now);
    status.insert("reconciledAt".into(), json!(stamp(now)));
    status.remove("sourceType");
    status.remove("sourceTypes");
    if multi {
        if !types.is_empty() {
            status.insert("sourceTypes".into(), json!(types));
        }
    } else if let Some(t) = types.first().filter(|t| !t.is_empty()) {
        status.insert("sourceType".into(), json!(t));
    }
    status.insert("controllerNamespace".into(), json!(argocd_namespace));
    Value::Object(status)
}

/// RFC 7386 merge patch turning `old` into `new` (`createMergePatch`); `None` when equal.
pub fn merge_diff(old: &Value, new: &Value) -> Option<Value> {
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            let mut patch = Map::new();
            for (k, nv) in n {
                match o.get(k) {
                    Some(ov) => {
                        if let Some(d) = merge_diff(ov, nv) {
                            patch.insert(k.clone(), d);
                        }
                    }
                    None => {
                        patch.insert(k.clone(), nv.clone());
                    }
                }
            }
            for k in o.keys().filter(|k| !n.contains_key(*k)) {
                patch.insert(k.clone(), Value::Null);
            }
            (!patch.is_empty()).then_some(Value::Object(patch))
        }
        (o, n) if o == n => None,
        (_, n) => Some(n.clone()),
    }
}

#[cfg(test)]
mod tests;
