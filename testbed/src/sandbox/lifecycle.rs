//! The rest of a token's life: the clock moves past one token's renewal time and it is rotated
//! (new token works, old one revoked and refused, the others untouched); a source is deleted and
//! its token revoked; and no token value ever reached the operator's log.

use chrono::{DateTime, Utc};
use k8s_openapi::api::events::v1::Event;
use kube::api::DeleteParams;
use serde_json::Value;

use super::{
    checks::eventually,
    proofs,
    scenario::{Issued, Scenario, secret_value, token_id},
    sources::Proof,
};

/// How far past the renewal time the clock is moved.
const PAST_RENEWAL: chrono::Duration = chrono::Duration::hours(1);

/// The clock move needed to get `margin` past `renewal` from `now` (at least `margin`).
pub fn clock_move(now: DateTime<Utc>, renewal: DateTime<Utc>, margin: chrono::Duration) -> chrono::Duration {
    (renewal - now + margin).max(margin)
}

/// `3d 4h` style rendering of a positive duration.
pub fn human(d: chrono::Duration) -> String {
    let (days, hours, minutes) = (d.num_days(), d.num_hours() % 24, d.num_minutes() % 60);
    match (days, hours) {
        (0, 0) => format!("{minutes}m"),
        (0, h) => format!("{h}h {minutes}m"),
        (d, h) => format!("{d}d {h}h"),
    }
}

impl Scenario<'_> {
    fn gitlab_state(&self, id: u64) -> Option<String> {
        self.world
            .gitlab
            .tokens()
            .into_iter()
            .find(|t| t.id == id)
            .map(|t| t.state)
    }

    async fn wait_gitlab_state(&self, id: u64, state: &str) -> Result<(), String> {
        eventually(self.wait, || {
            let now = self.gitlab_state(id);
            async move { (now.as_deref() == Some(state)).then_some(()) }
        })
        .await
        .ok_or_else(|| {
            format!(
                "token #{id} is {} after {:?}",
                self.gitlab_state(id).unwrap_or_else(|| "unknown".into()),
                self.wait
            )
        })
    }

    /// Moves the clock past `rotated`'s renewal time and follows the rotation.
    pub async fn renewal(&mut self, rotated: &Issued, others: &[Issued]) {
        let case = &rotated.case;
        let label = format!("renewal of {}", case.secret);
        let token = self.tokens().get_opt(&case.secret).await.ok().flatten();
        let renewal = token
            .as_ref()
            .and_then(|t| t.data.pointer("/status/renewalTime"))
            .and_then(Value::as_str)
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|d| d.with_timezone(&Utc));
        let Some(renewal) = renewal else {
            self.note(
                &label,
                "a renewal time",
                Err("the token has no status.renewalTime".into()),
            )
            .await;
            return;
        };
        let old_secret = self.secret(&case.secret).await;
        let by = clock_move(self.world.gitlab.clock().now(), renewal, PAST_RENEWAL);
        if let Err(e) = self.world.advance_clock(by) {
            self.note(&label, "the clock moves", Err(e.to_string())).await;
            return;
        }
        self.view.info(&format!(
            "moved the clock forward {} (GitLab and the operator now at {}), past {}'s renewal time {renewal}",
            human(by),
            self.world.gitlab.clock().now().format("%Y-%m-%d %H:%M UTC"),
            case.secret
        ));
        let old = rotated.token_id;
        let outcome = match self
            .wait_object(&self.tokens(), &case.secret, |t| {
                token_id(t).is_some_and(|id| id != old)
            })
            .await
        {
            Ok(t) => Ok(format!(
                "#{old} → #{}, expires {}",
                token_id(&t).unwrap_or_default(),
                t.pointer("/status/current/expiresAt")
                    .and_then(Value::as_str)
                    .unwrap_or("?")
            )),
            Err(_) => Err(format!("still #{old} after {:?}", self.wait)),
        };
        if !self
            .ledger
            .record(&format!("{label}: new token"), "a new token id", outcome)
        {
            return;
        }
        let revoked = self
            .wait_gitlab_state(old, "revoked")
            .await
            .map(|()| format!("GitLab: #{old} revoked"));
        self.note(
            &format!("{label}: old token revoked"),
            "old token revoked",
            revoked,
        )
        .await;
        if let (Proof::Git(url), Some(s)) = (&case.proof, &old_secret) {
            let (user, pass) = (secret_value(s, "username"), secret_value(s, "password"));
            let refused = old_refused(url, &user, &pass).await;
            self.note(&format!("{label}: old token refused"), "git refuses it", refused)
                .await;
        }

        let secret = eventually(self.wait, || async {
            let s = self.secret(&case.secret).await?;
            let id = s
                .metadata
                .annotations
                .as_ref()?
                .get("gitlabtokens.io/token-id")?
                .clone();
            (id != old.to_string()).then_some(s)
        })
        .await;
        match secret {
            Some(new) => {
                self.values.push(secret_value(&new, "password"));
                let works = self.prove(case, &new).await;
                self.note(&format!("{label}: new Secret works"), "accepted", works)
                    .await;
            }
            None => {
                let why = format!("the Secret still carries #{old} after {:?}", self.wait);
                self.note(&format!("{label}: new Secret works"), "accepted", Err(why))
                    .await;
            }
        }
        self.others_untouched(others).await;
    }

    async fn others_untouched(&self, others: &[Issued]) {
        let mut moved = Vec::new();
        for other in others {
            let now = self.tokens().get_opt(&other.case.secret).await.ok().flatten();
            let id = now.as_ref().and_then(|t| token_id(&t.data));
            if id != Some(other.token_id) {
                moved.push(format!("{} #{} → {id:?}", other.case.secret, other.token_id));
            }
        }
        let outcome = if moved.is_empty() {
            Ok(format!(
                "{} tokens with later renewal times kept their ids",
                others.len()
            ))
        } else {
            Err(moved.join("; "))
        };
        self.note("renewal: other tokens untouched", "no other rotation", outcome)
            .await;
    }

    /// Deletes `gone`'s source and follows the revocation of its token.
    pub async fn deletion(&self, gone: &Issued) {
        let case = &gone.case;
        let label = format!("delete {} {}", case.label, case.name);
        let api: kube::Api<kube::api::DynamicObject> =
            kube::Api::namespaced_with(self.client.clone(), super::sources::TENANT_NS, &case.resource);
        if let Err(e) = api.delete(case.name, &DeleteParams::default()).await {
            self.note(&label, "the source is deleted", Err(e.to_string()))
                .await;
            return;
        }
        self.view.info(&format!(
            "deleted {} {}/{}",
            case.label,
            super::sources::TENANT_NS,
            case.name
        ));
        let tokens = self.tokens();
        let removed = eventually(self.wait, || {
            let tokens = tokens.clone();
            async move { matches!(tokens.get_opt(&case.secret).await, Ok(None)).then_some(()) }
        })
        .await;
        let outcome = match removed {
            Some(()) => Ok(format!("GitLabToken {} deleted", case.secret)),
            None => Err(format!(
                "GitLabToken {} still exists after {:?}",
                case.secret, self.wait
            )),
        };
        self.note(&format!("{label}: GitLabToken removed"), "removed", outcome)
            .await;
        let id = gone.token_id;
        let revoked = self
            .wait_gitlab_state(id, "revoked")
            .await
            .map(|()| format!("GitLab: #{id} revoked"));
        self.note(&format!("{label}: token revoked"), "revoked in GitLab", revoked)
            .await;
    }

    /// Shows `kubectl get gitlabtokens -o wide`, which must list exactly `names` with their
    /// project and readiness columns.
    pub async fn kubectl_view(&self, names: &[String]) {
        let kubeconfig = self.world.kubeconfig_path();
        let table = proofs::kubectl_get_tokens(&kubeconfig, super::sources::TENANT_NS).await;
        let outcome = table.and_then(|table| {
            // Table rows are not wrapped: the columns that do not fit are left out (and named).
            let (rows, left_out) = super::view::fit_table(&table, self.view.width().saturating_sub(2));
            for row in rows {
                self.view.verbatim(&format!("  {row}"));
            }
            if !left_out.is_empty() {
                self.view.plain(
                    "  ",
                    &format!(
                        "(not shown, to fit {} columns: {}; checked all the same)",
                        self.view.width(),
                        left_out.join(", ")
                    ),
                );
            }
            check_token_table(&table, names)
        });
        self.note("kubectl get gitlabtokens", "every token, its project", outcome)
            .await;
    }

    /// Waits until the tenant namespace holds an Event with each (GitLabToken name, reason) of `want`.
    pub async fn events_recorded(&self, want: &[(&str, &str)]) {
        let api: kube::Api<Event> = kube::Api::namespaced(self.client.clone(), super::sources::TENANT_NS);
        let missing: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
        let found = eventually(self.wait, || {
            let api = api.clone();
            let out = &missing;
            async move {
                let list = api.list(&Default::default()).await.ok()?;
                let seen: Vec<(String, String)> = list
                    .items
                    .iter()
                    .filter_map(|e| {
                        let r = e
                            .regarding
                            .as_ref()
                            .filter(|r| r.kind.as_deref() == Some("GitLabToken"))?;
                        Some((r.name.clone()?, e.reason.clone()?))
                    })
                    .collect();
                let absent = missing_events(&seen, want);
                let done = absent.is_empty();
                if let Ok(mut m) = out.lock() {
                    *m = absent;
                }
                done.then_some(seen.len())
            }
        })
        .await;
        let outcome = match found {
            Some(n) => Ok(format!(
                "{} expected among {n} events on GitLabTokens",
                want.len()
            )),
            None => {
                let absent = missing.lock().map(|m| m.join(", ")).unwrap_or_default();
                Err(format!("missing after {:?}: {absent}", self.wait))
            }
        };
        let expected = "Issued, Rotated, Revoked, PolicyDenied";
        self.note("Kubernetes events", expected, outcome).await;
    }

    /// No token value written to a Secret appears in the operator's log.
    pub async fn no_leaks(&self, log: &str) {
        let values: Vec<&String> = self.values.iter().filter(|v| v.len() >= 8).collect();
        let leaked = values.iter().filter(|v| log.contains(v.as_str())).count();
        let outcome = if values.is_empty() {
            Err("no token values were collected to check".into())
        } else if leaked == 0 {
            Ok(format!(
                "none of {} token values in {} bytes of log",
                values.len(),
                log.len()
            ))
        } else {
            Err(format!("{leaked} token values appear in the operator's log"))
        };
        self.note("operator log", "no token value", outcome).await;
    }
}

/// The (name, reason) pairs of `want` that `seen` lacks, as `name: reason`.
pub fn missing_events(seen: &[(String, String)], want: &[(&str, &str)]) -> Vec<String> {
    want.iter()
        .filter(|(name, reason)| !seen.iter().any(|(n, r)| n == name && r == reason))
        .map(|(name, reason)| format!("{name}: {reason}"))
        .collect()
}

/// Checks that a `kubectl get gitlabtokens -o wide` table has the printer columns and exactly the
/// rows `names`.
pub fn check_token_table(table: &str, names: &[String]) -> Result<String, String> {
    let mut lines = table.lines();
    let header = lines.next().unwrap_or_default();
    for column in ["NAME", "READY", "PROJECT", "EXPIRES", "RENEWAL", "REASON"] {
        if !header.split_whitespace().any(|c| c == column) {
            return Err(format!("column {column} missing from {header:?}"));
        }
    }
    let mut rows: Vec<&str> = lines.filter_map(|l| l.split_whitespace().next()).collect();
    rows.sort_unstable();
    let mut want: Vec<&str> = names.iter().map(String::as_str).collect();
    want.sort_unstable();
    if rows == want {
        Ok(format!(
            "{} tokens listed with Ready, Reason, Project, Expires, Renewal",
            rows.len()
        ))
    } else {
        Err(format!("listed {rows:?}, expected {want:?}"))
    }
}

/// The revoked credentials must now be refused by GitLab (git for basic-auth Secrets).
pub async fn old_refused(url: &str, user: &str, pass: &str) -> Result<String, String> {
    match proofs::git_ls_remote(url, user, pass).await {
        Ok(_) => Err("the revoked token still lists refs".into()),
        Err(e) if refused(&e) => Ok("git refuses the old token".into()),
        Err(e) => Err(format!("unexpected failure: {e}")),
    }
}

/// Whether git's error says the server refused the credentials: either outright, or by asking for
/// other credentials (which it cannot, prompts being disabled).
pub fn refused(git_error: &str) -> bool {
    [
        "Authentication failed",
        "could not read Username",
        "The requested URL returned error: 401",
        "error: 403",
    ]
    .iter()
    .any(|m| git_error.contains(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_moves_just_past_the_renewal_time_and_never_backwards() {
        let now = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let h = chrono::Duration::hours;
        for (renewal_in, want) in [(h(120), h(121)), (h(0), h(1)), (h(-5), h(1))] {
            assert_eq!(clock_move(now, now + renewal_in, h(1)), want, "{renewal_in}");
        }
    }

    #[test]
    fn git_refusals_are_told_from_other_failures() {
        for (err, want) in [
            ("fatal: Authentication failed for 'http://h/a.git/'", true),
            (
                "fatal: could not read Username for 'http://h': terminal prompts disabled",
                true,
            ),
            ("fatal: unable to access 'http://h/': Failed to connect", false),
            ("fatal: repository 'http://h/x.git/' not found", false),
        ] {
            assert_eq!(refused(err), want, "{err}");
        }
    }

    #[test]
    fn the_token_table_needs_its_columns_and_exactly_the_expected_rows() {
        let header = "NAME   READY   REASON   PROJECT   EXPIRES   RENEWAL   AGE";
        let table = format!(
            "{header}\nb   True   Issued   acme/x   2026-12-01   3d   5s\na   False   PolicyDenied   o/p   <none>   <none>   5s\n"
        );
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(check_token_table(&table, &names(&["a", "b"])).is_ok());
        assert!(
            check_token_table(&table, &names(&["a"]))
                .unwrap_err()
                .contains("listed")
        );
        assert!(check_token_table(&table, &names(&["a", "b", "c"])).is_err());
        let no_project = "NAME READY REASON EXPIRES RENEWAL\na True Issued x y\n";
        assert!(
            check_token_table(no_project, &names(&["a"]))
                .unwrap_err()
                .contains("PROJECT")
        );
    }

    #[test]
    fn missing_events_lists_each_absent_pair() {
        let seen = vec![
            ("a".to_string(), "Issued".to_string()),
            ("b".to_string(), "Revoked".to_string()),
        ];
        assert!(missing_events(&seen, &[("a", "Issued"), ("b", "Revoked")]).is_empty());
        assert_eq!(
            missing_events(&seen, &[("a", "Revoked"), ("b", "Revoked"), ("c", "Issued")]),
            vec!["a: Revoked", "c: Issued"]
        );
    }

    #[test]
    fn durations_render_compactly() {
        for (d, want) in [
            (chrono::Duration::minutes(5), "5m"),
            (chrono::Duration::minutes(65), "1h 5m"),
            (chrono::Duration::hours(121), "5d 1h"),
        ] {
            assert_eq!(human(d), want);
        }
    }
}
