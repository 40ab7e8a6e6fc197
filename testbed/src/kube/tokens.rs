//! The ServiceAccount `token` subresource (TokenRequest, `kubectl create token`): mints a bearer
//! token that authenticates as `system:serviceaccount:<ns>:<name>` on this server.

use serde_json::{Value, json};

use super::state::{State, UserInfo};
use super::status::{ApiError, Subject};

/// Answers `POST .../serviceaccounts/{name}/token`.
pub fn token_request(st: &State, ns: &str, name: &str, req: Value) -> Result<Value, ApiError> {
    if st.store.get("serviceaccounts", ns, name).is_none() {
        return Err(ApiError::not_found(&Subject {
            kind: "serviceaccounts",
            group: "",
            name,
        }));
    }
    let secs = req
        .pointer("/spec/expirationSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(3600);
    if secs < 600 {
        let c = super::status::invalid_value(
            "spec.expirationSeconds",
            &json!(secs),
            "may not specify a duration less than 10 minutes",
        );
        return Err(ApiError::invalid(
            &Subject {
                kind: "TokenRequest",
                group: "authentication.k8s.io",
                name,
            },
            &[c],
        ));
    }
    let token = format!("sa-{}", uuid::Uuid::new_v4().simple());
    if let Ok(mut t) = st.tokens.write() {
        t.insert(
            token.clone(),
            UserInfo::new(&format!("system:serviceaccount:{ns}:{name}"), &[]),
        );
    }
    let expires = (chrono::Utc::now() + chrono::Duration::seconds(secs))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let audiences = req
        .pointer("/spec/audiences")
        .cloned()
        .filter(|a| a.as_array().is_some_and(|a| !a.is_empty()));
    Ok(
        json!({"kind":"TokenRequest","apiVersion":"authentication.k8s.io/v1",
        "metadata":{"name":name,"namespace":ns,"creationTimestamp":null},
        "spec":{"audiences": audiences.unwrap_or_else(|| json!(["https://kubernetes.default.svc.cluster.local"])),
            "expirationSeconds": secs, "boundObjectRef": null},
        "status":{"token": token, "expirationTimestamp": expires}}),
    )
}
