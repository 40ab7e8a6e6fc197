//! The Helm chart `charts/gitlab-token-operator`: CRDs identical to `crds/`, `helm lint --strict` clean, and the
//! rendered manifests (default values and every optional feature on) hold the security and RBAC promises.
//!
//! helm is found via `$HELM`, then `<repo>/.tools/node_modules/.bin/helm` (`make deps` installs it there), then
//! `PATH`. A missing helm is a failure, not a skip.

#[path = "common/helm.rs"]
mod common_helm;
use common_helm::helm;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::Value;

mod chart_checks;
use chart_checks::Rendered;

const RELEASE: &str = "gto";
const NAMESPACE: &str = "gitlab-token-operator";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn chart_dir() -> PathBuf {
    repo().join("charts/gitlab-token-operator")
}

fn all_features() -> PathBuf {
    chart_dir().join("ci/all-features-values.yaml")
}

/// Runs helm; returns (success, stdout, stderr).
fn run_helm(args: &[&str]) -> (bool, String, String) {
    let helm = helm();
    let out = Command::new(&helm)
        .args(args)
        .env(
            "HELM_CACHE_HOME",
            std::env::temp_dir().join("gto-chart-test-helm-cache"),
        )
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", helm.display()));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `helm template` with extra arguments; panics with helm's message when rendering fails.
fn render(extra: &[&str]) -> Rendered {
    let chart = chart_dir();
    let mut args = vec![
        "template",
        RELEASE,
        chart.to_str().unwrap(),
        "--namespace",
        NAMESPACE,
    ];
    args.extend_from_slice(extra);
    let (ok, stdout, stderr) = run_helm(&args);
    assert!(ok, "helm {args:?} failed:\n{stderr}");
    Rendered::parse(&stdout)
}

fn render_all_features() -> Rendered {
    let values = all_features();
    render(&["-f", values.to_str().unwrap()])
}

#[test]
fn chart_crds_are_byte_identical_to_the_generated_crds() {
    let generated = repo().join("crds");
    let chart = chart_dir().join("crds");
    let names = |dir: &Path| -> BTreeSet<String> {
        std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    let want = names(&generated);
    assert_eq!(want.len(), 3, "crds/ should hold the three generated CRDs");
    assert_eq!(
        names(&chart),
        want,
        "charts/gitlab-token-operator/crds/ must hold exactly the files of crds/; run `make crds`"
    );
    for name in &want {
        let a = std::fs::read(generated.join(name)).unwrap();
        let b = std::fs::read(chart.join(name)).unwrap();
        assert!(
            a == b,
            "chart CRD {name} drifted from crds/{name}; run `make crds`"
        );
    }
}

#[test]
fn helm_lint_strict_passes_with_default_values_and_with_every_feature_on() {
    let chart = chart_dir();
    let values = all_features();
    for extra in [vec![], vec!["-f", values.to_str().unwrap()]] {
        let mut args = vec!["lint", "--strict", chart.to_str().unwrap()];
        args.extend(extra.iter().copied());
        let (ok, stdout, stderr) = run_helm(&args);
        assert!(ok, "helm {args:?} failed:\n{stdout}\n{stderr}");
        assert!(stdout.contains("0 chart(s) failed"), "{stdout}");
        assert!(!stdout.contains("[WARNING]"), "lint warnings:\n{stdout}");
    }
}

#[test]
fn default_values_render_the_core_objects_and_no_optional_ones() {
    let r = render(&[]);
    let kinds: BTreeSet<&str> = r.docs.iter().map(|d| d["kind"].as_str().unwrap_or("")).collect();
    for k in [
        "Deployment",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Service",
    ] {
        assert!(kinds.contains(k), "default render lacks a {k}: {kinds:?}");
    }
    for k in [
        "ServiceMonitor",
        "PrometheusRule",
        "NetworkPolicy",
        "CustomResourceDefinition",
    ] {
        assert!(
            !kinds.contains(k),
            "{k} must be off by default (CRDs come from crds/, not templates)"
        );
    }
    let dep = r.one("Deployment");
    assert_eq!(dep["spec"]["replicas"], 1);
    assert_eq!(
        dep["spec"]["strategy"]["type"], "RollingUpdate",
        "leader election is on by default, so the surge pod only follows"
    );
    let off = render(&["--set", "leaderElection.enabled=false"]);
    assert_eq!(
        off.one("Deployment")["spec"]["strategy"]["type"],
        "Recreate",
        "without leader election two pods must never overlap"
    );
}

#[test]
fn every_optional_feature_renders() {
    let r = render_all_features();
    let kinds: BTreeSet<&str> = r.docs.iter().map(|d| d["kind"].as_str().unwrap_or("")).collect();
    for k in ["ServiceMonitor", "PrometheusRule", "NetworkPolicy"] {
        assert!(kinds.contains(k), "all-features render lacks a {k}: {kinds:?}");
    }
    let dep = r.one("Deployment");
    assert_eq!(dep["spec"]["replicas"], 2);
    assert_eq!(dep["spec"]["strategy"]["type"], "RollingUpdate");
    let image = dep["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap();
    assert!(image.contains("@sha256:"), "a digest pins the image: {image}");

    let sm = r.one("ServiceMonitor");
    let svc = r.one("Service");
    assert_eq!(
        sm["spec"]["endpoints"][0]["port"],
        svc["spec"]["ports"][0]["name"]
    );
    assert_eq!(sm["spec"]["endpoints"][0]["path"], "/metrics");
    for (k, v) in sm["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(
            &svc["metadata"]["labels"][k], v,
            "ServiceMonitor must select the metrics Service"
        );
    }
}

#[test]
fn the_deployment_runs_non_root_read_only_without_privileges() {
    for r in [render(&[]), render_all_features()] {
        let pod = &r.one("Deployment")["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
        assert_eq!(pod["containers"].as_array().unwrap().len(), 1);
        let c = &pod["containers"][0];
        let sc = &c["securityContext"];
        assert_eq!(sc["runAsNonRoot"], true);
        assert_eq!(sc["readOnlyRootFilesystem"], true);
        assert_eq!(sc["allowPrivilegeEscalation"], false);
        assert_eq!(sc["privileged"], false);
        assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
        assert!(sc["capabilities"].get("add").is_none());
        assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
        for k in ["requests", "limits"] {
            for res in ["cpu", "memory"] {
                assert!(
                    c["resources"][k][res].is_string(),
                    "resources.{k}.{res} must be set"
                );
            }
        }
        assert_eq!(c["args"], serde_json::json!(["run"]));
    }
}

#[test]
fn probes_hit_livez_and_readyz_on_the_port_the_operator_listens_on() {
    for (r, port) in [
        (render(&[]), 8080),
        (render(&["--set", "metricsPort=9443"]), 9443),
    ] {
        let c = &r.one("Deployment")["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/livez");
        assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
        let named = c["livenessProbe"]["httpGet"]["port"].as_str().unwrap();
        assert_eq!(c["readinessProbe"]["httpGet"]["port"], named);
        let container_port = c["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == named)
            .unwrap_or_else(|| panic!("no container port named {named}"));
        assert_eq!(container_port["containerPort"], port);
        assert_eq!(env_of(c)["GTO_METRICS_ADDR"], format!("0.0.0.0:{port}"));
        assert_eq!(r.one("Service")["spec"]["ports"][0]["port"], port);
    }
}

/// Literal env values of a container (valueFrom entries map to "<from>").
fn env_of(container: &Value) -> BTreeMap<String, String> {
    container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let v = e["value"]
                .as_str()
                .map_or_else(|| "<from>".to_string(), str::to_string);
            (e["name"].as_str().unwrap().to_string(), v)
        })
        .collect()
}

/// Env vars `gitlab-token-operator run` reads through its flags, from its own `--help`.
fn operator_env_vars() -> BTreeSet<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_gitlab-token-operator"))
        .args(["run", "--help"])
        .output()
        .expect("run the operator binary");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    let vars: BTreeSet<String> = help
        .split("[env: ")
        .skip(1)
        .filter_map(|s| s.split('=').next())
        .map(str::to_string)
        .collect();
    assert!(
        vars.contains("GTO_CLUSTER_NAME"),
        "could not read env vars from:\n{help}"
    );
    vars
}

#[test]
fn the_deployment_passes_exactly_the_operators_settings_and_never_the_test_clock() {
    let known = operator_env_vars();
    for (r, all) in [(render(&[]), false), (render_all_features(), true)] {
        let c = &r.one("Deployment")["spec"]["template"]["spec"]["containers"][0];
        let env = env_of(c);
        for name in env.keys() {
            let ok = known.contains(name)
                || name == "RUST_LOG" // read by tracing's EnvFilter
                || (all && name == "TZ"); // extraEnv in the all-features values
            assert!(
                ok,
                "the chart sets {name}, which `gitlab-token-operator run` does not read"
            );
        }
        assert!(!r.text.contains("GTO_CLOCK_OFFSET_FILE") && !r.text.contains("clock-offset"));
        assert_eq!(env["POD_NAMESPACE"], "<from>");
        assert_eq!(env["POD_NAME"], "<from>");
        if all {
            assert_eq!(env["GTO_CLUSTER_NAME"], "prod-eu");
            assert_eq!(env["GTO_WATCH_NAMESPACES"], "team-a,team-b");
            assert_eq!(env["GTO_ARGOCD_NAMESPACE"], "argocd");
            assert_eq!(env["GTO_LOG_FORMAT"], "plain");
            assert_eq!(env["GTO_LEADER_ELECT"], "true");
            assert_eq!(env["GTO_LEASE_NAME"], "gto-gitlab-token-operator");
            assert_eq!(env["GTO_LEASE_DURATION"], "45s");
        } else {
            assert_eq!(env["GTO_CLUSTER_NAME"], "default");
            assert!(
                !env.contains_key("GTO_WATCH_NAMESPACES"),
                "empty means all namespaces"
            );
            assert!(
                !env.contains_key("GTO_ARGOCD_NAMESPACE"),
                "Argo CD is off by default"
            );
            assert_eq!(env["GTO_LOG_FORMAT"], "json");
            assert_eq!(env["GTO_LEADER_ELECT"], "true", "one writer by default");
            assert_eq!(env["GTO_LEASE_NAME"], "gto-gitlab-token-operator");
            assert_eq!(env["GTO_LEASE_DURATION"], "30s");
        }
    }
}

/// Runs `gitlab-token-operator run` with only `env` (no cluster configuration) and returns (exit code, stderr).
fn run_operator_with(env: &BTreeMap<String, String>) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_gitlab-token-operator"))
        .arg("run")
        .env_clear()
        .envs(env)
        .env("KUBECONFIG", dir.path().join("no-kubeconfig"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the operator binary");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the operator did not exit without a cluster configuration");
        }
        std::thread::park_timeout(std::time::Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    (status.code(), stderr)
}

#[test]
fn the_operator_binary_accepts_every_value_the_chart_passes() {
    for r in [render(&[]), render_all_features()] {
        let c = &r.one("Deployment")["spec"]["template"]["spec"]["containers"][0];
        let mut env = env_of(c);
        env.insert("POD_NAMESPACE".into(), NAMESPACE.into());
        env.insert("POD_NAME".into(), "gto-0".into());
        // Flags parse first; with every value accepted, the run stops only for want of a cluster.
        let (code, stderr) = run_operator_with(&env);
        assert_eq!(code, Some(1), "{stderr}");
        assert!(
            stderr.contains("cannot configure the Kubernetes client"),
            "{stderr}"
        );
        // Control: a value the operator refuses is reported as such.
        env.insert("GTO_SWEEP_INTERVAL".into(), "1d".into());
        let (code, stderr) = run_operator_with(&env);
        assert_eq!(code, Some(2), "{stderr}");
        assert!(stderr.contains("invalid value '1d'"), "{stderr}");
    }
}

#[test]
fn values_schema_and_guards_reject_bad_values_with_a_clear_message() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--set", "replicas=abc"],
            "replicas: Invalid type. Expected: integer",
        ),
        (&["--set", "logging.format=xml"], "logging.format must be one of"),
        (
            &["--set", "replica=1"],
            "Additional property replica is not allowed",
        ),
        (
            &["--set", "securityContext.readOnlyRootFilesystem=false"],
            "securityContext.readOnlyRootFilesystem does not match",
        ),
        (
            &["--set", "securityContext.allowPrivilegeEscalation=true"],
            "securityContext.allowPrivilegeEscalation does not match",
        ),
        (
            &["--set", "podSecurityContext.runAsNonRoot=false"],
            "podSecurityContext.runAsNonRoot does not match",
        ),
        (
            &["--set", "clusterName=Prod_EU"],
            "clusterName: Does not match pattern",
        ),
        (
            &["--set-string", "verifyInterval=6d"],
            "verifyInterval: Does not match pattern",
        ),
        (
            &["--set", "watchNamespaces={Team-A}"],
            "watchNamespaces.0: Does not match pattern",
        ),
        (
            &["--set", "extraEnv[0].name=GTO_CLOCK_OFFSET_FILE"],
            "extraEnv.0.name: Must not validate",
        ),
        (
            &["--set", "replicas=2", "--set", "leaderElection.enabled=false"],
            "replicas > 1 needs leaderElection.enabled=true",
        ),
        (
            &["--set", "networkPolicy.enabled=true"],
            "networkPolicy.apiServer.cidrs is required",
        ),
        (
            &[
                "--set",
                "networkPolicy.enabled=true",
                "--set",
                "networkPolicy.apiServer.cidrs={10.0.0.1/32}",
            ],
            "networkPolicy.gitlab.cidrs or networkPolicy.gitlab.to is required",
        ),
        (
            &["--set", "serviceAccount.create=false"],
            "serviceAccount.name is required",
        ),
    ];
    let chart = chart_dir();
    for (extra, message) in cases {
        let mut args = vec!["template", RELEASE, chart.to_str().unwrap()];
        args.extend_from_slice(extra);
        let (ok, _, stderr) = run_helm(&args);
        assert!(!ok, "helm {extra:?} must fail");
        assert!(
            stderr.contains(message),
            "helm {extra:?}: expected {message:?} in:\n{stderr}"
        );
    }
    // The same keys with good values render.
    render(&[
        "--set",
        "replicas=0",
        "--set",
        "logging.format=plain",
        "--set",
        "clusterName=prod-eu",
    ]);
}

#[test]
fn the_network_policy_allows_egress_only_to_dns_the_api_server_and_gitlab() {
    let r = render_all_features();
    let np = r.one("NetworkPolicy");
    assert_eq!(
        np["spec"]["policyTypes"],
        serde_json::json!(["Ingress", "Egress"])
    );
    let egress = np["spec"]["egress"].as_array().unwrap();
    assert_eq!(egress.len(), 3, "DNS, API server, GitLab");
    for rule in egress {
        assert!(
            !rule["to"].as_array().unwrap().is_empty(),
            "an egress rule without `to` allows everything"
        );
        assert!(
            !rule["ports"].as_array().unwrap().is_empty(),
            "an egress rule without ports allows every port"
        );
    }
    let cidrs: Vec<&str> = egress
        .iter()
        .flat_map(|e| e["to"].as_array().unwrap())
        .filter_map(|p| p["ipBlock"]["cidr"].as_str())
        .collect();
    assert_eq!(cidrs, ["10.96.0.1/32", "172.18.0.2/32", "203.0.113.10/32"]);
    let ingress = np["spec"]["ingress"].as_array().unwrap();
    assert_eq!(ingress.len(), 1);
    assert_eq!(ingress[0]["ports"][0]["port"], 8080);
    for (k, v) in np["spec"]["podSelector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(
            &r.one("Deployment")["spec"]["template"]["metadata"]["labels"][k],
            v,
            "the NetworkPolicy must select the operator's pods"
        );
    }
}

/// Deserialises `doc` as `T` and back: a misspelt or misplaced field is dropped on the way and shows as a difference.
fn round_trips<T: serde::de::DeserializeOwned + serde::Serialize>(doc: &Value) {
    let typed: T = serde_json::from_value(doc.clone()).unwrap_or_else(|e| {
        panic!(
            "{} does not parse as the Kubernetes type: {e}\n{doc:#}",
            doc["kind"]
        )
    });
    let back = serde_json::to_value(&typed).unwrap();
    assert_eq!(&back, doc, "{} has fields Kubernetes does not know", doc["kind"]);
}

#[test]
fn rendered_built_in_objects_have_only_fields_kubernetes_knows() {
    use k8s_openapi::api::{
        apps::v1::Deployment,
        core::v1::{Service, ServiceAccount},
        networking::v1::NetworkPolicy,
        rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding},
    };
    for r in [render(&[]), render_all_features()] {
        for doc in &r.docs {
            match doc["kind"].as_str().unwrap() {
                "Deployment" => round_trips::<Deployment>(doc),
                "Service" => round_trips::<Service>(doc),
                "ServiceAccount" => round_trips::<ServiceAccount>(doc),
                "NetworkPolicy" => round_trips::<NetworkPolicy>(doc),
                "ClusterRole" => round_trips::<ClusterRole>(doc),
                "ClusterRoleBinding" => round_trips::<ClusterRoleBinding>(doc),
                "Role" => round_trips::<Role>(doc),
                "RoleBinding" => round_trips::<RoleBinding>(doc),
                "ServiceMonitor" | "PrometheusRule" => {
                    assert_eq!(doc["apiVersion"], "monitoring.coreos.com/v1");
                }
                other => panic!("unexpected kind {other} rendered"),
            }
        }
    }
}
