//! The `GitLabToken` of a refused source (issue 14 "every request visible"): a source the shim
//! refuses before any token spec can be formed (a bad annotation value, an `ssh://` URL, a
//! foreign host, …) still gets a `GitLabToken`, named after the Secret it would use, so
//! `kubectl get gitlabtokens` and `gitlab-token-operator status` list it with its reason.
//!
//! Such a token carries the refusal in two annotations ([`REFUSED_REASON`], [`REFUSED_MESSAGE`])
//! and a placeholder spec. The token controller calls [`shim_refusal`] before anything else and,
//! when it answers, reports `Ready=False` with that reason and message and never mints.

use serde_json::Value;

use crate::{
    crd::{
        AccessLevel, ConsumerRef, DeletionPolicy, GitLabToken, GitLabTokenSpec, Scope, SecretFormat,
        SecretTarget,
    },
    reason::Reason,
};

use super::{
    Refusal,
    annotations::{self, is_dns_subdomain},
    infer::{DEFAULT_SECRET_SUFFIX, annotations_of, identify},
};

/// On a shim-made `GitLabToken`: the PascalCase reason the source was refused with.
pub const REFUSED_REASON: &str = "gitlabtokens.io/refused-reason";
/// On a shim-made `GitLabToken`: the refusal message (what is wrong and what to do).
pub const REFUSED_MESSAGE: &str = "gitlabtokens.io/refused-message";

/// `spec.project` of a refused token: no project was (or could be) resolved.
pub const PLACEHOLDER_PROJECT: &str = "-";

/// The refusal a `GitLabToken` carries, if the shim made it for a refused source: the token
/// controller reports it as `Ready=False` (this reason, this message) before doing anything
/// else, and never mints for it. An unreadable reason still refuses (as `InvalidAnnotation`):
/// the annotation's presence alone means "do not serve".
pub fn shim_refusal(token: &GitLabToken) -> Option<(Reason, String)> {
    let annotations = token.metadata.annotations.as_ref()?;
    let raw = annotations.get(REFUSED_REASON)?;
    let message = annotations
        .get(REFUSED_MESSAGE)
        .cloned()
        .unwrap_or_else(|| "the source was refused by the shim".to_string());
    match raw.parse::<Reason>() {
        Ok(reason) => Some((reason, message)),
        Err(_) => Some((
            Reason::InvalidAnnotation,
            format!(
                "{REFUSED_REASON} {} is not a known reason; {message}",
                super::shown(raw)
            ),
        )),
    }
}

/// The annotations a refused token carries.
pub fn refusal_annotations(refusal: &Refusal) -> [(String, String); 2] {
    [
        (REFUSED_REASON.to_string(), refusal.reason.as_str().to_string()),
        (REFUSED_MESSAGE.to_string(), refusal.note()),
    ]
}

/// The Secret name a refused source would use, when one can be formed without a valid request:
/// the `secret-name` annotation, else `spec.secretRef.name`, else `<source>-gitlab-token`.
/// `None` when the chosen one is not a valid name (then no `GitLabToken` can exist for the
/// source; `status` lists it from its events).
pub fn refused_token_name(source: &Value) -> Option<String> {
    let annotation = annotations_of(source).get(annotations::SECRET_NAME).cloned();
    let secret_ref = source
        .pointer("/spec/secretRef/name")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    let default = source
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(|n| format!("{n}{DEFAULT_SECRET_SUFFIX}"));
    let name = annotation
        .map(|a| a.trim().to_string())
        .or(secret_ref)
        .or(default)?;
    is_dns_subdomain(&name).then_some(name)
}

/// The placeholder spec of a refused token: its Secret name, the source as its only consumer,
/// and the Secret shape the source's kind reads; nothing in it is ever used to mint.
pub fn refused_spec(source: &Value, secret_name: &str) -> GitLabTokenSpec {
    let consumer = ConsumerRef {
        api_version: source
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        kind: source
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        name: source
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        namespace: None,
    };
    let format = match identify(source).map(|(k, _)| k.as_str()) {
        Ok("OCIRepository" | "ImageRepository") => SecretFormat::DockerConfig,
        Ok("Provider") => SecretFormat::Token,
        _ => SecretFormat::BasicAuth,
    };
    GitLabTokenSpec {
        kind: Default::default(),
        group: None,
        connection_ref: None,
        project: PLACEHOLDER_PROJECT.to_string(),
        scopes: vec![Scope::ReadApi],
        access_level: AccessLevel::Guest,
        lifetime: None,
        renew_before: None,
        secret: SecretTarget {
            name: secret_name.to_string(),
            format,
            registry_host: None,
        },
        consumers: vec![consumer],
        deletion_policy: DeletionPolicy::Revoke,
        argo_cd: None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn source(annotations: Value, spec: Value) -> Value {
        json!({"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
            "metadata": {"name": "app", "namespace": "team-a", "annotations": annotations},
            "spec": spec})
    }

    fn token_with(annotations: &[(&str, &str)]) -> GitLabToken {
        let s = source(json!({}), json!({}));
        let mut t = GitLabToken::new("app-gitlab-token", refused_spec(&s, "app-gitlab-token"));
        t.metadata.annotations = Some(
            annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        t
    }

    #[test]
    fn the_token_controller_reads_back_exactly_what_the_shim_wrote() {
        let refusal = Refusal::new(Reason::SshNotSupported, "\"ssh://x/a/b\" is an SSH URL");
        let mut t = token_with(&[]);
        t.metadata.annotations = Some(refusal_annotations(&refusal).into_iter().collect());
        let (reason, message) = shim_refusal(&t).expect("refused");
        assert_eq!(reason, Reason::SshNotSupported);
        assert_eq!(message, refusal.note());
        assert!(message.contains("https:// clone URL"), "{message}");
    }

    #[test]
    fn only_the_refusal_annotation_makes_a_token_refused() {
        assert_eq!(shim_refusal(&token_with(&[])), None);
        assert_eq!(shim_refusal(&token_with(&[("gitlabtokens.io/other", "x")])), None);
        let (reason, message) = shim_refusal(&token_with(&[(REFUSED_REASON, "Nonsense")])).unwrap();
        assert_eq!(
            reason,
            Reason::InvalidAnnotation,
            "an unknown reason still refuses"
        );
        assert!(
            message.contains("\"Nonsense\" is not a known reason"),
            "{message}"
        );
        let (reason, _) = shim_refusal(&token_with(&[(REFUSED_REASON, "ForeignHost")])).unwrap();
        assert_eq!(reason, Reason::ForeignHost);
    }

    #[test]
    fn the_refused_token_is_named_after_the_secret_the_source_would_use() {
        let table = [
            (json!({}), json!({}), Some("app-gitlab-token")),
            (
                json!({}),
                json!({"secretRef": {"name": "app-auth"}}),
                Some("app-auth"),
            ),
            (
                json!({"gitlabtokens.io/secret-name": "mine"}),
                json!({}),
                Some("mine"),
            ),
            (
                json!({"gitlabtokens.io/secret-name": "Bad_Name"}),
                json!({}),
                None,
            ),
            (json!({}), json!({"secretRef": {"name": "x".repeat(254)}}), None),
        ];
        for (annotations, spec, want) in table {
            let s = source(annotations.clone(), spec.clone());
            assert_eq!(refused_token_name(&s).as_deref(), want, "{annotations} {spec}");
        }
    }

    #[test]
    fn the_placeholder_spec_names_the_source_and_its_secret_shape() {
        let s = json!({"apiVersion": "image.toolkit.fluxcd.io/v1", "kind": "ImageRepository",
            "metadata": {"name": "img"}, "spec": {}});
        let spec = refused_spec(&s, "img-gitlab-token");
        assert_eq!(spec.project, PLACEHOLDER_PROJECT);
        assert_eq!(spec.secret.name, "img-gitlab-token");
        assert_eq!(spec.secret.format, SecretFormat::DockerConfig);
        assert_eq!(
            spec.consumers,
            [ConsumerRef {
                api_version: "image.toolkit.fluxcd.io/v1".into(),
                kind: "ImageRepository".into(),
                name: "img".into(),
                namespace: None,
            }]
        );
    }
}
