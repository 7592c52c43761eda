use rail_testkit::{query, redis_command, Reply, ThrowawayPostgres, ThrowawayRedis};

/// Whether `pid` exists and is not a zombie (init reaps killed servers a little later).
fn running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !matches!(stat.rsplit_once(')').and_then(|(_, s)| s.split_whitespace().next()), Some("Z"))
    })
}

#[test]
fn throwaway_postgres_stops_restarts_and_recovers_after_a_kill() {
    let mut pg = ThrowawayPostgres::start();
    assert!(pg.url().starts_with(&format!("postgresql://postgres:{}@127.0.0.1:", pg.password())));
    assert_eq!(pg.query("SELECT 1"), vec![vec![Some("1".to_owned())]]);
    assert_eq!(pg.query("SHOW server_version_num")[0][0].as_deref().map(|v| &v[..2]), Some("15"));
    pg.query("CREATE TABLE t (n int); INSERT INTO t VALUES (1)");

    pg.stop();
    assert_eq!(pg.pid(), None);
    let err = query(&pg.url(), "SELECT 1").unwrap_err();
    assert!(err.to_string().contains("error connecting"), "{err}");

    pg.restart();
    assert_eq!(pg.query("SELECT n FROM t"), vec![vec![Some("1".to_owned())]]);
    pg.query("INSERT INTO t VALUES (2)");

    let pid = pg.pid().expect("running");
    pg.kill();
    assert!(!running(pid), "postgres {pid} survived SIGKILL");
    assert_eq!(pg.pid(), None);
    assert!(query(&pg.url(), "SELECT 1").is_err());

    // Crash recovery keeps every committed row.
    pg.restart();
    assert_eq!(pg.query("SELECT count(*) FROM t"), vec![vec![Some("2".to_owned())]]);
}

#[test]
fn throwaway_postgres_takes_settings_and_is_removed_on_drop() {
    let pg = ThrowawayPostgres::start_with(&[("max_connections", "7")]);
    assert_eq!(pg.query("SHOW max_connections"), vec![vec![Some("7".to_owned())]]);
    let data = pg.data_dir().to_path_buf();
    let pid = pg.pid().expect("running");
    drop(pg);
    assert!(!data.exists());
    assert!(!running(pid), "postgres {pid} still runs");
}

#[test]
fn throwaway_redis_stops_kills_restarts_and_fills() {
    let mut redis = ThrowawayRedis::start();
    assert_eq!(redis.cmd(&["PING"]), Reply::Status("PONG".to_owned()));
    redis.stop();
    assert!(redis_command(&redis.url(), &["PING"]).is_err());
    redis.restart();
    assert_eq!(redis.cmd(&["PING"]), Reply::Status("PONG".to_owned()));
    redis.kill();
    assert_eq!(redis.pid(), None);
    assert!(redis_command(&redis.url(), &["PING"]).is_err());

    let full =
        ThrowawayRedis::start_with(&["--maxmemory", "2mb", "--maxmemory-policy", "noeviction"]);
    let value = "x".repeat(64 * 1024);
    let mut refused = None;
    for i in 0..200 {
        if let Reply::Error(message) = full.cmd(&["SET", &format!("k{i}"), &value]) {
            refused = Some(message);
            break;
        }
    }
    let message = refused.expect("a 2 MB Redis refuses 12 MB of writes");
    assert!(message.starts_with("OOM"), "{message}");
}
