//! `docker-worker start` against the fake queue: a smoke test of the whole path (the full suites
//! are in `dw-test`).

mod common;

use std::time::Duration;

use docker_worker::testkit::fake_queue::FakeQueueOptions;
use docker_worker::testkit::harness::{Harness, WorkerOptions};
use nix::sys::signal::Signal;
use serde_json::json;

#[tokio::test]
async fn a_task_is_claimed_run_uploaded_and_resolved_once() {
    let docker = common::docker().await;
    common::images(&docker).await;
    let bin = assert_cmd::cargo::cargo_bin("docker-worker");
    let mut h = Harness::start(&bin, FakeQueueOptions::default())
        .await
        .unwrap();
    let mut worker = h.worker(WorkerOptions::default()).await.unwrap();
    let task_id = h
        .queue
        .create_task_with_payload(json!({
            "image": "taskenv_pass",
            "command": ["/bin/sh", "-c", "echo hello from the task; mkdir -p /out; echo data > /out/a.txt"],
            "maxRunTime": 60,
            "artifacts": {"public/a.txt": {"type": "file", "path": "/out/a.txt"}}
        }))
        .unwrap();
    let resolved = h
        .queue
        .wait_resolved(&task_id, 0, Duration::from_secs(90))
        .await;
    assert!(
        resolved.is_ok(),
        "not resolved: {:?}\n{}",
        resolved,
        worker.logs()
    );
    let run = h.queue.run(&task_id, 0).unwrap();
    assert_eq!(
        format!("{:?}", run.state).to_lowercase(),
        "completed",
        "{run:?}\n{}",
        worker.logs()
    );
    let log = h
        .queue
        .artifact(&task_id, 0, "public/logs/live_backing.log")
        .unwrap();
    assert!(log.text().unwrap().contains("hello from the task"));
    let live = h
        .queue
        .artifact(&task_id, 0, "public/logs/live.log")
        .unwrap();
    assert_eq!(live.storage_type, "link");
    assert_eq!(
        live.link_target.as_deref(),
        Some("public/logs/live_backing.log")
    );
    let a = h.queue.artifact(&task_id, 0, "public/a.txt").unwrap();
    assert_eq!(a.text().unwrap(), "data\n");
    let effective: Vec<_> = h
        .queue
        .resolutions_for(&task_id, 0)
        .into_iter()
        .filter(|r| r.effective)
        .collect();
    assert_eq!(effective.len(), 1);
    assert!(
        h.queue.violations().is_empty(),
        "{:?}",
        h.queue.violations()
    );
    worker.signal(Signal::SIGTERM);
    assert_eq!(
        worker.wait_exit(Duration::from_secs(30)).await,
        Some(0),
        "{}",
        worker.logs()
    );
    assert!(h.leftover_containers().is_empty());
}
