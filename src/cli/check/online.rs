//! `check --online` (issue 11): the questions a delegating policy leaves to GitLab are asked of
//! the connection's GitLab, with the operator's own lookups (`DelegationCache::effective`, the
//! controller's code path) and judged as the operator judges (`super::delegated`).
//!
//! The token is the operator's: from `--gitlab-token-file`, else from the GitLabConnection's
//! `spec.credentials.secretRef` read through the current kubeconfig. It is never printed. A
//! GitLab that does not answer is an error (exit 2), never a denial.

use std::{collections::BTreeMap, path::Path};

use chrono::Utc;
use kube::Api;
use secrecy::SecretString;

use super::{CheckArgs, CheckError, Inputs, delegated, evaluate, manifests};
use crate::{
    controller::delegation::{DEFAULT_RECHECK_INTERVAL, DelegationCache, answer_max_age},
    crd::GitLabConnectionSpec,
    gitlab::{ClientConfig, GitLabClient},
};

/// Asks GitLab every delegated question the manifests raise and puts the answers in `inputs`.
pub fn answer(args: &CheckArgs, inputs: &mut Inputs) -> Result<(), CheckError> {
    // A first evaluation finds the questions (the identity comes from the allowing policy and
    // the namespace); its report is dropped.
    evaluate::evaluate(inputs)?;
    let questions = inputs.gitlab_access.missed();
    if questions.is_empty() {
        inputs.gitlab_access = delegated::AccessAnswers::live(BTreeMap::new());
        return Ok(());
    }
    let specs = connection_specs(args)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CheckError::Usage(format!("cannot start the async runtime: {e}")))?;
    let answers = runtime.block_on(async {
        let mut clients: BTreeMap<String, GitLabClient> = BTreeMap::new();
        let cache = DelegationCache::default();
        let mut answers = delegated::SavedAccess::new();
        for (connection, identity, project) in &questions {
            if !clients.contains_key(connection) {
                let client = client_for(args, inputs, &specs, connection).await?;
                clients.insert(connection.clone(), client);
            }
            let client = &clients[connection];
            let effective = cache
                .effective(
                    connection,
                    client,
                    identity,
                    project,
                    Utc::now(),
                    answer_max_age(DEFAULT_RECHECK_INTERVAL),
                )
                .await
                .map_err(|e| {
                    CheckError::Usage(format!(
                        "GitLab ({}) did not answer for {identity} on {project}: {e}; delegated requests cannot be \
                         decided online (this is not a denial: the operator keeps tokens through an outage); \
                         retry, or use --gitlab-access FILE",
                        client.api_url()
                    ))
                })?;
            answers
                .entry(identity.to_string())
                .or_default()
                .insert(project.clone(), effective.raw);
        }
        Ok::<_, CheckError>(answers)
    })?;
    inputs.gitlab_access = delegated::AccessAnswers::live(answers);
    Ok(())
}

/// The GitLabConnection objects in the `--connection` files, by name.
fn connection_specs(args: &CheckArgs) -> Result<BTreeMap<String, GitLabConnectionSpec>, CheckError> {
    let mut docs = Vec::new();
    for f in &args.connections {
        docs.extend(manifests::read_file(f)?);
    }
    Ok(manifests::Manifests::sort(docs)?
        .connections
        .into_iter()
        .map(|c| (c.metadata.name.clone().unwrap_or_default(), c.spec))
        .collect())
}

/// A client for `connection`: its URL (and CA bundle) from the GitLabConnection or
/// `--gitlab-url`, the token from `--gitlab-token-file` or the connection's Secret.
async fn client_for(
    args: &CheckArgs,
    inputs: &Inputs,
    specs: &BTreeMap<String, GitLabConnectionSpec>,
    connection: &str,
) -> Result<GitLabClient, CheckError> {
    let spec = specs.get(connection);
    let url = match (spec, inputs.from_flags) {
        (Some(s), _) => s.url.clone(),
        (None, true) => args.gitlab_url.clone().ok_or_else(|| {
            CheckError::Usage("--online needs the GitLab URL: pass --gitlab-url or --connection FILE".into())
        })?,
        (None, false) => {
            return Err(CheckError::Usage(format!(
                "--online: GitLabConnection {connection} is not in the given files"
            )));
        }
    };
    let token = match (&args.gitlab_token_file, spec) {
        (Some(path), _) => token_from_file(path)?,
        (None, Some(s)) => token_from_secret(connection, s).await?,
        (None, None) => {
            return Err(CheckError::Usage(
                "--online needs the operator's GitLab token: pass --gitlab-token-file FILE, or --connection FILE \
                 with the GitLabConnection so that the token is read from its Secret through your kubeconfig"
                    .into(),
            ));
        }
    };
    let mut config = ClientConfig::new(url, token);
    config.ca_bundle = spec.and_then(|s| s.ca_bundle.clone());
    if let Some(limit) = spec.and_then(|s| s.rate_limit.as_ref()) {
        config.rate_limit.requests_per_second = f64::from(limit.requests_per_second);
        config.rate_limit.burst = limit.burst;
    }
    GitLabClient::new(config).map_err(|e| CheckError::Usage(format!("GitLabConnection {connection}: {e}")))
}

fn token_from_file(path: &Path) -> Result<SecretString, CheckError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CheckError::Usage(format!("--gitlab-token-file {}: {e}", path.display())))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(CheckError::Usage(format!(
            "--gitlab-token-file {}: the file is empty",
            path.display()
        )));
    }
    Ok(SecretString::from(token.to_string()))
}

async fn token_from_secret(
    connection: &str,
    spec: &GitLabConnectionSpec,
) -> Result<SecretString, CheckError> {
    let r = &spec.credentials.secret_ref;
    let what = format!(
        "cannot read GitLabConnection {connection}'s token from Secret {}/{}",
        r.namespace, r.name
    );
    let client = crate::cli::client()
        .await
        .map_err(|e| CheckError::Usage(format!("{what}: {e}; or pass --gitlab-token-file FILE")))?;
    let secret = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client, &r.namespace)
        .get(&r.name)
        .await
        .map_err(|e| CheckError::Usage(crate::cli::explain_api_error(&e, &what)))?;
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(&r.key))
        .and_then(|b| std::str::from_utf8(&b.0).ok())
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| SecretString::from(t.to_string()))
        .ok_or_else(|| CheckError::Usage(format!("{what}: it has no key {:?}", r.key)))
}
