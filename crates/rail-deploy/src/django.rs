//! The Django side of a deploy: the management commands' argument vectors, their environment, and
//! reading `showmigrations --plan`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use rail_core::config::{Config, ServiceBackend};
use rail_core::process::Cmd;
use rail_core::secret::{is_secret_variable, Secret};
use rail_core::service::ComposeController;

/// A `--migrate-to APP:MIGRATION` target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrateTarget {
    pub app: String,
    pub migration: String,
}

impl std::str::FromStr for MigrateTarget {
    type Err = anyhow::Error;

    fn from_str(raw: &str) -> anyhow::Result<Self> {
        let Some((app, migration)) = raw.split_once(':') else {
            bail!("--migrate-to `{raw}` names no app: write APP:MIGRATION, e.g. catalog:0001_initial (or catalog:zero)")
        };
        let valid =
            |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid(app) || !valid(migration) {
            bail!(
                "--migrate-to `{raw}`: app and migration names are letters, digits and underscores"
            )
        }
        Ok(Self { app: app.to_owned(), migration: migration.to_owned() })
    }
}

/// Builds management commands for one release directory.
#[derive(Debug, Clone)]
pub struct Django<'a> {
    cfg: &'a Config,
    /// Where `manage.py` runs: the release being deployed.
    pub dir: PathBuf,
    /// The app version being deployed, for `{version}` in the commands (the image tag that
    /// `docker compose run` starts, say).
    pub version: Option<String>,
}

impl<'a> Django<'a> {
    pub fn new(cfg: &'a Config, dir: PathBuf) -> Self {
        Self { cfg, dir, version: None }
    }

    /// The commands of `version`: run in its release directory (see [`crate::actions`]), with
    /// `{version}` replaced by it.
    #[must_use]
    pub fn with_version(mut self, version: Option<&str>) -> Self {
        self.version = version.map(str::to_owned);
        self
    }

    /// A command from a configured argument vector, `{python}` and `{version}` replaced, with the
    /// app's environment.
    pub fn command(&self, argv: &[String]) -> anyhow::Result<Cmd> {
        self.command_with_static_root(argv, &self.cfg.app.static_dir)
    }

    /// [`Self::command`] with `STATIC_ROOT` set to `static_root` rather than `app.static_dir`.
    fn command_with_static_root(&self, argv: &[String], static_root: &Path) -> anyhow::Result<Cmd> {
        // The app's environment file holds its secrets (SECRET_KEY, passwords in URLs): a value is
        // passed as a secret, never shown, when its name says so (`*_PASSWORD`, `*_TOKEN`, `*_KEY`,
        // …) or when it holds a credential (a URL with a password, a known token format); the rest
        // (`DEBUG`, `ALLOWED_HOSTS`) show as they are. Keys rail sets itself below from its own
        // configuration are left out here.
        const OWN: [&str; 5] =
            ["DATABASE_URL", "REDIS_URL", "SECRET_KEY", "STATIC_ROOT", "MEDIA_ROOT"];
        let Some((program, rest)) = argv.split_first() else { bail!("empty command") };
        let python = self.cfg.app.python.to_string_lossy();
        if argv.iter().any(|a| a.contains("{version}")) && self.version.is_none() {
            bail!(
                "`{}` uses {{version}}, but no app version was given (--version) and none is current",
                argv.join(" ")
            )
        }
        let version = self.version.as_deref().unwrap_or_default();
        let expand = |s: &str| s.replace("{python}", &python).replace("{version}", version);
        let compose = &self.cfg.services.compose;
        if self.cfg.services.backend == ServiceBackend::Compose && !compose.run_service.is_empty() {
            // Inside the release's image: its own environment (the compose file's) applies, not the
            // host's; rail's settings do not cross into the container.
            let argv: Vec<String> = argv.iter().map(|a| expand(a)).collect();
            let controller = ComposeController::from_config(self.cfg)?;
            return Ok(controller.run_command(
                &compose.run_service,
                self.version.as_deref(),
                &argv,
            )?);
        }
        let mut cmd = Cmd::new(expand(program)).args(rest.iter().map(|a| expand(a)));
        if !self.dir.as_os_str().is_empty() {
            cmd = cmd.cwd(&self.dir);
        }
        for (key, value) in app_env(self.cfg)? {
            if OWN.contains(&key.as_str()) {
                continue;
            }
            if is_secret_variable(&key, &value) {
                cmd = cmd.secret_env(key, &Secret::new(value));
            } else {
                cmd = cmd.env(key, value);
            }
        }
        if let Some(url) = self.cfg.database_url() {
            cmd = cmd.secret_env("DATABASE_URL", &url);
        }
        if !self.cfg.redis.url.is_empty() {
            cmd = cmd.secret_env("REDIS_URL", &self.cfg.redis.url);
        }
        if !self.cfg.app.secret_key.is_empty() {
            cmd = cmd.secret_env("SECRET_KEY", &self.cfg.app.secret_key);
        }
        for (key, path) in [("STATIC_ROOT", static_root), ("MEDIA_ROOT", &self.cfg.app.media_dir)] {
            if !path.as_os_str().is_empty() {
                cmd = cmd.env(key, path);
            }
        }
        Ok(cmd)
    }

    /// `migrate`, or `migrate APP MIGRATION` with `--migrate-to`.
    pub fn migrate(&self, target: Option<&MigrateTarget>) -> anyhow::Result<Cmd> {
        let mut argv = self.cfg.deploy.migrate_command.clone();
        if let Some(t) = target {
            let Some(pos) = argv.iter().position(|a| a == "migrate") else {
                bail!("--migrate-to needs `migrate` in deploy.migrate_command to place APP MIGRATION after it")
            };
            argv.insert(pos + 1, t.migration.clone());
            argv.insert(pos + 1, t.app.clone());
        }
        Ok(self.command(&argv)?.timeout(self.cfg.deploy.migrate_timeout.get()))
    }

    pub fn showmigrations(&self) -> anyhow::Result<Cmd> {
        Ok(self
            .command(&self.cfg.deploy.showmigrations_command)?
            .timeout(self.cfg.deploy.migrate_timeout.get()))
    }

    pub fn collectstatic(&self) -> anyhow::Result<Cmd> {
        Ok(self
            .command(&self.cfg.deploy.collectstatic_command)?
            .timeout(self.cfg.deploy.collectstatic_timeout.get()))
    }

    /// `collectstatic` into `dir` (its `STATIC_ROOT`), for the staged strategy.
    pub fn collectstatic_into(&self, dir: &Path) -> anyhow::Result<Cmd> {
        Ok(self
            .command_with_static_root(&self.cfg.deploy.collectstatic_command, dir)?
            .timeout(self.cfg.deploy.collectstatic_timeout.get()))
    }

    /// `sqlmigrate APP NAME`: the SQL a pending migration would run, read without running it.
    pub fn sqlmigrate(&self, app: &str, migration: &str) -> anyhow::Result<Cmd> {
        let argv: Vec<String> = self
            .cfg
            .deploy
            .sqlmigrate_command
            .iter()
            .map(|a| a.replace("{app}", app).replace("{migration}", migration))
            .collect();
        Ok(self.command(&argv)?.timeout(self.cfg.deploy.migrate_timeout.get()))
    }

    /// `migrate APP MIGRATION` (`zero` for none): an app's migrations back to where they were.
    pub fn migrate_app_to(&self, app: &str, migration: &str) -> anyhow::Result<Cmd> {
        self.migrate(Some(&MigrateTarget { app: app.to_owned(), migration: migration.to_owned() }))
    }

    pub fn tests(&self) -> anyhow::Result<Cmd> {
        Ok(self.command(&self.cfg.deploy.test_command)?.timeout(self.cfg.deploy.test_timeout.get()))
    }
}

/// The variables of `app.env_file` and `app.env`, in that order (the map wins).
pub fn app_env(cfg: &Config) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    let file = &cfg.app.env_file;
    if !file.as_os_str().is_empty() {
        for item in dotenvy::from_path_iter(file)
            .with_context(|| format!("reading app.env_file {}", file.display()))?
        {
            out.push(item.with_context(|| format!("reading app.env_file {}", file.display()))?);
        }
    }
    out.extend(cfg.app.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    Ok(out)
}

/// The unapplied migrations in the output of `showmigrations --plan` (`[ ]  app.0002_name`).
pub fn pending_migrations(plan: &str) -> Vec<String> {
    plan.lines()
        .filter_map(|line| line.trim_start().strip_prefix("[ ]"))
        .map(|rest| rest.split_whitespace().next().unwrap_or("").to_owned())
        .filter(|name| !name.is_empty())
        .collect()
}

/// For each app with a pending migration in `showmigrations --plan`, its last applied migration
/// (`zero` when none is): where `migrate APP MIGRATION` takes the app back to.
pub fn applied_before(plan: &str) -> std::collections::BTreeMap<String, String> {
    let mut last_applied = std::collections::BTreeMap::new();
    let mut pending_apps = std::collections::BTreeSet::new();
    for line in plan.lines() {
        let line = line.trim_start();
        let (applied, rest) = if let Some(rest) = line.strip_prefix("[X]") {
            (true, rest)
        } else if let Some(rest) = line.strip_prefix("[ ]") {
            (false, rest)
        } else {
            continue;
        };
        let Some((app, name)) = rest.split_whitespace().next().and_then(|n| n.split_once('.'))
        else {
            continue;
        };
        if applied {
            last_applied.insert(app.to_owned(), name.to_owned());
        } else {
            pending_apps.insert(app.to_owned());
        }
    }
    pending_apps
        .into_iter()
        .map(|app| {
            let to = last_applied.get(&app).cloned().unwrap_or_else(|| "zero".to_owned());
            (app, to)
        })
        .collect()
}

/// The release directory of `version` under a releases root.
pub fn release_dir(root: &Path, version: &str) -> PathBuf {
    root.join("releases").join(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrate_targets_parse_or_say_why_not() {
        let t: MigrateTarget = "catalog:0001_initial".parse().unwrap();
        assert_eq!(t, MigrateTarget { app: "catalog".into(), migration: "0001_initial".into() });
        let err = "0001_initial".parse::<MigrateTarget>().unwrap_err().to_string();
        assert!(err.contains("names no app"), "{err}");
        let err = "cat;rm:-rf".parse::<MigrateTarget>().unwrap_err().to_string();
        assert!(err.contains("letters, digits and underscores"), "{err}");
    }

    #[test]
    fn migrate_to_places_app_and_migration_after_migrate() {
        let mut cfg = Config::default();
        cfg.app.python = "/venv/bin/python".into();
        cfg.database.url = rail_core::secret::Secret::new("postgresql://u:pw@h/db");
        let dj = Django::new(&cfg, "/srv/app/releases/v2".into());
        let target = "catalog:0001_initial".parse().unwrap();
        let cmd = dj.migrate(Some(&target)).unwrap();
        assert_eq!(
            cmd.argv(),
            ["/venv/bin/python", "manage.py", "migrate", "catalog", "0001_initial", "--noinput"]
        );
        assert!(!cmd.display().contains("pw"), "{}", cmd.display());
        assert_eq!(
            dj.showmigrations().unwrap().argv(),
            ["/venv/bin/python", "manage.py", "showmigrations", "--plan"]
        );
    }

    #[test]
    fn compose_run_service_runs_the_steps_in_the_new_image() {
        let mut cfg = Config::default();
        cfg.app.python = "python".into();
        cfg.database.url = rail_core::secret::Secret::new("postgresql://u:pw@127.0.0.1:5433/db");
        cfg.services.backend = ServiceBackend::Compose;
        cfg.services.compose.file = "/srv/docker-compose.yml".into();
        cfg.services.compose.project = "shop".into();
        cfg.services.compose.run_service = "web".into();
        let dj = Django::new(&cfg, PathBuf::new()).with_version(Some("v2"));
        let cmd = dj.migrate(None).unwrap();
        assert_eq!(
            cmd.argv(),
            [
                "docker",
                "compose",
                "-f",
                "/srv/docker-compose.yml",
                "-p",
                "shop",
                "run",
                "--rm",
                "--no-deps",
                "-T",
                "web",
                "python",
                "manage.py",
                "migrate",
                "--noinput"
            ]
        );
        let shown = cmd.display();
        assert!(shown.starts_with("IMAGE_TAG=v2 docker compose"), "{shown}");
        // The host's settings stay on the host: the container has the compose file's.
        assert!(!shown.contains("DATABASE_URL") && !shown.contains("pw"), "{shown}");
        // Without a version to run, a command that needs one says so.
        let err = Django::new(&cfg, PathBuf::new()).migrate(None);
        assert!(err.is_ok(), "run_service without a version runs the compose file's default tag");
        cfg.deploy.migrate_command =
            ["{python}", "manage.py", "migrate", "--tag={version}"].map(str::to_owned).to_vec();
        cfg.services.compose.run_service = String::new();
        let err = Django::new(&cfg, PathBuf::new()).migrate(None).unwrap_err().to_string();
        assert!(err.contains("{version}") && err.contains("--version"), "{err}");
        let cmd = Django::new(&cfg, PathBuf::new()).with_version(Some("v3")).migrate(None).unwrap();
        assert_eq!(cmd.argv(), ["python", "manage.py", "migrate", "--tag=v3"]);
    }

    #[test]
    fn app_env_file_values_never_show() {
        let dir = tempfile::tempdir().unwrap();
        let env_file = dir.path().join("app.env");
        fs_err::write(&env_file, "SECRET_KEY=from-file\nDJANGO_TOKEN=tok-123\nDEBUG=0\n").unwrap();
        let mut cfg = Config::default();
        cfg.app.env_file = env_file;
        cfg.app.secret_key = rail_core::secret::Secret::new("from-config");
        let cmd = Django::new(&cfg, dir.path().to_owned()).migrate(None).unwrap();
        let shown = cmd.display();
        for secret in ["from-file", "tok-123", "from-config"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert_eq!(shown.matches("SECRET_KEY=").count(), 1, "{shown}");
    }

    #[test]
    fn pending_migrations_are_the_unchecked_lines() {
        let plan = "[X]  contenttypes.0001_initial\n[X]  catalog.0001_initial\n[ ]  catalog.0002_product_stock\n[ ]  catalog.0003_review_broken\n";
        assert_eq!(
            pending_migrations(plan),
            ["catalog.0002_product_stock", "catalog.0003_review_broken"]
        );
        assert!(pending_migrations("[X]  a.0001\n").is_empty());
    }

    #[test]
    fn applied_before_names_each_pending_app_s_last_applied_migration() {
        let plan = "[X]  contenttypes.0001_initial\n[X]  catalog.0001_initial\n[ ]  catalog.0002_product_stock\n[ ]  shop.0001_initial\n[ ]  catalog.0003_review\n";
        let before = applied_before(plan);
        assert_eq!(before.len(), 2);
        assert_eq!(before["catalog"], "0001_initial");
        assert_eq!(before["shop"], "zero");
    }
}
