//! PostgreSQL client programs and the catalog queries backups and restores share.
//!
//! pg_dump, pg_restore and psql are run by their real path: Debian's `/usr/bin` wrappers cost ~30 ms a
//! call. Passwords reach them through `PGPASSWORD` in their environment, never their command line.
//!
//! A custom-format dump is either the file pg_dump wrote (`database.dump`, pg_dump's own gzip) or that
//! file through zstd (`database.dump.zst`); [`DumpReader`] gives either to pg_restore, the second
//! decompressed into its stdin, so no uncompressed copy is ever written.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_postgres::Client;

use crate::config::DatabaseConfig;
use crate::db::{quote_ident, DbTarget};
use crate::process::{Cmd, Finished, ProcessError, Running};

use super::BackupError;

/// PostgreSQL limits identifiers to 63 bytes and silently cuts longer ones.
pub const MAX_IDENTIFIER: usize = 63;

/// Where pg_dump, pg_restore and psql are.
#[derive(Debug, Clone)]
pub struct PgTools {
    bindir: Option<PathBuf>,
}

impl PgTools {
    /// `database.pg_bindir`, else `pg_config --bindir`, else the newest `/usr/lib/postgresql/<major>/bin`,
    /// else `PATH`.
    pub async fn resolve(cfg: &DatabaseConfig) -> Self {
        if !cfg.pg_bindir.as_os_str().is_empty() {
            return Self { bindir: Some(cfg.pg_bindir.clone()) };
        }
        if let Ok(out) =
            Cmd::new("pg_config").arg("--bindir").timeout(Duration::from_secs(5)).output().await
        {
            let dir = PathBuf::from(out.stdout_text().trim());
            if dir.join("pg_dump").is_file() {
                return Self { bindir: Some(dir) };
            }
        }
        Self { bindir: newest_debian_bindir(Path::new("/usr/lib/postgresql")) }
    }

    /// Tools from one directory.
    pub fn in_dir(dir: impl Into<PathBuf>) -> Self {
        Self { bindir: Some(dir.into()) }
    }

    /// A command running `program` (`pg_dump`, `pg_restore`, `psql`).
    pub fn cmd(&self, program: &str) -> Cmd {
        match &self.bindir {
            Some(dir) => Cmd::new(dir.join(program)),
            None => Cmd::new(program),
        }
    }

    /// A command running `program` against `target`: connection options, `--no-password`, and the
    /// password in `PGPASSWORD`.
    pub fn connect_cmd(&self, program: &str, target: &DbTarget) -> Cmd {
        let (args, password) = target.libpq_args();
        let mut cmd = self.cmd(program).args(args).arg("--no-password");
        if let Some(password) = password {
            cmd = cmd.secret_env("PGPASSWORD", &password);
        }
        cmd
    }

    /// `psql` loading the plain-SQL file `path` into `target` in one transaction that stops at the first
    /// error (how the older tools' `db_backup_*.sql` dumps are restored and tested).
    pub fn psql_file(&self, target: &DbTarget, path: &std::path::Path) -> Cmd {
        self.connect_cmd("psql", target)
            .args([
                "--no-psqlrc",
                "--quiet",
                "--single-transaction",
                "-v",
                "ON_ERROR_STOP=1",
                "--file",
            ])
            .arg(path)
    }

    /// `<program> --version`, e.g. `pg_dump (PostgreSQL) 15.20`.
    pub async fn version(&self, program: &str) -> Result<String, BackupError> {
        let out = self
            .cmd(program)
            .arg("--version")
            .timeout(Duration::from_secs(10))
            .output()
            .await
            .map_err(|source| BackupError::Program { action: "asking its version", source })?;
        Ok(out.stdout_text().trim().to_owned())
    }
}

fn newest_debian_bindir(root: &Path) -> Option<PathBuf> {
    let mut best: Option<(u32, PathBuf)> = None;
    for entry in fs_err::read_dir(root).ok()?.flatten() {
        let Some(major) = entry.file_name().to_str().and_then(|v| v.parse::<u32>().ok()) else {
            continue;
        };
        let bin = entry.path().join("bin");
        if bin.join("pg_dump").is_file() && best.as_ref().is_none_or(|(m, _)| major > *m) {
            best = Some((major, bin));
        }
    }
    best.map(|(_, dir)| dir)
}

/// Errors of giving a dump to pg_restore.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DumpReadError {
    #[error(transparent)]
    Program(#[from] ProcessError),
    #[error("cannot read the dump {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// pg_restore reading a custom-format dump, compressed by zstd or not (told by its first bytes).
///
/// A plain dump is named on pg_restore's command line, with `--jobs` when more than one is asked for.
/// A zstd dump is decompressed by a thread of ours into pg_restore's stdin, from which pg_restore cannot
/// run parallel jobs: it restores with one (as fast as `--jobs 2` on a file when one table dominates).
/// pg_restore may stop reading before the end (`--list` reads only the table of contents): that is
/// not an error; a dump that cannot be decompressed is, whatever pg_restore made of what it got.
pub struct DumpReader {
    running: Running,
    path: PathBuf,
    feeder: Option<tokio::task::JoinHandle<Result<Fed, DumpReadError>>>,
}

/// A zstd decoder reading a dump file.
type ZstdReader = zstd::stream::read::Decoder<'static, std::io::BufReader<fs_err::File>>;

/// How the decompression into pg_restore's stdin ended.
enum Fed {
    /// At the end of the stream, every checksum checked.
    Whole,
    /// pg_restore stopped reading first: the rest is left, to read when pg_restore failed (it may
    /// have failed on bytes a damaged stream gave it, which the stream's checksum would name).
    Stopped(ZstdReader),
}

impl std::fmt::Debug for DumpReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DumpReader")
            .field("running", &self.running)
            .field("path", &self.path)
            .field("decompressing", &self.feeder.is_some())
            .finish()
    }
}

impl DumpReader {
    /// Start `pg_restore` (`cmd`, with its options) on the dump `dump`. Needs a tokio runtime.
    pub fn spawn(cmd: Cmd, dump: &Path, jobs: u32) -> Result<Self, DumpReadError> {
        Self::start(cmd, dump, jobs, false)
    }

    /// Like [`DumpReader::spawn`], and a zstd dump is decompressed to its very end even when
    /// pg_restore stops reading before it, so that the last frame's checksum is checked too.
    pub fn spawn_to_end(cmd: Cmd, dump: &Path) -> Result<Self, DumpReadError> {
        Self::start(cmd, dump, 1, true)
    }

    fn start(cmd: Cmd, dump: &Path, jobs: u32, to_end: bool) -> Result<Self, DumpReadError> {
        let read_error = |source| DumpReadError::Read { path: dump.to_owned(), source };
        // A directory-format dump is pg_restore's to read; a missing file, pg_restore's to report.
        if dump.is_dir()
            || !dump.exists()
            || !crate::archive::is_zstd_file(dump).map_err(read_error)?
        {
            let cmd = if jobs > 1 { cmd.arg(format!("--jobs={jobs}")) } else { cmd };
            return Ok(Self {
                running: cmd.arg(dump).spawn()?,
                path: dump.to_owned(),
                feeder: None,
            });
        }
        if jobs > 1 {
            tracing::debug!(dump = %dump.display(), "one pg_restore job: a zstd dump reaches it on stdin");
        }
        let file = fs_err::File::open(dump).map_err(read_error)?;
        let mut running = cmd.stdin_piped().spawn()?;
        let stdin =
            running.stdin.take().expect("stdin is piped").into_owned_fd().map_err(|source| {
                ProcessError::Io { command: running.command().to_owned(), source }
            })?;
        let path = dump.to_owned();
        let feeder = tokio::task::spawn_blocking(move || feed(file, &path, stdin, to_end));
        Ok(Self { running, path: dump.to_owned(), feeder: Some(feeder) })
    }

    /// pg_restore's stdout (`--list`, `--file=-`), to read to its end before [`DumpReader::wait`].
    pub fn take_stdout(&mut self) -> Option<tokio::process::ChildStdout> {
        self.running.stdout.take()
    }

    /// Wait for pg_restore and the decompression. A dump that could not be decompressed is the error
    /// even when pg_restore failed too: its failure then only follows from it.
    pub async fn wait(self) -> Result<Finished, DumpReadError> {
        let path = self.path.clone();
        let feeder = async {
            match self.feeder {
                Some(task) => task.await.unwrap_or_else(|join| {
                    Err(DumpReadError::Read { path, source: std::io::Error::other(join) })
                }),
                None => Ok(Fed::Whole),
            }
        };
        let (fed, finished) = tokio::join!(feeder, self.running.wait());
        match (fed?, finished) {
            (_, Ok(finished)) => Ok(finished),
            (Fed::Whole, Err(error)) => Err(error.into()),
            (Fed::Stopped(rest), Err(error)) => {
                let path = self.path.clone();
                let drained = tokio::task::spawn_blocking(move || drain(rest, &path)).await;
                match drained {
                    Ok(Err(damaged)) => Err(damaged),
                    _ => Err(error.into()),
                }
            }
        }
    }

    /// Run to completion; pg_restore's whole stdout.
    pub async fn output(mut self) -> Result<Vec<u8>, DumpReadError> {
        use tokio::io::AsyncReadExt;
        let stdout = self.take_stdout();
        let read = async {
            let mut out = Vec::new();
            if let Some(mut stdout) = stdout {
                // A read error means pg_restore went away; its exit status says why.
                let _ = stdout.read_to_end(&mut out).await;
            }
            out
        };
        let (out, finished) = tokio::join!(read, self.wait());
        finished?;
        Ok(out)
    }
}

/// Decompress `file` (zstd) into pg_restore's stdin. pg_restore closing its end early is its own
/// business (its exit status tells), after which the rest is decompressed only when `to_end`; a
/// stream that does not decompress is an error of the dump.
fn feed(
    file: fs_err::File,
    path: &Path,
    stdin: std::os::fd::OwnedFd,
    to_end: bool,
) -> Result<Fed, DumpReadError> {
    use std::io::{Read, Write};
    let read_error = |source| DumpReadError::Read { path: path.to_owned(), source };
    let mut decoder = ZstdReader::new(file).map_err(read_error)?;
    let mut sink = std::fs::File::from(stdin);
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match decoder.read(&mut buf) {
            Ok(0) => return Ok(Fed::Whole),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_error(e)),
        };
        match sink.write_all(&buf[..n]) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe && to_end => {
                drop(sink);
                return drain(decoder, path).map(|()| Fed::Whole);
            }
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                return Ok(Fed::Stopped(decoder))
            }
            Err(source) => {
                return Err(DumpReadError::Program(ProcessError::Io {
                    command: "pg_restore".into(),
                    source,
                }))
            }
        }
    }
}

/// Decompress a zstd dump to its end, every frame's checksum checked, without running anything; a
/// dump pg_dump compressed itself passes as it is (pg_restore reads it block by block). Blocking.
pub fn check_whole(dump: &Path) -> Result<(), DumpReadError> {
    let read_error = |source| DumpReadError::Read { path: dump.to_owned(), source };
    if dump.is_dir() || !crate::archive::is_zstd_file(dump).map_err(read_error)? {
        return Ok(());
    }
    let file = fs_err::File::open(dump).map_err(read_error)?;
    drain(ZstdReader::new(file).map_err(read_error)?, dump)
}

/// Decompress the rest of a dump to nowhere, to find out whether it is whole.
fn drain(mut rest: ZstdReader, path: &Path) -> Result<(), DumpReadError> {
    std::io::copy(&mut rest, &mut std::io::sink())
        .map(|_| ())
        .map_err(|source| DumpReadError::Read { path: path.to_owned(), source })
}

/// Row count of one table, as the manifest records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableCount {
    pub schema: String,
    pub table: String,
    pub rows: i64,
}

impl TableCount {
    pub fn qualified(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.table))
    }
}

/// The ordinary tables whose data pg_dump dumps: not system tables, not tables of extensions.
const USER_TABLES: &str = "
    SELECT n.nspname::text, c.relname::text
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind = 'r'
      AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'
      AND NOT EXISTS (SELECT 1 FROM pg_depend d
                      WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
    ORDER BY 1, 2";

/// Exact row counts of every user table, in the client's current transaction (and snapshot).
pub(crate) async fn table_counts(
    client: &Client,
) -> Result<Vec<TableCount>, tokio_postgres::Error> {
    let mut out = Vec::new();
    for row in client.query(USER_TABLES, &[]).await? {
        let (schema, table): (String, String) = (row.get(0), row.get(1));
        let sql = format!("SELECT count(*) FROM {}.{}", quote_ident(&schema), quote_ident(&table));
        let rows: i64 = client.query_one(&sql, &[]).await?.get(0);
        out.push(TableCount { schema, table, rows });
    }
    Ok(out)
}

/// Encoding, locale and owner of a database, to create its replacement alike.
#[derive(Debug, Clone)]
pub(crate) struct DbShape {
    pub owner: String,
    pub encoding: String,
    pub collate: String,
    pub ctype: String,
}

pub(crate) async fn db_shape(
    maint: &Client,
    name: &str,
) -> Result<Option<DbShape>, tokio_postgres::Error> {
    let row = maint
        .query_opt(
            "SELECT pg_get_userbyid(datdba)::text, pg_encoding_to_char(encoding)::text, datcollate::text, datctype::text
             FROM pg_database WHERE datname = $1",
            &[&name],
        )
        .await?;
    Ok(row.map(|r| DbShape {
        owner: r.get(0),
        encoding: r.get(1),
        collate: r.get(2),
        ctype: r.get(3),
    }))
}

pub(crate) async fn database_exists(
    maint: &Client,
    name: &str,
) -> Result<bool, tokio_postgres::Error> {
    Ok(maint.query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name]).await?.is_some())
}

/// `CREATE DATABASE name` from template0 with the shape of `like` (when known).
pub(crate) async fn create_database(
    maint: &Client,
    name: &str,
    like: Option<&DbShape>,
) -> Result<(), tokio_postgres::Error> {
    let mut sql = format!("CREATE DATABASE {} TEMPLATE template0", quote_ident(name));
    if let Some(shape) = like {
        let _ = write!(
            sql,
            " OWNER {} ENCODING {} LC_COLLATE {} LC_CTYPE {}",
            quote_ident(&shape.owner),
            quote_literal(&shape.encoding),
            quote_literal(&shape.collate),
            quote_literal(&shape.ctype)
        );
    }
    maint.batch_execute(&sql).await
}

/// Drop a database, ending its sessions first.
pub(crate) async fn drop_database(maint: &Client, name: &str) -> Result<(), tokio_postgres::Error> {
    maint
        .batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(name)))
        .await
}

/// Databases whose names start with `prefix`.
pub(crate) async fn databases_with_prefix(
    maint: &Client,
    prefix: &str,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let rows = maint.query("SELECT datname::text FROM pg_database ORDER BY 1", &[]).await?;
    Ok(rows.into_iter().map(|r| r.get::<_, String>(0)).filter(|n| n.starts_with(prefix)).collect())
}

/// A string literal for SQL.
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A database name that fits PostgreSQL's limit, or an error naming it.
pub(crate) fn check_identifier(name: &str) -> Result<(), BackupError> {
    if name.len() > MAX_IDENTIFIER {
        return Err(BackupError::NameTooLong { name: name.to_owned() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_and_bindir() {
        assert_eq!(quote_literal("it's"), "'it''s'");
        let tmp = tempfile::tempdir().unwrap();
        for v in ["13", "15", "9.6", "x"] {
            fs_err::create_dir_all(tmp.path().join(v).join("bin")).unwrap();
            fs_err::write(tmp.path().join(v).join("bin/pg_dump"), "").unwrap();
        }
        assert_eq!(newest_debian_bindir(tmp.path()), Some(tmp.path().join("15/bin")));
        let cmd = PgTools::in_dir("/opt/pg/bin").cmd("pg_dump");
        assert_eq!(cmd.program(), Path::new("/opt/pg/bin/pg_dump"));
    }

    #[test]
    fn connect_cmd_keeps_the_password_off_the_command_line() {
        let target =
            DbTarget::parse(&crate::secret::Secret::new("postgresql://u:hunter2@h:5433/app"))
                .unwrap();
        let cmd = PgTools::in_dir("/b").connect_cmd("pg_dump", &target);
        let shown = cmd.display();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("PGPASSWORD=***"), "{shown}");
        assert!(cmd.argv().iter().all(|a| !a.contains("hunter2")));
    }
}
