//! The older tools' JSON files, accepted unchanged: `deployment-<env>.json` and `rollback_config.json`.
//!
//! Each is translated into the tree of the TOML format, key by key, so that the same merge, validation
//! and error messages apply. A JSON file already written in the TOML format's shape is taken as it is.

use serde_json::{Map, Value};

/// What kind of JSON file this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JsonKind {
    /// Already in the shape of the TOML format.
    Native,
    /// `deployment-<env>.json` of the older deploy script.
    Deployment,
    /// `rollback_config.json` of the older rollback script.
    Rollback,
}

/// Top-level keys of `deployment-<env>.json`; they all live in `[deploy]`.
pub(crate) const DEPLOYMENT_KEYS: &[&str] = &[
    "database_backup",
    "run_tests",
    "health_check_timeout",
    "rollback_on_failure",
    "maintenance_mode",
    "static_files",
    "cache_clear",
    "services",
    "health_checks",
];

/// Top-level keys of `rollback_config.json`.
pub(crate) const ROLLBACK_KEYS: &[&str] = &[
    "database",
    "backup_directory",
    "max_rollback_age_days",
    "safety_checks",
    "notifications",
    "docker_compose",
    "rollback_procedures",
    "monitoring",
];

/// Decide which kind of file `root` is from its top-level keys: the kind that knows every key wins;
/// when none does, the kind that knows most of them, so the unknown ones are reported against it.
pub(crate) fn classify(root: &Map<String, Value>, native_keys: &[String]) -> JsonKind {
    let known_by = |keys: &mut dyn Iterator<Item = &str>| {
        let keys: Vec<&str> = keys.collect();
        root.keys().filter(|k| keys.contains(&k.as_str())).count()
    };
    let native = known_by(&mut native_keys.iter().map(String::as_str));
    let deployment = known_by(&mut DEPLOYMENT_KEYS.iter().copied());
    let rollback = known_by(&mut ROLLBACK_KEYS.iter().copied());
    let total = root.len();
    // `database` is both a native section and a rollback_config key; the file is native when every key is.
    if native == total {
        JsonKind::Native
    } else if deployment == total {
        JsonKind::Deployment
    } else if rollback == total {
        JsonKind::Rollback
    } else if deployment >= rollback && deployment >= native {
        JsonKind::Deployment
    } else if rollback >= native {
        JsonKind::Rollback
    } else {
        JsonKind::Native
    }
}

/// Translate a file of `kind` into the TOML format's tree.
///
/// Keys the older format does not have are kept where they stand so that validation reports them
/// (with a did-you-mean against the older format's keys, see [`legacy_key_hint`]).
pub(crate) fn translate(kind: JsonKind, root: Map<String, Value>) -> Map<String, Value> {
    match kind {
        JsonKind::Native => root,
        JsonKind::Deployment => {
            let mut out = Map::new();
            let mut deploy = Map::new();
            for (key, value) in root {
                if DEPLOYMENT_KEYS.contains(&key.as_str()) {
                    deploy.insert(key, value);
                } else {
                    out.insert(key, value);
                }
            }
            // The older tools always opened the maintenance window: a file of theirs keeps doing so.
            deploy.entry("strategy").or_insert_with(|| Value::String("maintenance".into()));
            out.insert("deploy".into(), Value::Object(deploy));
            out
        }
        JsonKind::Rollback => {
            let mut out = Map::new();
            for (key, value) in root {
                match key.as_str() {
                    "backup_directory" => {
                        section(&mut out, "backup").insert("directory".into(), value);
                    }
                    "max_rollback_age_days" | "safety_checks" => {
                        section(&mut out, "rollback").insert(key, value);
                    }
                    "rollback_procedures" => {
                        section(&mut out, "rollback").insert("procedures".into(), value);
                    }
                    "docker_compose" => {
                        let services = section(&mut out, "services");
                        services.insert("backend".into(), Value::String("compose".into()));
                        services.insert("compose".into(), value);
                    }
                    // `database`, `notifications` and `monitoring` have the same shape in both formats;
                    // anything else stays put so validation reports it.
                    _ => {
                        out.insert(key, value);
                    }
                }
            }
            out
        }
    }
}

/// For a key unknown in a legacy file, the legacy keys to suggest from.
pub(crate) fn legacy_key_hint(kind: JsonKind) -> &'static [&'static str] {
    match kind {
        JsonKind::Native => &[],
        JsonKind::Deployment => DEPLOYMENT_KEYS,
        JsonKind::Rollback => ROLLBACK_KEYS,
    }
}

fn section<'a>(out: &'a mut Map<String, Value>, name: &str) -> &'a mut Map<String, Value> {
    let entry = out.entry(name.to_owned()).or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    entry.as_object_mut().expect("just made an object")
}
