//! End-to-end harness: a fake queue in-process and real `docker-worker start` processes pointed
//! at it. Every worker is killed and its containers removed when the harness is dropped.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};
use tokio::process::{Child, Command};

use crate::docker::LABEL_WORKER;
use crate::testkit::fake_queue::{FakeQueue, FakeQueueOptions};

/// Settings of one worker process.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Tasks at once.
    pub capacity: usize,
    /// Seconds between status polls (0 = off).
    pub cancel_poll_interval: u64,
    /// Extra config keys merged over the harness defaults (JSON object).
    pub extra_config: Value,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            capacity: 1,
            cancel_poll_interval: 30,
            extra_config: json!({}),
        }
    }
}

/// A running `docker-worker start` process.
#[derive(Debug)]
pub struct WorkerProcess {
    /// Its worker id (containers carry it as a label).
    pub worker_id: String,
    child: Child,
    stderr_path: PathBuf,
}

impl WorkerProcess {
    /// The OS process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Send a signal (SIGTERM, SIGQUIT, ...).
    pub fn signal(&self, signal: Signal) {
        if let Some(pid) = self.child.id() {
            let _ = kill(Pid::from_raw(pid as i32), signal);
        }
    }

    /// Wait for the process to exit; `None` if it is still running after `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(Ok(status)) => Some(status.code().unwrap_or(-1)),
            _ => None,
        }
    }

    /// What the worker wrote to stderr (its structured logs) so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }
}

/// The fake queue plus the workers started against it.
pub struct Harness {
    /// The fake queue.
    pub queue: FakeQueue,
    worker_bin: PathBuf,
    dir: tempfile::TempDir,
    workers: Vec<String>,
}

impl Harness {
    /// Start a fake queue with `opts`.
    pub async fn start(worker_bin: &Path, opts: FakeQueueOptions) -> Result<Harness, String> {
        let queue = FakeQueue::start(opts)
            .await
            .map_err(|e| format!("fake queue: {e}"))?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        Ok(Harness {
            queue,
            worker_bin: worker_bin.to_path_buf(),
            dir,
            workers: Vec::new(),
        })
    }

    /// Start a worker process with its own id.
    pub async fn worker(&mut self, opts: WorkerOptions) -> Result<WorkerProcess, String> {
        let worker_id = format!("w-{}", crate::local::random_task_id().to_lowercase());
        let worker_id: String = worker_id.chars().take(38).collect();
        let (provisioner_id, worker_type) = {
            let o = self.queue.options();
            (o.provisioner_id.clone(), o.worker_type.clone())
        };
        let mut config = json!({
            "rootUrl": self.queue.root_url(),
            "provisionerId": provisioner_id,
            "workerType": worker_type,
            "workerGroup": "dw-test-group",
            "workerId": worker_id,
            "capacity": opts.capacity,
            "taskQueue": {"pollInterval": 200},
            "task": {"cancelPollInterval": opts.cancel_poll_interval},
            "dockerConfig": {"delayFactor": 50, "maxAttempts": 2},
            "liveLog": {"bindAddress": "127.0.0.1", "port": 0},
            "shutdown": {"enabled": false}
        });
        merge(&mut config, &opts.extra_config);
        let config_path = self.dir.path().join(format!("{worker_id}.json"));
        std::fs::write(&config_path, config.to_string()).map_err(|e| e.to_string())?;
        let stderr_path = self.dir.path().join(format!("{worker_id}.log"));
        let stderr = std::fs::File::create(&stderr_path).map_err(|e| e.to_string())?;
        let creds = self.queue.worker_credentials();
        let child = Command::new(&self.worker_bin)
            .arg("start")
            .arg("--config")
            .arg(&config_path)
            .env("TASKCLUSTER_CLIENT_ID", &creds.client_id)
            .env("TASKCLUSTER_ACCESS_TOKEN", &creds.access_token)
            .env_remove("TASKCLUSTER_CERTIFICATE")
            .env_remove("DOCKER_WORKER_OPTS")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", self.worker_bin.display()))?;
        self.workers.push(worker_id.clone());
        Ok(WorkerProcess {
            worker_id,
            child,
            stderr_path,
        })
    }

    /// Containers left by this harness's workers.
    pub fn leftover_containers(&self) -> Vec<String> {
        self.workers
            .iter()
            .flat_map(|id| containers_labeled(id))
            .collect()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let ids = self.leftover_containers();
        if !ids.is_empty() {
            let _ = std::process::Command::new("docker")
                .args(["rm", "-f"])
                .args(&ids)
                .output();
        }
    }
}

fn containers_labeled(worker_id: &str) -> Vec<String> {
    std::process::Command::new("docker")
        .args(["ps", "-aq", "--filter"])
        .arg(format!("label={LABEL_WORKER}={worker_id}"))
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn merge(base: &mut Value, extra: &Value) {
    match (base, extra) {
        (Value::Object(b), Value::Object(e)) => {
            for (k, v) in e {
                merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, e) => *b = e.clone(),
    }
}
