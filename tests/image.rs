//! The container image, built as `make image` builds it (`hack/image.sh`: the Dockerfile through
//! buildah, no daemon), from the unoptimised static binary so the test shares the debug build's
//! cost instead of paying for a release build.
//!
//! - The archive is reproducible (same inputs, same bytes and digest), its config agrees with the
//!   chart (user = the chart's runAsUser/runAsGroup) and the Dockerfile (entrypoint), and its
//!   root filesystem holds only the static binary, the CA bundle and passwd/group.
//! - `umoci unpack` (a real OCI tool) turns it into a runtime bundle; its entrypoint runs from the
//!   unpacked root filesystem (chroot, mounted read-only as the chart's
//!   `readOnlyRootFilesystem` asks) as the chart's non-root user, with the arguments and
//!   environment the chart renders, against the test world, and issues a token.
//!
//! Needs buildah, umoci, jq, readelf and the musl target (`make deps` installs them) and root (as
//! `make test` runs here) for the chroot.

mod e2e;

use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::OnceLock,
};

use e2e::{Env, OPERATOR_NS, Options, helm};
use serde_json::{Value, json};

/// The release name the e2e harness renders the chart's RBAC with (so its ServiceAccount matches).
const RELEASE: &str = "gto";
/// The pod name given to `POD_NAME` (the Downward API's `metadata.name`).
const POD_NAME: &str = "gto-gitlab-token-operator-7d9f8-abcde";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `cmd`, failing the test with its stderr unless it succeeds; returns its stdout.
fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e} (run `make deps`)"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An image archive written by `hack/image.sh`.
#[derive(Debug)]
struct Built {
    archive: PathBuf,
    reference: String,
    digest: String,
    _dir: tempfile::TempDir,
}

/// Builds the static debug binary and the image from it.
fn build_image() -> Built {
    let binary = run(
        Command::new(repo().join("hack/build-static.sh"))
            .args(["--profile", "dev"])
            .stderr(Stdio::inherit()),
        "hack/build-static.sh",
    );
    let binary = PathBuf::from(binary.trim());
    let dir = tempfile::tempdir().expect("temp dir");
    let archive = dir.path().join("image.oci.tar");
    let printed = run(
        Command::new(repo().join("hack/image.sh"))
            .args(["--profile", "dev", "--binary"])
            .arg(&binary)
            .arg("--out")
            .arg(&archive),
        "hack/image.sh",
    );
    let field = |name: &str| {
        printed
            .lines()
            .find_map(|l| l.strip_prefix(&format!("image: {name}")))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("hack/image.sh printed no {name:?}: {printed}"))
    };
    // The reference is the first `image:` line, then `image: digest …`, `image: archive …`.
    let built = Built {
        archive,
        reference: field(""),
        digest: field("digest "),
        _dir: dir,
    };
    assert!(built.digest.starts_with("sha256:"), "digest {:?}", built.digest);
    built
}

/// One image for every test of this binary.
fn image() -> &'static Built {
    static IMAGE: OnceLock<Built> = OnceLock::new();
    IMAGE.get_or_init(build_image)
}

/// The unpacked runtime bundle: root filesystem and the OCI runtime spec umoci derived from the
/// image config.
struct Bundle {
    rootfs: PathBuf,
    spec: Value,
    _dir: tempfile::TempDir,
}

fn unpack(built: &Built) -> Bundle {
    let dir = tempfile::tempdir().expect("temp dir");
    let layout = dir.path().join("layout");
    std::fs::create_dir(&layout).expect("layout dir");
    run(
        Command::new("tar")
            .arg("-xf")
            .arg(&built.archive)
            .arg("-C")
            .arg(&layout),
        "tar -x of the archive",
    );
    let bundle = dir.path().join("bundle");
    run(
        Command::new("umoci")
            .arg("unpack")
            .arg("--image")
            .arg(format!("{}:{}", layout.display(), built.reference))
            .arg(&bundle),
        "umoci unpack",
    );
    let spec: Value =
        serde_json::from_slice(&std::fs::read(bundle.join("config.json")).expect("config.json"))
            .expect("runtime spec is JSON");
    Bundle {
        rootfs: bundle.join("rootfs"),
        spec,
        _dir: dir,
    }
}

/// The image config (`skopeo inspect --config`).
fn image_config(built: &Built) -> Value {
    let text = run(
        Command::new("skopeo")
            .args(["inspect", "--config"])
            .arg(format!("oci-archive:{}", built.archive.display())),
        "skopeo inspect --config",
    );
    serde_json::from_str(&text).expect("config is JSON")
}

/// What the chart's Deployment gives the operator container.
#[derive(Debug)]
struct ChartContainer {
    image: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    run_as: (u64, u64),
    read_only_root: bool,
}

fn chart_container() -> ChartContainer {
    let chart = repo().join("charts/gitlab-token-operator");
    let text = run(
        Command::new(helm())
            .args(["template", RELEASE])
            .arg(&chart)
            .args(["--namespace", OPERATOR_NS])
            .env("HELM_CACHE_HOME", std::env::temp_dir().join("gto-e2e-helm-cache")),
        "helm template",
    );
    let deployment = serde_yaml_ng::Deserializer::from_str(&text)
        .filter_map(|doc| <Value as serde::Deserialize>::deserialize(doc).ok())
        .find(|v| v["kind"] == "Deployment")
        .expect("the chart renders a Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    };
    let env = container["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| {
            let name = e["name"].as_str().expect("env name").to_string();
            let value = match (e.get("value"), e.pointer("/valueFrom/fieldRef/fieldPath")) {
                (Some(v), _) => v.as_str().expect("env value is a string").to_string(),
                (None, Some(path)) if path == "metadata.namespace" => OPERATOR_NS.to_string(),
                (None, Some(path)) if path == "metadata.name" => POD_NAME.to_string(),
                other => panic!("env {name}: no value the test can give ({other:?})"),
            };
            (name, value)
        })
        .collect();
    let id = |key: &str| {
        container["securityContext"][key]
            .as_u64()
            .or_else(|| pod["securityContext"][key].as_u64())
            .unwrap_or_else(|| panic!("the chart sets no {key}"))
    };
    ChartContainer {
        image: container["image"].as_str().expect("image").to_string(),
        args: strings(&container["args"]),
        env,
        run_as: (id("runAsUser"), id("runAsGroup")),
        read_only_root: container["securityContext"]["readOnlyRootFilesystem"] == true,
    }
}

/// The final stage's `USER` and `ENTRYPOINT` of the Dockerfile.
fn dockerfile_final_stage() -> (String, Vec<String>) {
    let text = std::fs::read_to_string(repo().join("Dockerfile")).expect("Dockerfile");
    let lines: Vec<&str> = text.lines().collect();
    let last_from = lines
        .iter()
        .rposition(|l| l.starts_with("FROM "))
        .expect("a FROM");
    let stage = &lines[last_from..];
    let value = |instruction: &str| {
        stage
            .iter()
            .find_map(|l| l.strip_prefix(instruction))
            .map(str::trim)
            .unwrap_or_else(|| panic!("the final stage has no {instruction}"))
            .to_string()
    };
    let entrypoint: Vec<String> =
        serde_json::from_str(&value("ENTRYPOINT ")).expect("ENTRYPOINT in exec (JSON) form");
    (value("USER "), entrypoint)
}

#[test]
fn the_image_is_reproducible_minimal_and_agrees_with_the_dockerfile_and_the_chart() {
    let first = image();
    let again = build_image();
    assert_eq!(again.digest, first.digest, "same inputs, another image digest");
    assert_eq!(
        std::fs::read(&again.archive).expect("archive"),
        std::fs::read(&first.archive).expect("archive"),
        "same inputs, another archive"
    );

    let chart = chart_container();
    assert_eq!(
        chart.image, first.reference,
        "the chart's default image is not the one the build names"
    );
    let config = image_config(first);
    let (user, entrypoint) = dockerfile_final_stage();
    let (uid, gid) = chart.run_as;
    assert_ne!(uid, 0, "the chart must not run as root");
    assert_eq!(
        user,
        format!("{uid}:{gid}"),
        "Dockerfile USER vs the chart's runAsUser:runAsGroup"
    );
    assert_eq!(config["config"]["User"], json!(user));
    assert_eq!(config["config"]["Entrypoint"], json!(entrypoint));
    assert!(
        config["config"]["Cmd"].is_null(),
        "the chart passes the verb; no Cmd"
    );
    let epoch = Command::new("git")
        .args(["log", "-1", "--format=%ct"])
        .current_dir(repo())
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<i64>().ok())
        .unwrap_or(0);
    let created = chrono::DateTime::from_timestamp(epoch, 0)
        .expect("epoch")
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    assert_eq!(
        config["created"],
        json!(created),
        "created is not the last commit's time"
    );

    let bundle = unpack(first);
    let mut files = Vec::new();
    collect_files(&bundle.rootfs, &bundle.rootfs, &mut files);
    files.sort();
    assert_eq!(
        files,
        [
            "etc/group",
            "etc/passwd",
            "etc/ssl/certs/ca-certificates.crt",
            "usr/local/bin/gitlab-token-operator"
        ],
        "the root filesystem holds more or less than the image needs"
    );
    let passwd = std::fs::read_to_string(bundle.rootfs.join("etc/passwd")).expect("passwd");
    assert!(
        passwd
            .lines()
            .any(|l| l.starts_with(&format!("nonroot:x:{uid}:{gid}:"))),
        "passwd lacks the chart's user: {passwd}"
    );
    let certs =
        std::fs::read_to_string(bundle.rootfs.join("etc/ssl/certs/ca-certificates.crt")).expect("CA bundle");
    assert!(
        certs.matches("-----BEGIN CERTIFICATE-----").count() > 50,
        "the CA bundle is not Debian's"
    );
    let elf = run(
        Command::new("readelf")
            .arg("-l")
            .arg(bundle.rootfs.join("usr/local/bin/gitlab-token-operator")),
        "readelf",
    );
    assert!(!elf.contains("program interpreter"), "the binary is not static");
    assert_eq!(bundle.spec.pointer("/process/user/uid"), Some(&json!(uid)));
    assert_eq!(bundle.spec.pointer("/process/args"), Some(&json!(entrypoint)));
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            collect_files(root, &path, out);
        } else {
            out.push(path.strip_prefix(root).expect("under root").display().to_string());
        }
    }
}

/// Mounts the root filesystem read-only (a private mount namespace) and runs the rest of the
/// arguments in it, chrooted, as `uid:gid`.
const LAUNCH: &str = r#"set -e
root="$1"; user="$2"; shift 2
mount --bind "$root" "$root"
mount -o remount,bind,ro "$root"
exec chroot --userspec="$user" "$root" "$@""#;

/// Where the test puts the operator's kubeconfig inside the image (the test world's API server
/// speaks plain HTTP, so the in-cluster config a pod would use cannot be served).
const KUBECONFIG_IN_IMAGE: &str = "run/secrets/gto/kubeconfig";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unpacked_image_runs_as_the_chart_user_and_issues_a_token() {
    let built = tokio::task::spawn_blocking(image).await.expect("image");
    let (bundle, chart) = tokio::task::spawn_blocking(move || (unpack(built), chart_container()))
        .await
        .expect("unpack");
    assert!(
        chart.read_only_root,
        "the chart no longer asks for a read-only root filesystem"
    );
    let env = Env::start_with(Options {
        external_operator: true,
        ..Options::default()
    })
    .await;
    let kubeconfig = bundle.rootfs.join(KUBECONFIG_IN_IMAGE);
    std::fs::create_dir_all(kubeconfig.parent().expect("parent")).expect("secrets dir");
    std::fs::copy(&env.operator_kubeconfig, &kubeconfig).expect("kubeconfig into the image");

    let (uid, gid) = chart.run_as;
    let spec_env: Vec<(String, String)> = bundle.spec["process"]["env"]
        .as_array()
        .expect("process.env")
        .iter()
        .filter_map(|e| {
            e.as_str()?
                .split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    let args: Vec<String> = bundle.spec["process"]["args"]
        .as_array()
        .expect("process.args")
        .iter()
        .filter_map(|a| a.as_str().map(str::to_string))
        .chain(chart.args.iter().cloned())
        .collect();
    let log = std::fs::File::create(&env.log_path).expect("log file");
    let mut operator = tokio::process::Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            LAUNCH,
            "sh",
        ])
        .arg(&bundle.rootfs)
        .arg(format!("{uid}:{gid}"))
        .args(&args)
        .env_clear()
        .envs(spec_env)
        .envs(chart.env.iter().cloned())
        // Only loopback here; the chart's 0.0.0.0:<metricsPort> would listen everywhere.
        .env("GTO_METRICS_ADDR", &env.metrics_addr)
        .env("KUBECONFIG", format!("/{KUBECONFIG_IN_IMAGE}"))
        .stdout(Stdio::from(log.try_clone().expect("log")))
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .expect("unshare runs");
    let pid = operator.id().expect("running");
    let readyz = format!("http://{}/readyz", env.metrics_addr);
    e2e::eventually("the image's operator to report ready", || {
        let readyz = readyz.clone();
        async move {
            reqwest::get(&readyz)
                .await
                .ok()
                .filter(|r| r.status() == 200)
                .map(|_| ())
        }
    })
    .await;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("process status");
    let ids = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.split_whitespace().map(str::to_string).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    assert_eq!(
        ids("Uid:"),
        vec![uid.to_string(); 4],
        "not running as the chart's user"
    );
    assert_eq!(
        ids("Gid:"),
        vec![gid.to_string(); 4],
        "not running as the chart's group"
    );
    let running = std::fs::metadata(format!("/proc/{pid}/exe")).expect("exe");
    let entrypoint =
        std::fs::metadata(bundle.rootfs.join("usr/local/bin/gitlab-token-operator")).expect("binary");
    assert_eq!(
        (running.dev(), running.ino()),
        (entrypoint.dev(), entrypoint.ino()),
        "the process is not the unpacked image's entrypoint"
    );
    env.wait_connection_ready().await;

    let url = format!("{}/acme/team-a/app.git", env.world.gitlab_url());
    env.apply(
        json!({"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
        "metadata": {"name": "app", "namespace": "team-a", "annotations": {"gitlabtokens.io/inject": "true"}},
        "spec": {"interval": "1m", "url": url, "ref": {"branch": "main"}}}),
    )
    .await;
    env.wait_token_condition("team-a", "app-gitlab-token", "Ready", "True", Some("Issued"))
        .await;
    let secret = env.wait_secret("team-a", "app-gitlab-token").await;
    let password = Env::secret_value(&secret, "password");
    assert!(!password.is_empty(), "the Secret has no password");
    let cluster = chart
        .env
        .iter()
        .find(|(k, _)| k == "GTO_CLUSTER_NAME")
        .map(|(_, v)| v.clone())
        .expect("the chart sets GTO_CLUSTER_NAME");
    let minted: Vec<_> = env
        .world
        .gitlab
        .tokens()
        .into_iter()
        .filter(|t| t.state == "active" && t.name.contains(&format!("-{cluster}-")))
        .collect();
    assert_eq!(
        minted.len(),
        1,
        "tokens minted by the image's operator: {minted:?}"
    );
    let logs = env.operator_logs();
    assert!(
        !logs.contains(&password),
        "the token value leaked into the operator's logs"
    );
    assert!(
        logs.lines().any(|l| serde_json::from_str::<Value>(l).is_ok()),
        "the chart's GTO_LOG_FORMAT=json did not reach the operator: {logs}"
    );
    assert!(
        operator.try_wait().expect("wait").is_none(),
        "the operator exited: {logs}"
    );
    let _ = operator.kill().await;
    env.stop().await;
}
