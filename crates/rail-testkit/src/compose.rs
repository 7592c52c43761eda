//! A compose project of the test's own: `docker/docker-compose.yml` with `docker/local/compose.override.yml`
//! on the private engine that `cargo xtask test` started (its settings in `target/stack/env`), on free
//! ports of 127.0.0.1, with its own volumes. Dropping it runs `down -v`; [`ComposeStack::down`] does the
//! same and reports what the project left in the engine.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{workspace_root, Stack, TestDir};

/// How often Docker runs the web container's HEALTHCHECK in the tests (the compose file's
/// `HEALTHCHECK_INTERVAL`; 15 s by default).
pub const HEALTH_INTERVAL_SECS: u64 = 2;

/// A running compose project.
#[derive(Debug)]
pub struct ComposeStack {
    project: String,
    vars: Vec<(String, String)>,
    pub http_port: u16,
    pub postgres_port: u16,
    pub redis_port: u16,
    password: String,
    dir: TestDir,
    down: bool,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap().local_addr().unwrap().port()
}

fn stack_var(key: &str) -> String {
    Stack::get()
        .var(key)
        .unwrap_or_else(|| {
            panic!("{key} is not in the stack's env file: run `cargo xtask test` (it starts the engine)")
        })
        .to_owned()
}

impl ComposeStack {
    /// Brings the stack up on `release` (its migrations applied by the first start) and returns once
    /// nginx answers `/health/` with 200.
    pub fn up(release: &str) -> Self {
        let tag = format!("{:08x}", rand_u32());
        let dir = TestDir::new();
        let password = format!("pw{tag}{:08x}", rand_u32());
        let (http_port, postgres_port, redis_port) = (free_port(), free_port(), free_port());
        let project = format!("railt{tag}");
        let mut vars: Vec<(String, String)> = [
            "DOCKER_HOST",
            "RAIL_DOCKER",
            "RAIL_COMPOSE",
            "RAIL_COMPOSE_FILE",
            "RAIL_COMPOSE_OVERRIDE",
            "DOCKER_VOLUMES_DIR",
            "RAIL_BACKUP_KEY_FILE",
        ]
        .iter()
        .map(|k| ((*k).to_owned(), stack_var(k)))
        .collect();
        vars.extend(
            [
                ("COMPOSE_PROJECT_NAME", project.clone()),
                ("POSTGRES_PORT", postgres_port.to_string()),
                ("REDIS_PORT", redis_port.to_string()),
                ("HTTP_PORT", http_port.to_string()),
                ("POSTGRES_PASSWORD", format!("super{tag}{:08x}", rand_u32())),
                ("APP_DB_PASSWORD", password.clone()),
                ("SECRET_KEY", format!("secret-{tag}-{:08x}", rand_u32())),
                ("HEALTHCHECK_INTERVAL", format!("{HEALTH_INTERVAL_SECS}s")),
                ("RAIL_BACKUP_DIR", dir.path().join("backups").display().to_string()),
                ("RAIL_SCHEMA_DIR", dir.path().join("schema_versions").display().to_string()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v)),
        );
        let stack = Self {
            project,
            vars,
            http_port,
            postgres_port,
            redis_port,
            password,
            dir,
            down: false,
        };
        let started = Instant::now();
        let out = stack
            .compose()
            .env("IMAGE_TAG", release)
            .env("RUN_MIGRATIONS", "1")
            .args(["up", "-d", "--no-build"])
            .output()
            .expect("runs docker-compose");
        assert!(
            out.status.success(),
            "docker-compose up failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ready = stack.wait_for(Duration::from_secs(120), || {
            crate::http_get(&format!("{}/health/", stack.app_url())).is_ok_and(|r| r.status == 200)
        });
        assert!(
            ready,
            "the compose stack does not answer /health/ within 120 s (after {:?}):\n{}",
            started.elapsed(),
            stack.logs()
        );
        // Each gunicorn worker answers its first requests slowly (Django builds its URL resolver and
        // the GraphQL schema then): warm them all, so that a deploy's pre-checks judge the site, not
        // its first seconds.
        let graphql = serde_json::json!({"query": "{ __typename }"});
        for _ in 0..12 {
            let _ = crate::http_get(&format!("{}/health/", stack.app_url()));
            let _ = crate::http_post_json(&format!("{}/graphql/", stack.app_url()), &graphql);
        }
        stack
    }

    /// The variables that docker-compose.yml and deploy-configs/compose.toml read, for the tools.
    pub fn vars(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn var(&self, key: &str) -> &str {
        self.vars().find(|(k, _)| *k == key).map(|(_, v)| v).unwrap_or_default()
    }

    pub fn project(&self) -> &str {
        &self.project
    }

    /// `deploy-configs/compose.toml`, as users get it.
    pub fn config(&self) -> PathBuf {
        workspace_root().join("deploy-configs/compose.toml")
    }

    /// A directory of the test's own (backups and schema versions live in it).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// nginx, as clients reach it.
    pub fn app_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    pub fn database_url(&self) -> String {
        format!("postgresql://app:{}@127.0.0.1:{}/demoapp", self.password, self.postgres_port)
    }

    pub fn redis_url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.redis_port)
    }

    /// The host directory of one of the project's volumes.
    pub fn volume_dir(&self, volume: &str) -> PathBuf {
        PathBuf::from(self.var("DOCKER_VOLUMES_DIR"))
            .join(format!("{}_{volume}", self.project))
            .join("_data")
    }

    /// A `docker-compose` command of this project.
    pub fn compose(&self) -> Command {
        let mut cmd = crate::proc::command(self.var("RAIL_COMPOSE"));
        cmd.envs(self.vars())
            .arg("-f")
            .arg(self.var("RAIL_COMPOSE_FILE"))
            .arg("-f")
            .arg(self.var("RAIL_COMPOSE_OVERRIDE"))
            .args(["-p", &self.project])
            .stdin(Stdio::null());
        cmd
    }

    /// A `docker` command against the test engine.
    pub fn docker(&self) -> Command {
        let mut cmd = crate::proc::command(self.var("RAIL_DOCKER"));
        cmd.env("DOCKER_HOST", self.var("DOCKER_HOST")).stdin(Stdio::null());
        cmd
    }

    fn text(mut cmd: Command) -> String {
        let out = cmd.output().expect("runs docker");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// The id of `service`'s container (not a one-off).
    pub fn container(&self, service: &str) -> String {
        let mut cmd = self.compose();
        cmd.args(["ps", "-q", service]);
        Self::text(cmd).lines().next().unwrap_or_default().to_owned()
    }

    /// `docker inspect --format TEMPLATE` of `service`'s container.
    pub fn inspect(&self, service: &str, template: &str) -> String {
        let id = self.container(service);
        assert!(!id.is_empty(), "service {service} has no container");
        let mut cmd = self.docker();
        cmd.args(["inspect", "--format", template, &id]);
        Self::text(cmd)
    }

    /// Docker's health status of `service`'s container: starting, healthy or unhealthy.
    pub fn health(&self, service: &str) -> String {
        self.inspect(service, "{{if .State.Health}}{{.State.Health.Status}}{{end}}")
    }

    /// The image the service's container runs.
    pub fn image(&self, service: &str) -> String {
        self.inspect(service, "{{.Config.Image}}")
    }

    /// Polls `ready` every 200 ms up to `timeout`.
    pub fn wait_for(&self, timeout: Duration, ready: impl FnMut() -> bool) -> bool {
        crate::proc::wait_until(timeout, Duration::from_millis(200), ready)
    }

    /// The last lines of every service's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut cmd = self.compose();
        cmd.args(["logs", "--no-color", "--tail", "30"]);
        let out = cmd.output().expect("runs docker-compose");
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    }

    /// Containers, networks and volumes of this project that the engine still has.
    pub fn leftovers(&self) -> Vec<String> {
        let label = format!("label=com.docker.compose.project={}", self.project);
        let mut found = Vec::new();
        for (what, args) in [
            ("container", vec!["ps", "-a", "-q", "--filter", &label]),
            ("network", vec!["network", "ls", "-q", "--filter", &label]),
            ("volume", vec!["volume", "ls", "-q", "--filter", &label]),
        ] {
            let mut cmd = self.docker();
            cmd.args(args);
            found.extend(
                Self::text(cmd).lines().filter(|l| !l.is_empty()).map(|id| format!("{what} {id}")),
            );
        }
        found
    }

    /// `down -v`: the project's containers, network and volumes go; returns what is left of them
    /// (nothing, unless the engine refused).
    pub fn down(&mut self) -> Vec<String> {
        self.down = true;
        let mut cmd = self.compose();
        cmd.args(["down", "-v", "--remove-orphans", "-t", "2"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let _ = cmd.status();
        self.leftovers()
    }
}

impl Drop for ComposeStack {
    fn drop(&mut self) {
        if !self.down {
            let _ = self.down();
        }
    }
}

fn rand_u32() -> u32 {
    let mut bytes = [0u8; 4];
    let _ = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes));
    u32::from_le_bytes(bytes) ^ std::process::id()
}
