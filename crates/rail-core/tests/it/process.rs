//! `rail_core::process` against real programs: sh, sleep, cat, head.

use std::time::Duration;

use rail_core::process::{Cmd, ProcessError};
use rail_core::secret::Secret;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Processes (not zombies) whose process group is `pgid`, from /proc.
fn live_members(pgid: u32) -> Vec<String> {
    let mut members = Vec::new();
    for entry in fs_err::read_dir("/proc").unwrap().filter_map(Result::ok) {
        let Ok(stat) = fs_err::read_to_string(entry.path().join("stat")) else { continue };
        let Some(close) = stat.rfind(')') else { continue };
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        if fields.len() > 2 && fields[2] == pgid.to_string() && fields[0] != "Z" && fields[0] != "X"
        {
            members.push(stat);
        }
    }
    members
}

/// Wait (bounded) until nothing of the group is alive; returns what is left.
async fn group_after_settling(pgid: u32) -> Vec<String> {
    for _ in 0..200 {
        if live_members(pgid).is_empty() {
            return Vec::new();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    live_members(pgid)
}

#[tokio::test]
async fn output_captures_stdout_and_status() {
    let out = Cmd::new("sh")
        .args(["-c", "printf 'hello\\nworld'; echo note >&2"])
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout_text(), "hello\nworld");
    assert_eq!(out.stderr, "note\n");
}

#[tokio::test]
async fn non_zero_exit_is_an_error_with_status_and_stderr_tail() {
    let script = "for i in $(seq 1 30); do echo line$i >&2; done; exit 3";
    let err = Cmd::new("sh").args(["-c", script]).output().await.unwrap_err();
    assert_eq!(err.status().and_then(|s| s.code()), Some(3));
    let ProcessError::Failed { command, stderr_tail, .. } = &err else {
        panic!("unexpected error {err:?}")
    };
    assert!(command.starts_with("sh -c "), "{command}");
    let lines: Vec<&str> = stderr_tail.lines().collect();
    assert_eq!(lines.len(), 20);
    assert_eq!(lines.first(), Some(&"line11"));
    assert_eq!(lines.last(), Some(&"line30"));
    let message = err.to_string();
    assert!(message.contains("exited with code 3"), "{message}");
    assert!(message.ends_with("line30"), "{message}");
}

#[tokio::test]
async fn false_fails_and_run_reports_it() {
    let err = Cmd::new("false").run().await.unwrap_err();
    assert_eq!(err.status().and_then(|s| s.code()), Some(1));
    Cmd::new("true").run().await.unwrap();
}

#[tokio::test]
async fn missing_program_is_a_spawn_error() {
    let err = Cmd::new("/nonexistent/rail-no-such-program").output().await.unwrap_err();
    assert!(matches!(err, ProcessError::Spawn { .. }), "{err:?}");
    assert_eq!(err.to_string(), "could not start `/nonexistent/rail-no-such-program`");
}

#[tokio::test]
async fn secrets_never_reach_display_or_errors() {
    let secret = Secret::new("hunter2-very-secret");
    let url = "postgresql://app:pw%40123@127.0.0.1:1/app";
    let cmd = Cmd::new("sh")
        .args(["-c", "echo \"arg=$1 env=$RAIL_SECRET url=$2\" >&2; exit 7", "sh"])
        .secret_arg(&secret)
        .arg(url)
        .secret_env("RAIL_SECRET", &secret);
    let shown = cmd.display();
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(!shown.contains("pw%40123"), "{shown}");
    assert!(shown.contains("RAIL_SECRET=***"), "{shown}");

    let err = cmd.output().await.unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(!text.contains("pw%40123"), "{text}");
    let ProcessError::Failed { stderr_tail, status, .. } = &err else {
        panic!("unexpected error {err:?}")
    };
    assert_eq!(status.code(), Some(7));
    // The program did receive the secrets: it printed them, and they were scrubbed.
    assert_eq!(stderr_tail, "arg=*** env=*** url=postgresql://app:***@127.0.0.1:1/app");
}

#[tokio::test]
async fn env_clear_cwd_and_env_reach_the_child() {
    let dir = tempfile::tempdir().unwrap();
    let out = Cmd::new("/bin/sh")
        .args(["-c", "pwd; echo \"${HOME:-unset} $ONLY\""])
        .env_clear()
        .env("ONLY", "this")
        .cwd(dir.path())
        .output()
        .await
        .unwrap();
    let expected = format!("{}\nunset this\n", dir.path().canonicalize().unwrap().display());
    assert_eq!(out.stdout_text(), expected);
}

#[tokio::test]
async fn timeout_kills_the_whole_group() {
    let running = Cmd::new("sh")
        .args(["-c", "sleep 30 & wait"])
        .timeout(Duration::from_millis(300))
        .spawn()
        .unwrap();
    let pgid = running.pid().unwrap();
    let err = running.wait().await.unwrap_err();
    assert!(matches!(err, ProcessError::Timeout { .. }), "{err:?}");
    assert_eq!(err.to_string(), "`sh -c 'sleep 30 & wait'` timed out after 300ms");
    assert_eq!(group_after_settling(pgid).await, Vec::<String>::new());
}

#[tokio::test]
async fn timeout_escalates_to_sigkill_for_what_ignores_sigterm() {
    let running = Cmd::new("sh")
        .args(["-c", "trap '' TERM; sleep 30 & wait; wait"])
        .timeout(Duration::from_millis(300))
        .kill_grace(Duration::from_millis(300))
        .spawn()
        .unwrap();
    let pgid = running.pid().unwrap();
    let err = running.wait().await.unwrap_err();
    assert!(matches!(err, ProcessError::Timeout { .. }), "{err:?}");
    assert_eq!(group_after_settling(pgid).await, Vec::<String>::new());
}

#[tokio::test]
async fn output_with_timeout_also_stops_the_group() {
    let err = Cmd::new("sh")
        .args(["-c", "echo started; sleep 30 & wait"])
        .timeout(Duration::from_millis(300))
        .output()
        .await
        .unwrap_err();
    assert!(matches!(err, ProcessError::Timeout { .. }), "{err:?}");
}

#[tokio::test]
async fn dropping_a_running_program_stops_its_group() {
    let running = Cmd::new("sh")
        .args(["-c", "sleep 30 & wait"])
        .kill_grace(Duration::from_millis(300))
        .spawn()
        .unwrap();
    let pgid = running.pid().unwrap();
    assert!(!live_members(pgid).is_empty());
    drop(running);
    assert_eq!(group_after_settling(pgid).await, Vec::<String>::new());
}

#[tokio::test]
async fn dropping_the_output_future_stops_the_group() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let cmd = Cmd::new("sh").args(["-c", "echo $$ > \"$1\"; sleep 30 & wait", "sh"]).arg(&pid_file);
    let outcome = tokio::time::timeout(Duration::from_millis(500), cmd.output()).await;
    assert!(outcome.is_err(), "sleep 30 finished within 500 ms");
    let pgid: u32 = fs_err::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    assert_eq!(group_after_settling(pgid).await, Vec::<String>::new());
}

#[tokio::test]
async fn a_background_process_left_behind_does_not_hang_output() {
    // The program exits at once but leaves a child holding its stdout; output() returns what was printed.
    let out = Cmd::new("sh").args(["-c", "echo done; sleep 5 &"]).output().await.unwrap();
    assert_eq!(out.stdout_text(), "done\n");
}

#[tokio::test]
async fn streams_large_output_in_chunks() {
    const SIZE: u64 = 50 * 1024 * 1024;
    let mut running =
        Cmd::new("head").args(["-c", &SIZE.to_string(), "/dev/zero"]).spawn().unwrap();
    let mut stdout = running.stdout.take().unwrap();
    let mut hasher = Sha256::new();
    let mut total = 0u64;
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = stdout.read(&mut chunk).await.unwrap();
        if n == 0 {
            break;
        }
        hasher.update(&chunk[..n]);
        total += n as u64;
    }
    running.wait().await.unwrap();
    assert_eq!(total, SIZE);
    let mut expected = Sha256::new();
    let zeros = vec![0u8; 1024 * 1024];
    for _ in 0..50 {
        expected.update(&zeros);
    }
    assert_eq!(hasher.finalize(), expected.finalize());
}

#[tokio::test]
async fn stdin_can_be_piped() {
    let mut running = Cmd::new("cat").stdin_piped().spawn().unwrap();
    let mut stdin = running.stdin.take().unwrap();
    let mut stdout = running.stdout.take().unwrap();
    stdin.write_all(b"through cat").await.unwrap();
    drop(stdin);
    let mut text = String::new();
    stdout.read_to_string(&mut text).await.unwrap();
    running.wait().await.unwrap();
    assert_eq!(text, "through cat");
}

#[tokio::test]
async fn stderr_keeps_only_its_end() {
    // 200 KiB of stderr: the program is not blocked by it, and only the last 64 KiB are kept.
    let out = Cmd::new("sh")
        .args(["-c", "head -c 204800 /dev/zero | tr '\\0' 'x' >&2; echo END >&2"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.stderr.len(), 64 * 1024);
    assert!(out.stderr.ends_with("xEND\n"));
}
