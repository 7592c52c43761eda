//! `cargo xtask bench backup`: `rollback backup` with the default configuration (the dump as
//! `pg_dump -Fc -Z0` through zstd, zstd archives, all at once) against the sequential `pg_dump -Fc`,
//! `tar czf static` and `tar czf media` it replaces, and `rollback rollback --components db` (swap, the
//! zstd dump fed to a single pg_restore job) against a single-job `pg_restore` of the baseline's dump into
//! a fresh database, on the same data in alternating rounds. Prints medians, ratios against the targets,
//! and the peak RSS of rail's runs (`/usr/bin/time`).
//!
//! The data is realistic rather than padding that compresses for free: four tables of text, jsonb,
//! numbers and timestamps (about 1.2 GB with indexes) in the stack's database `rail_bench`, and a media
//! tree of 500 MB (thousands of small files, half text and half incompressible, and forty large ones)
//! plus a static tree, under `target/bench/data`. Generating them takes minutes, so both are kept and
//! reused until the generator changes.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use fs_err as fs;

use crate::envfile::{url_password, url_port, EnvFile};
use crate::util;

/// Bump to regenerate the data after changing the generators.
const DATA_VERSION: u32 = 1;
const BENCH_DB: &str = "rail_bench";
const LIVE_DB: &str = "rail_bench_live";
const BASE_RESTORE_DB: &str = "rail_bench_base_restore";
const SET: &str = "bench";

const WORDS: &[&str] = &[
    "account",
    "active",
    "address",
    "alpha",
    "amount",
    "banner",
    "basket",
    "billing",
    "brand",
    "cart",
    "catalog",
    "category",
    "checkout",
    "city",
    "client",
    "comment",
    "country",
    "coupon",
    "customer",
    "delivery",
    "discount",
    "email",
    "event",
    "feature",
    "filter",
    "invoice",
    "item",
    "label",
    "language",
    "order",
    "package",
    "payment",
    "product",
    "profile",
    "rating",
    "region",
    "refund",
    "review",
    "search",
    "session",
    "shipping",
    "status",
    "stock",
    "store",
    "tag",
    "tax",
    "theme",
    "ticket",
    "update",
    "user",
    "value",
    "voucher",
    "warehouse",
    "wishlist",
];

/// Connection settings of the stack, from `target/stack/env`.
struct Stack {
    bindir: PathBuf,
    /// The stack's backup key, which the bench's sets are signed with.
    backup_key: PathBuf,
    host: String,
    port: u16,
    user: String,
    password: String,
    /// `moto_server`, the S3-compatible server of the off-site rounds.
    s3_server: PathBuf,
}

impl Stack {
    fn load(root: &Path) -> Result<Self> {
        let env_path = root.join("target/stack/env");
        let env = EnvFile::load(&env_path)?.with_context(|| {
            format!("{} is missing: run `cargo xtask stack up` first", env_path.display())
        })?;
        let url = env
            .get("DATABASE_URL")
            .context("DATABASE_URL missing from the stack's env file")?
            .to_owned();
        let user = url
            .split_once("://")
            .and_then(|(_, r)| r.split([':', '@']).next())
            .unwrap_or("rail")
            .to_owned();
        Ok(Self {
            bindir: PathBuf::from(env.get("PG_BINDIR").unwrap_or("/usr/lib/postgresql/15/bin")),
            backup_key: PathBuf::from(
                env.get("RAIL_BACKUP_KEY_FILE")
                    .context("RAIL_BACKUP_KEY_FILE missing from the stack's env file")?,
            ),
            host: "127.0.0.1".into(),
            port: url_port(&url).context("no port in DATABASE_URL")?,
            user,
            password: url_password(&url).unwrap_or_default().to_owned(),
            s3_server: PathBuf::from(env.get("RAIL_S3_SERVER").context(
                "RAIL_S3_SERVER missing from the stack's env file: run `cargo xtask stack up`",
            )?),
        })
    }

    fn url(&self, db: &str) -> String {
        format!("postgresql://{}:{}@{}:{}/{db}", self.user, self.password, self.host, self.port)
    }

    /// A PostgreSQL client program connected to `db` (password in the environment).
    fn tool(&self, program: &str, db: &str) -> Command {
        let mut cmd = util::command(self.bindir.join(program));
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("PGPASSWORD", &self.password)
            .arg(format!("--host={}", self.host))
            .arg(format!("--port={}", self.port))
            .arg(format!("--username={}", self.user))
            .arg(format!("--dbname={db}"));
        cmd
    }

    fn sql(&self, db: &str, sql: &str) -> Result<String> {
        util::run_captured(self.tool("psql", db).args([
            "-X",
            "-q",
            "-t",
            "-A",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ]))
    }
}

struct Paths {
    bench: PathBuf,
    data: PathBuf,
    baseline: PathBuf,
    backups: PathBuf,
    config: PathBuf,
    live_config: PathBuf,
    /// The live database, and static and media directories of their own: a whole restore.
    files_config: PathBuf,
    restored: PathBuf,
    rollback: PathBuf,
}

pub(crate) fn run(root: &Path, args: &[String]) -> Result<()> {
    let rounds = match args {
        [] => 3,
        [flag, n] if flag == "--rounds" => n.parse().context("--rounds takes a number")?,
        _ => bail!("usage: cargo xtask bench backup [--rounds N]"),
    };
    let time = Path::new("/usr/bin/time");
    if !time.is_file() {
        bail!("/usr/bin/time (GNU time) is needed to measure peak RSS: apt-get install time");
    }
    let stack = Stack::load(root)?;
    let bench = root.join("target/bench");
    let paths = Paths {
        data: bench.join("data"),
        baseline: bench.join("baseline"),
        backups: bench.join("backups"),
        config: bench.join("rail-bench.toml"),
        live_config: bench.join("rail-bench-live.toml"),
        files_config: bench.join("rail-bench-files.toml"),
        restored: bench.join("restored"),
        rollback: root.join("target/release/rollback"),
        bench,
    };
    fs::create_dir_all(&paths.bench)?;

    say("building rollback (release)");
    util::run(
        util::command(crate::test::cargo())
            .args(["build", "--release", "--quiet", "-p", "rail-rollback"])
            .current_dir(root),
    )?;
    ensure_database(&stack)?;
    ensure_files(&paths.data)?;
    write_configs(&stack, &paths)?;
    let offsite = super::offsite::Offsite::start(&stack.s3_server, &paths.bench)?;
    let identity = paths.bench.join("backup.age");
    if !identity.exists() {
        util::run_captured(
            rollback(&paths, &paths.config).args(["keygen", "--age", "--output"]).arg(&identity),
        )?;
    }
    for config in [&paths.config, &paths.live_config, &paths.files_config] {
        let mut text = fs::read_to_string(config)?;
        text.push_str(&offsite.config_section(&identity));
        fs::write(config, text)?;
    }
    if stack
        .sql("postgres", &format!("SELECT 1 FROM pg_database WHERE datname = '{LIVE_DB}'"))?
        .trim()
        .is_empty()
    {
        stack.sql("postgres", &format!("CREATE DATABASE {LIVE_DB}"))?;
    }

    let db_size: u64 =
        stack.sql(BENCH_DB, "SELECT pg_database_size(current_database())")?.trim().parse()?;
    let files_size = dir_size(&paths.data.join("media")) + dir_size(&paths.data.join("static"));
    say(&format!(
        "data: database {} ({}), files {} (static + media); {rounds} rounds",
        mb(db_size),
        BENCH_DB,
        mb(files_size)
    ));

    let mut base_backup = Vec::new();
    let mut rail_backup = Vec::new();
    let mut base_restore = Vec::new();
    let mut rail_restore = Vec::new();
    let mut base_up = Vec::new();
    let mut rail_up = Vec::new();
    let mut base_down = Vec::new();
    let mut rail_down = Vec::new();
    for round in 0..rounds {
        // Alternate who goes first, so neither always finds the page cache warmer.
        let order: [bool; 2] = if round % 2 == 0 { [true, false] } else { [false, true] };
        let round = round + 1;
        side_by_side(
            round,
            order,
            ("baseline backup", &mut || baseline_backup(&stack, &paths), &mut base_backup),
            ("rollback backup", &mut || rail_backup_round(&paths), &mut rail_backup),
        )?;
        // Off-site: each side's backup of this round, followed by its upload.
        let base_secs = base_backup.last().map_or(0.0, |m| m.secs);
        let rail_secs = rail_backup.last().map_or(0.0, |m| m.secs);
        side_by_side(
            round,
            order,
            (
                "baseline backup + aws s3 cp up",
                &mut || {
                    offsite.clear("baseline")?;
                    let up = offsite.upload_dir(&paths.baseline)?;
                    Ok(Measure { secs: base_secs + up, bytes: 0, rss_kib: 0 })
                },
                &mut base_up,
            ),
            (
                "rollback backup + rollback push",
                &mut || {
                    offsite.clear(&format!("rail/{SET}"))?;
                    let (up, rss_kib) =
                        timed(rollback(&paths, &paths.config).args(["push", SET]), &paths.bench)?;
                    Ok(Measure { secs: rail_secs + up, bytes: 0, rss_kib })
                },
                &mut rail_up,
            ),
        )?;
        side_by_side(
            round,
            order,
            ("baseline pg_restore", &mut || baseline_restore(&stack, &paths), &mut base_restore),
            ("rollback rollback", &mut || rail_restore_round(&stack, &paths), &mut rail_restore),
        )?;
        side_by_side(
            round,
            order,
            (
                "baseline aws s3 cp down + pg_restore + tar xzf x2",
                &mut || baseline_download_restore(&stack, &paths, &offsite),
                &mut base_down,
            ),
            (
                "rollback pull + rollback rollback",
                &mut || rail_download_restore(&stack, &paths),
                &mut rail_down,
            ),
        )?;
    }
    let bytes = |m: &Measure| m.bytes as f64;
    let (bs, rs) = (median(&base_backup, bytes), median(&rail_backup, bytes));
    let lines = [
        format!("medians of {rounds} rounds          baseline      rail   ratio   target"),
        time_row("backup wall time", &base_backup, &rail_backup, 0.35),
        format!(
            "backup total size            {:>10} {:>9}   {:.2}   <= 1.00  {}",
            mb(bs as u64),
            mb(rs as u64),
            rs / bs,
            verdict(rs <= bs)
        ),
        time_row("restore wall time (db, swap)", &base_restore, &rail_restore, 0.8),
        time_row("backup + upload", &base_up, &rail_up, 0.6),
        time_row("download + restore (all)", &base_down, &rail_down, 0.7),
        rss_row("rollback backup", &rail_backup),
        rss_row("rollback rollback", &rail_restore),
        rss_row("rollback push", &rail_up),
        rss_row("pull, then rollback", &rail_down),
        format!(
            "(median RSS: backup {}, restore {})",
            mib(median(&rail_backup, |m| m.rss_kib as f64) as u64),
            mib(median(&rail_restore, |m| m.rss_kib as f64) as u64)
        ),
    ];
    util::stdout_line("");
    for line in lines {
        util::stdout_line(&line);
    }
    Ok(())
}

struct Measure {
    secs: f64,
    bytes: u64,
    rss_kib: u64,
}

fn median(ms: &[Measure], f: fn(&Measure) -> f64) -> f64 {
    let mut v: Vec<f64> = ms.iter().map(f).collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "ok"
    } else {
        "MISSED"
    }
}

/// A report line: the median wall times of both sides, their ratio and the target.
fn time_row(label: &str, base: &[Measure], rail: &[Measure], target: f64) -> String {
    let (b, r) = (median(base, |m| m.secs), median(rail, |m| m.secs));
    format!(
        "{label:<28} {b:>8.1} s {r:>7.1} s   {:.2}   <= {target:.2}  {}",
        r / b,
        verdict(r / b <= target)
    )
}

/// A report line: rail's peak RSS over the rounds against the 64 MiB budget.
fn rss_row(label: &str, rail: &[Measure]) -> String {
    let peak = rail.iter().map(|m| m.rss_kib).max().unwrap_or(0);
    format!(
        "peak RSS {label:<30} {:>9}          <= 64 MiB {}",
        mib(peak),
        verdict(peak <= 64 * 1024)
    )
}

/// A measure of one side of a comparison: its name, how to take it, where it goes.
type Side<'a> = (&'a str, &'a mut dyn FnMut() -> Result<Measure>, &'a mut Vec<Measure>);

/// Take the baseline's and rail's measures of one round in `order` (baseline first when `order[0]`),
/// saying each as it comes.
fn side_by_side<'a>(round: usize, order: [bool; 2], base: Side<'a>, rail: Side<'a>) -> Result<()> {
    let (mut base, mut rail) = (Some(base), Some(rail));
    for baseline in order {
        let (label, measure, into) =
            if baseline { base.take() } else { rail.take() }.expect("each side once");
        let m = measure()?;
        let mut line = format!("round {round}: {label} {:.1} s", m.secs);
        if m.bytes > 0 {
            let _ = write!(line, ", {}", mb(m.bytes));
        }
        if m.rss_kib > 0 {
            let _ = write!(line, ", peak RSS {}", mib(m.rss_kib));
        }
        say(&format!("{line} (load {})", load()));
        into.push(m);
    }
    Ok(())
}

/// Bytes of the regular files under `dir`.
fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            match entry.metadata() {
                Ok(meta) if meta.is_dir() => stack.push(entry.path()),
                Ok(meta) => total += meta.len(),
                Err(_) => {}
            }
        }
    }
    total
}

fn say(line: &str) {
    util::stdout_line(&format!("bench: {line}"));
}

/// The one-minute load average: the bench shares the machine, and a loaded one blurs the ratios.
fn load() -> String {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_default()
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// Run `cmd` under `/usr/bin/time`; wall seconds and peak RSS (KiB) of it and its children.
fn timed(cmd: &mut Command, scratch: &Path) -> Result<(f64, u64)> {
    let out = scratch.join("time.out");
    let program = cmd.get_program().to_owned();
    let args: Vec<_> = cmd.get_args().map(ToOwned::to_owned).collect();
    let mut wrapped = util::command("/usr/bin/time");
    wrapped.arg("-f").arg("%e %M").arg("-o").arg(&out).arg(program).args(args);
    wrapped.env_clear();
    for (key, value) in cmd.get_envs() {
        if let Some(value) = value {
            wrapped.env(key, value);
        }
    }
    let started = Instant::now();
    util::run_captured(&mut wrapped)?;
    let secs = started.elapsed().as_secs_f64();
    let text = fs::read_to_string(&out)?;
    let rss = text.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0);
    Ok((secs, rss))
}

fn baseline_backup(stack: &Stack, paths: &Paths) -> Result<Measure> {
    let dir = &paths.baseline;
    if dir.exists() {
        fs::remove_dir_all(dir)?;
    }
    fs::create_dir_all(dir)?;
    let started = Instant::now();
    util::run_captured(
        stack
            .tool("pg_dump", BENCH_DB)
            .arg("--format=custom")
            .arg(format!("--file={}", dir.join("database.dump").display())),
    )?;
    for tree in ["static", "media"] {
        util::run_captured(
            util::command("tar")
                .arg("czf")
                .arg(dir.join(format!("{tree}.tar.gz")))
                .arg("-C")
                .arg(&paths.data)
                .arg(tree),
        )?;
    }
    let secs = started.elapsed().as_secs_f64();
    Ok(Measure { secs, bytes: dir_size(dir), rss_kib: 0 })
}

fn rollback(paths: &Paths, config: &Path) -> Command {
    let mut cmd = util::command(&paths.rollback);
    // A cleared environment: the stack's DATABASE_URL, STATIC_ROOT… must not override the bench's file.
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .arg("--quiet")
        .arg("--config")
        .arg(config);
    cmd
}

fn rail_backup_round(paths: &Paths) -> Result<Measure> {
    let set = paths.backups.join(SET);
    if set.exists() {
        fs::remove_dir_all(&set)?;
    }
    let (secs, rss_kib) =
        timed(rollback(paths, &paths.config).args(["backup", "--name", SET]), &paths.bench)?;
    Ok(Measure { secs, bytes: dir_size(&set), rss_kib })
}

fn baseline_restore(stack: &Stack, paths: &Paths) -> Result<Measure> {
    stack.sql("postgres", &format!("DROP DATABASE IF EXISTS {BASE_RESTORE_DB}"))?;
    stack.sql("postgres", &format!("CREATE DATABASE {BASE_RESTORE_DB}"))?;
    let dump = paths.baseline.join("database.dump");
    let (secs, _) = timed(stack.tool("pg_restore", BASE_RESTORE_DB).arg(&dump), &paths.bench)?;
    stack.sql("postgres", &format!("DROP DATABASE IF EXISTS {BASE_RESTORE_DB}"))?;
    Ok(Measure { secs, bytes: 0, rss_kib: 0 })
}

fn rail_restore_round(stack: &Stack, paths: &Paths) -> Result<Measure> {
    let (secs, rss_kib) = timed(
        rollback(paths, &paths.live_config).args(["rollback", SET, "--yes", "--components", "db"]),
        &paths.bench,
    )?;
    // What the swap kept is not part of the measure.
    let kept = stack.sql(
        "postgres",
        &format!("SELECT datname FROM pg_database WHERE datname LIKE '{LIVE_DB}\\_\\_rail\\_%'"),
    )?;
    for name in kept.lines().filter(|l| !l.trim().is_empty()) {
        stack.sql("postgres", &format!("DROP DATABASE IF EXISTS \"{name}\""))?;
    }
    Ok(Measure { secs, bytes: 0, rss_kib })
}

/// The baseline's way back: `aws s3 cp` of the three files, a single-job `pg_restore` into a fresh
/// database and `tar xzf` of both archives.
fn baseline_download_restore(
    stack: &Stack,
    paths: &Paths,
    offsite: &super::offsite::Offsite,
) -> Result<Measure> {
    let down = paths.bench.join("down");
    if down.exists() {
        fs::remove_dir_all(&down)?;
    }
    fs::create_dir_all(down.join("files"))?;
    stack.sql("postgres", &format!("DROP DATABASE IF EXISTS {BASE_RESTORE_DB}"))?;
    stack.sql("postgres", &format!("CREATE DATABASE {BASE_RESTORE_DB}"))?;
    let started = Instant::now();
    offsite.download_to(&down, &["database.dump", "static.tar.gz", "media.tar.gz"])?;
    util::run_captured(stack.tool("pg_restore", BASE_RESTORE_DB).arg(down.join("database.dump")))?;
    for archive in ["static.tar.gz", "media.tar.gz"] {
        util::run_captured(
            util::command("tar")
                .arg("xzf")
                .arg(down.join(archive))
                .arg("-C")
                .arg(down.join("files")),
        )?;
    }
    let secs = started.elapsed().as_secs_f64();
    stack.sql("postgres", &format!("DROP DATABASE IF EXISTS {BASE_RESTORE_DB}"))?;
    fs::remove_dir_all(&down)?;
    Ok(Measure { secs, bytes: 0, rss_kib: 0 })
}

/// rail's way back on a host without the set: `rollback pull`, then a whole `rollback rollback`.
fn rail_download_restore(stack: &Stack, paths: &Paths) -> Result<Measure> {
    let set = paths.backups.join(SET);
    if set.exists() {
        fs::remove_dir_all(&set)?;
    }
    if paths.restored.exists() {
        fs::remove_dir_all(&paths.restored)?;
    }
    fs::create_dir_all(paths.restored.join("static"))?;
    fs::create_dir_all(paths.restored.join("media"))?;
    let (pull, pull_rss) =
        timed(rollback(paths, &paths.files_config).args(["pull", SET]), &paths.bench)?;
    let (restore, restore_rss) = timed(
        rollback(paths, &paths.files_config).args([
            "rollback",
            SET,
            "--yes",
            "--components",
            "db,static,media",
        ]),
        &paths.bench,
    )?;
    let kept = stack.sql(
        "postgres",
        &format!("SELECT datname FROM pg_database WHERE datname LIKE '{LIVE_DB}\\_\\_rail\\_%'"),
    )?;
    for name in kept.lines().filter(|l| !l.trim().is_empty()) {
        stack.sql("postgres", &format!("DROP DATABASE IF EXISTS \"{name}\""))?;
    }
    fs::remove_dir_all(&paths.restored)?;
    Ok(Measure { secs: pull + restore, bytes: 0, rss_kib: pull_rss.max(restore_rss) })
}

fn write_configs(stack: &Stack, paths: &Paths) -> Result<()> {
    let restored = paths.restored.display().to_string();
    let files = (format!("{restored}/static"), format!("{restored}/media"));
    let data =
        (format!("{}/static", paths.data.display()), format!("{}/media", paths.data.display()));
    for (path, db, (static_dir, media_dir)) in [
        (&paths.config, BENCH_DB, &data),
        (&paths.live_config, LIVE_DB, &data),
        (&paths.files_config, LIVE_DB, &files),
    ] {
        fs::write(
            path,
            format!(
                "environment = \"bench\"\n\n[database]\nurl = \"{url}\"\npg_bindir = \"{bindir}\"\n\n[app]\nstatic_dir = \"{static_dir}\"\n\
                 media_dir = \"{media_dir}\"\n\n[backup]\ndirectory = \"{backups}\"\nkey_file = \"{key}\"\n\n[rollback.safety_checks]\nrequire_confirmation = false\n",
                url = stack.url(db),
                bindir = stack.bindir.display(),
                backups = paths.backups.display(),
                key = stack.backup_key.display(),
            ),
        )?;
    }
    Ok(())
}

/// `w[1 + floor(random() * n)]`: a random word of the array `w`.
fn word() -> String {
    format!("w[1 + floor(random() * {})::int]", WORDS.len())
}

fn sentence(words: usize) -> String {
    (0..words).map(|_| word()).collect::<Vec<_>>().join(" || ' ' || ")
}

fn ensure_database(stack: &Stack) -> Result<()> {
    let exists = stack
        .sql("postgres", &format!("SELECT 1 FROM pg_database WHERE datname = '{BENCH_DB}'"))?;
    if !exists.trim().is_empty() {
        let version = stack.sql(BENCH_DB, "SELECT version FROM bench_meta").unwrap_or_default();
        if version.trim() == DATA_VERSION.to_string() {
            return Ok(());
        }
        stack.sql("postgres", &format!("DROP DATABASE {BENCH_DB} WITH (FORCE)"))?;
    }
    say(&format!(
        "generating the database {BENCH_DB} (about 1.2 GB; once, it is kept for later runs)"
    ));
    let started = Instant::now();
    stack.sql("postgres", &format!("CREATE DATABASE {BENCH_DB}"))?;
    let words = format!(
        "(SELECT ARRAY[{}]::text[] AS w) x",
        WORDS.iter().map(|w| format!("'{w}'")).collect::<Vec<_>>().join(",")
    );
    let statements = [
        "SELECT setseed(0.42)".to_owned(),
        "CREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL, full_name text, bio text, \
         created_at timestamptz NOT NULL, settings jsonb)"
            .to_owned(),
        format!(
            "INSERT INTO users SELECT g, 'user' || g || '@example.' || (ARRAY['com','org','net'])[1 + g % 3], \
             initcap({w1} || ' ' || {w2}), {bio}, \
             timestamptz '2020-01-01 00:00:00+00' + random() * interval '1500 days', \
             jsonb_build_object('theme', {w3}, 'newsletter', random() < 0.3, 'locale', (ARRAY['en','fr','de','es'])[1 + g % 4], \
             'score', round((random() * 100)::numeric, 2)) \
             FROM generate_series(1, 550000) g, {words}",
            w1 = word(),
            w2 = word(),
            w3 = word(),
            bio = sentence(14),
        ),
        "CREATE TABLE events (id bigint PRIMARY KEY, occurred_at timestamptz NOT NULL, user_id bigint NOT NULL, \
         kind text NOT NULL, payload jsonb NOT NULL)"
            .to_owned(),
        format!(
            "INSERT INTO events SELECT g, timestamptz '2024-01-01 00:00:00+00' + g * interval '7 seconds', \
             1 + floor(random() * 550000)::bigint, (ARRAY['view','click','search','add_to_cart','purchase','login'])[1 + floor(random() * 6)::int], \
             jsonb_build_object('session', md5(random()::text), 'path', '/' || {w1} || '/' || floor(random() * 5000)::int, \
             'referrer', {w2}, 'agent', (ARRAY['Mozilla/5.0 (X11; Linux x86_64)','Mozilla/5.0 (iPhone; CPU iPhone OS 17_0)','curl/8.4.0'])[1 + floor(random() * 3)::int], \
             'props', jsonb_build_object('q', {w3} || ' ' || {w4}, 'ms', floor(random() * 2000)::int, 'ok', random() < 0.95)) \
             FROM generate_series(1, 1700000) g, {words}",
            w1 = word(),
            w2 = word(),
            w3 = word(),
            w4 = word(),
        ),
        "CREATE TABLE orders (id bigint PRIMARY KEY, user_id bigint NOT NULL, status text NOT NULL, total numeric(12,2) NOT NULL, \
         items jsonb NOT NULL, note text, created_at timestamptz NOT NULL)"
            .to_owned(),
        format!(
            "INSERT INTO orders SELECT g, 1 + floor(random() * 550000)::bigint, \
             (ARRAY['new','paid','shipped','delivered','refunded'])[1 + floor(random() * 5)::int], round((random() * 500)::numeric, 2), \
             jsonb_build_array(jsonb_build_object('sku', upper(substr(md5(random()::text), 1, 10)), 'qty', 1 + floor(random() * 4)::int, \
             'price', round((random() * 120)::numeric, 2), 'name', {w1} || ' ' || {w2}), \
             jsonb_build_object('sku', upper(substr(md5(random()::text), 1, 10)), 'qty', 1, 'price', round((random() * 60)::numeric, 2), 'name', {w3})), \
             CASE WHEN random() < 0.4 THEN {note} END, \
             timestamptz '2023-01-01 00:00:00+00' + random() * interval '700 days' \
             FROM generate_series(1, 800000) g, {words}",
            w1 = word(),
            w2 = word(),
            w3 = word(),
            note = sentence(10),
        ),
        "CREATE TABLE audit_log (id bigint PRIMARY KEY, at timestamptz NOT NULL, actor text NOT NULL, action text NOT NULL, \
         object_type text NOT NULL, object_id bigint NOT NULL, details text, diff jsonb)"
            .to_owned(),
        format!(
            "INSERT INTO audit_log SELECT g, timestamptz '2022-01-01 00:00:00+00' + g * interval '30 seconds', \
             'user' || floor(random() * 550000)::int || '@example.com', (ARRAY['create','update','delete','login','export'])[1 + floor(random() * 5)::int], \
             {w1}, floor(random() * 1000000)::bigint, {details}, \
             jsonb_build_object('field', {w2}, 'old', md5(random()::text), 'new', md5(random()::text)) \
             FROM generate_series(1, 900000) g, {words}",
            w1 = word(),
            w2 = word(),
            details = sentence(9),
        ),
        "CREATE INDEX events_user ON events (user_id)".to_owned(),
        "CREATE INDEX orders_user ON orders (user_id)".to_owned(),
        "CREATE INDEX audit_at ON audit_log (at)".to_owned(),
        "VACUUM ANALYZE".to_owned(),
        format!("CREATE TABLE bench_meta (version int); INSERT INTO bench_meta VALUES ({DATA_VERSION})"),
    ];
    for statement in statements {
        stack.sql(BENCH_DB, &statement).with_context(|| format!("generating {BENCH_DB}"))?;
    }
    say(&format!("database generated in {:.0} s", started.elapsed().as_secs_f64()));
    Ok(())
}

/// Deterministic pseudo-random numbers (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn noise(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(len);
        out
    }

    /// Text of words, punctuation and line breaks: it compresses like prose or CSS.
    fn text(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 32);
        while out.len() < len {
            out.extend_from_slice(WORDS[self.below(WORDS.len() as u64) as usize].as_bytes());
            out.push(match self.below(12) {
                0 => b'\n',
                1 => b',',
                2 => b';',
                3 => b'-',
                _ => b' ',
            });
            if self.below(10) == 0 {
                out.extend_from_slice(self.below(100_000).to_string().as_bytes());
                out.push(b' ');
            }
        }
        out.truncate(len);
        out
    }
}

fn ensure_files(data: &Path) -> Result<()> {
    let marker = data.join(format!(".generated-v{DATA_VERSION}"));
    if marker.is_file() {
        return Ok(());
    }
    if data.exists() {
        fs::remove_dir_all(data)?;
    }
    say("generating static and media files (about 530 MB; once, they are kept for later runs)");
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    let write = |path: PathBuf, bytes: &[u8]| -> Result<()> {
        fs::create_dir_all(path.parent().expect("a parent"))?;
        fs::write(path, bytes)?;
        Ok(())
    };
    // Static: CSS, JS and SVG text, 1–40 KB each.
    for i in 0..1200 {
        let (dir, ext) = [("css", "css"), ("js", "js"), ("img", "svg")][i % 3];
        let len = 1024 + rng.below(40 * 1024) as usize;
        write(data.join(format!("static/{dir}/{}/{i}.{ext}", i % 20)), &rng.text(len))?;
    }
    // Media: small uploads, half text and half incompressible, 2–64 KB.
    for i in 0..3000 {
        let len = 2048 + rng.below(62 * 1024) as usize;
        let (bytes, ext) =
            if i % 2 == 0 { (rng.text(len), "json") } else { (rng.noise(len), "jpg") };
        write(data.join(format!("media/uploads/{}/{i}.{ext}", i % 50)), &bytes)?;
    }
    // Media: forty large files, 5–15 MB, half incompressible video, half CSV exports.
    for i in 0..40 {
        let len = (5 << 20) + rng.below(10 << 20) as usize;
        let (bytes, ext) =
            if i % 2 == 0 { (rng.noise(len), "mp4") } else { (rng.text(len), "csv") };
        write(data.join(format!("media/large/{i}.{ext}")), &bytes)?;
    }
    fs::write(marker, "")?;
    Ok(())
}
