//! Output shared by the verbs: plain text (default) or JSON, and aligned tables.

use clap::ValueEnum;
use serde::Serialize;

/// How a verb prints its answer (`-o`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Human-readable text.
    #[default]
    Text,
    /// One JSON document on stdout.
    Json,
}

/// Pretty JSON with a trailing newline; serialising our own report types cannot fail, but
/// if it ever did the error is printed as JSON rather than panicking.
pub fn json<T: Serialize>(value: &T) -> String {
    match serde_json::to_string_pretty(value) {
        Ok(s) => s + "\n",
        Err(e) => format!("{{\"error\": {:?}}}\n", e.to_string()),
    }
}

/// Renders rows under headers with columns separated by three spaces (like kubectl).
/// Cells are single-line: line breaks inside a cell are shown as spaces.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let clean = |s: &str| s.replace(['\n', '\r', '\t'], " ");
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| clean(c)).collect())
        .collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut out = String::new();
        for (i, c) in cells.iter().enumerate() {
            out.push_str(c);
            if i < last {
                let pad = widths.get(i).copied().unwrap_or(0) - c.chars().count() + 3;
                out.push_str(&" ".repeat(pad));
            }
        }
        out.push('\n');
        out
    };
    let mut out = line(headers.to_vec());
    for r in &rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns_and_flattens_line_breaks() {
        let t = table(
            &["A", "LONG HEADER", "C"],
            &[
                vec!["xxxx".into(), "y".into(), "z".into()],
                vec!["1".into(), "two\nlines".into(), "".into()],
            ],
        );
        assert_eq!(
            t,
            "A      LONG HEADER   C\nxxxx   y             z\n1      two lines     \n"
        );
    }

    #[test]
    fn json_is_pretty_with_newline() {
        assert_eq!(json(&serde_json::json!({"a": 1})), "{\n  \"a\": 1\n}\n");
    }
}
