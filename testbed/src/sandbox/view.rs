//! Printing for the sandbox: timestamped lines readable in an 80-column terminal and in CI logs
//! (no cursor movement; colour only when asked, i.e. when stdout is a terminal and `NO_COLOR` is
//! unset). Every line is wrapped at words to the width (`$COLUMNS`, else 80), continuation lines
//! indented under the text, so no message is ever cut.

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
    width: usize,
}

const GREEN: &str = "\x1b[32m";
const RED: &str = "\x1b[31m";
const DIM: &str = "\x1b[2m";
const BOLD: &str = "\x1b[1m";
const RESET: &str = "\x1b[0m";

/// The width the output is wrapped to when `$COLUMNS` says nothing usable.
pub const DEFAULT_WIDTH: usize = 80;

/// Whether stdout should get colour: a terminal, and `NO_COLOR` unset.
pub fn color_wanted() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// `$COLUMNS` when it is a usable width (40 or more), else [`DEFAULT_WIDTH`].
pub fn width_wanted() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|w| *w >= 40)
        .unwrap_or(DEFAULT_WIDTH)
}

/// Wraps `text` at words so that `prefix` + each line fits `width` columns; continuation lines
/// are indented by the prefix's width. A word longer than a whole line is broken (never cut).
pub fn wrap(prefix: &str, text: &str, width: usize) -> Vec<String> {
    let indent = " ".repeat(textwrap::core::display_width(prefix));
    let options = textwrap::Options::new(width.max(indent.len() + 20))
        .initial_indent(prefix)
        .subsequent_indent(&indent)
        // Names such as `team-a/app-gitlab-token` stay whole (no breaks at hyphens).
        .word_splitter(textwrap::WordSplitter::NoHyphenation)
        .break_words(true);
    let text = text.replace('\n', " ");
    textwrap::wrap(&text, &options)
        .into_iter()
        .map(|l| l.into_owned())
        .collect()
}

impl View {
    /// A view whose clock starts now, wrapping at [`width_wanted`].
    pub fn new(color: bool) -> Self {
        Self {
            start: Instant::now(),
            color,
            quiet: false,
            width: width_wanted(),
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

    /// The width lines are wrapped to.
    pub fn width(&self) -> usize {
        self.width
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
        format!("[{secs:6.1}s]")
    }

    fn line(&self, text: &str) {
        if self.quiet {
            return;
        }
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }

    /// Prints `text` wrapped after `prefix`; `paint` colours parts of the first line's prefix.
    fn wrapped(&self, prefix: &str, text: &str, paint: impl Fn(&str) -> String) {
        for (i, l) in wrap(prefix, text, self.width).into_iter().enumerate() {
            if i == 0 {
                let rest = l.get(prefix.len()..).unwrap_or_default();
                self.line(&format!("{}{rest}", paint(prefix)));
            } else {
                self.line(&l);
            }
        }
    }

    /// Prints `text` wrapped after `prefix`, unpainted.
    pub fn plain(&self, prefix: &str, text: &str) {
        self.wrapped(prefix, text, str::to_string);
    }

    /// Prints a line as it is (tables whose columns must stay aligned; fit them first).
    pub fn verbatim(&self, text: &str) {
        self.line(text);
    }

    /// Seconds since the view started.
    pub fn elapsed_secs(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// A section heading.
    pub fn heading(&self, text: &str) {
        self.line("");
        self.wrapped("== ", text, |p| self.paint(BOLD, p));
    }

    /// A finished step: `✓` or `✗` and what was observed.
    pub fn step(&self, ok: bool, text: &str) {
        let stamp = self.stamp();
        let prefix = format!("{stamp} {} ", if ok { "✓" } else { "✗" });
        self.wrapped(&prefix, text, |_| {
            let mark = if ok {
                self.paint(GREEN, "✓")
            } else {
                self.paint(RED, "✗")
            };
            format!("{} {mark} ", self.paint(DIM, &stamp))
        });
    }

    /// A plain informational line.
    pub fn info(&self, text: &str) {
        let stamp = self.stamp();
        self.wrapped(&format!("{stamp}   "), text, |_| {
            format!("{}   ", self.paint(DIM, &stamp))
        });
    }

    /// A live-view transition: `tag` names what changed (token, secret, flux, gitlab, event).
    pub fn event(&self, tag: &str, text: &str) {
        let stamp = self.stamp();
        let tag = format!("{tag:<7}");
        self.wrapped(&format!("{stamp}   · {tag} "), text, |_| {
            format!("{}   · {} ", self.paint(DIM, &stamp), self.paint(DIM, &tag))
        });
    }

    /// The final summary and the verdict line.
    pub fn summary(&self, rows: &[StepResult]) {
        self.heading(&format!("Summary: {} steps", rows.len()));
        for line in summary_lines(rows, self.width) {
            let painted = if self.color && line.starts_with('✗') {
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

/// The part of a step's name before its first `": "` (the source or action it is about).
fn subject(step: &str) -> Option<(&str, &str)> {
    step.split_once(": ")
}

/// The summary as lines of at most `width` columns: passed steps about the same subject on one
/// (wrapped) line, `✓ GitRepository: token issued, Secret written, …`; each failed step on its
/// own, with what was expected and what was observed.
pub fn summary_lines(rows: &[StepResult], width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut i = 0;
    while i < rows.len() {
        let row = &rows[i];
        if !row.ok {
            lines.extend(wrap("✗ ", &row.step, width));
            lines.extend(wrap("    expected: ", &row.expected, width));
            lines.extend(wrap("    observed: ", &row.observed, width));
            i += 1;
            continue;
        }
        let Some((head, first)) = subject(&row.step) else {
            lines.extend(wrap("✓ ", &row.step, width));
            i += 1;
            continue;
        };
        let mut parts = vec![first];
        let mut j = i + 1;
        while let Some(next) = rows.get(j).filter(|r| r.ok)
            && let Some((h, rest)) = subject(&next.step)
            && h == head
        {
            parts.push(rest);
            j += 1;
        }
        lines.extend(wrap("✓ ", &format!("{head}: {}", parts.join(", ")), width));
        i = j;
    }
    lines
}

/// The columns of a `kubectl get` table that fit `width` (each column starts where its header
/// word starts; kubectl aligns every cell there), leftmost first, skipping those that do not
/// fit; and the names of the columns left out.
pub fn fit_table(table: &str, width: usize) -> (Vec<String>, Vec<String>) {
    let lines: Vec<Vec<char>> = table.lines().map(|l| l.chars().collect()).collect();
    let Some(header) = lines.first() else {
        return (Vec::new(), Vec::new());
    };
    let starts: Vec<usize> = (0..header.len())
        .filter(|&i| header[i] != ' ' && (i == 0 || header[i - 1] == ' '))
        .collect();
    let longest = lines.iter().map(Vec::len).max().unwrap_or(0);
    let mut spans: Vec<(usize, usize)> = starts
        .iter()
        .zip(starts.iter().skip(1).copied().chain([longest]))
        .map(|(&a, b)| (a, b))
        .collect();
    // The last column ends where its longest cell ends.
    if let Some(last) = spans.last_mut() {
        last.1 = last.1.max(last.0);
    }
    let cell = |line: &[char], (a, b): (usize, usize)| -> String {
        line.get(a.min(line.len())..b.min(line.len()))
            .map(|c| c.iter().collect())
            .unwrap_or_default()
    };
    let (mut kept, mut left_out, mut used) = (Vec::new(), Vec::new(), 0);
    for (n, span) in spans.iter().enumerate() {
        let w = span.1 - span.0;
        if n == 0 || used + w <= width {
            used += w;
            kept.push(*span);
        } else {
            left_out.push(cell(header, *span).trim().to_string());
        }
    }
    let rows = lines
        .iter()
        .map(|l| {
            kept.iter()
                .map(|s| cell(l, *s))
                .collect::<String>()
                .trim_end()
                .to_string()
        })
        .collect();
    (rows, left_out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_keeps_every_word_within_the_width_under_the_text_column() {
        let text = "Ready=False AuthenticationFailed: failed to get secret \
                    'team-a/platform-oci-charts-gitlab-token': secrets \"platform-oci-charts-gitlab-token\" not found";
        let lines = wrap("[   1.4s]   · flux    ", text, 80);
        assert!(lines.len() > 1);
        for l in &lines {
            assert!(l.chars().count() <= 80, "{l:?} is wider than 80");
        }
        for l in &lines[1..] {
            assert!(
                l.starts_with(&" ".repeat(22)) && !l[22..].starts_with(' '),
                "{l:?}"
            );
        }
        let words: Vec<&str> = lines.iter().flat_map(|l| l.split_whitespace()).skip(4).collect();
        assert_eq!(
            words,
            text.split_whitespace().collect::<Vec<_>>(),
            "a word was cut or lost"
        );
        // A word longer than a line is broken, not cut.
        let long = "x".repeat(150);
        let lines = wrap("> ", &long, 80);
        assert_eq!(
            lines
                .iter()
                .map(|l| l.trim_start_matches("> ").trim())
                .collect::<String>(),
            long
        );
    }

    #[test]
    fn the_summary_groups_passed_steps_by_subject_and_details_failures() {
        let row = |step: &str, ok: bool| StepResult {
            step: step.into(),
            expected: "a new token id".into(),
            observed: if ok {
                "fine".into()
            } else {
                "still #1004 after 30s".into()
            },
            ok,
        };
        let rows = vec![
            row("start the test world", true),
            row("GitRepository: token issued", true),
            row("GitRepository: Secret written", true),
            row("GitRepository: works with a real client", true),
            row("renewal: new token", false),
            row("renewal: old token revoked", true),
        ];
        let lines = summary_lines(&rows, 80);
        assert_eq!(
            lines,
            vec![
                "✓ start the test world",
                "✓ GitRepository: token issued, Secret written, works with a real client",
                "✗ renewal: new token",
                "    expected: a new token id",
                "    observed: still #1004 after 30s",
                "✓ renewal: old token revoked",
            ]
        );
        assert!(summary_lines(&rows, 40).iter().all(|l| l.chars().count() <= 40));
    }

    #[test]
    fn a_wide_table_keeps_the_columns_that_fit_and_names_the_others() {
        let table = "NAME                               READY   REASON         PROJECT                    EXPIRES      AGE\n\
                     platform-oci-charts-gitlab-token   True    Issued         acme/platform/charts       2027-01-05   9s\n\
                     secret-project-gitlab-token        False   PolicyDenied   other-org/secret-project                8s\n";
        let (rows, left_out) = fit_table(table, 76);
        assert_eq!(left_out, vec!["PROJECT"]);
        assert_eq!(
            rows[0],
            "NAME                               READY   REASON         EXPIRES      AGE"
        );
        assert_eq!(
            rows[1],
            "platform-oci-charts-gitlab-token   True    Issued         2027-01-05   9s"
        );
        assert_eq!(
            rows[2],
            "secret-project-gitlab-token        False   PolicyDenied                8s"
        );
        let (all, none) = fit_table(table, 200);
        assert!(none.is_empty());
        assert_eq!(all[1], table.lines().nth(1).unwrap().trim_end());
    }
}
