//! The traffic layer wrapped around every route (API and fronts, not `/-/testbed/`): injected
//! faults, optional latency, the `/api/v4` throttle with `RateLimit-*` headers, and the call log.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use axum::{
    Json,
    extract::{ConnectInfo, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};
use serde_json::json;

use super::{
    api::auth::presented_secret,
    state::GitLabState,
    traffic::{CallRecord, FaultAction, RateVerdict, redact_query},
};

/// Per-request facts shared with the handlers: client IP and a slot for the acting user.
#[derive(Debug, Clone, Default)]
pub struct RequestMeta {
    /// Client IP address.
    pub ip: Option<String>,
    acting: Arc<Mutex<Option<String>>>,
}

impl RequestMeta {
    /// Records who the request acts as (for the call log).
    pub fn set_acting(&self, username: &str) {
        *self.acting.lock().unwrap_or_else(PoisonError::into_inner) = Some(username.to_string());
    }

    fn acting(&self) -> Option<String> {
        self.acting.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

fn rate_headers(headers: &mut HeaderMap, v: &RateVerdict) {
    let mut put = |name: &'static str, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    };
    put("ratelimit-name", v.name.to_string());
    put("ratelimit-limit", v.limit_per_minute.to_string());
    put("ratelimit-observed", v.observed.to_string());
    put("ratelimit-remaining", v.remaining.to_string());
    put("ratelimit-reset", v.reset.timestamp().to_string());
    if v.throttled {
        put(
            "ratelimit-resettime",
            v.reset.format("%a, %d %b %Y %H:%M:%S GMT").to_string(),
        );
        put("retry-after", v.retry_after.to_string());
    }
}

/// GitLab's throttle answer: 429, plain text `Retry later`.
fn retry_later(retry_after: u64) -> Response {
    let mut response = (StatusCode::TOO_MANY_REQUESTS, "Retry later\n").into_response();
    if let Ok(v) = HeaderValue::from_str(&retry_after.to_string()) {
        response.headers_mut().insert("retry-after", v);
    }
    response
}

fn fault_status(status: u16) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let text = format!("{} {}", code.as_u16(), code.canonical_reason().unwrap_or("Error"));
    (code, Json(json!({ "message": text }))).into_response()
}

/// The middleware function (installed with `axum::middleware::from_fn_with_state`).
pub async fn traffic(State(state): State<Arc<GitLabState>>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    if path.starts_with("/-/testbed/") {
        return next.run(req).await;
    }
    let method = req.method().to_string();
    let logged_path = redact_query(
        &req.uri()
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
    );
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string());
    let meta = RequestMeta {
        ip: ip.clone(),
        acting: Arc::default(),
    };
    req.extensions_mut().insert(meta.clone());
    let log = |status: StatusCode, user: Option<String>| {
        state.record_call(CallRecord {
            at: state.now(),
            method: method.clone(),
            path: logged_path.clone(),
            status: status.as_u16(),
            user,
        });
    };

    let mut hold_response = None;
    match state.take_fault(&method, &path) {
        Some(FaultAction::Latency { ms }) => tokio::time::sleep(Duration::from_millis(ms)).await,
        Some(FaultAction::Status { status }) => {
            let response = fault_status(status);
            log(response.status(), None);
            return response;
        }
        Some(FaultAction::RateLimited { retry_after }) => {
            let response = retry_later(retry_after);
            log(response.status(), None);
            return response;
        }
        Some(FaultAction::Hang { ms }) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            let response = fault_status(504);
            log(response.status(), None);
            return response;
        }
        Some(FaultAction::HangAfter { ms }) => hold_response = Some(Duration::from_millis(ms)),
        None => {}
    }
    if let Some(latency) = state.settings().latency {
        tokio::time::sleep(latency).await;
    }

    let mut verdict = None;
    if path.starts_with("/api/v4/") {
        let user = presented_secret(req.headers(), req.uri().query()).and_then(|s| state.peek_username(&s));
        let key = match &user {
            Some(u) => format!("user:{u}"),
            None => format!("ip:{}", ip.as_deref().unwrap_or("unknown")),
        };
        if let Some(v) = state.count_request(&key, user.is_some()) {
            if v.throttled {
                let mut response = retry_later(v.retry_after);
                rate_headers(response.headers_mut(), &v);
                log(response.status(), user);
                return response;
            }
            verdict = Some(v);
        }
    }

    let mut response = next.run(req).await;
    if let Some(v) = &verdict {
        rate_headers(response.headers_mut(), v);
    }
    log(response.status(), meta.acting());
    if let Some(hold) = hold_response {
        tokio::time::sleep(hold).await;
    }
    response
}
