//! Table tests for policy evaluation, with policies written as admins write them (YAML).

use super::*;

fn policy(name: &str, spec_yaml: &str) -> GitLabTokenPolicy {
    let doc = format!(
        "apiVersion: gitlabtokens.io/v1alpha1\nkind: GitLabTokenPolicy\nmetadata:\n  name: {name}\nspec:\n{}",
        spec_yaml.lines().map(|l| format!("  {l}\n")).collect::<String>()
    );
    serde_yaml_ng::from_str(&doc).unwrap_or_else(|e| panic!("policy {name}: {e}\n{doc}"))
}

fn ns(name: &str, labels: &[(&str, &str)]) -> NamespaceInfo {
    NamespaceInfo {
        name: name.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        annotations: Default::default(),
    }
}

fn req(project: &str) -> TokenRequest {
    TokenRequest {
        connection: "gitlab".into(),
        project_path: project.into(),
        consumers: vec![ConsumerKind::GitRepository],
        scopes: vec![Scope::ReadRepository],
        access_level: AccessLevel::Reporter,
        lifetime: None,
        renew_before: None,
        argocd_project: None,
        kind: CredentialKind::ProjectAccessToken,
        group_path: None,
        write: false,
    }
}

fn d(n: u32) -> Days {
    Days::new(n).unwrap()
}

/// The policies an admin of "acme" would write.
fn acme_policies() -> Vec<GitLabTokenPolicy> {
    vec![
        policy(
            "team-a",
            "connectionRef: {name: gitlab}\nnamespaceSelector: {matchNames: ['team-a', 'team-a-*']}\nprojects: ['acme/team-a/*']\nscopes: [read_repository, read_registry]\n",
        ),
        policy(
            "platform",
            "namespaceSelector: {matchLabels: {tier: platform}}\nprojects: ['acme/platform/**']\nscopes: [read_repository, write_repository, read_registry, read_api, api]\nmaxAccessLevel: developer\nlifetime: {default: 14d, max: 60d}\nrenewBefore: {min: 3d}\nrotationStrategy: InPlace\noverlapGrace: 30m\n",
        ),
        policy(
            "both-parts",
            "namespaceSelector: {matchNames: ['apps-*'], matchLabels: {gitlab: enabled}}\nprojects: ['acme/apps/*']\nconsumers: [OCIRepository, ImageRepository]\n",
        ),
        policy(
            "other-conn",
            "connectionRef: {name: gitlab-eu}\nnamespaceSelector: {matchNames: ['team-a']}\nprojects: ['**']\nscopes: [api]\nmaxAccessLevel: maintainer\n",
        ),
    ]
}

#[derive(Debug)]
enum Want {
    Allow {
        policy: &'static str,
        lifetime: u32,
        renew_before: u32,
    },
    Deny {
        reason: Reason,
        closest: Option<&'static str>,
        fields: &'static [&'static str],
        contains: &'static str,
    },
}

#[test]
#[rustfmt::skip]
fn evaluation_table() {
    use Want::*;
    let plain = ns("team-a", &[]);
    let team_dev = ns("team-a-dev", &[]);
    let platform = ns("infra", &[("tier", "platform")]);
    let apps_ok = ns("apps-web", &[("gitlab", "enabled")]);
    let apps_nolabel = ns("apps-web", &[]);
    let nobody = ns("random", &[]);

    type Case = (&'static str, NamespaceInfo, Box<dyn Fn(&mut TokenRequest)>, Want);
    let cases: Vec<Case> = vec![
        ("one segment glob allows direct child", plain.clone(), Box::new(|r| r.project_path = "acme/team-a/app".into()), Allow { policy: "team-a", lifetime: 30, renew_before: 10 }),
        ("namespace glob team-a-* selects team-a-dev", team_dev.clone(), Box::new(|r| r.project_path = "acme/team-a/app".into()), Allow { policy: "team-a", lifetime: 30, renew_before: 10 }),
        ("one segment glob refuses deeper paths", plain.clone(), Box::new(|r| r.project_path = "acme/team-a/sub/app".into()), Deny { reason: Reason::PolicyDenied, closest: Some("team-a"), fields: &["project"], contains: "acme/team-a/sub/app matches none of policy team-a's projects (acme/team-a/*)" }),
        ("globs are case-sensitive on canonical paths", plain.clone(), Box::new(|r| r.project_path = "ACME/team-a/app".into()), Deny { reason: Reason::PolicyDenied, closest: Some("team-a"), fields: &["project"], contains: "ACME/team-a/app" }),
        ("the group itself is not inside acme/team-a/*", plain.clone(), Box::new(|r| r.project_path = "acme/team-a".into()), Deny { reason: Reason::PolicyDenied, closest: Some("team-a"), fields: &["project"], contains: "project:" }),
        ("write scope refused with the allowed list", plain.clone(), Box::new(|r| { r.project_path = "acme/team-a/app".into(); r.scopes = vec![Scope::ReadRepository, Scope::WriteRepository]; }), Deny { reason: Reason::PolicyDenied, closest: Some("team-a"), fields: &["scopes"], contains: "scopes: write_repository is not allowed by policy team-a (allowed: read_repository, read_registry)" }),
        ("two bad scopes are both named", plain.clone(), Box::new(|r| { r.project_path = "acme/team-a/app".into(); r.scopes = vec![Scope::Api, Scope::WriteRegistry]; }), Deny { reason: Reason::PolicyDenied, closest: Some("team-a"), fields: &["scopes"], contains: "scopes: api, write_registry are not allowed" }),
        ("default max level is reporter", plain.clone(), Box::new(|r| { r.project_path = "acme/team-a/app".into(); r.access_level = AccessLevel::Developer; }), Deny { reason: Reason::PolicyDenied, closest: Some("team-a"), fields: &["accessLevel"], contains: "accessLevel: developer is above policy team-a's maxAccessLevel reporter" }),
        ("guest is below reporter", plain.clone(), Box::new(|r| { r.project_path = "acme/team-a/app".into(); r.access_level = AccessLevel::Guest; }), Allow { policy: "team-a", lifetime: 30, renew_before: 10 }),
        ("every violated field is listed", plain.clone(), Box::new(|r| { r.project_path = "acme/x/y".into(); r.scopes = vec![Scope::Api]; r.access_level = AccessLevel::Maintainer; r.lifetime = Some(d(200)); }), Deny { reason: Reason::PolicyDenied, closest: Some("team-a"), fields: &["project", "scopes", "accessLevel", "lifetime"], contains: "lifetime: 200d is longer than policy team-a's lifetime.max 90d" }),
        ("lifetime up to max is fine, renew third rounded down", plain.clone(), Box::new(|r| { r.project_path = "acme/team-a/app".into(); r.lifetime = Some(d(90)); }), Allow { policy: "team-a", lifetime: 90, renew_before: 30 }),
        ("third of 10d rounds down to 3d", plain.clone(), Box::new(|r| { r.project_path = "acme/team-a/app".into(); r.lifetime = Some(d(10)); }), Allow { policy: "team-a", lifetime: 10, renew_before: 3 }),
        ("third of 2d is at least 1d", plain.clone(), Box::new(|r| { r.project_path = "acme/team-a/app".into(); r.lifetime = Some(d(2)); }), Allow { policy: "team-a", lifetime: 2, renew_before: 1 }),
        ("1d lifetime leaves no room to renew", plain.clone(), Box::new(|r| { r.project_path = "acme/team-a/app".into(); r.lifetime = Some(d(1)); }), Deny { reason: Reason::PolicyDenied, closest: Some("team-a"), fields: &["renewBefore"], contains: "renewBefore: 1d is not shorter than the lifetime 1d" }),
        ("renew-before equal to lifetime is refused", plain.clone(), Box::new(|r| { r.project_path = "acme/team-a/app".into(); r.lifetime = Some(d(20)); r.renew_before = Some(d(20)); }), Deny { reason: Reason::PolicyDenied, closest: Some("team-a"), fields: &["renewBefore"], contains: "not shorter than the lifetime 20d" }),
        ("explicit renew-before is kept", plain.clone(), Box::new(|r| { r.project_path = "acme/team-a/app".into(); r.renew_before = Some(d(5)); }), Allow { policy: "team-a", lifetime: 30, renew_before: 5 }),
        ("platform: any depth under acme/platform/**", platform.clone(), Box::new(|r| r.project_path = "acme/platform/infra/deep/repo".into()), Allow { policy: "platform", lifetime: 14, renew_before: 4 }),
        ("platform: ** does not match the group itself", platform.clone(), Box::new(|r| r.project_path = "acme/platform".into()), Deny { reason: Reason::PolicyDenied, closest: Some("platform"), fields: &["project"], contains: "acme/platform/**" }),
        ("platform: developer + write allowed", platform.clone(), Box::new(|r| { r.project_path = "acme/platform/x".into(); r.scopes = vec![Scope::ReadRepository, Scope::WriteRepository]; r.access_level = AccessLevel::Developer; }), Allow { policy: "platform", lifetime: 14, renew_before: 4 }),
        ("platform: maintainer above developer", platform.clone(), Box::new(|r| { r.project_path = "acme/platform/x".into(); r.access_level = AccessLevel::Maintainer; }), Deny { reason: Reason::PolicyDenied, closest: Some("platform"), fields: &["accessLevel"], contains: "maxAccessLevel developer" }),
        ("platform: renew-before below min", platform.clone(), Box::new(|r| { r.project_path = "acme/platform/x".into(); r.renew_before = Some(d(2)); }), Deny { reason: Reason::PolicyDenied, closest: Some("platform"), fields: &["renewBefore"], contains: "renewBefore: 2d is shorter than policy platform's renewBefore.min 3d" }),
        ("platform: derived renew-before is raised to min", platform.clone(), Box::new(|r| { r.project_path = "acme/platform/x".into(); r.lifetime = Some(d(6)); }), Allow { policy: "platform", lifetime: 6, renew_before: 3 }),
        ("platform: min forces renew-before >= short lifetime", platform.clone(), Box::new(|r| { r.project_path = "acme/platform/x".into(); r.lifetime = Some(d(3)); }), Deny { reason: Reason::PolicyDenied, closest: Some("platform"), fields: &["renewBefore"], contains: "renewBefore: 3d is not shorter than the lifetime 3d" }),
        ("platform: lifetime above 60d", platform.clone(), Box::new(|r| { r.project_path = "acme/platform/x".into(); r.lifetime = Some(d(61)); }), Deny { reason: Reason::PolicyDenied, closest: Some("platform"), fields: &["lifetime"], contains: "61d is longer than policy platform's lifetime.max 60d" }),
        ("labels select, names do not matter", ns("whatever", &[("tier", "platform"), ("x", "y")]), Box::new(|r| r.project_path = "acme/platform/x".into()), Allow { policy: "platform", lifetime: 14, renew_before: 4 }),
        ("label value must match exactly", ns("infra", &[("tier", "Platform")]), Box::new(|r| r.project_path = "acme/platform/x".into()), Deny { reason: Reason::NoPolicy, closest: None, fields: &[], contains: "no usable GitLabTokenPolicy selects" }),
        ("names and labels both required: both match", apps_ok.clone(), Box::new(|r| { r.project_path = "acme/apps/web".into(); r.consumers = vec![ConsumerKind::OciRepository]; r.scopes = vec![Scope::ReadRegistry]; }), Allow { policy: "both-parts", lifetime: 30, renew_before: 10 }),
        ("names and labels both required: label missing", apps_nolabel.clone(), Box::new(|r| r.project_path = "acme/apps/web".into()), Deny { reason: Reason::NoPolicy, closest: None, fields: &[], contains: "denied" }),
        ("consumer kind not allowed", apps_ok.clone(), Box::new(|r| r.project_path = "acme/apps/web".into()), Deny { reason: Reason::PolicyDenied, closest: Some("both-parts"), fields: &["consumers"], contains: "consumers: GitRepository is not allowed by policy both-parts (allowed: OCIRepository, ImageRepository)" }),
        ("bare GitLabToken without consumers vs a consumer restriction", apps_ok.clone(), Box::new(|r| { r.project_path = "acme/apps/web".into(); r.consumers.clear(); }), Deny { reason: Reason::PolicyDenied, closest: Some("both-parts"), fields: &["consumers"], contains: "names no consumer" }),
        ("default scopes include read_api", apps_ok.clone(), Box::new(|r| { r.project_path = "acme/apps/web".into(); r.consumers = vec![ConsumerKind::ImageRepository]; r.scopes = vec![Scope::ReadApi, Scope::ReadRegistry]; }), Allow { policy: "both-parts", lifetime: 30, renew_before: 10 }),
        ("default scopes exclude api", apps_ok.clone(), Box::new(|r| { r.project_path = "acme/apps/web".into(); r.consumers = vec![ConsumerKind::ImageRepository]; r.scopes = vec![Scope::Api]; }), Deny { reason: Reason::PolicyDenied, closest: Some("both-parts"), fields: &["scopes"], contains: "allowed: read_repository, read_registry, read_api" }),
        ("no policy for the namespace: denied, not pending", nobody.clone(), Box::new(|r| r.project_path = "acme/team-a/app".into()), Deny { reason: Reason::NoPolicy, closest: None, fields: &[], contains: "no usable GitLabTokenPolicy" }),
        ("connectionRef must match", plain.clone(), Box::new(|r| { r.project_path = "acme/team-a/app".into(); r.connection = "gitlab-us".into(); }), Deny { reason: Reason::NoPolicy, closest: None, fields: &[], contains: "no usable" }),
        ("other connection's policy applies there", plain.clone(), Box::new(|r| { r.project_path = "anything/at/all".into(); r.connection = "gitlab-eu".into(); r.scopes = vec![Scope::Api]; r.access_level = AccessLevel::Maintainer; }), Allow { policy: "other-conn", lifetime: 30, renew_before: 10 }),
        ("other connection's policy does not leak to gitlab", plain.clone(), Box::new(|r| { r.project_path = "anything/at/all".into(); r.scopes = vec![Scope::Api]; }), Deny { reason: Reason::PolicyDenied, closest: Some("team-a"), fields: &["project", "scopes"], contains: "closest is team-a" }),
    ];

    let set = PolicySet::compile(&acme_policies());
    assert_eq!(set.unusable().count(), 0);
    for (name, namespace, tweak, want) in cases {
        let mut r = req("acme/team-a/app");
        tweak(&mut r);
        let got = set.evaluate(&r, &namespace);
        assert_eq!(
            got,
            evaluate(&r, &namespace, &acme_policies()),
            "{name}: wrapper differs"
        );
        match (&want, &got) {
            (
                Allow {
                    policy,
                    lifetime,
                    renew_before,
                },
                PolicyDecision::Allowed(a),
            ) => {
                assert_eq!(a.policy, *policy, "{name}");
                assert_eq!(a.lifetime.get(), *lifetime, "{name}");
                assert_eq!(a.renew_before.get(), *renew_before, "{name}");
                assert!(a.renew_before < a.lifetime, "{name}");
            }
            (
                Deny {
                    reason,
                    closest,
                    fields,
                    contains,
                },
                PolicyDecision::Denied(dn),
            ) => {
                assert_eq!(dn.reason, *reason, "{name}");
                assert_eq!(dn.closest.as_deref(), *closest, "{name}");
                let got_fields: Vec<_> = dn.violations.iter().map(|v| v.field).collect();
                assert_eq!(got_fields, *fields, "{name}");
                for v in &dn.violations {
                    assert!(
                        v.message.starts_with(&format!("{}: ", v.field)),
                        "{name}: {}",
                        v.message
                    );
                }
                assert!(
                    dn.message().contains(contains),
                    "{name}: {:?} lacks {contains:?}",
                    dn.message()
                );
            }
            _ => panic!("{name}: want {want:?}, got {got:?}"),
        }
    }
}

#[test]
fn allowance_carries_rotation_settings_of_the_winner() {
    let set = PolicySet::compile(&acme_policies());
    let mut r = req("acme/platform/x");
    r.consumers = vec![ConsumerKind::Provider];
    let PolicyDecision::Allowed(a) = set.evaluate(&r, &ns("infra", &[("tier", "platform")])) else {
        panic!()
    };
    assert_eq!(a.rotation_strategy, RotationStrategy::InPlace);
    assert_eq!(a.overlap_grace.as_secs(), 1800);
    let PolicyDecision::Allowed(a) = set.evaluate(&req("acme/team-a/x"), &ns("team-a", &[])) else {
        panic!()
    };
    assert_eq!(a.rotation_strategy, RotationStrategy::Overlap);
    assert_eq!(a.overlap_grace.as_secs(), 600);
}

#[test]
fn closest_is_fewest_violations_then_name() {
    let policies = vec![
        policy("b-two", "namespaceSelector: {}\nprojects: ['acme/*']\n"),
        policy(
            "a-three",
            "namespaceSelector: {}\nprojects: ['other/*']\nlifetime: {default: 5d, max: 5d}\n",
        ),
        policy("c-two", "namespaceSelector: {}\nprojects: ['acme/*']\n"),
    ];
    let mut r = req("acme/x");
    r.scopes = vec![Scope::Api];
    r.access_level = AccessLevel::Developer;
    let PolicyDecision::Denied(dn) = evaluate(&r, &ns("n", &[]), &policies) else {
        panic!()
    };
    assert_eq!(dn.closest.as_deref(), Some("b-two"));
    assert_eq!(
        dn.violations.iter().map(|v| v.field).collect::<Vec<_>>(),
        ["scopes", "accessLevel"]
    );
}

#[test]
fn several_allowing_policies_pick_the_first_name() {
    let policies = vec![
        policy(
            "zeta",
            "namespaceSelector: {}\nprojects: ['**']\nlifetime: {default: 7d, max: 7d}\n",
        ),
        policy("alpha", "namespaceSelector: {}\nprojects: ['acme/**']\n"),
    ];
    let PolicyDecision::Allowed(a) = evaluate(&req("acme/x/y"), &ns("n", &[]), &policies) else {
        panic!()
    };
    assert_eq!(a.policy, "alpha");
    assert_eq!(a.lifetime.get(), 30);
}

#[test]
fn policy_renew_before_default_applies_when_shorter_than_lifetime() {
    let policies = vec![policy(
        "p",
        "namespaceSelector: {}\nprojects: ['**']\nrenewBefore: {default: 12d}\n",
    )];
    let PolicyDecision::Allowed(a) = evaluate(&req("a/b"), &ns("n", &[]), &policies) else {
        panic!()
    };
    assert_eq!(a.renew_before.get(), 12);
    // A short requested lifetime falls back to the third rule instead of a default that cannot fit.
    let mut r = req("a/b");
    r.lifetime = Some(d(9));
    let PolicyDecision::Allowed(a) = evaluate(&r, &ns("n", &[]), &policies) else {
        panic!()
    };
    assert_eq!(a.renew_before.get(), 3);
}

#[test]
fn unusable_policies_are_reported_and_never_allow() {
    let table: &[(&str, &str, &str)] = &[
        (
            "bad-glob",
            "namespaceSelector: {}\nprojects: ['acme/[team']\n",
            "projects: \"acme/[team\" is not a valid glob",
        ),
        (
            "bad-ns-glob",
            "namespaceSelector: {matchNames: ['team-{a']}\nprojects: ['**']\n",
            "namespaceSelector.matchNames",
        ),
        (
            "empty-projects",
            "namespaceSelector: {}\nprojects: []\n",
            "projects: the list is empty",
        ),
        (
            "blank-glob",
            "namespaceSelector: {}\nprojects: [' ']\n",
            "empty or has surrounding spaces",
        ),
        (
            "default-over-max",
            "namespaceSelector: {}\nprojects: ['**']\nlifetime: {default: 100d, max: 90d}\n",
            "lifetime.default: 100d is longer than lifetime.max 90d",
        ),
        (
            "max-over-gitlab",
            "namespaceSelector: {}\nprojects: ['**']\nlifetime: {default: 30d, max: 400d}\n",
            "longer than GitLab's 365d limit",
        ),
        (
            "rb-default-below-min",
            "namespaceSelector: {}\nprojects: ['**']\nrenewBefore: {default: 2d, min: 5d}\n",
            "renewBefore.default: 2d is shorter than renewBefore.min 5d",
        ),
        (
            "rb-min-over-max",
            "namespaceSelector: {}\nprojects: ['**']\nlifetime: {default: 10d, max: 10d}\nrenewBefore: {min: 10d}\n",
            "no lifetime fits",
        ),
    ];
    for (name, spec, problem) in table {
        let p = policy(name, spec);
        let err = compile_policy(&p).expect_err(name);
        assert!(
            err.problems.iter().any(|m| m.contains(problem)),
            "{name}: {:?}",
            err.problems
        );
        let PolicyDecision::Denied(dn) = evaluate(&req("acme/x"), &ns("n", &[]), &[p]) else {
            panic!("{name}")
        };
        assert_eq!(dn.reason, Reason::NoPolicy, "{name}");
        assert_eq!(dn.unusable.len(), 1, "{name}");
        assert!(
            dn.message().contains(&format!("policy {name} is unusable")),
            "{name}: {}",
            dn.message()
        );
    }
}

#[test]
fn candidate_connections_follow_selecting_policies() {
    let set = PolicySet::compile(&acme_policies());
    let c = set.candidate_connections(&ns("team-a", &[]));
    assert!(!c.any);
    assert_eq!(
        c.named.iter().map(String::as_str).collect::<Vec<_>>(),
        ["gitlab", "gitlab-eu"]
    );
    let c = set.candidate_connections(&ns("infra", &[("tier", "platform")]));
    assert!(c.any);
    assert!(c.named.is_empty());
    assert_eq!(
        set.candidate_connections(&ns("nobody", &[])),
        ConnectionCandidates::default()
    );
}

#[test]
fn request_from_spec_collects_consumer_kinds() {
    let spec: GitLabTokenSpec = serde_yaml_ng::from_str(
        "project: acme/x\nscopes: [read_registry]\nsecret: {name: s, format: docker-config}\nconsumers:\n- {apiVersion: source.toolkit.fluxcd.io/v1, kind: OCIRepository, name: a}\n- {apiVersion: source.toolkit.fluxcd.io/v1, kind: OCIRepository, name: b}\n- {apiVersion: image.toolkit.fluxcd.io/v1, kind: ImageRepository, name: c}\n",
    )
    .unwrap();
    let r = TokenRequest::from_spec(&spec, "gitlab", "acme/x").unwrap();
    assert_eq!(
        r.consumers,
        [ConsumerKind::OciRepository, ConsumerKind::ImageRepository]
    );
    assert_eq!(r.access_level, AccessLevel::Reporter);
    let mut bad = spec.clone();
    bad.consumers[0].kind = "Bucket".into();
    assert!(
        TokenRequest::from_spec(&bad, "gitlab", "acme/x")
            .unwrap_err()
            .contains("Bucket")
    );
}

#[test]
fn delegating_policies_name_their_gitlab_identity() {
    let fixed = policy(
        "delegated",
        "namespaceSelector: {matchNames: ['team-*']}\nprojects: ['**']\ngitlabAccess: {group: acme/team-a}\n",
    );
    let per_ns = policy(
        "per-namespace",
        "namespaceSelector: {matchNames: ['team-*']}\nprojects: ['**']\ngitlabAccess: {namespaceAnnotation: gitlabtokens.io/gitlab-identity}\n",
    );
    let set = PolicySet::compile(std::slice::from_ref(&fixed));
    match set.evaluate(&req("acme/other/app"), &ns("team-x", &[])) {
        PolicyDecision::Allowed(a) => {
            assert_eq!(
                a.delegate,
                Some(delegation::Identity::Group("acme/team-a".into()))
            );
        }
        other => panic!("{other:?}"),
    }
    // The identity from the namespace's annotation; none (or a bad one) is a violation.
    let set = PolicySet::compile(&[per_ns]);
    let mut annotated = ns("team-b", &[]);
    annotated
        .annotations
        .insert("gitlabtokens.io/gitlab-identity".into(), "user:svc-b".into());
    match set.evaluate(&req("acme/x/app"), &annotated) {
        PolicyDecision::Allowed(a) => {
            assert_eq!(a.delegate, Some(delegation::Identity::User("svc-b".into())))
        }
        other => panic!("{other:?}"),
    }
    match set.evaluate(&req("acme/x/app"), &ns("team-c", &[])) {
        PolicyDecision::Denied(d) => {
            assert_eq!(d.violations.len(), 1, "{d:?}");
            assert_eq!(d.violations[0].field, "gitlabAccess");
            assert!(
                d.message()
                    .contains("has no annotation gitlabtokens.io/gitlab-identity"),
                "{}",
                d.message()
            );
        }
        other => panic!("{other:?}"),
    }
    annotated
        .annotations
        .insert("gitlabtokens.io/gitlab-identity".into(), "acme/team-b".into());
    assert!(matches!(
        set.evaluate(&req("acme/x/app"), &annotated),
        PolicyDecision::Denied(_)
    ));
    // A policy that grants on its own wins over a delegating one, whatever the names.
    let plain = policy(
        "z-plain",
        "namespaceSelector: {matchNames: ['team-*']}\nprojects: ['acme/**']\n",
    );
    match PolicySet::compile(&[fixed, plain]).evaluate(&req("acme/x/app"), &ns("team-x", &[])) {
        PolicyDecision::Allowed(a) => {
            assert_eq!(a.policy, "z-plain");
            assert_eq!(a.delegate, None);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_bad_gitlab_access_makes_the_policy_unusable() {
    let bad = policy(
        "bad",
        "namespaceSelector: {}\nprojects: ['**']\ngitlabAccess: {group: acme/a, user: bob}\n",
    );
    let set = PolicySet::compile(&[bad]);
    let problems: Vec<_> = set.unusable().flat_map(|u| u.problems.clone()).collect();
    assert_eq!(
        problems,
        vec![
            "gitlabAccess: exactly one of group, user and namespaceAnnotation must be set (2 are)"
                .to_string()
        ]
    );
}
