//! The run lock against the local stack's PostgreSQL (`cargo xtask stack up`).
//!
//! Each test locks its own made-up database name: the lock lives in the `postgres` maintenance database,
//! so the named database need not exist, and tests never contend with each other.

use std::time::Duration;

use rail_core::db::DbTarget;
use rail_core::journal::{RunId, RunKind};
use rail_core::lock::{self, Holder, LockError, LockOwner, RunLock};
use rail_core::process::Cmd;
use rail_core::secret::Secret;
use tokio::io::{AsyncBufReadExt, BufReader};

/// The stack's `DATABASE_URL` (`cargo xtask stack up`).
fn stack_database_url() -> Secret {
    Secret::new(rail_testkit::Stack::get().database_url())
}

/// A target database name of the stack's server that no other test uses.
fn unique_target(tag: &str) -> DbTarget {
    let name = format!("lock_{tag}_{:08x}", rand::random::<u32>());
    DbTarget::parse(&stack_database_url()).unwrap().with_dbname(&name)
}

fn holder(kind: RunKind) -> Holder {
    Holder::current(&RunId::new(), kind)
}

async fn maintenance_client(target: &DbTarget) -> tokio_postgres::Client {
    target
        .with_dbname(lock::MAINTENANCE_DATABASE)
        .connect(Duration::from_secs(10), "rail-test")
        .await
        .unwrap()
}

fn held_owner(err: LockError) -> LockOwner {
    match err {
        LockError::Held { owner } => *owner,
        other => panic!("expected the lock to be held, got {other:?}"),
    }
}

#[tokio::test]
async fn a_second_run_is_refused_with_the_holder_named() {
    let target = unique_target("refused");
    let first = holder(RunKind::Deploy);
    let lock = RunLock::acquire(&target, &first, None).await.unwrap();
    assert_eq!(lock.holder(), &first);

    let err = RunLock::acquire(&target, &holder(RunKind::Rollback), None).await.unwrap_err();
    let message = err.to_string();
    assert!(
        message.starts_with(&format!(
            "another rail run holds the lock: deploy run {} on {} (pid {}) since ",
            first.run_id,
            first.host,
            std::process::id()
        )),
        "{message}"
    );
    assert_eq!(held_owner(err), LockOwner::Rail(first.clone()));
    assert_eq!(lock::current_holder(&target).await.unwrap(), Some(LockOwner::Rail(first)));

    // Another database of the same server has its own lock.
    let other =
        RunLock::acquire(&unique_target("other"), &holder(RunKind::Deploy), None).await.unwrap();
    other.release().await.unwrap();

    lock.check_alive().await.unwrap();
    lock.release().await.unwrap();
    assert_eq!(lock::current_holder(&target).await.unwrap(), None);
    let second = holder(RunKind::Rollback);
    let lock = RunLock::acquire(&target, &second, None).await.unwrap();
    assert_eq!(lock::current_holder(&target).await.unwrap(), Some(LockOwner::Rail(second)));
    drop(lock);
}

#[tokio::test]
async fn a_waiting_run_gets_the_lock_once_the_holder_drops_it() {
    let target = unique_target("wait");
    let first = RunLock::acquire(&target, &holder(RunKind::Deploy), None).await.unwrap();

    // A short wait runs out while the lock is held.
    let err = RunLock::acquire(&target, &holder(RunKind::Deploy), Some(Duration::from_millis(300)))
        .await
        .unwrap_err();
    assert!(matches!(held_owner(err), LockOwner::Rail(_)));

    let releaser = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        drop(first); // no explicit release: closing the connection frees the lock
    });
    let second = holder(RunKind::Rollback);
    let lock = RunLock::acquire(&target, &second, Some(Duration::from_secs(60))).await.unwrap();
    releaser.await.unwrap();
    assert_eq!(lock::current_holder(&target).await.unwrap(), Some(LockOwner::Rail(second)));
    lock.release().await.unwrap();
}

#[tokio::test]
async fn a_session_that_is_not_rail_is_named_too() {
    let target = unique_target("foreign");
    let client = maintenance_client(&target).await;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&lock::lock_key(target.dbname())])
        .await
        .unwrap();
    let backend: i32 = client.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);

    let err = RunLock::acquire(&target, &holder(RunKind::Deploy), None).await.unwrap_err();
    assert_eq!(
        held_owner(err),
        LockOwner::Other { backend_pid: backend, application_name: "rail-test".into() }
    );
    drop(client);
    RunLock::acquire(&target, &holder(RunKind::Deploy), Some(Duration::from_secs(60)))
        .await
        .unwrap();
}

#[tokio::test]
async fn check_alive_notices_a_lost_connection() {
    let target = unique_target("alive");
    let lock = RunLock::acquire(&target, &holder(RunKind::Deploy), None).await.unwrap();
    lock.check_alive().await.unwrap();

    let admin = maintenance_client(&target).await;
    let terminated: bool = admin
        .query_one(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE $1",
            &[&format!("rail:deploy:{}:%", lock.holder().run_id)],
        )
        .await
        .unwrap()
        .get(0);
    assert!(terminated);
    let err = lock.check_alive().await.unwrap_err();
    assert!(matches!(err, LockError::Lost { .. }), "{err:?}");
}

/// Environment variable that turns the test below into the child process holding the lock.
const CHILD_TARGET: &str = "RAIL_TEST_LOCK_CHILD_TARGET";

#[tokio::test]
async fn killing_the_holder_process_frees_the_lock() {
    if let Ok(name) = std::env::var(CHILD_TARGET) {
        // Child: take the lock, say so, and hold it until killed.
        let target = DbTarget::parse(&stack_database_url()).unwrap().with_dbname(&name);
        let lock = RunLock::acquire(&target, &holder(RunKind::Deploy), None).await.unwrap();
        rail_core::output::stdout_line(&format!("LOCKED {}", lock.holder().run_id)).unwrap();
        tokio::time::sleep(Duration::from_secs(3600)).await;
        return;
    }

    let target = unique_target("killed");
    let mut child = Cmd::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "lock::killing_the_holder_process_frees_the_lock",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_TARGET, target.dbname())
        .timeout(Duration::from_secs(300))
        .spawn()
        .unwrap();
    let child_pid = child.pid().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let child_run_id = loop {
        let line =
            lines.next_line().await.unwrap().expect("the child exited before taking the lock");
        // libtest has already printed "test <name> ... " on this line.
        if let Some((_, run_id)) = line.split_once("LOCKED ") {
            break run_id.trim().to_owned();
        }
    };

    let owner =
        held_owner(RunLock::acquire(&target, &holder(RunKind::Rollback), None).await.unwrap_err());
    let LockOwner::Rail(child_holder) = owner else { panic!("unexpected owner {owner:?}") };
    assert_eq!(child_holder.run_id.as_str(), child_run_id);
    assert_eq!(child_holder.pid, child_pid);

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child_pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let err = child.wait().await.unwrap_err();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&err.status().unwrap()), Some(9));

    let me = holder(RunKind::Rollback);
    let lock = RunLock::acquire(&target, &me, Some(Duration::from_secs(60))).await.unwrap();
    assert_eq!(lock::current_holder(&target).await.unwrap(), Some(LockOwner::Rail(me)));
    lock.release().await.unwrap();
}

/// A holder of this host whose process is gone (killed) keeps the lock only until the server ends its
/// session; the next run waits for that instead of refusing. A live holder is refused at once.
#[tokio::test]
async fn a_run_waits_out_a_dead_holder_of_this_host_but_not_a_live_one() {
    let target = unique_target("dead");
    // A process that existed and is gone: its pid is free.
    let gone = Cmd::new("true").spawn().unwrap();
    let dead_pid = gone.pid().unwrap();
    gone.wait().await.unwrap();
    let mut dead = holder(RunKind::Deploy);
    dead.pid = dead_pid;
    let held = RunLock::acquire(&target, &dead, None).await.unwrap();
    let releaser = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(800)).await;
        drop(held);
    });
    // No --lock-wait, and the lock is held when it asks: it succeeds only by waiting.
    let next = RunLock::acquire(&target, &holder(RunKind::Deploy), None).await.unwrap();
    assert!(releaser.is_finished(), "the lock was taken before the dead holder's session ended");
    releaser.await.unwrap();
    drop(next);

    // The same with a live holder (this test process): refused without waiting.
    let live = RunLock::acquire(&target, &holder(RunKind::Deploy), None).await.unwrap();
    let err = RunLock::acquire(&target, &holder(RunKind::Rollback), None).await.unwrap_err();
    assert!(matches!(held_owner(err), LockOwner::Rail(_)));
    drop(live);
}
