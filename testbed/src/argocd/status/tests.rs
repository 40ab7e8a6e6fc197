use std::collections::BTreeMap;

use chrono::TimeZone;

use super::*;

fn t(s: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000 + s, 0).unwrap()
}

fn spec() -> Value {
    json!({"project": "p", "source": {"repoURL": "https://h/a.git", "targetRevision": "main", "path": "."},
           "destination": {"server": "https://kubernetes.default.svc", "namespace": "x"}})
}

#[test]
fn refresh_is_due_on_annotation_changed_source_and_expiry() {
    let none = BTreeMap::new();
    let interval = Duration::from_secs(60);
    assert_eq!(
        need_refresh(&none, &spec(), &json!({}), t(0), interval),
        Ok(Refresh::SourceChanged)
    );
    let resolved = compared_status(
        &json!({}),
        &spec(),
        "argocd",
        &Comparison::Resolved(vec![("abc".into(), "Directory".into())]),
        t(0),
    );
    assert_eq!(
        need_refresh(&none, &spec(), &resolved, t(10), interval),
        Err(Duration::from_secs(50))
    );
    assert_eq!(
        need_refresh(&none, &spec(), &resolved, t(60), interval),
        Ok(Refresh::Expired)
    );
    let mut hard = BTreeMap::new();
    hard.insert(REFRESH_ANNOTATION.to_string(), "hard".to_string());
    assert_eq!(
        need_refresh(&hard, &spec(), &resolved, t(10), interval),
        Ok(Refresh::Requested { hard: true })
    );
    let mut changed = spec();
    changed["source"]["targetRevision"] = json!("dev");
    assert_eq!(
        need_refresh(&none, &changed, &resolved, t(10), interval),
        Ok(Refresh::SourceChanged)
    );
}

#[test]
fn resolved_status_is_synced_with_revision_and_failure_is_unknown_with_comparison_error() {
    let ok = compared_status(
        &json!({}),
        &spec(),
        "argocd",
        &Comparison::Resolved(vec![("abc".into(), "Directory".into())]),
        t(0),
    );
    assert_eq!(ok["sync"]["status"], "Synced");
    assert_eq!(ok["sync"]["revision"], "abc");
    assert_eq!(ok["sync"]["comparedTo"]["source"], spec()["source"]);
    assert_eq!(ok["sourceType"], "Directory");
    assert_eq!(ok["health"]["status"], "Healthy");
    assert!(ok.get("conditions").is_none());
    let failed = compared_status(&ok, &spec(), "argocd", &Comparison::Failed("boom".into()), t(5));
    assert_eq!(failed["sync"]["status"], "Unknown");
    assert_eq!(failed["sync"]["revision"], "main");
    assert!(failed.get("sourceType").is_none());
    assert_eq!(failed["conditions"][0]["type"], "ComparisonError");
    assert_eq!(
        failed["conditions"][0]["message"],
        "Failed to load target state: boom"
    );
    // Health unchanged: its transition time is kept.
    assert_eq!(failed["health"], ok["health"]);
    // The same error again keeps its transition time; success clears it.
    let again = compared_status(
        &failed,
        &spec(),
        "argocd",
        &Comparison::Failed("boom".into()),
        t(9),
    );
    assert_eq!(again["conditions"], failed["conditions"]);
    let healed = compared_status(
        &again,
        &spec(),
        "argocd",
        &Comparison::Resolved(vec![("def".into(), "Directory".into())]),
        t(12),
    );
    assert!(healed.get("conditions").is_none());
    let patch = merge_diff(&again, &healed).unwrap();
    assert_eq!(patch["conditions"], Value::Null);
    assert_eq!(patch["sync"]["revision"], "def");
}

#[test]
fn multi_source_uses_revisions_and_source_types() {
    let spec = json!({"sources": [{"repoURL": "https://h/a.git", "targetRevision": "main", "path": "."},
                                  {"repoURL": "https://h/b.git", "ref": "values"}]});
    let ok = compared_status(
        &json!({}),
        &spec,
        "argocd",
        &Comparison::Resolved(vec![
            ("a1".into(), "Directory".into()),
            ("b1".into(), String::new()),
        ]),
        t(0),
    );
    assert_eq!(ok["sync"]["revisions"], json!(["a1", "b1"]));
    assert!(ok["sync"].get("revision").is_none());
    assert_eq!(ok["sourceTypes"], json!(["Directory", ""]));
    assert_eq!(ok["sync"]["comparedTo"]["sources"], spec["sources"]);
}

#[test]
fn project_errors_keep_other_conditions_and_set_unknown() {
    let old = json!({"conditions": [{"type": "SyncError", "message": "x", "lastTransitionTime": "2020-01-01T00:00:00Z"}]});
    let s = project_error_status(
        &old,
        &[Condition {
            type_: "InvalidSpecError".into(),
            message: "m".into(),
        }],
        t(0),
    );
    assert_eq!(s["sync"]["status"], "Unknown");
    assert_eq!(s["health"]["status"], "Unknown");
    let types: Vec<&str> = s["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, vec!["InvalidSpecError", "SyncError"]);
    assert!(s.get("reconciledAt").is_none());
}
