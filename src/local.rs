//! `docker-worker run PAYLOAD.json`: one task through the same engine as the daemon, with a local
//! directory instead of the queue. The live log goes to stdout as it happens; artifacts, the backing
//! log and `result.json` go to the artifacts directory.

use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use serde::Serialize;
use tokio::io::AsyncWriteExt;

use crate::artifacts::{ArtifactFile, ArtifactSink, ErrorArtifact, SinkError};
use crate::config::WorkerConfig;
use crate::docker::{Docker, DockerError};
use crate::livelog::TaskLog;
use crate::payload::backing_log_name;
use crate::resolution::Resolution;
use crate::task::{Abort, Engine, RunReport, TaskRun};

/// Exit status for a completed task.
pub const EXIT_COMPLETED: i32 = 0;
/// Exit status for a failed task.
pub const EXIT_FAILED: i32 = 1;
/// Exit status for an exception (malformed payload and the like).
pub const EXIT_EXCEPTION: i32 = 2;
/// Exit status when the worker itself could not run the task.
pub const EXIT_WORKER_ERROR: i32 = 3;

/// Options of `docker-worker run`.
#[derive(Debug, Clone)]
pub struct LocalOptions {
    /// The payload file (or a whole task definition with a `payload` key).
    pub payload_file: PathBuf,
    /// Worker settings.
    pub config: WorkerConfig,
    /// Task id to use (random when absent).
    pub task_id: Option<String>,
    /// Where artifacts, the backing log and `result.json` go.
    pub artifacts_dir: PathBuf,
}

/// Why `docker-worker run` could not run the task at all.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// The payload file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// Docker is unreachable.
    #[error(transparent)]
    Docker(#[from] DockerError),
    /// The artifacts directory could not be written.
    #[error("cannot write to {path}: {source}")]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

/// What `result.json` holds.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LocalResult {
    /// The task id used.
    pub task_id: String,
    /// `completed`, `failed` or `exception`.
    pub state: String,
    /// The exception reason, if any.
    pub reason: Option<String>,
    /// The container's exit code, if it ran.
    pub exit_code: Option<i64>,
    /// Seconds the run took.
    pub duration: f64,
    /// What happened, for people.
    pub outcome: String,
    /// File artifacts written (names, sizes, content types), the backing log included.
    pub artifacts: Vec<ArtifactFile>,
    /// Error artifacts recorded.
    pub error_artifacts: Vec<ErrorArtifact>,
}

impl LocalResult {
    /// The process exit status for this result.
    pub fn exit_status(&self) -> i32 {
        match self.state.as_str() {
            "completed" => EXIT_COMPLETED,
            "failed" => EXIT_FAILED,
            _ => EXIT_EXCEPTION,
        }
    }
}

/// Stores artifacts under a directory, by name.
#[derive(Debug)]
pub struct DirSink {
    root: PathBuf,
}

impl DirSink {
    /// A sink writing below `root`.
    pub fn new(root: impl Into<PathBuf>) -> DirSink {
        DirSink { root: root.into() }
    }

    /// The local path for an artifact name; `None` if the name would escape the directory.
    pub fn path_for(&self, name: &str) -> Option<PathBuf> {
        let mut path = self.root.clone();
        for c in Path::new(name).components() {
            match c {
                Component::Normal(p) => path.push(p),
                Component::CurDir => {}
                _ => return None,
            }
        }
        (path != self.root).then_some(path)
    }
}

#[async_trait]
impl ArtifactSink for DirSink {
    async fn put_file(&self, file: &ArtifactFile, path: &Path) -> Result<(), SinkError> {
        let fail = |message: String| SinkError {
            name: file.name.clone(),
            message,
        };
        let dest = self
            .path_for(&file.name)
            .ok_or_else(|| fail("name escapes the artifacts directory".into()))?;
        if let Some(parent) = dest.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| fail(format!("creating {}: {e}", parent.display())))?;
        }
        if tokio::fs::rename(path, &dest).await.is_err() {
            tokio::fs::copy(path, &dest)
                .await
                .map_err(|e| fail(format!("writing {}: {e}", dest.display())))?;
        }
        Ok(())
    }

    async fn put_error(&self, _error: &ErrorArtifact) -> Result<(), SinkError> {
        // Error artifacts are listed in result.json.
        Ok(())
    }
}

/// The payload and task facts read from a `run` input file.
#[derive(Debug)]
struct Input {
    payload: serde_json::Value,
    task_expires: Option<DateTime<Utc>>,
}

/// Read the input file: a payload, or a task definition with a `payload` key. Invalid JSON is a
/// malformed payload whose message names the file, line and column.
async fn read_input(path: &Path) -> Result<Result<Input, String>, LocalError> {
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|source| LocalError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    let value: serde_json::Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            return Ok(Err(format!(
                "{}:{}:{}: invalid JSON: {}",
                path.display(),
                e.line(),
                e.column(),
                e
            )))
        }
    };
    let is_task = value.get("payload").is_some_and(|p| p.is_object())
        && (value.get("provisionerId").is_some()
            || value.get("taskQueueId").is_some()
            || value.get("metadata").is_some());
    if !is_task {
        return Ok(Ok(Input {
            payload: value,
            task_expires: None,
        }));
    }
    let task_expires = value
        .get("expires")
        .and_then(|e| e.as_str())
        .and_then(|e| DateTime::parse_from_rfc3339(e).ok())
        .map(|e| e.with_timezone(&Utc));
    Ok(Ok(Input {
        payload: value["payload"].clone(),
        task_expires,
    }))
}

/// A random task id in Taskcluster's slugid form (22 URL-safe base64 characters).
pub fn random_task_id() -> String {
    use base64::Engine as _;
    let mut bytes: [u8; 16] = rand::random();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    bytes[0] &= 0x7f; // slugid "nice": first character is a letter
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Run one task locally. Returns the result (also written to `result.json`).
pub async fn run(opts: LocalOptions) -> Result<LocalResult, LocalError> {
    let input = read_input(&opts.payload_file).await?;
    let task_id = opts.task_id.clone().unwrap_or_else(random_task_id);
    let dir = &opts.artifacts_dir;
    let write_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| LocalError::Write { path, source }
    };
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(write_err(dir))?;
    let scratch = tempfile::Builder::new()
        .prefix(".docker-worker-")
        .tempdir_in(dir)
        .map_err(write_err(dir))?;
    let log_path = scratch.path().join("live.log");
    let mut log = TaskLog::create(&log_path)
        .await
        .map_err(write_err(&log_path))?;
    let followers = log.followers();
    let echo = tokio::spawn(async move {
        let mut stdout = tokio::io::stdout();
        let mut stream = Box::pin(followers.follow());
        while let Some(Ok(chunk)) = stream.next().await {
            if stdout.write_all(&chunk).await.is_err() {
                break;
            }
            let _ = stdout.flush().await;
        }
    });

    let sink = DirSink::new(dir);
    let (report, log_name) = match input {
        Ok(input) => {
            let docker = Docker::connect().await?;
            let engine = Engine::new(
                docker,
                Arc::new(opts.config.clone()),
                scratch.path().to_path_buf(),
            );
            let task = TaskRun {
                task_id: task_id.clone(),
                run_id: 0,
                payload: input.payload,
                task_expires: input.task_expires,
                scopes: None,
            };
            let abort = Abort::new();
            let ctrl_c = abort.clone();
            let signals = tokio::spawn(async move {
                if tokio::signal::ctrl_c().await.is_ok() {
                    ctrl_c.abort(crate::resolution::AbortReason::WorkerShutdown);
                }
            });
            let report = engine.run(&task, &mut log, &sink, &abort).await;
            signals.abort();
            let log_name = report
                .payload
                .as_ref()
                .map(|p| p.log.clone())
                .unwrap_or_else(|| "public/logs/live.log".to_string());
            (report, log_name)
        }
        Err(message) => {
            let _ = log.error(&message).await;
            let outcome = crate::resolution::Outcome::MalformedPayload(message);
            let report = RunReport {
                resolution: crate::resolution::resolve(&outcome, &[]),
                outcome,
                exit_code: None,
                duration: std::time::Duration::ZERO,
                artifacts: Default::default(),
                payload: None,
            };
            (report, "public/logs/live.log".to_string())
        }
    };
    let log_path = log.close().await.map_err(write_err(&log_path))?;
    let _ = echo.await;

    let mut files = report.artifacts.files.clone();
    let backing = ArtifactFile {
        name: backing_log_name(&log_name),
        content_type: "text/plain; charset=utf-8".to_string(),
        expires: None,
        size: tokio::fs::metadata(&log_path)
            .await
            .map_err(write_err(&log_path))?
            .len(),
    };
    sink.put_file(&backing, &log_path)
        .await
        .map_err(|e| LocalError::Write {
            path: dir.clone(),
            source: io::Error::other(e.to_string()),
        })?;
    files.push(backing);

    let state = match report.resolution {
        Resolution::Nothing => "exception",
        r => r.state(),
    };
    let result = LocalResult {
        task_id,
        state: state.to_string(),
        reason: report.resolution.reason().map(str::to_string),
        exit_code: report.exit_code,
        duration: report.duration.as_secs_f64(),
        outcome: format!("{:?}", report.outcome),
        artifacts: files,
        error_artifacts: report.artifacts.errors.clone(),
    };
    let result_path = dir.join("result.json");
    let json = serde_json::to_vec_pretty(&result).expect("result serializes");
    tokio::fs::write(&result_path, json)
        .await
        .map_err(write_err(&result_path))?;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sink_paths_stay_inside_the_directory() {
        let sink = DirSink::new("/tmp/a");
        assert_eq!(
            sink.path_for("public/x.txt"),
            Some(PathBuf::from("/tmp/a/public/x.txt"))
        );
        assert_eq!(sink.path_for("../x"), None);
        assert_eq!(sink.path_for("/etc/passwd"), None);
        assert_eq!(sink.path_for(""), None);
    }

    #[test]
    fn random_task_ids_are_slugids() {
        let id = random_task_id();
        assert_eq!(id.len(), 22);
        assert!(id.chars().next().unwrap().is_ascii_alphabetic());
        assert!(id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    }
}
