//! The token invariants of issue 9, checked against GitLab's state and the GitLabTokens' status:
//! every active token with this cluster's marker is accounted for by some status; no two active
//! tokens for one GitLabToken outside an open overlap; every Ready GitLabToken's Secret holds a
//! live token that works with real git; GitLab's reuse detection never fired.
//!
//! "Accounted for" reads the status as JSON and takes every `tokenId` outside `history`, so the
//! checks hold for today's `current`/`previous` as for a ledger of entries.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, ResourceExt};
use testbed::gitlab::TokenRecord;

use super::{
    lifecycle::{credentials, secret_token_id},
    *,
};

/// Name prefix of every token this cluster's operator mints (`<prefix>-<cluster>-`).
pub const MARKER: &str = "gto-e2e-";

/// One GitLabToken as the invariants see it.
#[derive(Debug, Clone)]
pub struct Account {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Uid (the token name suffix).
    pub uid: String,
    /// Every token id its status names outside `history`.
    pub ids: BTreeSet<u64>,
    /// Whether an overlap is open (a previous token still to retire).
    pub overlap_open: bool,
    /// Whether `Ready=True`.
    pub ready: bool,
    /// The Secret it writes.
    pub secret: String,
}

/// Every `tokenId` in `v`, skipping `history`.
fn token_ids(v: &Value, out: &mut BTreeSet<u64>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                if k == "history" {
                    continue;
                }
                if k == "tokenId"
                    && let Some(id) = v.as_u64()
                {
                    out.insert(id);
                }
                token_ids(v, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|v| token_ids(v, out)),
        _ => {}
    }
}

/// Whether the status shows an overlap in progress: `previous` set, or a ledger entry whose
/// state or role names a previous / retiring token.
fn overlap_open(status: &Value) -> bool {
    if status.get("previous").is_some_and(|p| !p.is_null()) {
        return true;
    }
    fn walk(v: &Value) -> bool {
        match v {
            Value::Object(m) => m.iter().any(|(k, v)| {
                k != "history"
                    && ((matches!(k.as_str(), "state" | "role" | "phase")
                        && v.as_str().is_some_and(|s| {
                            let s = s.to_ascii_lowercase();
                            s.contains("previous") || s.contains("retir") || s.contains("overlap")
                        }))
                        || walk(v))
            }),
            Value::Array(a) => a.iter().any(walk),
            _ => false,
        }
    }
    walk(status)
}

impl Env {
    /// Every GitLabToken in the cluster as the invariants see it.
    pub async fn accounts(&self) -> Vec<Account> {
        let api: Api<GitLabToken> = Api::all(self.client.clone());
        let list = api
            .list(&Default::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        list.into_iter()
            .map(|t| {
                let status = serde_json::to_value(&t.status).unwrap_or(Value::Null);
                let mut ids = BTreeSet::new();
                token_ids(&status, &mut ids);
                Account {
                    namespace: t.namespace().unwrap_or_default(),
                    name: t.name_any(),
                    uid: t.uid().unwrap_or_default(),
                    ids,
                    overlap_open: overlap_open(&status),
                    ready: t.status.as_ref().is_some_and(|s| {
                        gitlab_token_operator::controller::conditions::is_ready(&s.conditions)
                    }),
                    secret: t.spec.secret.name.clone(),
                }
            })
            .collect()
    }

    /// Active project tokens carrying this cluster's marker.
    pub fn active_marker_tokens(&self) -> Vec<TokenRecord> {
        self.world
            .gitlab
            .tokens()
            .into_iter()
            .filter(|t| t.kind == "project" && t.name.starts_with(MARKER) && t.state == "active")
            .collect()
    }

    /// Violations of the invariants that need no consumer (see the module docs), limited to
    /// tokens named for `uids` (all when `None`).
    pub async fn ledger_violations(&self, uids: Option<&[String]>) -> Vec<String> {
        let accounts = self.accounts().await;
        let accounted: BTreeSet<u64> = accounts.iter().flat_map(|a| a.ids.iter().copied()).collect();
        let by_uid: BTreeMap<&str, &Account> = accounts.iter().map(|a| (a.uid.as_str(), a)).collect();
        let in_scope = |uid: &str| uids.is_none_or(|u| u.iter().any(|x| x == uid));
        let mut out = Vec::new();
        let mut per_uid: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for t in self.active_marker_tokens() {
            let uid = t.name.trim_start_matches(MARKER).to_string();
            if !in_scope(&uid) {
                continue;
            }
            if !accounted.contains(&t.id) {
                out.push(format!(
                    "active token {} ({}) on {:?} is accounted for by no GitLabToken status",
                    t.id, t.name, t.resource
                ));
            }
            per_uid.entry(uid).or_default().push(t.id);
        }
        for (uid, ids) in &per_uid {
            let allowed = match by_uid.get(uid.as_str()) {
                Some(a) if a.overlap_open => 2,
                _ => 1,
            };
            if ids.len() > allowed {
                out.push(format!(
                    "{} active tokens {ids:?} for GitLabToken uid {uid} (allowed {allowed})",
                    ids.len()
                ));
            }
        }
        let detections = self.world.gitlab.state().reuse_detections();
        if !detections.is_empty() {
            out.push(format!("GitLab's reuse detection fired: {detections:?}"));
        }
        out
    }

    /// Why the Ready GitLabToken `ns/name` is not served by a live token in its Secret (None:
    /// it is); `None` also needs the Secret's token to be one its status accounts for.
    pub async fn secret_problem(&self, ns: &str, name: &str) -> Option<String> {
        let accounts = self.accounts().await;
        let Some(a) = accounts.iter().find(|a| a.namespace == ns && a.name == name) else {
            return Some(format!("GitLabToken {ns}/{name} does not exist"));
        };
        if !a.ready {
            return Some(format!("GitLabToken {ns}/{name} is not Ready"));
        }
        let api: Api<Secret> = Api::namespaced(self.client.clone(), ns);
        let Ok(Some(secret)) = api.get_opt(&a.secret).await else {
            return Some(format!("Secret {ns}/{} is missing", a.secret));
        };
        let Some(id) = secret_token_id(&secret) else {
            return Some(format!("Secret {ns}/{} announces no token id", a.secret));
        };
        let state = self
            .world
            .gitlab
            .tokens()
            .into_iter()
            .find(|t| t.id == id && t.kind == "project")
            .map(|t| t.state);
        if state.as_deref() != Some("active") {
            return Some(format!(
                "Secret {ns}/{} holds token {id}, which GitLab reports {state:?}",
                a.secret
            ));
        }
        if !a.ids.contains(&id) {
            return Some(format!(
                "Secret {ns}/{} holds token {id}, which the status does not account for ({:?})",
                a.secret, a.ids
            ));
        }
        None
    }

    /// Runs `git ls-remote` against `project` with the credentials in Secret `ns/name`.
    pub async fn secret_works_with_git(&self, ns: &str, secret: &str, project: &str) -> Result<(), String> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), ns);
        let s = api
            .get_opt(secret)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("Secret {ns}/{secret} is missing"))?;
        let (user, pass) = credentials(&s);
        let url = format!("{}/{project}.git", self.world.gitlab_url());
        git_ls_remote(&url, &user, &pass).await
    }

    /// Polls until `check` returns no problems, up to `within`; `Err` carries the last problems.
    pub async fn settle<F, Fut>(&self, within: Duration, mut check: F) -> Result<Duration, Vec<String>>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Vec<String>>,
    {
        let started = tokio::time::Instant::now();
        loop {
            let problems = check().await;
            if problems.is_empty() {
                return Ok(started.elapsed());
            }
            if started.elapsed() >= within {
                return Err(problems);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// A background check, every 200 ms, of what must hold at every moment (not only at the end):
/// no more than two active tokens for one GitLabToken, and no Ready GitLabToken whose Secret holds
/// a dead token (the Secret is read before and after GitLab's state and must be unchanged).
pub struct Monitor {
    violations: std::sync::Arc<std::sync::Mutex<BTreeSet<String>>>,
    max_active: std::sync::Arc<std::sync::Mutex<usize>>,
    task: tokio::task::JoinHandle<()>,
}

impl Monitor {
    /// Starts watching the world of `env`.
    pub fn start(env: &Env) -> Monitor {
        let violations = std::sync::Arc::new(std::sync::Mutex::new(BTreeSet::new()));
        let max_active = std::sync::Arc::new(std::sync::Mutex::new(0usize));
        let (v2, m2) = (violations.clone(), max_active.clone());
        let client = env.client.clone();
        let gitlab = env.world.gitlab.state();
        let task = tokio::spawn(async move {
            let tokens: Api<GitLabToken> = Api::all(client.clone());
            let secrets: Api<Secret> = Api::all(client.clone());
            loop {
                let Ok(list) = tokens.list(&Default::default()).await else {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                };
                let before = secrets
                    .list(&Default::default())
                    .await
                    .map(|l| l.items)
                    .unwrap_or_default();
                let states = gitlab.tokens();
                let after = secrets
                    .list(&Default::default())
                    .await
                    .map(|l| l.items)
                    .unwrap_or_default();
                let mut per_uid: BTreeMap<String, usize> = BTreeMap::new();
                for t in states
                    .iter()
                    .filter(|t| t.kind == "project" && t.name.starts_with(MARKER) && t.state == "active")
                {
                    *per_uid.entry(t.name.clone()).or_default() += 1;
                }
                let most = per_uid.values().copied().max().unwrap_or(0);
                if let Ok(mut m) = m2.lock() {
                    *m = (*m).max(most);
                }
                let mut found = Vec::new();
                for (name, n) in &per_uid {
                    if *n > 2 {
                        found.push(format!("{n} active tokens named {name} at once"));
                    }
                }
                for t in &list.items {
                    let ready = t.status.as_ref().is_some_and(|s| {
                        gitlab_token_operator::controller::conditions::is_ready(&s.conditions)
                    });
                    let ns = t.namespace().unwrap_or_default();
                    let find = |l: &[Secret]| {
                        l.iter()
                            .find(|s| {
                                s.namespace().as_deref() == Some(ns.as_str())
                                    && s.name_any() == t.spec.secret.name
                            })
                            .map(|s| (s.resource_version(), secret_token_id(s)))
                    };
                    let (Some((rv1, Some(id))), Some((rv2, _))) = (find(&before), find(&after)) else {
                        continue;
                    };
                    let dead = states
                        .iter()
                        .find(|s| s.id == id && s.kind == "project")
                        .is_some_and(|s| s.state != "active");
                    // Ready read before the Secrets: re-read it to be sure it was Ready throughout.
                    if ready && dead && rv1 == rv2 {
                        let still_ready = Api::<GitLabToken>::namespaced(client.clone(), &ns)
                            .get_opt(&t.name_any())
                            .await
                            .ok()
                            .flatten()
                            .and_then(|t| t.status)
                            .is_some_and(|s| {
                                gitlab_token_operator::controller::conditions::is_ready(&s.conditions)
                            });
                        if still_ready {
                            found.push(format!(
                                "GitLabToken {ns}/{} Ready while its Secret holds dead token {id}",
                                t.name_any()
                            ));
                        }
                    }
                }
                if let Ok(mut v) = v2.lock() {
                    v.extend(found);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        Monitor {
            violations,
            max_active,
            task,
        }
    }

    /// What was seen to be violated so far.
    pub fn violations(&self) -> Vec<String> {
        self.violations
            .lock()
            .map(|v| v.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The most active tokens seen at once for one GitLabToken.
    pub fn max_active_per_token(&self) -> usize {
        self.max_active.lock().map(|m| *m).unwrap_or(0)
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.task.abort();
    }
}
