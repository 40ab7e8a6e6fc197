//! The `GitLabToken` controller: issue, renew, rotate and revoke (DESIGN §6).

pub mod decide;
