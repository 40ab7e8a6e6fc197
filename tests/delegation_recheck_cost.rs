//! Issue 11, re-check cost (issue 10's scale targets): what the continuous re-check of delegated
//! access costs in GitLab calls, counted against the GitLab emulator with the operator's own
//! cache and refresher step (`DelegationCache::refresh_one`) on a simulated clock. N tokens over
//! P projects in S namespaces under G top-level groups, each asking at its own phase once an
//! interval as the token controller does; K intervals of re-checks. Asserted on counts only:
//! - every answer is re-asked exactly once per interval, whatever the number of tokens;
//! - group identities cost one listing per namespace (not one read per project) plus one read
//!   per ancestor group; user identities one `members/all/:id` per (user, project);
//! - a token's own look finds its answers cached (zero calls);
//! - an unshare is found within one interval of simulated time and wakes exactly the tokens
//!   that used the answer.
//!
//! Run: `buildslot cargo test --test delegation_recheck_cost -- --nocapture` (prints the figures).

use std::{collections::BTreeMap, time::Duration};

use chrono::{DateTime, TimeDelta, Utc};
use gitlab_token_operator::{
    controller::delegation::{DelegationCache, TokenRef, answer_max_age, next_recheck},
    gitlab::{ClientConfig, GitLabClient},
    policy::delegation::Identity,
};
use secrecy::SecretString;
use testbed::gitlab::{
    GitLabConfig, GitLabHandle, GitLabServer,
    seed::{GroupSeed, MemberSeed, ProjectSeed, ShareSeed, TokenSeed, UserSeed},
};

const INTERVAL: Duration = Duration::from_secs(300);
const TEAMS: usize = 4;
const CONNECTION: &str = "gitlab";
/// What the previous design cost (measured): 2.0–2.5 calls per project and half interval.
const BEFORE_PER_PROJECT_DAY: &str = "1,150–1,440";

/// The size of one run.
#[derive(Clone, Copy, Debug)]
struct Shape {
    top_groups: usize,
    subgroups: usize,
    per_namespace: usize,
    tokens: usize,
    intervals: i64,
}

fn project_path(g: usize, s: usize, k: usize) -> String {
    format!("org-{g}/sub-{s}/app-{k}")
}

/// The team a project is shared with (Developer), and the team its namespace is (Reporter).
fn project_team(p: usize) -> usize {
    p % TEAMS
}

fn namespace_team(g: usize, s: usize) -> usize {
    (g * 7 + s + 1) % TEAMS
}

struct World {
    gitlab: GitLabHandle,
    client: GitLabClient,
    projects: Vec<(String, usize, usize)>,
}

async fn world(shape: Shape) -> World {
    let gitlab = GitLabServer::start(GitLabConfig::default())
        .await
        .expect("gitlab");
    let seed = gitlab.seed();
    seed.user(UserSeed {
        username: "operator".into(),
        admin: true,
        ..Default::default()
    })
    .expect("operator");
    seed.user(UserSeed {
        username: "svc-0".into(),
        ..Default::default()
    })
    .expect("svc-0");
    let (_, token) = seed
        .personal_token(TokenSeed {
            username: "operator".into(),
            name: "operator".into(),
            scopes: vec!["api".into()],
            expires_at: None,
        })
        .expect("token");
    for t in 0..TEAMS {
        seed.group(GroupSeed {
            full_path: format!("teams/team-{t}"),
            ..Default::default()
        })
        .expect("team");
    }
    let mut projects = Vec::new();
    for g in 0..shape.top_groups {
        for s in 0..shape.subgroups {
            for k in 0..shape.per_namespace {
                let path = project_path(g, s, k);
                seed.project(ProjectSeed {
                    full_path: path.clone(),
                    ..Default::default()
                })
                .expect("project");
                projects.push((path, g, s));
            }
            seed.share(ShareSeed {
                path: format!("org-{g}/sub-{s}"),
                group: format!("teams/team-{}", namespace_team(g, s)),
                group_access: 20,
                expires_at: None,
            })
            .expect("namespace share");
        }
        seed.member(MemberSeed {
            username: "svc-0".into(),
            path: format!("org-{g}"),
            access_level: 30,
            expires_at: None,
        })
        .expect("member");
    }
    for (p, (path, _, _)) in projects.iter().enumerate() {
        seed.share(ShareSeed {
            path: path.clone(),
            group: format!("teams/team-{}", project_team(p)),
            group_access: 30,
            expires_at: None,
        })
        .expect("project share");
    }
    let mut config = ClientConfig::new(gitlab.url(), SecretString::from(token));
    config.rate_limit.requests_per_second = 10_000.0;
    config.rate_limit.burst = 10_000;
    config.project_read_limit = None;
    let client = GitLabClient::new(config).expect("client");
    World {
        gitlab,
        client,
        projects,
    }
}

/// Token `i`: its project, its identity (every fifth a user, else its project's team), its seed.
fn token(i: usize, projects: &[(String, usize, usize)]) -> (TokenRef, Identity, String, u64) {
    let p = i % projects.len();
    let identity = if i.is_multiple_of(5) {
        Identity::User("svc-0".into())
    } else {
        Identity::Group(format!("teams/team-{}", project_team(p)))
    };
    let r = TokenRef {
        namespace: format!("ns-{}", i % 37),
        name: format!("token-{i}"),
    };
    (
        r,
        identity,
        projects[p].0.clone(),
        gitlab_token_operator::schedule::mix(i as u64),
    )
}

fn delegation_calls(gitlab: &GitLabHandle, from: usize) -> Vec<String> {
    gitlab
        .calls()
        .into_iter()
        .skip(from)
        .filter(|c| c.method == "GET")
        .map(|c| endpoint(&c.path))
        .collect()
}

/// A call's endpoint shape, for the table.
fn endpoint(path: &str) -> String {
    let path = path.split('?').next().unwrap_or_default();
    if path.ends_with("/projects") && path.starts_with("/api/v4/groups/") {
        "GET /groups/:id/projects".into()
    } else if path.starts_with("/api/v4/groups/") {
        "GET /groups/:id".into()
    } else if path.contains("/members/all/") {
        "GET /projects/:id/members/all/:user_id".into()
    } else if path.starts_with("/api/v4/projects/") {
        "GET /projects/:id".into()
    } else if path == "/api/v4/users" {
        "GET /users?username=".into()
    } else {
        path.into()
    }
}

fn by_endpoint(calls: &[String]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for c in calls {
        *m.entry(c.clone()).or_default() += 1;
    }
    m
}

/// Runs every re-check due at `now`; returns the tokens woken by changed answers.
async fn refresh_due(cache: &DelegationCache, client: &GitLabClient, now: DateTime<Utc>) -> Vec<TokenRef> {
    let mut woken = Vec::new();
    while let Some(outcome) = cache.refresh_one(CONNECTION, client, now, INTERVAL).await {
        let r = outcome.expect("GitLab answers");
        if r.changed {
            woken.extend(r.dependents);
        }
    }
    woken
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recheck_costs_one_call_per_answer_and_interval_whatever_the_number_of_tokens() {
    run(Shape {
        top_groups: 4,
        subgroups: 2,
        per_namespace: 5,
        tokens: 400,
        intervals: 12,
    })
    .await;
}

/// Issue 10's shape: 10,000 tokens over 1,000 projects in 100 namespaces under 10 groups.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_issue_10s_scale_the_recheck_costs_a_few_percent_of_gitlab_coms_budget() {
    let calls_per_interval = run(Shape {
        top_groups: 10,
        subgroups: 10,
        per_namespace: 10,
        tokens: 10_000,
        intervals: 2,
    })
    .await;
    // GitLab.com allows 2,000 authenticated requests a minute.
    let per_minute = calls_per_interval / 5.0;
    eprintln!(
        "issue 10 shape: {per_minute:.1} re-check calls a minute = {:.1}% of GitLab.com's 2,000",
        per_minute / 20.0
    );
    assert!(per_minute <= 100.0, "{per_minute}");
}

/// Runs one shape; returns the re-check calls per interval.
async fn run(shape: Shape) -> f64 {
    let (top_groups, subgroups, n_tokens, intervals) =
        (shape.top_groups, shape.subgroups, shape.tokens, shape.intervals);
    let w = world(shape).await;
    let cache = DelegationCache::default();
    let start = DateTime::from_timestamp(1_800_000_000, 0).expect("time");
    let max_age = answer_max_age(INTERVAL);
    let tokens: Vec<_> = (0..n_tokens).map(|i| token(i, &w.projects)).collect();

    // Every token asks once (as at issue): answers are shared from the first ask on.
    let before = w.gitlab.calls().len();
    for (r, who, project, _) in &tokens {
        let e = cache
            .effective_for(CONNECTION, &w.client, who, project, start, max_age, Some(r))
            .await
            .expect("effective");
        assert!(e.raw >= 30, "{who} on {project}: {e:?}");
    }
    let first = delegation_calls(&w.gitlab, before);
    let answers = cache.refreshed_answers(CONNECTION);
    let namespaces = top_groups * subgroups;
    let projects = w.projects.len();
    // Group identities: a listing per namespace and a read per ancestor group (top + sub);
    // the user identity: one members/all per project it asks about.
    let user_projects: std::collections::BTreeSet<_> = tokens
        .iter()
        .filter(|t| matches!(t.1, Identity::User(_)))
        .map(|t| t.2.clone())
        .collect();
    let bound = namespaces + top_groups + namespaces + user_projects.len();
    eprintln!(
        "first asks of {n_tokens} tokens: {} calls {:?}; {answers} answers re-checked (bound {bound})",
        first.len(),
        by_endpoint(&first)
    );
    assert!(answers <= bound, "{answers} answers > {bound}");

    // K intervals: steps of 10 s; each token looks at its answers on its own phase (the
    // controller's safety net), the refresher re-asks what is due.
    let step = TimeDelta::seconds(10);
    let steps = intervals * 300 / 10;
    let before = w.gitlab.calls().len();
    let mut woken = 0;
    let mut own_look_calls = Vec::new();
    for n in 1..=steps {
        let now = start + step * (n as i32);
        let prev = now - step;
        for (r, who, project, seed) in &tokens {
            let due = prev + TimeDelta::from_std(next_recheck(INTERVAL, *seed, prev)).expect("delta");
            if due <= now {
                let mark = w.gitlab.calls().len();
                cache
                    .effective_for(CONNECTION, &w.client, who, project, now, max_age, Some(r))
                    .await
                    .expect("effective");
                own_look_calls.extend(delegation_calls(&w.gitlab, mark));
            }
        }
        woken += refresh_due(&cache, &w.client, now).await.len();
    }
    let steady = delegation_calls(&w.gitlab, before);
    let per_interval = steady.len() as f64 / intervals as f64;
    let per_project_day = per_interval * 288.0 / projects as f64;
    let per_token_day = per_interval * 288.0 / n_tokens as f64;
    eprintln!(
        "steady state over {intervals} intervals of {INTERVAL:?}: {} calls = {per_interval:.1} per interval \
         ({answers} answers) = {per_project_day:.1} calls/project/day, {per_token_day:.2} calls/token/day \
         ({n_tokens} tokens, {projects} projects, {namespaces} namespaces, {top_groups} top groups); \
         by endpoint {:?} (before: {BEFORE_PER_PROJECT_DAY} calls/project/day)",
        steady.len(),
        by_endpoint(&steady),
    );
    // A token's own look finds its answers cached; only a user id is read again after an hour.
    assert!(
        own_look_calls.iter().all(|c| c == "GET /users?username=")
            && own_look_calls.len() as i64 <= intervals * 300 / 3600 + 1,
        "{own_look_calls:?}"
    );
    assert_eq!(woken, 0, "nothing changed in GitLab, nothing woken");
    let k = intervals as usize;
    assert!(
        steady.len() <= answers * (k + 1) && steady.len() >= answers * (k - 1),
        "one call per answer and interval: {} calls, {answers} answers, {k} intervals",
        steady.len()
    );
    assert!(
        !by_endpoint(&steady).contains_key("GET /projects/:id"),
        "group identities read namespace listings, not projects one by one"
    );

    // Unshare one project from its team: found within one interval, waking exactly the tokens
    // that used the namespace listing.
    let (p, (path, g, s)) = w
        .projects
        .iter()
        .enumerate()
        .find(|(p, (_, g, s))| project_team(*p) != namespace_team(*g, *s))
        .expect("a project whose team only has the project share");
    let team = format!("teams/team-{}", project_team(p));
    w.gitlab
        .seed()
        .share(ShareSeed {
            path: path.clone(),
            group: team.clone(),
            group_access: 0,
            expires_at: None,
        })
        .expect("unshare");
    let changed_at = start + step * (steps as i32);
    let mut found = None;
    for n in 1..=(300 / 10 + 1) {
        let now = changed_at + step * n;
        let woken = refresh_due(&cache, &w.client, now).await;
        if !woken.is_empty() {
            found = Some((now - changed_at, woken));
            break;
        }
    }
    let (after, woken) = found.expect("the unshare is found");
    eprintln!(
        "unshare found {}s after the change (interval {}s), {} tokens woken",
        after.num_seconds(),
        INTERVAL.as_secs(),
        woken.len()
    );
    assert!(
        after <= TimeDelta::from_std(INTERVAL).expect("delta") + step,
        "{after}"
    );
    let namespace = format!("org-{g}/sub-{s}");
    let expected: std::collections::BTreeSet<_> = tokens
        .iter()
        .filter(|t| matches!(&t.1, Identity::Group(_)) && t.2.starts_with(&format!("{namespace}/")))
        .map(|t| t.0.clone())
        .collect();
    let woken: std::collections::BTreeSet<_> = woken.into_iter().collect();
    assert_eq!(woken, expected, "the tokens on the namespace's listing are woken");
    assert!(!woken.is_empty());
    let now = changed_at + after;
    let e = cache
        .effective_for(
            CONNECTION,
            &w.client,
            &Identity::Group(team),
            path,
            now,
            max_age,
            None,
        )
        .await
        .expect("effective");
    assert_eq!(e.raw, 0, "the team has no access any more: {e:?}");
    per_interval
}

/// A namespace whose listing takes more pages than the watched projects it serves is not
/// listed: after one try, its projects are read one by one (and their tokens woken once to
/// switch), so a few tokens in a huge namespace never cost a page per 100 unrelated projects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_namespace_with_few_watched_projects_is_read_project_by_project() {
    let w = world(Shape {
        top_groups: 1,
        subgroups: 1,
        per_namespace: 1,
        tokens: 0,
        intervals: 0,
    })
    .await;
    let seed = w.gitlab.seed();
    for k in 0..250 {
        seed.project(ProjectSeed {
            full_path: format!("big/ns/p{k:03}"),
            ..Default::default()
        })
        .expect("project");
    }
    for k in [7, 8] {
        seed.share(ShareSeed {
            path: format!("big/ns/p{k:03}"),
            group: "teams/team-0".into(),
            group_access: 30,
            expires_at: None,
        })
        .expect("share");
    }
    let cache = DelegationCache::default();
    let start = DateTime::from_timestamp(1_800_000_000, 0).expect("time");
    let max_age = answer_max_age(INTERVAL);
    let team = Identity::Group("teams/team-0".into());
    let tokens: Vec<(TokenRef, String)> = [7, 8]
        .iter()
        .map(|k| {
            (
                TokenRef {
                    namespace: "svc".into(),
                    name: format!("t{k}"),
                },
                format!("big/ns/p{k:03}"),
            )
        })
        .collect();
    let ask = |now| {
        let (cache, w, team, tokens) = (&cache, &w, &team, &tokens);
        async move {
            for (r, project) in tokens {
                let e = cache
                    .effective_for(CONNECTION, &w.client, team, project, now, max_age, Some(r))
                    .await
                    .expect("effective");
                assert_eq!(e.raw, 30);
            }
        }
    };
    ask(start).await;
    let step = TimeDelta::seconds(10);
    let mut woken = std::collections::BTreeSet::new();
    let before = w.gitlab.calls().len();
    for n in 1..=(4 * 30) {
        let now = start + step * n;
        let w_ = refresh_due(&cache, &w.client, now).await;
        if !w_.is_empty() {
            woken.extend(w_);
            // The woken tokens reconcile at once.
            ask(now).await;
        }
    }
    let calls = delegation_calls(&w.gitlab, before);
    let by = by_endpoint(&calls);
    eprintln!("huge namespace, 2 watched of 250 projects, 4 intervals: {by:?}");
    assert_eq!(
        woken.len(),
        2,
        "both tokens woken once, when the listing gave way"
    );
    assert_eq!(
        by.get("GET /groups/:id/projects").copied().unwrap_or(0),
        0,
        "no listing after the first: {by:?}"
    );
    // Two project reads and two group reads (big, big/ns) per interval, +1 each for the edges.
    assert!(calls.len() <= 4 * 5, "{by:?}");
}
