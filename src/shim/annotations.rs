//! The `gitlabtokens.io/` annotations on Flux sources (DESIGN §3), parsed with their exact
//! defaults. Every error names the annotation and the bad value.

use std::{collections::BTreeMap, fmt};

use crate::crd::{AccessLevel, CredentialKind, Days, Scope};

use super::ProjectHint;

/// `"true"` opts a source in; anything else or absent is ignored.
pub const INJECT: &str = "gitlabtokens.io/inject";
/// Which `GitLabConnection` to use.
pub const CONNECTION: &str = "gitlabtokens.io/connection";
/// GitLab project path or numeric id (default: inferred from the URL).
pub const PROJECT: &str = "gitlabtokens.io/project";
/// Role of the token (default `reporter`).
pub const ACCESS_LEVEL: &str = "gitlabtokens.io/access-level";
/// Extra scopes, comma separated (added to the inferred ones).
pub const SCOPES: &str = "gitlabtokens.io/scopes";
/// `"true"` adds `write_repository` (GitRepository only; default `"false"`).
pub const WRITE: &str = "gitlabtokens.io/write";
/// Token lifetime in whole days (default: the policy's).
pub const LIFETIME: &str = "gitlabtokens.io/lifetime";
/// Renew this long before expiry (default: one third of the lifetime).
pub const RENEW_BEFORE: &str = "gitlabtokens.io/renew-before";
/// Target Secret (default `spec.secretRef.name`, else `<source>-gitlab-token`).
pub const SECRET_NAME: &str = "gitlabtokens.io/secret-name";
/// Kind of GitLab credential to keep (default: a project access token; a deploy key for `ssh://`).
pub const CREDENTIAL_KIND: &str = "gitlabtokens.io/credential-kind";
/// GitLab group (path or numeric id) a group deploy token or group access token lives on.
pub const GROUP: &str = "gitlabtokens.io/group";
/// On a `GitLabToken`: set to a timestamp to ask for a renewal now (DESIGN §6.5).
pub const RENEW_REQUESTED_AT: &str = "gitlabtokens.io/renew-requested-at";

/// Written by the shim on a source whose `spec.secretRef` it set (value: the Secret name), so
/// that removing the opt-in removes that `secretRef` again, and only one the shim set.
pub const SECRET_REF_SET: &str = "gitlabtokens.io/secret-ref-set";

/// Prefix of every annotation the operator reads.
pub const PREFIX: &str = "gitlabtokens.io/";

/// Longest `gitlabtokens.io/project` value (the `GitLabToken` CRD's bound on `spec.project`).
pub const MAX_PROJECT_LEN: usize = 1024;
/// Longest value of any other source annotation (names are at most 253, lists and durations short).
pub const MAX_VALUE_LEN: usize = 512;

/// Every annotation a source may carry.
pub const SOURCE_ANNOTATIONS: [&str; 11] = [
    INJECT,
    CONNECTION,
    PROJECT,
    ACCESS_LEVEL,
    SCOPES,
    WRITE,
    LIFETIME,
    RENEW_BEFORE,
    SECRET_NAME,
    CREDENTIAL_KIND,
    GROUP,
];

/// One bad annotation value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnotationProblem {
    /// The annotation key.
    pub annotation: &'static str,
    /// The value as written.
    pub value: String,
    /// What is wrong and what is accepted.
    pub problem: String,
}

impl fmt::Display for AnnotationProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "annotation {}: {} {}",
            self.annotation,
            super::shown(&self.value),
            self.problem
        )
    }
}

/// Every bad annotation of a source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct AnnotationError(pub Vec<AnnotationProblem>);

/// The parsed annotations with defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShimAnnotations {
    /// Connection named by the user.
    pub connection: Option<String>,
    /// Project named by the user (overrides URL inference; never a registry path).
    pub project: Option<ProjectHint>,
    /// Role (default `reporter`).
    pub access_level: AccessLevel,
    /// Whether `access-level` was written (not defaulted).
    pub access_level_explicit: bool,
    /// Extra scopes from `gitlabtokens.io/scopes`, sorted, no duplicates.
    pub extra_scopes: Vec<Scope>,
    /// `gitlabtokens.io/write: "true"`.
    pub write: bool,
    /// Lifetime asked for.
    pub lifetime: Option<Days>,
    /// Renew-before asked for.
    pub renew_before: Option<Days>,
    /// Target Secret named by the user.
    pub secret_name: Option<String>,
    /// `gitlabtokens.io/` annotations this version does not know (typos?), for a Warning event.
    pub unknown: Vec<String>,
    /// Credential kind asked for (`None`: the source's default).
    pub credential_kind: Option<CredentialKind>,
    /// Group (path or numeric id) for a group-level credential.
    pub group: Option<String>,
}

impl Default for ShimAnnotations {
    fn default() -> Self {
        Self {
            connection: None,
            project: None,
            access_level: AccessLevel::Reporter,
            access_level_explicit: false,
            extra_scopes: Vec::new(),
            write: false,
            lifetime: None,
            renew_before: None,
            secret_name: None,
            unknown: Vec::new(),
            credential_kind: None,
            group: None,
        }
    }
}

/// Whether the source opted in (`gitlabtokens.io/inject: "true"` exactly).
pub fn is_opted_in(annotations: &BTreeMap<String, String>) -> bool {
    annotations.get(INJECT).is_some_and(|v| v == "true")
}

/// Whether `name` is a valid Kubernetes object name (DNS subdomain, at most 253 characters).
pub fn is_dns_subdomain(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 253
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b'.')
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// Checks a GitLab project path (`group/sub/project`): at least two segments of
/// `[A-Za-z0-9_.-]`, none empty, `.` or `..`, none starting with `-` or ending with `.`.
/// `Err` says what is wrong.
pub fn check_project_path(path: &str) -> Result<(), String> {
    let segments: Vec<&str> = path.split('/').collect();
    if segments.len() < 2 {
        return Err("is not a project path of the form group/project".into());
    }
    for s in &segments {
        if s.is_empty() {
            return Err("has an empty path segment (leading, trailing or double slash)".into());
        }
        if *s == "." || *s == ".." {
            return Err("contains a '.' or '..' segment".into());
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        {
            return Err(format!(
                "has segment {s:?} with characters GitLab does not allow in paths"
            ));
        }
        // GitLab's path rule: no leading '-', no trailing '.'.
        if s.starts_with('-') || s.ends_with('.') {
            return Err(format!(
                "has segment {s:?}, which GitLab does not allow (leading '-' or trailing '.')"
            ));
        }
    }
    Ok(())
}

/// Parses a project annotation value: digits are an id, anything else must be a path.
pub fn parse_project(value: &str) -> Result<ProjectHint, String> {
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return match value.parse::<u64>() {
            Ok(0) | Err(_) => Err("is not a valid project id".into()),
            Ok(id) => Ok(ProjectHint::Id(id)),
        };
    }
    check_project_path(value)?;
    Ok(ProjectHint::Path(value.to_string()))
}

/// Parses every `gitlabtokens.io/` annotation of a source (whether or not it opted in).
pub fn parse(annotations: &BTreeMap<String, String>) -> Result<ShimAnnotations, AnnotationError> {
    let mut out = ShimAnnotations::default();
    let mut problems = Vec::new();
    let mut bad = |annotation: &'static str, value: &str, problem: String| {
        problems.push(AnnotationProblem {
            annotation,
            value: value.to_string(),
            problem,
        });
    };

    for key in annotations.keys() {
        if key.starts_with(PREFIX) && !SOURCE_ANNOTATIONS.contains(&key.as_str()) && key != SECRET_REF_SET {
            out.unknown.push(key.clone());
        }
    }
    // Bounded first: an oversized value is refused as such, never parsed or sent anywhere.
    let mut annotations = annotations.clone();
    for key in SOURCE_ANNOTATIONS {
        let max = if key == PROJECT {
            MAX_PROJECT_LEN
        } else {
            MAX_VALUE_LEN
        };
        if let Some(raw) = annotations.get(key)
            && raw.chars().count() > max
        {
            let n = raw.chars().count();
            bad(
                key,
                raw,
                format!("is {n} characters long; at most {max} are accepted"),
            );
            annotations.remove(key);
        }
    }
    let annotations = &annotations;

    if let Some(raw) = annotations.get(CONNECTION) {
        let v = raw.trim();
        if is_dns_subdomain(v) {
            out.connection = Some(v.to_string());
        } else {
            bad(
                CONNECTION,
                raw,
                "is not a GitLabConnection name (lowercase DNS subdomain)".into(),
            );
        }
    }
    if let Some(raw) = annotations.get(PROJECT) {
        match parse_project(raw.trim()) {
            Ok(p) => out.project = Some(p),
            Err(e) => bad(
                PROJECT,
                raw,
                format!("{e}; use a path like group/sub/project or a numeric id"),
            ),
        }
    }
    if let Some(raw) = annotations.get(ACCESS_LEVEL) {
        match raw.trim().parse::<AccessLevel>() {
            Ok(l) => {
                out.access_level = l;
                out.access_level_explicit = true;
            }
            Err(_) => bad(
                ACCESS_LEVEL,
                raw,
                "is not one of guest, planner, reporter, developer, maintainer".into(),
            ),
        }
    }
    if let Some(raw) = annotations.get(SCOPES) {
        let mut scopes = Vec::new();
        let mut ok = true;
        for item in raw.split(',') {
            let item = item.trim();
            if item.is_empty() {
                bad(
                    SCOPES,
                    raw,
                    "has an empty entry; write a comma list such as \"read_api,read_registry\"".into(),
                );
                ok = false;
                break;
            }
            match item.parse::<Scope>() {
                Ok(s) => scopes.push(s),
                Err(_) => {
                    bad(
                        SCOPES,
                        raw,
                        format!(
                            "names {item:?}, which is not one of api, read_api, read_repository, write_repository, read_registry, write_registry"
                        ),
                    );
                    ok = false;
                }
            }
        }
        if ok {
            scopes.sort();
            scopes.dedup();
            out.extra_scopes = scopes;
        }
    }
    if let Some(raw) = annotations.get(WRITE) {
        match raw.trim() {
            "true" => out.write = true,
            "false" => out.write = false,
            _ => bad(WRITE, raw, "must be \"true\" or \"false\"".into()),
        }
    }
    if let Some(raw) = annotations.get(LIFETIME) {
        match raw.parse::<Days>() {
            Ok(d) => out.lifetime = Some(d),
            Err(_) => bad(
                LIFETIME,
                raw,
                format!(
                    "is not a whole number of days from 1d to {}d, such as \"30d\"",
                    Days::MAX
                ),
            ),
        }
    }
    if let Some(raw) = annotations.get(RENEW_BEFORE) {
        match raw.parse::<Days>() {
            Ok(d) => match out.lifetime {
                Some(l) if d >= l => bad(
                    RENEW_BEFORE,
                    raw,
                    format!("must be shorter than the lifetime {l}"),
                ),
                _ => out.renew_before = Some(d),
            },
            Err(_) => bad(
                RENEW_BEFORE,
                raw,
                format!(
                    "is not a whole number of days from 1d to {}d, such as \"10d\"",
                    Days::MAX
                ),
            ),
        }
    }
    if let Some(raw) = annotations.get(SECRET_NAME) {
        let v = raw.trim();
        if is_dns_subdomain(v) {
            out.secret_name = Some(v.to_string());
        } else {
            bad(
                SECRET_NAME,
                raw,
                "is not a valid Secret name (lowercase DNS subdomain, at most 253 characters)".into(),
            );
        }
    }
    if let Some(raw) = annotations.get(CREDENTIAL_KIND) {
        match super::kind_choice::parse_credential_kind(raw.trim()) {
            Ok(k) => out.credential_kind = Some(k),
            Err(e) => bad(CREDENTIAL_KIND, raw, e),
        }
    }
    if let Some(raw) = annotations.get(GROUP) {
        match super::kind_choice::parse_group(raw.trim()) {
            Ok(g) => out.group = Some(g),
            Err(e) => bad(
                GROUP,
                raw,
                format!("{e}; use a group path like acme/team-a or a numeric id"),
            ),
        }
    }
    // Kind and group must fit together (the GitLabToken would be refused later otherwise);
    // checked only when both annotations parsed (or are absent), so one typo is one problem.
    let parsed = |key: &str, ok: bool| !annotations.contains_key(key) || ok;
    let fit_checked =
        parsed(CREDENTIAL_KIND, out.credential_kind.is_some()) && parsed(GROUP, out.group.is_some());
    match (out.credential_kind, &out.group) {
        _ if !fit_checked => {}
        (Some(k), None) if k.requires_group() => {
            let raw = &annotations[CREDENTIAL_KIND];
            bad(
                CREDENTIAL_KIND,
                raw,
                format!("lives on a group: set annotation {GROUP} to the group path or id"),
            );
        }
        (k, Some(_)) if !k.is_some_and(CredentialKind::allows_group) => {
            let raw = &annotations[GROUP];
            bad(
                GROUP,
                raw,
                format!(
                    "applies only with {CREDENTIAL_KIND} DeployToken (a group deploy token) or GroupAccessToken"
                ),
            );
        }
        _ => {}
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(AnnotationError(problems))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_when_only_inject_is_set() {
        let a = parse(&ann(&[(INJECT, "true")])).unwrap();
        assert_eq!(a.access_level, AccessLevel::Reporter);
        assert!(!a.access_level_explicit);
        assert!(!a.write);
        assert_eq!(
            (a.connection, a.project, a.lifetime, a.renew_before, a.secret_name),
            (None, None, None, None, None)
        );
        assert!(a.extra_scopes.is_empty() && a.unknown.is_empty());
    }

    #[test]
    fn opt_in_is_exactly_true() {
        for (v, want) in [
            ("true", true),
            ("True", false),
            ("yes", false),
            ("", false),
            (" true", false),
        ] {
            assert_eq!(is_opted_in(&ann(&[(INJECT, v)])), want, "{v:?}");
        }
        assert!(!is_opted_in(&ann(&[])));
    }

    #[test]
    fn good_values_table() {
        let a = parse(&ann(&[
            (CONNECTION, "gitlab-eu"),
            (PROJECT, "acme/team-a/app.v2"),
            (ACCESS_LEVEL, "developer"),
            (SCOPES, " read_registry ,read_api,read_api"),
            (WRITE, "true"),
            (LIFETIME, "60d"),
            (RENEW_BEFORE, "20d"),
            (SECRET_NAME, "app-creds"),
            ("gitlabtokens.io/scope", "typo"),
            ("other.io/x", "y"),
        ]))
        .unwrap();
        assert_eq!(a.connection.as_deref(), Some("gitlab-eu"));
        assert_eq!(a.project, Some(ProjectHint::Path("acme/team-a/app.v2".into())));
        assert_eq!(
            (a.access_level, a.access_level_explicit),
            (AccessLevel::Developer, true)
        );
        assert_eq!(a.extra_scopes, [Scope::ReadApi, Scope::ReadRegistry]);
        assert!(a.write);
        assert_eq!(
            (a.lifetime.unwrap().get(), a.renew_before.unwrap().get()),
            (60, 20)
        );
        assert_eq!(a.secret_name.as_deref(), Some("app-creds"));
        assert_eq!(a.unknown, ["gitlabtokens.io/scope"]);
        assert_eq!(
            parse(&ann(&[(PROJECT, "1234")])).unwrap().project,
            Some(ProjectHint::Id(1234))
        );
    }

    #[test]
    fn bad_values_name_the_annotation_and_value() {
        let table: &[(&str, &str, &str)] = &[
            (CONNECTION, "GitLab", "GitLabConnection name"),
            (PROJECT, "acme", "group/project"),
            (PROJECT, "/acme/app", "empty path segment"),
            (PROJECT, "acme//app", "empty path segment"),
            (PROJECT, "acme/../app", "'..'"),
            (PROJECT, "acme/app%2Fx", "characters GitLab does not allow"),
            (PROJECT, "acme/-app", "leading '-'"),
            (PROJECT, "acme/app.", "trailing '.'"),
            (PROJECT, "0", "not a valid project id"),
            (PROJECT, "99999999999999999999999", "not a valid project id"),
            (PROJECT, "", "group/project"),
            (
                ACCESS_LEVEL,
                "owner",
                "guest, planner, reporter, developer, maintainer",
            ),
            (ACCESS_LEVEL, "Reporter", "guest, planner"),
            (SCOPES, "read_repository,sudo", "\"sudo\""),
            (SCOPES, "read_repository,", "empty entry"),
            (SCOPES, "", "empty entry"),
            (WRITE, "yes", "\"true\" or \"false\""),
            (LIFETIME, "30", "whole number of days"),
            (LIFETIME, "0d", "whole number of days"),
            (LIFETIME, "401d", "whole number of days"),
            (LIFETIME, "2w", "whole number of days"),
            (RENEW_BEFORE, "1.5d", "whole number of days"),
            (SECRET_NAME, "My_Secret", "valid Secret name"),
            (SECRET_NAME, "-x", "valid Secret name"),
        ];
        for (key, value, hint) in table {
            let err = parse(&ann(&[(key, value)])).unwrap_err();
            assert_eq!(err.0.len(), 1, "{key}={value:?}");
            let msg = err.to_string();
            assert!(msg.starts_with(&format!("annotation {key}: {value:?}")), "{msg}");
            assert!(msg.contains(hint), "{key}={value:?}: {msg}");
        }
    }

    #[test]
    fn renew_before_must_be_shorter_than_lifetime_and_all_problems_are_listed() {
        let err = parse(&ann(&[(LIFETIME, "10d"), (RENEW_BEFORE, "10d"), (WRITE, "1")])).unwrap_err();
        let keys: Vec<_> = err.0.iter().map(|p| p.annotation).collect();
        assert_eq!(keys, [WRITE, RENEW_BEFORE]);
        assert!(err.to_string().contains("shorter than the lifetime 10d"));
        assert!(parse(&ann(&[(LIFETIME, "10d"), (RENEW_BEFORE, "9d")])).is_ok());
    }

    #[test]
    fn oversized_values_are_refused_by_length_without_echoing_them() {
        let project = format!("acme/{}", "a".repeat(MAX_PROJECT_LEN));
        let err = parse(&ann(&[(PROJECT, &project)])).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("is {} characters long; at most 1024", project.len())),
            "{msg}"
        );
        assert!(msg.len() < 300, "the value is shown cut: {msg}");
        let ok = format!("acme/{}", "a".repeat(MAX_PROJECT_LEN - 5));
        assert!(parse(&ann(&[(PROJECT, &ok)])).is_ok(), "1024 characters are fine");
        let scopes = "read_api,".repeat(100);
        let err = parse(&ann(&[(SCOPES, &scopes)])).unwrap_err();
        assert_eq!(err.0.len(), 1, "one problem per oversized value: {err}");
        assert!(err.to_string().contains("at most 512"), "{err}");
    }

    #[test]
    fn dns_subdomain_table() {
        for (name, ok) in [
            ("a", true),
            ("podinfo-gitlab-token", true),
            ("a.b-c", true),
            ("A", false),
            ("a_b", false),
            ("a-", false),
            ("", false),
        ] {
            assert_eq!(is_dns_subdomain(name), ok, "{name}");
        }
        assert!(is_dns_subdomain(&"a".repeat(253)));
        assert!(!is_dns_subdomain(&"a".repeat(254)));
    }
}
