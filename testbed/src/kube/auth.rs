//! Authentication (bearer tokens, impersonation) and the per-request gate: test controls
//! (counters, latency, injected errors) followed by RBAC authorization.

use http::{HeaderMap, header};
use serde_json::{Value, json};

use super::rbac::{self, Attrs};
use super::state::{State, UserInfo};
use super::status::{ApiError, Subject};

/// Resolves the bearer token (none → `system:anonymous`; unknown → 401 Unauthorized).
pub fn authenticate(st: &State, headers: &HeaderMap) -> Result<UserInfo, ApiError> {
    match headers.get(header::AUTHORIZATION).and_then(|h| h.to_str().ok()) {
        None => Ok(UserInfo::anonymous()),
        Some(v) => {
            let token = v
                .strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
                .ok_or_else(ApiError::unauthorized)?;
            st.user_for(token.trim()).ok_or_else(ApiError::unauthorized)
        }
    }
}

/// `Impersonate-User`/`Impersonate-Group` (kubectl `--as`/`--as-group`): the requester needs the
/// `impersonate` verb on `users`/`serviceaccounts` and `groups`; the request then runs as the
/// impersonated identity.
pub fn impersonate(st: &State, user: UserInfo, headers: &HeaderMap) -> Result<UserInfo, ApiError> {
    let Some(target) = headers.get("impersonate-user").and_then(|h| h.to_str().ok()) else {
        if headers.contains_key("impersonate-group") {
            return Err(ApiError::new(
                500,
                "InternalError",
                "Internal error occurred: requested [{Group  system:authenticated    }] without impersonating a user",
            ));
        }
        return Ok(user);
    };
    let groups: Vec<&str> = headers
        .get_all("impersonate-group")
        .iter()
        .filter_map(|h| h.to_str().ok())
        .collect();
    let mut checks: Vec<Attrs> = Vec::new();
    match target
        .strip_prefix("system:serviceaccount:")
        .and_then(|r| r.split_once(':'))
    {
        Some((ns, name)) => checks.push(Attrs {
            verb: "impersonate".into(),
            resource: "serviceaccounts".into(),
            namespace: ns.into(),
            name: name.into(),
            ..Default::default()
        }),
        None => checks.push(Attrs {
            verb: "impersonate".into(),
            resource: "users".into(),
            name: target.into(),
            ..Default::default()
        }),
    }
    for g in &groups {
        checks.push(Attrs {
            verb: "impersonate".into(),
            resource: "groups".into(),
            name: (*g).into(),
            ..Default::default()
        });
    }
    for a in &checks {
        if !rbac::authorize(st, &user, a) {
            let subject = Subject {
                kind: &a.resource,
                group: "",
                name: &a.name,
            };
            return Err(ApiError::forbidden(&subject, &rbac::denial(&user, a)));
        }
    }
    Ok(UserInfo::new(target, &groups))
}

/// Test controls (counters, latency, injected errors) then RBAC for one request.
pub async fn gate(st: &State, user: &UserInfo, attrs: &Attrs, subject: Subject<'_>) -> Result<(), ApiError> {
    let res_key = if attrs.resource.is_empty() {
        attrs.path.clone()
    } else if attrs.subresource.is_empty() {
        attrs.resource.clone()
    } else {
        format!("{}/{}", attrs.resource, attrs.subresource)
    };
    let (latency, code) = st.controls.on_request(&attrs.verb, &res_key, &user.name);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if let Some(code) = code {
        let (reason, msg) = match code {
            429 => ("TooManyRequests", "Too many requests: injected by test controls"),
            503 => ("ServiceUnavailable", "injected by test controls"),
            504 => ("Timeout", "Timeout: injected by test controls"),
            409 => ("Conflict", "injected conflict"),
            _ => (
                "InternalError",
                "Internal error occurred: injected by test controls",
            ),
        };
        let mut e = ApiError::new(code, reason, msg);
        if code == 429 {
            e.retry_after = Some(1);
            e.details = Some(json!({"retryAfterSeconds": 1}));
        }
        return Err(e);
    }
    authorize(st, user, attrs, subject)?;
    // Admission runs after authorization.
    if let Some(denial) = st.controls.admission(&attrs.verb, &res_key, &attrs.namespace) {
        return Err(denial.to_error());
    }
    Ok(())
}

/// RBAC alone, for a second permission one request needs (an apply that creates needs `create`
/// besides `patch`): the request was counted once already, by [`gate`].
pub fn authorize(st: &State, user: &UserInfo, attrs: &Attrs, subject: Subject<'_>) -> Result<(), ApiError> {
    if !rbac::authorize(st, user, attrs) {
        if attrs.resource.is_empty() {
            return Err(ApiError::new(
                403,
                "Forbidden",
                format!("forbidden: {}", rbac::denial(user, attrs)),
            )
            .with_causes(Value::Null)
            .strip_details());
        }
        return Err(ApiError::forbidden(&subject, &rbac::denial(user, attrs)));
    }
    Ok(())
}
