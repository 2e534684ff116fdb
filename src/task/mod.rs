//! One task run, from payload to [`RunReport`]: validate, get the image, create and attach the
//! container, supervise it (exit, maxRunTime, abort), collect artifacts, remove the container.
//! Both `docker-worker run` and the queue daemon call [`Engine::run`]; uploading the log and
//! reporting the resolution are the caller's, after this returns.

mod abort;
pub mod claimed;
pub mod container;
pub mod image;
pub mod scopes;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures_util::StreamExt;

pub use abort::Abort;

use crate::artifacts::{self, ArtifactReport, ArtifactSink};
use crate::config::WorkerConfig;
use crate::docker::Docker;
use crate::livelog::TaskLog;
use crate::payload::{Image, Payload};
use crate::resolution::{resolve, AbortReason, Outcome, Resolution};

/// How long to keep reading output after the container exited before giving up on the stream.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(10);

/// One run of one task, as the engine needs it.
#[derive(Debug, Clone)]
pub struct TaskRun {
    /// Task id.
    pub task_id: String,
    /// Run id.
    pub run_id: u32,
    /// The raw payload (validated by the engine).
    pub payload: serde_json::Value,
    /// The task's expiry (artifact expiries may not exceed it).
    pub task_expires: Option<DateTime<Utc>>,
    /// The task's scopes; `None` for a trusted local run (no scope checks).
    pub scopes: Option<Vec<String>>,
}

/// What a run produced.
#[derive(Debug)]
pub struct RunReport {
    /// What happened.
    pub outcome: Outcome,
    /// How the run resolves (decided by [`resolve`]).
    pub resolution: Resolution,
    /// The container's exit code, when it exited by itself or was killed.
    pub exit_code: Option<i64>,
    /// Wall time of the run.
    pub duration: Duration,
    /// Artifacts stored and error artifacts recorded.
    pub artifacts: ArtifactReport,
    /// The validated payload (absent when it was malformed).
    pub payload: Option<Payload>,
}

/// Runs tasks in Docker. Cheap to share; one engine serves every concurrent run.
#[derive(Debug, Clone)]
pub struct Engine {
    docker: Docker,
    config: Arc<WorkerConfig>,
    scratch: PathBuf,
}

/// Container supervision ended this way.
enum Ended {
    Exited(i64),
    TimedOut(i64),
    Aborted(AbortReason),
}

impl Engine {
    /// An engine using `docker`, the worker settings, and `scratch` for spooling artifacts.
    pub fn new(docker: Docker, config: Arc<WorkerConfig>, scratch: PathBuf) -> Engine {
        Engine {
            docker,
            config,
            scratch,
        }
    }

    /// The worker settings.
    pub fn config(&self) -> &WorkerConfig {
        &self.config
    }

    /// The Docker client.
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// Run one task to its outcome. Never leaves a container behind. Writes the header, markers and
    /// footer to `log` (which the caller closes and uploads).
    pub async fn run(
        &self,
        task: &TaskRun,
        log: &mut TaskLog,
        sink: &dyn ArtifactSink,
        abort: &Abort,
    ) -> RunReport {
        let started = Instant::now();
        let mut report = RunReport {
            outcome: Outcome::InternalError(String::new()),
            resolution: Resolution::Nothing,
            exit_code: None,
            duration: Duration::ZERO,
            artifacts: ArtifactReport::default(),
            payload: None,
        };
        let outcome = match self.run_inner(task, log, sink, abort, &mut report).await {
            Ok(outcome) => outcome,
            Err(e) => {
                let message = format!("Worker error: {e}");
                let _ = log.error(&message).await;
                Outcome::InternalError(message)
            }
        };
        let retry = report
            .payload
            .as_ref()
            .map(|p| p.on_exit_status.retry.clone())
            .unwrap_or_default();
        report.resolution = resolve(&outcome, &retry);
        report.duration = started.elapsed();
        let code = match (&outcome, report.exit_code) {
            (Outcome::Exited(code), _) => *code,
            (Outcome::TimedOut, _) | (Outcome::Aborted(_), _) => -1,
            (_, Some(code)) => code,
            _ => -1,
        };
        let verdict = if report.resolution == Resolution::Completed {
            "Successful"
        } else {
            "Unsuccessful"
        };
        let _ = log
            .info(&format!(
                "{verdict} task run with exit code: {code} completed in {:.3} seconds",
                report.duration.as_secs_f64()
            ))
            .await;
        report.outcome = outcome;
        report
    }

    async fn run_inner(
        &self,
        task: &TaskRun,
        log: &mut TaskLog,
        sink: &dyn ArtifactSink,
        abort: &Abort,
        report: &mut RunReport,
    ) -> Result<Outcome, EngineError> {
        self.write_header(task, log).await?;

        let payload = match self.validate(task) {
            Ok(p) => p,
            Err(message) => {
                for line in message.lines() {
                    log.error(line).await?;
                }
                return Ok(Outcome::MalformedPayload(message));
            }
        };
        report.payload = Some(payload.clone());

        let login = payload
            .image
            .docker_name()
            .and_then(|name| image::login_for(name, &self.config));
        if let Some(scopes) = &task.scopes {
            let mut missing = scopes::missing(scopes, &payload);
            if let (Some(_), Some(name)) = (&login, payload.image.docker_name()) {
                let need = image::private_image_scope(name);
                if !scopes::satisfies(scopes, &need) {
                    missing.push(need);
                }
            }
            if !missing.is_empty() {
                log.error(&format!(
                    "Task is missing scopes required by its payload: {}",
                    missing.join(", ")
                ))
                .await?;
                return Ok(Outcome::MissingScopes(missing));
            }
        }
        if let Some(what) = self.unsupported(&payload) {
            log.error(&format!("{what} is not supported by this worker"))
                .await?;
            return Ok(Outcome::Unsupported(what));
        }
        for (name, mount) in &payload.cache {
            log.info(&format!("using cache \"{name}\" -> {mount}"))
                .await?;
        }

        let image = match &payload.image {
            Image::Name(name) | Image::DockerImage { name } => name.clone(),
            Image::IndexedImage { .. } | Image::TaskImage { .. } => {
                unreachable!("unsupported image forms are refused above")
            }
        };
        if abort.is_aborted() {
            return Ok(Outcome::Aborted(abort.aborted().await));
        }
        let pull = tokio::select! {
            r = image::ensure(&self.docker, &image, login, &self.config.docker_config, log) => r,
            reason = abort.aborted() => return Ok(Outcome::Aborted(reason)),
        };
        match pull {
            Ok(()) => {}
            Err(image::ImageError::Log(e)) => return Err(e.into()),
            Err(e) => {
                let message = e.to_string();
                log.error(&message).await?;
                return Ok(Outcome::ImageFailed(message));
            }
        }

        let identity = container::RunIdentity {
            task_id: &task.task_id,
            run_id: task.run_id,
            config: &self.config,
        };
        let body = container::create_body(&payload, &image, &identity);
        let id = self.docker.create_container(None, body).await?;
        let guard = RemoveOnDrop {
            docker: self.docker.clone(),
            id: Some(id.clone()),
        };
        let result = self
            .run_container(&id, &payload, log, sink, abort, report)
            .await;
        guard.disarm();
        if let Err(e) = self.docker.remove(&id).await {
            tracing::warn!(container = %id, error = %e, "removing task container failed");
            let _ = log
                .error(&format!("Failed to remove container {id}: {e}"))
                .await;
        }
        result
    }

    /// Start, supervise and read out one created container.
    async fn run_container(
        &self,
        id: &str,
        payload: &Payload,
        log: &mut TaskLog,
        sink: &dyn ArtifactSink,
        abort: &Abort,
        report: &mut RunReport,
    ) -> Result<Outcome, EngineError> {
        let mut output = self.docker.attach(id).await?;
        log.info("=== Task Starting ===").await?;
        if let Err(e) = self.docker.start(id).await {
            log.error("Failure to properly start execution environment.")
                .await?;
            log.info(&e.to_string()).await?;
            return Ok(Outcome::StartFailed(e.to_string()));
        }

        let max_run_time = Duration::from_secs(payload.max_run_time);
        let ended = self
            .supervise(id, &mut output, max_run_time, log, abort)
            .await?;
        log.info("=== Task Finished ===").await?;

        let outcome = match ended {
            Ended::Exited(code) => {
                report.exit_code = Some(code);
                Outcome::Exited(code)
            }
            Ended::TimedOut(code) => {
                report.exit_code = Some(code);
                return Ok(Outcome::TimedOut);
            }
            Ended::Aborted(reason) => return Ok(Outcome::Aborted(reason)),
        };
        if payload.features.artifacts && !payload.artifacts.is_empty() {
            match artifacts::collect(
                &self.docker,
                id,
                &payload.artifacts,
                sink,
                log,
                &self.scratch,
            )
            .await
            {
                Ok(collected) => report.artifacts = collected,
                Err(e) => {
                    let message = format!("Artifact upload failed: {e}");
                    log.error(&message).await?;
                    return Ok(Outcome::InternalError(message));
                }
            }
        }
        Ok(outcome)
    }

    /// Stream output to the log until the container exits, is killed for maxRunTime, or the run
    /// is aborted. Returns once the output stream is drained.
    async fn supervise(
        &self,
        id: &str,
        output: &mut (impl futures_util::Stream<Item = Result<bytes::Bytes, crate::docker::DockerError>>
                  + Unpin),
        max_run_time: Duration,
        log: &mut TaskLog,
        abort: &Abort,
    ) -> Result<Ended, EngineError> {
        let wait = self.docker.wait(id);
        tokio::pin!(wait);
        let deadline = tokio::time::sleep(max_run_time);
        tokio::pin!(deadline);
        let mut exit: Option<i64> = None;
        let mut stopped: Option<Ended> = None;
        let mut output_open = true;
        let drain = tokio::time::sleep(Duration::MAX / 4);
        tokio::pin!(drain);

        while output_open || exit.is_none() {
            tokio::select! {
                chunk = output.next(), if output_open => match chunk {
                    Some(Ok(bytes)) => log.write(&bytes).await?,
                    Some(Err(e)) => {
                        tracing::warn!(container = %id, error = %e, "task output stream failed");
                        output_open = false;
                    }
                    None => output_open = false,
                },
                code = &mut wait, if exit.is_none() => {
                    exit = Some(code?);
                    drain.as_mut().reset(tokio::time::Instant::now() + DRAIN_AFTER_EXIT);
                }
                _ = &mut deadline, if stopped.is_none() && exit.is_none() => {
                    log.error(&format!(
                        "Task timeout after {} seconds. Force killing container.",
                        max_run_time.as_secs()
                    )).await?;
                    self.docker.kill(id).await?;
                    stopped = Some(Ended::TimedOut(-1));
                }
                reason = abort.aborted(), if stopped.is_none() && exit.is_none() => {
                    log.error(&abort_message(&reason)).await?;
                    self.docker.kill(id).await?;
                    stopped = Some(Ended::Aborted(reason));
                }
                _ = &mut drain, if exit.is_some() && output_open => {
                    tracing::warn!(container = %id, "output still open after exit; closing it");
                    output_open = false;
                }
            }
        }
        let code = exit.unwrap_or(-1);
        Ok(match stopped {
            Some(Ended::TimedOut(_)) => Ended::TimedOut(code),
            Some(other) => other,
            None => Ended::Exited(code),
        })
    }

    fn validate(&self, task: &TaskRun) -> Result<Payload, String> {
        let ctx = self.config.validation_context(task.task_expires);
        Payload::parse(&task.payload, &ctx).map_err(|e| e.to_string())
    }

    /// The first thing the payload asks for that this worker cannot do, if any.
    fn unsupported(&self, payload: &Payload) -> Option<String> {
        let f = &payload.features;
        let d = &payload.capabilities.devices;
        let checks = [
            (f.taskcluster_proxy, "Feature \"taskclusterProxy\""),
            (f.dind, "Feature \"dind\""),
            (f.docker_save, "Feature \"dockerSave\""),
            (f.interactive, "Feature \"interactive\""),
            (f.chain_of_trust, "Feature \"chainOfTrust\""),
            (!payload.cache.is_empty(), "Payload \"cache\" (caches)"),
            (d.loopback_video, "Device \"loopbackVideo\""),
            (d.loopback_audio, "Device \"loopbackAudio\""),
            (
                payload.capabilities.privileged && !self.config.docker_config.allow_privileged,
                "Capability \"privileged\" (dockerConfig.allowPrivileged is false)",
            ),
            (
                matches!(payload.image, Image::IndexedImage { .. }),
                "Image type \"indexed-image\"",
            ),
            (
                matches!(payload.image, Image::TaskImage { .. }),
                "Image type \"task-image\"",
            ),
        ];
        checks
            .into_iter()
            .find(|(asked, _)| *asked)
            .map(|(_, what)| what.to_string())
    }

    async fn write_header(&self, task: &TaskRun, log: &mut TaskLog) -> std::io::Result<()> {
        let c = &self.config;
        let lines = [
            format!("Task ID: {}", task.task_id),
            format!("Worker ID: {}", c.worker_id),
            format!("Worker Group: {}", c.worker_group),
            format!("Worker Node Type: {}", c.worker_node_type),
            format!("Worker Pool: {}/{}", c.provisioner_id, c.worker_type),
            format!("Worker Version: {}", env!("CARGO_PKG_VERSION")),
            format!("Public IP: {}", c.public_ip),
            format!("Hostname: {}", hostname()),
        ];
        for line in lines {
            log.info(&line).await?;
        }
        Ok(())
    }
}

/// Removes a container if the run unwinds (panics) before its explicit removal.
struct RemoveOnDrop {
    docker: Docker,
    id: Option<String>,
}

impl RemoveOnDrop {
    /// The normal path removes the container itself.
    fn disarm(mut self) {
        self.id = None;
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            let docker = self.docker.clone();
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    let _ = docker.remove(&id).await;
                });
            }
        }
    }
}

fn abort_message(reason: &AbortReason) -> String {
    match reason {
        AbortReason::WorkerShutdown => "Worker is shutting down: task aborted.".to_string(),
        AbortReason::ResolvedElsewhere(why) => {
            format!("Task run was resolved elsewhere ({why}): task aborted.")
        }
        AbortReason::InternalError(why) => format!("Worker error: {why}: task aborted."),
    }
}

/// This host's name.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".to_string())
}

/// A worker-side failure while running a task (resolves `internal-error`).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Docker failed.
    #[error(transparent)]
    Docker(#[from] crate::docker::DockerError),
    /// Writing the log failed.
    #[error("writing the task log: {0}")]
    Log(#[from] std::io::Error),
}
