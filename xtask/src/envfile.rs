//! `KEY=VALUE` files: `target/stack/env` (what the stack offers to tests and people) and the demo app's
//! `app.env` (what gunicorn runs with).
//!
//! The format is the plain subset that `set -a; . FILE` in a shell, `dotenvy` and the testkit all read the
//! same way: one assignment per line, `#` comments, no quoting needed because no value holds spaces.

use std::path::Path;

use anyhow::{bail, Context, Result};
use fs_err as fs;

/// An ordered list of assignments; setting a key again replaces its value in place.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct EnvFile {
    entries: Vec<(String, String)>,
}

impl EnvFile {
    pub(crate) fn parse(text: &str) -> Result<Self> {
        let mut env = Self::default();
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let line = line.strip_prefix("export ").unwrap_or(line);
            let Some((key, value)) = line.split_once('=') else {
                bail!("line {}: expected KEY=VALUE", index + 1);
            };
            let key = key.trim();
            if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                bail!("line {}: `{key}` is not a variable name", index + 1);
            }
            env.set(key, unquote(value.trim()));
        }
        Ok(env)
    }

    /// Reads `path`; `None` when it does not exist.
    pub(crate) fn load(path: &Path) -> Result<Option<Self>> {
        match fs::read_to_string(path) {
            Ok(text) => {
                Self::parse(&text).with_context(|| format!("parsing {}", path.display())).map(Some)
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err.into()),
        }
    }

    /// Writes the file atomically (a reader never sees half of it), readable by its owner only,
    /// because it holds passwords.
    pub(crate) fn save(&self, path: &Path) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let tmp = path.with_extension("tmp");
        fs::write(&tmp, self.render())?;
        fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
        fs::rename(&tmp, path)?;
        Ok(())
    }

    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    pub(crate) fn set(&mut self, key: &str, value: impl Into<String>) {
        let value = value.into();
        match self.entries.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value,
            None => self.entries.push((key.to_owned(), value)),
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The variables for a terminal: the secret key, passwords and URL passwords as `***` (the file
    /// itself holds the values).
    pub(crate) fn render_redacted(&self) -> String {
        let mut out = String::new();
        for (k, v) in &self.entries {
            let shown = if k.contains("SECRET") || k.contains("PASSWORD") {
                "***".to_owned()
            } else if let Some(password) = url_password(v) {
                v.replacen(&format!(":{password}@"), ":***@", 1)
            } else {
                v.clone()
            };
            out.push_str(k);
            out.push('=');
            out.push_str(&shown);
            out.push('\n');
        }
        out
    }

    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        for (k, v) in &self.entries {
            out.push_str(k);
            out.push('=');
            out.push_str(v);
            out.push('\n');
        }
        out
    }
}

/// Strips one pair of matching surrounding quotes, as shells and dotenv readers do.
fn unquote(value: &str) -> &str {
    for quote in ['"', '\''] {
        if value.len() >= 2 && value.starts_with(quote) && value.ends_with(quote) {
            return &value[1..value.len() - 1];
        }
    }
    value
}

/// The port of a `scheme://user:password@host:port/path` URL.
pub(crate) fn url_port(url: &str) -> Option<u16> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    host_port.rsplit_once(':')?.1.parse().ok()
}

/// The password of a `scheme://user:password@host...` URL.
pub(crate) fn url_password(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let userinfo = rest.split('/').next()?.rsplit_once('@')?.0;
    Some(userinfo.split_once(':')?.1).filter(|p| !p.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_terminal_copy_hides_secrets() {
        let env = EnvFile::parse(
            "DATABASE_URL=postgresql://rail:pw123@127.0.0.1:5/db\nSECRET_KEY=abc\nREDIS_URL=redis://127.0.0.1:6/0\n",
        )
        .unwrap();
        let shown = env.render_redacted();
        assert!(!shown.contains("pw123") && !shown.contains("abc"), "{shown}");
        assert!(shown.contains("postgresql://rail:***@127.0.0.1:5/db"), "{shown}");
        assert!(shown.contains("REDIS_URL=redis://127.0.0.1:6/0"), "{shown}");
    }

    #[test]
    fn parses_assignments_comments_and_quotes() {
        let env = EnvFile::parse(
            "# stack\n\nDATABASE_URL=postgresql://rail:pw@127.0.0.1:5555/rail_demo\nexport PGPORT=5555\nQUOTED=\"a b\"\nSINGLE='x'\nEMPTY=\nEQ=a=b\n",
        )
        .unwrap();
        assert_eq!(env.get("DATABASE_URL"), Some("postgresql://rail:pw@127.0.0.1:5555/rail_demo"));
        assert_eq!(env.get("PGPORT"), Some("5555"));
        assert_eq!(env.get("QUOTED"), Some("a b"));
        assert_eq!(env.get("SINGLE"), Some("x"));
        assert_eq!(env.get("EMPTY"), Some(""));
        assert_eq!(env.get("EQ"), Some("a=b"));
        assert_eq!(env.get("MISSING"), None);
    }

    #[test]
    fn rejects_lines_without_assignment_or_with_bad_names() {
        let err = EnvFile::parse("A=1\nnot an assignment\n").unwrap_err();
        assert_eq!(err.to_string(), "line 2: expected KEY=VALUE");
        let err = EnvFile::parse("BAD-NAME=1\n").unwrap_err();
        assert_eq!(err.to_string(), "line 1: `BAD-NAME` is not a variable name");
    }

    #[test]
    fn set_replaces_in_place_and_render_round_trips() {
        let mut env = EnvFile::default();
        env.set("A", "1");
        env.set("B", "2");
        env.set("A", "3");
        assert_eq!(env.render(), "A=3\nB=2\n");
        assert_eq!(EnvFile::parse(&env.render()).unwrap(), env);
        assert_eq!(env.iter().collect::<Vec<_>>(), vec![("A", "3"), ("B", "2")]);
    }

    #[test]
    fn save_and_load_round_trip_with_private_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("xtask-envfile-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("env");
        assert_eq!(EnvFile::load(&path).unwrap(), None);
        let mut env = EnvFile::default();
        env.set("SECRET_KEY", "abc");
        env.save(&path).unwrap();
        assert_eq!(EnvFile::load(&path).unwrap(), Some(env));
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn url_parts() {
        let url = "postgresql://rail:s3cret@127.0.0.1:5433/rail_demo";
        assert_eq!(url_port(url), Some(5433));
        assert_eq!(url_password(url), Some("s3cret"));
        assert_eq!(url_port("redis://127.0.0.1:6380/0"), Some(6380));
        assert_eq!(url_password("redis://127.0.0.1:6380/0"), None);
        assert_eq!(url_port("http://127.0.0.1/x"), None);
        assert_eq!(url_password("postgresql://rail@h:1/d"), None);
    }
}
