//! `gitlab-token-operator check` on Argo CD Applications (issue 13), run as the built binary:
//! one decision per GitLab repoURL, policies selected by AppProject and namespace, the AppProject
//! (when given) checked as the shim does, and the project-scoped repository Secret reported.

use std::process::Command;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_gitlab-token-operator");

/// Runs `check` with policies in p.yaml, objects in s.yaml and the connection from flags.
fn check(policies: &str, sources: &str) -> (i32, Value, String) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p.yaml");
    let s = dir.path().join("s.yaml");
    std::fs::write(&p, policies).unwrap();
    std::fs::write(&s, sources).unwrap();
    let out = Command::new(BIN)
        .args(["check", "--policy"])
        .arg(&p)
        .arg("--source")
        .arg(&s)
        .args([
            "--gitlab-url",
            "https://gitlab.example.com",
            "--registry-host",
            "registry.example.com",
            "-o",
            "json",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let json = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (
        out.status.code().unwrap_or(-1),
        json,
        format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)),
    )
}

/// A Flux policy for every namespace (it must not serve Argo CD) and an Argo CD policy for
/// AppProject team-a in `argocd`.
const POLICIES: &str = "---
apiVersion: gitlabtokens.io/v1alpha1
kind: GitLabTokenPolicy
metadata: {name: flux-everywhere}
spec:
  namespaceSelector: {}
  projects: ['acme/**']
---
apiVersion: gitlabtokens.io/v1alpha1
kind: GitLabTokenPolicy
metadata: {name: argocd-team-a}
spec:
  namespaceSelector: {matchNames: [argocd, team-a]}
  projects: ['acme/team-a/*']
  argoCD: {appProjects: [team-a]}
";

fn app(namespace: &str, project: &str, annotated: bool) -> String {
    let annotations = if annotated {
        "  annotations: {gitlabtokens.io/inject: \"true\"}\n"
    } else {
        ""
    };
    format!(
        "---
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: web
  namespace: {namespace}
{annotations}spec:
  project: {project}
  sources:
    - {{repoURL: https://gitlab.example.com/acme/team-a/app, targetRevision: main, path: deploy}}
    - {{repoURL: https://github.com/argoproj/argocd-example-apps.git, targetRevision: HEAD, path: guestbook}}
    - {{repoURL: 'git@gitlab.example.com:acme/team-a/app.git', targetRevision: main, path: x}}
  destination: {{server: https://kubernetes.default.svc, namespace: web}}
"
    )
}

const APP_PROJECT: &str = "---
apiVersion: argoproj.io/v1alpha1
kind: AppProject
metadata: {name: team-a, namespace: argocd}
spec:
  sourceRepos: ['*']
  sourceNamespaces: [team-a]
";

#[test]
fn an_application_gets_one_decision_per_gitlab_source_under_its_app_projects_policy() {
    let (code, v, raw) = check(
        POLICIES,
        &format!("{}{APP_PROJECT}", app("argocd", "team-a", true)),
    );
    // The SSH source is refused (project tokens work over HTTPS), so the exit status is 1.
    assert_eq!(code, 1, "{raw}");
    let sources = v["sources"].as_array().expect("sources");
    // GitHub is not the operator's business: two reports, no note about the AppProject.
    assert_eq!(sources.len(), 2, "{raw}");
    let https = &sources[0];
    assert_eq!(https["kind"], "Application");
    assert_eq!(https["verdict"], "SERVED", "{raw}");
    assert_eq!(https["policy"], "argocd-team-a");
    assert_eq!(https["request"]["consumer"], "Application");
    assert_eq!(https["request"]["scopes"], serde_json::json!(["read_repository"]));
    assert_eq!(https["project"]["written"], "acme/team-a/app");
    let name = https["secret"]["name"].as_str().unwrap();
    assert_eq!(
        name,
        gitlab_token_operator::shim::argocd::token_name(
            "team-a",
            "https://gitlab.example.com/acme/team-a/app.git"
        )
    );
    assert!(
        https["secret"]["keys"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("project"))
    );
    assert_eq!(sources[1]["verdict"], "REFUSED");
    assert_eq!(sources[1]["reason"], "SSHNotSupported");
    assert_eq!(v["summary"]["served"], 1);
    assert_eq!(v["summary"]["refused"], 1);
}

#[test]
fn another_app_project_is_not_served_by_a_flux_policy_for_the_same_namespace() {
    let (code, v, raw) = check(POLICIES, &app("argocd", "team-b", true));
    assert_eq!(code, 1, "{raw}");
    let https = &v["sources"][0];
    assert_eq!(https["verdict"], "DENIED", "{raw}");
    assert_eq!(https["reason"], "NoPolicy", "{raw}");
    // Without the AppProject in the files, the report says what was not checked.
    let (_, v, raw) = check(POLICIES, &app("argocd", "team-a", true));
    let message = v["sources"][0]["message"].as_str().unwrap_or_default();
    assert!(message.contains("AppProject team-a is not in the files"), "{raw}");
}

#[test]
fn the_app_project_decides_where_applications_may_live_and_annotations_are_checked() {
    // team-b is not in the AppProject's sourceNamespaces.
    let (code, v, raw) = check(
        POLICIES,
        &format!("{}{APP_PROJECT}", app("team-b", "team-a", true)),
    );
    assert_eq!(code, 1, "{raw}");
    assert_eq!(v["sources"].as_array().unwrap().len(), 1, "{raw}");
    assert_eq!(v["sources"][0]["reason"], "ArgoCDNamespaceNotPermitted", "{raw}");
    // team-a is, and the policy selects it.
    let (_, v, raw) = check(
        POLICIES,
        &format!("{}{APP_PROJECT}", app("team-a", "team-a", true)),
    );
    assert_eq!(v["sources"][0]["verdict"], "SERVED", "{raw}");
    // Not annotated: ignored; a secret-name annotation: refused.
    let (code, v, raw) = check(POLICIES, &app("argocd", "team-a", false));
    assert_eq!(code, 0, "{raw}");
    assert_eq!(v["sources"][0]["verdict"], "NOT_OPTED_IN", "{raw}");
    let bad = app("argocd", "team-a", true).replace(
        "{gitlabtokens.io/inject: \"true\"}",
        "{gitlabtokens.io/inject: \"true\", gitlabtokens.io/secret-name: x}",
    );
    let (_, v, raw) = check(POLICIES, &bad);
    assert_eq!(v["sources"][0]["reason"], "InvalidAnnotation", "{raw}");
}
