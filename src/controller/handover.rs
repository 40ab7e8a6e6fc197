//! Tokens whose connection is gone for good (an admin removed the `GitLabConnection`'s finalizer):
//! the deleted `GitLabToken` cannot revoke them, so it hands them to the orphan sweep through a
//! ConfigMap in the operator's namespace before it lets go. Every later sweep asks each live
//! connection for those tokens (matched by id *and* by the owner's uid in the token name, so a
//! connection to another GitLab never revokes a stranger's token) and revokes the ones it finds
//! active. An entry leaves the record once a connection confirms the token dead, or after
//! [`KEEP_FOR`], when GitLab's longest token lifetime has passed and the token has expired anyway.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api,
    api::{ObjectMeta, PostParams},
};
use serde::{Deserialize, Serialize};

use super::{context::Context, token::ledger::Location};
use crate::{
    crd::{CredentialKind, Owner},
    gitlab::{GitLabApi, RevokeOutcome},
};

/// The ConfigMap (in the operator's namespace) that holds the handed-over tokens.
pub const HANDOVER_CONFIGMAP: &str = "gitlab-token-operator-handover";

/// The data key holding the entries (a JSON list).
const DATA_KEY: &str = "tokens.json";

/// How long an entry is kept when no connection finds its token: GitLab caps an access token's
/// lifetime at 400 days, so after that the token is dead whatever happened.
pub const KEEP_FOR: Duration = Duration::days(400);

/// How many times a conflicting write of the record is retried.
const WRITE_ATTEMPTS: usize = 5;

/// One token handed to the sweep.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HandedOver {
    /// The connection that minted it (gone).
    pub connection: String,
    /// GitLab id of the credential (token or deploy key).
    pub token_id: u64,
    /// GitLab project id it served (its owner unless `group_id` is set).
    pub project_id: u64,
    /// Kind of credential (records written before kinds are project access tokens).
    #[serde(default, skip_serializing_if = "CredentialKind::is_default")]
    pub kind: CredentialKind,
    /// The group it lives on, for group-level credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<u64>,
    /// Uid of the `GitLabToken` it served: its name in GitLab ends with it.
    pub owner_uid: String,
    /// `namespace/name` of that `GitLabToken`, for people reading the record.
    pub owner: String,
    /// When it was handed over.
    pub since: DateTime<Utc>,
}

impl HandedOver {
    /// The entry for credential `token_id` at `location`, served to `owner` (uid and name).
    pub fn new(
        location: Location,
        token_id: u64,
        owner_uid: &str,
        owner: &str,
        since: DateTime<Utc>,
    ) -> Self {
        Self {
            connection: location.connection,
            token_id,
            project_id: location.project_id,
            kind: location.kind,
            group_id: location.group_id,
            owner_uid: owner_uid.to_string(),
            owner: owner.to_string(),
            since,
        }
    }

    /// The project or group whose endpoints hold the credential.
    pub fn holder(&self) -> Owner {
        Owner::of(self.project_id, self.group_id)
    }

    /// Whether a token GitLab listed is this one: same id, and named for the same owner.
    pub fn matches(&self, id: u64, name: &str) -> bool {
        id == self.token_id && name.ends_with(&format!("-{}", self.owner_uid))
    }

    /// Whether the token must have expired by `now`, found or not.
    pub fn expired(&self, now: DateTime<Utc>) -> bool {
        now - self.since > KEEP_FOR
    }
}

fn api(ctx: &Context) -> Api<ConfigMap> {
    Api::namespaced(ctx.client.clone(), &ctx.config.namespace)
}

fn parse(cm: &ConfigMap) -> Vec<HandedOver> {
    cm.data
        .as_ref()
        .and_then(|d| d.get(DATA_KEY))
        .and_then(|v| serde_json::from_str(v).ok())
        .unwrap_or_default()
}

/// The tokens handed over so far (none when the record does not exist).
pub async fn load(ctx: &Context) -> Result<Vec<HandedOver>, kube::Error> {
    Ok(api(ctx)
        .get_opt(HANDOVER_CONFIGMAP)
        .await?
        .as_ref()
        .map(parse)
        .unwrap_or_default())
}

/// Changes the record with `change` (read, change, conditional write; retried on conflict).
async fn update(ctx: &Context, change: impl Fn(&mut Vec<HandedOver>)) -> Result<(), kube::Error> {
    let api = api(ctx);
    let mut last = None;
    for _ in 0..WRITE_ATTEMPTS {
        let existing = api.get_opt(HANDOVER_CONFIGMAP).await?;
        let mut entries = existing.as_ref().map(parse).unwrap_or_default();
        let before = entries.clone();
        change(&mut entries);
        if existing.is_some() && entries == before {
            return Ok(());
        }
        let json = serde_json::to_string_pretty(&entries).unwrap_or_else(|_| "[]".into());
        let data = BTreeMap::from([(DATA_KEY.to_string(), json)]);
        let result = match existing {
            Some(mut cm) => {
                // The resourceVersion read above makes this a conditional write.
                cm.data = Some(data);
                api.replace(HANDOVER_CONFIGMAP, &PostParams::default(), &cm).await
            }
            None => {
                let cm = ConfigMap {
                    metadata: ObjectMeta {
                        name: Some(HANDOVER_CONFIGMAP.into()),
                        labels: Some(BTreeMap::from([(
                            "app.kubernetes.io/managed-by".to_string(),
                            "gitlab-token-operator".to_string(),
                        )])),
                        ..Default::default()
                    },
                    data: Some(data),
                    ..Default::default()
                };
                api.create(&PostParams::default(), &cm).await
            }
        };
        match result {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => last = Some(kube::Error::Api(s)),
            Err(e) => return Err(e),
        }
    }
    Err(last.expect("a conflict was recorded"))
}

/// Adds `tokens` to the record (idempotent by connection and token id).
pub async fn hand_over(ctx: &Context, tokens: &[HandedOver]) -> Result<(), kube::Error> {
    update(ctx, |entries| {
        for t in tokens {
            if !entries
                .iter()
                .any(|e| e.connection == t.connection && e.token_id == t.token_id)
            {
                entries.push(t.clone());
            }
        }
    })
    .await
}

/// Removes the entries `done` says are settled.
async fn forget(ctx: &Context, done: &[(String, u64)]) -> Result<(), kube::Error> {
    update(ctx, |entries| {
        entries.retain(|e| !done.iter().any(|(c, id)| *c == e.connection && *id == e.token_id));
    })
    .await
}

/// What happened to one handed-over token in a sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A live connection found it active and revoked it.
    Revoked,
    /// A live connection found it already dead.
    Dead,
    /// No live connection found it (another GitLab, or no access): kept for the next sweep.
    NotFound,
}

/// Looks for one handed-over token through `apis` (each a live connection's client) and revokes
/// it where found active.
pub async fn settle_one(entry: &HandedOver, apis: &[(&str, &dyn GitLabApi)]) -> Outcome {
    let holder = entry.holder();
    for (name, api) in apis {
        let listed = match api.list_active_credentials(entry.kind, holder).await {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!(connection = name, %holder, error = %e, "handed-over credential: not listed here");
                continue;
            }
        };
        let Some(found) = listed.iter().find(|t| entry.matches(t.id, &t.name)) else {
            continue;
        };
        if !found.active {
            return Outcome::Dead;
        }
        crate::crash_point!("sweep.before_revoke");
        match api.revoke_credential(entry.kind, holder, found.id).await {
            Ok(RevokeOutcome::Revoked | RevokeOutcome::AlreadyGone) => {
                tracing::info!(connection = name, gone_connection = %entry.connection, %holder, kind = %entry.kind, token_id = entry.token_id, owner = %entry.owner, "revoked a credential handed over by a deleted connection");
                return Outcome::Revoked;
            }
            Err(e) => {
                tracing::warn!(connection = name, token_id = entry.token_id, error = %e, "could not revoke a handed-over credential");
            }
        }
    }
    Outcome::NotFound
}

/// Settles every handed-over token the live connections can reach; returns how many were revoked.
/// Tokens a ledger still records are left to that ledger.
pub async fn sweep(
    ctx: &Context,
    accounted_ids: &std::collections::BTreeSet<u64>,
) -> Result<usize, kube::Error> {
    let entries = load(ctx).await?;
    if entries.is_empty() {
        return Ok(0);
    }
    let live = ctx.connections.all();
    let apis: Vec<(&str, &dyn GitLabApi)> = live
        .iter()
        .map(|c| (c.name.as_str(), c.api.as_ref() as &dyn GitLabApi))
        .collect();
    let now = ctx.now();
    let mut done = Vec::new();
    let mut revoked = 0;
    for entry in entries.iter().filter(|e| !accounted_ids.contains(&e.token_id)) {
        match settle_one(entry, &apis).await {
            Outcome::Revoked => {
                revoked += 1;
                ctx.metrics.revoked("HandedToSweep");
                done.push((entry.connection.clone(), entry.token_id));
            }
            Outcome::Dead => done.push((entry.connection.clone(), entry.token_id)),
            Outcome::NotFound if entry.expired(now) => done.push((entry.connection.clone(), entry.token_id)),
            Outcome::NotFound => {}
        }
    }
    if !done.is_empty() {
        forget(ctx, &done).await?;
    }
    Ok(revoked)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> HandedOver {
        HandedOver {
            connection: "gone".into(),
            token_id: 41,
            project_id: 7,
            kind: CredentialKind::ProjectAccessToken,
            group_id: None,
            owner_uid: "0f8b5a34-1c2d-4e5f-8a9b-0c1d2e3f4a5b".into(),
            owner: "team-a/app".into(),
            since: chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 3, 1, 0, 0, 0).unwrap(),
        }
    }

    #[test]
    fn only_the_same_id_named_for_the_same_owner_matches() {
        let e = entry();
        assert!(e.matches(41, "gto-prod-0f8b5a34-1c2d-4e5f-8a9b-0c1d2e3f4a5b"));
        assert!(
            !e.matches(42, "gto-prod-0f8b5a34-1c2d-4e5f-8a9b-0c1d2e3f4a5b"),
            "another id"
        );
        assert!(
            !e.matches(41, "ci-token"),
            "same id on another GitLab, a stranger's token"
        );
        assert!(
            !e.matches(41, "gto-prod-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"),
            "another owner"
        );
    }

    #[test]
    fn an_entry_outlives_the_longest_token_lifetime_then_goes() {
        let e = entry();
        assert!(!e.expired(e.since + Duration::days(399)));
        assert!(e.expired(e.since + Duration::days(401)));
    }

    #[test]
    fn the_record_round_trips() {
        let json = serde_json::to_string(&vec![entry()]).unwrap();
        let cm = ConfigMap {
            data: Some(BTreeMap::from([(DATA_KEY.to_string(), json)])),
            ..Default::default()
        };
        assert_eq!(parse(&cm), vec![entry()]);
        assert!(parse(&ConfigMap::default()).is_empty());
    }
}
