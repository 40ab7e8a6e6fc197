//! The Argo CD stand-in against the whole test world, with Argo CD's real CRDs: it picks
//! credentials from `repository` and `repo-creds` Secrets as Argo CD does (exact match before
//! the longest template prefix, project scoping, URL normalisation, Secrets re-read on every
//! refresh), resolves revisions with the real git and Helm protocols, and writes the
//! Application's status and consumes the refresh annotation as the application-controller does.

mod argocd_support;

use std::time::Duration;

use argocd_support::{Env, NS, auth_failure, condition_message, head_sha, refresh};
use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Api,
    api::{DynamicObject, PostParams},
};
use serde_json::json;
use testbed::argocd::status::Refresh;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn correct_secret_syncs_wrong_password_fails_and_changed_secrets_are_reread() {
    let env = Env::start(Duration::from_secs(2)).await;
    let (dev, maint) = (env.seed().dev_token.clone(), env.seed().maint_token.clone());
    let app_url = env.git_url("acme/team-a/app");
    let api_url = env.git_url("acme/team-b/api");
    env.put_secret(
        "team-a-app",
        "repository",
        &[("url", &app_url), ("username", "dev"), ("password", &dev)],
    )
    .await;
    env.put_secret(
        "team-b-api",
        "repository",
        &[("url", &api_url), ("username", "maint"), ("password", "wrong")],
    )
    .await;
    env.app(
        NS,
        "good",
        "default",
        json!({"repoURL": app_url, "targetRevision": "HEAD", "path": "."}),
    )
    .await;
    env.app(
        NS,
        "bad",
        "default",
        json!({"repoURL": api_url, "targetRevision": "HEAD", "path": "."}),
    )
    .await;

    let good = env.synced(NS, "good").await;
    assert_eq!(
        good["status"]["sync"]["revision"],
        json!(head_sha(&app_url, "dev", &dev).await)
    );
    assert_eq!(good["status"]["sourceType"], "Directory");
    assert_eq!(good["status"]["health"]["status"], "Healthy");
    assert_eq!(good["status"]["controllerNamespace"], NS);
    assert!(good["status"]["reconciledAt"].is_string());
    // The `default` AppProject was created as argocd-server does.
    let default = env
        .api(NS, "AppProject", "appprojects")
        .get("default")
        .await
        .unwrap();
    assert_eq!(default.data["spec"]["sourceRepos"], json!(["*"]));

    assert_eq!(
        env.condition(NS, "bad", "ComparisonError").await,
        auth_failure(1, 1)
    );
    let bad = serde_json::to_value(env.apps(NS).get("bad").await.unwrap()).unwrap();
    assert_eq!(bad["status"]["sync"]["status"], "Unknown");
    assert_eq!(bad["status"]["sync"]["revision"], "HEAD");
    assert!(bad["status"].get("sourceType").is_none());

    // Fixing the Secret is seen on the next periodic refresh; the condition goes away.
    env.put_secret(
        "team-b-api",
        "repository",
        &[("url", &api_url), ("username", "maint"), ("password", &maint)],
    )
    .await;
    let bad = env.synced(NS, "bad").await;
    assert!(condition_message(&bad, "ComparisonError").is_none());
    assert_eq!(
        bad["status"]["sync"]["revision"],
        json!(head_sha(&api_url, "maint", &maint).await)
    );

    // Breaking a Secret: a periodic refresh withholds the first repository error (Argo CD's
    // repo-error grace period drops the first occurrence), the next one writes it.
    env.put_secret(
        "team-a-app",
        "repository",
        &[("url", &app_url), ("username", "dev"), ("password", "revoked")],
    )
    .await;
    assert_eq!(
        env.condition(NS, "good", "ComparisonError").await,
        auth_failure(1, 1)
    );
    let failures: Vec<_> = env
        .refreshes_of("good")
        .into_iter()
        .filter(|r| r.outcome.is_err())
        .collect();
    assert!(failures.len() >= 2, "{failures:?}");
    assert!(
        !failures[0].written && failures[0].refresh == Refresh::Expired,
        "{failures:?}"
    );
    assert!(failures[1].written, "{failures:?}");
    env.world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn project_scoped_secret_serves_only_its_project() {
    let env = Env::start(Duration::from_secs(30)).await;
    let dev = env.seed().dev_token.clone();
    let url = env.git_url("acme/team-a/app");
    // Project A lists no sourceRepos: the Secret scoped to it grants the URL. B gets nothing.
    env.project(
        "team-a",
        json!({"sourceRepos": [], "sourceNamespaces": ["tenant-a"],
                                 "destinations": [{"server": "*", "namespace": "*"}]}),
    )
    .await;
    env.project(
        "team-b",
        json!({"sourceRepos": ["*"], "destinations": [{"server": "*", "namespace": "*"}]}),
    )
    .await;
    env.project(
        "team-c",
        json!({"sourceRepos": [], "destinations": [{"server": "*", "namespace": "*"}]}),
    )
    .await;
    env.put_secret(
        "scoped-a",
        "repository",
        &[
            ("url", &url),
            ("username", "dev"),
            ("password", &dev),
            ("project", "team-a"),
        ],
    )
    .await;
    let source = json!({"repoURL": url, "targetRevision": "main", "path": "."});
    // Created first: an Application outside the watched namespaces is never reconciled.
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "unwatched"}})).unwrap();
    Api::<Namespace>::all(env.client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    env.app("unwatched", "ignored", "team-a", source.clone()).await;
    env.app(NS, "a", "team-a", source.clone()).await;
    env.app(NS, "b", "team-b", source.clone()).await;
    env.app(NS, "c", "team-c", source.clone()).await;
    env.app("tenant-a", "a-elsewhere", "team-a", source.clone()).await;
    env.app("tenant-a", "b-elsewhere", "team-b", source.clone()).await;

    let a = env.synced(NS, "a").await;
    assert_eq!(
        a["status"]["sync"]["revision"],
        json!(head_sha(&url, "dev", &dev).await)
    );
    assert!(env.refreshes_of("ignored").is_empty());
    let ignored = env.apps("unwatched").get("ignored").await.unwrap();
    assert!(ignored.data.get("status").is_none(), "{:?}", ignored.data);
    // B's project allows the URL, but the scoped Secret is not B's: anonymous, refused.
    assert_eq!(
        env.condition(NS, "b", "ComparisonError").await,
        auth_failure(1, 1)
    );
    // C's project neither lists the URL nor owns a Secret for it.
    assert_eq!(
        env.condition(NS, "c", "InvalidSpecError").await,
        format!("application repo {url} is not permitted in project 'team-c'")
    );
    // Applications in another namespace: only where the project's sourceNamespaces allow it.
    env.synced("tenant-a", "a-elsewhere").await;
    assert_eq!(
        env.condition("tenant-a", "b-elsewhere", "UnknownError").await,
        "application 'b-elsewhere' in namespace 'tenant-a' is not permitted to use project 'team-b'"
    );

    // An unscoped Secret for the same URL: A keeps preferring its own project's Secret (the
    // unscoped one is wrong), and B falls back to the unscoped one once it is right.
    env.put_secret(
        "unscoped",
        "repository",
        &[("url", &url), ("username", "dev"), ("password", "wrong")],
    )
    .await;
    refresh(&env, NS, "a", "hard").await;
    let a = env.synced(NS, "a").await;
    assert!(condition_message(&a, "ComparisonError").is_none());
    env.put_secret(
        "unscoped",
        "repository",
        &[("url", &url), ("username", "dev"), ("password", &dev)],
    )
    .await;
    refresh(&env, NS, "b", "hard").await;
    let b = env.synced(NS, "b").await;
    assert!(condition_message(&b, "ComparisonError").is_none());
    env.world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repo_creds_template_serves_a_group_and_an_exact_secret_beats_it() {
    let env = Env::start(Duration::from_secs(30)).await;
    let operator = env.seed().operator_token.clone();
    let gitlab = env.world.gitlab_url();
    env.put_secret(
        "acme",
        "repo-creds",
        &[
            ("url", &format!("{gitlab}/acme/")),
            ("username", "operator"),
            ("password", &operator),
        ],
    )
    .await;
    let app_url = env.git_url("acme/team-a/app");
    let api_url = env.git_url("acme/team-b/api");
    env.app(NS, "app", "default", json!({"repoURL": app_url, "path": "."}))
        .await;
    env.app(NS, "api", "default", json!({"repoURL": api_url, "path": "."}))
        .await;
    // Outside the prefix: no credentials at all.
    let other = env.git_url("other-org/secret-project");
    env.app(NS, "other", "default", json!({"repoURL": other, "path": "."}))
        .await;
    let app = env.synced(NS, "app").await;
    assert_eq!(
        app["status"]["sync"]["revision"],
        json!(head_sha(&app_url, "operator", &operator).await)
    );
    env.synced(NS, "api").await;
    assert_eq!(
        env.condition(NS, "other", "ComparisonError").await,
        auth_failure(1, 1)
    );

    // An exact repository Secret (URL written without `.git`, upper-case host: normalised to the
    // same repository) with a wrong password wins over the template.
    let upper = api_url
        .strip_suffix(".git")
        .unwrap()
        .replace("http://127.0.0.1", "HTTP://127.0.0.1");
    env.put_secret(
        "api-exact",
        "repository",
        &[("url", &upper), ("username", "maint"), ("password", "wrong")],
    )
    .await;
    refresh(&env, NS, "api", "normal").await;
    assert_eq!(
        env.condition(NS, "api", "ComparisonError").await,
        auth_failure(1, 1)
    );
    // A URL-only repository Secret has no credentials: the template fills them in.
    env.put_secret("api-exact", "repository", &[("url", &upper)])
        .await;
    refresh(&env, NS, "api", "normal").await;
    env.synced(NS, "api").await;

    // A Helm chart source from the project's package registry (its own repository Secret) beside
    // a ref source the template serves: one revision per source.
    let project_id = env
        .seed()
        .projects
        .iter()
        .find(|p| p.path == "acme/team-b/api")
        .expect("seeded project")
        .id;
    let helm_url = format!("{gitlab}/api/v4/projects/{project_id}/packages/helm/stable");
    let maint = env.seed().maint_token.clone();
    env.put_secret(
        "helm",
        "repository",
        &[
            ("url", &helm_url),
            ("type", "helm"),
            ("name", "api"),
            ("username", "maint"),
            ("password", &maint),
        ],
    )
    .await;
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": "multi"},
        "spec": {"project": "default", "destination": {"server": "https://kubernetes.default.svc", "namespace": "default"},
                 "sources": [{"repoURL": helm_url, "chart": "api", "targetRevision": "*"},
                             {"repoURL": app_url, "targetRevision": "main", "ref": "values"}]},
    }))
    .unwrap();
    env.apps(NS).create(&PostParams::default(), &obj).await.unwrap();
    let multi = env.synced(NS, "multi").await;
    assert_eq!(
        multi["status"]["sync"]["revisions"],
        json!([
            testbed::world::SEED_CHART_VERSION,
            head_sha(&app_url, "operator", &operator).await
        ])
    );
    assert_eq!(multi["status"]["sourceTypes"][0], "Helm");

    // Helm on OCI, Helm-style: `enableOCI`, scheme-less URL; the registry is plain HTTP.
    let oci_repo = format!("{}/acme/team-b/api", env.world.registry_host());
    env.put_secret(
        "oci",
        "repository",
        &[
            ("url", &oci_repo),
            ("type", "helm"),
            ("name", "api-oci"),
            ("enableOCI", "true"),
            ("insecureOCIForceHttp", "true"),
            ("username", "maint"),
            ("password", &maint),
        ],
    )
    .await;
    let version = testbed::world::SEED_CHART_VERSION;
    env.app(
        NS,
        "oci",
        "default",
        json!({"repoURL": oci_repo, "chart": "api", "targetRevision": version}),
    )
    .await;
    let oci = env.synced(NS, "oci").await;
    assert_eq!(oci["status"]["sync"]["revision"], version);
    assert_eq!(oci["status"]["sourceType"], "Helm");
    // Without credentials (no Secret for that URL, no template under the registry host).
    let anonymous = format!("{}/acme/platform/charts", env.world.registry_host());
    env.put_secret(
        "oci-anon",
        "repository",
        &[
            ("url", &anonymous),
            ("type", "helm"),
            ("enableOCI", "true"),
            ("insecureOCIForceHttp", "true"),
        ],
    )
    .await;
    env.app(
        NS,
        "oci-anon",
        "default",
        json!({"repoURL": anonymous, "chart": "charts", "targetRevision": version}),
    )
    .await;
    let message = env.condition(NS, "oci-anon", "ComparisonError").await;
    assert!(
        message.starts_with("Failed to load target state: failed to generate manifest for source 1 of 1: rpc error: code = Unknown desc = error fetching chart: "),
        "{message}"
    );
    env.world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hard_refresh_rereads_secrets_at_once_and_is_removed() {
    // A long interval: nothing but the annotation can cause a second refresh.
    let env = Env::start(Duration::from_secs(600)).await;
    let dev = env.seed().dev_token.clone();
    let url = env.git_url("acme/team-a/app");
    env.put_secret(
        "app",
        "repository",
        &[("url", &url), ("username", "dev"), ("password", &dev)],
    )
    .await;
    env.app(NS, "app", "default", json!({"repoURL": url, "path": "."}))
        .await;
    let first = env.synced(NS, "app").await;
    let before = env.refreshes_of("app").len();
    assert_eq!(before, 1, "{:?}", env.refreshes_of("app"));

    env.put_secret(
        "app",
        "repository",
        &[("url", &url), ("username", "dev"), ("password", "revoked")],
    )
    .await;
    refresh(&env, NS, "app", "hard").await;
    let obj = serde_json::to_value(env.apps(NS).get("app").await.unwrap()).unwrap();
    assert_eq!(
        condition_message(&obj, "ComparisonError"),
        Some(auth_failure(1, 1))
    );
    let after = env.refreshes_of("app");
    assert_eq!(after.len(), before + 1, "{after:?}");
    assert_eq!(after[before].refresh, Refresh::Requested { hard: true });
    assert!(obj["status"]["reconciledAt"].as_str() >= first["status"]["reconciledAt"].as_str());

    // A commit SHA is not listed (ls-remote returns it as is): the credentials meet the remote at
    // the repo-server's `git fetch`, with its wording.
    let operator = env.seed().operator_token.clone();
    let infra = env.git_url("acme/platform/infra");
    let sha = head_sha(&infra, "operator", &operator).await;
    env.put_secret(
        "infra",
        "repository",
        &[("url", &infra), ("username", "operator"), ("password", "revoked")],
    )
    .await;
    env.app(
        NS,
        "pinned",
        "default",
        json!({"repoURL": infra, "targetRevision": sha, "path": "."}),
    )
    .await;
    let message = env.condition(NS, "pinned", "ComparisonError").await;
    let expected = "Failed to load target state: failed to generate manifest for source 1 of 1: rpc error: code = Internal desc = Failed to fetch default: `git fetch origin --tags --force --prune` failed exit status 128: ";
    assert!(message.starts_with(expected), "{message}");
    assert!(
        message.contains("fatal: Authentication failed for '"),
        "{message}"
    );
    assert!(!message.contains("revoked"), "{message}");
    env.put_secret(
        "infra",
        "repository",
        &[("url", &infra), ("username", "operator"), ("password", &operator)],
    )
    .await;
    refresh(&env, NS, "pinned", "hard").await;
    let pinned = env.synced(NS, "pinned").await;
    assert_eq!(pinned["status"]["sync"]["revision"], json!(sha));
    env.world.stop().await;
}
