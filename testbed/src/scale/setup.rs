//! The benchmark's world: GitLab projects under `acme/scale`, the operator's own identity (so
//! its Kubernetes requests are counted apart from the benchmark's), the admin's connection and
//! policy, and N annotated GitRepositories over N/10 namespaces.

use std::path::Path;

use futures::StreamExt;
use kube::{
    Api, Client,
    api::{DynamicObject, ListParams, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};

use crate::{
    gitlab::seed::ProjectSeed,
    sandbox::{
        setup::{CONNECTION, GTO_API, OPERATOR_NS, apply, is_ready, token_resource},
        sources::resource,
    },
    world::World,
};

/// Name of the benchmark's policy.
pub const POLICY: &str = "scale";
/// The GitLab group holding the benchmark's projects.
pub const GROUP: &str = "acme/scale";
/// The user the operator authenticates to Kubernetes as (group `system:masters`).
pub const OPERATOR_USER: &str = "gto-scale-operator";
/// How many sources go in one namespace.
pub const SOURCES_PER_NAMESPACE: usize = 10;

/// Creates `count` empty projects `acme/scale/p-<i>` (the operator's user owns `acme`).
pub fn seed_projects(world: &World, count: usize) -> Result<(), String> {
    let seeder = world.gitlab.seed();
    for i in 0..count {
        seeder
            .project(ProjectSeed {
                full_path: project_path(i),
                ..ProjectSeed::default()
            })
            .map_err(|e| format!("seeding {}: {e}", project_path(i)))?;
    }
    Ok(())
}

/// Path of project `i`.
pub fn project_path(i: usize) -> String {
    format!("{GROUP}/p-{i}")
}

/// Registers the operator's bearer token and writes its kubeconfig to `path`.
pub fn operator_identity(world: &World, path: &Path) -> std::io::Result<()> {
    let token = format!("scale-{}", uuid::Uuid::new_v4().simple());
    world
        .kube
        .add_user_token(&token, OPERATOR_USER, &["system:masters"]);
    world.kube.write_kubeconfig(path, &token)
}

/// The credentials Secret, the connection and the policy (`scale-*` namespaces, `acme/scale/**`).
pub fn admin_objects(world: &World, rate_limit: Option<u32>) -> Result<Vec<Value>, String> {
    let token = world
        .operator_token()
        .ok_or("the world was started without its seed (no operator token)")?;
    let mut connection = json!({"url": world.gitlab_url(), "registryHost": world.registry_host(),
        "credentials": {"secretRef": {"namespace": OPERATOR_NS, "name": "gitlab-operator-token", "key": "token"}}});
    if let Some(per_second) = rate_limit {
        connection["rateLimit"] = json!({"requestsPerSecond": per_second, "burst": per_second});
    }
    Ok(vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": OPERATOR_NS}}),
        json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "gitlab-operator-token", "namespace": OPERATOR_NS},
            "stringData": {"token": token}}),
        json!({"apiVersion": GTO_API, "kind": "GitLabConnection",
            "metadata": {"name": CONNECTION}, "spec": connection}),
        policy(&["read_repository", "read_registry", "read_api"]),
    ])
}

/// The policy allowing `scopes`.
pub fn policy(scopes: &[&str]) -> Value {
    json!({"apiVersion": GTO_API, "kind": "GitLabTokenPolicy",
        "metadata": {"name": POLICY},
        "spec": {"namespaceSelector": {"matchNames": ["scale-*"]},
                 "projects": [format!("{GROUP}/**")],
                 "scopes": scopes,
                 "maxAccessLevel": "developer"}})
}

/// Applies every object in order.
pub async fn apply_all(client: &Client, objects: &[Value]) -> Result<(), String> {
    for object in objects {
        apply(client, object).await?;
    }
    Ok(())
}

/// The namespace of source `i` in batch `batch`.
pub fn namespace_of(batch: &str, i: usize) -> String {
    format!("scale-{batch}{}", i / SOURCES_PER_NAMESPACE)
}

/// Creates the namespaces of `count` sources of `batch`, then the sources themselves (16 at a
/// time), source `i` reading project `i % projects`.
pub async fn create_sources(
    client: &Client,
    gitlab_url: &str,
    batch: &str,
    count: usize,
    projects: usize,
) -> Result<(), String> {
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let names: Vec<String> = (0..count.div_ceil(SOURCES_PER_NAMESPACE))
        .map(|n| namespace_of(batch, n * SOURCES_PER_NAMESPACE))
        .collect();
    let created = futures::stream::iter(names)
        .map(|name| {
            let namespaces = namespaces.clone();
            async move {
                let ns =
                    serde_json::from_value(json!({"metadata": {"name": name}})).map_err(|e| e.to_string())?;
                namespaces
                    .create(&PostParams::default(), &ns)
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("namespace {name}: {e}"))
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    created.into_iter().collect::<Result<Vec<()>, String>>()?;
    let git = resource(
        "source.toolkit.fluxcd.io",
        "v1",
        "GitRepository",
        "gitrepositories",
    );
    let created = futures::stream::iter(0..count)
        .map(|i| {
            let git = git.clone();
            async move {
                let ns = namespace_of(batch, i);
                let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &git);
                let object: DynamicObject = serde_json::from_value(json!({
                    "apiVersion": git.api_version, "kind": git.kind,
                    "metadata": {"name": format!("src-{i}"), "namespace": ns,
                                 "annotations": {"gitlabtokens.io/inject": "true"}},
                    "spec": {"interval": "10m", "ref": {"branch": "main"},
                             "url": format!("{gitlab_url}/{}.git", project_path(i % projects.max(1)))}}))
                .map_err(|e| e.to_string())?;
                api.create(&PostParams::default(), &object)
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("GitRepository {ns}/src-{i}: {e}"))
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    created.into_iter().collect::<Result<Vec<()>, String>>()?;
    Ok(())
}

/// How many GitLabTokens in namespaces of `batch` exist, and how many are `Ready=True`.
pub async fn token_readiness(client: &Client, batch: &str) -> Result<(usize, usize), String> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &token_resource());
    let prefix = format!("scale-{batch}");
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(|e| format!("listing GitLabTokens: {e}"))?;
    let ours: Vec<Value> = list
        .items
        .into_iter()
        .filter(|t| {
            t.metadata.namespace.as_deref().is_some_and(|ns| {
                ns.strip_prefix(&prefix)
                    .is_some_and(|rest| rest.bytes().all(|b| b.is_ascii_digit()))
            })
        })
        .filter_map(|t| serde_json::to_value(t).ok())
        .collect();
    let ready = ours.iter().filter(|t| is_ready(t)).count();
    Ok((ours.len(), ready))
}

/// Replaces the policy's scopes (server-side apply by the admin).
pub async fn edit_policy(client: &Client, scopes: &[&str]) -> Result<(), String> {
    let resource = crate::sandbox::sources::resource(
        "gitlabtokens.io",
        "v1alpha1",
        "GitLabTokenPolicy",
        "gitlabtokenpolicies",
    );
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
    api.patch(
        POLICY,
        &PatchParams::apply("sandbox").force(),
        &Patch::Apply(policy(scopes)),
    )
    .await
    .map(|_| ())
    .map_err(|e| format!("editing the policy: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_sources_share_a_namespace_and_batches_do_not_mix() {
        assert_eq!(namespace_of("", 0), "scale-0");
        assert_eq!(namespace_of("", 9), "scale-0");
        assert_eq!(namespace_of("", 10), "scale-1");
        assert_eq!(namespace_of("t", 25), "scale-t2");
    }
}
