//! What differs per credential kind in the token pipeline: which spec combinations make sense,
//! the group a group-level credential lives on, the create call, and the username written beside
//! the secret. Everything else (ledger, Secret, overlap, nudges, revocation) is shared.

use chrono::{NaiveDate, Utc};

use super::observe::{Refusal, Resolved};
use crate::{
    controller::connection::LiveConnection,
    crd::{
        CredentialKind, GitLabToken, GitLabTokenSpec, Owner, ResolvedProject, RotationStrategy, Scope,
        SecretFormat,
    },
    gitlab::{
        AccessToken, CreateDeployKey, CreateDeployToken, CreateProjectAccessToken, GitLabApi, GitLabError,
        Group, NewToken,
    },
    policy::TokenRequest,
    reason::Reason,
};

/// Scopes each kind can carry.
pub fn allowed_scopes(kind: CredentialKind) -> &'static [Scope] {
    match kind {
        CredentialKind::ProjectAccessToken | CredentialKind::GroupAccessToken => &[
            Scope::Api,
            Scope::ReadApi,
            Scope::ReadRepository,
            Scope::WriteRepository,
            Scope::ReadRegistry,
            Scope::WriteRegistry,
        ],
        CredentialKind::DeployKey => &[Scope::ReadRepository, Scope::WriteRepository],
        CredentialKind::DeployToken => &[
            Scope::ReadRepository,
            Scope::ReadRegistry,
            Scope::WriteRegistry,
            Scope::ReadPackageRegistry,
            Scope::WritePackageRegistry,
        ],
    }
}

/// Secret formats each kind can fill.
pub fn allowed_formats(kind: CredentialKind) -> &'static [SecretFormat] {
    match kind {
        CredentialKind::ProjectAccessToken => &[
            SecretFormat::BasicAuth,
            SecretFormat::DockerConfig,
            SecretFormat::Token,
            SecretFormat::ArgoCdRepository,
        ],
        // A repo-creds template serves a URL prefix: only a credential reaching every project
        // below it (a group access token) fills it.
        CredentialKind::GroupAccessToken => &[
            SecretFormat::BasicAuth,
            SecretFormat::DockerConfig,
            SecretFormat::Token,
            SecretFormat::ArgoCdRepository,
            SecretFormat::ArgoCdRepoCreds,
        ],
        CredentialKind::DeployKey => &[SecretFormat::Ssh],
        CredentialKind::DeployToken => &[
            SecretFormat::BasicAuth,
            SecretFormat::DockerConfig,
            SecretFormat::ArgoCdRepository,
        ],
    }
}

fn names<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A Secret format as the spec spells it (`basic-auth`).
fn format_name(format: SecretFormat) -> String {
    serde_json::to_value(format)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Checks that kind, group, scopes and Secret format fit together (`InvalidCredentialRequest`).
pub fn validate(spec: &GitLabTokenSpec) -> Result<(), String> {
    let kind = spec.kind;
    if spec.group.is_some() && !kind.allows_group() {
        return Err(format!(
            "group is set, but a {kind} lives on a project; remove group or use kind DeployToken or GroupAccessToken"
        ));
    }
    if spec.group.is_none() && kind.requires_group() {
        return Err(format!("a {kind} needs group (the group path or id it lives on)"));
    }
    let allowed = allowed_scopes(kind);
    let bad: Vec<&Scope> = spec.scopes.iter().filter(|s| !allowed.contains(s)).collect();
    if !bad.is_empty() {
        return Err(format!(
            "scopes {} do not exist for a {kind} (possible: {})",
            names(&bad),
            names(allowed)
        ));
    }
    let formats = allowed_formats(kind);
    if !formats.contains(&spec.secret.format) {
        return Err(format!(
            "secret format {} cannot hold a {kind} (possible: {})",
            format_name(spec.secret.format),
            formats
                .iter()
                .map(|f| format_name(*f))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(())
}

/// Resolves the spec's group for a group-level credential and checks that the project sits
/// below it. `Ok(None)`: the credential lives on the project.
pub async fn resolve_group(
    spec: &GitLabTokenSpec,
    connection: &LiveConnection,
    project: &ResolvedProject,
) -> Result<Result<Option<Group>, (Reason, String)>, GitLabError> {
    let Some(wanted) = spec.group.as_deref() else {
        return Ok(Ok(None));
    };
    let group = match connection.api.group(wanted).await {
        Ok(g) => Group {
            id: g.id,
            full_path: g.full_path,
        },
        Err(GitLabError::NotFound { .. }) => {
            return Ok(Err((
                Reason::GroupNotFound,
                format!("GitLab group {wanted:?} does not exist or the operator's user cannot see it"),
            )));
        }
        Err(e) => return Err(e),
    };
    if !project_is_below(&project.path, &group.full_path) {
        return Ok(Err((
            Reason::ProjectOutsideGroup,
            format!(
                "project {} is not below group {}, so a {} there would not reach it",
                project.path, group.full_path, spec.kind
            ),
        )));
    }
    Ok(Ok(Some(group)))
}

/// Whether `project` (a canonical path) sits in `group` or one of its subgroups.
pub fn project_is_below(project: &str, group: &str) -> bool {
    project
        .strip_prefix(group)
        .is_some_and(|rest| rest.starts_with('/') && rest.len() > 1)
}

/// Fills what the policy check needs beyond the spec: the group's canonical path and whether a
/// deploy key asks for push access (`write_repository`, set by the `gitlabtokens.io/write` annotation).
pub fn complete_request(request: &mut TokenRequest, spec: &GitLabTokenSpec, group: Option<&Group>) {
    request.group_path = group.map(|g| g.full_path.clone());
    request.write = spec.kind == CredentialKind::DeployKey && spec.scopes.contains(&Scope::WriteRepository);
}

/// How a kind is replaced: in place only for project access tokens (GitLab's rotate endpoint);
/// deploy keys, deploy tokens and group tokens by `Overlap` (new one first, old one removed once
/// consumers are Ready or the grace ends).
pub fn strategy(kind: CredentialKind, policy: RotationStrategy) -> RotationStrategy {
    if kind == CredentialKind::ProjectAccessToken {
        policy
    } else {
        RotationStrategy::Overlap
    }
}

/// The SSH endpoint of a connection: `spec.sshHost`, else the URL's host (port 22).
pub fn ssh_host(connection: &LiveConnection) -> Option<String> {
    ssh_host_of(&connection.spec)
}

/// The SSH endpoint of a connection spec: `sshHost`, else the URL's host (port 22).
pub fn ssh_host_of(spec: &crate::crd::GitLabConnectionSpec) -> Option<String> {
    spec.ssh_host.clone().or_else(|| {
        url::Url::parse(&spec.url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
    })
}

/// The `known_hosts` an `ssh` Secret gets from the connection's pinned host keys; refused
/// (`SSHHostKeysMissing`) when none is pinned, never trusted on first use.
pub fn known_hosts_for(token: &GitLabToken, connection: &LiveConnection) -> Result<Option<String>, Refusal> {
    if token.spec.secret.format != SecretFormat::Ssh {
        return Ok(None);
    }
    let refusal_for = |reason: Reason, message: String| Refusal {
        reason,
        message,
        policy: None,
        connection: None,
        project: None,
    };
    let refusal = |message: String| refusal_for(Reason::SshHostKeysMissing, message);
    // Fetched and pinned at the connection check (FetchAndPin), used only while the spec pins none.
    let mut keys = &connection.spec.ssh_host_keys;
    if keys.is_empty()
        && connection.spec.ssh_host_key_policy == crate::crd::SshHostKeyPolicy::FetchAndPin
        && let Some(pin) = &connection.ssh_host_key_pin
    {
        if let Some(changed) = &pin.changed {
            return Err(refusal_for(
                Reason::SshHostKeyChanged,
                format!(
                    "GitLabConnection {}: {changed}; no deploy key Secret is written until an admin checks the key and pins it (spec.sshHostKeys) or clears status.sshHostKeys",
                    connection.name
                ),
            ));
        }
        keys = &pin.keys;
    }
    let Some(host) = ssh_host(connection).filter(|_| !keys.is_empty()) else {
        return Err(refusal(format!(
            "GitLabConnection {} pins no SSH host keys (spec.sshHostKeys), so a deploy key Secret cannot carry known_hosts; an admin must pin them (never trusted on first use)",
            connection.name
        )));
    };
    crate::secret::ssh::known_hosts(&host, keys)
        .map(Some)
        .map_err(|e| refusal(format!("GitLabConnection {}: {e}", connection.name)))
}

/// The refusal for a spec whose parts do not fit together.
pub fn invalid(message: String) -> Refusal {
    Refusal {
        reason: Reason::InvalidCredentialRequest,
        message,
        policy: None,
        connection: None,
        project: None,
    }
}

/// The username written beside a credential: GitLab's `gitlab+deploy-token-<id>` for deploy
/// tokens (Git and the registry require exactly it); for access tokens, which GitLab
/// authenticates whatever the username, the bot family's name.
pub fn username(kind: CredentialKind, owner: Owner, id: u64) -> String {
    match (kind, owner) {
        (CredentialKind::DeployToken, _) => format!("gitlab+deploy-token-{id}"),
        (_, Owner::Group(g)) => format!("group_{g}_bot"),
        (_, Owner::Project(p)) => super::issue::access_token_username(p),
    }
}

/// Creates a token-shaped credential (project or group access token, deploy token) with the
/// fields of `request`; deploy keys are created by `deploy_key`.
pub async fn create_token(
    api: &dyn GitLabApi,
    resolved: &Resolved,
    request: &CreateProjectAccessToken,
) -> Result<NewToken, GitLabError> {
    let owner = resolved.desired.owner();
    match (resolved.desired.kind, owner) {
        (CredentialKind::ProjectAccessToken, Owner::Project(p)) => {
            api.create_project_access_token(&p.to_string(), request).await
        }
        (CredentialKind::GroupAccessToken, Owner::Group(g)) => {
            api.create_group_access_token(g, request).await
        }
        (CredentialKind::DeployToken, owner) => {
            let body = CreateDeployToken {
                name: request.name.clone(),
                scopes: request.scopes.clone(),
                expires_at: request.expires_at,
            };
            let new = api.create_deploy_token(owner, &body).await?;
            Ok(NewToken {
                info: AccessToken {
                    id: new.info.id,
                    name: new.info.name.clone(),
                    active: true,
                    created_at: Some(Utc::now()),
                    expires_at: new.info.expires_at.map(|t| t.date_naive()),
                    scopes: new.info.scopes.clone(),
                    ..AccessToken::default()
                },
                token: new.token,
            })
        }
        (CredentialKind::DeployKey, Owner::Project(p)) => {
            let pair =
                crate::secret::ssh::generate(&request.name).map_err(|e| GitLabError::InvalidInput {
                    message: e.to_string(),
                })?;
            let body = CreateDeployKey {
                title: request.name.clone(),
                key: pair.public,
                can_push: request
                    .scopes
                    .iter()
                    .any(|s| s == Scope::WriteRepository.as_str()),
                expires_at: Some(key_expiry(request.expires_at)),
            };
            crate::crash_point!("deploykey.before_create");
            let key = api.create_deploy_key(p, &body).await?;
            Ok(NewToken {
                info: AccessToken {
                    id: key.id,
                    name: key.title,
                    active: true,
                    created_at: key.created_at.or(Some(Utc::now())),
                    expires_at: Some(request.expires_at),
                    ..AccessToken::default()
                },
                token: pair.private,
            })
        }
        (kind, owner) => Err(GitLabError::InvalidInput {
            message: format!("a {kind} cannot be created on {owner} by this call"),
        }),
    }
}

/// Expiry for a deploy key: GitLab takes a datetime; the key dies at 00:00 UTC that day, like tokens.
pub fn key_expiry(date: NaiveDate) -> chrono::DateTime<Utc> {
    date.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> GitLabTokenSpec {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[test]
    fn kinds_fit_their_scopes_formats_and_groups() {
        let base = "project: acme/app\nsecret: {name: s, format: basic-auth}\n";
        let cases = [
            ("scopes: [read_repository]\n", None),
            (
                "scopes: [read_repository]\ngroup: acme\n",
                Some("lives on a project"),
            ),
            (
                "kind: GroupAccessToken\nscopes: [read_repository]\n",
                Some("needs group"),
            ),
            (
                "kind: GroupAccessToken\nscopes: [read_repository]\ngroup: acme\n",
                None,
            ),
            (
                "kind: DeployToken\nscopes: [read_repository, read_package_registry]\ngroup: acme\n",
                None,
            ),
            ("kind: DeployToken\nscopes: [read_api]\n", Some("read_api")),
            (
                "kind: DeployKey\nscopes: [read_repository]\n",
                Some("cannot hold a DeployKey"),
            ),
            (
                "scopes: [read_package_registry]\n",
                Some("do not exist for a ProjectAccessToken"),
            ),
        ];
        for (extra, want) in cases {
            let got = validate(&spec(&format!("{base}{extra}")));
            match want {
                None => assert_eq!(got, Ok(()), "{extra}"),
                Some(w) => assert!(got.as_ref().unwrap_err().contains(w), "{extra}: {got:?}"),
            }
        }
        let key =
            "project: acme/app\nkind: DeployKey\nscopes: [read_repository]\nsecret: {name: s, format: ssh}\n";
        assert_eq!(validate(&spec(key)), Ok(()));
    }

    #[test]
    fn projects_below_groups() {
        assert!(project_is_below("acme/team-a/app", "acme"));
        assert!(project_is_below("acme/team-a/app", "acme/team-a"));
        assert!(!project_is_below("acme-other/app", "acme"));
        assert!(!project_is_below("acme", "acme"));
        assert!(!project_is_below("acme/", "acme"));
    }

    #[test]
    fn usernames_follow_gitlab() {
        assert_eq!(
            username(CredentialKind::DeployToken, Owner::Group(3), 31),
            "gitlab+deploy-token-31"
        );
        assert_eq!(
            username(CredentialKind::ProjectAccessToken, Owner::Project(7), 1),
            "project_7_bot"
        );
        assert_eq!(
            username(CredentialKind::GroupAccessToken, Owner::Group(3), 1),
            "group_3_bot"
        );
    }
}
