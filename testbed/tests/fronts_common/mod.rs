//! Shared fixture of the `fronts_*` tests: an in-test [`AccessOracle`] (a test double of the
//! contract, not of any protocol) and a world that serves the fronts' router on a random port.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use testbed::gitlab::access::{AccessOracle, CredentialError, Principal, ProjectAccess};
use testbed::gitlab::fronts::{Fronts, FrontsConfig};

/// A token in the fixture.
struct Token {
    principal: Principal,
    revoked: bool,
    expired: bool,
}

/// A project in the fixture.
struct Project {
    id: u64,
    path: String,
    public: bool,
    archived: bool,
    members: HashMap<u64, u32>,
}

/// Users, tokens with scopes/revoked/expired flags, projects with member levels.
pub struct FixtureOracle {
    tokens: HashMap<String, Token>,
    projects: Vec<Project>,
}

/// User ids of the fixture.
pub const ALICE: u64 = 1; // Developer on acme/team-a/app, Maintainer on acme/old (archived)
pub const RITA: u64 = 2; // Reporter on acme/team-a/app
pub const GINA: u64 = 3; // Guest on acme/team-a/app

/// Project ids of the fixture.
pub const APP: u64 = 10; // acme/team-a/app, private
pub const PUBLIC_LIB: u64 = 11; // acme/public-lib, public, no members
pub const OLD: u64 = 12; // acme/old, private, archived

impl FixtureOracle {
    /// The standard fixture (see the constants and `TOKENS`).
    pub fn standard() -> Self {
        let user = |id: u64| match id {
            ALICE => "alice",
            RITA => "rita",
            _ => "gina",
        };
        let tokens = TOKENS
            .iter()
            .map(|(value, uid, scopes, revoked, expired)| {
                let principal = Principal {
                    user_id: *uid,
                    username: user(*uid).to_owned(),
                    scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
                };
                (
                    (*value).to_owned(),
                    Token {
                        principal,
                        revoked: *revoked,
                        expired: *expired,
                    },
                )
            })
            .collect();
        let projects = vec![
            Project {
                id: APP,
                path: "acme/team-a/app".into(),
                public: false,
                archived: false,
                members: HashMap::from([(ALICE, 30), (RITA, 20), (GINA, 10)]),
            },
            Project {
                id: PUBLIC_LIB,
                path: "acme/public-lib".into(),
                public: true,
                archived: false,
                members: HashMap::new(),
            },
            Project {
                id: OLD,
                path: "acme/old".into(),
                public: false,
                archived: true,
                members: HashMap::from([(ALICE, 40)]),
            },
        ];
        Self { tokens, projects }
    }
}

/// `(token, user, scopes, revoked, expired)`.
pub const TOKENS: &[(&str, u64, &[&str], bool, bool)] = &[
    (
        ALICE_RW,
        ALICE,
        &[
            "read_repository",
            "write_repository",
            "read_registry",
            "write_registry",
            "read_api",
        ],
        false,
        false,
    ),
    (ALICE_REGISTRY_ONLY, ALICE, &["read_registry"], false, false),
    (ALICE_REPO_ONLY, ALICE, &["read_repository"], false, false),
    (
        RITA_READ,
        RITA,
        &["read_repository", "read_registry", "read_api"],
        false,
        false,
    ),
    (GINA_API, GINA, &["api"], false, false),
    (ALICE_REVOKED, ALICE, &["api"], true, false),
    (ALICE_EXPIRED, ALICE, &["api"], false, true),
];

pub const ALICE_RW: &str = "glpat-alice-rw-0000000000";
pub const ALICE_REGISTRY_ONLY: &str = "glpat-alice-registry-0000";
pub const ALICE_REPO_ONLY: &str = "glpat-alice-repo-00000000";
pub const RITA_READ: &str = "glpat-rita-read-000000000";
pub const GINA_API: &str = "glpat-gina-api-0000000000";
pub const ALICE_REVOKED: &str = "glpat-alice-revoked-00000";
pub const ALICE_EXPIRED: &str = "glpat-alice-expired-00000";

impl AccessOracle for FixtureOracle {
    fn authenticate(&self, _username: &str, password: &str) -> Result<Principal, CredentialError> {
        let token = self.tokens.get(password).ok_or(CredentialError::Unknown)?;
        if token.revoked {
            return Err(CredentialError::Revoked);
        }
        if token.expired {
            return Err(CredentialError::Expired);
        }
        Ok(token.principal.clone())
    }

    fn project_access(&self, principal: Option<&Principal>, path_or_id: &str) -> Option<ProjectAccess> {
        let project = self
            .projects
            .iter()
            .find(|p| p.path.eq_ignore_ascii_case(path_or_id) || p.id.to_string() == path_or_id)?;
        let level = principal
            .and_then(|u| project.members.get(&u.user_id))
            .copied()
            .unwrap_or(0);
        (project.public || level > 0).then(|| ProjectAccess {
            project_id: project.id,
            path_with_namespace: project.path.clone(),
            access_level: level,
            public: project.public,
            archived: project.archived,
        })
    }
}

/// A running world: the fronts behind an axum server on 127.0.0.1:<random>.
pub struct World {
    pub fronts: Fronts,
    /// `http://127.0.0.1:PORT` of the emulator (fronts router).
    pub url: String,
    /// `127.0.0.1:PORT` of the emulator.
    pub host: String,
    pub dir: tempfile::TempDir,
}

impl World {
    /// Starts the fronts with the standard fixture; panics loudly if a tool is missing.
    pub async fn start() -> World {
        let dir = tempfile::tempdir().expect("tempdir");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let url = format!("http://{addr}");
        let started = Instant::now();
        let cfg = FrontsConfig {
            data_dir: dir.path().join("data"),
            gitlab_url: url.clone(),
        };
        let fronts = Fronts::start(cfg, Arc::new(FixtureOracle::standard()))
            .await
            .unwrap_or_else(|e| {
                panic!("fronts did not start (is docker-registry/openssl/git installed?): {e}")
            });
        eprintln!("fronts started in {:?}", started.elapsed());
        let app = fronts
            .router()
            .into_make_service_with_connect_info::<SocketAddr>();
        tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        World {
            fronts,
            host: addr.to_string(),
            url,
            dir,
        }
    }

    /// A scratch directory inside the world's temp dir.
    pub fn scratch(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join("scratch").join(name);
        std::fs::create_dir_all(&p).expect("scratch dir");
        p
    }

    /// Path of a seeded bare repository.
    pub fn bare(&self, full_path: &str) -> PathBuf {
        self.dir
            .path()
            .join("data/repos")
            .join(format!("{full_path}.git"))
    }
}

/// Output of a finished command.
pub struct Run {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs a command to completion (async, so the in-process server keeps serving).
pub async fn run(program: &str, args: &[&str], cwd: Option<&Path>, envs: &[(&str, &str)]) -> Run {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args).envs(envs.iter().copied()).kill_on_drop(true);
    if let Some(d) = cwd {
        cmd.current_dir(d);
    }
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{program} {args:?} timed out"))
        .unwrap_or_else(|e| panic!("cannot run {program} (is it installed?): {e}"));
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// base64 of `user:pass`.
pub fn basic(user: &str, pass: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
}

/// An HTTP answer seen by curl.
pub struct CurlReply {
    pub status: u16,
    pub headers: String,
    pub body: Vec<u8>,
}

impl CurlReply {
    /// Body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Body as JSON (panics with the body when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// `curl -s` with extra arguments; does not follow redirects.
pub async fn curl(args: &[&str]) -> CurlReply {
    let dir = tempfile::tempdir().expect("tempdir");
    let body = dir.path().join("body");
    let headers = dir.path().join("headers");
    let (b, h) = (
        body.to_string_lossy().into_owned(),
        headers.to_string_lossy().into_owned(),
    );
    let mut all = vec!["-sS", "-o", &b, "-D", &h, "-w", "%{http_code}"];
    all.extend_from_slice(args);
    let r = run("curl", &all, None, &[]).await;
    assert!(r.ok, "curl {args:?} failed: {}", r.stderr);
    CurlReply {
        status: r.stdout.trim().parse().expect("status code"),
        headers: std::fs::read_to_string(&headers).unwrap_or_default(),
        body: std::fs::read(&body).unwrap_or_default(),
    }
}
