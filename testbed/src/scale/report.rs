//! The benchmark's results: a serialisable report, and a table printing each figure beside the
//! target issue 10 sets for it.

use serde::Serialize;

use super::measure::{ProcStats, Traffic};

/// Everything one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// CPU cores of the machine.
    pub cores: usize,
    /// Sources created (per batch).
    pub sources: usize,
    /// GitLab projects they read.
    pub projects: usize,
    /// Namespaces they live in (per batch).
    pub namespaces: usize,
    /// The connection's rate budget in requests per second (`None`: the operator's default).
    pub rate_limit: Option<u32>,
    /// Issuing N tokens with GitLab unthrottled.
    pub issue: IssuePhase,
    /// An idle period after all were Ready.
    pub steady: Option<WindowPhase>,
    /// A policy edit touching every token without changing any decision.
    pub policy_edit: Option<PolicyEditPhase>,
    /// A restart of the operator with every token live.
    pub restart: Option<RestartPhase>,
    /// Seconds until a source created right after a restart's `/readyz` was Ready.
    pub late_source_secs: Option<f64>,
    /// A batch of N/10 (at least 100) during which the operator is stopped with SIGTERM, its
    /// queue full, and started again.
    pub interrupted: Option<IssuePhase>,
    /// Issuing a second batch of N with GitLab throttled.
    pub throttled: Option<IssuePhase>,
}

/// Issuing a batch of tokens.
#[derive(Debug, Clone, Serialize)]
pub struct IssuePhase {
    /// GitLabTokens of the batch that exist.
    pub tokens: usize,
    /// Of which `Ready=True` at the end.
    pub ready: usize,
    /// Seconds from the first source created to all Ready (`None`: not all Ready in time).
    pub secs: Option<f64>,
    /// `ready / secs` (or ready so far over the time waited).
    pub tokens_per_sec: f64,
    /// Requests during the phase.
    pub traffic: Traffic,
    /// GitLab calls per Ready token.
    pub gitlab_per_token: f64,
    /// The operator's Kubernetes requests per Ready token.
    pub kube_per_token: f64,
    /// The operator's memory and CPU at the end of the phase (CPU since it started).
    pub process: ProcStats,
    /// GitLab's throttle, requests per minute (`None`: unthrottled).
    pub throttle_per_minute: Option<u32>,
    /// The least time the throttle allows at one call per token, seconds.
    pub floor_secs: Option<f64>,
    /// Most TCP connections the operator held to the Kubernetes API server at once.
    pub kube_connections_peak: usize,
    /// When the operator was stopped with SIGTERM mid-batch (its queue full) and started again:
    /// seconds to exit (`Some(None)`: killed after the grace period). `None`: not interrupted.
    pub sigterm_full_queue: Option<Option<f64>>,
}

/// Traffic over a fixed window.
#[derive(Debug, Clone, Serialize)]
pub struct WindowPhase {
    /// Window length, seconds.
    pub secs: f64,
    /// Requests in it.
    pub traffic: Traffic,
}

/// A policy edit touching every token, with one token's renewal asked for at the same moment.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyEditPhase {
    /// Seconds from the edit until the token controller had reconciled as many times as there
    /// are tokens (its `/metrics`; `None`: not within the deadline).
    pub reevaluated_secs: Option<f64>,
    /// Token reconciles counted by then.
    pub reconciles: u64,
    /// Seconds from the edit until the renewal asked for with it was done (a new token in the
    /// status; `None`: not within the deadline): due work is not starved by the re-evaluation.
    pub renewal_secs: Option<f64>,
    /// Seconds from the edit to the operator's last request (`None`: never quiet in time).
    pub settled_secs: Option<f64>,
    /// Requests until then (the renewal's included).
    pub traffic: Traffic,
}

impl PolicyEditPhase {
    /// GitLab calls other than the renewal's: its project read (a renewal re-resolves the
    /// project, to catch a rename), its create, and the old token's revocation.
    pub fn gitlab_besides_renewal(&self) -> u64 {
        let renewal = ["GET /projects/:id", "POST ", "DELETE "];
        let of = |prefix: &str| -> u64 {
            self.traffic
                .gitlab
                .iter()
                .filter(|(k, _)| k.starts_with(prefix))
                .map(|(_, n)| n)
                .sum()
        };
        let renewal_calls: u64 = renewal.iter().map(|p| of(p).min(1)).sum();
        self.traffic.gitlab_total() - renewal_calls
    }
}

/// Stopping the operator with SIGTERM and starting it again.
#[derive(Debug, Clone, Serialize)]
pub struct RestartPhase {
    /// Seconds from SIGTERM to exit (`None`: killed after the grace period).
    pub sigterm_exit_secs: Option<f64>,
    /// Seconds from start to `/readyz` 200.
    pub readyz_secs: f64,
    /// Seconds from start to its last request in the window (`None`: still busy at its end).
    pub settled_secs: Option<f64>,
    /// Observation window, seconds from start.
    pub window_secs: f64,
    /// Requests in the window.
    pub traffic: Traffic,
    /// GitLabTokens `Ready=True` at the end of the window.
    pub ready_after: usize,
    /// The restarted process's memory and CPU at the end of the window.
    pub process: ProcStats,
    /// Most TCP connections the restarted operator held to the Kubernetes API server at once.
    pub kube_connections_peak: usize,
}

fn per(total: u64, tokens: usize) -> f64 {
    if tokens == 0 {
        0.0
    } else {
        total as f64 / tokens as f64
    }
}

impl IssuePhase {
    /// Fills the derived figures from the raw ones.
    pub fn new(
        tokens: usize,
        ready: usize,
        elapsed: f64,
        all_ready: bool,
        traffic: Traffic,
        process: ProcStats,
        throttle_per_minute: Option<u32>,
    ) -> Self {
        Self {
            tokens,
            ready,
            secs: all_ready.then_some(elapsed),
            tokens_per_sec: if elapsed > 0.0 {
                ready as f64 / elapsed
            } else {
                0.0
            },
            gitlab_per_token: per(traffic.gitlab_total(), ready),
            kube_per_token: per(traffic.kube_total(), ready),
            traffic,
            process,
            throttle_per_minute,
            floor_secs: throttle_per_minute.map(|t| tokens as f64 * 60.0 / f64::from(t.max(1))),
            kube_connections_peak: 0,
            sigterm_full_queue: None,
        }
    }
}

/// "A handful" of pooled Kubernetes connections, not one per reconcile.
const KUBE_CONNECTIONS_TARGET: usize = 8;

/// One row: what, measured, target, met.
struct Row(String, String, &'static str, Option<bool>);

fn secs(s: Option<f64>) -> String {
    s.map_or("not reached".into(), |s| format!("{s:.1} s"))
}

fn top(map: &std::collections::BTreeMap<String, u64>, n: usize, tokens: usize) -> String {
    let mut v: Vec<(&String, &u64)> = map.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1));
    v.iter()
        .take(n)
        .map(|(k, c)| {
            if tokens > 0 {
                format!("{k} ×{:.2}", **c as f64 / tokens as f64)
            } else {
                format!("{k} {c}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn issue_rows(rows: &mut Vec<Row>, label: &str, p: &IssuePhase) {
    if let Some(exit) = p.sigterm_full_queue {
        let mints = p.traffic.gitlab_count("POST /projects/:id/access_tokens");
        rows.push(Row(
            format!("{label}: SIGTERM with a full queue, then a restart"),
            format!(
                "exit {}; afterwards {} of {} Ready, {mints} mints",
                secs(exit),
                p.ready,
                p.tokens
            ),
            "exit ≤ 10 s, 1 mint per token",
            Some(exit.is_some_and(|s| s <= 10.0) && p.secs.is_some() && mints == p.ready as u64),
        ));
        // The batch's other figures measure the restart, not issuing.
        return;
    }
    rows.push(Row(
        format!("{label}: time to all Ready"),
        format!("{} ({} of {} Ready)", secs(p.secs), p.ready, p.tokens),
        match p.floor_secs {
            Some(_) => "≤ 1.1 × rate-limit floor",
            None => "",
        },
        p.floor_secs.map(|f| p.secs.is_some_and(|s| s <= 1.1 * f)),
    ));
    if let Some(floor) = p.floor_secs {
        rows.push(Row(
            format!("{label}: rate-limit floor"),
            format!("{floor:.1} s"),
            "",
            None,
        ));
    }
    rows.push(Row(
        format!("{label}: tokens/s"),
        format!("{:.1}", p.tokens_per_sec),
        if p.floor_secs.is_none() { "≥ 200" } else { "" },
        p.floor_secs.is_none().then_some(p.tokens_per_sec >= 200.0),
    ));
    rows.push(Row(
        format!("{label}: GitLab calls per token"),
        format!(
            "{:.2} ({})",
            p.gitlab_per_token,
            top(&p.traffic.gitlab, 4, p.ready)
        ),
        "≤ 1.05",
        Some(p.gitlab_per_token <= 1.05),
    ));
    if p.traffic.gitlab_throttled > 0 {
        rows.push(Row(
            format!("{label}: GitLab 429 answers"),
            p.traffic.gitlab_throttled.to_string(),
            "",
            None,
        ));
    }
    rows.push(Row(
        format!("{label}: Kubernetes requests per token"),
        format!("{:.1} ({})", p.kube_per_token, top(&p.traffic.kube, 5, p.ready)),
        "≤ 8",
        Some(p.kube_per_token <= 8.0),
    ));
    rows.push(Row(
        format!("{label}: Kubernetes connections at once (peak)"),
        p.kube_connections_peak.to_string(),
        "a handful (≤ 8)",
        Some(p.kube_connections_peak <= KUBE_CONNECTIONS_TARGET),
    ));
    rows.push(Row(
        format!("{label}: operator peak RSS / CPU"),
        format!("{:.0} MiB / {:.1} s", p.process.peak_rss_mib, p.process.cpu_secs),
        "≤ 128 MiB",
        Some(p.process.peak_rss_mib <= 128.0),
    ));
}

impl Report {
    /// Every GitLabToken of the first batch (the one the policy edit and restart act on).
    pub fn tokens_total(&self) -> usize {
        self.issue.tokens
    }

    fn rows(&self) -> Vec<Row> {
        let mut rows = Vec::new();
        issue_rows(&mut rows, "issue", &self.issue);
        if let Some(s) = &self.steady {
            let t = &s.traffic;
            rows.push(Row(
                format!("steady ({:.0} s idle): GitLab calls", s.secs),
                format!("{} ({})", t.gitlab_total(), top(&t.gitlab, 3, 0)),
                "0",
                Some(t.gitlab_total() == 0),
            ));
            rows.push(Row(
                format!(
                    "steady ({:.0} s idle): Kubernetes requests / writes / changes",
                    s.secs
                ),
                format!(
                    "{} / {} / {} ({})",
                    t.kube_total(),
                    t.kube_writes(),
                    t.kube_changes,
                    top(&t.kube, 3, 0)
                ),
                "0 writes",
                Some(t.kube_writes() == 0),
            ));
        }
        if let Some(p) = &self.policy_edit {
            let t = &p.traffic;
            rows.push(Row(
                format!("policy edit: all {} tokens re-evaluated", self.tokens_total()),
                format!("{} ({} reconciles)", secs(p.reevaluated_secs), p.reconciles),
                "≤ 10 s",
                Some(p.reevaluated_secs.is_some_and(|s| s <= 10.0)),
            ));
            rows.push(Row(
                "policy edit: a renewal asked for with it done".into(),
                secs(p.renewal_secs),
                "not starved (≤ 10 s)",
                Some(p.renewal_secs.is_some_and(|s| s <= 10.0)),
            ));
            rows.push(Row(
                "policy edit: operator quiet again".into(),
                secs(p.settled_secs),
                "",
                None,
            ));
            rows.push(Row(
                "policy edit: GitLab calls besides the renewal".into(),
                format!("{} ({})", p.gitlab_besides_renewal(), top(&t.gitlab, 3, 0)),
                "0 (no decision changed)",
                Some(p.gitlab_besides_renewal() == 0),
            ));
            rows.push(Row(
                "policy edit: Kubernetes requests / writes / changes".into(),
                format!(
                    "{} / {} / {} ({})",
                    t.kube_total(),
                    t.kube_writes(),
                    t.kube_changes,
                    top(&t.kube, 3, 0)
                ),
                "",
                None,
            ));
        }
        if let Some(r) = &self.restart {
            let t = &r.traffic;
            rows.push(Row(
                "SIGTERM: exit".into(),
                secs(r.sigterm_exit_secs),
                "≤ 10 s",
                Some(r.sigterm_exit_secs.is_some_and(|s| s <= 10.0)),
            ));
            rows.push(Row(
                "restart: /readyz, then quiet".into(),
                format!("{:.1} s, {}", r.readyz_secs, secs(r.settled_secs)),
                "≤ 10 s",
                Some(r.settled_secs.is_some_and(|s| s <= 10.0)),
            ));
            rows.push(Row(
                format!("restart (first {:.0} s): GitLab reads / writes", r.window_secs),
                format!(
                    "{} / {} ({})",
                    t.gitlab_total() - t.gitlab_writes(),
                    t.gitlab_writes(),
                    top(&t.gitlab, 3, 0)
                ),
                "reads ≤ projects, 0 writes",
                Some(t.gitlab_writes() == 0 && t.gitlab_total() <= self.projects as u64),
            ));
            rows.push(Row(
                format!(
                    "restart (first {:.0} s): Kubernetes requests / writes / changes",
                    r.window_secs
                ),
                format!(
                    "{} / {} / {} ({})",
                    t.kube_total(),
                    t.kube_writes(),
                    t.kube_changes,
                    top(&t.kube, 3, 0)
                ),
                "0 writes",
                Some(t.kube_writes() == 0),
            ));
            rows.push(Row(
                "restart: Kubernetes connections at once (peak)".into(),
                r.kube_connections_peak.to_string(),
                "a handful (≤ 8)",
                Some(r.kube_connections_peak <= KUBE_CONNECTIONS_TARGET),
            ));
            rows.push(Row(
                "restart: Ready after / peak RSS".into(),
                format!("{} / {:.0} MiB", r.ready_after, r.process.peak_rss_mib),
                "≤ 128 MiB",
                Some(r.process.peak_rss_mib <= 128.0),
            ));
        }
        if self.restart.is_some() {
            rows.push(Row(
                "restart: a source created at /readyz Ready after".into(),
                secs(self.late_source_secs),
                "within seconds",
                Some(self.late_source_secs.is_some_and(|s| s <= 5.0)),
            ));
        }
        if let Some(p) = &self.interrupted {
            issue_rows(&mut rows, "interrupted batch", p);
        }
        if let Some(p) = &self.throttled {
            issue_rows(&mut rows, "throttled", p);
        }
        rows
    }

    /// The report as a text table, each figure beside its target.
    pub fn table(&self) -> String {
        let rows = self.rows();
        let w0 = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(0);
        let w2 = rows.iter().map(|r| r.2.chars().count()).max().unwrap_or(0).max(6);
        let budget = self.rate_limit.map_or_else(
            || "the default connection budget".to_string(),
            |r| format!("a connection budget of {r} requests/s"),
        );
        let mut out = format!(
            "testbed scale: {} sources over {} namespaces, {} projects, {} cores, {budget}\n",
            self.sources, self.namespaces, self.projects, self.cores
        );
        out.push_str(&format!("{:w0$}  {:w2$}  met  measured\n", "figure", "target"));
        for Row(what, measured, target, met) in rows {
            let met = match met {
                Some(true) => "yes",
                Some(false) => "NO ",
                None => "   ",
            };
            out.push_str(&format!("{what:w0$}  {target:w2$}  {met}  {measured}\n"));
        }
        out
    }
}
