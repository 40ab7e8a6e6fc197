//! `gitlab-token-operator check --online` (issue 11): a delegating policy's question is asked of
//! the connection's GitLab (the emulator here) with the operator's own lookups, and judged as
//! the operator judges: allowed at the identity's role, refused above it (a live token would be
//! re-issued lower: AccessLowered), refused without access (a live token would be revoked:
//! AccessWithdrawn). A GitLab outage is an error (exit 2), never a denial; the token is never
//! printed.

use std::process::Command;

use serde_json::Value;
use testbed::gitlab::{
    FaultAction, FaultRule, GitLabConfig, GitLabHandle, GitLabServer,
    seed::{GroupSeed, MemberSeed, ProjectSeed, ShareSeed, TokenSeed, UserSeed},
};

const BIN: &str = env!("CARGO_BIN_EXE_gitlab-token-operator");
const PROJECT: &str = "acme/platform/infra";

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
---
apiVersion: v1
kind: Namespace
metadata:
  name: svc-u
  annotations: {gitlabtokens.io/gitlab-identity: 'user:svc-u'}
";

/// The emulator with acme/platform/infra shared with acme/team-a as Developer, user svc-u a
/// Reporter of acme/platform, and the operator's token.
async fn gitlab() -> (GitLabHandle, String) {
    let gitlab = GitLabServer::start(GitLabConfig::default())
        .await
        .expect("gitlab");
    let seed = gitlab.seed();
    for user in ["operator", "svc-u"] {
        seed.user(UserSeed {
            username: user.into(),
            admin: user == "operator",
            ..Default::default()
        })
        .expect("user");
    }
    for group in ["acme/team-a", "acme/team-b", "acme/platform"] {
        seed.group(GroupSeed {
            full_path: group.into(),
            ..Default::default()
        })
        .expect("group");
    }
    seed.project(ProjectSeed {
        full_path: PROJECT.into(),
        ..Default::default()
    })
    .expect("project");
    seed.share(ShareSeed {
        path: PROJECT.into(),
        group: "acme/team-a".into(),
        group_access: 30,
        expires_at: None,
    })
    .expect("share");
    seed.member(MemberSeed {
        username: "svc-u".into(),
        path: "acme/platform".into(),
        access_level: 20,
        expires_at: None,
    })
    .expect("member");
    let (_, token) = seed
        .personal_token(TokenSeed {
            username: "operator".into(),
            name: "operator".into(),
            scopes: vec!["read_api".into()],
            expires_at: None,
        })
        .expect("token");
    (gitlab, token)
}

fn source(url: &str, ns: &str, level: &str) -> String {
    format!(
        "apiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata:\n  name: infra\n  namespace: {ns}\n  \
         annotations:\n    gitlabtokens.io/inject: \"true\"\n    gitlabtokens.io/access-level: {level}\nspec:\n  interval: 1m\n  \
         url: {url}/{PROJECT}.git\n"
    )
}

/// Runs `check --online -o json` for one source; returns exit code, report, stdout and stderr.
async fn check(url: &str, token: &str, ns: &str, level: &str) -> (i32, Value, String, String) {
    let dir = tempfile::tempdir().expect("dir");
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).expect("write");
        p.to_string_lossy().into_owned()
    };
    let args = vec![
        "check".to_string(),
        "--policy".into(),
        write("p.yaml", POLICY_AND_NAMESPACES),
        "--source".into(),
        write("s.yaml", &source(url, ns, level)),
        "--gitlab-url".into(),
        url.into(),
        "--online".into(),
        "--gitlab-token-file".into(),
        write("token", &format!("{token}\n")),
        "-o".into(),
        "json".into(),
    ];
    let out = tokio::task::spawn_blocking(move || Command::new(BIN).args(&args).output().expect("run"))
        .await
        .expect("join");
    drop(dir);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !stdout.contains(token) && !stderr.contains(token),
        "the token is never printed"
    );
    let v = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), v, stdout, stderr)
}

fn verdict(v: &Value) -> (&str, &str, &str) {
    let s = &v["sources"][0];
    (
        s["verdict"].as_str().unwrap_or_default(),
        s["reason"].as_str().unwrap_or_default(),
        s["message"]
            .as_str()
            .or_else(|| s["evaluations"][0]["message"].as_str())
            .unwrap_or_default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_check_asks_gitlab_and_explains_like_the_operator() {
    let (gl, token) = gitlab().await;
    let url = gl.url();

    // Allowed: team-a has Developer through the share.
    let (code, v, out, err) = check(&url, &token, "svc-a", "developer").await;
    let (verdict_, _, message) = verdict(&v);
    assert_eq!((code, verdict_), (0, "SERVED"), "{out} {err}");
    assert!(
        message.contains("group:acme/team-a, which has developer (access_level 30)")
            && message.contains("GitLab's live answer"),
        "{message}"
    );

    // Lowered: Maintainer is more than GitLab grants; a live token would be re-issued lower.
    let (code, v, out, err) = check(&url, &token, "svc-a", "maintainer").await;
    let (verdict_, reason, message) = verdict(&v);
    assert_eq!(
        (code, verdict_, reason),
        (1, "DENIED", "GitLabAccessDenied"),
        "{out} {err}"
    );
    assert!(
        message.contains("has developer") && message.contains("re-issued at developer (AccessLowered)"),
        "{message}"
    );

    // Withdrawn: team-b has no access; a live token would be revoked.
    let (code, v, out, err) = check(&url, &token, "svc-b", "developer").await;
    let (verdict_, reason, message) = verdict(&v);
    assert_eq!(
        (code, verdict_, reason),
        (1, "DENIED", "GitLabAccessDenied"),
        "{out} {err}"
    );
    assert!(
        message.contains("has no access") && message.contains("(AccessWithdrawn)"),
        "{message}"
    );

    // A user identity: GitLab computes the inherited role (Reporter from acme/platform).
    let (code, v, out, err) = check(&url, &token, "svc-u", "reporter").await;
    assert_eq!((code, verdict(&v).0), (0, "SERVED"), "{out} {err}");
    let (code, v, _, _) = check(&url, &token, "svc-u", "developer").await;
    assert_eq!(code, 1);
    assert!(
        verdict(&v).2.contains("re-issued at reporter (AccessLowered)"),
        "{v}"
    );

    // The operator's own lookups were made: the project's shares, its groups', the user's role.
    let paths: Vec<String> = gl.calls().into_iter().map(|c| c.path).collect();
    for expected in [
        "/api/v4/projects/acme%2Fplatform%2Finfra",
        "/api/v4/groups/acme%2Fplatform",
        "/api/v4/projects/acme%2Fplatform%2Finfra/members/all/",
    ] {
        assert!(
            paths.iter().any(|p| p.starts_with(expected)),
            "{expected} in {paths:?}"
        );
    }

    // An outage: an error naming GitLab, exit 2, no verdict — never a denial.
    gl.add_fault(FaultRule {
        method: Some("GET".into()),
        path: "/api/v4/*".into(),
        action: FaultAction::Status { status: 503 },
        times: None,
    })
    .expect("fault");
    let (code, v, out, err) = check(&url, &token, "svc-a", "developer").await;
    assert_eq!(code, 2, "{out} {err}");
    assert_eq!(v, Value::Null, "no report: {out}");
    assert!(
        err.contains("did not answer") && err.contains("not a denial"),
        "{err}"
    );
}

#[test]
fn online_needs_a_token_and_conflicts_with_saved_answers() {
    let dir = tempfile::tempdir().expect("dir");
    let p = dir.path().join("p.yaml");
    std::fs::write(&p, POLICY_AND_NAMESPACES).expect("write");
    let s = dir.path().join("s.yaml");
    std::fs::write(&s, source("https://gitlab.example.com", "svc-a", "developer")).expect("write");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "check",
            "--policy",
            p.to_str().expect("path"),
            "--source",
            s.to_str().expect("path"),
            "--gitlab-url",
            "https://gitlab.example.com",
        ];
        args.extend_from_slice(extra);
        let out = Command::new(BIN).args(&args).output().expect("run");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&["--online"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--gitlab-token-file"), "{err}");
    let (code, err) = run(&["--online", "--gitlab-access", "x.yaml"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot be used with"), "{err}");
}

/// The token read from the GitLabConnection's Secret through the kubeconfig (the default when
/// no `--gitlab-token-file` is given); a missing Secret is a clear error, not a verdict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_check_reads_the_operators_token_from_the_connections_secret() {
    use k8s_openapi::api::core::v1::{Namespace, Secret};
    use kube::{Api, api::PostParams};

    let (gl, token) = gitlab().await;
    let url = gl.url();
    testbed::init_crypto();
    let kube = testbed::kube::KubeServer::start(testbed::kube::KubeServerConfig::default())
        .await
        .expect("kube");
    let client = kube.admin_client().await.expect("client");
    let dir = tempfile::tempdir().expect("dir");
    let kubeconfig = dir.path().join("kubeconfig");
    kube.write_kubeconfig(&kubeconfig, kube.admin_token())
        .expect("kubeconfig");
    let ns: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "gitlab-token-operator"}}))
            .expect("ns");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("namespace");
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).expect("write");
        p.to_string_lossy().into_owned()
    };
    let connection = write(
        "conn.yaml",
        &format!(
            "apiVersion: gitlabtokens.io/v1alpha1\nkind: GitLabConnection\nmetadata: {{name: gitlab}}\nspec:\n  url: {url}\n  \
             credentials:\n    secretRef: {{namespace: gitlab-token-operator, name: gitlab-operator-token, key: token}}\n"
        ),
    );
    let policy = write("p.yaml", POLICY_AND_NAMESPACES);
    let sources = write("s.yaml", &source(&url, "svc-a", "developer"));
    let home = dir.path().join("home");
    std::fs::create_dir(&home).expect("home");
    let run = || {
        let args = [
            "check",
            "--policy",
            &policy,
            "--connection",
            &connection,
            "--source",
            &sources,
            "--online",
            "-o",
            "json",
        ]
        .map(String::from);
        let (kubeconfig, home) = (kubeconfig.clone(), home.clone());
        tokio::task::spawn_blocking(move || {
            Command::new(BIN)
                .args(&args)
                .env("KUBECONFIG", &kubeconfig)
                .env("HOME", &home)
                .env_remove("KUBERNETES_SERVICE_HOST")
                .env_remove("KUBERNETES_SERVICE_PORT")
                .output()
                .expect("run")
        })
    };

    // No Secret yet: an error naming it, exit 2.
    let out = run().await.expect("join");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("Secret gitlab-token-operator/gitlab-operator-token"),
        "{err}"
    );

    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "gitlab-operator-token", "namespace": "gitlab-token-operator"},
        "stringData": {"token": token}
    }))
    .expect("secret");
    Api::<Secret>::namespaced(client, "gitlab-token-operator")
        .create(&PostParams::default(), &secret)
        .await
        .expect("secret");
    let out = run().await.expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stdout.contains(&token) && !stderr.contains(&token));
    let v: Value = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    assert_eq!(
        (out.status.code(), verdict(&v).0),
        (Some(0), "SERVED"),
        "{stdout} {stderr}"
    );
    assert!(verdict(&v).2.contains("GitLab's live answer"), "{v}");
}
