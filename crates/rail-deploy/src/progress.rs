//! What a person watching a deploy sees: one line per step as it starts and ends, and the timeline at
//! the end. With `--format json` the lines go to stderr and stdout carries only the final JSON.

use std::time::Duration;

use rail_core::output;
use serde::Serialize;

use crate::engine::Progress;

/// One finished step, for the timeline and the JSON summary.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct StepTiming {
    pub step: String,
    pub ok: bool,
    pub duration_ms: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// Prints step lines and keeps the timeline.
#[derive(Debug, Default)]
pub(crate) struct Lines {
    /// Print to stderr instead of stdout (stdout is reserved for JSON).
    pub to_stderr: bool,
    pub quiet: bool,
    pub timeline: Vec<StepTiming>,
}

impl Lines {
    fn emit(&self, text: &str) {
        if self.quiet {
            return;
        }
        if self.to_stderr {
            output::stderr_line(text);
        } else {
            let _ = output::stdout_line(text);
        }
    }
}

impl Progress for Lines {
    fn step_started(&mut self, step: &str) {
        self.emit(&format!("==> {step}"));
    }

    fn step_finished(&mut self, step: &str, ok: bool, elapsed: Duration, detail: &str) {
        let mark = if ok { "ok" } else { "FAILED" };
        // A failure's whole message (a program's stderr, a traceback) is printed once, at the end:
        // its step line carries the first line only.
        let shown = if ok { detail } else { first_line(detail) };
        let detail_part = if shown.is_empty() { String::new() } else { format!(": {shown}") };
        self.emit(&format!("    {step} {mark} in {}{detail_part}", format_duration(elapsed)));
        self.timeline.push(StepTiming {
            step: step.to_owned(),
            ok,
            duration_ms: elapsed.as_millis() as u64,
            detail: detail.to_owned(),
        });
    }
}

/// The first line of an error message, without the stderr a program's failure quotes.
fn first_line(text: &str) -> &str {
    let line = text.lines().next().unwrap_or_default();
    line.split_once("; its stderr ends with:").map_or(line, |(head, _)| head)
}

/// `1.234s`, `350ms`, `2m 05s`.
pub(crate) fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.2}s", d.as_secs_f64())
    } else {
        format!("{}m {:02}s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

/// The timeline as aligned text lines.
pub(crate) fn timeline_text(timeline: &[StepTiming]) -> Vec<String> {
    let width = timeline.iter().map(|t| t.step.len()).max().unwrap_or(0);
    let total: u64 = timeline.iter().map(|t| t.duration_ms).sum();
    let mut lines: Vec<String> = timeline
        .iter()
        .map(|t| {
            let mark = if t.ok { "ok" } else { "FAILED" };
            format!(
                "  {:width$}  {:>9}  {mark}",
                t.step,
                format_duration(Duration::from_millis(t.duration_ms))
            )
        })
        .collect();
    lines.push(format!(
        "  {:width$}  {:>9}",
        "total",
        format_duration(Duration::from_millis(total))
    ));
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(format_duration(Duration::from_millis(350)), "350ms");
        assert_eq!(format_duration(Duration::from_millis(1234)), "1.23s");
        assert_eq!(format_duration(Duration::from_secs(125)), "2m 05s");
    }

    #[test]
    fn timeline_is_aligned_and_totalled() {
        let t = |step: &str, ms, ok| StepTiming {
            step: step.into(),
            ok,
            duration_ms: ms,
            detail: String::new(),
        };
        let lines = timeline_text(&[t("pre-checks", 120, true), t("migrate", 2500, false)]);
        assert_eq!(
            lines,
            [
                "  pre-checks      120ms  ok",
                "  migrate         2.50s  FAILED",
                "  total           2.62s"
            ]
        );
    }
}
