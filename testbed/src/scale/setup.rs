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

/// Whether a namespace belongs to `batch` (`scale-<batch><number>`).
fn in_batch(namespace: Option<&str>, batch: &str) -> bool {
    let prefix = format!("scale-{batch}");
    namespace.is_some_and(|ns| {
        ns.strip_prefix(&prefix)
            .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()))
    })
}

/// How many of `tokens` are in namespaces of `batch`, and how many of those are `Ready=True`.
fn readiness<'a>(tokens: impl Iterator<Item = &'a DynamicObject>, batch: &str) -> (usize, usize) {
    tokens
        .filter(|t| in_batch(t.metadata.namespace.as_deref(), batch))
        .fold((0, 0), |(n, ready), t| {
            (n + 1, ready + usize::from(is_ready(&t.data)))
        })
}

/// How many GitLabTokens in namespaces of `batch` exist, and how many are `Ready=True` (one
/// list: for a single look; [`TokenWatch`] for polling).
pub async fn token_readiness(client: &Client, batch: &str) -> Result<(usize, usize), String> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &token_resource());
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(|e| format!("listing GitLabTokens: {e}"))?;
    Ok(readiness(list.items.iter(), batch))
}

/// Every GitLabToken, kept current by a watch: polling readiness by listing 10,000 of them four
/// times a second cost the API server emulator more CPU than the operator's whole work.
pub struct TokenWatch {
    store: kube::runtime::reflector::Store<DynamicObject>,
    task: tokio::task::JoinHandle<()>,
}

impl TokenWatch {
    /// Starts the watch and waits until it has listed.
    pub async fn start(client: &Client) -> Result<Self, String> {
        use kube::runtime::{WatchStreamExt, reflector, watcher};
        let resource = token_resource();
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
        let writer = reflector::store::Writer::new(resource);
        let store = writer.as_reader();
        let events = watcher(api, watcher::Config::default())
            .default_backoff()
            .reflect(writer);
        let task = tokio::spawn(events.for_each(|_| async {}));
        store
            .wait_until_ready()
            .await
            .map_err(|e| format!("watching GitLabTokens: {e}"))?;
        Ok(Self { store, task })
    }

    /// How many GitLabTokens in namespaces of `batch` exist, and how many are `Ready=True`.
    pub fn readiness(&self, batch: &str) -> (usize, usize) {
        let state = self.store.state();
        readiness(state.iter().map(|t| t.as_ref()), batch)
    }
}

impl Drop for TokenWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
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

/// The annotation that asks the operator to renew a token now (any new value).
const RENEW_ANNOTATION: &str = "gitlabtokens.io/renew-requested-at";

/// The first GitLabToken of the first namespace of `batch` (its namespace and name).
pub async fn some_token(client: &Client, batch: &str) -> Result<(String, String), String> {
    let namespace = namespace_of(batch, 0);
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &namespace, &token_resource());
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(|e| format!("listing GitLabTokens in {namespace}: {e}"))?;
    let name = list
        .items
        .into_iter()
        .find_map(|t| t.metadata.name)
        .ok_or_else(|| format!("no GitLabToken in {namespace}"))?;
    Ok((namespace, name))
}

/// The id of the token a GitLabToken's status names as current.
pub async fn current_token_id(client: &Client, namespace: &str, name: &str) -> Result<Option<i64>, String> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &token_resource());
    let token = api
        .get(name)
        .await
        .map_err(|e| format!("reading GitLabToken {namespace}/{name}: {e}"))?;
    Ok(token
        .data
        .pointer("/status/current/tokenId")
        .and_then(Value::as_i64))
}

/// Asks for a GitLabToken's renewal (a merge patch of the renew annotation, as a user would).
pub async fn request_renewal(
    client: &Client,
    namespace: &str,
    name: &str,
    value: &str,
) -> Result<(), String> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &token_resource());
    let patch = json!({"metadata": {"annotations": {RENEW_ANNOTATION: value}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
        .map_err(|e| format!("asking for the renewal of {namespace}/{name}: {e}"))
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

    #[test]
    fn namespaces_belong_to_their_batch_only() {
        assert!(in_batch(Some("scale-12"), ""));
        assert!(in_batch(Some("scale-t3"), "t"));
        assert!(!in_batch(Some("scale-t3"), ""));
        assert!(!in_batch(Some("scale-late0"), ""));
        assert!(in_batch(Some("scale-late0"), "late"));
        assert!(!in_batch(Some("scale-"), ""));
        assert!(!in_batch(None, ""));
    }
}
