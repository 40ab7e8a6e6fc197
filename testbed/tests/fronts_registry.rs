//! The container registry through the fronts with the real `skopeo`: Debian's docker-registry
//! with token auth whose realm is the emulator's `/jwt/auth`; pulls and pushes allowed or refused
//! by scope, role, token state and project visibility.

mod fronts_common;

use std::path::{Path, PathBuf};

use fronts_common::*;

/// Writes a docker-config auth file for `host` with `user:token`.
fn authfile(dir: &Path, name: &str, host: &str, user: &str, token: &str) -> PathBuf {
    let path = dir.join(format!("{name}.json"));
    let body = serde_json::json!({"auths": {host: {"auth": basic(user, token)}}});
    std::fs::write(&path, body.to_string()).unwrap();
    path
}

async fn skopeo(args: &[&str]) -> Run {
    let mut all = vec!["--insecure-policy"];
    all.extend_from_slice(args);
    run("skopeo", &all, None, &[]).await
}

#[tokio::test]
async fn skopeo_pulls_and_pushes_through_token_auth() {
    let world = World::start().await;
    let registry = world.fronts.registry_host();
    let digest = world.fronts.seed_image("acme/team-a/app", "1.0").await.unwrap();
    assert!(digest.starts_with("sha256:") && digest.len() == 71, "{digest}");
    let public_digest = world
        .fronts
        .seed_image("acme/public-lib/img", "2.0")
        .await
        .unwrap();
    let dir = world.scratch("auth");
    let image = format!("docker://{registry}/acme/team-a/app:1.0");

    // Developer with read_registry: inspect sees the seeded digest and layer.
    let alice = authfile(&dir, "alice", &registry, "alice", ALICE_RW);
    let alice = alice.to_str().unwrap();
    let r = skopeo(&["inspect", "--tls-verify=false", "--authfile", alice, &image]).await;
    assert!(r.ok, "inspect: {}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["Digest"], digest.as_str());
    assert_eq!(v["Layers"].as_array().map(Vec::len), Some(1));
    let r = skopeo(&[
        "list-tags",
        "--tls-verify=false",
        "--authfile",
        alice,
        &format!("docker://{registry}/acme/team-a/app"),
    ])
    .await;
    assert!(
        r.ok && r.stdout.contains("\"1.0\""),
        "list-tags: {} {}",
        r.stdout,
        r.stderr
    );

    // Reporter with read_registry can pull too.
    let rita = authfile(&dir, "rita", &registry, "rita", RITA_READ);
    let rita = rita.to_str().unwrap();
    let r = skopeo(&["inspect", "--tls-verify=false", "--authfile", rita, &image]).await;
    assert!(r.ok, "reporter inspect: {}", r.stderr);

    // Wrong scope (read_repository only): no registry ability at all, the realm answers 403.
    let repo_only = authfile(&dir, "repo-only", &registry, "alice", ALICE_REPO_ONLY);
    let r = skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--authfile",
        repo_only.to_str().unwrap(),
        &image,
    ])
    .await;
    assert!(
        !r.ok && r.stderr.contains("403"),
        "repo-only token must not pull: {}",
        r.stderr
    );
    // Guest with `api`: token issued without `pull`, the registry denies.
    let gina = authfile(&dir, "gina", &registry, "gina", GINA_API);
    let r = skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--authfile",
        gina.to_str().unwrap(),
        &image,
    ])
    .await;
    assert!(
        !r.ok && r.stderr.contains("denied"),
        "guest inspect: {}",
        r.stderr
    );
    // Revoked and expired tokens: the realm refuses the credentials.
    for (name, token) in [("revoked", ALICE_REVOKED), ("expired", ALICE_EXPIRED)] {
        let f = authfile(&dir, name, &registry, "alice", token);
        let r = skopeo(&[
            "inspect",
            "--tls-verify=false",
            "--authfile",
            f.to_str().unwrap(),
            &image,
        ])
        .await;
        assert!(
            !r.ok && r.stderr.contains("HTTP Basic: Access denied"),
            "{name} inspect: {}",
            r.stderr
        );
    }
    // Anonymous: public images only.
    let r = skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--no-creds",
        &format!("docker://{registry}/acme/public-lib/img:2.0"),
    ])
    .await;
    assert!(r.ok, "anonymous public inspect: {}", r.stderr);
    assert!(r.stdout.contains(&public_digest));
    let r = skopeo(&["inspect", "--tls-verify=false", "--no-creds", &image]).await;
    assert!(
        !r.ok && r.stderr.contains("denied"),
        "anonymous private inspect: {}",
        r.stderr
    );

    // Push: the developer can copy into a sub-repository (digest kept); the reporter cannot.
    let target = format!("docker://{registry}/acme/team-a/app/copy:1.1");
    let r = skopeo(&[
        "copy",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        "--authfile",
        alice,
        &image,
        &target,
    ])
    .await;
    assert!(r.ok, "developer copy: {}", r.stderr);
    let r = skopeo(&["inspect", "--tls-verify=false", "--authfile", rita, &target]).await;
    assert!(r.ok && r.stdout.contains(&digest), "copied image: {}", r.stderr);
    let r = skopeo(&[
        "copy",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        "--authfile",
        rita,
        &image,
        &format!("docker://{registry}/acme/team-a/app/rita:1.0"),
    ])
    .await;
    assert!(
        !r.ok && r.stderr.contains("initiating layer upload") && r.stderr.contains("denied"),
        "reporter push must be refused: {}",
        r.stderr
    );

    // A Helm chart as an OCI artifact: raw manifest with Helm media types.
    world
        .fronts
        .seed_oci_chart("acme/team-a/app/charts", "mychart", "0.1.0")
        .await
        .unwrap();
    let chart = format!("docker://{registry}/acme/team-a/app/charts/mychart:0.1.0");
    let r = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        "--authfile",
        alice,
        &chart,
    ])
    .await;
    assert!(r.ok, "raw inspect chart: {}", r.stderr);
    let m: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        m["config"]["mediaType"],
        "application/vnd.cncf.helm.config.v1+json"
    );
    assert_eq!(
        m["layers"][0]["mediaType"],
        "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
    );
    world.fronts.shutdown().await;
}

/// Decodes the claims of a JWT.
fn claims(jwt: &str) -> serde_json::Value {
    use base64::Engine as _;
    let part = jwt.split('.').nth(1).expect("claims part");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .expect("base64url");
    serde_json::from_slice(&raw).expect("claims JSON")
}

#[tokio::test]
async fn jwt_auth_answers_like_gitlab() {
    let world = World::start().await;
    let auth = |q: &str| format!("{}/jwt/auth?{q}", world.url);
    let alice = format!("alice:{ALICE_RW}");

    // Repeated scopes: granted actions only, ungranted scopes left out.
    let q = "service=container_registry&scope=repository:acme/team-a/app:pull,push\
             &scope=repository:acme/old/img:pull,push&scope=repository:acme/nope/x:pull&scope=registry:catalog:*";
    let r = curl(&["-u", &alice, &auth(q)]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    let c = claims(body["token"].as_str().unwrap());
    assert_eq!(c["aud"], "container_registry");
    assert_eq!(c["sub"], "alice");
    assert_eq!(
        c["access"],
        serde_json::json!([
            {"type": "repository", "name": "acme/team-a/app", "actions": ["pull", "push"]},
            {"type": "repository", "name": "acme/old/img", "actions": ["pull"]},
        ])
    );
    assert!(c["exp"].as_i64().unwrap() > chrono::Utc::now().timestamp() + 200);

    // No scope (login): empty access. Anonymous public pull: granted, sub "".
    let r = curl(&["-u", &alice, &auth("service=container_registry&account=alice")]).await;
    assert_eq!(
        claims(r.json()["token"].as_str().unwrap())["access"],
        serde_json::json!([])
    );
    let r = curl(&[&auth(
        "service=container_registry&scope=repository:acme/public-lib/img:pull,push",
    )])
    .await;
    let c = claims(r.json()["token"].as_str().unwrap());
    assert_eq!(c["sub"], "");
    assert_eq!(c["access"][0]["actions"], serde_json::json!(["pull"]));

    // Refusals: bad credentials 401, no registry ability 403, unknown service 404.
    let r = curl(&[
        "-u",
        &format!("alice:{ALICE_REVOKED}"),
        &auth("service=container_registry&scope=repository:acme/team-a/app:pull"),
    ])
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["errors"][0]["code"], "UNAUTHORIZED");
    let r = curl(&[
        "-u",
        &format!("alice:{ALICE_REPO_ONLY}"),
        &auth("service=container_registry&scope=repository:acme/team-a/app:pull"),
    ])
    .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["errors"][0]["code"], "DENIED");
    let r = curl(&["-u", &alice, &auth("service=other")]).await;
    assert_eq!(r.status, 404);

    // The registry itself challenges with the emulator's realm.
    let r = curl(&[&format!("http://{}/v2/", world.fronts.registry_host())]).await;
    assert_eq!(r.status, 401);
    let realm = format!(
        "Bearer realm=\"{}/jwt/auth\",service=\"container_registry\"",
        world.url
    );
    assert!(r.headers.contains(&realm), "{}", r.headers);
}

/// Whether something accepts TCP connections on `host`.
fn accepts(host: &str) -> bool {
    std::net::TcpStream::connect(host).is_ok()
}

/// Polls `cond` until it holds or 10 s pass.
async fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn registry_logs_to_data_dir_and_stops_on_shutdown_or_drop() {
    let world = World::start().await;
    let host = world.fronts.registry_host();
    assert!(accepts(&host));
    let log = world.dir.path().join("data/registry/registry.log");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("listening on 127.0.0.1"), "registry log: {text}");
    world.fronts.shutdown().await;
    assert!(!accepts(&host), "registry still listening after shutdown");

    let world = World::start().await;
    let host = world.fronts.registry_host();
    let World { fronts, dir, .. } = world;
    drop(fronts);
    eventually("the registry to exit after drop", || !accepts(&host)).await;
    drop(dir);
}
