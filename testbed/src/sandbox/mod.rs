//! `testbed sandbox`: the guided demo. Starts the test world and the real operator binary, plays
//! an admin (connection, policy) and a tenant (annotated Flux sources of every kind, one denied),
//! shows live what happens (tokens minted, Secrets written, Flux Ready, renewal after moving the
//! clock, revocation on deletion), proves each Secret with real clients, and ends with a summary.
//! The run passes only if every step it showed happened; every wait has a deadline.

pub mod argocd;
pub mod checks;
pub mod lifecycle;
pub mod live;
pub mod operator;
pub mod proofs;
pub mod scenario;
pub mod setup;
pub mod sources;
pub mod view;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use kube::{Api, api::DynamicObject};

use crate::world::{World, WorldConfig, WorldError, fixtures_dir};
use checks::Ledger;
use live::LiveView;
use operator::OperatorProcess;
use scenario::{Issued, Scenario};
use setup::{CONNECTION, OPERATOR_NS, POLICY};
use view::View;

/// How to run the sandbox.
#[derive(Debug, Clone)]
pub struct SandboxOptions {
    /// State directory (kept); `None`: a temporary one, removed unless the run fails.
    pub state_dir: Option<PathBuf>,
    /// The operator binary; `None`: `$GTO_OPERATOR_BIN`, else beside this executable.
    pub operator_bin: Option<PathBuf>,
    /// Our CRDs.
    pub crds_dir: PathBuf,
    /// Flux's CRDs.
    pub flux_crds_dir: PathBuf,
    /// Deadline of every single wait.
    pub wait: Duration,
    /// Colour the output.
    pub color: bool,
}

/// The workspace's `crds/` folder (generated from the operator's types).
pub fn workspace_crds_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds")
}

impl Default for SandboxOptions {
    fn default() -> Self {
        Self {
            state_dir: None,
            operator_bin: None,
            crds_dir: workspace_crds_dir(),
            flux_crds_dir: fixtures_dir().join("flux-crds"),
            wait: Duration::from_secs(30),
            color: view::color_wanted(),
        }
    }
}

/// Why the sandbox could not run at all (as opposed to a step failing).
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The operator binary is missing or would not start.
    #[error("{0}")]
    Operator(String),
    /// The test world did not start.
    #[error("the test world did not start: {0}")]
    World(#[from] WorldError),
    /// Files or directories could not be prepared.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The given state directory already holds a run.
    #[error("{0} already holds a sandbox run (world/ exists): remove it or pass another --state-dir")]
    StateDirUsed(String),
}

/// Runs the whole demo; `Ok(true)` when every step passed.
pub async fn run(options: SandboxOptions) -> Result<bool, SandboxError> {
    let view = Arc::new(View::new(options.color));
    let bin = operator::locate(options.operator_bin.clone())?;
    let (temp, state_dir) = match &options.state_dir {
        Some(dir) if dir.join("world").exists() => {
            return Err(SandboxError::StateDirUsed(dir.display().to_string()));
        }
        Some(dir) => (None, dir.clone()),
        None => {
            let t = tempfile::Builder::new().prefix("testbed-sandbox-").tempdir()?;
            let p = t.path().to_path_buf();
            (Some(t), p)
        }
    };
    view.heading("Test world and operator");
    view.info(&format!("state directory {}", state_dir.display()));
    let mut config = WorldConfig::new(state_dir.join("world"));
    config.argocd = Some(argocd::standin_config());
    let world = World::start(config).await?;
    let ledger = Ledger::new(view.clone());
    ledger.record(
        "start the test world",
        "kubernetes, GitLab, registry, Flux",
        Ok(format!(
            "kubernetes {}, GitLab {}, registry {}",
            world.kube.url(),
            world.gitlab_url(),
            world.registry_host()
        )),
    );
    let passed = match world.kube.admin_client().await {
        Ok(client) => play(&world, client, &bin, &state_dir, &options, &view, &ledger).await,
        Err(e) => ledger.record("admin client", "connects", Err(e.to_string())),
    };
    let passed = passed && ledger.all_passed();
    view.summary(&ledger.rows());
    world.stop().await;
    let log = state_dir.join("operator.log");
    let kept = match temp {
        // A failed run keeps everything for inspection; a passed one only the operator's log.
        Some(t) => {
            let dir = t.keep();
            if passed {
                remove_all_but(&dir, &log);
            }
            if passed { Kept::Log } else { Kept::All }
        }
        None => Kept::All,
    };
    what_next(&view, &state_dir, &log, kept);
    Ok(passed)
}

/// What a run leaves behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kept {
    /// The whole state directory.
    All,
    /// Only the operator's log.
    Log,
}

/// Removes everything in `dir` except the file `keep`.
fn remove_all_but(dir: &Path, keep: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path == keep {
            continue;
        }
        let _ = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
    }
}

/// The closing lines: where the operator's log is, and what to try next.
fn what_next(view: &View, state_dir: &Path, log: &Path, kept: Kept) {
    view.heading("What next");
    let rows: [(&str, String); 6] = [
        (
            "operator log",
            match kept {
                Kept::Log => format!("{} (kept; the rest of the run was removed)", log.display()),
                Kept::All => format!(
                    "{} (kept, with the whole run in {})",
                    log.display(),
                    state_dir.display()
                ),
            },
        ),
        (
            "make up",
            "the same test world, left running (state in .state/): `source .state/env`, then \
             kubectl, git, skopeo or curl against it, and `cargo run -- run` to run the \
             operator on it"
                .into(),
        ),
        (
            "make image",
            "the operator's container image, to install on a real cluster".into(),
        ),
        ("docs/admin-guide.md", "install, connections, policies".into()),
        (
            "docs/tenant-guide.md",
            "the annotation and the Secret each Flux kind gets".into(),
        ),
        (
            "docs/troubleshooting.md",
            "when a token does not come, by symptom".into(),
        ),
    ];
    for (what, text) in rows {
        view.plain(&format!("  {what:<24} "), &text);
    }
}

async fn play(
    world: &World,
    client: kube::Client,
    bin: &Path,
    state_dir: &Path,
    options: &SandboxOptions,
    view: &Arc<View>,
    ledger: &Ledger,
) -> bool {
    let installed =
        setup::install_all_crds(&client, &options.crds_dir, &options.flux_crds_dir, state_dir).await;
    let argo_dir = options
        .flux_crds_dir
        .parent()
        .map(|p| p.join("argocd-crds"))
        .unwrap_or_default();
    let installed = match installed {
        Ok(counts) => crate::world::install_crds(&client, &argo_dir)
            .await
            .map(|argo| (counts, argo.len())),
        Err(e) => Err(e),
    };
    let crds = installed.map(|((ours, flux), argo)| {
        format!("{ours} gitlabtokens.io, {flux} Flux (Provider minimal), {argo} Argo CD")
    });
    if !ledger.record("install CRDs", "Established", crds.map_err(|e| e.to_string())) {
        return false;
    }
    if !admin(world, &client, ledger).await {
        return false;
    }
    let log_path = state_dir.join("operator.log");
    let mut op = match OperatorProcess::start(bin, world, OPERATOR_NS, &log_path) {
        Ok(op) => op,
        Err(e) => return ledger.record("start the operator", "ready", Err(e.to_string())),
    };
    let ready = op.wait_ready(options.wait).await.map(|()| {
        format!(
            "{} ready (/readyz on {}), log {}",
            bin.display(),
            op.metrics_addr(),
            log_path.display()
        )
    });
    let mut passed = ledger.record("start the operator", "/readyz 200", ready);
    if passed {
        passed = connection_ready(&client, options.wait, ledger).await;
    }
    if passed {
        let marker = "gto-sandbox-".to_string();
        let (_, _, denied_secret, _) = sources::denied(&world.gitlab_url());
        let live = LiveView::start(
            client.clone(),
            world.gitlab.state(),
            view.clone(),
            sources::flux_resources(),
            marker,
            vec![format!("{}/{denied_secret}", sources::TENANT_NS)],
        );
        let mut scenario = Scenario {
            world,
            client,
            view: view.clone(),
            ledger,
            scratch: state_dir.to_path_buf(),
            wait: options.wait,
            values: Vec::new(),
            live: Some(live.syncer()),
        };
        tenant(&mut scenario).await;
        scenario.no_leaks(&op.log_text()).await;
        let running = op.running();
        ledger.record(
            "operator process",
            "still running",
            if running {
                Ok("running".into())
            } else {
                Err("exited".into())
            },
        );
        live.stop().await;
    }
    if !ledger.all_passed() {
        view.heading(&format!(
            "Last lines of the operator's log ({})",
            op.log_path().display()
        ));
        for line in op.log_tail(15) {
            view.plain("  ", &line);
        }
    }
    op.stop().await;
    passed
}

async fn admin(world: &World, client: &kube::Client, ledger: &Ledger) -> bool {
    let objects = match setup::admin_objects(world, &[sources::TENANT_NS]) {
        Ok(o) => o,
        Err(e) => return ledger.record("admin objects", "applied", Err(e)),
    };
    for object in objects.iter().chain(&argocd::admin_objects()) {
        if let Err(e) = setup::apply(client, object).await {
            return ledger.record("admin objects", "applied", Err(e));
        }
    }
    ledger.record(
        "admin: connection and policy",
        "applied",
        Ok(format!(
            "GitLabConnection {CONNECTION}, GitLabTokenPolicy {POLICY} (team-* → acme/team-a/**, acme/platform/**), Argo CD AppProject team-a with policy argocd-team-a"
        )),
    )
}

async fn connection_ready(client: &kube::Client, wait: Duration, ledger: &Ledger) -> bool {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &setup::connection_resource());
    let mut last = None;
    let deadline = tokio::time::Instant::now() + wait;
    let ready = loop {
        if let Ok(Some(c)) = api.get_opt(CONNECTION).await
            && let Ok(v) = serde_json::to_value(&c)
        {
            let ok = setup::is_ready(&v);
            last = Some(v);
            if ok {
                break Some(());
            }
        }
        if tokio::time::Instant::now() >= deadline {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let outcome = match ready {
        Some(()) => Ok(scenario::describe_ready(last.as_ref())),
        None => Err(format!(
            "not Ready within {wait:?}: {}",
            scenario::describe_ready(last.as_ref())
        )),
    };
    ledger.record("GitLabConnection", "Ready=True", outcome)
}

async fn tenant(scenario: &mut Scenario<'_>) {
    let world = scenario.world;
    let charts_id = world
        .seed
        .as_ref()
        .and_then(|s| s.projects.iter().find(|p| p.path == "acme/platform/charts"))
        .map(|p| p.id)
        .unwrap_or_default();
    let cases = sources::allowed(&world.gitlab_url(), &world.registry_host(), charts_id);
    let (_, denied_manifest, denied_secret, denied_project) = sources::denied(&world.gitlab_url());
    scenario.view.heading("Tenant annotates Flux sources in team-a");
    let mut manifests: Vec<(String, serde_json::Value)> = cases
        .iter()
        .map(|c| (c.label.to_string(), c.manifest.clone()))
        .collect();
    manifests.push(("GitRepository (denied by policy)".into(), denied_manifest));
    if !scenario.apply_sources(&manifests).await {
        return;
    }
    scenario.view.heading("Tokens, Secrets, real clients, Flux");
    let mut issued: Vec<Issued> = Vec::new();
    for case in &cases {
        if let Some(i) = scenario.serve(case).await {
            issued.push(i);
        }
    }
    scenario.view.heading("A source the policy denies");
    scenario.denied(denied_secret, denied_project).await;

    scenario
        .view
        .heading("Argo CD: an annotated Application gets a project-scoped repository Secret");
    scenario.argocd().await;

    scenario
        .view
        .heading("Renewal: the clock moves past the GitRepository token's renewal time");
    let (rotated, others): (Vec<Issued>, Vec<Issued>) = issued
        .iter()
        .cloned()
        .partition(|i| i.case.label == "GitRepository");
    match rotated.first() {
        Some(r) => scenario.renewal(r, &others).await,
        None => {
            scenario.ledger.record(
                "renewal",
                "a rotation",
                Err("the GitRepository never got a token".into()),
            );
        }
    }
    scenario
        .view
        .heading("Deletion: a source goes away, its token is revoked");
    match issued.iter().find(|i| i.case.label == "HelmRepository (HTTP)") {
        Some(gone) => scenario.deletion(gone).await,
        None => {
            scenario.ledger.record(
                "deletion",
                "a revocation",
                Err("the HelmRepository never got a token".into()),
            );
        }
    }
    scenario
        .view
        .heading("What an admin sees: kubectl get gitlabtokens.gitlabtokens.io -n team-a -o wide");
    let mut names: Vec<String> = cases
        .iter()
        .filter(|c| c.label != "HelmRepository (HTTP)")
        .map(|c| c.secret.clone())
        .collect();
    names.push(denied_secret.to_string());
    scenario.kubectl_view(&names).await;
    scenario
        .events_recorded(&[
            ("app-gitlab-token", "Issued"),
            ("app-gitlab-token", "Rotated"),
            ("app-gitlab-token", "Revoked"),
            ("platform-charts-gitlab-token", "Revoked"),
            (denied_secret, "PolicyDenied"),
        ])
        .await;
}
