use rail_testkit::{http_get, http_post_json, TestApp, TestDb, TestRedis};

#[test]
fn a_test_app_serves_health_graphql_and_maintenance() {
    let db = TestDb::new();
    let redis = TestRedis::new();
    let app = TestApp::start("v1", &db, &redis);

    let health = http_get(&app.health_url()).unwrap();
    assert_eq!(health.status, 200, "{}", health.body);
    assert!(health.header("content-type").unwrap().starts_with("application/json"));
    let body = health.json();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["release"], "v1");

    let introspection =
        serde_json::json!({"query": "{ __schema { queryType { name } types { name } } }"});
    let schema = http_post_json(&app.graphql_url(), &introspection).unwrap();
    assert_eq!(schema.status, 200, "{}", schema.body);
    let schema = schema.json();
    assert!(
        schema["data"]["__schema"]["types"].as_array().is_some_and(|types| !types.is_empty()),
        "{schema}"
    );

    // /health/ reports maintenance but never answers 503 for it; other pages do.
    assert_eq!(http_get(&app.url()).unwrap().status, 200);
    std::fs::write(app.maintenance_file(), "{}").unwrap();
    let down = http_get(&app.url()).unwrap();
    assert_eq!(down.status, 503, "{}", down.body);
    assert!(down.header("retry-after").is_some(), "{:?}", down.headers);
    std::fs::remove_file(app.maintenance_file()).unwrap();
    assert_eq!(http_get(&app.url()).unwrap().status, 200);
}

#[test]
fn a_test_app_exposes_its_layout_and_stops_on_drop() {
    let db = TestDb::new();
    let redis = TestRedis::new();
    let app = TestApp::start("v1", &db, &redis);
    let vars = app.env_vars();
    let var = |key: &str| vars.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()).unwrap();
    assert_eq!(var("DATABASE_URL"), db.url());
    assert_eq!(var("REDIS_URL"), redis.url());
    assert_eq!(var("APP_URL"), app.url());
    assert_eq!(var("RAIL_APP_ROOT"), app.root().display().to_string());
    assert_eq!(
        std::fs::read_link(app.root().join("current")).unwrap(),
        std::path::Path::new("releases/v1")
    );
    let app_env = std::fs::read_to_string(app.root().join("shared/app.env")).unwrap();
    assert!(app_env.contains(&format!("DATABASE_URL={}\n", db.url())));

    let v2 = app.add_release("v2");
    assert_eq!(std::fs::read_to_string(v2.join("RELEASE")).unwrap().trim(), "v2");

    let pid = app.pid().expect("gunicorn runs");
    let root = app.root().to_path_buf();
    drop(app);
    assert!(!root.exists());
    let alive = std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|c| c.contains("gunicorn"));
    assert!(!alive, "gunicorn {pid} still runs");
}
