//! The credential kind a source is served with: its consumer's default (a deploy key for
//! `ssh://`, else a project access token) or the one `gitlabtokens.io/credential-kind` asks for,
//! refused where the consumer could not use it (DESIGN §3; issue 12 item 4).

use crate::{
    crd::{CredentialKind, Scope},
    reason::Reason,
};

use super::{Refusal, ShimAnnotations, annotations::CREDENTIAL_KIND, infer::SourceKind};

/// Checks a GitLab group path (`acme` or `acme/team-a`): one or more segments under the same
/// rules as a project path's. `Err` says what is wrong.
pub fn check_group_path(path: &str) -> Result<(), String> {
    if !path.contains('/') {
        // One segment: checked as the first segment of a project path.
        return super::annotations::check_project_path(&format!("{path}/x"));
    }
    super::annotations::check_project_path(path)
}

/// Parses a group annotation value: digits are an id, anything else must be a group path.
pub fn parse_group(value: &str) -> Result<String, String> {
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return match value.parse::<u64>() {
            Ok(0) | Err(_) => Err("is not a valid group id".into()),
            Ok(id) => Ok(id.to_string()),
        };
    }
    if value.is_empty() {
        return Err("is empty".into());
    }
    check_group_path(value)?;
    Ok(value.to_string())
}

/// Parses a credential kind exactly as the `GitLabToken` spec spells it (PascalCase).
pub fn parse_credential_kind(value: &str) -> Result<CredentialKind, String> {
    CredentialKind::ALL
        .into_iter()
        .find(|k| k.as_str() == value)
        .ok_or_else(|| {
            let all: Vec<&str> = CredentialKind::ALL.iter().map(|k| k.as_str()).collect();
            format!("is not one of {}", all.join(", "))
        })
}

/// The kind `source` is served with, given its annotations; `InvalidAnnotation` when the
/// consumer cannot use the kind asked for.
pub fn credential_kind(source: SourceKind, ann: &ShimAnnotations) -> Result<CredentialKind, Refusal> {
    let default = source.credential_kind();
    let Some(asked) = ann.credential_kind else {
        return Ok(default);
    };
    let refuse = |why: String| {
        Err(Refusal::new(
            Reason::InvalidAnnotation,
            format!("annotation {CREDENTIAL_KIND}: {:?} {why}", asked.as_str()),
        ))
    };
    match (source, asked) {
        (SourceKind::GitRepositorySsh, CredentialKind::DeployKey) => Ok(asked),
        (SourceKind::GitRepositorySsh, _) => refuse(
            "cannot serve an SSH URL: Git over SSH takes a deploy key (DeployKey, the default for ssh://); \
             use an https:// URL for a token"
                .into(),
        ),
        (_, CredentialKind::DeployKey) => refuse(
            "serves ssh:// GitRepositories only; this source reads a token (remove the annotation or use \
             ProjectAccessToken, DeployToken or GroupAccessToken)"
                .into(),
        ),
        (SourceKind::GitLabProvider, CredentialKind::DeployToken) => refuse(
            "cannot call the GitLab API (deploy tokens have no api scope), which a notification Provider \
             needs; use ProjectAccessToken or GroupAccessToken"
                .into(),
        ),
        _ => Ok(asked),
    }
}

/// Scopes a consumer needs with credential `kind`: the consumer's own, except that a deploy
/// token reads the Helm package registry with `read_package_registry` (it has no `read_api`).
pub fn base_scopes(source: SourceKind, kind: CredentialKind) -> Vec<Scope> {
    source
        .base_scopes()
        .iter()
        .map(|s| match (kind, s) {
            (CredentialKind::DeployToken, Scope::ReadApi) => Scope::ReadPackageRegistry,
            _ => *s,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shim::annotations::GROUP;
    use std::collections::BTreeMap;

    /// Annotations given, the annotation the problem names, its value, a hint in the message.
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str, &'a str);

    fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn credential_kind_and_group_parse_exactly() {
        let a = crate::shim::annotations::parse(&ann(&[(CREDENTIAL_KIND, "DeployToken")])).unwrap();
        assert_eq!(
            (a.credential_kind, a.group),
            (Some(CredentialKind::DeployToken), None)
        );
        let a = crate::shim::annotations::parse(&ann(&[
            (CREDENTIAL_KIND, "DeployToken"),
            (GROUP, " acme/team-a "),
        ]))
        .unwrap();
        assert_eq!(a.group.as_deref(), Some("acme/team-a"));
        let a =
            crate::shim::annotations::parse(&ann(&[(CREDENTIAL_KIND, "GroupAccessToken"), (GROUP, "42")]))
                .unwrap();
        assert_eq!(
            (a.credential_kind, a.group.as_deref()),
            (Some(CredentialKind::GroupAccessToken), Some("42"))
        );
        assert_eq!(
            crate::shim::annotations::parse(&ann(&[(CREDENTIAL_KIND, "GroupAccessToken"), (GROUP, "acme")]))
                .unwrap()
                .group
                .as_deref(),
            Some("acme"),
            "a top-level group is one segment"
        );
        let defaults = crate::shim::annotations::parse(&ann(&[])).unwrap();
        assert_eq!((defaults.credential_kind, defaults.group), (None, None));
    }

    #[test]
    fn bad_credential_kinds_and_groups_name_the_annotation_and_value() {
        let kinds = "ProjectAccessToken, DeployKey, DeployToken, GroupAccessToken";
        let table: &[Case] = &[
            (
                &[(CREDENTIAL_KIND, "deploytoken")],
                CREDENTIAL_KIND,
                "deploytoken",
                kinds,
            ),
            (&[(CREDENTIAL_KIND, "ssh")], CREDENTIAL_KIND, "ssh", kinds),
            (&[(CREDENTIAL_KIND, "")], CREDENTIAL_KIND, "", kinds),
            (
                &[(CREDENTIAL_KIND, "GroupAccessToken")],
                CREDENTIAL_KIND,
                "GroupAccessToken",
                "set annotation gitlabtokens.io/group",
            ),
            (
                &[(GROUP, "acme")],
                GROUP,
                "acme",
                "only with gitlabtokens.io/credential-kind DeployToken",
            ),
            (
                &[(CREDENTIAL_KIND, "DeployKey"), (GROUP, "acme")],
                GROUP,
                "acme",
                "or GroupAccessToken",
            ),
            (
                &[(CREDENTIAL_KIND, "DeployToken"), (GROUP, "acme//x")],
                GROUP,
                "acme//x",
                "empty path segment",
            ),
            (
                &[(CREDENTIAL_KIND, "DeployToken"), (GROUP, "-acme")],
                GROUP,
                "-acme",
                "leading '-'",
            ),
            (
                &[(CREDENTIAL_KIND, "DeployToken"), (GROUP, "0")],
                GROUP,
                "0",
                "not a valid group id",
            ),
            (
                &[(CREDENTIAL_KIND, "DeployToken"), (GROUP, "")],
                GROUP,
                "",
                "is empty",
            ),
            // A bad group with a kind that needs one is one problem, not two.
            (
                &[(CREDENTIAL_KIND, "GroupAccessToken"), (GROUP, "a b")],
                GROUP,
                "a b",
                "characters GitLab does not allow",
            ),
        ];
        for (pairs, key, value, hint) in table {
            let err = crate::shim::annotations::parse(&ann(pairs)).unwrap_err();
            assert_eq!(err.0.len(), 1, "{pairs:?}: {err}");
            let msg = err.to_string();
            assert!(msg.starts_with(&format!("annotation {key}: {value:?}")), "{msg}");
            assert!(msg.contains(hint), "{pairs:?}: {msg}");
        }
    }

    fn asking(kind: Option<CredentialKind>) -> ShimAnnotations {
        ShimAnnotations {
            credential_kind: kind,
            ..ShimAnnotations::default()
        }
    }

    #[test]
    fn defaults_follow_the_consumer() {
        assert_eq!(
            credential_kind(SourceKind::GitRepositorySsh, &asking(None)),
            Ok(CredentialKind::DeployKey)
        );
        for s in [
            SourceKind::GitRepository,
            SourceKind::OciRepository,
            SourceKind::HelmRepositoryHttp,
            SourceKind::HelmRepositoryOci,
            SourceKind::ImageRepository,
            SourceKind::GitLabProvider,
        ] {
            assert_eq!(
                credential_kind(s, &asking(None)),
                Ok(CredentialKind::ProjectAccessToken),
                "{s:?}"
            );
        }
    }

    #[test]
    fn kinds_a_consumer_cannot_use_are_refused_with_the_annotation_named() {
        use CredentialKind::*;
        let table = [
            (
                SourceKind::GitRepositorySsh,
                DeployToken,
                "cannot serve an SSH URL",
            ),
            (
                SourceKind::GitRepositorySsh,
                ProjectAccessToken,
                "cannot serve an SSH URL",
            ),
            (
                SourceKind::GitRepository,
                DeployKey,
                "ssh:// GitRepositories only",
            ),
            (
                SourceKind::OciRepository,
                DeployKey,
                "ssh:// GitRepositories only",
            ),
            (
                SourceKind::GitLabProvider,
                DeployToken,
                "cannot call the GitLab API",
            ),
        ];
        for (source, kind, hint) in table {
            let r = credential_kind(source, &asking(Some(kind))).unwrap_err();
            assert_eq!(r.reason, Reason::InvalidAnnotation, "{source:?} {kind}");
            assert!(
                r.message
                    .starts_with(&format!("annotation {CREDENTIAL_KIND}: \"{kind}\"")),
                "{}",
                r.message
            );
            assert!(r.message.contains(hint), "{source:?} {kind}: {}", r.message);
        }
        let served = [
            (SourceKind::GitRepository, DeployToken),
            (SourceKind::GitRepository, GroupAccessToken),
            (SourceKind::OciRepository, DeployToken),
            (SourceKind::HelmRepositoryHttp, DeployToken),
            (SourceKind::HelmRepositoryOci, DeployToken),
            (SourceKind::ImageRepository, DeployToken),
            (SourceKind::GitLabProvider, GroupAccessToken),
            (SourceKind::GitRepositorySsh, DeployKey),
        ];
        for (source, kind) in served {
            assert_eq!(
                credential_kind(source, &asking(Some(kind))),
                Ok(kind),
                "{source:?}"
            );
        }
    }

    #[test]
    fn a_deploy_token_reads_helm_packages_with_read_package_registry() {
        assert_eq!(
            base_scopes(SourceKind::HelmRepositoryHttp, CredentialKind::DeployToken),
            [Scope::ReadPackageRegistry]
        );
        assert_eq!(
            base_scopes(SourceKind::HelmRepositoryHttp, CredentialKind::ProjectAccessToken),
            [Scope::ReadApi]
        );
        assert_eq!(
            base_scopes(SourceKind::OciRepository, CredentialKind::DeployToken),
            [Scope::ReadRegistry]
        );
    }

    /// An annotated source of `kind` with `spec`, asking with `ann`.
    fn source(kind: &str, spec: serde_json::Value, ann: &[(&str, &str)]) -> serde_json::Value {
        let mut annotations = serde_json::json!({"gitlabtokens.io/inject": "true"});
        for (k, v) in ann {
            annotations[*k] = serde_json::json!(v);
        }
        serde_json::json!({"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": kind,
            "metadata": {"name": "s", "namespace": "team-a", "annotations": annotations}, "spec": spec})
    }

    fn need(kind: &str, spec: serde_json::Value, ann: &[(&str, &str)]) -> crate::shim::SourceNeed {
        let conn =
            crate::shim::ConnectionFacts::new("https://gitlab.example.com", Some("registry.example.com"))
                .unwrap();
        let request = crate::shim::infer::infer_source(&source(kind, spec, ann), &conn).unwrap();
        crate::shim::SourceNeed::without_lookup(request).unwrap()
    }

    #[test]
    fn the_annotated_kind_and_group_reach_the_token_spec() {
        let git = serde_json::json!({"url": "https://gitlab.example.com/acme/team-a/app.git"});
        let dt = need(
            "GitRepository",
            git.clone(),
            &[
                (CREDENTIAL_KIND, "DeployToken"),
                (crate::shim::annotations::GROUP, "acme/team-a"),
            ],
        );
        let spec = crate::shim::spec_for_sources(std::slice::from_ref(&dt))
            .unwrap()
            .spec;
        assert_eq!(spec.kind, CredentialKind::DeployToken);
        assert_eq!(spec.group.as_deref(), Some("acme/team-a"));
        assert_eq!(spec.scopes, [Scope::ReadRepository]);
        assert_eq!(
            crate::controller::token::kinds::validate(&spec),
            Ok(()),
            "the spec the shim writes is one the token controller accepts"
        );

        let helm = need(
            "HelmRepository",
            serde_json::json!({"url": "https://gitlab.example.com/api/v4/projects/7/packages/helm/stable"}),
            &[(CREDENTIAL_KIND, "DeployToken")],
        );
        let spec = crate::shim::spec_for_sources(&[helm]).unwrap().spec;
        assert_eq!(
            (spec.kind, spec.group.clone()),
            (CredentialKind::DeployToken, None)
        );
        assert_eq!(spec.scopes, [Scope::ReadPackageRegistry]);
        assert_eq!(crate::controller::token::kinds::validate(&spec), Ok(()));

        // Two sources naming one Secret with different kinds do not share it.
        let pat = need("GitRepository", git, &[]);
        let diffs = crate::shim::needs_agree(&pat, &dt).unwrap_err();
        assert!(
            diffs
                .iter()
                .any(|d| d == "credentialKind: ProjectAccessToken vs DeployToken"),
            "{diffs:?}"
        );
        assert!(
            diffs.iter().any(|d| d.starts_with("group: None vs Some")),
            "{diffs:?}"
        );
    }

    #[test]
    fn an_unusable_kind_refuses_the_source_at_inference() {
        let conn =
            crate::shim::ConnectionFacts::new("https://gitlab.example.com", Some("registry.example.com"))
                .unwrap();
        let ssh = source(
            "GitRepository",
            serde_json::json!({"url": "ssh://git@gitlab.example.com/acme/app.git"}),
            &[(CREDENTIAL_KIND, "DeployToken")],
        );
        let r = crate::shim::infer::infer_source(&ssh, &conn).unwrap_err();
        assert_eq!(r.reason, Reason::InvalidAnnotation);
        assert!(r.message.contains("cannot serve an SSH URL"), "{}", r.message);
    }
}
