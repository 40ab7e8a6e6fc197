//! What the benchmark counts: GitLab calls by endpoint (the emulator's call log), Kubernetes
//! requests by verb and resource of the operator's identity (the API server emulator's
//! counters), the operator's memory and CPU (`/proc`), and when traffic settles.

use std::{
    collections::{BTreeMap, HashMap},
    time::{Duration, Instant},
};

use serde::Serialize;

use crate::{kube::controls::CounterKey, world::World};

/// A point in the counters to diff against later.
#[derive(Debug, Clone)]
pub struct Mark {
    gitlab_calls: usize,
    kube: HashMap<CounterKey, u64>,
    resource_version: u64,
}

/// Requests between two marks.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Traffic {
    /// GitLab API calls by `METHOD /endpoint` (ids and paths as `:id`), 429s included.
    pub gitlab: BTreeMap<String, u64>,
    /// GitLab answers 429 among them.
    pub gitlab_throttled: u64,
    /// The operator's Kubernetes requests by `verb resource[/sub]`.
    pub kube: BTreeMap<String, u64>,
    /// Stored changes (the API server's resourceVersion moved): writes that changed something,
    /// by anyone but the leader election; the benchmark itself writes nothing while it measures.
    pub kube_changes: u64,
    /// The leader election's Lease requests (renewals are a steady background, not per-token work,
    /// so they are kept out of `kube` and `kube_changes`).
    pub lease_requests: u64,
}

/// The leader election's resource.
const LEASES: &str = "leases";

const KUBE_WRITE_VERBS: [&str; 5] = ["create", "update", "patch", "delete", "deletecollection"];

impl Traffic {
    /// Every GitLab API call.
    pub fn gitlab_total(&self) -> u64 {
        self.gitlab.values().sum()
    }

    /// GitLab calls that may change something (any method but GET and HEAD).
    pub fn gitlab_writes(&self) -> u64 {
        self.gitlab
            .iter()
            .filter(|(k, _)| !(k.starts_with("GET ") || k.starts_with("HEAD ")))
            .map(|(_, n)| n)
            .sum()
    }

    /// GitLab calls to one `METHOD /endpoint` (0 when none).
    pub fn gitlab_count(&self, endpoint: &str) -> u64 {
        self.gitlab.get(endpoint).copied().unwrap_or(0)
    }

    /// The operator's Kubernetes requests of one `verb resource` (0 when none).
    pub fn kube_count(&self, request: &str) -> u64 {
        self.kube.get(request).copied().unwrap_or(0)
    }

    /// Every Kubernetes request of the operator (a watch counts once, when opened).
    pub fn kube_total(&self) -> u64 {
        self.kube.values().sum()
    }

    /// Kubernetes writes (create, update, patch, delete).
    pub fn kube_writes(&self) -> u64 {
        self.kube
            .iter()
            .filter(|(k, _)| KUBE_WRITE_VERBS.iter().any(|v| k.split(' ').next() == Some(*v)))
            .map(|(_, n)| n)
            .sum()
    }
}

/// Takes a mark now.
pub fn mark(world: &World) -> Mark {
    Mark {
        gitlab_calls: world.gitlab.state().call_count(),
        kube: world.kube.controls().counters(),
        resource_version: world.kube.resource_version(),
    }
}

/// The traffic since `from`, the operator's Kubernetes requests being those of `user`.
pub fn since(world: &World, from: &Mark, user: &str) -> Traffic {
    let calls = world.gitlab.state().calls();
    let mut traffic = Traffic {
        kube_changes: world
            .kube
            .resource_version()
            .saturating_sub(from.resource_version),
        ..Traffic::default()
    };
    for call in calls.iter().skip(from.gitlab_calls) {
        let path = call.path.split('?').next().unwrap_or_default();
        let Some(api) = path.strip_prefix("/api/v4") else {
            continue;
        };
        *traffic
            .gitlab
            .entry(format!("{} {}", call.method, endpoint(api)))
            .or_default() += 1;
        if call.status == 429 {
            traffic.gitlab_throttled += 1;
        }
    }
    for (key, n) in world.kube.controls().counters() {
        if key.user != user {
            continue;
        }
        let before = from.kube.get(&key).copied().unwrap_or(0);
        if key.resource == LEASES {
            traffic.lease_requests += n.saturating_sub(before);
            if KUBE_WRITE_VERBS.contains(&key.verb.as_str()) {
                traffic.kube_changes = traffic.kube_changes.saturating_sub(n.saturating_sub(before));
            }
            continue;
        }
        if n > before {
            *traffic
                .kube
                .entry(format!("{} {}", key.verb, key.resource))
                .or_default() += n - before;
        }
    }
    traffic
}

/// An API path with ids and URL-encoded paths replaced by `:id` (`/projects/:id/access_tokens`).
pub fn endpoint(api_path: &str) -> String {
    api_path
        .split('/')
        .map(|seg| {
            let id = !seg.is_empty() && (seg.bytes().all(|b| b.is_ascii_digit()) || seg.contains('%'));
            if id { ":id" } else { seg }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// A total of all activity (GitLab calls logged plus the operator's Kubernetes requests), to see
/// whether anything happened between two polls.
pub fn activity(world: &World, user: &str) -> u64 {
    let kube: u64 = world
        .kube
        .controls()
        .counters()
        .iter()
        .filter(|(k, _)| k.user == user && k.resource != LEASES)
        .map(|(_, n)| n)
        .sum();
    kube + world.gitlab.state().call_count() as u64
}

/// Waits until no activity was seen for `quiet` (or `max` passed) and returns how long after
/// `start` the last activity happened (`None`: still active when `max` passed).
pub async fn settle(
    world: &World,
    user: &str,
    start: Instant,
    quiet: Duration,
    max: Duration,
) -> Option<Duration> {
    let mut last = activity(world, user);
    let mut last_change = start;
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = activity(world, user);
        if now != last {
            last = now;
            last_change = Instant::now();
        } else if last_change.elapsed() >= quiet {
            return Some(last_change.duration_since(start));
        }
        if start.elapsed() >= max {
            return None;
        }
    }
}

/// Memory and CPU of a process, from `/proc/<pid>/status` and `/proc/<pid>/stat`.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ProcStats {
    /// Peak resident set size (`VmHWM`), MiB.
    pub peak_rss_mib: f64,
    /// Current resident set size (`VmRSS`), MiB.
    pub rss_mib: f64,
    /// User plus system CPU time, seconds.
    pub cpu_secs: f64,
}

/// Reads a process's stats; `None` when it is gone or `/proc` is not there.
pub fn proc_stats(pid: u32) -> Option<ProcStats> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |field: &str| -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with(field))?;
        line.split_whitespace().nth(1)?.parse::<f64>().ok()
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(ProcStats {
        peak_rss_mib: kib("VmHWM:")? / 1024.0,
        rss_mib: kib("VmRSS:")? / 1024.0,
        cpu_secs: cpu_ticks(&stat)? as f64 / clock_ticks_per_sec(),
    })
}

/// `utime + stime` from a `/proc/<pid>/stat` line (fields 14 and 15, after the `(comm)`).
fn cpu_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // `after` starts at field 3 (state): utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// `getconf CLK_TCK`, 100 when it cannot be asked (the value on every Linux architecture in use).
fn clock_ticks_per_sec() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// The TCP connections a process holds open to a local port (established, IPv4 or IPv6): its
/// socket inodes (`/proc/<pid>/fd`) matched against its network namespace's tables
/// (`/proc/<pid>/net/tcp{,6}`). `None` when `/proc` cannot tell.
pub fn connections_to(pid: u32, port: u16) -> Option<usize> {
    let inodes: std::collections::HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            l.strip_prefix("socket:[")?.strip_suffix(']').map(String::from)
        })
        .collect();
    let mut count = 0;
    for table in ["tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
            continue;
        };
        count += established_to(&text, port)
            .filter(|inode| inodes.contains(*inode))
            .count();
    }
    Some(count)
}

/// The inodes of established sockets whose remote port is `port` in a `/proc/net/tcp` table.
fn established_to(table: &str, port: u16) -> impl Iterator<Item = &str> {
    let want = format!("{port:04X}");
    table.lines().skip(1).filter_map(move |line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let remote_port = f.get(2)?.rsplit(':').next()?;
        (remote_port == want && *f.get(3)? == "01").then_some(*f.get(9)?)
    })
}

/// Samples a process's connections to a port every 100 ms until stopped: the peak seen.
pub struct ConnectionSampler {
    peak: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl ConnectionSampler {
    /// Starts sampling `pid`'s connections to `port` (nothing is sampled without a pid).
    pub fn start(pid: Option<u32>, port: u16) -> Self {
        let peak = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = peak.clone();
        let task = tokio::spawn(async move {
            let Some(pid) = pid else { return };
            while let Some(n) = connections_to(pid, port) {
                seen.fetch_max(n, std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Self { peak, task }
    }

    /// Stops sampling and returns the peak.
    pub fn finish(self) -> usize {
        self.task.abort();
        self.peak.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The token controller's reconciles so far, from the operator's `/metrics`
/// (`gitlab_token_operator_reconciles_total{controller="token",…}`, every result).
pub async fn token_reconciles(metrics_addr: &str) -> Option<u64> {
    let body = reqwest::get(format!("http://{metrics_addr}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    Some(reconciles_in(&body, "token"))
}

/// The sum of `gitlab_token_operator_reconciles_total` over every result of one controller.
fn reconciles_in(exposition: &str, controller: &str) -> u64 {
    let label = format!("controller=\"{controller}\"");
    exposition
        .lines()
        .filter(|l| l.starts_with("gitlab_token_operator_reconciles_total{") && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// The soft limit on open files of this process (`/proc/self/limits`).
pub fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_hide_ids_and_paths() {
        let cases = [
            ("/projects/acme%2Fscale%2Fp-1", "/projects/:id"),
            ("/projects/12/access_tokens", "/projects/:id/access_tokens"),
            (
                "/projects/12/access_tokens/7/rotate",
                "/projects/:id/access_tokens/:id/rotate",
            ),
            ("/projects/12/members/all/40", "/projects/:id/members/all/:id"),
            ("/user", "/user"),
        ];
        for (path, want) in cases {
            assert_eq!(endpoint(path), want, "{path}");
        }
    }

    #[test]
    fn cpu_ticks_are_utime_plus_stime_even_with_spaces_in_comm() {
        let stat = "4242 (gitlab token op) S 1 2 3 4 5 6 7 8 9 10 150 25 0 0 20 0 8 0";
        assert_eq!(cpu_ticks(stat), Some(175));
    }

    #[test]
    fn writes_are_told_from_reads() {
        let mut t = Traffic::default();
        t.gitlab.insert("GET /projects/:id".into(), 3);
        t.gitlab.insert("POST /projects/:id/access_tokens".into(), 2);
        t.kube.insert("get gitlabtokens".into(), 4);
        t.kube.insert("patch gitlabtokens/status".into(), 5);
        t.kube.insert("watch secrets".into(), 1);
        assert_eq!((t.gitlab_total(), t.gitlab_writes()), (5, 2));
        assert_eq!((t.kube_total(), t.kube_writes()), (10, 5));
    }

    #[test]
    fn established_sockets_to_a_port_are_found_by_remote_port_and_state() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:9C40 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 111 1 0 20 4 30 10 -1
   1: 0100007F:9C41 0100007F:1F90 06 00000000:00000000 00:00000000 00000000     0        0 112 1 0 20 4 30 10 -1
   2: 0100007F:9C42 0100007F:1F91 01 00000000:00000000 00:00000000 00000000     0        0 113 1 0 20 4 30 10 -1
   3: 0100007F:1F90 0100007F:9C43 01 00000000:00000000 00:00000000 00000000     0        0 114 1 0 20 4 30 10 -1";
        // Port 8080 is 1F90: only the established socket whose remote end is 8080.
        assert_eq!(established_to(table, 8080).collect::<Vec<_>>(), vec!["111"]);
    }

    #[tokio::test]
    async fn this_process_connections_to_a_listener_are_counted() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let a = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let b = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let (_x, _) = listener.accept().await.unwrap();
        let (_y, _) = listener.accept().await.unwrap();
        assert_eq!(connections_to(std::process::id(), port), Some(2));
        drop((a, b));
    }

    #[test]
    fn token_reconciles_sum_every_result_of_the_token_controller() {
        let body = "# TYPE gitlab_token_operator_reconciles counter
gitlab_token_operator_reconciles_total{controller=\"token\",result=\"success\"} 10
gitlab_token_operator_reconciles_total{controller=\"token\",result=\"Conflict\"} 2
gitlab_token_operator_reconciles_total{controller=\"shim\",result=\"success\"} 7
";
        assert_eq!(reconciles_in(body, "token"), 12);
    }

    #[test]
    fn this_process_has_stats() {
        let stats = proc_stats(std::process::id()).expect("/proc is mounted");
        assert!(stats.peak_rss_mib > 0.0 && stats.peak_rss_mib >= stats.rss_mib * 0.99);
    }
}
