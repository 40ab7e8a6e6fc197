//! The consumer protocols behind the GitLab emulator, checked against the same tokens and
//! project membership through [`AccessOracle`]: git smart HTTP (via `git http-backend`), the
//! container registry (Debian's `docker-registry` with token auth whose realm is `/jwt/auth`)
//! and the Helm package registry. See `consumer-protocols.md` and `gitlab-api.md` §9.

mod basic;
mod cgi;
mod git_http;
mod helm;
mod jwt_auth;
mod keys;
mod oci_push;
mod registry;
pub(crate) mod seed_git;
pub mod ssh;
mod ssh_shell;
mod tarball;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::routing::get;

use crate::gitlab::access::AccessOracle;

/// Where the fronts keep their files and where the GitLab emulator answers.
#[derive(Debug, Clone)]
pub struct FrontsConfig {
    /// Directory for bare repositories, registry storage/config/log and the token key.
    pub data_dir: PathBuf,
    /// Base URL of the GitLab emulator (e.g. `http://127.0.0.1:PORT`); the realm is `<url>/jwt/auth`.
    pub gitlab_url: String,
}

/// Errors of starting or seeding the fronts.
#[derive(Debug, thiserror::Error)]
pub enum FrontsError {
    /// File system or process I/O failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// An external tool (openssl, git, docker-registry) is missing or failed.
    #[error("{tool} failed: {detail}")]
    Tool {
        /// The tool.
        tool: &'static str,
        /// What went wrong.
        detail: String,
    },
    /// The signing key could not be loaded or used.
    #[error("registry token key: {0}")]
    Key(String),
    /// The registry process exited before it was ready.
    #[error("docker-registry exited ({status}) before it was ready; see {log:?}")]
    RegistryExited {
        /// Exit status.
        status: String,
        /// Its log file.
        log: PathBuf,
    },
    /// The registry did not answer `/v2/` before the deadline.
    #[error("docker-registry did not become ready in time; see {log:?}")]
    RegistryNotReady {
        /// Its log file.
        log: PathBuf,
    },
    /// The registry refused a seeding request.
    #[error("registry: {0}")]
    Registry(String),
    /// An HTTP client error while seeding.
    #[error("HTTP client: {0}")]
    Http(String),
    /// JSON encoding failed.
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A seeded name (path, repository, tag, chart, version, channel) is not acceptable.
    #[error("invalid name {0:?}")]
    InvalidName(String),
    /// The repository was seeded already.
    #[error("repository {0:?} already exists")]
    AlreadySeeded(String),
}

/// Shared state of the HTTP handlers.
pub(crate) struct FrontsState {
    oracle: Arc<dyn AccessOracle>,
    signer: keys::TokenSigner,
    repos_dir: PathBuf,
    git_bin: PathBuf,
    git_path_env: String,
    helm: helm::HelmStore,
}

/// The running fronts: HTTP handlers for the emulator's router plus the registry child process.
pub struct Fronts {
    state: Arc<FrontsState>,
    registry: registry::RegistryProcess,
    client: reqwest::Client,
}

/// Absolute path of `name` on the current `PATH`.
fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Whether `repository` is a valid lower-case distribution repository name with at least two components.
fn valid_repository(repository: &str) -> bool {
    repository.contains('/')
        && repository.split('/').all(|component| {
            let b = component.as_bytes();
            let sep = |c: u8| matches!(c, b'.' | b'_' | b'-');
            !b.is_empty()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || sep(*c))
                && !sep(b[0])
                && !sep(b[b.len() - 1])
        })
}

/// Whether `tag` is a valid distribution tag (`[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`).
fn valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

impl Fronts {
    /// Generates the token key, starts `docker-registry` on a free port and waits until it answers.
    pub async fn start(cfg: FrontsConfig, oracle: Arc<dyn AccessOracle>) -> Result<Fronts, FrontsError> {
        let git_bin = which("git").ok_or(FrontsError::Tool {
            tool: "git",
            detail: "not found on PATH".into(),
        })?;
        let git_dir = git_bin.parent().map(Path::to_path_buf).unwrap_or_default();
        let git_path_env = format!("{}:/usr/bin:/bin", git_dir.display());
        let repos_dir = cfg.data_dir.join("repos");
        let registry_dir = registry::registry_dir(&cfg.data_dir);
        tokio::fs::create_dir_all(&repos_dir).await?;
        tokio::fs::create_dir_all(&registry_dir).await?;
        let signer = keys::TokenSigner::generate(&registry_dir).await?;
        let realm = format!("{}/jwt/auth", cfg.gitlab_url.trim_end_matches('/'));
        let registry = registry::start(registry::RegistrySetup {
            dir: &registry_dir,
            cert: signer.cert_path(),
            realm: &realm,
        })
        .await?;
        tracing::debug!(host = %registry.host(), kid = %signer.kid(), "docker-registry ready");
        let state = Arc::new(FrontsState {
            oracle,
            signer,
            repos_dir,
            git_bin,
            git_path_env,
            helm: helm::HelmStore::default(),
        });
        Ok(Fronts {
            state,
            registry,
            client: oci_push::plain_http_client()?,
        })
    }

    /// Routes: `GET /jwt/auth`, the Helm index and chart downloads, and a fallback serving git
    /// smart HTTP (JSON 404 for everything else).
    pub fn router(&self) -> Router {
        let not_found = || async { git_http::json_not_found() };
        Router::new()
            .route("/jwt/auth", get(jwt_auth::jwt_auth).fallback(not_found))
            .route(
                "/api/v4/projects/{id}/packages/helm/{channel}/index.yaml",
                get(helm::index).fallback(not_found),
            )
            .route(
                "/api/v4/projects/{id}/packages/helm/{channel}/charts/{file}",
                get(helm::chart).fallback(not_found),
            )
            .fallback(git_http::fallback)
            .with_state(self.state.clone())
    }

    /// The bare repositories, for the REST API's repository endpoints
    /// (`GitLabState::attach_repositories`).
    pub fn repositories(&self) -> crate::gitlab::repos::Repositories {
        crate::gitlab::repos::Repositories::new(&self.state.git_bin, &self.state.repos_dir)
    }

    /// `127.0.0.1:PORT` of the registry.
    pub fn registry_host(&self) -> String {
        self.registry.host()
    }

    /// Creates the bare repository `<full_path>.git` with one deterministic commit on `main`.
    pub async fn seed_repository(&self, full_path: &str) -> Result<(), FrontsError> {
        seed_git::seed(&self.state.git_bin, &self.state.repos_dir, full_path).await?;
        Ok(())
    }

    /// Pushes a one-layer OCI image to `repository:tag` through the registry; returns its digest.
    pub async fn seed_image(&self, repository: &str, tag: &str) -> Result<String, FrontsError> {
        if !valid_repository(repository) || !valid_tag(tag) {
            return Err(FrontsError::InvalidName(format!("{repository}:{tag}")));
        }
        self.pusher().push_image(repository, tag).await
    }

    /// Pushes a Helm chart as an OCI artifact to `<repository>/<name>:<version>`.
    pub async fn seed_oci_chart(
        &self,
        repository: &str,
        name: &str,
        version: &str,
    ) -> Result<(), FrontsError> {
        let full = format!("{repository}/{name}");
        if !valid_repository(&full) || !tarball::valid_chart_name(name) || !tarball::valid_semver(version) {
            return Err(FrontsError::InvalidName(format!("{full}:{version}")));
        }
        let meta = tarball::ChartMeta::seeded(name, version);
        self.pusher().push_chart(&full, &meta).await?;
        Ok(())
    }

    /// Adds chart `name-version.tgz` to the Helm package registry of project `project_id` in `channel`.
    pub fn seed_helm_chart(
        &self,
        project_id: u64,
        channel: &str,
        name: &str,
        version: &str,
    ) -> Result<(), FrontsError> {
        if !helm::valid_channel(channel)
            || !tarball::valid_chart_name(name)
            || !tarball::valid_semver(version)
        {
            return Err(FrontsError::InvalidName(format!("{channel}/{name}-{version}")));
        }
        let meta = tarball::ChartMeta::seeded(name, version);
        let tgz = tarball::chart_tgz(&meta)?;
        self.state
            .helm
            .add(project_id, channel, helm::ChartPackage::new(meta, tgz));
        Ok(())
    }

    /// The bare repositories' directory (`<full_path>.git`), shared with the SSH front.
    pub fn repos_dir(&self) -> PathBuf {
        self.state.repos_dir.clone()
    }

    /// Stops the registry child (it is also killed when `Fronts` is dropped).
    pub async fn shutdown(self) {
        self.registry.stop().await;
    }

    fn pusher(&self) -> oci_push::Pusher<'_> {
        oci_push::Pusher {
            host: self.registry.host(),
            signer: &self.state.signer,
            client: self.client.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_repositories_and_tags_by_table() {
        for (r, ok) in [
            ("acme/team-a/app", true),
            ("acme/app/sub", true),
            ("app", false),
            ("Acme/app", false),
            ("acme//app", false),
            ("acme/-app", false),
        ] {
            assert_eq!(valid_repository(r), ok, "{r}");
        }
        for (t, ok) in [
            ("1.0", true),
            ("latest", true),
            ("_x", true),
            (".x", false),
            ("a:b", false),
            ("", false),
        ] {
            assert_eq!(valid_tag(t), ok, "{t}");
        }
    }
}
