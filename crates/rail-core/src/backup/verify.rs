//! Verification of a backup set at three levels (SPEC §2.2):
//!
//! - `checksums`: the manifest's seal, then every component's size and SHA-256;
//! - `structure`: plus `pg_restore --list` (the dump's table of contents names every table the manifest
//!   counted), a full read of the dump by `pg_restore` (every compressed block decompresses; a zstd
//!   dump is decompressed to its end, every frame's checksum checked), and every
//!   archive entry read to its end with its path checked as extraction would;
//! - `restore-test`: plus a restore into a scratch database whose row counts must equal the manifest's;
//!   the scratch database is dropped whatever happens.
//!
//! A report names every component that failed and why; it is an error only when verification itself
//! could not run (the database is unreachable for a restore test).

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use super::pg::{self, DumpReader, PgTools, TableCount};
use super::{
    database_target, directory_digest, error_chain, format, BackupError, Component, ComponentKind,
    Manifest, ManifestError, Progress, VerifyLevel,
};
use crate::archive;
use crate::config::Config;
use crate::db::DbTarget;
use crate::store::{BackupStore, EntryKind};

/// What the first and last lines of a complete plain-SQL dump say.
const SQL_HEADER: &str = "-- PostgreSQL database dump";
const SQL_FOOTER: &str = "-- PostgreSQL database dump complete";

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// `manifest`, `database`, `static`, `media`, `schema`, `restore-test`.
    pub component: String,
    pub ok: bool,
    pub detail: String,
}

impl Check {
    fn pass(component: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { component: component.into(), ok: true, detail: detail.into() }
    }

    fn fail(component: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { component: component.into(), ok: false, detail: detail.into() }
    }
}

/// Everything verification found about one set.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub name: String,
    pub level: VerifyLevel,
    pub checks: Vec<Check>,
    pub duration_ms: u64,
}

impl VerifyReport {
    /// Whether every check passed.
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }

    /// The checks that failed.
    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| !c.ok)
    }

    /// `database: checksum mismatch; static: missing` — for error messages.
    pub fn summary(&self) -> String {
        let failed: Vec<String> =
            self.failures().map(|c| format!("{}: {}", c.component, c.detail)).collect();
        if failed.is_empty() {
            "all checks passed".into()
        } else {
            failed.join("; ")
        }
    }
}

/// Verify the set `name` of the configured store at `level`.
pub async fn verify(
    cfg: &Config,
    name: &str,
    level: VerifyLevel,
    progress: &dyn Progress,
) -> Result<VerifyReport, BackupError> {
    verify_components(cfg, name, level, None, progress).await
}

/// Verify the set `name`, checking only the components in `only` (all when `None`) besides its manifest:
/// a restore of the database alone need not read the media archive.
pub async fn verify_components(
    cfg: &Config,
    name: &str,
    level: VerifyLevel,
    only: Option<&[ComponentKind]>,
    progress: &dyn Progress,
) -> Result<VerifyReport, BackupError> {
    let started = Instant::now();
    let entry = super::store(cfg).local_path(name)?;
    let mut checks = Vec::new();
    match entry.kind {
        EntryKind::Partial => {
            checks.push(Check::fail("manifest", "missing: the set is incomplete"));
        }
        EntryKind::Foreign => {
            checks.push(Check::fail("manifest", "not a set rail wrote (no marker, no manifest)"));
        }
        EntryKind::Legacy => {
            let mut level = level;
            if !cfg.rollback.allow_legacy {
                checks.push(Check::fail(
                    "authentication",
                    "a plain-SQL dump of the older tools carries none (rollback.allow_legacy = true trusts it)",
                ));
                level = level.min(VerifyLevel::Structure);
            }
            checks.extend(verify_legacy(cfg, &entry.path, level).await?);
        }
        EntryKind::Set => {
            let keys = super::keyring(cfg)?;
            let manifest = match Manifest::read(&entry.path, name, true) {
                Ok(manifest) => {
                    checks.push(Check::pass("manifest", "sealed"));
                    Some(manifest)
                }
                Err(ManifestError::Edited) => {
                    checks.push(Check::fail("manifest", ManifestError::Edited.to_string()));
                    // Check the components against what it says now: the report then shows everything.
                    Manifest::read(&entry.path, name, false).ok()
                }
                Err(error) => {
                    checks.push(Check::fail("manifest", error.to_string()));
                    None
                }
            };
            let mut level = level;
            if let Some(manifest) = &manifest {
                match keys.verify(manifest) {
                    Ok(key_id) => {
                        checks
                            .push(Check::pass("authentication", format!("signed by key {key_id}")));
                    }
                    Err(error) => {
                        checks.push(Check::fail("authentication", error.to_string()));
                        // Restoring a dump nobody vouches for, even into a scratch database, would run
                        // whatever it holds.
                        if level >= VerifyLevel::RestoreTest {
                            level = VerifyLevel::Structure;
                            checks.push(Check::fail(
                                "restore-test",
                                "not run: the set is not authenticated",
                            ));
                        }
                    }
                }
            }
            if let Some(manifest) = manifest {
                checks
                    .extend(verify_set(cfg, &entry.path, &manifest, level, only, progress).await?);
            }
        }
    }
    Ok(VerifyReport {
        name: name.to_owned(),
        level,
        checks,
        duration_ms: started.elapsed().as_millis() as u64,
    })
}

/// Check the components of a set whose manifest has been read (those in `only`, or all).
pub async fn verify_set(
    cfg: &Config,
    dir: &Path,
    manifest: &Manifest,
    level: VerifyLevel,
    only: Option<&[ComponentKind]>,
    progress: &dyn Progress,
) -> Result<Vec<Check>, BackupError> {
    let tools = PgTools::resolve(&cfg.database).await;
    let structure = level >= VerifyLevel::Structure;
    let wanted = |kind: ComponentKind| only.is_none_or(|only| only.contains(&kind));
    let total: u64 = manifest.components.iter().filter(|c| wanted(c.name)).map(|c| c.size).sum();
    progress.begin("verify", Some(total));
    let tasks: Vec<_> = manifest
        .components
        .iter()
        .filter(|c| wanted(c.name))
        .cloned()
        .map(|component| {
            let path = dir.join(&component.file);
            tokio::task::spawn_blocking(move || check_file(&component, &path, structure))
        })
        .collect();
    let mut checks = Vec::new();
    for task in tasks {
        checks.push(task.await.map_err(|source| BackupError::Task { source })?);
    }
    progress.advance("verify", total);
    let database = wanted(ComponentKind::Database);
    if structure && database {
        if let Some(db) = manifest.component(ComponentKind::Database) {
            let index = checks
                .iter()
                .position(|c| c.component == ComponentKind::Database.as_str())
                .expect("checked");
            if checks[index].ok {
                checks[index] = check_dump(&tools, &dir.join(&db.file), manifest).await;
            }
            if checks[index].ok {
                let live = match database_target(cfg) {
                    Ok(target) => super::contents::live_objects(cfg, &target).await,
                    Err(_) => super::contents::LiveObjects::default(),
                };
                match super::contents::check_dump(&tools, &dir.join(&db.file), &live).await {
                    Ok(problems) if problems.is_empty() => {}
                    Ok(problems) => {
                        checks.push(Check::fail(
                            "contents",
                            format!(
                                "the dump holds what an app database never does: {}",
                                problems.join("; ")
                            ),
                        ));
                    }
                    Err(reason) => checks.push(Check::fail("contents", reason)),
                }
            }
        }
    }
    if database && manifest.component(ComponentKind::Database).is_none() {
        checks.push(Check::fail("database", "the manifest lists no database dump"));
    }
    if level >= VerifyLevel::RestoreTest && database {
        if checks.iter().all(|c| c.ok) {
            let db = manifest.component(ComponentKind::Database).expect("checked above");
            checks.push(restore_test(cfg, &tools, &dir.join(&db.file), manifest).await?);
        } else {
            checks.push(Check::fail("restore-test", "not run: the checks above failed"));
        }
    }
    progress.end("verify", if checks.iter().all(|c| c.ok) { "ok" } else { "failed" });
    Ok(checks)
}

/// Size and SHA-256 (and, at the structure level, the archive entries) of one component.
fn check_file(component: &Component, path: &Path, structure: bool) -> Check {
    let name = component.name.as_str();
    if component.format == format::PG_DIRECTORY {
        return check_dir(component, path);
    }
    let meta = match fs_err::metadata(path) {
        Ok(meta) if meta.is_file() => meta,
        Ok(_) => return Check::fail(name, format!("{} is not a file", component.file)),
        Err(_) => return Check::fail(name, format!("{} is missing", component.file)),
    };
    if meta.len() != component.size {
        return Check::fail(
            name,
            format!(
                "{} is {} bytes, the manifest says {} (truncated or replaced)",
                component.file,
                meta.len(),
                component.size
            ),
        );
    }
    if structure && (component.format == format::TAR_GZIP || component.format == format::TAR_ZSTD) {
        let limits = archive::Limits {
            entries: component.entries,
            content_bytes: component.content_bytes,
            min_free: 0,
        };
        return match archive::check_tar_within(path, &limits) {
            Err(error) => Check::fail(name, error_chain(&error)),
            Ok(summary) if summary.digest.sha256 != component.sha256 => {
                Check::fail(name, format!("{}: checksum mismatch", component.file))
            }
            Ok(summary) if component.entries.is_some_and(|n| n != summary.entries) => Check::fail(
                name,
                format!(
                    "{} entries, the manifest says {}",
                    summary.entries,
                    component.entries.unwrap_or(0)
                ),
            ),
            Ok(summary) => {
                Check::pass(name, format!("{} entries read, checksum ok", summary.entries))
            }
        };
    }
    match archive::hash_file(path) {
        Err(error) => Check::fail(name, error_chain(&error)),
        Ok(digest) if digest.sha256 != component.sha256 => {
            Check::fail(name, format!("{}: checksum mismatch", component.file))
        }
        Ok(_) => Check::pass(name, "checksum ok"),
    }
}

fn check_dir(component: &Component, dir: &Path) -> Check {
    let name = component.name.as_str();
    let mut actual = Vec::new();
    for file in &component.files {
        let path = dir.join(&file.file);
        match archive::hash_file(&path) {
            Ok(digest) if digest.size != file.size => {
                return Check::fail(
                    name,
                    format!(
                        "{}/{} is {} bytes, the manifest says {}",
                        component.file, file.file, digest.size, file.size
                    ),
                );
            }
            Ok(digest) if digest.sha256 != file.sha256 => {
                return Check::fail(
                    name,
                    format!("{}/{}: checksum mismatch", component.file, file.file),
                );
            }
            Ok(_) => actual.push(file.clone()),
            Err(_) => {
                return Check::fail(name, format!("{}/{} is missing", component.file, file.file))
            }
        }
    }
    let (size, sha256) = directory_digest(&actual);
    if size != component.size || sha256 != component.sha256 {
        return Check::fail(name, "the file list does not match the manifest's checksum");
    }
    Check::pass(name, format!("{} files, checksums ok", actual.len()))
}

/// `pg_restore --list` names every counted table, and `pg_restore` reads the whole dump.
async fn check_dump(tools: &PgTools, path: &Path, manifest: &Manifest) -> Check {
    let name = ComponentKind::Database.as_str();
    let list =
        async { DumpReader::spawn(tools.cmd("pg_restore").arg("--list"), path, 1)?.output().await };
    let list = match list.await {
        Ok(out) => String::from_utf8_lossy(&out).into_owned(),
        Err(error) => {
            return Check::fail(name, format!("pg_restore --list failed: {}", error_chain(&error)))
        }
    };
    let tables = manifest.database.as_ref().map_or(&[][..], |db| &db.tables[..]);
    for table in tables {
        let wanted = format!(" TABLE DATA {} {} ", table.schema, table.table);
        if !list.lines().any(|line| line.contains(&wanted)) {
            return Check::fail(
                name,
                format!("the dump has no data for table {}", table.qualified()),
            );
        }
    }
    // For a zstd dump, this also decompresses every frame and checks its checksum.
    let read = async {
        DumpReader::spawn_to_end(tools.cmd("pg_restore").arg("--file=/dev/null"), path)?
            .wait()
            .await
    };
    if let Err(error) = read.await {
        return Check::fail(
            name,
            format!("the dump cannot be read to its end: {}", error_chain(&error)),
        );
    }
    let entries = list.lines().filter(|l| !l.starts_with(';') && !l.trim().is_empty()).count();
    Check::pass(name, format!("checksum ok, {entries} entries, every block readable"))
}

/// Restore the dump into a scratch database, compare row counts, drop it.
async fn restore_test(
    cfg: &Config,
    tools: &PgTools,
    dump: &Path,
    manifest: &Manifest,
) -> Result<Check, BackupError> {
    let target = database_target(cfg)?;
    let role = async {
        let client = target
            .connect(cfg.database.connect_timeout.get(), "rail-verify")
            .await
            .map_err(|e| e.to_string())?;
        super::contents::check_restore_role(&client, true).await
    };
    if let Err(reason) = role.await {
        return Ok(Check::fail("restore-test", format!("not run: {reason}")));
    }
    let scratch = Scratch::create(cfg, &target).await?;
    let outcome = async {
        let cmd = tools
            .connect_cmd("pg_restore", &scratch.target)
            .arg("--exit-on-error")
            .timeout(cfg.backup.timeout.get());
        let restore =
            async { DumpReader::spawn(cmd, dump, cfg.backup.jobs.max(1))?.output().await };
        if let Err(error) = restore.await {
            return Ok(Check::fail(
                "restore-test",
                format!("pg_restore failed: {}", error_chain(&error)),
            ));
        }
        let client = scratch
            .target
            .connect(cfg.database.connect_timeout.get(), "rail-verify")
            .await
            .map_err(|source| BackupError::Connect { source })?;
        let counted = pg::table_counts(&client)
            .await
            .map_err(|source| BackupError::Query { what: "counting restored rows", source })?;
        let expected = manifest.database.as_ref().map_or(&[][..], |db| &db.tables[..]);
        Ok(compare_counts(expected, &counted))
    }
    .await;
    scratch.drop_now().await;
    outcome
}

fn compare_counts(expected: &[TableCount], found: &[TableCount]) -> Check {
    let mut problems = Vec::new();
    for want in expected {
        match found.iter().find(|f| f.schema == want.schema && f.table == want.table) {
            Some(got) if got.rows == want.rows => {}
            Some(got) => problems.push(format!(
                "{}: {} rows, the manifest says {}",
                want.qualified(),
                got.rows,
                want.rows
            )),
            None => problems.push(format!("{}: missing after restore", want.qualified())),
        }
    }
    for got in found {
        if !expected.iter().any(|w| w.schema == got.schema && w.table == got.table) {
            problems.push(format!("{}: restored but not in the manifest", got.qualified()));
        }
    }
    if problems.is_empty() {
        Check::pass("restore-test", format!("{} tables restored, row counts match", expected.len()))
    } else {
        Check::fail("restore-test", problems.join("; "))
    }
}

/// A scratch database on the app's server, dropped by [`Scratch::drop_now`].
pub(crate) struct Scratch {
    pub maint: tokio_postgres::Client,
    pub name: String,
    pub target: DbTarget,
}

impl Scratch {
    pub(crate) async fn create(cfg: &Config, live: &DbTarget) -> Result<Self, BackupError> {
        let name =
            format!("{}__rail_verify_{:06x}", live.dbname(), rand::random::<u32>() & 0x00ff_ffff);
        pg::check_identifier(&name)?;
        let maint = live
            .with_dbname(&cfg.database.maintenance_db)
            .connect(cfg.database.connect_timeout.get(), "rail-verify")
            .await
            .map_err(|source| BackupError::Connect { source })?;
        let query = |what| move |source| BackupError::Query { what, source };
        let shape = pg::db_shape(&maint, live.dbname())
            .await
            .map_err(query("reading the database's settings"))?;
        pg::create_database(&maint, &name, shape.as_ref())
            .await
            .map_err(query("creating a scratch database"))?;
        let target = live.with_dbname(&name);
        Ok(Self { maint, name, target })
    }

    pub(crate) async fn drop_now(self) {
        if let Err(error) = pg::drop_database(&self.maint, &self.name).await {
            tracing::warn!(%error, database = %self.name, "cannot drop the scratch database; `rollback prune` removes it");
        }
    }
}

/// Checks of a plain-SQL dump of the older tools: it starts and ends as pg_dump writes them (the end is
/// where a truncated dump shows), and at the restore-test level it loads into a scratch database.
async fn verify_legacy(
    cfg: &Config,
    path: &Path,
    level: VerifyLevel,
) -> Result<Vec<Check>, BackupError> {
    let owned: PathBuf = path.to_owned();
    let shape = tokio::task::spawn_blocking(move || legacy_shape(&owned))
        .await
        .map_err(|source| BackupError::Task { source })?;
    let mut checks = vec![match shape {
        Ok(()) => Check::pass(
            "database",
            "plain-SQL dump, complete (no checksum: written by the older tools)",
        ),
        Err(problem) => Check::fail("database", problem),
    }];
    if level >= VerifyLevel::RestoreTest {
        if checks[0].ok {
            let tools = PgTools::resolve(&cfg.database).await;
            let target = database_target(cfg)?;
            let scratch = Scratch::create(cfg, &target).await?;
            let result = tools
                .psql_file(&scratch.target, path)
                .timeout(cfg.backup.timeout.get())
                .run()
                .await;
            scratch.drop_now().await;
            checks.push(match result {
                Ok(()) => Check::pass("restore-test", "loaded into a scratch database"),
                Err(error) => {
                    Check::fail("restore-test", format!("psql failed: {}", error_chain(&error)))
                }
            });
        } else {
            checks.push(Check::fail("restore-test", "not run: the checks above failed"));
        }
    }
    Ok(checks)
}

fn legacy_shape(path: &Path) -> Result<(), String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = fs_err::File::open(path).map_err(|e| format!("cannot read: {e}"))?;
    let len = file.metadata().map_err(|e| format!("cannot read: {e}"))?.len();
    let mut head = vec![0u8; 4096.min(len as usize)];
    file.read_exact(&mut head).map_err(|e| format!("cannot read: {e}"))?;
    if !String::from_utf8_lossy(&head).lines().take(5).any(|l| l.starts_with(SQL_HEADER)) {
        return Err("not a pg_dump plain-SQL dump (no header)".into());
    }
    let tail_len = 4096.min(len);
    file.seek(SeekFrom::Start(len - tail_len)).map_err(|e| format!("cannot read: {e}"))?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail).map_err(|e| format!("cannot read: {e}"))?;
    if !String::from_utf8_lossy(&tail).lines().any(|l| l.trim_end() == SQL_FOOTER) {
        return Err("the dump does not end as a complete pg_dump output (truncated?)".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_compared_both_ways() {
        let t =
            |table: &str, rows| TableCount { schema: "public".into(), table: table.into(), rows };
        assert!(compare_counts(&[t("a", 1)], &[t("a", 1)]).ok);
        let check = compare_counts(&[t("a", 1), t("b", 2)], &[t("a", 3), t("c", 0)]);
        assert!(!check.ok);
        assert_eq!(
            check.detail,
            "\"public\".\"a\": 3 rows, the manifest says 1; \"public\".\"b\": missing after restore; \
             \"public\".\"c\": restored but not in the manifest"
        );
    }

    #[test]
    fn legacy_dumps_must_be_complete() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("db_backup_20240101_000000.sql");
        fs_err::write(&path, "--\n-- PostgreSQL database dump\n--\nSELECT 1;\n--\n-- PostgreSQL database dump complete\n--\n").unwrap();
        legacy_shape(&path).unwrap();
        fs_err::write(&path, "--\n-- PostgreSQL database dump\n--\nSELECT 1;\n").unwrap();
        assert!(legacy_shape(&path).unwrap_err().contains("truncated"));
        fs_err::write(&path, "hello").unwrap();
        assert!(legacy_shape(&path).unwrap_err().contains("no header"));
    }
}
