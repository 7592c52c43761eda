use std::path::Path;
use std::time::Duration;

use super::*;
use crate::config::HumanDuration;

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

fn base_config(backend: ServiceBackend) -> Config {
    let mut config = Config::default();
    config.services.backend = backend;
    config.services.start_timeout = HumanDuration::from_secs(90);
    config.services.stop_timeout = HumanDuration::from_secs(20);
    config
}

#[test]
fn versions_are_validated() {
    for good in ["v1", "v3-broken", "2024.01.15_1", "a", "sha-0123abcd"] {
        assert!(validate_version(good).is_ok(), "{good}");
    }
    for bad in [
        "",
        ".",
        "..",
        "../etc",
        "v1/../../x",
        "v 1",
        ".hidden",
        "v1;rm",
        "a/b",
        "ü",
        &"x".repeat(129),
    ] {
        let err = validate_version(bad).unwrap_err();
        assert!(matches!(err, ServiceError::InvalidVersion { .. }), "{bad}");
    }
    assert_eq!(
        validate_version("../x").unwrap_err().to_string(),
        "invalid app version `../x`: use letters, digits, `.`, `_` and `-` (not starting with `.`)"
    );
}

#[test]
fn placeholders_and_image_tags() {
    assert_eq!(
        substitute(
            &names(&["{python}", "-m", "app", "--release={version}", "{version}{version}"]),
            &[("python", "/venv/bin/python"), ("version", "v2")]
        ),
        ["/venv/bin/python", "-m", "app", "--release=v2", "v2v2"]
    );
    assert!(uses(&names(&["x", "--tag={version}"]), "version"));
    assert!(!uses(&names(&["x", "{root}"]), "version"));
    assert_eq!(image_tag("shop:v2").as_deref(), Some("v2"));
    assert_eq!(image_tag("registry:5000/team/shop:v2").as_deref(), Some("v2"));
    assert_eq!(image_tag("registry:5000/team/shop"), None);
    assert_eq!(image_tag("shop:v2@sha256:abc").as_deref(), Some("v2"));
}

#[test]
fn compose_builds_its_argument_vectors() {
    let mut config = base_config(ServiceBackend::Compose);
    config.services.compose.file = "/srv/shop/docker-compose.yml".into();
    config.services.compose.project = "shop".into();
    let compose = ComposeController::from_config(&config).unwrap();
    let web = names(&["web", "worker"]);
    assert_eq!(
        compose.stop_command(&web).argv(),
        [
            "docker",
            "compose",
            "-f",
            "/srv/shop/docker-compose.yml",
            "-p",
            "shop",
            "stop",
            "--timeout",
            "20",
            "web",
            "worker"
        ]
    );
    let up = compose.up_command(&web, Some("v2")).unwrap();
    assert_eq!(
        up.argv(),
        [
            "docker",
            "compose",
            "-f",
            "/srv/shop/docker-compose.yml",
            "-p",
            "shop",
            "up",
            "-d",
            "--no-deps",
            "web",
            "worker"
        ]
    );
    assert!(up.display().starts_with("IMAGE_TAG=v2 docker compose "), "{}", up.display());
    assert!(!compose.up_command(&web, None).unwrap().display().contains("IMAGE_TAG"));
    assert!(matches!(
        compose.up_command(&web, Some("v2;x")),
        Err(ServiceError::InvalidVersion { .. })
    ));
    assert_eq!(
        compose.restart_command(&web).argv()[6..],
        ["restart", "--timeout", "20", "web", "worker"]
    );
    assert_eq!(compose.ps_command(&[]).argv()[6..], ["ps", "-a", "-q"]);

    // The configured services win over the names given; no project means no -p.
    config.services.compose.project = String::new();
    config.services.compose.services = names(&["app"]);
    config.services.compose.version_variable = "APP_TAG".into();
    let compose = ComposeController::from_config(&config).unwrap();
    assert_eq!(
        compose.stop_command(&web).argv(),
        [
            "docker",
            "compose",
            "-f",
            "/srv/shop/docker-compose.yml",
            "stop",
            "--timeout",
            "20",
            "app"
        ]
    );
    assert!(compose.up_command(&web, Some("v3")).unwrap().display().starts_with("APP_TAG=v3 "));
    let plan = compose.plan(Action::Restart, &web, Some("v3"));
    assert_eq!(
        plan[0],
        "APP_TAG=v3 docker compose -f /srv/shop/docker-compose.yml up -d --no-deps app"
    );
    assert!(
        plan[1].contains("docker compose -f /srv/shop/docker-compose.yml ps -a -q app"),
        "{plan:?}"
    );

    // Compose v1 is its own program (no `compose` word); override files follow the main file.
    config.services.compose.program = "/usr/bin/docker-compose".into();
    config.services.compose.override_files = vec!["/srv/shop/local.yml".into()];
    let compose = ComposeController::from_config(&config).unwrap();
    assert_eq!(
        compose.restart_command(&web).argv(),
        [
            "/usr/bin/docker-compose",
            "-f",
            "/srv/shop/docker-compose.yml",
            "-f",
            "/srv/shop/local.yml",
            "restart",
            "--timeout",
            "20",
            "app"
        ]
    );
}

#[test]
fn systemd_builds_its_argument_vectors() {
    let mut config = base_config(ServiceBackend::Systemd);
    config.services.systemd.units = names(&["shop-web.service", "shop-worker.service"]);
    let systemd = SystemdController::from_config(&config).unwrap();
    for verb in ["stop", "start", "restart", "is-active"] {
        assert_eq!(
            systemd.command(verb, &[]).argv(),
            ["systemctl", verb, "shop-web.service", "shop-worker.service"]
        );
    }
    config.services.systemd.user = true;
    config.services.systemd.units.clear();
    config.services.systemd.version_file = "/etc/shop/version.env".into();
    let systemd = SystemdController::from_config(&config).unwrap();
    assert_eq!(
        systemd.command("restart", &names(&["web"])).argv(),
        ["systemctl", "--user", "restart", "web"]
    );
    assert_eq!(
        systemd.plan(Action::Restart, &names(&["web"]), Some("v2")),
        [
            "write APP_VERSION=v2 to /etc/shop/version.env",
            "systemctl --user restart web",
            "# then until active: systemctl --user is-active web"
        ]
    );
}

#[tokio::test]
async fn systemd_version_file_is_written_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = base_config(ServiceBackend::Systemd);
    config.services.systemd.version_file = dir.path().join("version.env");
    config.services.systemd.version_variable = "SHOP_VERSION".into();
    let systemd = SystemdController::from_config(&config).unwrap();
    assert_eq!(systemd.current_version().await.unwrap(), None);
    systemd.write_version(Some("v7")).unwrap();
    assert_eq!(
        fs_err::read_to_string(dir.path().join("version.env")).unwrap(),
        "SHOP_VERSION=v7\n"
    );
    assert_eq!(systemd.current_version().await.unwrap().as_deref(), Some("v7"));
    assert!(systemd.write_version(Some("../v8")).is_err());
    // Only the version file is left in the directory.
    assert_eq!(fs_err::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn kubernetes_builds_its_argument_vectors() {
    let mut config = base_config(ServiceBackend::Kubernetes);
    let k = &mut config.services.kubernetes;
    k.context = "prod-eu".into();
    k.namespace = "shop".into();
    k.deployments = names(&["web"]);
    k.container = "app".into();
    k.image = "registry.example/shop".into();
    let kube = KubernetesController::from_config(&config).unwrap();
    let base = ["kubectl", "--context", "prod-eu", "-n", "shop"];
    let with_base =
        |rest: &[&str]| base.iter().chain(rest).map(|s| (*s).to_owned()).collect::<Vec<_>>();
    assert_eq!(
        kube.rollout_restart_command("web").argv(),
        with_base(&["rollout", "restart", "deployment/web"])
    );
    assert_eq!(
        kube.rollout_status_command("web", Duration::from_secs(90)).argv(),
        with_base(&["rollout", "status", "deployment/web", "--timeout=90s"])
    );
    assert_eq!(
        kube.set_image_command("web", "v2").unwrap().argv(),
        with_base(&["set", "image", "deployment/web", "app=registry.example/shop:v2"])
    );
    assert_eq!(
        kube.rollout_undo_command("web").argv(),
        with_base(&["rollout", "undo", "deployment/web"])
    );
    assert_eq!(
        kube.scale_command("web", 0).argv(),
        with_base(&["scale", "deployment/web", "--replicas=0"])
    );
    assert_eq!(
        kube.annotate_command("web", 3).argv(),
        with_base(&["annotate", "--overwrite", "deployment/web", "rail-replicas=3"])
    );
    assert_eq!(kube.get_command("web").argv(), with_base(&["get", "deployment/web", "-o", "json"]));
    assert!(matches!(
        kube.set_image_command("web", "v2 x"),
        Err(ServiceError::InvalidVersion { .. })
    ));
    assert_eq!(
        kube.plan(Action::Restart, &[], Some("v2")),
        [
            "kubectl --context prod-eu -n shop set image deployment/web app=registry.example/shop:v2",
            "kubectl --context prod-eu -n shop rollout status deployment/web --timeout=90s"
        ]
    );

    // No context, namespace or container: plain kubectl, every container.
    let mut config = base_config(ServiceBackend::Kubernetes);
    config.services.kubernetes.image = "shop".into();
    let kube = KubernetesController::from_config(&config).unwrap();
    assert_eq!(
        kube.set_image_command("api", "v3").unwrap().argv(),
        ["kubectl", "set", "image", "deployment/api", "*=shop:v3"]
    );
    config.services.kubernetes.image.clear();
    let kube = KubernetesController::from_config(&config).unwrap();
    assert!(matches!(
        kube.set_image_command("api", "v3"),
        Err(ServiceError::NotConfigured { key: "services.kubernetes.image", .. })
    ));
}

#[test]
fn command_backend_replaces_the_version() {
    let mut config = base_config(ServiceBackend::Command);
    config.services.command.start =
        names(&["/opt/shop/bin/deploy", "start", "--release={version}"]);
    config.services.command.stop = names(&["/opt/shop/bin/deploy", "stop"]);
    let command = CommandController::from_config(&config).unwrap();
    assert_eq!(
        command.start_command(Some("v2")).unwrap().argv(),
        ["/opt/shop/bin/deploy", "start", "--release=v2"]
    );
    assert!(matches!(
        command.start_command(None),
        Err(ServiceError::NeedsVersion { key: "services.command.start" })
    ));
    assert!(matches!(
        command.start_command(Some("../x")),
        Err(ServiceError::InvalidVersion { .. })
    ));
    assert!(command.restart_command(Some("v2")).unwrap().is_none());
    assert_eq!(
        command.plan(Action::Restart, &[], Some("v2")),
        ["/opt/shop/bin/deploy stop", "/opt/shop/bin/deploy start --release=v2"]
    );

    config.services.command.stop.clear();
    let err = CommandController::from_config(&config).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the command service backend needs `services.command.stop` in the configuration"
    );
}

#[test]
fn backends_check_their_required_keys() {
    let err = controller(&base_config(ServiceBackend::Releases)).unwrap_err();
    assert!(
        matches!(err, ServiceError::NotConfigured { key: "services.releases.root", .. }),
        "{err}"
    );
    let mut config = base_config(ServiceBackend::Releases);
    config.services.releases.root = "/srv/app".into();
    config.services.releases.start = names(&["gunicorn"]);
    let err = controller(&config).unwrap_err();
    assert!(
        matches!(err, ServiceError::NotConfigured { key: "services.releases.pid_file", .. }),
        "{err}"
    );
    config.services.releases.pid_file = "/srv/app/run/app.pid".into();
    assert_eq!(controller(&config).unwrap().backend(), "releases");
    assert_eq!(controller(&base_config(ServiceBackend::None)).unwrap().backend(), "none");
}

#[tokio::test]
async fn none_backend_succeeds_at_everything() {
    let none = controller(&base_config(ServiceBackend::None)).unwrap();
    let web = names(&["web"]);
    none.stop(&web).await.unwrap();
    none.start(&web, Some("v2")).await.unwrap();
    none.restart(&web, None).await.unwrap();
    none.wait_ready(&web, Duration::from_secs(1)).await.unwrap();
    assert!(none.status().await.unwrap().is_empty());
    assert_eq!(none.current_version().await.unwrap(), None);
}

fn releases_in(root: &Path) -> ReleasesController {
    let mut config = base_config(ServiceBackend::Releases);
    config.services.releases.root = root.to_owned();
    config.services.releases.pid_file = root.join("run/app.pid");
    config.services.releases.start = names(&[
        "{python}",
        "-m",
        "server",
        "--dir",
        "{current}",
        "--root={root}",
        "--release",
        "{version}",
    ]);
    config.app.python = "/venv/bin/python".into();
    config.app.env_file = root.join("app.env");
    config.app.env.insert("EXTRA".into(), "1".into());
    ReleasesController::from_config(&config).unwrap()
}

#[tokio::test]
async fn releases_switch_the_current_link_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for version in ["v1", "v2"] {
        fs_err::create_dir_all(root.join("releases").join(version)).unwrap();
    }
    let releases = releases_in(root);
    assert_eq!(releases.current_version().await.unwrap(), None);
    assert_eq!(releases.releases().unwrap(), ["v1", "v2"]);

    releases.set_version("v1").unwrap();
    assert_eq!(fs_err::read_link(root.join("current")).unwrap(), Path::new("releases/v1"));
    releases.set_version("v2").unwrap();
    assert_eq!(fs_err::read_link(root.join("current")).unwrap(), Path::new("releases/v2"));
    assert_eq!(releases.current_version().await.unwrap().as_deref(), Some("v2"));
    // Nothing but the releases and the link are left behind.
    let mut entries: Vec<String> = fs_err::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    entries.sort();
    assert_eq!(entries, ["current", "releases"]);

    let err = releases.set_version("v9").unwrap_err();
    assert!(matches!(err, ServiceError::UnknownRelease { .. }), "{err}");
    assert!(matches!(
        releases.set_version("../v1").unwrap_err(),
        ServiceError::InvalidVersion { .. }
    ));
    assert_eq!(releases.current_version().await.unwrap().as_deref(), Some("v2"));

    // Stopping what is not running is fine, and the status says stopped on v2.
    releases.stop(&[]).await.unwrap();
    let status = releases.status().await.unwrap();
    assert_eq!(status[0].state, ServiceState::Stopped);
    assert_eq!(status[0].version.as_deref(), Some("v2"));
}

#[test]
fn releases_start_command_has_placeholders_and_a_hidden_environment() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs_err::write(root.join("app.env"), "# app settings\nSECRET_KEY=abc123secret\nDEBUG=0\n")
        .unwrap();
    let releases = releases_in(root);
    let cmd = releases.start_command("v2").unwrap();
    let r = root.display();
    assert_eq!(
        cmd.argv(),
        [
            "/venv/bin/python".to_owned(),
            "-m".into(),
            "server".into(),
            "--dir".into(),
            format!("{r}/current"),
            format!("--root={r}"),
            "--release".into(),
            "v2".into()
        ]
    );
    let shown = cmd.display();
    // Secret by name; harmless values show as they are.
    assert!(shown.starts_with("SECRET_KEY=*** DEBUG=0 EXTRA=1 /venv/bin/python "), "{shown}");
    assert!(!shown.contains("abc123secret"));

    fs_err::write(root.join("app.env"), "NOT A VALID LINE\n").unwrap();
    assert!(matches!(releases.start_command("v2"), Err(ServiceError::EnvFile { .. })));
}

#[tokio::test]
async fn actions_on_no_unit_or_deployment_are_configuration_errors() {
    let systemd = controller(&base_config(ServiceBackend::Systemd)).unwrap();
    let err = systemd.restart(&[], Some("v2")).await.unwrap_err();
    assert!(
        matches!(err, ServiceError::NotConfigured { key: "services.systemd.units", .. }),
        "{err}"
    );
    let kube = controller(&base_config(ServiceBackend::Kubernetes)).unwrap();
    let err = kube.stop(&[]).await.unwrap_err();
    assert!(
        matches!(err, ServiceError::NotConfigured { key: "services.kubernetes.deployments", .. }),
        "{err}"
    );
}

#[tokio::test]
async fn releases_without_a_current_release_need_a_version() {
    let dir = tempfile::tempdir().unwrap();
    fs_err::create_dir_all(dir.path().join("releases/v1")).unwrap();
    let releases = releases_in(dir.path());
    let err = releases.start(&[], None).await.unwrap_err();
    assert!(matches!(err, ServiceError::NoCurrentRelease { .. }), "{err}");
    assert!(!format!("{releases:?}").contains("EXTRA"));
}
