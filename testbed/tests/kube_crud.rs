//! CRUD conformance: discovery, metadata, create/get/list (selectors, paging), optimistic
//! concurrency, no-op writes, Secret validation, merge and JSON patches, DELETE responses.

mod common;

use common::{Raw, start};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

fn cm(name: &str, labels: serde_json::Value) -> ConfigMap {
    serde_json::from_value(json!({"metadata":{"name":name,"labels":labels},"data":{"k":"v"}})).expect("cm")
}

#[tokio::test]
async fn discovery_version_and_health() {
    let h = start().await;
    let client = h.admin_client().await.expect("client");
    let v = client.apiserver_version().await.expect("version");
    assert_eq!(v.git_version, "v1.33.0");
    common::install_crd(&h, "Namespaced").await;
    let d = kube::Discovery::new(client).run().await.expect("discovery");
    let mut found = Vec::new();
    for g in d.groups() {
        for (ar, caps) in g.recommended_resources() {
            found.push(format!(
                "{}/{}:{}",
                ar.group,
                ar.plural,
                caps.scope == kube::discovery::Scope::Namespaced
            ));
        }
    }
    for want in [
        "/configmaps:true",
        "/namespaces:false",
        "coordination.k8s.io/leases:true",
        "example.com/widgets:true",
        "rbac.authorization.k8s.io/clusterroles:false",
        "events.k8s.io/events:true",
    ] {
        assert!(found.iter().any(|f| f == want), "{want} not in {found:?}");
    }
    let raw = Raw::new(&h, h.admin_token());
    for p in ["/livez", "/readyz", "/healthz"] {
        assert_eq!(raw.get(p).await, (200, json!("ok")));
    }
    let (code, body) = raw.get("/apis/nope.example.com/v1/things").await;
    assert_eq!((code, body["reason"].as_str()), (404, Some("NotFound")));
    assert_eq!(
        body["message"],
        "the server could not find the requested resource"
    );
}

#[tokio::test]
async fn create_get_list_with_selectors_and_paging() {
    let h = start().await;
    let client = h.admin_client().await.expect("client");
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for i in 0..5 {
        let env = if i % 2 == 0 { "dev" } else { "prod" };
        api.create(
            &PostParams::default(),
            &cm(&format!("c{i}"), json!({"env": env, "n": i.to_string()})),
        )
        .await
        .expect("create");
    }
    let c0 = api.get("c0").await.expect("get");
    let meta = &c0.metadata;
    assert!(meta.uid.as_ref().is_some_and(|u| u.len() == 36));
    assert!(meta.creation_timestamp.is_some());
    assert!(
        meta.resource_version
            .as_ref()
            .is_some_and(|r| r.parse::<u64>().is_ok())
    );
    assert!(
        meta.managed_fields.as_ref().is_some_and(|m| !m.is_empty()),
        "managedFields recorded on create"
    );

    let dev = api
        .list(&ListParams::default().labels("env=dev"))
        .await
        .expect("list");
    assert_eq!(dev.items.len(), 3);
    let notin = api
        .list(&ListParams::default().labels("env notin (dev),n>2"))
        .await
        .expect("list");
    assert_eq!(
        notin
            .items
            .iter()
            .map(|c| c.metadata.name.clone().unwrap_or_default())
            .collect::<Vec<_>>(),
        ["c3"]
    );
    let by_name = api
        .list(&ListParams::default().fields("metadata.name=c4"))
        .await
        .expect("list");
    assert_eq!(by_name.items.len(), 1);

    // Paging: 2 per page, continue tokens, every page reports the first page's RV.
    let mut names = Vec::new();
    let mut lp = ListParams::default().limit(2);
    let mut rvs = Vec::new();
    loop {
        let page = api.list(&lp).await.expect("page");
        rvs.push(page.metadata.resource_version.clone().expect("rv"));
        names.extend(
            page.items
                .iter()
                .map(|c| c.metadata.name.clone().unwrap_or_default()),
        );
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(c) => lp = lp.continue_token(&c),
            None => break,
        }
    }
    assert_eq!(names, ["c0", "c1", "c2", "c3", "c4"]);
    assert!(rvs.windows(2).all(|w| w[0] == w[1]), "{rvs:?}");

    // Errors: AlreadyExists, bad selector, unsupported field, bad continue, missing namespace.
    let err = api
        .create(&PostParams::default(), &cm("c0", json!({})))
        .await
        .expect_err("dup");
    let kube::Error::Api(s) = err else {
        panic!("api error")
    };
    assert_eq!((s.code, s.reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(s.message, "configmaps \"c0\" already exists");
    let raw = Raw::new(&h, h.admin_token());
    let (code, body) = raw
        .get("/api/v1/namespaces/default/configmaps?labelSelector=a%20in%20x")
        .await;
    assert_eq!(code, 400, "{body}");
    let (code, body) = raw
        .get("/api/v1/namespaces/default/configmaps?fieldSelector=data.k%3Dv")
        .await;
    assert_eq!(
        (code, body["message"].as_str()),
        (400, Some("field label not supported: data.k"))
    );
    let (code, _) = raw
        .get("/api/v1/namespaces/default/configmaps?limit=1&continue=garbage")
        .await;
    assert_eq!(code, 400);
    let (code, body) = raw.get("/api/v1/namespaces/ghost/configmaps").await;
    assert_eq!((code, body["items"].as_array().map(Vec::len)), (200, Some(0)));
    let (code, body) = raw
        .post(
            "/api/v1/namespaces/ghost/configmaps",
            json!({"metadata":{"name":"x"}}),
        )
        .await;
    assert_eq!(
        (code, body["message"].as_str()),
        (404, Some("namespaces \"ghost\" not found"))
    );
    let (code, body) = raw
        .get("/api/v1/configmaps?resourceVersionMatch=NotOlderThan")
        .await;
    assert_eq!(
        (code, body["details"]["kind"].as_str()),
        (422, Some("ListOptions"))
    );

    // generateName and invalid names.
    let (code, body) = raw
        .post(
            "/api/v1/namespaces/default/configmaps",
            json!({"metadata":{"generateName":"gen-"}}),
        )
        .await;
    assert_eq!(code, 201);
    let n = body["metadata"]["name"].as_str().expect("name");
    assert!(n.starts_with("gen-") && n.len() == 9, "{n}");
    let (code, body) = raw
        .post(
            "/api/v1/namespaces/default/configmaps",
            json!({"metadata":{"name":"Bad_Name"}}),
        )
        .await;
    assert_eq!(
        (code, body["reason"].as_str(), body["details"]["kind"].as_str()),
        (422, Some("Invalid"), Some("ConfigMap"))
    );
    assert_eq!(body["details"]["causes"][0]["field"], "metadata.name");
}

#[tokio::test]
async fn optimistic_concurrency_noop_writes_and_delete_status() {
    let h = start().await;
    let client = h.admin_client().await.expect("client");
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let created = api
        .create(&PostParams::default(), &cm("a", json!({})))
        .await
        .expect("create");
    let mut changed = created.clone();
    changed.data = Some([("k".to_string(), "v2".to_string())].into());
    let updated = api
        .replace("a", &PostParams::default(), &changed)
        .await
        .expect("replace");
    assert_ne!(
        updated.metadata.resource_version,
        created.metadata.resource_version
    );
    // Stale RV → 409 Conflict.
    let err = api
        .replace("a", &PostParams::default(), &changed)
        .await
        .expect_err("stale");
    let kube::Error::Api(s) = err else {
        panic!("api error")
    };
    assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));
    assert!(
        s.message.contains("the object has been modified"),
        "{}",
        s.message
    );
    // No-op update and patch: RV unchanged.
    let same = api
        .replace("a", &PostParams::default(), &updated)
        .await
        .expect("noop");
    assert_eq!(same.metadata.resource_version, updated.metadata.resource_version);
    let rv_before = h.resource_version();
    let p = api
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"data":{"k":"v2"}})),
        )
        .await
        .expect("noop patch");
    assert_eq!(p.metadata.resource_version, updated.metadata.resource_version);
    assert_eq!(h.resource_version(), rv_before);
    // Merge patch with null deletes; JSON patch with test.
    let p = api
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"data":{"k":null,"n":"1"}})),
        )
        .await
        .expect("merge");
    assert_eq!(p.data, Some([("n".to_string(), "1".to_string())].into()));
    let raw = Raw::new(&h, h.admin_token());
    let jp = "application/json-patch+json";
    let url = "/api/v1/namespaces/default/configmaps/a";
    let (code, p) = raw
        .patch(
            url,
            jp,
            json!([{"op":"test","path":"/data/n","value":"1"},{"op":"replace","path":"/data/n","value":"2"}]),
        )
        .await;
    assert_eq!((code, p["data"]["n"].as_str()), (200, Some("2")));
    let (code, s) = raw
        .patch(url, jp, json!([{"op":"test","path":"/data/n","value":"9"}]))
        .await;
    assert_eq!((code, s["reason"].as_str()), (422, Some("Invalid")));
    assert_eq!(
        s["message"],
        "the server rejected our request due to an error in our request"
    );
    let (code, _) = raw
        .patch(url, "application/json-patch+json", json!({"not":"a list"}))
        .await;
    assert_eq!(code, 400);
    let (code, s) = raw.patch(url, "text/plain", json!({})).await;
    assert_eq!((code, s["reason"].as_str()), (415, Some("UnsupportedMediaType")));
    // Strategic merge patch works on built-ins.
    let p = api
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Strategic(json!({"metadata":{"labels":{"x":"y"}}})),
        )
        .await
        .expect("smp");
    assert_eq!(
        p.metadata.labels.and_then(|l| l.get("x").cloned()).as_deref(),
        Some("y")
    );
    // Delete returns a Success Status with the uid.
    let res = api.delete("a", &DeleteParams::default()).await.expect("delete");
    let status = res.right().expect("status");
    assert_eq!(
        status.details.expect("details").uid,
        created.metadata.uid.clone().expect("uid")
    );
    let err = api.delete("a", &DeleteParams::default()).await.expect_err("gone");
    assert!(matches!(err, kube::Error::Api(s) if s.code == 404));
}

#[tokio::test]
async fn secret_validation() {
    let h = start().await;
    let raw = Raw::new(&h, h.admin_token());
    let post = |body: serde_json::Value| {
        let raw = &raw;
        async move { raw.post("/api/v1/namespaces/default/secrets", body).await }
    };
    let (code, body) = post(json!({"metadata":{"name":"d1"},"type":"kubernetes.io/dockerconfigjson","data":{".dockerconfigjson":"bm90IGpzb24="}})).await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(body["details"]["causes"][0]["field"], "data[.dockerconfigjson]");
    let (code, body) =
        post(json!({"metadata":{"name":"d2"},"type":"kubernetes.io/dockerconfigjson","data":{}})).await;
    assert_eq!(
        (code, body["details"]["causes"][0]["reason"].as_str()),
        (422, Some("FieldValueRequired"))
    );
    let (code, _) = post(json!({"metadata":{"name":"d3"},"type":"kubernetes.io/dockerconfigjson","stringData":{".dockerconfigjson":"{\"auths\":{}}"}})).await;
    assert_eq!(code, 201);
    let (code, body) =
        post(json!({"metadata":{"name":"b1"},"type":"kubernetes.io/basic-auth","data":{"other":"eA=="}}))
            .await;
    assert_eq!(code, 422, "{body}");
    let fields: Vec<&str> = body["details"]["causes"]
        .as_array()
        .expect("causes")
        .iter()
        .filter_map(|c| c["field"].as_str())
        .collect();
    assert_eq!(fields, ["data[username]", "data[password]"]);
    let (code, _) = post(json!({"metadata":{"name":"b2"},"type":"kubernetes.io/basic-auth","stringData":{"username":"u","password":"p"}})).await;
    assert_eq!(code, 201);
    let (code, body) = post(json!({"metadata":{"name":"x1"},"data":{"k":"not base64!"}})).await;
    assert_eq!(code, 400, "{body}");
    let big = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        vec![b'a'; 1024 * 1024 + 1],
    );
    let (code, body) = post(json!({"metadata":{"name":"big"},"data":{"k":big}})).await;
    assert_eq!(
        (code, body["details"]["causes"][0]["reason"].as_str()),
        (422, Some("FieldValueTooLong"))
    );
    // stringData is merged into data and never returned; type defaults to Opaque.
    let client = h.admin_client().await.expect("client");
    let api: Api<Secret> = Api::namespaced(client, "default");
    let s: Secret =
        serde_json::from_value(json!({"metadata":{"name":"imm"},"immutable":true,"stringData":{"a":"1"}}))
            .expect("s");
    let s = api.create(&PostParams::default(), &s).await.expect("create");
    assert_eq!(s.type_.as_deref(), Some("Opaque"));
    assert!(s.string_data.is_none());
    assert_eq!(
        s.data.as_ref().and_then(|d| d.get("a")).map(|b| b.0.clone()),
        Some(b"1".to_vec())
    );
    let err = api
        .patch(
            "imm",
            &PatchParams::default(),
            &Patch::Merge(json!({"data":{"a":"Mg=="}})),
        )
        .await
        .expect_err("immutable");
    let kube::Error::Api(st) = err else {
        panic!("api error")
    };
    assert_eq!(st.code, 422);
    assert!(
        st.message.contains("field is immutable when `immutable` is set"),
        "{}",
        st.message
    );
    api.delete("imm", &DeleteParams::default())
        .await
        .expect("immutable secrets can be deleted");
}

#[tokio::test]
async fn unknown_fields_dry_run_and_deletecollection() {
    let h = start().await;
    let raw = Raw::new(&h, h.admin_token());
    let cms = "/api/v1/namespaces/default/configmaps";
    // Unknown top-level fields of built-ins: dropped, or 400 under fieldValidation=Strict.
    let (code, e) = raw
        .post(
            &format!("{cms}?fieldValidation=Strict"),
            json!({"metadata":{"name":"u"},"dta":{"a":"b"}}),
        )
        .await;
    assert_eq!(code, 400, "{e}");
    assert!(
        e["message"]
            .as_str()
            .expect("m")
            .contains("unknown field \"dta\""),
        "{e}"
    );
    let resp = raw
        .http
        .post(format!("{}{cms}", h.url()))
        .bearer_auth(h.admin_token())
        .header("content-type", "application/json")
        .body(json!({"metadata":{"name":"u"},"dta":{"a":"b"}}).to_string())
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status().as_u16(), 201);
    let warning = resp
        .headers()
        .get("warning")
        .and_then(|w| w.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert_eq!(warning, "299 - \"unknown field \\\"dta\\\"\"");
    let b: serde_json::Value = resp.json().await.expect("json");
    assert!(b.get("dta").is_none());
    // dryRun=All validates and answers but persists nothing and does not move the RV.
    let rv = h.resource_version();
    let (code, b) = raw
        .post(&format!("{cms}?dryRun=All"), json!({"metadata":{"name":"dry"}}))
        .await;
    assert_eq!((code, b["metadata"]["name"].as_str()), (201, Some("dry")));
    assert!(b["metadata"]["uid"].is_string());
    let (code, _) = raw.delete(&format!("{cms}/u"), json!({"dryRun":["All"]})).await;
    assert_eq!(code, 200);
    assert_eq!(raw.get(&format!("{cms}/dry")).await.0, 404);
    assert_eq!(raw.get(&format!("{cms}/u")).await.0, 200);
    assert_eq!(h.resource_version(), rv);
    // deletecollection with a label selector returns the list of deleted items.
    for (n, l) in [("a", "x"), ("b", "x"), ("c", "y")] {
        assert_eq!(
            raw.post(cms, json!({"metadata":{"name":n,"labels":{"l":l}}}))
                .await
                .0,
            201
        );
    }
    let (code, list) = raw.delete(&format!("{cms}?labelSelector=l%3Dx"), json!({})).await;
    assert_eq!((code, list["kind"].as_str()), (200, Some("ConfigMapList")));
    assert_eq!(list["items"].as_array().map(Vec::len), Some(2));
    let (_, left) = raw.get(cms).await;
    let names: Vec<&str> = left["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["metadata"]["name"].as_str())
        .collect();
    assert_eq!(names, ["c", "u"]);
    // Update preconditions on DELETE.
    let (code, e) = raw
        .delete(
            &format!("{cms}/c"),
            json!({"preconditions":{"resourceVersion":"1"}}),
        )
        .await;
    assert_eq!((code, e["reason"].as_str()), (409, Some("Conflict")));
    assert!(
        e["message"].as_str().expect("m").starts_with(
            "Operation cannot be fulfilled on ConfigMap \"c\": the ResourceVersion in the precondition (1)"
        ),
        "{e}"
    );
}

#[tokio::test]
async fn malformed_requests_get_status_answers_not_panics() {
    let h = start().await;
    let raw = Raw::new(&h, h.admin_token());
    let cms = "/api/v1/namespaces/default/configmaps";
    let cases: Vec<(&str, String, Option<&str>, Option<String>)> = vec![
        (
            "POST",
            cms.into(),
            Some("application/json"),
            Some("{not json".into()),
        ),
        ("POST", cms.into(), Some("application/json"), Some("[1,2]".into())),
        (
            "POST",
            cms.into(),
            Some("application/vnd.kubernetes.protobuf"),
            Some("k8s\0\u{ff}\u{ff}".into()),
        ),
        (
            "POST",
            cms.into(),
            Some("application/json"),
            Some(r#"{"metadata":{"generateName":"ééééé"}}"#.into()),
        ),
        (
            "POST",
            cms.into(),
            Some("application/json"),
            Some(r#"{"metadata":"x"}"#.into()),
        ),
        (
            "POST",
            cms.into(),
            Some("application/json"),
            Some(r#"{"kind":"Secret","metadata":{"name":"a"}}"#.into()),
        ),
        (
            "PUT",
            format!("{cms}/a"),
            Some("application/json"),
            Some(r#"{"metadata":{"name":"b"}}"#.into()),
        ),
        (
            "PATCH",
            format!("{cms}/a"),
            Some("application/apply-patch+yaml"),
            Some(": : :".into()),
        ),
        (
            "DELETE",
            format!("{cms}/a"),
            Some("application/json"),
            Some("{bad".into()),
        ),
        (
            "DELETE",
            format!("{cms}/a"),
            Some("application/json"),
            Some(r#"{"propagationPolicy":"Sometimes"}"#.into()),
        ),
        ("GET", format!("{cms}?watch=maybe"), None, None),
        ("GET", format!("{cms}?limit=abc"), None, None),
        ("GET", format!("{cms}?labelSelector=%21"), None, None),
        (
            "GET",
            "/api/v1/namespaces/default/configmaps/a/b/c/d".into(),
            None,
            None,
        ),
        (
            "POST",
            "/api/v1/namespaces/default/configmaps/a".into(),
            Some("application/json"),
            Some("{}".into()),
        ),
        ("GET", "/api/v1/configmaps/a".into(), None, None),
    ];
    for (method, path, ct, body) in cases {
        let (code, status) = raw.req(method, &path, ct, body.clone()).await;
        assert!(
            (400..500).contains(&code),
            "{method} {path} {body:?} → {code} {status}"
        );
        assert_eq!(status["kind"], "Status", "{method} {path} → {status}");
    }
    assert_eq!(raw.get("/livez").await.0, 200, "server still up");
}

#[tokio::test]
async fn paged_lists_and_exact_reads_are_consistent_snapshots() {
    let h = start().await;
    let raw = Raw::new(&h, h.admin_token());
    let cms = "/api/v1/namespaces/default/configmaps";
    for n in ["a", "b", "c"] {
        assert_eq!(
            raw.post(cms, json!({"metadata":{"name":n},"data":{"v":"1"}}))
                .await
                .0,
            201
        );
    }
    let (_, first) = raw.get(&format!("{cms}?limit=1")).await;
    let rv = first["metadata"]["resourceVersion"]
        .as_str()
        .expect("rv")
        .to_string();
    let tok = first["metadata"]["continue"]
        .as_str()
        .expect("continue")
        .to_string();
    // Changes after the first page do not leak into later pages.
    assert_eq!(raw.delete(&format!("{cms}/b"), json!({})).await.0, 200);
    assert_eq!(
        raw.patch(
            &format!("{cms}/c"),
            "application/merge-patch+json",
            json!({"data":{"v":"2"}})
        )
        .await
        .0,
        200
    );
    assert_eq!(raw.post(cms, json!({"metadata":{"name":"bb"}})).await.0, 201);
    let (_, rest) = raw.get(&format!("{cms}?limit=10&continue={tok}")).await;
    let names: Vec<&str> = rest["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["metadata"]["name"].as_str())
        .collect();
    assert_eq!(names, ["b", "c"]);
    assert_eq!(rest["items"][1]["data"]["v"], "1");
    assert_eq!(rest["metadata"]["resourceVersion"], rv.as_str());
    // Exact reads the same past state; NotOlderThan reads the present.
    let (code, exact) = raw
        .get(&format!("{cms}?resourceVersion={rv}&resourceVersionMatch=Exact"))
        .await;
    assert_eq!(code, 200);
    assert_eq!(exact["items"].as_array().map(Vec::len), Some(3));
    let (_, now) = raw
        .get(&format!(
            "{cms}?resourceVersion={rv}&resourceVersionMatch=NotOlderThan"
        ))
        .await;
    let names: Vec<&str> = now["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["metadata"]["name"].as_str())
        .collect();
    assert_eq!(names, ["a", "bb", "c"]);
    let (code, _) = raw
        .get(&format!(
            "{cms}?resourceVersion=999999&resourceVersionMatch=Exact"
        ))
        .await;
    assert_eq!(code, 504);
}
