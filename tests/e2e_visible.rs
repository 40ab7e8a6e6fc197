//! Every request visible, end to end with the real binary (issue 14 items 2 and 3, issue 9
//! items 8): refused sources get a GitLabToken carrying their reason (or, where none can exist,
//! a row in `status` and a non-zero exit); annotation typos get a did-you-mean; removing the
//! opt-in removes the `spec.secretRef` the shim set and only that one; one oversized source
//! never blocks its namespace; registry-path lookups are capped and cached; connection URLs
//! with `/api/v4` or the wrong scheme say what to do.

mod e2e;

use e2e::{CONNECTION, Env, OPERATOR_NS};
use gitlab_token_operator::{crd::GitLabToken, shim::refused::REFUSED_REASON};
use kube::{Api, ResourceExt, api::DynamicObject};
use serde_json::{Value, json};

const NS: &str = "team-a";

fn git_source(name: &str, url: &str, annotations: &[(&str, &str)], spec: Value) -> Value {
    let mut ann = serde_json::Map::new();
    for (k, v) in annotations {
        ann.insert(format!("gitlabtokens.io/{k}"), json!(v));
    }
    let mut s = json!({"interval": "1m", "url": url, "ref": {"branch": "main"}});
    if let (Some(s), Some(extra)) = (s.as_object_mut(), spec.as_object()) {
        s.extend(extra.clone());
    }
    json!({"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
        "metadata": {"name": name, "namespace": NS, "annotations": ann},
        "spec": s})
}

fn repo_url(env: &Env, project: &str) -> String {
    format!("{}/{project}.git", env.world.gitlab_url())
}

/// Runs `gitlab-token-operator status -n team-a -o json` as an admin would.
async fn status(env: &Env) -> (i32, Value) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_gitlab-token-operator"))
        .args(["status", "-n", NS, "-o", "json"])
        .env("KUBECONFIG", env.world.kubeconfig_path())
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .await
        .expect("status runs");
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "status printed no JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), json)
}

fn ready_of(t: &GitLabToken) -> Option<(String, String, String)> {
    let c = t
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")?;
    Some((format!("{:?}", c.status), c.reason.clone(), c.message.clone()))
}

async fn source_object(env: &Env, name: &str) -> DynamicObject {
    env.flux_api(NS, "source.toolkit.fluxcd.io/v1", "GitRepository")
        .await
        .get(name)
        .await
        .expect("source exists")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_annotated_source_is_listed_with_its_reason() {
    let env = Env::start().await;
    let host = env.world.gitlab_url().replace("http://", "");
    // Refused before any token spec exists: a GitLabToken still carries the reason.
    env.apply(git_source(
        "over-ssh",
        &format!("ssh://git@{host}/acme/team-a/app.git"),
        &[("inject", "true")],
        json!({}),
    ))
    .await;
    // No GitLabToken can exist (no valid Secret name): a row in `status`.
    env.apply(git_source(
        "bad-name",
        &repo_url(&env, "acme/team-a/app"),
        &[("inject", "true"), ("secret-name", "Not_A_Name")],
        json!({}),
    ))
    .await;
    let t = env
        .wait_token_condition(NS, "over-ssh-gitlab-token", "Ready", "False", Some("ForeignHost"))
        .await;
    assert_eq!(
        t.annotations().get(REFUSED_REASON).map(String::as_str),
        Some("ForeignHost")
    );
    let (_, _, message) = ready_of(&t).unwrap();
    assert_eq!(
        message.matches("spec.sshHost").count(),
        1,
        "the advice is given once: {message}"
    );
    let event = env.wait_warning(NS, "over-ssh", "ForeignHost").await;
    assert_eq!(
        event.matches("spec.sshHost").count(),
        1,
        "no repeated advice: {event}"
    );
    env.wait_warning(NS, "bad-name", "InvalidAnnotation").await;

    let (code, report) = e2e::eventually("status to list both sources", || async {
        let (code, report) = status(&env).await;
        let listed = report["tokens"]
            .as_array()?
            .iter()
            .any(|r| r["name"] == "over-ssh-gitlab-token" && r["reason"] == "ForeignHost");
        let row = report["sourcesWithoutToken"]
            .as_array()?
            .iter()
            .any(|r| r["consumers"][0] == "GitRepository/bad-name" && r["reason"] == "InvalidAnnotation");
        (listed && row).then_some((code, report))
    })
    .await;
    assert_eq!(code, 1, "refused requests make status exit non-zero: {report}");
    assert_eq!(report["allReady"], false);
    assert!(env.all_operator_tokens().is_empty(), "nothing minted");

    // Fixing the SSH URL turns the refused GitLabToken into a served one (same name).
    env.apply(git_source(
        "over-ssh",
        &repo_url(&env, "acme/team-a/app"),
        &[("inject", "true")],
        json!({}),
    ))
    .await;
    let t = env
        .wait_token_condition(NS, "over-ssh-gitlab-token", "Ready", "True", Some("Issued"))
        .await;
    assert!(
        !t.annotations().contains_key(REFUSED_REASON),
        "the refusal is gone once served"
    );
    assert_eq!(env.all_operator_tokens().len(), 1);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn annotation_typos_are_warned_with_a_did_you_mean() {
    let env = Env::start().await;
    let url = repo_url(&env, "acme/team-a/app");
    env.apply(git_source("typo-value", &url, &[("inject", "ture")], json!({})))
        .await;
    env.apply(git_source(
        "typo-key",
        &url,
        &[("inject", "true"), ("acess-level", "developer")],
        json!({}),
    ))
    .await;
    let w = env.wait_warning(NS, "typo-value", "IgnoredAnnotation").await;
    assert!(w.contains("did you mean \"true\"?"), "{w}");
    let w = env.wait_warning(NS, "typo-key", "IgnoredAnnotation").await;
    assert!(w.contains("did you mean gitlabtokens.io/access-level?"), "{w}");
    // The misspelt key is ignored (warned), the source itself is served.
    env.wait_token_condition(NS, "typo-key-gitlab-token", "Ready", "True", Some("Issued"))
        .await;
    // `inject: "ture"` is no opt-in: no token, but `status` lists the source and exits 1.
    let tokens: Api<GitLabToken> = Api::namespaced(env.client.clone(), NS);
    assert!(tokens.get_opt("typo-value-gitlab-token").await.unwrap().is_none());
    let (code, report) = status(&env).await;
    let row = report["sourcesWithoutToken"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["consumers"][0] == "GitRepository/typo-value")
        .cloned()
        .unwrap_or_else(|| panic!("a row for typo-value: {report}"));
    assert_eq!(row["reason"], "IgnoredAnnotation", "{row}");
    assert_eq!(code, 1);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_the_opt_in_removes_only_the_secret_ref_the_shim_set() {
    let env = Env::start().await;
    let url = repo_url(&env, "acme/team-a/app");
    env.apply(git_source("pointed", &url, &[("inject", "true")], json!({})))
        .await;
    env.apply(git_source(
        "own-ref",
        &url,
        &[("inject", "true")],
        json!({"secretRef": {"name": "own-ref-creds"}}),
    ))
    .await;
    env.wait_token_condition(NS, "pointed-gitlab-token", "Ready", "True", Some("Issued"))
        .await;
    env.wait_token_condition(NS, "own-ref-creds", "Ready", "True", Some("Issued"))
        .await;
    let pointed = source_object(&env, "pointed").await;
    assert_eq!(pointed.data["spec"]["secretRef"]["name"], "pointed-gitlab-token");
    assert_eq!(
        pointed
            .annotations()
            .get("gitlabtokens.io/secret-ref-set")
            .map(String::as_str),
        Some("pointed-gitlab-token")
    );

    // The user drops the annotations (their apply no longer sets them).
    env.apply(git_source("pointed", &url, &[], json!({}))).await;
    env.apply(git_source(
        "own-ref",
        &url,
        &[],
        json!({"secretRef": {"name": "own-ref-creds"}}),
    ))
    .await;
    let pointed = e2e::eventually("the shim's secretRef to be removed", || async {
        let s = source_object(&env, "pointed").await;
        s.data["spec"].get("secretRef").is_none().then_some(s)
    })
    .await;
    assert!(
        !pointed
            .annotations()
            .contains_key("gitlabtokens.io/secret-ref-set")
    );
    let tokens: Api<GitLabToken> = Api::namespaced(env.client.clone(), NS);
    e2e::eventually("both GitLabTokens to go", || async {
        let list = tokens.list(&Default::default()).await.ok()?;
        list.items.is_empty().then_some(())
    })
    .await;
    let own = source_object(&env, "own-ref").await;
    assert_eq!(
        own.data["spec"]["secretRef"]["name"], "own-ref-creds",
        "a secretRef the user wrote is never removed"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_oversized_source_never_blocks_its_namespace() {
    let env = Env::start().await;
    let long_project = format!("acme/{}", "a".repeat(1100));
    env.apply(git_source(
        "long-project",
        &repo_url(&env, "acme/team-a/app"),
        &[("inject", "true"), ("project", &long_project)],
        json!({}),
    ))
    .await;
    let long_url = repo_url(&env, &format!("acme/{}", "b".repeat(2100)));
    env.apply(git_source(
        "long-url",
        &long_url,
        &[("inject", "true")],
        json!({}),
    ))
    .await;
    // A registry path 40 segments deep below no project: at most 20 lookups, then cached.
    let deep: Vec<String> = (0..40).map(|i| format!("d{i}")).collect();
    let image = format!("{}/acme/{}", env.world.registry_host(), deep.join("/"));
    env.apply(
        json!({"apiVersion": "image.toolkit.fluxcd.io/v1", "kind": "ImageRepository",
        "metadata": {"name": "deep", "namespace": NS, "annotations": {"gitlabtokens.io/inject": "true"}},
        "spec": {"interval": "1m", "image": image, "insecure": true}}),
    )
    .await;
    // Created after them, in the same namespace: served.
    env.apply(git_source(
        "later",
        &repo_url(&env, "acme/team-a/app"),
        &[("inject", "true")],
        json!({}),
    ))
    .await;
    env.wait_token_condition(NS, "later-gitlab-token", "Ready", "True", Some("Issued"))
        .await;
    let t = env
        .wait_token_condition(
            NS,
            "long-project-gitlab-token",
            "Ready",
            "False",
            Some("InvalidAnnotation"),
        )
        .await;
    let (_, _, message) = ready_of(&t).unwrap();
    assert!(
        message.contains("1105 characters long; at most 1024"),
        "{message}"
    );
    assert!(
        message.len() < 1100,
        "the oversized value is not echoed whole: {} bytes",
        message.len()
    );
    let t = env
        .wait_token_condition(NS, "long-url-gitlab-token", "Ready", "False", Some("InvalidURL"))
        .await;
    let (_, _, message) = ready_of(&t).unwrap();
    assert!(message.contains("at most 2048"), "{message}");
    env.wait_token_condition(NS, "deep-gitlab-token", "Ready", "False", Some("ProjectNotFound"))
        .await;
    let lookups = || {
        env.world
            .gitlab
            .calls()
            .into_iter()
            .filter(|c| c.method == "GET" && c.path.starts_with("/api/v4/projects/acme%2Fd0"))
            .count()
    };
    let first = lookups();
    assert_eq!(
        first, 20,
        "a 41-segment path costs 20 project lookups (2 to 21 segments), no more"
    );
    // Another change in the namespace reconciles it again: the misses are cached.
    env.apply(git_source(
        "another",
        &repo_url(&env, "acme/team-a/app"),
        &[("inject", "true")],
        json!({}),
    ))
    .await;
    env.wait_token_condition(NS, "another-gitlab-token", "Ready", "True", Some("Issued"))
        .await;
    assert_eq!(lookups(), first, "cached misses are not looked up again");
    assert_eq!(
        env.all_operator_tokens().len(),
        2,
        "only the two good sources minted"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_urls_of_the_wrong_shape_say_what_to_do() {
    let env = Env::start().await;
    let url = env.world.gitlab_url();
    let https = url.replace("http://", "https://");
    for (name, u) in [("with-api", format!("{url}/api/v4")), ("wrong-scheme", https)] {
        env.apply(json!({"apiVersion": "gitlabtokens.io/v1alpha1", "kind": "GitLabConnection",
            "metadata": {"name": name},
            "spec": {"url": u,
                     "credentials": {"secretRef": {"namespace": OPERATOR_NS, "name": "gitlab-operator-token", "key": "token"}}}}))
            .await;
    }
    let api: Api<gitlab_token_operator::crd::GitLabConnection> = Api::all(env.client.clone());
    for (name, says) in [
        ("with-api", "remove the /api/v4 suffix"),
        ("wrong-scheme", "use an http:// url"),
    ] {
        let message = e2e::eventually(&format!("{name} to be not Ready"), || async {
            let c = api.get(name).await.ok()?;
            let ready = c.status?.conditions.into_iter().find(|c| c.type_ == "Ready")?;
            (format!("{:?}", ready.status) == "False").then_some(ready.message)
        })
        .await;
        assert!(message.contains(says), "{name}: {message}");
    }
    let logs = env.operator_logs();
    assert!(
        logs.contains("GitLabConnection is not Ready") && logs.contains("with-api"),
        "connection state changes are logged at info"
    );
    let ready = api.get(CONNECTION).await.unwrap();
    assert!(gitlab_token_operator::controller::conditions::is_ready(
        &ready.status.unwrap().conditions
    ));
    env.stop().await;
}

/// `kubectl get` shows READY, REASON and a short MESSAGE for tokens, connections and policies:
/// the message column is `status.summary` (first clause, at most 60 characters), so a refusal's
/// row stays on one line while the condition keeps the whole advice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_shows_ready_reason_and_a_short_message() {
    let env = Env::start().await;
    // A namespace no policy selects: NoPolicy, whose message is long advice.
    env.namespace("elsewhere").await;
    let mut source = git_source(
        "app",
        &repo_url(&env, "acme/team-a/app"),
        &[("inject", "true")],
        json!({}),
    );
    source["metadata"]["namespace"] = json!("elsewhere");
    env.apply(source).await;
    let t = env
        .wait_token_condition("elsewhere", "app-gitlab-token", "Ready", "False", None)
        .await;
    let (_, reason, message) = ready_of(&t).unwrap();
    let summary = t
        .status
        .as_ref()
        .and_then(|s| s.summary.clone())
        .expect("a summary");
    assert!(summary.chars().count() <= 60, "{summary}");
    assert!(
        message.len() > summary.len(),
        "the condition keeps the whole message: {message}"
    );

    let kubeconfig = env.dir.path().join("admin-kubeconfig");
    env.world
        .kube
        .write_kubeconfig(&kubeconfig, env.world.kube.admin_token())
        .expect("kubeconfig");
    let kubectl = |args: &[&str]| {
        let out = std::process::Command::new("kubectl")
            .env("KUBECONFIG", &kubeconfig)
            .arg("--cache-dir")
            .arg(env.dir.path().join("kubectl-cache"))
            .args(args)
            .output()
            .expect("kubectl runs");
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let tokens = kubectl(&["get", "gitlabtokens", "-n", "elsewhere"]);
    eprintln!("{tokens}");
    let header = tokens.lines().next().unwrap_or_default();
    for column in ["READY", "REASON", "MESSAGE"] {
        assert!(header.contains(column), "{column} in {header}");
    }
    let row = tokens.lines().nth(1).unwrap_or_default();
    assert!(
        row.contains(&reason) && row.trim_end().ends_with(&summary),
        "row {row:?}, summary {summary:?}"
    );

    let connections = kubectl(&["get", "gitlabconnections"]);
    assert!(
        connections.lines().next().unwrap_or_default().contains("MESSAGE"),
        "{connections}"
    );
    let policies = kubectl(&["get", "gitlabtokenpolicies"]);
    assert!(
        policies.lines().next().unwrap_or_default().contains("MESSAGE"),
        "{policies}"
    );
    for (kind, table) in [("connections", &connections), ("policies", &policies)] {
        let row = table.lines().nth(1).unwrap_or_default();
        let message = row
            .split("  ")
            .filter(|c| !c.trim().is_empty())
            .last()
            .unwrap_or_default()
            .trim();
        assert!(
            !message.is_empty() && message.chars().count() <= 60,
            "{kind}: short message in {row:?}"
        );
    }
    env.stop().await;
}
