//! What the token controller does differently for an Argo CD request (`secret.format:
//! argocd-repository`): the token must live in Argo CD's namespace (Argo CD reads Secrets only
//! there), and policies select it by the namespaces of the Applications it serves and by its
//! AppProject (`spec.argoCD`), not by the namespace it lives in.

use kube::ResourceExt;

use super::observe::Refusal;
use crate::{
    crd::{GitLabToken, SecretFormat},
    reason::Reason,
};

fn refusal(reason: Reason, message: String) -> Refusal {
    Refusal {
        reason,
        message,
        policy: None,
        connection: None,
        project: None,
    }
}

/// Refuses an Argo CD request outside Argo CD's namespace, an `argocd-repository` Secret without
/// `spec.argoCD`, and `spec.argoCD` on any other format.
pub fn check_placement(token: &GitLabToken, argocd_namespace: &str) -> Result<(), Refusal> {
    let namespace = token.namespace().unwrap_or_default();
    let format = token.spec.secret.format;
    let argo_format = matches!(
        format,
        SecretFormat::ArgoCdRepository | SecretFormat::ArgoCdRepoCreds
    );
    match (&token.spec.argo_cd, format) {
        (None, _) if argo_format => Err(refusal(
            Reason::ArgoCdNamespaceRequired,
            "secret.format argocd-repository or argocd-repo-creds needs spec.argoCD (url, type, project)"
                .into(),
        )),
        (Some(_), _) if !argo_format => Err(refusal(
            Reason::ArgoCdNamespaceRequired,
            "spec.argoCD is only valid with secret.format argocd-repository or argocd-repo-creds".into(),
        )),
        (Some(_), _) if namespace != argocd_namespace => Err(refusal(
            Reason::ArgoCdNamespaceRequired,
            format!(
                "an Argo CD repository Secret is read only in Argo CD's namespace {argocd_namespace:?}; this GitLabToken is in {namespace:?}"
            ),
        )),
        _ => Ok(()),
    }
}

/// The namespaces policies are asked about: every Application namespace of an Argo CD request
/// (sorted, at least one: Argo CD's own when none is listed), else the token's namespace.
pub fn request_namespaces(token: &GitLabToken) -> Vec<String> {
    let own = token.namespace().unwrap_or_default();
    let mut out: Vec<String> = token
        .spec
        .argo_cd
        .as_ref()
        .map(|a| a.application_namespaces.clone())
        .unwrap_or_default();
    out.sort();
    out.dedup();
    if out.is_empty() {
        out.push(own);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{ArgoCdRepoType, ArgoCdRepository, GitLabTokenSpec};

    fn token(namespace: &str, format: &str, argo: Option<Vec<&str>>) -> GitLabToken {
        let spec: GitLabTokenSpec = serde_json::from_value(serde_json::json!({
            "project": "acme/app", "scopes": ["read_repository"],
            "secret": {"name": "s", "format": format},
        }))
        .unwrap();
        let mut t = GitLabToken::new(
            "t",
            GitLabTokenSpec {
                argo_cd: argo.map(|ns| ArgoCdRepository {
                    url: "https://gitlab.example.com/acme/app.git".into(),
                    repo_type: ArgoCdRepoType::Git,
                    project: "team-a".into(),
                    application_namespaces: ns.into_iter().map(String::from).collect(),
                }),
                ..spec
            },
        );
        t.metadata.namespace = Some(namespace.into());
        t
    }

    #[test]
    fn argo_cd_requests_live_in_argo_cds_namespace_only() {
        assert!(check_placement(&token("argocd", "argocd-repository", Some(vec![])), "argocd").is_ok());
        let r = check_placement(&token("team-a", "argocd-repository", Some(vec![])), "argocd").unwrap_err();
        assert_eq!(r.reason, Reason::ArgoCdNamespaceRequired);
        assert!(r.message.contains("\"team-a\""), "{}", r.message);
        assert!(check_placement(&token("argocd", "argocd-repository", None), "argocd").is_err());
        assert!(check_placement(&token("argocd", "basic-auth", Some(vec![])), "argocd").is_err());
        assert!(check_placement(&token("team-a", "basic-auth", None), "argocd").is_ok());
        assert!(check_placement(&token("argocd", "argocd-repo-creds", Some(vec![])), "argocd").is_ok());
        assert!(check_placement(&token("argocd", "argocd-repo-creds", None), "argocd").is_err());
        assert!(check_placement(&token("team-a", "argocd-repo-creds", Some(vec![])), "argocd").is_err());
    }

    #[test]
    fn policies_are_asked_about_every_application_namespace() {
        assert_eq!(
            request_namespaces(&token("argocd", "argocd-repository", Some(vec!["b", "a", "b"]))),
            ["a", "b"]
        );
        assert_eq!(
            request_namespaces(&token("argocd", "argocd-repository", Some(vec![]))),
            ["argocd"]
        );
        assert_eq!(
            request_namespaces(&token("team-a", "basic-auth", None)),
            ["team-a"]
        );
    }
}
