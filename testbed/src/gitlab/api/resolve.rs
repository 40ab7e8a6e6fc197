//! Resolving `:id` (numeric or URL-encoded full path) to a project or group visible to the caller.

use crate::gitlab::{
    error::ApiError,
    model::{Group, Project, User},
    store::Store,
};

/// The project named by `key` if the caller may see it; `404 Project Not Found` otherwise.
pub fn project(store: &Store, caller: Option<&User>, key: &str) -> Result<Project, ApiError> {
    store
        .find_project(key)
        .filter(|p| store.can_see_project(caller, p))
        .cloned()
        .ok_or_else(ApiError::project_not_found)
}

/// The group named by `key` if the caller may see it; `404 Group Not Found` otherwise.
pub fn group(store: &Store, caller: Option<&User>, key: &str) -> Result<Group, ApiError> {
    store
        .find_group(key)
        .filter(|g| store.can_see_group(caller, g))
        .cloned()
        .ok_or_else(ApiError::group_not_found)
}
