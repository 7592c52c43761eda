//! A Redis database index of its own per test on the stack's Redis, and a tiny RESP client to look at
//! what the tools under test wrote.
//!
//! The stack's Redis has 1024 databases; indexes 1..=1023 are handed out round-robin through a counter
//! in database 0, so concurrent tests never share one.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::stack::Stack;

/// A reply of a Redis server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`
    Status(String),
    /// `-ERR …`
    Error(String),
    /// `:42`
    Integer(i64),
    /// A bulk string; `None` is Redis's nil.
    Bulk(Option<Vec<u8>>),
    /// An array; `None` is a nil array.
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The reply as text: status, bulk string or integer; `None` for nil, errors and arrays.
    pub fn as_text(&self) -> Option<String> {
        match self {
            Reply::Status(s) => Some(s.clone()),
            Reply::Bulk(Some(bytes)) => Some(String::from_utf8_lossy(bytes).into_owned()),
            Reply::Integer(i) => Some(i.to_string()),
            _ => None,
        }
    }

    /// The reply as a number: an integer reply, or text that parses as one.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Reply::Integer(i) => Some(*i),
            _ => self.as_text()?.parse().ok(),
        }
    }

    /// The elements of an array reply as text (`KEYS *`, `LRANGE …`).
    pub fn as_list(&self) -> Vec<String> {
        match self {
            Reply::Array(Some(items)) => items.iter().filter_map(Reply::as_text).collect(),
            _ => Vec::new(),
        }
    }
}

/// `host:port` and database index of a `redis://[user:password@]host:port[/db]` URL.
fn parse_url(url: &str) -> Result<(String, u32), String> {
    let rest = url.strip_prefix("redis://").ok_or_else(|| format!("not a redis:// URL: {url}"))?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let db = if path.is_empty() {
        0
    } else {
        path.parse().map_err(|_| format!("bad database index in {url}"))?
    };
    Ok((host_port.to_owned(), db))
}

/// One connection speaking RESP2.
struct Connection {
    reader: BufReader<TcpStream>,
}

impl Connection {
    fn open(url: &str) -> std::io::Result<Connection> {
        let (addr, db) = parse_url(url).map_err(std::io::Error::other)?;
        let stream = TcpStream::connect(&addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut conn = Connection { reader: BufReader::new(stream) };
        if db != 0 {
            let reply = conn.call(&["SELECT", &db.to_string()])?;
            if let Reply::Error(e) = reply {
                return Err(std::io::Error::other(format!("SELECT {db}: {e}")));
            }
        }
        Ok(conn)
    }

    fn call(&mut self, args: &[&str]) -> std::io::Result<Reply> {
        let mut request = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            request.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            request.extend_from_slice(arg.as_bytes());
            request.extend_from_slice(b"\r\n");
        }
        self.reader.get_mut().write_all(&request)?;
        self.read_reply()
    }

    fn read_line(&mut self) -> std::io::Result<String> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "redis closed the connection",
            ));
        }
        Ok(line.trim_end_matches(['\r', '\n']).to_owned())
    }

    fn read_reply(&mut self) -> std::io::Result<Reply> {
        let line = self.read_line()?;
        let bad = || std::io::Error::other(format!("unexpected reply from redis: {line:?}"));
        let (kind, rest) = line.split_at(line.len().min(1));
        let number = || rest.parse::<i64>().map_err(|_| bad());
        Ok(match kind {
            "+" => Reply::Status(rest.to_owned()),
            "-" => Reply::Error(rest.to_owned()),
            ":" => Reply::Integer(number()?),
            "$" => match number()? {
                n if n < 0 => Reply::Bulk(None),
                n => {
                    let mut data = vec![0u8; n as usize + 2];
                    std::io::Read::read_exact(&mut self.reader, &mut data)?;
                    data.truncate(n as usize);
                    Reply::Bulk(Some(data))
                }
            },
            "*" => match number()? {
                n if n < 0 => Reply::Array(None),
                n => Reply::Array(Some(
                    (0..n).map(|_| self.read_reply()).collect::<std::io::Result<_>>()?,
                )),
            },
            _ => return Err(bad()),
        })
    }
}

/// Sends one command to the Redis at `url` (its database index selected first) and returns the reply.
/// A Redis error reply is `Ok(Reply::Error(..))`; only I/O failures are `Err`.
pub fn redis_command(url: &str, args: &[&str]) -> std::io::Result<Reply> {
    Connection::open(url)?.call(args)
}

/// A Redis database index of its own for one test on the stack's Redis; flushed when created (a
/// crashed test may have left keys there) and when dropped.
#[derive(Debug)]
pub struct TestRedis {
    index: u32,
    url: String,
}

/// Indexes 1..=1023: database 0 holds the counter and is the stack app's own.
const TEST_DATABASES: i64 = 1023;

impl TestRedis {
    /// Takes the next database index and flushes it.
    pub fn new() -> TestRedis {
        let stack = Stack::get();
        let base = stack.redis_url();
        let counter = redis_command(base, &["INCR", "rail:testkit:next-db"])
            .ok()
            .and_then(|reply| reply.as_int())
            .unwrap_or_else(|| {
                panic!("cannot reach the stack's Redis at {base}: run `cargo xtask stack up` first")
            });
        let index = ((counter - 1).rem_euclid(TEST_DATABASES) + 1) as u32;
        let prefix = base.rsplit_once('/').map_or(base, |(prefix, _)| prefix);
        let test = TestRedis { index, url: format!("{prefix}/{index}") };
        test.flush();
        test
    }

    /// `redis://127.0.0.1:<port>/<index>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database index, 1..=1023.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// Runs one command in this database; panics on I/O errors (a Redis error is a `Reply::Error`).
    pub fn cmd(&self, args: &[&str]) -> Reply {
        redis_command(&self.url, args)
            .unwrap_or_else(|err| panic!("redis {args:?} on db {}: {err}", self.index))
    }

    /// The value of `key` as text, `None` if missing.
    pub fn get(&self, key: &str) -> Option<String> {
        self.cmd(&["GET", key]).as_text()
    }

    /// Every key of this database, sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut keys = self.cmd(&["KEYS", "*"]).as_list();
        keys.sort();
        keys
    }

    fn flush(&self) {
        let _ = redis_command(&self.url, &["FLUSHDB"]);
    }
}

impl Default for TestRedis {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::parse_url;

    #[test]
    fn parses_redis_urls() {
        assert_eq!(parse_url("redis://127.0.0.1:6380/7"), Ok(("127.0.0.1:6380".to_owned(), 7)));
        assert_eq!(parse_url("redis://:pw@127.0.0.1:6380"), Ok(("127.0.0.1:6380".to_owned(), 0)));
        assert!(parse_url("http://x").is_err());
        assert!(parse_url("redis://h:1/x").is_err());
    }
}
