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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

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
