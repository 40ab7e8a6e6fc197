//! The orphan sweep (DESIGN §6.7): per connection, list the active tokens of every project any
//! ledger names (or named since this process started) and revoke those named with this cluster's
//! marker (`<prefix>-<cluster>-<uid>`) that no ledger accounts for (current, previous, revoking,
//! or pending by name). Young tokens are left alone, so a token being issued right now (whose
//! status is not written yet) is never touched. Tokens of deleted `GitLabToken`s are orphans too,
//! unless a policy on the connection allows `deletionPolicy: Retain` (then they may be retained).
//! Tokens handed over by a deleted `GitLabToken` whose connection was gone are settled here too
//! ([`super::handover`]).

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use chrono::{DateTime, Utc};
use kube::{Api, ResourceExt, api::ListParams};

use super::{
    context::Context,
    token::{ledger, observe::token_name_marker},
};
use crate::{
    crd::{CredentialKind, GitLabConnection, GitLabToken, Owner},
    gitlab::{CredentialRecord, GitLabApi},
};

/// Tokens younger than this are never swept.
pub const MIN_AGE: Duration = Duration::from_secs(600);

/// What the GitLabTokens account for on one connection.
#[derive(Debug, Default)]
pub struct Accounted {
    /// Uids of the GitLabTokens that exist.
    pub uids: BTreeSet<String>,
    /// Project ids served.
    pub projects: BTreeSet<u64>,
    /// Where credentials of the other kinds (deploy keys, deploy tokens, group tokens) live.
    pub places: BTreeSet<(CredentialKind, Owner)>,
    /// Token ids in current/previous.
    pub token_ids: BTreeSet<u64>,
    /// Token names with an issue in flight.
    pub pending_names: BTreeSet<String>,
}

/// Whether `token` is an orphan: named `<marker><uid>` (so another cluster whose name merely
/// starts like ours is never touched), not accounted for by any ledger, and old enough. With
/// `retain_possible`, a token whose GitLabToken is gone may have been retained and is spared.
pub fn is_orphan(
    token: &CredentialRecord,
    marker: &str,
    accounted: &Accounted,
    retain_possible: bool,
    now: DateTime<Utc>,
) -> bool {
    let ours = token
        .name
        .strip_prefix(marker)
        .is_some_and(|uid| is_uid(uid) && (accounted.uids.contains(uid) || !retain_possible));
    let old_enough = token
        .created_at
        .is_some_and(|c| (now - c).to_std().is_ok_and(|age| age >= MIN_AGE));
    ours && token.active
        && old_enough
        && !accounted.token_ids.contains(&token.id)
        && !accounted.pending_names.contains(&token.name)
}

/// Whether `s` is a Kubernetes uid (RFC 4122 text form).
fn is_uid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Collects what every ledger accounts for, per connection name. Token ids and pending names
/// count on every connection (ids are unique per GitLab; a token is never revoked for being
/// recorded under another connection name of the same GitLab).
pub fn accounted_by_connection(tokens: &[GitLabToken]) -> BTreeMap<String, Accounted> {
    let mut out: BTreeMap<String, Accounted> = BTreeMap::new();
    let mut everywhere = Accounted::default();
    for t in tokens {
        let Some(original) = &t.status else { continue };
        let mut status = original.clone();
        ledger::backfill_locations(&mut status);
        everywhere.uids.extend(t.metadata.uid.clone());
        everywhere.token_ids.extend(ledger::token_ids(&status));
        everywhere
            .pending_names
            .extend(status.pending.as_ref().map(|p| p.token_name.clone()));
        for at in ledger::locations(&status) {
            let a = out.entry(at.connection.clone()).or_default();
            match at.kind {
                CredentialKind::ProjectAccessToken if at.group_id.is_none() => {
                    a.projects.insert(at.project_id);
                }
                kind => {
                    a.places.insert((kind, at.owner()));
                }
            }
        }
        if let (Some(conn), Some(project)) = (&status.connection, &status.project) {
            out.entry(conn.clone()).or_default().projects.insert(project.id);
        }
    }
    for a in out.values_mut() {
        a.uids.clone_from(&everywhere.uids);
        a.token_ids.clone_from(&everywhere.token_ids);
        a.pending_names.clone_from(&everywhere.pending_names);
    }
    out
}

/// Every ledger's token ids, pending names and object uids, whatever the connection.
fn accounted_everywhere(tokens: &[GitLabToken]) -> Accounted {
    accounted_by_connection(tokens)
        .into_values()
        .next()
        .map(|a| Accounted {
            projects: BTreeSet::new(),
            places: BTreeSet::new(),
            ..a
        })
        .unwrap_or_default()
}

/// Annotation on a `GitLabConnection` with the project ids its tokens were ever minted on (comma
/// list), so the sweep still covers a project after its last ledger emptied and the operator
/// restarted.
pub const SWEPT_PROJECTS_ANNOTATION: &str = "gitlabtokens.io/swept-projects";

fn recorded_projects(conn: &GitLabConnection) -> BTreeSet<u64> {
    conn.annotations()
        .get(SWEPT_PROJECTS_ANNOTATION)
        .map(|v| v.split(',').filter_map(|p| p.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// Places of the other kinds in the same annotation, as `Kind@project/7` or `Kind@group/3`
/// (older readers skip them: they are not numbers).
fn recorded_places(conn: &GitLabConnection) -> BTreeSet<(CredentialKind, Owner)> {
    conn.annotations()
        .get(SWEPT_PROJECTS_ANNOTATION)
        .map(|v| v.split(',').filter_map(|p| parse_place(p.trim())).collect())
        .unwrap_or_default()
}

fn parse_place(s: &str) -> Option<(CredentialKind, Owner)> {
    let (kind, owner) = s.split_once('@')?;
    let (what, id) = owner.split_once('/')?;
    let id: u64 = id.parse().ok()?;
    let owner = match what {
        "project" => Owner::Project(id),
        "group" => Owner::Group(id),
        _ => return None,
    };
    Some((kind.parse().ok()?, owner))
}

fn place_text((kind, owner): &(CredentialKind, Owner)) -> String {
    match owner {
        Owner::Project(id) => format!("{kind}@project/{id}"),
        Owner::Group(id) => format!("{kind}@group/{id}"),
    }
}

async fn record_projects(
    api: &Api<GitLabConnection>,
    name: &str,
    projects: &BTreeSet<u64>,
    places: &BTreeSet<(CredentialKind, Owner)>,
) {
    let list: Vec<String> = projects
        .iter()
        .map(u64::to_string)
        .chain(places.iter().map(place_text))
        .collect();
    let patch = serde_json::json!({"metadata": {"annotations": {SWEPT_PROJECTS_ANNOTATION: list.join(",")}}});
    let params = kube::api::PatchParams {
        field_manager: Some(format!("{}/sweep", crate::crd::FIELD_MANAGER)),
        ..Default::default()
    };
    if let Err(e) = api.patch(name, &params, &kube::api::Patch::Merge(&patch)).await {
        tracing::warn!(connection = name, error = %e, "could not record the swept projects");
    }
}

/// What the sweep remembers between runs of this process (held by the [`Context`]).
#[derive(Default)]
pub struct SweepMemory {
    /// Projects any ledger named since this process started, per connection (a ledger that
    /// empties still leaves its project to be swept).
    projects: std::sync::Mutex<BTreeMap<String, BTreeSet<u64>>>,
    /// The same for the places of the other kinds.
    places: std::sync::Mutex<BTreeMap<String, BTreeSet<(CredentialKind, Owner)>>>,
    /// When this process first listed each credential GitLab gives no creation time for (deploy
    /// tokens), so the sweep's minimum age still holds for them.
    first_seen: std::sync::Mutex<BTreeMap<SeenKey, DateTime<Utc>>>,
}

/// One sweep over every live connection; returns how many tokens were revoked.
pub async fn sweep_once(ctx: &Context) -> Result<usize, kube::Error> {
    let tokens = Api::<GitLabToken>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    let mut accounted = accounted_by_connection(&tokens);
    let everywhere = accounted_everywhere(&tokens);
    let connections = Api::<GitLabConnection>::all(ctx.client.clone());
    let listed_connections = connections.list(&ListParams::default()).await?.items;
    let recorded: BTreeMap<String, BTreeSet<u64>> = listed_connections
        .iter()
        .map(|c| (c.name_any(), recorded_projects(c)))
        .collect();
    let recorded_other: BTreeMap<String, BTreeSet<(CredentialKind, Owner)>> = listed_connections
        .iter()
        .map(|c| (c.name_any(), recorded_places(c)))
        .collect();
    let memory = &ctx.sweep_memory;
    if let Ok(mut seen) = memory.projects.lock() {
        for conn in ctx.connections.all() {
            let a = accounted.entry(conn.name.clone()).or_insert_with(|| Accounted {
                uids: everywhere.uids.clone(),
                projects: BTreeSet::new(),
                places: BTreeSet::new(),
                token_ids: everywhere.token_ids.clone(),
                pending_names: everywhere.pending_names.clone(),
            });
            let known = seen.entry(conn.name.clone()).or_default();
            known.extend(a.projects.iter().copied());
            known.extend(recorded.get(&conn.name).into_iter().flatten().copied());
            a.projects.clone_from(known);
        }
    }
    if let Ok(mut seen) = memory.places.lock() {
        for (name, a) in accounted.iter_mut() {
            let known = seen.entry(name.clone()).or_default();
            known.extend(a.places.iter().copied());
            known.extend(recorded_other.get(name).into_iter().flatten().copied());
            a.places.clone_from(known);
        }
    }
    for (name, a) in &accounted {
        let changed = recorded.get(name).is_some_and(|r| *r != a.projects)
            || recorded_other.get(name).is_some_and(|r| *r != a.places);
        if changed {
            record_projects(&connections, name, &a.projects, &a.places).await;
        }
    }
    let retain_possible: BTreeSet<String> = ctx
        .policies
        .state()
        .iter()
        .filter(|p| p.spec.allow_retain)
        .map(|p| {
            p.spec
                .connection_ref
                .as_ref()
                .map_or_else(String::new, |c| c.name.clone())
        })
        .collect();
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
        let retain = retain_possible.contains(&conn.name) || retain_possible.contains("");
        let places = a
            .projects
            .iter()
            .map(|p| (CredentialKind::ProjectAccessToken, Owner::Project(*p)))
            .chain(a.places.iter().copied());
        for (kind, owner) in places {
            let listed = match conn.api.list_active_credentials(kind, owner).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(connection = %conn.name, %owner, %kind, error = %e, "orphan sweep could not list credentials");
                    continue;
                }
            };
            let listed = memory.with_first_seen(&conn.name, kind, owner, listed, now);
            for t in listed.iter().filter(|t| is_orphan(t, &marker, a, retain, now)) {
                crate::crash_point!("sweep.before_revoke");
                match conn.api.revoke_credential(kind, owner, t.id).await {
                    Ok(_) => {
                        revoked += 1;
                        ctx.metrics.revoked("Orphaned");
                        tracing::info!(connection = %conn.name, %owner, %kind, token_id = t.id, name = %t.name, "revoked an orphaned credential");
                    }
                    Err(e) => {
                        tracing::warn!(token_id = t.id, error = %e, "could not revoke an orphaned token")
                    }
                }
            }
        }
    }
    revoked += super::handover::sweep(ctx, &everywhere.token_ids).await?;
    Ok(revoked)
}

/// A listed credential: connection, kind, owner, id.
type SeenKey = (String, CredentialKind, Owner, u64);

impl SweepMemory {
    /// Fills a missing `created_at` with the time this process first listed the credential (an
    /// over-estimate of its age never happens: it can only look younger than it is).
    fn with_first_seen(
        &self,
        connection: &str,
        kind: CredentialKind,
        owner: Owner,
        mut listed: Vec<CredentialRecord>,
        now: DateTime<Utc>,
    ) -> Vec<CredentialRecord> {
        let Ok(mut seen) = self.first_seen.lock() else {
            return listed;
        };
        for r in listed.iter_mut().filter(|r| r.created_at.is_none()) {
            let first = *seen
                .entry((connection.to_string(), kind, owner, r.id))
                .or_insert(now);
            r.created_at = Some(first);
        }
        listed
    }
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

    fn token(
        id: u64,
        name: &str,
        active: bool,
        created_min_ago: i64,
        now: DateTime<Utc>,
    ) -> CredentialRecord {
        let t: crate::gitlab::AccessToken = serde_json::from_value(serde_json::json!({
            "id": id, "name": name, "revoked": !active, "active": active,
            "created_at": (now - chrono::Duration::minutes(created_min_ago)).to_rfc3339(),
            "scopes": ["read_repository"], "user_id": 9
        }))
        .unwrap();
        CredentialRecord::from_access_token(&t)
    }

    #[test]
    fn credentials_without_a_creation_time_age_from_when_first_listed() {
        let now = Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap();
        let marker = "gto-prod-";
        let deleted = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";
        let record = CredentialRecord {
            id: 77,
            name: format!("{marker}{deleted}"),
            active: true,
            created_at: None,
            expires_at: None,
            user_id: None,
        };
        let place = (CredentialKind::DeployToken, Owner::Group(3));
        let a = Accounted::default();
        let memory = SweepMemory::default();
        let first = memory.with_first_seen("c", place.0, place.1, vec![record.clone()], now);
        assert!(
            !is_orphan(&first[0], marker, &a, false, now),
            "just seen: may be in flight"
        );
        let later = now + chrono::Duration::minutes(11);
        let again = memory.with_first_seen("c", place.0, place.1, vec![record], later);
        assert_eq!(again[0].created_at, Some(now), "aged from the first listing");
        assert!(is_orphan(&again[0], marker, &a, false, later));
    }

    #[test]
    fn places_of_other_kinds_round_trip_through_the_annotation() {
        for place in [
            (CredentialKind::DeployKey, Owner::Project(7)),
            (CredentialKind::DeployToken, Owner::Group(3)),
            (CredentialKind::GroupAccessToken, Owner::Group(3)),
        ] {
            assert_eq!(parse_place(&place_text(&place)), Some(place));
        }
        for bad in ["812", "DeployKey@user/1", "Nope@project/1", "DeployKey@project/x"] {
            assert_eq!(parse_place(bad), None, "{bad}");
        }
    }

    #[test]
    fn orphan_table() {
        let now = Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap();
        let marker = "gto-prod-";
        let live = "0f8b5a34-1c2d-4e5f-8a9b-0c1d2e3f4a5b";
        let deleted = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";
        let inflight = "11111111-2222-3333-4444-555555555555";
        let ours = format!("{marker}{live}");
        let mut a = Accounted::default();
        a.uids.insert(live.into());
        a.uids.insert(inflight.into());
        a.token_ids.insert(1);
        a.pending_names.insert(format!("{marker}{inflight}"));
        #[rustfmt::skip]
        let cases = [
            (token(1, &ours, true, 60, now), false, "accounted current/previous"),
            (token(2, &ours, true, 60, now), true, "ours, unaccounted, old"),
            (token(3, &ours, true, 5, now), false, "too young: may be being issued"),
            (token(4, &ours, false, 60, now), false, "already inactive"),
            (token(5, &format!("gto-staging-{live}"), true, 60, now), false, "another cluster's marker"),
            (token(6, &format!("gto-prod-eu-{live}"), true, 60, now), false, "a cluster whose name starts like ours"),
            (token(7, &format!("{marker}{deleted}"), true, 60, now), true, "its GitLabToken is gone and no policy allows Retain"),
            (token(8, "hand-made", true, 60, now), false, "not ours"),
            (token(9, &format!("{marker}{inflight}"), true, 60, now), false, "pending issue under that name"),
        ];
        for (t, want, why) in cases {
            assert_eq!(is_orphan(&t, marker, &a, false, now), want, "{why}");
        }
        let gone = token(7, &format!("{marker}{deleted}"), true, 60, now);
        assert!(
            !is_orphan(&gone, marker, &a, true, now),
            "a policy allows Retain: a token of a deleted GitLabToken may be retained"
        );
    }
}
