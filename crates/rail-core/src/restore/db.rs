//! The database part of a restore: swap (restore into `<db>__rail_restore`, rename in one transaction)
//! or in place (drop every schema and replay the dump in one transaction).

use std::fmt::Write as _;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::Duration;

use tokio_postgres::Client;

use super::{
    maintenance, query_error, DbOutcome, Leftover, LeftoverKind, RestoreError, RestoreOptions,
};
use crate::backup::contents;
use crate::backup::pg::{
    self, check_identifier, quote_literal, DumpReadError, DumpReader, PgTools,
};
use crate::backup::{BackupError, BackupSet, ComponentKind, SetKind};
use crate::config::{Config, RestoreStrategy};
use crate::db::{quote_ident, DbTarget};

/// `<db>__rail_restore`: the database a swap restore fills before it becomes `<db>`.
pub const DB_RESTORE_SUFFIX: &str = "__rail_restore";
/// `<db>__rail_pre_<stamp>`: the database a swap replaced, kept until finalized or pruned.
pub const DB_PRE_INFIX: &str = "__rail_pre_";
/// `<db>__rail_failed_<stamp>`: a restored database being put aside by an undo.
pub const DB_FAILED_INFIX: &str = "__rail_failed_";
/// `<db>__rail_verify_<hex>`: the scratch database of a restore test.
pub const DB_VERIFY_INFIX: &str = "__rail_verify_";
/// How long sessions get to end before a switch gives up.
const SESSION_WAIT: Duration = Duration::from_secs(15);

/// Where the dump to restore is.
#[derive(Debug, Clone)]
pub(super) enum DumpSource {
    /// A custom- or directory-format dump, read by pg_restore.
    Archive(PathBuf),
    /// A plain-SQL dump of the older tools, read by psql.
    Sql(PathBuf),
}

#[derive(Debug)]
pub(super) enum PreparedDb {
    Swap { restore_db: String },
    InPlace { source: DumpSource },
}

fn source_of(set: &BackupSet) -> Result<DumpSource, RestoreError> {
    match &set.kind {
        SetKind::Legacy => Ok(DumpSource::Sql(set.path.clone())),
        SetKind::Full { manifest } => match manifest.component(ComponentKind::Database) {
            Some(component) => Ok(DumpSource::Archive(set.path.join(&component.file))),
            None => Err(RestoreError::Backup(BackupError::Manifest {
                name: set.name.clone(),
                source: crate::backup::ManifestError::Missing,
            })),
        },
    }
}

/// Restore the dump into `<db>__rail_restore` (swap), or only check the names (in place).
pub(super) async fn prepare(
    cfg: &Config,
    tools: &PgTools,
    target: &DbTarget,
    set: &BackupSet,
    opts: &RestoreOptions,
) -> Result<PreparedDb, RestoreError> {
    let source = source_of(set)?;
    preflight(cfg, tools, target, set, &source, opts).await?;
    if opts.strategy == RestoreStrategy::InPlace {
        // psql commits when pg_restore's output ends, and a zstd stream proves whole only at its
        // last checksum: in place, where nothing is kept to go back to, it is read whole first.
        if let DumpSource::Archive(path) = &source {
            let path = path.clone();
            tokio::task::spawn_blocking(move || pg::check_whole(&path))
                .await
                .map_err(|source| RestoreError::Task { source })?
                .map_err(|e| dump_error(e, "pg_restore"))?;
        }
        return Ok(PreparedDb::InPlace { source });
    }
    let live = target.dbname();
    let restore_db = format!("{live}{DB_RESTORE_SUFFIX}");
    for name in [restore_db.clone(), format!("{live}{DB_PRE_INFIX}00000000000000_9")] {
        check_identifier(&name).map_err(|_| RestoreError::NameTooLong { name })?;
    }
    let maint = maintenance(cfg, target).await?;
    if pg::database_exists(&maint, &restore_db)
        .await
        .map_err(query_error("looking for an unfinished restore"))?
    {
        tracing::warn!(database = %restore_db, "dropping the database of an unfinished restore");
        pg::drop_database(&maint, &restore_db)
            .await
            .map_err(query_error(format!("dropping {restore_db}")))?;
    }
    let shape = pg::db_shape(&maint, live)
        .await
        .map_err(query_error("reading the live database's settings"))?;
    pg::create_database(&maint, &restore_db, shape.as_ref())
        .await
        .map_err(query_error(format!("creating {restore_db}")))?;
    let prepared = async {
        if shape.is_some() {
            copy_settings(&maint, live, &restore_db).await?;
        }
        load(cfg, tools, &target.with_dbname(&restore_db), &source, opts).await
    }
    .await;
    if let Err(error) = prepared {
        if let Err(drop_error) = pg::drop_database(&maint, &restore_db).await {
            tracing::warn!(error = %drop_error, database = %restore_db, "cannot drop the unfinished restore");
        }
        return Err(error);
    }
    Ok(PreparedDb::Swap { restore_db })
}

/// Before anything runs: the restoring role is no superuser (unless `--emergency`), and the dump holds
/// only what an app database holds (never bypassed: see [`crate::backup::contents`]).
async fn preflight(
    cfg: &Config,
    tools: &PgTools,
    target: &DbTarget,
    set: &BackupSet,
    source: &DumpSource,
    opts: &RestoreOptions,
) -> Result<(), RestoreError> {
    let maint = maintenance(cfg, target).await?;
    let need_createdb = opts.strategy == RestoreStrategy::Swap;
    if let Err(reason) = contents::check_restore_role(&maint, need_createdb).await {
        if !opts.emergency {
            return Err(RestoreError::Privileged { reason });
        }
        tracing::warn!(%reason, "restoring with these privileges anyway (--emergency)");
    }
    if let DumpSource::Archive(dump) = source {
        let live = contents::live_objects(cfg, target).await;
        let problems = contents::check_dump(tools, dump, &live).await.map_err(|reason| {
            RestoreError::HostileDump { set: set.name.clone(), problems: vec![reason] }
        })?;
        if !problems.is_empty() {
            return Err(RestoreError::HostileDump { set: set.name.clone(), problems });
        }
    }
    Ok(())
}

/// Drop a prepared database that will not be switched in.
pub(super) async fn discard(cfg: &Config, target: &DbTarget, prepared: &PreparedDb) {
    let PreparedDb::Swap { restore_db } = prepared else { return };
    let dropped = async {
        let maint = maintenance(cfg, target).await?;
        pg::drop_database(&maint, restore_db)
            .await
            .map_err(query_error(format!("dropping {restore_db}")))
    };
    if let Err(error) = dropped.await {
        tracing::warn!(error = %crate::backup::error_chain(&error), database = %restore_db, "cannot drop the prepared database; `rollback prune` removes it");
    }
}

/// Load a dump into an empty database.
async fn load(
    cfg: &Config,
    tools: &PgTools,
    into: &DbTarget,
    source: &DumpSource,
    opts: &RestoreOptions,
) -> Result<(), RestoreError> {
    let task = ComponentKind::Database.as_str();
    opts.progress.begin(task, None);
    // Commits of a restore need not wait for the disk one by one: the switch's own commit is synchronous
    // and makes everything before it durable.
    let timeout = cfg.backup.timeout.get();
    match source {
        DumpSource::Archive(path) => {
            let cmd = tools
                .connect_cmd("pg_restore", into)
                .arg("--exit-on-error")
                .env("PGOPTIONS", "-c synchronous_commit=off")
                .timeout(timeout);
            // pg_restore runs jobs only on a file it can seek in: a zstd dump is decompressed beside
            // the sets first when there is room for it, else it is streamed to one job.
            let parallel = match opts.jobs {
                0 | 1 => None,
                jobs => ParallelCopy::make(cfg, path).await?.map(|copy| (copy, jobs)),
            };
            let (file, jobs) = match &parallel {
                Some((copy, jobs)) => (copy.path.as_path(), *jobs),
                None => (path.as_path(), opts.jobs.max(1)),
            };
            DumpReader::spawn(cmd, file, jobs)
                .map_err(|e| dump_error(e, "pg_restore"))?
                .output()
                .await
                .map_err(|e| dump_error(e, "pg_restore"))?;
        }
        DumpSource::Sql(path) => tools
            .psql_file(into, path)
            .env("PGOPTIONS", "-c synchronous_commit=off")
            .timeout(timeout)
            .run()
            .await
            .map_err(|source| RestoreError::Program { action: "psql", source })?,
    }
    opts.progress.end(task, "restored");
    Ok(())
}

/// An uncompressed copy of a zstd dump, for `pg_restore --jobs`; removed when dropped.
struct ParallelCopy {
    path: PathBuf,
}

/// Prefix of the copies, hidden in the backup directory (listing and pruning pass over plain files).
const PARALLEL_COPY_PREFIX: &str = ".rail-restore-";

impl ParallelCopy {
    /// The copy of `dump` when it is zstd and the backup directory has room for it (four times the
    /// compressed size, on top of `backup.min_free_space`); `None` otherwise.
    async fn make(cfg: &Config, dump: &std::path::Path) -> Result<Option<Self>, RestoreError> {
        use crate::store::BackupStore as _;
        let read = |source| RestoreError::DumpRead { path: dump.to_owned(), source };
        if dump.is_dir() || !crate::archive::is_zstd_file(dump).map_err(read)? {
            return Ok(None);
        }
        let dir = cfg.backup.directory.clone();
        remove_stale_copies(&dir);
        let size = fs_err::metadata(dump).map_err(read)?.len();
        let free = crate::backup::store(cfg).free_space().unwrap_or(0);
        if free < size.saturating_mul(4) + cfg.backup.min_free_space.bytes() {
            tracing::info!(dump = %dump.display(), "not enough room to decompress the dump: one pg_restore job");
            return Ok(None);
        }
        let copy =
            Self { path: dir.join(format!("{PARALLEL_COPY_PREFIX}{}.dump", std::process::id())) };
        let (from, to) = (dump.to_owned(), copy.path.clone());
        let copied = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let input = std::io::BufReader::new(fs_err::File::open(&from)?);
            let mut output =
                crate::archive::create_private_file(&to).map_err(std::io::Error::other)?;
            // Every frame's checksum is checked on the way.
            zstd::stream::copy_decode(input, &mut output)?;
            Ok(())
        })
        .await
        .map_err(|e| read(std::io::Error::other(e)))?;
        copied.map_err(read)?;
        Ok(Some(copy))
    }
}

impl Drop for ParallelCopy {
    fn drop(&mut self) {
        let _ = fs_err::remove_file(&self.path);
    }
}

/// Remove the copies that runs which no longer exist left behind (a killed restore).
fn remove_stale_copies(dir: &std::path::Path) {
    let Ok(entries) = fs_err::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(PARALLEL_COPY_PREFIX)
            .and_then(|rest| rest.strip_suffix(".dump"))
            .and_then(|pid| pid.parse::<i32>().ok())
        else {
            continue;
        };
        let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();
        if !alive {
            let _ = fs_err::remove_file(entry.path());
        }
    }
}

/// Give `to` the database-level settings, privileges, connection limit and comment `from` has now.
async fn copy_settings(maint: &Client, from: &str, to: &str) -> Result<(), RestoreError> {
    let to_q = quote_ident(to);
    let mut sql = Vec::new();
    let settings = maint
        .query(
            "SELECT coalesce(r.rolname::text, ''), s.setconfig
             FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase
             LEFT JOIN pg_roles r ON r.oid = s.setrole WHERE d.datname = $1",
            &[&from],
        )
        .await
        .map_err(query_error("reading database settings"))?;
    for row in settings {
        let role: String = row.get(0);
        let config: Vec<String> = row.get(1);
        for item in config {
            let Some((name, value)) = item.split_once('=') else { continue };
            // List settings are stored already quoted as SQL lists; the others are single strings.
            let list = [
                "search_path",
                "temp_tablespaces",
                "session_preload_libraries",
                "local_preload_libraries",
            ]
            .contains(&name.to_ascii_lowercase().as_str());
            let value = if list { value.to_owned() } else { quote_literal(value) };
            let in_role = if role.is_empty() {
                String::new()
            } else {
                format!(" IN ROLE {}", quote_ident(&role))
            };
            sql.push(format!(
                "ALTER DATABASE {to_q}{in_role} SET {} TO {value}",
                quote_ident(name)
            ));
        }
    }
    let row = maint
        .query_one(
            "SELECT datacl IS NOT NULL, datconnlimit, shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1",
            &[&from],
        )
        .await
        .map_err(query_error("reading database privileges"))?;
    let (has_acl, limit, comment): (bool, i32, Option<String>) =
        (row.get(0), row.get(1), row.get(2));
    if has_acl {
        sql.push(format!("REVOKE ALL ON DATABASE {to_q} FROM PUBLIC"));
        let grants = maint
            .query(
                "SELECT a.privilege_type::text, coalesce(r.rolname::text, ''), a.is_grantable
                 FROM pg_database d, aclexplode(d.datacl) a LEFT JOIN pg_roles r ON r.oid = a.grantee
                 WHERE d.datname = $1",
                &[&from],
            )
            .await
            .map_err(query_error("reading database privileges"))?;
        for grant in grants {
            let (privilege, grantee, grantable): (String, String, bool) =
                (grant.get(0), grant.get(1), grant.get(2));
            let grantee =
                if grantee.is_empty() { "PUBLIC".to_owned() } else { quote_ident(&grantee) };
            let option = if grantable { " WITH GRANT OPTION" } else { "" };
            sql.push(format!("GRANT {privilege} ON DATABASE {to_q} TO {grantee}{option}"));
        }
    }
    if limit >= 0 {
        sql.push(format!("ALTER DATABASE {to_q} CONNECTION LIMIT {limit}"));
    }
    if let Some(comment) = comment {
        sql.push(format!("COMMENT ON DATABASE {to_q} IS {}", quote_literal(&comment)));
    }
    for statement in sql {
        maint
            .batch_execute(&statement)
            .await
            .map_err(query_error(format!("copying database settings to {to}")))?;
    }
    Ok(())
}

/// End every session on `db` (connections must already be refused, or the app stopped).
async fn end_sessions(maint: &Client, db: &str) -> Result<u64, RestoreError> {
    let deadline = tokio::time::Instant::now() + SESSION_WAIT;
    let mut ended = 0;
    loop {
        let rows = maint
            .query(
                // Client sessions only: autovacuum workers, which a role that is not a superuser may
                // not end, are stopped by the rename itself.
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE datname = $1 AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
                &[&db],
            )
            .await
            .map_err(query_error(format!("ending the sessions on {db}")))?;
        ended += rows.len() as u64;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let left: i64 = maint
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = $1 AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
                &[&db],
            )
            .await
            .map_err(query_error(format!("counting the sessions on {db}")))?
            .get(0);
        if left == 0 {
            if ended > 0 {
                tracing::info!(
                    database = db,
                    sessions = ended,
                    "ended the sessions on the database"
                );
            }
            return Ok(ended);
        }
        if tokio::time::Instant::now() > deadline {
            return Err(RestoreError::Sessions { database: db.to_owned(), count: left });
        }
    }
}

/// A name `<live><infix><stamp>` not taken yet (`_2`, `_3`… when it is).
async fn free_name(maint: &Client, base: String) -> Result<String, RestoreError> {
    let mut name = base.clone();
    let mut n = 2;
    while pg::database_exists(maint, &name).await.map_err(query_error("choosing a name"))? {
        name = format!("{base}_{n}");
        n += 1;
    }
    check_identifier(&name).map_err(|_| RestoreError::NameTooLong { name: name.clone() })?;
    Ok(name)
}

/// Rename `a` → `b` and `c` → `a` in one transaction, `a` refusing connections meanwhile.
async fn swap_names(
    maint: &Client,
    live: &str,
    aside: &str,
    incoming: &str,
) -> Result<u64, RestoreError> {
    let (live_q, aside_q, incoming_q) =
        (quote_ident(live), quote_ident(aside), quote_ident(incoming));
    maint
        .batch_execute(&format!("ALTER DATABASE {live_q} ALLOW_CONNECTIONS false"))
        .await
        .map_err(query_error(format!("closing {live} to new connections")))?;
    let switched = async {
        let ended = end_sessions(maint, live).await?;
        maint
            .batch_execute(&format!(
                "BEGIN;
                 ALTER DATABASE {live_q} RENAME TO {aside_q};
                 ALTER DATABASE {incoming_q} RENAME TO {live_q};
                 ALTER DATABASE {aside_q} ALLOW_CONNECTIONS true;
                 COMMIT;"
            ))
            .await
            .map_err(query_error(format!("renaming {live} to {aside} and {incoming} to {live}")))?;
        Ok(ended)
    }
    .await;
    if switched.is_err() {
        let _ = maint.batch_execute("ROLLBACK").await;
        if let Err(error) =
            maint.batch_execute(&format!("ALTER DATABASE {live_q} ALLOW_CONNECTIONS true")).await
        {
            tracing::error!(%error, database = live, "cannot let connections back into the database");
        }
    }
    switched
}

/// Switch the prepared database in.
pub(super) async fn switch(
    cfg: &Config,
    tools: &PgTools,
    target: &DbTarget,
    prepared: PreparedDb,
    stamp: &str,
    opts: &RestoreOptions,
) -> Result<DbOutcome, RestoreError> {
    let live = target.dbname().to_owned();
    let maint = maintenance(cfg, target).await?;
    match prepared {
        PreparedDb::Swap { restore_db } => {
            if !pg::database_exists(&maint, &live)
                .await
                .map_err(query_error("looking for the live database"))?
            {
                maint
                    .batch_execute(&format!(
                        "ALTER DATABASE {} RENAME TO {}",
                        quote_ident(&restore_db),
                        quote_ident(&live)
                    ))
                    .await
                    .map_err(query_error(format!("renaming {restore_db} to {live}")))?;
                return Ok(DbOutcome {
                    strategy: RestoreStrategy::Swap,
                    live,
                    kept: None,
                    sessions_ended: 0,
                });
            }
            let aside = free_name(&maint, format!("{live}{DB_PRE_INFIX}{stamp}")).await?;
            let sessions_ended = swap_names(&maint, &live, &aside, &restore_db).await?;
            tracing::info!(live = %live, kept = %aside, "database switched");
            Ok(DbOutcome {
                strategy: RestoreStrategy::Swap,
                live,
                kept: Some(aside),
                sessions_ended,
            })
        }
        PreparedDb::InPlace { source } => {
            if !pg::database_exists(&maint, &live)
                .await
                .map_err(query_error("looking for the live database"))?
            {
                return Err(RestoreError::NoLiveDatabase { database: live });
            }
            let sessions_ended = end_sessions(&maint, &live).await?;
            drop(maint);
            in_place(cfg, tools, target, &source, opts).await?;
            Ok(DbOutcome { strategy: RestoreStrategy::InPlace, live, kept: None, sessions_ended })
        }
    }
}

/// Drop every schema of the live database and replay the dump, in one psql transaction.
async fn in_place(
    cfg: &Config,
    tools: &PgTools,
    target: &DbTarget,
    source: &DumpSource,
    opts: &RestoreOptions,
) -> Result<(), RestoreError> {
    let task = ComponentKind::Database.as_str();
    opts.progress.begin(task, None);
    let client = target
        .connect(cfg.database.connect_timeout.get(), "rail-restore")
        .await
        .map_err(|source| RestoreError::Connect { source })?;
    let schemas: Vec<String> = client
        .query(
            "SELECT nspname::text FROM pg_namespace WHERE nspname NOT IN ('pg_catalog', 'information_schema')
             AND nspname NOT LIKE 'pg\\_toast%' AND nspname NOT LIKE 'pg\\_temp\\_%' ORDER BY 1",
            &[],
        )
        .await
        .map_err(query_error("listing schemas"))?
        .into_iter()
        .map(|r| r.get(0))
        .collect();
    let server_version: i32 = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .map_err(query_error("reading the server version"))?
        .get(0);
    drop(client);
    let mut preamble = String::from(
        "SET lock_timeout = '60s';\nSELECT pg_catalog.lo_unlink(oid) FROM pg_catalog.pg_largeobject_metadata;\n",
    );
    for schema in &schemas {
        let _ = writeln!(preamble, "DROP SCHEMA {} CASCADE;", quote_ident(schema));
    }
    // The dump expects `public` as a new database has it; pg_dump then adjusts it when it differed.
    if server_version >= 150_000 {
        preamble.push_str(
            "CREATE SCHEMA public AUTHORIZATION pg_database_owner;\nGRANT USAGE ON SCHEMA public TO PUBLIC;\n",
        );
    } else {
        preamble.push_str("CREATE SCHEMA public;\nGRANT ALL ON SCHEMA public TO PUBLIC;\n");
    }
    preamble
        .push_str("COMMENT ON SCHEMA public IS 'standard public schema';\nRESET lock_timeout;\n");

    let timeout = cfg.backup.timeout.get();
    let failed = |action| move |source| RestoreError::Program { action, source };
    let mut psql = tools
        .connect_cmd("psql", target)
        .args([
            "--no-psqlrc",
            "--quiet",
            "--single-transaction",
            "-v",
            "ON_ERROR_STOP=1",
            "--file=-",
        ])
        .stdin_piped()
        .timeout(timeout)
        .spawn()
        .map_err(failed("psql"))?;
    let stdin = psql
        .stdin
        .take()
        .expect("stdin is piped")
        .into_owned_fd()
        .map_err(|source| io(source, "psql"))?;
    let (feed, producer) = match source {
        DumpSource::Archive(path) => {
            // One transaction in the script too: without it pg_restore wraps large objects in a
            // BEGIN/COMMIT of their own, which would commit psql's transaction half-way.
            let cmd = tools
                .cmd("pg_restore")
                .arg("--single-transaction")
                .arg("--file=-")
                .timeout(timeout);
            let mut running =
                DumpReader::spawn(cmd, path, 1).map_err(|e| dump_error(e, "pg_restore"))?;
            let stdout = running
                .take_stdout()
                .expect("stdout is piped")
                .into_owned_fd()
                .map_err(|source| io(source, "pg_restore"))?;
            (Feed::Fd(stdout), Some(running))
        }
        DumpSource::Sql(path) => (Feed::File(path.clone()), None),
    };
    let copy = tokio::task::spawn_blocking(move || {
        let mut sink = std::fs::File::from(stdin);
        let written = feed_psql(&preamble, feed, &mut sink);
        (sink, written)
    });
    let producer_done = async {
        match producer {
            Some(running) => {
                running.wait().await.map(|_| ()).map_err(|e| dump_error(e, "pg_restore"))
            }
            None => Ok(()),
        }
    };
    let (copied, restored) = tokio::join!(copy, producer_done);
    let (sink, written) = copied.map_err(|source| RestoreError::Task { source })?;
    if written.is_ok() && restored.is_ok() {
        // The end of its input: psql commits.
        drop(sink);
        psql.wait().await.map_err(failed("psql"))?;
    } else {
        // psql must not see the end of its input, which would commit what it got so far (pg_restore
        // may have died half-way). If psql stopped by itself (a failed statement, a lock timeout),
        // its error says most; if it still waits for input, it is stopped, and its transaction ends
        // with its connection.
        let replayed = tokio::time::timeout(PSQL_SETTLE, psql.wait()).await;
        drop(sink);
        if let Ok(Err(error)) = replayed {
            return Err(failed("psql")(error));
        }
        restored?;
        written.map_err(|source| io(source, "psql"))?;
    }
    opts.progress.end(task, "restored in place");
    Ok(())
}

/// How long an in-place restore whose input failed waits for psql to report its own failure before
/// stopping it.
const PSQL_SETTLE: Duration = Duration::from_secs(2);

enum Feed {
    Fd(OwnedFd),
    File(PathBuf),
}

fn dump_error(error: DumpReadError, program: &'static str) -> RestoreError {
    match error {
        DumpReadError::Program(source) => RestoreError::Program { action: program, source },
        DumpReadError::Read { path, source } => RestoreError::DumpRead { path, source },
    }
}

fn io(source: std::io::Error, program: &str) -> RestoreError {
    RestoreError::Io { path: PathBuf::from(program), source }
}

/// Write the preamble, then the dump's SQL, to psql's stdin; the caller closes it (ending psql's
/// input, so committing) once it knows the dump was read whole.
fn feed_psql(preamble: &str, feed: Feed, sink: &mut std::fs::File) -> std::io::Result<()> {
    use std::io::Write;
    sink.write_all(preamble.as_bytes())?;
    match feed {
        Feed::Fd(fd) => {
            let mut source = std::fs::File::from(fd);
            std::io::copy(&mut source, sink)?;
        }
        Feed::File(path) => {
            let mut source = fs_err::File::open(path)?;
            std::io::copy(&mut source, sink)?;
        }
    }
    sink.flush()
}

/// Put the kept database back in place of the restored one, then drop the restored one.
pub(super) async fn undo(
    cfg: &Config,
    target: &DbTarget,
    outcome: &DbOutcome,
    stamp: &str,
) -> Result<(), RestoreError> {
    let Some(kept) = &outcome.kept else {
        if outcome.strategy == RestoreStrategy::InPlace {
            tracing::warn!(database = %outcome.live, "an in-place restore keeps no copy to put back");
        }
        return Ok(());
    };
    let maint = maintenance(cfg, target).await?;
    let failed = free_name(&maint, format!("{}{DB_FAILED_INFIX}{stamp}", outcome.live)).await?;
    swap_names(&maint, &outcome.live, &failed, kept).await?;
    tracing::info!(live = %outcome.live, "database put back");
    pg::drop_database(&maint, &failed).await.map_err(query_error(format!("dropping {failed}")))
}

/// Drop a database a restore left, refusing any name that is not one of those.
pub(super) async fn drop_kept(
    cfg: &Config,
    target: &DbTarget,
    name: &str,
) -> Result<(), RestoreError> {
    let prefix = format!("{}__rail_", target.dbname());
    if !name.starts_with(&prefix) {
        return Err(RestoreError::NotOurs { name: name.to_owned() });
    }
    let maint = maintenance(cfg, target).await?;
    pg::drop_database(&maint, name).await.map_err(query_error(format!("dropping {name}")))
}

/// Databases a restore or verification left.
pub(super) async fn leftovers(
    cfg: &Config,
    target: &DbTarget,
) -> Result<Vec<Leftover>, RestoreError> {
    let live = target.dbname();
    let maint = maintenance(cfg, target).await?;
    let prefix = format!("{live}__rail_");
    let names = pg::databases_with_prefix(&maint, &prefix)
        .await
        .map_err(query_error("listing databases"))?;
    Ok(names
        .into_iter()
        .map(|name| match name.strip_prefix(&format!("{live}{DB_PRE_INFIX}")) {
            Some(stamp) => {
                Leftover { kind: LeftoverKind::KeptDatabase, stamp: Some(stamp.to_owned()), name }
            }
            None => Leftover { kind: LeftoverKind::Unfinished, stamp: None, name },
        })
        .collect())
}

/// See [`super::repair`].
pub(super) async fn repair(cfg: &Config, target: &DbTarget) -> Result<Vec<String>, RestoreError> {
    let live = target.dbname().to_owned();
    let restore_db = format!("{live}{DB_RESTORE_SUFFIX}");
    let maint = maintenance(cfg, target).await?;
    let mut actions = Vec::new();
    let row = maint
        .query_opt("SELECT datallowconn FROM pg_database WHERE datname = $1", &[&live])
        .await
        .map_err(query_error("looking for the live database"))?;
    let restore_exists = pg::database_exists(&maint, &restore_db)
        .await
        .map_err(query_error("looking for a restore"))?;
    let ours = pg::databases_with_prefix(&maint, &format!("{live}__rail_"))
        .await
        .map_err(query_error("listing databases"))?;
    match row {
        None if restore_exists => {
            maint
                .batch_execute(&format!(
                    "ALTER DATABASE {} RENAME TO {}",
                    quote_ident(&restore_db),
                    quote_ident(&live)
                ))
                .await
                .map_err(query_error(format!("renaming {restore_db} to {live}")))?;
            actions.push(format!("finished a cut switch: renamed database {restore_db} to {live}"));
        }
        Some(row) => {
            let allowed: bool = row.get(0);
            if !allowed && !ours.is_empty() {
                maint
                    .batch_execute(&format!(
                        "ALTER DATABASE {} ALLOW_CONNECTIONS true",
                        quote_ident(&live)
                    ))
                    .await
                    .map_err(query_error(format!("letting connections into {live}")))?;
                actions.push(format!("let connections back into database {live}, closed by a switch that did not happen"));
            }
            if restore_exists {
                pg::drop_database(&maint, &restore_db)
                    .await
                    .map_err(query_error(format!("dropping {restore_db}")))?;
                actions
                    .push(format!("dropped {restore_db}, left by a restore that did not finish"));
            }
        }
        None => {}
    }
    for name in ours.iter().filter(|n| n.starts_with(&format!("{live}{DB_FAILED_INFIX}"))) {
        pg::drop_database(&maint, name).await.map_err(query_error(format!("dropping {name}")))?;
        actions.push(format!("dropped {name}, left by an undo that did not finish"));
    }
    Ok(actions)
}
