//! The pure half of Argo CD credential templates (issue 13): an `AppProject` annotated
//! `gitlabtokens.io/inject: "true"` and `gitlabtokens.io/group: <group path>` gets a `repo-creds`
//! Secret whose `url` is the group's URL prefix on the connection's host, backed by a group
//! access token (`reference/argocd-secrets.md` §3, §4, §9.3).
//!
//! Argo CD cannot scope a template to a project (the `project` key is not read on `repo-creds`,
//! argo-cd#14328): every Application, of any AppProject, whose repoURL starts with the prefix and
//! that has no `repository` Secret of its own fetches with it. That is the template's blast radius;
//! the policy decides by the AppProject that asked, and must allow `GroupAccessToken` on the group.

use std::collections::BTreeMap;

use super::{
    Refusal, ShimAnnotations,
    annotations::{self, check_project_path},
    argocd::normalise_url,
};
use crate::reason::Reason;

/// The AppProject annotation naming the GitLab group a template serves (`acme/team-a`); the same
/// key a source uses for a group-level credential.
pub const GROUP: &str = annotations::GROUP;

/// What an annotated AppProject asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateRequest {
    /// The GitLab group's full path, as written.
    pub group: String,
    /// Connection, access level, extra scopes, lifetime, renew-before.
    pub ann: ShimAnnotations,
}

/// Parses an AppProject's annotations; `project`, `secret-name` and `write` make no sense on a
/// template (its reach is the group, its Secret is one per AppProject and group, Argo CD reads).
pub fn app_project_annotations(annotations: &BTreeMap<String, String>) -> Result<TemplateRequest, Refusal> {
    // On an AppProject the group names the template's reach and the kind is always a group
    // access token: the group is parsed here, not as a source's group-level credential.
    let mut for_source = annotations.clone();
    for_source.remove(GROUP);
    let mut ann = annotations::parse(&for_source).map_err(|e| super::infer::annotation_refusal(&e))?;
    ann.unknown.retain(|k| k != GROUP);
    if ann
        .credential_kind
        .is_some_and(|k| k != crate::crd::CredentialKind::GroupAccessToken)
    {
        return Err(Refusal::new(
            Reason::InvalidAnnotation,
            format!(
                "annotation {} on an Argo CD AppProject can only be GroupAccessToken: a repo-creds template is backed by a group access token; remove it",
                annotations::CREDENTIAL_KIND
            ),
        ));
    }
    for (key, set) in [
        (annotations::PROJECT, ann.project.is_some()),
        (annotations::SECRET_NAME, ann.secret_name.is_some()),
        (annotations::WRITE, ann.write),
    ] {
        if set {
            return Err(Refusal::new(
                Reason::InvalidAnnotation,
                format!(
                    "annotation {key} is not used on an Argo CD AppProject: the template reaches the whole group named by {GROUP}, its Secret is one per AppProject and group, and Argo CD only reads; remove it"
                ),
            ));
        }
    }
    let Some(group) = annotations
        .get(GROUP)
        .map(|g| g.trim().trim_matches('/').to_string())
    else {
        return Err(Refusal::new(
            Reason::InvalidAnnotation,
            format!(
                "an AppProject opted in with gitlabtokens.io/inject needs {GROUP} (the GitLab group whose repositories the repo-creds template serves, e.g. acme/team-a)"
            ),
        ));
    };
    // A group path is a project path without its last segment: the same segment rules.
    if let Err(problem) = check_project_path(&format!("{group}/x")) {
        return Err(Refusal::new(
            Reason::InvalidAnnotation,
            format!("annotation {GROUP}: {group:?} {problem}"),
        ));
    }
    if group.len() > annotations::MAX_PROJECT_LEN {
        return Err(Refusal::new(
            Reason::InvalidAnnotation,
            format!(
                "annotation {GROUP} is longer than {} characters",
                annotations::MAX_PROJECT_LEN
            ),
        ));
    }
    Ok(TemplateRequest { group, ann })
}

/// The template's `url`: the group's URL prefix on the connection's GitLab, ending in `/` so
/// `acme/team` does not also match `acme/team-b` (Argo CD compares plain string prefixes).
pub fn template_url(connection_url: &str, group: &str) -> String {
    format!(
        "{}/{}/",
        connection_url.trim_end_matches('/'),
        group.trim_matches('/')
    )
}

/// Whether Argo CD's longest-prefix match would consider the template for `repo_url`
/// (`getRepositoryCredentialIndex`: normalised repoURL starts with the normalised template URL).
pub fn under_template(repo_url: &str, template_url: &str) -> bool {
    normalise_url(repo_url).starts_with(&normalise_url(template_url))
}

/// The `GitLabToken` (and Secret) name of the template of one AppProject and group.
pub fn template_token_name(app_project: &str, group: &str) -> String {
    let group = group.to_lowercase();
    super::argocd::derived_name(
        "argocd-creds",
        app_project,
        &[b"repo-creds\0", app_project.as_bytes(), &[0], group.as_bytes()],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shim::annotations::is_dns_subdomain;

    fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn an_app_project_names_its_group_and_may_set_connection_level_and_lifetime() {
        let r = app_project_annotations(&ann(&[
            ("gitlabtokens.io/inject", "true"),
            ("gitlabtokens.io/group", "acme/platform/"),
            ("gitlabtokens.io/access-level", "developer"),
            ("gitlabtokens.io/lifetime", "30d"),
        ]))
        .unwrap();
        assert_eq!(r.group, "acme/platform");
        assert_eq!(r.ann.access_level, crate::crd::AccessLevel::Developer);
        assert!(r.ann.lifetime.is_some());
        assert!(r.ann.unknown.is_empty(), "{:?}", r.ann.unknown);
        let top = app_project_annotations(&ann(&[
            ("gitlabtokens.io/inject", "true"),
            ("gitlabtokens.io/group", "acme"),
        ]));
        assert_eq!(top.unwrap().group, "acme");
    }

    #[test]
    fn a_missing_or_bad_group_and_per_repository_annotations_are_refused() {
        let reason = |pairs: &[(&str, &str)]| app_project_annotations(&ann(pairs)).unwrap_err();
        let missing = reason(&[("gitlabtokens.io/inject", "true")]);
        assert_eq!(missing.reason, Reason::InvalidAnnotation);
        assert!(missing.message.contains(GROUP), "{}", missing.message);
        for bad in ["acme//x", "acme/../x", "acme/x y", ""] {
            let r = reason(&[("gitlabtokens.io/inject", "true"), (GROUP, bad)]);
            assert_eq!(r.reason, Reason::InvalidAnnotation, "{bad}");
        }
        let r = reason(&[
            ("gitlabtokens.io/inject", "true"),
            (GROUP, "acme"),
            ("gitlabtokens.io/secret-name", "x"),
        ]);
        assert!(r.message.contains("secret-name"), "{}", r.message);
    }

    #[test]
    fn the_prefix_ends_with_a_slash_and_matches_as_argo_cd_does() {
        let url = template_url("https://gitlab.example.com/", "acme/team");
        assert_eq!(url, "https://gitlab.example.com/acme/team/");
        assert!(under_template(
            "https://GitLab.example.com/Acme/Team/app.git",
            &url
        ));
        assert!(under_template(
            "https://gitlab.example.com/acme/team/sub/app",
            &url
        ));
        // Not a sibling group sharing the prefix, not another scheme or host.
        assert!(!under_template(
            "https://gitlab.example.com/acme/team-b/app.git",
            &url
        ));
        assert!(!under_template(
            "http://gitlab.example.com/acme/team/app.git",
            &url
        ));
        assert!(!under_template("git@gitlab.example.com:acme/team/app.git", &url));
    }

    #[test]
    fn template_token_names_never_change_across_releases() {
        // A live template's GitLabToken is found by this name: a different name would orphan it.
        assert_eq!(
            template_token_name("platform", "acme/platform"),
            "argocd-creds-platform-c0cc5ab7e0"
        );
        assert_eq!(
            super::super::argocd::token_name("team-a", "https://gitlab.example.com/acme/App.git"),
            "argocd-team-a-71446ee4ca"
        );
    }

    #[test]
    fn template_tokens_are_named_per_app_project_and_group() {
        let a = template_token_name("platform", "acme/platform");
        assert!(
            a.starts_with("argocd-creds-platform-") && is_dns_subdomain(&a),
            "{a}"
        );
        assert_eq!(a, template_token_name("platform", "Acme/Platform"));
        assert_ne!(a, template_token_name("platform", "acme/team-a"));
        assert_ne!(a, template_token_name("other", "acme/platform"));
        // Never the name of a repository token of the same AppProject.
        assert_ne!(a, super::super::argocd::token_name("platform", "acme/platform"));
        let long = template_token_name(&"x".repeat(300), "acme");
        assert!(is_dns_subdomain(&long) && long.len() < 70, "{long}");
    }
}
