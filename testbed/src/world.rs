//! The whole test world in one call: the Kubernetes API server emulator, the GitLab emulator with
//! its consumer protocols (git, registry, Helm), the default seed, and the Flux and Argo CD
//! stand-ins. Used by
//! `testbed up`, the sandbox demo and the operator's end-to-end tests (many worlds per process).
//!
//! State lives in one directory: `kubeconfig` (admin), `env` (shell-sourceable), `clock-offset`
//! (seconds GitLab's clock is ahead of real time, mirrored continuously; the operator follows it
//! with its hidden `--clock-offset-file` flag), and `gitlab/` (repositories, registry storage).

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use chrono::Utc;
use tokio::task::JoinHandle;

use crate::{
    argocd::{ArgoCdConfig, ArgoCdStandIn},
    flux::{FluxConfig, FluxStandIn},
    gitlab::{
        DefaultSeed, GitLabConfig, GitLabHandle, GitLabServer,
        fronts::{
            Fronts, FrontsConfig,
            ssh::{SshConfig, SshFront},
        },
        seed_default,
    },
    kube::{KubeHandle, KubeServer, KubeServerConfig},
};

/// How to start a world.
pub struct WorldConfig {
    /// Directory for the state files (created if missing).
    pub state_dir: PathBuf,
    /// Seed the default GitLab content (groups, projects, repositories, images, charts).
    pub seed: bool,
    /// Run the Flux stand-in against the Kubernetes emulator.
    pub flux: bool,
    /// Run the Argo CD stand-in with these settings (it waits until the Argo CD CRDs are served).
    pub argocd: Option<ArgoCdConfig>,
    /// Bind `system:unauthenticated` to `cluster-admin`: kubectl (client-go) sends no bearer token
    /// over plain HTTP, so without this kubectl is refused. RBAC tests turn it off.
    pub anonymous_admin: bool,
    /// Kubernetes emulator settings.
    pub kube: KubeServerConfig,
    /// GitLab emulator settings.
    pub gitlab: GitLabConfig,
}

impl WorldConfig {
    /// Defaults: seeded, with the Flux and Argo CD stand-ins.
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        Self {
            state_dir: state_dir.into(),
            seed: true,
            flux: true,
            argocd: Some(ArgoCdConfig::default()),
            anonymous_admin: true,
            kube: KubeServerConfig::default(),
            gitlab: GitLabConfig::default(),
        }
    }
}

/// Why a world could not start.
#[derive(Debug, thiserror::Error)]
pub enum WorldError {
    /// Writing state files failed.
    #[error("state directory: {0}")]
    Io(#[from] std::io::Error),
    /// A part of the world failed to start or seed.
    #[error("{0}")]
    Start(String),
}

fn start_err(what: &str) -> impl FnOnce(String) -> WorldError + '_ {
    move |e| WorldError::Start(format!("{what}: {e}"))
}

/// A running world. Stop it with [`World::stop`] (dropping it also stops the registry child).
pub struct World {
    /// The Kubernetes API server emulator.
    pub kube: KubeHandle,
    /// The GitLab emulator.
    pub gitlab: GitLabHandle,
    /// Git, registry and Helm fronts (for seeding more content).
    pub fronts: Arc<Fronts>,
    /// Git over SSH (sshd); Err with the reason when openssh-server, root or the `git` user is missing.
    pub ssh: Result<SshFront, String>,
    /// The Flux stand-in, when running.
    pub flux: Option<FluxStandIn>,
    /// The Argo CD stand-in, when running.
    pub argocd: Option<ArgoCdStandIn>,
    /// What the default seed created (tokens of the seeded users, projects).
    pub seed: Option<DefaultSeed>,
    state_dir: PathBuf,
    clock_mirror: JoinHandle<()>,
}

/// Name of the image tag seeded into every project that has images.
pub const SEED_IMAGE_TAG: &str = "1.0.0";
/// Helm channel and chart version seeded into projects that have charts.
pub const SEED_CHART_CHANNEL: &str = "stable";
/// Chart version seeded.
pub const SEED_CHART_VERSION: &str = "0.1.0";

impl World {
    /// Starts every part, seeds, and writes the state files.
    pub async fn start(config: WorldConfig) -> Result<World, WorldError> {
        crate::init_crypto();
        let state_dir = std::path::absolute(&config.state_dir)?;
        std::fs::create_dir_all(&state_dir)?;
        let kube = KubeServer::start(config.kube)
            .await
            .map_err(|e| start_err("kubernetes emulator")(e.to_string()))?;
        if config.anonymous_admin {
            kube.allow_anonymous_admin();
        }
        let bound = GitLabServer::bind(config.gitlab)
            .await
            .map_err(|e| start_err("gitlab emulator")(e.to_string()))?;
        let fronts_config = FrontsConfig {
            data_dir: state_dir.join("gitlab"),
            gitlab_url: bound.url(),
        };
        let fronts = Fronts::start(fronts_config, bound.oracle())
            .await
            .map_err(|e| start_err("gitlab fronts")(e.to_string()))?;
        bound.state().attach_repositories(fronts.repositories());
        let registry_host = fronts.registry_host();
        bound
            .state()
            .update_settings(|s| s.registry_host = registry_host.clone());
        let ssh = match crate::gitlab::fronts::ssh::availability() {
            Ok(()) => {
                let config = SshConfig {
                    gitlab_url: bound.url(),
                    repos_dir: fronts.repos_dir(),
                };
                Ok(SshFront::start(config, bound.state())
                    .await
                    .map_err(|e| start_err("ssh front")(e.to_string()))?)
            }
            Err(reason) => {
                tracing::warn!(%reason, "Git over SSH is not available in this world");
                Err(reason.to_string())
            }
        };
        let mut routes = fronts.router();
        if let Ok(front) = &ssh {
            routes = routes.merge(front.router());
            let address = front.address();
            bound.state().update_settings(|s| s.ssh_host = Some(address));
        }
        let gitlab = bound.serve(Some(routes));
        let fronts = Arc::new(fronts);

        let seed = if config.seed {
            Some(seed_world(&gitlab, &fronts).await?)
        } else {
            None
        };
        let admin = kube.admin_token().to_string();
        kube.write_kubeconfig(state_dir.join("kubeconfig"), &admin)?;
        write_offset(&state_dir.join("clock-offset"), 0)?;
        let clock_mirror = tokio::spawn(mirror_clock(gitlab.state(), state_dir.join("clock-offset")));
        let flux = if config.flux {
            let client = kube
                .admin_client()
                .await
                .map_err(|e| start_err("kubernetes client")(e.to_string()))?;
            Some(FluxStandIn::start(client, FluxConfig::default()))
        } else {
            None
        };
        let argocd = match config.argocd {
            Some(argocd_config) => {
                let client = kube
                    .admin_client()
                    .await
                    .map_err(|e| start_err("kubernetes client")(e.to_string()))?;
                Some(ArgoCdStandIn::start(client, argocd_config))
            }
            None => None,
        };
        let world = World {
            kube,
            gitlab,
            fronts,
            ssh,
            flux,
            argocd,
            seed,
            state_dir,
            clock_mirror,
        };
        std::fs::write(world.state_dir.join("env"), world.env_file())?;
        Ok(world)
    }

    /// The state directory.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Path of the admin kubeconfig.
    pub fn kubeconfig_path(&self) -> PathBuf {
        self.state_dir.join("kubeconfig")
    }

    /// Path of the clock offset file (for the operator's `--clock-offset-file`).
    pub fn clock_offset_path(&self) -> PathBuf {
        self.state_dir.join("clock-offset")
    }

    /// The registry's `host:port`.
    pub fn registry_host(&self) -> String {
        self.fronts.registry_host()
    }

    /// The SSH front, or an error naming what is missing (openssh-server, root, the `git` user).
    pub fn ssh(&self) -> Result<&SshFront, WorldError> {
        self.ssh
            .as_ref()
            .map_err(|reason| WorldError::Start(format!("Git over SSH unavailable: {reason}")))
    }

    /// GitLab's base URL.
    pub fn gitlab_url(&self) -> String {
        self.gitlab.url()
    }

    /// The seeded operator's personal access token (`api`, Owner of `acme`).
    pub fn operator_token(&self) -> Option<&str> {
        self.seed.as_ref().map(|s| s.operator_token.as_str())
    }

    /// The shell-sourceable environment of the world (`export KEY=value` lines).
    pub fn env_file(&self) -> String {
        let mut lines = vec![
            format!("KUBECONFIG={}", self.kubeconfig_path().display()),
            format!("GITLAB_URL={}", self.gitlab_url()),
            format!("REGISTRY_HOST={}", self.registry_host()),
            format!("TESTBED_CONTROL_URL={}/-/testbed", self.gitlab_url()),
            format!("TESTBED_CLOCK_OFFSET_FILE={}", self.clock_offset_path().display()),
        ];
        if let Some(token) = self.operator_token() {
            lines.push(format!("GITLAB_TOKEN={token}"));
        }
        if let Ok(ssh) = &self.ssh {
            lines.push(format!("GITLAB_SSH_HOST={}", ssh.address()));
            lines.push(format!("GITLAB_SSH_KNOWN_HOSTS='{}'", ssh.known_hosts().trim()));
        }
        lines.iter().map(|l| format!("export {l}\n")).collect()
    }

    /// Moves GitLab's clock (and, through the offset file, the operator's) forward.
    pub fn advance_clock(&self, by: chrono::Duration) -> Result<(), WorldError> {
        self.gitlab
            .clock()
            .try_advance(by)
            .map_err(|e| WorldError::Start(format!("clock: {e}")))?;
        write_current_offset(&self.gitlab.state(), &self.clock_offset_path())?;
        Ok(())
    }

    /// Stops everything this world started.
    pub async fn stop(self) {
        self.clock_mirror.abort();
        if let Some(flux) = self.flux {
            flux.stop().await;
        }
        if let Some(argocd) = self.argocd {
            argocd.stop().await;
        }
        self.gitlab.shutdown().await;
        if let Ok(ssh) = self.ssh {
            ssh.stop().await;
        }
        if let Ok(fronts) = Arc::try_unwrap(self.fronts) {
            fronts.shutdown().await;
        }
        self.kube.shutdown().await;
    }
}

async fn seed_world(gitlab: &GitLabHandle, fronts: &Fronts) -> Result<DefaultSeed, WorldError> {
    let seed = seed_default(&gitlab.seed()).map_err(|e| start_err("seed")(e.to_string()))?;
    for project in &seed.projects {
        if project.has_repository {
            fronts
                .seed_repository(&project.path)
                .await
                .map_err(|e| start_err("seed repository")(e.to_string()))?;
        }
        for image in &project.images {
            let repository = if image.is_empty() {
                project.path.clone()
            } else {
                format!("{}/{image}", project.path)
            };
            fronts
                .seed_image(&repository, SEED_IMAGE_TAG)
                .await
                .map_err(|e| start_err("seed image")(e.to_string()))?;
        }
        if project.has_chart {
            let name = project.path.rsplit('/').next().unwrap_or("chart");
            fronts
                .seed_helm_chart(project.id, SEED_CHART_CHANNEL, name, SEED_CHART_VERSION)
                .map_err(|e| start_err("seed chart")(e.to_string()))?;
            fronts
                .seed_oci_chart(&project.path, name, SEED_CHART_VERSION)
                .await
                .map_err(|e| start_err("seed OCI chart")(e.to_string()))?;
        }
    }
    Ok(seed)
}

fn offset_secs(state: &crate::gitlab::GitLabState) -> i64 {
    (state.clock().now() - Utc::now()).num_seconds()
}

/// Writes the offset atomically (readers never see a half-written number).
fn write_offset(path: &Path, secs: i64) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{secs}\n"))?;
    std::fs::rename(tmp, path)
}

/// Serialises writes of offset files. The mirror task and `advance_clock` both write one, through
/// the same temporary file: unserialised, one writer's rename found the file already moved (a
/// CI run failed with `clock: … No such file or directory`), and a late writer could put back an
/// older offset.
static OFFSET_WRITES: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Writes GitLab's clock offset as it is while holding [`OFFSET_WRITES`]; returns what it wrote.
fn write_current_offset(state: &crate::gitlab::GitLabState, path: &Path) -> std::io::Result<i64> {
    let _only_writer = OFFSET_WRITES.lock().unwrap_or_else(|e| e.into_inner());
    let secs = offset_secs(state);
    write_offset(path, secs)?;
    Ok(secs)
}

/// Keeps the offset file equal to GitLab's clock, whoever moves it (Rust API or HTTP controls).
async fn mirror_clock(state: Arc<crate::gitlab::GitLabState>, path: PathBuf) {
    let mut last = 0i64;
    loop {
        let now = offset_secs(&state);
        if (now - last).abs() >= 2
            && let Ok(written) = write_current_offset(&state, &path)
        {
            last = written;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The shared fixtures folder: `$GTO_FIXTURES_DIR`, else `shared/fixtures` beside the workspace.
pub fn fixtures_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("GTO_FIXTURES_DIR") {
        return PathBuf::from(dir);
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    [
        workspace.join("../shared/fixtures"),
        workspace.join("../../shared/fixtures"),
    ]
    .into_iter()
    .find(|p| p.is_dir())
    .unwrap_or_else(|| workspace.join("../shared/fixtures"))
}

/// Creates (server-side applies) every CRD in the YAML files of `dir` and waits until each is
/// Established, so its resources are served when this returns.
pub async fn install_crds(client: &kube::Client, dir: &Path) -> Result<Vec<String>, WorldError> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::api::{Api, Patch, PatchParams};
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut names = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file)?;
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let value: serde_json::Value = serde::Deserialize::deserialize(doc)
                .map_err(|e| WorldError::Start(format!("{}: {e}", file.display())))?;
            if value.get("kind").and_then(|k| k.as_str()) != Some("CustomResourceDefinition") {
                continue;
            }
            let name = value
                .pointer("/metadata/name")
                .and_then(|n| n.as_str())
                .unwrap_or_default()
                .to_string();
            api.patch(
                &name,
                &PatchParams::apply("testbed").force(),
                &Patch::Apply(&value),
            )
            .await
            .map_err(|e| WorldError::Start(format!("applying CRD {name}: {e}")))?;
            names.push(name);
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    for name in &names {
        loop {
            let crd = api
                .get(name)
                .await
                .map_err(|e| WorldError::Start(format!("CRD {name}: {e}")))?;
            let established = crd
                .status
                .and_then(|s| s.conditions)
                .into_iter()
                .flatten()
                .any(|c| c.type_ == "Established" && c.status == "True");
            if established {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                return Err(WorldError::Start(format!(
                    "CRD {name} not Established within 20s"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(names)
}
