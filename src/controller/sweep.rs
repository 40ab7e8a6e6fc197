//! The orphan sweep (DESIGN §6.7): per connection, list the active tokens of every project the
//! operator serves and revoke those named with this cluster's marker (`<prefix>-<cluster>-<uid>`)
//! that no `GitLabToken` status accounts for (current, previous or pending). Young tokens are left
//! alone, so a token being issued right now (whose status is not written yet) is never touched.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use chrono::{DateTime, Utc};
use kube::{Api, api::ListParams};

use super::{context::Context, token::observe::token_name_marker};
use crate::{
    crd::GitLabToken,
    gitlab::{AccessToken, GitLabApi, TokenState},
};

/// Tokens younger than this are never swept.
pub const MIN_AGE: Duration = Duration::from_secs(600);

/// What the GitLabTokens account for on one connection.
#[derive(Debug, Default)]
pub struct Accounted {
    /// Project ids served.
    pub projects: BTreeSet<u64>,
    /// Token ids in current/previous.
    pub token_ids: BTreeSet<u64>,
    /// Token names with an issue in flight.
    pub pending_names: BTreeSet<String>,
}

/// Whether `token` is an orphan: our cluster's marker, not accounted for, and old enough.
pub fn is_orphan(token: &AccessToken, marker: &str, accounted: &Accounted, now: DateTime<Utc>) -> bool {
    let ours = token.name.starts_with(marker);
    let old_enough = token
        .created_at
        .is_some_and(|c| (now - c).to_std().is_ok_and(|age| age >= MIN_AGE));
    ours && token.active
        && old_enough
        && !accounted.token_ids.contains(&token.id)
        && !accounted.pending_names.contains(&token.name)
}

/// Collects what every GitLabToken accounts for, per connection name.
fn accounted_by_connection(tokens: &[GitLabToken]) -> BTreeMap<String, Accounted> {
    let mut out: BTreeMap<String, Accounted> = BTreeMap::new();
    for t in tokens {
        let Some(status) = &t.status else { continue };
        let (Some(conn), Some(project)) = (&status.connection, &status.project) else {
            continue;
        };
        let a = out.entry(conn.clone()).or_default();
        a.projects.insert(project.id);
        a.token_ids.extend(status.current.as_ref().map(|c| c.token_id));
        a.token_ids.extend(status.previous.as_ref().map(|p| p.token_id));
        a.pending_names
            .extend(status.pending.as_ref().map(|p| p.token_name.clone()));
    }
    out
}

/// One sweep over every live connection; returns how many tokens were revoked.
pub async fn sweep_once(ctx: &Context) -> Result<usize, kube::Error> {
    let tokens = Api::<GitLabToken>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    let accounted = accounted_by_connection(&tokens);
    let now = ctx.now();
    let mut revoked = 0;
    for conn in ctx.connections.all() {
        let Some(a) = accounted.get(&conn.name) else {
            continue;
        };
        let cluster = conn
            .spec
            .cluster_name
            .clone()
            .unwrap_or_else(|| ctx.config.cluster_name.clone());
        let marker = token_name_marker(&conn.spec.token_name_prefix, &cluster);
        for project in &a.projects {
            let key = project.to_string();
            let listed = match conn
                .api
                .list_project_access_tokens(&key, Some(TokenState::Active))
                .await
            {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(connection = %conn.name, project, error = %e, "orphan sweep could not list tokens");
                    continue;
                }
            };
            for t in listed.iter().filter(|t| is_orphan(t, &marker, a, now)) {
                match conn.api.revoke_project_access_token(&key, t.id).await {
                    Ok(_) => {
                        revoked += 1;
                        ctx.metrics.revoked("Orphaned");
                        tracing::info!(connection = %conn.name, project, token_id = t.id, name = %t.name, "revoked an orphaned token");
                    }
                    Err(e) => {
                        tracing::warn!(token_id = t.id, error = %e, "could not revoke an orphaned token")
                    }
                }
            }
        }
    }
    Ok(revoked)
}

/// Sweeps every `interval` until the process stops.
pub async fn run(ctx: std::sync::Arc<Context>, interval: Duration) {
    loop {
        tokio::time::sleep(interval).await;
        match sweep_once(&ctx).await {
            Ok(n) => tracing::debug!(revoked = n, "orphan sweep done"),
            Err(e) => tracing::warn!(error = %e, "orphan sweep failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn token(id: u64, name: &str, active: bool, created_min_ago: i64, now: DateTime<Utc>) -> AccessToken {
        serde_json::from_value(serde_json::json!({
            "id": id, "name": name, "revoked": !active, "active": active,
            "created_at": (now - chrono::Duration::minutes(created_min_ago)).to_rfc3339(),
            "scopes": ["read_repository"], "user_id": 9
        }))
        .unwrap()
    }

    #[test]
    fn orphan_table() {
        let now = Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap();
        let marker = "gto-prod-";
        let mut a = Accounted::default();
        a.token_ids.insert(1);
        a.pending_names.insert("gto-prod-inflight".into());
        let cases = [
            (
                token(1, "gto-prod-a", true, 60, now),
                false,
                "accounted current/previous",
            ),
            (
                token(2, "gto-prod-b", true, 60, now),
                true,
                "ours, unaccounted, old",
            ),
            (
                token(3, "gto-prod-c", true, 5, now),
                false,
                "too young: may be being issued",
            ),
            (token(4, "gto-prod-d", false, 60, now), false, "already inactive"),
            (
                token(5, "gto-staging-e", true, 60, now),
                false,
                "another cluster's marker",
            ),
            (token(6, "hand-made", true, 60, now), false, "not ours"),
            (
                token(7, "gto-prod-inflight", true, 60, now),
                false,
                "pending issue under that name",
            ),
        ];
        for (t, want, why) in cases {
            assert_eq!(is_orphan(&t, marker, &a, now), want, "{why}");
        }
    }
}
