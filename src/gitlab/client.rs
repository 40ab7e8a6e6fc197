//! [`GitLabClient`]: the reqwest implementation of [`GitLabApi`].
//!
//! Every request goes through one `send` loop: wait for the connection's token bucket,
//! send with the `PRIVATE-TOKEN` header (marked sensitive), report the attempt to the observer,
//! map failures to [`GitLabError`], close the bucket's gate on 429, and retry only what
//! [`RetryPolicy::decide`] allows (never create or rotate after an ambiguous failure).

use std::{
    fmt,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use chrono::{NaiveDate, Utc};
use futures::future::BoxFuture;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use secrecy::SecretString;
use serde::de::DeserializeOwned;
use url::Url;

use crate::crd::{CredentialKind, Owner};

use super::{
    AccessToken, Associations, ClientConfig, CreateDeployKey, CreateDeployToken, CreateProjectAccessToken,
    CredentialRecord, GitLabApi, GitLabError, GroupDetail, ListedGroup, Member, NewDeployToken, NewToken,
    Project, RepositoryFile, RequestObserver, Result, RevokeOutcome, TokenState, User, Version,
    credential::Credential,
    error::parse_retry_after,
    pagination::{PER_PAGE, next_page_url},
    ratelimit::{ConnectionBudget, SystemMonotonic},
    retry::{Idempotency, RetryDecision, RetryPolicy},
    tls::tls_config,
    types::RotateBody,
};

/// Largest response body the client reads, in bytes.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Most redirects followed (same origin only).
const MAX_REDIRECTS: usize = 5;

/// A GitLab REST client for one connection (cheap to share behind an `Arc`).
pub struct GitLabClient {
    http: reqwest::Client,
    api: Url,
    credential: Credential,
    limiter: Arc<ConnectionBudget>,
    retry: RetryPolicy,
    max_retry_after: Duration,
    max_pages: u32,
    observer: Option<Arc<dyn RequestObserver>>,
}

impl fmt::Debug for GitLabClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitLabClient")
            .field("api", &self.api.as_str())
            .finish_non_exhaustive()
    }
}

/// One HTTP answer, body read.
struct Raw {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl GitLabClient {
    /// Builds the client: validates the URL, the token's header form and the CA bundle.
    pub fn new(config: ClientConfig) -> Result<Self> {
        let api = api_base(&config.url)?;
        let credential = Credential::new(&config.token)?;
        let tls = tls_config(config.ca_bundle.as_deref())?;
        let redirect = reqwest::redirect::Policy::custom(|attempt| {
            let same_origin = attempt
                .previous()
                .first()
                .is_some_and(|first| first.origin() == attempt.url().origin());
            if attempt.previous().len() > MAX_REDIRECTS || !same_origin {
                attempt.stop()
            } else {
                attempt.follow()
            }
        });
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .redirect(redirect)
            .user_agent(concat!("gitlab-token-operator/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| GitLabError::InvalidConfig {
                message: format!("cannot build HTTP client: {e}"),
            })?;
        Ok(Self {
            http,
            api,
            credential,
            limiter: config.budget.clone().unwrap_or_else(|| {
                Arc::new(ConnectionBudget::new(
                    config.rate_limit,
                    config.project_read_limit,
                    Arc::new(SystemMonotonic),
                ))
            }),
            retry: config.retry,
            max_retry_after: config.max_retry_after,
            max_pages: config.max_pages.max(1),
            observer: config.observer,
        })
    }

    /// The connection budget this client spends.
    pub fn budget(&self) -> &Arc<ConnectionBudget> {
        &self.limiter
    }

    /// The API root this client talks to (`…/api/v4/`).
    pub fn api_url(&self) -> &Url {
        &self.api
    }

    /// Switches to another operator token (e.g. its Secret changed); rotation reopens for it.
    pub fn set_token(&self, token: &SecretString) -> Result<()> {
        self.credential.replace(token)
    }

    /// The URL of `path` (relative, already encoded) under the API root.
    fn url(&self, path: &str) -> Result<Url> {
        self.api.join(path).map_err(|e| GitLabError::InvalidInput {
            message: format!("cannot build request URL: {e}"),
        })
    }

    /// Sends one logical request with rate limiting, error mapping and the allowed retries.
    async fn send(
        &self,
        operation: &'static str,
        method: Method,
        url: &Url,
        body: Option<Vec<u8>>,
        idempotency: Idempotency,
    ) -> Result<Raw> {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            if let Err(left) = self
                .limiter
                .admit(operation, self.retry.max_inline_retry_after)
                .await
            {
                // GitLab's Retry-After window (seen by any client of this connection) is still
                // open for longer than we wait inline: answer as GitLab would, without sending.
                tracing::debug!(
                    operation,
                    ?left,
                    "inside GitLab's Retry-After window; not sending"
                );
                return Err(GitLabError::RateLimited {
                    retry_after: Some(left),
                });
            }
            let started = Instant::now();
            let auth = self.credential.header();
            let result = self
                .attempt(&auth, method.clone(), url.clone(), body.clone())
                .await;
            let elapsed = started.elapsed();
            let status = result.as_ref().ok().map(|raw| raw.status.as_u16());
            let outcome = match result {
                Ok(raw) if raw.status.is_success() => Ok(raw),
                Ok(raw) => Err(response_error(&raw)),
                Err(err) => Err(err),
            };
            // Close the connection's gate before anyone (observer included) hears of the 429.
            if let Err(GitLabError::RateLimited { retry_after }) = &outcome {
                let wait = retry_after
                    .unwrap_or(Duration::from_secs(1))
                    .min(self.max_retry_after);
                self.limiter.block_for(wait);
            }
            if let Some(observer) = &self.observer {
                observer.on_request(operation, status, elapsed);
            }
            let err = match outcome {
                Ok(raw) => return Ok(raw),
                Err(err) => err.scrub(auth.to_str().unwrap_or_default()),
            };
            if let GitLabError::TokenRevoked { .. } = err {
                self.credential.mark_revoked(&auth);
            }
            match self
                .retry
                .decide(attempt, idempotency, &err, rand::random::<f64>())
            {
                RetryDecision::GiveUp => {
                    tracing::debug!(operation, attempt, reason = err.reason(), "GitLab request failed");
                    return Err(err);
                }
                RetryDecision::RetryAfter(delay) => {
                    tracing::debug!(
                        operation,
                        attempt,
                        reason = err.reason(),
                        ?delay,
                        "retrying GitLab request"
                    );
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                }
            }
        }
    }

    /// One HTTP exchange, body read up to [`MAX_BODY_BYTES`].
    async fn attempt(
        &self,
        auth: &HeaderValue,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
    ) -> Result<Raw> {
        let mut request = self
            .http
            .request(method, url)
            .header("PRIVATE-TOKEN", auth.clone())
            .header(header::ACCEPT, "application/json");
        if let Some(body) = body {
            request = request
                .header(header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let mut response = request.send().await.map_err(GitLabError::from_reqwest)?;
        let status = response.status();
        let headers = response.headers().clone();
        if let Some(remaining) = headers
            .get("ratelimit-remaining")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            self.limiter.record_remaining(remaining);
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(GitLabError::from_reqwest)? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(GitLabError::InvalidResponse {
                    message: format!("response body larger than {MAX_BODY_BYTES} bytes"),
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Raw {
            status,
            headers,
            body: Bytes::from(body),
        })
    }

    async fn get<T: DeserializeOwned>(&self, operation: &'static str, path: &str) -> Result<T> {
        self.get_url(operation, self.url(path)?).await
    }

    /// GETs a URL (with its query) and decodes the answer.
    async fn get_url<T: DeserializeOwned>(&self, operation: &'static str, url: Url) -> Result<T> {
        let raw = self
            .send(operation, Method::GET, &url, None, Idempotency::Safe)
            .await?;
        decode(operation, &raw)
    }

    /// POSTs a JSON body once (no retry after ambiguous failures) and decodes the answer.
    async fn post_unsafe<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        path: &str,
        body: &impl serde::Serialize,
    ) -> Result<T> {
        let url = self.url(path)?;
        let body = serde_json::to_vec(body).map_err(|e| GitLabError::InvalidInput {
            message: format!("cannot encode request: {e}"),
        })?;
        let raw = self
            .send(operation, Method::POST, &url, Some(body), Idempotency::Unsafe)
            .await?;
        decode(operation, &raw)
    }

    /// GETs every page of a list (per_page=100), bounded by `max_pages`.
    async fn get_all<T: DeserializeOwned>(&self, operation: &'static str, mut url: Url) -> Result<Vec<T>> {
        url.query_pairs_mut()
            .append_pair("per_page", &PER_PAGE.to_string())
            .append_pair("page", "1");
        let mut items = Vec::new();
        for _ in 0..self.max_pages {
            let raw = self
                .send(operation, Method::GET, &url, None, Idempotency::Safe)
                .await?;
            let page: Vec<T> = decode(operation, &raw)?;
            items.extend(page);
            match next_page_url(&raw.headers, &url)? {
                Some(next) if next == url => {
                    return Err(GitLabError::InvalidResponse {
                        message: format!("{operation}: the next page is the same page"),
                    });
                }
                Some(next) => url = next,
                None => return Ok(items),
            }
        }
        Err(GitLabError::InvalidResponse {
            message: format!(
                "{operation}: more than {} pages of {PER_PAGE}; refusing to read further",
                self.max_pages
            ),
        })
    }
}

/// The API root (`<url>/api/v4/`) of a GitLab base URL; refuses non-HTTP(S), user-info, query.
fn api_base(url: &str) -> Result<Url> {
    let invalid = |why: &str| GitLabError::InvalidConfig {
        message: format!("GitLab URL {url:?} {why}"),
    };
    let mut base = Url::parse(url.trim()).map_err(|_| invalid("is not a valid URL"))?;
    if !matches!(base.scheme(), "http" | "https") {
        return Err(invalid("must use http or https"));
    }
    if !base.username().is_empty() || base.password().is_some() {
        return Err(invalid("must not contain credentials"));
    }
    if base.query().is_some() || base.fragment().is_some() {
        return Err(invalid("must not have a query or fragment"));
    }
    if !base.path().ends_with('/') {
        let path = format!("{}/", base.path());
        base.set_path(&path);
    }
    base.join("api/v4/")
        .map_err(|_| invalid("cannot be extended with /api/v4"))
}

/// A project id or path as a path segment; refuses the empty string and dot segments.
fn project_segment(project: &str) -> Result<String> {
    let trimmed = project.trim().trim_matches('/');
    if trimmed.is_empty() || trimmed.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
        return Err(GitLabError::InvalidInput {
            message: format!(
                "{:?} is not a GitLab project id or path",
                super::error::cap(project)
            ),
        });
    }
    Ok(super::encode_project(trimmed))
}

fn response_error(raw: &Raw) -> GitLabError {
    let retry_after = raw
        .headers
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, Utc::now()));
    GitLabError::from_response(raw.status.as_u16(), retry_after, &raw.body)
}

fn decode<T: DeserializeOwned>(operation: &'static str, raw: &Raw) -> Result<T> {
    serde_json::from_slice(&raw.body).map_err(|e| GitLabError::decode(operation, &e))
}

#[path = "client_kinds.rs"]
mod kinds;

impl GitLabApi for GitLabClient {
    fn rate_limit_remaining(&self) -> Option<u64> {
        self.limiter.remaining()
    }

    fn version(&self) -> BoxFuture<'_, Result<Version>> {
        Box::pin(self.get("version", "version"))
    }

    fn current_user(&self) -> BoxFuture<'_, Result<User>> {
        Box::pin(self.get("current_user", "user"))
    }

    fn personal_access_token_self(&self) -> BoxFuture<'_, Result<AccessToken>> {
        Box::pin(self.get("personal_access_token_self", "personal_access_tokens/self"))
    }

    fn rotate_personal_access_token_self(&self, expires_at: NaiveDate) -> BoxFuture<'_, Result<NewToken>> {
        Box::pin(async move {
            let used = self.credential.begin_self_rotation()?;
            let result: Result<NewToken> = self
                .post_unsafe(
                    "rotate_personal_access_token_self",
                    "personal_access_tokens/self/rotate",
                    &RotateBody { expires_at },
                )
                .await;
            self.credential
                .end_self_rotation(&used, result.as_ref().map(|new| &new.token))?;
            result
        })
    }

    fn project<'a>(&'a self, project: &'a str) -> BoxFuture<'a, Result<Project>> {
        Box::pin(async move {
            self.get("project", &format!("projects/{}", project_segment(project)?))
                .await
        })
    }

    fn project_member_all<'a>(&'a self, project: &'a str, user_id: u64) -> BoxFuture<'a, Result<Member>> {
        Box::pin(async move {
            let path = format!("projects/{}/members/all/{user_id}", project_segment(project)?);
            self.get("project_member_all", &path).await
        })
    }

    fn list_project_access_tokens<'a>(
        &'a self,
        project: &'a str,
        state: Option<TokenState>,
    ) -> BoxFuture<'a, Result<Vec<AccessToken>>> {
        Box::pin(async move {
            let mut url = self.url(&format!("projects/{}/access_tokens", project_segment(project)?))?;
            if let Some(state) = state {
                url.query_pairs_mut().append_pair("state", state.as_str());
            }
            self.get_all("list_project_access_tokens", url).await
        })
    }

    fn get_project_access_token<'a>(
        &'a self,
        project: &'a str,
        token_id: u64,
    ) -> BoxFuture<'a, Result<AccessToken>> {
        Box::pin(async move {
            let path = format!("projects/{}/access_tokens/{token_id}", project_segment(project)?);
            self.get("get_project_access_token", &path).await
        })
    }

    fn create_project_access_token<'a>(
        &'a self,
        project: &'a str,
        request: &'a CreateProjectAccessToken,
    ) -> BoxFuture<'a, Result<NewToken>> {
        Box::pin(async move {
            let path = format!("projects/{}/access_tokens", project_segment(project)?);
            self.post_unsafe("create_project_access_token", &path, request)
                .await
        })
    }

    fn rotate_project_access_token<'a>(
        &'a self,
        project: &'a str,
        token_id: u64,
        expires_at: NaiveDate,
    ) -> BoxFuture<'a, Result<NewToken>> {
        Box::pin(async move {
            self.credential.check_rotate_allowed()?;
            let path = format!(
                "projects/{}/access_tokens/{token_id}/rotate",
                project_segment(project)?
            );
            self.post_unsafe("rotate_project_access_token", &path, &RotateBody { expires_at })
                .await
        })
    }

    fn revoke_project_access_token<'a>(
        &'a self,
        project: &'a str,
        token_id: u64,
    ) -> BoxFuture<'a, Result<RevokeOutcome>> {
        Box::pin(async move {
            let url = self.url(&format!(
                "projects/{}/access_tokens/{token_id}",
                project_segment(project)?
            ))?;
            let operation = "revoke_project_access_token";
            match self
                .send(operation, Method::DELETE, &url, None, Idempotency::Safe)
                .await
            {
                Ok(_) => Ok(RevokeOutcome::Revoked),
                Err(GitLabError::NotFound { .. }) => Ok(RevokeOutcome::AlreadyGone),
                Err(err) => Err(err),
            }
        })
    }

    fn list_active_credentials(
        &self,
        kind: CredentialKind,
        owner: Owner,
    ) -> BoxFuture<'_, Result<Vec<CredentialRecord>>> {
        Box::pin(self.active_credentials(kind, owner))
    }

    fn revoke_credential(
        &self,
        kind: CredentialKind,
        owner: Owner,
        id: u64,
    ) -> BoxFuture<'_, Result<RevokeOutcome>> {
        Box::pin(self.delete_credential(kind, owner, id))
    }

    fn create_deploy_key<'a>(
        &'a self,
        project_id: u64,
        request: &'a CreateDeployKey,
    ) -> BoxFuture<'a, Result<super::DeployKey>> {
        let path = CredentialKind::DeployKey.collection(Owner::Project(project_id));
        Box::pin(async move { self.post_unsafe("create_deploy_key", &path, request).await })
    }

    fn create_deploy_token<'a>(
        &'a self,
        owner: Owner,
        request: &'a CreateDeployToken,
    ) -> BoxFuture<'a, Result<NewDeployToken>> {
        let path = CredentialKind::DeployToken.collection(owner);
        Box::pin(async move { self.post_unsafe("create_deploy_token", &path, request).await })
    }

    fn create_group_access_token<'a>(
        &'a self,
        group_id: u64,
        request: &'a CreateProjectAccessToken,
    ) -> BoxFuture<'a, Result<NewToken>> {
        let path = CredentialKind::GroupAccessToken.collection(Owner::Group(group_id));
        Box::pin(async move {
            self.post_unsafe("create_group_access_token", &path, request)
                .await
        })
    }

    fn list_projects<'a>(&'a self, search: &'a str) -> BoxFuture<'a, Result<Vec<Project>>> {
        Box::pin(async move {
            let mut url = self.url("projects")?;
            url.query_pairs_mut()
                .append_pair("search", search)
                .append_pair("search_namespaces", "true");
            self.get_all("list_projects", url).await
        })
    }

    fn group<'a>(&'a self, group: &'a str) -> BoxFuture<'a, Result<GroupDetail>> {
        Box::pin(async move {
            // Group paths encode like project paths: one `%2F`-joined segment.
            self.get("group", &format!("groups/{}", project_segment(group)?))
                .await
        })
    }

    fn group_projects<'a>(&'a self, group: &'a str) -> BoxFuture<'a, Result<Vec<Project>>> {
        Box::pin(async move {
            let mut url = self.url(&format!("groups/{}/projects", project_segment(group)?))?;
            // GitLab's default `with_shared=true` would mix in projects shared with the group.
            url.query_pairs_mut()
                .append_pair("with_shared", "false")
                .append_pair("include_subgroups", "false");
            self.get_all("group_projects", url).await
        })
    }

    fn associations(&self, min_access_level: u32) -> BoxFuture<'_, Result<Associations>> {
        Box::pin(async move {
            // Both lists are paginated with the same page parameters: read pages until both are short.
            let mut out = Associations::default();
            for page in 1..=self.max_pages {
                let mut url = self.url("personal_access_tokens/self/associations")?;
                url.query_pairs_mut()
                    .append_pair("min_access_level", &min_access_level.to_string())
                    .append_pair("per_page", &PER_PAGE.to_string())
                    .append_pair("page", &page.to_string());
                let one: Associations = self.get_url("associations", url).await?;
                let full = one.groups.len() >= PER_PAGE as usize || one.projects.len() >= PER_PAGE as usize;
                out.groups.extend(one.groups);
                out.projects.extend(one.projects);
                if !full {
                    return Ok(out);
                }
            }
            Err(GitLabError::InvalidResponse {
                message: format!("associations: more than {} pages", self.max_pages),
            })
        })
    }

    fn member_groups(&self, min_access_level: u32) -> BoxFuture<'_, Result<Vec<ListedGroup>>> {
        Box::pin(async move {
            let mut url = self.url("groups")?;
            url.query_pairs_mut()
                .append_pair("min_access_level", &min_access_level.to_string());
            self.get_all("member_groups", url).await
        })
    }

    fn repository_file<'a>(
        &'a self,
        project: &'a str,
        path: &'a str,
        reference: &'a str,
    ) -> BoxFuture<'a, Result<RepositoryFile>> {
        Box::pin(async move {
            // The file path is one segment: every `/` encoded, like a project path.
            let mut url = self.url(&format!(
                "projects/{}/repository/files/{}",
                project_segment(project)?,
                project_segment(path)?
            ))?;
            url.query_pairs_mut().append_pair("ref", reference);
            self.get_url("repository_file", url).await
        })
    }

    fn user_by_username<'a>(&'a self, username: &'a str) -> BoxFuture<'a, Result<Option<User>>> {
        Box::pin(async move {
            let mut url = self.url("users")?;
            url.query_pairs_mut().append_pair("username", username);
            let users: Vec<User> = self.get_all("user_by_username", url).await?;
            Ok(users
                .into_iter()
                .find(|u| u.username.eq_ignore_ascii_case(username)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_base_from_gitlab_urls() {
        let ok = [
            ("https://gitlab.example.com", "https://gitlab.example.com/api/v4/"),
            (
                "https://gitlab.example.com/",
                "https://gitlab.example.com/api/v4/",
            ),
            ("https://example.com/gitlab", "https://example.com/gitlab/api/v4/"),
            ("http://127.0.0.1:8080/", "http://127.0.0.1:8080/api/v4/"),
        ];
        for (input, want) in ok {
            assert_eq!(api_base(input).unwrap().as_str(), want);
        }
        for bad in ["ftp://x", "https://u:p@x", "https://x/?a=b", "not a url", ""] {
            assert_eq!(api_base(bad).unwrap_err().reason(), "InvalidConfig", "{bad}");
        }
    }

    #[test]
    fn project_segments() {
        assert_eq!(project_segment("acme/team-a/app").unwrap(), "acme%2Fteam-a%2Fapp");
        assert_eq!(project_segment(" 812 ").unwrap(), "812");
        for bad in ["", "/", "..", "a/../b", "a//b", "./x"] {
            assert_eq!(
                project_segment(bad).unwrap_err().reason(),
                "InvalidInput",
                "{bad}"
            );
        }
    }

    #[test]
    fn config_debug_hides_the_token() {
        let config = ClientConfig::new(
            "https://gitlab.example.com",
            SecretString::from("glpat-supersecret"),
        );
        assert!(!format!("{config:?}").contains("supersecret"));
        let client = GitLabClient::new(config).unwrap();
        assert!(!format!("{client:?}").contains("supersecret"));
    }

    #[test]
    fn bad_tokens_are_refused_without_echoing_them() {
        for bad in ["", "glpat-a\nb"] {
            let err = GitLabClient::new(ClientConfig::new("https://x", SecretString::from(bad))).unwrap_err();
            assert_eq!(err.reason(), "InvalidConfig");
            assert!(!err.to_string().contains("glpat-a"));
        }
    }
}
