//! Renderers of a [`Report`]: text for people (and Docker's 4 KB health log), JSON in the older script's
//! shape, Prometheus text exposition, and the Nagios plugin line.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use rail_core::health::{CheckResult, Report, Status};
use rail_core::output::{Style, Tone};

/// Options of the text renderer.
#[derive(Debug, Clone, Copy)]
pub struct TextStyle {
    /// Add each check's details under it.
    pub verbose: bool,
    /// Colours on the status words.
    pub style: Style,
}

fn paint(status: Status, text: &str, style: Style) -> String {
    let tone = match status {
        Status::Healthy => Tone::Good,
        Status::Warning => Tone::Warn,
        Status::Critical => Tone::Bad,
    };
    style.paint(text, tone)
}

/// `3.2 ms` / `612 ms` / `2.31 s`.
pub(crate) fn duration_text(d: std::time::Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.1} ms")
    } else if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.2} s", ms / 1000.0)
    }
}

/// One line per check (the most important first in each line), skipped checks, then the overall line.
pub(crate) fn text(report: &Report, style: TextStyle) -> String {
    let mut out = String::new();
    for check in &report.checks {
        let status = format!("{:<8}", check.status.as_str());
        let _ = writeln!(
            out,
            "{} {:<11} {:>8}  {}",
            paint(check.status, &status, style.style),
            check.name.as_str(),
            duration_text(check.duration),
            check.message
        );
        if style.verbose {
            for (key, value) in &check.details {
                let shown = match value {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                let _ = writeln!(out, "{:>22}{key}: {shown}", "");
            }
        }
    }
    for skipped in &report.skipped {
        let _ = writeln!(
            out,
            "{:<8} {:<11} {:>8}  not configured: {}",
            "skipped",
            skipped.name.as_str(),
            "",
            skipped.reason
        );
    }
    let _ = write!(
        out,
        "overall: {} ({} healthy, {} warning, {} critical{}) in {}",
        paint(report.overall, report.overall.as_str(), style.style),
        report.count(Status::Healthy),
        report.count(Status::Warning),
        report.count(Status::Critical),
        if report.skipped.is_empty() {
            String::new()
        } else {
            format!(", {} skipped", report.skipped.len())
        },
        duration_text(report.total_duration)
    );
    out
}

/// The report as pretty-printed JSON.
pub(crate) fn json(report: &Report) -> String {
    serde_json::to_string_pretty(report).expect("a report always serializes")
}

/// A float the way the exposition format reads it.
fn num(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

/// Escape a label value: backslash, double quote and line feed.
fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} gauge");
}

/// The report in the Prometheus text exposition format (version 0.0.4), every metric a gauge.
pub(crate) fn prometheus(report: &Report) -> String {
    let mut out = String::new();
    let per_check =
        |out: &mut String, name: &str, help: &str, value: &dyn Fn(&CheckResult) -> Option<f64>| {
            let rows: Vec<(String, f64)> = report
                .checks
                .iter()
                .filter_map(|c| value(c).map(|v| (c.name.as_str().to_owned(), v)))
                .collect();
            if rows.is_empty() {
                return;
            }
            family(out, name, help);
            for (check, v) in rows {
                let _ = writeln!(out, "{name}{{check=\"{check}\"}} {}", num(v));
            }
        };
    per_check(
        &mut out,
        "rail_health_check_status",
        "Status of a check: 0 healthy, 1 warning, 2 critical.",
        &|c| Some(f64::from(c.status.code())),
    );
    per_check(
        &mut out,
        "rail_health_check_up",
        "1 when a check is not critical, 0 when it is.",
        &|c| Some(if c.status == Status::Critical { 0.0 } else { 1.0 }),
    );
    per_check(&mut out, "rail_health_check_duration_seconds", "Wall time of a check.", &|c| {
        Some(c.duration.as_secs_f64())
    });
    per_check(
        &mut out,
        "rail_health_check_latency_seconds",
        "Time until the checked dependency answered (absent when it did not).",
        &|c| c.latency.map(|l| l.as_secs_f64()),
    );
    if !report.skipped.is_empty() {
        family(
            &mut out,
            "rail_health_check_skipped",
            "1 for a check that is not configured and did not run.",
        );
        for s in &report.skipped {
            let _ = writeln!(out, "rail_health_check_skipped{{check=\"{}\"}} 1", s.name.as_str());
        }
    }

    // Measurements of the checks, one family per gauge name.
    let mut families: BTreeMap<&str, (&str, Vec<String>)> = BTreeMap::new();
    for check in &report.checks {
        for g in &check.gauges {
            let mut labels = format!("check=\"{}\"", check.name.as_str());
            for (k, v) in &g.labels {
                let _ = write!(labels, ",{k}=\"{}\"", label(v));
            }
            families.entry(g.name).or_insert_with(|| (g.help, Vec::new())).1.push(format!(
                "rail_health_{}{{{labels}}} {}",
                g.name,
                num(g.value)
            ));
        }
    }
    for (name, (help, rows)) in families {
        family(&mut out, &format!("rail_health_{name}"), help);
        for row in rows {
            let _ = writeln!(out, "{row}");
        }
    }

    family(
        &mut out,
        "rail_health_overall_status",
        "Worst status of the checks: 0 healthy, 1 warning, 2 critical.",
    );
    let _ = writeln!(out, "rail_health_overall_status {}", report.overall.code());
    family(&mut out, "rail_health_checks", "Number of checks by status.");
    for status in [Status::Healthy, Status::Warning, Status::Critical] {
        let _ = writeln!(out, "rail_health_checks{{status=\"{status}\"}} {}", report.count(status));
    }
    family(&mut out, "rail_health_run_duration_seconds", "Wall time of the whole run.");
    let _ = writeln!(
        out,
        "rail_health_run_duration_seconds {}",
        num(report.total_duration.as_secs_f64())
    );
    family(&mut out, "rail_health_last_run_timestamp_seconds", "Unix time the run started.");
    let ts = report.timestamp.timestamp_millis() as f64 / 1000.0;
    let _ = writeln!(out, "rail_health_last_run_timestamp_seconds {}", num(ts));
    out
}

/// The Nagios plugin output: a status line with performance data, then one line per check.
pub(crate) fn nagios(report: &Report) -> String {
    let word = match report.overall {
        Status::Healthy => "OK",
        Status::Warning => "WARNING",
        Status::Critical => "CRITICAL",
    };
    let summary = if report.overall == Status::Healthy {
        format!("{} checks healthy", report.checks.len())
    } else {
        report
            .checks
            .iter()
            .filter(|c| c.status == report.overall)
            .map(|c| format!("{}: {}", c.name, c.message))
            .collect::<Vec<_>>()
            .join("; ")
    };
    // Perfdata: label=value[UOM];warn;crit — the latency of every check that measured one.
    let perf: Vec<String> = report
        .checks
        .iter()
        .map(|c| format!("{}={:.3}s", c.name, c.latency.unwrap_or(c.duration).as_secs_f64()))
        .collect();
    let mut out = format!("RAIL HEALTH {word} - {}", summary.replace('|', "/"));
    if !perf.is_empty() {
        let _ = write!(out, " | {}", perf.join(" "));
    }
    for c in &report.checks {
        let _ = write!(
            out,
            "\n{} {}: {}",
            c.status.as_str().to_uppercase(),
            c.name,
            c.message.replace('|', "/")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(num(f64::INFINITY), "+Inf");
        assert_eq!(num(0.5), "0.5");
        assert_eq!(num(3.0), "3");
    }
}
