use k8s_openapi::ByteString;

use super::*;

fn secret(name: &str, pairs: &[(&str, &str)]) -> Secret {
    Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Default::default()
    }
}

#[test]
fn normalisation_matches_argo_cd_examples() {
    let n = |s: &str| normalize_git_url(s).unwrap();
    assert_eq!(
        n("https://GitLab.example.com/Team/App.git"),
        "https://gitlab.example.com/team/app"
    );
    assert_eq!(
        n(" git@gitlab.example.com:team/app.git "),
        "git@gitlab.example.com/team/app"
    );
    assert_eq!(
        n("ssh://git@gitlab.example.com/team/app"),
        "git@gitlab.example.com/team/app"
    );
    assert_eq!(n("https://h:8443/a/"), "https://h:8443/a/");
    assert!(same_url(
        "https://GitLab.example.com/Team/App.git",
        "https://gitlab.example.com/team/app"
    ));
    assert!(same_url(
        "git@gitlab.example.com:team/app.git",
        "ssh://git@gitlab.example.com/team/app"
    ));
    assert!(!same_url("https://h/a", "http://h/a"));
    assert!(!same_url("https://h/a/", "https://h/a"));
    assert!(!same_url("https://h/a", "git@h:a"));
    assert!(!same_url("", ""));
    // One `.git` only.
    assert_eq!(n("https://h/a.git.git"), "https://h/a.git");
    assert!(normalize_git_url("https://h:port/a").is_none());
}

#[test]
fn exact_match_prefers_own_project_then_unscoped_never_other_projects() {
    let url = "https://h/acme/app.git";
    let secrets = vec![
        secret("a-scoped", &[("url", url), ("project", "a"), ("password", "pa")]),
        secret("b-unscoped", &[("url", "https://H/acme/app"), ("password", "pu")]),
    ];
    assert_eq!(
        find_repository_secret(&secrets, url, "a")
            .unwrap()
            .metadata
            .name
            .as_deref(),
        Some("a-scoped")
    );
    assert_eq!(
        find_repository_secret(&secrets, url, "b")
            .unwrap()
            .metadata
            .name
            .as_deref(),
        Some("b-unscoped")
    );
    let only_scoped = &secrets[..1];
    assert!(find_repository_secret(only_scoped, url, "b").is_none());
    let r = get_repository(only_scoped, &[], url, "b").unwrap();
    assert_eq!(r.repo, url);
    assert!(!r.has_credentials());
}

#[test]
fn exact_match_beats_template_and_longest_prefix_wins() {
    let templates = vec![
        secret(
            "group",
            &[
                ("url", "https://h/acme/"),
                ("username", "g"),
                ("password", "group-token"),
            ],
        ),
        secret(
            "sub",
            &[
                ("url", "https://h/acme/team-a/"),
                ("username", "s"),
                ("password", "sub-token"),
            ],
        ),
        secret(
            "host",
            &[
                ("url", "https://h"),
                ("username", "x"),
                ("password", "host-token"),
            ],
        ),
    ];
    let r = get_repository(&[], &templates, "https://h/acme/team-a/app.git", "p").unwrap();
    assert_eq!((r.password.as_str(), r.inherited_creds), ("sub-token", true));
    let r = get_repository(&[], &templates, "https://h/acme/team-b/app.git", "p").unwrap();
    assert_eq!(r.password, "group-token");
    // Plain string prefix: `https://h/acme/team-a` would also match `team-ab`; with the slash not.
    let r = get_repository(&[], &templates, "https://h/acme/team-ab/app.git", "p").unwrap();
    assert_eq!(r.password, "group-token");
    let repos = vec![secret(
        "exact",
        &[
            ("url", "https://h/acme/team-a/app.git"),
            ("username", "e"),
            ("password", "exact-token"),
        ],
    )];
    let r = get_repository(&repos, &templates, "https://h/acme/team-a/app", "p").unwrap();
    assert_eq!((r.password.as_str(), r.inherited_creds), ("exact-token", false));
    // The exact Secret's URL is what is fetched.
    assert_eq!(r.repo, "https://h/acme/team-a/app.git");
}

#[test]
fn credential_less_secret_inherits_username_only_blocks_template() {
    let templates = vec![secret(
        "t",
        &[
            ("url", "https://h/acme/"),
            ("username", "g"),
            ("password", "tok"),
            ("type", "helm"),
            ("enableOCI", "true"),
        ],
    )];
    let url_only = vec![secret("r", &[("url", "https://h/acme/app.git")])];
    let r = get_repository(&url_only, &templates, "https://h/acme/app.git", "p").unwrap();
    assert_eq!(
        (
            r.username.as_str(),
            r.password.as_str(),
            r.type_.as_str(),
            r.enable_oci
        ),
        ("g", "tok", "helm", true)
    );
    let user_only = vec![secret(
        "r",
        &[("url", "https://h/acme/app.git"), ("username", "u")],
    )];
    let r = get_repository(&user_only, &templates, "https://h/acme/app.git", "p").unwrap();
    assert_eq!(
        (r.username.as_str(), r.password.as_str(), r.inherited_creds),
        ("u", "", false)
    );
}

#[test]
fn bad_booleans_fail_the_lookup_with_go_wording() {
    let repos = vec![secret("r", &[("url", "https://h/a.git"), ("insecure", "yes")])];
    let e = get_repository(&repos, &[], "https://h/a.git", "p").unwrap_err();
    assert!(
        e.to_string()
            .contains("strconv.ParseBool: parsing \"yes\": invalid syntax"),
        "{e}"
    );
    assert!(
        parse_secret(&secret("r", &[("insecure", "T")]), false)
            .unwrap()
            .insecure
    );
    // repo-creds never read `insecure` nor `project`.
    let t = parse_secret(&secret("t", &[("insecure", "yes"), ("project", "p")]), true).unwrap();
    assert!(t.project.is_empty());
}

#[test]
fn scoped_urls_are_listed_per_project_and_debug_hides_secrets() {
    let repos = vec![
        secret(
            "a",
            &[
                ("url", "https://h/a.git"),
                ("project", "p"),
                ("password", "glpat-secret"),
            ],
        ),
        secret("b", &[("url", "https://h/b.git")]),
    ];
    assert_eq!(
        project_repository_urls(&repos, "p"),
        vec!["https://h/a.git".to_string()]
    );
    assert!(project_repository_urls(&repos, "").is_empty());
    let r = parse_secret(&repos[0], false).unwrap();
    assert!(!format!("{r:?}").contains("glpat-secret"));
}

/// The Secrets of Argo CD's own example manifests (fixtures), `stringData` scalars as strings.
fn example_secrets(file: &str) -> Vec<Secret> {
    let path = crate::world::fixtures_dir().join("argocd-examples").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| {
            let mut v: serde_json::Value = serde::Deserialize::deserialize(doc).unwrap();
            if let Some(data) = v.get_mut("stringData").and_then(|d| d.as_object_mut()) {
                for value in data.values_mut() {
                    if !value.is_string() {
                        *value = serde_json::Value::String(value.to_string());
                    }
                }
            }
            serde_json::from_value(v).unwrap()
        })
        .collect()
}

#[test]
fn argo_cd_example_manifests_resolve_as_documented() {
    let repos = example_secrets("argo-cd__docs__operator-manual__argocd-repositories.yaml");
    let templates = example_secrets("argo-cd__docs__operator-manual__argocd-repo-creds.yaml");
    assert_eq!((repos.len(), templates.len()), (7, 5));
    let example_apps = "https://github.com/argoproj/argocd-example-apps";
    // The project-scoped Secret serves its project only; others fall to the template.
    let r = get_repository(&repos, &templates, example_apps, "my-project").unwrap();
    assert_eq!(
        (
            r.bearer_token.as_str(),
            r.insecure,
            r.force_http_basic_auth,
            r.inherited_creds
        ),
        ("my-token", true, true, false)
    );
    let r = get_repository(&repos, &templates, example_apps, "other").unwrap();
    assert_eq!(
        (r.username.as_str(), r.inherited_creds, r.project.as_str()),
        ("my-username", true, "")
    );
    // The URL-only Secret inherits the first of the equally long templates, and its `type: helm`
    // (the caveat noted in the fixtures' ORIGIN.md).
    let r = get_repository(
        &repos,
        &templates,
        "https://github.com/argoproj/private-repo",
        "any",
    )
    .unwrap();
    assert_eq!(
        (r.type_.as_str(), r.inherited_creds, r.password.as_str()),
        ("helm", true, "my-password")
    );
    // The scp form of the SSH example's URL is the same repository.
    let r = get_repository(
        &repos,
        &templates,
        "git@github.com:argoproj/argocd-example-apps.git",
        "x",
    )
    .unwrap();
    assert!(r.ssh_private_key.contains("OPENSSH PRIVATE KEY"));
    assert_eq!(r.repo, "ssh://git@github.com/argoproj/argocd-example-apps");
    // repo-creds carry no project: the OCI template's `project:` is ignored.
    let oci = templates
        .iter()
        .find(|t| t.metadata.name.as_deref() == Some("private-oci-repo"))
        .unwrap();
    assert_eq!(parse_secret(oci, true).unwrap().project, "");
}

#[test]
fn go_git_auth_header_rules() {
    let r = |u: &str, p: &str, b: &str| Repository {
        username: u.into(),
        password: p.into(),
        bearer_token: b.into(),
        ..Default::default()
    };
    assert_eq!(r("bot", "", "").git_authorization(), None);
    assert_eq!(
        r("", "t", "").git_authorization(),
        Some(basic_header("x-access-token", "t"))
    );
    assert_eq!(r("bot", "t", "b").git_authorization(), Some("Bearer b".into()));
}
