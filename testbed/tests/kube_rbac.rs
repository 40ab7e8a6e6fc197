//! Authentication and RBAC: bearer tokens for users and service accounts, Role/ClusterRole
//! bindings evaluated from stored objects, exact 403 bodies, SelfSubjectAccessReview.

mod common;

use common::{Raw, start};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams};
use serde_json::json;

#[tokio::test]
async fn rbac_allows_and_denies_from_stored_objects() {
    let h = start().await;
    h.add_user_token("alice-token", "alice", &["devs"]);
    h.add_service_account_token("sa-token", "team-a", "robot");
    let admin = Raw::new(&h, h.admin_token());
    for ns in ["team-a", "team-b"] {
        assert_eq!(
            admin
                .post("/api/v1/namespaces", json!({"metadata":{"name":ns}}))
                .await
                .0,
            201
        );
        assert_eq!(
            admin
                .post(
                    &format!("/api/v1/namespaces/{ns}/configmaps"),
                    json!({"metadata":{"name":"c"}})
                )
                .await
                .0,
            201
        );
    }
    let rbac = "/apis/rbac.authorization.k8s.io/v1";
    let (c, b) = admin
        .post(
            &format!("{rbac}/namespaces/team-a/roles"),
            json!({"metadata":{"name":"cm-reader"},
        "rules":[{"apiGroups":[""],"resources":["configmaps"],"verbs":["get","list","watch"]}]}),
        )
        .await;
    assert_eq!(c, 201, "{b}");
    let (c, b) = admin
        .post(
            &format!("{rbac}/namespaces/team-a/rolebindings"),
            json!({"metadata":{"name":"devs-read"},
        "roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"Role","name":"cm-reader"},
        "subjects":[{"kind":"Group","name":"devs","apiGroup":"rbac.authorization.k8s.io"},
                    {"kind":"ServiceAccount","name":"robot","namespace":"team-a"}]}),
        )
        .await;
    assert_eq!(c, 201, "{b}");

    let alice = Raw::new(&h, "alice-token");
    assert_eq!(alice.get("/api/v1/namespaces/team-a/configmaps/c").await.0, 200);
    let (code, e) = alice.get("/api/v1/namespaces/team-b/configmaps/c").await;
    assert_eq!(code, 403);
    assert_eq!(
        e["message"],
        "configmaps \"c\" is forbidden: User \"alice\" cannot get resource \"configmaps\" in API group \"\" in the namespace \"team-b\""
    );
    assert_eq!(e["details"], json!({"name":"c","kind":"configmaps"}));
    let (code, e) = alice.get("/api/v1/namespaces/team-a/secrets").await;
    assert_eq!((code, e["reason"].as_str()), (403, Some("Forbidden")));
    let (code, e) = alice.get("/apis/rbac.authorization.k8s.io/v1/clusterroles").await;
    assert_eq!(code, 403);
    assert_eq!(
        e["message"],
        "clusterroles.rbac.authorization.k8s.io is forbidden: User \"alice\" cannot list resource \"clusterroles\" in API group \"rbac.authorization.k8s.io\" at the cluster scope"
    );
    let (code, _) = alice
        .post(
            "/api/v1/namespaces/team-a/configmaps",
            json!({"metadata":{"name":"x"}}),
        )
        .await;
    assert_eq!(code, 403);
    // Discovery is open to authenticated users.
    assert_eq!(alice.get("/api").await.0, 200);

    // The service account via kube-rs.
    let client = h.client_for("sa-token").await.expect("client");
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "team-a");
    assert_eq!(
        api.list(&ListParams::default()).await.expect("list").items.len(),
        1
    );
    let other: Api<ConfigMap> = Api::namespaced(client, "team-b");
    let err = other.list(&ListParams::default()).await.expect_err("forbidden");
    let kube::Error::Api(s) = err else {
        panic!("api error")
    };
    assert_eq!(s.code, 403);
    assert!(
        s.message
            .contains("User \"system:serviceaccount:team-a:robot\" cannot list resource \"configmaps\""),
        "{}",
        s.message
    );

    // A ClusterRoleBinding grants cluster-wide; resourceNames restrict to names.
    let (c, _) = admin
        .post(
            &format!("{rbac}/clusterroles"),
            json!({"metadata":{"name":"one-cm"},
        "rules":[{"apiGroups":[""],"resources":["configmaps"],"verbs":["get","list"],"resourceNames":["c"]}]}),
        )
        .await;
    assert_eq!(c, 201);
    let (c, _) = admin
        .post(
            &format!("{rbac}/clusterrolebindings"),
            json!({"metadata":{"name":"alice-one"},
        "roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"one-cm"},
        "subjects":[{"kind":"User","name":"alice","apiGroup":"rbac.authorization.k8s.io"}]}),
        )
        .await;
    assert_eq!(c, 201);
    assert_eq!(alice.get("/api/v1/namespaces/team-b/configmaps/c").await.0, 200);
    assert_eq!(
        alice.get("/api/v1/namespaces/team-b/configmaps").await.0,
        403,
        "resourceNames never allow list"
    );
    assert_eq!(
        alice
            .get("/api/v1/namespaces/team-b/configmaps?fieldSelector=metadata.name%3Dc")
            .await
            .0,
        200,
        "a list pinned to the allowed name is allowed"
    );
    // roleRef is immutable.
    let (c, e) = admin
        .patch(
            &format!("{rbac}/clusterrolebindings/alice-one"),
            "application/merge-patch+json",
            json!({"roleRef":{"name":"cluster-admin"}}),
        )
        .await;
    assert_eq!(c, 422, "{e}");

    // SelfSubjectAccessReview (kubectl auth can-i).
    let review = |verb: &str, ns: &str| {
        json!({"apiVersion":"authorization.k8s.io/v1","kind":"SelfSubjectAccessReview",
        "spec":{"resourceAttributes":{"namespace":ns,"verb":verb,"resource":"configmaps"}}})
    };
    let (c, r) = alice
        .post(
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            review("list", "team-a"),
        )
        .await;
    assert_eq!((c, r["status"]["allowed"].as_bool()), (201, Some(true)));
    let (_, r) = alice
        .post(
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            review("delete", "team-a"),
        )
        .await;
    assert_eq!(r["status"]["allowed"], false);

    // Unknown tokens are 401; anonymous requests are subject to RBAC.
    let (c, e) = Raw::new(&h, "nope").get("/api/v1/namespaces").await;
    assert_eq!((c, e["reason"].as_str()), (401, Some("Unauthorized")));
    let anon = common::http_client()
        .get(format!("{}/api/v1/namespaces", h.url()))
        .send()
        .await
        .expect("anon");
    assert_eq!(anon.status().as_u16(), 403);
    let anon = common::http_client()
        .get(format!("{}/version", h.url()))
        .send()
        .await
        .expect("anon");
    assert_eq!(anon.status().as_u16(), 200);
}

#[tokio::test]
async fn rbac_escalation_is_prevented() {
    let h = start().await;
    h.add_user_token("dana-token", "dana", &[]);
    let admin = Raw::new(&h, h.admin_token());
    let rbac = "/apis/rbac.authorization.k8s.io/v1";
    assert_eq!(
        admin
            .post("/api/v1/namespaces", json!({"metadata":{"name":"team-a"}}))
            .await
            .0,
        201
    );
    let (c, _) = admin.post(&format!("{rbac}/namespaces/team-a/roles"), json!({"metadata":{"name":"delegate"},
        "rules":[{"apiGroups":["rbac.authorization.k8s.io"],"resources":["roles","rolebindings"],"verbs":["create","get","patch"]},
                 {"apiGroups":[""],"resources":["configmaps"],"verbs":["get"]}]})).await;
    assert_eq!(c, 201);
    let (c, _) = admin
        .post(
            &format!("{rbac}/namespaces/team-a/rolebindings"),
            json!({"metadata":{"name":"dana-delegate"},
        "roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"Role","name":"delegate"},
        "subjects":[{"kind":"User","name":"dana","apiGroup":"rbac.authorization.k8s.io"}]}),
        )
        .await;
    assert_eq!(c, 201);
    let dana = Raw::new(&h, "dana-token");
    let (c, e) = dana
        .post(
            &format!("{rbac}/namespaces/team-a/roles"),
            json!({"metadata":{"name":"too-much"},
        "rules":[{"apiGroups":[""],"resources":["secrets"],"verbs":["get"]}]}),
        )
        .await;
    assert_eq!(c, 403, "{e}");
    assert_eq!(
        e["message"],
        "roles.rbac.authorization.k8s.io \"too-much\" is forbidden: user \"dana\" (groups=[\"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"get\"]}"
    );
    let (c, _) = dana
        .post(
            &format!("{rbac}/namespaces/team-a/roles"),
            json!({"metadata":{"name":"ok"},
        "rules":[{"apiGroups":[""],"resources":["configmaps"],"verbs":["get"]}]}),
        )
        .await;
    assert_eq!(c, 201);
    // Patching a held role into an escalation is refused as well.
    let (c, _) = dana
        .patch(
            &format!("{rbac}/namespaces/team-a/roles/ok"),
            "application/merge-patch+json",
            json!({"rules":[{"apiGroups":["*"],"resources":["*"],"verbs":["*"]}]}),
        )
        .await;
    assert_eq!(c, 403);
    let bind = |role_kind: &str, role: &str, name: &str| {
        json!({"metadata":{"name":name},
        "roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":role_kind,"name":role},
        "subjects":[{"kind":"User","name":"eve","apiGroup":"rbac.authorization.k8s.io"}]})
    };
    let (c, _) = dana
        .post(
            &format!("{rbac}/namespaces/team-a/rolebindings"),
            bind("ClusterRole", "cluster-admin", "b1"),
        )
        .await;
    assert_eq!(c, 403);
    let (c, e) = dana
        .post(
            &format!("{rbac}/namespaces/team-a/rolebindings"),
            bind("Role", "ok", "b2"),
        )
        .await;
    assert_eq!(c, 201, "{e}");
}

#[tokio::test]
async fn aggregated_cluster_roles_collect_matching_rules() {
    let h = start().await;
    h.add_user_token("fred-token", "fred", &[]);
    let admin = Raw::new(&h, h.admin_token());
    let rbac = "/apis/rbac.authorization.k8s.io/v1";
    let (c, _) = admin.post(&format!("{rbac}/clusterroles"), json!({"metadata":{"name":"agg"},
        "aggregationRule":{"clusterRoleSelectors":[{"matchLabels":{"example.com/aggregate-to-agg":"true"}}]}})).await;
    assert_eq!(c, 201);
    let (c, _) = admin
        .post(
            &format!("{rbac}/clusterrolebindings"),
            json!({"metadata":{"name":"fred-agg"},
        "roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"agg"},
        "subjects":[{"kind":"User","name":"fred","apiGroup":"rbac.authorization.k8s.io"}]}),
        )
        .await;
    assert_eq!(c, 201);
    let fred = Raw::new(&h, "fred-token");
    assert_eq!(fred.get("/api/v1/namespaces/default/configmaps").await.0, 403);
    let (c, _) = admin
        .post(
            &format!("{rbac}/clusterroles"),
            json!({"metadata":{"name":"cm-list",
        "labels":{"example.com/aggregate-to-agg":"true"}},
        "rules":[{"apiGroups":[""],"resources":["configmaps"],"verbs":["list"]}]}),
        )
        .await;
    assert_eq!(c, 201);
    common::eventually(10, "aggregated rule grants list", || async {
        (fred.get("/api/v1/namespaces/default/configmaps").await.0 == 200).then_some(())
    })
    .await;
    let (_, agg) = admin.get(&format!("{rbac}/clusterroles/agg")).await;
    assert_eq!(agg["rules"][0]["resources"], json!(["configmaps"]));
}

#[tokio::test]
async fn impersonation_needs_the_impersonate_verb() {
    let h = start().await;
    h.add_user_token("gina-token", "gina", &[]);
    let get_as = |token: &str, user: &str| {
        let req = common::http_client()
            .get(format!("{}/api/v1/namespaces/default/configmaps", h.url()))
            .bearer_auth(token)
            .header("Impersonate-User", user)
            .header("Impersonate-Group", "system:masters");
        async move {
            let r = req.send().await.expect("send");
            (
                r.status().as_u16(),
                r.json::<serde_json::Value>().await.expect("json"),
            )
        }
    };
    let (code, e) = get_as("gina-token", "root").await;
    assert_eq!(code, 403);
    assert_eq!(
        e["message"],
        "users \"root\" is forbidden: User \"gina\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope"
    );
    let (code, list) = get_as(h.admin_token(), "root").await;
    assert_eq!(
        (code, list["kind"].as_str()),
        (200, Some("ConfigMapList")),
        "admin may impersonate"
    );
}

#[tokio::test]
async fn default_edit_and_view_roles_aggregate_crd_roles() {
    let h = start().await;
    common::install_crd(&h, "Namespaced").await;
    h.add_user_token("ed-token", "ed", &[]);
    h.add_user_token("vi-token", "vi", &[]);
    let admin = Raw::new(&h, h.admin_token());
    let rbac = "/apis/rbac.authorization.k8s.io/v1";
    for (name, role, user) in [("ed-edit", "edit", "ed"), ("vi-view", "view", "vi")] {
        let (c, b) = admin
            .post(
                &format!("{rbac}/namespaces/default/rolebindings"),
                json!({"metadata":{"name":name},"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":role},
                "subjects":[{"kind":"User","name":user,"apiGroup":"rbac.authorization.k8s.io"}]}),
            )
            .await;
        assert_eq!(c, 201, "{b}");
    }
    let (ed, vi) = (Raw::new(&h, "ed-token"), Raw::new(&h, "vi-token"));
    let secrets = "/api/v1/namespaces/default/secrets";
    assert_eq!(
        ed.post(secrets, json!({"metadata":{"name":"s"},"stringData":{"a":"b"}}))
            .await
            .0,
        201
    );
    assert_eq!(ed.get(secrets).await.0, 200);
    assert_eq!(vi.get(secrets).await.0, 403, "view never reads secrets");
    assert_eq!(vi.get("/api/v1/namespaces/default/configmaps").await.0, 200);
    let widgets = "/apis/example.com/v1/namespaces/default/widgets";
    assert_eq!(vi.get(widgets).await.0, 403);
    let (c, _) = admin
        .post(
            &format!("{rbac}/clusterroles"),
            json!({"metadata":{"name":"widgets-view","labels":{"rbac.authorization.k8s.io/aggregate-to-view":"true"}},
            "rules":[{"apiGroups":["example.com"],"resources":["widgets"],"verbs":["get","list","watch"]}]}),
        )
        .await;
    assert_eq!(c, 201);
    common::eventually(10, "view (and edit) aggregate the CRD role", || async {
        (vi.get(widgets).await.0 == 200 && ed.get(widgets).await.0 == 200).then_some(())
    })
    .await;
}

#[tokio::test]
async fn service_account_token_requests_authenticate_as_the_account() {
    let h = start().await;
    let admin = Raw::new(&h, h.admin_token());
    let sa = "/api/v1/namespaces/default/serviceaccounts";
    let (c, e) = admin
        .post(
            &format!("{sa}/bot/token"),
            json!({"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","spec":{}}),
        )
        .await;
    assert_eq!((c, e["reason"].as_str()), (404, Some("NotFound")));
    assert_eq!(admin.post(sa, json!({"metadata":{"name":"bot"}})).await.0, 201);
    let (c, tr) = admin.post(&format!("{sa}/bot/token"), json!({"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","spec":{"expirationSeconds":3600}})).await;
    assert_eq!(c, 201, "{tr}");
    let token = tr["status"]["token"].as_str().expect("token").to_string();
    let bot = Raw::new(&h, &token);
    let (c, e) = bot.get("/api/v1/namespaces/default/configmaps").await;
    assert_eq!(c, 403);
    assert!(
        e["message"]
            .as_str()
            .expect("m")
            .contains("User \"system:serviceaccount:default:bot\""),
        "{e}"
    );
    let (c, _) = admin
        .post(
            "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings",
            json!({"metadata":{"name":"bot-view"},
        "roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"view"},
        "subjects":[{"kind":"Group","name":"system:serviceaccounts:default"}]}),
        )
        .await;
    assert_eq!(c, 201);
    assert_eq!(
        bot.get("/api/v1/namespaces/default/configmaps").await.0,
        200,
        "SA groups apply"
    );
}
