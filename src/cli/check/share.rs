//! The shim's sharing rule offline: sources in one namespace naming one Secret share a token
//! when their needs agree; the first (in file order, standing in for creation order) is served
//! and each later one that differs is refused with `ConflictingRequest` (DESIGN §3).

use std::collections::BTreeMap;

use super::evaluate::Pending;
use crate::{
    crd::{ConsumerKind, Days},
    shim::{ProjectHint, Refusal, SourceNeed, spec_for_sources},
};

/// What the token a served source shares asks the policy for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shared {
    /// Kinds of every source the token serves.
    pub consumers: Vec<ConsumerKind>,
    /// Lifetime of the shared token (the first explicit one).
    pub lifetime: Option<Days>,
    /// Renew-before of the shared token (the first explicit one).
    pub renew_before: Option<Days>,
    /// The other sources sharing it, as `Kind/name`.
    pub with: Vec<String>,
}

/// The project a source's need is compared by. Offline a registry path's project is unknown, so
/// it is assumed to be the project another source of the group names (else its full path).
fn project_key(p: &Pending, known: Option<&str>) -> String {
    match &p.request.project {
        ProjectHint::RegistryPath { path, .. } => known.unwrap_or(path).to_string(),
        _ => p.paths.first().cloned().unwrap_or_default(),
    }
}

/// Applies the sharing rule to every pending source; one answer per input, in order.
pub fn share(pending: &[Pending]) -> Vec<Result<Shared, Refusal>> {
    let mut groups: BTreeMap<(&str, &str), Vec<usize>> = BTreeMap::new();
    for (i, p) in pending.iter().enumerate() {
        groups
            .entry((p.namespace.name.as_str(), p.request.secret_name.as_str()))
            .or_default()
            .push(i);
    }
    let mut out: Vec<Option<Result<Shared, Refusal>>> = vec![None; pending.len()];
    for members in groups.values() {
        let known = members
            .iter()
            .map(|&i| &pending[i])
            .find(|p| !matches!(p.request.project, ProjectHint::RegistryPath { .. }))
            .and_then(|p| p.paths.first().cloned());
        let needs: Vec<SourceNeed> = members
            .iter()
            .map(|&i| SourceNeed {
                request: pending[i].request.clone(),
                project: project_key(&pending[i], known.as_deref()),
            })
            .collect();
        let Some(token) = spec_for_sources(&needs) else {
            continue;
        };
        let mut consumers: Vec<ConsumerKind> = Vec::new();
        for c in &token.served {
            if let Ok(k) = c.kind.parse::<ConsumerKind>()
                && !consumers.contains(&k)
            {
                consumers.push(k);
            }
        }
        let mut unmatched: Vec<usize> = members.clone();
        for (consumer, refusal) in &token.conflicts {
            if let Some(pos) = unmatched
                .iter()
                .position(|&i| pending[i].request.consumer == *consumer)
            {
                out[unmatched.remove(pos)] = Some(Err(refusal.clone()));
            }
        }
        for &i in &unmatched {
            let me = &pending[i].request.consumer;
            let with = token
                .served
                .iter()
                .filter(|c| *c != me)
                .map(|c| format!("{}/{}", c.kind, c.name))
                .collect();
            out[i] = Some(Ok(Shared {
                consumers: consumers.clone(),
                lifetime: token.spec.lifetime,
                renew_before: token.spec.renew_before,
                with,
            }));
        }
    }
    out.into_iter()
        .zip(pending)
        .map(|(o, p)| {
            o.unwrap_or_else(|| {
                Ok(Shared {
                    consumers: vec![p.request.kind.consumer_kind()],
                    lifetime: p.request.lifetime,
                    renew_before: p.request.renew_before,
                    with: Vec::new(),
                })
            })
        })
        .collect()
}
