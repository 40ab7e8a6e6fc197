//! The `GitLabToken`s of the Argo CD shim: their specs, apply bodies and writes.

use kube::{
    Api, ResourceExt,
    api::{ObjectMeta, Patch, PatchParams},
};
use serde_json::Value;

use super::shim::{App, Member};
use crate::{
    crd::{
        AccessLevel, ArgoCdRepoType, ArgoCdRepository, ConsumerRef, DeletionPolicy, FIELD_MANAGER,
        GitLabToken, GitLabTokenSpec, ObjectName, Scope, SecretFormat, SecretTarget,
    },
    shim::{
        Refusal,
        argocd::ARGOCD_LABEL,
        refused::{PLACEHOLDER_PROJECT, REFUSED_MESSAGE, REFUSED_REASON, refusal_annotations},
    },
};

/// The spec of the token Applications agreeing on one repository share.
pub(super) fn spec_for(members: &[&Member]) -> GitLabTokenSpec {
    let first = members[0];
    let mut scopes = first.need.scopes.clone();
    scopes.extend(first.ann.extra_scopes.iter().copied());
    scopes.sort();
    scopes.dedup();
    let mut consumers: Vec<ConsumerRef> = members.iter().map(|m| m.app.consumer()).collect();
    consumers.sort();
    consumers.dedup();
    let mut namespaces: Vec<String> = members.iter().map(|m| m.app.namespace.clone()).collect();
    namespaces.sort();
    namespaces.dedup();
    GitLabTokenSpec {
        connection_ref: first
            .ann
            .connection
            .as_ref()
            .map(|c| ObjectName { name: c.clone() }),
        project: first.project.clone(),
        scopes,
        access_level: first.ann.access_level,
        lifetime: first.ann.lifetime,
        renew_before: first.ann.renew_before,
        secret: SecretTarget {
            name: String::new(),
            format: SecretFormat::ArgoCdRepository,
            registry_host: None,
        },
        consumers,
        deletion_policy: DeletionPolicy::Revoke,
        kind: Default::default(),
        group: None,
        argo_cd: Some(ArgoCdRepository {
            url: first.need.url.clone(),
            repo_type: first.need.repo_type,
            project: first.app_project.clone(),
            application_namespaces: namespaces,
        }),
    }
}

/// The placeholder spec of a token carrying a per-repository refusal (never minted for).
pub(super) fn refused_spec(app: &App, app_project: &str, url: &str) -> GitLabTokenSpec {
    GitLabTokenSpec {
        connection_ref: None,
        project: PLACEHOLDER_PROJECT.into(),
        scopes: vec![Scope::ReadApi],
        access_level: AccessLevel::Guest,
        lifetime: None,
        renew_before: None,
        secret: SecretTarget {
            name: String::new(),
            format: SecretFormat::ArgoCdRepository,
            registry_host: None,
        },
        consumers: vec![app.consumer()],
        deletion_policy: DeletionPolicy::Revoke,
        kind: Default::default(),
        group: None,
        argo_cd: Some(ArgoCdRepository {
            url: url.chars().take(2048).collect(),
            repo_type: ArgoCdRepoType::Git,
            project: app_project.into(),
            application_namespaces: vec![app.namespace.clone()],
        }),
    }
}

/// The server-side apply body of a shim token.
pub(super) fn body(
    namespace: &str,
    name: &str,
    mut spec: GitLabTokenSpec,
    refusal: Option<&Refusal>,
) -> Value {
    spec.secret.name = name.to_string();
    let token = GitLabToken {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            labels: Some([(ARGOCD_LABEL.to_string(), "true".to_string())].into()),
            annotations: refusal.map(|r| refusal_annotations(r).into_iter().collect()),
            ..Default::default()
        },
        spec,
        status: None,
    };
    token.apply_body()
}

fn already_applied(live: &GitLabToken, body: &Value) -> bool {
    let Ok(want) = serde_json::from_value::<GitLabToken>(body.clone()) else {
        return false;
    };
    let carried = |t: &GitLabToken| -> Vec<Option<String>> {
        [REFUSED_REASON, REFUSED_MESSAGE]
            .iter()
            .map(|k| t.annotations().get(*k).cloned())
            .collect()
    };
    live.metadata.deletion_timestamp.is_none()
        && live.spec == want.spec
        && live.labels().get(ARGOCD_LABEL).map(String::as_str) == Some("true")
        && carried(live) == carried(&want)
}

/// Applies a token unless it already says the same; `Ok(Err(message))` when the API server
/// refused it (reported by the caller).
pub(super) async fn apply(
    api: &Api<GitLabToken>,
    existing: &[GitLabToken],
    name: &str,
    body: &Value,
) -> Result<Result<(), String>, kube::Error> {
    if existing
        .iter()
        .any(|t| t.name_any() == name && already_applied(t, body))
    {
        return Ok(Ok(()));
    }
    match api
        .patch(
            name,
            &PatchParams::apply(&format!("{FIELD_MANAGER}/argocd")).force(),
            &Patch::Apply(body),
        )
        .await
    {
        Ok(_) => Ok(Ok(())),
        Err(kube::Error::Api(s)) if (400..500).contains(&s.code) && s.code != 429 => Ok(Err(format!(
            "the API server refused GitLabToken {name} ({} {}): {}",
            s.code,
            s.reason,
            crate::shim::bounded(&s.message, 600)
        ))),
        Err(e) => Err(e),
    }
}
