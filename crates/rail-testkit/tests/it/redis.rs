use rail_testkit::{redis_command, Reply, Stack, TestRedis};

#[test]
fn test_redis_dbs_are_isolated_and_flushed() {
    let first = TestRedis::new();
    let second = TestRedis::new();
    assert_ne!(first.index(), second.index());
    assert!((1..=1023).contains(&first.index()));
    assert!(first.url().starts_with("redis://127.0.0.1:"));
    assert!(first.url().ends_with(&format!("/{}", first.index())));

    assert_eq!(first.cmd(&["SET", "rail:maintenance", "on"]), Reply::Status("OK".to_owned()));
    assert_eq!(first.get("rail:maintenance").as_deref(), Some("on"));
    assert_eq!(second.get("rail:maintenance"), None);
    assert_eq!(first.keys(), ["rail:maintenance"]);

    let url = first.url().to_owned();
    drop(first);
    assert_eq!(redis_command(&url, &["DBSIZE"]).unwrap(), Reply::Integer(0));
}

#[test]
fn redis_errors_are_replies() {
    let redis = TestRedis::new();
    redis.cmd(&["SET", "k", "not a number"]);
    match redis.cmd(&["INCR", "k"]) {
        Reply::Error(message) => assert!(message.contains("not an integer"), "{message}"),
        other => panic!("expected an error reply, got {other:?}"),
    }
    assert_eq!(redis.cmd(&["GET", "missing"]), Reply::Bulk(None));
    assert!(
        redis_command(Stack::get().redis_url(), &["PING"]).unwrap()
            == Reply::Status("PONG".to_owned())
    );
}
