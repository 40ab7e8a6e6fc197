//! Steps and their verdicts: every wait has a deadline, every outcome is printed as it happens
//! and recorded for the summary.

use std::{future::Future, sync::Arc, sync::Mutex, time::Duration};

use super::view::{StepResult, View};

/// Polls `check` every 100 ms until it returns `Some`, or gives `None` after `within`.
pub async fn eventually<T, F, Fut>(within: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Records each step's verdict, printing it at once.
pub struct Ledger {
    view: Arc<View>,
    rows: Mutex<Vec<StepResult>>,
}

impl Ledger {
    /// An empty ledger printing to `view`.
    pub fn new(view: Arc<View>) -> Self {
        Self {
            view,
            rows: Mutex::new(Vec::new()),
        }
    }

    /// Records `step`: passed with what was observed (`Ok`) or failed with why (`Err`).
    /// Returns whether it passed.
    pub fn record(&self, step: &str, expected: &str, outcome: Result<String, String>) -> bool {
        let (ok, observed) = match outcome {
            Ok(o) => (true, o),
            Err(e) => (false, e),
        };
        self.view.step(ok, &format!("{step}: {observed}"));
        if let Ok(mut rows) = self.rows.lock() {
            rows.push(StepResult {
                step: step.into(),
                expected: expected.into(),
                observed,
                ok,
            });
        }
        ok
    }

    /// Every row so far.
    pub fn rows(&self) -> Vec<StepResult> {
        self.rows.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Whether every step so far passed (and there was at least one).
    pub fn all_passed(&self) -> bool {
        let rows = self.rows();
        !rows.is_empty() && rows.iter().all(|r| r.ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn eventually_returns_the_first_value_or_none_at_the_deadline() {
        let mut n = 0;
        let got = eventually(Duration::from_secs(5), || {
            n += 1;
            let v = n;
            async move { (v >= 3).then_some(v) }
        })
        .await;
        assert_eq!(got, Some(3));
        let never: Option<()> = eventually(Duration::from_millis(250), || async { None }).await;
        assert_eq!(never, None);
    }

    #[test]
    fn the_ledger_passes_only_when_every_step_passed() {
        let ledger = Ledger::new(Arc::new(View::silent()));
        assert!(!ledger.all_passed(), "no steps is not a pass");
        assert!(ledger.record("a", "x", Ok("x".into())));
        assert!(ledger.all_passed());
        assert!(!ledger.record("b", "y", Err("z".into())));
        assert!(!ledger.all_passed());
        assert_eq!(ledger.rows()[1].observed, "z");
    }
}
