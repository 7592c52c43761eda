//! A test's own database (cloned from the stack's template), static and media trees, backup directory
//! and configuration file, and ways to compare them before and after.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fs_err as fs;
use rail_testkit::{bin, cmd, query, Output, Running, Stack, TestDb, TestDir};

/// Everything one test restores into and from.
pub(crate) struct Env {
    pub(crate) db: TestDb,
    pub(crate) dir: TestDir,
    pub(crate) config: PathBuf,
}

/// Extra lines for the configuration file.
pub(crate) struct Settings {
    /// Inside `[backup]`.
    pub(crate) backup: &'static str,
    /// Sections after the others; `{root}` is the test's directory.
    pub(crate) sections: &'static str,
}

impl Env {
    pub(crate) fn new() -> Env {
        Self::with(&Settings { backup: "", sections: "" })
    }

    pub(crate) fn with(settings: &Settings) -> Env {
        let db = TestDb::new();
        let dir = TestDir::new();
        let config = dir.join("rail.toml");
        let stack = Stack::get();
        fs::write(
            &config,
            format!(
                r#"environment = "test"

[database]
url = "{url}"
pg_bindir = "{bindir}"

[app]
static_dir = "{root}/app/static"
media_dir = "{root}/app/media"

[backup]
directory = "{root}/backups"
{backup}

[rollback.safety_checks]
require_confirmation = true

{sections}
"#,
                url = db.url(),
                bindir = stack.pg_bin("pg_dump").parent().unwrap().display(),
                root = dir.path().display(),
                backup = settings.backup,
                sections = settings.sections.replace("{root}", &dir.path().display().to_string()),
            ),
        )
        .unwrap();
        let env = Env { db, dir, config };
        env.seed_files();
        env.seed_database();
        env
    }

    pub(crate) fn static_dir(&self) -> PathBuf {
        self.dir.join("app/static")
    }

    pub(crate) fn media_dir(&self) -> PathBuf {
        self.dir.join("app/media")
    }

    pub(crate) fn backups(&self) -> PathBuf {
        self.dir.join("backups")
    }

    pub(crate) fn set_dir(&self, name: &str) -> PathBuf {
        self.backups().join(name)
    }

    /// Run `rollback -c <config> ARGS` with a cleared environment.
    pub(crate) fn rollback(&self, args: &[&str]) -> Output {
        self.command(args).run()
    }

    /// Run `rollback -c <config> ARGS` with these variables added.
    pub(crate) fn rollback_with(&self, args: &[&str], vars: &[(&str, &str)]) -> Output {
        self.command_with(args, vars).run()
    }

    /// The command `rollback -c <config> ARGS` with these variables added, to run or spawn.
    pub(crate) fn command_with(&self, args: &[&str], vars: &[(&str, &str)]) -> rail_testkit::Cmd {
        let mut c = self.command(args);
        for (k, v) in vars {
            c.env(k, v);
        }
        c
    }

    /// Start `rollback -c <config> ARGS`.
    pub(crate) fn spawn(&self, args: &[&str]) -> Running {
        self.command(args).spawn()
    }

    fn command(&self, args: &[&str]) -> rail_testkit::Cmd {
        let mut c = cmd(bin("rollback"));
        c.arg("--config").arg(&self.config).args(args).timeout(Duration::from_secs(300));
        c
    }

    /// A backup set named `name`, which must succeed.
    pub(crate) fn backup(&self, name: &str) {
        self.rollback(&["backup", "--name", name]).assert_success();
    }

    fn seed_files(&self) {
        let s = self.static_dir();
        let m = self.media_dir();
        write(&s.join("css/site.css"), b"body { margin: 0 }\n", 0o644);
        write(&s.join("js/app.js"), b"console.log('v1')\n", 0o644);
        write(&s.join("admin/img/logo.svg"), b"<svg/>", 0o640);
        fs::create_dir_all(s.join("empty")).unwrap();
        fs::os::unix::fs::symlink("css/site.css", s.join("site.css")).unwrap();
        write(&m.join("uploads/2024/a.bin"), &noise(70_000, 1), 0o600);
        write(&m.join("uploads/2024/b.txt"), "é unicode ✓\n".as_bytes(), 0o644);
        write(&m.join("avatars/x.png"), &noise(5_000, 2), 0o644);
        fs::set_permissions(m.join("avatars"), std::fs::Permissions::from_mode(0o750)).unwrap();
    }

    fn seed_database(&self) {
        self.db.execute(
            "CREATE TABLE events (
                 id bigserial PRIMARY KEY,
                 at timestamptz NOT NULL DEFAULT now(),
                 kind text NOT NULL,
                 payload jsonb,
                 amount numeric(12, 2),
                 raw bytea
             );
             INSERT INTO events (at, kind, payload, amount, raw)
             SELECT timestamptz '2024-01-01 00:00:00+00' + g * interval '1 minute',
                    CASE WHEN g % 3 = 0 THEN 'order' ELSE 'view' END,
                    jsonb_build_object('n', g, 'tags', jsonb_build_array('a', g % 7), 'note', 'naïve ☃'),
                    CASE WHEN g % 5 = 0 THEN NULL ELSE g * 1.25 END,
                    decode(md5(g::text), 'hex')
             FROM generate_series(1, 2000) g;
             CREATE INDEX events_kind ON events (kind);
             CREATE VIEW orders AS SELECT id, amount FROM events WHERE kind = 'order';
             CREATE FUNCTION twice(x int) RETURNS int LANGUAGE sql AS 'SELECT x * 2';
             CREATE SCHEMA reporting;
             CREATE TABLE reporting.daily (day date PRIMARY KEY, total numeric);
             INSERT INTO reporting.daily SELECT d::date, 10 FROM generate_series('2024-01-01'::date, '2024-02-01', '1 day') d;
             SELECT lo_from_bytea(0, 'a large object');",
        );
    }

    /// The database as a comparable value: its schema (pg_dump --schema-only), a checksum of every table,
    /// every sequence's position and every large object.
    pub(crate) fn db_state(&self) -> DbState {
        db_state(self.db.url())
    }

    /// The static and media trees as comparable values.
    pub(crate) fn files_state(&self) -> (Tree, Tree) {
        (tree(&self.static_dir()), tree(&self.media_dir()))
    }

    /// Change everything a rollback must undo.
    pub(crate) fn mutate(&self) {
        self.db.execute(
            "UPDATE events SET kind = 'changed' WHERE id % 10 = 0;
             DELETE FROM events WHERE id > 1900;
             INSERT INTO events (kind) VALUES ('new');
             CREATE TABLE added_by_migration (id int);
             ALTER TABLE reporting.daily ADD COLUMN note text;
             SELECT lo_unlink(oid) FROM pg_largeobject_metadata;",
        );
        fs::remove_file(self.media_dir().join("uploads/2024/a.bin")).unwrap();
        fs::remove_dir_all(self.media_dir().join("avatars")).unwrap();
        write(&self.media_dir().join("uploads/new.bin"), b"new upload", 0o644);
        write(&self.static_dir().join("css/site.css"), b"body { margin: 1px }\n", 0o644);
        fs::set_permissions(
            self.static_dir().join("js/app.js"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        write(&self.static_dir().join("js/v2.js"), b"v2", 0o644);
    }

    /// Wait until `what` holds (or `limit` passes); true when it does.
    pub(crate) fn wait_for(what: impl Fn() -> bool, limit: Duration) -> bool {
        let started = Instant::now();
        while started.elapsed() < limit {
            if what() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        false
    }

    /// The journal files there are now.
    pub(crate) fn journal_files(&self) -> std::collections::BTreeSet<PathBuf> {
        let dir = self.backups().join("journal");
        let Ok(entries) = fs::read_dir(&dir) else { return std::collections::BTreeSet::new() };
        entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
            .collect()
    }

    /// Text of the journal files that are not in `before`.
    pub(crate) fn new_journals(&self, before: &std::collections::BTreeSet<PathBuf>) -> String {
        self.journal_files()
            .difference(before)
            .map(|p| fs::read_to_string(p).unwrap_or_default())
            .collect()
    }

    /// Databases a restore left beside the test's own.
    pub(crate) fn leftover_databases(&self) -> Vec<String> {
        let admin = Stack::get().database_url_for("postgres");
        let rows = query(
            &admin,
            &format!(
                "SELECT datname FROM pg_database WHERE datname LIKE '{}\\_\\_rail\\_%' ORDER BY 1",
                self.db.name()
            ),
        )
        .unwrap();
        rows.into_iter().filter_map(|r| r.into_iter().next().flatten()).collect()
    }

    /// Make the media tree large (random, so it compresses slowly) for tests that interrupt a run.
    pub(crate) fn make_media_slow(&self, megabytes: usize) {
        for i in 0..megabytes / 8 {
            write(
                &self.media_dir().join(format!("big/{i}.bin")),
                &noise(8 << 20, 100 + i as u64),
                0o644,
            );
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // The databases a swap kept are the test's to remove; TestDb drops only its own.
        let admin = Stack::get().database_url_for("postgres");
        for name in self.leftover_databases() {
            let _ = query(&admin, &format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"));
        }
    }
}

fn write(path: &Path, content: &[u8], mode: u32) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
    fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Deterministic incompressible bytes.
/// The stack's backup key, to sign a manifest a test changed on purpose (as rail would have written
/// it), so that the layer under test is the one that has to catch the change.
pub(crate) fn stack_keys() -> rail_core::backup::Keyring {
    let path = Stack::get().var("RAIL_BACKUP_KEY_FILE").expect("the stack has a backup key");
    rail_core::backup::Keyring::single(
        rail_core::backup::auth::BackupKey::read_file(Path::new(path)).unwrap(),
    )
}

pub(crate) fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A database's schema and content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DbState {
    pub(crate) schema: String,
    pub(crate) tables: BTreeMap<String, String>,
}

pub(crate) fn db_state(url: &str) -> DbState {
    let stack = Stack::get();
    let out = cmd(stack.pg_bin("pg_dump")).args(["--schema-only", "--dbname", url]).run();
    out.assert_success();
    // pg_dump marks its output with a random \restrict key; everything else must match.
    let schema: String = out
        .stdout
        .lines()
        .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut tables = BTreeMap::new();
    let rows = query(
        url,
        "SELECT format('%I.%I', n.nspname, c.relname), c.relkind::text FROM pg_class c
         JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind IN ('r', 'S') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
           AND n.nspname NOT LIKE 'pg\\_toast%' ORDER BY 1",
    )
    .unwrap();
    for row in rows {
        let (name, kind) = (row[0].clone().unwrap(), row[1].clone().unwrap());
        let sql = if kind == "S" {
            format!("SELECT last_value::text || '/' || is_called::text FROM {name}")
        } else {
            format!("SELECT count(*)::text || ':' || coalesce(md5(string_agg(t::text, ',' ORDER BY t::text)), '') FROM {name} t")
        };
        let value = query(url, &sql).unwrap()[0][0].clone().unwrap_or_default();
        tables.insert(name, value);
    }
    let objects = query(
        url,
        "SELECT coalesce(string_agg(oid::text || '=' || md5(lo_get(oid)), ',' ORDER BY oid), '') FROM pg_largeobject_metadata",
    )
    .unwrap();
    tables.insert("(large objects)".into(), objects[0][0].clone().unwrap_or_default());
    DbState { schema, tables }
}

/// Path → (kind, mode, content or link target).
pub(crate) type Tree = BTreeMap<String, (String, u32, Vec<u8>)>;

pub(crate) fn tree(root: &Path) -> Tree {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    if let Ok(meta) = fs::metadata(root) {
        out.insert(".".into(), ("dir".into(), meta.mode() & 0o7777, Vec::new()));
    }
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else { continue };
        for entry in entries {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let meta = fs::symlink_metadata(&path).unwrap();
            let value = if meta.file_type().is_symlink() {
                (
                    "link".into(),
                    0,
                    fs::read_link(&path).unwrap().into_os_string().into_encoded_bytes(),
                )
            } else if meta.is_dir() {
                stack.push(path.clone());
                ("dir".into(), meta.mode() & 0o7777, Vec::new())
            } else {
                ("file".into(), meta.mode() & 0o7777, fs::read(&path).unwrap())
            };
            out.insert(rel, value);
        }
    }
    out
}
