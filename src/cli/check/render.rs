//! Plain-text rendering of a `check` report.

use std::fmt::Write;

use super::evaluate::{Report, SourceReport, Verdict};

/// The report as text: one block per source, then notes, the offline assumption and a summary.
pub fn text(report: &Report) -> String {
    let mut out = String::new();
    for s in &report.sources {
        source(&mut out, s);
        out.push('\n');
    }
    if report.sources.is_empty() {
        out.push_str("no objects found in the source files\n\n");
    }
    for n in &report.notes {
        let _ = writeln!(out, "note: {n}");
    }
    let _ = writeln!(out, "note: {}", report.assumption);
    let s = &report.summary;
    let _ = writeln!(
        out,
        "summary: {} served, {} denied, {} refused, {} undecided, {} not opted in",
        s.served, s.denied, s.refused, s.undecided, s.not_opted_in
    );
    out
}

fn field(out: &mut String, label: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "  {:<11} {value}", format!("{label}:"));
}

fn source(out: &mut String, s: &SourceReport) {
    let _ = writeln!(out, "{} {}/{} ({})", s.kind, s.namespace, s.name, s.file);
    match (s.verdict, &s.reason) {
        (Verdict::NotOptedIn, _) => {
            field(
                out,
                "verdict",
                "not opted in (no gitlabtokens.io/inject: \"true\"); ignored",
            );
            return;
        }
        (v, Some(r)) => field(out, "verdict", format!("{} ({r})", v.word())),
        (v, None) => field(out, "verdict", v.word()),
    }
    if let Some(c) = &s.connection {
        field(out, "connection", c);
    }
    if let Some(p) = &s.project {
        let detail = match p.kind {
            "registryPath" => format!(
                "registry path {} (GitLab picks its longest existing project; evaluated for: {})",
                p.written,
                p.evaluated_as.join(", ")
            ),
            "id" => match p.evaluated_as.first() {
                Some(path) => format!("id {} (as {path}, from --project-id)", p.written),
                None => format!("id {}", p.written),
            },
            _ => format!("{} (as written)", p.written),
        };
        field(out, "project", detail);
    }
    if let Some(r) = &s.request {
        field(
            out,
            "request",
            format!(
                "{} wants scopes {}, access level {}, lifetime {}, renew before {}",
                r.consumer,
                r.scopes.join(","),
                r.access_level,
                r.lifetime.as_deref().unwrap_or("policy default"),
                r.renew_before.as_deref().unwrap_or("policy default"),
            ),
        );
        field(
            out,
            "credential",
            format!(
                "{} (the policy's credentialKinds must allow it)",
                r.credential_kind
            ),
        );
    }
    match s.verdict {
        Verdict::Served => {
            for e in &s.evaluations {
                let prefix = if s.evaluations.len() > 1 {
                    format!("{}: ", e.project)
                } else {
                    String::new()
                };
                field(
                    out,
                    "policy",
                    format!(
                        "{prefix}{} allows it (lifetime {}, renew before {}, rotation {})",
                        e.policy.as_deref().unwrap_or("?"),
                        e.lifetime.as_deref().unwrap_or("?"),
                        e.renew_before.as_deref().unwrap_or("?"),
                        e.rotation_strategy.as_deref().unwrap_or("?"),
                    ),
                );
            }
        }
        Verdict::Denied => {
            let labels: Vec<String> = s
                .namespace_labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            field(
                out,
                "namespace",
                format!("{} (labels {})", s.namespace, labels.join(",")),
            );
            match &s.policy {
                Some(p) => field(out, "policy", format!("closest is {p}, which does not allow:")),
                None => {
                    let m = s.message.as_deref().unwrap_or_default();
                    field(out, "policy", m.strip_prefix("denied: ").unwrap_or(m));
                }
            }
            for v in &s.violations {
                let _ = writeln!(out, "    - {}", v.message);
            }
        }
        Verdict::Refused => {
            if let Some(m) = &s.message {
                field(out, "why", m);
            }
        }
        Verdict::Undecided => {
            if let Some(m) = &s.message {
                field(out, "why", m);
            }
            for e in &s.evaluations {
                let what = if e.allowed {
                    format!("served by {}", e.policy.as_deref().unwrap_or("?"))
                } else {
                    e.message.clone().unwrap_or_default()
                };
                let _ = writeln!(out, "    - {}: {what}", e.project);
            }
        }
        Verdict::NotOptedIn => {}
    }
    if s.verdict != Verdict::Served
        && let Some(h) = &s.what_to_do
    {
        field(out, "what to do", h);
    }
    if let Some(sec) = &s.secret
        && s.verdict != Verdict::Refused
    {
        let mut line = format!("{} (type {}, keys {}", sec.name, sec.type_, sec.keys.join(", "));
        if let Some(h) = &sec.registry_host {
            let _ = write!(line, ", registry {h}");
        }
        line.push(')');
        if sec.sets_secret_ref {
            line.push_str("; spec.secretRef would be set to it");
        }
        if !s.shared_with.is_empty() {
            let _ = write!(line, "; shared with {}", s.shared_with.join(", "));
        }
        if s.verdict != Verdict::Served {
            line = format!("if served: {line}");
        }
        field(out, "secret", line);
    }
}
