//! Capturing the running schema over HTTP: a real server on 127.0.0.1 answering introspection, and
//! the demo app going from v1 to v2.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use rail_testkit::{TestApp, TestDb, TestDir, TestRedis};

use crate::{public_schema, run_in};

/// An HTTP server on 127.0.0.1 that answers every request with `status` and `body`, and remembers
/// the request bodies. Its thread ends with the test process.
struct Server {
    url: String,
    reply: Arc<Mutex<(u16, Vec<u8>)>>,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn start(status: u16, body: Vec<u8>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://127.0.0.1:{}/graphql/", listener.local_addr().unwrap().port());
        let reply = Arc::new(Mutex::new((status, body)));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (r, q) = (reply.clone(), requests.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut request = vec![0; length];
                let _ = reader.read_exact(&mut request);
                q.lock().unwrap().push(String::from_utf8_lossy(&request).into_owned());
                let (status, body) = r.lock().unwrap().clone();
                let head = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&body);
            }
        });
        Server { url, reply, requests }
    }

    fn set(&self, status: u16, body: Vec<u8>) {
        *self.reply.lock().unwrap() = (status, body);
    }
}

#[test]
fn create_and_refresh_from_a_running_endpoint() {
    let old = fs_err::read(public_schema("shopify_storefront_2026-01_d46c8864.json")).unwrap();
    let new = fs_err::read(public_schema("shopify_storefront_2026-04_b0caa5c0.json")).unwrap();
    let server = Server::start(200, old);
    let dir = TestDir::new();
    let store = dir.join("store");

    let out =
        run_in(&store, &["create", "--version", "1.0.0", "--from-url", &server.url, "--activate"]);
    out.assert_success();
    let request = server.requests.lock().unwrap()[0].clone();
    assert!(request.contains("__schema") && request.contains("isRepeatable"), "{request}");
    // Stored as SDL, which validates.
    let sdl = fs_err::read_to_string(store.join("schema_v1.0.0.graphql")).unwrap();
    assert!(sdl.contains("type QueryRoot {"), "{sdl:.300}");
    run_in(&store, &["validate"]).assert_success();

    let out = run_in(&store, &["refresh", "--from-url", &server.url]);
    out.assert_success();
    assert_eq!(out.stdout, "The running schema is unchanged since version 1.0.0\n");
    let out = run_in(&store, &["refresh", "--from-url", &server.url, "--format", "json"]);
    out.assert_success();
    assert_eq!(
        out.json(),
        serde_json::json!({"changed": false, "version": "1.0.0", "base": "1.0.0"})
    );

    server.set(200, new);
    // GRAPHQL_URL is the default endpoint.
    let out = crate::schemaver()
        .env("RAIL_SCHEMA_DIR", &store)
        .env("GRAPHQL_URL", &server.url)
        .args(["refresh", "--activate"])
        .run();
    out.assert_success();
    assert!(out.stdout.starts_with("Created schema version 1.0.1 ("), "{}", out.describe());
    let active = run_in(&store, &["list", "--active-only", "--format", "json"]).json();
    assert_eq!(active["version"], "1.0.1");
    assert_eq!(
        active["description"],
        format!(
            "captured from {}: 0 breaking, 1 dangerous, 173 safe change(s) since 1.0.0",
            server.url
        )
    );

    // The CI gate against the running app: 1.0.0 vs what runs now has a dangerous change only.
    let check = |args: &[&str]| {
        crate::schemaver()
            .env("RAIL_SCHEMA_DIR", &store)
            .args(["check", "--from-url", &server.url])
            .args(args)
            .run()
    };
    check(&["--against", "1.0.0"]).assert_success();
    check(&["--against", "1.0.0", "--fail-on", "dangerous"]).assert_code(1);

    // A change refreshed as JSON: the new version, what it was compared with, and the counts.
    server
        .set(200, fs_err::read(public_schema("shopify_storefront_2026-01_d46c8864.json")).unwrap());
    let out = run_in(&store, &["refresh", "--from-url", &server.url, "--format", "json"]);
    out.assert_success();
    let json = out.json();
    assert_eq!((json["changed"].as_bool(), json["version"].as_str()), (Some(true), Some("1.0.2")));
    assert_eq!(json["base"], "1.0.1");
    assert_eq!(json["is_active"], false);
    assert!(json["counts"]["breaking"].as_u64().unwrap() > 0, "{json}");
}

#[test]
fn endpoint_failures_are_clear_errors() {
    let dir = TestDir::new();
    let store = dir.join("store");
    let create = |url: &str| run_in(&store, &["create", "--version", "1.0.0", "--from-url", url]);

    let server = Server::start(500, b"internal error".to_vec());
    let out = create(&server.url);
    out.assert_code(2);
    assert!(out.stderr.contains("answered HTTP 500: internal error"), "{}", out.describe());

    server.set(200, br#"{"errors":[{"message":"introspection is disabled"}]}"#.to_vec());
    let out = create(&server.url);
    out.assert_code(2);
    assert!(
        out.stderr.contains("the server answered with errors: introspection is disabled"),
        "{}",
        out.describe()
    );
    // The full query was rejected, so the basic one was tried too.
    assert_eq!(server.requests.lock().unwrap().len(), 3);

    // Nothing listens on a port just released; the password never shows.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = create(&format!("http://user:hunter2@127.0.0.1:{port}/graphql/"));
    out.assert_code(2);
    assert!(
        out.stderr.contains(&format!("cannot reach http://user:***@127.0.0.1:{port}/graphql/")),
        "{}",
        out.describe()
    );
    assert!(!out.stderr.contains("hunter2"));

    let out = create("ftp://example.invalid/graphql");
    out.assert_code(2);
    assert!(out.stderr.contains("invalid GraphQL URL"), "{}", out.describe());
    assert!(!store.exists());

    let out = run_in(&store, &["create", "--version", "1.0.0"]);
    out.assert_code(2);
    assert!(out.stderr.contains("no schema given"), "{}", out.describe());
}

/// Switch the demo app to another built release and restart it, as a deploy would.
fn switch_release(app: &TestApp, release: &str) {
    app.add_release(release);
    let link = app.root().join("current.next");
    std::os::unix::fs::symlink(std::path::Path::new("releases").join(release), &link).unwrap();
    fs_err::rename(&link, app.root().join("current")).unwrap();
    app.stop();
    app.restart();
}

#[test]
fn the_demo_app_v2_field_shows_as_a_safe_addition() {
    let db = TestDb::new();
    let redis = TestRedis::new();
    let app = TestApp::start("v1", &db, &redis);
    let dir = TestDir::new();
    let store = dir.join("store");
    let url = app.graphql_url();

    run_in(&store, &["create", "--version", "1.0.0", "--from-url", &url, "--activate"])
        .assert_success();
    run_in(&store, &["refresh", "--from-url", &url]).assert_success();

    switch_release(&app, "v2");
    let out = run_in(&store, &["refresh", "--from-url", &url, "--activate"]);
    out.assert_success();
    assert!(out.stdout.starts_with("Created schema version 1.0.1"), "{}", out.describe());

    let out = run_in(&store, &["compare", "--from", "1.0.0", "--to", "1.0.1", "--format", "json"]);
    let changes = out.json()["changes"].as_array().unwrap().clone();
    let stock: Vec<&serde_json::Value> = changes
        .iter()
        .filter(|c| {
            c["type"] == "FIELD_ADDED"
                && c["path"].as_str().is_some_and(|p| p.rsplit('.').next() == Some("stock"))
        })
        .collect();
    assert!(!stock.is_empty(), "no `stock` field added: {changes:#?}");
    assert!(stock.iter().all(|c| c["level"] == "safe"), "{stock:#?}");
    // Adding a field breaks nothing.
    assert_eq!(out.json()["counts"]["breaking"], 0, "{changes:#?}");
    out.assert_success();
}

/// A server that answers every request with a redirect to `location`, and counts the requests.
fn redirector(location: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://127.0.0.1:{}/graphql/", listener.local_addr().unwrap().port());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
            }
            let head = format!(
                "HTTP/1.1 307 Temporary Redirect\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            let _ = stream.write_all(head.as_bytes());
        }
    });
    url
}

#[test]
fn a_capture_url_never_leads_to_another_service() {
    let dir = TestDir::new();
    let store = dir.join("store");
    // The other service would answer a valid schema: following the redirect would "work".
    let schema = fs_err::read(public_schema("shopify_storefront_2026-01_d46c8864.json")).unwrap();
    let other = Server::start(200, schema);
    for status_target in [other.url.clone(), other.url.replace("/graphql/", "/admin/")] {
        let url = redirector(status_target);
        let out = run_in(&store, &["create", "--version", "1.0.0", "--from-url", &url]);
        out.assert_code(2);
        assert!(out.stderr.contains("does not follow redirects"), "{}", out.describe());
        assert!(out.stderr.contains("307"), "{}", out.describe());
    }
    assert!(other.requests.lock().unwrap().is_empty(), "the redirect was followed");
}
