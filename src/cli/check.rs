//! `check`: offline, would each annotated Flux source be served, which policy decides, and why.
//!
//! Reads manifests (policies, connections, Namespaces, sources) from files, infers each opted-in
//! source's request exactly as the shim does, and evaluates the policies. Offline there is no
//! GitLab, so the project path is taken as written (live, GitLab canonicalises it), and a
//! registry path is evaluated for each project it could belong to.

use std::{collections::BTreeMap, path::PathBuf, process::ExitCode};

use clap::Args;
use serde_json::Value;

use super::{
    EXIT_NO, EXIT_USAGE,
    manifests::{self, Manifests},
    output::{self, OutputFormat},
};
use crate::{
    crd::{ConsumerKind, GitLabConnection},
    policy::{NamespaceInfo, PolicySet},
    reason::Reason,
    shim::{ConnectionFacts, Refusal, infer::annotations_of, is_opted_in},
};

mod argocd;
mod delegated;
mod evaluate;
mod online;
mod render;
mod share;

pub use evaluate::{Report, SourceReport, Verdict};

/// Example shown under `check --help`.
pub const AFTER_HELP: &str = "\
Examples:
  # Would the sources in sources.yaml be served under the policies in policies.yaml?
  gitlab-token-operator check --policy policies.yaml --source sources.yaml --gitlab-url https://gitlab.example.com \\
      --registry-host registry.example.com --namespace team-a --namespace-labels tier=gold

  # Using the cluster's own objects (the Namespace for its labels), as JSON:
  kubectl get gitlabtokenpolicies,gitlabconnections -o yaml > admin.yaml
  kubectl get namespace team-a -o yaml > ns.yaml
  kubectl get gitrepositories,ocirepositories -n team-a -o yaml > sources.yaml
  gitlab-token-operator check --policy admin.yaml ns.yaml --source sources.yaml -o json

Files may hold several YAML documents (or `kind: List`) of any kinds: GitLabTokenPolicy,
GitLabConnection, Namespace (its labels are used), Flux sources, and Argo CD Applications (one
decision per GitLab repoURL; their AppProjects, when given, are checked for existence and
spec.sourceNamespaces).

Offline, the project path is evaluated AS WRITTEN; live, GitLab canonicalises it (case, renames,
numeric ids) and resolves a registry path to its longest existing project, so the live verdict can
differ. Numeric project ids need --project-id ID=PATH.

Policies that delegate to GitLab (gitlabAccess) are decided by saved answers (--gitlab-access
FILE) or, with --online, by asking the connection's GitLab as the operator does:
  gitlab-token-operator check --policy admin.yaml ns.yaml --connection conn.yaml --source sources.yaml --online
  gitlab-token-operator check --policy admin.yaml ns.yaml --source sources.yaml \\
      --gitlab-url https://gitlab.example.com --online --gitlab-token-file ./operator-token

Exit status: 0 every opted-in source would be served; 1 some source would be denied, refused or
cannot be decided offline; 2 usage, file or manifest errors, or GitLab did not answer --online
(never taken for a denial).";

/// Flags of `check`.
#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// Files with GitLabTokenPolicy objects (any file may also hold other kinds).
    #[arg(long = "policy", value_name = "FILE", num_args = 1..)]
    pub policies: Vec<PathBuf>,
    /// Files with the Flux sources to check.
    #[arg(long = "source", value_name = "FILE", num_args = 1.., required = true)]
    pub sources: Vec<PathBuf>,
    /// Files with GitLabConnection objects (instead of --gitlab-url/--registry-host).
    #[arg(long = "connection", value_name = "FILE", num_args = 1..)]
    pub connections: Vec<PathBuf>,
    /// GitLab URL of the connection, when no GitLabConnection is given.
    #[arg(long, value_name = "URL")]
    pub gitlab_url: Option<String>,
    /// Registry host[:port] of the connection, when no GitLabConnection is given.
    #[arg(long, value_name = "HOST")]
    pub registry_host: Option<String>,
    /// Name of the connection given by flags, for policies' connectionRef (default: the source's
    /// gitlabtokens.io/connection, else the one connection the namespace's policies name, else "default").
    #[arg(long, value_name = "NAME")]
    pub connection_name: Option<String>,
    /// Namespace of sources whose manifest names none.
    #[arg(short = 'n', long, value_name = "NS")]
    pub namespace: Option<String>,
    /// Labels of namespaces no Namespace object in the files describes (k=v,...).
    #[arg(long, value_name = "K=V", value_delimiter = ',', value_parser = parse_label)]
    pub namespace_labels: Vec<(String, String)>,
    /// The canonical path of a numeric project id (ID=group/project), repeatable.
    #[arg(long = "project-id", value_name = "ID=PATH", value_parser = parse_project_id)]
    pub project_ids: Vec<(u64, String)>,
    /// Saved GitLab answers for delegating policies: a YAML/JSON map of identity
    /// (`group:<path>`, `user:<name>`) to project path to `access_level`.
    #[arg(long = "gitlab-access", value_name = "FILE")]
    pub gitlab_access: Option<PathBuf>,
    /// Ask the connection's GitLab live for delegating policies' answers (the operator's own
    /// lookups and judgement), with the operator's token from --gitlab-token-file or, by default,
    /// from the GitLabConnection's Secret through the current kubeconfig.
    #[arg(long, conflicts_with = "gitlab_access")]
    pub online: bool,
    /// File holding the GitLab token `--online` uses (for clusters you cannot reach, or without
    /// a GitLabConnection file); never printed.
    #[arg(long, value_name = "FILE", requires = "online")]
    pub gitlab_token_file: Option<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t)]
    pub output: OutputFormat,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
        _ => Err(format!("{s:?} is not key=value")),
    }
}

fn parse_project_id(s: &str) -> Result<(u64, String), String> {
    let err = || format!("{s:?} is not ID=group/project");
    let (id, path) = s.split_once('=').ok_or_else(err)?;
    let id: u64 = id.trim().parse().map_err(|_| err())?;
    let path = path.trim();
    if id == 0 || !path.contains('/') {
        return Err(err());
    }
    Ok((id, path.to_string()))
}

/// Why `check` could not run (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// A file could not be read or parsed.
    #[error(transparent)]
    Manifest(#[from] manifests::ManifestError),
    /// Anything else wrong with the invocation.
    #[error("{0}")]
    Usage(String),
}

/// One connection `check` knows, by name.
#[derive(Debug, Clone)]
pub struct KnownConnection {
    /// Its name (`None`: given by flags without --connection-name).
    pub name: Option<String>,
    /// GitLab base URL as given (`None`: only a registry host was given).
    pub gitlab_url: Option<String>,
    /// Host facts for the URL checks.
    pub facts: ConnectionFacts,
}

/// Everything `check` evaluates.
#[derive(Debug)]
pub struct Inputs {
    /// The compiled policies.
    pub policies: PolicySet,
    /// How many policy objects were read.
    pub policy_count: usize,
    /// Connections from files, or the one from flags.
    pub connections: Vec<KnownConnection>,
    /// Whether the connection came from flags.
    pub from_flags: bool,
    /// Namespace labels from Namespace objects.
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
    /// Labels for namespaces not described.
    pub default_labels: BTreeMap<String, String>,
    /// Default namespace for sources without one.
    pub namespace: Option<String>,
    /// Canonical paths of numeric ids.
    pub project_ids: BTreeMap<u64, String>,
    /// The objects to check, with their files.
    pub sources: Vec<manifests::Doc>,
    /// Annotations of namespaces from Namespace objects.
    pub namespace_annotations: BTreeMap<String, BTreeMap<String, String>>,
    /// GitLab's answers for delegating policies (`--gitlab-access`, or `--online`).
    pub gitlab_access: delegated::AccessAnswers,
}

/// Runs `check` and prints the report; see [`AFTER_HELP`] for exit codes.
pub fn main(args: &CheckArgs) -> ExitCode {
    let mut inputs = match load(args) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if args.online
        && let Err(e) = online::answer(args, &mut inputs)
    {
        eprintln!("error: {e}");
        return ExitCode::from(EXIT_USAGE);
    }
    let report = match evaluate::evaluate(&inputs) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match args.output {
        OutputFormat::Text => print!("{}", render::text(&report)),
        OutputFormat::Json => print!("{}", output::json(&report)),
    }
    if report.all_served() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_NO)
    }
}

fn read_all(files: &[PathBuf]) -> Result<Vec<manifests::Doc>, CheckError> {
    let mut docs = Vec::new();
    for f in files {
        docs.extend(manifests::read_file(f)?);
    }
    Ok(docs)
}

fn connection_from_object(c: &GitLabConnection) -> Result<KnownConnection, CheckError> {
    let name = c.metadata.name.clone().unwrap_or_default();
    let facts = ConnectionFacts::new(&c.spec.url, c.spec.registry_host.as_deref())
        .map(|f| f.with_ssh_host(c.spec.ssh_host.clone()))
        .map_err(|e| CheckError::Usage(format!("GitLabConnection {name}: {e}")))?;
    Ok(KnownConnection {
        name: Some(name),
        gitlab_url: Some(c.spec.url.clone()),
        facts,
    })
}

/// Placeholder GitLab URL when only a registry host is given; never compared against, because
/// sources that need the GitLab host are rejected first (see [`needs_gitlab_host`]).
const NO_GITLAB_URL: &str = "https://gitlab.invalid";

/// Reads and sorts every file, and builds the connections.
pub fn load(args: &CheckArgs) -> Result<Inputs, CheckError> {
    let mut docs = read_all(&args.policies)?;
    docs.extend(read_all(&args.connections)?);
    docs.extend(read_all(&args.sources)?);
    let m = Manifests::sort(docs)?;

    let mut connections = Vec::new();
    for c in &m.connections {
        connections.push(connection_from_object(c)?);
    }
    let from_flags = connections.is_empty();
    if from_flags {
        if args.gitlab_url.is_none() && args.registry_host.is_none() {
            return Err(CheckError::Usage(
                "no connection to check hosts against: pass --connection FILE (a GitLabConnection), or --gitlab-url \
                 and/or --registry-host"
                    .into(),
            ));
        }
        let url = args.gitlab_url.as_deref().unwrap_or(NO_GITLAB_URL);
        let facts = ConnectionFacts::new(url, args.registry_host.as_deref()).map_err(|e| {
            CheckError::Usage(
                e.replace("GitLabConnection url", "--gitlab-url")
                    .replace("GitLabConnection registryHost", "--registry-host"),
            )
        })?;
        connections.push(KnownConnection {
            name: args.connection_name.clone(),
            gitlab_url: args.gitlab_url.clone(),
            facts,
        });
    } else if args.gitlab_url.is_some() || args.registry_host.is_some() || args.connection_name.is_some() {
        return Err(CheckError::Usage(
            "--gitlab-url/--registry-host/--connection-name describe a connection, but the files already hold \
             GitLabConnection objects; use one or the other"
                .into(),
        ));
    }
    Ok(Inputs {
        policies: PolicySet::compile(&m.policies),
        policy_count: m.policies.len(),
        connections,
        from_flags,
        namespaces: m.namespaces,
        default_labels: args.namespace_labels.iter().cloned().collect(),
        namespace: args.namespace.clone(),
        project_ids: args.project_ids.iter().cloned().collect(),
        sources: m.others,
        namespace_annotations: m.namespace_annotations,
        gitlab_access: match &args.gitlab_access {
            Some(path) => delegated::AccessAnswers::saved(delegated::read(path)?),
            None => Default::default(),
        },
    })
}

/// Whether the source's URL is checked against the GitLab host (not the registry host).
pub fn needs_gitlab_host(source: &Value) -> bool {
    match crate::shim::infer::identify(source) {
        Ok((ConsumerKind::GitRepository | ConsumerKind::Provider, _)) => true,
        Ok((ConsumerKind::HelmRepository, _)) => {
            source
                .pointer("/spec/type")
                .and_then(Value::as_str)
                .unwrap_or("default")
                != "oci"
        }
        _ => false,
    }
}

impl Inputs {
    /// The namespace a source is checked in; `Err` on a conflict with `--namespace`.
    pub fn namespace_of(&self, source: &Value) -> Result<NamespaceInfo, String> {
        let own = source
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty());
        let name = match (own, self.namespace.as_deref()) {
            (Some(a), Some(b)) if a != b => {
                return Err(format!(
                    "the manifest's namespace {a:?} does not match --namespace {b:?}; drop one"
                ));
            }
            (Some(a), _) | (None, Some(a)) => a.to_string(),
            (None, None) => "default".to_string(),
        };
        let mut labels = self
            .namespaces
            .get(&name)
            .cloned()
            .unwrap_or_else(|| self.default_labels.clone());
        // The API server sets this label on every namespace.
        labels.insert("kubernetes.io/metadata.name".into(), name.clone());
        let annotations = self.namespace_annotations.get(&name).cloned().unwrap_or_default();
        Ok(NamespaceInfo {
            name,
            labels,
            annotations,
        })
    }

    /// Picks the connection like the operator: the named one, else the only one, else the one the
    /// namespace's policies name. Returns its name and facts.
    pub fn choose_connection(
        &self,
        named: Option<&str>,
        ns: &NamespaceInfo,
    ) -> Result<(String, &KnownConnection), Refusal> {
        self.choose_connection_for(named, ns, None)
    }

    /// [`Self::choose_connection`] for a request that may come from an Argo CD AppProject: only
    /// policies selecting it name candidates (as in the operator).
    pub fn choose_connection_for(
        &self,
        named: Option<&str>,
        ns: &NamespaceInfo,
        argocd_project: Option<&str>,
    ) -> Result<(String, &KnownConnection), Refusal> {
        let candidates = self.policies.candidate_connections_for(ns, argocd_project);
        if self.from_flags {
            let c = &self.connections[0];
            return match (named, c.name.as_deref()) {
                (Some(a), Some(b)) if a != b => Err(Refusal::new(
                    Reason::ConnectionNotFound,
                    format!("the source names GitLabConnection {a}, but --connection-name is {b}"),
                )),
                (Some(a), _) | (None, Some(a)) => Ok((a.to_string(), c)),
                (None, None) => {
                    let name = match (candidates.any, candidates.named.len()) {
                        (false, 1) => candidates.named.iter().next().cloned().unwrap_or_default(),
                        _ => "default".to_string(),
                    };
                    Ok((name, c))
                }
            };
        }
        let by_name = |n: &str| self.connections.iter().find(|c| c.name.as_deref() == Some(n));
        if let Some(n) = named {
            return by_name(n).map(|c| (n.to_string(), c)).ok_or_else(|| {
                Refusal::new(
                    Reason::ConnectionNotFound,
                    format!("GitLabConnection {n} is not in the given files"),
                )
            });
        }
        if let [only] = self.connections.as_slice() {
            return Ok((only.name.clone().unwrap_or_default(), only));
        }
        let found: Vec<_> = candidates.named.iter().filter_map(|n| by_name(n)).collect();
        match found.as_slice() {
            [one] if !candidates.any => Ok((one.name.clone().unwrap_or_default(), *one)),
            _ => Err(Refusal::new(
                Reason::AmbiguousConnection,
                format!(
                    "{} connections are given and the policies for namespace {} do not single one out; set the \
                     gitlabtokens.io/connection annotation",
                    self.connections.len(),
                    ns.name
                ),
            )),
        }
    }

    /// Whether the source opted in.
    pub fn opted_in(source: &Value) -> bool {
        is_opted_in(&annotations_of(source))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn inputs(policies: Value, connections: &[(&str, &str)], from_flags: bool) -> Inputs {
        let policies: Vec<crate::crd::GitLabTokenPolicy> = serde_json::from_value(policies).unwrap();
        Inputs {
            policy_count: policies.len(),
            policies: PolicySet::compile(&policies),
            connections: connections
                .iter()
                .map(|(name, url)| KnownConnection {
                    name: (!name.is_empty()).then(|| name.to_string()),
                    gitlab_url: Some(url.to_string()),
                    facts: ConnectionFacts::new(url, None).unwrap(),
                })
                .collect(),
            from_flags,
            namespaces: BTreeMap::from([("gold".into(), BTreeMap::from([("tier".into(), "gold".into())]))]),
            default_labels: BTreeMap::from([("tier".into(), "flag".into())]),
            namespace: Some("team-a".into()),
            project_ids: BTreeMap::new(),
            sources: Vec::new(),
            namespace_annotations: BTreeMap::new(),
            gitlab_access: Default::default(),
        }
    }

    fn pol(name: &str, conn: Option<&str>) -> Value {
        let mut spec = json!({"namespaceSelector": {}, "projects": ["a/*"]});
        if let Some(c) = conn {
            spec["connectionRef"] = json!({"name": c});
        }
        json!({"apiVersion": "gitlabtokens.io/v1alpha1", "kind": "GitLabTokenPolicy", "metadata": {"name": name}, "spec": spec})
    }

    #[test]
    fn label_and_project_id_flags_parse_strictly() {
        assert_eq!(parse_label("a=b").unwrap(), ("a".into(), "b".into()));
        assert_eq!(parse_label("a=").unwrap(), ("a".into(), "".into()));
        for bad in ["a", "=b", ""] {
            assert!(parse_label(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_project_id("42=acme/app").unwrap(), (42, "acme/app".into()));
        for bad in ["42", "0=a/b", "x=a/b", "42=app", "=a/b"] {
            assert!(parse_project_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn namespace_and_labels_of_a_source() {
        let i = inputs(json!([]), &[], true);
        let table = [
            (json!({"metadata": {}}), Ok(("team-a", Some("flag")))),
            (
                json!({"metadata": {"namespace": "team-a"}}),
                Ok(("team-a", Some("flag"))),
            ),
            (json!({"metadata": {"namespace": "gold"}}), Err(())),
        ];
        for (src, want) in table {
            match (i.namespace_of(&src), want) {
                (Ok(ns), Ok((name, tier))) => {
                    assert_eq!(ns.name, name);
                    assert_eq!(ns.labels.get("tier").map(String::as_str), tier);
                    assert_eq!(ns.labels["kubernetes.io/metadata.name"], name);
                }
                (Err(e), Err(())) => assert!(e.contains("does not match --namespace")),
                (got, want) => panic!("{src}: got {got:?}, want {want:?}"),
            }
        }
        let mut i = i;
        i.namespace = None;
        let gold = i
            .namespace_of(&json!({"metadata": {"namespace": "gold"}}))
            .unwrap();
        assert_eq!(gold.labels["tier"], "gold");
        assert_eq!(i.namespace_of(&json!({})).unwrap().name, "default");
    }

    #[test]
    fn connection_choice_follows_the_operator() {
        let two = [("main", "https://a.example"), ("other", "https://b.example")];
        let ns = NamespaceInfo {
            name: "team-a".into(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
        };
        // (policies, connections, from flags, annotation) -> Ok(name) or Err(reason)
        type Row<'a> = (
            Value,
            &'a [(&'a str, &'a str)],
            bool,
            Option<&'a str>,
            Result<&'a str, Reason>,
        );
        let table: Vec<Row> = vec![
            (json!([]), &two[..1], false, None, Ok("main")),
            (json!([]), &two, false, None, Err(Reason::AmbiguousConnection)),
            (json!([]), &two, false, Some("other"), Ok("other")),
            (
                json!([]),
                &two,
                false,
                Some("nope"),
                Err(Reason::ConnectionNotFound),
            ),
            (json!([pol("p", Some("other"))]), &two, false, None, Ok("other")),
            (
                json!([pol("p", Some("other")), pol("q", None)]),
                &two,
                false,
                None,
                Err(Reason::AmbiguousConnection),
            ),
            (json!([]), &[("", "https://a.example")], true, None, Ok("default")),
            (
                json!([pol("p", Some("gl"))]),
                &[("", "https://a.example")],
                true,
                None,
                Ok("gl"),
            ),
            (json!([]), &[("", "https://a.example")], true, Some("x"), Ok("x")),
            (json!([]), &[("set", "https://a.example")], true, None, Ok("set")),
            (
                json!([]),
                &[("set", "https://a.example")],
                true,
                Some("x"),
                Err(Reason::ConnectionNotFound),
            ),
        ];
        for (policies, conns, flags, named, want) in table {
            let i = inputs(policies.clone(), conns, flags);
            let got = i
                .choose_connection(named, &ns)
                .map(|(n, _)| n)
                .map_err(|r| r.reason);
            assert_eq!(
                got.as_deref().map_err(|r| *r),
                want,
                "{policies} {conns:?} {flags} {named:?}"
            );
        }
    }
}
