//! `AccessOracle` for the emulator state: HTTP Basic credential checks as GitLab does them for
//! Git, the registry's `/jwt/auth` and package endpoints, and project access for a principal.
//!
//! Deploy tokens are not users: their principal carries `user_id = DEPLOY_PRINCIPAL_BASE + id` and
//! the token's username; on their own project (or the projects of their group) they report
//! `access_level` 30 (Developer), so their scopes alone decide what they may do.

use super::{
    access::{AccessOracle, CredentialError, Principal, ProjectAccess},
    error::TokenFailure,
    model::{DEVELOPER, OWNER, Source},
    state::GitLabState,
    store::Credential,
    tokens::{AuthFailure, Authenticated},
    traffic::CallRecord,
};

/// User ids at and above this value name deploy tokens (`base + deploy token id`).
pub const DEPLOY_PRINCIPAL_BASE: u64 = 1 << 40;

impl GitLabState {
    fn basic_failure(&self, username: &str, error: CredentialError) -> CredentialError {
        self.record_call(CallRecord {
            at: self.now(),
            method: "BASIC".into(),
            path: "(credential check)".into(),
            status: 401,
            user: (!username.is_empty()).then(|| username.to_string()),
        });
        error
    }
}

fn failure(f: TokenFailure) -> CredentialError {
    match f {
        TokenFailure::Expired => CredentialError::Expired,
        TokenFailure::Revoked => CredentialError::Revoked,
    }
}

impl AccessOracle for GitLabState {
    fn authenticate(&self, username: &str, password: &str) -> Result<Principal, CredentialError> {
        if username.is_empty() || password.is_empty() {
            return Err(self.basic_failure(username, CredentialError::Unknown));
        }
        let outcome = self.authenticate_secret(password, None);
        let store = self.store();
        let result = match outcome {
            Ok(Authenticated::Token(id)) => store
                .tokens
                .get(&id)
                .and_then(|t| {
                    let user = store.users.get(&t.user_id)?;
                    Some(Principal {
                        user_id: user.id,
                        username: user.username.clone(),
                        scopes: t.scopes.clone(),
                    })
                })
                .ok_or(CredentialError::Unknown),
            Ok(Authenticated::Deploy(id)) => match store.deploy_tokens.get(&id) {
                Some(d) if d.username == username => Ok(Principal {
                    user_id: DEPLOY_PRINCIPAL_BASE + d.id,
                    username: d.username.clone(),
                    scopes: d.scopes.clone(),
                }),
                _ => Err(CredentialError::Unknown),
            },
            Err(AuthFailure::Unknown) => Err(CredentialError::Unknown),
            Err(AuthFailure::Dead(Credential::Deploy(id), f)) => {
                // A deploy token with the wrong username is unknown, whatever its state.
                match store.deploy_tokens.get(&id) {
                    Some(d) if d.username == username => Err(failure(f)),
                    _ => Err(CredentialError::Unknown),
                }
            }
            Err(AuthFailure::Dead(Credential::Token(_), f)) => Err(failure(f)),
        };
        drop(store);
        result.map_err(|e| self.basic_failure(username, e))
    }

    fn project_access(&self, principal: Option<&Principal>, path_or_id: &str) -> Option<ProjectAccess> {
        let store = self.store();
        let key = path_or_id.trim_matches('/');
        let p = store.find_project(key)?;
        let path_with_namespace = store.project_path(p);
        let public = p.visibility == "public";
        let level = match principal {
            None => {
                if !public {
                    return None;
                }
                0
            }
            Some(pr) if pr.user_id >= DEPLOY_PRINCIPAL_BASE => {
                let d = store.deploy_tokens.get(&(pr.user_id - DEPLOY_PRINCIPAL_BASE))?;
                let covers = match d.resource {
                    Source::Project(id) => id == p.id,
                    Source::Group(gid) => store.group_within(p.namespace_id, gid),
                };
                match (covers, public) {
                    (true, _) => DEVELOPER,
                    (false, true) => 0,
                    (false, false) => return None,
                }
            }
            Some(pr) => {
                let user = store.users.get(&pr.user_id)?;
                if !store.can_see_project(Some(user), p) {
                    return None;
                }
                if user.is_admin {
                    OWNER
                } else {
                    store.effective_level(user.id, Source::Project(p.id))
                }
            }
        };
        // Internal projects are readable by every signed-in user, like public ones for anonymous.
        let readable_by_all = public || (p.visibility == "internal" && principal.is_some());
        Some(ProjectAccess {
            project_id: p.id,
            path_with_namespace,
            access_level: level,
            public: readable_by_all,
            archived: p.archived,
        })
    }
}
