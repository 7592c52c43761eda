//! What an operator meets first: a mistyped environment, a command with nothing configured, a dry
//! run against a database that is down, the default console of a deploy and of a failed one, `-V`.

use rail_testkit::{bin, cmd, TestDir};

use crate::support::{all_output, closed_port, World};

/// `-e prod` (no `deploy-configs/prod.toml`, no `.env.prod`) is refused by each binary, naming
/// where it looked; a command that changes things refuses to act on the built-in defaults alone.
#[test]
fn a_mistyped_environment_or_no_configuration_is_refused_naming_where_it_looked() {
    let dir = TestDir::new();
    let binaries = [
        (env!("CARGO_BIN_EXE_deploy").into(), vec!["--dry-run"]),
        (bin("rollback"), vec!["list"]),
        (bin("healthcheck"), vec![]),
        (bin("schemaver"), vec!["list"]),
    ];
    for (program, args) in &binaries {
        let mut c = cmd(program);
        c.current_dir(dir.path()).args(["-e", "prod"]).args(args);
        let out = c.run();
        out.assert_code(2);
        assert!(
            out.stderr.contains("--environment prod")
                && out.stderr.contains("deploy-configs/prod.toml")
                && out.stderr.contains(".env.prod"),
            "{}",
            out.describe()
        );
    }
    // Nothing configured at all: a deploy and a backup refuse; reading (a list) still works.
    let mut deploy = cmd(env!("CARGO_BIN_EXE_deploy"));
    deploy.current_dir(dir.path()).args(["--version", "v2", "--yes"]);
    let out = deploy.run();
    out.assert_code(2);
    assert!(
        out.stderr.contains("deploy changes the live system")
            && out.stderr.contains("--config FILE"),
        "{}",
        out.describe()
    );
    let mut backup = cmd(bin("rollback"));
    backup.current_dir(dir.path()).arg("backup");
    let out = backup.run();
    out.assert_code(2);
    assert!(out.stderr.contains("rollback backup changes the live system"), "{}", out.describe());
    assert!(!dir.path().join("backups").exists(), "a refused backup created its directory");
}

/// With the database down, the dry run exits 1, says which pre-checks failed, shows the lock as
/// unknown (not free), and quotes no traceback.
#[test]
fn a_dry_run_whose_pre_checks_fail_exits_1_and_reports_unknowns() {
    let w = World::new("v1", &["v2"]);
    let down = format!("postgresql://rail@127.0.0.1:{}/nowhere", closed_port());
    let mut text = w.deploy(&["--version", "v2", "--dry-run"]);
    text.env("DATABASE_URL", &down);
    let out = text.run();
    out.assert_code(1);
    let shown = all_output(&out);
    assert!(shown.contains("lock: unknown"), "{}", out.describe());
    assert!(!shown.contains("lock: free"), "{}", out.describe());
    assert!(!shown.contains("Traceback"), "a traceback in the plan:\n{}", out.describe());
    let database =
        out.stdout.lines().find(|l| l.trim_start().starts_with("database ")).unwrap_or_default();
    assert!(database.contains("FAILED"), "{}", out.describe());
    assert!(
        out.stdout.contains("pre-checks failed: the deploy would stop in its pre-checks"),
        "{}",
        out.describe()
    );

    let mut json = w.deploy(&["--version", "v2", "--dry-run", "--format", "json"]);
    json.env("DATABASE_URL", &down);
    let out = json.run();
    out.assert_code(1);
    let plan = out.json();
    assert_eq!(plan["lock"], "unknown", "{plan:#}");
    assert!(plan["lock_holder"].is_null(), "{plan:#}");
    assert!(plan["checks_failed"].as_u64().is_some_and(|n| n >= 1), "{plan:#}");
    let status = |name: &str| {
        plan["checks"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["name"] == name))
            .map(|c| c["status"].as_str().unwrap_or_default().to_owned())
    };
    assert_eq!(status("database").as_deref(), Some("failed"), "{plan:#}");
    assert_eq!(status("restore role").as_deref(), Some("unknown"), "{plan:#}");
    let pending = plan["pending_migrations_error"].as_str().unwrap_or_default();
    assert!(!pending.is_empty() && !pending.contains('\n'), "one line, not a traceback: {pending}");

    // The same dry run against the live database passes every check it can make.
    let out = w.deploy(&["--version", "v2", "--dry-run", "--format", "json"]).run();
    out.assert_success();
    assert_eq!(out.json()["checks_failed"], 0, "{}", out.describe());
}

/// The default console of a deploy: step lines, no log lines; `-v` adds each command's argument
/// vector, `-vv` the variables it was given, secret ones (by name) as `***`, harmless ones as they
/// are. A failed migration's message (its traceback) is printed once.
#[test]
fn the_console_is_quiet_by_default_and_verbose_on_request() {
    let w = World::new("v1", &["v2", "v3-broken"]);
    let out = w.deploy(&["--version", "v2", "--yes"]).run();
    out.assert_success();
    assert!(out.stdout.contains("==> migrate"), "{}", out.describe());
    for noise in [" INFO ", "command=", "ran "] {
        assert!(
            !all_output(&out).contains(noise),
            "`{noise}` in the default console:\n{}",
            out.describe()
        );
    }
    assert!(
        out.stdout.lines().all(|l| l.len() < 300),
        "a line of 300+ characters:\n{}",
        out.stdout
    );
    assert!(
        !out.stdout.contains("Checksums") && !out.stdout.contains("None backend"),
        "{}",
        out.stdout
    );

    let out = w.deploy(&["--version", "v2", "--yes", "-v"]).run();
    out.assert_success();
    let ran: Vec<&str> =
        out.stderr.lines().filter(|l| l.contains("ran") && l.contains("command=")).collect();
    assert!(ran.iter().any(|l| l.contains("manage.py")), "{}", out.describe());
    assert!(
        ran.iter().all(|l| !l.contains("SECRET_KEY") && !l.contains("DEBUG=")),
        "-v names no variable:\n{}",
        ran.join("\n")
    );

    let out = w.deploy(&["--version", "v2", "--yes", "-vv"]).run();
    out.assert_success();
    let ran: Vec<&str> =
        out.stderr.lines().filter(|l| l.contains("command=") && l.contains("manage.py")).collect();
    assert!(
        ran.iter().any(|l| l.contains("SECRET_KEY=***") && l.contains("DEBUG=0")),
        "{}",
        out.describe()
    );
    w.assert_no_secret(&all_output(&out), "-vv output");

    let out = w.deploy(&["--version", "v3-broken", "--yes"]).run();
    out.assert_code(4);
    let everything = all_output(&out);
    let exception = "RuntimeError: migration 0003_review_broken fails on purpose";
    assert_eq!(everything.matches(exception).count(), 1, "the failure once:\n{}", out.describe());
    let failed = out.stdout.lines().find(|l| l.contains("migrate FAILED")).unwrap_or_default();
    assert!(!failed.is_empty() && failed.len() < 300, "{}", out.describe());
}

/// `-V` names the commit the binary was built from and the build date.
#[test]
fn version_names_the_commit_and_build_date() {
    let out = cmd(env!("CARGO_BIN_EXE_deploy")).arg("-V").run();
    out.assert_success();
    let line = out.stdout.trim();
    assert!(line.starts_with(&format!("deploy {} (commit ", env!("CARGO_PKG_VERSION"))), "{line}");
    let date = line.rsplit("built ").next().unwrap_or_default().trim_end_matches(')');
    assert!(chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").is_ok(), "{line}");
    let mut git = cmd("git");
    git.args(["rev-parse", "--short=12", "HEAD"]).current_dir(env!("CARGO_MANIFEST_DIR"));
    let head = git.run();
    if head.success() {
        let head = head.stdout.trim();
        assert!(line.contains(&format!("commit {head}")), "{line} (HEAD is {head})");
    }
}
