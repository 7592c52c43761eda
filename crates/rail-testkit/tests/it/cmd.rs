use std::time::Duration;

use rail_testkit::{cmd, filter, run, TestDir};

#[test]
fn run_clears_the_environment_but_path_home_the_backup_key_and_given_vars() {
    std::env::set_var("RAIL_TESTKIT_LEAK", "leaked");
    let out = cmd("env").env("DATABASE_URL", "postgresql://u:p@127.0.0.1:1/d").run();
    out.assert_success();
    let names: Vec<&str> =
        out.stdout.lines().filter_map(|l| l.split_once('=')).map(|(k, _)| k).collect();
    assert!(names.contains(&"PATH") && names.contains(&"DATABASE_URL"), "{names:?}");
    assert!(!names.contains(&"RAIL_TESTKIT_LEAK"), "{names:?}");
    assert!(
        names.iter().all(|n| {
            ["PATH", "HOME", "LANG", "TMPDIR", "DATABASE_URL", "RAIL_BACKUP_KEY_FILE"].contains(n)
        }),
        "{names:?}"
    );
}

#[test]
fn run_captures_exit_code_streams_stdin_and_directory() {
    let dir = TestDir::new();
    dir.write("sub/input.txt", "from a file\n");
    let mut sh = cmd("sh");
    sh.args(["-c", "cat sub/input.txt; cat; echo oops >&2; exit 3"])
        .current_dir(&dir)
        .stdin("from stdin\n");
    let out = run(&sh);
    out.assert_code(3);
    assert_eq!(out.stdout, "from a file\nfrom stdin\n");
    assert_eq!(out.stderr, "oops\n");
    assert_eq!(
        out.snapshot(),
        "exit code: 3\n----- stdout -----\nfrom a file\nfrom stdin\n----- stderr -----\noops\n"
    );
    assert_eq!(dir.read("sub/input.txt"), "from a file\n");
}

#[test]
fn a_program_past_its_timeout_is_killed() {
    let out = cmd("sleep").arg("30").timeout(Duration::from_millis(200)).run();
    assert!(out.timed_out);
    assert_eq!(out.code, None);
    assert_eq!(out.signal, Some(9));
}

#[test]
fn a_spawned_program_can_be_killed_mid_way() {
    let mut running = cmd("sh").args(["-c", "echo started; exec sleep 30"]).spawn();
    std::thread::sleep(Duration::from_millis(100));
    assert!(!running.finished());
    running.kill();
    let out = running.wait();
    assert_eq!(out.signal, Some(9));
    assert_eq!(out.stdout, "started\n");
}

#[test]
fn temp_paths_are_filtered_in_snapshots() {
    let dir = TestDir::new();
    let out = cmd("echo").arg(dir.join("backups/x.tar.gz")).run();
    assert_eq!(filter(&out.stdout), "[TEMP]/backups/x.tar.gz\n");
}
