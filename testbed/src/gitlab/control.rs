//! The JSON control API under `/-/testbed/` (not logged, throttled or faulted). See the module
//! docs of `gitlab` for the list of endpoints.

use std::{sync::Arc, time::Duration};

use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{delete, get, post},
};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    clock::ClockRangeError,
    model::fmt_date,
    seed::{
        GroupSeed, MemberSeed, ProjectSeed, ProjectUpdate, Seeder, ShareSeed, TokenSeed, UserSeed,
        seed_default,
    },
    state::GitLabState,
    traffic::{ArmedFault, FaultRule, RateLimitConfig},
};

type S = Arc<GitLabState>;

fn bad(message: impl std::fmt::Display) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": message.to_string()})),
    )
        .into_response()
}

fn clock_json(state: &GitLabState) -> Value {
    json!({"now": state.now().to_rfc3339(), "today": fmt_date(state.clock().today()),
           "frozen": state.clock().is_frozen()})
}

/// Body of `POST /-/testbed/clock`.
#[derive(Debug, Deserialize)]
struct ClockChange {
    #[serde(default)]
    advance_secs: Option<i64>,
    #[serde(default)]
    set: Option<DateTime<Utc>>,
    #[serde(default)]
    freeze: Option<bool>,
}

async fn change_clock(State(s): State<S>, Json(c): Json<ClockChange>) -> Response {
    if let Some(freeze) = c.freeze {
        if freeze {
            s.clock().freeze()
        } else {
            s.clock().unfreeze()
        }
    }
    if let Some(at) = c.set {
        s.clock().set(at);
    }
    if let Some(secs) = c.advance_secs {
        let moved = chrono::Duration::try_seconds(secs)
            .ok_or(ClockRangeError)
            .and_then(|d| s.clock().try_advance(d));
        if let Err(e) = moved {
            return bad(e);
        }
    }
    Json(clock_json(&s)).into_response()
}

/// Body of `POST /-/testbed/seed`.
#[derive(Debug, Default, Deserialize)]
struct SeedRequest {
    #[serde(default)]
    users: Vec<UserSeed>,
    #[serde(default)]
    groups: Vec<GroupSeed>,
    #[serde(default)]
    projects: Vec<ProjectSeed>,
    #[serde(default)]
    members: Vec<MemberSeed>,
    #[serde(default)]
    personal_tokens: Vec<TokenSeed>,
    #[serde(default)]
    project_updates: Vec<ProjectUpdate>,
    #[serde(default)]
    shares: Vec<ShareSeed>,
}

async fn seed(State(s): State<S>, Json(req): Json<SeedRequest>) -> Response {
    let seeder = Seeder::new(s);
    let mut out = json!({"users": {}, "groups": {}, "projects": {}, "personal_tokens": []});
    for u in req.users {
        let name = u.username.clone();
        match seeder.user(u) {
            Ok(id) => out["users"][name] = json!(id),
            Err(e) => return bad(e),
        }
    }
    for g in req.groups {
        let path = g.full_path.clone();
        match seeder.group(g) {
            Ok(id) => out["groups"][path] = json!(id),
            Err(e) => return bad(e),
        }
    }
    for p in req.projects {
        let path = p.full_path.clone();
        match seeder.project(p) {
            Ok(id) => out["projects"][path] = json!(id),
            Err(e) => return bad(e),
        }
    }
    for u in req.project_updates {
        if let Err(e) = seeder.update_project(u) {
            return bad(e);
        }
    }
    for m in req.members {
        if let Err(e) = seeder.member(m) {
            return bad(e);
        }
    }
    for share in req.shares {
        if let Err(e) = seeder.share(share) {
            return bad(e);
        }
    }
    let mut tokens = Vec::new();
    for t in req.personal_tokens {
        let (username, name) = (t.username.clone(), t.name.clone());
        match seeder.personal_token(t) {
            Ok((id, token)) => {
                tokens.push(json!({"username": username, "name": name, "id": id, "token": token}))
            }
            Err(e) => return bad(e),
        }
    }
    out["personal_tokens"] = json!(tokens);
    (StatusCode::CREATED, Json(out)).into_response()
}

async fn seed_default_route(State(s): State<S>) -> Response {
    match seed_default(&Seeder::new(s)) {
        Ok(seed) => (StatusCode::CREATED, Json(json!(seed))).into_response(),
        Err(e) => bad(e),
    }
}

async fn add_fault(State(s): State<S>, Json(rule): Json<FaultRule>) -> Response {
    match ArmedFault::new(rule) {
        Ok(f) => {
            s.add_fault(f);
            StatusCode::CREATED.into_response()
        }
        Err(e) => bad(e),
    }
}

async fn list_faults(State(s): State<S>) -> Response {
    Json(s.faults().into_iter().map(|f| f.rule).collect::<Vec<_>>()).into_response()
}

/// Body of `POST /-/testbed/settings`.
#[derive(Debug, Deserialize)]
struct SettingsChange {
    #[serde(default)]
    max_token_lifetime_days: Option<u32>,
    #[serde(default)]
    latency_ms: Option<u64>,
    #[serde(default)]
    registry_host: Option<String>,
    /// `{"rate_limit": null}` disables; absent leaves unchanged.
    #[serde(default, deserialize_with = "some")]
    rate_limit: Option<Option<RateLimitConfig>>,
}

fn some<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<RateLimitConfig>>, D::Error> {
    Option::<RateLimitConfig>::deserialize(d).map(Some)
}

async fn change_settings(State(s): State<S>, Json(c): Json<SettingsChange>) -> Response {
    s.update_settings(|set| {
        if let Some(days) = c.max_token_lifetime_days {
            set.max_token_lifetime_days = days;
        }
        if let Some(host) = c.registry_host.clone() {
            set.registry_host = host;
        }
        if let Some(ms) = c.latency_ms {
            set.latency = (ms > 0).then(|| Duration::from_millis(ms));
        }
        if let Some(rl) = c.rate_limit.clone() {
            set.rate_limit = rl;
        }
    });
    if c.rate_limit.is_some() {
        s.reset_rate_limits();
    }
    let set = s.settings();
    Json(json!({
        "max_token_lifetime_days": set.max_token_lifetime_days,
        "latency_ms": set.latency.map(|l| l.as_millis() as u64),
        "rate_limit": set.rate_limit,
        "registry_host": set.registry_host,
    }))
    .into_response()
}

/// The control router (state applied by the server).
pub fn router() -> Router<S> {
    Router::new()
        .route(
            "/-/testbed/clock",
            get(|State(s): State<S>| async move { Json(clock_json(&s)) }).post(change_clock),
        )
        .route("/-/testbed/seed", post(seed))
        .route("/-/testbed/seed/default", post(seed_default_route))
        .route(
            "/-/testbed/projects",
            get(|State(s): State<S>| async move { Json(json!(Seeder::new(s).projects())) }),
        )
        .route(
            "/-/testbed/calls",
            get(|State(s): State<S>| async move { Json(json!(s.calls())) }).delete(
                |State(s): State<S>| async move {
                    s.clear_calls();
                    StatusCode::NO_CONTENT
                },
            ),
        )
        .route(
            "/-/testbed/tokens",
            get(|State(s): State<S>| async move { Json(json!(s.tokens())) }),
        )
        .route(
            "/-/testbed/faults",
            get(list_faults)
                .post(add_fault)
                .delete(|State(s): State<S>| async move {
                    s.clear_faults();
                    StatusCode::NO_CONTENT
                }),
        )
        .route(
            "/-/testbed/rate_limit/windows",
            delete(|State(s): State<S>| async move {
                s.reset_rate_limits();
                StatusCode::NO_CONTENT
            }),
        )
        .route("/-/testbed/settings", post(change_settings))
}
