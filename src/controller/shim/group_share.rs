//! One group access token per namespace, group and consumer shape (issue 12 item 3): when a
//! policy opts in (`groupTokens: SharedPerNamespace`), a source below one of its groups that
//! names neither its own Secret nor a credential kind is served by the group's shared token
//! through the Secret `<group>-group-<shape>`, which the shim points the source at. Sources
//! sharing a Secret already share one `GitLabToken` ([`crate::shim::share`]), owned by all of
//! them: it lives while any of them remains and is revoked with the last.

use serde_json::Value;

use crate::{
    crd::CredentialKind,
    shim::{
        SourceKind, SourceNeed,
        annotations::{self, SECRET_NAME, SECRET_REF_SET},
        infer::{DEFAULT_SECRET_SUFFIX, annotations_of},
    },
};

/// Whether the shim may choose this source's Secret: no `gitlabtokens.io/secret-name`, and
/// no `spec.secretRef` other than one the shim set itself.
pub fn secret_is_ours(source: &Value) -> bool {
    let ann = annotations_of(source);
    if ann.contains_key(SECRET_NAME) {
        return false;
    }
    match source.pointer("/spec/secretRef/name").and_then(Value::as_str) {
        None | Some("") => true,
        Some(name) => ann.get(SECRET_REF_SET).is_some_and(|set| set == name),
    }
}

/// The consumer shape a shared Secret serves (sources of one shape read the same keys and need
/// the same scopes); `None` for shapes a group token does not serve (SSH).
pub fn shape(kind: SourceKind) -> Option<&'static str> {
    match kind {
        SourceKind::GitRepository => Some("git"),
        SourceKind::HelmRepositoryHttp => Some("helm"),
        SourceKind::OciRepository | SourceKind::HelmRepositoryOci | SourceKind::ImageRepository => {
            Some("registry")
        }
        SourceKind::GitLabProvider => Some("api"),
        SourceKind::GitRepositorySsh => None,
    }
}

/// The shared Secret's name for `group` and `shape`: `acme/platform` → `acme-platform-group-git`
/// (a DNS subdomain: lowercase, `_` and `.` as `-`, at most 253 characters).
pub fn secret_name(group: &str, shape: &str) -> String {
    let slug: String = group
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '-' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '-',
        })
        .collect();
    let suffix = format!("-group-{shape}");
    let keep = 253 - suffix.len();
    let slug = slug.trim_matches('-');
    let slug = &slug[..slug.len().min(keep)];
    format!("{}{suffix}", slug.trim_end_matches('-'))
}

/// `need` served by `group`'s shared token when the source lets the shim choose (no explicit
/// Secret or credential kind, a project path): kind `GroupAccessToken` on `group`, the shared
/// Secret, pointed at by the source. Otherwise `need` unchanged.
pub fn share_by_group(mut need: SourceNeed, source: &Value, group: Option<String>) -> SourceNeed {
    let Some(group) = group else {
        return back_to_own_secret(need, source);
    };
    let explicit_kind = annotations_of(source).contains_key(annotations::CREDENTIAL_KIND);
    let Some(shape) = shape(need.request.kind) else {
        return need;
    };
    if explicit_kind
        || need.request.credential_kind != CredentialKind::ProjectAccessToken
        || !secret_is_ours(source)
    {
        return need;
    }
    let name = secret_name(&group, shape);
    need.request.set_secret_ref = true;
    need.request.secret_name = name;
    need.request.credential_kind = CredentialKind::GroupAccessToken;
    need.request.group = Some(group);
    need
}

/// A source the shim had pointed at a shared Secret that is no longer shared (the policy
/// stopped opting in, or the source left the group): back to its own default Secret, so it does
/// not keep naming a Secret other sources may still name.
fn back_to_own_secret(mut need: SourceNeed, source: &Value) -> SourceNeed {
    let r = &need.request;
    let was_shared = shape(r.kind).is_some_and(|shape| r.secret_name.ends_with(&format!("-group-{shape}")));
    if was_shared && !r.set_secret_ref && secret_is_ours(source) {
        need.request.secret_name = format!("{}{DEFAULT_SECRET_SUFFIX}", r.consumer.name);
        need.request.set_secret_ref = true;
    }
    need
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shim::{ConnectionFacts, infer::infer_source, needs_agree, spec_for_sources};
    use serde_json::json;

    fn git(name: &str, project: &str, extra: Value) -> Value {
        let mut v = json!({"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
            "metadata": {"name": name, "namespace": "team-a", "annotations": {"gitlabtokens.io/inject": "true"}},
            "spec": {"url": format!("https://gitlab.example.com/{project}.git")}});
        merge(&mut v, &extra);
        v
    }

    fn merge(into: &mut Value, from: &Value) {
        match (into, from) {
            (Value::Object(a), Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
            (a, b) => *a = b.clone(),
        }
    }

    fn need(source: &Value) -> SourceNeed {
        let conn = ConnectionFacts::new("https://gitlab.example.com", None).unwrap();
        SourceNeed::without_lookup(infer_source(source, &conn).unwrap()).unwrap()
    }

    #[test]
    fn sources_below_the_group_share_one_token_and_secret() {
        let a = git("infra", "acme/platform/infra", json!({}));
        let b = git("charts", "acme/platform/charts", json!({}));
        let g = Some("acme/platform".to_string());
        let (na, nb) = (
            share_by_group(need(&a), &a, g.clone()),
            share_by_group(need(&b), &b, g),
        );
        assert_eq!(na.request.secret_name, "acme-platform-group-git");
        assert_eq!(nb.request.secret_name, na.request.secret_name);
        assert!(na.request.set_secret_ref);
        assert_eq!(
            needs_agree(&na, &nb),
            Ok(()),
            "different projects of one group agree"
        );
        let shared = spec_for_sources(&[na, nb]).unwrap();
        assert!(shared.conflicts.is_empty());
        assert_eq!(shared.served.len(), 2);
        assert_eq!(shared.spec.kind, CredentialKind::GroupAccessToken);
        assert_eq!(shared.spec.group.as_deref(), Some("acme/platform"));
        assert_eq!(crate::controller::token::kinds::validate(&shared.spec), Ok(()));
    }

    #[test]
    fn explicit_secrets_and_kinds_and_no_group_are_left_alone() {
        let g = || Some("acme/platform".to_string());
        let named = git(
            "a",
            "acme/platform/infra",
            json!({"metadata": {"annotations": {"gitlabtokens.io/secret-name": "mine"}}}),
        );
        assert_eq!(
            share_by_group(need(&named), &named, g()).request.secret_name,
            "mine"
        );
        let referenced = git(
            "a",
            "acme/platform/infra",
            json!({"spec": {"secretRef": {"name": "theirs"}}}),
        );
        assert_eq!(
            share_by_group(need(&referenced), &referenced, g())
                .request
                .secret_name,
            "theirs"
        );
        // A secretRef the shim set itself (to the shared Secret) stays the shim's to choose.
        let pointed = git(
            "a",
            "acme/platform/infra",
            json!({"spec": {"secretRef": {"name": "acme-platform-group-git"}},
                   "metadata": {"annotations": {"gitlabtokens.io/secret-ref-set": "acme-platform-group-git"}}}),
        );
        let n = share_by_group(need(&pointed), &pointed, g());
        assert_eq!(n.request.credential_kind, CredentialKind::GroupAccessToken);
        // ... and goes back to its own Secret when sharing stops.
        let n = share_by_group(need(&pointed), &pointed, None);
        assert_eq!(
            (n.request.secret_name.as_str(), n.request.set_secret_ref),
            ("a-gitlab-token", true)
        );
        let kind = git(
            "a",
            "acme/platform/infra",
            json!({"metadata": {"annotations": {"gitlabtokens.io/credential-kind": "ProjectAccessToken"}}}),
        );
        assert_eq!(
            share_by_group(need(&kind), &kind, g()).request.credential_kind,
            CredentialKind::ProjectAccessToken
        );
        let plain = git("a", "acme/team-a/app", json!({}));
        let n = share_by_group(need(&plain), &plain, None);
        assert_eq!(
            (n.request.credential_kind, n.request.secret_name.as_str()),
            (CredentialKind::ProjectAccessToken, "a-gitlab-token")
        );
    }

    #[test]
    fn shared_secret_names_are_object_names() {
        assert_eq!(
            secret_name("Acme/Team_A.x", "registry"),
            "acme-team-a-x-group-registry"
        );
        let long = secret_name(&"a".repeat(300), "helm");
        assert!(
            long.len() <= 253 && crate::shim::annotations::is_dns_subdomain(&long),
            "{long}"
        );
    }
}
