//! Alerts: the PrometheusRule uses only metric and label names the operator exports.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::render_all_features;

#[test]
fn alerts_use_only_metrics_and_labels_the_operator_exports() {
    use gitlab_token_operator::metrics::{GitLabRequestLabels, Metrics, TokenLabels};
    let m = Metrics::new();
    let t = TokenLabels {
        namespace: "a".into(),
        name: "b".into(),
        project: "c".into(),
    };
    m.observe_token(&t, Some(2), Some(1), false);
    m.denied("PolicyDenied");
    m.reconciled("connection", "TokenExpired", 0.1);
    m.gitlab_requests
        .get_or_create(&GitLabRequestLabels {
            connection: "c".into(),
            operation: "o".into(),
            code: "429".into(),
        })
        .inc();
    let exposition = m.render();
    // metric name -> label names it carries
    let mut exported: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in exposition.lines().filter(|l| !l.starts_with('#')) {
        let (name, rest) = line
            .split_once('{')
            .unwrap_or((line.split(' ').next().unwrap(), ""));
        let labels = rest
            .split(',')
            .filter_map(|kv| kv.split_once('=').map(|(k, _)| k.to_string()));
        exported.entry(name.to_string()).or_default().extend(labels);
    }

    let r = render_all_features();
    let rule = r.one("PrometheusRule");
    let alerts: Vec<&Value> = rule["spec"]["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    let names: BTreeSet<&str> = alerts.iter().map(|a| a["alert"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "GitLabConnectionNotReady",
            "GitLabPolicyDenialsRising",
            "GitLabRateLimited",
            "GitLabTokenExpiringSoon",
            "GitLabTokenRenewalOverdue",
        ])
    );
    for alert in alerts {
        let expr = alert["expr"].as_str().unwrap();
        let used = metric_selectors(expr, "gitlab_token_operator_");
        assert!(!used.is_empty(), "{expr}");
        let mut carried = BTreeSet::new();
        for (metric, labels) in &used {
            let have = exported
                .get(metric)
                .unwrap_or_else(|| panic!("alert uses {metric}, which the operator does not export"));
            for l in labels {
                assert!(have.contains(l), "{metric} has no label {l} (has {have:?})");
            }
            carried.extend(have.iter().cloned());
        }
        for l in grouping_labels(expr) {
            assert!(
                carried.contains(&l),
                "`by ({l})` in {expr}: no metric there carries {l}"
            );
        }
        assert!(alert["labels"]["severity"].is_string());
        assert_eq!(alert["labels"]["team"], "platform");
        assert!(alert["annotations"]["summary"].is_string());
    }
}

/// Each metric starting with `prefix` in a PromQL expression, with the label names its selector uses.
pub fn metric_selectors(expr: &str, prefix: &str) -> Vec<(String, BTreeSet<String>)> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find(prefix) {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(tail.len());
        let name = tail[..end].to_string();
        let mut labels = BTreeSet::new();
        let after = &tail[end..];
        let consumed = if let Some(sel) = after.strip_prefix('{') {
            let close = sel.find('}').expect("unclosed selector");
            for matcher in sel[..close].split(',') {
                let label = matcher.split(['=', '!', '~']).next().unwrap_or_default().trim();
                if !label.is_empty() {
                    labels.insert(label.to_string());
                }
            }
            end + 1 + close + 1
        } else {
            end
        };
        out.push((name, labels));
        rest = &tail[consumed..];
    }
    out
}

/// Label names in every `by (…)` clause of a PromQL expression.
pub fn grouping_labels(expr: &str) -> BTreeSet<String> {
    expr.split("by (")
        .skip(1)
        .flat_map(|s| s.split(')').next().unwrap_or_default().split(','))
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_and_groupings_are_read_from_promql() {
        let e =
            r#"sum by (result) (increase(p_a_total{controller="c", result!="s"}[5m])) > p_b - p_c{x=~"y"}"#;
        let got = metric_selectors(e, "p_");
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].0, "p_a_total");
        assert_eq!(
            got[0].1,
            BTreeSet::from(["controller".to_string(), "result".to_string()])
        );
        assert_eq!(got[1], ("p_b".to_string(), BTreeSet::new()));
        assert_eq!(got[2].1, BTreeSet::from(["x".to_string()]));
        assert_eq!(grouping_labels(e), BTreeSet::from(["result".to_string()]));
    }
}
