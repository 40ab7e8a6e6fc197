//! Bodies of the endpoints for the credential kinds beyond project access tokens: deploy keys
//! (gitlab-access-and-ssh.md §1), deploy tokens (gitlab-api.md §8) and group access tokens
//! (gitlab-api.md §4), and one listing shape shared by every kind so liveness checks and the
//! orphan sweep treat all kinds alike.

use chrono::{DateTime, NaiveDate, Utc};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::AccessToken;

/// One credential as a listing shows it, whatever its kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialRecord {
    /// GitLab id (token id or deploy key id).
    pub id: u64,
    /// Name (tokens) or title (deploy keys): carries the operator's marker.
    pub name: String,
    /// Whether GitLab would accept it now (not revoked, not expired).
    pub active: bool,
    /// Creation time, when GitLab reports it.
    pub created_at: Option<DateTime<Utc>>,
    /// The day it dies (00:00 UTC), when it expires at all.
    pub expires_at: Option<NaiveDate>,
    /// The bot user of an access token.
    pub user_id: Option<u64>,
}

impl CredentialRecord {
    /// An access token (project or group) as a record.
    pub fn from_access_token(t: &AccessToken) -> Self {
        Self {
            id: t.id,
            name: t.name.clone(),
            active: t.active && !t.revoked,
            created_at: t.created_at,
            expires_at: t.expires_at,
            user_id: Some(t.user_id),
        }
    }

    /// A deploy key as a record; a key past its `expires_at` is not active.
    pub fn from_deploy_key(k: &DeployKey, now: DateTime<Utc>) -> Self {
        Self {
            id: k.id,
            name: k.title.clone(),
            active: k.expires_at.is_none_or(|e| e > now),
            created_at: k.created_at,
            expires_at: k.expires_at.map(|e| e.date_naive()),
            user_id: None,
        }
    }

    /// A deploy token as a record.
    pub fn from_deploy_token(t: &DeployToken) -> Self {
        Self {
            id: t.id,
            name: t.name.clone(),
            active: !t.revoked && !t.expired,
            created_at: None,
            expires_at: t.expires_at.map(|e| e.date_naive()),
            user_id: None,
        }
    }
}

/// A deploy key enabled on a project (`Entities::DeployKeysProject`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DeployKey {
    /// Key id (shared by every project the key is enabled on).
    pub id: u64,
    /// Title (the operator writes its marker here).
    pub title: String,
    /// The OpenSSH public key line.
    #[serde(default)]
    pub key: String,
    /// Creation time.
    #[serde(default)]
    pub created_at: Option<DateTime<Utc>>,
    /// Expiry (15.11+), a datetime.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    /// `SHA256:` fingerprint (15.2+).
    #[serde(default)]
    pub fingerprint_sha256: Option<String>,
    /// Whether the key may push to this project (absent in `enable` answers).
    #[serde(default)]
    pub can_push: Option<bool>,
}

/// `POST /projects/:id/deploy_keys` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CreateDeployKey {
    /// Title (max 255).
    pub title: String,
    /// OpenSSH public key line (public: no secret here).
    pub key: String,
    /// Push access (only with the write annotation and a policy allowing it).
    pub can_push: bool,
    /// Expiry (`YYYY-MM-DDTHH:MM:SSZ`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

/// A deploy token as listed (no secret).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DeployToken {
    /// Token id.
    pub id: u64,
    /// Name (carries the operator's marker).
    pub name: String,
    /// The login Git and the registry require (`gitlab+deploy-token-<id>` unless chosen).
    pub username: String,
    /// Expiry, a datetime here (unlike access tokens).
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    /// Whether it was revoked.
    #[serde(default)]
    pub revoked: bool,
    /// Whether it expired.
    #[serde(default)]
    pub expired: bool,
    /// Scopes granted.
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// A freshly created deploy token: the record plus its secret, which `Debug` never shows.
#[derive(Debug, Clone, Deserialize)]
pub struct NewDeployToken {
    /// The token record.
    #[serde(flatten)]
    pub info: DeployToken,
    /// The token value; GitLab shows it only in this response.
    pub token: SecretString,
}

/// `POST /projects/:id/deploy_tokens` and `POST /groups/:id/deploy_tokens` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CreateDeployToken {
    /// Name (carries the operator's marker).
    pub name: String,
    /// `read_repository`, `read_registry`, `read_package_registry` and write variants.
    pub scopes: Vec<String>,
    /// Expiry; the token dies at 00:00 UTC that day.
    pub expires_at: NaiveDate,
}

/// A group as `GET /groups/:id` returns it (the fields the operator needs).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Group {
    /// Numeric id.
    pub id: u64,
    /// Canonical full path (`acme/team-a`).
    pub full_path: String,
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn documented_shapes_decode_and_map_to_records() {
        let key: DeployKey = serde_json::from_str(
            r#"{"id": 12, "title": "flux-payments", "created_at": "2025-06-01T10:00:00.000Z",
                "expires_at": "2025-07-01T00:00:00Z", "key": "ssh-ed25519 AAAAC3Nza flux",
                "fingerprint_sha256": "SHA256:Ojq2", "can_push": false}"#,
        )
        .unwrap();
        let before = Utc.with_ymd_and_hms(2025, 6, 30, 0, 0, 0).unwrap();
        let after = Utc.with_ymd_and_hms(2025, 7, 1, 0, 0, 0).unwrap();
        assert!(CredentialRecord::from_deploy_key(&key, before).active);
        assert!(
            !CredentialRecord::from_deploy_key(&key, after).active,
            "expired keys are dead"
        );

        let new: NewDeployToken = serde_json::from_str(
            r#"{"id": 31, "name": "team-a-pull", "username": "gitlab+deploy-token-31",
                "expires_at": "2025-09-01T00:00:00.000Z", "token": "gldt-EXAMPLEexample000000",
                "revoked": false, "expired": false, "scopes": ["read_registry"]}"#,
        )
        .unwrap();
        assert_eq!(new.info.username, "gitlab+deploy-token-31");
        assert_eq!(new.token.expose_secret(), "gldt-EXAMPLEexample000000");
        assert!(
            !format!("{new:?}").contains("gldt-EXAMPLE"),
            "Debug hides the token"
        );
        assert!(CredentialRecord::from_deploy_token(&new.info).active);
        let revoked = DeployToken {
            revoked: true,
            ..new.info
        };
        assert!(!CredentialRecord::from_deploy_token(&revoked).active);
    }
}
