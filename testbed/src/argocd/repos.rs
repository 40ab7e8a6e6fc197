//! How Argo CD turns `repository` and `repo-creds` Secrets into the credentials of one source
//! (argoproj/argo-cd v3.5.1: `util/db/repository_secrets.go` `secretToRepository`,
//! `secretToRepoCred`, `getRepositorySecret`, `getRepositoryCredentialIndex`;
//! `util/db/repository.go` `GetRepository`, `enrichCredsToRepo`; `util/git/git.go`
//! `NormalizeGitURL`, `SameURL`; `repository_types.go` `HasCredentials`, `CopyCredentialsFrom`).
//! Pure: the caller lists the Secrets (live, on every refresh).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;

/// Label that marks Argo CD's credential Secrets.
pub const SECRET_TYPE_LABEL: &str = "argocd.argoproj.io/secret-type";
/// Label value of a single-repository Secret.
pub const TYPE_REPOSITORY: &str = "repository";
/// Label value of a credential template.
pub const TYPE_REPO_CREDS: &str = "repo-creds";

/// The parts of Argo CD's `Repository` the stand-in uses. `Debug` never shows secrets.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Repository {
    /// `url`: the URL that is actually fetched.
    pub repo: String,
    /// `type`: `git` (also when empty), `helm`, `oci`.
    pub type_: String,
    /// `name`.
    pub name: String,
    /// `project`: the AppProject this Secret is scoped to (empty: every project).
    pub project: String,
    /// `username`.
    pub username: String,
    /// `password`.
    pub password: String,
    /// `bearerToken`.
    pub bearer_token: String,
    /// `sshPrivateKey`.
    pub ssh_private_key: String,
    /// `tlsClientCertData` (only counted for `HasCredentials`; not presented).
    pub tls_client_cert_data: String,
    /// `githubAppPrivateKey` (only counted for `HasCredentials`).
    pub github_app_private_key: String,
    /// `insecure`.
    pub insecure: bool,
    /// `enableOCI`.
    pub enable_oci: bool,
    /// `insecureOCIForceHttp`.
    pub insecure_oci_force_http: bool,
    /// `forceHttpBasicAuth`.
    pub force_http_basic_auth: bool,
    /// The credentials came from a `repo-creds` template.
    pub inherited_creds: bool,
}

impl std::fmt::Debug for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |s: &str| if s.is_empty() { "" } else { "<redacted>" };
        f.debug_struct("Repository")
            .field("repo", &self.repo)
            .field("type", &self.type_)
            .field("project", &self.project)
            .field("username", &self.username)
            .field("password", &set(&self.password))
            .field("bearer_token", &set(&self.bearer_token))
            .field("ssh_private_key", &set(&self.ssh_private_key))
            .field("enable_oci", &self.enable_oci)
            .field("inherited_creds", &self.inherited_creds)
            .finish()
    }
}

impl Repository {
    /// `HasCredentials`: any credential field set (a username alone counts).
    pub fn has_credentials(&self) -> bool {
        !(self.username.is_empty()
            && self.password.is_empty()
            && self.bearer_token.is_empty()
            && self.ssh_private_key.is_empty()
            && self.tls_client_cert_data.is_empty()
            && self.github_app_private_key.is_empty())
    }

    /// The `Authorization` header for HTTPS git (`GetGitCreds` + go-git `newAuth`): a bearer
    /// token wins; else Basic, with `x-access-token` for an empty username; none without a
    /// password.
    pub fn git_authorization(&self) -> Option<String> {
        if !self.bearer_token.is_empty() {
            return Some(format!("Bearer {}", self.bearer_token));
        }
        if self.password.is_empty() {
            return None;
        }
        let user = if self.username.is_empty() {
            "x-access-token"
        } else {
            &self.username
        };
        Some(basic_header(user, &self.password))
    }

    /// `CopyCredentialsFrom(RepoCreds)`: fills empty credential fields, overwrites the OCI and
    /// basic-auth flags, copies the type when empty.
    fn copy_credentials_from(&mut self, t: &Repository) {
        let fill = |mine: &mut String, theirs: &String| {
            if mine.is_empty() {
                mine.clone_from(theirs);
            }
        };
        fill(&mut self.username, &t.username);
        fill(&mut self.password, &t.password);
        fill(&mut self.bearer_token, &t.bearer_token);
        fill(&mut self.ssh_private_key, &t.ssh_private_key);
        fill(&mut self.tls_client_cert_data, &t.tls_client_cert_data);
        fill(&mut self.github_app_private_key, &t.github_app_private_key);
        fill(&mut self.type_, &t.type_);
        self.enable_oci = t.enable_oci;
        self.insecure_oci_force_http = t.insecure_oci_force_http;
        self.force_http_basic_auth = t.force_http_basic_auth;
    }
}

/// Why a Secret could not be parsed (Argo CD fails the Application with it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// A boolean key is not a Go `strconv.ParseBool` value.
    #[error("strconv.ParseBool: parsing {value:?}: invalid syntax")]
    Bool {
        /// The offending value.
        value: String,
    },
}

/// `Basic base64(user:password)`.
pub fn basic_header(username: &str, password: &str) -> String {
    use base64::Engine;
    let raw = format!("{username}:{password}");
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(raw))
}

fn data(secret: &Secret) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (k, v) in secret.data.iter().flatten() {
        out.insert(k.clone(), String::from_utf8_lossy(&v.0).into_owned());
    }
    for (k, v) in secret.string_data.iter().flatten() {
        out.insert(k.clone(), v.clone());
    }
    out
}

/// Go's `strconv.ParseBool`; a missing key is false.
fn go_bool(d: &BTreeMap<String, String>, key: &str) -> Result<bool, ParseError> {
    match d.get(key).map(String::as_str) {
        None => Ok(false),
        Some("1" | "t" | "T" | "TRUE" | "true" | "True") => Ok(true),
        Some("0" | "f" | "F" | "FALSE" | "false" | "False") => Ok(false),
        Some(other) => Err(ParseError::Bool {
            value: other.to_string(),
        }),
    }
}

/// `secretToRepository` (for `repository`) or `secretToRepoCred` (for `repo-creds`, which
/// reads no `project`, `name` or `insecure`).
pub fn parse_secret(secret: &Secret, template: bool) -> Result<Repository, ParseError> {
    let d = data(secret);
    let s = |k: &str| d.get(k).cloned().unwrap_or_default();
    let mut r = Repository {
        repo: s("url"),
        type_: s("type"),
        username: s("username"),
        password: s("password"),
        bearer_token: s("bearerToken"),
        ssh_private_key: s("sshPrivateKey"),
        tls_client_cert_data: s("tlsClientCertData"),
        github_app_private_key: s("githubAppPrivateKey"),
        ..Default::default()
    };
    if !template {
        r.name = s("name");
        r.project = s("project");
        r.insecure = go_bool(&d, "insecureIgnoreHostKey")? | go_bool(&d, "insecure")?;
    }
    r.enable_oci = go_bool(&d, "enableOCI")?;
    r.insecure_oci_force_http = go_bool(&d, "insecureOCIForceHttp")?;
    r.force_http_basic_auth = go_bool(&d, "forceHttpBasicAuth")?;
    Ok(r)
}

/// `git.NormalizeGitURL`: trim, lower-case everything, scp form to `ssh://`, strip one `.git`,
/// drop `ssh://`. `None` when Go's `url.Parse` would refuse the result.
pub fn normalize_git_url(repo: &str) -> Option<String> {
    let mut repo = repo.trim().to_lowercase();
    if is_ssh_url(&repo) && !repo.starts_with("ssh://") {
        repo = format!("ssh://{}", repo.replacen(':', "/", 1));
    }
    if let Some(stripped) = repo.strip_suffix(".git") {
        repo = stripped.to_string();
    }
    if !go_url_parses(&repo) {
        return None;
    }
    Some(repo.strip_prefix("ssh://").unwrap_or(&repo).to_string())
}

/// `IsSSHURL`: `^(ssh://)?([^/:]*?)@[^@]+$`.
pub fn is_ssh_url(url: &str) -> bool {
    let rest = url.strip_prefix("ssh://").unwrap_or(url);
    match rest.split_once('@') {
        Some((user, host)) => !user.contains(['/', ':']) && !host.is_empty() && !host.contains('@'),
        None => false,
    }
}

/// What Go's `url.Parse` refuses in practice: control characters, bad percent escapes, a
/// non-numeric port after a scheme's host.
fn go_url_parses(s: &str) -> bool {
    if s.chars().any(|c| c.is_control() || c == ' ') {
        return false;
    }
    let bytes = s.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'%'
            && !(bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
        {
            return false;
        }
    }
    if let Some((_, rest)) = s.split_once("://") {
        let authority = rest.split('/').next().unwrap_or_default();
        let host = authority.rsplit('@').next().unwrap_or_default();
        if let Some((_, port)) = host.rsplit_once(':')
            && !host.ends_with(']')
            && !port.chars().all(|c| c.is_ascii_digit())
        {
            return false;
        }
    }
    true
}

/// `SameURL`: both normalise (or, if invalid, stay as written) to the same non-empty string.
pub fn same_url(left: &str, right: &str) -> bool {
    let l = normalize_git_url(left).unwrap_or_else(|| left.to_string());
    let r = normalize_git_url(right).unwrap_or_else(|| right.to_string());
    !l.is_empty() && !r.is_empty() && l == r
}

/// One credential Secret as listed from Argo CD's namespace.
#[derive(Debug, Clone)]
pub struct Listed {
    /// Secret name (only for messages and deterministic order).
    pub name: String,
    /// The parsed Secret, or why it does not parse.
    pub parsed: Result<Repository, ParseError>,
}

/// Parses every Secret of one type; list order is kept (Argo CD's informer order is
/// unspecified; the caller sorts by name to make ties deterministic).
pub fn parse_all(secrets: &[Secret], template: bool) -> Vec<Listed> {
    secrets
        .iter()
        .map(|s| Listed {
            name: s.metadata.name.clone().unwrap_or_default(),
            parsed: parse_secret(s, template),
        })
        .collect()
}

fn url_of(secret: &Secret) -> String {
    data(secret).remove("url").unwrap_or_default()
}

fn project_of(secret: &Secret) -> String {
    data(secret).remove("project").unwrap_or_default()
}

/// `getRepositorySecret` with fallback: a Secret for the same URL scoped to `project` wins at
/// once; else the last unscoped one; Secrets of other projects never match.
pub fn find_repository_secret<'a>(
    secrets: &'a [Secret],
    repo_url: &str,
    project: &str,
) -> Option<&'a Secret> {
    let mut fallback = None;
    for s in secrets {
        if !same_url(&url_of(s), repo_url) {
            continue;
        }
        let scoped = project_of(s);
        if scoped == project {
            return Some(s);
        }
        if scoped.is_empty() {
            fallback = Some(s);
        }
    }
    fallback
}

/// `getRepositoryCredentialIndex`: the template whose normalised URL is the longest string
/// prefix of the normalised repository URL (first of equal length).
pub fn find_template<'a>(templates: &'a [Secret], repo_url: &str) -> Option<&'a Secret> {
    let repo = normalize_git_url(repo_url).unwrap_or_default();
    let (mut max_len, mut best) = (0, None);
    for t in templates {
        let prefix = normalize_git_url(&url_of(t)).unwrap_or_default();
        if repo.starts_with(&prefix) && prefix.len() > max_len {
            max_len = prefix.len();
            best = Some(t);
        }
    }
    best
}

/// Why `GetRepository` failed; the message is Argo CD's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// The matching `repository` Secret does not parse.
    #[error(
        "unable to get repository {url:?}: unable to get repository {url:?} from secrets backend: {source}"
    )]
    Repository {
        /// The source's repoURL.
        url: String,
        /// The parse error.
        source: ParseError,
    },
    /// The matching template does not parse.
    #[error(
        "unable to enrich repository {url:?} info with credentials: failed to get repository credentials for {url:?}: {source}"
    )]
    Template {
        /// The source's repoURL.
        url: String,
        /// The parse error.
        source: ParseError,
    },
}

/// `db.GetRepository(repoURL, project)`: the exact (project-aware) match, else a bare
/// `Repository{repoURL}`; then, when it has no credentials, the longest-prefix template's.
pub fn get_repository(
    repositories: &[Secret],
    templates: &[Secret],
    repo_url: &str,
    project: &str,
) -> Result<Repository, LookupError> {
    let mut repo = match find_repository_secret(repositories, repo_url, project) {
        Some(s) => parse_secret(s, false).map_err(|source| LookupError::Repository {
            url: repo_url.to_string(),
            source,
        })?,
        None => Repository {
            repo: repo_url.to_string(),
            ..Default::default()
        },
    };
    if !repo.has_credentials()
        && let Some(t) = find_template(templates, &repo.repo)
    {
        let template = parse_secret(t, true).map_err(|source| LookupError::Template {
            url: repo.repo.clone(),
            source,
        })?;
        repo.copy_credentials_from(&template);
        repo.inherited_creds = true;
    }
    Ok(repo)
}

/// URLs of the `repository` Secrets scoped to `project` (`GetProjectRepositories`), which
/// Argo CD appends to the project's `sourceRepos`.
pub fn project_repository_urls(repositories: &[Secret], project: &str) -> Vec<String> {
    repositories
        .iter()
        .filter(|s| project_of(s) == project && !project.is_empty())
        .map(url_of)
        .collect()
}

#[cfg(test)]
mod tests;
