//! Annotations the shim ignores, told to the user rather than dropped silently: an `inject`
//! value other than `"true"`/`"false"` (the source is not served) and `gitlabtokens.io/` keys
//! the operator does not know (typos such as `acess-level`), each with a did-you-mean found by
//! edit distance.

use std::collections::BTreeMap;

use super::annotations::{INJECT, PREFIX, SECRET_REF_SET, SOURCE_ANNOTATIONS};

/// Words people write for "yes" and "no".
const TRUE_WORDS: [&str; 5] = ["yes", "y", "on", "1", "enabled"];
const FALSE_WORDS: [&str; 5] = ["no", "n", "off", "0", "disabled"];

/// Keys on a `GitLabToken`, not on a source: named when put on a source by mistake.
const TOKEN_ANNOTATIONS: [&str; 1] = [super::annotations::RENEW_REQUESTED_AT];

/// The closest of `candidates` to `word` (Damerau–Levenshtein), if close enough to be a typo:
/// at most 2 edits, and fewer than half the word's length.
pub fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let lower = word.to_ascii_lowercase();
    candidates
        .iter()
        .map(|c| (strsim::damerau_levenshtein(&lower, c), *c))
        .filter(|(d, _)| *d <= 2 && *d * 2 < word.chars().count().max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// The `inject` value meant, for a value that is neither `"true"` nor `"false"`.
fn meant_inject(value: &str) -> Option<&'static str> {
    let v = value.trim().to_ascii_lowercase();
    if TRUE_WORDS.contains(&v.as_str()) {
        return Some("true");
    }
    if FALSE_WORDS.contains(&v.as_str()) {
        return Some("false");
    }
    did_you_mean(&v, &["true", "false"])
}

/// One Warning per ignored annotation of a source, in key order (empty when all is well).
pub fn annotation_warnings(annotations: &BTreeMap<String, String>) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(v) = annotations.get(INJECT)
        && v != "true"
        && v != "false"
    {
        let mut w = format!(
            "annotation {INJECT}: {} is neither \"true\" nor \"false\", so the source is not served",
            super::shown(v)
        );
        if let Some(m) = meant_inject(v) {
            w.push_str(&format!("; did you mean \"{m}\"?"));
        }
        out.push(w);
    }
    let suffixes: Vec<&str> = SOURCE_ANNOTATIONS
        .iter()
        .filter_map(|k| k.strip_prefix(PREFIX))
        .collect();
    for key in annotations.keys() {
        let Some(suffix) = key.strip_prefix(PREFIX) else {
            continue;
        };
        if SOURCE_ANNOTATIONS.contains(&key.as_str()) || key == SECRET_REF_SET {
            continue;
        }
        let shown = super::bounded(key, 120);
        let w = if TOKEN_ANNOTATIONS.contains(&key.as_str()) {
            format!("annotation {shown} belongs on a GitLabToken, not on a source, and is ignored here")
        } else {
            match did_you_mean(suffix, &suffixes) {
                Some(m) => format!(
                    "annotation {shown} is not one the operator knows and is ignored; did you mean {PREFIX}{m}?"
                ),
                None => format!(
                    "annotation {shown} is not one the operator knows and is ignored; known: {}",
                    suffixes.join(", ")
                ),
            }
        };
        out.push(w);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn inject_typos_are_named_with_what_was_meant() {
        let table = [
            ("ture", Some("did you mean \"true\"?")),
            ("True", Some("did you mean \"true\"?")),
            ("yes", Some("did you mean \"true\"?")),
            ("1", Some("did you mean \"true\"?")),
            ("flase", Some("did you mean \"false\"?")),
            ("off", Some("did you mean \"false\"?")),
            ("maybe", None),
        ];
        for (value, hint) in table {
            let w = annotation_warnings(&ann(&[(INJECT, value)]));
            assert_eq!(w.len(), 1, "{value}: {w:?}");
            assert!(w[0].contains("is neither \"true\" nor \"false\""), "{w:?}");
            assert!(w[0].contains("not served"), "{w:?}");
            match hint {
                Some(h) => assert!(w[0].ends_with(h), "{value}: {w:?}"),
                None => assert!(!w[0].contains("did you mean"), "{value}: {w:?}"),
            }
        }
        for ok in ["true", "false"] {
            assert!(annotation_warnings(&ann(&[(INJECT, ok)])).is_empty(), "{ok}");
        }
    }

    #[test]
    fn unknown_keys_get_the_nearest_known_key() {
        let table = [
            (
                "gitlabtokens.io/acess-level",
                Some("gitlabtokens.io/access-level"),
            ),
            ("gitlabtokens.io/scope", Some("gitlabtokens.io/scopes")),
            ("gitlabtokens.io/secretname", Some("gitlabtokens.io/secret-name")),
            ("gitlabtokens.io/injcet", Some("gitlabtokens.io/inject")),
            ("gitlabtokens.io/Project", Some("gitlabtokens.io/project")),
            ("gitlabtokens.io/colour", None),
        ];
        for (key, want) in table {
            let w = annotation_warnings(&ann(&[(INJECT, "true"), (key, "x")]));
            assert_eq!(w.len(), 1, "{key}: {w:?}");
            assert!(
                w[0].contains("is not one the operator knows and is ignored"),
                "{w:?}"
            );
            match want {
                Some(m) => assert!(w[0].ends_with(&format!("did you mean {m}?")), "{key}: {w:?}"),
                None => assert!(
                    w[0].contains("known: inject, connection, project"),
                    "{key}: {w:?}"
                ),
            }
        }
    }

    #[test]
    fn known_keys_other_prefixes_and_the_shims_own_marker_are_quiet() {
        let mut all: Vec<(&str, &str)> = SOURCE_ANNOTATIONS.iter().map(|k| (*k, "x")).collect();
        all.retain(|(k, _)| *k != INJECT);
        all.extend([
            (INJECT, "true"),
            (SECRET_REF_SET, "app"),
            ("example.com/acess-level", "x"),
        ]);
        assert!(annotation_warnings(&ann(&all)).is_empty());
        let w = annotation_warnings(&ann(&[(super::super::annotations::RENEW_REQUESTED_AT, "now")]));
        assert!(w[0].contains("belongs on a GitLabToken"), "{w:?}");
    }
}
