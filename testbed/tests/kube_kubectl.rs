//! kubectl v1.32 against the emulator: the real Flux CRDs and example manifests are applied, read
//! with printer columns, watched and deleted.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;

use common::{fixtures_dir, kubectl::Kubectl, start};

/// Group/versions served by the fixture CRDs.
fn served_group_versions(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("crd dir") {
        let p = e.expect("entry").path();
        if p.extension().is_some_and(|x| x == "yaml") {
            let v: serde_json::Value =
                serde_yaml_ng::from_str(&std::fs::read_to_string(&p).expect("read")).expect("yaml");
            let g = v["spec"]["group"].as_str().expect("group").to_string();
            for ver in v["spec"]["versions"].as_array().expect("versions") {
                if ver["served"].as_bool() == Some(true) {
                    out.push(format!("{g}/{}", ver["name"].as_str().expect("name")));
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_applies_gets_watches_and_deletes_flux_objects() {
    let h = start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let kc = Kubectl {
        kubeconfig: dir.path().join("kubeconfig"),
        cache: dir.path().join("cache"),
    };
    h.write_kubeconfig(&kc.kubeconfig, h.admin_token())
        .expect("kubeconfig");
    // client-go drops credentials on plain-HTTP connections, so kubectl is system:anonymous here.
    h.allow_anonymous_admin();
    let fixtures = fixtures_dir();
    let kc = std::sync::Arc::new(kc);
    let fixtures2 = fixtures.clone();
    let kc2 = kc.clone();
    let dirp = dir.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        let dir = dirp;
        let kc = kc2;
        let fixtures = fixtures2;
        let version = kc.run(&["version", "-o", "json"]);
        assert!(version.contains("\"gitVersion\": \"v1.33.0\""), "{version}");

        // CRDs with client-side validation on (needs /openapi/v2).
        let crd_dir = fixtures.join("flux-crds");
        let out = kc.run(&["apply", "-f", crd_dir.to_str().expect("path")]);
        assert!(out.contains("gitrepositories.source.toolkit.fluxcd.io created"), "{out}");
        let crds = kc.run(&["get", "crds"]);
        assert!(crds.contains("ocirepositories.source.toolkit.fluxcd.io"), "{crds}");
        let resources = kc.run(&["api-resources"]);
        assert!(resources.lines().any(|l| l.starts_with("gitrepositories") && l.contains("source.toolkit.fluxcd.io/v1")), "{resources}");
        assert!(crds.contains("CREATED AT"), "{crds}");
        kc.run(&["wait", "--for=condition=Established", "crd/gitrepositories.source.toolkit.fluxcd.io", "--timeout=20s"]);

        for ns in ["flux-system", "apps"] {
            kc.run(&["create", "namespace", ns]);
        }
        let served = served_group_versions(&crd_dir);
        let mut applied = Vec::new();
        let mut entries: Vec<_> = std::fs::read_dir(fixtures.join("flux-examples")).expect("examples").map(|e| e.expect("e").path()).collect();
        entries.sort();
        for p in entries.iter().filter(|p| p.extension().is_some_and(|x| x == "yaml")) {
            let text = std::fs::read_to_string(p).expect("read");
            for doc in serde_yaml_ng::Deserializer::from_str(&text) {
                let v: serde_json::Value = serde::Deserialize::deserialize(doc).expect("doc");
                if v.is_null() {
                    continue;
                }
                let av = v["apiVersion"].as_str().expect("apiVersion").to_string();
                if av.contains('/') && !served.contains(&av) {
                    continue; // e.g. HelmRelease, Kustomization: their CRDs are not in the fixtures.
                }
                let f = dir.join(format!("doc{}.yaml", applied.len()));
                std::fs::write(&f, serde_yaml_ng::to_string(&v).expect("yaml")).expect("write");
                let out = kc.run(&["apply", "-f", f.to_str().expect("path")]);
                assert!(out.contains("created") || out.contains("unchanged") || out.contains("configured"), "{out}");
                applied.push(v);
            }
        }
        assert!(applied.len() >= 8, "applied {}", applied.len());

        // Re-applying is a no-op ("unchanged"), editing goes through a merge patch ("configured").
        let again = kc.run(&["apply", "-f", dir.join("doc0.yaml").to_str().expect("p")]);
        assert!(again.contains("unchanged"), "{again}");

        // Printer columns from the CRD (URL, AGE, READY, STATUS).
        let repos = kc.run(&["get", "gitrepositories", "-A"]);
        assert!(repos.lines().next().expect("header").contains("URL"), "{repos}");
        assert!(repos.contains("gitrepository-sample") && repos.contains("dev-team"), "{repos}");
        let yaml = kc.run(&["get", "gitrepository", "gitrepository-sample", "-o", "yaml"]);
        assert!(yaml.contains("interval: 1m") || yaml.contains("interval:"), "{yaml}");
        assert!(yaml.contains("kubectl.kubernetes.io/last-applied-configuration"), "{yaml}");

        // Server-side apply through kubectl.
        { let ssa = kc.run(&["apply", "--server-side", "-f", dir.join("doc0.yaml").to_str().expect("p")]);
        assert!(ssa.contains("serverside-applied"), "{ssa}"); }

        // Invalid objects are rejected by the server (schema validation).
        let bad = dir.join("bad.yaml");
        std::fs::write(&bad, "apiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata:\n  name: bad\n  namespace: default\nspec:\n  interval: 1m\n").expect("w");
        let err = kc.fails(&["apply", "-f", bad.to_str().expect("p")]);
        assert!(err.contains("spec.url") && err.contains("Required value"), "{err}");
        // kubectl asks for strict field validation: unknown fields are refused by the server.
        std::fs::write(&bad, "apiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata:\n  name: typo\n  namespace: default\nspec:\n  interval: 1m\n  url: https://example.com/x.git\n  urll: oops\n").expect("w");
        let err = kc.fails(&["apply", "-f", bad.to_str().expect("p")]);
        assert!(err.contains("unknown field \"spec.urll\""), "{err}");
        let out = kc.run(&["apply", "--validate=false", "-f", bad.to_str().expect("p")]);
        assert!(out.contains("created"), "{out}");
        let spec = kc.run(&["get", "gitrepository", "typo", "-o", "jsonpath={.spec}"]);
        assert!(!spec.contains("urll"), "pruned: {spec}");

        // Built-in printers, auth can-i (SelfSubjectAccessReview), events.
        let ns = kc.run(&["get", "namespaces"]);
        assert!(ns.lines().next().expect("header").contains("STATUS") && ns.contains("Active"), "{ns}");
        assert_eq!(kc.run(&["auth", "can-i", "create", "secrets", "-n", "apps"]).trim(), "yes");
        kc.run(&["create", "configmap", "cm1", "--from-literal=a=b", "-n", "apps"]);
        let cms = kc.run(&["get", "configmap", "cm1", "-n", "apps"]);
        assert!(cms.contains("DATA") && cms.contains("cm1"), "{cms}");
        let one = kc.run(&["get", "gitrepository", "dev-team", "-n", "apps", "-o", "jsonpath={.spec.url}"]);
        assert!(one.starts_with("https://"), "{one}");

        // RBAC objects through kubectl's typed (protobuf) create.
        kc.run(&["create", "role", "cm-reader", "--verb=get,list", "--resource=configmaps", "-n", "apps"]);
        kc.run(&["create", "rolebinding", "rb", "--role=cm-reader", "--user=alice", "-n", "apps"]);
        let role = kc.run(&["get", "role", "cm-reader", "-n", "apps", "-o", "jsonpath={.rules[0].verbs}"]);
        assert_eq!(role, r#"["get","list"]"#);
        // Impersonation (--as): alice may list configmaps in apps but not secrets.
        let as_alice = kc.run(&["get", "configmaps", "-n", "apps", "--as", "alice", "-o", "name"]);
        assert!(as_alice.contains("configmap/cm1"), "{as_alice}");
        let denied = kc.fails(&["get", "secrets", "-n", "apps", "--as", "alice"]);
        assert!(denied.contains("User \"alice\" cannot list resource \"secrets\" in API group \"\" in the namespace \"apps\""), "{denied}");
        assert_eq!(kc.run(&["auth", "can-i", "list", "configmaps", "-n", "apps", "--as", "alice"]).trim(), "yes");
        let list = kc.run(&["auth", "can-i", "--list", "-n", "apps", "--as", "alice"]);
        assert!(list.lines().any(|l| l.starts_with("configmaps ") && l.contains("[get list]")), "{list}");
        let rb = kc.run(&["get", "rolebinding", "rb", "-n", "apps", "-o", "jsonpath={.roleRef.name}/{.subjects[0].name}"]);
        assert_eq!(rb, "cm-reader/alice");

        // patch (merge, json, strategic), label, diff (server-side dry run), wait.
        kc.run(&["patch", "gitrepository", "dev-team", "-n", "apps", "--type", "merge", "-p", r#"{"spec":{"interval":"7m"}}"#]);
        kc.run(&["patch", "configmap", "cm1", "-n", "apps", "--type", "json", "-p", r#"[{"op":"add","path":"/data/c","value":"d"}]"#]);
        kc.run(&["patch", "configmap", "cm1", "-n", "apps", "-p", r#"{"data":{"e":"f"}}"#]);
        kc.run(&["label", "configmap", "cm1", "-n", "apps", "team=a"]);
        let cm = kc.run(&["get", "configmap", "cm1", "-n", "apps", "-o", "jsonpath={.data.c}{.data.e}{.metadata.labels.team}"]);
        assert_eq!(cm, "dfa");
        let interval = kc.run(&["get", "gitrepository", "dev-team", "-n", "apps", "-o", "jsonpath={.spec.interval}"]);
        assert_eq!(interval, "7m");
        let mut changed: serde_json::Value = serde_json::from_str(&kc.run(&["get", "configmap", "cm1", "-n", "apps", "-o", "json"])).expect("json");
        changed["data"]["a"] = serde_json::json!("changed");
        let f = dir.join("cm1.json");
        std::fs::write(&f, changed.to_string()).expect("write");
        let out = kc.cmd(&["diff", "-f", f.to_str().expect("p")]).output().expect("diff");
        let diff = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "diff exits 1 when there are differences: {diff} {}", String::from_utf8_lossy(&out.stderr));
        assert!(diff.contains("+  a: changed"), "{diff}");
        let still = kc.run(&["get", "configmap", "cm1", "-n", "apps", "-o", "jsonpath={.data.a}"]);
        assert_eq!(still, "b", "diff is a dry run");
        kc.run(&["wait", "--for=jsonpath={.data.a}=b", "configmap/cm1", "-n", "apps", "--timeout=10s"]);

        // Service accounts and TokenRequest (kubectl create token).
        kc.run(&["create", "serviceaccount", "bot", "-n", "apps"]);
        let token = kc.run(&["create", "token", "bot", "-n", "apps"]);
        assert!(token.trim().starts_with("sa-"), "{token}");

        // Secrets via kubectl create.
        kc.run(&["create", "secret", "generic", "s1", "--from-literal=password=hunter2", "-n", "apps"]);
        let secrets = kc.run(&["get", "secrets", "-n", "apps"]);
        assert!(secrets.contains("TYPE") && secrets.contains("Opaque"), "{secrets}");
    })
    .await
    .expect("kubectl steps");

    // get -w: the first lines arrive, then a change is streamed.
    let kc3 = kc.clone();
    let mut child = kc3
        .cmd(&[
            "get",
            "gitrepositories",
            "-n",
            "apps",
            "-w",
            "--output-watch-events",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn watch");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap_or_default()).is_err() {
                break;
            }
        }
    });
    let recv = |want: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let mut seen = Vec::new();
        while std::time::Instant::now() < deadline {
            if let Ok(l) = rx.recv_timeout(std::time::Duration::from_millis(200)) {
                if l.contains(want) {
                    return l;
                }
                seen.push(l);
            }
        }
        panic!("no watch line with {want:?}; saw {seen:?}");
    };
    let first = recv("dev-team");
    assert!(first.contains("ADDED"), "{first}");
    let kc4 = kc.clone();
    tokio::task::spawn_blocking(move || {
        kc4.run(&[
            "annotate",
            "gitrepository",
            "dev-team",
            "-n",
            "apps",
            "touched=yes",
        ])
    })
    .await
    .expect("annotate");
    let modified = recv("MODIFIED");
    assert!(modified.contains("dev-team"), "{modified}");
    let _ = child.kill();
    let _ = child.wait();

    // delete waits for the object to be gone.
    tokio::task::spawn_blocking(move || {
        let out = kc.run(&["delete", "gitrepository", "dev-team", "-n", "apps"]);
        assert!(out.contains("deleted"), "{out}");
        let err = kc.fails(&["get", "gitrepository", "dev-team", "-n", "apps"]);
        assert!(err.contains("NotFound") || err.contains("not found"), "{err}");
        let out = kc.run(&["delete", "namespace", "apps", "--timeout=30s"]);
        assert!(out.contains("deleted"), "{out}");
        let err = kc.fails(&["get", "namespace", "apps"]);
        assert!(err.contains("not found"), "{err}");
        let out = kc.run(&["delete", "-f", fixtures.join("flux-crds").to_str().expect("p")]);
        assert!(out.contains("deleted"), "{out}");
        let crds = kc.run(&["get", "crds"]);
        assert!(!crds.contains("gitrepositories"), "{crds}");
    })
    .await
    .expect("delete steps");
    drop(dir);
    h.shutdown().await;
}
