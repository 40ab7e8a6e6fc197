//! JSON entities with GitLab's field names (`API::Entities::*`).

use chrono::NaiveDate;
use serde_json::{Value, json};

use crate::gitlab::{
    model::{DeployToken, Group, Project, Source, Token, User, UserType, fmt_date, fmt_time},
    state::Settings,
    store::Store,
};

/// `UserBasic` (+ `created_at`, `bot`).
pub fn user(u: &User, s: &Settings) -> Value {
    json!({
        "id": u.id, "username": u.username, "name": u.name, "state": "active", "locked": false,
        "avatar_url": null, "web_url": format!("{}/{}", s.base_url, u.username),
        "created_at": fmt_time(u.created_at), "bot": u.user_type == UserType::ProjectBot,
    })
}

/// The `/user` entity (adds `is_admin` for admins, as GitLab shows it only to admins).
pub fn current_user(u: &User, s: &Settings) -> Value {
    let mut v = user(u, s);
    if let Some(map) = v.as_object_mut() {
        map.insert("public_email".into(), Value::Null);
        map.insert("bio".into(), json!(""));
        map.insert("external".into(), json!(false));
        if u.is_admin {
            map.insert("is_admin".into(), json!(true));
        }
    }
    v
}

/// `NamespaceBasic` for a group.
pub fn namespace(store: &Store, g: &Group, s: &Settings) -> Value {
    json!({
        "id": g.id, "name": g.name, "path": g.path, "kind": "group", "full_path": g.full_path,
        "parent_id": g.parent_id, "avatar_url": null,
        "web_url": format!("{}/groups/{}", s.base_url, g.full_path),
        "full_name": store.group_full_name(g.id),
    })
}

/// `Group`.
pub fn group(store: &Store, g: &Group, s: &Settings) -> Value {
    json!({
        "id": g.id, "web_url": format!("{}/groups/{}", s.base_url, g.full_path), "name": g.name,
        "path": g.path, "description": g.description, "visibility": g.visibility,
        "full_name": store.group_full_name(g.id), "full_path": g.full_path, "parent_id": g.parent_id,
        "created_at": fmt_time(g.created_at), "archived": false, "marked_for_deletion_on": null,
        "organization_id": 1, "avatar_url": null,
    })
}

/// The host part of the base URL (for `ssh_url_to_repo`; no SSH server is emulated).
fn ssh_host(base_url: &str) -> &str {
    let rest = base_url.split_once("://").map_or(base_url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    authority.rsplit_once(':').map_or(authority, |(host, _)| host)
}

/// GitLab's `ssh_url_to_repo`: the scp form on port 22 (or with no SSH front: the web host),
/// `ssh://git@host:port/…` on any other port (`gitlab-access-and-ssh.md` §2.4).
fn ssh_url_to_repo(s: &Settings, path: &str) -> String {
    match s
        .ssh_host
        .as_deref()
        .map(|h| h.rsplit_once(':').unwrap_or((h, "22")))
    {
        Some((host, "22")) => format!("git@{host}:{path}.git"),
        Some((host, port)) => format!("ssh://git@{host}:{port}/{path}.git"),
        None => format!("git@{}:{path}.git", ssh_host(&s.base_url)),
    }
}

/// `Project` (with `permissions` when a caller is given).
pub fn project(store: &Store, p: &Project, s: &Settings, caller: Option<u64>) -> Value {
    let path = store.project_path(p);
    let ns = store
        .groups
        .get(&p.namespace_id)
        .map(|g| namespace(store, g, s))
        .unwrap_or(Value::Null);
    let mut v = json!({
        "id": p.id, "description": p.description, "name": p.name,
        "name_with_namespace": store.project_name_with_namespace(p), "path": p.path,
        "path_with_namespace": path, "created_at": fmt_time(p.created_at),
        "default_branch": if p.has_repository { json!(p.default_branch) } else { Value::Null },
        "tag_list": [], "topics": [],
        "ssh_url_to_repo": ssh_url_to_repo(s, &path),
        "http_url_to_repo": format!("{}/{}.git", s.base_url, path),
        "web_url": format!("{}/{}", s.base_url, path),
        "readme_url": null, "avatar_url": null, "forks_count": 0, "star_count": 0,
        "last_activity_at": fmt_time(p.created_at), "namespace": ns,
        "container_registry_image_prefix": format!("{}/{}", s.registry_host, path).to_lowercase(),
        "visibility": p.visibility, "archived": p.archived, "empty_repo": !p.has_repository,
        "container_registry_enabled": true, "packages_enabled": true,
        "shared_with_groups": super::sharing::shared_with_groups(store, Source::Project(p.id)),
    });
    if let (Some(uid), Some(map)) = (caller, v.as_object_mut()) {
        let project_level = store.direct_level(uid, Source::Project(p.id));
        let group_level = store.direct_level(uid, Source::Group(p.namespace_id));
        let access = |level: u32| {
            if level == 0 {
                Value::Null
            } else {
                json!({"access_level": level, "notification_level": 3})
            }
        };
        map.insert(
            "permissions".into(),
            json!({"project_access": access(project_level), "group_access": access(group_level)}),
        );
    }
    v
}

/// PersonalAccessToken entity (2.2), plus `access_level`/resource fields for resource tokens (2.1).
pub fn token(store: &Store, t: &Token, today: NaiveDate, resource_fields: bool) -> Value {
    let mut v = json!({
        "id": t.id, "name": t.name, "description": t.description, "revoked": t.revoked,
        "active": t.active_on(today), "expired": t.expired_on(today), "created_at": fmt_time(t.created_at),
        "expires_at": t.expires_at.map(fmt_date), "last_used_at": t.last_used_at.map(fmt_time),
        "last_used_ips": t.last_used_ips, "scopes": t.scopes, "user_id": t.user_id,
    });
    if let (true, Some(source), Some(map)) = (resource_fields, t.resource, v.as_object_mut()) {
        map.insert(
            "access_level".into(),
            json!(store.direct_level(t.user_id, source)),
        );
        let id = match source {
            Source::Project(id) | Source::Group(id) => id,
        };
        map.insert("resource_type".into(), json!(source.kind()));
        map.insert("resource_id".into(), json!(id));
    }
    v
}

/// The same entity with the secret (create and rotate responses only).
pub fn token_with_secret(store: &Store, t: &Token, secret: &str, today: NaiveDate, resource: bool) -> Value {
    let mut v = token(store, t, today, resource);
    if let Some(map) = v.as_object_mut() {
        map.insert("token".into(), json!(secret));
    }
    v
}

/// DeployToken entity.
pub fn deploy_token(d: &DeployToken, now: chrono::DateTime<chrono::Utc>) -> Value {
    json!({
        "id": d.id, "name": d.name, "username": d.username, "expires_at": d.expires_at.map(fmt_time),
        "revoked": d.revoked, "expired": d.expired_at(now), "scopes": d.scopes,
    })
}

/// Member entity (`expires_at` is a date).
pub fn member(
    u: &User,
    level: u32,
    s: &Settings,
    created_at: chrono::DateTime<chrono::Utc>,
    expires_at: Option<NaiveDate>,
) -> Value {
    json!({
        "id": u.id, "username": u.username, "name": u.name, "state": "active", "locked": false,
        "avatar_url": null, "web_url": format!("{}/{}", s.base_url, u.username),
        "access_level": level, "created_at": fmt_time(created_at),
        "expires_at": expires_at.map(fmt_date),
        "bot": u.user_type == UserType::ProjectBot, "membership_state": "active",
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn ssh_host_table() {
        for (url, host) in [
            ("http://127.0.0.1:8080", "127.0.0.1"),
            ("https://gitlab.example.com/", "gitlab.example.com"),
        ] {
            assert_eq!(super::ssh_host(url), host);
        }
    }

    #[test]
    fn ssh_url_to_repo_is_scp_on_port_22_and_ssh_otherwise() {
        let mut s = crate::gitlab::state::Settings {
            max_token_lifetime_days: 365,
            rate_limit: None,
            latency: None,
            base_url: "http://127.0.0.1:8080".into(),
            registry_host: "127.0.0.1:5000".into(),
            ssh_host: None,
            version: "17.11.0".into(),
        };
        let cases = [
            (None, "git@127.0.0.1:acme/app.git"),
            (
                Some("gitlab.example.com:22"),
                "git@gitlab.example.com:acme/app.git",
            ),
            (Some("127.0.0.1:2222"), "ssh://git@127.0.0.1:2222/acme/app.git"),
        ];
        for (host, want) in cases {
            s.ssh_host = host.map(str::to_string);
            assert_eq!(super::ssh_url_to_repo(&s, "acme/app"), want, "{host:?}");
        }
    }
}
