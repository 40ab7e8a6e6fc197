//! Durations as users write them in specs and annotations: whole days (`30d`) for token
//! lifetimes, short durations (`10m`, `2h`, `90s`) for grace periods.

use std::{borrow::Cow, fmt, str::FromStr};

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationParseError {
    /// Not of the form `<n>d`.
    #[error("{0:?} is not a whole number of days such as \"30d\"")]
    NotDays(String),
    /// Not of the form `<n>s|m|h`.
    #[error("{0:?} is not a duration such as \"90s\", \"10m\" or \"2h\"")]
    NotShortDuration(String),
    /// Zero or beyond the largest value accepted.
    #[error("{0:?} is out of range")]
    OutOfRange(String),
}

/// A whole number of days, written `30d`. GitLab token expiry is a calendar date, so lifetimes
/// are whole days; 1 to 400 days (GitLab's limit is 365, or 400 with a feature flag).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Days(u32);

impl Days {
    /// Largest value accepted anywhere.
    pub const MAX: u32 = 400;

    /// Builds a value; `None` when outside 1..=400.
    pub fn new(days: u32) -> Option<Self> {
        (1..=Self::MAX).contains(&days).then_some(Self(days))
    }

    /// The number of days.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for Days {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}d", self.0)
    }
}

impl FromStr for Days {
    type Err = DurationParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits = s
            .trim()
            .strip_suffix('d')
            .ok_or_else(|| DurationParseError::NotDays(s.into()))?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(DurationParseError::NotDays(s.into()));
        }
        let n: u32 = digits
            .parse()
            .map_err(|_| DurationParseError::OutOfRange(s.into()))?;
        Days::new(n).ok_or_else(|| DurationParseError::OutOfRange(s.into()))
    }
}

impl Serialize for Days {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Days {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(de::Error::custom)
    }
}

impl JsonSchema for Days {
    fn schema_name() -> Cow<'static, str> {
        "Days".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^([1-9][0-9]?|[1-3][0-9]{2}|400)d$",
            "description": "Whole days, e.g. \"30d\"."
        })
    }
}

/// A short duration written `90s`, `10m` or `2h` (grace periods, intervals).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShortDuration(u64);

impl ShortDuration {
    /// From whole seconds.
    pub fn from_secs(secs: u64) -> Self {
        Self(secs)
    }
    /// Whole seconds.
    pub fn as_secs(self) -> u64 {
        self.0
    }
    /// As a std duration.
    pub fn to_std(self) -> std::time::Duration {
        std::time::Duration::from_secs(self.0)
    }
}

impl fmt::Display for ShortDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            s if s != 0 && s % 3600 == 0 => write!(f, "{}h", s / 3600),
            s if s != 0 && s % 60 == 0 => write!(f, "{}m", s / 60),
            s => write!(f, "{s}s"),
        }
    }
}

impl FromStr for ShortDuration {
    type Err = DurationParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let bad = || DurationParseError::NotShortDuration(s.into());
        let (digits, unit) = t.split_at(t.len().checked_sub(1).ok_or_else(bad)?);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let n: u64 = digits
            .parse()
            .map_err(|_| DurationParseError::OutOfRange(s.into()))?;
        let factor = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            _ => return Err(bad()),
        };
        n.checked_mul(factor)
            .map(Self)
            .ok_or_else(|| DurationParseError::OutOfRange(s.into()))
    }
}

impl Serialize for ShortDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ShortDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(de::Error::custom)
    }
}

impl JsonSchema for ShortDuration {
    fn schema_name() -> Cow<'static, str> {
        "ShortDuration".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^[0-9]{1,6}(s|m|h)$",
            "description": "A duration such as \"90s\", \"10m\" or \"2h\"."
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_parse_table() {
        let cases: &[(&str, Option<u32>)] = &[
            ("30d", Some(30)),
            ("1d", Some(1)),
            ("365d", Some(365)),
            ("400d", Some(400)),
            ("401d", None),
            ("0d", None),
            ("30", None),
            ("d", None),
            ("-1d", None),
            ("3.5d", None),
            ("30h", None),
            ("99999999999d", None),
        ];
        for (input, want) in cases {
            assert_eq!(
                input.parse::<Days>().ok().map(Days::get),
                *want,
                "input {input:?}"
            );
        }
    }

    #[test]
    fn short_duration_parse_and_display_round_trip() {
        let cases: &[(&str, Option<u64>, &str)] = &[
            ("10m", Some(600), "10m"),
            ("90s", Some(90), "90s"),
            ("2h", Some(7200), "2h"),
            ("120s", Some(120), "2m"),
            ("0s", Some(0), "0s"),
            ("10", None, ""),
            ("m", None, ""),
            ("1d", None, ""),
        ];
        for (input, secs, shown) in cases {
            let parsed = input.parse::<ShortDuration>().ok();
            assert_eq!(parsed.map(ShortDuration::as_secs), *secs, "input {input:?}");
            if let Some(p) = parsed {
                assert_eq!(p.to_string(), *shown);
            }
        }
    }

    #[test]
    fn days_schema_pattern_accepts_exactly_what_parses() {
        let schema = serde_json::to_value(schemars::schema_for!(Days)).unwrap();
        let pattern = regex::Regex::new(schema["pattern"].as_str().unwrap()).unwrap();
        for n in 0..=1000u32 {
            let text = format!("{n}d");
            assert_eq!(pattern.is_match(&text), text.parse::<Days>().is_ok(), "{text}");
        }
        assert!(!pattern.is_match("007d"));
    }

    #[test]
    fn days_serde_uses_the_string_form() {
        let d: Days = serde_json::from_str("\"45d\"").unwrap();
        assert_eq!(serde_json::to_string(&d).unwrap(), "\"45d\"");
        assert!(serde_json::from_str::<Days>("45").is_err());
    }
}
