//! The pure half of the Argo CD shim (issue 13): from an annotated `Application` to the
//! repository Secrets it needs (`reference/argocd-secrets.md` §3, §9).
//!
//! Each GitLab `repoURL` of `spec.source` / `spec.sources[]` needs one project-scoped
//! `repository` Secret in Argo CD's namespace; Applications of one AppProject using one
//! repository (by Argo CD's URL normalisation) share it, so the `GitLabToken` is named after the
//! AppProject and the normalised URL. Sources on other hosts are not the operator's business and
//! are left alone.

use std::collections::BTreeMap;

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{
    ProjectHint, Refusal, ShimAnnotations,
    annotations::{self, is_dns_subdomain},
    infer::{git_project, helm_http_project, is_ssh},
    url::{ConnectionFacts, parse_oci_url},
};
use crate::{
    crd::{ArgoCdRepoType, Scope},
    reason::Reason,
};

/// Label on every `GitLabToken` the Argo CD shim manages (in Argo CD's namespace).
pub const ARGOCD_LABEL: &str = "gitlabtokens.io/argocd";
/// Argo CD's API group and version.
pub const ARGOCD_API_VERSION: &str = "argoproj.io/v1alpha1";

/// What one `repoURL` of an Application needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoNeed {
    /// The URL written to the Secret (a Git URL gets the `.git` GitLab needs).
    pub url: String,
    /// Argo CD's repository type.
    pub repo_type: ArgoCdRepoType,
    /// The GitLab project.
    pub project: ProjectHint,
    /// Scopes the fetch needs.
    pub scopes: Vec<Scope>,
}

/// What the shim makes of one source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceVerdict {
    /// Not on the connection's GitLab or registry: not the operator's.
    NotGitLab,
    /// A GitLab repository that needs a Secret.
    Need(RepoNeed),
    /// A GitLab URL the operator cannot serve.
    Refused(Refusal),
}

/// Every source of an Application: `(repoURL, is a Helm chart source)`, `spec.sources` first
/// when non-empty, else `spec.source` (as Argo CD reads them).
pub fn sources(app: &Value) -> Vec<(String, bool)> {
    let one = |s: &Value| {
        (
            s["repoURL"].as_str().unwrap_or_default().trim().to_string(),
            s["chart"].as_str().is_some_and(|c| !c.is_empty()),
        )
    };
    let all: Vec<(String, bool)> = match app.pointer("/spec/sources").and_then(Value::as_array) {
        Some(list) if !list.is_empty() => list.iter().map(one).collect(),
        _ => app.pointer("/spec/source").map(one).into_iter().collect(),
    };
    all.into_iter().filter(|(u, _)| !u.is_empty()).collect()
}

/// The Application's AppProject (`spec.project`, Argo CD's `default` when empty).
pub fn app_project(app: &Value) -> String {
    match app.pointer("/spec/project").and_then(Value::as_str) {
        Some(p) if !p.is_empty() => p.to_string(),
        _ => "default".to_string(),
    }
}

/// `IsAppNamespacePermitted`: Argo CD's namespace always; else the AppProject's
/// `spec.sourceNamespaces` (shell globs, or a regular expression between slashes).
pub fn namespace_permitted(project: &Value, app_namespace: &str, argocd_namespace: &str) -> bool {
    if app_namespace == argocd_namespace {
        return true;
    }
    project
        .pointer("/spec/sourceNamespaces")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .any(|p| {
            if p.len() > 1 && p.starts_with('/') && p.ends_with('/') {
                regex::Regex::new(&p[1..p.len() - 1]).is_ok_and(|r| r.is_match(app_namespace))
            } else {
                globset::Glob::new(p).is_ok_and(|g| g.compile_matcher().is_match(app_namespace))
            }
        })
}

/// Argo CD's `NormalizeGitURL` for the URLs the operator writes: trimmed, lower case, one
/// trailing `.git` removed (so `…/App.git` and `…/app` are one repository).
pub fn normalise_url(url: &str) -> String {
    let lower = url.trim().to_lowercase();
    lower.strip_suffix(".git").map(str::to_string).unwrap_or(lower)
}

/// The `GitLabToken` (and Secret) name for one repository of one AppProject: stable, valid, and
/// distinct per (AppProject, normalised URL).
pub fn token_name(app_project: &str, url: &str) -> String {
    let url = normalise_url(url);
    derived_name(
        "argocd",
        app_project,
        &[app_project.as_bytes(), &[0], url.as_bytes()],
    )
}

/// A Kubernetes name `<prefix>-<readable AppProject>-<hash of parts>` (just `<prefix>-<hash>` when
/// the readable form would not be a valid name): stable across releases, so keep the parts.
pub fn derived_name(prefix: &str, app_project: &str, parts: &[&[u8]]) -> String {
    let digest = parts
        .iter()
        .fold(Sha256::new(), |d, part| d.chain_update(part))
        .finalize();
    let hash: String = digest.iter().take(5).map(|b| format!("{b:02x}")).collect();
    let readable: String = app_project
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    let readable = readable.trim_matches('-');
    let name = format!("{prefix}-{readable}-{hash}").replace("--", "-");
    if is_dns_subdomain(&name) {
        name
    } else {
        format!("{prefix}-{hash}")
    }
}

fn host_of_ssh(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let after_user = rest.split_once('@').map_or(rest, |(_, h)| h);
    after_user
        .split(['/', ':'])
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase()
}

/// What the shim makes of one `repoURL` (`chart`: a Helm chart source).
pub fn classify(url: &str, chart: bool, conn: &ConnectionFacts) -> SourceVerdict {
    let lower = url.to_ascii_lowercase();
    let foreign = |r: &Refusal| r.reason == Reason::ForeignHost;
    if lower.starts_with("oci://") {
        return match parse_oci_url(url, conn) {
            Ok(r) => SourceVerdict::Need(RepoNeed {
                url: url.to_string(),
                repo_type: ArgoCdRepoType::Oci,
                project: ProjectHint::registry(&r.path),
                scopes: vec![Scope::ReadRegistry],
            }),
            Err(r) if foreign(&r) => SourceVerdict::NotGitLab,
            Err(r) => SourceVerdict::Refused(r),
        };
    }
    if is_ssh(url) {
        return if host_of_ssh(url) == conn.host {
            SourceVerdict::Refused(Refusal::new(
                Reason::SshNotSupported,
                format!(
                    "{url:?} is an SSH URL; use the HTTPS clone URL (project access tokens work over HTTPS only)"
                ),
            ))
        } else {
            SourceVerdict::NotGitLab
        };
    }
    if !url.contains("://") {
        // Helm-style OCI (`registry/group/project`, `enableOCI`): not written by the operator.
        let first = lower.split('/').next().unwrap_or_default();
        return if conn.registry_host.as_deref() == Some(first) {
            SourceVerdict::Refused(Refusal::new(
                Reason::InvalidUrl,
                format!("{url:?} is a scheme-less OCI reference; write it as oci://{url} (type oci)"),
            ))
        } else {
            SourceVerdict::NotGitLab
        };
    }
    let inferred = if chart {
        helm_http_project(url, conn).map(|p| (p, ArgoCdRepoType::Helm, Scope::ReadApi, url.to_string()))
    } else {
        git_project(url, conn).map(|p| {
            // GitLab answers a clone URL without .git with a redirect Argo CD does not follow.
            let clone = if lower.ends_with(".git") {
                url.to_string()
            } else {
                format!("{}.git", url.trim_end_matches('/'))
            };
            (p, ArgoCdRepoType::Git, Scope::ReadRepository, clone)
        })
    };
    match inferred {
        Ok((project, repo_type, scope, url)) => SourceVerdict::Need(RepoNeed {
            url,
            repo_type,
            project,
            scopes: vec![scope],
        }),
        Err(r) if foreign(&r) => SourceVerdict::NotGitLab,
        Err(r) if !lower.contains(&conn.host) => {
            let _ = r;
            SourceVerdict::NotGitLab
        }
        Err(r) => SourceVerdict::Refused(r),
    }
}

/// The annotations of an Application, parsed; those that make no sense for Argo CD
/// (`project`, `secret-name`, `write`: one Secret per repository, read-only) are refused.
pub fn application_annotations(annotations: &BTreeMap<String, String>) -> Result<ShimAnnotations, Refusal> {
    let ann = annotations::parse(annotations).map_err(|e| super::infer::annotation_refusal(&e))?;
    for (key, set) in [
        (annotations::PROJECT, ann.project.is_some()),
        (annotations::SECRET_NAME, ann.secret_name.is_some()),
        (annotations::WRITE, ann.write),
    ] {
        if set {
            return Err(Refusal::new(
                Reason::InvalidAnnotation,
                format!(
                    "annotation {key} is not used on an Argo CD Application: the project comes from each repoURL, the Secret is one per repository and AppProject, and Argo CD only reads; remove it"
                ),
            ));
        }
    }
    Ok(ann)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn conn() -> ConnectionFacts {
        ConnectionFacts::new("https://gitlab.example.com", Some("registry.example.com")).unwrap()
    }

    #[test]
    fn git_helm_and_oci_sources_on_gitlab_need_secrets() {
        let SourceVerdict::Need(git) = classify("https://gitlab.example.com/acme/app", false, &conn()) else {
            panic!()
        };
        assert_eq!(git.url, "https://gitlab.example.com/acme/app.git");
        assert_eq!(git.repo_type, ArgoCdRepoType::Git);
        assert_eq!(git.project, ProjectHint::Path("acme/app".into()));
        assert_eq!(git.scopes, [Scope::ReadRepository]);
        let SourceVerdict::Need(helm) = classify(
            "https://gitlab.example.com/api/v4/projects/7/packages/helm/stable",
            true,
            &conn(),
        ) else {
            panic!()
        };
        assert_eq!(
            (helm.repo_type, helm.project),
            (ArgoCdRepoType::Helm, ProjectHint::Id(7))
        );
        assert_eq!(helm.scopes, [Scope::ReadApi]);
        let SourceVerdict::Need(oci) =
            classify("oci://registry.example.com/acme/app/manifests", false, &conn())
        else {
            panic!()
        };
        assert_eq!(oci.repo_type, ArgoCdRepoType::Oci);
        assert_eq!(oci.scopes, [Scope::ReadRegistry]);
        assert!(matches!(oci.project, ProjectHint::RegistryPath { .. }));
    }

    #[test]
    fn other_hosts_are_left_alone_and_gitlab_urls_that_cannot_work_are_refused() {
        for url in [
            "https://github.com/argoproj/argocd-example-apps.git",
            "git@github.com:acme/app.git",
            "oci://ghcr.io/acme/app",
            "ghcr.io/acme/charts",
        ] {
            assert_eq!(classify(url, false, &conn()), SourceVerdict::NotGitLab, "{url}");
        }
        let reason = |url: &str, chart: bool| match classify(url, chart, &conn()) {
            SourceVerdict::Refused(r) => Some(r.reason),
            _ => None,
        };
        assert_eq!(
            reason("git@gitlab.example.com:acme/app.git", false),
            Some(Reason::SshNotSupported)
        );
        assert_eq!(
            reason("registry.example.com/acme/charts", true),
            Some(Reason::InvalidUrl)
        );
        assert_eq!(
            reason("https://gitlab.example.com/acme/app/-/tree/main", false),
            Some(Reason::InvalidUrl)
        );
        assert_eq!(
            reason("https://gitlab.example.com/acme/app.git", true),
            Some(Reason::InvalidUrl)
        );
    }

    #[test]
    fn sources_come_from_sources_else_source() {
        let multi = json!({"spec": {"source": {"repoURL": "https://ignored"}, "sources": [
            {"repoURL": "https://gitlab.example.com/a/b.git", "path": "x"},
            {"repoURL": "https://gitlab.example.com/api/v4/projects/1/packages/helm/stable", "chart": "c"}]}});
        assert_eq!(
            sources(&multi),
            [
                ("https://gitlab.example.com/a/b.git".to_string(), false),
                (
                    "https://gitlab.example.com/api/v4/projects/1/packages/helm/stable".to_string(),
                    true
                )
            ]
        );
        let single = json!({"spec": {"source": {"repoURL": "https://gitlab.example.com/a/b.git"}}});
        assert_eq!(sources(&single).len(), 1);
        assert_eq!(app_project(&single), "default");
    }

    #[test]
    fn one_token_per_app_project_and_repository_as_argo_cd_compares_urls() {
        let a = token_name("team-a", "https://gitlab.example.com/Acme/App.git");
        assert_eq!(a, token_name("team-a", "https://gitlab.example.com/acme/app"));
        assert_ne!(a, token_name("team-b", "https://gitlab.example.com/acme/app"));
        assert!(a.starts_with("argocd-team-a-") && is_dns_subdomain(&a), "{a}");
        let long = token_name(&"x".repeat(200), "https://gitlab.example.com/acme/app");
        assert!(is_dns_subdomain(&long) && long.len() < 64, "{long}");
        assert!(is_dns_subdomain(&token_name("Team_A", "u")));
    }

    #[test]
    fn source_namespaces_follow_argo_cds_globs_and_regexes() {
        let p = json!({"spec": {"sourceNamespaces": ["team-a-*", "/^ops-[0-9]+$/"]}});
        assert!(namespace_permitted(&p, "argocd", "argocd"));
        assert!(namespace_permitted(&p, "team-a-apps", "argocd"));
        assert!(namespace_permitted(&p, "ops-12", "argocd"));
        assert!(!namespace_permitted(&p, "team-b", "argocd"));
        assert!(!namespace_permitted(
            &json!({"spec": {}}),
            "team-a-apps",
            "argocd"
        ));
    }

    #[test]
    fn annotations_that_do_not_apply_to_argo_cd_are_refused() {
        let ok: BTreeMap<String, String> =
            [("gitlabtokens.io/inject".to_string(), "true".to_string())].into();
        assert!(application_annotations(&ok).is_ok());
        let mut bad = ok.clone();
        bad.insert("gitlabtokens.io/secret-name".into(), "x".into());
        assert_eq!(
            application_annotations(&bad).unwrap_err().reason,
            Reason::InvalidAnnotation
        );
    }
}
