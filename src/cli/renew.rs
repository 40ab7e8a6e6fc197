//! `renew NS/NAME`: ask the operator to renew a token now by setting
//! `gitlabtokens.io/renew-requested-at` (DESIGN §6.5).

use std::process::ExitCode;

use chrono::{DateTime, SecondsFormat, Utc};
use clap::Args;
use kube::{
    Api,
    api::{Patch, PatchParams},
};
use serde::Serialize;

use super::{
    EXIT_NO, EXIT_USAGE, client, explain_api_error,
    output::{self, OutputFormat},
};
use crate::{controller::token::act::RENEW_ANNOTATION, crd::GitLabToken};

/// Field manager of the CLI's writes.
pub const FIELD_MANAGER: &str = "gitlab-token-operator/cli";

/// Example shown under `renew --help`.
pub const AFTER_HELP: &str = "\
Example:
  gitlab-token-operator renew team-a/podinfo-gitlab-token

Sets the annotation gitlabtokens.io/renew-requested-at=<now, RFC 3339> on the GitLabToken (merge
patch, field manager gitlab-token-operator/cli). The operator then issues a new token, writes the
Secret and nudges the consumers; follow it with `gitlab-token-operator status -n team-a`.
Uses the current kubeconfig.

Exit status: 0 renewal requested; 1 the GitLabToken does not exist; 2 usage or cluster-access
errors.";

/// Flags of `renew`.
#[derive(Debug, Clone, Args)]
pub struct RenewArgs {
    /// The GitLabToken as NAMESPACE/NAME.
    #[arg(value_name = "NS/NAME", value_parser = parse_target)]
    pub target: (String, String),
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t)]
    pub output: OutputFormat,
}

/// Parses `NS/NAME`.
pub fn parse_target(s: &str) -> Result<(String, String), String> {
    match s.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok((ns.to_string(), name.to_string()))
        }
        _ => Err(format!(
            "{s:?} is not NAMESPACE/NAME (e.g. team-a/podinfo-gitlab-token)"
        )),
    }
}

/// The merge patch that requests a renewal at `at`.
pub fn renew_patch(at: DateTime<Utc>) -> (String, serde_json::Value) {
    let value = at.to_rfc3339_opts(SecondsFormat::Millis, true);
    let patch = serde_json::json!({"metadata": {"annotations": {RENEW_ANNOTATION: value}}});
    (value, patch)
}

/// What `renew -o json` prints.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RenewReport {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The annotation set.
    pub annotation: &'static str,
    /// Its value.
    pub renew_requested_at: String,
}

/// Sets the annotation; see [`AFTER_HELP`] for exit codes.
pub async fn main(args: RenewArgs) -> ExitCode {
    let (ns, name) = args.target;
    let client = match client().await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let api: Api<GitLabToken> = Api::namespaced(client, &ns);
    let (value, patch) = renew_patch(Utc::now());
    match api
        .patch(
            &name,
            &PatchParams {
                field_manager: Some(FIELD_MANAGER.to_string()),
                ..PatchParams::default()
            },
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s))
            if s.code == 404 && !s.message.contains("could not find the requested resource") =>
        {
            eprintln!(
                "error: GitLabToken {ns}/{name} does not exist; list them with `gitlab-token-operator status -n {ns}`"
            );
            return ExitCode::from(EXIT_NO);
        }
        Err(e) => {
            eprintln!(
                "error: {}",
                explain_api_error(&e, &format!("cannot annotate GitLabToken {ns}/{name}"))
            );
            return ExitCode::from(EXIT_USAGE);
        }
    }
    match args.output {
        OutputFormat::Json => print!(
            "{}",
            output::json(&RenewReport {
                namespace: ns,
                name,
                annotation: RENEW_ANNOTATION,
                renew_requested_at: value,
            })
        ),
        OutputFormat::Text => println!(
            "renewal requested: GitLabToken {ns}/{name} annotated {RENEW_ANNOTATION}={value}; the operator issues a new \
             token on its next reconcile (follow with `gitlab-token-operator status -n {ns}`)"
        ),
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn targets_parse_strictly() {
        assert_eq!(
            parse_target("team-a/tok").unwrap(),
            ("team-a".to_string(), "tok".to_string())
        );
        for bad in ["tok", "/tok", "team-a/", "a/b/c", ""] {
            assert!(parse_target(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn patch_sets_only_the_annotation_in_rfc3339() {
        let (v, p) = renew_patch(Utc.with_ymd_and_hms(2026, 11, 24, 1, 2, 3).unwrap());
        assert_eq!(v, "2026-11-24T01:02:03.000Z");
        assert_eq!(
            p,
            serde_json::json!({"metadata":{"annotations":{"gitlabtokens.io/renew-requested-at": "2026-11-24T01:02:03.000Z"}}})
        );
    }
}
