//! A string that must never reach output, logs, notifications or error messages.

use std::fmt;

/// What every secret prints as.
pub const REDACTED: &str = "***";

/// A secret value (password, webhook URL, SMTP password, secret key).
///
/// `Debug`, `Display` and `Serialize` all print [`REDACTED`]; the value itself is only reachable
/// through [`Secret::expose`], which makes every use greppable.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value, for the one place that needs it (a connection, a request).
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

/// Replace the password of a URL (`scheme://user:password@host`) with [`REDACTED`].
///
/// Strings that do not parse as URLs are still redacted when they look like `scheme://user:pw@…`,
/// since a malformed URL is exactly what ends up in an error message.
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut parsed) if parsed.password().is_some() => {
            // Setting a password only fails for URLs that cannot have one, excluded above.
            let _ = parsed.set_password(Some(REDACTED));
            parsed.to_string()
        }
        Ok(_) => raw.to_owned(),
        Err(_) => redact_userinfo(raw),
    }
}

fn redact_userinfo(raw: &str) -> String {
    let Some(scheme_end) = raw.find("://") else { return raw.to_owned() };
    let rest = &raw[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else { return raw.to_owned() };
    let Some(colon) = rest[..at].find(':') else { return raw.to_owned() };
    format!("{}{}{REDACTED}{}", &raw[..scheme_end + 3], &rest[..=colon], &rest[at..])
}

/// Replace every occurrence of each secret in `text` with [`REDACTED`].
///
/// Used on text that comes from outside (a child's stderr, an error from a server) before it is shown.
pub fn scrub<'a>(text: &str, secrets: impl IntoIterator<Item = &'a Secret>) -> String {
    let mut out = text.to_owned();
    for secret in secrets {
        if secret.0.len() >= 3 {
            out = out.replace(secret.expose(), REDACTED);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "*** ***");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"***\"");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn url_password_is_redacted() {
        assert_eq!(
            redact_url("postgresql://user:p%40ss@db:5432/app"),
            "postgresql://user:***@db:5432/app"
        );
        assert_eq!(redact_url("redis://127.0.0.1:6379/0"), "redis://127.0.0.1:6379/0");
        assert_eq!(redact_url("not a url"), "not a url");
        assert_eq!(
            redact_url("postgresql://u:pw@host:notaport/db"),
            "postgresql://u:***@host:notaport/db"
        );
        assert_eq!(redact_url("redis://:pw@[bad/0"), "redis://:***@[bad/0");
    }

    #[test]
    fn scrub_replaces_every_occurrence() {
        let secrets = [Secret::new("topsecret"), Secret::new("x")];
        assert_eq!(scrub("a topsecret b topsecret x", &secrets), "a *** b *** x");
    }
}
