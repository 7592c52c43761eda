//! The off-site half of `cargo xtask bench backup`: a moto server on a free port of 127.0.0.1, and the
//! AWS CLI (from PyPI, in a venv of its own) that the baseline copies files with.
//!
//! Baseline up: `aws s3 cp` of each file of the baseline set. Baseline down: `aws s3 cp` of each file
//! back, then a single-job `pg_restore` and `tar xzf` of both archives. rail: `rollback push`, and
//! `rollback pull` then `rollback rollback --components db,static,media`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use fs_err as fs;

use crate::util;

/// The AWS CLI release the baseline uses.
const AWSCLI: &str = "awscli==1.46.3";
pub(super) const BUCKET: &str = "rail-bench";
const ACCESS_KEY: &str = "AKIARAILBENCH0000001";
const SECRET_KEY: &str = "rail-bench-secret";

/// A moto server the bench started, killed when dropped.
pub(super) struct Offsite {
    child: Child,
    pub(super) endpoint: String,
    aws: PathBuf,
}

impl Drop for Offsite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `aws` program, installed once into a venv of its own.
fn ensure_awscli() -> Result<PathBuf> {
    util::pip_tool("awscli", AWSCLI, "aws")
}

impl Offsite {
    /// Start moto (`moto_server` from the stack's env) and create the bucket.
    pub(super) fn start(moto: &Path, scratch: &Path) -> Result<Self> {
        let aws = ensure_awscli()?;
        let port = util::free_port()?;
        let log = fs::File::create(scratch.join("moto.log"))?.into_parts().0;
        let child = util::command(moto)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", moto.display()))?;
        let endpoint = format!("http://127.0.0.1:{port}");
        let offsite = Self { child, endpoint, aws };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if started.elapsed() > Duration::from_secs(30) {
                bail!("moto did not start within 30 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        util::run_captured(offsite.aws().args(["s3", "mb", &format!("s3://{BUCKET}")]))?;
        Ok(offsite)
    }

    fn aws(&self) -> Command {
        let mut cmd = util::command(&self.aws);
        cmd.env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .arg("--endpoint-url")
            .arg(&self.endpoint);
        cmd
    }

    /// The `[backup.remote]` section of rail's bench configuration.
    pub(super) fn config_section(&self, identity: &Path) -> String {
        format!(
            "\n[backup.remote]\nurl = \"s3://{BUCKET}/rail\"\nendpoint = \"{}\"\naccess_key_id = \"{ACCESS_KEY}\"\n\
             secret_access_key = \"{SECRET_KEY}\"\nidentity_file = \"{}\"\n",
            self.endpoint,
            identity.display()
        )
    }

    /// Remove every object under `prefix` (untimed housekeeping between rounds).
    pub(super) fn clear(&self, prefix: &str) -> Result<()> {
        util::run_captured(self.aws().args([
            "s3",
            "rm",
            "--recursive",
            "--quiet",
            &format!("s3://{BUCKET}/{prefix}"),
        ]))?;
        Ok(())
    }

    /// `aws s3 cp` of every file of `dir`, one after another: the baseline's upload; seconds.
    pub(super) fn upload_dir(&self, dir: &Path) -> Result<f64> {
        let started = Instant::now();
        let mut names: Vec<_> = fs::read_dir(dir)?.flatten().map(|e| e.file_name()).collect();
        names.sort();
        for name in names {
            let name = name.to_string_lossy().into_owned();
            util::run_captured(self.aws().args([
                "s3",
                "cp",
                "--quiet",
                &dir.join(&name).display().to_string(),
                &format!("s3://{BUCKET}/baseline/{name}"),
            ]))?;
        }
        Ok(started.elapsed().as_secs_f64())
    }

    /// `aws s3 cp` of the baseline's files into `dir`; seconds.
    pub(super) fn download_to(&self, dir: &Path, names: &[&str]) -> Result<f64> {
        let started = Instant::now();
        for name in names {
            util::run_captured(self.aws().args([
                "s3",
                "cp",
                "--quiet",
                &format!("s3://{BUCKET}/baseline/{name}"),
                &dir.join(name).display().to_string(),
            ]))?;
        }
        Ok(started.elapsed().as_secs_f64())
    }
}
