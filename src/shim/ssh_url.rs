//! `ssh://` and scp-like Git URLs (the forms Flux's GitRepository accepts for Git over SSH):
//! `ssh://git@host[:port]/group/project.git` and `git@host:group/project.git`. The host (and
//! port) must be the connection's SSH endpoint: `spec.sshHost`, else GitLab's host on port 22.

use super::{ProjectHint, Refusal, annotations::check_project_path, url::ConnectionFacts};
use crate::reason::Reason;

/// The SSH endpoint a connection serves Git on, as `(lower-case host, port)`.
pub fn ssh_endpoint(conn: &ConnectionFacts) -> (String, u16) {
    match conn.ssh_host.as_deref().map(split_host_port) {
        Some(Ok((host, port))) => (host, port.unwrap_or(22)),
        _ => (conn.host.clone(), 22),
    }
}

fn split_host_port(s: &str) -> Result<(String, Option<u16>), String> {
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => {
            let port = p
                .parse::<u16>()
                .map_err(|_| format!("port {p:?} is not a number"))?;
            Ok((h.to_ascii_lowercase(), Some(port)))
        }
        Some(_) => Err(format!("{s:?} is not host[:port]")),
        None => Ok((s.to_ascii_lowercase(), None)),
    }
}

/// The project an SSH clone URL names, once its host is the connection's SSH endpoint.
pub fn git_ssh_project(url: &str, conn: &ConnectionFacts) -> Result<ProjectHint, Refusal> {
    let invalid = |m: String| Refusal::new(Reason::InvalidUrl, m);
    if url
        .bytes()
        .any(|b| b.is_ascii_control() || b == b' ' || b == b'\\')
    {
        return Err(invalid(format!(
            "{url:?} contains spaces, backslashes or control characters"
        )));
    }
    if url.contains('?') || url.contains('#') {
        return Err(invalid(format!("{url:?} has a query or fragment")));
    }
    let (authority, path) =
        if let Some(rest) = url.strip_prefix("ssh://").or_else(|| url.strip_prefix("SSH://")) {
            let i = rest.find('/').unwrap_or(rest.len());
            (&rest[..i], rest[i..].trim_start_matches('/'))
        } else if url.contains("://") {
            return Err(invalid(format!(
                "{url:?}: only ssh:// and the scp-like form git@host:path are SSH URLs Flux clones"
            )));
        } else {
            let Some((authority, path)) = url.split_once(':') else {
                return Err(invalid(format!(
                    "{url:?} is not an scp-like SSH URL (git@host:group/project.git)"
                )));
            };
            (authority, path.trim_start_matches('/'))
        };
    let host_port = match authority.rsplit_once('@') {
        Some((user, hp)) => {
            if user.contains(':') {
                return Err(invalid(format!("{url:?} carries a password; remove it")));
            }
            hp
        }
        None => authority,
    };
    let (host, port) = split_host_port(host_port).map_err(|e| invalid(format!("{url:?}: {e}")))?;
    let (want_host, want_port) = ssh_endpoint(conn);
    if host != want_host || port.unwrap_or(22) != want_port {
        return Err(Refusal::new(
            Reason::ForeignHost,
            format!(
                "{url:?} points at {host}:{} but the connection's GitLab serves SSH at {want_host}:{want_port} (spec.sshHost)",
                port.unwrap_or(22)
            ),
        ));
    }
    if path.contains('%') {
        return Err(invalid(format!(
            "{url:?}: write the project path without percent-encoding"
        )));
    }
    let path = path.strip_suffix('/').unwrap_or(path);
    let path = path.strip_suffix(".git").unwrap_or(path);
    check_project_path(path).map_err(|e| invalid(format!("{url:?}: project path {path:?} {e}")))?;
    Ok(ProjectHint::Path(path.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(ssh: Option<&str>) -> ConnectionFacts {
        ConnectionFacts::new("https://gitlab.example.com", None)
            .unwrap()
            .with_ssh_host(ssh.map(str::to_string))
    }

    #[test]
    fn both_ssh_forms_name_the_project() {
        let plain = conn(None);
        for url in [
            "ssh://git@gitlab.example.com/acme/app.git",
            "ssh://git@GitLab.example.com:22/acme/app",
            "git@gitlab.example.com:acme/app.git",
            "gitlab.example.com:acme/app.git",
        ] {
            assert_eq!(
                git_ssh_project(url, &plain).map_err(|r| r.message),
                Ok(ProjectHint::Path("acme/app".into())),
                "{url}"
            );
        }
        let custom = conn(Some("127.0.0.1:2222"));
        assert_eq!(
            git_ssh_project("ssh://git@127.0.0.1:2222/acme/team-a/app.git", &custom).map_err(|r| r.message),
            Ok(ProjectHint::Path("acme/team-a/app".into()))
        );
    }

    #[test]
    fn foreign_hosts_and_bad_urls_are_refused() {
        let plain = conn(None);
        let cases = [
            ("ssh://git@github.com/acme/app.git", Reason::ForeignHost),
            (
                "ssh://git@gitlab.example.com:2222/acme/app.git",
                Reason::ForeignHost,
            ),
            ("ssh://git:pw@gitlab.example.com/acme/app.git", Reason::InvalidUrl),
            ("ssh://git@gitlab.example.com/app.git", Reason::InvalidUrl),
            ("ssh://git@gitlab.example.com/acme%2Fapp.git", Reason::InvalidUrl),
            (
                "git+ssh://git@gitlab.example.com/acme/app.git",
                Reason::InvalidUrl,
            ),
        ];
        for (url, want) in cases {
            assert_eq!(git_ssh_project(url, &plain).unwrap_err().reason, want, "{url}");
        }
    }
}
