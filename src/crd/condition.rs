//! Status conditions shaped like `metav1.Condition`, kept as a list-map keyed by `type`.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Whether a condition holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// Not yet known.
    Unknown,
}

/// One observation about an object, as in `metav1.Condition`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Condition type, e.g. `Ready`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: ConditionStatus,
    /// PascalCase machine-readable reason.
    pub reason: String,
    /// Human-readable explanation: what happened and what to do.
    #[serde(default)]
    pub message: String,
    /// When the status last changed.
    pub last_transition_time: DateTime<Utc>,
    /// The generation this condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Sets (or replaces) the condition of the same type. The transition time only moves when the
/// status changes, so rewriting the same condition is a no-op for watchers.
pub fn set_condition(conditions: &mut Vec<Condition>, mut new: Condition) {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(existing) => {
            if existing.status == new.status {
                new.last_transition_time = existing.last_transition_time;
            }
            *existing = new;
        }
        None => conditions.push(new),
    }
}

/// Longest `status.summary`, so `kubectl get` rows stay on one line.
pub const SUMMARY_MAX: usize = 60;

/// The short form of the `Ready` condition's message for the `Message` print column: its first
/// sentence or clause (up to `. ` or `; `), cut at a word boundary to [`SUMMARY_MAX`] characters with
/// `…`. The whole message stays in the condition.
pub fn summary(conditions: &[Condition]) -> Option<String> {
    let message = conditions.iter().find(|c| c.type_ == "Ready")?.message.trim();
    if message.is_empty() {
        return None;
    }
    let first = [". ", "; "]
        .iter()
        .filter_map(|sep| message.find(sep))
        .min()
        .map_or(message, |i| &message[..i]);
    let first = first.trim_end_matches('.');
    if first.chars().count() <= SUMMARY_MAX {
        return Some(first.to_string());
    }
    let cut: String = first.chars().take(SUMMARY_MAX - 1).collect();
    let at_word = cut
        .rfind(' ')
        .filter(|&i| i >= SUMMARY_MAX / 2)
        .map_or(cut.as_str(), |i| &cut[..i]);
    Some(format!("{}…", at_word.trim_end_matches([',', ' '])))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn ready_saying(message: &str) -> Vec<Condition> {
        let mut c = cond(ConditionStatus::False, "X", 1);
        c.message = message.into();
        vec![c]
    }

    #[test]
    fn a_summary_is_the_first_clause_cut_at_a_word() {
        let s = |m: &str| summary(&ready_saying(m)).unwrap_or_default();
        assert_eq!(
            s("the policy allows nothing: glob `[` is invalid"),
            "the policy allows nothing: glob `[` is invalid"
        );
        assert_eq!(
            s("token 12 is in the Secret; renewal at 2027-01-01"),
            "token 12 is in the Secret"
        );
        assert_eq!(s("Connected as bot-1."), "Connected as bot-1");
        let long = s(
            "GitLabConnection gitlab is not ready and the reconcile will be retried with exponential backoff soon",
        );
        assert!(long.chars().count() <= SUMMARY_MAX, "{long}");
        assert!(
            long.ends_with('…') && long.starts_with("GitLabConnection gitlab is not ready"),
            "{long}"
        );
        assert!(!long.contains("backof…"), "cut at a word: {long}");
        let unbroken = s(&"x".repeat(200));
        assert_eq!(unbroken.chars().count(), SUMMARY_MAX);
        assert_eq!(summary(&ready_saying("")), None);
        assert_eq!(summary(&[]), None);
    }

    fn cond(status: ConditionStatus, reason: &str, secs: i64) -> Condition {
        Condition {
            type_: "Ready".into(),
            status,
            reason: reason.into(),
            message: String::new(),
            last_transition_time: Utc.timestamp_opt(secs, 0).unwrap(),
            observed_generation: Some(1),
        }
    }

    #[test]
    fn same_status_keeps_transition_time_but_takes_new_reason() {
        let mut list = vec![cond(ConditionStatus::True, "Issued", 10)];
        set_condition(&mut list, cond(ConditionStatus::True, "Rotated", 20));
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].reason, "Rotated");
        assert_eq!(list[0].last_transition_time.timestamp(), 10);
    }

    #[test]
    fn status_change_moves_transition_time() {
        let mut list = vec![cond(ConditionStatus::True, "Issued", 10)];
        set_condition(&mut list, cond(ConditionStatus::False, "PolicyDenied", 20));
        assert_eq!(list[0].last_transition_time.timestamp(), 20);
    }
}
