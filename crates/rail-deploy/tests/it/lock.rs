//! Two deploys at once: the second is refused and told who holds the lock; a third that may wait
//! gets the lock once the first is done.

use std::time::Duration;

use crate::support::{all_output, wait_for, World};

#[test]
fn a_second_deploy_is_refused_and_a_waiting_one_runs_after_the_first() {
    let w = World::new("v1", &["v2"]);
    // Slowed by its test command, so it surely holds the lock while the others start.
    let mut first = w
        .deploy(&["--version", "v2", "--yes"])
        .env("RAIL_DEPLOY__RUN_TESTS", "true")
        .env("RAIL_DEPLOY__TEST_COMMAND", "sleep,8")
        .spawn();
    // The lock is taken before the journal is written: a journal whose pre-checks began means the
    // first deploy holds the lock.
    wait_for("the first deploy's pre-checks", Duration::from_secs(120), || {
        w.run_ids().first().is_some_and(|id| !w.journal(id).begun().is_empty())
    });
    let holder_run_id = w.only_run_id();
    let holder_pid = first.pid();

    let second = w.deploy(&["--version", "v2", "--yes"]).run();
    assert_eq!(second.code, Some(3), "the second deploy is refused\n{}", second.describe());
    let text = all_output(&second);
    assert!(text.contains(&holder_run_id), "names the holder's run id {holder_run_id}\n{text}");
    let host = rail_core::journal::host_name();
    assert!(text.contains(&host), "names the holder's host {host}\n{text}");
    assert!(text.contains(&holder_pid.to_string()), "names the holder's pid {holder_pid}\n{text}");
    assert_eq!(w.run_ids().len(), 1, "the refused deploy started no run");

    let third = w.deploy(&["--version", "v2", "--yes", "--lock-wait", "300s"]).spawn();
    let first_running = !first.finished();
    let first_out = first.wait();
    first_out.assert_success();
    let third_out = third.wait();
    third_out.assert_success();
    assert!(first_running, "the first deploy still ran when the third started");

    let ids = w.run_ids();
    assert_eq!(ids.len(), 2, "the first and the third ran: {ids:?}");
    let third_id = ids.iter().find(|id| **id != holder_run_id).expect("the third's run id");
    let first_done = w.journal(&holder_run_id).ts("finish", None).expect("the first finished");
    let third_start = w.journal(third_id).ts("start", None).expect("the third started");
    assert!(
        third_start >= first_done,
        "the third run started ({third_start}) only after the first finished ({first_done})"
    );
    assert_eq!(w.served_release().as_deref(), Some("v2"));
}

#[test]
fn maintenance_by_hand_is_refused_while_a_deploy_runs() {
    let w = World::new("v1", &["v2"]);
    let mut first = w
        .deploy(&["--version", "v2", "--yes"])
        .env("RAIL_DEPLOY__RUN_TESTS", "true")
        .env("RAIL_DEPLOY__TEST_COMMAND", "sleep,8")
        .spawn();
    wait_for("the first deploy's pre-checks", Duration::from_secs(120), || {
        w.run_ids().first().is_some_and(|id| !w.journal(id).begun().is_empty())
    });
    let run_id = w.only_run_id();
    for action in ["off", "on"] {
        let out = w.deploy(&["maintenance", action]).run();
        assert_eq!(out.code, Some(3), "maintenance {action} is refused\n{}", out.describe());
        let text = all_output(&out);
        assert!(text.contains(&run_id) && text.contains("--force"), "{text}");
    }
    assert!(!first.finished(), "the deploy still runs");
    let forced = w.deploy(&["maintenance", "off", "--force"]).run();
    forced.assert_success();
    assert!(
        forced.stderr.contains("WARNING") && forced.stderr.contains(&run_id),
        "{}",
        forced.describe()
    );
    first.wait().assert_success();
    // With no run, maintenance is the operator's again.
    w.deploy(&["maintenance", "on"]).run().assert_success();
    w.deploy(&["maintenance", "off"]).run().assert_success();
}
