//! The configuration model: every section and key, with its default.
//!
//! Every struct is `#[serde(default)]`, so a file that sets one key of a section keeps the defaults of the
//! others (the older tools replaced whole sections). The key names of the older JSON files are kept
//! where they exist, so their users recognise them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::units::{ByteSize, HumanDuration};
use crate::secret::Secret;

/// The whole configuration of one environment, after every layer is applied.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct Config {
    /// `production`, `staging`, `local`…
    pub environment: String,
    pub database: DatabaseConfig,
    pub redis: RedisConfig,
    pub app: AppConfig,
    pub deploy: DeployConfig,
    pub backup: BackupConfig,
    pub maintenance: MaintenanceConfig,
    pub services: ServicesConfig,
    pub health: HealthConfig,
    pub notifications: NotificationsConfig,
    pub schema: SchemaConfig,
    pub rollback: RollbackConfig,
    pub monitoring: MonitoringConfig,
}

/// The PostgreSQL database of the app.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `postgresql://user:password@host:port/name`; `DATABASE_URL` sets it.
    pub url: Secret,
    /// Parts of the connection, used when `url` is empty (the older rollback_config.json form).
    pub host: String,
    pub port: u16,
    pub name: String,
    pub user: String,
    pub password: Secret,
    pub connect_timeout: HumanDuration,
    /// Directory of pg_dump, pg_restore and psql; empty means `pg_config --bindir`, then
    /// `/usr/lib/postgresql/<major>/bin`, then `PATH`.
    pub pg_bindir: PathBuf,
    /// Database used for the run lock and for renaming databases during a swap restore.
    pub maintenance_db: String,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: Secret::default(),
            host: String::new(),
            port: 5432,
            name: String::new(),
            user: String::new(),
            password: Secret::default(),
            connect_timeout: HumanDuration::from_secs(5),
            pg_bindir: PathBuf::new(),
            maintenance_db: "postgres".into(),
        }
    }
}

/// The Redis server of the app (cache and the maintenance key).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://[:password@]host:port/db`; `REDIS_URL` sets it.
    pub url: Secret,
    pub connect_timeout: HumanDuration,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self { url: Secret::default(), connect_timeout: HumanDuration::from_secs(2) }
    }
}

/// The Django app itself: where it runs and how to call its management commands.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct AppConfig {
    /// Base URL of the running app, e.g. `http://127.0.0.1:8000`; `APP_URL` sets it.
    pub url: String,
    /// Health endpoint; default `<url>/health/`.
    pub health_url: String,
    /// GraphQL endpoint; default `<url>/graphql/`; `GRAPHQL_URL` sets it.
    pub graphql_url: String,
    /// Directory `manage.py` runs in. With the `releases` service backend the new release's directory is
    /// used instead, so migrations run against the code being deployed.
    pub dir: PathBuf,
    /// Python interpreter that runs `manage.py`.
    pub python: PathBuf,
    /// Collected static files (Django's STATIC_ROOT), backed up and restored.
    pub static_dir: PathBuf,
    /// Uploaded media (Django's MEDIA_ROOT), backed up and restored.
    pub media_dir: PathBuf,
    /// Django's SECRET_KEY, passed to management commands; `SECRET_KEY` sets it.
    pub secret_key: Secret,
    /// A KEY=VALUE file whose variables every management command and service start receives.
    pub env_file: PathBuf,
    /// Extra environment for management commands and service starts.
    pub env: BTreeMap<String, String>,
}

impl Default for AppConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            health_url: String::new(),
            graphql_url: String::new(),
            dir: PathBuf::from("."),
            python: PathBuf::from("python3"),
            static_dir: PathBuf::new(),
            media_dir: PathBuf::new(),
            secret_key: Secret::default(),
            env_file: PathBuf::new(),
            env: BTreeMap::new(),
        }
    }
}

/// When the backup of a deploy is taken.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum BackupTiming {
    /// Inside the maintenance window: no write can be lost by a rollback (RPO 0).
    #[default]
    InsideMaintenance,
    /// Before maintenance (the older tools' order): a shorter window, but writes made during the backup
    /// are lost if the deploy rolls back.
    BeforeMaintenance,
}

/// How a deploy collects static files.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum StaticStrategy {
    /// Before the maintenance window, `collectstatic` runs into a copy of `app.static_dir` (its
    /// `STATIC_ROOT` set to the copy); inside the window the copy is swapped in by two renames. The site
    /// keeps serving the old files until then, and the window does not pay for `collectstatic`. Needs
    /// settings that read `STATIC_ROOT` from the environment; when the command reports another
    /// destination, the deploy says so and collects in place inside the window.
    #[default]
    Staged,
    /// `collectstatic` runs into the live directory inside the maintenance window (the older tools' way).
    InPlace,
}

/// The deploy pipeline: which steps run and how. The first nine keys are those of the older
/// `deployment-<env>.json`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct DeployConfig {
    pub database_backup: bool,
    pub run_tests: bool,
    pub health_check_timeout: HumanDuration,
    pub rollback_on_failure: bool,
    pub maintenance_mode: bool,
    pub static_files: bool,
    pub cache_clear: bool,
    /// Services restarted with the new app version (names as the service backend knows them).
    pub services: Vec<String>,
    /// Checks that must pass after the restart: database, redis, application, graphql (or the older
    /// name graphql_endpoint), filesystem, performance.
    pub health_checks: Vec<String>,
    pub backup_timing: BackupTiming,
    pub static_strategy: StaticStrategy,
    /// Run `migrate_command` even when the pre-checks' `showmigrations` found nothing pending. Only apps
    /// whose `post_migrate` handlers must run on every deploy need it: Django creates content types and
    /// permissions from migrations, so with nothing pending `migrate` has nothing to do.
    pub migrate_when_none_pending: bool,
    /// Pause between two rounds of post-deploy health checks.
    pub health_check_interval: HumanDuration,
    /// Argument vectors of the Django steps. `{python}` is replaced by `app.python`, `{version}` by the
    /// app version being deployed (e.g. `docker compose run --rm` of that image tag).
    pub migrate_command: Vec<String>,
    pub showmigrations_command: Vec<String>,
    pub collectstatic_command: Vec<String>,
    pub test_command: Vec<String>,
    /// Cache clear: empty means rail deletes the keys matching `cache_key_pattern` in the app's Redis
    /// database (never its own `rail:` keys); otherwise this argument vector runs.
    pub cache_clear_command: Vec<String>,
    pub cache_key_pattern: String,
    pub migrate_timeout: HumanDuration,
    pub collectstatic_timeout: HumanDuration,
    pub test_timeout: HumanDuration,
    /// Activate this schema version (or, with `capture`, a freshly captured one) after the deploy.
    pub activate_schema: bool,
    /// How the deploy meets the running site: `auto` reads every pending migration's SQL and deploys
    /// without a maintenance window when the running release survives all of them, `online` refuses a
    /// deploy that would need the window, `maintenance` always opens it. The older JSON files keep
    /// `maintenance`.
    pub strategy: DeployStrategy,
    /// The online strategy's limits and the migration analysis (`docs/migrations.md`).
    pub online: OnlineConfig,
    /// Argument vector that prints a migration's SQL; `{app}` and `{migration}` are replaced.
    pub sqlmigrate_command: Vec<String>,
}

/// How a deploy meets the running site.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum DeployStrategy {
    /// Online when every pending migration is `online` and none is a lock risk; else the window.
    #[default]
    Auto,
    /// No maintenance window; a deploy whose migrations need one is refused in the pre-checks.
    Online,
    /// Always the maintenance window (the older tools' behaviour).
    Maintenance,
}

/// What an online deploy does with its migrations when a later step fails.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum OnlineFailure {
    /// Keep the expanded schema: online migrations leave it usable by the previous release.
    #[default]
    KeepSchema,
    /// Run each app's migrations back to where they were (`migrate APP PREVIOUS`).
    ReverseMigrations,
}

/// `[deploy.online]`: the online strategy.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct OnlineConfig {
    /// Tables with more rows than this (`pg_class.reltuples`) make a statement that locks them for a
    /// time proportional to their size a `lock-risk`.
    pub lock_risk_rows: u64,
    /// PostgreSQL `lock_timeout` of an online deploy's migrations, so that a migration waiting for a
    /// lock never queues the site's queries behind it.
    pub lock_timeout: HumanDuration,
    /// How many times a migration that hit `lock_timeout` is tried again (with a growing pause).
    pub lock_retries: u32,
    /// Migrations (`app.name`) their author vouches for: taken as `online` whatever the analysis sees.
    pub assume_safe: Vec<String>,
    /// After an online deploy's migration, a failing step hands the site back to the previous release
    /// and then keeps the schema or reverses the migrations; the backup is never restored (it would
    /// drop the writes made since).
    pub on_failure: OnlineFailure,
    /// How many `sqlmigrate` commands run at once in the pre-checks.
    pub analysis_jobs: usize,
}

impl Default for OnlineConfig {
    fn default() -> Self {
        Self {
            lock_risk_rows: 100_000,
            lock_timeout: HumanDuration::from_secs(2),
            lock_retries: 5,
            assume_safe: Vec::new(),
            on_failure: OnlineFailure::default(),
            analysis_jobs: 4,
        }
    }
}

impl Default for DeployConfig {
    fn default() -> Self {
        let manage = |rest: &[&str]| {
            ["{python}", "manage.py"].iter().chain(rest).map(|s| (*s).to_owned()).collect()
        };
        Self {
            database_backup: true,
            run_tests: false,
            health_check_timeout: HumanDuration::from_secs(300),
            rollback_on_failure: true,
            maintenance_mode: true,
            static_files: true,
            cache_clear: true,
            services: vec!["web".into()],
            health_checks: vec![
                "database".into(),
                "redis".into(),
                "application".into(),
                "graphql".into(),
            ],
            backup_timing: BackupTiming::default(),
            static_strategy: StaticStrategy::default(),
            migrate_when_none_pending: false,
            health_check_interval: HumanDuration::from_secs(2),
            migrate_command: manage(&["migrate", "--noinput"]),
            showmigrations_command: manage(&["showmigrations", "--plan"]),
            collectstatic_command: manage(&["collectstatic", "--noinput"]),
            test_command: manage(&["test", "--noinput"]),
            cache_clear_command: Vec::new(),
            cache_key_pattern: "*".into(),
            migrate_timeout: HumanDuration::from_secs(30 * 60),
            collectstatic_timeout: HumanDuration::from_secs(10 * 60),
            test_timeout: HumanDuration::from_secs(30 * 60),
            activate_schema: false,
            strategy: DeployStrategy::default(),
            online: OnlineConfig::default(),
            sqlmigrate_command: manage(&["sqlmigrate", "{app}", "{migration}"]),
        }
    }
}

/// Database dump format.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum DumpFormat {
    /// `pg_dump --format=custom` into `database.dump.zst` (`database.dump` with gzip compression).
    #[default]
    Custom,
    /// `pg_dump --format=directory --jobs N` into `database/`, compressed by pg_dump itself (gzip at
    /// `compression_level`) whatever `compression` says.
    Directory,
}

/// Compression of the custom-format database dump and of the static and media archives.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Compression {
    /// pg_dump's own gzip for the dump (`database.dump`) and gzip archives (`.tar.gz`), at
    /// `compression_level`: what sets written before zstd became the default use.
    Gzip,
    /// `pg_dump --compress=0` through zstd (`database.dump.zst`) and zstd archives (`.tar.zst`), level
    /// 3 on two threads: several times faster than gzip at about the same size.
    #[default]
    Zstd,
}

/// How deeply a backup is verified.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum VerifyLevel {
    /// Re-hash every component against the manifest.
    #[default]
    Checksums,
    /// Plus `pg_restore --list` and reading every archive entry.
    Structure,
    /// Plus a restore into a scratch database, dropped afterwards.
    RestoreTest,
}

/// Backup sets: where, how, how many.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct BackupConfig {
    /// Directory holding backup sets, journals and the audit log.
    pub directory: PathBuf,
    pub format: DumpFormat,
    /// Parallel jobs of pg_dump (directory format) and pg_restore.
    pub jobs: u32,
    pub compression: Compression,
    /// gzip level (1–9) with `compression = "gzip"`, and of pg_dump's own compression in directory
    /// format; zstd always runs at its level 3.
    pub compression_level: u32,
    pub include_static: bool,
    pub include_media: bool,
    pub keep_last: u32,
    pub max_age_days: u32,
    /// Verification run right after a deploy's backup.
    pub verify: VerifyLevel,
    /// Free space that must remain on the backup filesystem after the estimated backup.
    pub min_free_space: ByteSize,
    pub timeout: HumanDuration,
    /// The key that authenticates the sets rail writes (`rail-backup-key-v1:…`, from `rollback keygen`).
    /// Usually given as `RAIL_BACKUP_KEY` rather than in a file.
    pub key: Secret,
    /// A file holding the key (created by `rollback keygen`, mode 0600). `key` wins when both are set.
    pub key_file: PathBuf,
    /// Keys of earlier rotations: sets they signed still verify; new sets are signed with `key`.
    pub previous_key_files: Vec<PathBuf>,
    /// A copy of every set in S3-compatible object storage, encrypted and authenticated.
    pub remote: RemoteConfig,
}

/// The off-site copy of the backup sets: an S3-compatible bucket.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct RemoteConfig {
    /// `s3://bucket/prefix`; empty: no remote.
    pub url: String,
    /// The server, for S3-compatible stores other than AWS (`https://minio.example.com:9000`).
    pub endpoint: String,
    pub region: String,
    /// Empty: `AWS_ACCESS_KEY_ID`.
    pub access_key_id: Secret,
    /// Empty: `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: Secret,
    /// Empty: `AWS_SESSION_TOKEN`.
    pub session_token: Secret,
    /// Upload each set right after the deploy's backup, inside the maintenance window, instead of
    /// after the window closes.
    pub before_migrate: bool,
    /// Sets kept in the bucket (the newest authenticated set is always kept).
    pub keep_last: u32,
    /// Remote sets older than this many days are removed; 0 keeps them (up to `keep_last`).
    pub max_age_days: u32,
    /// `healthcheck --check backups` warns when the newest remote set is older than this, and is
    /// critical past twice as old.
    pub max_age: HumanDuration,
    /// Encrypt every file with age before it leaves the host (the manifest stays readable, and
    /// authenticated by the backup key).
    pub encrypt: bool,
    /// age recipients (`age1…`) files are encrypted to; keep the matching identities off this host
    /// if it only needs to write backups.
    pub recipients: Vec<String>,
    /// An age identity file (`rollback keygen --age`), needed to download; its recipient is added
    /// to `recipients`.
    pub identity_file: PathBuf,
    /// Environment variable holding a passphrase, used instead of recipients and identities.
    pub passphrase_env: String,
    /// Size of each part of a multipart upload (at least 5 MiB; larger for files over 9,000 parts).
    /// Each part in flight costs about twice its size in memory.
    pub part_size: ByteSize,
    /// Parts uploaded at once.
    pub concurrency: u32,
    /// How long one request may take before it is retried.
    pub request_timeout: HumanDuration,
    /// Retries of a failed request.
    pub retries: u32,
}

impl RemoteConfig {
    /// Whether a remote is configured.
    pub fn is_configured(&self) -> bool {
        !self.url.trim().is_empty()
    }
}

impl Default for RemoteConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            endpoint: String::new(),
            region: "us-east-1".into(),
            access_key_id: Secret::default(),
            secret_access_key: Secret::default(),
            session_token: Secret::default(),
            before_migrate: false,
            keep_last: 30,
            max_age_days: 0,
            max_age: HumanDuration::from_secs(26 * 60 * 60),
            encrypt: true,
            recipients: Vec::new(),
            identity_file: PathBuf::new(),
            passphrase_env: String::new(),
            part_size: ByteSize::mib(5),
            concurrency: 2,
            request_timeout: HumanDuration::from_secs(60),
            retries: 3,
        }
    }
}

impl Default for BackupConfig {
    fn default() -> Self {
        Self {
            directory: PathBuf::from("backups"),
            format: DumpFormat::default(),
            jobs: 2,
            compression: Compression::default(),
            compression_level: 6,
            include_static: true,
            include_media: true,
            keep_last: 10,
            max_age_days: 30,
            verify: VerifyLevel::default(),
            min_free_space: ByteSize::mib(512),
            timeout: HumanDuration::from_secs(2 * 60 * 60),
            key: Secret::default(),
            key_file: PathBuf::new(),
            previous_key_files: Vec::new(),
            remote: RemoteConfig::default(),
        }
    }
}

/// The two maintenance signals and their expiry.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct MaintenanceConfig {
    /// Flag file read by nginx and the app's middleware; empty disables it.
    pub flag_file: PathBuf,
    /// Redis key read by the app's middleware; empty disables it.
    pub redis_key: String,
    /// Maintenance ends by itself after this long, so a killed deploy cannot leave the site down.
    pub ttl: HumanDuration,
    /// `healthcheck` calls maintenance stale after this long.
    pub stale_after: HumanDuration,
}

impl Default for MaintenanceConfig {
    fn default() -> Self {
        Self {
            flag_file: PathBuf::new(),
            redis_key: "rail:maintenance".into(),
            ttl: HumanDuration::from_secs(30 * 60),
            stale_after: HumanDuration::from_secs(60 * 60),
        }
    }
}

/// Which service backend restarts the app.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum ServiceBackend {
    /// No service control: restarts are skipped (and said so).
    #[default]
    None,
    Releases,
    Compose,
    Systemd,
    Command,
    Kubernetes,
}

/// Service control.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct ServicesConfig {
    pub backend: ServiceBackend,
    pub start_timeout: HumanDuration,
    pub stop_timeout: HumanDuration,
    pub releases: ReleasesBackend,
    pub compose: ComposeBackend,
    pub systemd: SystemdBackend,
    pub command: CommandBackend,
    pub kubernetes: KubernetesBackend,
}

impl Default for ServicesConfig {
    fn default() -> Self {
        Self {
            backend: ServiceBackend::default(),
            start_timeout: HumanDuration::from_secs(60),
            stop_timeout: HumanDuration::from_secs(30),
            releases: ReleasesBackend::default(),
            compose: ComposeBackend::default(),
            systemd: SystemdBackend::default(),
            command: CommandBackend::default(),
            kubernetes: KubernetesBackend::default(),
        }
    }
}

/// Capistrano-style releases: `<root>/releases/<version>/` and a `current` symlink.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct ReleasesBackend {
    pub root: PathBuf,
    /// Argument vector that starts the app (it must return once the app is started, e.g. gunicorn --daemon).
    /// `{root}`, `{current}`, `{python}` and `{version}` (the release being started) are replaced.
    pub start: Vec<String>,
    /// Pid file of the started app; stopping sends SIGTERM to it, then SIGKILL after `stop_timeout`.
    pub pid_file: PathBuf,
    /// Optional argument vector that stops the app instead of the pid file.
    pub stop: Vec<String>,
    /// Optional URL that must answer 2xx before a start counts as done (e.g. the app's health URL).
    pub ready_url: String,
    /// How a restart replaces the running app: `gunicorn` hands the listening socket to the new release
    /// with gunicorn's own USR2/WINCH/TERM sequence (no request is refused, and a release that does not
    /// boot leaves the old one serving); `stop-start` stops the old app, then starts the new one; `auto`
    /// is `gunicorn` when the running app is gunicorn started with `--chdir {current}`, else `stop-start`.
    pub handover: Handover,
}

/// How the `releases` backend replaces a running app.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Handover {
    #[default]
    Auto,
    Gunicorn,
    StopStart,
}

/// `docker compose -f FILE -p PROJECT …`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct ComposeBackend {
    pub file: PathBuf,
    /// More compose files, passed after `file` (`-f FILE -f OVERRIDE…`), e.g. one that swaps images.
    pub override_files: Vec<PathBuf>,
    pub project: String,
    pub services: Vec<String>,
    /// Variable that carries the app version to compose (the image tag).
    pub version_variable: String,
    /// `docker` (runs `docker compose …`, Compose v2) or a path to `docker-compose` (Compose v1, run
    /// without the `compose` word). Both are driven with the commands they share.
    pub program: PathBuf,
    /// The Docker CLI, which reads the containers' state and health (`docker inspect`).
    pub docker: PathBuf,
    /// When set, the Django steps (showmigrations, migrate, collectstatic, tests, sqlmigrate) run inside
    /// the release being deployed: `compose run --rm --no-deps -T SERVICE ARGV…` with the version
    /// variable set to it, so the new image's code and environment migrate the database. `app.python`
    /// is then the image's Python (`python`), and static files are collected in place.
    pub run_service: String,
}

impl Default for ComposeBackend {
    fn default() -> Self {
        Self {
            file: PathBuf::from("docker-compose.yml"),
            override_files: Vec::new(),
            project: String::new(),
            services: Vec::new(),
            version_variable: "IMAGE_TAG".into(),
            program: PathBuf::from("docker"),
            docker: PathBuf::from("docker"),
            run_service: String::new(),
        }
    }
}

/// `systemctl stop|start|restart|is-active UNIT…`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct SystemdBackend {
    pub units: Vec<String>,
    /// `systemctl --user`.
    pub user: bool,
    pub program: PathBuf,
    /// File written with the app version before a start (e.g. read by the unit's EnvironmentFile).
    pub version_file: PathBuf,
    /// Variable of the version file that carries the app version: `APP_VERSION=v2`.
    pub version_variable: String,
}

impl Default for SystemdBackend {
    fn default() -> Self {
        Self {
            units: Vec::new(),
            user: false,
            program: PathBuf::from("systemctl"),
            version_file: PathBuf::new(),
            version_variable: "APP_VERSION".into(),
        }
    }
}

/// A configured argument vector per action. `{version}` is replaced by the app version.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct CommandBackend {
    pub start: Vec<String>,
    pub stop: Vec<String>,
    pub restart: Vec<String>,
    pub status: Vec<String>,
    /// Prints the running app version on stdout.
    pub current_version: Vec<String>,
}

/// `kubectl rollout restart|status|undo`, `kubectl set image`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct KubernetesBackend {
    pub namespace: String,
    pub context: String,
    pub deployments: Vec<String>,
    pub container: String,
    /// Image without tag; the app version is the tag.
    pub image: String,
    pub program: PathBuf,
}

impl Default for KubernetesBackend {
    fn default() -> Self {
        Self {
            namespace: String::new(),
            context: String::new(),
            deployments: Vec::new(),
            container: String::new(),
            image: String::new(),
            program: PathBuf::from("kubectl"),
        }
    }
}

/// Health checks and their thresholds.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct HealthConfig {
    /// Timeout of each check unless the check sets its own.
    pub timeout: HumanDuration,
    pub database: LatencyThresholds,
    /// Share of max_connections in use that makes the database check warn / go critical.
    pub connections_warning_percent: f64,
    pub connections_critical_percent: f64,
    pub redis: LatencyThresholds,
    /// Share of maxmemory in use that makes the Redis check warn / go critical.
    pub memory_warning_percent: f64,
    pub memory_critical_percent: f64,
    pub application: LatencyThresholds,
    pub graphql: LatencyThresholds,
    /// GraphQL query of the graphql check.
    pub graphql_query: String,
    pub filesystem: FilesystemCheck,
    pub performance: PerformanceCheck,
    /// Extra headers sent by the application and graphql checks.
    pub headers: BTreeMap<String, String>,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            timeout: HumanDuration::from_secs(5),
            database: LatencyThresholds::default(),
            connections_warning_percent: 80.0,
            connections_critical_percent: 95.0,
            redis: LatencyThresholds::default(),
            memory_warning_percent: 85.0,
            memory_critical_percent: 95.0,
            application: LatencyThresholds::default(),
            graphql: LatencyThresholds::default(),
            graphql_query: "{ __typename }".into(),
            filesystem: FilesystemCheck::default(),
            performance: PerformanceCheck::default(),
            headers: BTreeMap::new(),
        }
    }
}

/// Latency thresholds of one check, and its own timeout.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct LatencyThresholds {
    pub warning_latency: HumanDuration,
    pub critical_latency: HumanDuration,
    /// Overrides `health.timeout` for this check when set.
    pub timeout: Option<HumanDuration>,
}

impl Default for LatencyThresholds {
    fn default() -> Self {
        Self {
            warning_latency: HumanDuration::from_millis(500),
            critical_latency: HumanDuration::from_secs(2),
            timeout: None,
        }
    }
}

/// Directories that must exist and be writable, and free space floors.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct FilesystemCheck {
    /// Empty means: the backup directory and the app's static and media directories.
    pub paths: Vec<PathBuf>,
    pub min_free_space: ByteSize,
    pub min_free_percent: f64,
    pub warning_free_percent: f64,
}

impl Default for FilesystemCheck {
    fn default() -> Self {
        Self {
            paths: Vec::new(),
            min_free_space: ByteSize::mib(512),
            min_free_percent: 5.0,
            warning_free_percent: 10.0,
        }
    }
}

/// Host load and memory thresholds.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct PerformanceCheck {
    /// One-minute load average per core.
    pub load_warning: f64,
    pub load_critical: f64,
    pub memory_warning_percent: f64,
    pub memory_critical_percent: f64,
}

impl Default for PerformanceCheck {
    fn default() -> Self {
        Self {
            load_warning: 2.0,
            load_critical: 4.0,
            memory_warning_percent: 90.0,
            memory_critical_percent: 97.0,
        }
    }
}

/// Where notifications go and when.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct NotificationsConfig {
    pub on_success: bool,
    pub on_failure: bool,
    pub on_rollback: bool,
    pub on_health_alert: bool,
    /// Timeout of one send attempt.
    pub timeout: HumanDuration,
    /// Attempts after the first.
    pub retries: u32,
    pub slack: SlackConfig,
    pub webhook: WebhookConfig,
    pub email: EmailConfig,
}

impl Default for NotificationsConfig {
    fn default() -> Self {
        Self {
            on_success: true,
            on_failure: true,
            on_rollback: true,
            on_health_alert: true,
            timeout: HumanDuration::from_secs(10),
            retries: 2,
            slack: SlackConfig::default(),
            webhook: WebhookConfig::default(),
            email: EmailConfig::default(),
        }
    }
}

/// Slack incoming webhook.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct SlackConfig {
    pub enabled: bool,
    pub webhook_url: Secret,
    pub channel: String,
    pub username: String,
}

/// Generic JSON webhook.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct WebhookConfig {
    pub enabled: bool,
    pub url: Secret,
    /// Extra headers, e.g. an Authorization token; their values are treated as secrets.
    pub headers: BTreeMap<String, Secret>,
}

/// How the SMTP connection is secured.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum SmtpSecurity {
    #[default]
    Starttls,
    Tls,
    None,
}

/// Email over SMTP.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct EmailConfig {
    pub enabled: bool,
    pub smtp_server: String,
    pub smtp_port: u16,
    pub from_email: String,
    pub to_emails: Vec<String>,
    pub username: String,
    pub password: Secret,
    pub security: SmtpSecurity,
}

impl Default for EmailConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            smtp_server: String::new(),
            smtp_port: 587,
            from_email: String::new(),
            to_emails: Vec::new(),
            username: String::new(),
            password: Secret::default(),
            security: SmtpSecurity::default(),
        }
    }
}

/// Where schema versions are kept.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum SchemaStoreKind {
    /// `<directory>/index.json` and one SDL file per version; works with no database.
    #[default]
    Dir,
    /// Tables `rail_schema_versions` and `rail_schema_activations` in the app's database.
    Postgres,
}

/// The GraphQL schema registry.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct SchemaConfig {
    pub store: SchemaStoreKind,
    pub directory: PathBuf,
    /// Endpoint introspected by `schemaver refresh` and `--from-url`; default `app.graphql_url`.
    pub capture_url: String,
}

impl Default for SchemaConfig {
    fn default() -> Self {
        Self {
            store: SchemaStoreKind::default(),
            directory: PathBuf::from("schema_versions"),
            capture_url: String::new(),
        }
    }
}

/// Database restore strategy.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum RestoreStrategy {
    #[default]
    Swap,
    InPlace,
}

/// Rollback safety rules; the keys are those of the older `rollback_config.json`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct RollbackConfig {
    pub max_rollback_age_days: u32,
    /// Restore the older tools' plain-SQL `db_backup_*.sql` dumps, which carry no authentication.
    pub allow_legacy: bool,
    pub strategy: RestoreStrategy,
    pub safety_checks: SafetyChecks,
    pub procedures: RollbackProcedures,
}

impl Default for RollbackConfig {
    fn default() -> Self {
        Self {
            max_rollback_age_days: 30,
            allow_legacy: false,
            strategy: RestoreStrategy::default(),
            safety_checks: SafetyChecks::default(),
            procedures: RollbackProcedures::default(),
        }
    }
}

/// `safety_checks` of rollback_config.json.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct SafetyChecks {
    pub require_confirmation: bool,
    pub check_active_connections: bool,
    pub verify_backup_integrity: bool,
    /// Verify at the `restore-test` level before restoring.
    pub test_rollback: bool,
    pub pre_rollback_backup: bool,
}

impl Default for SafetyChecks {
    fn default() -> Self {
        Self {
            require_confirmation: true,
            check_active_connections: true,
            verify_backup_integrity: true,
            test_rollback: false,
            pre_rollback_backup: true,
        }
    }
}

/// `rollback_procedures` of rollback_config.json.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct RollbackProcedures {
    pub pre_rollback_backup: bool,
    pub service_stop_timeout: HumanDuration,
    pub service_start_timeout: HumanDuration,
    pub health_check_retries: u32,
    pub health_check_interval: HumanDuration,
}

impl Default for RollbackProcedures {
    fn default() -> Self {
        Self {
            pre_rollback_backup: true,
            service_stop_timeout: HumanDuration::from_secs(30),
            service_start_timeout: HumanDuration::from_secs(60),
            health_check_retries: 5,
            health_check_interval: HumanDuration::from_secs(10),
        }
    }
}

/// `monitoring` of rollback_config.json.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub struct MonitoringConfig {
    /// Log lines are appended here as well as written to stderr.
    pub log_file: PathBuf,
    pub metrics_enabled: bool,
    pub alert_on_failure: bool,
}
