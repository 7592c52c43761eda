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

/// Two schemas of `../shared/graphql-schemas/sdl`, which must be there.
fn shared_pair(root: &Path, old: &str, new: &str) -> Result<(PathBuf, PathBuf)> {
    let sdl = root.join("..").join("shared").join("graphql-schemas").join("sdl");
    let (old, new) = (sdl.join(old), sdl.join(new));
    for file in [&old, &new] {
        if !file.is_file() {
            bail!(
                "{} is missing: the bench reads the public schemas from ../shared/graphql-schemas",
                file.display()
            );
        }
    }
    Ok((old, new))
}

pub(crate) fn compare(root: &Path, opts: &Options) -> Result<()> {
    let (old, new) = shared_pair(root, OLD, NEW)?;
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

/// The pair the operations benchmark checks against: GitHub's two latest public schemas, ~1.2 MB
/// each. The newer one has two duplicate field definitions, hence `--allow-invalid`.
const OPS_OLD: &str = "github_2024-07-08_503d8f18.graphql";
const OPS_NEW: &str = "github_2025-02-27_597478f9.graphql";
/// How many operations are generated, and how many go in one file.
const OPERATIONS: usize = 1_000;
const PER_FILE: usize = 100;

/// `cargo xtask bench schemaver-ops`: `compare --operations` with 1,000 operations against the
/// GitHub pair, against the same compare without operations, so the difference is the operations'
/// cost. No public GitHub client's operations are at hand, so they are generated from the old schema
/// itself: each query field with a selection three levels deep (see [`generate_operations`]).
pub(crate) fn operations(root: &Path, opts: &Options) -> Result<()> {
    let (old, new) = shared_pair(root, OPS_OLD, OPS_NEW)?;
    let dir = util::target_dir(root).join("bench").join("schemaver-operations");
    let count = generate_operations(&old, &dir)?;
    util::stdout_line(&format!("{count} operations generated from {OPS_OLD} in {}", dir.display()));
    util::stdout_line("building schemaver (release)");
    util::run(
        util::command(cargo())
            .args(["build", "-q", "--release", "-p", "rail-schemaver"])
            .current_dir(root),
    )?;
    let schemaver = util::target_dir(root).join("release").join("schemaver");
    let args = |with_ops: bool| {
        let mut args: Vec<std::ffi::OsString> =
            vec!["compare".into(), old.clone().into(), new.clone().into()];
        args.extend(["--allow-invalid".into(), "--format".into(), "json".into()]);
        if with_ops {
            args.extend(["--operations".into(), dir.clone().into()]);
        }
        args
    };
    let mut with_ops = util::command(&schemaver);
    with_ops.args(args(true));
    let mut plain = util::command(&schemaver);
    plain.args(args(false));
    let rounds = opts.rounds.min(10);
    util::stdout_line(&format!(
        "\nschemaver compare {OPS_OLD} {OPS_NEW}, {rounds} alternating rounds"
    ));
    let mut sides = vec![
        Side { ok_codes: vec![0, 1], ..Side::one(format!("with {count} operations"), with_ops) },
        Side { ok_codes: vec![0, 1], ..Side::one("without operations", plain) },
    ];
    let opts = Options { rounds, warmup: 1, ..opts.clone() };
    let medians = measure(&mut sides, &opts)?;
    for (side, m) in sides.iter().zip(&medians) {
        util::stdout_line(&format!("   {:<28} median {:>12}", side.label, ms(*m)));
    }
    let extra = medians[0].saturating_sub(medians[1]).as_secs_f64().max(1e-9);
    util::stdout_line(&format!(
        "   {:.0} operations/s end to end (schemas included), {:.0} operations/s for the operations alone",
        count as f64 / medians[0].as_secs_f64(),
        count as f64 / extra
    ));
    let (line, _) = verdict(medians[0].as_secs_f64(), 1.0);
    util::stdout_line(&format!("   wall time in seconds: {line}"));
    let rss_args: Vec<std::ffi::OsString> = args(true);
    let rss_args: Vec<&std::ffi::OsStr> =
        rss_args.iter().map(std::ffi::OsString::as_os_str).collect();
    let rss = peak_rss_kib(&schemaver, &rss_args)?;
    let plain_args: Vec<std::ffi::OsString> = args(false);
    let plain_args: Vec<&std::ffi::OsStr> =
        plain_args.iter().map(std::ffi::OsString::as_os_str).collect();
    let rss_plain = peak_rss_kib(&schemaver, &plain_args)?;
    util::stdout_line(&format!("   peak RSS: {rss} KiB with operations, {rss_plain} KiB without"));
    Ok(())
}

/// Write [`OPERATIONS`] queries valid on `schema` into `dir` ([`PER_FILE`] a file, the folder emptied
/// first), and return how many. Operation `n` selects query field `n mod F` (required arguments as
/// variables) and, below it, up to five scalar and two object fields a level, three levels deep; which
/// ones shifts with `n div F`, so the operations differ.
fn generate_operations(schema: &Path, dir: &Path) -> Result<usize> {
    use apollo_compiler::schema::ExtendedType;

    let sdl = fs_err::read_to_string(schema)?;
    let parsed = apollo_compiler::Schema::parse(sdl, schema).unwrap_or_else(|e| e.partial);
    let query = parsed
        .schema_definition
        .query
        .as_ref()
        .map(|q| q.name.clone())
        .context("the schema has no query type")?;
    let Some(ExtendedType::Object(root)) = parsed.types.get(&query) else {
        bail!("the query type {query} is not an object type");
    };
    let fields: Vec<_> = root.fields.values().collect();
    let mut ops = Vec::with_capacity(OPERATIONS);
    for n in 0..OPERATIONS {
        let field = fields[n % fields.len()];
        let shift = n / fields.len();
        let mut vars = Vec::new();
        let mut args = Vec::new();
        for (k, arg) in field.arguments.iter().enumerate() {
            if arg.ty.is_non_null() && arg.default_value.is_none() {
                vars.push(format!("$v{k}: {}", arg.ty));
                args.push(format!("{}: $v{k}", arg.name));
            }
        }
        let vars = if vars.is_empty() { String::new() } else { format!("({})", vars.join(", ")) };
        let args = if args.is_empty() { String::new() } else { format!("({})", args.join(", ")) };
        let selection = select(&parsed, field.ty.inner_named_type(), 1, shift);
        ops.push(format!("query Bench{n}{vars} {{\n  {}{args}{selection}\n}}\n", field.name));
    }
    if dir.exists() {
        fs_err::remove_dir_all(dir)?;
    }
    fs_err::create_dir_all(dir)?;
    for (i, chunk) in ops.chunks(PER_FILE).enumerate() {
        fs_err::write(dir.join(format!("ops{i:02}.graphql")), chunk.concat())?;
    }
    Ok(ops.len())
}

/// The selection below a field of type `ty` at `depth`: nothing for a leaf type, `__typename` for a
/// union, else scalar fields and (above depth 3) object fields without required arguments.
fn select(schema: &apollo_compiler::Schema, ty: &str, depth: usize, shift: usize) -> String {
    use apollo_compiler::schema::ExtendedType;

    let fields = match schema.types.get(ty) {
        Some(ExtendedType::Object(t)) => &t.fields,
        Some(ExtendedType::Interface(t)) => &t.fields,
        Some(ExtendedType::Union(_)) => return " { __typename }".to_owned(),
        _ => return String::new(),
    };
    let usable: Vec<_> = fields
        .values()
        .filter(|f| !f.arguments.iter().any(|a| a.ty.is_non_null() && a.default_value.is_none()))
        .collect();
    let is_leaf = |f: &apollo_compiler::schema::FieldDefinition| {
        matches!(
            schema.types.get(f.ty.inner_named_type()),
            Some(ExtendedType::Scalar(_) | ExtendedType::Enum(_))
        )
    };
    let leaves: Vec<_> = usable.iter().filter(|f| is_leaf(f)).collect();
    let objects: Vec<_> = usable.iter().filter(|f| !is_leaf(f)).collect();
    let mut parts = Vec::new();
    for i in 0..leaves.len().min(5) {
        parts.push(leaves[(i + shift) % leaves.len()].name.to_string());
    }
    if depth < 3 {
        for i in 0..objects.len().min(2) {
            let f = objects[(i + shift) % objects.len()];
            parts.push(format!(
                "{}{}",
                f.name,
                select(schema, f.ty.inner_named_type(), depth + 1, shift)
            ));
        }
    }
    if parts.is_empty() {
        parts.push("__typename".to_owned());
    }
    format!(" {{ {} }}", parts.join(" "))
}
