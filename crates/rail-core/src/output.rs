//! The one place that writes to stdout and stderr for users: text and JSON renderers and logging setup.
//!
//! Every binary prints through here so that broken pipes, colour and formats are handled once. Results go
//! to stdout; logs go to stderr (and, when configured, to a log file), set up once by [`init_logging`].

use std::fmt::Write as _;
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::cli::{LogArgs, LogFormat};

/// Errors of setting up output.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutputError {
    #[error("invalid RUST_LOG filter `{filter}`")]
    Filter {
        filter: String,
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
    #[error("cannot open log file {path}")]
    LogFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("logging is already set up")]
    AlreadyInitialized {
        #[source]
        source: tracing_subscriber::util::TryInitError,
    },
    #[error("cannot render JSON")]
    Json {
        #[source]
        source: serde_json::Error,
    },
}

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

/// Whether the user asked for no colour: `--no-color`, or `NO_COLOR` set to anything but empty
/// (<https://no-color.org>).
pub fn no_color_requested(no_color_flag: bool) -> bool {
    no_color_flag || std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

/// Set up logging for a binary: stderr in the chosen format, at the level `-v`/`-q` choose (or what
/// `RUST_LOG` says), and, when `log_file` is given, plain text lines appended to it as well.
///
/// Levels: by default warnings and errors only (the tools print their own progress lines); `-v` adds
/// rail's `info` (each command run, as its argument vector), `-vv` `debug` (with the environment
/// variables each command was given, secrets by name as `***`), `-vvv` rail's `trace` and dependencies'
/// `info`, `-vvvv` everything; `-q` errors only. The log file always gets at least `info`, so `-q`
/// quiets the terminal without emptying the record.
pub fn init_logging(args: &LogArgs, log_file: Option<&Path>) -> Result<(), OutputError> {
    let ansi = !no_color_requested(args.no_color) && io::stderr().is_terminal();
    let rust_log = std::env::var("RUST_LOG").ok().filter(|v| !v.trim().is_empty());
    let layers = build_layers(args, rust_log.as_deref(), io::stderr, ansi, log_file)?;
    tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .map_err(|source| OutputError::AlreadyInitialized { source })
}

type BoxedLayer = Box<dyn Layer<tracing_subscriber::Registry> + Send + Sync>;

/// The stderr layer and the optional file layer, each with its own filter.
fn build_layers<W>(
    args: &LogArgs,
    rust_log: Option<&str>,
    stderr: W,
    ansi: bool,
    log_file: Option<&Path>,
) -> Result<Vec<BoxedLayer>, OutputError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    // JSON lines are for log collectors, which want the record: rail's `info` at least.
    let verbose =
        if args.log_format == LogFormat::Json { args.verbose.max(1) } else { args.verbose };
    let stderr_filter = filter(rust_log, verbose, args.quiet)?;
    let base = tracing_subscriber::fmt::layer().with_writer(stderr).with_ansi(ansi);
    let mut layers: Vec<BoxedLayer> = vec![match args.log_format {
        // A person at a terminal sees warnings and errors only, without timestamps; `-v` and up
        // are logs, with time and target.
        LogFormat::Text if args.verbose == 0 => {
            base.without_time().with_target(false).with_filter(stderr_filter).boxed()
        }
        LogFormat::Text => base.with_target(true).with_filter(stderr_filter).boxed(),
        LogFormat::Json => base
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_filter(stderr_filter)
            .boxed(),
    }];
    if let Some(path) = log_file {
        let file = fs_err::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| OutputError::LogFile { path: path.to_owned(), source })?;
        layers.push(
            tracing_subscriber::fmt::layer()
                .with_writer(Mutex::new(file))
                .with_ansi(false)
                .with_filter(filter(rust_log, args.verbose.max(1), false)?)
                .boxed(),
        );
    }
    Ok(layers)
}

/// `RUST_LOG` when set, otherwise the levels of the verbosity flags.
fn filter(rust_log: Option<&str>, verbose: u8, quiet: bool) -> Result<EnvFilter, OutputError> {
    let directives = match rust_log {
        Some(directives) => directives.to_owned(),
        None => default_directives(verbose, quiet).to_owned(),
    };
    EnvFilter::builder()
        .parse(&directives)
        .map_err(|source| OutputError::Filter { filter: directives, source })
}

/// Filter directives for the verbosity flags. `rail` matches every rail crate (`rail_core`,
/// `rail_deploy`, ...): targets match by prefix.
fn default_directives(verbose: u8, quiet: bool) -> &'static str {
    match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "warn,rail=info",
        (false, 2) => "warn,rail=debug",
        (false, 3) => "info,rail=trace",
        (false, _) => "trace",
    }
}

/// Pretty JSON of `value`, for `--format json`.
pub fn render_json<T: serde::Serialize + ?Sized>(value: &T) -> Result<String, OutputError> {
    serde_json::to_string_pretty(value).map_err(|source| OutputError::Json { source })
}

/// Colours for text output, or none: decided once from `--no-color`, `NO_COLOR` and whether the stream
/// is a terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    enabled: bool,
}

/// A colour for [`Style::paint`], named by what it means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// Healthy, done, success.
    Good,
    /// Warning, skipped, needs attention.
    Warn,
    /// Critical, failed.
    Bad,
    /// Secondary detail.
    Dim,
    /// Headings and names.
    Strong,
}

impl Style {
    /// Colour on stdout, unless the user asked for none or stdout is not a terminal.
    pub fn stdout(args: &LogArgs) -> Self {
        Self { enabled: !no_color_requested(args.no_color) && io::stdout().is_terminal() }
    }

    /// No colour at all.
    pub fn plain() -> Self {
        Self { enabled: false }
    }

    /// Colour when `enabled`, whatever the environment says (for tests and explicit choices).
    pub fn new(enabled: bool) -> Self {
        Self { enabled }
    }

    pub fn enabled(self) -> bool {
        self.enabled
    }

    /// `text` in the colour of `tone` (unchanged when colour is off).
    pub fn paint(self, text: &str, tone: Tone) -> String {
        if !self.enabled {
            return text.to_owned();
        }
        let code = match tone {
            Tone::Good => "32",
            Tone::Warn => "33",
            Tone::Bad => "31",
            Tone::Dim => "2",
            Tone::Strong => "1",
        };
        format!("\x1b[{code}m{text}\x1b[0m")
    }
}

/// Aligned columns for text output (`rollback list`, `schemaver list`): a header, then one line per row,
/// columns separated by two spaces, no borders, so the output reads well and still greps and `cut`s.
///
/// Hand-written rather than a table crate: borderless left-aligned columns are all rail prints.
#[derive(Debug, Clone, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new<I, S>(header: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self { header: header.into_iter().map(Into::into).collect(), rows: Vec::new() }
    }

    /// Add a row; missing cells are blank, extra cells are kept.
    pub fn row<I, S>(&mut self, cells: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.rows.push(cells.into_iter().map(Into::into).collect());
        self
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as lines without trailing spaces; the header is bold when `style` has colour.
    pub fn render(&self, style: Style) -> String {
        let columns = self.rows.iter().map(Vec::len).chain([self.header.len()]).max().unwrap_or(0);
        let mut widths = vec![0; columns];
        for row in std::iter::once(&self.header).chain(&self.rows) {
            for (i, cell) in row.iter().enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for (index, row) in std::iter::once(&self.header).chain(&self.rows).enumerate() {
            let mut line = String::new();
            for (i, width) in widths.iter().enumerate() {
                let cell = row.get(i).map_or("", String::as_str);
                if i > 0 {
                    line.push_str("  ");
                }
                let _ = write!(line, "{cell:<width$}");
            }
            let line = line.trim_end();
            if index == 0 {
                out.push_str(&style.paint(line, Tone::Strong));
            } else {
                out.push_str(line);
            }
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Collects what the stderr layer writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Captured {
            self.clone()
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    fn log_with(args: &LogArgs, rust_log: Option<&str>, log_file: Option<&Path>) -> Captured {
        let captured = Captured::default();
        let layers = build_layers(args, rust_log, captured.clone(), false, log_file).unwrap();
        let subscriber = tracing_subscriber::registry().with(layers);
        tracing::subscriber::with_default(subscriber, || {
            // This module's target is `rail_core::output`: a rail crate.
            tracing::error!("e-line");
            tracing::info!(step = "backup", "i-line");
            tracing::debug!("d-line");
            tracing::trace!("t-line");
            tracing::info!(target: "tokio_postgres", "dep-info");
            tracing::warn!(target: "tokio_postgres", "dep-warn");
        });
        captured
    }

    fn lines_with(text: &str) -> Vec<&str> {
        ["e-line", "i-line", "d-line", "t-line", "dep-info", "dep-warn"]
            .into_iter()
            .filter(|needle| text.contains(needle))
            .collect()
    }

    #[test]
    fn verbosity_chooses_levels() {
        let args = |verbose, quiet| LogArgs { verbose, quiet, ..LogArgs::default() };
        // A person sees warnings and errors only, without timestamps.
        let quiet_text = log_with(&args(0, false), None, None).text();
        assert_eq!(lines_with(&quiet_text), ["e-line", "dep-warn"]);
        assert!(!quiet_text.contains("Z "), "no timestamp by default: {quiet_text}");
        assert_eq!(
            lines_with(&log_with(&args(1, false), None, None).text()),
            ["e-line", "i-line", "dep-warn"]
        );
        assert_eq!(
            lines_with(&log_with(&args(2, false), None, None).text()),
            ["e-line", "i-line", "d-line", "dep-warn"]
        );
        assert_eq!(
            lines_with(&log_with(&args(3, false), None, None).text()),
            ["e-line", "i-line", "d-line", "t-line", "dep-info", "dep-warn"]
        );
        assert_eq!(lines_with(&log_with(&args(0, true), None, None).text()), ["e-line"]);
        // RUST_LOG wins over the flags.
        assert_eq!(
            lines_with(&log_with(&args(0, true), Some("tokio_postgres=info"), None).text()),
            ["dep-info", "dep-warn"]
        );
    }

    #[test]
    fn json_format_is_one_object_per_line() {
        let args = LogArgs { log_format: LogFormat::Json, ..LogArgs::default() };
        let text = log_with(&args, None, None).text();
        let objects: Vec<serde_json::Value> =
            text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(objects.len(), 3);
        assert_eq!(objects[1]["level"], "INFO");
        assert_eq!(objects[1]["message"], "i-line");
        assert_eq!(objects[1]["step"], "backup");
        assert!(!text.contains('\x1b'));
    }

    #[test]
    fn log_file_gets_plain_lines_even_when_quiet() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rail.log");
        fs_err::write(&path, "earlier line\n").unwrap();
        let args = LogArgs { quiet: true, no_color: false, ..LogArgs::default() };
        let stderr = log_with(&args, None, Some(&path)).text();
        assert_eq!(lines_with(&stderr), ["e-line"]);
        let file = fs_err::read_to_string(&path).unwrap();
        assert!(file.starts_with("earlier line\n"), "appends");
        assert_eq!(lines_with(&file), ["e-line", "i-line", "dep-warn"]);
        assert!(!file.contains('\x1b'));
    }

    #[test]
    fn bad_rust_log_is_an_error_naming_it() {
        let err =
            build_layers(&LogArgs::default(), Some("rail=loud"), Captured::default(), false, None)
                .err()
                .unwrap();
        assert_eq!(err.to_string(), "invalid RUST_LOG filter `rail=loud`");
    }

    #[test]
    fn table_aligns_columns() {
        let mut table = Table::new(["NAME", "SIZE", "STATUS"]);
        table.row(["backup_20260102_030405", "12 MB", "verified"]).row(["b2", "1 GB"]);
        assert_eq!(
            table.render(Style::plain()),
            "NAME                    SIZE   STATUS\n\
             backup_20260102_030405  12 MB  verified\n\
             b2                      1 GB\n"
        );
        assert!(table.render(Style::new(true)).starts_with("\x1b[1mNAME"));
    }

    #[test]
    fn style_paints_only_when_enabled() {
        assert_eq!(Style::plain().paint("ok", Tone::Good), "ok");
        assert_eq!(Style::new(true).paint("ok", Tone::Good), "\x1b[32mok\x1b[0m");
    }

    #[test]
    fn json_is_pretty() {
        assert_eq!(render_json(&serde_json::json!({"a": 1})).unwrap(), "{\n  \"a\": 1\n}");
    }
}
