//! Shared helpers for the integration tests that use the real Docker daemon.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use docker_worker::config::WorkerConfig;
use docker_worker::docker::{Docker, LABEL_WORKER};
use docker_worker::livelog::TaskLog;
use docker_worker::local::DirSink;
use docker_worker::task::{Abort, Engine, RunReport, TaskRun};
use tokio::sync::OnceCell;

static IMAGES: OnceCell<()> = OnceCell::const_new();

/// Connect to Docker; a test that needs Docker fails (never skips) when it is missing.
pub async fn docker() -> Docker {
    match Docker::connect().await {
        Ok(d) => d,
        Err(e) => panic!("this test needs a running Docker daemon: {e}"),
    }
}

/// Build the test images once per test binary.
pub async fn images(docker: &Docker) {
    IMAGES
        .get_or_init(|| async {
            docker_worker::testkit::images::build_test_images(docker)
                .await
                .expect("building test images");
        })
        .await;
}

/// Removes every container labelled with this test's worker id when dropped (even on panic),
/// and owns the test's temporary directory.
pub struct Sandbox {
    pub worker_id: String,
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        Sandbox {
            worker_id: format!("test-{}", docker_worker::local::random_task_id()),
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// Containers this test left behind (should always be none after a run).
    pub fn leftover_containers(&self) -> Vec<String> {
        let out = Command::new("docker")
            .args(["ps", "-aq", "--filter"])
            .arg(format!("label={LABEL_WORKER}={}", self.worker_id))
            .output()
            .expect("docker ps");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect()
    }

    /// A worker config for this sandbox.
    pub fn config(&self) -> WorkerConfig {
        let mut c = WorkerConfig {
            worker_id: self.worker_id.clone(),
            worker_group: "test-group".into(),
            provisioner_id: "test-prov".into(),
            worker_type: "test-type".into(),
            root_url: "http://taskcluster.test".into(),
            ..WorkerConfig::default()
        };
        c.docker_config.delay_factor = 10;
        c
    }

    pub fn artifacts_dir(&self) -> PathBuf {
        self.dir.path().join("artifacts")
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let ids = self.leftover_containers();
        if !ids.is_empty() {
            let _ = Command::new("docker")
                .args(["rm", "-f"])
                .args(&ids)
                .output();
        }
    }
}

/// The result of running one payload through the engine.
pub struct Ran {
    pub report: RunReport,
    pub log: String,
    pub artifacts: PathBuf,
}

/// Run `payload` through the engine with `config`, artifacts into the sandbox.
pub async fn run_with(
    sandbox: &Sandbox,
    config: WorkerConfig,
    payload: serde_json::Value,
    task_expires: Option<chrono::DateTime<chrono::Utc>>,
    scopes: Option<Vec<String>>,
) -> Ran {
    let docker = docker().await;
    images(&docker).await;
    let scratch = sandbox.dir.path().join("scratch");
    let artifacts = sandbox.artifacts_dir();
    std::fs::create_dir_all(&scratch).unwrap();
    std::fs::create_dir_all(&artifacts).unwrap();
    let engine = Engine::new(docker, Arc::new(config), scratch);
    let log_path = sandbox.dir.path().join("live.log");
    let mut log = TaskLog::create(&log_path).await.unwrap();
    let task = TaskRun {
        task_id: "dSlITZ4yQgmvxxAi4A8fHQ".into(),
        run_id: 0,
        payload,
        task_expires,
        scopes,
    };
    let sink = DirSink::new(&artifacts);
    let report = engine.run(&task, &mut log, &sink, &Abort::new()).await;
    let path = log.close().await.unwrap();
    let log = String::from_utf8_lossy(&std::fs::read(path).unwrap()).into_owned();
    assert!(
        sandbox.leftover_containers().is_empty(),
        "the task's container was not removed"
    );
    Ran {
        report,
        log,
        artifacts,
    }
}

/// Run `payload` with the sandbox's default config.
pub async fn run(sandbox: &Sandbox, payload: serde_json::Value) -> Ran {
    run_with(sandbox, sandbox.config(), payload, None, None).await
}
