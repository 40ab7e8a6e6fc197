//! The operator's GitLab REST client (DESIGN §6–§7, gitlab-api.md).
//!
//! - [`GitLabApi`]: the operations the token lifecycle needs, as an object-safe trait with boxed
//!   futures, so controllers hold an `Arc<dyn GitLabApi>` and tests can swap in a fake.
//! - [`GitLabClient`]: the reqwest + rustls (ring) implementation: `PRIVATE-TOKEN` auth marked
//!   sensitive, a per-connection token bucket honouring 429 `Retry-After`, jittered retries of
//!   safe requests only, offset pagination, custom CA bundles, same-origin-only redirects.
//! - Reuse-detection guard: after an ambiguous self-rotation, or once GitLab calls the operator's
//!   token revoked, no rotate endpoint is called with that token again (gitlab-api.md §5.4);
//!   a successful self-rotation switches the client to the new token at once.
//! - [`GitLabError`]: failures by family, with a static `reason()`; never carries a secret.
//! - [`RequestObserver`]: a hook the metrics layer implements to count and time requests.

mod access_types;
mod client;
mod config;
mod credential;
pub mod error;
mod error_body;
pub mod kinds;
pub mod pagination;
pub mod project_cache;
pub mod ratelimit;
pub mod retry;
mod tls;
mod types;

use std::time::Duration;

use chrono::NaiveDate;
use futures::future::BoxFuture;
pub use kinds::{
    CreateDeployKey, CreateDeployToken, CredentialRecord, DeployKey, DeployToken, Group, NewDeployToken,
};

use crate::crd::{CredentialKind, Owner};

pub use access_types::{
    AssociatedGroup, AssociatedProject, Associations, GroupDetail, ListedGroup, ProjectAccessLevels,
    RepositoryFile, SharedWithGroup,
};
pub use client::GitLabClient;
pub use config::ClientConfig;
pub use error::GitLabError;
pub use project_cache::{Freshness, ProjectCache, ProjectCacheConfig, ProjectCacheStats};
pub use ratelimit::{ConnectionBudget, Monotonic, RateLimitConfig, RateLimiter, SystemMonotonic};
pub use retry::{Idempotency, RetryPolicy};
pub use tls::tls_config;
pub use types::{
    AccessGrant, AccessToken, CreateProjectAccessToken, Member, Namespace, NewToken, Project,
    ProjectPermissions, RevokeOutcome, TokenState, User, Version,
};

/// Result of a GitLab call.
pub type Result<T, E = GitLabError> = std::result::Result<T, E>;

/// The GitLab operations of the token lifecycle.
///
/// `project` arguments are a numeric id or a full path (`acme/team-a/app`); paths are sent
/// URL-encoded (`acme%2Fteam-a%2Fapp`). Object-safe: controllers hold `Arc<dyn GitLabApi>`.
pub trait GitLabApi: Send + Sync {
    /// `GET /version`.
    fn version(&self) -> BoxFuture<'_, Result<Version>>;
    /// `GET /user`: who the operator's token acts as.
    fn current_user(&self) -> BoxFuture<'_, Result<User>>;
    /// `GET /personal_access_tokens/self`: the operator's own token record (expiry, scopes).
    fn personal_access_token_self(&self) -> BoxFuture<'_, Result<AccessToken>>;
    /// `POST /personal_access_tokens/self/rotate`; never retried (a lost response must surface).
    /// On success the client uses the new token at once; after an ambiguous failure every
    /// rotate endpoint refuses (`RotationUnsafe`) until a fresh token is set (gitlab-api.md §5.4).
    fn rotate_personal_access_token_self(&self, expires_at: NaiveDate) -> BoxFuture<'_, Result<NewToken>>;
    /// `GET /projects/:id`.
    fn project<'a>(&'a self, project: &'a str) -> BoxFuture<'a, Result<Project>>;
    /// `GET /projects/:id/members/all/:user_id`: effective membership, 404 if none.
    fn project_member_all<'a>(&'a self, project: &'a str, user_id: u64) -> BoxFuture<'a, Result<Member>>;
    /// `GET /projects/:id/access_tokens` (all pages), optionally filtered by state.
    fn list_project_access_tokens<'a>(
        &'a self,
        project: &'a str,
        state: Option<TokenState>,
    ) -> BoxFuture<'a, Result<Vec<AccessToken>>>;
    /// `GET /projects/:id/access_tokens/:token_id`.
    fn get_project_access_token<'a>(
        &'a self,
        project: &'a str,
        token_id: u64,
    ) -> BoxFuture<'a, Result<AccessToken>>;
    /// `POST /projects/:id/access_tokens`; never retried after an ambiguous failure.
    fn create_project_access_token<'a>(
        &'a self,
        project: &'a str,
        request: &'a CreateProjectAccessToken,
    ) -> BoxFuture<'a, Result<NewToken>>;
    /// `POST /projects/:id/access_tokens/:token_id/rotate`; never retried after an ambiguous failure,
    /// refused while the operator's own token may be rotated or revoked.
    fn rotate_project_access_token<'a>(
        &'a self,
        project: &'a str,
        token_id: u64,
        expires_at: NaiveDate,
    ) -> BoxFuture<'a, Result<NewToken>>;
    /// `DELETE /projects/:id/access_tokens/:token_id`; 404 is `Ok(RevokeOutcome::AlreadyGone)`.
    fn revoke_project_access_token<'a>(
        &'a self,
        project: &'a str,
        token_id: u64,
    ) -> BoxFuture<'a, Result<RevokeOutcome>>;
    /// `GET /projects?search=…&search_namespaces=true` (all pages, bounded): projects the
    /// operator can see whose name or full path matches.
    fn list_projects<'a>(&'a self, search: &'a str) -> BoxFuture<'a, Result<Vec<Project>>>;
    /// `GET /groups/:id` (numeric id or full path), with its `shared_with_groups`.
    fn group<'a>(&'a self, group: &'a str) -> BoxFuture<'a, Result<GroupDetail>>;
    /// `GET /groups/:id/projects?with_shared=false`: every page of the projects directly in a
    /// group (not its subgroups', not those shared with it), each with its `shared_with_groups`.
    fn group_projects<'a>(&'a self, group: &'a str) -> BoxFuture<'a, Result<Vec<Project>>>;
    /// `GET /users?username=…`: the user (or service account) of that username, if any.
    fn user_by_username<'a>(&'a self, username: &'a str) -> BoxFuture<'a, Result<Option<User>>>;
    /// `GET /personal_access_tokens/self/associations?min_access_level=`: every page, merged.
    fn associations(&self, min_access_level: u32) -> BoxFuture<'_, Result<Associations>>;
    /// `GET /groups?min_access_level=`: groups the operator's user is a member of at that level.
    fn member_groups(&self, min_access_level: u32) -> BoxFuture<'_, Result<Vec<ListedGroup>>>;
    /// `GET /projects/:id/repository/files/:file_path?ref=`: a file at a ref (404: no such file,
    /// ref or project).
    fn repository_file<'a>(
        &'a self,
        project: &'a str,
        path: &'a str,
        reference: &'a str,
    ) -> BoxFuture<'a, Result<RepositoryFile>>;
    /// The active credentials of `kind` on `owner` (all pages): access tokens with
    /// `state=active`, deploy tokens with `active=true`, deploy keys not past their expiry.
    fn list_active_credentials(
        &self,
        kind: CredentialKind,
        owner: Owner,
    ) -> BoxFuture<'_, Result<Vec<CredentialRecord>>>;
    /// `DELETE /{projects|groups}/:id/{access_tokens|deploy_keys|deploy_tokens}/:id`; 404 is
    /// `Ok(RevokeOutcome::AlreadyGone)`.
    fn revoke_credential(
        &self,
        kind: CredentialKind,
        owner: Owner,
        id: u64,
    ) -> BoxFuture<'_, Result<RevokeOutcome>>;
    /// `POST /projects/:id/deploy_keys`; never retried after an ambiguous failure.
    fn create_deploy_key<'a>(
        &'a self,
        project_id: u64,
        request: &'a CreateDeployKey,
    ) -> BoxFuture<'a, Result<DeployKey>>;
    /// `POST /{projects|groups}/:id/deploy_tokens`; never retried after an ambiguous failure.
    fn create_deploy_token<'a>(
        &'a self,
        owner: Owner,
        request: &'a CreateDeployToken,
    ) -> BoxFuture<'a, Result<NewDeployToken>>;
    /// `POST /groups/:id/access_tokens`; never retried after an ambiguous failure.
    fn create_group_access_token<'a>(
        &'a self,
        group_id: u64,
        request: &'a CreateProjectAccessToken,
    ) -> BoxFuture<'a, Result<NewToken>>;
    /// GitLab's last `RateLimit-Remaining` on this connection (for the metric), if known.
    fn rate_limit_remaining(&self) -> Option<u64> {
        None
    }
}

/// Told about every HTTP attempt (the metrics layer implements it).
pub trait RequestObserver: Send + Sync {
    /// One attempt of `operation` finished with `status` (`None`: no HTTP answer) after `duration`.
    fn on_request(&self, operation: &'static str, status: Option<u16>, duration: Duration);
}

/// A project id or full path as one URL path segment (`/` becomes `%2F`).
pub fn encode_project(project: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(project.trim(), SET).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_paths_are_one_encoded_segment() {
        let cases = [
            ("812", "812"),
            ("acme/team-a/app", "acme%2Fteam-a%2Fapp"),
            ("a.b_c~d", "a.b_c~d"),
            ("x y?z#", "x%20y%3Fz%23"),
            ("../x", "..%2Fx"),
        ];
        for (input, want) in cases {
            assert_eq!(encode_project(input), want);
        }
    }

    #[test]
    fn the_trait_is_object_safe() {
        fn takes(_: Option<std::sync::Arc<dyn GitLabApi>>) {}
        takes(None);
    }
}
