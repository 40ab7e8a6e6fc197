//! The tenant's annotated Flux sources, one of every kind the operator serves, plus one the
//! policy denies; each with the Secret it should get and how to prove that Secret works.

use kube::{api::ApiResource, core::GroupVersionKind};
use serde_json::{Value, json};

/// The tenant namespace.
pub const TENANT_NS: &str = "team-a";

/// How to prove a Secret works with a real client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proof {
    /// `git ls-remote <url>` with `username`/`password`.
    Git(String),
    /// GET `<url>/index.yaml` with `username`/`password`.
    HelmIndex(String),
    /// `skopeo inspect --raw docker://<reference>` with `.dockerconfigjson`.
    RegistryManifest(String),
    /// `skopeo list-tags docker://<repository>` with `.dockerconfigjson`.
    RegistryTags(String),
    /// GET `/api/v4/projects/<path>` with `token`.
    GitLabApi(String),
}

/// One annotated source and what the operator should do for it.
#[derive(Debug, Clone)]
pub struct SourceCase {
    /// Short label for output (`GitRepository`, `HelmRepository (oci)` …).
    pub label: &'static str,
    /// Its resource.
    pub resource: ApiResource,
    /// Name (namespace is [`TENANT_NS`]).
    pub name: &'static str,
    /// The manifest.
    pub manifest: Value,
    /// Canonical GitLab project it needs.
    pub project: String,
    /// Target Secret (and GitLabToken) name.
    pub secret: String,
    /// Expected Secret type.
    pub secret_type: &'static str,
    /// Expected Secret keys, sorted.
    pub keys: &'static [&'static str],
    /// How to prove the Secret works.
    pub proof: Proof,
    /// Whether the Flux stand-in reconciles this kind (it does not run notification Providers).
    pub flux_ready: bool,
}

/// The resource of a Flux kind.
pub fn resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

fn git() -> ApiResource {
    resource(
        "source.toolkit.fluxcd.io",
        "v1",
        "GitRepository",
        "gitrepositories",
    )
}

fn helm() -> ApiResource {
    resource(
        "source.toolkit.fluxcd.io",
        "v1",
        "HelmRepository",
        "helmrepositories",
    )
}

fn oci() -> ApiResource {
    resource(
        "source.toolkit.fluxcd.io",
        "v1",
        "OCIRepository",
        "ocirepositories",
    )
}

fn image() -> ApiResource {
    resource(
        "image.toolkit.fluxcd.io",
        "v1",
        "ImageRepository",
        "imagerepositories",
    )
}

fn provider() -> ApiResource {
    resource(
        "notification.toolkit.fluxcd.io",
        "v1beta3",
        "Provider",
        "providers",
    )
}

/// The Flux kinds the sandbox follows in its live view.
pub fn flux_resources() -> Vec<ApiResource> {
    vec![git(), helm(), oci(), image(), provider()]
}

fn manifest(resource: &ApiResource, name: &str, extra_annotations: &[(&str, &str)], spec: Value) -> Value {
    let mut annotations = serde_json::Map::new();
    annotations.insert("gitlabtokens.io/inject".into(), json!("true"));
    for (k, v) in extra_annotations {
        annotations.insert((*k).into(), json!(v));
    }
    json!({"apiVersion": resource.api_version, "kind": resource.kind,
           "metadata": {"name": name, "namespace": TENANT_NS, "annotations": annotations},
           "spec": spec})
}

/// The sources the policy allows: one of every kind. `charts_id` is the id of
/// `acme/platform/charts` (the Helm HTTP URL names projects by id).
pub fn allowed(gitlab: &str, registry: &str, charts_id: u64) -> Vec<SourceCase> {
    let (git, helm, oci, image, provider) = (git(), helm(), oci(), image(), provider());
    let helm_url = format!("{gitlab}/api/v4/projects/{charts_id}/packages/helm/stable");
    let git_url = format!("{gitlab}/acme/team-a/app.git");
    let basic: &[&str] = &["password", "username"];
    let docker: &[&str] = &[".dockerconfigjson"];
    vec![
        SourceCase {
            label: "GitRepository",
            manifest: manifest(
                &git,
                "app",
                &[("gitlabtokens.io/lifetime", "7d")],
                json!({"interval": "5s", "url": git_url, "ref": {"branch": "main"}}),
            ),
            resource: git,
            name: "app",
            project: "acme/team-a/app".into(),
            secret: "app-gitlab-token".into(),
            secret_type: "Opaque",
            keys: basic,
            proof: Proof::Git(git_url),
            flux_ready: true,
        },
        SourceCase {
            label: "HelmRepository (HTTP)",
            manifest: manifest(
                &helm,
                "platform-charts",
                &[],
                json!({"interval": "5s", "url": helm_url}),
            ),
            resource: helm.clone(),
            name: "platform-charts",
            project: "acme/platform/charts".into(),
            secret: "platform-charts-gitlab-token".into(),
            secret_type: "Opaque",
            keys: basic,
            proof: Proof::HelmIndex(helm_url),
            flux_ready: true,
        },
        SourceCase {
            label: "HelmRepository (oci)",
            manifest: manifest(
                &helm,
                "platform-oci-charts",
                &[],
                json!({"interval": "5s", "type": "oci",
                "insecure": true, "url": format!("oci://{registry}/acme/platform/charts")}),
            ),
            resource: helm,
            name: "platform-oci-charts",
            project: "acme/platform/charts".into(),
            secret: "platform-oci-charts-gitlab-token".into(),
            secret_type: "kubernetes.io/dockerconfigjson",
            keys: docker,
            proof: Proof::RegistryManifest(format!("{registry}/acme/platform/charts/charts:0.1.0")),
            flux_ready: true,
        },
        SourceCase {
            label: "OCIRepository",
            manifest: manifest(
                &oci,
                "app-manifests",
                &[],
                json!({"interval": "5s", "insecure": true,
                "url": format!("oci://{registry}/acme/team-a/app"), "ref": {"tag": "1.0.0"}}),
            ),
            resource: oci,
            name: "app-manifests",
            project: "acme/team-a/app".into(),
            secret: "app-manifests-gitlab-token".into(),
            secret_type: "kubernetes.io/dockerconfigjson",
            keys: docker,
            proof: Proof::RegistryManifest(format!("{registry}/acme/team-a/app:1.0.0")),
            flux_ready: true,
        },
        SourceCase {
            label: "ImageRepository",
            manifest: manifest(
                &image,
                "infra-images",
                &[],
                json!({"interval": "5s", "insecure": true,
                "image": format!("{registry}/acme/platform/infra")}),
            ),
            resource: image,
            name: "infra-images",
            project: "acme/platform/infra".into(),
            secret: "infra-images-gitlab-token".into(),
            secret_type: "kubernetes.io/dockerconfigjson",
            keys: docker,
            proof: Proof::RegistryTags(format!("{registry}/acme/platform/infra")),
            flux_ready: true,
        },
        SourceCase {
            label: "Provider (gitlab)",
            manifest: manifest(
                &provider,
                "commit-status",
                &[],
                json!({"type": "gitlab",
                "address": format!("{gitlab}/acme/team-a/app")}),
            ),
            resource: provider,
            name: "commit-status",
            project: "acme/team-a/app".into(),
            secret: "commit-status-gitlab-token".into(),
            secret_type: "Opaque",
            keys: &["token"],
            proof: Proof::GitLabApi("acme/team-a/app".into()),
            flux_ready: false,
        },
    ]
}

/// The source the policy denies: a GitRepository of a project outside the policy's globs.
pub fn denied(gitlab: &str) -> (ApiResource, Value, &'static str, &'static str) {
    let git = git();
    let m = manifest(
        &git,
        "secret-project",
        &[],
        json!({"interval": "5s",
        "url": format!("{gitlab}/other-org/secret-project.git"), "ref": {"branch": "main"}}),
    );
    (git, m, "secret-project-gitlab-token", "other-org/secret-project")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_served_kind_is_covered_once_with_the_designed_secret_shape() {
        let cases = allowed("http://gl", "reg:5000", 7);
        let shapes: Vec<(&str, &str, &[&str])> =
            cases.iter().map(|c| (c.label, c.secret_type, c.keys)).collect();
        assert_eq!(
            shapes,
            vec![
                ("GitRepository", "Opaque", &["password", "username"][..]),
                ("HelmRepository (HTTP)", "Opaque", &["password", "username"][..]),
                (
                    "HelmRepository (oci)",
                    "kubernetes.io/dockerconfigjson",
                    &[".dockerconfigjson"][..]
                ),
                (
                    "OCIRepository",
                    "kubernetes.io/dockerconfigjson",
                    &[".dockerconfigjson"][..]
                ),
                (
                    "ImageRepository",
                    "kubernetes.io/dockerconfigjson",
                    &[".dockerconfigjson"][..]
                ),
                ("Provider (gitlab)", "Opaque", &["token"][..]),
            ]
        );
        for c in &cases {
            assert_eq!(
                c.manifest["metadata"]["annotations"]["gitlabtokens.io/inject"],
                "true"
            );
            assert_eq!(c.secret, format!("{}-gitlab-token", c.name));
            assert_eq!(c.manifest["kind"], c.resource.kind.as_str());
        }
        assert_eq!(
            cases[1].manifest["spec"]["url"],
            "http://gl/api/v4/projects/7/packages/helm/stable"
        );
        let (_, m, secret, project) = denied("http://gl");
        assert_eq!(m["spec"]["url"], "http://gl/other-org/secret-project.git");
        assert_eq!(
            (secret, project),
            ("secret-project-gitlab-token", "other-org/secret-project")
        );
    }
}
