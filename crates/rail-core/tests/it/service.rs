//! `rail_core::service`: the `releases` backend running the demo app under real gunicorn processes,
//! switching releases and stopping them, and its pid-file rules against real processes.

use std::path::Path;
use std::time::Duration;

use rail_core::config::{Config, HumanDuration, ServiceBackend};
use rail_core::process::Cmd;
use rail_core::service::{controller, Controller, ServiceController, ServiceError, ServiceState};
use rail_testkit::{http_get, Stack, TestApp, TestDb, TestDir, TestRedis};

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(future)
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// Whether a process (not a zombie) with this pid exists.
fn alive(pid: i32) -> bool {
    fs_err::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat.rfind(')').and_then(|i| stat[i + 1..].split_whitespace().next());
        !matches!(state, Some("Z" | "X") | None)
    })
}

/// The release the demo app says it runs.
fn release_of(app: &TestApp) -> String {
    let response = http_get(&app.health_url()).unwrap();
    assert_eq!(response.status, 200, "{}", response.body);
    response.json()["release"].as_str().unwrap().to_owned()
}

/// A `releases` configuration for the test app's root, starting gunicorn the way deploy-configs/local.toml
/// does.
fn releases_config(app: &TestApp) -> Config {
    let root = app.root();
    let pid_file = app.pid_file().display().to_string();
    let log = root.join("log/gunicorn.log").display().to_string();
    let mut config = Config::default();
    config.services.backend = ServiceBackend::Releases;
    config.services.start_timeout = HumanDuration::from_secs(90);
    config.services.stop_timeout = HumanDuration::from_secs(20);
    root.clone_into(&mut config.services.releases.root);
    config.services.releases.pid_file = app.pid_file();
    config.services.releases.ready_url = app.health_url();
    config.services.releases.start = strings(&[
        &Stack::get().gunicorn().display().to_string(),
        "demo.wsgi:application",
        "--chdir",
        "{current}",
        "--bind",
        &format!("127.0.0.1:{}", app.port()),
        "--workers",
        "2",
        "--pid",
        &pid_file,
        "--daemon",
        "--error-logfile",
        &log,
        "--capture-output",
    ]);
    Stack::get().python().clone_into(&mut config.app.python);
    config.app.env_file = root.join("shared/app.env");
    config
}

#[test]
fn releases_backend_switches_and_restarts_the_demo_app() {
    let db = TestDb::new();
    let redis = TestRedis::new();
    let app = TestApp::start("v1", &db, &redis);
    app.add_release("v2");
    let services = controller(&releases_config(&app)).unwrap();
    assert!(matches!(services, Controller::Releases(_)));

    // The app the test kit started is recognised as the app, on v1.
    let first_pid = app.pid().unwrap();
    let status = block_on(services.status()).unwrap();
    assert_eq!(status.len(), 1);
    assert_eq!(status[0].state, ServiceState::Running);
    assert_eq!(status[0].pid, Some(first_pid as u32));
    assert_eq!(status[0].version.as_deref(), Some("v1"));
    assert_eq!(release_of(&app), "v1");

    // Restart onto v2: the old master is stopped, current switched, a new master answers as v2.
    block_on(services.restart(&strings(&["web"]), Some("v2"))).unwrap();
    assert!(!alive(first_pid));
    let second_pid = app.pid().unwrap();
    assert_ne!(second_pid, first_pid);
    assert_eq!(release_of(&app), "v2");
    assert_eq!(fs_err::read_link(app.root().join("current")).unwrap(), Path::new("releases/v2"));
    assert_eq!(block_on(services.current_version()).unwrap().as_deref(), Some("v2"));
    assert_eq!(block_on(services.status()).unwrap()[0].version.as_deref(), Some("v2"));

    // A restart onto a release that is not installed changes nothing.
    let err = block_on(services.restart(&[], Some("v9"))).unwrap_err();
    assert!(matches!(err, ServiceError::UnknownRelease { .. }), "{err}");
    assert_eq!(app.pid(), Some(second_pid));

    // Stop: the master and its workers are gone, and so is the pid file.
    let workers = children_of(second_pid);
    assert_eq!(workers.len(), 2, "gunicorn runs two workers");
    block_on(services.stop(&[])).unwrap();
    assert!(!alive(second_pid));
    assert!(workers.iter().all(|w| !alive(*w)));
    assert!(!app.pid_file().exists());
    assert!(http_get(&app.health_url()).is_err());
    let status = block_on(services.status()).unwrap();
    assert_eq!(status[0].state, ServiceState::Stopped);
    assert_eq!(status[0].pid, None);

    // Start back on v1; a second start of the running release leaves it alone.
    block_on(services.start(&[], Some("v1"))).unwrap();
    assert_eq!(release_of(&app), "v1");
    let third_pid = app.pid().unwrap();
    block_on(services.start(&[], None)).unwrap();
    assert_eq!(app.pid(), Some(third_pid));
    block_on(services.wait_ready(&[], Duration::from_secs(5))).unwrap();
}

/// Clients asking `url` through a new connection every 10 ms while `work` runs; the answers that
/// were not 200.
fn failed_requests_during<T>(url: &str, work: impl FnOnce() -> T) -> (T, Vec<String>, usize) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let stop = Arc::new(AtomicBool::new(false));
    let answers: Arc<Mutex<Vec<Result<u16, String>>>> = Arc::default();
    let clients: Vec<_> = (0..3)
        .map(|_| {
            let (stop, answers, url) = (Arc::clone(&stop), Arc::clone(&answers), url.to_owned());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let answer = http_get(&url).map(|r| r.status).map_err(|e| e.to_string());
                    answers.lock().unwrap().push(answer);
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let result = work();
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.join().unwrap();
    }
    let answers = answers.lock().unwrap().clone();
    let failed = answers.iter().filter(|a| a != &&Ok(200)).map(|a| format!("{a:?}")).collect();
    (result, failed, answers.len())
}

/// The restart hands gunicorn's socket from the old master to a new one on the new release (USR2,
/// WINCH, TERM): clients asking all the while see no refused connection and no error; the stop and
/// start the handover replaces would refuse some. A release whose WSGI module cannot be imported
/// never takes over: the old master keeps serving, `current` points back at its release, and the
/// restart fails saying so.
#[test]
fn a_restart_hands_the_socket_over_without_a_failed_request() {
    let db = TestDb::new();
    let redis = TestRedis::new();
    let app = TestApp::start("v1", &db, &redis);
    app.add_release("v2");
    let services = controller(&releases_config(&app)).unwrap();
    let first = app.pid().unwrap();
    let (result, failed, total) =
        failed_requests_during(&app.health_url(), || block_on(services.restart(&[], Some("v2"))));
    result.unwrap();
    assert!(
        failed.is_empty(),
        "{} of {total} requests failed across the handover: {failed:?}",
        failed.len()
    );
    assert_eq!(release_of(&app), "v2");
    let second = app.pid().unwrap();
    assert_ne!(second, first);
    assert!(!alive(first), "the old master is gone");
    assert_eq!(children_of(second).len(), 2, "the new master runs its two workers");
    let pid_file = app.pid_file().display().to_string();
    assert!(!Path::new(&format!("{pid_file}.2")).exists());
    assert!(!Path::new(&format!("{pid_file}.oldbin")).exists());

    // A release that cannot boot.
    let broken = app.root().join("releases/v9-broken");
    copy_dir(&rail_testkit::built_release("v1"), &broken);
    fs_err::write(broken.join("demo/wsgi.py"), "raise RuntimeError('cannot boot')\n").unwrap();
    let (result, failed, total) = failed_requests_during(&app.health_url(), || {
        block_on(services.restart(&[], Some("v9-broken")))
    });
    let err = result.unwrap_err();
    assert!(matches!(err, ServiceError::HandoverFailed { .. }), "{err}");
    assert!(err.to_string().contains("v9-broken"), "{err}");
    assert!(
        failed.is_empty(),
        "{} of {total} requests failed while v9-broken failed to boot: {failed:?}",
        failed.len()
    );
    assert_eq!(app.pid(), Some(second), "the old master still serves");
    assert_eq!(release_of(&app), "v2");
    assert_eq!(fs_err::read_link(app.root().join("current")).unwrap(), Path::new("releases/v2"));
    assert_eq!(children_of(second).len(), 2, "its workers are back");

    // With the handover off, the same restart stops the app, then starts it: refused connections.
    let mut config = releases_config(&app);
    config.services.releases.handover = rail_core::config::Handover::StopStart;
    let services = controller(&config).unwrap();
    let (result, failed, _) =
        failed_requests_during(&app.health_url(), || block_on(services.restart(&[], Some("v1"))));
    result.unwrap();
    assert_eq!(release_of(&app), "v1");
    assert!(!failed.is_empty(), "stop and start refuses requests while nothing listens");

    // A handover interrupted half-way (as by a killed deploy): `current` switched to v2 and USR2 sent,
    // nothing after. The next start finishes it: the new master stays, the old one goes.
    let Controller::Releases(releases) = &services else { panic!("a releases controller") };
    let old = app.pid().unwrap();
    releases.set_version("v2").unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(old), nix::sys::signal::Signal::SIGUSR2)
        .unwrap();
    let next = Path::new(&format!("{pid_file}.2")).to_owned();
    let new = wait_for_pid(&next);
    assert_ne!(new, old);
    block_on(services.start(&[], None)).unwrap();
    assert!(!alive(old), "the old master is gone");
    assert_eq!(app.pid(), Some(new), "the new master stays, named by the pid file");
    assert_eq!(release_of(&app), "v2");
    assert!(!next.exists());

    // Interrupted the other way round: the new master loads another release than `current` names. The
    // next start finds two masters, stops the new one and keeps the old one.
    releases.set_version("v1").unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(new), nix::sys::signal::Signal::SIGUSR2)
        .unwrap();
    let newer = wait_for_pid(&next);
    releases.set_version("v2").unwrap();
    block_on(services.start(&[], None)).unwrap();
    assert!(!alive(newer), "the master on the abandoned release is gone");
    assert_eq!(app.pid(), Some(new));
    assert_eq!(release_of(&app), "v2");
}

/// The live pid a pid file names, once it does (at most 30 s).
fn wait_for_pid(path: &Path) -> i32 {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let pid = fs_err::read_to_string(path).ok().and_then(|t| t.trim().parse::<i32>().ok());
        if let Some(pid) = pid.filter(|p| alive(*p) && !children_of(*p).is_empty()) {
            return pid;
        }
        assert!(std::time::Instant::now() < deadline, "{} names no live master", path.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn copy_dir(from: &Path, to: &Path) {
    fs_err::create_dir_all(to).unwrap();
    for entry in fs_err::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs_err::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Direct children of `pid`, from /proc.
fn children_of(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for entry in fs_err::read_dir("/proc").unwrap().filter_map(Result::ok) {
        let Ok(stat) = fs_err::read_to_string(entry.path().join("stat")) else { continue };
        let Some(close) = stat.rfind(')') else { continue };
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        if fields.get(1) == Some(&pid.to_string().as_str()) {
            out.push(entry.file_name().to_string_lossy().parse().unwrap());
        }
    }
    out
}

/// A releases root with two empty releases and `current` on v1, for start commands that are shell
/// scripts standing in for a daemonizing server.
fn script_root(start_script: &str, stop_timeout: u64, ready_url: &str) -> (TestDir, Controller) {
    let dir = TestDir::new();
    for version in ["v1", "v2"] {
        fs_err::create_dir_all(dir.join("releases").join(version)).unwrap();
    }
    std::os::unix::fs::symlink("releases/v1", dir.join("current")).unwrap();
    let mut config = Config::default();
    config.services.backend = ServiceBackend::Releases;
    config.services.start_timeout = HumanDuration::from_secs(30);
    config.services.stop_timeout = HumanDuration::from_secs(stop_timeout);
    dir.path().clone_into(&mut config.services.releases.root);
    config.services.releases.pid_file = dir.join("app.pid");
    ready_url.clone_into(&mut config.services.releases.ready_url);
    config.services.releases.start =
        strings(&["sh", "-c", start_script, "start", &dir.join("app.pid").display().to_string()]);
    let services = controller(&config).unwrap();
    (dir, services)
}

#[test]
fn a_process_that_ignores_sigterm_is_killed_after_the_stop_timeout() {
    // The "server": a background process ignoring SIGTERM, its pid written to the pid file ($1).
    let script = r#"(trap '' TERM; exec sleep 300) >/dev/null 2>&1 & echo $! > "$1""#;
    let (dir, services) = script_root(script, 1, "");
    block_on(services.start(&[], None)).unwrap();
    let pid: i32 = fs_err::read_to_string(dir.join("app.pid")).unwrap().trim().parse().unwrap();
    assert!(alive(pid));
    let status = block_on(services.status()).unwrap();
    assert_eq!(status[0].state, ServiceState::Running);
    assert_eq!(status[0].version.as_deref(), Some("v1"));

    block_on(services.stop(&[])).unwrap();
    assert!(!alive(pid));
    assert!(!dir.join("app.pid").exists());
}

#[test]
fn a_server_that_dies_at_once_fails_the_start() {
    // It never answers on its ready URL, and exits after half a second.
    let script = r#"sleep 0.5 >/dev/null 2>&1 & echo $! > "$1""#;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (_dir, services) = script_root(script, 1, &format!("http://127.0.0.1:{port}/health/"));
    let err = block_on(services.start(&[], Some("v2"))).unwrap_err();
    let ServiceError::NotReady { reason, .. } = &err else { panic!("unexpected error {err:?}") };
    assert!(reason.contains("exited right after it started"), "{reason}");
}

#[test]
fn a_start_command_that_fails_is_reported_with_its_stderr() {
    let (_dir, services) = script_root("echo 'Address already in use' >&2; exit 3", 1, "");
    let err = block_on(services.start(&[], None)).unwrap_err();
    assert!(matches!(err, ServiceError::Command { .. }), "{err:?}");
    let chain = format!("{err}: {}", std::error::Error::source(&err).unwrap());
    assert!(chain.starts_with("cannot start the app (releases backend): `sh -c "), "{chain}");
    assert!(chain.contains("exited with code 3"), "{chain}");
    assert!(chain.contains("Address already in use"), "{chain}");
}

#[test]
fn only_the_app_named_by_the_pid_file_is_signalled() {
    let (dir, services) = script_root("exit 0", 1, "");
    block_on(async {
        // A process that is not the app (not started from the root, not the start program).
        let stranger = Cmd::new("sleep").arg("300").cwd("/").spawn().unwrap();
        let pid = stranger.pid().unwrap() as i32;
        fs_err::write(dir.join("app.pid"), format!("{pid}\n")).unwrap();
        let err = services.stop(&[]).await.unwrap_err();
        assert!(matches!(err, ServiceError::ForeignProcess { .. }), "{err:?}");
        assert!(err.to_string().contains("it was not signalled"), "{err}");
        assert!(alive(pid), "the stranger was signalled");
        drop(stranger);

        // A stale pid file (its process gone) is removed, not acted on.
        let finished = Cmd::new("true").spawn().unwrap();
        let gone = finished.pid().unwrap();
        finished.wait().await.unwrap();
        fs_err::write(dir.join("app.pid"), format!("{gone}\n")).unwrap();
        services.stop(&[]).await.unwrap();
        assert!(!dir.join("app.pid").exists());
    });
}

/// Whether `program` is on PATH.
fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

#[test]
fn kubectl_failures_are_reported_with_what_kubectl_said() {
    // A context that exists nowhere: kubectl refuses before talking to any cluster.
    let mut config = Config::default();
    config.services.backend = ServiceBackend::Kubernetes;
    config.services.stop_timeout = HumanDuration::from_secs(30);
    config.services.kubernetes.context = "rail-test-no-such-context".into();
    config.services.kubernetes.deployments = strings(&["rail-test-missing"]);
    let services = controller(&config).unwrap();
    let err = block_on(services.stop(&[])).unwrap_err();
    assert!(matches!(err, ServiceError::Command { .. }), "{err:?}");
    assert_eq!(err.to_string(), "cannot stop the app (kubernetes backend)");
    let cause = std::error::Error::source(&err).unwrap().to_string();
    if on_path("kubectl") {
        assert!(cause.contains("rail-test-no-such-context"), "{cause}");
    } else {
        assert!(cause.contains("could not start `kubectl`"), "{cause}");
    }
}

#[test]
fn systemctl_status_works_or_says_why_not() {
    // Read-only: the state of a unit that exists nowhere.
    let mut config = Config::default();
    config.services.backend = ServiceBackend::Systemd;
    config.services.systemd.units = strings(&["rail-test-missing.service"]);
    let services = controller(&config).unwrap();
    match block_on(services.status()) {
        // With systemd running: the unit is simply not active.
        Ok(status) => {
            assert_eq!(status.len(), 1);
            assert_eq!(status[0].name, "rail-test-missing.service");
            assert_eq!(status[0].state, ServiceState::Stopped, "{status:?}");
        }
        // Without systemd (a container) or without systemctl: an error carrying the reason.
        Err(err) => {
            assert!(matches!(err, ServiceError::Command { .. }), "{err:?}");
            let cause = std::error::Error::source(&err).unwrap().to_string();
            assert!(cause.contains("systemctl"), "{cause}");
            if on_path("systemctl") {
                assert!(cause.contains("exited with code"), "{cause}");
            }
        }
    }
}
