//! `cargo xtask dist`: the release tarball. The four binaries built in release mode with `-V` naming
//! the version, the commit and the build date; their shell completions and man pages; the licences,
//! the README and the configuration schema; a `SHA256SUMS` of every file. The tarball is written
//! reproducibly (sorted names, fixed owner and times) with a `.sha256` beside it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use fs_err as fs;

use crate::test::cargo;
use crate::util;

const BINARIES: [&str; 4] = ["deploy", "rollback", "healthcheck", "schemaver"];
const SHELLS: [(&str, &str); 3] = [("bash", ""), ("zsh", "_"), ("fish", "")];

pub(crate) fn run(root: &Path, args: &[String]) -> Result<()> {
    if let Some(unknown) = args.first() {
        bail!("`cargo xtask dist` takes no arguments (got `{unknown}`)");
    }
    let version = workspace_version(root)?;
    let commit = util::run_captured(
        util::command("git").args(["rev-parse", "--short=12", "HEAD"]).current_dir(root),
    )
    .map(|s| s.trim().to_owned())
    .context("reading the commit (dist builds from a git checkout)")?;
    let date = std::env::var("RAIL_BUILD_DATE")
        .ok()
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| chrono::Utc::now().format("%Y-%m-%d").to_string());
    let triple = host_triple()?;
    let name = format!("rail-{version}-{triple}");
    util::stdout_line(&format!("== building {name} (commit {commit}, {date})"));
    let mut build = util::command(cargo());
    build.args(["build", "--release", "--locked"]);
    for bin in BINARIES {
        build.args(["-p", &format!("rail-{bin}")]);
    }
    build.env("RAIL_GIT_COMMIT", &commit).env("RAIL_BUILD_DATE", &date).current_dir(root);
    util::run(&mut build).context("building the release binaries")?;

    let release = util::target_dir(root).join("release");
    let dist = util::target_dir(root).join("dist");
    let stage = dist.join(&name);
    if stage.exists() {
        fs::remove_dir_all(&stage)?;
    }
    for dir in ["bin", "man", "completions/bash", "completions/zsh", "completions/fish", "share"] {
        fs::create_dir_all(stage.join(dir))?;
    }
    for bin in BINARIES {
        let exe = release.join(bin);
        let target = stage.join("bin").join(bin);
        fs::copy(&exe, &target)?;
        // The release profile keeps line tables for backtraces in the build; the shipped copy drops
        // them (a 70 MB binary becomes a tenth of that), keeping symbol names.
        util::run(util::command("strip").arg("--strip-debug").arg(&target))
            .context("strip (binutils) removes the debug information from the shipped binaries")?;
        util::run_captured(util::command(&exe).arg("man").arg("--dir").arg(stage.join("man")))?;
        for (shell, prefix) in SHELLS {
            let script = util::run_captured(util::command(&exe).args(["completions", shell]))?;
            let file = match shell {
                "fish" => format!("{bin}.fish"),
                _ => format!("{prefix}{bin}"),
            };
            fs::write(stage.join("completions").join(shell).join(file), script)?;
        }
    }
    for file in ["LICENSE-MIT", "LICENSE-APACHE", "README.md"] {
        fs::copy(root.join(file), stage.join(file))?;
    }
    fs::copy(
        root.join("docs/rail-config.schema.json"),
        stage.join("share/rail-config.schema.json"),
    )?;
    fs::copy(root.join("docs/getting-started.md"), stage.join("share/getting-started.md"))?;

    let mut files = Vec::new();
    collect(&stage, &stage, &mut files)?;
    files.sort();
    let mut sums = String::new();
    for file in &files {
        let bytes = fs::read(stage.join(file))?;
        let _ = writeln!(sums, "{}  {}", util::sha256_hex(&bytes), file.display());
    }
    fs::write(stage.join("SHA256SUMS"), &sums)?;

    let tarball = dist.join(format!("{name}.tar.gz"));
    let epoch = chrono::NaiveDate::parse_from_str(&date, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map_or(0, |t| t.and_utc().timestamp());
    let mut tar = util::command("tar");
    tar.arg("-C")
        .arg(&dist)
        .args(["--sort=name", "--owner=0", "--group=0", "--numeric-owner"])
        .arg(format!("--mtime=@{epoch}"))
        .arg("-czf")
        .arg(&tarball)
        .arg(&name);
    util::run(&mut tar).context("writing the tarball")?;
    let digest = util::sha256_hex(&fs::read(&tarball)?);
    let tarball_name =
        tarball.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    fs::write(dist.join(format!("{tarball_name}.sha256")), format!("{digest}  {tarball_name}\n"))?;

    util::stdout_line(&format!("== {}", tarball.display()));
    for file in files.iter().chain(std::iter::once(&PathBuf::from("SHA256SUMS"))) {
        let size = fs::metadata(stage.join(file))?.len();
        util::stdout_line(&format!("  {size:>10}  {name}/{}", file.display()));
    }
    util::stdout_line(&format!("  sha256 {digest}"));
    let shown = util::run_captured(util::command(stage.join("bin/deploy")).arg("-V"))?;
    util::stdout_line(&format!("  $ deploy -V\n  {}", shown.trim()));
    Ok(())
}

fn collect(base: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(base, &path, out)?;
        } else {
            out.push(path.strip_prefix(base)?.to_path_buf());
        }
    }
    Ok(())
}

fn workspace_version(root: &Path) -> Result<String> {
    let manifest: toml::Table = toml::from_str(&fs::read_to_string(root.join("Cargo.toml"))?)?;
    manifest
        .get("workspace")
        .and_then(|w| w.get("package"))
        .and_then(|p| p.get("version"))
        .and_then(toml::Value::as_str)
        .map(str::to_owned)
        .context("workspace.package.version is missing from Cargo.toml")
}

fn host_triple() -> Result<String> {
    let info = util::run_captured(util::command("rustc").arg("-vV"))?;
    info.lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_owned)
        .context("`rustc -vV` names no host")
}
