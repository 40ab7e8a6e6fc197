//! The release workflow (`.github/workflows/release.yml`): actionlint (with shellcheck for its
//! `run:` scripts) finds nothing, and finds the mistakes it should when they are put in; its
//! version check, run here as the CI host would run it, accepts this repository's tag and owner
//! and refuses a tag or owner that disagrees with the chart; and it publishes what the chart
//! installs: a multi-arch image with an SBOM and a signature, and the chart as a signed OCI
//! artifact. actionlint comes from `make deps` (`.tools/bin/actionlint`, or `$ACTIONLINT`).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::Value;

const WORKFLOW: &str = ".github/workflows/release.yml";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn actionlint() -> PathBuf {
    if let Some(a) = std::env::var_os("ACTIONLINT").filter(|a| !a.is_empty()) {
        return PathBuf::from(a);
    }
    let tools = repo().join(".tools/bin/actionlint");
    assert!(
        tools.is_file(),
        "actionlint not found (set ACTIONLINT, or run `make deps` to install it into .tools/)"
    );
    tools
}

/// Runs actionlint on one workflow file; returns (success, findings).
fn lint(path: &Path) -> (bool, String) {
    let out = Command::new(actionlint())
        .args(["-color=false", "-oneline"])
        .arg(path)
        .current_dir(repo())
        .output()
        .expect("actionlint runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn workflow_text() -> String {
    std::fs::read_to_string(repo().join(WORKFLOW)).expect("the release workflow exists")
}

fn workflow() -> Value {
    serde_yaml_ng::from_str(&workflow_text()).expect("the workflow is YAML")
}

/// The steps of `job`.
fn steps<'w>(workflow: &'w Value, job: &str) -> &'w [Value] {
    workflow["jobs"][job]["steps"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_else(|| panic!("job {job} has no steps"))
}

fn step_using<'w>(workflow: &'w Value, job: &str, action: &str) -> &'w Value {
    steps(workflow, job)
        .iter()
        .find(|s| {
            s["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with(&format!("{action}@")))
        })
        .unwrap_or_else(|| panic!("job {job} does not use {action}"))
}

/// All `run:` scripts of `job`, joined.
fn scripts(workflow: &Value, job: &str) -> String {
    steps(workflow, job)
        .iter()
        .filter_map(|s| s["run"].as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn actionlint_finds_nothing_in_the_release_workflow_and_catches_planted_mistakes() {
    let shellcheck = Command::new("shellcheck").arg("--version").output();
    assert!(
        shellcheck.is_ok_and(|o| o.status.success()),
        "shellcheck is missing (run `make deps`): actionlint would skip the run: scripts"
    );
    let (ok, findings) = lint(&repo().join(WORKFLOW));
    assert!(ok && findings.trim().is_empty(), "actionlint:\n{findings}");

    let text = workflow_text();
    let dir = tempfile::tempdir().expect("temp dir");
    for (what, from, to, expect) in [
        (
            "an unquoted variable in a run: script (shellcheck)",
            r#"cosign sign --yes "${IMAGE}@${DIGEST}""#,
            "cosign sign --yes ${IMAGE}@${DIGEST}",
            "SC2086",
        ),
        (
            "an output the job does not have",
            "${{ steps.build.outputs.digest }}\n    steps:",
            "${{ steps.build.outputs.digest }}\n    steps:\n      - run: echo ${{ needs.check.outputs.nothing }}",
            "nothing",
        ),
        (
            "an input the action does not have",
            "          sbom: true",
            "          sbom: true\n          sign: true",
            "\"sign\" is not defined",
        ),
    ] {
        assert!(text.contains(from), "the workflow no longer contains {from:?}");
        let broken = dir.path().join("broken.yml");
        std::fs::write(&broken, text.replacen(from, to, 1)).expect("write");
        let (ok, findings) = lint(&broken);
        assert!(
            !ok && findings.contains(expect),
            "actionlint missed {what} (expected {expect:?}):\n{findings}"
        );
    }
}

/// Runs the `versions` step's script as the CI host would, with `tag` and `owner`.
fn run_version_check(tag: &str, owner: &str) -> (bool, String, String) {
    let workflow = workflow();
    let script = steps(&workflow, "check")
        .iter()
        .find(|s| s["id"] == "versions")
        .and_then(|s| s["run"].as_str())
        .expect("the check job has a `versions` step")
        .to_string();
    let dir = tempfile::tempdir().expect("temp dir");
    let output = dir.path().join("github_output");
    let out = Command::new("bash")
        .args(["-e", "-c", &script])
        .current_dir(repo())
        .env("TAG", tag)
        .env("OWNER", owner)
        .env("GITHUB_OUTPUT", &output)
        .output()
        .expect("bash runs");
    let outputs = std::fs::read_to_string(&output).unwrap_or_default();
    (
        out.status.success(),
        outputs,
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn crate_version() -> String {
    let manifest = std::fs::read_to_string(repo().join("Cargo.toml")).expect("Cargo.toml");
    manifest
        .lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("the crate's version")
        .to_string()
}

/// The owner in the chart's default image repository (`ghcr.io/<owner>/gitlab-token-operator`).
fn chart_owner() -> String {
    let values: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(repo().join("charts/gitlab-token-operator/values.yaml")).expect("values"),
    )
    .expect("values.yaml is YAML");
    let repository = values["image"]["repository"].as_str().expect("image.repository");
    repository
        .strip_prefix("ghcr.io/")
        .and_then(|r| r.strip_suffix("/gitlab-token-operator"))
        .unwrap_or_else(|| {
            panic!("image.repository {repository} is not ghcr.io/<owner>/gitlab-token-operator")
        })
        .to_string()
}

#[test]
fn the_version_check_accepts_this_release_and_refuses_a_mismatch() {
    let version = crate_version();
    let owner = chart_owner();
    let (ok, outputs, stdout) = run_version_check(&format!("v{version}"), &owner);
    assert!(ok, "the check refuses this repository's own release: {stdout}");
    for want in [
        format!("version={version}"),
        format!("image=ghcr.io/{owner}/gitlab-token-operator"),
        format!("charts=ghcr.io/{owner}/charts"),
    ] {
        assert!(
            outputs.lines().any(|l| l == want),
            "{want} missing from {outputs}"
        );
    }
    // GitHub owners are case-insensitive; image names must be lower case.
    let (ok, outputs, _) = run_version_check(&format!("v{version}"), &owner.to_uppercase());
    assert!(
        ok && outputs.contains(&format!("image=ghcr.io/{owner}/")),
        "{outputs}"
    );

    let (ok, _, stdout) = run_version_check("v99.0.0", &owner);
    assert!(
        !ok && stdout.contains("the tag says 99.0.0"),
        "a wrong tag passed: {stdout}"
    );
    let (ok, _, stdout) = run_version_check(&format!("v{version}"), "someone-else");
    assert!(
        !ok && stdout.contains("image.repository"),
        "another owner's image passed: {stdout}"
    );
}

#[test]
fn the_release_publishes_a_signed_multi_arch_image_with_an_sbom_and_the_chart_as_oci() {
    let workflow = workflow();
    let tags = &workflow["on"]["push"]["tags"];
    assert!(
        tags.as_array().is_some_and(|t| t.iter().any(|t| t == "v*")),
        "on.push.tags: {tags}"
    );

    let build = step_using(&workflow, "image", "docker/build-push-action");
    let with = &build["with"];
    let platforms = with["platforms"].as_str().unwrap_or_default();
    for platform in ["linux/amd64", "linux/arm64"] {
        assert!(
            platforms.contains(platform),
            "platforms {platforms:?} lack {platform}"
        );
    }
    assert_eq!(with["sbom"], Value::Bool(true), "no SBOM attestation");
    assert_eq!(with["file"], "Dockerfile");
    assert!(
        with["outputs"].as_str().is_some_and(|o| o.contains("push=true")),
        "the image is not pushed: {}",
        with["outputs"]
    );
    // Every build argument the workflow passes is one the Dockerfile declares.
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).expect("Dockerfile");
    for arg in with["build-args"].as_str().unwrap_or_default().lines() {
        let name = arg.split('=').next().unwrap_or_default().trim();
        assert!(
            dockerfile.lines().any(|l| l.starts_with(&format!("ARG {name}"))),
            "build-arg {name} is not an ARG of the Dockerfile"
        );
    }
    let image_scripts = scripts(&workflow, "image");
    assert!(
        image_scripts.contains("cosign sign --yes \"${IMAGE}@${DIGEST}\""),
        "the image is not signed by digest"
    );
    let sign = steps(&workflow, "image")
        .iter()
        .find(|s| s["run"].as_str().is_some_and(|r| r.contains("cosign sign")))
        .expect("a signing step");
    assert_eq!(sign["env"]["DIGEST"], "${{ steps.build.outputs.digest }}");
    for job in ["image", "chart"] {
        let permissions = &workflow["jobs"][job]["permissions"];
        assert_eq!(
            permissions["id-token"], "write",
            "{job}: keyless signing needs id-token"
        );
        assert_eq!(
            permissions["packages"], "write",
            "{job}: pushing to ghcr.io needs packages"
        );
    }
    assert_eq!(
        workflow["permissions"],
        serde_json::json!({}),
        "default permissions must be none"
    );

    let chart_scripts = scripts(&workflow, "chart");
    for want in [
        "helm package charts/gitlab-token-operator",
        "helm push \"dist/gitlab-token-operator-${VERSION}.tgz\" \"oci://${CHARTS}\"",
        "cosign sign --yes \"${CHARTS}/gitlab-token-operator@${digest}\"",
    ] {
        assert!(chart_scripts.contains(want), "the chart job lacks {want:?}");
    }
    let needs = &workflow["jobs"]["chart"]["needs"];
    assert!(
        needs.as_array().is_some_and(|n| n.iter().any(|j| j == "image")),
        "the chart must wait for its image: needs {needs}"
    );
}
