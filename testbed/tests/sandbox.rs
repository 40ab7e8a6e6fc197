//! `testbed sandbox` end to end: the built `testbed` binary runs the whole demo against the real
//! operator binary and must exit 0 having shown every step, in lines of at most 80 columns, and
//! keep the operator's log where it says; without the operator binary it must say how to build it
//! and exit non-zero.

use std::{path::PathBuf, process::Command};

/// The operator binary: `$GTO_OPERATOR_BIN`, else `<target>/debug/gitlab-token-operator` where
/// `<target>` is `$CARGO_TARGET_DIR` or the workspace's `target/`. Missing is a failure, not a
/// skip: `make test` builds `--bins` first.
fn operator_bin() -> PathBuf {
    let path = std::env::var_os("GTO_OPERATOR_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
            target.join("debug/gitlab-token-operator")
        });
    assert!(
        path.is_file(),
        "the operator binary {} is missing: run `cargo build --bins` (or `make test`) first, \
         or set GTO_OPERATOR_BIN",
        path.display()
    );
    path
}

/// `text` with every run of white space (line breaks of wrapped lines included) made one space.
fn unwrapped(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn the_sandbox_shows_every_step_and_passes() {
    // As `make demo` runs it: a temporary state directory, no COLUMNS (so 80 columns).
    let out = Command::new(env!("CARGO_BIN_EXE_testbed"))
        .arg("sandbox")
        .arg("--operator-bin")
        .arg(operator_bin())
        .env("NO_COLOR", "1")
        .env_remove("COLUMNS")
        .output()
        .expect("testbed runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "sandbox failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    for line in stdout.lines() {
        assert!(line.chars().count() <= 80, "wider than 80 columns: {line:?}");
    }
    let text = unwrapped(&stdout);
    for line in [
        "✓ GitLabConnection: Ready=True",
        "✓ GitRepository: token issued: #",
        "✓ GitRepository: works with a real client: git ls-remote: HEAD",
        "✓ HelmRepository (HTTP): works with a real client: Helm index: charts",
        "✓ HelmRepository (oci): Secret written: kubernetes.io/dockerconfigjson",
        "✓ OCIRepository: works with a real client: skopeo inspect",
        "✓ ImageRepository: works with a real client: skopeo list-tags",
        "✓ Provider (gitlab): Secret written: Opaque [token]",
        "✓ denied source: refused by policy: Ready=False PolicyDenied",
        "✓ denied source: nothing minted",
        "✓ Argo CD repository Secret: argocd-team-a-",
        "✓ Argo CD fetches with it: Synced at",
        "✓ renewal of app-gitlab-token: new token: #",
        "✓ renewal of app-gitlab-token: old token revoked",
        "✓ renewal of app-gitlab-token: old token refused",
        "✓ delete HelmRepository (HTTP) platform-charts: token revoked",
        "✓ operator log: none of",
        "✓ kubectl get gitlabtokens: 6 tokens listed",
        "✓ Kubernetes events: 5 expected",
        "· event   Normal Rotated on team-a/app-gitlab-token",
        "· token   team-a/app-gitlab-token rotated #",
        "· secret  team-a/app-gitlab-token written: type Opaque, keys [password, username]",
        "· gitlab  token #",
        "== Summary",
        "secret-project-gitlab-token refused, as this demo expects: PolicyDenied",
        "== What next",
        "make up the same test world, left running",
    ] {
        assert!(
            text.contains(&unwrapped(line)),
            "output lacks {line:?}:\n{stdout}"
        );
    }
    let steps: usize = stdout
        .lines()
        .find_map(|l| {
            l.strip_prefix("sandbox: all ")?
                .strip_suffix(" steps passed")?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no passing verdict line:\n{stdout}"));
    assert!(steps >= 40, "only {steps} steps ran:\n{stdout}");
    assert!(!stdout.contains('✗'), "a step failed:\n{stdout}");
    assert!(!stdout.contains("\x1b["), "colour codes with NO_COLOR / no TTY");
    // The log is where the closing lines say, kept although the run passed; nothing else is.
    let log = text
        .split_once("== What next operator log ")
        .and_then(|(_, rest)| rest.split_once(" (kept"))
        .map(|(path, _)| PathBuf::from(path))
        .unwrap_or_else(|| panic!("no operator log line:\n{stdout}"));
    let log_text = std::fs::read_to_string(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
    assert!(log_text.lines().count() > 10, "the kept log is nearly empty");
    let dir = log.parent().expect("the log's directory");
    let left: Vec<_> = std::fs::read_dir(dir)
        .expect("state dir")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(left, vec!["operator.log"], "more than the log was kept");
    std::fs::remove_dir_all(dir).expect("remove the kept log");
    // No Secret's token value may be printed: every value starts with GitLab's prefix.
    assert!(!stdout.contains("glpat-"), "a token value was printed");
}

#[test]
fn a_used_state_dir_is_refused_with_the_way_out() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join("world")).expect("world dir");
    let out = Command::new(env!("CARGO_BIN_EXE_testbed"))
        .arg("sandbox")
        .arg("--state-dir")
        .arg(dir.path())
        .arg("--operator-bin")
        .arg(operator_bin())
        .output()
        .expect("testbed runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains("already holds a sandbox run"), "stderr: {stderr}");
    assert!(stderr.contains("--state-dir"), "stderr: {stderr}");
}

#[test]
fn a_missing_operator_binary_is_explained() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = Command::new(env!("CARGO_BIN_EXE_testbed"))
        .arg("sandbox")
        .arg("--state-dir")
        .arg(dir.path())
        .arg("--operator-bin")
        .arg(dir.path().join("no-such-operator"))
        .output()
        .expect("testbed runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains("cargo build --bins"), "stderr: {stderr}");
    assert!(stderr.contains("no-such-operator"), "stderr: {stderr}");
}
