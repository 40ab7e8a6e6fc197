//! Listing and deleting credentials of every kind (one code path per kind's endpoint shape), for
//! the liveness check, revocation and the orphan sweep.

use chrono::Utc;
use http::Method;

use super::{GitLabClient, Idempotency, Result};
use crate::{
    crd::{CredentialKind, Owner},
    gitlab::{AccessToken, CredentialRecord, DeployKey, DeployToken, GitLabError, RevokeOutcome, TokenState},
};

impl GitLabClient {
    /// The active credentials of `kind` on `owner`, as records.
    pub(super) async fn active_credentials(
        &self,
        kind: CredentialKind,
        owner: Owner,
    ) -> Result<Vec<CredentialRecord>> {
        let mut url = self.url(&kind.collection(owner))?;
        let records: Vec<CredentialRecord> = match kind {
            CredentialKind::ProjectAccessToken | CredentialKind::GroupAccessToken => {
                url.query_pairs_mut()
                    .append_pair("state", TokenState::Active.as_str());
                let operation = match owner {
                    Owner::Project(_) => "list_project_access_tokens",
                    Owner::Group(_) => "list_group_access_tokens",
                };
                let listed: Vec<AccessToken> = self.get_all(operation, url).await?;
                listed.iter().map(CredentialRecord::from_access_token).collect()
            }
            CredentialKind::DeployToken => {
                url.query_pairs_mut().append_pair("active", "true");
                let listed: Vec<DeployToken> = self.get_all("list_deploy_tokens", url).await?;
                listed.iter().map(CredentialRecord::from_deploy_token).collect()
            }
            CredentialKind::DeployKey => {
                let listed: Vec<DeployKey> = self.get_all("list_deploy_keys", url).await?;
                let now = Utc::now();
                listed
                    .iter()
                    .map(|k| CredentialRecord::from_deploy_key(k, now))
                    .collect()
            }
        };
        Ok(records.into_iter().filter(|r| r.active).collect())
    }

    /// Deletes (revokes) one credential; 404 means it is already gone.
    pub(super) async fn delete_credential(
        &self,
        kind: CredentialKind,
        owner: Owner,
        id: u64,
    ) -> Result<RevokeOutcome> {
        let url = self.url(&format!("{}/{id}", kind.collection(owner)))?;
        let operation = match kind {
            CredentialKind::ProjectAccessToken => "revoke_project_access_token",
            CredentialKind::GroupAccessToken => "revoke_group_access_token",
            CredentialKind::DeployKey => "delete_deploy_key",
            CredentialKind::DeployToken => "revoke_deploy_token",
        };
        match self
            .send(operation, Method::DELETE, &url, None, Idempotency::Safe)
            .await
        {
            Ok(_) => Ok(RevokeOutcome::Revoked),
            Err(GitLabError::NotFound { .. }) => Ok(RevokeOutcome::AlreadyGone),
            Err(err) => Err(err),
        }
    }
}
