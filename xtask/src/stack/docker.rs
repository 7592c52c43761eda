//! The container engine of `cargo xtask stack up --engine docker` and of the tests: a private `dockerd`,
//! the images of `docker/` built once (cached by content), and the compose stack of
//! `docker/docker-compose.yml` with `docker/local/compose.override.yml`.
//!
//! The engine is Debian's `docker.io` (dockerd 20.10) started by hand: its own `--data-root` under
//! `target/stack/docker/` (kept between runs, so images are built once), its own `--exec-root` and socket,
//! no default bridge and no iptables rules (`--bridge=none --iptables=false`): compose's own networks
//! connect the containers, published ports are reached through docker-proxy on 127.0.0.1, and builds use
//! the host's network. Nothing of it stays on the machine once `down` has run but the data root.
//!
//! No image registry is reachable here, so the public base images are replaced by ones built from
//! `docker/local/` on a Debian bookworm made by `debootstrap`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use fs_err as fs;
use nix::sys::signal::Signal;
use sha2::{Digest, Sha256};

use super::Layout;
use crate::envfile::EnvFile;
use crate::util;

/// The Debian suite of the base image, and so of every image here.
const SUITE: &str = "bookworm";
pub(crate) const BASE_IMAGE: &str = "localhost/debian:bookworm-slim";
/// The compose project of `stack up --engine docker` (the tests use their own).
pub(crate) const PROJECT: &str = "rail-stack";
/// The demo releases built as `rail-demo:<release>`.
pub(crate) const RELEASES: [&str; 4] = ["v1", "v2", "v3-broken", "v4"];
const BINARIES: [&str; 4] = ["deploy", "rollback", "healthcheck", "schemaver"];

/// Where the engine lives.
#[derive(Clone)]
pub(crate) struct Engine {
    pub(crate) dir: PathBuf,
    pub(crate) data_root: PathBuf,
    pub(crate) exec_root: PathBuf,
    pub(crate) socket: PathBuf,
    pub(crate) pid_file: PathBuf,
    pub(crate) log: PathBuf,
    /// Debian's docker CLI (its BuildKit needs no buildx, unlike newer CLIs that may come first in PATH).
    pub(crate) docker: PathBuf,
    pub(crate) compose: PathBuf,
}

impl Engine {
    pub(crate) fn new(layout: &Layout) -> Self {
        let dir = layout.stack.join("docker");
        // The exec root holds sockets whose paths must stay short: one per checkout, under /run.
        let tag = &util::sha256_hex(dir.to_string_lossy().as_bytes())[..10];
        Self {
            data_root: dir.join("data"),
            exec_root: PathBuf::from(format!("/run/rail-docker-{tag}")),
            socket: dir.join("docker.sock"),
            pid_file: dir.join("dockerd.pid"),
            log: dir.join("dockerd.log"),
            docker: find_program(&["/usr/bin/docker"], "docker"),
            compose: find_program(&["/usr/bin/docker-compose"], "docker-compose"),
            dir,
        }
    }

    pub(crate) fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// A `docker` command against this engine.
    pub(crate) fn docker(&self) -> Command {
        let mut cmd = util::command(&self.docker);
        cmd.env("DOCKER_HOST", self.host());
        cmd
    }

    /// A compose command against this engine: the stack's file, the local images' override, `project`.
    pub(crate) fn compose(&self, root: &Path, project: &str) -> Command {
        let mut cmd = util::command(&self.compose);
        cmd.env("DOCKER_HOST", self.host())
            .arg("-f")
            .arg(root.join("docker/docker-compose.yml"))
            .arg("-f")
            .arg(root.join("docker/local/compose.override.yml"))
            .args(["-p", project]);
        cmd
    }

    fn running_pid(&self) -> Option<i32> {
        util::read_pid(&self.pid_file).filter(|pid| util::pid_runs(*pid, "dockerd"))
    }

    fn answers(&self) -> bool {
        self.docker()
            .args(["version", "--format", "{{.Server.Version}}"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// What the tests and the tools need to reach the engine.
    pub(crate) fn describe(&self, root: &Path, env: &mut EnvFile) {
        env.set("DOCKER_HOST", self.host());
        env.set("RAIL_DOCKER", self.docker.display().to_string());
        env.set("RAIL_COMPOSE", self.compose.display().to_string());
        env.set("RAIL_COMPOSE_FILE", root.join("docker/docker-compose.yml").display().to_string());
        env.set(
            "RAIL_COMPOSE_OVERRIDE",
            root.join("docker/local/compose.override.yml").display().to_string(),
        );
        env.set("DOCKER_VOLUMES_DIR", self.data_root.join("volumes").display().to_string());
        env.set("RAIL_DOCKER_DATA_ROOT", self.data_root.display().to_string());
        env.set("RAIL_DOCKER_PID_FILE", self.pid_file.display().to_string());
    }
}

fn find_program(preferred: &[&str], name: &str) -> PathBuf {
    preferred
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .or_else(|| util::which(name))
        .unwrap_or_else(|| PathBuf::from(name))
}

/// Installs Debian's docker.io, docker-compose and debootstrap when one is missing (as root), else says
/// what to install.
pub(crate) fn ensure_installed() -> Result<()> {
    let mut missing = Vec::new();
    if util::which("dockerd").is_none() || !Path::new("/usr/bin/docker").is_file() {
        missing.push("docker.io");
    }
    if util::which("docker-compose").is_none() {
        missing.push("docker-compose");
    }
    if util::which("debootstrap").is_none() && !Path::new("/usr/sbin/debootstrap").is_file() {
        missing.push("debootstrap");
    }
    if missing.is_empty() {
        return Ok(());
    }
    if !util::is_root() {
        bail!(
            "the container engine needs {}: apt-get install -y {}",
            missing.join(", "),
            missing.join(" ")
        );
    }
    util::stdout_line(&format!("docker: installing {}", missing.join(" ")));
    let started = Instant::now();
    util::run_captured(util::command("apt-get").args(["update", "-qq"]))?;
    util::run_captured(
        util::command("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing),
    )
    .context("installing the container engine")?;
    util::stdout_line(&format!("docker: installed in {:.1} s", started.elapsed().as_secs_f64()));
    Ok(())
}

/// Starts the private dockerd unless it runs, and waits until it answers.
pub(crate) fn engine_up(layout: &Layout) -> Result<Engine> {
    ensure_installed()?;
    let engine = Engine::new(layout);
    fs::create_dir_all(&engine.data_root)?;
    if let Some(pid) = engine.running_pid() {
        if engine.answers() {
            util::stdout_line(&format!("dockerd: running (pid {pid}, {})", engine.host()));
            return Ok(engine);
        }
        bail!(
            "dockerd (pid {pid}) does not answer on {}: run `cargo xtask stack down` first",
            engine.host()
        );
    }
    let _ = fs::remove_file(&engine.socket);
    let log = fs::File::create(&engine.log)?;
    let started = Instant::now();
    let mut cmd = util::command(util::which("dockerd").unwrap_or_else(|| "dockerd".into()));
    cmd.arg("--data-root")
        .arg(&engine.data_root)
        .arg("--exec-root")
        .arg(&engine.exec_root)
        .arg("--pidfile")
        .arg(&engine.pid_file)
        .arg("-H")
        .arg(engine.host())
        .args(["--bridge=none", "--iptables=false", "--ip-masq=false"])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?.into_parts().0)
        .stderr(log.into_parts().0);
    {
        use std::os::unix::process::CommandExt as _;
        // Its own process group: a Ctrl-C of xtask must not take the engine down half-way.
        cmd.process_group(0);
    }
    let mut child = cmd.spawn().context("starting dockerd")?;
    let ready = util::wait_until(Duration::from_secs(30), Duration::from_millis(100), || {
        engine.answers() || child.try_wait().ok().flatten().is_some()
    });
    if !ready || !engine.answers() {
        let _ = child.kill();
        bail!(
            "dockerd did not answer on {} within 30 s\n{}",
            engine.host(),
            util::tail_file(&engine.log, 20)
        );
    }
    util::stdout_line(&format!(
        "dockerd: started (pid {}, {}) in {:.1} s",
        child.id(),
        engine.host(),
        started.elapsed().as_secs_f64()
    ));
    Ok(engine)
}

/// Stops whatever runs in the engine, removes its containers, networks and volumes, then stops dockerd.
/// Images stay in the data root for the next `up`. Returns whether an engine was stopped.
pub(crate) fn engine_down(layout: &Layout) -> bool {
    let engine = Engine::new(layout);
    let Some(pid) = engine.running_pid() else {
        remove_exec_root(&engine.exec_root);
        return false;
    };
    if engine.answers() {
        let ids = engine
            .docker()
            .args(["ps", "-a", "-q"])
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        if !ids.is_empty() {
            let _ = engine.docker().args(["rm", "-f", "-v"]).args(&ids).output();
        }
        let _ = engine.docker().args(["network", "prune", "-f"]).output();
        let _ = engine.docker().args(["volume", "prune", "-f"]).output();
    }
    util::stop_pid(pid, "dockerd", Signal::SIGTERM, Duration::from_secs(20));
    remove_exec_root(&engine.exec_root);
    let _ = fs::remove_file(&engine.socket);
    true
}

/// dockerd leaves the default network namespace bind-mounted under its exec root (`netns/default`):
/// unmount what is mounted there, then remove the directory.
fn remove_exec_root(exec_root: &Path) {
    let prefix = format!("{}/", exec_root.display());
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut points: Vec<&str> = mounts
        .lines()
        .filter_map(|line| line.split_whitespace().nth(1))
        .filter(|point| point.starts_with(&prefix))
        .collect();
    // Deepest first.
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for point in points {
        let _ = util::command("umount").args(["-l", point]).output();
    }
    let _ = fs::remove_dir_all(exec_root);
}

/// One image to build: its Dockerfile, context, build arguments and the files its content hash covers.
struct Image {
    tag: String,
    dockerfile: PathBuf,
    context: PathBuf,
    args: Vec<(String, String)>,
    /// Files and directories (hashed whole) whose content decides whether the image is rebuilt.
    inputs: Vec<PathBuf>,
    /// Anything else it is built from (the id of an image it copies from).
    extra: Vec<String>,
}

impl Image {
    fn fingerprint(&self) -> Result<String> {
        let mut hasher = Sha256::new();
        for input in &self.inputs {
            hasher.update(input.to_string_lossy().as_bytes());
            let digest = if input.is_dir() {
                util::tree_fingerprint(input)?
            } else {
                util::sha256_hex(&fs::read(input)?)
            };
            hasher.update(digest.as_bytes());
        }
        for (key, value) in &self.args {
            hasher.update(format!("{key}={value}\n").as_bytes());
        }
        for extra in &self.extra {
            hasher.update(format!("{extra}\n").as_bytes());
        }
        Ok(util::to_hex(&hasher.finalize()))
    }
}

/// The content label of an image, if it exists.
fn label(engine: &Engine, tag: &str) -> Option<String> {
    let out = engine
        .docker()
        .args(["image", "inspect", "--format", "{{index .Config.Labels \"rail.content\"}}", tag])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Builds `image` with the legacy builder unless an image of the same content exists.
fn build(engine: &Engine, image: &Image) -> Result<()> {
    let fingerprint = image.fingerprint()?;
    if label(engine, &image.tag).as_deref() == Some(fingerprint.as_str()) {
        return Ok(());
    }
    let started = Instant::now();
    let mut cmd = engine.docker();
    cmd.env("DOCKER_BUILDKIT", "0")
        .args(["build", "-q", "--network", "host", "-f"])
        .arg(&image.dockerfile)
        .args(["--label", &format!("rail.content={fingerprint}"), "-t", &image.tag]);
    for (key, value) in &image.args {
        cmd.args(["--build-arg", &format!("{key}={value}")]);
    }
    cmd.arg(&image.context);
    util::run_captured(&mut cmd).with_context(|| format!("building image {}", image.tag))?;
    util::stdout_line(&format!(
        "image {}: built in {:.1} s",
        image.tag,
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// The certificate authorities this machine trusts beyond Debian's (`/usr/local/share/ca-certificates`):
/// where HTTPS to the package registries passes through a proxy of the machine's own, the images must
/// trust it too to install anything.
fn extra_ca_certificates() -> Vec<PathBuf> {
    let mut certs: Vec<PathBuf> = fs::read_dir("/usr/local/share/ca-certificates")
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "crt"))
                .collect()
        })
        .unwrap_or_default();
    certs.sort();
    certs
}

/// The Debian base image from debootstrap, unless one of the same inputs exists.
fn base_image(engine: &Engine) -> Result<()> {
    let mirror = debian_mirror();
    let certs = extra_ca_certificates();
    let mut hasher = Sha256::new();
    hasher.update(format!("debootstrap --variant=minbase {SUITE} {mirror}\n").as_bytes());
    for cert in &certs {
        hasher.update(fs::read(cert)?);
    }
    let fingerprint = util::to_hex(&hasher.finalize());
    if label(engine, BASE_IMAGE).as_deref() == Some(fingerprint.as_str()) {
        return Ok(());
    }
    let started = Instant::now();
    let rootfs = engine.dir.join("rootfs");
    if rootfs.exists() {
        fs::remove_dir_all(&rootfs)?;
    }
    let debootstrap = util::which("debootstrap").unwrap_or_else(|| "/usr/sbin/debootstrap".into());
    util::run_captured(
        util::command(debootstrap).args(["--variant=minbase", SUITE]).arg(&rootfs).arg(&mirror),
    )
    .with_context(|| format!("debootstrap {SUITE} from {mirror}"))?;
    // Slimmed as the -slim images are: no package cache, lists, documentation or locales.
    for dir in [
        "var/cache/apt/archives",
        "var/lib/apt/lists",
        "usr/share/doc",
        "usr/share/man",
        "usr/share/locale",
    ] {
        let path = rootfs.join(dir);
        if let Ok(entries) = fs::read_dir(&path) {
            for entry in entries.flatten() {
                let p = entry.path();
                if p.is_dir() {
                    let _ = fs::remove_dir_all(&p);
                } else if p.file_name().is_some_and(|n| n != "lock" && n != "partial") {
                    let _ = fs::remove_file(&p);
                }
            }
        }
    }
    // The machine's own authorities, picked up by `update-ca-certificates` when an image installs
    // ca-certificates.
    let ca_dir = rootfs.join("usr/local/share/ca-certificates");
    fs::create_dir_all(&ca_dir)?;
    for cert in &certs {
        fs::copy(cert, ca_dir.join(cert.file_name().expect("a file")))?;
    }
    let tar = util::command("tar")
        .arg("-C")
        .arg(&rootfs)
        .args(["-c", "."])
        .stdout(Stdio::piped())
        .spawn()
        .context("running tar")?;
    let status = engine
        .docker()
        .args(["import", "--change", &format!("LABEL rail.content={fingerprint}"), "-", BASE_IMAGE])
        .stdin(tar.stdout.context("tar's stdout")?)
        .stdout(Stdio::null())
        .status()
        .context("docker import")?;
    if !status.success() {
        bail!("docker import of {} failed", rootfs.display());
    }
    fs::remove_dir_all(&rootfs)?;
    util::stdout_line(&format!(
        "image {BASE_IMAGE}: debootstrap {SUITE} ({mirror}) and import in {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// The Debian mirror apt uses on this machine (deb822 or one-line sources), else deb.debian.org.
fn debian_mirror() -> String {
    let mut sources = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(entries) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        more.sort();
        sources.extend(more);
    }
    for path in sources {
        let listed = path.file_name().is_some_and(|n| n == "sources.list")
            || path.extension().is_some_and(|e| e == "list" || e == "sources");
        if !listed {
            continue;
        }
        let Ok(text) = fs::read_to_string(&path) else { continue };
        for line in text.lines().map(str::trim) {
            let uri = if let Some(rest) = line.strip_prefix("URIs:") {
                rest.split_whitespace().next()
            } else if let Some(rest) = line.strip_prefix("deb ") {
                rest.split_whitespace().find(|w| w.starts_with("http"))
            } else {
                None
            };
            if let Some(uri) = uri.filter(|u| u.contains("debian") && !u.contains("security")) {
                return uri.trim_end_matches('/').to_owned();
            }
        }
    }
    "http://deb.debian.org/debian".to_owned()
}

/// Copies the host's builds of the four binaries (bookworm's glibc), without their debug information
/// (a debug build is about 300 MB a binary, 30 MB stripped), where the tools image's `PREBUILT_BINARIES`
/// reads them. A binary is copied again only when the build changed it.
fn stage_binaries(root: &Path, profile_dir: &Path) -> Result<PathBuf> {
    let staged = root.join("target/docker-bin");
    fs::create_dir_all(&staged)?;
    let stamps: Vec<String> = BINARIES
        .iter()
        .map(|bin| {
            let meta = fs::metadata(profile_dir.join(bin))
                .with_context(|| format!("{bin} is not built in {}", profile_dir.display()))?;
            let mtime = meta.modified()?.duration_since(std::time::UNIX_EPOCH)?.as_nanos();
            Ok(format!("{bin} {} {mtime}", meta.len()))
        })
        .collect::<Result<_>>()?;
    let stamp_file = staged.join(".built-from");
    let stamp = stamps.join("\n");
    if fs::read_to_string(&stamp_file).ok().as_deref() == Some(stamp.as_str()) {
        return Ok(staged);
    }
    for bin in BINARIES {
        util::run_captured(
            util::command("strip")
                .arg("--strip-debug")
                .arg("-o")
                .arg(staged.join(bin))
                .arg(profile_dir.join(bin)),
        )
        .with_context(|| format!("stripping {bin}"))?;
    }
    fs::write(&stamp_file, stamp)?;
    Ok(staged)
}

/// Every image the stack and the tests use, built when its content changed. `binaries` is the cargo
/// profile directory holding the four binaries (`target/debug`).
pub(crate) fn build_images(root: &Path, engine: &Engine, binaries: &Path) -> Result<()> {
    let started = Instant::now();
    build_base_images(root, engine)?;
    build_app_images(root, engine, binaries)?;
    util::stdout_line(&format!("images: ready in {:.1} s", started.elapsed().as_secs_f64()));
    Ok(())
}

/// The Debian base and the stand-ins of `docker/local/`: nothing of this build goes in them, so they
/// can be built while cargo compiles.
pub(crate) fn build_base_images(root: &Path, engine: &Engine) -> Result<()> {
    base_image(engine)?;
    let base = ("BASE_IMAGE".to_owned(), BASE_IMAGE.to_owned());
    let base_id = format!("base {}", image_id(engine, BASE_IMAGE)?);
    let local = root.join("docker/local");
    for (name, tag) in [("postgres", "15"), ("redis", "7"), ("nginx", "1"), ("python", "3.11")] {
        let dir = local.join(name);
        build(
            engine,
            &Image {
                tag: format!("localhost/rail-local-{name}:{tag}"),
                dockerfile: dir.join("Dockerfile"),
                context: dir.clone(),
                args: vec![base.clone()],
                inputs: vec![dir],
                extra: vec![base_id.clone()],
            },
        )?;
    }
    Ok(())
}

/// The tools image from the host's build of the binaries, and the demo app's images, which copy its
/// `healthcheck`.
pub(crate) fn build_app_images(root: &Path, engine: &Engine, binaries: &Path) -> Result<()> {
    let base_id = format!("base {}", image_id(engine, BASE_IMAGE)?);
    let staged = stage_binaries(root, binaries)?;
    let staged_rel = staged.strip_prefix(root).unwrap_or(&staged).display().to_string();
    build(
        engine,
        &Image {
            tag: "rail-tools:latest".into(),
            dockerfile: root.join("docker/Dockerfile"),
            context: root.to_owned(),
            args: vec![
                ("RUST_IMAGE".into(), BASE_IMAGE.into()),
                ("RUNTIME_IMAGE".into(), BASE_IMAGE.into()),
                ("PREBUILT_BINARIES".into(), staged_rel),
            ],
            inputs: vec![root.join("docker/Dockerfile"), staged],
            extra: vec![base_id.clone()],
        },
    )?;
    let demo = root.join("docker/demo-app");
    let tools_id = image_id(engine, "rail-tools:latest")?;
    let python_id = image_id(engine, "localhost/rail-local-python:3.11")?;
    for release in RELEASES {
        build(
            engine,
            &Image {
                tag: format!("rail-demo:{release}"),
                dockerfile: demo.join("Dockerfile"),
                context: demo.clone(),
                args: vec![
                    ("RELEASE".into(), release.into()),
                    ("RAIL_TOOLS_IMAGE".into(), "rail-tools:latest".into()),
                    ("PYTHON_IMAGE".into(), "localhost/rail-local-python:3.11".into()),
                ],
                inputs: vec![
                    demo.join("Dockerfile"),
                    demo.join("docker-entrypoint.sh"),
                    demo.join("requirements.txt"),
                    demo.join("build_release.py"),
                    demo.join("src"),
                    demo.join("releases"),
                ],
                // A new tools image (a new `healthcheck`) means a new app image.
                extra: vec![format!("rail-tools {tools_id}"), format!("python {python_id}")],
            },
        )?;
    }
    Ok(())
}

fn image_id(engine: &Engine, tag: &str) -> Result<String> {
    let out =
        util::run_captured(engine.docker().args(["image", "inspect", "--format", "{{.Id}}", tag]))?;
    Ok(out.trim().to_owned())
}

/// Ports and password of the compose stack, kept in the stack's env file between `up`s.
pub(crate) struct ComposeSettings {
    pub(crate) postgres_port: u16,
    pub(crate) redis_port: u16,
    pub(crate) http_port: u16,
    pub(crate) postgres_password: String,
    pub(crate) app_password: String,
}

impl ComposeSettings {
    /// `running`: the stack's containers run, so the remembered ports are theirs.
    pub(crate) fn choose(previous: &EnvFile, running: bool) -> Result<Self> {
        let mut taken = Vec::new();
        let mut port = |key: &str| {
            let remembered = previous.get(key).and_then(|p| p.parse().ok());
            super::pick_port(remembered.filter(|_| running), remembered, &mut taken)
        };
        Ok(Self {
            postgres_port: port("POSTGRES_PORT")?,
            redis_port: port("REDIS_PORT")?,
            http_port: port("HTTP_PORT")?,
            postgres_password: match previous.get("POSTGRES_PASSWORD") {
                Some(p) if !p.is_empty() => p.to_owned(),
                _ => util::random_hex(16)?,
            },
            app_password: match previous.get("APP_DB_PASSWORD") {
                Some(p) if !p.is_empty() => p.to_owned(),
                _ => util::random_hex(16)?,
            },
        })
    }

    /// The variables docker-compose.yml and deploy-configs/compose.toml read.
    pub(crate) fn describe(&self, project: &str, env: &mut EnvFile) {
        env.set("COMPOSE_PROJECT_NAME", project);
        env.set("POSTGRES_PORT", self.postgres_port.to_string());
        env.set("REDIS_PORT", self.redis_port.to_string());
        env.set("HTTP_PORT", self.http_port.to_string());
        env.set("POSTGRES_PASSWORD", self.postgres_password.clone());
        env.set("APP_DB_PASSWORD", self.app_password.clone());
        env.set("COMPOSE_APP_URL", format!("http://127.0.0.1:{}", self.http_port));
        // Docker's checks of the web container every 3 s rather than 15: a restart is seen healthy sooner.
        env.set("HEALTHCHECK_INTERVAL", "3s");
        env.set(
            "COMPOSE_DATABASE_URL",
            format!(
                "postgresql://app:{}@127.0.0.1:{}/demoapp",
                self.app_password, self.postgres_port
            ),
        );
    }
}

/// `compose up -d` of the stack on `release` (migrations applied by the first start), returning once
/// nginx answers, which compose starts only after the web container is healthy.
pub(crate) fn compose_up(root: &Path, engine: &Engine, env: &EnvFile, release: &str) -> Result<()> {
    let started = Instant::now();
    let mut cmd = engine.compose(root, PROJECT);
    for (key, value) in env.iter() {
        cmd.env(key, value);
    }
    cmd.env("IMAGE_TAG", release).env("RUN_MIGRATIONS", "1").args(["up", "-d", "--no-build"]);
    util::run_captured(&mut cmd).context("docker-compose up")?;
    let port: u16 = env.get("HTTP_PORT").and_then(|p| p.parse().ok()).context("HTTP_PORT")?;
    if !util::wait_until(Duration::from_secs(120), Duration::from_millis(250), || {
        util::http_get(port, "/health/", Duration::from_secs(5))
            .is_ok_and(|(status, _)| status == 200)
    }) {
        bail!("the compose stack does not answer on 127.0.0.1:{port}/health/ within 120 s");
    }
    util::stdout_line(&format!(
        "compose stack {PROJECT}: up on release {release} in {:.1} s (nginx on 127.0.0.1:{port})",
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// `compose down -v` of the stack: containers, network and volumes.
pub(crate) fn compose_down(root: &Path, engine: &Engine) -> Result<()> {
    let mut cmd = engine.compose(root, PROJECT);
    cmd.args(["down", "-v", "--remove-orphans", "-t", "5"]);
    util::run_captured(&mut cmd).context("docker-compose down")?;
    Ok(())
}

/// Whether the stack's project has containers.
pub(crate) fn compose_running(root: &Path, engine: &Engine) -> bool {
    let mut cmd = engine.compose(root, PROJECT);
    cmd.args(["ps", "-q"]);
    util::run_captured(&mut cmd).is_ok_and(|out| !out.trim().is_empty())
}
