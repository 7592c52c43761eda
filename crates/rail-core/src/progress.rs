//! Progress of backups, verifications and restores as a person sees it: bars with throughput and ETA
//! on a terminal, plain lines (or nothing) otherwise. `rollback` and `deploy` show the same bars.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use crate::backup::Progress;
use crate::output;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Progress shown the way stderr can show it.
pub enum CliProgress {
    /// indicatif bars, one per task.
    Bars { multi: MultiProgress, bars: Mutex<HashMap<String, ProgressBar>> },
    /// One line when a task begins and one when it ends.
    Lines,
    /// `--quiet`.
    Silent,
}

impl CliProgress {
    /// Bars when stderr is a terminal, else a line per task begun and ended; nothing with `quiet`.
    pub fn new(quiet: bool) -> Self {
        if quiet {
            Self::Silent
        } else if std::io::stderr().is_terminal() {
            Self::Bars {
                multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
                bars: Mutex::default(),
            }
        } else {
            Self::Lines
        }
    }

    /// Bars when stderr is a terminal, else nothing: for a tool whose own lines already say what
    /// each step did (`deploy`).
    pub fn bars_only(quiet: bool) -> Self {
        if !quiet && std::io::stderr().is_terminal() {
            Self::new(false)
        } else {
            Self::Silent
        }
    }
}

impl Progress for CliProgress {
    fn begin(&self, task: &str, total: Option<u64>) {
        match self {
            Self::Bars { multi, bars } => {
                let bar = match total {
                    Some(total) if total > 0 => {
                        let bar = ProgressBar::new(total);
                        bar.set_style(
                            ProgressStyle::with_template("{prefix:>9} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}")
                                .expect("a valid template")
                                .progress_chars("=> "),
                        );
                        bar
                    }
                    _ => {
                        let bar = ProgressBar::new_spinner();
                        bar.set_style(
                            ProgressStyle::with_template("{prefix:>9} {spinner} {bytes} {elapsed}")
                                .expect("a valid template"),
                        );
                        bar.enable_steady_tick(Duration::from_millis(200));
                        bar
                    }
                };
                bar.set_prefix(task.to_owned());
                let bar = multi.add(bar);
                bars.lock().expect("progress lock").insert(task.to_owned(), bar);
            }
            Self::Lines => output::stderr_line(&format!("{task}: started")),
            Self::Silent => {}
        }
    }

    fn advance(&self, task: &str, bytes: u64) {
        if let Self::Bars { bars, .. } = self {
            if let Some(bar) = bars.lock().expect("progress lock").get(task) {
                bar.inc(bytes);
            }
        }
    }

    fn end(&self, task: &str, summary: &str) {
        match self {
            Self::Bars { bars, .. } => {
                if let Some(bar) = bars.lock().expect("progress lock").remove(task) {
                    bar.finish_with_message(summary.to_owned());
                    bar.set_style(
                        ProgressStyle::with_template("{prefix:>9} {msg}")
                            .expect("a valid template"),
                    );
                    bar.finish_with_message(summary.to_owned());
                }
            }
            Self::Lines => output::stderr_line(&format!("{task}: {summary}")),
            Self::Silent => {}
        }
    }
}
