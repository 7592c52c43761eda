//! `cargo xtask bench <name>`: benchmarks that compare rail with what it replaces, side by side in one
//! run, on the local stack. Each benchmark prints medians and ratios.

mod backup;

use std::path::Path;

use anyhow::{bail, Result};

const USAGE: &str = "\
usage: cargo xtask bench <benchmark> [--rounds N]

benchmarks:
  backup   rollback backup / rollback rollback against pg_dump -Fc + tar czf and single-job pg_restore
           (data: a database of about 1 GB and 500 MB of media, generated once and kept under target/bench)";

pub(crate) fn run(root: &Path, args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        Some("backup") => backup::run(root, &args[1..]),
        Some("help" | "-h" | "--help") | None => {
            crate::util::stdout_line(USAGE);
            Ok(())
        }
        Some(other) => bail!("unknown benchmark `{other}`\n\n{USAGE}"),
    }
}
