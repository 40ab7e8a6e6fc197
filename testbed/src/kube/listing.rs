//! GET of collections: list (selectors, paging with continue tokens, resourceVersion rules) and
//! the start of watches (parameter validation, named-object watches).

use std::sync::Arc;

use axum::response::Response;
use base64::Engine;
use serde_json::Value;

use super::http::json_response;
use super::output::{Shape, render_list};
use super::query::Query;
use super::resources::ResourceDef;
use super::selector::{FieldSelector, LabelSelector};
use super::state::State;
use super::status::{ApiError, options_invalid};
use super::watch::{WatchReq, watch};

#[derive(serde::Serialize, serde::Deserialize)]
/// The continue token, shaped as the real server's (base64url JSON).
struct ContinueToken {
    v: String,
    rv: u64,
    start: String,
}

/// Answers a list request (selectors, paging, resourceVersion rules).
pub fn list(
    st: &State,
    def: &ResourceDef,
    ns: Option<&str>,
    q: &Query,
    shape: Shape,
) -> Result<Response, ApiError> {
    if q.get("sendInitialEvents").is_some() {
        return Err(options_invalid(
            "ListOptions",
            "sendInitialEvents",
            "Forbidden",
            "FieldValueForbidden",
            "sendInitialEvents is forbidden for list",
        ));
    }
    let rv_param = q.get("resourceVersion");
    let mut exact: Option<u64> = None;
    match (q.get("resourceVersionMatch"), rv_param) {
        (Some(_), None) => {
            return Err(options_invalid(
                "ListOptions",
                "resourceVersionMatch",
                "Forbidden",
                "FieldValueForbidden",
                "resourceVersionMatch is forbidden unless resourceVersion is provided",
            ));
        }
        (Some("Exact"), Some("0")) => {
            return Err(options_invalid(
                "ListOptions",
                "resourceVersionMatch",
                "Forbidden",
                "FieldValueForbidden",
                "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
            ));
        }
        (Some("Exact"), Some(rv)) => {
            let n: u64 = rv
                .parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv}")))?;
            if n > st.store.rv() {
                return Err(ApiError::new(
                    504,
                    "Timeout",
                    format!(
                        "Timeout: Too large resource version: {n}, current: {}",
                        st.store.rv()
                    ),
                ));
            }
            if !st.store.retained(n) {
                return Err(ApiError::expired(
                    "The resourceVersion for the provided list is too old.",
                ));
            }
            exact = Some(n);
        }
        (Some(m), _) if m != "NotOlderThan" && m != "Exact" => {
            return Err(options_invalid(
                "ListOptions",
                "resourceVersionMatch",
                &format!("Unsupported value: {m:?}: supported values: \"Exact\", \"NotOlderThan\""),
                "FieldValueNotSupported",
                "",
            )
            .strip_trailing());
        }
        _ => {}
    }
    let labels = LabelSelector::parse(q.get("labelSelector").unwrap_or_default())?;
    let fields = FieldSelector::parse(
        q.get("fieldSelector").unwrap_or_default(),
        &def.field_selector_list(),
    )?;
    let limit = q.number("limit")?.filter(|n| *n > 0).map(|n| n as usize);
    let (first_rv, after) = match q.get("continue") {
        None => (None, None),
        Some(tok) => {
            let bad = || {
                ApiError::bad_request(
                    "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
                )
            };
            let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(tok.trim_end_matches('='))
                .map_err(|_| bad())?;
            let t: ContinueToken = serde_json::from_slice(&raw).map_err(|_| bad())?;
            if !st.store.retained(t.rv) {
                return Err(ApiError::expired(
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
                ));
            }
            let start = t.start.trim_end_matches('\0').to_string();
            let key = if def.namespaced {
                let (a, b) = start.split_once('/').ok_or_else(bad)?;
                (a.to_string(), b.to_string())
            } else {
                (String::new(), start)
            };
            (Some(t.rv), Some(key))
        }
    };
    // Later pages (and Exact lists) are served from the snapshot at their revision.
    let snap = match first_rv.or(exact) {
        Some(at) => st
            .store
            .list_at(&def.storage, ns, after.as_ref(), at)
            .ok_or_else(|| ApiError::expired("The resourceVersion for the provided list is too old."))?,
        None => st.store.list(&def.storage, ns, after.as_ref()),
    };
    let mut items: Vec<&Value> = Vec::new();
    let mut more = false;
    for o in &snap.items {
        if labels.matches(o) && fields.matches(o) {
            if limit.is_some_and(|l| items.len() >= l) {
                more = true;
                break;
            }
            items.push(o.as_ref());
        }
    }
    let rv = first_rv.unwrap_or(snap.rv);
    let cont = if more {
        let last = items.last().map(|o| {
            let n = o
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let ns = o
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if def.namespaced {
                format!("{ns}/{n}\0")
            } else {
                format!("{n}\0")
            }
        });
        let tok = ContinueToken {
            v: "meta.k8s.io/v1".into(),
            rv,
            start: last.unwrap_or_default(),
        };
        Some(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(serde_json::to_vec(&tok).unwrap_or_default()),
        )
    } else {
        None
    };
    Ok(json_response(200, &render_list(def, &items, shape, rv, cont)))
}

/// Validates watch parameters and starts the stream (a URL naming an object pins its name).
pub fn start_watch(
    st: &Arc<State>,
    def: Arc<ResourceDef>,
    ns: Option<String>,
    name: Option<&str>,
    q: &Query,
    shape: Shape,
) -> Result<Response, ApiError> {
    let send_initial = q.flag("sendInitialEvents")?;
    let rvm = q.get("resourceVersionMatch");
    if q.get("sendInitialEvents").is_some() && rvm != Some("NotOlderThan") {
        return Err(options_invalid(
            "ListOptions",
            "sendInitialEvents",
            "Forbidden",
            "FieldValueForbidden",
            "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
        ));
    }
    if rvm.is_some() && q.get("sendInitialEvents").is_none() {
        return Err(options_invalid(
            "ListOptions",
            "resourceVersionMatch",
            "Forbidden",
            "FieldValueForbidden",
            "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
        ));
    }
    let labels = LabelSelector::parse(q.get("labelSelector").unwrap_or_default())?;
    let mut fields = FieldSelector::parse(
        q.get("fieldSelector").unwrap_or_default(),
        &def.field_selector_list(),
    )?;
    if let Some(n) = name {
        match fields.name() {
            Some(f) if f != n => {
                return Err(ApiError::bad_request(
                    "fieldSelector metadata.name doesn't match requested name",
                ));
            }
            Some(_) => {}
            None => fields.0.push(super::selector::FieldReq {
                field: "metadata.name".into(),
                value: n.into(),
                negated: false,
            }),
        }
    }
    let w = WatchReq {
        def,
        ns,
        labels,
        fields,
        rv: q.get("resourceVersion").map(String::from),
        send_initial,
        bookmarks: q.flag("allowWatchBookmarks")?,
        timeout: q.number("timeoutSeconds")?,
        shape,
    };
    Ok(watch(st.clone(), w))
}
