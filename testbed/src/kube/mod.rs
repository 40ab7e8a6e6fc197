//! Kubernetes API server emulator (issue: test world, part 1). See `kube-api.md` in shared/reference.

pub mod semantics;
