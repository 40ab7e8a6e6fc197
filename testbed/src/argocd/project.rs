//! AppProject checks the application-controller makes before comparing (argo-cd v3.5.1:
//! `app_project_types.go` `IsSourcePermitted`, `IsAppNamespacePermitted`; `util/glob`
//! (gobwas/glob); `util/argo/argo.go` `GetAppProjectByName`, `ValidatePermissions`,
//! `ErrProjectNotPermitted`; `controller/appcontroller.go` `projectErrorToCondition`). Pure.

use serde_json::Value;

use super::repos::normalize_git_url;

/// Translates a gobwas/glob pattern to an anchored regex. With `separator`, `*` and `?` stop
/// at it and `**` crosses it; without, `*` matches anything.
fn glob_regex(pattern: &str, separator: Option<char>) -> Option<regex::Regex> {
    let any_one = match separator {
        Some(sep) => format!("[^{}]", regex::escape(&sep.to_string())),
        None => ".".to_string(),
    };
    let mut out = String::from("^");
    let mut chars = pattern.chars().peekable();
    let mut in_braces = 0usize;
    while let Some(c) = chars.next() {
        match c {
            '*' if chars.peek() == Some(&'*') => {
                chars.next();
                out.push_str(".*");
            }
            '*' => out.push_str(&format!("{any_one}*")),
            '?' => out.push_str(&any_one),
            '[' => {
                out.push('[');
                if chars.peek() == Some(&'!') {
                    chars.next();
                    out.push('^');
                }
                for c in chars.by_ref() {
                    if c == ']' {
                        break;
                    }
                    if c == '\\' || c == '[' {
                        out.push('\\');
                    }
                    out.push(c);
                }
                out.push(']');
            }
            '{' => {
                in_braces += 1;
                out.push_str("(?:");
            }
            '}' if in_braces > 0 => {
                in_braces -= 1;
                out.push(')');
            }
            ',' if in_braces > 0 => out.push('|'),
            '\\' => {
                if let Some(n) = chars.next() {
                    out.push_str(&regex::escape(&n.to_string()));
                }
            }
            other => out.push_str(&regex::escape(&other.to_string())),
        }
    }
    out.push('$');
    regex::Regex::new(&out).ok()
}

/// `glob.Match`: false for a pattern that does not compile, as Argo CD logs and refuses.
pub fn glob_match(pattern: &str, value: &str, separator: Option<char>) -> bool {
    glob_regex(pattern, separator).is_some_and(|r| r.is_match(value))
}

/// `IsSourcePermitted` over `sourceRepos` (plus the URLs of Secrets scoped to the project):
/// normalised URLs, `*` within a path segment, `**` across, `!` denies, lone `*` allows all.
pub fn is_source_permitted(source_repos: &[String], repo_url: &str) -> bool {
    let src = normalize_git_url(repo_url).unwrap_or_default();
    let mut any = false;
    for pattern in source_repos {
        if let Some(deny) = pattern.strip_prefix('!') {
            let normalized = normalize_git_url(deny).unwrap_or_default();
            if glob_match(&normalized, &src, Some('/')) {
                return false;
            }
            // A deny pattern that does not match counts as a match (globMatch negation).
            any = true;
            continue;
        }
        let normalized = normalize_git_url(pattern).unwrap_or_default();
        if normalized == "*" || glob_match(&normalized, &src, Some('/')) {
            any = true;
        }
    }
    any
}

/// `IsAppNamespacePermitted`: Argo CD's own namespace always; else `sourceNamespaces` (globs,
/// or regular expressions between slashes).
pub fn is_app_namespace_permitted(
    source_namespaces: &[String],
    app_namespace: &str,
    argocd_namespace: &str,
) -> bool {
    if app_namespace.is_empty() || app_namespace == argocd_namespace {
        return true;
    }
    source_namespaces.iter().any(|p| {
        if p.len() > 1 && p.starts_with('/') && p.ends_with('/') {
            regex::Regex::new(&p[1..p.len() - 1]).is_ok_and(|r| r.is_match(app_namespace))
        } else {
            glob_match(p, app_namespace, None)
        }
    })
}

/// `spec.sourceRepos` of an AppProject object.
pub fn source_repos(project: &Value) -> Vec<String> {
    strings(project.pointer("/spec/sourceRepos"))
}

/// `spec.sourceNamespaces` of an AppProject object.
pub fn source_namespaces(project: &Value) -> Vec<String> {
    strings(project.pointer("/spec/sourceNamespaces"))
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

/// A project problem, as the condition Argo CD sets (`InvalidSpecError` or `UnknownError`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecProblem {
    /// Condition type.
    pub type_: &'static str,
    /// Argo CD's message.
    pub message: String,
}

/// `validateSourcePermissions`: a source needs a repoURL and a path or chart (or, among several
/// sources, a ref), and a chart needs a targetRevision. The multi-source message prints the
/// source as JSON where Argo CD prints the Go struct.
fn validate_source(source: &Value, multi: bool) -> Option<SpecProblem> {
    let s = |k: &str| source[k].as_str().unwrap_or_default();
    let invalid = |message: String| {
        Some(SpecProblem {
            type_: "InvalidSpecError",
            message,
        })
    };
    if multi {
        if s("repoURL").is_empty() || (s("path").is_empty() && s("chart").is_empty() && s("ref").is_empty()) {
            return invalid(format!(
                "spec.source.repoURL and either source.path, source.chart, or source.ref are required for source {source}"
            ));
        }
    } else if s("repoURL").is_empty() || (s("path").is_empty() && s("chart").is_empty()) {
        return invalid(
            "spec.source.repoURL and either spec.source.path or spec.source.chart are required".into(),
        );
    }
    if !s("chart").is_empty() && s("targetRevision").is_empty() {
        return invalid(
            "spec.source.targetRevision is required if the manifest source is a helm chart".into(),
        );
    }
    None
}

/// The project-level checks of `refreshAppConditions`: the project exists, may be used from the
/// Application's namespace, and (`ValidatePermissions`) every source is well-formed and its
/// repoURL permitted.
pub fn check_project(
    project: Option<&Value>,
    scoped_urls: &[String],
    app_name: &str,
    app_namespace: &str,
    project_name: &str,
    argocd_namespace: &str,
    spec: &Value,
) -> Vec<SpecProblem> {
    let Some(project) = project else {
        return vec![SpecProblem {
            type_: "InvalidSpecError",
            message: format!("Application referencing project {project_name} which does not exist"),
        }];
    };
    if !is_app_namespace_permitted(&source_namespaces(project), app_namespace, argocd_namespace) {
        return vec![SpecProblem {
            type_: "UnknownError",
            message: format!(
                "application '{app_name}' in namespace '{app_namespace}' is not permitted to use project '{project_name}'"
            ),
        }];
    }
    let mut repos = source_repos(project);
    repos.extend(scoped_urls.iter().cloned());
    let (sources, multi) = super::status::sources(spec);
    let mut problems = Vec::new();
    for source in &sources {
        if let Some(p) = validate_source(source, multi) {
            problems.push(p);
            return problems;
        }
        let url = source["repoURL"].as_str().unwrap_or_default();
        if !is_source_permitted(&repos, url) {
            problems.push(SpecProblem {
                type_: "InvalidSpecError",
                message: format!("application repo {url} is not permitted in project '{project_name}'"),
            });
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn source_repos_globs_follow_gobwas_with_slash_separator() {
        let url = "https://gitlab.example.com/acme/team-a/app.git";
        assert!(is_source_permitted(&v(&["*"]), url));
        assert!(is_source_permitted(
            &v(&["https://GitLab.example.com/acme/team-a/app"]),
            url
        ));
        assert!(is_source_permitted(
            &v(&["https://gitlab.example.com/acme/team-a/*"]),
            url
        ));
        assert!(!is_source_permitted(
            &v(&["https://gitlab.example.com/acme/*"]),
            url
        ));
        assert!(is_source_permitted(
            &v(&["https://gitlab.example.com/acme/**"]),
            url
        ));
        assert!(!is_source_permitted(
            &v(&[
                "https://gitlab.example.com/**",
                "!https://gitlab.example.com/acme/team-a/*"
            ]),
            url
        ));
        assert!(!is_source_permitted(&v(&[]), url));
        assert!(is_source_permitted(
            &v(&["https://gitlab.example.com/acme/{team-a,team-b}/app"]),
            url
        ));
    }

    #[test]
    fn app_namespaces_allow_own_namespace_globs_and_regexes() {
        assert!(is_app_namespace_permitted(&[], "argocd", "argocd"));
        assert!(!is_app_namespace_permitted(&[], "tenant", "argocd"));
        assert!(is_app_namespace_permitted(&v(&["team-*"]), "team-a", "argocd"));
        assert!(is_app_namespace_permitted(&v(&["/^t[0-9]+$/"]), "t42", "argocd"));
        assert!(!is_app_namespace_permitted(&v(&["/^t[0-9]+$/"]), "tx", "argocd"));
    }

    #[test]
    fn project_problems_use_argo_cd_wording() {
        let spec = serde_json::json!({"source": {"repoURL": "https://h/acme/app.git", "path": "."}});
        let missing = check_project(None, &[], "app", "argocd", "p", "argocd", &spec);
        assert_eq!(
            missing[0].message,
            "Application referencing project p which does not exist"
        );
        let proj = serde_json::json!({"spec": {"sourceRepos": [], "sourceNamespaces": ["team-*"]}});
        let other_ns = check_project(Some(&proj), &[], "app", "tenant", "p", "argocd", &spec);
        assert_eq!(
            other_ns[0].message,
            "application 'app' in namespace 'tenant' is not permitted to use project 'p'"
        );
        let urls = ["https://h/acme/app.git".to_string()];
        let denied = check_project(Some(&proj), &[], "app", "team-a", "p", "argocd", &spec);
        assert_eq!(
            denied[0].message,
            "application repo https://h/acme/app.git is not permitted in project 'p'"
        );
        // A Secret scoped to the project grants its URL.
        assert!(check_project(Some(&proj), &urls, "app", "team-a", "p", "argocd", &spec).is_empty());
    }

    #[test]
    fn malformed_sources_are_invalid_spec_before_permissions() {
        let proj = serde_json::json!({"spec": {"sourceRepos": []}});
        let check = |spec: serde_json::Value| {
            check_project(Some(&proj), &[], "app", "argocd", "p", "argocd", &spec)
                .into_iter()
                .map(|p| p.message)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            check(serde_json::json!({"source": {"repoURL": "https://h/a.git"}})),
            vec!["spec.source.repoURL and either spec.source.path or spec.source.chart are required"]
        );
        assert_eq!(
            check(serde_json::json!({"source": {"repoURL": "https://h/c", "chart": "c"}})),
            vec!["spec.source.targetRevision is required if the manifest source is a helm chart"]
        );
        // A ref-only source is fine among several; both repos are then refused by the project.
        let two = check(serde_json::json!({"sources": [
            {"repoURL": "https://h/a.git", "path": "."}, {"repoURL": "https://h/b.git", "ref": "v"}]}));
        assert_eq!(two.len(), 2, "{two:?}");
    }
}
