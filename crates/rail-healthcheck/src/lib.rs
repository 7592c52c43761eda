//! The `healthcheck` tool: concurrent checks of everything the app depends on.
//!
//! The command line is resolved into a [`Plan`] (configuration, selected checks, output, exports), then
//! the checks of `rail_core::health` run once, or repeatedly with `--monitor`, on a single-threaded tokio
//! runtime: a probe Docker forks every 30 seconds should start fast and stay small.

mod alert;
mod cli;
mod export;
mod render;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use chrono::{SecondsFormat, Utc};
use rail_core::config::{self, Config, LoadOptions};
use rail_core::health::{self, CheckName, HealthError, Report, RunOptions, Status};
use rail_core::{exit, output};

pub use alert::Alert;
use alert::{AlertSink, NotifySink};
pub use cli::Cli;
use cli::{Command, Format};
pub use render::TextStyle;

/// Nagios plugin exit codes.
mod nagios_exit {
    pub(crate) const OK: u8 = 0;
    pub(crate) const WARNING: u8 = 1;
    pub(crate) const CRITICAL: u8 = 2;
    pub(crate) const UNKNOWN: u8 = 3;
}

/// Run `healthcheck` with the given command line and return its exit code.
pub fn run(args: impl IntoIterator<Item = std::ffi::OsString>) -> ExitCode {
    let cli: Cli = match rail_core::cli::parse(args) {
        Ok(cli) => cli,
        Err(code) => return ExitCode::from(code),
    };
    if let Some(Command::Man { dir }) = &cli.command {
        return ExitCode::from(rail_core::cli::man_command::<Cli>("healthcheck", dir));
    }
    if let Some(Command::Completions { shell }) = cli.command {
        rail_core::cli::print_completions::<Cli>(shell, "healthcheck");
        return ExitCode::SUCCESS;
    }
    init_logging(&cli);
    let plan = match Plan::resolve(&cli) {
        Ok(plan) => plan,
        Err(err) => {
            output::report_error(&err);
            return ExitCode::from(if cli.nagios { nagios_exit::UNKNOWN } else { exit::USAGE });
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(err) => {
            output::report_error(&anyhow::Error::new(err).context("starting the async runtime"));
            return ExitCode::from(if cli.nagios { nagios_exit::UNKNOWN } else { exit::FAILED });
        }
    };
    let code = runtime.block_on(async {
        if let Some(interval) = plan.monitor {
            monitor(&plan, interval).await
        } else {
            once(&plan).await
        }
    });
    // A filesystem check stuck on a dead mount must not keep the process alive after its timeout.
    runtime.shutdown_background();
    ExitCode::from(code)
}

fn init_logging(cli: &Cli) {
    if let Err(err) = output::init_logging(&cli.log, None) {
        output::report_error(&anyhow::Error::new(err));
    }
}

/// What to do, resolved from the command line and the configuration.
#[derive(Debug)]
pub struct Plan {
    pub config: Config,
    pub selection: Vec<CheckName>,
    pub options: RunOptions,
    pub format: Format,
    pub style: TextStyle,
    pub nagios: bool,
    pub monitor: Option<Duration>,
    pub alert_on_failure: bool,
    pub export_metrics: Option<PathBuf>,
    pub push_url: Option<url::Url>,
    /// Timeout of a push to the Pushgateway.
    pub push_timeout: Duration,
}

impl Plan {
    fn resolve(cli: &Cli) -> Result<Self> {
        let loaded = config::load(&LoadOptions::from_args(&cli.config))
            .context("loading the configuration")?;
        let config = loaded.config;
        let selection = health::parse_selection(&cli.checks)?;
        // Asking for a check by name and getting "skipped" back would hide a broken deployment.
        for name in &selection {
            if let Some(hint) = health::not_configured(&config, *name) {
                return Err(HealthError::NotConfigured { name: *name, hint }.into());
            }
        }
        health::validate(&config, &selection)?;
        if cli.monitor && cli.interval.is_zero() {
            bail!("--interval must be longer than zero");
        }
        if cli.timeout.is_some_and(|t| t.is_zero()) {
            bail!("--timeout must be longer than zero");
        }
        let push_url = match &cli.prometheus_endpoint {
            Some(base) => Some(export::push_url(base, &export::hostname())?),
            None => None,
        };
        let options = RunOptions { timeout: cli.timeout, ..RunOptions::default() };
        Ok(Self {
            push_timeout: cli.timeout.unwrap_or(config.health.timeout.get()),
            config,
            selection,
            options,
            format: cli.format,
            style: TextStyle {
                verbose: cli.log.verbose > 0,
                style: output::Style::stdout(&cli.log),
            },
            nagios: cli.nagios,
            monitor: cli.monitor.then_some(cli.interval),
            alert_on_failure: cli.alert_on_failure,
            export_metrics: cli.export_metrics.clone(),
            push_url,
        })
    }

    /// The exit code of a report.
    fn exit_code(&self, report: &Report) -> u8 {
        if self.nagios {
            match report.overall {
                Status::Healthy => nagios_exit::OK,
                Status::Warning => nagios_exit::WARNING,
                Status::Critical => nagios_exit::CRITICAL,
            }
        } else if report.is_critical() {
            exit::FAILED
        } else {
            exit::SUCCESS
        }
    }
}

fn print(text: &str) {
    if let Err(err) = output::stdout_line(text) {
        output::stderr_line(&format!("error: writing to stdout: {err}"));
    }
}

fn render(plan: &Plan, report: &Report) -> String {
    match plan.format {
        Format::Json => render::json(report),
        Format::Prometheus => render::prometheus(report),
        Format::Text if plan.nagios => render::nagios(report),
        Format::Text => render::text(report, plan.style),
    }
}

/// Write the metrics file and push to the Pushgateway, as configured. Failures are returned, not fatal.
async fn export(plan: &Plan, report: &Report) -> Vec<anyhow::Error> {
    let mut errors = Vec::new();
    let mut prometheus = None;
    if let Some(path) = &plan.export_metrics {
        // The older tool wrote JSON here; a `.json` name keeps getting JSON.
        let is_json = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json"));
        let contents = if is_json {
            render::json(report) + "\n"
        } else {
            prometheus.get_or_insert_with(|| render::prometheus(report)).clone()
        };
        if let Err(e) = export::write_atomic(path, &contents) {
            errors.push(e);
        }
    }
    if let Some(url) = &plan.push_url {
        let body = prometheus.get_or_insert_with(|| render::prometheus(report));
        if let Err(e) = export::push(url, body, plan.push_timeout).await {
            errors.push(e);
        }
    }
    errors
}

async fn once(plan: &Plan) -> u8 {
    let report = health::run_checks(&plan.config, &plan.selection, &plan.options).await;
    print(&render(plan, &report));
    let mut code = plan.exit_code(&report);
    let errors = export(plan, &report).await;
    for err in &errors {
        output::report_error(err);
    }
    if !errors.is_empty() && code == exit::SUCCESS && !plan.nagios {
        // A metrics file that silently stops updating is worse than a failed run.
        code = exit::FAILED;
    }
    if plan.alert_on_failure && report.is_critical() {
        let sink = notify_sink(plan);
        for check in report.checks.iter().filter(|c| c.status == Status::Critical) {
            let alert = Alert {
                environment: plan.config.environment.clone(),
                check: check.name,
                previous: None,
                status: check.status,
                message: check.message.clone(),
            };
            send_alert(plan, &sink, &alert).await;
        }
    }
    code
}

fn notify_sink(plan: &Plan) -> NotifySink<'_> {
    NotifySink {
        config: &plan.config.notifications,
        source: format!("healthcheck@{}", export::hostname()),
    }
}

async fn send_alert(plan: &Plan, sink: &impl AlertSink, alert: &Alert) {
    if plan.config.notifications.on_health_alert {
        sink.send(alert).await;
    } else {
        tracing::info!(
            "health alert not sent (notifications.on_health_alert is false): {}",
            alert.summary()
        );
    }
}

/// Run the checks every `interval` until SIGINT or SIGTERM, printing a line per state change only.
///
/// Memory stays flat: the only state kept between runs is the last status of each check.
async fn monitor(plan: &Plan, interval: Duration) -> u8 {
    use tokio::signal::unix::{signal, SignalKind};
    let (mut sigint, mut sigterm) =
        match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
            (Ok(i), Ok(t)) => (i, t),
            (Err(e), _) | (_, Err(e)) => {
                output::report_error(&anyhow::Error::new(e).context("installing signal handlers"));
                return exit::FAILED;
            }
        };
    let sink = notify_sink(plan);
    let mut last: [Option<Status>; CheckName::ALL.len()] = [None; CheckName::ALL.len()];
    let mut last_overall: Option<Status> = None;
    let mut code = exit::SUCCESS;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Change lines are text unless JSON was asked for (Prometheus text goes to the exports).
    if plan.format != Format::Json {
        print(&format!(
            "{} monitoring {} every {}; changes only (Ctrl-C stops)",
            now(),
            if plan.selection.is_empty() {
                "all configured checks".to_owned()
            } else {
                plan.selection.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", ")
            },
            humantime::format_duration(interval)
        ));
    }
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
        }
        let report = tokio::select! {
            r = health::run_checks(&plan.config, &plan.selection, &plan.options) => r,
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
        };
        code = plan.exit_code(&report);
        for check in &report.checks {
            let slot = &mut last[CheckName::ALL.iter().position(|c| *c == check.name).unwrap_or(0)];
            let previous = *slot;
            if previous == Some(check.status) {
                continue;
            }
            *slot = Some(check.status);
            print(&change_line(
                plan,
                check.name.as_str(),
                previous,
                check.status,
                &check.message,
                Some(check),
            ));
            if plan.alert_on_failure && alert::worth_alerting(previous, check.status) {
                let alert = Alert {
                    environment: plan.config.environment.clone(),
                    check: check.name,
                    previous,
                    status: check.status,
                    message: check.message.clone(),
                };
                send_alert(plan, &sink, &alert).await;
            }
        }
        if last_overall != Some(report.overall) {
            if last_overall.is_some() {
                let counts = format!(
                    "{} healthy, {} warning, {} critical",
                    report.count(Status::Healthy),
                    report.count(Status::Warning),
                    report.count(Status::Critical)
                );
                print(&change_line(plan, "overall", last_overall, report.overall, &counts, None));
            }
            last_overall = Some(report.overall);
        }
        for err in export(plan, &report).await {
            output::report_error(&err);
        }
    }
    code
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `2024-06-01T12:00:00Z redis healthy -> critical: no answer within 2s`, or its JSON form.
fn change_line(
    plan: &Plan,
    name: &str,
    previous: Option<Status>,
    status: Status,
    message: &str,
    check: Option<&health::CheckResult>,
) -> String {
    if plan.format == Format::Json {
        let mut event = serde_json::json!({
            "timestamp": Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
            "check": name,
            "previous": previous,
            "status": status,
            "message": message,
        });
        if let Some(c) = check {
            event["duration_ms"] = health::millis(c.duration).into();
            event["details"] = serde_json::Value::Object(c.details.clone());
        }
        return event.to_string();
    }
    match previous {
        Some(p) => format!("{} {name} {p} -> {status}: {message}", now()),
        None => format!("{} {name} {status}: {message}", now()),
    }
}
