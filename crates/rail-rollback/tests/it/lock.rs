//! Two runs at once: the second is refused and told who holds the lock.

use std::time::Duration;

use crate::support::Env;

#[test]
fn a_second_run_is_refused_with_the_holders_identity() {
    let env = Env::new();
    env.backup("b1");
    env.make_media_slow(48);
    let journals_before = env.journal_files();
    let running = env.spawn(&["backup", "--name", "slow"]);
    // The journal is written once the lock is held.
    assert!(Env::wait_for(
        || env.new_journals(&journals_before).contains('\n'),
        Duration::from_secs(60)
    ));
    let journal = env.new_journals(&journals_before);
    let run_id =
        journal.split("\"run_id\":\"").nth(1).unwrap().split('"').next().unwrap().to_owned();

    let out = env.rollback(&["rollback", "b1", "--yes"]);
    out.assert_code(3);
    assert!(out.stderr.contains("another rail run holds the lock"), "{}", out.describe());
    assert!(out.stderr.contains(&run_id), "{}", out.describe());
    assert!(out.stderr.contains(&format!("pid {}", running.pid())), "{}", out.describe());

    running.wait().assert_success();
    // With the lock free again, the rollback runs.
    env.rollback(&["rollback", "b1", "--yes"]).assert_success();
}
