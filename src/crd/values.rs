//! Enumerations shared by the CRDs, annotations and policy: access levels, scopes, consumer
//! kinds and Secret formats, each with the exact spelling users write.

use std::{fmt, str::FromStr};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A GitLab role, ordered from least to most privileged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AccessLevel {
    /// 10
    Guest,
    /// 15 (GitLab 17.7+)
    Planner,
    /// 20
    Reporter,
    /// 30
    Developer,
    /// 40
    Maintainer,
}

impl AccessLevel {
    /// Every level, least privileged first.
    pub const ALL: [AccessLevel; 5] = [
        Self::Guest,
        Self::Planner,
        Self::Reporter,
        Self::Developer,
        Self::Maintainer,
    ];

    /// GitLab's numeric `access_level`.
    pub fn gitlab_value(self) -> u32 {
        match self {
            Self::Guest => 10,
            Self::Planner => 15,
            Self::Reporter => 20,
            Self::Developer => 30,
            Self::Maintainer => 40,
        }
    }

    /// The lower-case name used in annotations and specs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Guest => "guest",
            Self::Planner => "planner",
            Self::Reporter => "reporter",
            Self::Developer => "developer",
            Self::Maintainer => "maintainer",
        }
    }
}

impl fmt::Display for AccessLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AccessLevel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|l| l.as_str() == s.trim())
            .ok_or_else(|| format!("{s:?} is not one of guest, planner, reporter, developer, maintainer"))
    }
}

/// A project access token scope this operator may request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Full API access (notification Provider commit statuses).
    Api,
    /// Read-only API, including the package registry (Helm HTTP repositories).
    ReadApi,
    /// Clone and fetch.
    ReadRepository,
    /// Push (image automation).
    WriteRepository,
    /// Pull images and OCI artifacts.
    ReadRegistry,
    /// Push images.
    WriteRegistry,
    /// Pull packages (Helm HTTP repositories); deploy tokens only.
    ReadPackageRegistry,
    /// Publish packages; deploy tokens only.
    WritePackageRegistry,
}

impl Scope {
    /// Every scope.
    pub const ALL: [Scope; 8] = [
        Self::Api,
        Self::ReadApi,
        Self::ReadRepository,
        Self::WriteRepository,
        Self::ReadRegistry,
        Self::WriteRegistry,
        Self::ReadPackageRegistry,
        Self::WritePackageRegistry,
    ];

    /// GitLab's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::ReadApi => "read_api",
            Self::ReadRepository => "read_repository",
            Self::WriteRepository => "write_repository",
            Self::ReadRegistry => "read_registry",
            Self::WriteRegistry => "write_registry",
            Self::ReadPackageRegistry => "read_package_registry",
            Self::WritePackageRegistry => "write_package_registry",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|x| x.as_str() == s.trim()).ok_or_else(|| {
            format!(
                "{s:?} is not a supported scope (api, read_api, read_repository, write_repository, read_registry, write_registry)"
            )
        })
    }
}

/// The kind of object that consumes a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
pub enum ConsumerKind {
    /// `source.toolkit.fluxcd.io` GitRepository.
    GitRepository,
    /// `source.toolkit.fluxcd.io` OCIRepository.
    #[serde(rename = "OCIRepository")]
    OciRepository,
    /// `source.toolkit.fluxcd.io` HelmRepository (HTTP or `type: oci`).
    HelmRepository,
    /// `image.toolkit.fluxcd.io` ImageRepository.
    ImageRepository,
    /// `notification.toolkit.fluxcd.io` Provider of `type: gitlab`.
    Provider,
    /// `argoproj.io` Application (Argo CD; its repository Secret lives in Argo CD's namespace).
    Application,
    /// `argoproj.io` AppProject (Argo CD) asking for a `repo-creds` template for a GitLab group:
    /// gets the token's events; never nudged (Applications using the template are).
    AppProject,
}

impl ConsumerKind {
    /// Every kind.
    pub const ALL: [ConsumerKind; 7] = [
        Self::GitRepository,
        Self::OciRepository,
        Self::HelmRepository,
        Self::ImageRepository,
        Self::Provider,
        Self::Application,
        Self::AppProject,
    ];

    /// The Kubernetes kind name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::GitRepository => "GitRepository",
            Self::OciRepository => "OCIRepository",
            Self::HelmRepository => "HelmRepository",
            Self::ImageRepository => "ImageRepository",
            Self::Provider => "Provider",
            Self::Application => "Application",
            Self::AppProject => "AppProject",
        }
    }

    /// The API group the kind lives in.
    pub fn group(self) -> &'static str {
        match self {
            Self::GitRepository | Self::OciRepository | Self::HelmRepository => "source.toolkit.fluxcd.io",
            Self::ImageRepository => "image.toolkit.fluxcd.io",
            Self::Provider => "notification.toolkit.fluxcd.io",
            Self::Application | Self::AppProject => "argoproj.io",
        }
    }
}

impl fmt::Display for ConsumerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ConsumerKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s.trim())
            .ok_or_else(|| format!("{s:?} is not a consumer kind the operator serves"))
    }
}

/// The shape of the Secret written for a token (DESIGN §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SecretFormat {
    /// Opaque with `username` and `password` (git over HTTPS, Helm HTTP repositories).
    BasicAuth,
    /// `kubernetes.io/dockerconfigjson` keyed by the registry host.
    DockerConfig,
    /// Opaque with `token` (notification Provider).
    Token,
    /// Argo CD `repository` Secret: label `argocd.argoproj.io/secret-type: repository`, keys
    /// `type`, `url`, `username`, `password`, `project` (and `name` for Helm); see `spec.argoCD`.
    #[serde(rename = "argocd-repository")]
    ArgoCdRepository,
    /// Opaque with `identity`, `identity.pub` and `known_hosts` (GitRepository over `ssh://`).
    Ssh,
    /// Argo CD `repo-creds` template: label `argocd.argoproj.io/secret-type: repo-creds`, keys
    /// `type`, `url` (a URL prefix), `username`, `password`; no `project` (Argo CD cannot scope
    /// templates: every Application whose repoURL starts with the prefix may use it).
    #[serde(rename = "argocd-repo-creds")]
    ArgoCdRepoCreds,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_levels_are_ordered_like_gitlab_values() {
        let values: Vec<u32> = AccessLevel::ALL.iter().map(|l| l.gitlab_value()).collect();
        let mut sorted = values.clone();
        sorted.sort();
        assert_eq!(values, sorted);
        assert!(AccessLevel::Reporter < AccessLevel::Developer);
    }

    #[test]
    fn names_round_trip_through_strings_and_serde() {
        for l in AccessLevel::ALL {
            assert_eq!(l.as_str().parse::<AccessLevel>().unwrap(), l);
            assert_eq!(serde_json::to_value(l).unwrap(), l.as_str());
        }
        for s in Scope::ALL {
            assert_eq!(s.as_str().parse::<Scope>().unwrap(), s);
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        for k in ConsumerKind::ALL {
            assert_eq!(k.as_str().parse::<ConsumerKind>().unwrap(), k);
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
        assert!("owner".parse::<AccessLevel>().is_err());
        assert!("sudo".parse::<Scope>().is_err());
    }
}
