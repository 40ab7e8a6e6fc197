//! `gitlab-token-operator check`, run as the built binary on temporary manifest files.

use std::process::Command;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_gitlab-token-operator");
const URL: &str = "https://gitlab.example.com";
const REGISTRY: &str = "registry.example.com";

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }
}

/// Writes `files` into a temp dir, replaces `{name}` in args by their paths, runs the binary.
fn run(files: &[(&str, &str)], args: &[&str]) -> Out {
    let dir = tempfile::tempdir().unwrap();
    let mut argv: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    for (name, text) in files {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        for a in &mut argv {
            *a = a.replace(&format!("{{{name}}}"), path.to_str().unwrap());
        }
    }
    let out = Command::new(BIN).args(&argv).output().unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `check` with flags for the connection, policies in p.yaml and sources in s.yaml.
fn check(policies: &str, sources: &str, extra: &[&str]) -> Out {
    let mut args = vec![
        "check",
        "--policy",
        "{p.yaml}",
        "--source",
        "{s.yaml}",
        "--gitlab-url",
        URL,
        "--registry-host",
        REGISTRY,
    ];
    args.extend_from_slice(extra);
    run(&[("p.yaml", policies), ("s.yaml", sources)], &args)
}

fn policy(name: &str, spec_extra: &str) -> String {
    format!(
        "---\napiVersion: gitlabtokens.io/v1alpha1\nkind: GitLabTokenPolicy\nmetadata: {{name: {name}}}\nspec:\n  namespaceSelector: {{matchNames: [\"team-*\"]}}\n{spec_extra}"
    )
}

const TEAM_A: &str = "  projects: [\"acme/team-a/*\"]\n";

fn git(name: &str, url: &str, annotations: &str) -> String {
    format!(
        "---\napiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata:\n  name: {name}\n  namespace: team-a\n  annotations:\n    gitlabtokens.io/inject: \"true\"\n{annotations}spec:\n  interval: 1m\n  url: {url}\n"
    )
}

fn oci(name: &str, url: &str, annotations: &str) -> String {
    format!(
        "---\napiVersion: source.toolkit.fluxcd.io/v1\nkind: OCIRepository\nmetadata:\n  name: {name}\n  namespace: team-a\n  annotations:\n    gitlabtokens.io/inject: \"true\"\n{annotations}spec:\n  interval: 1m\n  url: {url}\n"
    )
}

const APP: &str = "https://gitlab.example.com/acme/team-a/app.git";

#[test]
fn allowed_source_is_served_with_policy_and_secret_in_text() {
    let out = check(&policy("team-a", TEAM_A), &git("app", APP, ""), &[]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let s = &out.stdout;
    assert!(s.contains("GitRepository team-a/app"), "{s}");
    assert!(s.contains("verdict:    SERVED"), "{s}");
    assert!(
        s.contains("team-a allows it (lifetime 30d, renew before 10d, rotation Overlap)"),
        "{s}"
    );
    assert!(
        s.contains("app-gitlab-token (type Opaque, keys username, password)"),
        "{s}"
    );
    assert!(s.contains("acme/team-a/app (as written)"), "{s}");
    assert!(s.contains("GitLab canonicalises the path"), "{s}");
}

#[test]
fn json_shape_of_a_served_source() {
    let out = check(&policy("team-a", TEAM_A), &git("app", APP, ""), &["-o", "json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v = out.json();
    assert_eq!(v["offline"], true);
    assert!(v["assumption"].as_str().unwrap().contains("as written"));
    assert_eq!(v["summary"]["served"], 1);
    let s = &v["sources"][0];
    for key in [
        "file",
        "apiVersion",
        "kind",
        "namespace",
        "name",
        "verdict",
        "policy",
        "project",
        "request",
        "secret",
        "evaluations",
        "violations",
    ] {
        assert!(s.get(key).is_some(), "missing {key}: {s}");
    }
    assert_eq!(s["verdict"], "SERVED");
    assert_eq!(s["policy"], "team-a");
    assert_eq!(s["project"]["written"], "acme/team-a/app");
    assert_eq!(s["request"]["scopes"], serde_json::json!(["read_repository"]));
    assert_eq!(s["secret"]["type"], "Opaque");
    assert_eq!(s["secret"]["keys"], serde_json::json!(["username", "password"]));
    assert_eq!(s["secret"]["setsSecretRef"], true);
    assert_eq!(s["evaluations"][0]["lifetime"], "30d");
}

/// Each row: a policy that allows everything but one field, the source's annotations, the field.
#[test]
fn denied_by_each_field_names_exactly_that_field() {
    let cases: [(&str, &str, &str); 6] = [
        ("  projects: [\"acme/team-b/*\"]\n", "", "project"),
        (
            "  projects: [\"acme/**\"]\n  consumers: [HelmRepository]\n",
            "",
            "consumers",
        ),
        (
            "  projects: [\"acme/**\"]\n",
            "    gitlabtokens.io/scopes: read_api,api\n",
            "scopes",
        ),
        (
            "  projects: [\"acme/**\"]\n  scopes: [read_repository, write_repository]\n",
            "    gitlabtokens.io/write: \"true\"\n    gitlabtokens.io/access-level: developer\n",
            "accessLevel",
        ),
        (
            "  projects: [\"acme/**\"]\n  lifetime: {default: 7d, max: 14d}\n",
            "    gitlabtokens.io/lifetime: 30d\n",
            "lifetime",
        ),
        (
            "  projects: [\"acme/**\"]\n  renewBefore: {min: 5d}\n",
            "    gitlabtokens.io/renew-before: 2d\n",
            "renewBefore",
        ),
    ];
    for (spec, annotations, field) in cases {
        let out = check(
            &policy("strict", spec),
            &git("app", APP, annotations),
            &["-o", "json"],
        );
        assert_eq!(out.code, 1, "{field}: {}{}", out.stdout, out.stderr);
        let s = &out.json()["sources"][0];
        assert_eq!(s["verdict"], "DENIED", "{field}: {s}");
        assert_eq!(s["reason"], "PolicyDenied", "{field}");
        assert_eq!(s["policy"], "strict", "{field}");
        let fields: Vec<&str> = s["violations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["field"].as_str().unwrap())
            .collect();
        assert_eq!(fields, vec![field], "{s}");

        let text = check(&policy("strict", spec), &git("app", APP, annotations), &[]);
        assert_eq!(text.code, 1);
        assert!(
            text.stdout.contains("verdict:    DENIED (PolicyDenied)"),
            "{}",
            text.stdout
        );
        assert!(text.stdout.contains("closest is strict"), "{}", text.stdout);
        assert!(
            text.stdout.contains(&format!("    - {field}: ")),
            "{field}: {}",
            text.stdout
        );
        assert!(text.stdout.contains("what to do:"), "{}", text.stdout);
    }
}

#[test]
fn closest_policy_is_the_one_with_fewest_violations() {
    let policies = policy("far", "  projects: [\"other/*\"]\n  maxAccessLevel: guest\n")
        + &policy("near", "  projects: [\"other/*\"]\n");
    let out = check(&policies, &git("app", APP, ""), &["-o", "json"]);
    assert_eq!(out.code, 1);
    assert_eq!(out.json()["sources"][0]["policy"], "near");
}

#[test]
fn namespace_labels_come_from_namespace_objects_or_the_flag() {
    let p = policy(
        "gold",
        "  projects: [\"acme/**\"]\n  namespaceSelector: {matchLabels: {tier: gold}}\n",
    )
    .replace("  namespaceSelector: {matchNames: [\"team-*\"]}\n", "");
    // No labels: no policy selects the namespace.
    let out = check(&p, &git("app", APP, ""), &["-o", "json"]);
    assert_eq!(out.code, 1);
    let s = &out.json()["sources"][0];
    assert_eq!(s["reason"], "NoPolicy", "{s}");
    assert_eq!(s["namespaceLabels"]["kubernetes.io/metadata.name"], "team-a");
    // Labels by flag.
    let out = check(&p, &git("app", APP, ""), &["--namespace-labels", "tier=gold,x=y"]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    // A Namespace object in any file wins over the flag.
    let ns = "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: team-a, labels: {tier: silver}}\n";
    let out = check(
        &p,
        &(git("app", APP, "") + ns),
        &["--namespace-labels", "tier=gold"],
    );
    assert_eq!(out.code, 1, "{}", out.stdout);
    // The automatic kubernetes.io/metadata.name label selects too.
    let p2 = p.replace("tier: gold", "kubernetes.io/metadata.name: team-a");
    assert_eq!(check(&p2, &git("app", APP, ""), &[]).code, 0);
}

#[test]
fn ssh_url_is_served_with_a_deploy_key_and_a_foreign_ssh_host_is_refused() {
    let out = check(
        &policy("team-a", TEAM_A),
        &git("app", "ssh://git@gitlab.example.com/acme/team-a/app.git", ""),
        &[],
    );
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert!(out.stdout.contains("credential: DeployKey"), "{}", out.stdout);
    assert!(out.stdout.contains("identity.pub"), "{}", out.stdout);
    let out = check(
        &policy("team-a", TEAM_A),
        &git("app", "git@gitlab.example.com:acme/team-a/app.git", ""),
        &[],
    );
    assert_eq!(out.code, 0, "scp-like form: {}", out.stdout);
    let out = check(
        &policy("team-a", TEAM_A),
        &git("app", "ssh://git@github.com/acme/team-a/app.git", ""),
        &[],
    );
    assert_eq!(out.code, 1);
    assert!(out.stdout.contains("REFUSED (ForeignHost)"), "{}", out.stdout);
    // A policy that allows only project access tokens denies the deploy key and says why.
    let tokens_only = TEAM_A.to_string() + "  credentialKinds: [ProjectAccessToken]\n";
    let out = check(
        &policy("team-a", &tokens_only),
        &git("app", "ssh://git@gitlab.example.com/acme/team-a/app.git", ""),
        &[],
    );
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stdout.contains("kind: DeployKey is not allowed"),
        "{}",
        out.stdout
    );
}

#[test]
fn foreign_host_is_refused_and_gets_no_secret() {
    let out = check(
        &policy("team-a", TEAM_A),
        &(git("app", "https://evil.example.net/acme/team-a/app.git", "")
            + &oci("img", "oci://evil.example.net/acme/team-a/app", "")),
        &["-o", "json"],
    );
    assert_eq!(out.code, 1);
    let v = out.json();
    for s in v["sources"].as_array().unwrap() {
        assert_eq!(s["verdict"], "REFUSED", "{s}");
        assert_eq!(s["reason"], "ForeignHost", "{s}");
        assert!(s["secret"].is_null(), "{s}");
        assert!(!s["whatToDo"].as_str().unwrap().is_empty());
    }
    assert_eq!(v["summary"]["refused"], 2);
}

#[test]
fn registry_paths_are_evaluated_for_every_candidate_project() {
    let url = "oci://registry.example.com/acme/team-a/app/manifests";
    // Every candidate allowed: served, docker-config keyed by the registry host.
    let out = check(
        &policy("all", "  projects: [\"acme/**\"]\n"),
        &oci("img", url, ""),
        &["-o", "json"],
    );
    assert_eq!(out.code, 0, "{}", out.stdout);
    let s = &out.json()["sources"][0];
    assert_eq!(s["verdict"], "SERVED");
    assert_eq!(
        s["project"]["evaluatedAs"],
        serde_json::json!(["acme/team-a/app/manifests", "acme/team-a/app", "acme/team-a"])
    );
    assert_eq!(s["secret"]["type"], "kubernetes.io/dockerconfigjson");
    assert_eq!(s["secret"]["keys"], serde_json::json!([".dockerconfigjson"]));
    assert_eq!(s["secret"]["registryHost"], REGISTRY);
    // Only some allowed: undecided offline, exit 1, with the remedy.
    let out = check(&policy("team-a", TEAM_A), &oci("img", url, ""), &[]);
    assert_eq!(out.code, 1);
    assert!(out.stdout.contains("verdict:    UNDECIDED"), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("served if GitLab resolves the registry path to project acme/team-a/app")
    );
    assert!(out.stdout.contains("gitlabtokens.io/project"));
    // Pinned by annotation: decided.
    let pinned = oci("img", url, "    gitlabtokens.io/project: acme/team-a/app\n");
    assert_eq!(check(&policy("team-a", TEAM_A), &pinned, &[]).code, 0);
}

#[test]
fn registry_source_without_registry_host_is_refused() {
    let out = run(
        &[
            ("p.yaml", &policy("all", "  projects: [\"acme/**\"]\n")),
            ("s.yaml", &oci("img", "oci://registry.example.com/acme/app", "")),
        ],
        &[
            "check",
            "--policy",
            "{p.yaml}",
            "--source",
            "{s.yaml}",
            "--gitlab-url",
            URL,
            "-o",
            "json",
        ],
    );
    assert_eq!(out.code, 1);
    let s = &out.json()["sources"][0];
    assert_eq!(s["reason"], "MissingRegistryHost");
    assert!(s["whatToDo"].as_str().unwrap().contains("--registry-host"));
}

#[test]
fn numeric_project_ids_need_their_path_offline() {
    let helm = "---\napiVersion: source.toolkit.fluxcd.io/v1\nkind: HelmRepository\nmetadata:\n  name: charts\n  namespace: team-a\n  annotations: {gitlabtokens.io/inject: \"true\"}\nspec:\n  url: https://gitlab.example.com/api/v4/projects/42/packages/helm/stable\n";
    let p = policy("team-a", TEAM_A);
    let out = check(&p, helm, &["-o", "json"]);
    assert_eq!(out.code, 1);
    let s = &out.json()["sources"][0];
    assert_eq!(s["verdict"], "UNDECIDED");
    assert!(s["whatToDo"].as_str().unwrap().contains("--project-id 42="));
    let out = check(&p, helm, &["--project-id", "42=acme/team-a/charts", "-o", "json"]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert_eq!(
        out.json()["sources"][0]["request"]["scopes"],
        serde_json::json!(["read_api"])
    );
}

#[test]
fn sources_not_opted_in_are_listed_and_do_not_change_the_exit_code() {
    let plain = "---\napiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata: {name: plain, namespace: team-a}\nspec: {url: 'https://github.com/x/y'}\n";
    let out = check(&policy("team-a", TEAM_A), &(git("app", APP, "") + plain), &[]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert!(out.stdout.contains("GitRepository team-a/plain"));
    assert!(out.stdout.contains("not opted in"));
    assert!(
        out.stdout
            .contains("1 served, 0 denied, 0 refused, 0 undecided, 1 not opted in")
    );
}

fn connection(name: &str, url: &str) -> String {
    format!(
        "---\napiVersion: gitlabtokens.io/v1alpha1\nkind: GitLabConnection\nmetadata: {{name: {name}}}\nspec:\n  url: {url}\n  credentials: {{secretRef: {{namespace: gto, name: tok}}}}\n"
    )
}

#[test]
fn connections_from_files_are_chosen_like_the_operator() {
    let conns = connection("main", URL) + &connection("other", "https://gitlab.other.example");
    let p = policy("team-a", TEAM_A);
    let args = [
        "check",
        "--policy",
        "{p.yaml}",
        "--source",
        "{s.yaml}",
        "--connection",
        "{c.yaml}",
        "-o",
        "json",
    ];
    // Two connections, nothing singles one out: ambiguous.
    let out = run(
        &[
            ("p.yaml", &p),
            ("s.yaml", &git("app", APP, "")),
            ("c.yaml", &conns),
        ],
        &args,
    );
    assert_eq!(out.code, 1);
    assert_eq!(out.json()["sources"][0]["reason"], "AmbiguousConnection");
    // Named by annotation: checked against that connection's host.
    let named = git("app", APP, "    gitlabtokens.io/connection: main\n");
    let out = run(&[("p.yaml", &p), ("s.yaml", &named), ("c.yaml", &conns)], &args);
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert_eq!(out.json()["sources"][0]["connection"], "main");
    let wrong = git("app", APP, "    gitlabtokens.io/connection: other\n");
    let out = run(&[("p.yaml", &p), ("s.yaml", &wrong), ("c.yaml", &conns)], &args);
    assert_eq!(out.json()["sources"][0]["reason"], "ForeignHost");
    let missing = git("app", APP, "    gitlabtokens.io/connection: nope\n");
    let out = run(&[("p.yaml", &p), ("s.yaml", &missing), ("c.yaml", &conns)], &args);
    assert_eq!(out.json()["sources"][0]["reason"], "ConnectionNotFound");
    // A policy naming one connection singles it out.
    let p_main = p.replace("spec:\n", "spec:\n  connectionRef: {name: main}\n");
    let out = run(
        &[
            ("p.yaml", &p_main),
            ("s.yaml", &git("app", APP, "")),
            ("c.yaml", &conns),
        ],
        &args,
    );
    assert_eq!(out.code, 0, "{}", out.stdout);
}

#[test]
fn connection_ref_of_policies_is_matched_against_the_flag_connection_name() {
    let p = policy("team-a", TEAM_A).replace("spec:\n", "spec:\n  connectionRef: {name: main}\n");
    assert_eq!(check(&p, &git("app", APP, ""), &[]).code, 0);
    let out = check(
        &p,
        &git("app", APP, ""),
        &["--connection-name", "other", "-o", "json"],
    );
    assert_eq!(out.code, 1);
    assert_eq!(out.json()["sources"][0]["reason"], "NoPolicy");
}

#[test]
fn usage_and_file_errors_exit_2_with_what_to_do() {
    let p = policy("team-a", TEAM_A);
    let s = git("app", APP, "");
    // No connection at all.
    let out = run(
        &[("p.yaml", &p), ("s.yaml", &s)],
        &["check", "--policy", "{p.yaml}", "--source", "{s.yaml}"],
    );
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("--gitlab-url"), "{}", out.stderr);
    // Missing file.
    let out = run(
        &[],
        &["check", "--source", "/nonexistent/s.yaml", "--gitlab-url", URL],
    );
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("cannot read /nonexistent/s.yaml"),
        "{}",
        out.stderr
    );
    // Bad YAML, bad policy.
    assert_eq!(check(&p, "a: [", &[]).code, 2);
    let out = check(
        "apiVersion: gitlabtokens.io/v1alpha1\nkind: GitLabTokenPolicy\nmetadata: {name: x}\nspec: {}\n",
        &s,
        &[],
    );
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("GitLabTokenPolicy \"x\" is not valid"),
        "{}",
        out.stderr
    );
    // Namespace conflict.
    let out = check(&p, &s, &["--namespace", "team-b"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("does not match --namespace"),
        "{}",
        out.stderr
    );
    // Only a registry host, but a git source.
    let out = run(
        &[("p.yaml", &p), ("s.yaml", &s)],
        &[
            "check",
            "--policy",
            "{p.yaml}",
            "--source",
            "{s.yaml}",
            "--registry-host",
            REGISTRY,
        ],
    );
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("pass --gitlab-url"), "{}", out.stderr);
    // clap usage errors.
    assert_eq!(run(&[], &["check", "--gitlab-url", URL]).code, 2);
    assert_eq!(
        run(&[], &["check", "--source", "x", "--namespace-labels", "novalue"]).code,
        2
    );
}

#[test]
fn unusable_policies_are_noted() {
    let p = policy("broken", "  projects: [\"acme/[\"]\n");
    let out = check(&p, &git("app", APP, ""), &[]);
    assert_eq!(out.code, 1);
    assert!(
        out.stdout.contains("note: GitLabTokenPolicy broken is unusable"),
        "{}",
        out.stdout
    );
}

#[test]
fn every_verb_has_help_with_an_example() {
    for verb in ["check", "status", "renew"] {
        let out = run(&[], &[verb, "--help"]);
        assert_eq!(out.code, 0, "{verb}");
        assert!(out.stdout.contains("Example"), "{verb}: {}", out.stdout);
        assert!(
            out.stdout.contains(&format!("gitlab-token-operator {verb}")),
            "{verb}: {}",
            out.stdout
        );
        assert!(out.stdout.contains("Exit status"), "{verb}");
    }
}

#[test]
fn sources_naming_one_secret_share_a_token_or_conflict() {
    let secret = "    gitlabtokens.io/secret-name: shared\n";
    let p = policy("team-a", TEAM_A);
    // Same needs: both served, each names the other.
    let out = check(
        &p,
        &(git("one", APP, secret) + &git("two", APP, secret)),
        &["-o", "json"],
    );
    assert_eq!(out.code, 0, "{}", out.stdout);
    let v = out.json();
    assert_eq!(
        v["sources"][0]["sharedWith"],
        serde_json::json!(["GitRepository/two"])
    );
    assert_eq!(
        v["sources"][1]["sharedWith"],
        serde_json::json!(["GitRepository/one"])
    );
    // Different needs: the first in file order is served, the later one refused.
    let other = git("two", "https://gitlab.example.com/acme/team-a/other.git", secret);
    let out = check(&p, &(git("one", APP, secret) + &other), &["-o", "json"]);
    assert_eq!(out.code, 1);
    let v = out.json();
    assert_eq!(v["sources"][0]["verdict"], "SERVED");
    assert_eq!(v["sources"][1]["verdict"], "REFUSED");
    assert_eq!(v["sources"][1]["reason"], "ConflictingRequest");
    assert!(
        v["sources"][1]["message"]
            .as_str()
            .unwrap()
            .contains("project: acme/team-a/app vs acme/team-a/other")
    );
    // A shared token is checked for every consumer kind it serves.
    let helm = "---\napiVersion: source.toolkit.fluxcd.io/v1\nkind: HelmRepository\nmetadata:\n  name: charts\n  namespace: team-a\n  annotations:\n    gitlabtokens.io/inject: \"true\"\n    gitlabtokens.io/secret-name: shared\n    gitlabtokens.io/scopes: read_repository\nspec:\n  url: https://gitlab.example.com/api/v4/projects/acme%2Fteam-a%2Fapp/packages/helm/stable\n";
    let git_too = git(
        "one",
        APP,
        "    gitlabtokens.io/secret-name: shared\n    gitlabtokens.io/scopes: read_api\n",
    );
    let only_git = p.replace("spec:\n", "spec:\n  consumers: [GitRepository]\n");
    let out = check(&only_git, &(git_too.clone() + helm), &["-o", "json"]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    let v = out.json();
    for s in v["sources"].as_array().unwrap() {
        assert_eq!(s["verdict"], "DENIED", "{s}");
        assert_eq!(s["violations"][0]["field"], "consumers", "{s}");
    }
    assert_eq!(check(&p, &(git_too + helm), &[]).code, 0);
}

#[test]
fn kubectl_lists_work_and_other_kinds_are_skipped_with_a_note() {
    let list = format!(
        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {{name: cm, namespace: team-a}}\n- apiVersion: kustomize.toolkit.fluxcd.io/v1\n  kind: Kustomization\n  metadata: {{name: k, namespace: team-a}}\n- {}",
        serde_json::to_string(&serde_json::json!({
            "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
            "metadata": {"name": "app", "namespace": "team-a", "annotations": {"gitlabtokens.io/inject": "true"}},
            "spec": {"url": APP, "secretRef": {"name": "creds"}}
        }))
        .unwrap()
    );
    let out = check(&policy("team-a", TEAM_A), &list, &["-o", "json"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let v = out.json();
    assert_eq!(v["sources"].as_array().unwrap().len(), 1);
    assert_eq!(v["sources"][0]["secret"]["name"], "creds");
    assert_eq!(v["sources"][0]["secret"]["setsSecretRef"], false);
    let notes = v["notes"].to_string();
    assert!(
        notes.contains("v1 ConfigMap") && notes.contains("Kustomization"),
        "{notes}"
    );
    // An annotated object the shim does not serve is refused, not skipped.
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\n  namespace: team-a\n  annotations: {gitlabtokens.io/inject: \"true\"}\n";
    let out = check(&policy("team-a", TEAM_A), cm, &["-o", "json"]);
    assert_eq!(out.code, 1);
    assert_eq!(out.json()["sources"][0]["reason"], "UnsupportedKind");
}

#[test]
fn credential_kind_annotation_is_explained() {
    let kind = |k: &str, group: &str| {
        let mut a = format!("    gitlabtokens.io/credential-kind: {k}\n");
        if !group.is_empty() {
            a.push_str(&format!("    gitlabtokens.io/group: {group}\n"));
        }
        git("app", APP, &a)
    };
    // The default policy kinds (ProjectAccessToken, DeployKey) do not include deploy tokens.
    let out = check(&policy("team-a", TEAM_A), &kind("DeployToken", ""), &[]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(out.stdout.contains("credential: DeployToken"), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("kind: DeployToken is not allowed by policy team-a"),
        "{}",
        out.stdout
    );
    let allowing = TEAM_A.to_string() + "  credentialKinds: [ProjectAccessToken, DeployToken]\n";
    let out = check(&policy("team-a", &allowing), &kind("DeployToken", ""), &[]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    // A group token on a group the policy does not name: the group is explained.
    let groups = TEAM_A.to_string() + "  credentialKinds: [GroupAccessToken]\n  groups: [\"acme/team-b\"]\n";
    let out = check(
        &policy("team-a", &groups),
        &kind("GroupAccessToken", "acme/team-a"),
        &[],
    );
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stdout
            .contains("group: acme/team-a matches none of policy team-a's groups"),
        "{}",
        out.stdout
    );
    // A bad value is refused with the annotation named.
    let out = check(&policy("team-a", &allowing), &kind("deploy-token", ""), &[]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stdout.contains("REFUSED (InvalidAnnotation)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("annotation gitlabtokens.io/credential-kind: \\\"deploy-token\\\"")
            || out
                .stdout
                .contains("annotation gitlabtokens.io/credential-kind: \"deploy-token\""),
        "{}",
        out.stdout
    );
}
