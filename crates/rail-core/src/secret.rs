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

impl schemars::JsonSchema for Secret {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Secret".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A secret: never printed. Prefer `${VAR}` to reading it from the environment over writing it here.",
            "type": "string"
        })
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
        // `user:pw@host` without a scheme parses as a URL of scheme `user`: look at it as text.
        Ok(_) | Err(_) => redact_credentials(raw),
    }
}

/// Redact credentials wherever they sit in free text (an error message quoting a line of a file, a
/// malformed URL): the password of `scheme://user:pw@host`, of a scheme-less `user:pw@host`, and the
/// value of libpq's `password=…` keyword.
pub fn redact_credentials(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    // Tokens end at whitespace and quotes, so a URL inside a quoted TOML value is one token.
    while let Some(start) = rest.find(|c: char| !is_token_end(c)) {
        out.push_str(&rest[..start]);
        let token_len = rest[start..].find(is_token_end).unwrap_or(rest.len() - start);
        out.push_str(&redact_token(&rest[start..start + token_len]));
        rest = &rest[start + token_len..];
    }
    out.push_str(rest);
    redact_password_keyword(&out)
}

fn is_token_end(c: char) -> bool {
    c.is_whitespace() || matches!(c, '"' | '\'' | '`' | ',' | ';' | '(' | ')' | '<' | '>')
}

/// Words in a variable's name that mark its value as a secret (`SECRET_KEY`, `DB_PASSWORD`,
/// `SENTRY_DSN`, `AWS_SESSION_TOKEN`, …). Matched on the upper-cased name split at `_`, `-` and `.`.
const SECRET_NAME_WORDS: &[&str] = &[
    "SECRET",
    "PASSWORD",
    "PASSWD",
    "PASS",
    "TOKEN",
    "KEY",
    "APIKEY",
    "CREDENTIAL",
    "CREDENTIALS",
    "AUTH",
    "AUTHORIZATION",
    "PRIVATE",
    "DSN",
    "COOKIE",
    "SALT",
    "SIGNATURE",
    "SESSION",
    "WEBHOOK",
    "PASSPHRASE",
    "IDENTITY",
];

/// Whether an environment variable named `name` holds a secret, judged by its name: a value under
/// such a name is never shown. Other values are shown with [`redact_credentials`] applied.
pub fn is_secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    upper.split(['_', '-', '.']).any(|word| SECRET_NAME_WORDS.contains(&word))
        || ["SECRET", "PASSWORD", "TOKEN", "APIKEY"].iter().any(|w| upper.contains(w))
}

/// Whether the environment variable `name=value` must be passed as a secret: by its name
/// ([`is_secret_name`]) or because the value holds a credential ([`redact_credentials`] changes it).
pub fn is_secret_variable(name: &str, value: &str) -> bool {
    is_secret_name(name) || redact_credentials(value) != value
}

/// Prefixes of well-known credential formats: Slack, GitHub, GitLab, AWS access keys, Stripe.
const TOKEN_PREFIXES: &[&str] = &[
    "xoxa-",
    "xoxb-",
    "xoxp-",
    "xoxr-",
    "xoxs-",
    "xapp-",
    "ghp_",
    "gho_",
    "ghs_",
    "ghu_",
    "ghr_",
    "github_pat_",
    "glpat-",
    "AKIA",
    "ASIA",
    "sk_live_",
    "sk_test_",
    "rk_live_",
];

/// Query parameters whose value is a credential.
const SECRET_PARAMS: &[&str] = &[
    "token",
    "access_token",
    "api_key",
    "apikey",
    "key",
    "secret",
    "password",
    "signature",
    "sig",
    "x-amz-signature",
    "x-amz-credential",
    "auth",
];

/// `user:pw@host…` (after an optional `scheme://`) with the password replaced; a well-known token
/// format, a Slack webhook path or a credential query parameter replaced too.
fn redact_token(token: &str) -> String {
    if let Some(prefix) = TOKEN_PREFIXES.iter().find(|p| token.starts_with(**p)) {
        if token.len() >= prefix.len() + 8 {
            return REDACTED.to_owned();
        }
    }
    let token = redact_query_params(&redact_slack_webhook(token));
    let token = token.as_str();
    let (head, rest) = match token.find("://") {
        Some(i) => token.split_at(i + 3),
        None => ("", token),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else { return token.to_owned() };
    let Some(colon) = rest[..at].find(':') else { return token.to_owned() };
    format!("{head}{}{REDACTED}{}", &rest[..=colon], &rest[at..])
}

/// `https://hooks.slack.com/services/T…/B…/secret`: the whole path is the credential.
fn redact_slack_webhook(token: &str) -> String {
    const HOOK: &str = "hooks.slack.com/services/";
    match token.find(HOOK) {
        Some(i) => format!("{}{HOOK}{REDACTED}", &token[..i]),
        None => token.to_owned(),
    }
}

/// `…?token=abc&page=2` → `…?token=***&page=2`, for the parameters in [`SECRET_PARAMS`].
fn redact_query_params(token: &str) -> String {
    let Some(q) = token.find('?') else { return token.to_owned() };
    let (base, query) = token.split_at(q + 1);
    let (query, fragment) = match query.find('#') {
        Some(h) => query.split_at(h),
        None => (query, ""),
    };
    let parts: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, v))
                if !v.is_empty() && SECRET_PARAMS.iter().any(|p| p.eq_ignore_ascii_case(k)) =>
            {
                format!("{k}={REDACTED}")
            }
            _ => pair.to_owned(),
        })
        .collect();
    format!("{base}{}{fragment}", parts.join("&"))
}

/// `password=secret`, `password = 'secret'` (libpq's key=value form), any case.
fn redact_password_keyword(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut search = 0;
    while let Some(found) = lower[search..].find("password") {
        let key_end = search + found + "password".len();
        let after = &text[key_end..];
        let spaces = after.len() - after.trim_start().len();
        let Some(value_part) = after.trim_start().strip_prefix('=') else {
            search = key_end;
            continue;
        };
        let value_start = key_end + spaces + 1 + (value_part.len() - value_part.trim_start().len());
        let value = &text[value_start..];
        let value_len = if let Some(quoted) = value.strip_prefix('\'') {
            quoted.find('\'').map_or(value.len(), |end| end + 2)
        } else {
            value.find(|c: char| c.is_whitespace() || c == '"').unwrap_or(value.len())
        };
        out.push_str(&text[copied..value_start]);
        out.push_str(REDACTED);
        copied = value_start + value_len;
        search = copied;
    }
    out.push_str(&text[copied..]);
    out
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
    fn credentials_in_free_text_are_redacted() {
        let cases = [
            (
                "invalid database URL rail:hunter2@127.0.0.1/db",
                "invalid database URL rail:***@127.0.0.1/db",
            ),
            (
                "host=h user=rail password=hunter2 dbname=x",
                "host=h user=rail password=*** dbname=x",
            ),
            ("host=h PASSWORD = 'hunt er2' port=5", "host=h PASSWORD = *** port=5"),
            (
                "2 | url = \"postgresql://rail:hunter2@h/db\n  |   ^ invalid",
                "2 | url = \"postgresql://rail:***@h/db\n  |   ^ invalid",
            ),
            ("see https://example.org/a:b@c and a@b", "see https://example.org/a:b@c and a@b"),
            ("password_reset is fine, mail a@b:1", "password_reset is fine, mail a@b:1"),
        ];
        for (text, want) in cases {
            assert_eq!(redact_credentials(text), want, "{text}");
        }
        assert_eq!(redact_url("rail:hunter2@127.0.0.1/db"), "rail:***@127.0.0.1/db");
    }

    #[test]
    fn secret_names_and_tokens_inside_values() {
        for name in [
            "SECRET_KEY",
            "DB_PASSWORD",
            "SENTRY_DSN",
            "AWS_SESSION_TOKEN",
            "STRIPE_APIKEY",
            "EMAIL_HOST_PASSWORD",
            "RAIL_BACKUP_KEY",
            "slack_webhook_url",
            "MYSECRETTHING",
        ] {
            assert!(is_secret_name(name), "{name}");
        }
        for name in
            ["DEBUG", "ALLOWED_HOSTS", "STATIC_ROOT", "DJANGO_SETTINGS_MODULE", "PATH", "LANG"]
        {
            assert!(!is_secret_name(name), "{name}");
        }
        let cases = [
            ("bot xoxb-123456789012-abcdefghij here", "bot *** here"),
            ("ghp_abcdefghijklmnopqrstuvwxyz0123456789", "***"),
            ("AKIAIOSFODNN7EXAMPLE", "***"),
            (
                "https://hooks.slack.com/services/T000/B000/XXXXXXXX",
                "https://hooks.slack.com/services/***",
            ),
            ("https://h/api?page=2&token=abc123&x=1#f", "https://h/api?page=2&token=***&x=1#f"),
            ("https://h/api?page=2", "https://h/api?page=2"),
            ("AKIA", "AKIA"),
        ];
        for (text, want) in cases {
            assert_eq!(redact_credentials(text), want, "{text}");
        }
    }

    #[test]
    fn scrub_replaces_every_occurrence() {
        let secrets = [Secret::new("topsecret"), Secret::new("x")];
        assert_eq!(scrub("a topsecret b topsecret x", &secrets), "a *** b *** x");
    }
}
