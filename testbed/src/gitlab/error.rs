//! GitLab's three families of API errors, rendered exactly: the `{"message": ...}` helpers, Grape
//! parameter errors `{"error": ...}`, and OAuth-style token errors (401 ones with `WWW-Authenticate`).

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::json;

/// Why a token was refused by the API guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenFailure {
    /// `expires_at` has begun.
    Expired,
    /// Revoked.
    Revoked,
}

/// An API error answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// 401 `{"message":"401 Unauthorized"}`.
    #[error("401 Unauthorized")]
    Unauthorized,
    /// 403 `{"message":"403 Forbidden[ - reason]"}`.
    #[error("403 Forbidden")]
    Forbidden(Option<String>),
    /// 404 with the given full message, e.g. `404 Project Not Found`.
    #[error("{0}")]
    NotFound(String),
    /// 400 `{"message":"400 Bad request - <text>"}`.
    #[error("400 Bad request - {0}")]
    BadRequest(String),
    /// 400 model validation `{"message":{"<field>":["<error>"]}}`.
    #[error("400 validation error on {0}")]
    Validation(String, String),
    /// `{"message":"<text>"}` with any status (`render_api_error!(text, status)`, `conflict!`).
    #[error("{0} {1}")]
    Api(u16, String),
    /// 405 `{"message":"405 Method Not Allowed"}`.
    #[error("405 Method Not Allowed")]
    MethodNotAllowed,
    /// 400 Grape parameter error `{"error":"..."}`.
    #[error("{0}")]
    Param(String),
    /// 401 OAuth `invalid_token`.
    #[error("invalid token")]
    InvalidToken(TokenFailure),
    /// 403 OAuth `insufficient_scope`, with the scopes that would do.
    #[error("insufficient scope")]
    InsufficientScope(Vec<&'static str>),
}

impl ApiError {
    /// `404 Project Not Found`.
    pub fn project_not_found() -> Self {
        ApiError::NotFound("404 Project Not Found".into())
    }
    /// `404 Group Not Found`.
    pub fn group_not_found() -> Self {
        ApiError::NotFound("404 Group Not Found".into())
    }
    /// `404 Not Found` (unknown route).
    pub fn route_not_found() -> Self {
        ApiError::NotFound("404 Not Found".into())
    }
    /// `404 Not found`: ActiveRecord's `RecordNotFound` as the API renders it (`find_by!`).
    pub fn record_not_found() -> Self {
        ApiError::NotFound("404 Not found".into())
    }
    /// `404 <what> Not Found`.
    pub fn not_found(what: &str) -> Self {
        ApiError::NotFound(format!("404 {what} Not Found"))
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized | ApiError::InvalidToken(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) | ApiError::InsufficientScope(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) | ApiError::Validation(..) | ApiError::Param(_) => {
                StatusCode::BAD_REQUEST
            }
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Api(status, _) => StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_REQUEST),
        }
    }
}

const EXPIRED: &str = "Token is expired. You can either do re-authorization or token refresh.";
const REVOKED: &str = "Token was revoked. You have to re-authorize from the user.";
const SCOPE: &str = "The request requires higher privileges than provided by the access token.";

fn bearer_challenge(error: &str, description: &str) -> HeaderValue {
    let value = format!(
        "Bearer realm=\"Protected by OAuth 2.0\", error=\"{error}\", error_description=\"{description}\""
    );
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match self {
            ApiError::Unauthorized => (status, Json(json!({"message": "401 Unauthorized"}))).into_response(),
            ApiError::Forbidden(None) => (status, Json(json!({"message": "403 Forbidden"}))).into_response(),
            ApiError::Forbidden(Some(reason)) => (
                status,
                Json(json!({"message": format!("403 Forbidden - {reason}")})),
            )
                .into_response(),
            ApiError::NotFound(message) => (status, Json(json!({"message": message}))).into_response(),
            ApiError::BadRequest(text) => (
                status,
                Json(json!({"message": format!("400 Bad request - {text}")})),
            )
                .into_response(),
            ApiError::Validation(field, error) => {
                (status, Json(json!({"message": {field: [error]}}))).into_response()
            }
            ApiError::MethodNotAllowed => {
                (status, Json(json!({"message": "405 Method Not Allowed"}))).into_response()
            }
            ApiError::Param(text) => (status, Json(json!({"error": text}))).into_response(),
            ApiError::Api(_, text) => (status, Json(json!({"message": text}))).into_response(),
            ApiError::InvalidToken(failure) => {
                let description = match failure {
                    TokenFailure::Expired => EXPIRED,
                    TokenFailure::Revoked => REVOKED,
                };
                let mut response = (
                    status,
                    Json(json!({"error": "invalid_token", "error_description": description})),
                )
                    .into_response();
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    bearer_challenge("invalid_token", description),
                );
                response
            }
            // rack-oauth2's Bearer::Forbidden carries no WWW-Authenticate header (a FIXME in
            // lib/api/api_guard.rb), so neither do we.
            ApiError::InsufficientScope(scopes) => (
                status,
                Json(json!({"error": "insufficient_scope", "error_description": SCOPE, "scope": scopes.join(" ")})),
            )
                .into_response(),
        }
    }
}
