//! `status` and `renew`, run as the built binary against the testbed's Kubernetes API server
//! emulator through a kubeconfig file.

use std::{path::PathBuf, time::Duration};

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use gitlab_token_operator::crd::{
    self, AccessLevel, ConsumerRef, GitLabToken, GitLabTokenSpec, Scope, SecretFormat, SecretTarget,
};
use k8s_openapi::{
    api::core::v1::Namespace, apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client,
    api::{ListParams, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};
use testbed::kube::{KubeHandle, KubeServer, KubeServerConfig};

const BIN: &str = env!("CARGO_BIN_EXE_gitlab-token-operator");

struct World {
    kube: KubeHandle,
    client: Client,
    _dir: tempfile::TempDir,
    kubeconfig: PathBuf,
    home: PathBuf,
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs the binary with only this world's kubeconfig visible.
async fn cli(kubeconfig: &std::path::Path, home: &std::path::Path, args: &[&str]) -> Out {
    let out = tokio::process::Command::new(BIN)
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", home)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .output()
        .await
        .unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !f().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn world(with_crds: bool) -> World {
    testbed::init_crypto();
    let kube = KubeServer::start(KubeServerConfig::default()).await.unwrap();
    let client = kube.admin_client().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    kube.write_kubeconfig(&kubeconfig, kube.admin_token()).unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    if with_crds {
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        for c in crd::all_crds() {
            crds.create(&PostParams::default(), &c).await.unwrap();
        }
        let tokens: Api<GitLabToken> = Api::all(client.clone());
        eventually("GitLabToken CRD served", || {
            let tokens = tokens.clone();
            async move { tokens.list(&ListParams::default()).await.is_ok() }
        })
        .await;
    }
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for ns in ["team-a", "team-b"] {
        let n: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
        namespaces.create(&PostParams::default(), &n).await.unwrap();
    }
    World {
        kube,
        client,
        _dir: dir,
        kubeconfig,
        home,
    }
}

impl World {
    async fn run(&self, args: &[&str]) -> Out {
        cli(&self.kubeconfig, &self.home, args).await
    }

    /// Creates a token; with `ready` set, also writes a status like the operator's.
    async fn token(&self, ns: &str, name: &str, ready: Option<(bool, &str)>) -> GitLabToken {
        let api: Api<GitLabToken> = Api::namespaced(self.client.clone(), ns);
        let mut t = GitLabToken::new(
            name,
            GitLabTokenSpec {
                kind: Default::default(),
                group: None,
                connection_ref: None,
                project: "Acme/App".into(),
                scopes: vec![Scope::ReadRepository],
                access_level: AccessLevel::Reporter,
                lifetime: None,
                renew_before: None,
                secret: SecretTarget {
                    name: name.into(),
                    format: SecretFormat::BasicAuth,
                    registry_host: None,
                },
                consumers: vec![ConsumerRef {
                    api_version: "source.toolkit.fluxcd.io/v1".into(),
                    kind: "GitRepository".into(),
                    name: "app".into(),
                    namespace: None,
                }],
                deletion_policy: Default::default(),
                argo_cd: None,
            },
        );
        t.metadata.namespace = Some(ns.into());
        let created = api.create(&PostParams::default(), &t).await.unwrap();
        let Some((ok, reason)) = ready else {
            return created;
        };
        let status = json!({"status": {
            "conditions": [{"type": "Ready", "status": if ok {"True"} else {"False"}, "reason": reason,
                "message": "m", "lastTransitionTime": "2026-11-24T00:00:00Z"}],
            "project": {"id": 7, "path": "acme/app"},
            "current": {"tokenId": 9, "name": "gto-default-x", "botUser": "bot", "createdAt": "2026-11-24T00:00:00Z",
                "expiresAt": "2026-12-24"},
            "renewalTime": "2026-12-14T03:04:05Z"
        }});
        api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_tables_every_namespace_and_fails_when_a_token_is_not_ready() {
    let w = world(true).await;
    w.token("team-b", "zeta", Some((false, "PolicyDenied"))).await;
    w.token("team-a", "alpha", Some((true, "Issued"))).await;
    w.token("team-a", "fresh", None).await;

    let out = w.run(&["status"]).await;
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{}", out.stdout);
    assert!(
        lines[0].starts_with("NAMESPACE")
            && lines[0].contains("CONSUMERS")
            && lines[0].ends_with("READY   REASON"),
        "{}",
        lines[0]
    );
    let cells = |l: &str| l.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    assert_eq!(
        cells(lines[1]),
        [
            "team-a",
            "alpha",
            "acme/app",
            "GitRepository/app",
            "2026-12-24",
            "2026-12-14T03:04:05Z",
            "True",
            "Issued"
        ]
    );
    assert_eq!(
        cells(lines[2]),
        [
            "team-a",
            "fresh",
            "Acme/App",
            "GitRepository/app",
            "-",
            "-",
            "-",
            "-"
        ]
    );
    assert_eq!(cells(lines[3])[..2], ["team-b", "zeta"]);
    assert_eq!(cells(lines[3])[6..], ["False", "PolicyDenied"]);

    // One namespace: no NAMESPACE column; JSON; exit 0 once every token there is Ready.
    let out = w.run(&["status", "-n", "team-b", "-o", "json"]).await;
    assert_eq!(out.code, 1);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["allReady"], false);
    assert_eq!(v["tokens"].as_array().unwrap().len(), 1);
    assert_eq!(v["tokens"][0]["reason"], "PolicyDenied");
    assert_eq!(v["tokens"][0]["ready"], "False");
    assert_eq!(v["tokens"][0]["expires"], "2026-12-24");

    let api: Api<GitLabToken> = Api::namespaced(w.client.clone(), "team-a");
    api.delete("fresh", &Default::default()).await.unwrap();
    eventually("fresh deleted", || {
        let api = api.clone();
        async move { api.get_opt("fresh").await.unwrap().is_none() }
    })
    .await;
    let out = w.run(&["status", "-n", "team-a"]).await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.starts_with("NAME "), "{}", out.stdout);
    assert_eq!(out.stdout.lines().count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_without_tokens_says_so_and_exits_0() {
    let w = world(true).await;
    let out = w.run(&["status", "-n", "team-a"]).await;
    assert_eq!(out.code, 0);
    assert!(out.stdout.is_empty());
    assert!(
        out.stderr.contains("No GitLabTokens found in namespace team-a"),
        "{}",
        out.stderr
    );
    let out = w.run(&["status", "-o", "json"]).await;
    assert_eq!(out.code, 0);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        v,
        json!({"tokens": [], "sourcesWithoutToken": [], "allReady": true})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_access_errors_exit_2_and_say_what_to_do() {
    // CRDs not installed.
    let w = world(false).await;
    let out = w.run(&["status"]).await;
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("CRD is not installed"), "{}", out.stderr);
    assert!(
        out.stderr.contains("gitlab-token-operator crds"),
        "{}",
        out.stderr
    );
    // No kubeconfig at all.
    let missing = w.home.join("nope");
    let out = cli(&missing, &w.home, &["status"]).await;
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("no kubeconfig: set KUBECONFIG"),
        "{}",
        out.stderr
    );
    let out = cli(&missing, &w.home, &["renew", "team-a/x"]).await;
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("no kubeconfig: set KUBECONFIG"),
        "{}",
        out.stderr
    );
    // Credentials the server does not accept.
    let bad = w.home.join("bad-kubeconfig");
    w.kube.write_kubeconfig(&bad, "not-a-token").unwrap();
    let out = cli(&bad, &w.home, &["status"]).await;
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("does not accept your credentials"),
        "{}",
        out.stderr
    );
    // A user without RBAC on gitlabtokens (in a world with the CRDs installed).
    let w = world(true).await;
    w.kube.add_user_token("nobody-token", "nobody", &[]);
    let nobody = w.home.join("nobody-kubeconfig");
    w.kube.write_kubeconfig(&nobody, "nobody-token").unwrap();
    let out = cli(&nobody, &w.home, &["status", "-n", "team-a"]).await;
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("forbidden") && out.stderr.contains("RBAC"),
        "{}",
        out.stderr
    );
    let out = cli(&nobody, &w.home, &["renew", "team-a/x"]).await;
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("forbidden"), "{}", out.stderr);
}

fn managers(t: &GitLabToken) -> Vec<(String, String)> {
    t.metadata
        .managed_fields
        .iter()
        .flatten()
        .map(|m| {
            (
                m.manager.clone().unwrap_or_default(),
                m.operation.clone().unwrap_or_default(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renew_sets_the_annotation_by_merge_patch_and_reports_missing_tokens() {
    let w = world(true).await;
    w.token("team-a", "alpha", Some((true, "Issued"))).await;
    let api: Api<GitLabToken> = Api::namespaced(w.client.clone(), "team-a");
    let before = Utc::now() - chrono::Duration::seconds(1);
    let out = w.run(&["renew", "team-a/alpha"]).await;
    let after = Utc::now() + chrono::Duration::seconds(1);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("renewal requested: GitLabToken team-a/alpha"),
        "{}",
        out.stdout
    );
    let t = api.get("alpha").await.unwrap();
    let value = t.metadata.annotations.as_ref().unwrap()["gitlabtokens.io/renew-requested-at"].clone();
    let at: DateTime<Utc> = DateTime::parse_from_rfc3339(&value).unwrap().into();
    assert!(before <= at && at <= after, "{value}");
    assert!(out.stdout.contains(&value));
    assert!(
        managers(&t).contains(&("gitlab-token-operator/cli".into(), "Update".into())),
        "{:?}",
        managers(&t)
    );
    // The rest of the object is untouched.
    assert_eq!(t.spec.project, "Acme/App");
    assert_eq!(
        t.status.as_ref().unwrap().current.as_ref().unwrap().expires_at,
        NaiveDate::from_ymd_opt(2026, 12, 24).unwrap()
    );
    assert_eq!(
        t.status.as_ref().unwrap().renewal_time,
        Some(Utc.with_ymd_and_hms(2026, 12, 14, 3, 4, 5).unwrap())
    );

    // A second request carries a new value (the operator acts on each new value once).
    let out = w.run(&["renew", "team-a/alpha", "-o", "json"]).await;
    assert_eq!(out.code, 0);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["namespace"], "team-a");
    assert_eq!(v["name"], "alpha");
    assert_eq!(v["annotation"], "gitlabtokens.io/renew-requested-at");
    let second =
        api.get("alpha").await.unwrap().metadata.annotations.unwrap()["gitlabtokens.io/renew-requested-at"]
            .clone();
    assert_eq!(v["renewRequestedAt"], second.as_str());
    assert_ne!(second, value);

    let out = w.run(&["renew", "team-a/nope"]).await;
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("GitLabToken team-a/nope does not exist"),
        "{}",
        out.stderr
    );
    assert!(api.get_opt("nope").await.unwrap().is_none());
    let out = w.run(&["renew", "nope"]).await;
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("NAMESPACE/NAME"), "{}", out.stderr);
}
