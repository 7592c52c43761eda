//! The real work behind each deploy step, against the live system through rail-core: the database and
//! Redis, the Django management commands, backups and restores, maintenance mode, the service backend,
//! health checks and notifications.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rail_core::config::{Config, DeployStrategy, Loaded, OnlineFailure, StaticStrategy};
use rail_core::db::DbTarget;
use rail_core::journal::{self, RunId};
use rail_core::lock::RunLock;
use rail_core::process::Cmd;
use rail_core::redis::redis;
use serde_json::{json, Value};

use crate::checks::pre;
use crate::django::{self, Django};
use crate::engine::{Actions, Boundary, Ending, RunState, Step};
use crate::plan::{Params, PlanCheck};
use crate::ENV_FAULT;
use rail_core::config::ByteSize;

/// Static files collected before the maintenance window.
struct Staged {
    next: PathBuf,
    copied: u64,
}

/// Facts about the live system that a dry run shows; each is best effort and says why when unknown.
#[derive(Debug)]
pub(crate) struct Facts {
    pub current_version: Option<String>,
    pub pending: Result<Vec<String>, String>,
    pub estimated_backup_bytes: Option<u64>,
    pub free_bytes: Option<u64>,
    pub lock: LockState,
    pub interrupted: Option<String>,
    pub newest_backup: Option<String>,
    pub commands: BTreeMap<Step, Vec<String>>,
    /// The strategy the deploy would take, with the analysis of every pending migration.
    pub decision: Option<crate::online::Decision>,
    /// The read-only pre-checks, in order.
    pub checks: Vec<PlanCheck>,
}

impl Facts {
    /// Read everything a plan needs, changing nothing.
    pub(crate) async fn gather(loaded: &Loaded, params: &Params) -> Facts {
        let cfg = &loaded.config;
        let mut facts = Facts {
            current_version: None,
            pending: Err("not read".into()),
            estimated_backup_bytes: None,
            free_bytes: None,
            lock: LockState::Unknown("not read".into()),
            interrupted: None,
            newest_backup: None,
            commands: BTreeMap::new(),
            decision: None,
            checks: Vec::new(),
        };
        facts.current_version = crate::services::current_version(cfg).await;
        let target = params.version.clone().or_else(|| facts.current_version.clone());
        let dir = release_dir(cfg, target.as_deref());
        let dj = Django::new(cfg, dir).with_version(target.as_deref());
        let mut cmds = BTreeMap::new();
        if let Ok(cmd) = dj.showmigrations() {
            cmds.insert(Step::PreChecks, vec![cmd.display()]);
            facts.pending = match cmd.output().await {
                Ok(out) => Ok(django::pending_migrations(&out.stdout_text())),
                Err(e) => Err(e.summary()),
            };
            let strategy = params.strategy(cfg);
            let migrate_to = params.migrate_to.is_some();
            let pending = facts.pending.as_deref().map_err(Clone::clone);
            facts.decision =
                Some(crate::online::decide_for(cfg, &dj, strategy, migrate_to, pending).await);
            if strategy != DeployStrategy::Maintenance {
                if let Some(name) = facts.pending.as_ref().ok().and_then(|p| p.first()) {
                    if let Some((app, migration)) = name.split_once('.') {
                        if let Ok(cmd) = dj.sqlmigrate(app, migration) {
                            cmds.entry(Step::PreChecks).or_insert_with(Vec::new).push(format!(
                                "{}  # and each other pending migration",
                                cmd.display()
                            ));
                        }
                    }
                }
            }
        }
        if cfg.deploy.run_tests {
            if let Ok(cmd) = dj.tests() {
                cmds.entry(Step::PreChecks).or_insert_with(Vec::new).push(cmd.display());
            }
        }
        if let Ok(cmd) = dj.migrate(params.migrate_target().as_ref()) {
            cmds.insert(Step::Migrate, vec![cmd.display()]);
        }
        if crate::plan::staged_static(cfg) {
            if let Some(paths) = crate::statics::Paths::new(&cfg.app.static_dir, "<run id>") {
                if let Ok(cmd) = dj.collectstatic_into(&paths.next) {
                    cmds.entry(Step::PreChecks).or_insert_with(Vec::new).push(cmd.display());
                }
                cmds.insert(
                    Step::CollectStatic,
                    vec![
                        format!("rename {} -> {}", paths.live.display(), paths.old.display()),
                        format!("rename {} -> {}", paths.next.display(), paths.live.display()),
                    ],
                );
            }
        } else if let Ok(cmd) = dj.collectstatic() {
            cmds.insert(Step::CollectStatic, vec![cmd.display()]);
        }
        if !cfg.deploy.cache_clear_command.is_empty() {
            if let Ok(cmd) = dj.command(&cfg.deploy.cache_clear_command) {
                cmds.insert(Step::CacheClear, vec![cmd.display()]);
            }
        }
        cmds.insert(Step::Restart, crate::services::restart_commands(cfg, target.as_deref()));
        cmds.insert(Step::Backup, crate::backups::commands(cfg));
        facts.commands = cmds;
        facts.free_bytes = free_space(&existing_ancestor(&cfg.backup.directory)).ok();
        facts.interrupted =
            crate::interrupted(loaded).ok().flatten().map(|s| crate::describe_interrupted(&s));
        facts.newest_backup = crate::backups::newest(cfg);
        facts.checks = facts.run_checks(loaded, params, target.as_deref()).await;
        facts
    }

    /// The pre-checks a dry run can make without changing anything, in the order the deploy makes
    /// them. What could not be read is `unknown`, never taken for good.
    async fn run_checks(
        &mut self,
        loaded: &Loaded,
        params: &Params,
        target: Option<&str>,
    ) -> Vec<PlanCheck> {
        let cfg = &loaded.config;
        let mut checks = Vec::new();
        let db = match cfg.database_url() {
            None => {
                checks.push(PlanCheck::failed(
                    "database",
                    loaded.missing("database.url").to_string(),
                ));
                None
            }
            Some(url) => match DbTarget::parse(&url) {
                Err(e) => {
                    checks.push(PlanCheck::failed(
                        "database",
                        format!("{:#}", anyhow::Error::new(e)),
                    ));
                    None
                }
                Ok(db) => Some(db),
            },
        };
        let client = match &db {
            Some(db) => match pre::database(cfg, db).await {
                Ok(client) => {
                    checks.push(PlanCheck::ok("database", format!("{db} answers")));
                    Some(client)
                }
                Err(e) => {
                    checks.push(PlanCheck::failed("database", format!("{e:#}")));
                    None
                }
            },
            None => None,
        };
        checks.push(match pre::redis(cfg).await {
            Ok(()) if cfg.redis.url.is_empty() => {
                PlanCheck::ok("redis", "not configured: skipped".into())
            }
            Ok(()) => PlanCheck::ok("redis", "PING answered".into()),
            Err(e) => {
                PlanCheck::failed("redis", rail_core::secret::redact_credentials(&format!("{e:#}")))
            }
        });
        checks.push(crate::checks::health_for_plan(cfg).await);
        if let Some(version) = target {
            checks.push(match crate::services::check_version_exists(cfg, version) {
                Ok(()) => PlanCheck::ok("release", format!("app version {version} is there")),
                Err(e) => PlanCheck::failed("release", format!("{e:#}")),
            });
        }
        checks.push(match &self.pending {
            Ok(list) => PlanCheck::ok("pending migrations", format!("{} pending", list.len())),
            Err(e) => PlanCheck::failed("pending migrations", format!("could not be read: {e}")),
        });
        if let Some(decision) = &self.decision {
            checks.push(match &decision.refused {
                Some(refused) => PlanCheck::failed("strategy", refused.clone()),
                None => PlanCheck::ok(
                    "strategy",
                    format!("{}: {}", decision.chosen.name(), decision.reason),
                ),
            });
        }
        checks.push(backup_dir_check(&cfg.backup.directory));
        if !params.no_backup && cfg.backup.remote.is_configured() {
            // The deploy does not depend on the remote: an unreachable one is reported, not failed.
            checks.push(match rail_core::remote::Remote::from_config(cfg) {
                Ok(remote) => match remote.probe().await {
                    Ok(()) => PlanCheck::ok(
                        "remote",
                        format!("{} answers; encryption: {}", remote.url(), remote.encryption()),
                    ),
                    Err(e) => PlanCheck::unknown(
                        "remote",
                        format!(
                            "{}; the upload would fail and warn",
                            rail_core::backup::error_chain(&e)
                        ),
                    ),
                },
                Err(e) => PlanCheck::unknown(
                    "remote",
                    format!(
                        "{}; the upload would fail and warn",
                        rail_core::backup::error_chain(&e)
                    ),
                ),
            });
        }
        if !params.no_backup {
            checks.push(match pre::backup_key(cfg) {
                Ok(()) => PlanCheck::ok("backup key", "the backup will be signed".into()),
                Err(e) => PlanCheck::failed("backup key", format!("{e:#}")),
            });
            checks.push(match &client {
                Some(client) => match pre::restore_role(cfg, client).await {
                    Ok(()) => PlanCheck::ok(
                        "restore role",
                        "a rollback of this deploy could restore its backup".into(),
                    ),
                    Err(e) => PlanCheck::failed("restore role", format!("{e:#}")),
                },
                None => PlanCheck::unknown("restore role", "the database could not be read".into()),
            });
            if let Some(db) = &db {
                if client.is_some() {
                    self.estimated_backup_bytes = estimate_backup(cfg, db).await.ok();
                }
            }
            let dir = &cfg.backup.directory;
            checks.push(match (self.estimated_backup_bytes, self.free_bytes) {
                (Some(need), Some(free)) => match pre::space_shortfall(cfg, dir, free, need) {
                    None => PlanCheck::ok(
                        "disk space",
                        format!(
                            "{} free, the backup needs up to {}",
                            ByteSize(free),
                            ByteSize(need)
                        ),
                    ),
                    Some(shortfall) => PlanCheck::failed("disk space", shortfall),
                },
                (None, _) => PlanCheck::unknown(
                    "disk space",
                    "the backup size could not be estimated".into(),
                ),
                (_, None) => {
                    PlanCheck::unknown("disk space", "free space could not be read".into())
                }
            });
        }
        self.lock = match (&db, &client) {
            (Some(db), Some(_)) => match rail_core::lock::current_holder(db).await {
                Ok(None) => LockState::Free,
                Ok(Some(holder)) => LockState::Held(holder.to_string()),
                Err(e) => LockState::Unknown(format!("{:#}", anyhow::Error::new(e))),
            },
            _ => LockState::Unknown("the database could not be read".into()),
        };
        checks.push(match &self.lock {
            LockState::Free => PlanCheck::ok("lock", "free".into()),
            LockState::Held(holder) => {
                PlanCheck::failed("lock", format!("held by {holder}: the deploy would be refused"))
            }
            LockState::Unknown(why) => PlanCheck::unknown("lock", why.clone()),
        });
        checks.push(match &self.interrupted {
            None => PlanCheck::ok("interrupted run", "none".into()),
            Some(run) => PlanCheck::failed(
                "interrupted run",
                format!("{run}: a deploy is refused until it is resumed or rolled back"),
            ),
        });
        if cfg.deploy.run_tests {
            checks.push(PlanCheck::unknown("tests", "not run by a dry run".into()));
        }
        checks
    }
}

/// The backup directory exists and is writable, or would be created under a writable directory.
fn backup_dir_check(dir: &Path) -> PlanCheck {
    use nix::unistd::{access, AccessFlags};
    let existing = existing_ancestor(dir);
    let writable = access(&existing, AccessFlags::W_OK | AccessFlags::X_OK).is_ok();
    match (existing == dir, writable) {
        (true, true) => PlanCheck::ok("backup directory", format!("{} is writable", dir.display())),
        (false, true) => PlanCheck::ok(
            "backup directory",
            format!("{} will be created in {}", dir.display(), existing.display()),
        ),
        (_, false) => PlanCheck::failed(
            "backup directory",
            format!("{} is not writable (nearest existing: {})", dir.display(), existing.display()),
        ),
    }
}

/// What a dry run knows of the run lock.
#[derive(Debug, Clone)]
pub(crate) enum LockState {
    Free,
    Held(String),
    Unknown(String),
}

/// The directory `manage.py` runs in for `version`: the release's directory when the layout has
/// releases (`services.releases.root`, whatever restarts the app: the `releases` backend, or a
/// systemd unit that runs `releases/${APP_VERSION}`), so migrations run the code being deployed;
/// `app.dir` otherwise.
pub(crate) fn release_dir(cfg: &Config, version: Option<&str>) -> PathBuf {
    let root = &cfg.services.releases.root;
    match version {
        Some(v) if !root.as_os_str().is_empty() => django::release_dir(root, v),
        _ => cfg.app.dir.clone(),
    }
}

/// Database size plus the static and media trees: what a backup will need at most (dumps compress).
async fn estimate_backup(cfg: &Config, db: &DbTarget) -> anyhow::Result<u64> {
    let client = db.connect(cfg.database.connect_timeout.get(), "rail-deploy").await?;
    let row = client.query_one("SELECT pg_database_size(current_database())", &[]).await?;
    let db_bytes: i64 = row.get(0);
    let mut total = u64::try_from(db_bytes).unwrap_or(0);
    if cfg.backup.include_static {
        total += rail_core::archive::tree_size(&cfg.app.static_dir);
    }
    if cfg.backup.include_media {
        total += rail_core::archive::tree_size(&cfg.app.media_dir);
    }
    Ok(total)
}

/// Free bytes for an unprivileged writer on the filesystem holding `path`.
pub(crate) fn free_space(path: &Path) -> anyhow::Result<u64> {
    let stat = nix::sys::statvfs::statvfs(path)
        .with_context(|| format!("reading free space of {}", path.display()))?;
    Ok(stat.blocks_available() * stat.fragment_size())
}

/// `path` or its nearest existing ancestor (the backup directory may not exist yet).
fn existing_ancestor(path: &Path) -> PathBuf {
    let mut p = path.to_path_buf();
    while !p.exists() {
        if !p.pop() {
            return PathBuf::from(".");
        }
    }
    if p.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        p
    }
}

/// The deploy's [`Actions`] against the real system.
pub(crate) struct Real<'a> {
    loaded: &'a Loaded,
    params: &'a Params,
    run_id: RunId,
    lock: &'a RunLock,
    /// Header that lets health checks through maintenance mode.
    bypass: Option<crate::maint::Bypass>,
    fault: Option<Fault>,
    /// Where the backup and restore inside the window show their progress.
    progress: std::sync::Arc<dyn rail_core::backup::Progress>,
}

/// A disaster-drill kill point from [`ENV_FAULT`].
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fault {
    step: String,
    when: String,
}

impl Fault {
    fn from_env() -> Option<Fault> {
        let raw = std::env::var(ENV_FAULT).ok()?;
        let mut parts = raw.splitn(3, ':');
        if parts.next()? != "kill" {
            tracing::warn!("{ENV_FAULT}={raw} is not kill:<step>:before|after|during; ignored");
            return None;
        }
        Some(Fault { step: parts.next()?.to_owned(), when: parts.next()?.to_owned() })
    }

    fn matches(&self, step: &str, when: &str) -> bool {
        self.step == step && self.when == when
    }
}

/// End this process at once, as a crash or `kill -9` would.
fn die_now(step: &str, when: &str) -> ! {
    tracing::warn!("{ENV_FAULT}: killing this run {when} {step}");
    let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    // SIGKILL cannot be caught; this is only reached if raising it failed.
    std::process::abort()
}

impl<'a> Real<'a> {
    pub(crate) fn new(
        loaded: &'a Loaded,
        params: &'a Params,
        run_id: &RunId,
        lock: &'a RunLock,
    ) -> Self {
        Self {
            loaded,
            params,
            run_id: run_id.clone(),
            lock,
            bypass: None,
            fault: Fault::from_env(),
            progress: std::sync::Arc::new(rail_core::backup::NoProgress),
        }
    }

    /// Show the progress of the backup and of a restore through `progress`.
    #[must_use]
    pub(crate) fn with_progress(
        mut self,
        progress: std::sync::Arc<dyn rail_core::backup::Progress>,
    ) -> Self {
        self.progress = progress;
        self
    }

    fn cfg(&self) -> &'a Config {
        &self.loaded.config
    }

    fn children_file(&self) -> PathBuf {
        journal::dir(&self.cfg().backup.directory).join(format!("{}.children", self.run_id))
    }

    /// Run a long command, recording its process group so that a resumed run can stop it if this
    /// process dies while it runs.
    async fn run_tracked(&self, step: Step, cmd: Cmd) -> anyhow::Result<String> {
        let mut running = cmd.spawn()?;
        if let Some(pid) = running.pid() {
            record_child(&self.children_file(), pid);
        }
        if let Some(fault) = &self.fault {
            if fault.matches(step.name(), "during") {
                // Give the child time to start its work before the crash.
                tokio::time::sleep(Duration::from_millis(700)).await;
                die_now(step.name(), "during");
            }
        }
        let mut stdout = running.stdout.take().expect("spawned with stdout piped");
        let mut captured = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut stdout, &mut captured)
            .await
            .context("reading the command's output")?;
        running.wait().await?;
        Ok(String::from_utf8_lossy(&captured).into_owned())
    }

    /// Stop any process group a dead run of this id left running (a migration it started, say).
    pub(crate) fn stop_orphans(&self) {
        let path = self.children_file();
        let Ok(text) = fs_err::read_to_string(&path) else { return };
        for pid in text.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            let pgid = nix::unistd::Pid::from_raw(pid);
            if nix::sys::signal::killpg(pgid, None).is_ok() {
                tracing::warn!("stopping process group {pid} left running by the interrupted run");
                let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGTERM);
                let deadline = Instant::now() + Duration::from_secs(10);
                while Instant::now() < deadline && nix::sys::signal::killpg(pgid, None).is_ok() {
                    std::thread::sleep(Duration::from_millis(100));
                }
                let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
            }
        }
        let _ = fs_err::remove_file(&path);
    }

    /// The checks before anything changes. The Django commands (pending migrations, the staged
    /// `collectstatic`, the tests) run alongside the checks of the database, Redis, the app and the
    /// disk: the first are mostly Python start-up, the second mostly waiting.
    async fn pre_checks(&mut self, state: &RunState) -> anyhow::Result<Value> {
        let _ = state;
        let cfg = self.cfg();
        let version_from = crate::services::current_version(cfg).await;
        let version_to = self.params.version.clone().or_else(|| version_from.clone());
        if let Some(v) = &version_to {
            crate::services::check_version_exists(cfg, v)?;
        }
        let dj = Django::new(cfg, release_dir(cfg, version_to.as_deref()))
            .with_version(version_to.as_deref());
        let strategy = self.params.strategy(cfg);
        let migrate_to = self.params.migrate_to.is_some();
        let pending = async {
            let plan = dj.showmigrations()?.output().await.context("reading pending migrations")?;
            let plan = plan.stdout_text();
            let pending = django::pending_migrations(&plan);
            let decision =
                crate::online::decide_for(cfg, &dj, strategy, migrate_to, Ok(&pending)).await;
            anyhow::Ok((pending, django::applied_before(&plan), decision))
        };
        let tests = async {
            if cfg.deploy.run_tests {
                self.run_tracked(Step::PreChecks, dj.tests()?).await.context("the tests failed")?;
            }
            anyhow::Ok(())
        };
        let (checks, pending, staged, tests) =
            tokio::join!(self.system_checks(), pending, self.stage_static(&dj), tests);
        // The first failure in pipeline order is the one reported. A staged copy left by a failure is
        // removed when the run ends, like every run's.
        let (estimated, free) = checks?;
        let (pending, applied_before, decision) = pending?;
        if let Some(refused) = &decision.refused {
            bail!("{refused}");
        }
        tests?;
        let staged = staged?;
        let staged_summary = match &staged {
            Some(s) => format!(", static files collected into {}", s.next.display()),
            None => String::new(),
        };
        Ok(json!({
            "version_from": version_from,
            "version_to": version_to,
            "pending_migrations": pending,
            "staged_static": staged.as_ref().map(|s| &s.next),
            "staged_static_copied": staged.as_ref().map(|s| s.copied),
            "strategy": decision.chosen,
            "decision": decision,
            "applied_before": applied_before,
            "estimated_backup_bytes": estimated,
            "free_bytes": free,
            "summary": format!(
                "{} pending migration{}, {} -> {}{staged_summary}; {}",
                pending.len(),
                if pending.len() == 1 { "" } else { "s" },
                version_from.as_deref().unwrap_or("?"),
                version_to.as_deref().unwrap_or("?"),
                decision.brief()
            ),
        }))
    }

    /// Database, Redis, the app's health, the backup directory and free space for the backup: the
    /// estimated backup size and the free bytes.
    async fn system_checks(&self) -> anyhow::Result<(u64, u64)> {
        let cfg = self.cfg();
        let url = cfg.database_url().ok_or_else(|| self.loaded.missing("database.url"))?;
        let db = DbTarget::parse(&url)?;
        let client = pre::database(cfg, &db).await?;
        pre::redis(cfg).await?;
        crate::checks::healthy_before(cfg).await?;
        let backup_dir = &cfg.backup.directory;
        fs_err::create_dir_all(backup_dir).context("creating the backup directory")?;
        let probe = backup_dir.join(format!(".rail-write-test-{}", self.run_id));
        fs_err::write(&probe, b"").context("the backup directory is not writable")?;
        fs_err::remove_file(&probe)?;
        let mut estimated = 0;
        let free = free_space(backup_dir)?;
        if !self.params.no_backup {
            pre::backup_key(cfg)?;
            pre::restore_role(cfg, &client).await?;
            estimated = estimate_backup(cfg, &db).await?;
            if let Some(shortfall) = pre::space_shortfall(cfg, backup_dir, free, estimated) {
                bail!("{shortfall}");
            }
        }
        Ok((estimated, free))
    }

    /// With the staged strategy, `collectstatic` into a copy of the live static directory, before the
    /// maintenance window. `None` when the strategy does not apply, or when the command reports another
    /// destination than the copy (settings that do not read `STATIC_ROOT` from the environment): the
    /// step then collects in place inside the window, as the in-place strategy does.
    async fn stage_static(&self, dj: &Django<'_>) -> anyhow::Result<Option<Staged>> {
        let cfg = self.cfg();
        if !cfg.deploy.static_files || cfg.deploy.static_strategy != StaticStrategy::Staged {
            return Ok(None);
        }
        let Some(paths) = crate::statics::Paths::new(&cfg.app.static_dir, &self.run_id.to_string())
        else {
            return Ok(None);
        };
        // The copy needs room beside the live directory, on its file system.
        let needed = rail_core::archive::tree_size(&paths.live);
        let free = free_space(&existing_ancestor(&paths.next))?;
        if free < needed {
            bail!(
                "not enough free space beside {} for the staged copy of the static files: {} free, {} needed; \
                 free some or set deploy.static_strategy = \"in-place\"",
                paths.live.display(),
                rail_core::config::ByteSize(free),
                rail_core::config::ByteSize(needed)
            );
        }
        let copy = paths.clone();
        let copied = tokio::task::spawn_blocking(move || crate::statics::prepare(&copy))
            .await
            .context("copying the static directory")??;
        let out = self
            .run_tracked(Step::PreChecks, dj.collectstatic_into(&paths.next)?)
            .await
            .context("collectstatic into the staging copy of the static directory")?;
        if !crate::statics::collected_into(&out, &paths.next) {
            tracing::warn!(
                staging = %paths.next.display(),
                "collectstatic did not report the staging copy as its destination: the app's settings do not take \
                 STATIC_ROOT from the environment, so it collected where its settings say, before the maintenance \
                 window. It runs again in place inside the window; set deploy.static_strategy = \"in-place\" for \
                 this app"
            );
            let _ = fs_err::remove_dir_all(&paths.next);
            return Ok(None);
        }
        Ok(Some(Staged { next: paths.next, copied }))
    }

    /// Swap in the static files the pre-checks collected; `None` when there are none to swap in.
    async fn swap_static(&self, state: &RunState) -> anyhow::Result<Option<Value>> {
        let cfg = self.cfg();
        if state.staged_static.is_none() {
            return Ok(None);
        }
        let Some(paths) = crate::statics::Paths::new(&cfg.app.static_dir, &self.run_id.to_string())
        else {
            return Ok(None);
        };
        let live = paths.live.clone();
        let swap = tokio::task::spawn_blocking(move || crate::statics::swap_in(&paths))
            .await
            .context("swapping in the collected static files")?
            .with_context(|| {
                format!("swapping in the collected static files at {}", live.display())
            })?;
        Ok(match swap {
            crate::statics::Swap::Swapped | crate::statics::Swap::AlreadyDone => Some(json!({
                "staged": true,
                "summary": format!("static files collected before the window swapped in at {}", live.display()),
            })),
            crate::statics::Swap::NothingStaged => {
                tracing::warn!("the staged static files are gone; collecting in place");
                None
            }
        })
    }

    /// An online deploy's `migrate`: under `deploy.online.lock_timeout`, so that a migration waiting
    /// for a lock never holds the site's queries up behind it, and tried again (a bounded number of
    /// times, with growing pauses) when it gave up on a lock. Django runs each migration in its own
    /// transaction: one that timed out left nothing behind, and the next attempt starts with it.
    async fn migrate_online(&self, state: &RunState) -> anyhow::Result<Value> {
        let cfg = self.cfg();
        let online = &cfg.deploy.online;
        let existing = django::app_env(cfg)?
            .into_iter()
            .rev()
            .find(|(k, _)| k == "PGOPTIONS")
            .map(|(_, v)| v)
            .or_else(|| std::env::var("PGOPTIONS").ok());
        let options = crate::online::pgoptions(cfg, existing.as_deref());
        let mut attempt = 0u32;
        let mut applied = 0usize;
        loop {
            let cmd = self.django(state).migrate(None)?.env("PGOPTIONS", &options);
            match self.run_tracked(Step::Migrate, cmd).await {
                Ok(out) => {
                    applied +=
                        out.lines().filter(|l| l.trim_start().starts_with("Applying ")).count();
                    return Ok(json!({
                        "applied": applied,
                        "lock_retries": attempt,
                        "summary": format!(
                            "{applied} migrations applied online (lock_timeout {}{})",
                            rail_core::config::human_duration(online.lock_timeout.get()),
                            if attempt > 0 { format!(", {attempt} retries") } else { String::new() }
                        ),
                    }));
                }
                Err(e) if crate::online::is_lock_timeout(&e) && attempt < online.lock_retries => {
                    attempt += 1;
                    let pause = crate::online::retry_pause(attempt);
                    tracing::warn!(
                        attempt,
                        "a migration gave up waiting for a lock (lock_timeout); trying again in {}",
                        rail_core::config::human_duration(pause)
                    );
                    tokio::time::sleep(pause).await;
                }
                Err(e) if crate::online::is_lock_timeout(&e) => {
                    return Err(e.context(format!(
                        "a migration could not take its lock within deploy.online.lock_timeout in {} attempts",
                        attempt + 1
                    )));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Undo an online deploy without restoring its backup (which would drop the writes made since):
    /// the previous release takes the socket back (no downtime with a handover), static files and the
    /// schema version return from the backup when the run changed them, and the migrations stay
    /// (`keep-schema`: online migrations leave a schema the previous release runs on) or are reversed.
    async fn rollback_online(&mut self, state: &RunState) -> anyhow::Result<Value> {
        let cfg = self.cfg();
        let touched = |s: Step| state.began.contains(&s);
        let mut restored = Vec::new();
        // A handover that failed left the previous release serving: nothing to hand back then.
        let serving = crate::services::current_version(cfg).await;
        if touched(Step::Restart) && (serving.is_none() || serving != state.version_from) {
            crate::services::switch_and_restart(cfg, state.version_from.as_deref())
                .await
                .context("handing the site back to the previous app version")?;
            restored.push("app".to_owned());
        }
        let mut schema = "kept";
        if touched(Step::Migrate)
            && cfg.deploy.online.on_failure == OnlineFailure::ReverseMigrations
        {
            let dj = self.django(state);
            for (app, to) in state.applied_before.clone().unwrap_or_default() {
                let cmd = dj.migrate_app_to(&app, &to)?;
                self.run_tracked(Step::Migrate, cmd)
                    .await
                    .with_context(|| format!("reversing {app}'s migrations to {to}"))?;
            }
            restored.push("migrations".to_owned());
            schema = "reversed";
        }
        let components = crate::backups::Components {
            database: false,
            static_files: touched(Step::CollectStatic),
            schema: touched(Step::ActivateSchema),
        };
        if let Some(backup) = &state.backup {
            if components.static_files || components.schema {
                crate::backups::restore(
                    cfg,
                    &self.run_id,
                    backup,
                    &components,
                    &self.progress,
                    &mut restored,
                    || {},
                )
                .await?;
            }
        }
        crate::checks::until_healthy(cfg, None)
            .await
            .context("the previous release is not healthy")?;
        Ok(json!({
            "restored": restored,
            "database": format!("not restored (online deploy): migrations {schema}"),
            "backup": state.backup,
        }))
    }

    fn django(&self, state: &RunState) -> Django<'a> {
        Django::new(self.cfg(), release_dir(self.cfg(), state.version_to.as_deref()))
            .with_version(state.version_to.as_deref())
    }

    async fn cache_clear(&self, state: &RunState) -> anyhow::Result<Value> {
        let cfg = self.cfg();
        if !cfg.deploy.cache_clear_command.is_empty() {
            let cmd = self.django(state).command(&cfg.deploy.cache_clear_command)?;
            cmd.run().await?;
            return Ok(json!({"summary": "cache clear command ran"}));
        }
        if cfg.redis.url.is_empty() {
            return Ok(json!({"summary": "no Redis configured: nothing to clear"}));
        }
        let deleted = clear_cache(cfg).await?;
        Ok(json!({"deleted_keys": deleted, "summary": format!("{deleted} cache keys deleted")}))
    }
}

/// Delete the keys matching `deploy.cache_key_pattern`, except rail's own (`rail:` prefix: the
/// maintenance key must survive a cache clear).
pub(crate) async fn clear_cache(cfg: &Config) -> anyhow::Result<u64> {
    let mut conn =
        rail_core::redis::connect(&cfg.redis.url, cfg.redis.connect_timeout.get()).await?;
    let mut cursor: u64 = 0;
    let mut deleted = 0u64;
    loop {
        let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&cfg.deploy.cache_key_pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .context("scanning cache keys")?;
        let doomed: Vec<Vec<u8>> = keys.into_iter().filter(|k| !k.starts_with(b"rail:")).collect();
        if !doomed.is_empty() {
            let n: u64 = redis::cmd("UNLINK")
                .arg(&doomed)
                .query_async(&mut conn)
                .await
                .context("deleting cache keys")?;
            deleted += n;
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
    Ok(deleted)
}

fn record_child(path: &Path, pid: u32) {
    use fs_err::os::unix::fs::OpenOptionsExt as _;
    use std::io::Write;
    // 0600 like every other file under the backup directory.
    let result = fs_err::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| writeln!(f, "{pid}").and_then(|()| f.sync_data()));
    if let Err(e) = result {
        tracing::warn!("could not record child process {pid}: {e}");
    }
}

impl Actions for Real<'_> {
    async fn run_step(&mut self, step: Step, state: &RunState) -> anyhow::Result<Value> {
        if step != Step::PreChecks {
            self.lock.check_alive().await?;
        }
        let cfg = self.cfg();
        match step {
            Step::PreChecks => self.pre_checks(state).await,
            Step::MaintenanceOn | Step::MaintenanceOff if state.online() => Ok(json!({
                "skipped": true,
                "summary": "online deploy: the site keeps serving",
            })),
            Step::MaintenanceOn => {
                let (value, bypass) = crate::maint::enable(cfg, &self.run_id, "deploy").await?;
                self.bypass = bypass;
                Ok(value)
            }
            Step::Backup => crate::backups::take(cfg, &self.run_id, state, &self.progress).await,
            Step::Migrate => {
                let target = self.params.migrate_target();
                if target.is_none()
                    && !cfg.deploy.migrate_when_none_pending
                    && state.pending_migrations.as_ref().is_some_and(Vec::is_empty)
                {
                    // The pre-checks ran Django on this release and this database, under the run lock:
                    // `migrate` would start Django again to find nothing to do.
                    return Ok(json!({
                        "applied": 0,
                        "skipped": true,
                        "summary": "nothing pending (showmigrations in the pre-checks): not run"
                    }));
                }
                if state.online() {
                    return self.migrate_online(state).await;
                }
                let cmd = self.django(state).migrate(target.as_ref())?;
                let out = self.run_tracked(step, cmd).await?;
                let applied =
                    out.lines().filter(|l| l.trim_start().starts_with("Applying ")).count();
                Ok(json!({"applied": applied, "summary": format!("{applied} migrations applied")}))
            }
            Step::CollectStatic => {
                if let Some(summary) = self.swap_static(state).await? {
                    return Ok(summary);
                }
                let cmd = self.django(state).collectstatic()?;
                let out = self.run_tracked(step, cmd).await?;
                let summary = out
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("")
                    .trim()
                    .to_owned();
                Ok(json!({"summary": summary}))
            }
            Step::CacheClear => self.cache_clear(state).await,
            Step::Restart => {
                crate::services::switch_and_restart(cfg, state.version_to.as_deref()).await
            }
            Step::PostChecks => crate::checks::until_healthy(cfg, self.bypass.as_ref()).await,
            Step::MaintenanceOff => crate::maint::disable(cfg).await,
            Step::ActivateSchema => crate::schema::activate_served(self.loaded).await,
            Step::Notify => Ok(Value::Null),
        }
    }

    async fn rollback(&mut self, state: &RunState) -> anyhow::Result<Value> {
        if state.online() {
            return self.rollback_online(state).await;
        }
        let cfg = self.cfg();
        let backup = state.backup.clone().context("the run has no backup to restore")?;
        let touched = |s: Step| state.began.contains(&s);
        let mut restored = Vec::new();
        // Maintenance is (still) on while we restore; make sure, with a fresh expiry.
        if cfg.deploy.maintenance_mode {
            let (_, bypass) = crate::maint::enable(cfg, &self.run_id, "rollback").await?;
            self.bypass = bypass;
        }
        if touched(Step::Restart) {
            crate::services::stop(cfg).await.context("stopping the services before the restore")?;
        }
        let components = crate::backups::Components {
            database: touched(Step::Migrate),
            static_files: touched(Step::CollectStatic),
            schema: touched(Step::ActivateSchema),
        };
        let fault = self.fault.clone();
        crate::backups::restore(
            cfg,
            &self.run_id,
            &backup,
            &components,
            &self.progress,
            &mut restored,
            || {
                if fault.as_ref().is_some_and(|f| f.matches("rollback", "during")) {
                    die_now("rollback", "during");
                }
            },
        )
        .await?;
        if touched(Step::Restart) || touched(Step::Migrate) {
            crate::services::switch_and_restart(cfg, state.version_from.as_deref())
                .await
                .context("restarting the previous app version")?;
            restored.push("app".to_owned());
        }
        crate::checks::until_healthy(cfg, self.bypass.as_ref())
            .await
            .context("the restored system is not healthy")?;
        if cfg.deploy.maintenance_mode {
            crate::maint::disable(cfg).await?;
        }
        Ok(json!({"restored": restored, "backup": backup}))
    }

    async fn end_maintenance(&mut self, _state: &RunState) {
        if self.cfg().deploy.maintenance_mode {
            if let Err(e) = crate::maint::disable(self.cfg()).await {
                tracing::warn!("could not end maintenance: {e:#}");
            }
        }
    }

    async fn notify(&mut self, state: &RunState, ending: &Ending, duration: Duration) {
        self.notify_ending(state, ending, duration).await;
    }

    fn boundary(&mut self, step: &str, when: Boundary) {
        if let Some(fault) = &self.fault {
            if fault.matches(step, when.as_str()) {
                die_now(step, when.as_str());
            }
        }
    }
}

impl Real<'_> {
    pub(crate) async fn notify_ending(
        &self,
        state: &RunState,
        ending: &Ending,
        duration: Duration,
    ) {
        crate::notes::send(self.cfg(), &self.run_id, state, ending, duration).await;
    }
}

/// `deploy maintenance on|off|status`.
pub(crate) async fn maintenance_command(
    cli: &crate::Cli,
    loaded: &Loaded,
    action: &crate::cli::MaintenanceAction,
) -> anyhow::Result<u8> {
    crate::maint::command(cli, loaded, action).await
}
