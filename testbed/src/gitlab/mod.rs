//! GitLab emulator (issue: test world, part 2). See `gitlab-api.md` and `consumer-protocols.md`
//! in shared/reference.

pub mod access;
pub mod fronts;
