//! Table tests of inference over realistic Flux manifests, and of sharing one Secret.

use std::path::PathBuf;

use serde_json::Value;

use super::{infer::infer_source, *};
use crate::crd::{AccessLevel, Scope, SecretFormat};

fn conn() -> ConnectionFacts {
    ConnectionFacts::new("https://gitlab.example.com", Some("registry.example.com")).unwrap()
}

fn rooted() -> ConnectionFacts {
    ConnectionFacts::new("https://example.com/gitlab", Some("example.com:5050")).unwrap()
}

/// A manifest: `api kind name`, annotations (`k: v` lines) and the spec body (YAML lines).
fn manifest(api: &str, kind: &str, name: &str, annotations: &[(&str, &str)], spec: &str) -> Value {
    let mut y = format!("apiVersion: {api}\nkind: {kind}\nmetadata:\n  name: {name}\n  namespace: team-a\n");
    y.push_str("  annotations:\n    gitlabtokens.io/inject: \"true\"\n");
    for (k, v) in annotations {
        y.push_str(&format!("    {k}: {v:?}\n"));
    }
    y.push_str("spec:\n  interval: 1m\n");
    for l in spec.lines() {
        y.push_str(&format!("  {l}\n"));
    }
    serde_yaml_ng::from_str(&y).unwrap_or_else(|e| panic!("{e}\n{y}"))
}

const GIT: &str = "source.toolkit.fluxcd.io/v1";
const GIT_B2: &str = "source.toolkit.fluxcd.io/v1beta2";
const IMG: &str = "image.toolkit.fluxcd.io/v1";
const IMG_B2: &str = "image.toolkit.fluxcd.io/v1beta2";
const NOTE_B3: &str = "notification.toolkit.fluxcd.io/v1beta3";
const NOTE_B2: &str = "notification.toolkit.fluxcd.io/v1beta2";

struct Ok_ {
    kind: SourceKind,
    project: ProjectHint,
    scopes: &'static [Scope],
    format: SecretFormat,
    secret: &'static str,
    registry: Option<&'static str>,
    set_ref: bool,
}

fn path(p: &str) -> ProjectHint {
    ProjectHint::Path(p.into())
}

#[test]
#[rustfmt::skip]
fn inference_table() {
    use SourceKind::*;
    let reg = |p: &str| ProjectHint::registry(p);
    type Case = (&'static str, Value, ConnectionFacts, Result<Ok_, (Reason, &'static str)>);
    let cases: Vec<Case> = vec![
        ("git https with .git", manifest(GIT, "GitRepository", "podinfo", &[], "url: https://gitlab.example.com/acme/team-a/podinfo.git\nref: {branch: main}"), conn(), Ok(Ok_ { kind: GitRepository, project: path("acme/team-a/podinfo"), scopes: &[Scope::ReadRepository], format: SecretFormat::BasicAuth, secret: "podinfo-gitlab-token", registry: None, set_ref: true })),
        ("git v1beta2, no .git, existing secretRef, upper-case host, explicit :443", manifest(GIT_B2, "GitRepository", "app", &[], "url: https://GITLAB.example.com:443/acme/app\nsecretRef: {name: app-auth}"), conn(), Ok(Ok_ { kind: GitRepository, project: path("acme/app"), scopes: &[Scope::ReadRepository], format: SecretFormat::BasicAuth, secret: "app-auth", registry: None, set_ref: false })),
        ("git write for image automation", manifest(GIT, "GitRepository", "fleet", &[("gitlabtokens.io/write", "true"), ("gitlabtokens.io/access-level", "developer")], "url: https://gitlab.example.com/acme/fleet.git"), conn(), Ok(Ok_ { kind: GitRepository, project: path("acme/fleet"), scopes: &[Scope::ReadRepository, Scope::WriteRepository], format: SecretFormat::BasicAuth, secret: "fleet-gitlab-token", registry: None, set_ref: true })),
        ("git write with the default reporter role cannot push", manifest(GIT, "GitRepository", "fleet", &[("gitlabtokens.io/write", "true")], "url: https://gitlab.example.com/acme/fleet.git"), conn(), Err((Reason::InvalidAnnotation, "gitlabtokens.io/access-level: \"reporter\" cannot push"))),
        ("git under a relative URL root", manifest(GIT, "GitRepository", "app", &[], "url: https://example.com/gitlab/acme/sub/app.git"), rooted(), Ok(Ok_ { kind: GitRepository, project: path("acme/sub/app"), scopes: &[Scope::ReadRepository], format: SecretFormat::BasicAuth, secret: "app-gitlab-token", registry: None, set_ref: true })),
        ("git outside the relative URL root", manifest(GIT, "GitRepository", "app", &[], "url: https://example.com/acme/app.git"), rooted(), Err((Reason::ForeignHost, "URL root https://example.com/gitlab"))),
        ("git ssh gets a deploy key", manifest(GIT, "GitRepository", "a", &[], "url: ssh://git@gitlab.example.com/acme/app.git"), conn(), Ok(Ok_ { kind: GitRepositorySsh, project: path("acme/app"), scopes: &[Scope::ReadRepository], format: SecretFormat::Ssh, secret: "a-gitlab-token", registry: None, set_ref: true })),
        ("git ssh on a port the connection does not serve", manifest(GIT, "GitRepository", "a", &[], "url: ssh://git@gitlab.example.com:2222/acme/app.git"), conn(), Err((Reason::ForeignHost, "spec.sshHost"))),
        ("git scp form gets a deploy key, write pushes without a role", manifest(GIT, "GitRepository", "a", &[("gitlabtokens.io/write", "true")], "url: git@gitlab.example.com:acme/app.git"), conn(), Ok(Ok_ { kind: GitRepositorySsh, project: path("acme/app"), scopes: &[Scope::ReadRepository, Scope::WriteRepository], format: SecretFormat::Ssh, secret: "a-gitlab-token", registry: None, set_ref: true })),
        ("git foreign host", manifest(GIT, "GitRepository", "a", &[], "url: https://github.com/acme/app.git"), conn(), Err((Reason::ForeignHost, "https://gitlab.example.com"))),
        ("git lookalike host", manifest(GIT, "GitRepository", "a", &[], "url: https://gitlab.example.com.evil.io/acme/app.git"), conn(), Err((Reason::ForeignHost, "not on the connection's GitLab"))),
        ("git plain http to an https GitLab", manifest(GIT, "GitRepository", "a", &[], "url: http://gitlab.example.com/acme/app.git"), conn(), Err((Reason::ForeignHost, "not on the connection's GitLab"))),
        ("git user-info", manifest(GIT, "GitRepository", "a", &[], "url: https://oauth2:glpat-x@gitlab.example.com/acme/app.git"), conn(), Err((Reason::InvalidUrl, "user-info"))),
        ("git dot-dot", manifest(GIT, "GitRepository", "a", &[], "url: https://gitlab.example.com/acme/team-a/../team-b/app.git"), conn(), Err((Reason::InvalidUrl, "'..'"))),
        ("git encoded slash", manifest(GIT, "GitRepository", "a", &[], "url: https://gitlab.example.com/acme%2Fteam-b/app.git"), conn(), Err((Reason::InvalidUrl, "encoded slash"))),
        ("git page URL", manifest(GIT, "GitRepository", "a", &[], "url: https://gitlab.example.com/acme/app/-/tree/main"), conn(), Err((Reason::InvalidUrl, "/-/"))),
        ("git single segment", manifest(GIT, "GitRepository", "a", &[], "url: https://gitlab.example.com/app.git"), conn(), Err((Reason::InvalidUrl, "group/project"))),
        ("git github provider", manifest(GIT, "GitRepository", "a", &[], "url: https://gitlab.example.com/acme/app.git\nprovider: github"), conn(), Err((Reason::IncompatibleSourceProvider, "\"github\""))),
        ("git generic provider is fine", manifest(GIT, "GitRepository", "a", &[], "url: https://gitlab.example.com/acme/app.git\nprovider: generic"), conn(), Ok(Ok_ { kind: GitRepository, project: path("acme/app"), scopes: &[Scope::ReadRepository], format: SecretFormat::BasicAuth, secret: "a-gitlab-token", registry: None, set_ref: true })),
        ("git missing url", manifest(GIT, "GitRepository", "a", &[], "ref: {branch: main}"), conn(), Err((Reason::InvalidUrl, "spec.url is missing"))),
        ("helm http by id", manifest(GIT, "HelmRepository", "charts", &[], "url: https://gitlab.example.com/api/v4/projects/42/packages/helm/stable"), conn(), Ok(Ok_ { kind: HelmRepositoryHttp, project: ProjectHint::Id(42), scopes: &[Scope::ReadApi], format: SecretFormat::BasicAuth, secret: "charts-gitlab-token", registry: None, set_ref: true })),
        ("helm http by encoded path, type default, trailing slash", manifest(GIT_B2, "HelmRepository", "charts", &[], "type: default\nurl: https://gitlab.example.com/api/v4/projects/acme%2Fplatform%2Fcharts/packages/helm/stable/"), conn(), Ok(Ok_ { kind: HelmRepositoryHttp, project: path("acme/platform/charts"), scopes: &[Scope::ReadApi], format: SecretFormat::BasicAuth, secret: "charts-gitlab-token", registry: None, set_ref: true })),
        ("helm http passCredentials would leak the token", manifest(GIT, "HelmRepository", "c", &[], "url: https://gitlab.example.com/api/v4/projects/42/packages/helm/stable\npassCredentials: true"), conn(), Err((Reason::ForeignHost, "passCredentials"))),
        ("helm http not the package API", manifest(GIT, "HelmRepository", "c", &[], "url: https://gitlab.example.com/acme/charts"), conn(), Err((Reason::InvalidUrl, "not a GitLab Helm package registry URL"))),
        ("helm http unencoded path", manifest(GIT, "HelmRepository", "c", &[], "url: https://gitlab.example.com/api/v4/projects/acme/charts/packages/helm/stable"), conn(), Err((Reason::InvalidUrl, "Helm package registry"))),
        ("helm http bad channel", manifest(GIT, "HelmRepository", "c", &[], "url: https://gitlab.example.com/api/v4/projects/42/packages/helm/st..able"), conn(), Err((Reason::InvalidUrl, "channel"))),
        ("helm http encoded dot-dot", manifest(GIT, "HelmRepository", "c", &[], "url: https://gitlab.example.com/api/v4/projects/acme%2F..%2Fx/packages/helm/stable"), conn(), Err((Reason::InvalidUrl, "'..'"))),
        ("helm http foreign", manifest(GIT, "HelmRepository", "c", &[], "url: https://stefanprodan.github.io/podinfo"), conn(), Err((Reason::ForeignHost, "not on the connection's GitLab"))),
        ("helm default with oci url", manifest(GIT, "HelmRepository", "c", &[], "url: oci://registry.example.com/acme/charts"), conn(), Err((Reason::InvalidUrl, "type: oci"))),
        ("helm oci", manifest(GIT, "HelmRepository", "charts", &[], "type: oci\nurl: oci://registry.example.com/acme/platform/charts"), conn(), Ok(Ok_ { kind: HelmRepositoryOci, project: reg("acme/platform/charts"), scopes: &[Scope::ReadRegistry], format: SecretFormat::DockerConfig, secret: "charts-gitlab-token", registry: Some("registry.example.com"), set_ref: true })),
        ("helm unknown type", manifest(GIT, "HelmRepository", "c", &[], "type: s3\nurl: https://x"), conn(), Err((Reason::UnsupportedKind, "\"s3\""))),
        ("oci v1 with image below the project", manifest(GIT, "OCIRepository", "manifests", &[], "url: oci://registry.example.com/acme/app/manifests/prod\nref: {tag: latest}"), conn(), Ok(Ok_ { kind: OciRepository, project: reg("acme/app/manifests/prod"), scopes: &[Scope::ReadRegistry], format: SecretFormat::DockerConfig, secret: "manifests-gitlab-token", registry: Some("registry.example.com"), set_ref: true })),
        ("oci v1beta2 on a :5050 registry keeps the port in the key", manifest(GIT_B2, "OCIRepository", "m", &[], "url: oci://example.com:5050/acme/app\nprovider: aws"), rooted(), Ok(Ok_ { kind: OciRepository, project: reg("acme/app"), scopes: &[Scope::ReadRegistry], format: SecretFormat::DockerConfig, secret: "m-gitlab-token", registry: Some("example.com:5050"), set_ref: true })),
        ("oci on the GitLab host, not the registry", manifest(GIT, "OCIRepository", "m", &[], "url: oci://gitlab.example.com/acme/app"), conn(), Err((Reason::ForeignHost, "registry registry.example.com"))),
        ("oci with tag", manifest(GIT, "OCIRepository", "m", &[], "url: oci://registry.example.com/acme/app:v1"), conn(), Err((Reason::InvalidUrl, "tag or digest"))),
        ("image v1", manifest(IMG, "ImageRepository", "web", &[], "image: registry.example.com/acme/shop/web"), conn(), Ok(Ok_ { kind: ImageRepository, project: reg("acme/shop/web"), scopes: &[Scope::ReadRegistry], format: SecretFormat::DockerConfig, secret: "web-gitlab-token", registry: Some("registry.example.com"), set_ref: true })),
        ("image v1beta2 with extra scopes", manifest(IMG_B2, "ImageRepository", "web", &[("gitlabtokens.io/scopes", "read_api")], "image: registry.example.com/acme/shop"), conn(), Ok(Ok_ { kind: ImageRepository, project: reg("acme/shop"), scopes: &[Scope::ReadApi, Scope::ReadRegistry], format: SecretFormat::DockerConfig, secret: "web-gitlab-token", registry: Some("registry.example.com"), set_ref: true })),
        ("image cloud provider ignores secretRef", manifest(IMG, "ImageRepository", "w", &[], "image: registry.example.com/acme/shop\nprovider: aws"), conn(), Err((Reason::IncompatibleSourceProvider, "\"aws\""))),
        ("image on docker hub", manifest(IMG, "ImageRepository", "w", &[], "image: library/nginx"), conn(), Err((Reason::ForeignHost, "Docker Hub"))),
        ("image with write", manifest(IMG, "ImageRepository", "w", &[("gitlabtokens.io/write", "true"), ("gitlabtokens.io/access-level", "developer")], "image: registry.example.com/acme/shop"), conn(), Err((Reason::InvalidAnnotation, "applies only to GitRepository"))),
        ("image without registry host on the connection", manifest(IMG, "ImageRepository", "w", &[], "image: registry.example.com/acme/shop"), ConnectionFacts::new("https://gitlab.example.com", None).unwrap(), Err((Reason::MissingRegistryHost, "registryHost"))),
        ("provider v1beta3 by id", manifest(NOTE_B3, "Provider", "status", &[], "type: gitlab\naddress: https://gitlab.example.com/1234"), conn(), Ok(Ok_ { kind: GitLabProvider, project: ProjectHint::Id(1234), scopes: &[Scope::Api], format: SecretFormat::Token, secret: "status-gitlab-token", registry: None, set_ref: true })),
        ("provider v1beta2 by path with .git", manifest(NOTE_B2, "Provider", "status", &[], "type: gitlab\naddress: https://gitlab.example.com/acme/app.git\nsecretRef: {name: gl}"), conn(), Ok(Ok_ { kind: GitLabProvider, project: path("acme/app"), scopes: &[Scope::Api], format: SecretFormat::Token, secret: "gl", registry: None, set_ref: false })),
        ("provider slack", manifest(NOTE_B3, "Provider", "p", &[], "type: slack\naddress: https://hooks.slack.com/x"), conn(), Err((Reason::UnsupportedKind, "\"slack\""))),
        ("provider without address", manifest(NOTE_B3, "Provider", "p", &[], "type: gitlab"), conn(), Err((Reason::InvalidUrl, "spec.address"))),
        ("provider ssh address", manifest(NOTE_B3, "Provider", "p", &[], "type: gitlab\naddress: ssh://git@gitlab.example.com/acme/app"), conn(), Err((Reason::SshNotSupported, "over HTTPS only"))),
        ("bucket is not served", manifest(GIT, "Bucket", "b", &[], "bucketName: x"), conn(), Err((Reason::UnsupportedKind, "Bucket source.toolkit.fluxcd.io/v1"))),
        ("removed v1beta1", manifest("source.toolkit.fluxcd.io/v1beta1", "GitRepository", "g", &[], "url: https://gitlab.example.com/a/b"), conn(), Err((Reason::UnsupportedKind, "v1beta1"))),
        ("project annotation overrides the URL but the host is still checked", manifest(GIT, "HelmRepository", "c", &[("gitlabtokens.io/project", "acme/charts")], "url: https://gitlab.example.com/api/v4/projects/42/packages/helm/stable"), conn(), Ok(Ok_ { kind: HelmRepositoryHttp, project: path("acme/charts"), scopes: &[Scope::ReadApi], format: SecretFormat::BasicAuth, secret: "c-gitlab-token", registry: None, set_ref: true })),
        ("project annotation does not excuse a foreign host", manifest(GIT, "GitRepository", "a", &[("gitlabtokens.io/project", "acme/app")], "url: https://github.com/acme/app.git"), conn(), Err((Reason::ForeignHost, "github.com"))),
        ("secret-name annotation equal to secretRef", manifest(GIT, "GitRepository", "a", &[("gitlabtokens.io/secret-name", "shared")], "url: https://gitlab.example.com/acme/app.git\nsecretRef: {name: shared}"), conn(), Ok(Ok_ { kind: GitRepository, project: path("acme/app"), scopes: &[Scope::ReadRepository], format: SecretFormat::BasicAuth, secret: "shared", registry: None, set_ref: false })),
        ("secret-name annotation differing from secretRef", manifest(GIT, "GitRepository", "a", &[("gitlabtokens.io/secret-name", "mine")], "url: https://gitlab.example.com/acme/app.git\nsecretRef: {name: theirs}"), conn(), Err((Reason::InvalidAnnotation, "differs from spec.secretRef.name \"theirs\""))),
        ("bad annotation value", manifest(GIT, "GitRepository", "a", &[("gitlabtokens.io/lifetime", "30")], "url: https://gitlab.example.com/acme/app.git"), conn(), Err((Reason::InvalidAnnotation, "annotation gitlabtokens.io/lifetime: \"30\""))),
        ("derived secret name too long", manifest(GIT, "GitRepository", &"a".repeat(245), &[], "url: https://gitlab.example.com/acme/app.git"), conn(), Err((Reason::InvalidSecretName, "at most 253 characters"))),
    ];

    for (name, source, c, want) in cases {
        let got = infer_source(&source, &c);
        match (want, got) {
            (Ok(w), Ok(g)) => {
                assert_eq!(g.kind, w.kind, "{name}");
                assert_eq!(g.project, w.project, "{name}");
                assert_eq!(g.scopes, w.scopes, "{name}");
                assert_eq!(g.secret_format, w.format, "{name}");
                assert_eq!(g.secret_name, w.secret, "{name}");
                assert_eq!(g.registry_host.as_deref(), w.registry, "{name}");
                assert_eq!(g.set_secret_ref, w.set_ref, "{name}");
                assert_eq!(g.consumer.kind, g.kind.consumer_kind().as_str(), "{name}");
                assert_eq!(
                    Some(g.consumer.api_version.as_str()),
                    source["apiVersion"].as_str(),
                    "{name}"
                );
            }
            (Err((reason, frag)), Err(r)) => {
                assert_eq!(r.reason, reason, "{name}: {}", r.message);
                assert!(r.message.contains(frag), "{name}: {:?} lacks {frag:?}", r.message);
            }
            (Ok(_), Err(r)) => panic!("{name}: refused {r}"),
            (Err(w), Ok(g)) => panic!("{name}: want {w:?}, got {g:?}"),
        }
    }
}

#[test]
fn registry_candidates_are_longest_first() {
    let ProjectHint::RegistryPath { candidates, .. } = ProjectHint::registry("acme/app/img/prod") else {
        panic!()
    };
    assert_eq!(candidates, ["acme/app/img/prod", "acme/app/img", "acme/app"]);
    let ProjectHint::RegistryPath { candidates, .. } = ProjectHint::registry("acme/app") else {
        panic!()
    };
    assert_eq!(candidates, ["acme/app"]);
    assert_eq!(ProjectHint::registry("a/b").as_spec_project(), None);
    assert_eq!(ProjectHint::Id(7).as_spec_project().as_deref(), Some("7"));
}

#[test]
fn lifetime_and_connection_annotations_flow_through() {
    let s = manifest(
        GIT,
        "GitRepository",
        "a",
        &[
            ("gitlabtokens.io/lifetime", "60d"),
            ("gitlabtokens.io/renew-before", "7d"),
            ("gitlabtokens.io/connection", "gitlab-eu"),
            ("gitlabtokens.io/access-level", "guest"),
        ],
        "url: https://gitlab.example.com/acme/app.git",
    );
    let r = infer_source(&s, &conn()).unwrap();
    assert_eq!(
        (r.lifetime.map(|d| d.get()), r.renew_before.map(|d| d.get())),
        (Some(60), Some(7))
    );
    assert_eq!(r.connection.as_deref(), Some("gitlab-eu"));
    assert_eq!(r.access_level, AccessLevel::Guest);
    assert!(!r.write);
}

/// Fixtures are real manifests from Flux repositories: none points at our GitLab, so each is
/// refused as foreign — and each is served once the connection is the host it names.
#[test]
fn flux_example_manifests() {
    // GTO_FIXTURES_DIR, else <crate root>/../shared/fixtures (also tried one level up, for worktrees).
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = std::env::var_os("GTO_FIXTURES_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            [
                root.join("../shared/fixtures"),
                root.join("../../shared/fixtures"),
            ]
            .into_iter()
            .find(|d| d.is_dir())
        })
        .unwrap_or_else(|| root.join("../shared/fixtures"))
        .join("flux-examples");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        panic!("fixtures not found at {} (set GTO_FIXTURES_DIR)", dir.display());
    };
    let mut seen = 0;
    let mut files: Vec<_> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let v: Value = serde::Deserialize::deserialize(doc).unwrap();
            if v.is_null() || infer::identify(&v).is_err() {
                continue;
            }
            seen += 1;
            let label = format!("{}: {}", file.display(), v["metadata"]["name"]);
            let refused = infer_source(&v, &conn()).unwrap_err();
            assert_eq!(refused.reason, Reason::ForeignHost, "{label}: {refused}");
            // Point a connection at the host the manifest uses: now it is inferred.
            let (gitlab, registry) = match v["kind"].as_str().unwrap() {
                "GitRepository" => ("https://github.com", None),
                "HelmRepository" => ("https://stefanprodan.github.io", Some("ghcr.io")),
                _ => (
                    "https://gitlab.invalid",
                    Some(
                        v["spec"]["url"]
                            .as_str()
                            .or(v["spec"]["image"].as_str())
                            .unwrap()
                            .trim_start_matches("oci://")
                            .split('/')
                            .next()
                            .unwrap(),
                    ),
                ),
            };
            let c = ConnectionFacts::new(gitlab, registry).unwrap();
            match infer_source(&v, &c) {
                Ok(r) => {
                    let want_format = r.kind.secret_format();
                    assert_eq!(r.secret_format, want_format, "{label}");
                    assert!(r.project.to_string().contains('/'), "{label}: {}", r.project);
                }
                // The Helm samples are not GitLab package-registry URLs and ghcr.io/ has no project path.
                Err(e) => assert_eq!(e.reason, Reason::InvalidUrl, "{label}: {e}"),
            }
        }
    }
    assert!(seen >= 7, "only {seen} Flux sources found in {}", dir.display());
}

fn need(name: &str, kind: &str, spec: &str, ann: &[(&str, &str)], project: &str) -> SourceNeed {
    let api = if kind == "ImageRepository" { IMG } else { GIT };
    let mut a: Vec<(&str, &str)> = vec![("gitlabtokens.io/secret-name", "shared")];
    a.extend_from_slice(ann);
    let request = infer_source(&manifest(api, kind, name, &a, spec), &conn()).unwrap();
    SourceNeed {
        request,
        project: project.into(),
    }
}

#[test]
fn sharing_one_secret() {
    let img = |n: &str, image: &str| {
        need(
            n,
            "ImageRepository",
            &format!("image: registry.example.com/{image}"),
            &[],
            "acme/shop",
        )
    };
    let oci = |n: &str, ann: &[(&str, &str)]| {
        need(
            n,
            "OCIRepository",
            "url: oci://registry.example.com/acme/shop/manifests",
            ann,
            "acme/shop",
        )
    };
    let git = need(
        "g",
        "GitRepository",
        "url: https://gitlab.example.com/acme/shop.git",
        &[],
        "acme/shop",
    );

    // Two images below one project and an OCI artifact share one docker-config token.
    let a = img("web", "acme/shop/web");
    let b = img("api", "acme/shop/api");
    let c = oci("manifests", &[("gitlabtokens.io/lifetime", "45d")]);
    assert_eq!(needs_agree(&a, &b), Ok(()));
    assert_eq!(needs_agree(&a, &c), Ok(()));
    let shared = spec_for_sources(&[a.clone(), b.clone(), c.clone(), git.clone()]).unwrap();
    assert_eq!(
        shared.served.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        ["api", "web", "manifests"],
        "sorted by apiVersion, kind, name"
    );
    assert_eq!(shared.spec.consumers, shared.served);
    assert_eq!(shared.spec.project, "acme/shop");
    assert_eq!(shared.spec.scopes, [Scope::ReadRegistry]);
    assert_eq!(
        shared.spec.lifetime.map(|d| d.get()),
        Some(45),
        "explicit lifetime fills in"
    );
    assert_eq!(shared.spec.secret.name, "shared");
    assert_eq!(shared.spec.secret.format, SecretFormat::DockerConfig);
    assert_eq!(
        shared.spec.secret.registry_host.as_deref(),
        Some("registry.example.com")
    );
    assert!(shared.spec.connection_ref.is_none());
    // The GitRepository is refused with every difference named.
    assert_eq!(shared.conflicts.len(), 1);
    let (who, why) = &shared.conflicts[0];
    assert_eq!(who.name, "g");
    assert_eq!(why.reason, Reason::ConflictingRequest);
    for frag in [
        "already serves ImageRepository web",
        "scopes: read_registry vs read_repository",
        "secretFormat: DockerConfig vs BasicAuth",
        "gitlabtokens.io/secret-name",
    ] {
        assert!(why.message.contains(frag), "{frag}: {}", why.message);
    }

    // Differences that block sharing.
    let table: Vec<(&str, SourceNeed, &str)> = vec![
        (
            "other project",
            need(
                "x",
                "ImageRepository",
                "image: registry.example.com/acme/other",
                &[],
                "acme/other",
            ),
            "project: acme/shop vs acme/other",
        ),
        (
            "extra scope",
            need(
                "x",
                "ImageRepository",
                "image: registry.example.com/acme/shop",
                &[("gitlabtokens.io/scopes", "read_api")],
                "acme/shop",
            ),
            "scopes: read_registry vs read_api,read_registry",
        ),
        (
            "other role",
            need(
                "x",
                "ImageRepository",
                "image: registry.example.com/acme/shop",
                &[("gitlabtokens.io/access-level", "guest")],
                "acme/shop",
            ),
            "accessLevel: reporter vs guest",
        ),
        (
            "other connection",
            need(
                "x",
                "ImageRepository",
                "image: registry.example.com/acme/shop",
                &[("gitlabtokens.io/connection", "eu")],
                "acme/shop",
            ),
            "connection: None vs Some(\"eu\")",
        ),
        (
            "two explicit lifetimes",
            oci("y", &[("gitlabtokens.io/lifetime", "30d")]),
            "lifetime: 45d vs 30d",
        ),
    ];
    for (label, other, frag) in table {
        let base = if label == "two explicit lifetimes" {
            c.clone()
        } else {
            a.clone()
        };
        let diffs = needs_agree(&base, &other).unwrap_err();
        assert!(diffs.iter().any(|d| d == frag), "{label}: {diffs:?}");
        let s = spec_for_sources(&[base, other]).unwrap();
        assert_eq!(s.served.len(), 1, "{label}");
        assert_eq!(s.conflicts.len(), 1, "{label}");
    }
    assert!(spec_for_sources(&[]).is_none());
    // Path and id hints need no lookup; registry paths do.
    assert!(SourceNeed::without_lookup(git.request.clone()).is_some());
    assert!(SourceNeed::without_lookup(a.request.clone()).is_none());
}

#[test]
fn spec_round_trips_through_the_crd_schema_types() {
    let g = need(
        "g",
        "GitRepository",
        "url: https://gitlab.example.com/acme/shop.git",
        &[("gitlabtokens.io/connection", "gitlab")],
        "acme/shop",
    );
    let s = spec_for_sources(&[g]).unwrap().spec;
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["connectionRef"]["name"], "gitlab");
    assert_eq!(json["secret"]["format"], "basic-auth");
    assert_eq!(json["scopes"], serde_json::json!(["read_repository"]));
    assert_eq!(
        json["consumers"][0],
        serde_json::json!({"apiVersion": GIT, "kind": "GitRepository", "name": "g"})
    );
    let back: crate::crd::GitLabTokenSpec = serde_json::from_value(json).unwrap();
    assert_eq!(back, s);
}

/// Deterministic fuzzing: odd inputs never panic, and whatever is accepted is on the
/// connection's host with a clean project path.
#[test]
fn odd_urls_never_panic_and_accepted_ones_are_clean() {
    let pieces = [
        "https://",
        "http://",
        "oci://",
        "ssh://",
        "gitlab.example.com",
        "registry.example.com",
        "GITLAB.EXAMPLE.COM",
        ":443",
        ":5050",
        "@",
        "user:pw@",
        "/",
        "//",
        "acme",
        "team-a",
        "app.git",
        "..",
        ".",
        "%2F",
        "%2e%2E",
        "%00",
        "%ff",
        "\\",
        "?",
        "#",
        " ",
        "-",
        "api/v4/projects/",
        "/packages/helm/stable",
        ":tag",
        "@sha256:0",
        "ü",
        "[::1]",
    ];
    let c = conn();
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut accepted = 0;
    for _ in 0..20_000 {
        // Mostly well-formed starts (scheme + host), then random pieces.
        let starts = [
            "https://gitlab.example.com/",
            "oci://registry.example.com/",
            "registry.example.com/",
            "",
        ];
        let mut url = starts[(state >> 40) as usize % starts.len()].to_string();
        for _ in 0..(state % 7 + 1) {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            url.push_str(pieces[(state >> 33) as usize % pieces.len()]);
        }
        let u = url.as_str();
        for (api, kind, spec) in [
            (GIT, "GitRepository", serde_json::json!({ "url": u })),
            (GIT, "HelmRepository", serde_json::json!({ "url": u })),
            (
                GIT,
                "HelmRepository",
                serde_json::json!({ "type": "oci", "url": u }),
            ),
            (GIT, "OCIRepository", serde_json::json!({ "url": u })),
            (IMG, "ImageRepository", serde_json::json!({ "image": u })),
            (
                NOTE_B3,
                "Provider",
                serde_json::json!({ "type": "gitlab", "address": u }),
            ),
        ] {
            let source = serde_json::json!({
                "apiVersion": api, "kind": kind, "metadata": { "name": "x", "namespace": "team-a" }, "spec": spec,
            });
            let Ok(r) = infer_source(&source, &c) else {
                continue;
            };
            accepted += 1;
            let p = match &r.project {
                ProjectHint::Path(p) | ProjectHint::RegistryPath { path: p, .. } => p.clone(),
                ProjectHint::Id(_) => continue,
            };
            assert!(
                annotations::check_project_path(&p).is_ok(),
                "{kind} {url:?} -> {p:?}"
            );
            let lower = url.to_ascii_lowercase();
            let host = if r.registry_host.is_some() {
                "registry.example.com"
            } else {
                "gitlab.example.com"
            };
            assert!(lower.contains(host), "{kind} {url:?} accepted off-host");
            assert!(!url.contains('@') && !url.contains('\\'), "{kind} {url:?}");
        }
    }
    assert!(
        accepted > 50,
        "the generator produced only {accepted} acceptable URLs"
    );
}

#[test]
fn refusal_notes_never_repeat_their_advice() {
    let ssh = Refusal::new(
        Reason::SshNotSupported,
        "\"ssh://git@gitlab.example.com/acme/app.git\" is an SSH URL; project access tokens work over HTTPS only",
    );
    let note = ssh.note();
    assert_eq!(note.matches("https://").count(), 1, "{note}");
    assert!(
        note.ends_with("(Use the project's https:// clone URL instead of ssh://.)"),
        "{note}"
    );
    // Messages that carry their own advice get no generic advice appended.
    let own = Refusal::new(
        Reason::InvalidAnnotation,
        "annotation x: \"y\" is not one of a, b",
    );
    assert_eq!(own.note(), own.message);
    // Bounded: an oversized message cannot exceed an event note's 1 KiB.
    let long = Refusal::new(Reason::InvalidUrl, "x".repeat(5000));
    assert!(long.note().chars().count() <= crate::shim::MAX_MESSAGE);
}

#[test]
fn registry_lookups_stop_at_gitlabs_nesting_depth() {
    let deep: Vec<String> = (0..40).map(|i| format!("s{i}")).collect();
    let ProjectHint::RegistryPath { candidates, .. } = ProjectHint::registry(&deep.join("/")) else {
        panic!("registry hint");
    };
    assert_eq!(candidates.len(), crate::shim::MAX_PROJECT_DEPTH - 1);
    assert_eq!(candidates[0].split('/').count(), crate::shim::MAX_PROJECT_DEPTH);
    assert_eq!(candidates.last().map(String::as_str), Some("s0/s1"));
}
