//! Building conditions for our status types.

use chrono::{DateTime, Utc};

use crate::crd::{Condition, ConditionStatus};

/// A condition of `type_` that holds (`true`) or not, with reason and message.
pub fn condition(
    type_: &str,
    holds: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
    now: DateTime<Utc>,
) -> Condition {
    Condition {
        type_: type_.to_string(),
        status: if holds {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        },
        reason: reason.to_string(),
        message: message.into(),
        last_transition_time: now,
        observed_generation: generation,
    }
}

/// Whether the `Ready` condition in the list is True.
pub fn is_ready(conditions: &[Condition]) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == ConditionStatus::True)
}
