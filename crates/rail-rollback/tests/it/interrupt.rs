//! Runs killed with SIGKILL leave nothing half-done behind: no set offered for restore, a live database
//! that is the old one or the restored one, and a report of the interrupted run next time.

use std::time::Duration;

use crate::support::Env;

#[test]
fn a_killed_backup_leaves_no_restorable_set() {
    let env = Env::new();
    env.backup("good");
    env.make_media_slow(48);
    let mut running = env.spawn(&["backup", "--name", "killed"]);
    let partial = env.backups().join(".partial-killed");
    // Killed as soon as the media archive is being written (zstd takes 48 MB in about 0.1 s).
    let writing_media = || {
        fs_err::read_dir(&partial).is_ok_and(|d| {
            d.flatten().any(|e| e.file_name().to_string_lossy().starts_with("media"))
        })
    };
    assert!(
        Env::wait_for(writing_media, Duration::from_secs(60)),
        "the partial set never appeared"
    );
    running.kill();
    let out = running.wait();
    assert_eq!(out.signal, Some(9), "{}", out.describe());

    // Listed as incomplete, never offered: verify and rollback refuse it, --previous picks the good one.
    let list = env.rollback(&["list", "--format", "json"]);
    list.assert_success();
    let sets = list.json();
    let killed = sets
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "killed")
        .expect("the killed set is listed");
    assert_eq!(killed["status"], "incomplete", "{}", list.stdout);
    let out = env.rollback(&["rollback", "killed", "--yes"]);
    out.assert_code(3);
    assert!(out.stderr.contains("incomplete"), "{}", out.describe());
    // That run reported the interrupted backup.
    assert!(out.stderr.contains("did not finish"), "{}", out.describe());
    assert!(out.stderr.contains("backup"), "{}", out.describe());

    let out = env.rollback(&["rollback", "--previous", "--yes"]);
    out.assert_success();
    assert!(out.stdout.contains("restored `good`"), "{}", out.describe());

    // prune would remove the leftover; a run taking the same set again replaces it.
    let out = env.rollback(&["prune", "--dry-run", "--format", "json"]);
    out.assert_success();
    let items = out.json()["items"].clone();
    assert!(
        items
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["name"] == "killed" && i["kind"] == "incomplete"),
        "{}",
        out.stdout
    );
    env.backup("killed");
    assert!(!partial.exists());
    let list = env.rollback(&["list", "--format", "json"]).json();
    let killed = list.as_array().unwrap().iter().find(|s| s["name"] == "killed").unwrap().clone();
    assert_eq!(killed["status"], "complete");
}

#[test]
fn a_killed_rollback_leaves_the_old_or_the_restored_database() {
    let env = Env::new();
    env.make_media_slow(32);
    env.backup("b1");
    let restored = env.db_state();
    // Kill points: while preparing (restoring beside the live database), right after the database
    // switch, and after the directories were switched.
    let points = [
        "\"step\":\"prepare\",\"attempt\"",
        "\"step\":\"switch-database\",\"outcome\"",
        "\"step\":\"switch-media\",\"outcome\"",
    ];
    for point in points {
        env.mutate_again();
        let old = env.db_state();
        let journals_before = env.journal_files();
        let mut running = env.spawn(&["rollback", "b1", "--yes"]);
        let reached = Env::wait_for(
            || env.new_journals(&journals_before).contains(point),
            Duration::from_secs(120),
        );
        running.kill();
        let out = running.wait();
        assert!(reached, "{point}: the run never reached the kill point\n{}", out.describe());

        let now = env.db_state();
        assert!(
            now == old || now == restored,
            "{point}: the live database is neither the old nor the restored one"
        );

        // The next run reports the interrupted one and finishes it.
        let out = env.rollback(&["rollback", "--previous", "--yes"]);
        out.assert_success();
        assert!(out.stderr.contains("did not finish"), "{point}: {}", out.describe());
        assert!(
            out.stderr.contains("finishing the interrupted rollback"),
            "{point}: {}",
            out.describe()
        );
        assert_eq!(env.db_state(), restored, "{point}: after --previous");
        let leftovers: Vec<_> =
            env.leftover_databases().into_iter().filter(|n| !n.contains("__rail_pre_")).collect();
        assert!(leftovers.is_empty(), "{point}: {leftovers:?}");
    }
}

impl Env {
    /// A change to the database that a rollback undoes, different each call.
    fn mutate_again(&self) {
        self.db.execute("INSERT INTO events (kind) VALUES ('again'); UPDATE reporting.daily SET total = total + 1;");
    }
}

#[test]
fn sigterm_stops_a_backup_and_leaves_nothing() {
    let env = Env::new();
    env.make_media_slow(48);
    let mut running = env.spawn(&["backup", "--name", "stopped"]);
    let partial = env.backups().join(".partial-stopped");
    assert!(
        Env::wait_for(|| partial.exists(), Duration::from_secs(60)),
        "the partial set never appeared"
    );
    running.signal(nix::sys::signal::Signal::SIGTERM);
    let out = running.wait();
    out.assert_code(1);
    assert!(out.stderr.contains("interrupted by SIGTERM"), "{}", out.describe());
    assert!(!partial.exists(), "the partial set is removed");
    assert!(!env.set_dir("stopped").exists());
}

#[test]
fn an_unreachable_database_is_a_clear_failure_without_secrets() {
    let env = Env::new();
    let config = fs_err::read_to_string(&env.config).unwrap();
    let port = url::Url::parse(env.db.url()).unwrap().port().unwrap();
    // A port nothing listens on (the stack's own port plus one is free or refuses, never the database).
    fs_err::write(&env.config, config.replace(&format!(":{port}/"), ":1/")).unwrap();
    for args in [&["backup"][..], &["rollback", "--previous", "--yes"]] {
        let out = env.rollback(args);
        out.assert_code(1);
        assert!(out.stderr.contains("cannot connect"), "{args:?}: {}", out.describe());
        assert!(!out.stderr.contains(env.db.password()) && !out.stdout.contains(env.db.password()));
    }
    // Listing needs no database.
    env.rollback(&["list"]).assert_success();
}

/// A small file system of its own (a tmpfs, mounted by this test when it runs as root, which CI does),
/// unmounted when dropped.
struct TinyFs(std::path::PathBuf);

impl TinyFs {
    fn mount(dir: &std::path::Path, size: &str) -> Result<TinyFs, String> {
        fs_err::create_dir_all(dir).unwrap();
        let out = rail_testkit::cmd("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .run();
        if out.code == Some(0) {
            Ok(TinyFs(dir.to_owned()))
        } else {
            Err(out.stderr)
        }
    }
}

impl Drop for TinyFs {
    fn drop(&mut self) {
        let _ = rail_testkit::cmd("umount").arg(&self.0).run();
    }
}

#[test]
// Says why it did not run where it cannot mount (not root): the one thing worth printing.
#[allow(clippy::print_stderr)]
fn a_disk_that_fills_while_a_backup_writes_is_a_clear_failure_that_leaves_nothing() {
    let env = Env::new();
    let mount = env.dir.join("tiny");
    let tiny = match TinyFs::mount(&mount, "5m") {
        Ok(tiny) => tiny,
        Err(why) => {
            // Only root may mount; CI runs as root, so the test runs there.
            eprintln!("not run: cannot mount a tmpfs here: {why}");
            return;
        }
    };
    let backups = tiny.0.join("backups");
    let dir = backups.to_str().unwrap().to_owned();
    // The disk fills at a different moment of each try: before the set, during the dump, the archives.
    for (i, delay_ms) in [0u64, 40, 80, 120, 160, 200, 240, 280].into_iter().enumerate() {
        let name = format!("full{i}");
        let mut run = env.command_with(
            &["backup", "--name", &name],
            &[("RAIL_BACKUP_DIR", &dir), ("RAIL_BACKUP__MIN_FREE_SPACE", "0")],
        );
        run.timeout(Duration::from_secs(60));
        let running = run.spawn();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let ballast = tiny.0.join("ballast");
        let _ = rail_testkit::cmd("dd")
            .args(["if=/dev/zero", "bs=4k"])
            .arg(format!("of={}", ballast.display()))
            .run();
        let out = running.wait();
        assert!(!out.timed_out, "try {i}: the backup hung on a full disk\n{}", out.describe());
        if out.code != Some(0) {
            out.assert_code(1);
            assert!(
                out.stderr.contains("No space left") || out.stderr.contains("not enough space"),
                "try {i}: {}",
                out.describe()
            );
            assert!(
                !backups.join(format!(".partial-{name}")).exists(),
                "try {i}: the partial set is removed"
            );
        }
        fs_err::remove_file(&ballast).unwrap();
        // The lock was released: the next run takes it at once.
        env.rollback_with(&["list"], &[("RAIL_BACKUP_DIR", &dir)]).assert_success();
    }
}
