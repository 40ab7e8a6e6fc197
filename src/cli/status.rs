//! `status`: a table of `GitLabToken`s (project, consumers, expiry, renewal, Ready and reason),
//! plus a row for every annotated Flux source no `GitLabToken` stands for (where none can exist:
//! no valid Secret name, the name taken by another request), with the reason from its latest
//! Warning event.

use std::process::ExitCode;

use chrono::SecondsFormat;
use clap::Args;
use kube::{Api, ResourceExt, api::ListParams};
use serde::Serialize;

use super::{
    EXIT_NO, EXIT_USAGE, client, explain_api_error,
    output::{self, OutputFormat},
};
use crate::{
    crd::{ConditionStatus, GitLabToken},
    shim::annotations::INJECT,
};

/// Example shown under `status --help`.
pub const AFTER_HELP: &str = "\
Examples:
  gitlab-token-operator status                 # every namespace
  gitlab-token-operator status -n team-a -o json

Uses the current kubeconfig (KUBECONFIG, else ~/.kube/config, else in-cluster).
EXPIRES is the expiry date (the token dies at 00:00 UTC that day); RENEWAL is when the operator
renews it.

Annotated Flux sources that no GitLabToken stands for are listed too, with NAME \"-\" and the
reason of their latest Warning event.

Exit status: 0 every token is Ready (or there are none) and every annotated source has one;
1 some token is not Ready or some annotated source has none; 2 the cluster could not be asked
(no kubeconfig, unreachable, forbidden, CRD missing).";

/// Flags of `status`.
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// Only this namespace (default: all namespaces).
    #[arg(short = 'n', long, value_name = "NS")]
    pub namespace: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t)]
    pub output: OutputFormat,
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusRow {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Canonical project path once resolved, else the project as asked for.
    pub project: String,
    /// Consumers as `Kind/name`.
    pub consumers: Vec<String>,
    /// Expiry date of the current token (`YYYY-MM-DD`).
    pub expires: Option<String>,
    /// Planned renewal time (RFC 3339, UTC).
    pub renewal: Option<String>,
    /// `True`, `False`, `Unknown`, or `None` when the operator has not reported yet.
    pub ready: Option<String>,
    /// Reason of the Ready condition.
    pub reason: Option<String>,
    /// Message of the Ready condition.
    pub message: Option<String>,
}

impl StatusRow {
    /// Whether the token is Ready.
    pub fn is_ready(&self) -> bool {
        self.ready.as_deref() == Some("True")
    }
}

/// The row for one token.
pub fn row(t: &GitLabToken) -> StatusRow {
    let status = t.status.as_ref();
    let ready = status.and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"));
    StatusRow {
        namespace: t.namespace().unwrap_or_default(),
        name: t.name_any(),
        project: status
            .and_then(|s| s.project.as_ref())
            .map(|p| p.path.clone())
            .unwrap_or_else(|| t.spec.project.clone()),
        consumers: t
            .spec
            .consumers
            .iter()
            .map(|c| format!("{}/{}", c.kind, c.name))
            .collect(),
        expires: status
            .and_then(|s| s.current.as_ref())
            .map(|c| c.expires_at.format("%Y-%m-%d").to_string()),
        renewal: status
            .and_then(|s| s.renewal_time)
            .map(|r| r.to_rfc3339_opts(SecondsFormat::Secs, true)),
        ready: ready.map(|c| {
            match c.status {
                ConditionStatus::True => "True",
                ConditionStatus::False => "False",
                ConditionStatus::Unknown => "Unknown",
            }
            .to_string()
        }),
        reason: ready.map(|c| c.reason.clone()).filter(|r| !r.is_empty()),
        message: ready.map(|c| c.message.clone()).filter(|m| !m.is_empty()),
    }
}

/// Rows sorted by namespace and name.
pub fn rows(tokens: &[GitLabToken]) -> Vec<StatusRow> {
    let mut rows: Vec<StatusRow> = tokens.iter().map(row).collect();
    rows.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    rows
}

/// The table (without a NAMESPACE column when one namespace was asked for, like kubectl).
pub fn render_table(rows: &[StatusRow], with_namespace: bool) -> String {
    let dash = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
    let mut headers = vec![
        "NAMESPACE",
        "NAME",
        "PROJECT",
        "CONSUMERS",
        "EXPIRES",
        "RENEWAL",
        "READY",
        "REASON",
    ];
    if !with_namespace {
        headers.remove(0);
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut c = vec![
                r.namespace.clone(),
                r.name.clone(),
                r.project.clone(),
                if r.consumers.is_empty() {
                    "-".into()
                } else {
                    r.consumers.join(",")
                },
                dash(&r.expires),
                dash(&r.renewal),
                dash(&r.ready),
                dash(&r.reason),
            ];
            if !with_namespace {
                c.remove(0);
            }
            c
        })
        .collect();
    output::table(&headers, &cells)
}

/// The JSON document of `status -o json`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusReport {
    /// Every token.
    pub tokens: Vec<StatusRow>,
    /// Annotated sources no `GitLabToken` stands for (name `-`, the source as the consumer).
    pub sources_without_token: Vec<StatusRow>,
    /// Whether every token is Ready and every annotated source has one.
    pub all_ready: bool,
}

/// Name shown for a source that no `GitLabToken` stands for.
pub const NO_TOKEN: &str = "-";
/// Reason shown when such a source has no Warning event (yet, or any more).
pub const NO_TOKEN_REASON: &str = "NoGitLabToken";

/// A Flux source that asks for a token (`inject` set to anything but `"false"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnotatedSource {
    /// Namespace.
    pub namespace: String,
    /// Kind.
    pub kind: String,
    /// Name.
    pub name: String,
    /// Uid.
    pub uid: String,
}

/// A Warning event about an object: (uid, reason, message, time for ordering).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The object's uid.
    pub uid: String,
    /// Reason.
    pub reason: String,
    /// Message.
    pub message: String,
    /// When it was last seen (nanoseconds since the epoch; 0 when the event carries no time).
    pub at: i128,
}

/// Rows for the sources no token's ownerReferences name, each with its latest Warning.
pub fn unserved_rows(
    sources: &[AnnotatedSource],
    tokens: &[GitLabToken],
    warnings: &[Warning],
) -> Vec<StatusRow> {
    let covered: std::collections::BTreeSet<&str> = tokens
        .iter()
        .flat_map(|t| t.owner_references().iter().map(|o| o.uid.as_str()))
        .collect();
    let mut rows: Vec<StatusRow> = sources
        .iter()
        .filter(|s| !covered.contains(s.uid.as_str()))
        .map(|s| {
            let latest = warnings
                .iter()
                .filter(|w| w.uid == s.uid)
                .max_by(|a, b| a.at.cmp(&b.at));
            StatusRow {
                namespace: s.namespace.clone(),
                name: NO_TOKEN.to_string(),
                project: "-".to_string(),
                consumers: vec![format!("{}/{}", s.kind, s.name)],
                expires: None,
                renewal: None,
                ready: Some("False".to_string()),
                reason: Some(latest.map_or(NO_TOKEN_REASON.to_string(), |w| w.reason.clone())),
                message: Some(latest.map_or_else(
                    || {
                        "no GitLabToken stands for this annotated source; see `kubectl describe` on it"
                            .to_string()
                    },
                    |w| w.message.clone(),
                )),
            }
        })
        .collect();
    rows.sort_by(|a, b| (&a.namespace, &a.consumers).cmp(&(&b.namespace, &b.consumers)));
    rows
}

/// Every served Flux source in `namespace` (or all) whose `inject` annotation asks for a token.
async fn annotated_sources(
    client: &kube::Client,
    namespace: Option<&str>,
) -> Result<Vec<AnnotatedSource>, kube::Error> {
    let mut out = Vec::new();
    for ar in crate::controller::shim::served_flux_kinds(client).await? {
        let api: Api<kube::api::DynamicObject> = match namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
            None => Api::all_with(client.clone(), &ar),
        };
        for o in api.list(&ListParams::default()).await?.items {
            let asks = o.annotations().get(INJECT).is_some_and(|v| v != "false");
            if asks && o.metadata.deletion_timestamp.is_none() {
                out.push(AnnotatedSource {
                    namespace: o.namespace().unwrap_or_default(),
                    kind: ar.kind.clone(),
                    name: o.name_any(),
                    uid: o.uid().unwrap_or_default(),
                });
            }
        }
    }
    Ok(out)
}

/// The Warning events about the given sources' namespaces.
async fn warnings_in(client: &kube::Client, namespaces: &[&str]) -> Result<Vec<Warning>, kube::Error> {
    let mut out = Vec::new();
    for ns in namespaces {
        let api: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), ns);
        for e in api.list(&ListParams::default()).await?.items {
            if e.type_.as_deref() != Some("Warning") {
                continue;
            }
            let at = e
                .last_timestamp
                .as_ref()
                .map(|t| t.0.as_nanosecond())
                .or_else(|| e.event_time.as_ref().map(|t| t.0.as_nanosecond()))
                .unwrap_or_default();
            out.push(Warning {
                uid: e.involved_object.uid.clone().unwrap_or_default(),
                reason: e.reason.clone().unwrap_or_default(),
                message: e.message.clone().unwrap_or_default(),
                at,
            });
        }
    }
    Ok(out)
}

/// Rows for annotated sources without a token; a cluster that does not let us look is told on
/// stderr and yields none (tokens are still listed).
async fn unserved(client: &kube::Client, namespace: Option<&str>, tokens: &[GitLabToken]) -> Vec<StatusRow> {
    let sources = match annotated_sources(client, namespace).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "warning: {}",
                explain_api_error(&e, "cannot list annotated Flux sources")
            );
            return Vec::new();
        }
    };
    let covered: std::collections::BTreeSet<&str> = tokens
        .iter()
        .flat_map(|t| t.owner_references().iter().map(|o| o.uid.as_str()))
        .collect();
    let mut namespaces: Vec<&str> = sources
        .iter()
        .filter(|s| !covered.contains(s.uid.as_str()))
        .map(|s| s.namespace.as_str())
        .collect();
    namespaces.sort();
    namespaces.dedup();
    let warnings = warnings_in(client, &namespaces).await.unwrap_or_else(|e| {
        eprintln!("warning: {}", explain_api_error(&e, "cannot list events"));
        Vec::new()
    });
    unserved_rows(&sources, tokens, &warnings)
}

/// Lists tokens and prints them; see [`AFTER_HELP`] for exit codes.
pub async fn main(args: StatusArgs) -> ExitCode {
    let client = match client().await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let api: Api<GitLabToken> = match &args.namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    };
    let list = match api.list(&ListParams::default()).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {}", explain_api_error(&e, "cannot list GitLabTokens"));
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let client = api.clone().into_client();
    let without = unserved(&client, args.namespace.as_deref(), &list.items).await;
    let rows = rows(&list.items);
    let all_ready = rows.iter().all(StatusRow::is_ready) && without.is_empty();
    match args.output {
        OutputFormat::Json => print!(
            "{}",
            output::json(&StatusReport {
                tokens: rows,
                sources_without_token: without,
                all_ready
            })
        ),
        OutputFormat::Text if rows.is_empty() && without.is_empty() => match &args.namespace {
            Some(ns) => eprintln!("No GitLabTokens found in namespace {ns}."),
            None => eprintln!("No GitLabTokens found."),
        },
        OutputFormat::Text => {
            let all: Vec<StatusRow> = rows.into_iter().chain(without).collect();
            print!("{}", render_table(&all, args.namespace.is_none()));
        }
    }
    if all_ready {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_NO)
    }
}

#[cfg(test)]
mod tests {
    use chrono::{NaiveDate, TimeZone, Utc};

    use super::*;
    use crate::crd::{
        Condition, ConsumerRef, CurrentToken, GitLabTokenSpec, GitLabTokenStatus, ResolvedProject,
        SecretFormat, SecretTarget,
    };

    fn token(ns: &str, name: &str, status: Option<GitLabTokenStatus>) -> GitLabToken {
        let mut t = GitLabToken::new(
            name,
            GitLabTokenSpec {
                kind: Default::default(),
                group: None,
                connection_ref: None,
                project: "Acme/App".into(),
                scopes: vec![crate::crd::Scope::ReadRepository],
                access_level: crate::crd::AccessLevel::Reporter,
                lifetime: None,
                renew_before: None,
                secret: SecretTarget {
                    name: name.into(),
                    format: SecretFormat::BasicAuth,
                    registry_host: None,
                },
                consumers: vec![ConsumerRef {
                    api_version: "source.toolkit.fluxcd.io/v1".into(),
                    kind: "GitRepository".into(),
                    name: "app".into(),
                    namespace: None,
                }],
                deletion_policy: Default::default(),
                argo_cd: None,
            },
        );
        t.metadata.namespace = Some(ns.into());
        t.status = status;
        t
    }

    fn ready_status() -> GitLabTokenStatus {
        GitLabTokenStatus {
            conditions: vec![Condition {
                type_: "Ready".into(),
                status: ConditionStatus::True,
                reason: "Issued".into(),
                message: "token 7 is in Secret app".into(),
                last_transition_time: Utc.timestamp_opt(0, 0).unwrap(),
                observed_generation: Some(1),
            }],
            project: Some(ResolvedProject {
                id: 7,
                path: "acme/app".into(),
            }),
            current: Some(CurrentToken {
                kind: Default::default(),
                group_id: None,
                token_id: 7,
                connection: None,
                project_id: None,
                name: "gto-x".into(),
                bot_user: "bot".into(),
                bot_user_id: None,
                created_at: Utc.timestamp_opt(0, 0).unwrap(),
                expires_at: NaiveDate::from_ymd_opt(2026, 12, 24).unwrap(),
                scopes: vec![],
                access_level: None,
                secret_digest: None,
                secret_version: None,
                last_verified: None,
            }),
            renewal_time: Some(Utc.with_ymd_and_hms(2026, 12, 14, 3, 4, 5).unwrap()),
            ..Default::default()
        }
    }

    #[test]
    fn rows_take_resolved_project_expiry_renewal_and_ready() {
        let r = row(&token("team-a", "app", Some(ready_status())));
        assert_eq!(r.project, "acme/app");
        assert_eq!(r.consumers, vec!["GitRepository/app"]);
        assert_eq!(r.expires.as_deref(), Some("2026-12-24"));
        assert_eq!(r.renewal.as_deref(), Some("2026-12-14T03:04:05Z"));
        assert!(r.is_ready());
        assert_eq!(r.reason.as_deref(), Some("Issued"));
    }

    #[test]
    fn unreported_token_shows_spec_project_and_is_not_ready() {
        let r = row(&token("team-a", "new", None));
        assert_eq!(r.project, "Acme/App");
        assert_eq!(
            (r.ready.clone(), r.expires.clone(), r.renewal.clone()),
            (None, None, None)
        );
        assert!(!r.is_ready());
    }

    #[test]
    fn table_is_sorted_and_drops_namespace_column_for_one_namespace() {
        let rs = rows(&[token("b", "z", None), token("a", "y", Some(ready_status()))]);
        let t = render_table(&rs, true);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("NAMESPACE   NAME   PROJECT"), "{t}");
        assert!(lines[1].starts_with("a           y      acme/app"), "{t}");
        assert!(
            lines[1].contains("2026-12-24") && lines[1].ends_with("True    Issued"),
            "{t}"
        );
        assert!(lines[2].starts_with("b           z      Acme/App"), "{t}");
        assert!(lines[2].ends_with("-       -"), "{t}");
        assert!(render_table(&rs, false).starts_with("NAME   PROJECT"));
    }

    #[test]
    fn json_shape() {
        let rs = rows(&[token("a", "y", Some(ready_status()))]);
        let v = serde_json::to_value(StatusReport {
            all_ready: true,
            tokens: rs,
            sources_without_token: Vec::new(),
        })
        .unwrap();
        assert_eq!(v["allReady"], true);
        assert_eq!(v["tokens"][0]["namespace"], "a");
        assert_eq!(v["tokens"][0]["renewal"], "2026-12-14T03:04:05Z");
        assert_eq!(v["tokens"][0]["consumers"][0], "GitRepository/app");
    }

    #[test]
    fn annotated_sources_without_a_token_get_a_row_with_their_latest_warning() {
        let src = |name: &str, uid: &str| AnnotatedSource {
            namespace: "team-a".into(),
            kind: "GitRepository".into(),
            name: name.into(),
            uid: uid.into(),
        };
        let mut served = token("team-a", "app", Some(ready_status()));
        served.metadata.owner_references = Some(vec![
            k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                uid: "u-app".into(),
                ..Default::default()
            },
        ]);
        let warn = |uid: &str, reason: &str, at: i128| Warning {
            uid: uid.into(),
            reason: reason.into(),
            message: format!("{reason} message"),
            at,
        };
        let rows = unserved_rows(
            &[src("app", "u-app"), src("second", "u-2"), src("quiet", "u-3")],
            &[served],
            &[
                warn("u-2", "PolicyDenied", 1),
                warn("u-2", "ConflictingRequest", 2),
                warn("u-app", "InvalidURL", 3),
            ],
        );
        let got: Vec<(String, String, String)> = rows
            .iter()
            .map(|r| (r.name.clone(), r.consumers.join(","), r.reason.clone().unwrap()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "-".to_string(),
                    "GitRepository/quiet".to_string(),
                    NO_TOKEN_REASON.to_string()
                ),
                (
                    "-".to_string(),
                    "GitRepository/second".to_string(),
                    "ConflictingRequest".to_string()
                ),
            ]
        );
        assert!(rows.iter().all(|r| !r.is_ready()));
        let table = render_table(&rows, true);
        assert!(
            table.contains("GitRepository/second") && table.contains("ConflictingRequest"),
            "{table}"
        );
    }
}
