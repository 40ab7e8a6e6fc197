//! Secret shapes exactly as Flux reads them, redaction, digest and ownership.

use chrono::TimeZone;

use super::*;

const TOKEN: &str = "glpat-Sup3rS3cretValue_xyz";

fn params(format: SecretFormat, registry_host: Option<&'static str>) -> SecretParams<'static> {
    SecretParams {
        owner: Owner {
            name: "podinfo-gitlab-token",
            namespace: "team-a",
            uid: "0b1e6f0e-2c47-4f7e-9d7e-5d0c2a1f9a11",
        },
        name: "podinfo-gitlab-token",
        format,
        registry_host,
        username: "project_42_bot_3f2a",
        token_id: 9120,
        expires_at: NaiveDate::from_ymd_opt(2026, 3, 1).unwrap(),
        renewal_time: Utc.with_ymd_and_hms(2026, 2, 19, 13, 4, 5).unwrap(),
        argo_cd: None,
        known_hosts: None,
    }
}

fn token() -> SecretString {
    SecretString::from(TOKEN.to_string())
}

fn data(s: &Secret) -> BTreeMap<String, String> {
    s.data
        .clone()
        .unwrap()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8(v.0).unwrap()))
        .collect()
}

#[test]
fn basic_auth_is_opaque_username_password() {
    let s = build_secret(&params(SecretFormat::BasicAuth, None), &token())
        .unwrap()
        .into_secret();
    assert_eq!(s.type_.as_deref(), Some("Opaque"));
    assert_eq!(
        data(&s),
        BTreeMap::from([
            ("username".into(), "project_42_bot_3f2a".into()),
            ("password".into(), TOKEN.into())
        ])
    );
    assert!(s.string_data.is_none());
}

#[test]
fn token_format_is_opaque_token_only() {
    let s = build_secret(&params(SecretFormat::Token, None), &token())
        .unwrap()
        .into_secret();
    assert_eq!(s.type_.as_deref(), Some("Opaque"));
    assert_eq!(data(&s), BTreeMap::from([("token".into(), TOKEN.into())]));
}

#[test]
fn docker_config_is_keyed_by_the_bare_host_with_auth() {
    for host in [
        "registry.example.com",
        "gitlab.example.com:5050",
        "127.0.0.1:40123",
    ] {
        let s = build_secret(&params(SecretFormat::DockerConfig, Some(host)), &token())
            .unwrap()
            .into_secret();
        assert_eq!(s.type_.as_deref(), Some("kubernetes.io/dockerconfigjson"));
        let d = data(&s);
        assert_eq!(d.keys().collect::<Vec<_>>(), [".dockerconfigjson"]);
        let cfg: serde_json::Value = serde_json::from_str(&d[".dockerconfigjson"]).unwrap();
        let auths = cfg["auths"].as_object().unwrap();
        assert_eq!(auths.keys().collect::<Vec<_>>(), [host], "exact-match lookup key");
        let entry = &auths[host];
        assert_eq!(entry["username"], "project_42_bot_3f2a");
        assert_eq!(entry["password"], TOKEN);
        let auth = B64.decode(entry["auth"].as_str().unwrap()).unwrap();
        assert_eq!(
            String::from_utf8(auth).unwrap(),
            format!("project_42_bot_3f2a:{TOKEN}")
        );
        assert_eq!(cfg.as_object().unwrap().len(), 1);
    }
}

#[test]
fn metadata_labels_annotations_and_owner() {
    let s = build_secret(&params(SecretFormat::BasicAuth, None), &token())
        .unwrap()
        .into_secret();
    let m = &s.metadata;
    assert_eq!(m.name.as_deref(), Some("podinfo-gitlab-token"));
    assert_eq!(m.namespace.as_deref(), Some("team-a"));
    let labels = m.labels.clone().unwrap();
    assert_eq!(labels["app.kubernetes.io/managed-by"], "gitlab-token-operator");
    assert_eq!(labels["gitlabtokens.io/token"], "podinfo-gitlab-token");
    let ann = m.annotations.clone().unwrap();
    assert_eq!(ann["gitlabtokens.io/token-id"], "9120");
    assert_eq!(ann["gitlabtokens.io/expires-at"], "2026-03-01");
    assert_eq!(ann["gitlabtokens.io/renewal-time"], "2026-02-19T13:04:05Z");
    assert_eq!(ann.len(), 3);
    let owners = m.owner_references.clone().unwrap();
    assert_eq!(owners.len(), 1);
    let o = &owners[0];
    assert_eq!(
        (o.api_version.as_str(), o.kind.as_str()),
        ("gitlabtokens.io/v1alpha1", "GitLabToken")
    );
    assert_eq!(o.uid, "0b1e6f0e-2c47-4f7e-9d7e-5d0c2a1f9a11");
    assert_eq!((o.controller, o.block_owner_deletion), (Some(true), Some(false)));
    assert!(secret_is_owned(m));
    assert!(secret_is_owned_by(m, "podinfo-gitlab-token"));
    assert!(!secret_is_owned_by(m, "other"));
}

#[test]
fn refusals_table() {
    let cases: Vec<(SecretParams<'static>, &str, SecretBuildError)> = vec![
        (
            params(SecretFormat::DockerConfig, None),
            TOKEN,
            SecretBuildError::MissingRegistryHost,
        ),
        (
            params(SecretFormat::DockerConfig, Some("https://registry.example.com")),
            TOKEN,
            SecretBuildError::InvalidRegistryHost("https://registry.example.com".into()),
        ),
        (
            params(SecretFormat::DockerConfig, Some("registry.example.com/group")),
            TOKEN,
            SecretBuildError::InvalidRegistryHost("registry.example.com/group".into()),
        ),
        (
            params(SecretFormat::DockerConfig, Some("user@registry.example.com")),
            TOKEN,
            SecretBuildError::InvalidRegistryHost("user@registry.example.com".into()),
        ),
        (
            params(SecretFormat::BasicAuth, None),
            "",
            SecretBuildError::EmptyToken,
        ),
        (
            SecretParams {
                username: "",
                ..params(SecretFormat::BasicAuth, None)
            },
            TOKEN,
            SecretBuildError::EmptyUsername,
        ),
        (
            SecretParams {
                owner: Owner {
                    uid: "",
                    ..params(SecretFormat::Token, None).owner
                },
                ..params(SecretFormat::Token, None)
            },
            TOKEN,
            SecretBuildError::OwnerIncomplete("uid"),
        ),
    ];
    for (p, tok, want) in cases {
        let err = build_secret(&p, &SecretString::from(tok.to_string())).unwrap_err();
        assert_eq!(err, want);
        assert!(!err.to_string().contains(TOKEN) && !format!("{err:?}").contains(TOKEN));
    }
}

#[test]
fn bare_registry_hosts_table() {
    let table = [
        ("registry.example.com", true),
        ("gitlab.example.com:5050", true),
        ("localhost:5000", true),
        ("127.0.0.1:40123", true),
        ("REGISTRY.example.com", true),
        ("registry.example.com:", false),
        ("registry.example.com:0", false),
        ("registry.example.com:70000", false),
        ("https://registry.example.com", false),
        ("registry.example.com/path", false),
        ("a..b", false),
        ("-bad.example.com", false),
        ("", false),
    ];
    for (host, ok) in table {
        assert_eq!(is_bare_registry_host(host), ok, "{host}");
    }
}

#[test]
fn debug_output_never_shows_the_token() {
    for (format, host) in [
        (SecretFormat::BasicAuth, None),
        (SecretFormat::Token, None),
        (SecretFormat::DockerConfig, Some("r.example.com")),
    ] {
        let built = build_secret(&params(format, host), &token()).unwrap();
        let shown = format!("{built:?} {built:#?}");
        assert!(!shown.contains(TOKEN), "{shown}");
        assert!(!shown.contains(&B64.encode(TOKEN)[..12]), "{shown}");
        assert!(shown.contains("data_keys"));
        let params_shown = format!("{:?}", params(format, host));
        assert!(!params_shown.contains(TOKEN));
        // The inner k8s Secret is the one place the token is visible (ByteString's Debug prints bytes).
        let raw = built
            .secret()
            .data
            .as_ref()
            .unwrap()
            .values()
            .next()
            .unwrap()
            .0
            .clone();
        assert!(String::from_utf8(raw).unwrap().contains(TOKEN));
    }
}

#[test]
fn digest_detects_edits_and_is_keyed_by_uid() {
    let built = build_secret(&params(SecretFormat::BasicAuth, None), &token()).unwrap();
    let uid = "0b1e6f0e-2c47-4f7e-9d7e-5d0c2a1f9a11";
    let d1 = built.digest(uid);
    assert_eq!(d1.len(), 64);
    assert!(
        d1.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    assert_eq!(d1, secret_digest(built.secret(), uid), "stable");
    assert_ne!(d1, built.digest("another-uid"), "keyed by uid");
    assert!(!d1.contains(&hex(TOKEN.as_bytes())[..16]));

    let mut edited = built.clone().into_secret();
    edited
        .data
        .as_mut()
        .unwrap()
        .insert("password".into(), ByteString(b"something-else".to_vec()));
    assert_ne!(secret_digest(&edited, uid), d1, "value edit");
    let mut extra = built.clone().into_secret();
    extra
        .data
        .as_mut()
        .unwrap()
        .insert("ca.crt".into(), ByteString(b"x".to_vec()));
    assert_eq!(
        secret_digest(&extra, uid),
        d1,
        "a key another writer added is not an edit"
    );
    let mut added_ours = built.clone().into_secret();
    added_ours
        .data
        .as_mut()
        .unwrap()
        .insert("token".into(), ByteString(b"x".to_vec()));
    assert_ne!(secret_digest(&added_ours, uid), d1, "an operator key added");
    let mut removed = built.clone().into_secret();
    removed.data.as_mut().unwrap().remove("username");
    assert_ne!(secret_digest(&removed, uid), d1, "an operator key removed");
    let mut retyped = built.clone().into_secret();
    retyped.type_ = Some("kubernetes.io/basic-auth".into());
    assert_ne!(secret_digest(&retyped, uid), d1, "type change");
    // Labels and annotations are not part of the digest.
    let mut relabelled = built.clone().into_secret();
    relabelled.metadata.annotations = None;
    assert_eq!(secret_digest(&relabelled, uid), d1);
    // Key/value boundaries are unambiguous.
    let a = Secret {
        data: Some(BTreeMap::from([
            ("username".into(), ByteString(b"ab".to_vec())),
            ("password".into(), ByteString(b"c".to_vec())),
        ])),
        ..Secret::default()
    };
    let b = Secret {
        data: Some(BTreeMap::from([
            ("username".into(), ByteString(b"a".to_vec())),
            ("password".into(), ByteString(b"bc".to_vec())),
        ])),
        ..Secret::default()
    };
    assert_ne!(secret_digest(&a, uid), secret_digest(&b, uid));
}

#[test]
fn hmac_matches_rfc4231_test_case_2() {
    let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
    assert_eq!(
        hex(&mac),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
    // Test case 6: a key longer than the block size is hashed first.
    let mac = hmac_sha256(
        &[0xaa; 131],
        b"Test Using Larger Than Block-Size Key - Hash Key First",
    );
    assert_eq!(
        hex(&mac),
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
    );
}

#[test]
fn ownership_label_table() {
    let meta = |labels: &[(&str, &str)]| ObjectMeta {
        labels: Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        ..ObjectMeta::default()
    };
    assert!(secret_is_owned(&meta(&[(
        "app.kubernetes.io/managed-by",
        "gitlab-token-operator"
    )])));
    assert!(!secret_is_owned(&meta(&[(
        "app.kubernetes.io/managed-by",
        "Helm"
    )])));
    assert!(!secret_is_owned(&meta(&[("gitlabtokens.io/token", "x")])));
    assert!(!secret_is_owned(&ObjectMeta::default()));
}
