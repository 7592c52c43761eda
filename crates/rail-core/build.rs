//! Records which commit the binaries are built from and when, for `-V`.
//!
//! `RAIL_GIT_COMMIT` and `RAIL_BUILD_DATE` (YYYY-MM-DD) may be set by a release build; otherwise the
//! commit comes from `git rev-parse` and the date from `SOURCE_DATE_EPOCH` or the clock.

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

fn main() {
    println!("cargo:rerun-if-env-changed=RAIL_GIT_COMMIT");
    println!("cargo:rerun-if-env-changed=RAIL_BUILD_DATE");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let commit = std::env::var("RAIL_GIT_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(git_commit)
        .unwrap_or_else(|| "unknown".to_owned());
    let date =
        std::env::var("RAIL_BUILD_DATE").ok().filter(|d| !d.is_empty()).unwrap_or_else(|| {
            let secs = std::env::var("SOURCE_DATE_EPOCH")
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or_else(|| {
                    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
                });
            civil_date(secs / 86_400)
        });
    println!("cargo:rustc-env=RAIL_GIT_COMMIT={commit}");
    println!("cargo:rustc-env=RAIL_BUILD_DATE={date}");
}

/// The short commit of the checkout, and the files whose change means another commit.
fn git_commit() -> Option<String> {
    let git_dir = run(&["rev-parse", "--absolute-git-dir"])?;
    for file in ["HEAD", "packed-refs"] {
        println!("cargo:rerun-if-changed={git_dir}/{file}");
    }
    if let Some(reference) = run(&["symbolic-ref", "-q", "HEAD"]) {
        println!("cargo:rerun-if-changed={git_dir}/{reference}");
    }
    run(&["rev-parse", "--short=12", "HEAD"])
}

fn run(args: &[&str]) -> Option<String> {
    #[allow(clippy::disallowed_methods)]
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && !text.is_empty()).then_some(text)
}

/// `YYYY-MM-DD` of a day counted from 1970-01-01 (Howard Hinnant's civil_from_days).
fn civil_date(days: u64) -> String {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}
