//! The run journal: what a deploy or rollback is about to do and what it did, one fsynced JSON line per
//! event in `<backup_dir>/journal/<run-id>.jsonl`, and the tamper-evident audit log of finished runs
//! ([`audit`]).
//!
//! The journal lives on disk beside the backups, not in the database, so a restore never rewrites it. A
//! run killed at any point leaves a journal without a `finish` line; the next run finds it with
//! [`find_unfinished`] (after taking the run lock, so a run still in progress is not mistaken for a dead
//! one), reports the step it died in, and resolves it with [`mark_resolved`] or [`Journal::reopen`].
//!
//! A crash in the middle of a write leaves at most one incomplete last line: readers ignore it and say so,
//! writers cut it off before appending.

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;

use fs_err::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Name of the journal directory inside the backup directory.
pub const DIR_NAME: &str = "journal";
const EXTENSION: &str = "jsonl";

/// Errors of reading and writing journals.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    #[error("cannot access journal {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("journal {path} already exists")]
    Exists { path: PathBuf },
    #[error("journal {path} is corrupt at line {line}")]
    Corrupt {
        path: PathBuf,
        line: usize,
        #[source]
        source: serde_json::Error,
    },
    #[error("journal {path} does not start with a start line")]
    NoStart { path: PathBuf },
    #[error("journal {path} is already finished")]
    Finished { path: PathBuf },
    #[error("invalid run id `{value}`: expected YYYYMMDDTHHMMSSZ-xxxxxx")]
    InvalidRunId { value: String },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> JournalError + '_ {
    move |source| JournalError::Io { path: path.to_owned(), source }
}

/// What kind of run a journal, lock or audit line belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunKind {
    Deploy,
    Rollback,
}

impl RunKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deploy => "deploy",
            Self::Rollback => "rollback",
        }
    }
}

impl fmt::Display for RunKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunKind {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "deploy" => Ok(Self::Deploy),
            "rollback" => Ok(Self::Rollback),
            _ => Err(()),
        }
    }
}

/// A run's identifier, `YYYYMMDDTHHMMSSZ-<6 hex>` (UTC start time and a random suffix): unique enough
/// across hosts, sortable by start time, and safe as a file name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct RunId(String);

const RUN_ID_TIME: &str = "%Y%m%dT%H%M%SZ";

impl RunId {
    /// A new id for a run starting now.
    pub fn new() -> Self {
        Self::at(Utc::now())
    }

    /// A new id for a run started at `time`.
    pub fn at(time: DateTime<Utc>) -> Self {
        let suffix = rand::random::<u32>() & 0x00ff_ffff;
        Self(format!("{}-{suffix:06x}", time.format(RUN_ID_TIME)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The start time encoded in the id.
    pub fn started_at(&self) -> DateTime<Utc> {
        chrono::NaiveDateTime::parse_from_str(&self.0[..16], RUN_ID_TIME)
            .expect("validated on construction")
            .and_utc()
    }
}

impl Default for RunId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for RunId {
    type Err = JournalError;
    fn from_str(value: &str) -> Result<Self, JournalError> {
        let invalid = || JournalError::InvalidRunId { value: value.to_owned() };
        let (time, suffix) = value.split_once('-').ok_or_else(invalid)?;
        let time_ok =
            time.len() == 16 && chrono::NaiveDateTime::parse_from_str(time, RUN_ID_TIME).is_ok();
        let suffix_ok = suffix.len() == 6
            && suffix.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
        if time_ok && suffix_ok {
            Ok(Self(value.to_owned()))
        } else {
            Err(invalid())
        }
    }
}

impl<'de> Deserialize<'de> for RunId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        raw.parse().map_err(serde::de::Error::custom)
    }
}

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepOutcome {
    Ok,
    Failed,
    Skipped,
}

/// How a run ended; the last three are written by a later run that resolved a dead one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    Success,
    Failed,
    RolledBack,
    RollbackFailed,
    /// A dead run that was looked at and left as it was.
    Abandoned,
    /// A dead run that a later run (`deploy --resume`) finished.
    Resumed,
    /// A dead run whose changes a later run (`rollback --previous`) undid.
    Undone,
}

impl RunOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failed => "failed",
            Self::RolledBack => "rolled_back",
            Self::RollbackFailed => "rollback_failed",
            Self::Abandoned => "abandoned",
            Self::Resumed => "resumed",
            Self::Undone => "undone",
        }
    }
}

impl fmt::Display for RunOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a later run resolved a dead one, for [`mark_resolved`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    Abandoned,
    ResumedBy(RunId),
    UndoneBy(RunId),
}

/// One line of a journal file.
#[derive(Debug, Serialize, Deserialize)]
struct Line {
    ts: DateTime<Utc>,
    run_id: RunId,
    #[serde(flatten)]
    event: Event,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum Event {
    Start {
        kind: RunKind,
        #[serde(default)]
        meta: Value,
    },
    StepBegin {
        step: String,
        attempt: u32,
    },
    StepEnd {
        step: String,
        outcome: StepOutcome,
        duration_ms: u64,
        #[serde(default, skip_serializing_if = "Value::is_null")]
        data: Value,
    },
    Finish {
        outcome: RunOutcome,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        duration_ms: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resolved_by: Option<RunId>,
    },
}

/// The journal directory of a backup directory.
pub fn dir(backup_dir: &Path) -> PathBuf {
    backup_dir.join(DIR_NAME)
}

/// The journal file of `run_id` in the journal directory `dir`.
pub fn path(dir: &Path, run_id: &RunId) -> PathBuf {
    dir.join(format!("{run_id}.{EXTENSION}"))
}

/// An open journal of a run in progress. Every method writes one line and fsyncs it before returning.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: fs_err::File,
    run_id: RunId,
    kind: RunKind,
    started: Instant,
    open_steps: HashMap<String, Instant>,
    attempts: HashMap<String, u32>,
}

impl Journal {
    /// Create the journal of a new run in `dir` (created 0700 if missing) and write its start line.
    pub fn create(
        dir: &Path,
        run_id: &RunId,
        kind: RunKind,
        meta: Value,
    ) -> Result<Self, JournalError> {
        ensure_private_dir(dir)?;
        let path = path(dir, run_id);
        let file = fs_err::OpenOptions::new()
            .append(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|source| {
                if source.kind() == std::io::ErrorKind::AlreadyExists {
                    JournalError::Exists { path: path.clone() }
                } else {
                    JournalError::Io { path: path.clone(), source }
                }
            })?;
        // The new directory entry must survive a crash too, or the journal could vanish with it.
        sync_dir(dir)?;
        let mut journal = Self {
            path,
            file,
            run_id: run_id.clone(),
            kind,
            started: Instant::now(),
            open_steps: HashMap::new(),
            attempts: HashMap::new(),
        };
        journal.write(Event::Start { kind, meta })?;
        Ok(journal)
    }

    /// Open an unfinished journal to carry on writing to it (`deploy --resume` continuing a dead run).
    /// Step attempts continue from the ones recorded; an incomplete last line is cut off first.
    pub fn reopen(path: &Path) -> Result<(Self, JournalState), JournalError> {
        let state = read(path)?;
        if state.finished.is_some() {
            return Err(JournalError::Finished { path: path.to_owned() });
        }
        let file = open_for_append(path)?;
        let mut attempts = HashMap::new();
        for step in &state.steps {
            let attempt = attempts.entry(step.step.clone()).or_insert(0);
            *attempt = (*attempt).max(step.attempt);
        }
        let journal = Self {
            path: path.to_owned(),
            file,
            run_id: state.run_id.clone(),
            kind: state.kind,
            started: Instant::now(),
            open_steps: HashMap::new(),
            attempts,
        };
        Ok((journal, state))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn run_id(&self) -> &RunId {
        &self.run_id
    }

    pub fn kind(&self) -> RunKind {
        self.kind
    }

    /// Record that `step` is about to run; returns its attempt number (1 for the first).
    pub fn step_begin(&mut self, step: &str) -> Result<u32, JournalError> {
        let attempt = self.attempts.get(step).copied().unwrap_or(0) + 1;
        self.write(Event::StepBegin { step: step.to_owned(), attempt })?;
        self.attempts.insert(step.to_owned(), attempt);
        self.open_steps.insert(step.to_owned(), Instant::now());
        Ok(attempt)
    }

    /// Record how `step` ended, with what undoing it needs (a backup name) in `data` (or `Value::Null`).
    pub fn step_end(
        &mut self,
        step: &str,
        outcome: StepOutcome,
        data: Value,
    ) -> Result<(), JournalError> {
        let duration_ms =
            self.open_steps.remove(step).map_or(0, |began| began.elapsed().as_millis() as u64);
        self.write(Event::StepEnd { step: step.to_owned(), outcome, duration_ms, data })
    }

    /// Write the final line. The journal is closed afterwards.
    pub fn finish(mut self, outcome: RunOutcome) -> Result<(), JournalError> {
        let duration_ms = self.started.elapsed().as_millis() as u64;
        self.write(Event::Finish { outcome, duration_ms: Some(duration_ms), resolved_by: None })
    }

    fn write(&mut self, event: Event) -> Result<(), JournalError> {
        let line = Line { ts: Utc::now(), run_id: self.run_id.clone(), event };
        append_line(&mut self.file, &self.path, &line)
    }
}

/// Serialize `line`, append it in one write, and fsync.
fn append_line(file: &mut fs_err::File, path: &Path, line: &Line) -> Result<(), JournalError> {
    let mut bytes = serde_json::to_vec(line).expect("journal lines always serialize");
    bytes.push(b'\n');
    // One write call on an O_APPEND file: a crash can tear only this line, never interleave it.
    file.write_all(&bytes).and_then(|()| file.sync_data()).map_err(io_error(path))
}

/// Open an existing journal for appending, first cutting off an incomplete last line left by a crash,
/// so the next line does not get glued onto it.
fn open_for_append(path: &Path) -> Result<fs_err::File, JournalError> {
    let file =
        fs_err::OpenOptions::new().read(true).append(true).open(path).map_err(io_error(path))?;
    let content = fs_err::read(path).map_err(io_error(path))?;
    if !content.is_empty() && content.last() != Some(&b'\n') {
        let keep = content.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        tracing::warn!(path = %path.display(), "cutting off an incomplete last journal line");
        file.set_len(keep as u64).and_then(|()| file.sync_data()).map_err(io_error(path))?;
    }
    Ok(file)
}

/// A step as the journal recorded it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepRecord {
    pub step: String,
    pub attempt: u32,
    pub began_at: DateTime<Utc>,
    /// `None` while the step was running (or when the run died in it).
    pub end: Option<StepEnd>,
}

/// The end of a step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepEnd {
    pub at: DateTime<Utc>,
    pub outcome: StepOutcome,
    pub duration_ms: u64,
    pub data: Value,
}

/// A run's final line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FinishRecord {
    pub at: DateTime<Utc>,
    pub outcome: RunOutcome,
    pub duration_ms: Option<u64>,
    /// The run that resolved this one, when it was resolved by a later run.
    pub resolved_by: Option<RunId>,
}

/// Everything a journal file says about its run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JournalState {
    pub path: PathBuf,
    pub run_id: RunId,
    pub kind: RunKind,
    pub started_at: DateTime<Utc>,
    pub meta: Value,
    pub steps: Vec<StepRecord>,
    pub finished: Option<FinishRecord>,
    /// The step that began last and never ended: where a dead run died.
    pub last_open_step: Option<String>,
    /// When the last write was cut short by a crash: that incomplete line was ignored.
    pub torn_tail: bool,
    /// Time of the last complete line.
    pub last_activity: DateTime<Utc>,
}

impl JournalState {
    pub fn is_finished(&self) -> bool {
        self.finished.is_some()
    }

    /// The last successful end of `step`, with its data (what undoing it needs).
    pub fn completed(&self, step: &str) -> Option<&StepEnd> {
        self.steps
            .iter()
            .rev()
            .filter(|record| record.step == step)
            .find_map(|record| record.end.as_ref().filter(|end| end.outcome == StepOutcome::Ok))
    }
}

/// Read a journal file. An incomplete last line (a crash mid-write) is ignored and reported in
/// [`JournalState::torn_tail`]; any other unreadable line is an error.
pub fn read(path: &Path) -> Result<JournalState, JournalError> {
    let content = fs_err::read(path).map_err(io_error(path))?;
    let torn_tail = !content.is_empty() && content.last() != Some(&b'\n');
    let mut lines = Vec::new();
    if let Some(last_newline) = content.iter().rposition(|&b| b == b'\n') {
        for (index, raw) in content[..last_newline].split(|&b| b == b'\n').enumerate() {
            let line: Line = serde_json::from_slice(raw).map_err(|source| {
                JournalError::Corrupt { path: path.to_owned(), line: index + 1, source }
            })?;
            lines.push(line);
        }
    }
    let mut lines = lines.into_iter();
    let Some(Line { ts: started_at, run_id, event: Event::Start { kind, meta } }) = lines.next()
    else {
        return Err(JournalError::NoStart { path: path.to_owned() });
    };
    let mut state = JournalState {
        path: path.to_owned(),
        run_id,
        kind,
        started_at,
        meta,
        steps: Vec::new(),
        finished: None,
        last_open_step: None,
        torn_tail,
        last_activity: started_at,
    };
    for line in lines {
        state.last_activity = line.ts;
        match line.event {
            Event::Start { .. } => {}
            Event::StepBegin { step, attempt } => {
                state.steps.push(StepRecord { step, attempt, began_at: line.ts, end: None });
            }
            Event::StepEnd { step, outcome, duration_ms, data } => {
                let end = StepEnd { at: line.ts, outcome, duration_ms, data };
                match state.steps.iter_mut().rev().find(|r| r.step == step && r.end.is_none()) {
                    Some(record) => record.end = Some(end),
                    // An end without its beginning: keep it rather than lose what it says.
                    None => state.steps.push(StepRecord {
                        step,
                        attempt: 0,
                        began_at: line.ts,
                        end: Some(end),
                    }),
                }
            }
            Event::Finish { outcome, duration_ms, resolved_by } => {
                state.finished =
                    Some(FinishRecord { at: line.ts, outcome, duration_ms, resolved_by });
            }
        }
    }
    state.last_open_step =
        state.steps.iter().rev().find(|r| r.end.is_none()).map(|r| r.step.clone());
    Ok(state)
}

/// Every journal in `dir` without a finish line, oldest first. A missing directory has none. Journals
/// that cannot be read at all (an empty file from a crash right after creation) are logged and skipped.
///
/// Call it while holding the run lock: a journal without a finish line may belong to a run in progress.
pub fn find_unfinished(dir: &Path) -> Result<Vec<JournalState>, JournalError> {
    let entries = match fs_err::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(JournalError::Io { path: dir.to_owned(), source }),
    };
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_error(dir))?;
        let path = entry.path();
        if path.extension().is_some_and(|ext| ext == EXTENSION) {
            paths.push(path);
        }
    }
    paths.sort();
    let mut unfinished = Vec::new();
    for path in paths {
        match read(&path) {
            Ok(state) if state.finished.is_none() => unfinished.push(state),
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(path = %path.display(), error = %error, "skipping an unreadable journal");
            }
        }
    }
    Ok(unfinished)
}

/// Append the finish line that resolves a dead run, so it is not reported again. A journal that is
/// already finished is left alone.
pub fn mark_resolved(path: &Path, resolution: &Resolution) -> Result<(), JournalError> {
    let state = read(path)?;
    if state.finished.is_some() {
        return Ok(());
    }
    let (outcome, resolved_by) = match resolution {
        Resolution::Abandoned => (RunOutcome::Abandoned, None),
        Resolution::ResumedBy(by) => (RunOutcome::Resumed, Some(by.clone())),
        Resolution::UndoneBy(by) => (RunOutcome::Undone, Some(by.clone())),
    };
    let mut file = open_for_append(path)?;
    let line = Line {
        ts: Utc::now(),
        run_id: state.run_id,
        event: Event::Finish { outcome, duration_ms: None, resolved_by },
    };
    append_line(&mut file, path, &line)
}

/// Create `dir` (and its parents) if missing; a directory this creates is made 0700.
fn ensure_private_dir(dir: &Path) -> Result<(), JournalError> {
    if dir.is_dir() {
        return Ok(());
    }
    fs_err::create_dir_all(dir).map_err(io_error(dir))?;
    fs_err::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io_error(dir))?;
    if let Some(parent) = dir.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    fs_err::File::open(dir).and_then(|d| d.sync_all()).map_err(io_error(dir))
}

/// This host's name, as journals, audit lines and lock holders record it.
pub fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Who is running this process: the account name, and who ran it through sudo.
pub fn current_user() -> String {
    let uid = nix::unistd::Uid::current();
    let name = nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map_or_else(|| format!("uid {uid}"), |user| user.name);
    match std::env::var("SUDO_USER") {
        Ok(by) if !by.is_empty() && by != name => format!("{name} (sudo by {by})"),
        _ => name,
    }
}

pub mod audit {
    //! `<backup_dir>/journal/audit.log`: one JSON line per finished run, each carrying the SHA-256 of the
    //! line before it, so an edited or deleted line breaks the chain and [`verify`] finds where.
    //!
    //! Appends take an exclusive `flock` on the file (through nix, already a dependency) so that runs on
    //! one host, or on hosts sharing the directory over a filesystem that honours flock, never interleave.
    //! The chain alone cannot show that the newest lines were removed or the last one edited, so every
    //! append also rewrites `audit.head` (atomically): the line count and the hash of the last line,
    //! authenticated with the backup key when one is configured. [`verify`] compares the log's end with
    //! it; a missing head is reported as such.

    use std::io::{BufRead, Write};
    use std::os::unix::fs::FileExt;

    use fs_err::os::unix::fs::OpenOptionsExt;
    use std::path::{Path, PathBuf};

    use chrono::{DateTime, Utc};
    use nix::fcntl::{Flock, FlockArg};
    use serde::{Deserialize, Serialize};
    use sha2::{Digest, Sha256};

    use super::{RunId, RunKind, RunOutcome};
    use crate::backup::Keyring;

    /// File name of the audit log inside the journal directory.
    pub const FILE_NAME: &str = "audit.log";
    /// File name of the head: what the end of the log must be.
    pub const HEAD_FILE: &str = "audit.head";
    /// Label of the head's MAC.
    const HEAD_LABEL: &[u8] = b"rail audit head v1\n";

    /// `audit.head`: the number of lines and the hash of the last one, and its MAC.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Head {
        pub lines: usize,
        pub last_sha256: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub key_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub mac: Option<String>,
    }

    impl Head {
        fn signed_text(&self) -> String {
            format!("lines={}\nlast={}\n", self.lines, self.last_sha256)
        }
    }

    fn head_path(log: &Path) -> PathBuf {
        log.with_file_name(HEAD_FILE)
    }

    /// Write the head beside `log` atomically (0600, fsynced, renamed over the old one).
    fn write_head(
        log: &Path,
        lines: usize,
        last_sha256: String,
        keys: Option<&Keyring>,
    ) -> Result<(), AuditError> {
        let mut head = Head { lines, last_sha256, key_id: None, mac: None };
        if let Some((key_id, mac)) =
            keys.and_then(|k| k.sign_bytes(HEAD_LABEL, head.signed_text().as_bytes()))
        {
            head.key_id = Some(key_id);
            head.mac = Some(mac);
        }
        let path = head_path(log);
        let mut bytes = serde_json::to_vec(&head).expect("heads always serialize");
        bytes.push(b'\n');
        crate::archive::write_private_atomically(&path, &bytes).map_err(io_error(&path))
    }
    /// `prev_sha256` of the first line.
    pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

    /// Errors of the audit log.
    #[derive(Debug, thiserror::Error)]
    #[non_exhaustive]
    pub enum AuditError {
        #[error("cannot access audit log {path}")]
        Io {
            path: PathBuf,
            #[source]
            source: std::io::Error,
        },
        #[error("cannot lock audit log {path}")]
        Lock {
            path: PathBuf,
            #[source]
            source: nix::Error,
        },
        #[error("audit log {path} is corrupt at line {line}")]
        Corrupt {
            path: PathBuf,
            line: usize,
            #[source]
            source: serde_json::Error,
        },
    }

    fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> AuditError + '_ {
        move |source| AuditError::Io { path: path.to_owned(), source }
    }

    /// One finished run.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct AuditRecord {
        pub ts: DateTime<Utc>,
        pub run_id: RunId,
        pub kind: RunKind,
        pub environment: String,
        pub outcome: RunOutcome,
        pub duration_ms: u64,
        /// The backup set the run took or restored.
        pub backup: Option<String>,
        pub app_version_from: Option<String>,
        pub app_version_to: Option<String>,
        pub user: String,
        pub host: String,
    }

    /// A line of the audit log: the record and the hash of the line before it.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct AuditEntry {
        #[serde(flatten)]
        pub record: AuditRecord,
        pub prev_sha256: String,
    }

    /// The audit log of a journal directory.
    pub fn path(journal_dir: &Path) -> PathBuf {
        journal_dir.join(FILE_NAME)
    }

    fn sha256_hex(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    /// Append `record`, chained to the current last line, and rewrite the head (its MAC made with
    /// `keys`' signing key, when there is one). The file is created 0600 if missing.
    pub fn append(
        path: &Path,
        record: &AuditRecord,
        keys: Option<&Keyring>,
    ) -> Result<AuditEntry, AuditError> {
        if let Some(parent) = path.parent() {
            super::ensure_private_dir(parent).map_err(|e| match e {
                super::JournalError::Io { path, source } => AuditError::Io { path, source },
                other => AuditError::Io {
                    path: parent.to_owned(),
                    source: std::io::Error::other(other.to_string()),
                },
            })?;
        }
        let file = fs_err::OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
            .map_err(io_error(path))?;
        let (file, _) = file.into_parts();
        let mut file = Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, source)| AuditError::Lock { path: path.to_owned(), source })?;

        let mut len = file.metadata().map_err(io_error(path))?.len();
        if len > 0 && read_at(&file, path, len - 1, 1)? != b"\n" {
            // A crash cut the last append short: drop the fragment so the chain goes on from the last
            // complete line instead of hashing half a line.
            let keep = last_line_start(&file, path, len)?;
            tracing::warn!(path = %path.display(), "cutting off an incomplete last audit line");
            file.set_len(keep).map_err(io_error(path))?;
            len = keep;
        }
        let prev_sha256 = if len == 0 {
            GENESIS.to_owned()
        } else {
            let start = last_line_start(&file, path, len - 1)?;
            sha256_hex(&read_at(&file, path, start, (len - 1 - start) as usize)?)
        };
        let entry = AuditEntry { record: record.clone(), prev_sha256 };
        let mut line = serde_json::to_vec(&entry).expect("audit lines always serialize");
        line.push(b'\n');
        file.write_all(&line).and_then(|()| file.sync_data()).map_err(io_error(path))?;
        let lines = count_lines(&file, path)?;
        write_head(path, lines, sha256_hex(&line[..line.len() - 1]), keys)?;
        // Dropping the Flock unlocks the file.
        Ok(entry)
    }

    fn count_lines(file: &std::fs::File, path: &Path) -> Result<usize, AuditError> {
        let mut reader = std::io::BufReader::new(file.try_clone().map_err(io_error(path))?);
        std::io::Seek::seek(&mut reader, std::io::SeekFrom::Start(0)).map_err(io_error(path))?;
        let mut count = 0;
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line).map_err(io_error(path))? {
                0 => return Ok(count),
                _ => count += 1,
            }
        }
    }

    /// Offset of the first byte after the last newline before `end` (0 when there is none).
    fn last_line_start(file: &std::fs::File, path: &Path, end: u64) -> Result<u64, AuditError> {
        const CHUNK: u64 = 8192;
        let mut pos = end;
        while pos > 0 {
            let from = pos.saturating_sub(CHUNK);
            let chunk = read_at(file, path, from, (pos - from) as usize)?;
            if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
                return Ok(from + i as u64 + 1);
            }
            pos = from;
        }
        Ok(0)
    }

    fn read_at(
        file: &std::fs::File,
        path: &Path,
        offset: u64,
        len: usize,
    ) -> Result<Vec<u8>, AuditError> {
        let mut buf = vec![0u8; len];
        file.read_exact_at(&mut buf, offset).map_err(io_error(path))?;
        Ok(buf)
    }

    /// The last `limit` entries, oldest first (`deploy history`, `rollback history`). A missing file has
    /// none; an incomplete last line is skipped.
    pub fn read(path: &Path, limit: usize) -> Result<Vec<AuditEntry>, AuditError> {
        let file = match fs_err::File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(AuditError::Io { path: path.to_owned(), source }),
        };
        let mut entries = std::collections::VecDeque::with_capacity(limit.min(1024));
        for (index, line) in lines(file, path) {
            let line = line?;
            if !line.ends_with(b"\n") {
                break;
            }
            let entry: AuditEntry =
                serde_json::from_slice(&line[..line.len() - 1]).map_err(|source| {
                    AuditError::Corrupt { path: path.to_owned(), line: index + 1, source }
                })?;
            if entries.len() == limit {
                entries.pop_front();
            }
            if limit > 0 {
                entries.push_back(entry);
            }
        }
        Ok(entries.into())
    }

    /// Lines of `file` with their trailing newline (the last may lack it), read in a streaming way.
    fn lines(
        file: fs_err::File,
        path: &Path,
    ) -> impl Iterator<Item = (usize, Result<Vec<u8>, AuditError>)> + '_ {
        let mut reader = std::io::BufReader::new(file);
        std::iter::from_fn(move || {
            let mut line = Vec::new();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) => None,
                Ok(_) => Some(Ok(line)),
                Err(source) => Some(Err(AuditError::Io { path: path.to_owned(), source })),
            }
        })
        .enumerate()
    }

    /// The outcome of [`verify`].
    #[derive(Debug, Clone, PartialEq, Eq, Serialize)]
    pub struct Verification {
        /// Lines read.
        pub lines: usize,
        /// The first line whose link to the line before it is broken, or the end that does not match
        /// the head.
        pub broken: Option<BrokenLink>,
        /// Whether the end of the log could be checked against its head (absent for logs written by
        /// older versions, or when the head was deleted).
        pub anchored: bool,
    }

    impl Verification {
        pub fn is_intact(&self) -> bool {
            self.broken.is_none()
        }

        /// What to warn about the log at `path`: changed anywhere, or with an end that cannot be
        /// checked.
        pub fn warning(&self, path: &Path) -> Option<String> {
            if let Some(broken) = &self.broken {
                return Some(format!(
                    "the audit log {} was tampered with: {broken}",
                    path.display()
                ));
            }
            (!self.anchored && self.lines > 0).then(|| {
                format!(
                    "the audit log {} has no {HEAD_FILE} beside it: its last lines cannot be checked (written by an older rail, or the head was removed)",
                    path.display()
                )
            })
        }
    }

    /// Where and how the chain breaks.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize)]
    pub struct BrokenLink {
        /// 1-based line number.
        pub line: usize,
        pub reason: BrokenReason,
    }

    #[derive(Debug, Clone, PartialEq, Eq, Serialize)]
    #[serde(rename_all = "snake_case", tag = "kind")]
    pub enum BrokenReason {
        /// The line is not a JSON object with a `prev_sha256` string.
        Unreadable,
        /// The line does not end with a newline (a write cut short).
        Incomplete,
        /// Its `prev_sha256` is not the hash of the line before it: that line was edited, or lines
        /// between were deleted or inserted.
        HashMismatch { expected: String, found: String },
        /// The log ends otherwise than its head says: its last lines were removed or the last one
        /// edited.
        TailMismatch { head_lines: usize },
        /// The head's MAC does not match it, or names a key that is not configured.
        HeadForged,
    }

    impl std::fmt::Display for BrokenLink {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            match &self.reason {
                BrokenReason::Unreadable => write!(f, "line {} is not a readable audit entry", self.line),
                BrokenReason::Incomplete => write!(f, "line {} is incomplete", self.line),
                BrokenReason::HashMismatch { .. } => write!(
                    f,
                    "line {} does not follow the line before it (that line was changed, or lines were removed)",
                    self.line
                ),
                BrokenReason::TailMismatch { head_lines } => write!(
                    f,
                    "the log ends at line {} but its head says {head_lines} lines ending otherwise: its last lines were removed or changed",
                    self.line
                ),
                BrokenReason::HeadForged => write!(
                    f,
                    "its head ({HEAD_FILE}) is not authenticated by the backup key: it was rewritten"
                ),
            }
        }
    }

    /// Check the whole chain and the log's end against its head (its MAC with `keys`, when the head
    /// has one), and report the first broken link.
    pub fn verify(path: &Path, keys: Option<&Keyring>) -> Result<Verification, AuditError> {
        let head = read_head(path);
        let file = match fs_err::File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // The whole log deleted, its head left behind: that is tampering too.
                let broken = head.filter(|h| h.lines > 0).map(|h| BrokenLink {
                    line: 0,
                    reason: BrokenReason::TailMismatch { head_lines: h.lines },
                });
                return Ok(Verification { lines: 0, broken, anchored: true });
            }
            Err(source) => return Err(AuditError::Io { path: path.to_owned(), source }),
        };
        let anchored = head.is_some();
        let mut expected = GENESIS.to_owned();
        let mut count = 0;
        for (index, line) in lines(file, path) {
            let line = line?;
            count = index + 1;
            let broken = |reason| {
                Ok(Verification {
                    lines: count,
                    broken: Some(BrokenLink { line: count, reason }),
                    anchored,
                })
            };
            let Some(body) = line.strip_suffix(b"\n") else {
                return broken(BrokenReason::Incomplete);
            };
            let found = serde_json::from_slice::<serde_json::Value>(body).ok().and_then(|value| {
                value.get("prev_sha256").and_then(|v| v.as_str()).map(str::to_owned)
            });
            let Some(found) = found else {
                return broken(BrokenReason::Unreadable);
            };
            if found != expected {
                return broken(BrokenReason::HashMismatch { expected, found });
            }
            expected = sha256_hex(body);
        }
        let mut broken = None;
        if let Some(head) = head {
            let forged = match (&head.key_id, &head.mac, keys) {
                (Some(key_id), Some(mac), Some(keys)) => {
                    keys.verify_bytes(HEAD_LABEL, head.signed_text().as_bytes(), key_id, mac)
                        != Some(true)
                }
                // A head written with a key, read without one, cannot be checked; a head written
                // without a key while one is configured now proves nothing either way.
                _ => false,
            };
            if forged {
                broken = Some(BrokenLink { line: count, reason: BrokenReason::HeadForged });
            } else if head.lines != count || (count > 0 && head.last_sha256 != expected) {
                broken = Some(BrokenLink {
                    line: count,
                    reason: BrokenReason::TailMismatch { head_lines: head.lines },
                });
            }
        }
        Ok(Verification { lines: count, broken, anchored })
    }

    fn read_head(log: &Path) -> Option<Head> {
        let text = fs_err::read(head_path(log)).ok()?;
        // An unreadable head is as good as a forged one: the end cannot match it.
        Some(serde_json::from_slice(&text).unwrap_or(Head {
            lines: usize::MAX,
            last_sha256: String::new(),
            key_id: None,
            mac: None,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_round_trip_and_sort() {
        let early = RunId::at("2026-01-02T03:04:05Z".parse().unwrap());
        let later = RunId::at("2026-01-02T03:04:06Z".parse().unwrap());
        assert!(early.as_str().starts_with("20260102T030405Z-"));
        assert_eq!(early.as_str().len(), 23);
        assert!(early < later);
        assert_eq!(early.as_str().parse::<RunId>().unwrap(), early);
        assert_eq!(early.started_at(), "2026-01-02T03:04:05Z".parse::<DateTime<Utc>>().unwrap());
        for bad in [
            "",
            "x",
            "20260102T030405Z",
            "20260102T030405Z-12345",
            "20260102T030405Z-ABCDEF",
            "../etc-abcdef",
            "20261302T030405Z-abcdef",
        ] {
            assert!(bad.parse::<RunId>().is_err(), "{bad}");
        }
    }
}
