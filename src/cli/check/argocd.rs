//! `check` for Argo CD Applications (issue 13): each GitLab `repoURL` of an annotated
//! Application is one request, decided as the Argo CD shim and the token controller would: the
//! Application's annotations, its AppProject (when the files hold it: existence and
//! `sourceNamespaces`), the connection chosen among policies selecting the AppProject, and the
//! policies selecting the AppProject and the Application's namespace.

use serde_json::Value;

use super::{
    Inputs,
    evaluate::{ProjectReport, RequestReport, SecretReport, SourceReport, Verdict, conclude, evaluation},
};
use crate::{
    crd::{ConsumerKind, CredentialKind},
    policy::TokenRequest,
    reason::Reason,
    secret::TYPE_OPAQUE,
    shim::{
        ProjectHint, Refusal,
        argocd::{
            SourceVerdict, app_project, application_annotations, classify, namespace_permitted, sources,
            token_name,
        },
        infer::annotations_of,
    },
};

/// Whether the object is an Argo CD Application.
pub fn is_application(v: &Value) -> bool {
    v["kind"] == "Application"
        && v["apiVersion"]
            .as_str()
            .is_some_and(|a| a.starts_with("argoproj.io/"))
}

/// Whether the object is an Argo CD AppProject (read as context for Applications).
pub fn is_app_project(v: &Value) -> bool {
    v["kind"] == "AppProject"
        && v["apiVersion"]
            .as_str()
            .is_some_and(|a| a.starts_with("argoproj.io/"))
}

/// The AppProject named `name` among the objects of the files.
fn app_project_in_files<'a>(inputs: &'a Inputs, name: &str) -> Option<&'a Value> {
    inputs
        .sources
        .iter()
        .map(|d| &d.value)
        .find(|v| is_app_project(v) && v.pointer("/metadata/name").and_then(Value::as_str) == Some(name))
}

/// One report per GitLab repoURL of the Application (one refused report when the whole
/// Application is refused; one not-opted-in report when it is not annotated).
pub fn reports(inputs: &Inputs, file: &str, app: &Value) -> Result<Vec<SourceReport>, String> {
    let ns = inputs.namespace_of(app)?;
    let base = SourceReport::new(file, app, &ns, Verdict::NotOptedIn);
    if !Inputs::opted_in(app) {
        return Ok(vec![base]);
    }
    let ann = match application_annotations(&annotations_of(app)) {
        Ok(a) => a,
        Err(r) => return Ok(vec![base.refuse(&r, None)]),
    };
    let project_name = app_project(app);
    let mut notes = Vec::new();
    match app_project_in_files(inputs, &project_name) {
        Some(project) => {
            let argocd_ns = project
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or("argocd");
            if !namespace_permitted(project, &ns.name, argocd_ns) {
                let r = Refusal::new(
                    Reason::ArgoCdNamespaceNotPermitted,
                    format!(
                        "namespace {} is not in AppProject {project_name}'s spec.sourceNamespaces, so Argo CD refuses the Application",
                        ns.name
                    ),
                );
                return Ok(vec![base.refuse(&r, None)]);
            }
        }
        None => notes.push(format!(
            "AppProject {project_name} is not in the files: its existence and spec.sourceNamespaces were not checked (the operator refuses with ArgoCDProjectNotFound or ArgoCDNamespaceNotPermitted)"
        )),
    }
    let (conn_name, conn) =
        match inputs.choose_connection_for(ann.connection.as_deref(), &ns, Some(&project_name)) {
            Ok(c) => c,
            Err(r) => return Ok(vec![base.refuse(&r, None)]),
        };
    let mut out = Vec::new();
    for (url, chart) in sources(app) {
        let mut report = SourceReport {
            connection: Some(conn_name.clone()),
            name: format!("{} ({url})", base.name),
            ..base.clone()
        };
        let need = match classify(&url, chart, &conn.facts) {
            SourceVerdict::NotGitLab => continue,
            SourceVerdict::Refused(r) => {
                out.push(report.refuse(&r, None));
                continue;
            }
            SourceVerdict::Need(n) => n,
        };
        let mut scopes = need.scopes.clone();
        scopes.extend(ann.extra_scopes.iter().copied());
        scopes.sort();
        scopes.dedup();
        report.request = Some(RequestReport {
            consumer: ConsumerKind::Application.to_string(),
            scopes: scopes.iter().map(ToString::to_string).collect(),
            access_level: ann.access_level.to_string(),
            lifetime: ann.lifetime.map(|d| d.to_string()),
            renew_before: ann.renew_before.map(|d| d.to_string()),
            credential_kind: CredentialKind::ProjectAccessToken.to_string(),
        });
        report.secret = Some(SecretReport {
            name: token_name(&project_name, &url),
            type_: TYPE_OPAQUE.to_string(),
            keys: ["type", "url", "username", "password", "project"]
                .into_iter()
                .map(str::to_string)
                .collect(),
            registry_host: None,
            sets_secret_ref: false,
        });
        let (kind, written, paths) = match &need.project {
            ProjectHint::Path(p) => ("path", p.clone(), vec![p.clone()]),
            ProjectHint::Id(id) => match inputs.project_ids.get(id) {
                Some(p) => ("id", id.to_string(), vec![p.clone()]),
                None => ("id", id.to_string(), Vec::new()),
            },
            ProjectHint::RegistryPath { path, candidates } => {
                ("registryPath", path.clone(), candidates.clone())
            }
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
            out.push(report);
            continue;
        }
        for path in &paths {
            let req = TokenRequest {
                connection: conn_name.clone(),
                project_path: path.clone(),
                consumers: vec![ConsumerKind::Application],
                scopes: scopes.clone(),
                access_level: ann.access_level,
                lifetime: ann.lifetime,
                renew_before: ann.renew_before,
                argocd_project: Some(project_name.clone()),
                kind: CredentialKind::ProjectAccessToken,
                group_path: None,
                write: false,
            };
            report
                .evaluations
                .push(evaluation(path, &inputs.policies.evaluate(&req, &ns)));
        }
        conclude(&mut report);
        if report.verdict == Verdict::Served && !notes.is_empty() {
            report.message = Some(notes.join("; "));
        }
        out.push(report);
    }
    if out.is_empty() {
        let r = Refusal::new(
            Reason::ForeignHost,
            format!(
                "no source of the Application is on the connection's GitLab ({}); the operator leaves it alone",
                conn.facts.host
            ),
        );
        out.push(base.refuse(&r, None));
    }
    Ok(out)
}
