//! Reading GitLab's error bodies and throttling headers (gitlab-api.md §1.3, §1.5): the message,
//! OAuth-style and parameter-error shapes, capped and with quoted values redacted.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

/// Longest GitLab message text kept in an error, in characters.
pub const MAX_MESSAGE_CHARS: usize = 300;

/// The shapes of GitLab error bodies (gitlab-api.md §1.3).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ErrorBody {
    /// `{"message": "..."}` or `{"message": {"field": ["error", ...]}}`.
    Message(String),
    /// `{"error": "...", "error_description": "...", "scope": "..."}` (OAuth style).
    OAuth {
        /// `error`.
        error: String,
        /// `error_description`.
        description: String,
        /// `scope` (insufficient_scope only).
        scope: Option<String>,
    },
    /// `{"error": "..."}` from parameter validation.
    Param(String),
    /// Anything else, as text (e.g. 429's plain `Retry later`).
    Text(String),
}

impl ErrorBody {
    /// Recognises the shape of a body (anything unrecognised is kept as text).
    pub(crate) fn parse(body: &[u8]) -> Self {
        let Ok(value) = serde_json::from_slice::<Value>(body) else {
            return Self::Text(String::from_utf8_lossy(body).trim().to_string());
        };
        if let Some(message) = value.get("message") {
            return Self::Message(flatten_message(message));
        }
        if let Some(error) = value.get("error").and_then(Value::as_str) {
            return match value.get("error_description").and_then(Value::as_str) {
                Some(description) => Self::OAuth {
                    error: error.to_string(),
                    description: description.to_string(),
                    scope: value.get("scope").and_then(Value::as_str).map(str::to_string),
                },
                None => Self::Param(error.to_string()),
            };
        }
        Self::Text(value.to_string())
    }

    /// The human-readable text, capped; `(no message)` when empty.
    pub(crate) fn text(&self) -> String {
        let raw = match self {
            Self::Message(m) | Self::Param(m) | Self::Text(m) => m.as_str(),
            Self::OAuth { description, .. } => description.as_str(),
        };
        if raw.is_empty() {
            "(no message)".to_string()
        } else {
            cap(raw)
        }
    }
}

/// Flattens GitLab's `message`, which is a string or a map of field to error list.
fn flatten_message(message: &Value) -> String {
    match message {
        Value::String(s) => s.clone(),
        Value::Object(fields) => fields
            .iter()
            .map(|(field, errors)| match errors {
                Value::Array(list) => {
                    let texts: Vec<String> = list
                        .iter()
                        .map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_string))
                        .collect();
                    format!("{field} {}", texts.join(", "))
                }
                Value::String(s) => format!("{field} {s}"),
                other => format!("{field} {other}"),
            })
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    }
}

/// Caps a text at [`MAX_MESSAGE_CHARS`] characters, marking the cut.
pub fn cap(text: &str) -> String {
    let text = text.trim();
    if text.chars().count() <= MAX_MESSAGE_CHARS {
        return text.to_string();
    }
    let mut out: String = text.chars().take(MAX_MESSAGE_CHARS).collect();
    out.push('…');
    out
}

/// Replaces every double-quoted value in a decoder message with `"…"` so that a mistyped
/// field's value (which could be a secret) never reaches an error.
pub fn redact_quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_quote = false;
    for c in text.chars() {
        if c == '"' {
            if in_quote {
                out.push_str("…\"");
            } else {
                out.push('"');
            }
            in_quote = !in_quote;
        } else if !in_quote {
            out.push(c);
        }
    }
    if in_quote {
        out.push_str("…\"");
    }
    out
}

/// Parses `Retry-After` as delay-seconds or an HTTP date relative to `now`.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?.with_timezone(&Utc);
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gitlab::GitLabError;

    fn map(status: u16, body: &str) -> GitLabError {
        GitLabError::from_response(status, None, body.as_bytes())
    }

    #[test]
    fn long_messages_are_capped() {
        let long = format!(r#"{{"message":"{}"}}"#, "x".repeat(5000));
        let GitLabError::BadRequest { message } = map(400, &long) else {
            panic!("wrong variant")
        };
        assert_eq!(message.chars().count(), MAX_MESSAGE_CHARS + 1);
        assert!(message.ends_with('…'));
    }

    #[test]
    fn quoted_values_are_redacted() {
        let cases = [
            (
                r#"invalid type: string "glpat-secret", expected u64 at line 1"#,
                r#"invalid type: string "…", expected u64 at line 1"#,
            ),
            (
                "missing field `id` at line 1 column 2",
                "missing field `id` at line 1 column 2",
            ),
            (r#"open "quote"#, r#"open "…""#),
        ];
        for (input, want) in cases {
            assert_eq!(redact_quoted(input), want);
        }
    }

    #[test]
    fn retry_after_parses_seconds_and_dates() {
        let now = DateTime::parse_from_rfc3339("2015-10-21T07:27:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(parse_retry_after("1", now), Some(Duration::from_secs(1)));
        assert_eq!(parse_retry_after(" 120 ", now), Some(Duration::from_secs(120)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }
}
