//! What the tests share: a `healthcheck` command pointed at the stack, a listener that never answers,
//! and a one-request HTTP receiver.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use rail_testkit::{cmd, Cmd, Output, Stack, TestDir, TestRedis};

/// The test's own directory, Redis index and environment for `healthcheck`.
pub(crate) struct Env {
    pub(crate) dir: TestDir,
    pub(crate) redis: TestRedis,
    pub(crate) vars: Vec<(String, String)>,
}

impl Env {
    /// Every check configured against the stack: its database and app, a Redis index of the test's own
    /// (where the maintenance key lives), a flag file and a directory in the test's dir. Thresholds
    /// that depend on how busy the machine is (load, latency) are set out of reach; the tests that
    /// are about them set their own.
    pub(crate) fn stack() -> Env {
        let stack = Stack::get();
        let dir = TestDir::new();
        let redis = TestRedis::new();
        fs_err::create_dir_all(dir.join("data")).unwrap();
        let vars = [
            ("DATABASE_URL", stack.database_url().to_owned()),
            ("REDIS_URL", redis.url().to_owned()),
            ("APP_URL", stack.app_url().to_owned()),
            ("GRAPHQL_URL", stack.graphql_url().to_owned()),
            ("RAIL_MAINTENANCE_FILE", dir.join("flag.json").display().to_string()),
            ("RAIL_HEALTH__FILESYSTEM__PATHS", dir.join("data").display().to_string()),
            ("RAIL_HEALTH__FILESYSTEM__MIN_FREE_SPACE", "1MiB".to_owned()),
            ("RAIL_HEALTH__FILESYSTEM__MIN_FREE_PERCENT", "0".to_owned()),
            ("RAIL_HEALTH__FILESYSTEM__WARNING_FREE_PERCENT", "0".to_owned()),
            ("RAIL_HEALTH__PERFORMANCE__LOAD_WARNING", "1000".to_owned()),
            ("RAIL_HEALTH__PERFORMANCE__LOAD_CRITICAL", "2000".to_owned()),
            ("RAIL_HEALTH__PERFORMANCE__MEMORY_WARNING_PERCENT", "100".to_owned()),
            ("RAIL_HEALTH__PERFORMANCE__MEMORY_CRITICAL_PERCENT", "100".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .chain(["DATABASE", "REDIS", "APPLICATION", "GRAPHQL"].into_iter().flat_map(|c| {
            [
                (format!("RAIL_HEALTH__{c}__WARNING_LATENCY"), "30s".to_owned()),
                (format!("RAIL_HEALTH__{c}__CRITICAL_LATENCY"), "60s".to_owned()),
            ]
        }))
        .collect();
        Env { dir, redis, vars }
    }

    /// Set (or replace) a variable.
    pub(crate) fn set(&mut self, key: &str, value: impl Into<String>) -> &mut Self {
        self.vars.retain(|(k, _)| k != key);
        self.vars.push((key.to_owned(), value.into()));
        self
    }

    /// Remove a variable.
    pub(crate) fn unset(&mut self, key: &str) -> &mut Self {
        self.vars.retain(|(k, _)| k != key);
        self
    }

    /// `healthcheck ARGS` in the test's dir with this environment.
    pub(crate) fn cmd(&self, args: &[&str]) -> Cmd {
        let mut c = cmd(env!("CARGO_BIN_EXE_healthcheck"));
        c.current_dir(self.dir.path()).args(args).envs(self.vars.iter().map(|(k, v)| (k, v)));
        c.timeout(Duration::from_secs(60));
        c
    }

    pub(crate) fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).run()
    }
}

/// The check called `name` in a JSON report.
#[track_caller]
pub(crate) fn check<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["checks"]
        .as_array()
        .and_then(|checks| checks.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no check {name} in {report:#}"))
}

/// `name`'s status in a JSON report.
#[track_caller]
pub(crate) fn status<'a>(report: &'a serde_json::Value, name: &str) -> &'a str {
    check(report, name)["status"].as_str().unwrap()
}

/// A TCP listener on 127.0.0.1 that accepts connections and never answers: a hung dependency.
pub(crate) struct HungListener {
    pub(crate) port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HungListener {
    pub(crate) fn start() -> HungListener {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut held: Vec<TcpStream> = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => held.push(stream),
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        HungListener { port, stop, thread: Some(thread) }
    }
}

impl Drop for HungListener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One HTTP request as a receiver saw it.
#[derive(Debug)]
pub(crate) struct Received {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

/// A real HTTP server on 127.0.0.1 that answers every request with `status` and hands the requests to
/// the test.
pub(crate) struct Receiver {
    pub(crate) port: u16,
    requests: mpsc::Receiver<Received>,
}

impl Receiver {
    pub(crate) fn start(status: u16) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let Some(request) = read_request(&mut stream) else { continue };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} Whatever\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                if tx.send(request).is_err() {
                    break;
                }
            }
        });
        Receiver { port, requests: rx }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The next request, waiting up to 10 s.
    pub(crate) fn next(&self) -> Received {
        self.requests.recv_timeout(Duration::from_secs(10)).expect("the receiver got no request")
    }
}

fn read_request(stream: &mut TcpStream) -> Option<Received> {
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_owned();
    let path = first.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Received { method, path, headers, body: String::from_utf8_lossy(&body).into_owned() })
}

/// A maintenance document as rail writes it, begun `age` ago.
pub(crate) fn maintenance_doc(age: Duration, run_id: &str) -> String {
    let now = chrono::Utc::now();
    serde_json::json!({
        "since": (now - chrono::Duration::from_std(age).unwrap()).to_rfc3339(),
        "run_id": run_id,
        "reason": "deploy v2",
        "expires_at": (now + chrono::Duration::minutes(30)).to_rfc3339(),
        "bypass_token": "bypass-token-never-printed",
    })
    .to_string()
}
