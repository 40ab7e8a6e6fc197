//! Printing for the sandbox: timestamped lines readable in a terminal and in CI logs (no cursor
//! movement; colour only when asked, i.e. when stdout is a terminal and `NO_COLOR` is unset).

use std::{
    io::{IsTerminal, Write},
    time::Instant,
};

/// One row of the final summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepResult {
    /// What was done.
    pub step: String,
    /// What should have happened.
    pub expected: String,
    /// What was seen.
    pub observed: String,
    /// Whether observed matched expected.
    pub ok: bool,
}

/// Writes the sandbox's output.
#[derive(Debug)]
pub struct View {
    start: Instant,
    color: bool,
    quiet: bool,
}

const GREEN: &str = "\x1b[32m";
const RED: &str = "\x1b[31m";
const DIM: &str = "\x1b[2m";
const BOLD: &str = "\x1b[1m";
const RESET: &str = "\x1b[0m";

/// Whether stdout should get colour: a terminal, and `NO_COLOR` unset.
pub fn color_wanted() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

impl View {
    /// A view whose clock starts now.
    pub fn new(color: bool) -> Self {
        Self {
            start: Instant::now(),
            color,
            quiet: false,
        }
    }

    /// A view that prints nothing (unit tests).
    #[cfg(test)]
    pub(crate) fn silent() -> Self {
        Self {
            quiet: true,
            ..Self::new(false)
        }
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("{code}{text}{RESET}")
        } else {
            text.to_string()
        }
    }

    fn stamp(&self) -> String {
        let secs = self.start.elapsed().as_secs_f64();
        self.paint(DIM, &format!("[{secs:6.1}s]"))
    }

    fn line(&self, text: &str) {
        if self.quiet {
            return;
        }
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }

    /// Seconds since the view started.
    pub fn elapsed_secs(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// A section heading.
    pub fn heading(&self, text: &str) {
        self.line("");
        self.line(&self.paint(BOLD, &format!("== {text}")));
    }

    /// A finished step: `✓` or `✗` and what was observed.
    pub fn step(&self, ok: bool, text: &str) {
        let mark = if ok {
            self.paint(GREEN, "✓")
        } else {
            self.paint(RED, "✗")
        };
        self.line(&format!("{} {mark} {text}", self.stamp()));
    }

    /// A plain informational line.
    pub fn info(&self, text: &str) {
        self.line(&format!("{}   {text}", self.stamp()));
    }

    /// A live-view transition: `tag` names what changed (token, secret, flux, gitlab).
    pub fn event(&self, tag: &str, text: &str) {
        let tag = self.paint(DIM, &format!("{tag:<7}"));
        self.line(&format!("{}   · {tag} {text}", self.stamp()));
    }

    /// The final table and the verdict line.
    pub fn summary(&self, rows: &[StepResult]) {
        self.heading("Summary");
        for line in summary_lines(rows) {
            let painted = if self.color && line.starts_with("✗") {
                self.paint(RED, &line)
            } else {
                line
            };
            self.line(&painted);
        }
        let failed = rows.iter().filter(|r| !r.ok).count();
        let verdict = if failed == 0 {
            self.paint(GREEN, &format!("sandbox: all {} steps passed", rows.len()))
        } else {
            self.paint(RED, &format!("sandbox: {failed} of {} steps FAILED", rows.len()))
        };
        self.line("");
        self.line(&verdict);
    }
}

/// Cuts `s` to at most `max` characters, marking the cut with `…`.
pub fn clip(s: &str, max: usize) -> String {
    let s = s.replace('\n', " ");
    if s.chars().count() <= max {
        s
    } else {
        let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

/// The summary table as lines: mark, step, expected, observed, in aligned columns.
pub fn summary_lines(rows: &[StepResult]) -> Vec<String> {
    let clipped: Vec<(String, String, String, bool)> = rows
        .iter()
        .map(|r| {
            (
                clip(&r.step, 52),
                clip(&r.expected, 32),
                clip(&r.observed, 64),
                r.ok,
            )
        })
        .collect();
    let width = |f: fn(&(String, String, String, bool)) -> &String, title: &str| {
        clipped
            .iter()
            .map(|r| f(r).chars().count())
            .chain([title.chars().count()])
            .max()
            .unwrap_or(0)
    };
    let w_step = width(|r| &r.0, "step");
    let w_exp = width(|r| &r.1, "expected");
    let pad = |s: &str, w: usize| format!("{s}{}", " ".repeat(w.saturating_sub(s.chars().count())));
    let mut lines = vec![format!(
        "  {}  {}  observed",
        pad("step", w_step),
        pad("expected", w_exp)
    )];
    for (step, expected, observed, ok) in clipped {
        let mark = if ok { "✓" } else { "✗" };
        lines.push(format!(
            "{mark} {}  {}  {observed}",
            pad(&step, w_step),
            pad(&expected, w_exp)
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_cuts_long_text_and_keeps_short_text() {
        for (input, max, want) in [
            ("short", 10, "short"),
            ("exactly-10", 10, "exactly-10"),
            ("a longer sentence", 8, "a longe…"),
            ("two\nlines", 20, "two lines"),
            ("ünïcödé", 4, "ünï…"),
        ] {
            assert_eq!(clip(input, max), want, "{input:?}");
        }
    }

    #[test]
    fn summary_aligns_columns_and_marks_failures() {
        let rows = vec![
            StepResult {
                step: "git".into(),
                expected: "clones".into(),
                observed: "main@sha1:abc".into(),
                ok: true,
            },
            StepResult {
                step: "renewal".into(),
                expected: "new token".into(),
                observed: "timed out".into(),
                ok: false,
            },
        ];
        let lines = summary_lines(&rows);
        assert_eq!(lines[0], "  step     expected   observed");
        assert_eq!(lines[1], "✓ git      clones     main@sha1:abc");
        assert_eq!(lines[2], "✗ renewal  new token  timed out");
    }
}
