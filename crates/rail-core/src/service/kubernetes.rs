//! `services.backend = "kubernetes"`: `kubectl [--context C] [-n NS]` on deployments.
//!
//! - restart: `rollout restart deployment/<d>`, or onto a version `set image deployment/<d>
//!   <container>=<image>:<version>` (`*` for every container when none is named); then `rollout status
//!   deployment/<d> --timeout=<start_timeout>s`, which waits until the new pods are ready;
//! - stop: the deployment's replica count is kept in the annotation `rail-replicas`, then it is scaled to
//!   zero; start scales it back to that count (1 when unknown) and waits for the rollout. The count lives
//!   in the cluster, so a rail that dies in between loses nothing;
//! - [`KubernetesController::rollout_undo`] is Kubernetes' own rollback to the previous ReplicaSet, for a
//!   backup that recorded no app version.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{
    image_tag, secs, validate_version, Action, ServiceController, ServiceError, ServiceState,
    ServiceStatus,
};
use crate::config::Config;
use crate::process::Cmd;

const BACKEND: &str = "kubernetes";
/// Annotation holding the replica count a stop scaled down from.
pub const REPLICAS_ANNOTATION: &str = "rail-replicas";

/// The `kubernetes` backend.
#[derive(Debug, Clone)]
pub struct KubernetesController {
    program: PathBuf,
    context: String,
    namespace: String,
    deployments: Vec<String>,
    container: String,
    image: String,
    start_timeout: Duration,
    stop_timeout: Duration,
}

impl KubernetesController {
    pub fn from_config(config: &Config) -> Result<Self, ServiceError> {
        let k = &config.services.kubernetes;
        Ok(Self {
            program: k.program.clone(),
            context: k.context.clone(),
            namespace: k.namespace.clone(),
            deployments: k.deployments.clone(),
            container: k.container.clone(),
            image: k.image.clone(),
            start_timeout: config.services.start_timeout.get(),
            stop_timeout: config.services.stop_timeout.get(),
        })
    }

    /// The configured deployments, else the names given.
    fn targets<'a>(&'a self, services: &'a [String]) -> &'a [String] {
        if self.deployments.is_empty() {
            services
        } else {
            &self.deployments
        }
    }

    /// The deployments of an action; an action on none at all is a configuration error.
    fn deployments_of<'a>(&'a self, services: &'a [String]) -> Result<&'a [String], ServiceError> {
        let targets = self.targets(services);
        if targets.is_empty() {
            Err(ServiceError::NotConfigured {
                backend: BACKEND,
                key: "services.kubernetes.deployments",
            })
        } else {
            Ok(targets)
        }
    }

    fn base(&self) -> Cmd {
        let mut cmd = Cmd::new(&self.program);
        if !self.context.is_empty() {
            cmd = cmd.arg("--context").arg(&self.context);
        }
        if !self.namespace.is_empty() {
            cmd = cmd.arg("-n").arg(&self.namespace);
        }
        cmd
    }

    fn timeout(&self) -> Duration {
        self.start_timeout.max(self.stop_timeout)
    }

    /// `rollout restart deployment/<d>`.
    pub fn rollout_restart_command(&self, deployment: &str) -> Cmd {
        self.base()
            .args(["rollout", "restart"])
            .arg(format!("deployment/{deployment}"))
            .timeout(self.timeout())
    }

    /// `rollout status deployment/<d> --timeout=<start_timeout>s`.
    pub fn rollout_status_command(&self, deployment: &str, timeout: Duration) -> Cmd {
        self.base()
            .args(["rollout", "status"])
            .arg(format!("deployment/{deployment}"))
            .arg(format!("--timeout={}s", secs(timeout)))
            .timeout(timeout + Duration::from_secs(15))
    }

    /// `set image deployment/<d> <container>=<image>:<version>`.
    pub fn set_image_command(&self, deployment: &str, version: &str) -> Result<Cmd, ServiceError> {
        validate_version(version)?;
        if self.image.is_empty() {
            return Err(ServiceError::NotConfigured {
                backend: BACKEND,
                key: "services.kubernetes.image",
            });
        }
        let container = if self.container.is_empty() { "*" } else { self.container.as_str() };
        Ok(self
            .base()
            .args(["set", "image"])
            .arg(format!("deployment/{deployment}"))
            .arg(format!("{container}={}:{version}", self.image))
            .timeout(self.timeout()))
    }

    /// `rollout undo deployment/<d>`.
    pub fn rollout_undo_command(&self, deployment: &str) -> Cmd {
        self.base()
            .args(["rollout", "undo"])
            .arg(format!("deployment/{deployment}"))
            .timeout(self.timeout())
    }

    /// `scale deployment/<d> --replicas=<n>`.
    pub fn scale_command(&self, deployment: &str, replicas: u64) -> Cmd {
        self.base()
            .arg("scale")
            .arg(format!("deployment/{deployment}"))
            .arg(format!("--replicas={replicas}"))
            .timeout(self.timeout())
    }

    /// `annotate --overwrite deployment/<d> rail-replicas=<n>`.
    pub fn annotate_command(&self, deployment: &str, replicas: u64) -> Cmd {
        self.base()
            .args(["annotate", "--overwrite"])
            .arg(format!("deployment/{deployment}"))
            .arg(format!("{REPLICAS_ANNOTATION}={replicas}"))
            .timeout(self.timeout())
    }

    /// `get deployment/<d> -o json`.
    pub fn get_command(&self, deployment: &str) -> Cmd {
        self.base()
            .arg("get")
            .arg(format!("deployment/{deployment}"))
            .args(["-o", "json"])
            .timeout(self.timeout().min(Duration::from_secs(60)))
    }

    async fn run(cmd: &Cmd, action: Action) -> Result<(), ServiceError> {
        cmd.run().await.map_err(|source| ServiceError::Command { backend: BACKEND, action, source })
    }

    async fn get(&self, deployment: &str, action: Action) -> Result<Value, ServiceError> {
        let cmd = self.get_command(deployment);
        let output = cmd.output().await.map_err(|source| ServiceError::Command {
            backend: BACKEND,
            action,
            source,
        })?;
        serde_json::from_slice(&output.stdout).map_err(|err| ServiceError::Output {
            command: cmd.display(),
            detail: format!("not JSON: {err}"),
        })
    }

    /// Kubernetes' own rollback of each deployment to its previous ReplicaSet, then the wait for it.
    pub async fn rollout_undo(&self, services: &[String]) -> Result<(), ServiceError> {
        let started = Instant::now();
        for deployment in self.deployments_of(services)? {
            Self::run(&self.rollout_undo_command(deployment), Action::Restart).await?;
        }
        self.wait_ready(services, self.start_timeout.saturating_sub(started.elapsed())).await
    }
}

/// What `get deployment -o json` says about one deployment.
fn describe(name: &str, deployment: &Value, container: &str) -> ServiceStatus {
    let spec = deployment["spec"]["replicas"].as_u64();
    let status = &deployment["status"];
    let ready = status["readyReplicas"].as_u64().unwrap_or(0);
    let updated = status["updatedReplicas"].as_u64().unwrap_or(0);
    let state = match spec {
        Some(0) => ServiceState::Stopped,
        Some(want) if ready >= want && updated >= want => ServiceState::Running,
        Some(_) => ServiceState::Starting,
        None => ServiceState::Unknown,
    };
    let containers = deployment["spec"]["template"]["spec"]["containers"].as_array();
    let image = containers.and_then(|list| {
        list.iter()
            .find(|c| container.is_empty() || c["name"] == container)
            .and_then(|c| c["image"].as_str())
    });
    ServiceStatus {
        name: name.to_owned(),
        state,
        pid: None,
        version: image.and_then(image_tag),
        detail: Some(format!("{ready}/{} ready", spec.unwrap_or(0))),
    }
}

/// The replica count a stop recorded, when there is one.
fn recorded_replicas(deployment: &Value) -> Option<u64> {
    deployment["metadata"]["annotations"][REPLICAS_ANNOTATION].as_str()?.parse().ok()
}

impl ServiceController for KubernetesController {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn stop(&self, services: &[String]) -> Result<(), ServiceError> {
        for deployment in self.deployments_of(services)? {
            let current = self.get(deployment, Action::Stop).await?;
            let replicas = current["spec"]["replicas"].as_u64().unwrap_or(1);
            if replicas > 0 {
                Self::run(&self.annotate_command(deployment, replicas), Action::Stop).await?;
            }
            Self::run(&self.scale_command(deployment, 0), Action::Stop).await?;
        }
        Ok(())
    }

    async fn start(&self, services: &[String], version: Option<&str>) -> Result<(), ServiceError> {
        let started = Instant::now();
        for deployment in self.deployments_of(services)? {
            if let Some(version) = version {
                Self::run(&self.set_image_command(deployment, version)?, Action::Start).await?;
            }
            let current = self.get(deployment, Action::Start).await?;
            if current["spec"]["replicas"].as_u64() == Some(0) {
                let replicas = recorded_replicas(&current).filter(|n| *n > 0).unwrap_or(1);
                Self::run(&self.scale_command(deployment, replicas), Action::Start).await?;
            }
        }
        self.wait_ready(services, self.start_timeout.saturating_sub(started.elapsed())).await
    }

    async fn restart(
        &self,
        services: &[String],
        version: Option<&str>,
    ) -> Result<(), ServiceError> {
        let started = Instant::now();
        for deployment in self.deployments_of(services)? {
            let cmd = match version {
                Some(version) => self.set_image_command(deployment, version)?,
                None => self.rollout_restart_command(deployment),
            };
            Self::run(&cmd, Action::Restart).await?;
        }
        self.wait_ready(services, self.start_timeout.saturating_sub(started.elapsed())).await
    }

    async fn status(&self) -> Result<Vec<ServiceStatus>, ServiceError> {
        let mut out = Vec::new();
        for deployment in &self.deployments {
            let value = self.get(deployment, Action::Status).await?;
            out.push(describe(deployment, &value, &self.container));
        }
        Ok(out)
    }

    async fn current_version(&self) -> Result<Option<String>, ServiceError> {
        let Some(first) = self.deployments.first() else { return Ok(None) };
        let value = self.get(first, Action::Version).await?;
        Ok(describe(first, &value, &self.container).version)
    }

    async fn wait_ready(&self, services: &[String], timeout: Duration) -> Result<(), ServiceError> {
        let started = Instant::now();
        for deployment in self.targets(services) {
            let left = timeout.saturating_sub(started.elapsed()).max(Duration::from_secs(1));
            let cmd = self.rollout_status_command(deployment, left);
            cmd.run().await.map_err(|source| match source {
                crate::process::ProcessError::Failed { .. }
                | crate::process::ProcessError::Timeout { .. } => ServiceError::NotReady {
                    backend: BACKEND,
                    after: timeout,
                    reason: format!("deployment/{deployment}: {source}"),
                },
                source => ServiceError::Command { backend: BACKEND, action: Action::Ready, source },
            })?;
        }
        Ok(())
    }

    fn plan(&self, action: Action, services: &[String], version: Option<&str>) -> Vec<String> {
        let mut lines = Vec::new();
        let targets = self.targets(services);
        for deployment in targets {
            match action {
                Action::Stop => {
                    lines.push(format!(
                        "{}  # then annotate {REPLICAS_ANNOTATION}=<replicas>",
                        self.get_command(deployment).display()
                    ));
                    lines.push(self.scale_command(deployment, 0).display());
                }
                Action::Start | Action::Restart => {
                    match (version, action) {
                        (Some(version), _) => {
                            lines.push(match self.set_image_command(deployment, version) {
                                Ok(cmd) => cmd.display(),
                                Err(err) => format!("# {err}"),
                            });
                        }
                        (None, Action::Restart) => {
                            lines.push(self.rollout_restart_command(deployment).display());
                        }
                        (None, _) => {}
                    }
                    if action == Action::Start {
                        lines.push(format!(
                            "{}  # scaled back to {REPLICAS_ANNOTATION} if at 0",
                            self.scale_command(deployment, 1).display()
                        ));
                    }
                }
                Action::Status | Action::Version => {
                    lines.push(self.get_command(deployment).display());
                }
                Action::Ready => {}
            }
        }
        if matches!(action, Action::Start | Action::Restart | Action::Ready) {
            for deployment in targets {
                lines.push(self.rollout_status_command(deployment, self.start_timeout).display());
            }
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_json_gives_state_version_and_recorded_replicas() {
        let value: Value = serde_json::from_str(
            r#"{"metadata":{"annotations":{"rail-replicas":"3"}},
                "spec":{"replicas":3,"template":{"spec":{"containers":[
                    {"name":"sidecar","image":"envoy:1.29"},
                    {"name":"web","image":"registry.example:5000/shop:v7"}]}}},
                "status":{"readyReplicas":2,"updatedReplicas":3}}"#,
        )
        .unwrap();
        let status = describe("web", &value, "web");
        assert_eq!(status.state, ServiceState::Starting);
        assert_eq!(status.version.as_deref(), Some("v7"));
        assert_eq!(status.detail.as_deref(), Some("2/3 ready"));
        assert_eq!(recorded_replicas(&value), Some(3));
        // Without a container name, the first container's image counts.
        assert_eq!(describe("web", &value, "").version.as_deref(), Some("1.29"));
        let stopped: Value = serde_json::from_str(r#"{"spec":{"replicas":0}}"#).unwrap();
        assert_eq!(describe("web", &stopped, "").state, ServiceState::Stopped);
        assert_eq!(recorded_replicas(&stopped), None);
    }
}
