//! Journals and the audit log on a real filesystem: crash leftovers, unfinished runs, tampering.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;

use rail_core::journal::audit::{self, AuditRecord, BrokenReason};
use rail_core::journal::{
    self, Journal, JournalError, Resolution, RunId, RunKind, RunOutcome, StepOutcome,
};
use serde_json::json;

fn mode(path: &std::path::Path) -> u32 {
    fs_err::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_finished_run_reads_back_with_its_steps() {
    let backups = tempfile::tempdir().unwrap();
    let dir = journal::dir(backups.path());
    let run_id = RunId::new();
    let mut j =
        Journal::create(&dir, &run_id, RunKind::Deploy, json!({"environment": "staging"})).unwrap();
    assert_eq!(j.step_begin("backup").unwrap(), 1);
    j.step_end("backup", StepOutcome::Ok, json!({"backup": "backup_20260102_030405"})).unwrap();
    assert_eq!(j.step_begin("migrate").unwrap(), 1);
    j.step_end("migrate", StepOutcome::Failed, json!({"error": "boom"})).unwrap();
    assert_eq!(j.step_begin("migrate").unwrap(), 2);
    j.step_end("migrate", StepOutcome::Ok, serde_json::Value::Null).unwrap();
    let path = j.path().to_owned();
    j.finish(RunOutcome::Success).unwrap();

    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&path), 0o600);
    assert_eq!(path, dir.join(format!("{run_id}.jsonl")));

    let state = journal::read(&path).unwrap();
    assert_eq!(state.run_id, run_id);
    assert_eq!(state.kind, RunKind::Deploy);
    assert_eq!(state.meta, json!({"environment": "staging"}));
    assert_eq!(state.steps.len(), 3);
    assert_eq!(state.steps[2].attempt, 2);
    assert_eq!(
        state.completed("backup").unwrap().data,
        json!({"backup": "backup_20260102_030405"})
    );
    assert_eq!(state.finished.as_ref().unwrap().outcome, RunOutcome::Success);
    assert_eq!(state.last_open_step, None);
    assert!(!state.torn_tail);

    // The lines themselves have the documented shape.
    let text = fs_err::read_to_string(&path).unwrap();
    let lines: Vec<serde_json::Value> =
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines[0]["event"], "start");
    assert_eq!(lines[0]["kind"], "deploy");
    assert_eq!(lines[1]["event"], "step_begin");
    assert_eq!(lines[1]["step"], "backup");
    assert_eq!(lines[1]["attempt"], 1);
    assert_eq!(lines[2]["event"], "step_end");
    assert_eq!(lines[2]["outcome"], "ok");
    assert!(lines[2]["duration_ms"].is_u64());
    assert_eq!(lines.len(), 8);
    assert_eq!(lines[7]["event"], "finish");
    assert_eq!(lines[7]["outcome"], "success");
    assert!(lines.iter().all(|l| l["run_id"] == run_id.as_str() && l["ts"].is_string()));
}

#[test]
fn creating_the_same_run_twice_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let run_id = RunId::new();
    let _first = Journal::create(dir.path(), &run_id, RunKind::Rollback, json!({})).unwrap();
    let err = Journal::create(dir.path(), &run_id, RunKind::Rollback, json!({})).unwrap_err();
    assert!(matches!(err, JournalError::Exists { .. }), "{err:?}");
}

#[test]
fn a_torn_last_line_is_ignored_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::create(dir.path(), &RunId::new(), RunKind::Deploy, json!({})).unwrap();
    j.step_begin("backup").unwrap();
    j.step_end("backup", StepOutcome::Ok, json!({"backup": "b1"})).unwrap();
    j.step_begin("migrate").unwrap();
    let path = j.path().to_owned();
    drop(j);
    // A crash in the middle of writing the next line.
    let mut file = fs_err::OpenOptions::new().append(true).open(&path).unwrap();
    file.write_all(br#"{"ts":"2026-01-02T03:04:05Z","run_id":"x","event":"step_e"#).unwrap();
    drop(file);

    let state = journal::read(&path).unwrap();
    assert!(state.torn_tail);
    assert!(state.finished.is_none());
    assert_eq!(state.last_open_step.as_deref(), Some("migrate"));
    assert_eq!(state.completed("backup").unwrap().data, json!({"backup": "b1"}));

    // Resolving cuts the fragment off instead of gluing the finish line to it.
    journal::mark_resolved(&path, &Resolution::Abandoned).unwrap();
    let state = journal::read(&path).unwrap();
    assert!(!state.torn_tail);
    assert_eq!(state.finished.unwrap().outcome, RunOutcome::Abandoned);
}

#[test]
fn a_corrupt_middle_line_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::create(dir.path(), &RunId::new(), RunKind::Deploy, json!({})).unwrap();
    let path = j.path().to_owned();
    j.finish(RunOutcome::Failed).unwrap();
    let text = fs_err::read_to_string(&path).unwrap();
    fs_err::write(&path, format!("{text}garbage\n{text}")).unwrap();
    let err = journal::read(&path).unwrap_err();
    assert!(matches!(err, JournalError::Corrupt { line: 3, .. }), "{err:?}");
}

#[test]
fn unfinished_runs_are_found_and_resolved_once() {
    let backups = tempfile::tempdir().unwrap();
    let dir = journal::dir(backups.path());
    assert!(
        journal::find_unfinished(&dir).unwrap().is_empty(),
        "a missing directory has no journals"
    );

    let done = Journal::create(
        &dir,
        &RunId::at("2026-01-01T00:00:00Z".parse().unwrap()),
        RunKind::Deploy,
        json!({}),
    )
    .unwrap();
    done.finish(RunOutcome::RolledBack).unwrap();

    let dead_id = RunId::at("2026-01-02T00:00:00Z".parse().unwrap());
    let mut dead =
        Journal::create(&dir, &dead_id, RunKind::Deploy, json!({"version": "v2"})).unwrap();
    dead.step_begin("backup").unwrap();
    dead.step_end("backup", StepOutcome::Ok, json!({"backup": "backup_x"})).unwrap();
    dead.step_begin("migrate").unwrap();
    drop(dead); // killed: no finish line

    let dead_rollback_id = RunId::at("2026-01-03T00:00:00Z".parse().unwrap());
    drop(Journal::create(&dir, &dead_rollback_id, RunKind::Rollback, json!({})).unwrap());
    // An empty journal (a crash right after creating the file) is skipped, not fatal.
    fs_err::write(dir.join("20260104T000000Z-abcdef.jsonl"), "").unwrap();
    // Other files in the directory are not journals.
    fs_err::write(dir.join("audit.log"), "").unwrap();

    let unfinished = journal::find_unfinished(&dir).unwrap();
    let ids: Vec<&RunId> = unfinished.iter().map(|s| &s.run_id).collect();
    assert_eq!(ids, [&dead_id, &dead_rollback_id]);
    assert_eq!(unfinished[0].last_open_step.as_deref(), Some("migrate"));
    assert_eq!(unfinished[1].kind, RunKind::Rollback);
    assert_eq!(unfinished[1].last_open_step, None);

    let resumer = RunId::new();
    journal::mark_resolved(&unfinished[0].path, &Resolution::ResumedBy(resumer.clone())).unwrap();
    journal::mark_resolved(&unfinished[1].path, &Resolution::Abandoned).unwrap();
    assert!(journal::find_unfinished(&dir).unwrap().is_empty());
    let finished = journal::read(&unfinished[0].path).unwrap().finished.unwrap();
    assert_eq!(finished.outcome, RunOutcome::Resumed);
    assert_eq!(finished.resolved_by, Some(resumer));
}

#[test]
fn reopen_continues_a_dead_run() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::create(dir.path(), &RunId::new(), RunKind::Deploy, json!({})).unwrap();
    j.step_begin("migrate").unwrap();
    let path = j.path().to_owned();
    drop(j);

    let (mut j, state) = Journal::reopen(&path).unwrap();
    assert_eq!(state.last_open_step.as_deref(), Some("migrate"));
    assert_eq!(j.step_begin("migrate").unwrap(), 2);
    j.step_end("migrate", StepOutcome::Ok, serde_json::Value::Null).unwrap();
    j.finish(RunOutcome::Success).unwrap();
    let state = journal::read(&path).unwrap();
    assert_eq!(state.steps.len(), 2);
    assert!(state.steps[0].end.is_none());
    assert_eq!(state.steps[1].end.as_ref().unwrap().outcome, StepOutcome::Ok);
    assert!(matches!(Journal::reopen(&path).unwrap_err(), JournalError::Finished { .. }));
}

fn record(n: u64) -> AuditRecord {
    AuditRecord {
        ts: "2026-01-02T03:04:05Z".parse().unwrap(),
        run_id: RunId::new(),
        kind: if n % 2 == 0 { RunKind::Deploy } else { RunKind::Rollback },
        environment: "staging".into(),
        outcome: RunOutcome::Success,
        duration_ms: n,
        backup: Some(format!("backup_{n}")),
        app_version_from: Some("v1".into()),
        app_version_to: None,
        user: journal::current_user(),
        host: journal::host_name(),
    }
}

#[test]
fn audit_lines_chain_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = audit::path(&dir.path().join("journal"));
    assert!(audit::read(&path, 10).unwrap().is_empty());
    assert!(audit::verify(&path, None).unwrap().is_intact());

    let first = audit::append(&path, &record(1), None).unwrap();
    assert_eq!(first.prev_sha256, audit::GENESIS);
    let second = audit::append(&path, &record(2), None).unwrap();
    let first_line = fs_err::read_to_string(&path).unwrap().lines().next().unwrap().to_owned();
    assert_eq!(
        second.prev_sha256,
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(first_line.as_bytes()))
    );
    audit::append(&path, &record(3), None).unwrap();
    assert_eq!(mode(&path), 0o600);

    let verification = audit::verify(&path, None).unwrap();
    assert_eq!(verification.lines, 3);
    assert!(verification.is_intact());

    let last_two = audit::read(&path, 2).unwrap();
    assert_eq!(last_two.iter().map(|e| e.record.duration_ms).collect::<Vec<_>>(), [2, 3]);
    assert_eq!(last_two[0], second);
    let line: serde_json::Value = serde_json::from_str(&first_line).unwrap();
    for key in [
        "ts",
        "run_id",
        "kind",
        "environment",
        "outcome",
        "duration_ms",
        "backup",
        "app_version_from",
        "app_version_to",
        "user",
        "host",
        "prev_sha256",
    ] {
        assert!(line.get(key).is_some(), "missing {key} in {line}");
    }
}

fn chain_of(n: u64) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(audit::FILE_NAME);
    for i in 1..=n {
        audit::append(&path, &record(i), None).unwrap();
    }
    (dir, path)
}

#[test]
fn audit_verify_finds_an_edited_line() {
    let (_dir, path) = chain_of(5);
    let text = fs_err::read_to_string(&path).unwrap();
    let edited = text.replacen("\"duration_ms\":2,", "\"duration_ms\":20,", 1);
    assert_ne!(edited, text);
    fs_err::write(&path, edited).unwrap();
    let broken = audit::verify(&path, None).unwrap().broken.unwrap();
    // Line 2 was edited: the link from line 3 to it breaks.
    assert_eq!(broken.line, 3);
    assert!(matches!(broken.reason, BrokenReason::HashMismatch { .. }));
}

#[test]
fn audit_verify_finds_a_deleted_line() {
    let (_dir, path) = chain_of(5);
    let text = fs_err::read_to_string(&path).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.remove(3);
    fs_err::write(&path, format!("{}\n", lines.join("\n"))).unwrap();
    assert_eq!(audit::verify(&path, None).unwrap().broken.unwrap().line, 4);

    // Deleting the first line is caught too: the new first line does not start the chain.
    let (_dir, path) = chain_of(3);
    let text = fs_err::read_to_string(&path).unwrap();
    let rest: String = text.split_inclusive('\n').skip(1).collect();
    fs_err::write(&path, rest).unwrap();
    assert_eq!(audit::verify(&path, None).unwrap().broken.unwrap().line, 1);
}

#[test]
fn audit_append_after_a_torn_line_keeps_the_chain() {
    let (_dir, path) = chain_of(2);
    let mut file = fs_err::OpenOptions::new().append(true).open(&path).unwrap();
    file.write_all(br#"{"ts":"2026-01-02T03:04"#).unwrap();
    drop(file);
    assert_eq!(
        audit::verify(&path, None).unwrap().broken.unwrap().reason,
        BrokenReason::Incomplete
    );
    assert_eq!(audit::read(&path, 10).unwrap().len(), 2);
    audit::append(&path, &record(3), None).unwrap();
    let verification = audit::verify(&path, None).unwrap();
    assert_eq!(verification.lines, 3);
    assert!(verification.is_intact());
}

#[test]
fn concurrent_audit_appends_never_interleave() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(audit::FILE_NAME);
    std::thread::scope(|scope| {
        for t in 0..4 {
            let path = &path;
            scope.spawn(move || {
                for i in 0..25 {
                    audit::append(path, &record(t * 100 + i), None).unwrap();
                }
            });
        }
    });
    let verification = audit::verify(&path, None).unwrap();
    assert_eq!(verification.lines, 100);
    assert!(verification.is_intact(), "{verification:?}");
}

#[test]
fn the_end_of_the_audit_log_is_checked_against_its_head() {
    use rail_core::backup::auth::{BackupKey, Keyring};
    let keys = Keyring::single(
        BackupKey::parse(&format!("rail-backup-key-v1:{}", "11".repeat(32)), "test").unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = audit::path(&dir.path().join("journal"));
    for i in 1..=4 {
        audit::append(&path, &record(i), Some(&keys)).unwrap();
    }
    let head = path.with_file_name(audit::HEAD_FILE);
    assert_eq!(mode(&head), 0o600);
    let verification = audit::verify(&path, Some(&keys)).unwrap();
    assert!(verification.is_intact() && verification.anchored, "{verification:?}");
    let original = fs_err::read_to_string(&path).unwrap();
    let lines: Vec<&str> = original.lines().collect();
    let broken_at = |text: &str| {
        fs_err::write(&path, text).unwrap();
        let v = audit::verify(&path, Some(&keys)).unwrap();
        v.broken.map(|b| (b.line, b.to_string()))
    };

    // The last line deleted; the last two; everything but the first.
    for keep in [3, 2, 1] {
        let text: String = lines[..keep].iter().flat_map(|l| [*l, "\n"]).collect();
        let (line, why) = broken_at(&text).expect("a truncated log is caught");
        assert_eq!(line, keep);
        assert!(why.contains("last lines were removed or changed"), "{why}");
    }
    // The last line edited (its own chain link left intact).
    let edited = original.replacen("\"duration_ms\":4", "\"duration_ms\":5", 1);
    assert_ne!(edited, original);
    assert!(broken_at(&edited).is_some(), "an edited last line is caught");
    // The whole log removed.
    fs_err::remove_file(&path).unwrap();
    assert!(audit::verify(&path, Some(&keys)).unwrap().broken.is_some());

    // A head rewritten to match a truncated log, without the key, is caught by its MAC.
    let text: String = lines[..3].iter().flat_map(|l| [*l, "\n"]).collect();
    fs_err::write(&path, &text).unwrap();
    let last = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(lines[2].as_bytes()));
    let forged = format!(
        "{{\"lines\":3,\"last_sha256\":\"{last}\",\"key_id\":\"{}\",\"mac\":\"{}\"}}\n",
        keys.signing().unwrap().id(),
        "00".repeat(32)
    );
    fs_err::write(&head, forged).unwrap();
    let why = audit::verify(&path, Some(&keys)).unwrap().broken.expect("caught").to_string();
    assert!(why.contains("not authenticated"), "{why}");
    // A head removed: the end cannot be checked, and the verification says so.
    fs_err::remove_file(&head).unwrap();
    assert!(!audit::verify(&path, Some(&keys)).unwrap().anchored);
}
