//! The one place that writes to stdout and stderr for users: text and JSON renderers and logging setup.
//!
//! Every binary prints through here so that broken pipes, colour and formats are handled once.

use std::io::{self, Write};

/// Write `text` and a newline to stdout. A closed pipe (`| head`) is not an error.
pub fn stdout_line(text: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// Write `text` and a newline to stderr, ignoring failures (there is nowhere left to report them).
pub fn stderr_line(text: &str) {
    let mut err = io::stderr().lock();
    let _ = writeln!(err, "{text}");
}

/// Print an error chain the way every binary does: `error: outer: inner: root`.
pub fn report_error(err: &anyhow::Error) {
    stderr_line(&format!("error: {err:#}"));
}
