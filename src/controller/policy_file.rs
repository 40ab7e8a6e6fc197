//! Reading a connection's GitLab-kept policy file (issue 11): through the repository files API at
//! every connection check (at least once per `--access-recheck-interval`), validated like
//! `GitLabTokenPolicy` objects and bounded by the connection's ceiling. A valid file replaces what
//! is in force; an invalid one keeps the last valid version and says so; a deleted file, ref or
//! project withdraws its grants; a GitLab failure changes nothing. The outcome is written to the
//! connection's `status.policyFile`, with an event when it changes; tokens of the connection are
//! reconciled again because their connection's status changed.

use base64::Engine;
use kube::ResourceExt;

use super::{connection::LiveConnection, context::Context};
use crate::{
    crd::{GitLabConnection, PolicyFileStatus},
    gitlab::{GitLabApi, GitLabError},
    policy::{CompiledPolicy, gitlab_file},
    reason::Reason,
};

/// The policies of one connection's file that are in force.
#[derive(Clone, Debug)]
pub struct InForce {
    /// The commit they were read at.
    pub commit: String,
    /// The policies, bounded by the ceiling.
    pub policies: Vec<CompiledPolicy>,
}

/// Reads the file and updates what is in force and `status.policyFile`; returns the event to
/// publish (reason, message) when the outcome changed.
pub async fn refresh(
    conn: &GitLabConnection,
    live: &LiveConnection,
    ctx: &Context,
    status: &mut Option<PolicyFileStatus>,
) -> Option<(Reason, String)> {
    let name = conn.name_any();
    let Some(file) = conn.spec.policy_file.as_ref() else {
        let had = ctx
            .file_policies
            .lock()
            .ok()
            .and_then(|mut f| f.remove(&name))
            .is_some();
        *status = None;
        return had.then(|| {
            (
                Reason::PolicyFileMissing,
                "spec.policyFile was removed: the GitLab-kept policies are withdrawn".to_string(),
            )
        });
    };
    let before = status.clone();
    let in_force = ctx.file_policies.lock().ok().and_then(|f| f.get(&name).cloned());
    let now = ctx.now();
    let at = format!("{}:{}@{}", file.project, file.path, file.ref_);
    let read = live
        .api
        .repository_file(&file.project, &file.path, &file.ref_)
        .await;
    let mut next = PolicyFileStatus {
        last_read_time: Some(now),
        applied_commit: in_force.as_ref().map(|f| f.commit.clone()),
        policies: in_force
            .as_ref()
            .map(|f| f.policies.iter().map(|p| p.name.clone()).collect())
            .unwrap_or_default(),
        ..Default::default()
    };
    let reason = match read {
        Err(GitLabError::NotFound { .. }) => {
            if let Ok(mut f) = ctx.file_policies.lock() {
                f.remove(&name);
            }
            next.state = "Missing".into();
            next.applied_commit = None;
            next.policies.clear();
            next.message = format!(
                "{at} does not exist (file, ref or project gone, or not readable by the operator's user): its grants are withdrawn"
            );
            Reason::PolicyFileMissing
        }
        Err(e) => {
            next.commit = before.as_ref().and_then(|b| b.commit.clone());
            next.state = "Unreadable".into();
            next.message = format!("could not read {at}: {e}; {}", kept(in_force.as_ref()));
            Reason::PolicyFileUnreadable
        }
        Ok(read) => {
            let commit = read
                .last_commit_id
                .clone()
                .or(read.commit_id.clone())
                .unwrap_or_default();
            next.commit = Some(commit.clone());
            let loaded =
                decode(&read.content).and_then(|text| gitlab_file::load(&text, &name, &file.ceiling));
            match loaded {
                Ok(policies) => {
                    next.state = "Valid".into();
                    next.applied_commit = Some(commit.clone());
                    next.policies = policies.iter().map(|p| p.name.clone()).collect();
                    next.message = format!(
                        "{} polic{} from {at} at commit {} in force",
                        policies.len(),
                        if policies.len() == 1 { "y" } else { "ies" },
                        short(&commit)
                    );
                    if let Ok(mut f) = ctx.file_policies.lock() {
                        f.insert(name.clone(), InForce { commit, policies });
                    }
                    Reason::PolicyFileApplied
                }
                Err(problems) => {
                    // After a restart nothing is in force yet: the last valid commit, as recorded
                    // in status, is read again so an invalid edit never withdraws.
                    let in_force = match (in_force, before.as_ref().and_then(|b| b.applied_commit.clone())) {
                        (None, Some(valid)) => {
                            let again = reload(live.api.as_ref(), file, &name, &valid).await;
                            if let (Some(f), Ok(mut map)) = (&again, ctx.file_policies.lock()) {
                                map.insert(name.clone(), f.clone());
                            }
                            next.applied_commit = again.as_ref().map(|f| f.commit.clone());
                            next.policies = again
                                .as_ref()
                                .map(|f| f.policies.iter().map(|p| p.name.clone()).collect())
                                .unwrap_or_default();
                            again
                        }
                        (in_force, _) => in_force,
                    };
                    next.state = "Invalid".into();
                    next.message = format!(
                        "{at} at commit {} is invalid: {}; {}",
                        short(&commit),
                        problems.join("; "),
                        kept(in_force.as_ref())
                    );
                    Reason::PolicyFileInvalid
                }
            }
        }
    };
    let changed = before
        .as_ref()
        .is_none_or(|b| b.state != next.state || b.commit != next.commit || b.message != next.message);
    *status = Some(next.clone());
    changed.then_some((reason, next.message))
}

/// The file as it was at a commit known to be valid (`None` if it cannot be read or is not).
async fn reload(
    api: &dyn GitLabApi,
    file: &crate::crd::PolicyFile,
    connection: &str,
    commit: &str,
) -> Option<InForce> {
    let read = api
        .repository_file(&file.project, &file.path, commit)
        .await
        .ok()?;
    let text = decode(&read.content).ok()?;
    let policies = gitlab_file::load(&text, connection, &file.ceiling).ok()?;
    Some(InForce {
        commit: commit.to_string(),
        policies,
    })
}

fn kept(in_force: Option<&InForce>) -> String {
    match in_force {
        Some(f) => format!(
            "the last valid version (commit {}) stays in force",
            short(&f.commit)
        ),
        None => "no valid version was read yet, so none is in force".into(),
    }
}

fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

fn decode(content: &str) -> Result<String, Vec<String>> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(content.trim())
        .map_err(|e| vec![format!("GitLab's content is not base64: {e}")])?;
    String::from_utf8(bytes).map_err(|_| vec!["the file is not UTF-8 text".to_string()])
}
