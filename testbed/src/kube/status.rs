//! Kubernetes `Status` error bodies exactly as the real API server shapes them (kube-api.md §10).

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde_json::{Map, Value, json};

use super::semantics::FieldCause;

/// An API error that renders as a `Status` object with the matching HTTP code.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// Machine-readable reason (`NotFound`, `Conflict`, …).
    pub reason: &'static str,
    /// Human-readable message.
    pub message: String,
    /// `details` object (name, group, kind, uid, causes); empty fields are omitted.
    pub details: Option<Value>,
    /// Seconds for a `Retry-After` header (429).
    pub retry_after: Option<u64>,
}

/// Identifies the object an error is about: plural resource (or Kind for Invalid), group, name.
#[derive(Debug, Clone, Default)]
pub struct Subject<'a> {
    /// Plural resource or Kind, depending on the error.
    pub kind: &'a str,
    /// API group, empty for core.
    pub group: &'a str,
    /// Object name, may be empty.
    pub name: &'a str,
}

impl Subject<'_> {
    /// `<res>[.<group>]` as used in messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.kind.to_string()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    fn details(&self) -> Map<String, Value> {
        let mut d = Map::new();
        if !self.name.is_empty() {
            d.insert("name".into(), json!(self.name));
        }
        if !self.group.is_empty() {
            d.insert("group".into(), json!(self.group));
        }
        if !self.kind.is_empty() {
            d.insert("kind".into(), json!(self.kind));
        }
        d
    }
}

impl ApiError {
    /// A bare error without details.
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    fn with(code: u16, reason: &'static str, message: String, s: &Subject<'_>) -> Self {
        ApiError {
            code,
            reason,
            message,
            details: Some(Value::Object(s.details())),
            retry_after: None,
        }
    }

    /// 404 for an unknown path.
    pub fn no_route() -> Self {
        ApiError {
            details: Some(json!({})),
            ..Self::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            )
        }
    }

    /// 404 `<res> "x" not found`.
    pub fn not_found(s: &Subject<'_>) -> Self {
        Self::with(
            404,
            "NotFound",
            format!("{} \"{}\" not found", s.qualified(), s.name),
            s,
        )
    }

    /// 409 `<res> "x" already exists`.
    pub fn already_exists(s: &Subject<'_>, deleting: bool) -> Self {
        let prefix = if deleting { "object is being deleted: " } else { "" };
        Self::with(
            409,
            "AlreadyExists",
            format!("{prefix}{} \"{}\" already exists", s.qualified(), s.name),
            s,
        )
    }

    /// 409 `Operation cannot be fulfilled on <res> "x": <why>`.
    pub fn conflict(s: &Subject<'_>, why: &str) -> Self {
        Self::with(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{}\": {why}",
                s.qualified(),
                s.name
            ),
            s,
        )
    }

    /// 409 for a stale resourceVersion on update.
    pub fn stale(s: &Subject<'_>) -> Self {
        Self::conflict(
            s,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 422 `<Kind>[.<group>] "x" is invalid: ...` with field causes (details.kind is the Kind).
    pub fn invalid(s: &Subject<'_>, causes: &[FieldCause]) -> Self {
        let mut seen = Vec::<String>::new();
        for c in causes {
            let line = if c.field.is_empty() {
                c.message.clone()
            } else {
                format!("{}: {}", c.field, c.message)
            };
            if !seen.contains(&line) {
                seen.push(line);
            }
        }
        let body = if seen.len() == 1 {
            seen[0].clone()
        } else {
            format!("[{}]", seen.join(", "))
        };
        let mut d = s.details();
        d.insert(
            "causes".into(),
            serde_json::to_value(causes).unwrap_or(Value::Null),
        );
        ApiError {
            code: 422,
            reason: "Invalid",
            message: format!("{} \"{}\" is invalid: {body}", s.qualified(), s.name),
            details: Some(Value::Object(d)),
            retry_after: None,
        }
    }

    /// 422 with the generic message used for failed JSON patches.
    pub fn generic_invalid() -> Self {
        ApiError {
            details: Some(json!({})),
            ..Self::new(
                422,
                "Invalid",
                "the server rejected our request due to an error in our request",
            )
        }
    }

    /// 400 BadRequest with free text.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 403 Forbidden with the `<res> "x" is forbidden: <why>` message.
    pub fn forbidden(s: &Subject<'_>, why: &str) -> Self {
        let msg = if s.name.is_empty() {
            format!("{} is forbidden: {why}", s.qualified())
        } else {
            format!("{} \"{}\" is forbidden: {why}", s.qualified(), s.name)
        };
        Self::with(403, "Forbidden", msg, s)
    }

    /// 410 Expired.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    /// 415 for an unknown patch media type.
    pub fn unsupported_media(accepted: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: {accepted}"
            ),
        )
    }

    /// 405 MethodNotAllowed.
    pub fn method_not_allowed(verb: &str, resource: &str) -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            format!("{verb} is not supported on resources of kind \"{resource}\""),
        )
    }

    /// 401 Unauthorized.
    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    /// 500 InternalError.
    pub fn internal(message: impl std::fmt::Display) -> Self {
        Self::new(
            500,
            "InternalError",
            format!("Internal error occurred: {message}"),
        )
    }

    /// Adds causes to the details object.
    pub fn with_causes(mut self, causes: Value) -> Self {
        let mut d = match self.details.take() {
            Some(Value::Object(m)) => m,
            _ => Map::new(),
        };
        d.insert("causes".into(), causes);
        self.details = Some(Value::Object(d));
        self
    }

    /// Replaces the details with an empty object (non-resource errors).
    pub fn strip_details(mut self) -> Self {
        self.details = Some(json!({}));
        self
    }

    /// Trims a trailing `": "` left when a cause has no detail text.
    pub fn strip_trailing(mut self) -> Self {
        self.message = self.message.trim_end_matches(": ").to_string();
        self
    }

    /// The Status object as JSON.
    pub fn to_status(&self) -> Value {
        let mut s = json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
            "message": self.message, "reason": self.reason, "code": self.code});
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        s
    }
}

/// A 422 cause list for ListOptions/PatchOptions/DeleteOptions style errors (`details.group` meta.k8s.io).
pub fn options_invalid(kind: &str, field: &str, ty: &str, reason: &str, detail: &str) -> ApiError {
    let cause = FieldCause {
        reason: reason.into(),
        message: format!("{ty}: {detail}"),
        field: field.into(),
    };
    ApiError::invalid(
        &Subject {
            kind,
            group: "meta.k8s.io",
            name: "",
        },
        &[cause],
    )
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (code, self.to_status().to_string()).into_response();
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

/// A field cause built from parts.
pub fn cause(reason: &str, field: &str, message: impl Into<String>) -> FieldCause {
    FieldCause {
        reason: reason.into(),
        field: field.into(),
        message: message.into(),
    }
}

/// `Required value` cause.
pub fn required(field: &str) -> FieldCause {
    cause("FieldValueRequired", field, "Required value")
}

/// `Invalid value: "v": detail` cause.
pub fn invalid_value(field: &str, value: &Value, detail: &str) -> FieldCause {
    let v = match value {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    };
    let msg = if detail.is_empty() {
        format!("Invalid value: {v}")
    } else {
        format!("Invalid value: {v}: {detail}")
    };
    cause("FieldValueInvalid", field, msg)
}

/// `Forbidden: detail` cause.
pub fn forbidden(field: &str, detail: &str) -> FieldCause {
    cause("FieldValueForbidden", field, format!("Forbidden: {detail}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_message_joins_causes() {
        let s = Subject {
            kind: "Widget",
            group: "example.com",
            name: "w1",
        };
        let e = ApiError::invalid(
            &s,
            &[required("spec.size"), required("spec.size"), required("spec.x")],
        );
        assert_eq!(
            e.message,
            "Widget.example.com \"w1\" is invalid: [spec.size: Required value, spec.x: Required value]"
        );
        assert_eq!(e.to_status()["details"]["kind"], "Widget");
    }

    #[test]
    fn not_found_core_omits_group() {
        let e = ApiError::not_found(&Subject {
            kind: "configmaps",
            group: "",
            name: "a",
        });
        let s = e.to_status();
        assert_eq!(s["message"], "configmaps \"a\" not found");
        assert!(s["details"].get("group").is_none());
        assert_eq!(s["code"], 404);
    }
}
