//! HTTP layer: routing of discovery and resource paths, authentication, RBAC, test controls,
//! and dispatch of every verb to the store and write pipeline.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, Method, header};
use serde_json::{Value, json};

use super::auth;
use super::deletion::{self, DeleteOpts, Deleted};
use super::discovery;
use super::listing;
use super::objects::{self, WriteOpts, subj};
use super::openapi;
use super::output::{Shape, negotiate, render_list, render_one};
use super::patching::{self, PatchMode};
use super::query::Query;
use super::rbac::{self, Attrs};
use super::resources::ResourceDef;
use super::selector::{FieldSelector, LabelSelector};
use super::state::{State, UserInfo};
use super::status::{ApiError, Subject, options_invalid};

const MAX_BODY: usize = 16 * 1024 * 1024;

pub(crate) fn json_response(code: u16, v: &Value) -> Response {
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(v.to_string()))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

fn text(code: u16, body: &'static str) -> Response {
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Body::from(body))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

/// A parsed resource path.
struct Target {
    group: String,
    version: String,
    plural: String,
    ns: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

fn parse_resource_path(path: &str) -> Option<Target> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => (String::new(), v.to_string(), rest),
        ["apis", g, v, rest @ ..] => (g.to_string(), v.to_string(), rest),
        _ => return None,
    };
    let core = group.is_empty();
    let (ns, rest) = match rest {
        ["namespaces", n, tail @ ..]
            if !tail.is_empty()
                && !(core && tail.len() == 1 && (tail[0] == "status" || tail[0] == "finalize")) =>
        {
            (Some(n.to_string()), tail)
        }
        _ => (None, rest),
    };
    let (plural, name, sub) = match rest {
        [p] => (p, None, None),
        [p, n] => (p, Some(n.to_string()), None),
        [p, n, s] => (p, Some(n.to_string()), Some(s.to_string())),
        _ => return None,
    };
    if plural.is_empty() || name.as_deref() == Some("") {
        return None;
    }
    Some(Target {
        group,
        version,
        plural: plural.to_string(),
        ns,
        name,
        sub,
    })
}

fn verb_of(method: &Method, t: &Target, q: &Query) -> Result<&'static str, ApiError> {
    Ok(match (method.as_str(), t.name.is_some()) {
        ("GET", _) if q.flag("watch")? => "watch",
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("POST", false) => "create",
        ("POST", true) if t.sub.as_deref() == Some("token") && t.plural == "serviceaccounts" => "create",
        ("PUT", true) => "update",
        ("PATCH", true) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        (m, _) => return Err(ApiError::method_not_allowed(m, &t.plural)),
    })
}

/// The single entry point for every request.
pub async fn handle(st: Arc<State>, addr: String, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return ApiError::new(413, "RequestEntityTooLarge", "the request body is too large")
                .into_response();
        }
    };
    let user = match auth::authenticate(&st, &parts.headers)
        .and_then(|u| auth::impersonate(&st, u, &parts.headers))
    {
        Ok(u) => u,
        Err(e) => return e.into_response(),
    };
    let path = parts.uri.path().to_string();
    let q = Query::parse(parts.uri.query());
    match route(&st, &addr, &user, &parts.method, &path, &q, &parts.headers, &body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

#[allow(clippy::too_many_arguments)]
async fn route(
    st: &Arc<State>,
    addr: &str,
    user: &UserInfo,
    method: &Method,
    path: &str,
    q: &Query,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let nonres = |p: &str| Attrs {
        verb: method.as_str().to_lowercase(),
        path: p.to_string(),
        ..Default::default()
    };
    let trimmed = path.trim_end_matches('/');
    let static_doc: Option<Value> = match trimmed {
        "/version" => Some(discovery::version()),
        "/api" => Some(discovery::api_versions(addr)),
        "/apis" => Some(discovery::api_groups(st)),
        _ => None,
    };
    if let Some(doc) = static_doc {
        auth::gate(st, user, &nonres(trimmed), Subject::default()).await?;
        return Ok(json_response(200, &doc));
    }
    match trimmed {
        "/healthz" | "/livez" | "/readyz" => {
            auth::gate(st, user, &nonres(trimmed), Subject::default()).await?;
            return Ok(text(200, "ok"));
        }
        "/openapi/v2" => {
            auth::gate(st, user, &nonres(trimmed), Subject::default()).await?;
            return Ok(Response::builder()
                .status(200)
                .header(
                    header::CONTENT_TYPE,
                    "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
                )
                .body(Body::from(discovery::OPENAPI_V2_PB))
                .unwrap_or_else(|_| Response::new(Body::empty())));
        }
        "/openapi/v3" => {
            auth::gate(st, user, &nonres(trimmed), Subject::default()).await?;
            return Ok(json_response(200, &openapi::index(st)));
        }
        _ => {}
    }
    if let Some(rest) = trimmed.strip_prefix("/openapi/v3/") {
        auth::gate(st, user, &nonres(trimmed), Subject::default()).await?;
        let doc = match rest.split('/').collect::<Vec<_>>().as_slice() {
            ["apis", g, v] => openapi::group_version(st, g, v),
            _ => None,
        };
        return doc.map(|d| json_response(200, &d)).ok_or_else(ApiError::no_route);
    }
    let segs: Vec<&str> = trimmed.trim_start_matches('/').split('/').collect();
    let gv = match segs.as_slice() {
        ["api", v] => Some(("", *v)),
        ["apis", g, v] => Some((*g, *v)),
        ["apis", g] => {
            auth::gate(st, user, &nonres(trimmed), Subject::default()).await?;
            let groups = discovery::api_groups(st);
            let found = groups["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|x| x["name"] == *g)
                .cloned();
            return match found {
                Some(mut grp) => {
                    grp["kind"] = json!("APIGroup");
                    grp["apiVersion"] = json!("v1");
                    Ok(json_response(200, &grp))
                }
                None => Err(ApiError::no_route()),
            };
        }
        _ => None,
    };
    if let Some((g, v)) = gv {
        auth::gate(st, user, &nonres(trimmed), Subject::default()).await?;
        return discovery::resource_list(st, g, v)
            .map(|d| json_response(200, &d))
            .ok_or_else(ApiError::no_route);
    }
    let t = parse_resource_path(path).ok_or_else(ApiError::no_route)?;
    let reviews = ["selfsubjectaccessreviews", "selfsubjectrulesreviews"];
    if t.group == "authorization.k8s.io" && reviews.contains(&t.plural.as_str()) && method == Method::POST {
        let attrs = Attrs {
            verb: "create".into(),
            group: t.group.clone(),
            resource: t.plural.clone(),
            ..Default::default()
        };
        auth::gate(
            st,
            user,
            &attrs,
            Subject {
                kind: &t.plural,
                group: &t.group,
                name: "",
            },
        )
        .await?;
        if t.plural == "selfsubjectrulesreviews" {
            return rbac::rules_review(st, user, headers, body);
        }
        return rbac::self_review(st, user, headers, body);
    }
    let def = st
        .registry
        .find(&t.group, &t.version, &t.plural)
        .ok_or_else(ApiError::no_route)?;
    let verb = verb_of(method, &t, q)?;
    if def.namespaced && t.ns.is_none() && !matches!(verb, "list" | "watch") {
        return Err(ApiError::no_route());
    }
    if !def.namespaced && t.ns.is_some() {
        return Err(ApiError::no_route());
    }
    if let Some(s) = &t.sub {
        let has_scale = def.crd.as_ref().is_some_and(|c| c.scale.is_some());
        let token = s == "token" && def.kind == "ServiceAccount" && def.group.is_empty() && verb == "create";
        let ok = (s == "status" && def.status_subresource)
            || (s == "scale" && has_scale)
            || (s == "finalize" && def.kind == "Namespace" && def.group.is_empty());
        if !token && (!ok || matches!(verb, "list" | "watch" | "create" | "delete" | "deletecollection")) {
            return Err(ApiError::no_route());
        }
    }
    let name = t.name.clone().unwrap_or_default();
    // list/watch pinned to one name by `fieldSelector=metadata.name=x` authorize as that name
    // (so `resourceNames` rules can allow them), as the real RBAC authorizer does.
    let pinned = match (verb, name.is_empty()) {
        ("list" | "watch", true) => q
            .get("fieldSelector")
            .and_then(|f| FieldSelector::parse(f, &def.field_selector_list()).ok())
            .and_then(|f| f.name().map(String::from))
            .unwrap_or_default(),
        _ => name.clone(),
    };
    let attrs = Attrs {
        verb: verb.into(),
        group: def.group.clone(),
        resource: def.plural.clone(),
        subresource: t.sub.clone().unwrap_or_default(),
        namespace: t.ns.clone().unwrap_or_default(),
        name: pinned,
        path: String::new(),
    };
    auth::gate(st, user, &attrs, subj(&def, &name)).await?;
    let ns = t.ns.clone().unwrap_or_default();
    let accept = headers.get(header::ACCEPT).and_then(|h| h.to_str().ok());
    let shape = negotiate(accept, q.get("includeObject"))?;
    let manager = q.get("fieldManager").map(String::from).unwrap_or_else(|| {
        headers
            .get(header::USER_AGENT)
            .and_then(|h| h.to_str().ok())
            .and_then(|ua| ua.split('/').next())
            .filter(|s| !s.is_empty())
            .unwrap_or("unknown")
            .to_string()
    });
    if manager.len() > 128 {
        return Err(options_invalid(
            "PatchOptions",
            "fieldManager",
            "Too long",
            "FieldValueTooLong",
            "must have at most 128 characters",
        ));
    }
    let wo = WriteOpts {
        manager,
        dry_run: q.get("dryRun") == Some("All"),
        strict: q.get("fieldValidation") == Some("Strict"),
        warnings: (q.get("fieldValidation") != Some("Ignore")).then(Arc::default),
    };
    let sub = t.sub.as_deref();
    let mut resp = match verb {
        "get" | "update" | "patch" if sub == Some("scale") => {
            let ct = headers
                .get(header::CONTENT_TYPE)
                .and_then(|h| h.to_str().ok())
                .unwrap_or_default();
            let res = super::scale::handle(st, &def, &ns, &name, verb, ct, body, &wo)?;
            Ok(json_response(200, &res))
        }
        "get" => {
            let obj = st
                .store
                .get(&def.storage, &ns, &name)
                .ok_or_else(|| ApiError::not_found(&subj(&def, &name)))?;
            Ok(json_response(200, &render_one(&def, &obj, shape)))
        }
        "list" => listing::list(st, &def, t.ns.as_deref(), q, shape),
        "watch" => listing::start_watch(st, def.clone(), t.ns.clone(), t.name.as_deref(), q, shape),
        "create" if sub == Some("token") => {
            let req = parse_body(headers, body)?;
            let res = super::tokens::token_request(st, &ns, &name, req)?;
            Ok(json_response(201, &res))
        }
        "create" => {
            let obj = parse_body(headers, body)?;
            rbac::check_escalation(st, user, &def.kind, &ns, &obj)?;
            if def.is_custom() && creating_blocked(st, &def) {
                return Err(ApiError::method_not_allowed("create", &def.plural));
            }
            let res = objects::create(st, &def, &ns, obj, &wo)?;
            Ok(json_response(201, &render_one(&def, &res, shape)))
        }
        "update" => {
            let obj = parse_body(headers, body)?;
            rbac::check_escalation(st, user, &def.kind, &ns, &obj)?;
            let res = objects::update(st, &def, &ns, &name, obj, sub, &wo)?;
            Ok(json_response(200, &render_one(&def, &res, shape)))
        }
        "patch" => {
            let ct = headers
                .get(header::CONTENT_TYPE)
                .and_then(|h| h.to_str().ok())
                .unwrap_or_default();
            let mode = patching::patch_mode(ct, &def)?;
            if mode == PatchMode::Apply && q.get("fieldManager").is_none() {
                return Err(options_invalid(
                    "PatchOptions",
                    "fieldManager",
                    "Required value",
                    "FieldValueRequired",
                    "is required for apply patch",
                ));
            }
            if mode == PatchMode::Apply && st.store.get(&def.storage, &ns, &name).is_none() && sub.is_none() {
                let c = Attrs {
                    verb: "create".into(),
                    ..attrs.clone()
                };
                auth::authorize(st, user, &c, subj(&def, &name))?;
            }
            if def.group == "rbac.authorization.k8s.io" {
                let dry = WriteOpts {
                    dry_run: true,
                    ..wo.clone()
                };
                let (would, _) =
                    patching::patch(st, &def, &ns, &name, body, mode, sub, q.flag("force")?, &dry)?;
                rbac::check_escalation(st, user, &def.kind, &ns, &would)?;
            }
            let (res, created) =
                patching::patch(st, &def, &ns, &name, body, mode, sub, q.flag("force")?, &wo)?;
            Ok(json_response(
                if created { 201 } else { 200 },
                &render_one(&def, &res, shape),
            ))
        }
        "delete" => {
            let d = delete_opts(body, q)?;
            match deletion::delete(st, &def, &ns, &name, &d)? {
                Deleted::Gone(obj) if !def.delete_returns_object => {
                    let mut details = json!({"name": name, "kind": def.plural, "uid": obj.pointer("/metadata/uid").cloned().unwrap_or(Value::Null)});
                    if !def.group.is_empty() {
                        details["group"] = json!(def.group);
                    }
                    Ok(json_response(
                        200,
                        &json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success","details":details}),
                    ))
                }
                Deleted::Pending(obj) if d.orphan_false => {
                    Ok(json_response(202, &render_one(&def, &obj, shape)))
                }
                Deleted::Gone(obj) | Deleted::Pending(obj) => {
                    Ok(json_response(200, &render_one(&def, &obj, shape)))
                }
            }
        }
        "deletecollection" => {
            let d = delete_opts(body, q)?;
            let labels = LabelSelector::parse(q.get("labelSelector").unwrap_or_default())?;
            let fields = FieldSelector::parse(
                q.get("fieldSelector").unwrap_or_default(),
                &def.field_selector_list(),
            )?;
            let snap = st.store.list(&def.storage, t.ns.as_deref(), None);
            let items: Vec<&Value> = snap
                .items
                .iter()
                .map(|a| a.as_ref())
                .filter(|o| labels.matches(o) && fields.matches(o))
                .collect();
            for o in &items {
                let n = o
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let _ = deletion::delete(st, &def, &ns, n, &d);
            }
            Ok(json_response(
                200,
                &render_list(&def, &items, Shape::Full, st.store.rv(), None),
            ))
        }
        _ => Err(ApiError::no_route()),
    }?;
    if let Some(w) = wo
        .warnings
        .as_ref()
        .and_then(|w| w.lock().ok().map(|w| w.clone()))
    {
        for text in w {
            let v = format!("299 - {}", serde_json::Value::String(text));
            if let Ok(hv) = http::HeaderValue::from_str(&v) {
                resp.headers_mut().append(header::WARNING, hv);
            }
        }
    }
    Ok(resp)
}

fn creating_blocked(st: &State, def: &ResourceDef) -> bool {
    let crd = def.crd.as_ref().map(|c| c.crd_name.clone()).unwrap_or_default();
    st.store
        .get("customresourcedefinitions", "", &crd)
        .is_some_and(|c| c.pointer("/metadata/deletionTimestamp").is_some())
}

/// Decodes a create/update body by Content-Type (JSON or YAML; anything else, e.g. protobuf, is 415
/// so client-go falls back to JSON).
pub(crate) fn parse_body(headers: &HeaderMap, body: &[u8]) -> Result<Value, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("application/json");
    match ct.split(';').next().unwrap_or_default().trim() {
        "application/json" | "" | "*/*" => parse_json(body),
        "application/yaml" => {
            let v: Value = serde_yaml_ng::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding request body: {e}")))?;
            if !v.is_object() {
                return Err(ApiError::bad_request("the request body must be an object"));
            }
            Ok(v)
        }
        "application/vnd.kubernetes.protobuf" => {
            super::protobuf::decode(body).map_err(|e| ApiError::bad_request(e.to_string()))
        }
        _ => Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf",
        )),
    }
}

pub(crate) fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding request body: {e}")))?;
    if !v.is_object() {
        return Err(ApiError::bad_request("the request body must be a JSON object"));
    }
    Ok(v)
}

fn delete_opts(body: &[u8], q: &Query) -> Result<DeleteOpts, ApiError> {
    let b: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding DeleteOptions: {e}")))?
    };
    let mut policy = b["propagationPolicy"]
        .as_str()
        .map(String::from)
        .or_else(|| q.get("propagationPolicy").map(String::from));
    if policy.is_none()
        && let Some(orphan) = b["orphanDependents"].as_bool()
    {
        policy = Some(if orphan { "Orphan" } else { "Background" }.to_string());
    }
    if let Some(p) = &policy
        && !matches!(p.as_str(), "Orphan" | "Background" | "Foreground")
    {
        return Err(options_invalid(
            "DeleteOptions",
            "propagationPolicy",
            &format!(
                "Unsupported value: {p:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""
            ),
            "FieldValueNotSupported",
            "",
        )
        .strip_trailing());
    }
    let dry = b["dryRun"]
        .as_array()
        .is_some_and(|a| a.iter().any(|x| x == "All"))
        || q.get("dryRun") == Some("All");
    Ok(DeleteOpts {
        orphan_false: b["orphanDependents"].as_bool() == Some(false),
        policy,
        uid: b
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(String::from),
        rv: b
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(String::from),
        dry_run: dry,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let t = parse_resource_path("/api/v1/namespaces/x/configmaps/a").unwrap();
        assert_eq!(
            (t.plural.as_str(), t.ns.as_deref(), t.name.as_deref()),
            ("configmaps", Some("x"), Some("a"))
        );
        let t = parse_resource_path("/api/v1/namespaces/x/status").unwrap();
        assert_eq!(
            (t.plural.as_str(), t.name.as_deref(), t.sub.as_deref()),
            ("namespaces", Some("x"), Some("status"))
        );
        let t = parse_resource_path("/api/v1/namespaces/x").unwrap();
        assert_eq!((t.plural.as_str(), t.name.as_deref()), ("namespaces", Some("x")));
        let t = parse_resource_path("/apis/example.com/v1/widgets").unwrap();
        assert_eq!(
            (t.group.as_str(), t.plural.as_str(), t.ns),
            ("example.com", "widgets", None)
        );
        let t = parse_resource_path("/apis/example.com/v1/namespaces/a/widgets/w/status").unwrap();
        assert_eq!(t.sub.as_deref(), Some("status"));
    }
}
