//! `cargo xtask bench deploy`: the deploy pipeline against the same work done by a plain shell script,
//! on the local stack.
//!
//! 1. Overhead: `deploy` of the running release (no pending migration) against `baseline.sh`, which runs
//!    the commands such a deploy boils down to, one after another: `pg_dump -Fc`, `tar czf` of the static
//!    and media directories, `manage.py migrate`, `manage.py collectstatic`, stop gunicorn and wait for it,
//!    switch the `current` link, start gunicorn, and poll `curl` until the first healthy answer.
//!    Target: deploy ≤ 1.10 × the script.
//! 2. Maintenance window, read from each timed deploy's journal (maintenance-on begins to maintenance-off
//!    ends) against the time of the work that must happen inside it: backup + migrate + restart + post-checks
//!    (restart to healthy) + 0.5 s. Measured on the deploys of part 1 forced into the window
//!    (`--strategy maintenance`; with nothing pending `auto` deploys online, with no window at all) and on
//!    deploys of `v2` over `v1` (a NOT NULL column: the window), each undone by `rollback rollback
//!    --previous` before the next round.
//! 3. Requests during a deploy: clients on loopback asking `/` (which maintenance closes, unlike `/health/`) through a new connection every 20 ms
//!    (bounded in count and time) while, in turn, `deploy` of the running release (online, the socket
//!    handed over), the shell script (stop, then start) and `deploy` of v2 over v1 (the window) run.
//!    Target: no failed request and no 503 during the online deploy.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use fs_err as fs;
use serde_json::Value;

use super::{measure, median, verdict, Options, Side};
use crate::envfile::EnvFile;
use crate::{stack, test, util};

const USAGE: &str = "\
usage: cargo xtask bench deploy [--rounds N] [--migration-rounds M]

  --rounds N            alternating rounds of deploy vs the shell script (default 5, after 1 warm-up)
  --migration-rounds M  deploys of v2 over v1, each rolled back, for the maintenance window (default 3)";

/// The plain shell script a deploy of the running release boils down to. Every value comes from the
/// stack's environment; `RELEASE` names the release and `BENCH_OUT` where the backup goes.
const BASELINE: &str = r#"#!/usr/bin/env bash
# The commands of a deploy of $RELEASE, run one after another.
set -euo pipefail
out="$BENCH_OUT/$(date +%s%N)"
mkdir -p "$out"
"$PG_BINDIR/pg_dump" --format=custom --compress=6 --file="$out/db.dump" "$DATABASE_URL"
tar -czf "$out/static.tar.gz" -C "$STATIC_ROOT" .
tar -czf "$out/media.tar.gz" -C "$MEDIA_ROOT" .
cd "$RAIL_APP_ROOT/releases/$RELEASE"
set -a; . "$RAIL_APP_ENV"; set +a
"$RAIL_PYTHON" manage.py migrate --noinput >/dev/null
"$RAIL_PYTHON" manage.py collectstatic --noinput >/dev/null
pid=$(cat "$RAIL_GUNICORN_PID")
kill -TERM "$pid"
# Until it is gone or a zombie: a daemon's exit status goes to its adoptive parent, which may be slow to
# collect it, and the app is stopped as soon as it exits.
while s=$(ps -o stat= -p "$pid") && [ "${s:0:1}" != Z ]; do sleep 0.05; done
ln -sfn "releases/$RELEASE" "$RAIL_APP_ROOT/current"
cd "$RAIL_APP_ROOT/current"
"$RAIL_GUNICORN" demo.wsgi:application --chdir "$RAIL_APP_ROOT/current" --bind "$RAIL_APP_BIND" \
  --workers 2 --pid "$RAIL_GUNICORN_PID" --daemon \
  --error-logfile "$RAIL_APP_LOG_DIR/gunicorn.log" --capture-output
until curl -fsS -o /dev/null "$HEALTH_URL"; do sleep 0.05; done
rm -rf "$out"
"#;

struct Bench {
    root: PathBuf,
    bin_dir: PathBuf,
    env: EnvFile,
    config: PathBuf,
    journal_dir: PathBuf,
    work: PathBuf,
}

impl Bench {
    fn var(&self, key: &str) -> Result<String> {
        self.env
            .get(key)
            .map(str::to_owned)
            .with_context(|| format!("{key} is missing from target/stack/env"))
    }

    fn apply_env(&self, cmd: &mut Command) {
        for (key, value) in self.env.iter() {
            cmd.env(key, value);
        }
        cmd.env("NO_COLOR", "1").current_dir(&self.root);
    }

    fn tool(&self, bin: &str, args: &[&str]) -> Command {
        let mut cmd = util::command(self.bin_dir.join(bin));
        cmd.arg("--config").arg(&self.config).args(args);
        self.apply_env(&mut cmd);
        cmd
    }

    fn deploy(&self, version: &str) -> Command {
        self.tool("deploy", &["--version", version, "--yes"])
    }

    fn baseline(&self, version: &str) -> Command {
        let mut cmd = util::command("bash");
        cmd.arg(self.work.join("baseline.sh"));
        self.apply_env(&mut cmd);
        cmd.env("RELEASE", version).env("BENCH_OUT", self.work.join("out"));
        cmd
    }

    /// The release the `current` link names.
    fn current_release(&self) -> Result<String> {
        let link = Path::new(&self.var("RAIL_APP_ROOT")?).join("current");
        let target = fs::read_link(&link)?;
        target
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_owned)
            .with_context(|| format!("{} points nowhere useful", link.display()))
    }

    /// Journals of deploy runs that started after `since` (the journal file names sort by time).
    fn journals_since(&self, before: &[PathBuf]) -> Result<Vec<PathBuf>> {
        let mut out: Vec<PathBuf> = fs::read_dir(&self.journal_dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "jsonl") && !before.contains(p))
            .collect();
        out.sort();
        Ok(out)
    }

    fn journal_files(&self) -> Result<Vec<PathBuf>> {
        if !self.journal_dir.exists() {
            return Ok(Vec::new());
        }
        self.journals_since(&[])
    }
}

fn prepare(root: &Path) -> Result<Bench> {
    let layout = stack::Layout::new(root);
    // From release v1 on a fresh database, as `cargo xtask demo` starts: a known starting point whatever
    // ran on the stack before.
    stack::forget_setup(&layout)?;
    let _ = fs::remove_file(&layout.maintenance_flag);
    if layout.backups.exists() {
        fs::remove_dir_all(&layout.backups)?;
    }
    let env = stack::up(&layout)?;
    stack::install_release(&layout, "v2")?;
    util::stdout_line("building deploy and rollback (release)");
    util::run(
        util::command(test::cargo())
            .args(["build", "--release", "-p", "rail-deploy", "-p", "rail-rollback"])
            .current_dir(root),
    )?;
    let target = util::target_dir(root);
    let bin_dir = target.join("release");
    for bin in ["deploy", "rollback"] {
        if !bin_dir.join(bin).is_file() {
            bail!("{} was not built", bin_dir.join(bin).display());
        }
    }
    for program in ["bash", "tar", "curl"] {
        if util::which(program).is_none() {
            bail!("`{program}` is not installed; the baseline script needs it");
        }
    }
    let work = root.join("target").join("bench").join("deploy");
    fs::create_dir_all(work.join("out"))?;
    fs::write(work.join("baseline.sh"), BASELINE)?;
    let journal_dir = layout.backups.join("journal");
    Ok(Bench {
        root: root.to_owned(),
        bin_dir,
        env,
        config: root.join("deploy-configs").join("local.toml"),
        journal_dir,
        work,
    })
}

pub(crate) fn run(root: &Path, args: &[String]) -> Result<()> {
    let mut rounds = 5usize;
    let mut migration_rounds = 3usize;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut number = |name: &str| -> Result<usize> {
            it.next()
                .with_context(|| format!("{name} needs a value"))?
                .parse()
                .with_context(|| format!("{name} takes a number"))
        };
        match arg.as_str() {
            "--rounds" => rounds = number("--rounds")?,
            "--migration-rounds" => migration_rounds = number("--migration-rounds")?,
            "-h" | "--help" => {
                util::stdout_line(USAGE);
                return Ok(());
            }
            other => bail!("unknown argument `{other}`\n\n{USAGE}"),
        }
    }
    if rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    let bench = prepare(root)?;
    let mut failed = Vec::new();

    // v1, the release with nothing pending on a database migrated for it.
    let current = bench.current_release()?;
    if current != "v1" {
        bail!("the stack was started over from v1 but serves {current}");
    }
    let before = bench.journal_files()?;

    util::stdout_line(&format!(
        "\n1. deploy of the running release (no pending migration) vs the same commands in a shell script\n   \
         {rounds} rounds, alternating, after 1 warm-up round"
    ));
    let opts = Options { rounds, warmup: 1, minutes: 0.0, interval: String::new() };
    // For reference, not against a target: the same deploy configured to run the old order of work
    // (collectstatic inside the window, `migrate` even with nothing pending).
    let mut old_order = bench.deploy("v1");
    old_order
        .env("RAIL_DEPLOY__STATIC_STRATEGY", "in-place")
        .env("RAIL_DEPLOY__MIGRATE_WHEN_NONE_PENDING", "true")
        .env("RAIL_DEPLOY__STRATEGY", "maintenance")
        .env("RAIL_SERVICES__RELEASES__HANDOVER", "stop-start");
    let mut in_window = bench.deploy("v1");
    in_window.env("RAIL_DEPLOY__STRATEGY", "maintenance");
    let mut sides = vec![
        Side::one("deploy --version v1", bench.deploy("v1")),
        Side::one(
            "baseline.sh (pg_dump, tar, migrate, collectstatic, restart, curl)",
            bench.baseline("v1"),
        ),
        Side::one("deploy, old order: in-place static, migrate, window, stop-start", old_order),
        Side::one("deploy --strategy maintenance (window, handover restart)", in_window),
    ];
    let medians = measure(&mut sides, &opts)?;
    for (side, m) in sides.iter().zip(&medians) {
        util::stdout_line(&format!("   {:<70} median {:>8.3} s", side.label, m.as_secs_f64()));
    }
    let (line, ok) = verdict(medians[0].as_secs_f64() / medians[1].as_secs_f64(), 1.10);
    util::stdout_line(&format!("   deploy vs baseline.sh: {line}"));
    if !ok {
        failed.push("deploy overhead");
    }
    util::stdout_line(&format!(
        "   for reference, the old order of work vs baseline.sh: ratio {:.2}",
        medians[2].as_secs_f64() / medians[1].as_secs_f64()
    ));
    util::stdout_line(&format!(
        "   for reference, deploy --strategy maintenance vs baseline.sh: ratio {:.2}",
        medians[3].as_secs_f64() / medians[1].as_secs_f64()
    ));
    // The journals of the deploys that opened the window with staged static files (the `--strategy
    // maintenance` side); the default side's deploys are online. The warm-up round's are left out.
    let mut windows = Vec::new();
    let mut online = 0usize;
    for path in bench.journals_since(&before)? {
        let window = Window::read(&path)?;
        if window.online {
            online += 1;
        } else if window.staged {
            windows.push(window);
        }
    }
    let windows: Vec<Window> = windows.into_iter().skip(1).collect();
    util::stdout_line("\n2. maintenance window vs backup + migrate + restart-to-healthy + 0.5 s");
    util::stdout_line(&format!(
        "   deploy --version v1 (deploy.strategy = auto): {online} deploys online, no window"
    ));
    if !report_windows("no pending migration, --strategy maintenance", &windows) {
        failed.push("maintenance window (no migration)");
    }

    if migration_rounds > 0 {
        let mut windows = Vec::new();
        for _ in 0..migration_rounds {
            let seen = bench.journal_files()?;
            let started = Instant::now();
            let status = bench
                .deploy("v2")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()?;
            let took = started.elapsed();
            if !status.success() {
                bail!("deploy --version v2 failed ({status}) during the benchmark");
            }
            let journal =
                bench.journals_since(&seen)?.pop().context("the v2 deploy wrote no journal")?;
            let window = Window::read(&journal)?;
            if window.migrate < Duration::from_millis(1) {
                bail!("the v2 deploy applied no migration: is the stack's database at v1?");
            }
            windows.push(window);
            util::stdout_line(&format!("   deploy v2: {:.3} s", took.as_secs_f64()));
            let mut back = bench.tool("rollback", &["rollback", "--previous", "--yes"]);
            let status = back
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()?;
            if !status.success() {
                bail!("rollback --previous failed ({status}) after the v2 deploy");
            }
        }
        if !report_windows("one migration (v1 -> v2)", &windows) {
            failed.push("maintenance window (migration)");
        }
        // The kept pre-rollback databases and old sets would fill the stack.
        let mut prune = bench.tool("rollback", &["prune"]);
        util::run(prune.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()))?;
    }

    util::stdout_line(
        "\n3. requests during a deploy (3 clients, GET /, a new connection every 20 ms each)",
    );
    let port: u16 = bench
        .var("RAIL_APP_BIND")?
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .context("RAIL_APP_BIND has no port")?;
    let online = under_load(port, bench.deploy("v1"))?;
    util::stdout_line(&format!("   deploy --version v1 (online, handover):      {online}"));
    let script = under_load(port, bench.baseline("v1"))?;
    util::stdout_line(&format!("   baseline.sh (stop, then start):              {script}"));
    let window = under_load(port, bench.deploy("v2"))?;
    util::stdout_line(&format!("   deploy --version v2 (maintenance window):    {window}"));
    let mut back = bench.tool("rollback", &["rollback", "--previous", "--yes"]);
    util::run(back.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()))?;
    let ok = online.refused == 0 && online.unavailable == 0 && online.other == 0;
    util::stdout_line(&format!(
        "   online deploy: {} failed of {} (target 0) {}",
        online.refused + online.unavailable + online.other,
        online.total,
        if ok { "ok" } else { "MISSED" }
    ));
    if !ok {
        failed.push("failed requests during an online deploy");
    }

    if failed.is_empty() {
        Ok(())
    } else {
        bail!("targets missed: {}", failed.join(", "))
    }
}

/// What the clients saw while one command ran.
#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    total: usize,
    ok: usize,
    /// Connections refused or reset: nothing listened.
    refused: usize,
    /// 503 answers: the maintenance page.
    unavailable: usize,
    other: usize,
}

impl std::fmt::Display for Seen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} requests: {} ok, {} refused or reset, {} answered 503, {} other",
            self.total, self.ok, self.refused, self.unavailable, self.other
        )
    }
}

/// Run `cmd` (its output dropped) while 3 clients ask `/` on `port` through a new connection
/// every 20 ms; at most 10 minutes and 100,000 requests.
fn under_load(port: u16, mut cmd: Command) -> Result<Seen> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let deadline = Instant::now() + Duration::from_secs(600);
    let clients: Vec<_> = (0..3)
        .map(|_| {
            let (stop, seen) = (Arc::clone(&stop), Arc::clone(&seen));
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                    let answer = util::http_get(port, "/", Duration::from_secs(30));
                    let mut s = seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    if s.total >= 100_000 {
                        break;
                    }
                    s.total += 1;
                    match answer {
                        Ok((200, _)) => s.ok += 1,
                        Ok((503, _)) => s.unavailable += 1,
                        Ok(_) => s.other += 1,
                        Err(_) => s.refused += 1,
                    }
                    drop(s);
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let status =
        cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).status();
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        let _ = client.join();
    }
    let status = status?;
    if !status.success() {
        bail!("a command under load failed ({status})");
    }
    let seen = *seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    Ok(seen)
}

/// One deploy's maintenance window and the work that had to happen inside it, from its journal.
#[derive(Debug, Clone, Copy)]
struct Window {
    length: Duration,
    backup: Duration,
    migrate: Duration,
    restart_to_healthy: Duration,
    /// Whether the static files were collected before the window (the default strategy).
    staged: bool,
    /// Whether the deploy was online (maintenance-on skipped): no window at all.
    online: bool,
}

impl Window {
    fn read(journal: &Path) -> Result<Self> {
        let text = fs::read_to_string(journal)?;
        let mut on = None;
        let mut off = None;
        let mut durations = std::collections::HashMap::new();
        let mut staged = false;
        let mut online = false;
        for line in text.lines() {
            let event: Value = serde_json::from_str(line)
                .with_context(|| format!("{}: a line is not JSON", journal.display()))?;
            let ts = event["ts"].as_str().unwrap_or_default();
            let step = event["step"].as_str().unwrap_or_default();
            match (event["event"].as_str(), step) {
                (Some("step_begin"), "maintenance-on") => on = Some(parse_ts(ts)?),
                (Some("step_end"), "maintenance-off") => off = Some(parse_ts(ts)?),
                (Some("step_end"), _) => {
                    if step == "collectstatic" && event["data"]["staged"] == Value::Bool(true) {
                        staged = true;
                    }
                    if step == "maintenance-on" && event["data"]["skipped"] == Value::Bool(true) {
                        online = true;
                    }
                    let ms = event["duration_ms"].as_u64().unwrap_or(0);
                    durations.insert(step.to_owned(), Duration::from_millis(ms));
                }
                _ => {}
            }
        }
        let (Some(on), Some(off)) = (on, off) else {
            bail!("{}: no maintenance-on/off steps: did the deploy finish?", journal.display())
        };
        let d = |s: &str| durations.get(s).copied().unwrap_or_default();
        Ok(Self {
            length: (off - on).to_std().unwrap_or_default(),
            backup: d("backup"),
            migrate: d("migrate"),
            restart_to_healthy: d("restart") + d("post-checks"),
            staged,
            online,
        })
    }

    fn budget(&self) -> Duration {
        self.backup + self.migrate + self.restart_to_healthy + Duration::from_millis(500)
    }
}

fn parse_ts(ts: &str) -> Result<chrono::DateTime<chrono::Utc>> {
    Ok(chrono::DateTime::parse_from_rfc3339(ts)
        .with_context(|| format!("journal timestamp `{ts}`"))?
        .with_timezone(&chrono::Utc))
}

/// Print the medians and the worst margin; true when every window is within its budget.
fn report_windows(label: &str, windows: &[Window]) -> bool {
    if windows.is_empty() {
        util::stdout_line(&format!("   {label}: no deploy to read"));
        return false;
    }
    let med = |f: fn(&Window) -> Duration| median(windows.iter().map(f).collect());
    let worst = windows
        .iter()
        .map(|w| w.length.as_secs_f64() - w.budget().as_secs_f64())
        .fold(f64::NEG_INFINITY, f64::max);
    let ok = worst <= 0.0;
    util::stdout_line(&format!(
        "   {label}: {} deploys; medians: window {:.3} s, backup {:.3} s, migrate {:.3} s, restart-to-healthy {:.3} s, budget {:.3} s",
        windows.len(),
        med(|w| w.length).as_secs_f64(),
        med(|w| w.backup).as_secs_f64(),
        med(|w| w.migrate).as_secs_f64(),
        med(|w| w.restart_to_healthy).as_secs_f64(),
        med(Window::budget).as_secs_f64(),
    ));
    util::stdout_line(&format!(
        "   worst window - budget: {worst:+.3} s (target <= 0) {}",
        if ok { "ok" } else { "MISSED" }
    ));
    ok
}
