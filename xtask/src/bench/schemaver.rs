//! `cargo xtask bench schemaver`: `schemaver compare` against GraphQL Inspector's `graphql-inspector
//! diff` on the public GitHub schema pair bbcdd330 → 503d8f18 (about 1 MB each, ~970 changes).
//!
//! Inspector is installed from npm into `target/bench/graphql-inspector` the first time. Both tools exit
//! 1 on this pair (it has breaking changes), which counts as success here. Wall time is compared over
//! alternating rounds; peak RSS is read once per tool from `/usr/bin/time -v`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::{measure, ms, verdict, Options, Side};
use crate::test::cargo;
use crate::util;

const OLD: &str = "github_2023-04-07_bbcdd330.graphql";
const NEW: &str = "github_2024-07-08_503d8f18.graphql";
const INSPECTOR: &str = "@graphql-inspector/cli@7";

pub(crate) fn compare(root: &Path, opts: &Options) -> Result<()> {
    let sdl = root.join("..").join("shared").join("graphql-schemas").join("sdl");
    let (old, new) = (sdl.join(OLD), sdl.join(NEW));
    for file in [&old, &new] {
        if !file.is_file() {
            bail!(
                "{} is missing: the bench reads the public schemas from ../shared/graphql-schemas",
                file.display()
            );
        }
    }
    util::stdout_line("building schemaver (release)");
    util::run(
        util::command(cargo())
            .args(["build", "-q", "--release", "-p", "rail-schemaver"])
            .current_dir(root),
    )?;
    let schemaver = util::target_dir(root).join("release").join("schemaver");
    let inspector = install_inspector(root)?;

    let mut ours = util::command(&schemaver);
    ours.arg("compare").arg(&old).arg(&new).args(["--format", "json"]);
    let mut theirs = util::command(&inspector);
    theirs.arg("diff").arg(&old).arg(&new);
    let rounds = opts.rounds.min(10);
    util::stdout_line(&format!(
        "\nschemaver compare vs graphql-inspector diff, {rounds} alternating rounds"
    ));
    let mut sides = vec![
        Side { ok_codes: vec![0, 1], ..Side::one("schemaver compare", ours) },
        Side { ok_codes: vec![0, 1], ..Side::one("graphql-inspector diff", theirs) },
    ];
    let opts = Options { rounds, warmup: 1, ..opts.clone() };
    let medians = measure(&mut sides, &opts)?;
    for (side, m) in sides.iter().zip(&medians) {
        util::stdout_line(&format!("   {:<28} median {:>12}", side.label, ms(*m)));
    }
    let (line, time_ok) = verdict(medians[0].as_secs_f64() / medians[1].as_secs_f64(), 0.05);
    util::stdout_line(&format!("   wall time: {line}"));

    let rss_ours =
        peak_rss_kib(&schemaver, &["compare".as_ref(), old.as_os_str(), new.as_os_str()])?;
    let rss_theirs =
        peak_rss_kib(&inspector, &["diff".as_ref(), old.as_os_str(), new.as_os_str()])?;
    util::stdout_line(&format!(
        "   peak RSS: schemaver {rss_ours} KiB, graphql-inspector {rss_theirs} KiB"
    ));
    let (line, rss_ok) = verdict(rss_ours as f64 / rss_theirs as f64, 0.5);
    util::stdout_line(&format!("   peak RSS: {line}"));
    if !(time_ok && rss_ok) {
        util::stdout_line(
            "   target missed (a busy machine slows both sides; the ratio is what counts)",
        );
    }
    Ok(())
}

/// `graphql-inspector` from npm, installed once under `target/bench`.
fn install_inspector(root: &Path) -> Result<PathBuf> {
    let dir = root.join("target").join("bench").join("graphql-inspector");
    let bin = dir.join("node_modules").join(".bin").join("graphql-inspector");
    if bin.is_file() {
        return Ok(bin);
    }
    if util::which("npm").is_none() {
        bail!("npm is not installed: the bench installs {INSPECTOR} with it");
    }
    fs_err::create_dir_all(&dir)?;
    util::stdout_line(&format!("installing {INSPECTOR} into {}", dir.display()));
    util::run(
        util::command("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(&dir)
            .args([INSPECTOR, "graphql@16"]),
    )
    .context("installing GraphQL Inspector from npm")?;
    Ok(bin)
}

/// Peak resident set size of one run, from `/usr/bin/time -v`.
fn peak_rss_kib(program: &Path, args: &[&std::ffi::OsStr]) -> Result<u64> {
    let out = util::command("/usr/bin/time")
        .arg("-v")
        .arg(program)
        .args(args)
        .output()
        .context("running /usr/bin/time (Debian package `time`)")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("Maximum resident set size (kbytes):"))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| {
            format!("no peak RSS in the output of /usr/bin/time for {}", program.display())
        })
}
