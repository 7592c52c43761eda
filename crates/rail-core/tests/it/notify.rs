//! `rail_core::notify` against real receivers on 127.0.0.1: a small HTTP server written here, and an SMTP
//! server (Python's aiosmtpd, installed into a cached virtualenv on first use).

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rail_core::config::{HumanDuration, NotificationsConfig, SmtpSecurity};
use rail_core::notify::{send_all, Channel, Event, Notification};
use rail_core::process::{Cmd, Running};
use rail_core::secret::Secret;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// The secret part of every webhook URL used here: it must never show up anywhere.
const HOOK_SECRET: &str = "T0001/B0002/s3cr3tHookToken";
const AIOSMTPD_VERSION: &str = "1.4.6";

/// How the test HTTP server answers.
#[derive(Clone, Copy)]
enum Behaviour {
    /// 200 to everything.
    Ok,
    /// 500 to the first `n` requests (with a body that echoes the request path, as a careless server
    /// might), then 200.
    FailFirst(usize),
    /// Read the request, then never answer.
    Hang,
}

#[derive(Debug, Clone)]
struct Request {
    path: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

/// A real HTTP/1.1 server on 127.0.0.1 that records every request it receives.
struct Receiver {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start(behaviour: Behaviour) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&requests);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let recorded = Arc::clone(&recorded);
                tokio::spawn(async move {
                    let _ = serve(stream, behaviour, recorded).await;
                });
            }
        });
        Self { addr, requests, task }
    }

    /// The webhook URL of this server, with the secret path.
    fn url(&self) -> Secret {
        Secret::new(format!("http://{}/services/{HOOK_SECRET}", self.addr))
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    stream: TcpStream,
    behaviour: Behaviour,
    recorded: Arc<Mutex<Vec<Request>>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).await?;
    let path = line.split_whitespace().nth(1).unwrap_or_default().to_owned();
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).await?;
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        if let Some((k, v)) = trimmed.split_once(':') {
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let length = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await?;
    let seen = {
        let mut all = recorded.lock().unwrap();
        all.push(Request {
            path: path.clone(),
            headers,
            body: String::from_utf8_lossy(&body).into(),
        });
        all.len()
    };
    let (status, text) = match behaviour {
        Behaviour::FailFirst(n) if seen <= n => {
            ("500 Internal Server Error", format!("no handler for {path}"))
        }
        Behaviour::Ok | Behaviour::FailFirst(_) => ("200 OK", "ok".to_owned()),
        Behaviour::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return Ok(());
        }
    };
    let mut stream = reader.into_inner();
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// A port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn config() -> NotificationsConfig {
    NotificationsConfig {
        timeout: HumanDuration::from_secs(5),
        retries: 2,
        ..NotificationsConfig::default()
    }
}

fn sample(event: Event) -> Notification {
    Notification::new(event, "20240115T143022Z-ab12", "staging")
        .message("deployed v2 in 41s")
        .duration(Duration::from_secs(41))
        .backup("backup_20240115_143022")
        .app_versions(Some("v1".into()), Some("v2".into()))
        .schema_version("1.1.0")
}

/// Log lines written while `future` runs on this (current-thread) runtime.
async fn capture_logs<F: std::future::Future>(future: F) -> (F::Output, String) {
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buffer {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);
    let output = future.await;
    drop(guard);
    let text = String::from_utf8_lossy(&buffer.0.lock().unwrap()).into_owned();
    (output, text)
}

#[tokio::test]
async fn slack_and_webhook_receive_their_payloads() {
    let slack = Receiver::start(Behaviour::Ok).await;
    let hook = Receiver::start(Behaviour::Ok).await;
    let mut cfg = config();
    cfg.slack.enabled = true;
    cfg.slack.webhook_url = slack.url();
    cfg.slack.channel = "#deployments".into();
    cfg.slack.username = "deploy-bot".into();
    cfg.webhook.enabled = true;
    cfg.webhook.url = hook.url();
    cfg.webhook.headers.insert("Authorization".into(), Secret::new("Bearer tok-5551234"));

    let (deliveries, logs) = capture_logs(send_all(&cfg, &sample(Event::DeploySucceeded))).await;

    assert_eq!(deliveries.len(), 2);
    for delivery in &deliveries {
        assert!(delivery.ok, "{delivery:?}");
        assert_eq!(delivery.attempts, 1);
    }
    let slack_requests = slack.requests();
    assert_eq!(slack_requests.len(), 1);
    let request = &slack_requests[0];
    assert_eq!(request.path, format!("/services/{HOOK_SECRET}"));
    assert_eq!(request.header("content-type"), Some("application/json"));
    let payload = request.json();
    assert_eq!(payload["channel"], "#deployments");
    assert_eq!(payload["username"], "deploy-bot");
    let attachment = &payload["attachments"][0];
    assert_eq!(attachment["color"], "good");
    assert_eq!(attachment["title"], "Deploy succeeded (staging)");
    assert_eq!(attachment["text"], "deployed v2 in 41s");
    let fields = attachment["fields"].as_array().unwrap();
    assert!(fields.iter().any(|f| f["title"] == "Run" && f["value"] == "20240115T143022Z-ab12"));
    assert!(fields.iter().any(|f| f["title"] == "App version" && f["value"] == "v1 → v2"));

    let hook_requests = hook.requests();
    assert_eq!(hook_requests.len(), 1);
    assert_eq!(hook_requests[0].header("authorization"), Some("Bearer tok-5551234"));
    let payload = hook_requests[0].json();
    assert_eq!(payload["event"], "deploy_succeeded");
    assert_eq!(payload["run_id"], "20240115T143022Z-ab12");
    assert_eq!(payload["environment"], "staging");
    assert_eq!(payload["outcome"], "succeeded");
    assert_eq!(payload["duration_ms"], 41_000);
    assert_eq!(payload["backup"], "backup_20240115_143022");
    assert_eq!(payload["app_version_to"], "v2");
    assert_eq!(payload["schema_version"], "1.1.0");

    // Logs name the host, never the URL's secret path or the token.
    assert!(logs.contains("notification sent"), "{logs}");
    assert!(logs.contains(&slack.addr.to_string()), "{logs}");
    for secret in [HOOK_SECRET, "s3cr3tHookToken", "tok-5551234"] {
        assert!(!logs.contains(secret), "{logs}");
        for request in slack_requests.iter().chain(&hook_requests) {
            assert!(!request.body.contains(secret));
        }
    }
}

#[tokio::test]
async fn server_errors_are_retried_until_success() {
    let hook = Receiver::start(Behaviour::FailFirst(2)).await;
    let mut cfg = config();
    cfg.webhook.enabled = true;
    cfg.webhook.url = hook.url();
    let deliveries = send_all(&cfg, &sample(Event::RolledBack)).await;
    assert_eq!(deliveries.len(), 1);
    assert!(deliveries[0].ok, "{:?}", deliveries[0]);
    assert_eq!(deliveries[0].attempts, 3);
    let requests = hook.requests();
    assert_eq!(requests.len(), 3);
    // Every attempt sends the same document.
    assert!(requests.iter().all(|r| r.body == requests[0].body));
    assert_eq!(requests[0].json()["event"], "rolled_back");
}

#[tokio::test]
async fn retries_are_bounded_and_the_error_is_scrubbed() {
    let hook = Receiver::start(Behaviour::FailFirst(usize::MAX)).await;
    let mut cfg = config();
    cfg.retries = 1;
    cfg.slack.enabled = true;
    cfg.slack.webhook_url = hook.url();
    let deliveries = send_all(&cfg, &sample(Event::DeployFailed)).await;
    assert_eq!(deliveries.len(), 1);
    let delivery = &deliveries[0];
    assert!(!delivery.ok);
    assert_eq!(delivery.attempts, 2);
    assert_eq!(hook.requests().len(), 2);
    let error = delivery.error.as_deref().unwrap();
    // The server echoed the secret path; the report does not.
    assert!(error.starts_with("HTTP 500 Internal Server Error: no handler for ***"), "{error}");
    assert!(!error.contains("s3cr3t"), "{error}");
}

#[tokio::test]
async fn a_hanging_receiver_is_cut_off_by_the_timeout() {
    let hook = Receiver::start(Behaviour::Hang).await;
    let mut cfg = config();
    cfg.timeout = HumanDuration::from_millis(300);
    cfg.retries = 1;
    cfg.webhook.enabled = true;
    cfg.webhook.url = hook.url();
    let deliveries = send_all(&cfg, &sample(Event::HealthAlert)).await;
    assert_eq!(deliveries.len(), 1);
    assert!(!deliveries[0].ok);
    assert_eq!(deliveries[0].attempts, 2);
    let error = deliveries[0].error.as_deref().unwrap();
    assert!(error.contains("timed out") || error.contains("no answer within"), "{error}");
    assert_eq!(hook.requests().len(), 2);
}

#[tokio::test]
async fn receivers_down_give_failures_not_errors() {
    let mut cfg = config();
    cfg.retries = 1;
    cfg.slack.enabled = true;
    cfg.slack.webhook_url =
        Secret::new(format!("http://127.0.0.1:{}/services/{HOOK_SECRET}", closed_port()));
    cfg.webhook.enabled = true;
    cfg.webhook.url = Secret::new(format!("http://127.0.0.1:{}/hook", closed_port()));
    cfg.email.enabled = true;
    cfg.email.smtp_server = "127.0.0.1".into();
    cfg.email.smtp_port = closed_port();
    cfg.email.security = SmtpSecurity::None;
    cfg.email.from_email = "rail@example.test".into();
    cfg.email.to_emails = vec!["ops@example.test".into()];

    let deliveries = send_all(&cfg, &sample(Event::RollbackFailed)).await;
    let channels: Vec<Channel> = deliveries.iter().map(|d| d.channel).collect();
    assert_eq!(channels, [Channel::Slack, Channel::Webhook, Channel::Email]);
    for delivery in &deliveries {
        assert!(!delivery.ok, "{delivery:?}");
        assert_eq!(delivery.attempts, 2, "{delivery:?}");
        let error = delivery.error.as_deref().unwrap();
        assert!(!error.is_empty() && !error.contains("s3cr3t"), "{error}");
    }
}

// ---- SMTP ----

/// The Python SMTP server: saves each message it accepts as `<dir>/<n>.eml`, with the envelope in a
/// header, and requires AUTH when a user and password are given.
const SMTP_SERVER_PY: &str = r#"
import sys, threading, pathlib, itertools
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

out, port = pathlib.Path(sys.argv[1]), int(sys.argv[2])
user = sys.argv[3].encode() if len(sys.argv) > 3 else None
password = sys.argv[4].encode() if len(sys.argv) > 4 else None
counter = itertools.count(1)

class Handler:
    async def handle_DATA(self, server, session, envelope):
        n = next(counter)
        tmp = out / f"{n}.tmp"
        envelope_line = f"X-Envelope: from={envelope.mail_from} to={','.join(envelope.rcpt_tos)}\r\n"
        tmp.write_bytes(envelope_line.encode() + envelope.content)
        tmp.rename(out / f"{n}.eml")
        return "250 Message accepted for delivery"

def authenticator(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and auth_data.login == user and auth_data.password == password
    # handled=False: let the server answer 535 itself.
    return AuthResult(success=ok, handled=False)

options = {}
if user:
    options = dict(authenticator=authenticator, auth_required=True, auth_require_tls=False)
controller = Controller(Handler(), hostname="127.0.0.1", port=port, **options)
controller.start()
print("ready", flush=True)
threading.Event().wait()
"#;

/// The virtualenv with aiosmtpd, created once per machine under the user's cache directory. It is built
/// in a temporary directory and renamed into place, so concurrent test runs never see half of one.
async fn smtp_python() -> PathBuf {
    static ONCE: tokio::sync::OnceCell<PathBuf> = tokio::sync::OnceCell::const_new();
    ONCE.get_or_init(|| async {
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .expect("HOME or XDG_CACHE_HOME must be set");
        let root = cache.join("rail");
        let venv = root.join(format!("smtp-venv-aiosmtpd-{AIOSMTPD_VERSION}"));
        let python = venv.join("bin").join("python");
        if python.exists() {
            return python;
        }
        fs_err::create_dir_all(&root).unwrap();
        let staging = tempfile::Builder::new().prefix(".smtp-venv-").tempdir_in(&root).unwrap();
        let staged = staging.path().join("venv");
        Cmd::new("python3")
            .args(["-m", "venv"])
            .arg(&staged)
            .timeout(Duration::from_secs(120))
            .run()
            .await
            .expect("python3 -m venv (python3 with the venv module is needed for the SMTP tests)");
        Cmd::new(staged.join("bin").join("python"))
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
            .arg(format!("aiosmtpd=={AIOSMTPD_VERSION}"))
            .timeout(Duration::from_secs(300))
            .run()
            .await
            .expect("pip install aiosmtpd");
        // Another test run may have won the race; its venv is as good as ours.
        let moved = fs_err::rename(&staged, &venv).is_ok();
        assert!(
            moved || python.exists(),
            "could not move the SMTP virtualenv into {}",
            venv.display()
        );
        python
    })
    .await
    .clone()
}

/// A running aiosmtpd on 127.0.0.1; dropping it stops the server.
struct SmtpServer {
    port: u16,
    mail_dir: tempfile::TempDir,
    _running: Running,
}

impl SmtpServer {
    async fn start(auth: Option<(&str, &str)>) -> Self {
        let python = smtp_python().await;
        let mail_dir = tempfile::tempdir().unwrap();
        let script = mail_dir.path().join("server.py");
        fs_err::File::create(&script).unwrap().write_all(SMTP_SERVER_PY.as_bytes()).unwrap();
        let port = closed_port();
        let mut cmd = Cmd::new(python)
            .arg(&script)
            .arg(mail_dir.path())
            .arg(port.to_string())
            .kill_grace(Duration::from_secs(2));
        if let Some((user, password)) = auth {
            cmd = cmd.arg(user).secret_arg(&Secret::new(password));
        }
        let mut running = cmd.spawn().unwrap();
        let stdout = running.stdout.take().unwrap();
        let mut line = String::new();
        tokio::time::timeout(Duration::from_secs(30), BufReader::new(stdout).read_line(&mut line))
            .await
            .expect("the SMTP server did not start within 30 s")
            .unwrap();
        assert_eq!(line.trim(), "ready", "the SMTP server did not start");
        Self { port, mail_dir, _running: running }
    }

    fn messages(&self) -> Vec<String> {
        let mut paths: Vec<PathBuf> = fs_err::read_dir(self.mail_dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "eml"))
            .collect();
        paths.sort();
        paths.iter().map(|p| fs_err::read_to_string(p).unwrap()).collect()
    }
}

fn email_config(port: u16) -> NotificationsConfig {
    let mut cfg = config();
    cfg.email.enabled = true;
    cfg.email.smtp_server = "127.0.0.1".into();
    cfg.email.smtp_port = port;
    cfg.email.security = SmtpSecurity::None;
    cfg.email.from_email = "Rail <deployments@example.test>".into();
    cfg.email.to_emails = vec!["ops@example.test".into(), "lead@example.test".into()];
    cfg
}

/// Unfold the message's header lines and decode nothing else: the body is plain text.
fn message_has(message: &str, text: &str) -> bool {
    message.replace("\r\n", "\n").contains(text)
}

#[tokio::test]
async fn email_arrives_with_run_id_and_outcome() {
    let server = SmtpServer::start(None).await;
    let cfg = email_config(server.port);
    let deliveries =
        send_all(&cfg, &sample(Event::RolledBack).outcome("failed, rolled back")).await;
    assert_eq!(deliveries.len(), 1);
    assert!(deliveries[0].ok, "{:?}", deliveries[0]);
    let messages = server.messages();
    assert_eq!(messages.len(), 1);
    let message = &messages[0];
    assert!(
        message_has(
            message,
            "X-Envelope: from=deployments@example.test to=ops@example.test,lead@example.test"
        ),
        "{message}"
    );
    assert!(
        message_has(message, "Subject: [rail] staging: Deploy failed and was rolled back"),
        "{message}"
    );
    assert!(message_has(message, "Run: 20240115T143022Z-ab12"), "{message}");
    assert!(message_has(message, "Outcome: failed, rolled back"), "{message}");
    assert!(message_has(message, "Backup: backup_20240115_143022"), "{message}");
    assert!(message_has(message, "Content-Type: text/plain"), "{message}");
}

#[tokio::test]
async fn email_authenticates_and_keeps_the_password_out_of_the_message() {
    let password = "smtp-pa55word-xyz";
    let server = SmtpServer::start(Some(("mailer", password))).await;
    let mut cfg = email_config(server.port);
    cfg.email.username = "mailer".into();
    cfg.email.password = Secret::new(password);
    // A message that carries the password by accident (an error text) has it scrubbed.
    let notification =
        sample(Event::DeployFailed).message(format!("login with {password} refused"));
    let (deliveries, logs) = capture_logs(send_all(&cfg, &notification)).await;
    assert!(deliveries[0].ok, "{:?}", deliveries[0]);
    let messages = server.messages();
    assert_eq!(messages.len(), 1);
    assert!(message_has(&messages[0], "login with *** refused"), "{}", messages[0]);
    assert!(!messages[0].contains(password));
    assert!(!logs.contains(password), "{logs}");
}

#[tokio::test]
async fn email_with_a_wrong_password_fails_without_retrying() {
    let server = SmtpServer::start(Some(("mailer", "right-password"))).await;
    let mut cfg = email_config(server.port);
    cfg.email.username = "mailer".into();
    cfg.email.password = Secret::new("wrong-password");
    let deliveries = send_all(&cfg, &sample(Event::DeployFailed)).await;
    let delivery = &deliveries[0];
    assert!(!delivery.ok);
    // 535 is a permanent answer: trying again cannot help.
    assert_eq!(delivery.attempts, 1, "{delivery:?}");
    let error = delivery.error.as_deref().unwrap();
    assert!(error.contains("535"), "{error}");
    assert!(!error.contains("wrong-password"), "{error}");
    assert!(server.messages().is_empty());
}

#[tokio::test]
async fn starttls_is_required_not_skipped() {
    // aiosmtpd here offers no STARTTLS: a STARTTLS configuration must refuse to send in clear text.
    let server = SmtpServer::start(None).await;
    let mut cfg = email_config(server.port);
    cfg.email.security = SmtpSecurity::Starttls;
    let deliveries = send_all(&cfg, &sample(Event::DeploySucceeded)).await;
    let delivery = &deliveries[0];
    assert!(!delivery.ok);
    assert_eq!(delivery.attempts, 1, "{delivery:?}");
    assert!(delivery.error.as_deref().unwrap().to_lowercase().contains("starttls"), "{delivery:?}");
    assert!(server.messages().is_empty());
}
