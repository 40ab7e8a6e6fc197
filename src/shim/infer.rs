//! From a Flux source object (any served API version) to the token it needs (DESIGN §3, §4).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::{
    crd::{AccessLevel, ConsumerKind, ConsumerRef, Days, Scope, SecretFormat},
    reason::Reason,
};

use super::{
    ProjectHint, Refusal, ShimAnnotations,
    annotations::{self, AnnotationError, check_project_path, is_dns_subdomain},
    url::{ConnectionFacts, Segment, gitlab_path, parse_http_like, parse_image, parse_oci_url},
};

/// Suffix of the default Secret name (`<source>-gitlab-token`).
pub const DEFAULT_SECRET_SUFFIX: &str = "-gitlab-token";

/// The consumer shapes the shim serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceKind {
    /// GitRepository over HTTPS.
    GitRepository,
    /// OCIRepository.
    OciRepository,
    /// HelmRepository of type `default` (HTTP index in GitLab's package registry).
    HelmRepositoryHttp,
    /// HelmRepository of type `oci`.
    HelmRepositoryOci,
    /// ImageRepository.
    ImageRepository,
    /// notification Provider of type `gitlab`.
    GitLabProvider,
    /// GitRepository over SSH (`ssh://` or scp-like): served with a deploy key.
    GitRepositorySsh,
}

impl SourceKind {
    /// The Kubernetes kind.
    pub fn consumer_kind(self) -> ConsumerKind {
        match self {
            Self::GitRepository | Self::GitRepositorySsh => ConsumerKind::GitRepository,
            Self::OciRepository => ConsumerKind::OciRepository,
            Self::HelmRepositoryHttp | Self::HelmRepositoryOci => ConsumerKind::HelmRepository,
            Self::ImageRepository => ConsumerKind::ImageRepository,
            Self::GitLabProvider => ConsumerKind::Provider,
        }
    }

    /// Scopes inferred for this consumer (DESIGN §3 table).
    pub fn base_scopes(self) -> &'static [Scope] {
        match self {
            Self::GitRepository | Self::GitRepositorySsh => &[Scope::ReadRepository],
            Self::HelmRepositoryHttp => &[Scope::ReadApi],
            Self::HelmRepositoryOci | Self::OciRepository | Self::ImageRepository => &[Scope::ReadRegistry],
            Self::GitLabProvider => &[Scope::Api],
        }
    }

    /// The Secret shape this consumer reads.
    pub fn secret_format(self) -> SecretFormat {
        match self {
            Self::GitRepository | Self::HelmRepositoryHttp => SecretFormat::BasicAuth,
            Self::HelmRepositoryOci | Self::OciRepository | Self::ImageRepository => {
                SecretFormat::DockerConfig
            }
            Self::GitLabProvider => SecretFormat::Token,
            Self::GitRepositorySsh => SecretFormat::Ssh,
        }
    }

    /// The kind of GitLab credential this consumer is served with.
    pub fn credential_kind(self) -> crate::crd::CredentialKind {
        match self {
            Self::GitRepositorySsh => crate::crd::CredentialKind::DeployKey,
            _ => crate::crd::CredentialKind::ProjectAccessToken,
        }
    }
}

/// What an annotated source needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InferredRequest {
    /// The source itself (to own the `GitLabToken` and to nudge).
    pub consumer: ConsumerRef,
    /// Its consumer shape.
    pub kind: SourceKind,
    /// Connection named by annotation (`None`: the only one, else the policy's).
    pub connection: Option<String>,
    /// The project as named or inferred.
    pub project: ProjectHint,
    /// Scopes: inferred, plus `write_repository` with `write`, plus the annotation's extras; sorted.
    pub scopes: Vec<Scope>,
    /// Role.
    pub access_level: AccessLevel,
    /// Target Secret name.
    pub secret_name: String,
    /// Target Secret shape.
    pub secret_format: SecretFormat,
    /// For docker-config: the `auths` key, the host[:port] exactly as the source writes it.
    pub registry_host: Option<String>,
    /// Lifetime asked for.
    pub lifetime: Option<Days>,
    /// Renew-before asked for.
    pub renew_before: Option<Days>,
    /// `gitlabtokens.io/write: "true"`.
    pub write: bool,
    /// The source has no `spec.secretRef`: the shim must set it to `secret_name`.
    pub set_secret_ref: bool,
    /// Kind of GitLab credential the source needs (a deploy key for `ssh://` GitRepositories,
    /// else `gitlabtokens.io/credential-kind` or a project access token).
    pub credential_kind: crate::crd::CredentialKind,
    /// Group (path or id) of a group-level credential (`gitlabtokens.io/group`).
    pub group: Option<String>,
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

/// The annotations of an object (empty when it has none).
pub fn annotations_of(source: &Value) -> BTreeMap<String, String> {
    source
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// Turns annotation problems into an `InvalidAnnotation` refusal.
pub fn annotation_refusal(err: &AnnotationError) -> Refusal {
    Refusal::new(Reason::InvalidAnnotation, err.to_string())
}

/// Parses the source's annotations and infers its request in one step.
pub fn infer_source(source: &Value, conn: &ConnectionFacts) -> Result<InferredRequest, Refusal> {
    let ann = annotations::parse(&annotations_of(source)).map_err(|e| annotation_refusal(&e))?;
    infer(source, &ann, conn)
}

/// Which kind and API version the object is; refuses anything the shim does not serve.
pub fn identify(source: &Value) -> Result<(ConsumerKind, String), Refusal> {
    let api_version = str_at(source, &["apiVersion"]).unwrap_or_default();
    let kind = str_at(source, &["kind"]).unwrap_or_default();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let consumer = match (group, version, kind) {
        ("source.toolkit.fluxcd.io", "v1" | "v1beta2", "GitRepository") => ConsumerKind::GitRepository,
        ("source.toolkit.fluxcd.io", "v1" | "v1beta2", "OCIRepository") => ConsumerKind::OciRepository,
        ("source.toolkit.fluxcd.io", "v1" | "v1beta2", "HelmRepository") => ConsumerKind::HelmRepository,
        ("image.toolkit.fluxcd.io", "v1" | "v1beta2", "ImageRepository") => ConsumerKind::ImageRepository,
        ("notification.toolkit.fluxcd.io", "v1beta2" | "v1beta3", "Provider") => ConsumerKind::Provider,
        _ => {
            return Err(Refusal::new(
                Reason::UnsupportedKind,
                format!("{kind} {api_version} is not a Flux source the operator serves"),
            ));
        }
    };
    Ok((consumer, api_version.to_string()))
}

/// Infers what a source needs from its spec, annotations and the connection (DESIGN §3, §4).
pub fn infer(
    source: &Value,
    ann: &ShimAnnotations,
    conn: &ConnectionFacts,
) -> Result<InferredRequest, Refusal> {
    let (consumer_kind, api_version) = identify(source)?;
    let name = str_at(source, &["metadata", "name"])
        .filter(|n| !n.is_empty())
        .ok_or_else(|| Refusal::new(Reason::UnsupportedKind, "the object has no metadata.name"))?;
    let spec = source.get("spec").unwrap_or(&Value::Null);

    let (kind, inferred, registry_host) = match consumer_kind {
        ConsumerKind::GitRepository => {
            reject_provider(spec, "GitRepository", &["generic"])?;
            let url = spec_str(spec, "url")?;
            if is_ssh(url) {
                (
                    SourceKind::GitRepositorySsh,
                    super::ssh_url::git_ssh_project(url, conn)?,
                    None,
                )
            } else {
                (SourceKind::GitRepository, git_project(url, conn)?, None)
            }
        }
        ConsumerKind::HelmRepository => match str_at(spec, &["type"]).unwrap_or("default") {
            "default" | "" => {
                if spec.get("passCredentials").and_then(Value::as_bool) == Some(true) {
                    return Err(Refusal::new(
                        Reason::ForeignHost,
                        "HelmRepository spec.passCredentials: true would send the token to any host the index \
                         names; remove it (GitLab's index serves charts from the same host)",
                    ));
                }
                (
                    SourceKind::HelmRepositoryHttp,
                    helm_http_project(spec_str(spec, "url")?, conn)?,
                    None,
                )
            }
            "oci" => {
                let r = parse_oci_url(spec_str(spec, "url")?, conn)?;
                (
                    SourceKind::HelmRepositoryOci,
                    ProjectHint::registry(&r.path),
                    Some(r.authority),
                )
            }
            other => {
                return Err(Refusal::new(
                    Reason::UnsupportedKind,
                    format!("HelmRepository spec.type {other:?} is not served (default or oci)"),
                ));
            }
        },
        ConsumerKind::OciRepository => {
            let r = parse_oci_url(spec_str(spec, "url")?, conn)?;
            (
                SourceKind::OciRepository,
                ProjectHint::registry(&r.path),
                Some(r.authority),
            )
        }
        ConsumerKind::ImageRepository => {
            reject_provider(spec, "ImageRepository", &["generic"])?;
            let r = parse_image(spec_str(spec, "image")?, conn)?;
            (
                SourceKind::ImageRepository,
                ProjectHint::registry(&r.path),
                Some(r.authority),
            )
        }
        ConsumerKind::Application | ConsumerKind::AppProject => {
            return Err(Refusal::new(
                Reason::UnsupportedKind,
                "Argo CD Applications and AppProjects are served by the Argo CD shim, not as Flux sources",
            ));
        }
        ConsumerKind::Provider => {
            let t = str_at(spec, &["type"]).unwrap_or_default();
            if t != "gitlab" {
                return Err(Refusal::new(
                    Reason::UnsupportedKind,
                    format!("Provider of type {t:?} is not served; only type gitlab uses a GitLab token"),
                ));
            }
            (
                SourceKind::GitLabProvider,
                provider_project(spec_str(spec, "address")?, conn)?,
                None,
            )
        }
    };

    if ann.write && kind.consumer_kind() != ConsumerKind::GitRepository {
        return Err(Refusal::new(
            Reason::InvalidAnnotation,
            format!(
                "annotation {}: \"true\" applies only to GitRepository (image automation pushes), not to {}",
                annotations::WRITE,
                consumer_kind
            ),
        ));
    }
    if ann.write && kind == SourceKind::GitRepository && ann.access_level < AccessLevel::Developer {
        return Err(Refusal::new(
            Reason::InvalidAnnotation,
            format!(
                "annotation {}: {:?} cannot push; with {}: \"true\" set it to developer or higher",
                annotations::ACCESS_LEVEL,
                ann.access_level.as_str(),
                annotations::WRITE
            ),
        ));
    }
    let credential_kind = super::kind_choice::credential_kind(kind, ann)?;
    let mut scopes: Vec<Scope> = super::kind_choice::base_scopes(kind, credential_kind);
    if ann.write {
        scopes.push(Scope::WriteRepository);
    }
    scopes.extend(ann.extra_scopes.iter().copied());
    scopes.sort();
    scopes.dedup();

    let secret_ref = str_at(spec, &["secretRef", "name"]).filter(|s| !s.is_empty());
    let secret_name = match (&ann.secret_name, secret_ref) {
        (Some(a), Some(r)) if a != r => {
            return Err(Refusal::new(
                Reason::InvalidAnnotation,
                format!(
                    "annotation {}: {a:?} differs from spec.secretRef.name {r:?}, which is what Flux reads; make them equal or remove one",
                    annotations::SECRET_NAME
                ),
            ));
        }
        (Some(a), _) => a.clone(),
        (None, Some(r)) => r.to_string(),
        (None, None) => format!("{name}{DEFAULT_SECRET_SUFFIX}"),
    };
    if !is_dns_subdomain(&secret_name) {
        return Err(Refusal::new(
            Reason::InvalidSecretName,
            format!(
                "Secret name {} is not a valid object name (lowercase DNS subdomain, at most 253 characters)",
                super::shown(&secret_name)
            ),
        ));
    }

    Ok(InferredRequest {
        credential_kind,
        group: ann.group.clone(),
        consumer: ConsumerRef {
            api_version,
            kind: consumer_kind.as_str().to_string(),
            name: name.to_string(),
            namespace: None,
        },
        kind,
        connection: ann.connection.clone(),
        project: ann.project.clone().unwrap_or(inferred),
        scopes,
        access_level: ann.access_level,
        secret_name,
        secret_format: kind.secret_format(),
        registry_host,
        lifetime: ann.lifetime,
        renew_before: ann.renew_before,
        write: ann.write,
        set_secret_ref: secret_ref.is_none(),
    })
}

/// Longest source URL (`spec.url`, `spec.image`, `spec.address`) the shim accepts.
pub const MAX_URL_LEN: usize = 2048;

fn spec_str<'a>(spec: &'a Value, field: &str) -> Result<&'a str, Refusal> {
    let value = str_at(spec, &[field])
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Refusal::new(Reason::InvalidUrl, format!("spec.{field} is missing or empty")))?;
    let n = value.chars().count();
    if n > MAX_URL_LEN {
        return Err(Refusal::new(
            Reason::InvalidUrl,
            format!(
                "spec.{field} {} is {n} characters long; at most {MAX_URL_LEN} are accepted",
                super::shown(value)
            ),
        ));
    }
    Ok(value)
}

fn reject_provider(spec: &Value, kind: &str, allowed: &[&str]) -> Result<(), Refusal> {
    match str_at(spec, &["provider"]) {
        Some(p) if !p.is_empty() && !allowed.contains(&p) => Err(Refusal::new(
            Reason::IncompatibleSourceProvider,
            format!("{kind} spec.provider {p:?} makes Flux ignore the Secret the operator writes"),
        )),
        _ => Ok(()),
    }
}

pub(crate) fn is_ssh(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    lower.starts_with("ssh://")
        || lower.starts_with("git+ssh://")
        || (!url.contains("://") && url.contains(':'))
}

/// The project path of segments below the GitLab root: plain segments only (no encoded
/// slashes, no GitLab `-` routes), `.git` stripped from the last one.
fn plain_project_path(segments: &[Segment], raw: &str, what: &str) -> Result<String, Refusal> {
    let invalid = |m: String| Refusal::new(Reason::InvalidUrl, m);
    if let Some(s) = segments.iter().find(|s| s.has_encoded_slash()) {
        return Err(invalid(format!(
            "{raw:?} has an encoded slash in {:?}; write the path with plain slashes",
            s.raw
        )));
    }
    if segments.iter().any(|s| s.decoded == "-") {
        return Err(invalid(format!(
            "{raw:?} is a GitLab page URL (contains /-/), not a {what}"
        )));
    }
    let mut parts: Vec<&str> = segments.iter().map(|s| s.decoded.as_str()).collect();
    if let Some(last) = parts.last_mut() {
        *last = last.strip_suffix(".git").unwrap_or(last);
    }
    let path = parts.join("/");
    check_project_path(&path).map_err(|e| invalid(format!("{raw:?}: project path {path:?} {e}")))?;
    Ok(path)
}

/// GitRepository `https://<gitlab>/<path>(.git)` → `<path>`; ssh is refused.
pub(crate) fn git_project(url: &str, conn: &ConnectionFacts) -> Result<ProjectHint, Refusal> {
    if is_ssh(url) {
        return Err(Refusal::new(
            Reason::SshNotSupported,
            format!("{url:?} is an SSH URL; project access tokens work over HTTPS only"),
        ));
    }
    let parsed = parse_http_like(url, &["http", "https"])?;
    let segs = gitlab_path(&parsed, conn, url)?;
    Ok(ProjectHint::Path(plain_project_path(segs, url, "clone URL")?))
}

/// Whether a Helm channel matches GitLab's rule: 1–255 of `[a-zA-Z0-9]` with single `.`, `-`, `_` between.
fn valid_helm_channel(c: &str) -> bool {
    let b = c.as_bytes();
    let sep = |x: u8| matches!(x, b'.' | b'-' | b'_');
    !b.is_empty()
        && b.len() <= 255
        && b.iter().all(|x| x.is_ascii_alphanumeric() || sep(*x))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && !b.windows(2).any(|w| sep(w[0]) && sep(w[1]))
}

/// HelmRepository HTTP `https://<gitlab>/api/v4/projects/<id | url-encoded path>/packages/helm/<channel>`.
pub(crate) fn helm_http_project(url: &str, conn: &ConnectionFacts) -> Result<ProjectHint, Refusal> {
    let invalid = |m: String| Refusal::new(Reason::InvalidUrl, m);
    if url.to_ascii_lowercase().starts_with("oci://") {
        return Err(invalid(format!(
            "{url:?}: an oci:// URL needs HelmRepository spec.type: oci (Flux refuses it with type default)"
        )));
    }
    let parsed = parse_http_like(url, &["http", "https"])?;
    let segs = gitlab_path(&parsed, conn, url)?;
    let shape = "https://<gitlab>/api/v4/projects/<id or url-encoded path>/packages/helm/<channel>";
    let raw: Vec<&str> = segs.iter().map(|s| s.raw.as_str()).collect();
    let ["api", "v4", "projects", project, "packages", "helm", channel] = raw.as_slice() else {
        return Err(invalid(format!(
            "{url:?} is not a GitLab Helm package registry URL ({shape})"
        )));
    };
    if !valid_helm_channel(channel) {
        return Err(invalid(format!(
            "{url:?}: Helm channel {channel:?} is not valid in GitLab"
        )));
    }
    if project.bytes().all(|b| b.is_ascii_digit()) {
        return match project.parse::<u64>() {
            Ok(id) if id > 0 => Ok(ProjectHint::Id(id)),
            _ => Err(invalid(format!("{url:?}: {project:?} is not a valid project id"))),
        };
    }
    let decoded = &segs[3].decoded;
    check_project_path(decoded).map_err(|e| invalid(format!("{url:?}: project {decoded:?} {e}")))?;
    Ok(ProjectHint::Path(decoded.clone()))
}

/// Provider `spec.address` `https://<gitlab>/<id | path>`.
fn provider_project(address: &str, conn: &ConnectionFacts) -> Result<ProjectHint, Refusal> {
    if is_ssh(address) {
        return Err(Refusal::new(
            Reason::SshNotSupported,
            format!(
                "Provider spec.address {address:?} is an SSH URL; project access tokens work over HTTPS only"
            ),
        ));
    }
    let parsed = parse_http_like(address, &["http", "https"])?;
    let segs = gitlab_path(&parsed, conn, address)?;
    if let [one] = segs {
        let id = one.decoded.strip_suffix(".git").unwrap_or(&one.decoded);
        if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) {
            return match id.parse::<u64>() {
                Ok(n) if n > 0 => Ok(ProjectHint::Id(n)),
                _ => Err(Refusal::new(
                    Reason::InvalidUrl,
                    format!("{address:?}: {id:?} is not a valid project id"),
                )),
            };
        }
    }
    Ok(ProjectHint::Path(plain_project_path(
        segs,
        address,
        "project URL",
    )?))
}
