//! The decision for each source: inference, connection, policy, and the Secret it would get.

use serde::Serialize;
use serde_json::Value;

use super::{
    CheckError, Inputs, needs_gitlab_host,
    share::{self, Shared},
};
use crate::{
    crd::SecretFormat,
    policy::{NamespaceInfo, PolicyDecision, TokenRequest},
    reason::Reason,
    secret::{DOCKER_CONFIG_KEY, TYPE_DOCKER_CONFIG_JSON, TYPE_OPAQUE},
    shim::{
        InferredRequest, ProjectHint, Refusal,
        infer::{identify, infer_source},
    },
};

/// The answer for one source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Verdict {
    /// A policy allows the whole request.
    Served,
    /// No policy allows it.
    Denied,
    /// The shim would not even ask (bad URL, foreign host, ssh, bad annotation, …).
    Refused,
    /// Offline the answer depends on what GitLab would say (numeric id, registry path).
    Undecided,
    /// The source does not carry `gitlabtokens.io/inject: "true"`.
    NotOptedIn,
}

impl Verdict {
    /// The word printed in text output.
    pub fn word(self) -> &'static str {
        match self {
            Self::Served => "SERVED",
            Self::Denied => "DENIED",
            Self::Refused => "REFUSED",
            Self::Undecided => "UNDECIDED",
            Self::NotOptedIn => "not opted in",
        }
    }
}

/// One violated policy field.
#[derive(Debug, Clone, Serialize)]
pub struct ViolationReport {
    /// The request field.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// The policy verdict for one project path.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Evaluation {
    /// The project path evaluated.
    pub project: String,
    /// Whether a policy allows it.
    pub allowed: bool,
    /// The policy that allowed it, or came closest.
    pub policy: Option<String>,
    /// `PolicyDenied` or `NoPolicy` when denied.
    pub reason: Option<String>,
    /// The denial message (every violated field, unusable policies).
    pub message: Option<String>,
    /// Violated fields of the closest policy.
    pub violations: Vec<ViolationReport>,
    /// Effective lifetime when allowed.
    pub lifetime: Option<String>,
    /// Effective renew-before when allowed.
    pub renew_before: Option<String>,
    /// Rotation strategy when allowed.
    pub rotation_strategy: Option<String>,
}

/// The project as the source names it and what offline evaluation assumed.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProjectReport {
    /// `path`, `id` or `registryPath`.
    pub kind: &'static str,
    /// As written (path, id, or full registry path).
    pub written: String,
    /// The paths evaluated (for a registry path, every project it could belong to, longest first).
    pub evaluated_as: Vec<String>,
}

/// What the source asks for.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestReport {
    /// Consumer kind.
    pub consumer: String,
    /// Scopes.
    pub scopes: Vec<String>,
    /// Role.
    pub access_level: String,
    /// Lifetime asked for (`None`: the policy default).
    pub lifetime: Option<String>,
    /// Renew-before asked for (`None`: the policy default).
    pub renew_before: Option<String>,
    /// Kind of GitLab credential (`ProjectAccessToken`, `DeployKey` for `ssh://` sources).
    pub credential_kind: String,
}

/// The Secret the source would get.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretReport {
    /// Secret name.
    pub name: String,
    /// Secret type.
    #[serde(rename = "type")]
    pub type_: String,
    /// Data keys.
    pub keys: Vec<String>,
    /// The `auths` key of a docker config.
    pub registry_host: Option<String>,
    /// The shim would set the source's `spec.secretRef` to it.
    pub sets_secret_ref: bool,
}

/// Everything decided about one source.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceReport {
    /// The file it came from.
    pub file: String,
    /// `apiVersion`.
    pub api_version: String,
    /// `kind`.
    pub kind: String,
    /// Namespace it is checked in.
    pub namespace: String,
    /// Labels that namespace is assumed to have (policies' matchLabels are checked against them).
    pub namespace_labels: std::collections::BTreeMap<String, String>,
    /// Name.
    pub name: String,
    /// The answer.
    pub verdict: Verdict,
    /// PascalCase reason (refusals and denials).
    pub reason: Option<String>,
    /// What is wrong (refusals, denials, undecided).
    pub message: Option<String>,
    /// What the user can do.
    pub what_to_do: Option<String>,
    /// The connection used.
    pub connection: Option<String>,
    /// The project.
    pub project: Option<ProjectReport>,
    /// The request.
    pub request: Option<RequestReport>,
    /// The policy that decided (served) or came closest (denied).
    pub policy: Option<String>,
    /// Violations of that policy.
    pub violations: Vec<ViolationReport>,
    /// The policy verdict for every path evaluated.
    pub evaluations: Vec<Evaluation>,
    /// The Secret it would get.
    pub secret: Option<SecretReport>,
    /// Other sources (`Kind/name`) in the namespace that share the Secret and its token.
    pub shared_with: Vec<String>,
}

/// Counts per verdict.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// Sources served.
    pub served: usize,
    /// Sources denied.
    pub denied: usize,
    /// Sources refused.
    pub refused: usize,
    /// Sources undecided offline.
    pub undecided: usize,
    /// Objects not opted in.
    pub not_opted_in: usize,
}

/// The whole answer of `check`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Always true: no GitLab or cluster was asked.
    pub offline: bool,
    /// What offline evaluation assumes.
    pub assumption: String,
    /// Other things worth knowing (no policies, unusable policies).
    pub notes: Vec<String>,
    /// One entry per object in the source files, in file order.
    pub sources: Vec<SourceReport>,
    /// Counts per verdict.
    pub summary: Summary,
}

impl Report {
    /// Whether every opted-in source would be served (exit 0).
    pub fn all_served(&self) -> bool {
        self.sources
            .iter()
            .all(|s| matches!(s.verdict, Verdict::Served | Verdict::NotOptedIn))
    }
}

/// What offline evaluation assumes, printed with every report.
pub const ASSUMPTION: &str = "offline: project paths are evaluated as written; live, GitLab canonicalises the path \
(case, renames, numeric ids) and resolves a registry path to its longest existing project, so the live verdict can differ";

fn str_at<'a>(v: &'a Value, p: &str) -> &'a str {
    v.pointer(p).and_then(Value::as_str).unwrap_or_default()
}

/// The Secret shape for a request.
pub fn secret_report(r: &InferredRequest, conn_registry: Option<&str>) -> SecretReport {
    let (type_, keys, registry_host) = match r.secret_format {
        SecretFormat::BasicAuth => (TYPE_OPAQUE, vec!["username", "password"], None),
        SecretFormat::Token => (TYPE_OPAQUE, vec!["token"], None),
        SecretFormat::ArgoCdRepository => (
            TYPE_OPAQUE,
            vec!["type", "url", "username", "password", "project"],
            None,
        ),
        SecretFormat::ArgoCdRepoCreds => (TYPE_OPAQUE, vec!["type", "url", "username", "password"], None),
        SecretFormat::Ssh => (TYPE_OPAQUE, vec!["identity", "identity.pub", "known_hosts"], None),
        SecretFormat::DockerConfig => (
            TYPE_DOCKER_CONFIG_JSON,
            vec![DOCKER_CONFIG_KEY],
            r.registry_host.clone().or(conn_registry.map(str::to_string)),
        ),
    };
    SecretReport {
        name: r.secret_name.clone(),
        type_: type_.to_string(),
        keys: keys.into_iter().map(str::to_string).collect(),
        registry_host,
        sets_secret_ref: r.set_secret_ref,
    }
}

/// The report of one policy decision for one project path.
pub(super) fn evaluation(project: &str, decision: &PolicyDecision) -> Evaluation {
    match decision {
        PolicyDecision::Allowed(a) => Evaluation {
            project: project.to_string(),
            allowed: true,
            policy: Some(a.policy.clone()),
            reason: None,
            message: None,
            violations: Vec::new(),
            lifetime: Some(a.lifetime.to_string()),
            renew_before: Some(a.renew_before.to_string()),
            rotation_strategy: Some(format!("{:?}", a.rotation_strategy)),
        },
        PolicyDecision::Denied(d) => Evaluation {
            project: project.to_string(),
            allowed: false,
            policy: d.closest.clone(),
            reason: Some(d.reason.to_string()),
            message: Some(d.message()),
            violations: d
                .violations
                .iter()
                .map(|v| ViolationReport {
                    field: v.field.to_string(),
                    message: v.message.clone(),
                })
                .collect(),
            lifetime: None,
            renew_before: None,
            rotation_strategy: None,
        },
    }
}

impl SourceReport {
    /// A report of `source` with `verdict` and nothing decided yet.
    pub(super) fn new(file: &str, source: &Value, ns: &NamespaceInfo, verdict: Verdict) -> Self {
        Self {
            file: file.to_string(),
            api_version: str_at(source, "/apiVersion").to_string(),
            kind: str_at(source, "/kind").to_string(),
            namespace: ns.name.clone(),
            namespace_labels: ns.labels.clone(),
            name: str_at(source, "/metadata/name").to_string(),
            verdict,
            reason: None,
            message: None,
            what_to_do: None,
            connection: None,
            project: None,
            request: None,
            policy: None,
            violations: Vec::new(),
            evaluations: Vec::new(),
            secret: None,
            shared_with: Vec::new(),
        }
    }

    /// The report turned into a refusal with `r`'s reason and advice.
    pub(super) fn refuse(mut self, r: &Refusal, extra_hint: Option<&str>) -> Self {
        self.verdict = Verdict::Refused;
        self.secret = None;
        self.evaluations.clear();
        self.reason = Some(r.reason.to_string());
        self.message = Some(r.message.clone());
        let mut hint = r.reason.what_to_do().to_string();
        if let Some(h) = extra_hint {
            hint = format!("{hint} {h}");
        }
        self.what_to_do = Some(hint);
        self
    }
}

/// Decides every source (see the module docs). `Err` only for usage errors.
pub fn evaluate(inputs: &Inputs) -> Result<Report, CheckError> {
    let mut notes = Vec::new();
    if inputs.policy_count == 0 {
        notes.push("no GitLabTokenPolicy was given: every request is denied (NoPolicy)".to_string());
    }
    for u in inputs.policies.unusable() {
        notes.push(format!(
            "GitLabTokenPolicy {} is unusable and allows nothing: {}",
            u.name,
            u.problems.join("; ")
        ));
    }
    let mut sources = Vec::new();
    let mut pending = Vec::new();
    let mut skipped = std::collections::BTreeSet::new();
    for doc in &inputs.sources {
        if super::argocd::is_application(&doc.value) {
            let reports = super::argocd::reports(inputs, &doc.file, &doc.value)
                .map_err(|e| CheckError::Usage(format!("{}: Application: {e}", doc.file)))?;
            sources.extend(reports);
            continue;
        }
        if super::argocd::is_app_project(&doc.value) {
            continue;
        }
        if !Inputs::opted_in(&doc.value) && identify(&doc.value).is_err() {
            skipped.insert(format!(
                "{} {}",
                str_at(&doc.value, "/apiVersion"),
                str_at(&doc.value, "/kind")
            ));
            continue;
        }
        let index = sources.len();
        let (report, p) = prepare(inputs, index, &doc.file, &doc.value)?;
        sources.push(report);
        pending.extend(p);
    }
    for (p, outcome) in pending.iter().zip(share::share(&pending)) {
        let report = &mut sources[p.index];
        match outcome {
            Ok(shared) => decide(inputs, report, p, &shared),
            Err(refusal) => *report = report.clone().refuse(&refusal, None),
        }
    }
    if !skipped.is_empty() {
        notes.push(format!(
            "skipped objects that are not Flux sources: {}",
            skipped.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    let mut summary = Summary::default();
    for report in &sources {
        match report.verdict {
            Verdict::Served => summary.served += 1,
            Verdict::Denied => summary.denied += 1,
            Verdict::Refused => summary.refused += 1,
            Verdict::Undecided => summary.undecided += 1,
            Verdict::NotOptedIn => summary.not_opted_in += 1,
        }
    }
    Ok(Report {
        offline: true,
        assumption: ASSUMPTION.to_string(),
        notes,
        sources,
        summary,
    })
}

/// An opted-in source whose request was inferred, waiting for the sharing rule and policy.
pub struct Pending {
    /// Index of its report.
    pub index: usize,
    /// What it asks for.
    pub request: InferredRequest,
    /// The connection chosen.
    pub connection: String,
    /// Its namespace.
    pub namespace: NamespaceInfo,
    /// The project paths to evaluate.
    pub paths: Vec<String>,
}

fn prepare(
    inputs: &Inputs,
    index: usize,
    file: &str,
    source: &Value,
) -> Result<(SourceReport, Option<Pending>), CheckError> {
    let what = format!(
        "{file}: {} {:?}",
        str_at(source, "/kind"),
        str_at(source, "/metadata/name")
    );
    let ns = inputs
        .namespace_of(source)
        .map_err(|e| CheckError::Usage(format!("{what}: {e}")))?;
    let base = SourceReport::new(file, source, &ns, Verdict::NotOptedIn);
    if !Inputs::opted_in(source) {
        return Ok((base, None));
    }
    let named = crate::shim::infer::annotations_of(source)
        .get(crate::shim::annotations::CONNECTION)
        .cloned();
    let (conn_name, conn) = match inputs.choose_connection(named.as_deref(), &ns) {
        Ok(c) => c,
        Err(r) => return Ok((base.refuse(&r, None), None)),
    };
    if conn.gitlab_url.is_none() && needs_gitlab_host(source) {
        return Err(CheckError::Usage(format!(
            "{what}: its URL is checked against the GitLab host; pass --gitlab-url (or --connection FILE)"
        )));
    }
    let mut report = SourceReport {
        connection: Some(conn_name.clone()),
        ..base
    };
    let request = match infer_source(source, &conn.facts) {
        Ok(r) => r,
        Err(r) => {
            let hint = (inputs.from_flags && r.reason == Reason::MissingRegistryHost)
                .then_some("Offline: pass --registry-host.");
            return Ok((report.refuse(&r, hint), None));
        }
    };
    report.request = Some(RequestReport {
        consumer: request.kind.consumer_kind().to_string(),
        scopes: request.scopes.iter().map(|s| s.to_string()).collect(),
        access_level: request.access_level.to_string(),
        lifetime: request.lifetime.map(|d| d.to_string()),
        renew_before: request.renew_before.map(|d| d.to_string()),
        credential_kind: request.credential_kind.to_string(),
    });
    report.secret = Some(secret_report(&request, conn.facts.registry_host.as_deref()));

    let (kind, written, paths) = match &request.project {
        ProjectHint::Path(p) => ("path", p.clone(), vec![p.clone()]),
        ProjectHint::Id(id) => match inputs.project_ids.get(id) {
            Some(p) => ("id", id.to_string(), vec![p.clone()]),
            None => ("id", id.to_string(), Vec::new()),
        },
        ProjectHint::RegistryPath { path, candidates } => ("registryPath", path.clone(), candidates.clone()),
    };
    report.project = Some(ProjectReport {
        kind,
        written: written.clone(),
        evaluated_as: paths.clone(),
    });
    if paths.is_empty() {
        report.verdict = Verdict::Undecided;
        report.message = Some(format!(
            "the project is named by numeric id {written}; policies match canonical paths, which only GitLab knows"
        ));
        report.what_to_do = Some(format!(
            "Pass --project-id {written}=<group/project> to check offline."
        ));
        return Ok((report, None));
    }
    let pending = Pending {
        index,
        request,
        connection: conn_name,
        namespace: ns,
        paths,
    };
    Ok((report, Some(pending)))
}

/// Evaluates the policies for every path of a source, with what its shared token asks for.
fn decide(inputs: &Inputs, report: &mut SourceReport, p: &Pending, shared: &Shared) {
    let mut unknown = Vec::new();
    for path in &p.paths {
        let req = TokenRequest {
            connection: p.connection.clone(),
            project_path: path.clone(),
            consumers: shared.consumers.clone(),
            scopes: p.request.scopes.clone(),
            access_level: p.request.access_level,
            lifetime: shared.lifetime,
            renew_before: shared.renew_before,
            argocd_project: None,
            kind: p.request.credential_kind,
            // The group annotation as written: a path is matched against the policy's groups
            // (a numeric id needs GitLab to name its path, so it is left to the operator).
            group_path: p
                .request
                .group
                .clone()
                .filter(|g| !g.bytes().all(|b| b.is_ascii_digit())),
            write: p.request.write,
        };
        let decision = inputs.policies.evaluate(&req, &p.namespace);
        let mut e = evaluation(path, &decision);
        match super::delegated::explain(
            &decision,
            &req.connection,
            path,
            req.access_level,
            &inputs.gitlab_access,
        ) {
            super::delegated::Explained::Plain => {}
            super::delegated::Explained::Granted(why) => e.message = Some(why),
            super::delegated::Explained::Denied(reason, why) => {
                e.allowed = false;
                e.reason = Some(reason.to_string());
                e.message = Some(why);
            }
            super::delegated::Explained::Unknown(why) => unknown.push(why),
        }
        report.evaluations.push(e);
    }
    report.shared_with = shared.with.clone();
    conclude(report);
    if !unknown.is_empty() && report.verdict == Verdict::Served {
        report.verdict = Verdict::Undecided;
        report.message = Some(unknown.join("; "));
        report.what_to_do = Some(
            "Pass --online to ask the connection's GitLab, or --gitlab-access FILE with GitLab's access_level of that \
             identity on the project (a user's from GET /projects/:id/members/all/:user_id, a group's from the \
             project's or its groups' shared_with_groups)."
                .into(),
        );
    }
}

/// Sets verdict, policy, violations and hints from the evaluations.
pub(super) fn conclude(report: &mut SourceReport) {
    let allowed = report.evaluations.iter().filter(|e| e.allowed).count();
    let first = report.evaluations.first().cloned();
    let Some(first) = first else { return };
    if allowed == report.evaluations.len() {
        report.verdict = Verdict::Served;
        report.policy = first.policy;
    } else if allowed == 0 {
        report.verdict = Verdict::Denied;
        report.policy = first.policy;
        report.violations = first.violations;
        report.reason = first.reason.clone();
        report.message = first.message;
        report.what_to_do = first
            .reason
            .and_then(|r| r.parse::<Reason>().ok())
            .map(|r| r.what_to_do().to_string());
    } else {
        let (ok, no): (Vec<_>, Vec<_>) = report.evaluations.iter().partition(|e| e.allowed);
        let names = |v: &[&Evaluation]| {
            v.iter()
                .map(|e| e.project.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        report.verdict = Verdict::Undecided;
        report.message = Some(format!(
            "served if GitLab resolves the registry path to project {}; denied if to {}",
            names(&ok),
            names(&no)
        ));
        report.what_to_do = Some(format!(
            "Pin the project with the {} annotation to check (and serve) exactly one.",
            crate::shim::annotations::PROJECT
        ));
    }
}
