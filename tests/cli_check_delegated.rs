//! `gitlab-token-operator check` explaining delegated decisions offline (issue 11): a policy
//! with `gitlabAccess` is decided by a saved GitLab answer (`--gitlab-access`), the identity read
//! from the Namespace object's annotation; without an answer the verdict is undecided.

use std::process::Command;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_gitlab-token-operator");

const POLICY_AND_NAMESPACES: &str = "apiVersion: gitlabtokens.io/v1alpha1
kind: GitLabTokenPolicy
metadata: {name: follow-gitlab}
spec:
  namespaceSelector: {matchNames: ['svc-*']}
  projects: ['acme/**']
  maxAccessLevel: maintainer
  gitlabAccess: {namespaceAnnotation: gitlabtokens.io/gitlab-identity}
---
apiVersion: v1
kind: Namespace
metadata:
  name: svc-a
  annotations: {gitlabtokens.io/gitlab-identity: 'group:acme/team-a'}
---
apiVersion: v1
kind: Namespace
metadata:
  name: svc-b
  annotations: {gitlabtokens.io/gitlab-identity: 'group:acme/team-b'}
";

fn source(ns: &str, level: &str) -> String {
    format!(
        "apiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata:\n  name: infra\n  namespace: {ns}\n  \
         annotations:\n    gitlabtokens.io/inject: \"true\"\n    gitlabtokens.io/access-level: {level}\nspec:\n  interval: 1m\n  \
         url: https://gitlab.example.com/acme/platform/infra.git\n"
    )
}

/// Runs `check -o json` on the policy file, one source and optionally saved answers.
fn check(source: &str, answers: Option<&str>) -> (i32, Value, String) {
    let dir = tempfile::tempdir().expect("dir");
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).expect("write");
        p.to_string_lossy().into_owned()
    };
    let mut args = vec![
        "check".to_string(),
        "--policy".into(),
        write("p.yaml", POLICY_AND_NAMESPACES),
        "--source".into(),
        write("s.yaml", source),
        "--gitlab-url".into(),
        "https://gitlab.example.com".into(),
        "-o".into(),
        "json".into(),
    ];
    if let Some(a) = answers {
        args.push("--gitlab-access".into());
        args.push(write("answers.yaml", a));
    }
    let out = Command::new(BIN).args(&args).output().expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let v = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (
        out.status.code().unwrap_or(-1),
        v,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const ANSWERS: &str = "group:acme/team-a: {acme/platform/infra: 30}\ngroup:acme/team-b: {}\n";

#[test]
fn a_saved_answer_decides_a_delegated_request() {
    let (code, v, err) = check(&source("svc-a", "developer"), Some(ANSWERS));
    let s = &v["sources"][0];
    assert_eq!((code, s["verdict"].as_str()), (0, Some("SERVED")), "{s} {err}");
    let why = s["evaluations"][0]["message"].as_str().unwrap_or_default();
    assert!(
        why.contains("group:acme/team-a, which has developer (access_level 30)"),
        "{why}"
    );

    // Above what GitLab grants, and a namespace naming another group: denied, with GitLab's reason.
    for (ns, level, says) in [
        ("svc-a", "maintainer", "group:acme/team-a has developer"),
        ("svc-b", "reporter", "group:acme/team-b has no access"),
    ] {
        let (code, v, _) = check(&source(ns, level), Some(ANSWERS));
        let s = &v["sources"][0];
        assert_eq!((code, s["verdict"].as_str()), (1, Some("DENIED")), "{s}");
        assert_eq!(s["reason"], "GitLabAccessDenied");
        assert!(s["message"].as_str().unwrap_or_default().contains(says), "{s}");
    }
}

#[test]
fn without_a_saved_answer_a_delegated_request_is_undecided() {
    let (code, v, _) = check(&source("svc-a", "developer"), None);
    let s = &v["sources"][0];
    assert_eq!((code, s["verdict"].as_str()), (1, Some("UNDECIDED")), "{s}");
    assert!(
        s["whatToDo"]
            .as_str()
            .unwrap_or_default()
            .contains("--gitlab-access"),
        "{s}"
    );
}

#[test]
fn a_malformed_answer_file_is_a_usage_error() {
    let (code, _, err) = check(&source("svc-a", "developer"), Some("acme/team-a: {x: 1}\n"));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--gitlab-access"), "{err}");
}
