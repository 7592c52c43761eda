//! A private S3-compatible server for a test: moto in server mode on a free port of 127.0.0.1.
//!
//! `cargo xtask stack up` finds `moto_server` (or installs it into a venv of its own) and records it as
//! `RAIL_S3_SERVER`. moto keeps everything in memory and checks no signature, so a test reads and
//! writes objects with plain HTTP requests to tamper with them, and a killed server forgets them all.

use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Child;
use std::time::Duration;

use fs_err as fs;
use nix::sys::signal::Signal;

use crate::proc;
use crate::stack::Stack;

/// Access key and secret the tests give rail: distinctive, so a leak is found by a plain search.
pub const ACCESS_KEY_ID: &str = "AKIARAILTESTACCESS01";
pub const SECRET_ACCESS_KEY: &str = "rail-test-s3-secret-5ZkL0q9PqzVb2x";

/// A moto server, killed when dropped.
#[derive(Debug)]
pub struct ThrowawayS3 {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
    program: PathBuf,
}

/// An HTTP response: status and raw body.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

impl ThrowawayS3 {
    /// Starts a server with one bucket, `bucket`.
    pub fn start(bucket: &str) -> ThrowawayS3 {
        let stack = Stack::get();
        let program = PathBuf::from(
            stack
                .var("RAIL_S3_SERVER")
                .expect("RAIL_S3_SERVER is not in the stack's env: run `cargo xtask stack up`"),
        );
        let dir = stack.scratch_dir().join(format!("s3-{}", proc::unique_id()));
        fs::create_dir(&dir).expect("creating a throwaway server's dir");
        let mut server = ThrowawayS3 { dir, port: 0, child: None, program };
        for attempt in 1..=5 {
            server.port = proc::free_port();
            match server.try_start() {
                Ok(()) => break,
                Err(log) if attempt < 5 && log.contains("in use") => {}
                Err(log) => panic!("moto_server did not start\n{log}"),
            }
        }
        let created = server.request("PUT", &format!("/{bucket}"), &[], &[]);
        assert_eq!(created.status, 200, "creating bucket {bucket}: {}", created.text());
        server
    }

    fn try_start(&mut self) -> Result<(), String> {
        let log_path = self.dir.join("moto.log");
        let log = fs::File::create(&log_path).map_err(|e| e.to_string())?.into_parts().0;
        let child = proc::command(&self.program)
            .args(["-H", "127.0.0.1", "-p", &self.port.to_string()])
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.program.display()))?;
        let pid = child.id() as i32;
        fs::write(self.dir.join("s3.pid"), format!("{pid}\n")).map_err(|e| e.to_string())?;
        self.child = Some(child);
        let up = proc::wait_until(Duration::from_secs(30), Duration::from_millis(50), || {
            TcpStream::connect(("127.0.0.1", self.port)).is_ok() || !proc::pid_alive(pid)
        });
        if up && proc::pid_alive(pid) {
            return Ok(());
        }
        self.kill();
        Err(proc::tail_file(&log_path, 30))
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The server's PID while it runs.
    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32).filter(|pid| proc::pid_alive(*pid))
    }

    /// Freezes the server (SIGSTOP): connections open, nothing answered.
    pub fn pause(&self) {
        if let Some(pid) = self.pid() {
            proc::signal(pid, Signal::SIGSTOP);
        }
    }

    /// Lets a paused server go on (SIGCONT).
    pub fn resume(&self) {
        if let Some(pid) = self.pid() {
            proc::signal(pid, Signal::SIGCONT);
        }
    }

    /// Kills the server; everything it held is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// One request; `path` starts with `/bucket`.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> RawResponse {
        let authority = format!("127.0.0.1:{}", self.port);
        let mut stream = TcpStream::connect(&authority).expect("connecting to moto");
        stream.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
        let mut head = format!(
            "{method} {path} HTTP/1.0\r\nHost: {authority}\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        // moto answers anonymous reads 403 (private objects) and checks no signature: any signed-looking
        // header will do. Without a content type, a body is read as a form.
        let _ = write!(
            head,
            "Authorization: AWS4-HMAC-SHA256 Credential={ACCESS_KEY_ID}/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0\r\n"
        );
        head.push_str("Content-Type: application/octet-stream\r\n");
        for (name, value) in headers {
            let _ = write!(head, "{name}: {value}\r\n");
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).expect("writing to moto");
        stream.write_all(body).expect("writing to moto");
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).expect("reading from moto");
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("an HTTP response");
        let head = String::from_utf8_lossy(&raw[..split]);
        let status =
            head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("an HTTP status");
        RawResponse { status, body: raw[split + 4..].to_vec() }
    }

    /// The bytes of `bucket/key`, or `None`.
    pub fn get_object(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        let response = self.request("GET", &format!("/{bucket}/{key}"), &[], &[]);
        (response.status == 200).then_some(response.body)
    }

    /// Writes `bucket/key`.
    pub fn put_object(&self, bucket: &str, key: &str, body: &[u8]) {
        let response = self.request("PUT", &format!("/{bucket}/{key}"), &[], body);
        assert_eq!(response.status, 200, "PUT {key}: {}", response.text());
    }

    /// Removes `bucket/key`.
    pub fn delete_object(&self, bucket: &str, key: &str) {
        let response = self.request("DELETE", &format!("/{bucket}/{key}"), &[], &[]);
        assert!(response.status == 204 || response.status == 200, "DELETE {key}");
    }

    /// Every key of `bucket` under `prefix`, sorted.
    pub fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let response =
            self.request("GET", &format!("/{bucket}?list-type=2&prefix={prefix}"), &[], &[]);
        assert_eq!(response.status, 200, "listing {bucket}: {}", response.text());
        let mut keys = xml_values(&response.text(), "Key");
        keys.sort();
        keys
    }

    /// Multipart uploads started and neither completed nor aborted.
    pub fn open_multipart_uploads(&self, bucket: &str) -> usize {
        let response = self.request("GET", &format!("/{bucket}?uploads"), &[], &[]);
        xml_values(&response.text(), "UploadId").len()
    }
}

impl RawResponse {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn xml_values(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    xml.split(&open)
        .skip(1)
        .filter_map(|rest| rest.split_once(&close).map(|(v, _)| v.replace("&amp;", "&")))
        .collect()
}

impl Drop for ThrowawayS3 {
    fn drop(&mut self) {
        self.resume();
        self.kill();
        let _ = fs::remove_dir_all(&self.dir);
    }
}
