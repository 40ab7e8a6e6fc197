//! The Debian `docker-registry` (Distribution 2.8) child process with token auth whose realm is
//! the emulator's `/jwt/auth`: config, free port, readiness wait, log capture.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use super::FrontsError;
use super::keys::{ISSUER, SERVICE};

/// How long the registry may take to answer `/v2/`.
const READY_DEADLINE: Duration = Duration::from_secs(15);
/// How often readiness is polled.
const POLL_INTERVAL: Duration = Duration::from_millis(15);
/// Attempts with a fresh port if the registry dies before it is ready (port taken meanwhile).
const START_ATTEMPTS: usize = 3;

/// A running registry child; killed on drop.
pub(crate) struct RegistryProcess {
    child: Child,
    port: u16,
}

impl RegistryProcess {
    /// `127.0.0.1:PORT` of the registry.
    pub(crate) fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the registry and reaps it.
    pub(crate) async fn stop(mut self) {
        if let Err(e) = self.child.kill().await {
            tracing::warn!(error = %e, "killing docker-registry failed");
        }
    }
}

/// Paths and settings the registry is started with.
pub(crate) struct RegistrySetup<'a> {
    /// Directory for config, storage and log.
    pub dir: &'a Path,
    /// PEM certificate of the token signing key.
    pub cert: &'a Path,
    /// Token realm (`<gitlab_url>/jwt/auth`).
    pub realm: &'a str,
}

/// Renders the registry's `config.yml`.
fn config_yaml(setup: &RegistrySetup<'_>, port: u16, secret: &str) -> String {
    let q = |s: &str| serde_json::Value::String(s.to_owned()).to_string();
    format!(
        "version: 0.1\n\
         log: {{level: info, fields: {{service: registry}}}}\n\
         storage:\n  filesystem: {{rootdirectory: {storage}}}\n  delete: {{enabled: true}}\n\
         http:\n  addr: 127.0.0.1:{port}\n  secret: {secret}\n  headers: {{X-Content-Type-Options: [nosniff]}}\n\
         auth:\n  token:\n    realm: {realm}\n    service: {service}\n    issuer: {issuer}\n    rootcertbundle: {cert}\n",
        storage = q(&setup.dir.join("storage").to_string_lossy()),
        secret = q(secret),
        realm = q(setup.realm),
        service = q(SERVICE),
        issuer = q(ISSUER),
        cert = q(&setup.cert.to_string_lossy()),
    )
}

/// A port that was free a moment ago on 127.0.0.1.
fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Starts the registry and waits until `/v2/` answers.
pub(crate) async fn start(setup: RegistrySetup<'_>) -> Result<RegistryProcess, FrontsError> {
    let mut last_error = None;
    for _ in 0..START_ATTEMPTS {
        match start_once(&setup).await {
            Ok(p) => return Ok(p),
            Err(e @ FrontsError::RegistryExited { .. }) => last_error = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last_error.unwrap_or(FrontsError::RegistryNotReady {
        log: setup.dir.join("registry.log"),
    }))
}

async fn start_once(setup: &RegistrySetup<'_>) -> Result<RegistryProcess, FrontsError> {
    let port = free_port()?;
    let secret = uuid::Uuid::new_v4().simple().to_string();
    let config_path = setup.dir.join("config.yml");
    tokio::fs::write(&config_path, config_yaml(setup, port, &secret)).await?;
    let log_path = setup.dir.join("registry.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)?;
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&config_path)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| FrontsError::Tool {
            tool: "docker-registry",
            detail: e.to_string(),
        })?;
    let mut process = RegistryProcess { child, port };
    wait_ready(&mut process, setup.realm, &log_path).await?;
    Ok(process)
}

async fn wait_ready(process: &mut RegistryProcess, realm: &str, log: &Path) -> Result<(), FrontsError> {
    let url = format!("http://{}/v2/", process.host());
    let expected = format!("realm=\"{realm}\"");
    let client = super::oci_push::plain_http_client()?;
    let deadline = Instant::now() + READY_DEADLINE;
    loop {
        if let Some(status) = process.child.try_wait()? {
            return Err(FrontsError::RegistryExited {
                status: status.to_string(),
                log: log.to_path_buf(),
            });
        }
        // Ours, not another registry that grabbed the port meanwhile: the challenge names our realm.
        if let Ok(resp) = client.get(&url).send().await
            && resp
                .headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains(&expected))
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(FrontsError::RegistryNotReady {
                log: log.to_path_buf(),
            });
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Directory layout under `data_dir` for the registry.
pub(crate) fn registry_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("registry")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_quotes_paths_and_sets_token_auth() {
        let setup = RegistrySetup {
            dir: Path::new("/tmp/x y"),
            cert: Path::new("/tmp/x y/c.crt"),
            realm: "http://127.0.0.1:9/jwt/auth",
        };
        let yaml = config_yaml(&setup, 5055, "s3");
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&yaml).unwrap();
        assert_eq!(v["http"]["addr"].as_str(), Some("127.0.0.1:5055"));
        assert_eq!(
            v["storage"]["filesystem"]["rootdirectory"].as_str(),
            Some("/tmp/x y/storage")
        );
        assert_eq!(
            v["auth"]["token"]["realm"].as_str(),
            Some("http://127.0.0.1:9/jwt/auth")
        );
        assert_eq!(v["auth"]["token"]["service"].as_str(), Some("container_registry"));
        assert_eq!(v["auth"]["token"]["issuer"].as_str(), Some("gitlab-issuer"));
        assert_eq!(
            v["auth"]["token"]["rootcertbundle"].as_str(),
            Some("/tmp/x y/c.crt")
        );
    }
}
