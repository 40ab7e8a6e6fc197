//! The Argo CD `repository` Secret (`reference/argocd-secrets.md` §2, §9): label
//! `argocd.argoproj.io/secret-type: repository`, keys `type`, `url`, `username`, `password`,
//! `project` (and `name` for Helm, which Argo CD needs to list a Helm repository). Every value is
//! a string. No `managed-by: argocd.argoproj.io` annotation: Argo CD's UI must not delete it.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use secrecy::{ExposeSecret, SecretString};

use crate::crd::{ArgoCdRepoType, ArgoCdRepository};

/// The label Argo CD finds its credential Secrets by.
pub const SECRET_TYPE_LABEL: &str = "argocd.argoproj.io/secret-type";
/// Its value for one repository.
pub const SECRET_TYPE_REPOSITORY: &str = "repository";
/// Its value for a credential template (matched by URL prefix, never project-scoped).
pub const SECRET_TYPE_REPO_CREDS: &str = "repo-creds";
/// The data keys of a repository Secret besides `username` and `password` (part of its digest).
pub const ARGOCD_KEYS: [&str; 4] = ["type", "url", "project", "name"];

/// The `name` key of a Helm repository: derived from the AppProject and URL, stable across rotations.
pub fn helm_repository_name(repo: &ArgoCdRepository) -> String {
    let tail = repo
        .url
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string();
    format!("gitlab-{}-{tail}", repo.project)
}

/// The data of a repository Secret for `repo`, with `username` and the token as `password`.
pub fn repository_data(
    repo: &ArgoCdRepository,
    username: &str,
    token: &SecretString,
) -> BTreeMap<String, ByteString> {
    let s = |v: &str| ByteString(v.as_bytes().to_vec());
    let mut data = BTreeMap::from([
        ("type".to_string(), s(repo.repo_type.as_str())),
        ("url".to_string(), s(&repo.url)),
        ("project".to_string(), s(&repo.project)),
        ("username".to_string(), s(username)),
        ("password".to_string(), s(token.expose_secret())),
    ]);
    if repo.repo_type == ArgoCdRepoType::Helm {
        data.insert("name".to_string(), s(&helm_repository_name(repo)));
    }
    data
}

/// The data of a `repo-creds` template for `repo` (its `url` is the prefix): `type`, `url`,
/// `username` and the token as `password`. No `project`: Argo CD does not read it on templates.
pub fn repo_creds_data(
    repo: &ArgoCdRepository,
    username: &str,
    token: &SecretString,
) -> BTreeMap<String, ByteString> {
    let s = |v: &str| ByteString(v.as_bytes().to_vec());
    BTreeMap::from([
        ("type".to_string(), s(repo.repo_type.as_str())),
        ("url".to_string(), s(&repo.url)),
        ("username".to_string(), s(username)),
        ("password".to_string(), s(token.expose_secret())),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(t: ArgoCdRepoType, url: &str) -> ArgoCdRepository {
        ArgoCdRepository {
            url: url.into(),
            repo_type: t,
            project: "team-a".into(),
            application_namespaces: vec![],
        }
    }

    fn text(d: &BTreeMap<String, ByteString>) -> BTreeMap<String, String> {
        d.iter()
            .map(|(k, v)| (k.clone(), String::from_utf8(v.0.clone()).unwrap()))
            .collect()
    }

    #[test]
    fn git_repository_has_exactly_the_keys_argo_cd_reads() {
        let d = text(&repository_data(
            &repo(ArgoCdRepoType::Git, "https://gitlab.example.com/acme/app.git"),
            "project_7_bot",
            &SecretString::from("glpat-x".to_string()),
        ));
        assert_eq!(
            d.keys().map(String::as_str).collect::<Vec<_>>(),
            ["password", "project", "type", "url", "username"]
        );
        assert_eq!(d["type"], "git");
        assert_eq!(d["project"], "team-a");
        assert_eq!(d["password"], "glpat-x");
    }

    #[test]
    fn helm_repository_has_a_stable_name() {
        let r = repo(
            ArgoCdRepoType::Helm,
            "https://gitlab.example.com/api/v4/projects/7/packages/helm/stable",
        );
        let d = text(&repository_data(&r, "u", &SecretString::from("t".to_string())));
        assert_eq!(d["type"], "helm");
        assert_eq!(d["name"], "gitlab-team-a-stable");
    }

    #[test]
    fn the_built_secret_is_labelled_for_argo_cd_and_its_digest_notices_a_stripped_label() {
        use chrono::{NaiveDate, TimeZone, Utc};

        use crate::{
            crd::SecretFormat,
            secret::{Owner, SecretParams, build_secret, secret_digest},
        };
        let r = repo(ArgoCdRepoType::Git, "https://gitlab.example.com/acme/app.git");
        let params = SecretParams {
            owner: Owner {
                name: "argocd-team-a-0123456789",
                namespace: "argocd",
                uid: "uid-1",
            },
            name: "argocd-team-a-0123456789",
            format: SecretFormat::ArgoCdRepository,
            registry_host: None,
            username: "project_7_bot",
            token_id: 1,
            expires_at: NaiveDate::from_ymd_opt(2026, 3, 1).unwrap(),
            renewal_time: Utc.with_ymd_and_hms(2026, 2, 19, 0, 0, 0).unwrap(),
            argo_cd: Some(&r),
            known_hosts: None,
        };
        let built = build_secret(&params, &SecretString::from("glpat-x".to_string())).unwrap();
        let secret = built.secret().clone();
        assert_eq!(secret.type_.as_deref(), Some("Opaque"));
        assert_eq!(
            secret
                .metadata
                .labels
                .as_ref()
                .unwrap()
                .get(SECRET_TYPE_LABEL)
                .map(String::as_str),
            Some(SECRET_TYPE_REPOSITORY)
        );
        assert!(!format!("{built:?}").contains("glpat-x"), "Debug shows the token");
        let digest = secret_digest(&secret, "uid-1");
        // Argo CD's UI "disconnect" strips the type label: an edit the operator repairs.
        let mut stripped = secret.clone();
        stripped
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .remove(SECRET_TYPE_LABEL);
        assert_ne!(secret_digest(&stripped, "uid-1"), digest);
        // Another scope written into the Secret is an edit too.
        let mut moved = secret.clone();
        moved
            .data
            .as_mut()
            .unwrap()
            .insert("project".into(), ByteString(b"team-b".to_vec()));
        assert_ne!(secret_digest(&moved, "uid-1"), digest);
        // Without spec.argoCD nothing is built.
        let without = SecretParams {
            argo_cd: None,
            ..params
        };
        assert_eq!(
            build_secret(&without, &SecretString::from("t".to_string())).unwrap_err(),
            crate::secret::SecretBuildError::MissingArgoCdRepository
        );
    }
}
