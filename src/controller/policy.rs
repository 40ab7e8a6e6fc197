//! The `GitLabTokenPolicy` controller: reports whether a policy is usable. A policy with a bad
//! glob or impossible bounds allows nothing; its `Ready=False` (`PolicyInvalid`) says exactly why.

use std::{sync::Arc, time::Duration};

use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams},
    runtime::controller::Action,
};
use serde_json::json;

use super::{conditions::condition, context::Context};
use crate::{
    crd::{FIELD_MANAGER, GitLabTokenPolicy, set_condition},
    policy::compile_policy,
    reason::Reason,
};

/// Reconciles one policy's status.
pub async fn reconcile(policy: Arc<GitLabTokenPolicy>, ctx: Arc<Context>) -> Result<Action, kube::Error> {
    let generation = policy.metadata.generation;
    let mut status = policy.status.clone().unwrap_or_default();
    let (ready, reason, message) = match compile_policy(&policy) {
        Ok(_) => (true, "Valid", "the policy is usable".to_string()),
        Err(unusable) => (
            false,
            Reason::PolicyInvalid.as_str(),
            format!("the policy allows nothing: {}", unusable.problems.join("; ")),
        ),
    };
    set_condition(
        &mut status.conditions,
        condition("Ready", ready, reason, message.clone(), generation, ctx.now()),
    );
    status.summary = crate::crd::summary(&status.conditions);
    status.observed_generation = generation;
    if policy.status.as_ref() != Some(&status) {
        let api: Api<GitLabTokenPolicy> = Api::all(ctx.client.clone());
        let params = PatchParams::apply(&format!("{FIELD_MANAGER}/policy")).force();
        let body =
            json!({"apiVersion": "gitlabtokens.io/v1alpha1", "kind": "GitLabTokenPolicy", "status": status});
        api.patch_status(&policy.name_any(), &params, &Patch::Apply(&body))
            .await?;
        if !ready {
            ctx.event(policy.as_ref(), true, reason, "Validate", message)
                .await;
        }
    }
    Ok(Action::requeue(Duration::from_secs(3600)))
}
