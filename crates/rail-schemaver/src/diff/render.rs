//! Diff reports: JSON for machines, grouped and coloured text for terminals, Markdown for a
//! pull-request comment.

use std::fmt::Write as _;

use serde::Serialize;

use super::change::{Change, Level};

/// How many changes of each level.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub breaking: usize,
    pub dangerous: usize,
    pub safe: usize,
}

impl Counts {
    pub fn of(changes: &[Change]) -> Self {
        let mut c = Counts::default();
        for change in changes {
            match change.level {
                Level::Breaking => c.breaking += 1,
                Level::Dangerous => c.dangerous += 1,
                Level::Safe => c.safe += 1,
            }
        }
        c
    }

    pub fn total(self) -> usize {
        self.breaking + self.dangerous + self.safe
    }
}

#[derive(Serialize)]
struct Report<'a> {
    changes: &'a [Change],
    counts: Counts,
}

/// `{"changes":[{"type","level","path","message"}],"counts":{"breaking","dangerous","safe"}}`.
pub fn render_json(changes: &[Change]) -> String {
    let report = Report { changes, counts: Counts::of(changes) };
    serde_json::to_string_pretty(&report).unwrap_or_else(|_| String::from("{}"))
}

/// Inspector escapes single quotes in quoted text; people read them better plain.
fn readable(message: &str) -> String {
    message.replace("\\'", "'")
}

fn one_line(text: &str) -> String {
    text.replace("\r\n", "\\n").replace(['\n', '\r'], "\\n")
}

const GROUPS: [(Level, &str, &str, &str); 3] = [
    (Level::Breaking, "Breaking changes", "✖", "\x1b[31m"),
    (Level::Dangerous, "Dangerous changes", "⚠", "\x1b[33m"),
    (Level::Safe, "Safe changes", "✔", "\x1b[32m"),
];

/// Changes grouped by level, one per line, with a summary; colours only when asked.
pub fn render_text(changes: &[Change], colour: bool) -> String {
    let (bold, reset) = if colour { ("\x1b[1m", "\x1b[0m") } else { ("", "") };
    let mut out = String::new();
    let counts = Counts::of(changes);
    if counts.total() == 0 {
        out.push_str("No changes detected");
        return out;
    }
    for (level, title, mark, colour_code) in GROUPS {
        let group: Vec<&Change> = changes.iter().filter(|c| c.level == level).collect();
        if group.is_empty() {
            continue;
        }
        let c = if colour { colour_code } else { "" };
        let _ = writeln!(out, "{bold}{c}{title} ({}){reset}", group.len());
        for change in group {
            let path = change.path.as_deref().unwrap_or("(schema)");
            let note = change.note.as_ref().map(|n| format!("  ({n})")).unwrap_or_default();
            let _ = writeln!(
                out,
                "  {c}{mark}{reset} {} {bold}{}{reset}  {}{note}",
                change.kind,
                path,
                one_line(&readable(&change.message))
            );
        }
        out.push('\n');
    }
    let _ = write!(
        out,
        "{} changes: {} breaking, {} dangerous, {} safe",
        counts.total(),
        counts.breaking,
        counts.dangerous,
        counts.safe
    );
    out
}

/// Markdown for a pull-request comment: breaking and dangerous changes listed, safe ones folded.
pub fn render_markdown(changes: &[Change]) -> String {
    let counts = Counts::of(changes);
    let mut out = String::from("## GraphQL schema changes\n\n");
    if counts.total() == 0 {
        out.push_str("No changes detected.\n");
        return out;
    }
    let _ = writeln!(
        out,
        "**{}** breaking, **{}** dangerous, **{}** safe ({} in total).\n",
        counts.breaking,
        counts.dangerous,
        counts.safe,
        counts.total()
    );
    for (level, title, mark, _) in GROUPS {
        let group: Vec<&Change> = changes.iter().filter(|c| c.level == level).collect();
        if group.is_empty() {
            continue;
        }
        let folded = level == Level::Safe;
        if folded {
            let _ =
                writeln!(out, "<details>\n<summary>{mark} {title} ({})</summary>\n", group.len());
        } else {
            let _ = writeln!(out, "### {mark} {title} ({})\n", group.len());
        }
        for change in group {
            let path = change.path.as_deref().unwrap_or("(schema)");
            let note = change
                .note
                .as_ref()
                .map(|n| format!(" _({})_", markdown_text(n)))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "- `{}` {} — {}{note}",
                path.replace('`', "'"),
                change.kind,
                markdown_text(&readable(&change.message))
            );
        }
        out.push('\n');
        if folded {
            out.push_str("</details>\n");
        }
    }
    out
}

/// Keep a message on one list line and stop it from opening HTML or emphasis.
fn markdown_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in one_line(text).chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '*' | '_' | '`' | '|' | '[' | ']' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}
