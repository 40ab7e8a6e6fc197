//! Token lifecycle on the store: minting opaque strings (kept only as SHA-256 digests), bot users,
//! creation, rotation with token families, revocation, reuse detection and authentication.

use chrono::{DateTime, Days, NaiveDate, Utc};
use rand::{Rng, distr::Alphanumeric};
use sha2::{Digest, Sha256};

use super::{
    error::{ApiError, TokenFailure},
    model::{DeployToken, Membership, Source, Token, TokenKind, User, UserType, fmt_date},
    store::{Credential, Store},
};

/// A token record together with its secret string, returned once.
#[derive(Clone)]
pub struct Issued {
    /// The stored record.
    pub token: Token,
    /// The secret (only in create/rotate responses).
    pub secret: String,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("token_id", &self.token.id)
            .field("secret", &"[redacted]")
            .finish()
    }
}

/// What the API guard found for a presented secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authenticated {
    /// A live PAT/PrAT/GrAT record.
    Token(u64),
    /// A live deploy token.
    Deploy(u64),
}

/// Why a presented secret was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No such token.
    Unknown,
    /// Known but refused (expired or revoked); carries the record id.
    Dead(Credential, TokenFailure),
}

/// SHA-256 of a token string.
pub fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// A fresh opaque token string with the given prefix (`glpat-`, `gldt-`).
pub fn mint_secret(prefix: &str) -> String {
    let body: String = rand::rng()
        .sample_iter(&Alphanumeric)
        .take(20)
        .map(char::from)
        .collect();
    format!("{prefix}{body}")
}

/// Fields of a new project/group access token.
#[derive(Debug, Clone)]
pub struct NewResourceToken {
    /// Name.
    pub name: String,
    /// Description.
    pub description: Option<String>,
    /// Validated scopes.
    pub scopes: Vec<String>,
    /// Validated role.
    pub access_level: u32,
    /// Requested expiry (None: today + max lifetime).
    pub expires_at: Option<NaiveDate>,
}

/// Checks an expiry against the maximum lifetime; `Expiration date must be before <max>` otherwise.
pub fn check_expiry(expires_at: NaiveDate, today: NaiveDate, max_days: u32) -> Result<(), ApiError> {
    let max = today
        .checked_add_days(Days::new(u64::from(max_days)))
        .unwrap_or(NaiveDate::MAX);
    if expires_at > max {
        return Err(ApiError::BadRequest(format!(
            "Expiration date must be before {}",
            fmt_date(max)
        )));
    }
    Ok(())
}

fn plus_days(today: NaiveDate, days: u32) -> NaiveDate {
    today
        .checked_add_days(Days::new(u64::from(days)))
        .unwrap_or(NaiveDate::MAX)
}

impl Store {
    /// Stores a new PAT-type record and returns it with its secret.
    #[allow(clippy::too_many_arguments)]
    pub fn insert_token(
        &mut self,
        kind: TokenKind,
        resource: Option<Source>,
        name: &str,
        description: Option<String>,
        scopes: Vec<String>,
        user_id: u64,
        expires_at: Option<NaiveDate>,
        previous_id: Option<u64>,
        now: DateTime<Utc>,
    ) -> Issued {
        let secret = mint_secret("glpat-");
        let id = self.next_token_id();
        let token = Token {
            id,
            kind,
            resource,
            name: name.to_string(),
            description,
            scopes,
            user_id,
            created_at: now,
            expires_at,
            revoked: false,
            revoked_at: None,
            last_used_at: None,
            last_used_ips: Vec::new(),
            previous_id,
            digest: digest(&secret),
        };
        self.digests.insert(token.digest, Credential::Token(id));
        self.tokens.insert(id, token.clone());
        Issued { token, secret }
    }

    /// Creates the bot user behind a new resource token and makes it a member of the resource.
    pub fn create_bot(&mut self, source: Source, display_name: &str, level: u32, now: DateTime<Utc>) -> u64 {
        let id = self.next_user_id();
        let hex: String = (0..16)
            .map(|_| format!("{:02x}", rand::rng().random::<u8>()))
            .collect();
        let (kind, sid) = match source {
            Source::Project(p) => ("project", p),
            Source::Group(g) => ("group", g),
        };
        self.users.insert(
            id,
            User {
                id,
                username: format!("{kind}_{sid}_bot_{hex}"),
                name: display_name.to_string(),
                user_type: UserType::ProjectBot,
                is_admin: false,
                created_at: now,
            },
        );
        self.set_member(Membership {
            source,
            user_id: id,
            access_level: level,
            created_at: now,
        });
        id
    }

    /// Creates a project/group access token (caller checks done by the API layer).
    pub fn create_resource_token(
        &mut self,
        source: Source,
        new: NewResourceToken,
        now: DateTime<Utc>,
        max_days: u32,
    ) -> Result<Issued, ApiError> {
        let today = now.date_naive();
        let expires_at = match new.expires_at {
            Some(date) => {
                check_expiry(date, today, max_days)?;
                date
            }
            None => plus_days(today, max_days),
        };
        let bot = self.create_bot(source, &new.name, new.access_level, now);
        let kind = match source {
            Source::Project(_) => TokenKind::Project,
            Source::Group(_) => TokenKind::Group,
        };
        Ok(self.insert_token(
            kind,
            Some(source),
            &new.name,
            new.description,
            new.scopes,
            bot,
            Some(expires_at),
            None,
            now,
        ))
    }

    /// Rotates a token: revokes it at once and issues a successor for the same user with the
    /// same name, description and scopes; expiry `expires_at` or today + 7 days.
    pub fn rotate_token(
        &mut self,
        token_id: u64,
        expires_at: Option<NaiveDate>,
        now: DateTime<Utc>,
        max_days: u32,
    ) -> Result<Issued, ApiError> {
        let today = now.date_naive();
        let old = self
            .tokens
            .get(&token_id)
            .cloned()
            .ok_or_else(|| ApiError::not_found("Token"))?;
        if old.revoked {
            return Err(ApiError::BadRequest("Token already revoked".into()));
        }
        let expires_at = match expires_at {
            Some(date) => {
                check_expiry(date, today, max_days)?;
                date
            }
            None => plus_days(today, 7),
        };
        self.revoke_token(token_id, now);
        Ok(self.insert_token(
            old.kind,
            old.resource,
            &old.name,
            old.description,
            old.scopes,
            old.user_id,
            Some(expires_at),
            Some(old.id),
            now,
        ))
    }

    /// Marks a token revoked; false when unknown.
    pub fn revoke_token(&mut self, token_id: u64, now: DateTime<Utc>) -> bool {
        match self.tokens.get_mut(&token_id) {
            Some(t) => {
                if !t.revoked {
                    t.revoked_at = Some(now);
                }
                t.revoked = true;
                true
            }
            None => false,
        }
    }

    /// Reuse detection: revokes every active descendant (by rotation) of `root`; returns their ids.
    pub fn revoke_descendants(&mut self, root: u64, now: DateTime<Utc>) -> Vec<u64> {
        let mut family = vec![root];
        let mut revoked = Vec::new();
        // Successors always have larger ids than their predecessors, so one ordered pass suffices.
        for token in self.tokens.values_mut() {
            if token.previous_id.is_some_and(|p| family.contains(&p)) {
                family.push(token.id);
                if !token.revoked {
                    token.revoked = true;
                    token.revoked_at = Some(now);
                    revoked.push(token.id);
                }
            }
        }
        revoked
    }

    /// Looks up a presented secret; on success records its use (time and client IP).
    pub fn authenticate_secret(
        &mut self,
        secret: &str,
        now: DateTime<Utc>,
        ip: Option<&str>,
    ) -> Result<Authenticated, AuthFailure> {
        let today = now.date_naive();
        match self.digests.get(&digest(secret)).copied() {
            None => Err(AuthFailure::Unknown),
            Some(Credential::Token(id)) => {
                let token = self.tokens.get_mut(&id).ok_or(AuthFailure::Unknown)?;
                // AccessTokenValidationService checks expiry before revocation.
                if token.expired_on(today) {
                    return Err(AuthFailure::Dead(Credential::Token(id), TokenFailure::Expired));
                }
                if token.revoked {
                    return Err(AuthFailure::Dead(Credential::Token(id), TokenFailure::Revoked));
                }
                token.last_used_at = Some(now);
                if let Some(ip) = ip
                    && !token.last_used_ips.iter().any(|i| i == ip)
                {
                    token.last_used_ips.push(ip.to_string());
                    if token.last_used_ips.len() > 5 {
                        token.last_used_ips.remove(0);
                    }
                }
                Ok(Authenticated::Token(id))
            }
            Some(Credential::Deploy(id)) => {
                let token = self.deploy_tokens.get(&id).ok_or(AuthFailure::Unknown)?;
                if token.deleted {
                    return Err(AuthFailure::Unknown);
                }
                if token.revoked {
                    return Err(AuthFailure::Dead(Credential::Deploy(id), TokenFailure::Revoked));
                }
                if token.expired_at(now) {
                    return Err(AuthFailure::Dead(Credential::Deploy(id), TokenFailure::Expired));
                }
                Ok(Authenticated::Deploy(id))
            }
        }
    }

    /// Creates a deploy token; `username` defaults to `gitlab+deploy-token-<id>`.
    pub fn create_deploy_token(
        &mut self,
        resource: Source,
        name: &str,
        username: Option<String>,
        scopes: Vec<String>,
        expires_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> (DeployToken, String) {
        let id = self.next_deploy_id();
        let secret = mint_secret("gldt-");
        let token = DeployToken {
            id,
            resource,
            name: name.to_string(),
            username: username.unwrap_or_else(|| format!("gitlab+deploy-token-{id}")),
            scopes,
            expires_at,
            revoked: false,
            deleted: false,
            created_at: now,
            digest: digest(&secret),
        };
        self.digests.insert(token.digest, Credential::Deploy(id));
        self.deploy_tokens.insert(id, token.clone());
        (token, secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap_or_default()
    }

    #[test]
    fn expiry_limit_is_inclusive() {
        let today = date("2030-01-01");
        let cases = [
            ("2030-12-31", true),
            ("2031-01-01", true),
            ("2031-01-02", false),
            ("2029-12-31", true),
        ];
        for (expires, ok) in cases {
            assert_eq!(check_expiry(date(expires), today, 365).is_ok(), ok, "{expires}");
        }
        assert_eq!(
            check_expiry(date("2031-01-02"), today, 365),
            Err(ApiError::BadRequest(
                "Expiration date must be before 2031-01-01".into()
            ))
        );
    }

    #[test]
    fn rotation_chain_and_reuse_detection() {
        let mut store = Store::default();
        let now = Utc::now();
        let first = store.insert_token(
            TokenKind::Personal,
            None,
            "t",
            None,
            vec!["api".into()],
            1,
            None,
            None,
            now,
        );
        let second = store
            .rotate_token(first.token.id, None, now, 365)
            .map(|i| i.token.id);
        let second = second.unwrap_or_default();
        let third = store
            .rotate_token(second, None, now, 365)
            .map(|i| i.token.id)
            .unwrap_or_default();
        assert_eq!(
            store
                .rotate_token(first.token.id, None, now, 365)
                .map(|i| i.token.id),
            Err(ApiError::BadRequest("Token already revoked".into()))
        );
        assert!(store.tokens[&first.token.id].revoked && store.tokens[&second].revoked);
        assert!(!store.tokens[&third].revoked);
        assert_eq!(store.revoke_descendants(first.token.id, now), vec![third]);
        assert!(store.tokens[&third].revoked);
    }

    #[test]
    fn expiry_wins_over_revocation_when_authenticating() {
        let mut store = Store::default();
        let now = Utc::now();
        let today = now.date_naive();
        let t = store.insert_token(
            TokenKind::Personal,
            None,
            "t",
            None,
            vec![],
            1,
            Some(today),
            None,
            now,
        );
        store.revoke_token(t.token.id, now);
        let dead = Err(AuthFailure::Dead(
            Credential::Token(t.token.id),
            TokenFailure::Expired,
        ));
        assert_eq!(store.authenticate_secret(&t.secret, now, None), dead);
        assert_eq!(
            store.authenticate_secret("glpat-unknown", now, None),
            Err(AuthFailure::Unknown)
        );
    }

    #[test]
    fn minted_secrets_are_opaque_and_unique() {
        let a = mint_secret("glpat-");
        let b = mint_secret("glpat-");
        assert!(a.starts_with("glpat-") && a.len() == 26 && a != b);
        assert_ne!(digest(&a), digest(&b));
    }
}
