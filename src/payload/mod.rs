//! The docker-worker v1 task payload: strict types and validation that reports every error with its
//! JSON path (`payload.maxRunTime: expected an integer from 1 to 86400, got "hello"`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

/// A validated task payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Payload {
    /// The image to run.
    pub image: Image,
    /// Command and arguments; empty means the image's default.
    pub command: Vec<String>,
    /// Environment from the payload (reserved variables are applied later and always win).
    pub env: BTreeMap<String, String>,
    /// Seconds the container may run (payload value, or the worker default when absent).
    pub max_run_time: u64,
    /// Artifacts by name.
    pub artifacts: BTreeMap<String, ArtifactSpec>,
    /// Cache name -> mount point.
    pub cache: BTreeMap<String, String>,
    /// Requested capabilities.
    pub capabilities: Capabilities,
    /// Exit-status handling.
    pub on_exit_status: OnExitStatus,
    /// Feature flags, with schema defaults applied and legacy aliases folded in.
    pub features: Features,
    /// Live log artifact name (default `public/logs/live.log`).
    pub log: String,
    /// Kept for compatibility, unused.
    pub superseder_url: Option<String>,
}

/// The four image forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Image {
    /// A plain image name (`ubuntu:24.04`).
    Name(String),
    /// `{type: docker-image, name}`.
    DockerImage { name: String },
    /// `{type: indexed-image, namespace, path}`.
    IndexedImage { namespace: String, path: String },
    /// `{type: task-image, taskId, path}`.
    TaskImage { task_id: String, path: String },
}

/// Whether an artifact is one file or a directory tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArtifactKind {
    /// A single regular file.
    File,
    /// Every regular file below a directory.
    Directory,
}

/// One requested artifact.
#[derive(Debug, Clone, PartialEq)]
pub struct ArtifactSpec {
    /// File or directory.
    pub kind: ArtifactKind,
    /// Absolute path inside the container.
    pub path: String,
    /// Expiry; `None` means the task's expiry.
    pub expires: Option<DateTime<Utc>>,
}

/// `payload.capabilities`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// Run privileged.
    pub privileged: bool,
    /// Unsupported; parsed for compatibility.
    pub disable_seccomp: bool,
    /// Host devices.
    pub devices: Devices,
}

/// `payload.capabilities.devices`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Devices {
    /// v4l2loopback video device.
    pub loopback_video: bool,
    /// snd-aloop audio device.
    pub loopback_audio: bool,
    /// Host /dev/shm.
    pub host_shared_memory: bool,
    /// /dev/kvm.
    pub kvm: bool,
}

/// `payload.onExitStatus`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OnExitStatus {
    /// Exit codes resolved as `intermittent-task` exceptions.
    pub retry: Vec<i64>,
    /// Exit codes that purge the task's caches.
    pub purge_caches: Vec<i64>,
}

/// `payload.features` with schema defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Features {
    /// Serve the log live (alias `azureLivelog`). Default true.
    pub local_live_log: bool,
    /// Upload the log as one artifact (alias `bufferLog`). Default true.
    pub bulk_log: bool,
    /// Default false.
    pub taskcluster_proxy: bool,
    /// Default true.
    pub artifacts: bool,
    /// Default false.
    pub dind: bool,
    /// Default false.
    pub docker_save: bool,
    /// Default false.
    pub interactive: bool,
    /// Default false.
    pub allow_ptrace: bool,
    /// Default false.
    pub chain_of_trust: bool,
}

impl Default for Features {
    fn default() -> Self {
        Features {
            local_live_log: true,
            bulk_log: true,
            taskcluster_proxy: false,
            artifacts: true,
            dind: false,
            docker_save: false,
            interactive: false,
            allow_ptrace: false,
            chain_of_trust: false,
        }
    }
}

/// What validation needs to know beyond the payload itself.
#[derive(Debug, Clone)]
pub struct ValidationContext {
    /// The task's `expires`; artifact expiries may not exceed it.
    pub task_expires: Option<DateTime<Utc>>,
    /// Used when `maxRunTime` is absent (legacy payloads).
    pub default_max_run_time: u64,
    /// Schema feature names (`localLiveLog`, ...) the worker config disables.
    pub disabled_features: Vec<String>,
}

/// One validation error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadError {
    /// JSON path such as `payload.artifacts["public/x"].expires`.
    pub path: String,
    /// A plain message.
    pub message: String,
}

/// Every error found in a payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(|e| format!("{}: {}", e.path, e.message)).collect::<Vec<_>>().join("\n"))]
pub struct PayloadErrors(pub Vec<PayloadError>);

mod parse;
#[cfg(test)]
mod tests;

/// The default live log artifact name.
pub const DEFAULT_LOG_NAME: &str = "public/logs/live.log";

/// Schema feature names (`payload.features.<name>`, `features.<name>.enabled` in the worker config).
pub const FEATURE_NAMES: [&str; 9] = [
    "localLiveLog",
    "bulkLog",
    "taskclusterProxy",
    "artifacts",
    "dind",
    "dockerSave",
    "interactive",
    "allowPtrace",
    "chainOfTrust",
];

/// Largest `maxRunTime` the schema allows (one day).
pub const MAX_RUN_TIME_LIMIT: u64 = 86_400;

impl Payload {
    /// Validate a raw payload, collecting every error (each with its JSON path).
    ///
    /// Accepts the 2014 legacy form too: string artifacts, `bufferLog` / `azureLivelog`, and a
    /// missing `maxRunTime` (which takes `ctx.default_max_run_time`).
    pub fn parse(
        value: &serde_json::Value,
        ctx: &ValidationContext,
    ) -> Result<Payload, PayloadErrors> {
        parse::parse(value, ctx)
    }

    /// Name of the backing log artifact for this payload's live log (see [`backing_log_name`]).
    pub fn backing_log_name(&self) -> String {
        backing_log_name(&self.log)
    }
}

/// The backing log artifact name: `_backing` inserted before the extension of the last path segment
/// (`public/logs/live.log` -> `public/logs/live_backing.log`, `apple/banana.log.txt` ->
/// `apple/banana.log_backing.txt`), or appended when there is no extension.
pub fn backing_log_name(log: &str) -> String {
    let segment_start = log.rfind('/').map_or(0, |i| i + 1);
    match log[segment_start..].rfind('.') {
        // A leading dot (`.log`) marks a hidden name, not an extension.
        Some(dot) if dot > 0 => {
            let at = segment_start + dot;
            format!("{}_backing{}", &log[..at], &log[at..])
        }
        _ => format!("{log}_backing"),
    }
}

impl Image {
    /// The Docker image reference to pull, for the forms that name one directly.
    pub fn docker_name(&self) -> Option<&str> {
        match self {
            Image::Name(name) | Image::DockerImage { name } => Some(name),
            Image::IndexedImage { .. } | Image::TaskImage { .. } => None,
        }
    }
}

impl std::fmt::Display for Image {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Image::Name(name) | Image::DockerImage { name } => f.write_str(name),
            Image::IndexedImage { namespace, path } => {
                write!(f, "artifact {path} from indexed task {namespace}")
            }
            Image::TaskImage { task_id, path } => write!(f, "artifact {path} from task {task_id}"),
        }
    }
}

impl PayloadErrors {
    /// The errors, in the order they were found.
    pub fn errors(&self) -> &[PayloadError] {
        &self.0
    }
}

impl std::fmt::Display for PayloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}
