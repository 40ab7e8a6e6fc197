//! Argo CD requests (issue 13): selected by AppProject (`argoCD.appProjects`) and by the
//! Application's namespace (`namespaceSelector`); a policy without `argoCD` never serves them.

use super::*;
use crate::crd::{ConsumerKind, GitLabTokenPolicy, Scope};

fn policy(name: &str, spec_yaml: &str) -> GitLabTokenPolicy {
    GitLabTokenPolicy::new(name, serde_yaml_ng::from_str(spec_yaml).unwrap())
}

fn ns(name: &str) -> NamespaceInfo {
    NamespaceInfo {
        name: name.into(),
        labels: Default::default(),
        annotations: Default::default(),
    }
}

fn argo_req(app_project: Option<&str>) -> TokenRequest {
    TokenRequest {
        connection: "gitlab".into(),
        project_path: "acme/team-a/app".into(),
        consumers: vec![ConsumerKind::Application],
        scopes: vec![Scope::ReadRepository],
        access_level: AccessLevel::Reporter,
        lifetime: None,
        renew_before: None,
        argocd_project: app_project.map(str::to_string),
        kind: Default::default(),
        group_path: None,
        write: false,
    }
}

fn policies() -> PolicySet {
    PolicySet::compile(&[
        policy("flux-only", "namespaceSelector: {}\nprojects: ['acme/**']\n"),
        policy(
            "argo-team-a",
            "namespaceSelector: {matchNames: [argocd, team-a-apps]}\nprojects: ['acme/team-a/*']\nargoCD: {appProjects: ['team-a', 'team-a-*']}\n",
        ),
    ])
}

#[test]
fn argo_cd_requests_are_selected_by_app_project_and_application_namespace() {
    let set = policies();
    let allowed =
        |project: &str, namespace: &str| match set.evaluate(&argo_req(Some(project)), &ns(namespace)) {
            PolicyDecision::Allowed(a) => Some(a.policy),
            PolicyDecision::Denied(_) => None,
        };
    assert_eq!(allowed("team-a", "argocd").as_deref(), Some("argo-team-a"));
    assert_eq!(
        allowed("team-a-staging", "team-a-apps").as_deref(),
        Some("argo-team-a")
    );
    // Another AppProject: the wide Flux policy does not serve it.
    assert_eq!(allowed("team-b", "argocd"), None);
    // The right AppProject from a namespace the policy does not select.
    assert_eq!(allowed("team-a", "team-b-apps"), None);
}

#[test]
fn a_policy_without_argo_cd_never_serves_an_argo_cd_request() {
    let set = PolicySet::compile(&[policy("flux-only", "namespaceSelector: {}\nprojects: ['**']\n")]);
    match set.evaluate(&argo_req(Some("default")), &ns("argocd")) {
        PolicyDecision::Denied(d) => assert_eq!(d.reason, crate::reason::Reason::NoPolicy),
        other => panic!("{other:?}"),
    }
    // Flux requests are selected as before.
    assert!(matches!(
        set.evaluate(&argo_req(None), &ns("argocd")),
        PolicyDecision::Allowed(_)
    ));
}

#[test]
fn an_empty_or_bad_app_project_list_makes_the_policy_unusable() {
    let set = PolicySet::compile(&[
        policy(
            "empty",
            "namespaceSelector: {}\nprojects: ['**']\nargoCD: {appProjects: []}\n",
        ),
        policy(
            "bad",
            "namespaceSelector: {}\nprojects: ['**']\nargoCD: {appProjects: ['team-[']}\n",
        ),
    ]);
    let unusable: Vec<_> = set.unusable().map(|u| u.name.clone()).collect();
    assert_eq!(unusable, ["bad", "empty"]);
}

#[test]
fn the_connection_of_an_argo_cd_request_is_named_only_by_policies_selecting_its_app_project() {
    // A Flux policy for every namespace names connection "flux-gitlab"; two Argo CD policies
    // name their own connection for their AppProjects.
    let set = PolicySet::compile(&[
        policy(
            "flux",
            "namespaceSelector: {}\nprojects: ['**']\nconnectionRef: {name: flux-gitlab}\n",
        ),
        policy(
            "argo-a",
            "namespaceSelector: {matchNames: [argocd]}\nprojects: ['**']\nconnectionRef: {name: gitlab-a}\nargoCD: {appProjects: ['team-a']}\n",
        ),
        policy(
            "argo-b",
            "namespaceSelector: {matchNames: [argocd]}\nprojects: ['**']\nconnectionRef: {name: gitlab-b}\nargoCD: {appProjects: ['team-b*']}\n",
        ),
    ]);
    assert!(set.unusable().next().is_none());
    let named = |project: Option<&str>| {
        let c = set.candidate_connections_for(&ns("argocd"), project);
        (c.any, c.named.into_iter().collect::<Vec<_>>())
    };
    assert_eq!(named(Some("team-a")), (false, vec!["gitlab-a".to_string()]));
    assert_eq!(named(Some("team-b-prod")), (false, vec!["gitlab-b".to_string()]));
    // No policy selects the AppProject: no candidate (the caller says NoPolicy), never the Flux one.
    assert_eq!(named(Some("team-c")), (false, vec![]));
    // A Flux request from the same namespace sees every policy selecting the namespace, as before.
    assert_eq!(
        named(None),
        (
            false,
            vec![
                "flux-gitlab".to_string(),
                "gitlab-a".to_string(),
                "gitlab-b".to_string()
            ]
        )
    );
    assert_eq!(
        set.candidate_connections(&ns("argocd")).named,
        set.candidate_connections_for(&ns("argocd"), None).named
    );
}
