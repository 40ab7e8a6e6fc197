//! GitLab emulator (issue: test world, part 2). See `gitlab-api.md` and `consumer-protocols.md`
//! in shared/reference.
//!
//! # Starting
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use testbed::gitlab::{GitLabConfig, GitLabServer, seed::seed_default};
//! let bound = GitLabServer::bind(GitLabConfig::default()).await?; // 127.0.0.1:<random>
//! let (url, oracle) = (bound.url(), bound.oracle()); // hand these to the fronts
//! # let _ = (url, oracle);
//! let gitlab = bound.serve(None); // or Some(fronts_router): merged, behind the traffic layer
//! let seeded = seed_default(&gitlab.seed())?; // PATs, projects with content flags
//! # let _ = seeded; Ok(()) }
//! ```
//! `GitLabServer::start(config)` does both steps without extra routes. Fronts routes under
//! `/api/v4/projects/` must name the project segment `{id}`; our router has no fallback (the fronts
//! carry one) but answers every unknown `/api/v4/...` path with `{"message":"404 Not Found"}`.
//! Every route, the fronts' included, passes the traffic layer; a front may name the acting user
//! in the call log through the `middleware::RequestMeta` request extension (`set_acting`).
//!
//! # REST API (`/api/v4`, `PRIVATE-TOKEN` or `Authorization: Bearer`)
//! `version`, `metadata`, `user`, `users` (`username`: exact, case-insensitive); `projects` (`membership`, `search`, `search_namespaces`,
//! `archived`, `visibility`, `min_access_level`, `order_by`, `sort`, paginated), `projects/:id`
//! (numeric or `%2F`-encoded path, with `shared_with_groups`), `projects/:id/registry/repositories`,
//! `groups` and `groups/:id/{subgroups,descendant_groups}` (`min_access_level`, `search`, `owned`),
//! `groups/:id` (`GroupDetail` with `shared_with_groups`), `groups/:id/projects` (`include_subgroups`, `with_shared` default true);
//! `{projects,groups}/:id/members[/all][/:user_id]` (GET; POST/PUT/DELETE on direct members with
//! `access_level`, `expires_at`); `{projects,groups}/:id/share[/:group_id]` (POST/DELETE);
//! `projects/:id/repository/files/:file_path[/raw]` (GET/HEAD; POST/PUT/DELETE commit to a branch),
//! `projects/:id/repository/commits/:sha`, `projects/:id/repository/branches/:branch` (on the bare
//! repositories given to `GitLabState::attach_repositories`); `personal_access_tokens/self/associations`;
//! `{projects,groups}/:id/access_tokens` (list with filters, get, create, `:token_id/rotate`,
//! `self/rotate`, revoke); `{projects,groups}/:id/deploy_tokens` (list, get, create, delete);
//! `projects/:id/deploy_keys` (list, get, create-or-attach, update, `:key_id/enable`, delete);
//! `personal_access_tokens` (list own, `:id`, `:id/rotate`, delete) and `personal_access_tokens/self`
//! (get, `rotate`, revoke). Rules, error shapes and headers follow gitlab-api.md and GitLab's own
//! code (`lib/api/resource_access_tokens.rb`, `lib/api/api_guard.rb`, `auth_finders.rb`).
//!
//! Rules in short: unknown token → 401 `{"message":"401 Unauthorized"}`; expired (checked first)
//! or revoked → 401 `invalid_token` with `WWW-Authenticate`; missing scope → 403
//! `insufficient_scope` (no challenge header, as rack-oauth2). GETs take `api`/`read_api`, writes
//! `api`, self-rotation `api`/`self_rotate`, `personal_access_tokens/self` any scope. Resource
//! tokens: Maintainer+ (Owner for groups), never a bot, role ≤ caller's, `expires_at` ≤ today +
//! max lifetime (default today + max on create, today + 7 on rotate), one bot per token (kept on
//! rotation), rotation revokes at once, a revoked token on `access_tokens/(\d+|self)/rotate`
//! revokes its active descendants, inactive tokens stay listed 30 days.
//!
//! Throttle: when enabled, every `/api/v4` request counts per user (per IP when anonymous) in a
//! fixed window on the emulator clock; answers carry `RateLimit-Name/Limit/Observed/Remaining/
//! Reset`, excess gets 429 `Retry later` with `Retry-After` and `RateLimit-ResetTime`.
//!
//! Faults (`FaultRule` JSON): `{"method"?: "POST", "path": "/api/v4/projects/*/access_tokens*",
//! "action": {"kind": "latency", "ms": 500} | {"kind": "status", "status": 503} |
//! {"kind": "rate_limited", "retry_after": 30} | {"kind": "hang", "ms": 60000} |
//! {"kind": "hang_after", "ms": 60000}, "times"?: 1}` — `path` is a glob over the raw path,
//! `hang_after` runs the request and withholds the answer (a lost response).
//!
//! # Controls (Rust: `GitLabHandle`; HTTP: JSON under `/-/testbed/`)
//! | HTTP | Rust | Effect |
//! |---|---|---|
//! | `GET /-/testbed/clock` | `clock().now()` | `{"now","today","frozen"}` |
//! | `POST /-/testbed/clock` `{"advance_secs"?, "set"?: RFC 3339, "freeze"?: bool}` | `clock().advance/set/freeze/unfreeze` | time travel |
//! | `POST /-/testbed/seed` `{"users","groups","projects","project_updates","members","shares","personal_tokens"}` | `seed().user/group/project/update_project/member/share/personal_token` | 201 with ids and PAT strings; a member with `access_level` 0 is removed (withdrawn access); members take `expires_at`; a share `{"path","group","group_access","expires_at"?}` with `group_access` 0 is removed |
//! | `POST /-/testbed/seed/default` | `seed_default(&seed())` | the default world (`DefaultSeed`) |
//! | `GET /-/testbed/projects` | `seed().projects()` | projects with `has_repository/has_image/has_chart` |
//! | `GET`/`DELETE /-/testbed/calls` | `calls()` | call log (method, path with redacted query, status, user, at) |
//! | `GET /-/testbed/tokens` | `tokens()` | every token with its state, never its value |
//! | `GET`/`POST`/`DELETE /-/testbed/faults` (`FaultRule` JSON) | `add_fault`, `clear_faults` | latency, status, 429, hang, hang_after |
//! | — | `state().reuse_detections()` | every firing of reuse detection (revoked token on a rotate path) |
//! | `DELETE /-/testbed/rate_limit/windows` | `reset_rate_limits()` | restart throttle windows |
//! | `POST /-/testbed/settings` `{"max_token_lifetime_days"?, "latency_ms"?, "registry_host"?, "rate_limit"?: {"limit","period_secs"}\|null}` | `set_max_token_lifetime_days`, `set_latency`, `set_registry_host`, `set_rate_limit` | runtime settings |
//!
//! Effective access (`groups.rs`): the highest of direct, inherited and shared membership, a
//! share giving `min(share level, role)`; expired members and shares count for nothing. Every
//! access check (REST and the fronts' `AccessOracle`) uses it, so changes apply at once.
//!
//! Seed-only helper: `seed().resource_token(path, name, scopes, level, expires_at)` mints a project
//! or group access token without a caller (for front tests).

pub mod api;
mod clock;
pub mod control;
pub mod error;
pub mod fronts;
pub mod groups;
pub mod middleware;
pub mod model;
pub mod oracle;
pub mod repos;
pub mod seed;
pub mod seed_groups;
pub mod server;
pub mod state;
pub mod store;
pub mod tokens;
pub mod traffic;

pub use clock::{Clock, ClockRangeError};
pub use error::ApiError;
pub use seed::{DefaultSeed, Seeder, seed_default};
pub use server::{BoundGitLab, GitLabConfig, GitLabHandle, GitLabServer, ServerError};
pub use state::{GitLabState, ReuseDetection, TokenRecord};
pub use traffic::{CallRecord, FaultAction, FaultRule, RateLimitConfig};

// The shared contract (and the fronts' module, added by their branch) stay last for easy merges.
pub mod access;
pub mod access_ssh;
pub mod ssh_keys;
