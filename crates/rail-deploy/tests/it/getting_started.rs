//! docs/getting-started.md, run: every `deploy`, `rollback` and `healthcheck` line of its shell blocks, in
//! order, against a demo app on the local stack (v1 running, v2 installed), with the stack's
//! configuration in place of `/etc/rail/production.toml` and a key of the test's in place of
//! `/etc/rail/backup.key`. The systemd unit is the one part not run: there is no systemd here, and the
//! local stack's `releases` backend starts gunicorn itself.

use rail_testkit::{cmd, workspace_root, TestDir};

use crate::support::{all_output, World};

const TOOLS: [&str; 3] = ["deploy", "rollback", "healthcheck"];

/// The tool command lines of the guide's `sh` blocks, in order.
fn guide_commands(text: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut in_sh = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if let Some(fence) = trimmed.strip_prefix("```") {
            in_sh = !in_sh && fence == "sh";
            continue;
        }
        if !in_sh {
            continue;
        }
        let words: Vec<String> = trimmed.split_whitespace().map(str::to_owned).collect();
        if words.first().is_some_and(|w| TOOLS.contains(&w.as_str())) {
            out.push(words);
        }
    }
    out
}

#[test]
fn the_getting_started_guide_runs_on_the_local_stack() {
    let guide = fs_err::read_to_string(workspace_root().join("docs/getting-started.md")).unwrap();
    let commands = guide_commands(&guide);
    let shown: Vec<String> = commands.iter().map(|c| c.join(" ")).collect();
    // The walkthrough as the guide tells it: the key, the checks and first backup, the deploy.
    assert_eq!(
        shown
            .iter()
            .map(|c| c.split(' ').take(2).collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>(),
        [
            "rollback keygen",
            "healthcheck --config",
            "rollback --config",
            "rollback --config",
            "rollback --config",
            "deploy --config",
            "deploy --config",
            "deploy --config",
            "rollback --config",
        ],
        "{shown:#?}"
    );

    let w = World::new("v1", &["v2"]);
    let keys = TestDir::new();
    let key = keys.path().join("backup.key");
    let config = World::config().display().to_string();
    for words in &commands {
        let words: Vec<String> = words
            .iter()
            .map(|w| match w.as_str() {
                "/etc/rail/production.toml" => config.clone(),
                "/etc/rail/backup.key" => key.display().to_string(),
                other => other.to_owned(),
            })
            .collect();
        let program = match words[0].as_str() {
            "deploy" => env!("CARGO_BIN_EXE_deploy").into(),
            other => rail_testkit::bin(other),
        };
        let mut c = cmd(program);
        c.args(&words[1..]).envs(w.deploy_env()).env("RAIL_BACKUP_KEY_FILE", &key);
        c.timeout(std::time::Duration::from_secs(300));
        let out = c.run();
        assert!(out.success(), "`{}` failed:\n{}", words.join(" "), out.describe());
        w.assert_no_secret(&all_output(&out), &words.join(" "));
        if words[0] == "rollback" && words.get(3).is_some_and(|w| w == "list") {
            assert!(out.stdout.contains("backup_"), "{}", out.describe());
        }
    }
    assert_eq!(w.served_release().as_deref(), Some("v2"), "the guide's deploy put v2 in service");
    assert!(w.has_stock_column(), "v2's migration ran");
}
