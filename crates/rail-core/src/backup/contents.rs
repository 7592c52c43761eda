//! What a dump may hold before rail lets PostgreSQL run it.
//!
//! A custom-format dump (zstd-compressed or not, see [`DumpReader`]) is a list of SQL statements that pg_restore sends as they are. A dump from
//! somewhere else can hold an event trigger, a function that runs `COPY … TO PROGRAM` from an expression
//! index, statements that create roles or drop databases. Three layers stop that: sets are
//! authenticated ([`super::auth`]), restores connect as a role that is not a superuser
//! ([`check_restore_role`]), and, before anything runs, the dump's table of contents is held to the
//! kinds of objects an app database has and its schema statements are scanned for the ones no app
//! restore needs ([`check_dump`]).

use std::path::Path;

use tokio_postgres::Client;

use super::pg::{DumpReader, PgTools};

/// Entry kinds of `pg_restore --list` a Django database holds, restored without question.
const ALLOWED: &[&str] = &[
    "ACL",
    // Large objects are data (`lo_*`), restored as such.
    "BLOB",
    "BLOB METADATA",
    "BLOBS",
    "CHECK CONSTRAINT",
    "COMMENT",
    "CONSTRAINT",
    "DEFAULT",
    "DEFAULT ACL",
    "DOMAIN",
    "ENCODING",
    "FK CONSTRAINT",
    "INDEX",
    "INDEX ATTACH",
    "LARGE OBJECT",
    "LARGE OBJECTS",
    "MATERIALIZED VIEW",
    "MATERIALIZED VIEW DATA",
    "POLICY",
    "ROW SECURITY",
    "SCHEMA",
    "SEARCHPATH",
    "SEQUENCE",
    "SEQUENCE OWNED BY",
    "SEQUENCE SET",
    "SHELL TYPE",
    "STATISTICS",
    "STDSTRINGS",
    "TABLE",
    "TABLE ATTACH",
    "TABLE DATA",
    "TRIGGER",
    "TYPE",
    "VIEW",
];

/// Kinds allowed only when the live database already has the object (the app installed it).
const IF_LIVE: &[&str] = &["AGGREGATE", "EXTENSION", "FUNCTION", "PROCEDURE"];

/// Other kinds pg_dump writes, named so that the error says what was found. All are refused.
const REFUSED: &[&str] = &[
    "ACCESS METHOD",
    "CAST",
    "COLLATION",
    "CONVERSION",
    "DATABASE",
    "DATABASE PROPERTIES",
    "EVENT TRIGGER",
    "FOREIGN DATA WRAPPER",
    "FOREIGN SERVER",
    "FOREIGN TABLE",
    "OPERATOR",
    "OPERATOR CLASS",
    "OPERATOR FAMILY",
    "PROCEDURAL LANGUAGE",
    "PUBLICATION",
    "PUBLICATION TABLE",
    "PUBLICATION TABLES IN SCHEMA",
    "RULE",
    "SERVER",
    "SUBSCRIPTION",
    "TEXT SEARCH CONFIGURATION",
    "TEXT SEARCH DICTIONARY",
    "TEXT SEARCH PARSER",
    "TEXT SEARCH TEMPLATE",
    "TRANSFORM",
    "USER MAPPING",
];

/// Word sequences no app restore needs, found in the dump's schema statements outside strings and
/// comments. Each is a way to act outside the restored database or to gain privilege.
const FORBIDDEN: &[&[&str]] = &[
    &["PROGRAM"],
    &["DROP", "DATABASE"],
    &["CREATE", "DATABASE"],
    &["ALTER", "DATABASE"],
    &["CREATE", "ROLE"],
    &["ALTER", "ROLE"],
    &["DROP", "ROLE"],
    &["CREATE", "USER"],
    &["ALTER", "USER"],
    &["DROP", "USER"],
    &["CREATE", "GROUP"],
    &["ALTER", "GROUP"],
    &["SET", "ROLE"],
    &["RESET", "ROLE"],
    &["SESSION", "AUTHORIZATION"],
    &["ALTER", "SYSTEM"],
    &["CREATE", "EVENT"],
    &["CREATE", "LANGUAGE"],
    &["CREATE", "SERVER"],
    &["CREATE", "SUBSCRIPTION"],
    &["LO_IMPORT"],
    &["LO_EXPORT"],
    &["PG_READ_FILE"],
    &["PG_READ_BINARY_FILE"],
    &["PG_LS_DIR"],
    &["PG_STAT_FILE"],
    &["DBLINK"],
    &["DBLINK_EXEC"],
    &["DO"],
    &["COPY"],
];

/// One entry of a dump's table of contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TocEntry {
    pub kind: String,
    /// `schema name` (or `- name`) as pg_restore lists it, owner excluded.
    pub rest: String,
    pub line: String,
}

/// Parse `pg_restore --list` output. Lines that are not entries (comments, blanks) are skipped; an
/// entry of a kind rail does not know is returned with kind `?` so that it is refused.
pub fn parse_toc(list: &str) -> Vec<TocEntry> {
    let mut known: Vec<&str> = ALLOWED.iter().chain(IF_LIVE).chain(REFUSED).copied().collect();
    known.sort_by_key(|k| std::cmp::Reverse(k.len()));
    let mut out = Vec::new();
    for line in list.lines() {
        let line = line.trim_end();
        if line.is_empty() || line.starts_with(';') {
            continue;
        }
        // `<dump id>; <table oid> <oid> <KIND> <schema> <name> <owner>`
        let after_id = line.split_once("; ").map_or("", |(_, r)| r);
        let mut fields = after_id.splitn(3, ' ');
        let (_, _, rest) = (fields.next(), fields.next(), fields.next().unwrap_or(""));
        let kind =
            known.iter().find(|k| rest.strip_prefix(**k).is_some_and(|r| r.starts_with(' ')));
        let (kind, tail) = match kind {
            Some(kind) => ((*kind).to_owned(), rest[kind.len()..].trim().to_owned()),
            None => ("?".to_owned(), rest.to_owned()),
        };
        out.push(TocEntry { kind, rest: tail, line: line.to_owned() });
    }
    out
}

/// What the live database already has, by which objects of [`IF_LIVE`] kinds are allowed.
#[derive(Debug, Default, Clone)]
pub struct LiveObjects {
    /// `schema name` of functions, procedures and aggregates.
    pub routines: Vec<(String, String)>,
    pub extensions: Vec<String>,
}

impl LiveObjects {
    /// Read them from the live database.
    pub async fn read(client: &Client) -> Result<Self, tokio_postgres::Error> {
        let routines = client
            .query(
                "SELECT n.nspname, p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')",
                &[],
            )
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let extensions = client
            .query("SELECT extname FROM pg_extension", &[])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        Ok(Self { routines, extensions })
    }
}

/// What the live database of `cfg` has; when it cannot be read, nothing (so that only the kinds of
/// [`ALLOWED`] pass), with a warning.
pub async fn live_objects(
    cfg: &crate::config::Config,
    target: &crate::db::DbTarget,
) -> LiveObjects {
    let read = async {
        let client = target
            .connect(cfg.database.connect_timeout.get(), "rail-restore-check")
            .await
            .map_err(|e| e.to_string())?;
        LiveObjects::read(&client).await.map_err(|e| e.to_string())
    };
    match read.await {
        Ok(live) => live,
        Err(error) => {
            tracing::warn!(%error, "cannot read the live database's functions and extensions; a dump holding any is refused");
            LiveObjects::default()
        }
    }
}

/// The problems of a table of contents: every entry that is neither allowed nor already live.
pub fn check_toc(entries: &[TocEntry], live: &LiveObjects) -> Vec<String> {
    let mut problems = Vec::new();
    for entry in entries {
        if ALLOWED.contains(&entry.kind.as_str()) {
            continue;
        }
        if IF_LIVE.contains(&entry.kind.as_str()) {
            let mut words = entry.rest.split_whitespace();
            let present = if entry.kind == "EXTENSION" {
                let name = words.nth(1).unwrap_or("");
                live.extensions.iter().any(|e| e == name)
            } else {
                let schema = words.next().unwrap_or("");
                let name = words.next().unwrap_or("");
                let name = name.split('(').next().unwrap_or(name);
                live.routines.iter().any(|(s, n)| s == schema && n == name)
            };
            if present {
                continue;
            }
            problems.push(format!(
                "{} that the live database does not have: `{}`",
                entry.kind, entry.line
            ));
            continue;
        }
        let what =
            if entry.kind == "?" { "an entry of an unknown kind" } else { entry.kind.as_str() };
        problems.push(format!("{what}, which an app database never holds: `{}`", entry.line));
    }
    problems
}

/// Words of SQL outside string literals, quoted identifiers and comments, upper-cased, with the
/// statement boundaries as `;`.
pub fn sql_words(sql: &str) -> Vec<String> {
    let bytes = sql.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut Vec<String>| {
        if !word.is_empty() {
            out.push(std::mem::take(word).to_uppercase());
        }
    };
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                flush(&mut word, &mut out);
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                flush(&mut word, &mut out);
                let mut depth = 0usize;
                while i < bytes.len() {
                    if bytes[i] == b'/' && bytes.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
                continue;
            }
            b'\'' => {
                // E'…' strings take backslash escapes; both take '' for a quote.
                let escapes = word.eq_ignore_ascii_case("e");
                if escapes {
                    word.clear();
                }
                flush(&mut word, &mut out);
                i += 1;
                while i < bytes.len() {
                    if escapes && bytes[i] == b'\\' {
                        i += 2;
                        continue;
                    }
                    if bytes[i] == b'\'' {
                        if bytes.get(i + 1) == Some(&b'\'') {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                out.push("'".into());
            }
            b'"' => {
                flush(&mut word, &mut out);
                i += 1;
                while i < bytes.len() {
                    if bytes[i] == b'"' {
                        if bytes.get(i + 1) == Some(&b'"') {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                out.push("\"".into());
            }
            b'$' if word.is_empty()
                || !word.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') =>
            {
                flush(&mut word, &mut out);
                // A dollar quote `$tag$ … $tag$`; a lone `$1` is a parameter.
                let rest = &sql[i + 1..];
                let tag_len = rest.find('$').filter(|&n| {
                    rest[..n].bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                        && !rest[..n].starts_with(|c: char| c.is_ascii_digit())
                });
                match tag_len {
                    Some(n) => {
                        let tag = &sql[i..i + n + 2];
                        let body_start = i + n + 2;
                        let end = sql[body_start..]
                            .find(tag)
                            .map_or(sql.len(), |e| body_start + e + tag.len());
                        out.push("$".into());
                        i = end;
                        continue;
                    }
                    None => i += 1,
                }
                continue;
            }
            c if c.is_ascii_alphanumeric()
                || c == b'_'
                || c >= 0x80
                || (c == b'$' && !word.is_empty()) =>
            {
                word.push(c as char);
            }
            b';' => {
                flush(&mut word, &mut out);
                out.push(";".into());
            }
            _ => flush(&mut word, &mut out),
        }
        i += 1;
    }
    flush(&mut word, &mut out);
    out
}

/// The forbidden word sequences in `sql`, with a little of the statement around each.
pub fn check_sql(sql: &str) -> Vec<String> {
    let words = sql_words(sql);
    let mut problems = Vec::new();
    let mut statement_start = 0;
    for (i, word) in words.iter().enumerate() {
        if word == ";" {
            statement_start = i + 1;
            continue;
        }
        for pattern in FORBIDDEN {
            let matches = words.len() >= i + pattern.len()
                && pattern.iter().zip(&words[i..]).all(|(p, w)| p == w);
            // `DO` and `COPY` matter only where a statement starts (`DO $$…$$`, `COPY … TO`);
            // pg_dump writes no COPY in schema statements.
            let positional = matches!(pattern, [w] if *w == "DO" || *w == "COPY");
            if matches && (!positional || i == statement_start) {
                let context: Vec<&str> = words
                    [statement_start..words.len().min(i + pattern.len() + 4)]
                    .iter()
                    .map(String::as_str)
                    .take(12)
                    .collect();
                problems.push(format!(
                    "`{}` in a statement: {} …",
                    pattern.join(" "),
                    context.join(" ")
                ));
            }
        }
        // `GRANT role TO role` (membership) has no ON; `GRANT … ON … TO` is an ordinary privilege.
        if word == "GRANT" && i == statement_start {
            let end = words[i..].iter().position(|w| w == ";").map_or(words.len(), |p| i + p);
            if !words[i..end].iter().any(|w| w == "ON") {
                problems.push(format!(
                    "a role membership grant: {} …",
                    words[i..end.min(i + 8)].join(" ")
                ));
            }
        }
    }
    problems
}

/// Check a custom- or directory-format dump before it is restored: its table of contents against
/// what an app database holds (and what `live` already has), and its schema statements against
/// [`FORBIDDEN`]. Returns every problem found; empty means the dump may be restored.
pub async fn check_dump(
    tools: &PgTools,
    dump: &Path,
    live: &LiveObjects,
) -> Result<Vec<String>, String> {
    let read = |cmd, what: &'static str| async move {
        let out = async { DumpReader::spawn(cmd, dump, 1)?.output().await }
            .await
            .map_err(|e| format!("pg_restore {what} failed: {}", super::error_chain(&e)))?;
        Ok::<_, String>(String::from_utf8_lossy(&out).into_owned())
    };
    let list = read(tools.cmd("pg_restore").arg("--list"), "--list").await?;
    let mut problems = check_toc(&parse_toc(&list), live);
    let schema =
        read(tools.cmd("pg_restore").arg("--schema-only").arg("--file=-"), "--schema-only").await?;
    problems.extend(check_sql(&schema));
    Ok(problems)
}

/// Refuse to restore as a superuser: a restore runs the dump's statements with the privileges of the
/// role it connects as. `need_createdb`: the swap strategy creates and renames databases.
pub async fn check_restore_role(client: &Client, need_createdb: bool) -> Result<(), String> {
    let row = client
        .query_one(
            "SELECT current_user::text, rolsuper, rolcreatedb FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .map_err(|e| format!("cannot read the restoring role's privileges: {e}"))?;
    let (role, superuser, createdb): (String, bool, bool) = (row.get(0), row.get(1), row.get(2));
    if superuser {
        return Err(format!(
            "the restore would run as `{role}`, a superuser: a dump restored by a superuser can run programs on the server. Connect as the app's own role (database.url), which needs CREATEDB for the swap restore"
        ));
    }
    if need_createdb && !createdb {
        return Err(format!(
            "role `{role}` lacks CREATEDB, which the swap restore needs (it restores into a new database and renames it): `ALTER ROLE {role} CREATEDB`, or set rollback.strategy = \"in-place\""
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = "\
;
; Archive created at 2026-12-04 02:01:10 UTC
;
215; 1259 16385 TABLE public auth_group rail
3400; 0 16385 TABLE DATA public auth_group rail
3420; 0 0 SEQUENCE SET public auth_group_id_seq rail
3230; 2606 16640 FK CONSTRAINT public auth_group_permissions auth_group_permissions_fk rail
3190; 1259 16624 INDEX public evil_idx rail
230; 1255 16700 FUNCTION public evil(integer) rail
231; 3466 16701 EVENT TRIGGER - boom rail
2; 3079 16386 EXTENSION - pg_trgm
9; 1 2 SOMETHING NEW - x rail
";

    #[test]
    fn the_table_of_contents_is_held_to_an_app_database() {
        let entries = parse_toc(LIST);
        assert_eq!(entries.len(), 9);
        assert_eq!(entries[3].kind, "FK CONSTRAINT");
        let problems = check_toc(&entries, &LiveObjects::default());
        assert_eq!(problems.len(), 4, "{problems:#?}");
        assert!(problems[0].contains("FUNCTION") && problems[0].contains("evil"));
        assert!(problems[1].contains("EVENT TRIGGER"));
        assert!(problems[2].contains("EXTENSION"));
        assert!(problems[3].contains("unknown kind"));

        let live = LiveObjects {
            routines: vec![("public".into(), "evil".into())],
            extensions: vec!["pg_trgm".into()],
        };
        assert_eq!(check_toc(&entries, &live).len(), 2);
    }

    #[test]
    fn forbidden_statements_are_found_outside_strings_and_comments() {
        let ok = "SET statement_timeout = 0;\nCOMMENT ON TABLE t IS 'DROP DATABASE x; COPY t TO PROGRAM';\n-- DROP DATABASE\n/* CREATE ROLE /* nested */ x */\nCREATE TABLE \"program\" (id int);\nGRANT SELECT ON TABLE t TO app;\nCREATE INDEX i ON t USING btree (lower(name));\nALTER TABLE t ADD CONSTRAINT c CHECK (x > $1);";
        assert_eq!(check_sql(ok), Vec::<String>::new());
        for bad in [
            "CREATE FUNCTION f() RETURNS int AS $$ COPY t TO PROGRAM 'x' $$ LANGUAGE sql; SELECT 1; COPY t TO PROGRAM 'touch /tmp/x';",
            "drop /* hidden */ database other;",
            "CREATE ROLE evil SUPERUSER;",
            "RESET ROLE;",
            "DO $x$ BEGIN END $x$;",
            "GRANT pg_execute_server_program TO app;",
            "SELECT pg_read_file('/etc/passwd');",
            "ALTER SYSTEM SET x = 1;",
            "SET SESSION AUTHORIZATION postgres;",
        ] {
            assert!(!check_sql(bad).is_empty(), "{bad}");
        }
        // A dollar-quoted body hides nothing that runs outside it, but the statement around it counts.
        assert!(check_sql("SELECT $a$ DROP DATABASE x $a$;").is_empty());
        assert!(!check_sql("E'it\\'s' ; DROP DATABASE x;").is_empty());
    }
}
