//! The tenant's part of the story: apply every annotated source, then for each wait for its
//! token, check its Secret's shape, prove it with a real client and wait for Flux to be Ready;
//! and see the denied one refused with nothing minted.

use std::{path::PathBuf, sync::Arc, time::Duration};

use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, Client, ResourceExt,
    api::{ApiResource, DynamicObject},
};
use serde_json::Value;

use super::{
    checks::Ledger,
    live::LiveSync,
    proofs,
    setup::{apply, condition, is_ready, token_resource},
    sources::{Proof, SourceCase, TENANT_NS},
    view::View,
};
use crate::world::World;

/// What the steps share.
pub struct Scenario<'a> {
    /// The running world.
    pub world: &'a World,
    /// Admin client.
    pub client: Client,
    /// Output.
    pub view: Arc<View>,
    /// Verdicts.
    pub ledger: &'a Ledger,
    /// Scratch directory (authfiles).
    pub scratch: PathBuf,
    /// The deadline of every single wait.
    pub wait: Duration,
    /// Every token value seen in a Secret (for the leak check; never printed).
    pub values: Vec<String>,
    /// The live view, brought up to date before each verdict is printed.
    pub live: Option<LiveSync>,
}

/// The issued token of a source, as recorded after its checks.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The source.
    pub case: SourceCase,
    /// GitLab token id.
    pub token_id: u64,
}

/// Reads `status.current.tokenId`.
pub fn token_id(token: &Value) -> Option<u64> {
    token.pointer("/status/current/tokenId").and_then(Value::as_u64)
}

fn str_at<'v>(v: &'v Value, pointer: &str) -> &'v str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("?")
}

/// How a not-yet-satisfied object looks, for a failure message.
pub fn describe_ready(object: Option<&Value>) -> String {
    match object.and_then(|o| condition(o, "Ready")) {
        Some(c) => format!(
            "Ready={} {}: {}",
            c["status"].as_str().unwrap_or(""),
            c["reason"].as_str().unwrap_or(""),
            c["message"].as_str().unwrap_or("")
        ),
        None if object.is_some() => "no Ready condition yet".into(),
        None => "does not exist".into(),
    }
}

/// The value of a Secret key as text.
pub fn secret_value(secret: &Secret, key: &str) -> String {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        .unwrap_or_default()
}

impl Scenario<'_> {
    /// Lets the live view show what led to a verdict, then records the verdict.
    pub async fn note(&self, step: &str, expected: &str, outcome: Result<String, String>) -> bool {
        if let Some(live) = &self.live {
            live.sync().await;
        }
        self.ledger.record(step, expected, outcome)
    }

    /// The GitLabToken API of the tenant namespace.
    pub fn tokens(&self) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), TENANT_NS, &token_resource())
    }

    /// Waits until object `name` of `api` satisfies `done`; on timeout, the last version seen.
    pub async fn wait_object(
        &self,
        api: &Api<DynamicObject>,
        name: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Result<Value, Option<Value>> {
        let mut last = None;
        let deadline = tokio::time::Instant::now() + self.wait;
        loop {
            if let Ok(Some(o)) = api.get_opt(name).await
                && let Ok(v) = serde_json::to_value(&o)
            {
                if done(&v) {
                    return Ok(v);
                }
                last = Some(v);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(last);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The Secret `name` in the tenant namespace, if it exists.
    pub async fn secret(&self, name: &str) -> Option<Secret> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), TENANT_NS);
        api.get_opt(name).await.ok().flatten()
    }

    /// Applies every manifest, recording one step for all of them.
    pub async fn apply_sources(&self, manifests: &[(String, Value)]) -> bool {
        let mut applied = Vec::new();
        for (label, m) in manifests {
            match apply(&self.client, m).await {
                Ok(o) => {
                    self.view
                        .info(&format!("applied {label} {}/{}", TENANT_NS, o.name_any()));
                    applied.push(label.clone());
                }
                Err(e) => {
                    return self
                        .ledger
                        .record("apply the annotated sources", "all accepted", Err(e));
                }
            }
        }
        self.note(
            "apply the annotated sources",
            "all accepted",
            Ok(format!("{} sources applied", applied.len())),
        )
        .await
    }

    /// Token issued, Secret shape, real-client proof, Flux Ready: four steps for one source.
    pub async fn serve(&mut self, case: &SourceCase) -> Option<Issued> {
        let label = case.label;
        let expected = format!("Ready, a token for {}", case.project);
        let token = match self
            .wait_object(&self.tokens(), &case.secret, |t| {
                is_ready(t) && token_id(t).is_some()
            })
            .await
        {
            Ok(t) => t,
            Err(last) => {
                let why = format!(
                    "not issued within {:?}: {}",
                    self.wait,
                    describe_ready(last.as_ref())
                );
                self.note(&format!("{label}: token issued"), &expected, Err(why))
                    .await;
                return None;
            }
        };
        let id = token_id(&token)?;
        let path = str_at(&token, "/status/project/path");
        let issued = if path == case.project {
            Ok(format!(
                "#{id} for {path}, expires {}, renews at {}",
                str_at(&token, "/status/current/expiresAt"),
                str_at(&token, "/status/renewalTime")
            ))
        } else {
            Err(format!("#{id} is for project {path}, not {}", case.project))
        };
        self.note(&format!("{label}: token issued"), &expected, issued)
            .await;

        let bot = str_at(&token, "/status/current/botUser").to_string();
        let Some(secret) = self.secret(&case.secret).await else {
            let why = format!("Secret {} does not exist though the token is Ready", case.secret);
            self.note(&format!("{label}: Secret written"), case.secret_type, Err(why))
                .await;
            return None;
        };
        let shape = self.check_shape(case, &secret, &bot, id);
        let shape_ok = self
            .note(
                &format!("{label}: Secret written"),
                &format!("{} [{}]", case.secret_type, case.keys.join(", ")),
                shape,
            )
            .await;
        if shape_ok {
            let proof = self.prove(case, &secret).await;
            self.note(&format!("{label}: works with a real client"), "accepted", proof)
                .await;
        }
        if case.flux_ready {
            self.flux_ready(&case.resource, case.name, label).await;
        }
        Some(Issued {
            case: case.clone(),
            token_id: id,
        })
    }

    fn check_shape(
        &mut self,
        case: &SourceCase,
        secret: &Secret,
        bot: &str,
        id: u64,
    ) -> Result<String, String> {
        let type_ = secret.type_.as_deref().unwrap_or("Opaque");
        let mut keys: Vec<&str> = secret.data.iter().flatten().map(|(k, _)| k.as_str()).collect();
        keys.sort_unstable();
        if type_ != case.secret_type || keys != case.keys {
            return Err(format!("type {type_} keys {keys:?}"));
        }
        let labels = secret.labels();
        if labels.get("app.kubernetes.io/managed-by").map(String::as_str) != Some("gitlab-token-operator")
            || labels.get("gitlabtokens.io/token") != Some(&case.secret)
        {
            return Err(format!("labels {labels:?} lack the operator's ownership"));
        }
        let annotations = secret.annotations();
        let noted = annotations.get("gitlabtokens.io/token-id").map(String::as_str);
        if noted != Some(id.to_string().as_str()) {
            return Err(format!(
                "annotation gitlabtokens.io/token-id is {noted:?}, not {id}"
            ));
        }
        for key in ["gitlabtokens.io/expires-at", "gitlabtokens.io/renewal-time"] {
            if !annotations.contains_key(key) {
                return Err(format!("annotation {key} missing"));
            }
        }
        let user = match case.keys {
            ["password", "username"] => {
                self.values.push(secret_value(secret, "password"));
                secret_value(secret, "username")
            }
            [".dockerconfigjson"] => {
                let raw = secret_value(secret, ".dockerconfigjson");
                let (user, password) =
                    proofs::docker_config_entry(raw.as_bytes(), &self.world.registry_host())?;
                self.values.push(password);
                user
            }
            _ => {
                self.values.push(secret_value(secret, "token"));
                bot.to_string()
            }
        };
        if user != bot {
            return Err(format!("username {user:?} is not the token's bot user {bot:?}"));
        }
        Ok(format!(
            "{type_} [{}], user {bot}, annotated #{id}",
            keys.join(", ")
        ))
    }

    /// Proves `secret` works for `case` with the real client.
    pub async fn prove(&self, case: &SourceCase, secret: &Secret) -> Result<String, String> {
        let (user, pass) = (secret_value(secret, "username"), secret_value(secret, "password"));
        match &case.proof {
            Proof::Git(url) => proofs::git_ls_remote(url, &user, &pass).await,
            Proof::HelmIndex(url) => proofs::helm_index(url, &user, &pass).await,
            Proof::RegistryManifest(reference) => {
                let file = self.authfile(case, secret)?;
                proofs::skopeo_manifest(&file, reference).await
            }
            Proof::RegistryTags(repository) => {
                let file = self.authfile(case, secret)?;
                proofs::skopeo_tags(&file, repository).await
            }
            Proof::GitLabApi(project) => {
                proofs::gitlab_project(&self.world.gitlab_url(), project, &secret_value(secret, "token"))
                    .await
            }
        }
    }

    fn authfile(&self, case: &SourceCase, secret: &Secret) -> Result<PathBuf, String> {
        let raw = secret_value(secret, ".dockerconfigjson");
        proofs::write_authfile(&self.scratch, case.name, raw.as_bytes())
    }

    /// Waits for the Flux stand-in to report the source Ready.
    pub async fn flux_ready(&self, resource: &ApiResource, name: &str, label: &str) -> bool {
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), TENANT_NS, resource);
        let outcome = match self.wait_object(&api, name, is_ready).await {
            Ok(o) => Ok(describe_ready(Some(&o))),
            Err(last) => Err(format!(
                "not Ready within {:?}: {}",
                self.wait,
                describe_ready(last.as_ref())
            )),
        };
        self.note(&format!("{label}: Flux stand-in Ready"), "Ready=True", outcome)
            .await
    }

    /// The denied source: refused with `PolicyDenied`, no Secret, no token in GitLab.
    pub async fn denied(&self, secret: &str, project: &str) {
        let refused = self
            .wait_object(&self.tokens(), secret, |t| {
                condition(t, "Ready").is_some_and(|c| c["status"] == "False" && c["reason"] == "PolicyDenied")
            })
            .await;
        let outcome = match refused {
            Ok(t) => Ok(describe_ready(Some(&t))),
            Err(last) => Err(format!(
                "not refused within {:?}: {}",
                self.wait,
                describe_ready(last.as_ref())
            )),
        };
        self.note(
            "denied source: refused by policy",
            "Ready=False PolicyDenied",
            outcome,
        )
        .await;
        let minted: Vec<u64> = self
            .world
            .gitlab
            .tokens()
            .into_iter()
            .filter(|t| t.resource.as_deref() == Some(project))
            .map(|t| t.id)
            .collect();
        let written = self.secret(secret).await.is_some();
        let nothing = match (minted.is_empty(), written) {
            (true, false) => Ok(format!("no token on {project}, no Secret {secret}")),
            _ => Err(format!(
                "tokens on {project}: {minted:?}; Secret written: {written}"
            )),
        };
        self.note("denied source: nothing minted", "no token, no Secret", nothing)
            .await;
    }
}
