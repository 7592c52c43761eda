//! `cargo xtask fuzz [TARGET…] [--time S]`: seed each target's corpus from the repository's own files
//! (and, for the GraphQL readers, the public schemas in `../shared`), build the `fuzz/` crate with
//! `cargo +nightly fuzz`, run each target for S seconds (default 60), and report executions, speed and
//! crashes. Exits non-zero when a target crashed; the input is kept under `fuzz/artifacts/<target>/`.

use std::fs;
use std::path::Path;
use std::process::Stdio;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::util;

/// Every target, in the order they run.
pub(crate) const TARGETS: &[&str] = &[
    "config_toml",
    "config_seed_json",
    "dotenv",
    "manifest",
    "journal",
    "tar_extract",
    "sdl",
    "introspection",
    "operations",
];

fn cargo_answers(args: &[&str]) -> bool {
    util::command("cargo")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether the nightly toolchain the fuzz targets build with is here.
pub(crate) fn nightly() -> bool {
    cargo_answers(&["+nightly", "--version"])
}

/// Whether `cargo +nightly fuzz` can run here.
pub(crate) fn available() -> bool {
    nightly() && cargo_answers(&["fuzz", "--version"])
}

/// For `cargo xtask ci`: installs cargo-fuzz where it is missing and builds the targets, under
/// `nice -n 19`, output in `target/ci/fuzz-build.log`. Returns the seconds it took; a failure here
/// shows again, with its message, when `run` builds.
pub(crate) fn prepare_in_background(root: &Path) -> f64 {
    let started = Instant::now();
    let log_dir = root.join("target").join("ci");
    let log = fs::create_dir_all(&log_dir)
        .and_then(|()| fs::File::create(log_dir.join("fuzz-build.log")));
    let niced = |args: &[&str]| {
        let mut cmd = util::command("nice");
        cmd.args(["-n", "19", "cargo"]).args(args).current_dir(root).stdin(Stdio::null());
        let files =
            log.as_ref().ok().and_then(|f| Some((f.try_clone().ok()?, f.try_clone().ok()?)));
        match files {
            Some((out, err)) => cmd.stdout(out).stderr(err),
            None => cmd.stdout(Stdio::null()).stderr(Stdio::null()),
        };
        cmd.status().is_ok_and(|s| s.success())
    };
    let installed =
        cargo_answers(&["fuzz", "--version"]) || niced(&["install", "cargo-fuzz", "--locked"]);
    if installed {
        niced(&["+nightly", "fuzz", "build"]);
    }
    started.elapsed().as_secs_f64()
}

pub(crate) fn run(root: &Path, args: &[String]) -> Result<()> {
    let mut seconds = 60u64;
    let mut targets = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--time" => {
                let value = args.next().context("--time needs a number of seconds")?;
                seconds = value.parse().with_context(|| format!("--time {value}: not seconds"))?;
            }
            name if TARGETS.contains(&name) => targets.push(name.to_owned()),
            other => {
                bail!("unknown fuzz target or option `{other}` (targets: {})", TARGETS.join(", "))
            }
        }
    }
    if targets.is_empty() {
        targets = TARGETS.iter().map(|t| (*t).to_owned()).collect();
    }
    if !available() {
        bail!("fuzzing needs the nightly toolchain and cargo-fuzz: `rustup toolchain install nightly`, `cargo install cargo-fuzz --locked`");
    }
    let fuzz_dir = root.join("fuzz");
    util::stdout_line("==> cargo +nightly fuzz build");
    let started = Instant::now();
    util::run(util::command("cargo").args(["+nightly", "fuzz", "build"]).current_dir(root))?;
    util::stdout_line(&format!("    built in {:.1} s", started.elapsed().as_secs_f64()));
    let mut crashed = Vec::new();
    for target in &targets {
        let corpus = fuzz_dir.join("corpus").join(target);
        fs::create_dir_all(&corpus)?;
        seed(root, target, &corpus)?;
        let artifacts = fuzz_dir.join("artifacts").join(target);
        fs::create_dir_all(&artifacts)?;
        let out = util::command("cargo")
            .args(["+nightly", "fuzz", "run", target])
            .arg(&corpus)
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            .arg("-rss_limit_mb=2048")
            .arg(format!("-max_len={}", max_len(target)))
            .arg("-timeout=20")
            .arg(format!("-artifact_prefix={}/", artifacts.display()))
            .arg("-print_final_stats=1")
            .current_dir(root)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .with_context(|| format!("running the fuzz target {target}"))?;
        let log = String::from_utf8_lossy(&out.stderr);
        let stat = |name: &str| {
            log.lines()
                .find_map(|l| {
                    l.strip_prefix(name).map(|v| v.trim_start_matches(':').trim().to_owned())
                })
                .unwrap_or_else(|| "?".into())
        };
        let verdict = if out.status.success() { "no crash" } else { "CRASH" };
        util::stdout_line(&format!(
            "{target:<18} {verdict:<9} runs {:>10}  exec/s {:>7}  corpus {:>6}  coverage {}",
            stat("stat::number_of_executed_units"),
            stat("stat::average_exec_per_sec"),
            fs::read_dir(&corpus).map_or(0, Iterator::count),
            log.lines()
                .rev()
                .find_map(|l| l.split("cov: ").nth(1))
                .and_then(|c| c.split_whitespace().next())
                .unwrap_or("?"),
        ));
        if !out.status.success() {
            util::stdout_line(&util::tail(&log, 30));
            crashed.push(format!("{target} (inputs in {})", artifacts.display()));
        }
    }
    if !crashed.is_empty() {
        bail!("fuzz targets crashed: {}", crashed.join(", "));
    }
    Ok(())
}

/// Put seeds into `corpus`: files of the repository, public schemas, and small inputs made here.
fn seed(root: &Path, target: &str, corpus: &Path) -> Result<()> {
    let copy_matching = |dir: &Path, ext: &str| -> Result<()> {
        let Ok(entries) = fs::read_dir(dir) else { return Ok(()) };
        for entry in entries {
            let path = entry?.path();
            let big = fs::metadata(&path).map_or(true, |m| m.len() > 1024 * 1024);
            if path.extension().is_some_and(|e| e == ext) && !big {
                fs::copy(&path, corpus.join(path.file_name().expect("a file name")))?;
            }
        }
        Ok(())
    };
    let shared = root.parent().map(|p| p.join("shared").join("graphql-schemas"));
    match target {
        "config_toml" => copy_matching(&root.join("deploy-configs"), "toml")?,
        "config_seed_json" => copy_matching(&root.join("deploy-configs/examples"), "json")?,
        "dotenv" => fs::write(
            corpus.join("seed.env"),
            "DATABASE_URL=postgresql://u:p@127.0.0.1:5432/app\nexport REDIS_URL='redis://127.0.0.1/0'\n# comment\nSECRET_KEY=\"a b\"\nRAIL_BACKUP__KEEP_LAST=3\n",
        )?,
        "manifest" => fs::write(corpus.join("seed.json"), SEED_MANIFEST)?,
        "journal" => fs::write(
            corpus.join("seed.jsonl"),
            "{\"ts\":\"2026-01-01T00:00:00Z\",\"event\":\"start\",\"run_id\":\"20260101T000000Z-abcdef\",\"kind\":\"deploy\"}\n{\"ts\":\"2026-01-01T00:00:01Z\",\"event\":\"step_begin\",\"step\":\"pre-checks\",\"seq\":1}\n",
        )?,
        "tar_extract" => {
            let tree = corpus.join("../tar-seed-tree");
            fs::create_dir_all(tree.join("css"))?;
            fs::write(tree.join("css/site.css"), "body{}")?;
            let _ = fs::remove_file(tree.join("link"));
            std::os::unix::fs::symlink("css/site.css", tree.join("link"))?;
            for (name, flag) in [("seed.tar.gz", "-z"), ("seed.tar.zst", "--zstd")] {
                let status = util::command("tar")
                    .args(["-C"])
                    .arg(&tree)
                    .args([flag, "-cf"])
                    .arg(corpus.join(name))
                    .arg(".")
                    .stderr(Stdio::null())
                    .status();
                if !status.is_ok_and(|s| s.success()) {
                    let _ = fs::remove_file(corpus.join(name));
                }
            }
        }
        // The public schemas are about a megabyte each: a fuzzer needs many small inputs, so they are
        // cut into pieces of a few definitions (SDL) or a few types (introspection).
        "sdl" => {
            if let Some(shared) = &shared {
                seed_sdl_pieces(&shared.join("sdl"), corpus)?;
            }
        }
        "introspection" => {
            if let Some(shared) = &shared {
                seed_introspection_pieces(&shared.join("introspection"), corpus)?;
            }
        }
        // Sources of each kind --operations reads, small enough for a fuzzer.
        "operations" => {
            fs::write(corpus.join("seed.ts"), SEED_TS)?;
            fs::write(corpus.join("seed.py"), SEED_PY)?;
            fs::write(corpus.join("seed.json"), SEED_PERSISTED)?;
        }
        _ => {}
    }
    Ok(())
}

/// The largest input of a target: schema readers get small documents, the rest up to a megabyte.
fn max_len(target: &str) -> usize {
    match target {
        "sdl" | "introspection" => 16 * 1024,
        _ => 1024 * 1024,
    }
}

/// Pieces of about 4 KiB of each SDL file, cut between definitions.
fn seed_sdl_pieces(dir: &Path, corpus: &Path) -> Result<()> {
    let Ok(entries) = fs::read_dir(dir) else { return Ok(()) };
    for entry in entries {
        let path = entry?.path();
        let Ok(text) = fs::read_to_string(&path) else { continue };
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let mut piece = String::new();
        let mut n = 0;
        for block in text.split("\n\n") {
            piece.push_str(block);
            piece.push_str("\n\n");
            if piece.len() > 4096 {
                fs::write(corpus.join(format!("{stem}-{n}.graphql")), &piece)?;
                piece.clear();
                n += 1;
                if n >= 40 {
                    break;
                }
            }
        }
    }
    Ok(())
}

/// Introspection documents of 10 types each, taken from each introspection file.
fn seed_introspection_pieces(dir: &Path, corpus: &Path) -> Result<()> {
    let Ok(entries) = fs::read_dir(dir) else { return Ok(()) };
    for entry in entries {
        let path = entry?.path();
        let Ok(bytes) = fs::read(&path) else { continue };
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(&bytes) else { continue };
        let schema =
            value.get("data").unwrap_or(&value).get("__schema").cloned().unwrap_or_default();
        let Some(types) = schema.get("types").and_then(serde_json::Value::as_array) else {
            continue;
        };
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        for (n, chunk) in types.chunks(10).take(30).enumerate() {
            let mut piece = schema.clone();
            piece["types"] = serde_json::Value::Array(chunk.to_vec());
            piece["directives"] = serde_json::Value::Array(Vec::new());
            let doc = serde_json::json!({ "data": { "__schema": piece } });
            fs::write(corpus.join(format!("{stem}-{n}.json")), serde_json::to_vec(&doc)?)?;
        }
    }
    Ok(())
}

const SEED_MANIFEST: &str = r#"{"format_version":1,"name":"fuzz_set","created_at":"2026-01-01T00:00:00Z","environment":"production","reason":"manual","app_version":"v1","schema_version":null,"tool_version":"rail 0.1.0","database":{"name":"app","server_version":"15.0","pg_dump_version":"pg_dump (PostgreSQL) 15.0","tables":[{"schema":"public","table":"t","rows":1}]},"components":[{"name":"database","file":"database.dump","format":"pg_dump-custom","size":1,"sha256":"00"},{"name":"static","file":"static.tar.gz","format":"tar+gzip","size":1,"sha256":"00","entries":2,"content_bytes":5}],"duration_ms":1,"manifest_sha256":"","auth":{"alg":"hmac-sha256","key_id":"0011223344556677","mac":"00"}}"#;

/// Seeds of the `operations` target: a TypeScript source with tagged templates, strings, comments, a
/// regular expression and JSX; a Python module; a persisted-query map.
const SEED_TS: &str = r#"import { gql } from "@apollo/client";
// gql`query InComment { a }`
const s = 'it\'s';
const re = /`[/]`/g;
export const Q = gql`
  query One($id: ID!) { node(id: $id) { ...F } }
  ${FRAGMENT}
`;
const P = () => <p>Don't {`x ${y}`}</p>;
const R = graphql(`{ two }`);
const M = /* GraphQL */ `fragment F on T { b }`;
"#;
const SEED_PY: &str = r#"def f():
    """Query the database."""
    q = gql('''
        query Users { users { id } }
    ''')
    b = b"""query Bytes { a }"""
    return r"""
fragment U on User { id }
"""
"#;
const SEED_PERSISTED: &str =
    "{\n  \"abc\": \"query A { a }\",\n  \"def\": \"query B {\\n  b\\n}\"\n}\n";
