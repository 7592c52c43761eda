use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    fs_err::write(&path, text).unwrap();
    path
}

fn load_file(path: &Path, vars: &[(&str, &str)]) -> Result<Loaded, ConfigError> {
    load(&LoadOptions {
        config_file: Some(path.to_owned()),
        dotenv_dir: Some(path.parent().unwrap().to_owned()),
        env: Some(env(vars)),
        ..LoadOptions::default()
    })
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

#[test]
fn defaults_alone_load() {
    let dir = tempfile::tempdir().unwrap();
    let loaded = load(&LoadOptions {
        config_dir: Some(dir.path().to_owned()),
        dotenv_dir: Some(dir.path().to_owned()),
        env: Some(env(&[])),
        ..LoadOptions::default()
    })
    .unwrap();
    let c = loaded.config;
    assert_eq!(c.environment, "production");
    assert!(loaded.file.is_none());
    assert!(c.deploy.database_backup && c.deploy.rollback_on_failure && c.deploy.maintenance_mode);
    assert_eq!(c.deploy.health_check_timeout.get(), Duration::from_secs(300));
    assert_eq!(c.deploy.migrate_command, ["{python}", "manage.py", "migrate", "--noinput"]);
    assert_eq!(c.maintenance.redis_key, "rail:maintenance");
    assert_eq!(c.backup.keep_last, 10);
}

#[test]
fn nested_sections_merge_key_by_key_with_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "staging.toml",
        "[rollback.safety_checks]\ntest_rollback = true\n[backup]\nkeep_last = 3\n",
    );
    let c = load_file(&path, &[]).unwrap().config;
    assert!(c.rollback.safety_checks.test_rollback);
    // The other keys of the section keep their defaults instead of being wiped.
    assert!(c.rollback.safety_checks.require_confirmation);
    assert!(c.rollback.safety_checks.pre_rollback_backup);
    assert_eq!(c.backup.keep_last, 3);
    assert_eq!(c.backup.max_age_days, 30);
}

#[test]
fn environment_selects_the_file_in_the_config_dir() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "staging.toml", "[deploy]\nrun_tests = true\n");
    let loaded = load(&LoadOptions {
        environment: Some("staging".into()),
        config_dir: Some(dir.path().to_owned()),
        dotenv_dir: Some(dir.path().to_owned()),
        env: Some(env(&[])),
        ..LoadOptions::default()
    })
    .unwrap();
    assert_eq!(loaded.config.environment, "staging");
    assert!(loaded.config.deploy.run_tests);
    assert_eq!(loaded.file.unwrap(), dir.path().join("staging.toml"));
    // RAIL_ENVIRONMENT is the fallback for --environment.
    let loaded = load(&LoadOptions {
        config_dir: Some(dir.path().to_owned()),
        dotenv_dir: Some(dir.path().to_owned()),
        env: Some(env(&[("RAIL_ENVIRONMENT", "staging")])),
        ..LoadOptions::default()
    })
    .unwrap();
    assert!(loaded.config.deploy.run_tests);
}

#[test]
fn layers_apply_in_order_file_dotenv_env_flags() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "local.toml",
        "environment = \"local\"\n[database]\nurl = \"postgresql://file@h/db\"\n[redis]\nurl = \"redis://file\"\n[app]\nurl = \"http://file\"\n",
    );
    write(dir.path(), ".env", "REDIS_URL=redis://dotenv\nAPP_URL=http://dotenv-base\n");
    write(dir.path(), ".env.local", "APP_URL=http://dotenv-env\n");
    let loaded = load(&LoadOptions {
        environment: Some("local".into()),
        config_file: Some(path.clone()),
        dotenv_dir: Some(dir.path().to_owned()),
        env: Some(env(&[("REDIS_URL", "redis://process")])),
        overrides: vec![("backup.keep_last".into(), "keep-last".into(), 7.into())],
        ..LoadOptions::default()
    })
    .unwrap();
    let c = &loaded.config;
    assert_eq!(c.database.url.expose(), "postgresql://file@h/db");
    assert_eq!(loaded.origin("database.url"), Origin::File(path));
    assert_eq!(c.redis.url.expose(), "redis://process");
    assert_eq!(loaded.origin("redis.url"), Origin::Env("REDIS_URL".into()));
    assert_eq!(c.app.url, "http://dotenv-env");
    assert_eq!(loaded.origin("app.url"), Origin::Dotenv(dir.path().join(".env.local")));
    assert_eq!(c.backup.keep_last, 7);
    assert_eq!(loaded.origin("backup.keep_last"), Origin::Flag("keep-last".into()));
    assert_eq!(c.health_url().unwrap(), "http://dotenv-env/health/");
    assert_eq!(c.graphql_url().unwrap(), "http://dotenv-env/graphql/");
}

#[test]
fn rail_variables_set_any_key_with_its_type() {
    let dir = tempfile::tempdir().unwrap();
    let loaded = load(&LoadOptions {
        config_dir: Some(dir.path().to_owned()),
        dotenv_dir: Some(dir.path().to_owned()),
        env: Some(env(&[
            ("RAIL_BACKUP__KEEP_LAST", "4"),
            ("RAIL_DEPLOY__RUN_TESTS", "yes"),
            ("RAIL_DEPLOY__SERVICES", "web, worker"),
            ("RAIL_DEPLOY__HEALTH_CHECK_TIMEOUT", "90s"),
            ("RAIL_HEALTH__MEMORY_WARNING_PERCENT", "70.5"),
            ("RAIL_ROLLBACK__SAFETY_CHECKS__TEST_ROLLBACK", "true"),
            ("RAIL_APP__ENV__DJANGO_SETTINGS_MODULE", "demo.settings"),
            ("RAIL_BACKUP__MIN_FREE_SPACE", "2GiB"),
        ])),
        ..LoadOptions::default()
    })
    .unwrap();
    let c = loaded.config;
    assert_eq!(c.backup.keep_last, 4);
    assert!(c.deploy.run_tests);
    assert_eq!(c.deploy.services, ["web", "worker"]);
    assert_eq!(c.deploy.health_check_timeout.get(), Duration::from_secs(90));
    assert!((c.health.memory_warning_percent - 70.5).abs() < f64::EPSILON);
    assert!(c.rollback.safety_checks.test_rollback);
    assert_eq!(c.app.env["django_settings_module"], "demo.settings");
    assert_eq!(c.backup.min_free_space, ByteSize::gib(2));
}

#[test]
fn bad_rail_variables_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let run = |vars: &[(&str, &str)]| {
        load(&LoadOptions {
            config_dir: Some(dir.path().to_owned()),
            dotenv_dir: Some(dir.path().to_owned()),
            env: Some(env(vars)),
            ..LoadOptions::default()
        })
        .unwrap_err()
        .to_string()
    };
    let err = run(&[("RAIL_BACKUP__KEEP_LASTT", "4")]);
    assert_eq!(
        err,
        "unknown key `RAIL_BACKUP__KEEP_LASTT` in environment variable RAIL_BACKUP__KEEP_LASTT \
         (did you mean `RAIL_BACKUP__KEEP_LAST`?)"
    );
    let err = run(&[("RAIL_DEPLOY__RUN_TESTS", "maybe")]);
    assert_eq!(err, "invalid environment variable RAIL_DEPLOY__RUN_TESTS: `maybe` is not a boolean (true/false)");
    let err = run(&[("RAIL_BACKUP__KEEP_LAST", "many")]);
    assert!(err.contains("`many` is not a number"), "{err}");
    let err = run(&[("RAIL_DEPLOY__HEALTH_CHECK_TIMEOUT", "soon")]);
    assert!(
        err.starts_with("invalid value for `deploy.health_check_timeout` in environment variable"),
        "{err}"
    );
}

#[test]
fn interpolation_reads_dotenv_and_process_env() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "c.toml",
        "[database]\nurl = \"postgresql://app:${DB_PASS}@${DB_HOST:-localhost}/app\"\n\
         [app]\nurl = \"http://${HOST}:${PORT:-8000}\"\ndir = \"$$HOME/${UNSET_BUT_DEFAULTED:-x}\"\n",
    );
    write(dir.path(), ".env", "DB_PASS=from-dotenv\nHOST=dotenv-host\n");
    let c = load_file(&path, &[("HOST", "process-host")]).unwrap().config;
    assert_eq!(c.database.url.expose(), "postgresql://app:from-dotenv@localhost/app");
    assert_eq!(c.app.url, "http://process-host:8000");
    assert_eq!(c.app.dir, PathBuf::from("$HOME/x"));
}

#[test]
fn unset_variable_names_key_file_and_variable() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "c.toml", "[redis]\nurl = \"${UNSET_REDIS}\"\n");
    let err = load_file(&path, &[]).unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "`redis.url` in {} uses ${{UNSET_REDIS}}, but UNSET_REDIS is not set (set it, or write ${{UNSET_REDIS:-default}})",
            path.display()
        )
    );
    let path = write(dir.path(), "d.toml", "[redis]\nurl = \"${OOPS\"\n");
    let err = load_file(&path, &[]).unwrap_err().to_string();
    assert!(err.contains("unterminated ${"), "{err}");
}

#[test]
fn unknown_key_names_key_file_and_suggestion() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "c.toml", "[deploy]\nhealth_check_timout = \"10s\"\n");
    let err = load_file(&path, &[]).unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "unknown key `deploy.health_check_timout` in {} (did you mean `deploy.health_check_timeout`?)",
            path.display()
        )
    );
    let path = write(dir.path(), "e.toml", "[databse]\nurl = \"x\"\n");
    let err = load_file(&path, &[]).unwrap_err().to_string();
    assert!(
        err.contains("unknown key `databse`") && err.contains("did you mean `database`?"),
        "{err}"
    );
    let path = write(dir.path(), "f.toml", "zzzz = 1\n");
    let err = load_file(&path, &[]).unwrap_err().to_string();
    assert_eq!(err, format!("unknown key `zzzz` in {}", path.display()));
}

#[test]
fn wrong_type_names_key_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "c.toml", "[backup]\nkeep_last = \"lots\"\n");
    let err = load_file(&path, &[]).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("invalid value for `backup.keep_last` in {}:", path.display())),
        "{err}"
    );
    let path = write(dir.path(), "d.toml", "[deploy]\nbackup_timing = \"whenever\"\n");
    let err = load_file(&path, &[]).unwrap_err().to_string();
    assert!(err.contains("`deploy.backup_timing`") && err.contains("inside-maintenance"), "{err}");
    let path = write(dir.path(), "e.toml", "deploy = 3\n");
    let err = load_file(&path, &[]).unwrap_err().to_string();
    assert!(err.contains("invalid value for `deploy`"), "{err}");
}

#[test]
fn malformed_and_huge_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "c.toml", "[deploy\nrun_tests = true\n");
    let err = load_file(&path, &[]).unwrap_err();
    assert_eq!(err.to_string(), format!("configuration file {} is not valid TOML", path.display()));
    let cause = std::error::Error::source(&err).unwrap().to_string();
    assert!(cause.contains("line 1"), "{cause}");

    let big = "# padding\n".repeat(1024 * 1024);
    let path = write(dir.path(), "big.toml", &big);
    let err = load_file(&path, &[]).unwrap_err().to_string();
    assert!(
        err.contains("is 10485760 bytes; configuration files are limited to 1048576 bytes"),
        "{err}"
    );

    let path = write(dir.path(), "list.json", "[1, 2]");
    let err = load_file(&path, &[]).unwrap_err().to_string();
    assert!(err.contains("must hold a table"), "{err}");

    let missing = dir.path().join("nope.toml");
    let err = load_file(&missing, &[]).unwrap_err().to_string();
    assert_eq!(err, format!("cannot read configuration file {}", missing.display()));
}

#[test]
fn hostile_environment_names_are_refused() {
    for name in ["../etc", "a/b", "", "prod uction"] {
        let err = load(&LoadOptions {
            environment: Some(name.into()),
            env: Some(env(&[])),
            ..LoadOptions::default()
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("is not an environment name"), "{name}: {err}");
    }
}

#[test]
fn seed_deployment_json_maps_every_key() {
    let path = workspace_root().join("deploy-configs/examples/deployment-production.json");
    let c = load_file(&path, &[]).unwrap().config;
    let d = &c.deploy;
    assert!(d.database_backup);
    assert!(d.run_tests);
    assert_eq!(d.health_check_timeout.get(), Duration::from_secs(300));
    assert!(d.rollback_on_failure);
    assert!(d.maintenance_mode);
    assert!(d.static_files);
    assert!(d.cache_clear);
    assert_eq!(d.services, ["web", "worker", "scheduler"]);
    assert_eq!(d.health_checks, ["database", "redis", "graphql_endpoint"]);
}

#[test]
fn seed_rollback_json_maps_every_key() {
    let path = workspace_root().join("deploy-configs/examples/rollback_config.json");
    let loaded = load_file(&path, &[]).unwrap();
    let c = &loaded.config;
    assert_eq!(c.database.host, "localhost");
    assert_eq!(c.database.port, 5432);
    assert_eq!(c.database.name, "rail_django_graphql");
    assert_eq!(c.database.user, "postgres");
    assert_eq!(c.database.password.expose(), "postgres");
    assert_eq!(
        c.database_url().unwrap().expose(),
        "postgresql://postgres:postgres@localhost:5432/rail_django_graphql"
    );
    assert_eq!(c.backup.directory, PathBuf::from("/app/backups"));
    assert_eq!(c.rollback.max_rollback_age_days, 30);
    let s = &c.rollback.safety_checks;
    assert!(s.require_confirmation && s.check_active_connections && s.verify_backup_integrity);
    assert!(!s.test_rollback && s.pre_rollback_backup);
    let n = &c.notifications;
    assert!(n.slack.enabled);
    assert_eq!(n.slack.webhook_url.expose(), "https://hooks.slack.com/services/...");
    assert_eq!(n.slack.channel, "#deployments");
    assert!(n.email.enabled);
    assert_eq!(n.email.smtp_server, "smtp.gmail.com");
    assert_eq!(n.email.smtp_port, 587);
    assert_eq!(n.email.from_email, "deployments@yourcompany.com");
    assert_eq!(n.email.to_emails, ["admin@yourcompany.com"]);
    assert_eq!(c.services.backend, ServiceBackend::Compose);
    assert_eq!(c.services.compose.file, PathBuf::from("docker-compose.yml"));
    assert_eq!(c.services.compose.services, ["web", "worker", "scheduler"]);
    let p = &c.rollback.procedures;
    assert!(p.pre_rollback_backup);
    assert_eq!(p.service_stop_timeout.get(), Duration::from_secs(30));
    assert_eq!(p.service_start_timeout.get(), Duration::from_secs(60));
    assert_eq!(p.health_check_retries, 5);
    assert_eq!(p.health_check_interval.get(), Duration::from_secs(10));
    assert_eq!(c.monitoring.log_file, PathBuf::from("/app/logs/rollback.log"));
    assert!(c.monitoring.metrics_enabled && c.monitoring.alert_on_failure);
    // A partial section keeps the defaults of its other keys.
    assert_eq!(c.notifications.email.security, SmtpSecurity::Starttls);
}

#[test]
fn legacy_json_unknown_key_is_suggested_against_its_own_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path =
        write(dir.path(), "deployment-x.json", r#"{"database_backup": true, "run_test": true}"#);
    let err = load_file(&path, &[]).unwrap_err().to_string();
    assert_eq!(
        err,
        format!("unknown key `run_test` in {} (did you mean `run_tests`?)", path.display())
    );
    let path =
        write(dir.path(), "rollback.json", r#"{"backup_directory": "/b", "safety_check": {}}"#);
    let err = load_file(&path, &[]).unwrap_err().to_string();
    assert!(
        err.contains("`safety_check`") && err.contains("did you mean `safety_checks`?"),
        "{err}"
    );
    let path = write(
        dir.path(),
        "r2.json",
        r#"{"backup_directory": "/b", "safety_checks": {"test_rolback": true}}"#,
    );
    let err = load_file(&path, &[]).unwrap_err().to_string();
    assert!(
        err.contains("`rollback.safety_checks.test_rolback`") && err.contains("test_rollback"),
        "{err}"
    );
    let path = write(dir.path(), "d2.json", r#"{"health_check_timeout": "never"}"#);
    let err = load_file(&path, &[]).unwrap_err().to_string();
    assert!(
        err.contains("`deploy.health_check_timeout`") && err.contains("`never` is not a duration"),
        "{err}"
    );
}

#[test]
fn native_json_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "c.json",
        r#"{"deploy": {"run_tests": true}, "database": {"url": "postgresql://x/y"}}"#,
    );
    let c = load_file(&path, &[]).unwrap().config;
    assert!(c.deploy.run_tests);
    assert_eq!(c.database.url.expose(), "postgresql://x/y");
}

#[test]
fn secrets_are_redacted_in_debug_and_serialization() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "c.toml",
        "[database]\nurl = \"postgresql://u:s3cr3t-pw@h/db\"\n[notifications.slack]\nwebhook_url = \"https://hooks.example/T0/B0/xyzzy\"\n\
         [notifications.email]\npassword = \"smtp-pass\"\n[notifications.webhook.headers]\nAuthorization = \"Bearer tok-123\"\n",
    );
    let c = load_file(&path, &[("SECRET_KEY", "django-secret")]).unwrap().config;
    let debug = format!("{c:?}");
    let json = serde_json::to_string(&c).unwrap();
    for text in [&debug, &json] {
        for secret in ["s3cr3t-pw", "xyzzy", "smtp-pass", "tok-123", "django-secret"] {
            assert!(!text.contains(secret), "{secret} leaked");
        }
    }
    let secrets = c.secrets();
    assert!(secrets.iter().any(|s| s.expose() == "s3cr3t-pw"));
    let scrubbed = crate::secret::scrub(
        "connect failed: password s3cr3t-pw rejected, token tok-123",
        &secrets,
    );
    assert_eq!(scrubbed, "connect failed: password *** rejected, token ***");
}

#[test]
fn missing_value_names_every_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "c.toml", "");
    let loaded = load_file(&path, &[]).unwrap();
    assert!(loaded.config.database_url().is_none());
    let err = loaded.missing("database.url").to_string();
    assert_eq!(
        err,
        format!(
            "database.url is not set; set it in `database.url` in {}, the environment variable DATABASE_URL, \
             the environment variable RAIL_DATABASE__URL, .env or .env.<environment>",
            path.display()
        )
    );
}

#[test]
fn every_shipped_config_parses() {
    let root = workspace_root();
    let vars = [
        ("DATABASE_URL", "postgresql://rail:pw@127.0.0.1:5432/rail_demo"),
        ("REDIS_URL", "redis://127.0.0.1:6379/0"),
        ("APP_URL", "http://127.0.0.1:8000"),
        ("HEALTH_URL", "http://127.0.0.1:8000/health/"),
        ("RAIL_APP_BIND", "127.0.0.1:8000"),
        ("RAIL_APP_ENV", "/stack/app/shared/app.env"),
        ("RAIL_GUNICORN_PID", "/stack/app/run/gunicorn.pid"),
        ("RAIL_APP_LOG_DIR", "/stack/app/log"),
        ("RAIL_PYTHON", "/venv/bin/python"),
        ("RAIL_GUNICORN", "/venv/bin/gunicorn"),
        ("RAIL_APP_ROOT", "/stack/app"),
        ("RAIL_STACK_DIR", "/stack"),
        ("RAIL_BACKUP_DIR", "/stack/backups"),
        ("RAIL_MAINTENANCE_FILE", "/stack/maintenance/flag.json"),
        ("STATIC_ROOT", "/stack/app/shared/static"),
        ("MEDIA_ROOT", "/stack/app/shared/media"),
    ];
    let mut seen = 0;
    for dir in ["deploy-configs", "deploy-configs/examples"] {
        for entry in fs_err::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if !matches!(path.extension().and_then(|e| e.to_str()), Some("toml" | "json")) {
                continue;
            }
            let loaded =
                load_file(&path, &vars).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            seen += 1;
            if path.file_stem().is_some_and(|s| s == "local") {
                let c = loaded.config;
                assert_eq!(c.environment, "local");
                assert_eq!(c.services.backend, ServiceBackend::Releases);
                assert_eq!(c.app.dir, PathBuf::from("/stack/app/current"));
                assert_eq!(c.health_url().unwrap(), "http://127.0.0.1:8000/health/");
            }
        }
    }
    assert!(seen >= 5, "expected local, staging, production and the two seed examples, saw {seen}");
}

#[test]
fn service_ready_url_and_systemd_version_variable() {
    let dir = tempfile::tempdir().unwrap();
    let defaults = load_file(&write(dir.path(), "empty.toml", ""), &[]).unwrap().config;
    assert_eq!(defaults.services.releases.ready_url, "");
    assert_eq!(defaults.services.systemd.version_variable, "APP_VERSION");
    let path = write(
        dir.path(),
        "services.toml",
        "[services.releases]\nready_url = \"http://127.0.0.1:8000/health/\"\n\
         [services.systemd]\nversion_variable = \"SHOP_VERSION\"\n",
    );
    let c = load_file(&path, &[]).unwrap().config;
    assert_eq!(c.services.releases.ready_url, "http://127.0.0.1:8000/health/");
    assert_eq!(c.services.systemd.version_variable, "SHOP_VERSION");
    // The other keys of the sections keep their defaults.
    assert_eq!(c.services.systemd.program, Path::new("systemctl"));
}

#[test]
fn the_backup_directory_is_kept_apart_from_the_system_and_the_app() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs_err::create_dir_all(root.join("shared/static")).unwrap();
    fs_err::create_dir_all(root.join("app/releases")).unwrap();
    std::os::unix::fs::symlink(root.join("shared/static"), root.join("static-link")).unwrap();
    let with = |backup: &str| {
        let text = format!(
            "[backup]\ndirectory = \"{backup}\"\n[app]\nstatic_dir = \"{r}/shared/static\"\nmedia_dir = \"{r}/shared/media\"\n[services.releases]\nroot = \"{r}/app\"\n",
            r = root.display()
        );
        load_file(&write(root, "c.toml", &text), &[])
    };
    let r = root.display();
    let refused = [
        ("/".to_owned(), "system directory"),
        ("/etc".to_owned(), "system directory"),
        ("/usr/local/backups".to_owned(), "inside /usr"),
        ("/var/../".to_owned(), "system directory"),
        (format!("{r}/shared/static/backups"), "is inside app.static_dir"),
        (format!("{r}/static-link/backups"), "is inside app.static_dir"),
        (format!("{r}/shared/media"), "is app.media_dir"),
        (format!("{r}/shared"), "contains app.static_dir"),
        (format!("{r}/app/releases/backups"), "is inside the releases directory"),
        (format!("{r}/app/releases"), "is the releases directory"),
    ];
    for (backup, why) in refused {
        let error = with(&backup).unwrap_err().to_string();
        assert!(error.contains(why) && error.contains("c.toml"), "{backup}: {error}");
    }
    for ok in
        [format!("{r}/backups"), format!("{r}/shared-backups"), "/var/backups/rail".to_owned()]
    {
        with(&ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
}

/// `docs/rail-config.schema.json` is what the model generates. `RAIL_WRITE_SCHEMA=1` (what
/// `cargo xtask docs` sets) writes it instead of comparing.
#[test]
fn the_config_schema_file_is_current() {
    let path = workspace_root().join(SCHEMA_PATH);
    let generated = json_schema();
    if std::env::var_os("RAIL_WRITE_SCHEMA").is_some() {
        fs_err::write(&path, &generated).unwrap();
        return;
    }
    let on_disk = fs_err::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == generated,
        "{SCHEMA_PATH} is out of date with the configuration model: run `cargo xtask docs` and commit it"
    );
}

/// Follow `$ref` to `$defs`, and the `anyOf`/`oneOf` of an optional value, to an object schema.
fn resolve<'a>(root: &'a Value, mut node: &'a Value) -> &'a Value {
    loop {
        if let Some(reference) = node.get("$ref").and_then(Value::as_str) {
            let name = reference.trim_start_matches("#/$defs/");
            node = &root["$defs"][name];
            continue;
        }
        if let Some(alts) =
            node.get("anyOf").or_else(|| node.get("oneOf")).and_then(Value::as_array)
        {
            if let Some(object) = alts.iter().find(|a| a.get("$ref").is_some()) {
                node = object;
                continue;
            }
        }
        return node;
    }
}

/// Every key of `value` (a TOML tree as JSON) is a property of `schema`, at every depth.
fn keys_in_schema(
    root: &Value,
    schema: &Value,
    value: &Value,
    at: &str,
    unknown: &mut Vec<String>,
) {
    let schema = resolve(root, schema);
    let Value::Object(map) = value else { return };
    for (key, child) in map {
        let path = if at.is_empty() { key.clone() } else { format!("{at}.{key}") };
        match schema.get("properties").and_then(|p| p.get(key)) {
            Some(sub) => keys_in_schema(root, sub, child, &path, unknown),
            None => match schema.get("additionalProperties") {
                Some(Value::Bool(false)) | None => unknown.push(path),
                Some(sub) => keys_in_schema(root, sub, child, &path, unknown),
            },
        }
    }
}

#[test]
fn shipped_configs_name_the_schema_and_use_only_its_keys() {
    let root = workspace_root();
    let schema: Value = serde_json::from_str(&json_schema()).unwrap();
    assert_eq!(
        schema["additionalProperties"],
        Value::Bool(false),
        "unknown top-level keys are errors"
    );
    let mut seen = 0;
    for entry in fs_err::read_dir(root.join("deploy-configs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        seen += 1;
        let text = fs_err::read_to_string(&path).unwrap();
        let first = text.lines().next().unwrap_or_default();
        let reference = first.strip_prefix("#:schema ").unwrap_or_else(|| {
            panic!("{}: the first line must be `#:schema ../{SCHEMA_PATH}`", path.display())
        });
        let target = path.parent().unwrap().join(reference.trim());
        assert_eq!(
            fs_err::canonicalize(&target).unwrap(),
            fs_err::canonicalize(root.join(SCHEMA_PATH)).unwrap(),
            "{}",
            path.display()
        );
        let tree: Value =
            serde_json::to_value(toml::from_str::<toml::Value>(&text).unwrap()).unwrap();
        let mut unknown = Vec::new();
        keys_in_schema(&schema, &schema, &tree, "", &mut unknown);
        assert!(
            unknown.is_empty(),
            "{}: keys missing from the schema: {unknown:?}",
            path.display()
        );
    }
    assert!(seen >= 3, "the shipped configurations were not found");
    // The check itself catches a key the model does not have.
    let mut unknown = Vec::new();
    let bad = serde_json::json!({"deploy": {"strategy_typo": 1}, "backup": {"keep_last": 3}});
    keys_in_schema(&schema, &schema, &bad, "", &mut unknown);
    assert_eq!(unknown, ["deploy.strategy_typo"]);
}

#[test]
fn an_environment_that_names_nothing_is_an_error_listing_where_it_looked() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "staging.toml", "environment = \"staging\"\n");
    let opts = |name: &str| LoadOptions {
        environment: Some(name.into()),
        config_dir: Some(dir.path().to_owned()),
        dotenv_dir: Some(dir.path().to_owned()),
        env: Some(env(&[])),
        ..LoadOptions::default()
    };
    let err = load(&opts("prod")).unwrap_err();
    assert!(matches!(err, ConfigError::UnknownEnvironment { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("--environment prod")
            && text.contains(&dir.path().join("prod.toml").display().to_string())
            && text.contains(".env.prod"),
        "{text}"
    );
    load(&opts("staging")).unwrap();
    // A dotenv file of its own is enough.
    write(dir.path(), ".env.review", "APP_URL=http://review\n");
    let loaded = load(&opts("review")).unwrap();
    assert_eq!(loaded.config.app.url, "http://review");
    // RAIL_ENVIRONMENT alone (containers configured by variables) is not checked.
    let loaded = load(&LoadOptions {
        config_dir: Some(dir.path().to_owned()),
        dotenv_dir: Some(dir.path().to_owned()),
        env: Some(env(&[("RAIL_ENVIRONMENT", "prod"), ("DATABASE_URL", "postgresql://h/db")])),
        ..LoadOptions::default()
    })
    .unwrap();
    assert_eq!(loaded.config.environment, "prod");
    assert!(!loaded.defaults_only());
}

#[test]
fn a_command_that_changes_things_refuses_defaults_alone() {
    let dir = tempfile::tempdir().unwrap();
    let load_with = |pairs: &[(&str, &str)], overrides: Vec<(String, String, Value)>| {
        load(&LoadOptions {
            config_dir: Some(dir.path().to_owned()),
            dotenv_dir: Some(dir.path().to_owned()),
            env: Some(env(pairs)),
            overrides,
            ..LoadOptions::default()
        })
        .unwrap()
    };
    // A backup key alone says nothing about which system to act on.
    let bare = load_with(&[("RAIL_BACKUP_KEY_FILE", "/k")], vec![]);
    assert!(bare.defaults_only());
    let text = bare.require_configured("deploy").unwrap_err().to_string();
    assert!(
        text.starts_with("deploy changes the live system")
            && text.contains("--config FILE")
            && text.contains("production.toml"),
        "{text}"
    );
    assert!(!load_with(&[("DATABASE_URL", "postgresql://h/db")], vec![]).defaults_only());
    let flagged = load_with(
        &[],
        vec![("app.url".into(), "app-url".into(), Value::String("http://x".into()))],
    );
    flagged.require_configured("deploy").unwrap();
}
