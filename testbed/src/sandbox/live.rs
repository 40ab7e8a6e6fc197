//! The live view: polls GitLabTokens, managed Secrets, Flux sources and GitLab's token table and
//! prints every transition (issued, rotated, refused, written, Ready, revoked) as it happens.
//!
//! States the story expects on the way are labelled so: a Flux source that fails before its token
//! is issued, or before it has re-read a new Secret after the operator's nudge, and the refusal of
//! the source the demo asks to be denied. A failure after that is printed as a failure.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};

use k8s_openapi::api::{core::v1::Secret, events::v1::Event};
use kube::{
    Api, Client, ResourceExt,
    api::{ApiResource, DynamicObject, ListParams},
};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::{
    sync::{mpsc, oneshot, watch},
    task::JoinHandle,
};

use super::{
    setup::{condition, token_resource},
    view::View,
};
use crate::flux::status::REQUESTED_AT;
use crate::gitlab::GitLabState;

/// What the live view watches.
pub struct LiveView {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    sync: mpsc::UnboundedSender<oneshot::Sender<()>>,
}

/// A handle that waits until the live view has taken a fresh look.
#[derive(Clone)]
pub struct LiveSync(mpsc::UnboundedSender<oneshot::Sender<()>>);

impl LiveSync {
    /// Returns once a poll that started after this call has printed its transitions (at most 5 s).
    pub async fn sync(&self) {
        let (tx, rx) = oneshot::channel();
        if self.0.send(tx).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(5), rx).await;
        }
    }
}

#[derive(Default)]
struct Seen {
    tokens: BTreeMap<String, (Option<u64>, String)>,
    secrets: BTreeMap<String, String>,
    sources: BTreeMap<String, (String, Option<String>)>,
    gitlab: BTreeMap<u64, String>,
    events: BTreeSet<String>,
    /// GitLabTokens (`ns/name`) seen Ready at least once.
    ready_seen: BTreeSet<String>,
    /// GitLabTokens the story expects to be refused.
    expected_refusals: BTreeSet<String>,
}

impl LiveView {
    /// Starts polling every 200 ms; `sources` are the Flux kinds to follow, `marker` the name
    /// prefix of the operator's tokens in GitLab, `expected_refusals` the GitLabTokens
    /// (`ns/name`) the story expects to be refused.
    pub fn start(
        client: Client,
        gitlab: Arc<GitLabState>,
        view: Arc<View>,
        sources: Vec<ApiResource>,
        marker: String,
        expected_refusals: Vec<String>,
    ) -> Self {
        let (stop, mut stopped) = watch::channel(false);
        let (sync, mut requests) = mpsc::unbounded_channel::<oneshot::Sender<()>>();
        let task = tokio::spawn(async move {
            let mut seen = Seen {
                expected_refusals: expected_refusals.into_iter().collect(),
                ..Seen::default()
            };
            let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
            loop {
                poll(&client, &gitlab, &view, &sources, &marker, &mut seen).await;
                for w in waiting.drain(..) {
                    let _ = w.send(());
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    Some(w) = requests.recv() => waiting.push(w),
                    _ = stopped.changed() => break,
                }
            }
            // One last look so that what happened just before the stop is shown.
            poll(&client, &gitlab, &view, &sources, &marker, &mut seen).await;
        });
        Self { stop, task, sync }
    }

    /// A handle to bring the view up to date on demand.
    pub fn syncer(&self) -> LiveSync {
        LiveSync(self.sync.clone())
    }

    /// Takes a last look and stops.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

async fn poll(
    client: &Client,
    gitlab: &GitLabState,
    view: &View,
    sources: &[ApiResource],
    marker: &str,
    seen: &mut Seen,
) {
    poll_gitlab(gitlab, view, marker, seen);
    poll_tokens(client, view, seen).await;
    poll_secrets(client, view, seen).await;
    poll_events(client, view, seen).await;
    for resource in sources {
        poll_sources(client, resource, view, seen).await;
    }
}

fn poll_gitlab(gitlab: &GitLabState, view: &View, marker: &str, seen: &mut Seen) {
    for t in gitlab.tokens() {
        if t.kind != "project" || !t.name.starts_with(marker) {
            continue;
        }
        let resource = t.resource.clone().unwrap_or_default();
        let before = seen.gitlab.insert(t.id, t.state.clone());
        if before.as_deref() == Some(t.state.as_str()) {
            continue;
        }
        let text = match (before.as_deref(), t.state.as_str()) {
            (None, "active") => format!(
                "token #{} created on {resource} (bot {}, scopes {}, expires {})",
                t.id,
                t.username,
                t.scopes.join(","),
                t.expires_at.as_deref().unwrap_or("never")
            ),
            (_, state) => format!("token #{} on {resource} is now {state}", t.id),
        };
        view.event("gitlab", &text);
    }
}

async fn poll_tokens(client: &Client, view: &View, seen: &mut Seen) {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &token_resource());
    let Ok(list) = api.list(&ListParams::default()).await else {
        return;
    };
    let mut present = Vec::new();
    for t in list.items {
        let key = format!("{}/{}", t.namespace().unwrap_or_default(), t.name_any());
        present.push(key.clone());
        let id = t.data.pointer("/status/current/tokenId").and_then(Value::as_u64);
        let ready = condition(&t.data, "Ready");
        let ready_key = ready
            .map(|c| {
                format!(
                    "{}/{}",
                    c["status"].as_str().unwrap_or(""),
                    c["reason"].as_str().unwrap_or("")
                )
            })
            .unwrap_or_default();
        if ready.is_some_and(|c| c["status"] == "True") {
            seen.ready_seen.insert(key.clone());
        }
        let before = seen.tokens.insert(key.clone(), (id, ready_key.clone()));
        let (old_id, old_ready) = before.unwrap_or_default();
        if id != old_id
            && let Some(id) = id
        {
            let project = t
                .data
                .pointer("/status/project/path")
                .and_then(Value::as_str)
                .unwrap_or("?");
            let expires = t
                .data
                .pointer("/status/current/expiresAt")
                .and_then(Value::as_str)
                .unwrap_or("?");
            let renews = t
                .data
                .pointer("/status/renewalTime")
                .and_then(Value::as_str)
                .unwrap_or("?");
            let what = match old_id {
                Some(old) => format!("{key} rotated #{old} → #{id}"),
                None => format!("{key} issued #{id}"),
            };
            view.event(
                "token",
                &format!("{what} for {project}, expires {expires}, renews at {renews}"),
            );
        }
        if ready_key != old_ready
            && let Some(c) = ready
            && c["status"] != "True"
        {
            let reason = c["reason"].as_str().unwrap_or("");
            let message = c["message"].as_str().unwrap_or("");
            let what = if seen.expected_refusals.contains(&key) {
                "refused, as this demo expects"
            } else {
                "not ready"
            };
            view.event("token", &format!("{key} {what}: {reason}: {message}"));
        }
    }
    let gone: Vec<String> = seen
        .tokens
        .keys()
        .filter(|k| !present.contains(k))
        .cloned()
        .collect();
    for key in gone {
        seen.tokens.remove(&key);
        view.event("token", &format!("{key} deleted"));
    }
}

async fn poll_events(client: &Client, view: &View, seen: &mut Seen) {
    let api: Api<Event> = Api::all(client.clone());
    let Ok(list) = api.list(&ListParams::default()).await else {
        return;
    };
    for e in list.items {
        let Some(regarding) = e
            .regarding
            .as_ref()
            .filter(|r| r.kind.as_deref() == Some("GitLabToken"))
        else {
            continue;
        };
        let count = e.series.as_ref().map(|s| s.count).unwrap_or(1);
        let key = format!("{}#{count}", e.metadata.uid.as_deref().unwrap_or_default());
        if !seen.events.insert(key) {
            continue;
        }
        let object = format!(
            "{}/{}",
            regarding.namespace.as_deref().unwrap_or(""),
            regarding.name.as_deref().unwrap_or("")
        );
        let expected = if e.type_.as_deref() == Some("Warning") && seen.expected_refusals.contains(&object) {
            ", as this demo expects"
        } else {
            ""
        };
        view.event(
            "event",
            &format!(
                "{} {} on {object}{expected}: {}",
                e.type_.as_deref().unwrap_or(""),
                e.reason.as_deref().unwrap_or(""),
                e.note.as_deref().unwrap_or("")
            ),
        );
    }
}

/// A digest of a Secret's data (to notice rewrites without ever printing values).
fn data_digest(secret: &Secret) -> String {
    let mut hasher = Sha256::new();
    for (k, v) in secret.data.iter().flatten() {
        hasher.update(k.as_bytes());
        hasher.update([0]);
        hasher.update(&v.0);
        hasher.update([0]);
    }
    format!("{:x}", hasher.finalize())
}

async fn poll_secrets(client: &Client, view: &View, seen: &mut Seen) {
    let api: Api<Secret> = Api::all(client.clone());
    let params = ListParams::default().labels("app.kubernetes.io/managed-by=gitlab-token-operator");
    let Ok(list) = api.list(&params).await else {
        return;
    };
    let mut present = Vec::new();
    for s in list.items {
        let key = format!("{}/{}", s.namespace().unwrap_or_default(), s.name_any());
        present.push(key.clone());
        let digest = data_digest(&s);
        let before = seen.secrets.insert(key.clone(), digest.clone());
        if before.as_deref() == Some(digest.as_str()) {
            continue;
        }
        let keys: Vec<&str> = s.data.iter().flatten().map(|(k, _)| k.as_str()).collect();
        let token_id = s
            .annotations()
            .get("gitlabtokens.io/token-id")
            .map(String::as_str)
            .unwrap_or("?");
        let verb = if before.is_some() { "rewritten" } else { "written" };
        view.event(
            "secret",
            &format!(
                "{key} {verb}: type {}, keys [{}], token #{token_id}",
                s.type_.as_deref().unwrap_or("Opaque"),
                keys.join(", ")
            ),
        );
    }
    let gone: Vec<String> = seen
        .secrets
        .keys()
        .filter(|k| !present.contains(k))
        .cloned()
        .collect();
    for key in gone {
        seen.secrets.remove(&key);
        view.event("secret", &format!("{key} deleted"));
    }
}

async fn poll_sources(client: &Client, resource: &ApiResource, view: &View, seen: &mut Seen) {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), resource);
    let Ok(list) = api.list(&ListParams::default()).await else {
        return;
    };
    for o in list.items {
        let key = format!(
            "{} {}/{}",
            resource.kind,
            o.namespace().unwrap_or_default(),
            o.name_any()
        );
        let ready = condition(&o.data, "Ready")
            .map(|c| {
                format!(
                    "Ready={} {}: {}",
                    c["status"].as_str().unwrap_or(""),
                    c["reason"].as_str().unwrap_or(""),
                    c["message"].as_str().unwrap_or("")
                )
            })
            .unwrap_or_default();
        let secret_ref = o
            .data
            .pointer("/spec/secretRef/name")
            .and_then(Value::as_str)
            .map(str::to_string);
        let (old_ready, old_ref) = seen
            .sources
            .insert(key.clone(), (ready.clone(), secret_ref.clone()))
            .unwrap_or_default();
        if secret_ref != old_ref
            && let Some(name) = &secret_ref
        {
            view.event("flux", &format!("{key} spec.secretRef → {name}"));
        }
        if ready != old_ready && !ready.is_empty() {
            let token = format!(
                "{}/{}",
                o.namespace().unwrap_or_default(),
                secret_ref
                    .clone()
                    .unwrap_or_else(|| format!("{}-gitlab-token", o.name_any()))
            );
            let text = match ready.strip_prefix("Ready=False ") {
                Some(failure) => match expected_failure(&o.data, &token, seen) {
                    Some(why) => format!("{key} {why}: {failure}"),
                    None => format!("{key} {ready}"),
                },
                None => format!("{key} {ready}"),
            };
            view.event("flux", &text);
        }
    }
}

/// How to label a failing Flux source that is expected to fail at this point of the story, if it
/// is: its token is refused on purpose, not issued yet, or Flux has not handled the operator's
/// nudge to re-read the new Secret yet.
fn expected_failure(source: &Value, token: &str, seen: &Seen) -> Option<&'static str> {
    if seen.expected_refusals.contains(token) {
        return Some("not ready, as this demo expects (its token is refused)");
    }
    if !seen.ready_seen.contains(token) {
        return Some("not ready yet, as expected before its token is issued");
    }
    let requested = source
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(REQUESTED_AT))
        .and_then(Value::as_str);
    let handled = source
        .pointer("/status/lastHandledReconcileAt")
        .and_then(Value::as_str);
    (requested.is_some() && requested != handled)
        .then_some("not ready yet, as expected until Flux re-reads the new Secret")
}
