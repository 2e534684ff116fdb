//! `docker-worker run` as a user runs it: exit codes, result.json, stdout, errors naming what is
//! wrong, and bounded memory for a big log.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use assert_cmd::cargo::CommandCargoExt;
use common::Sandbox;
use serde_json::{json, Value};

fn write_payload(sb: &Sandbox, name: &str, payload: &Value) -> std::path::PathBuf {
    let path = sb.dir.path().join(name);
    std::fs::write(&path, serde_json::to_vec_pretty(payload).unwrap()).unwrap();
    path
}

/// `docker-worker run FILE --artifacts-dir DIR`, labelled for cleanup by the sandbox.
fn run_cmd(sb: &Sandbox, payload: &Path) -> Command {
    let config = sb.dir.path().join("worker.json");
    std::fs::write(&config, json!({"workerId": sb.worker_id}).to_string()).unwrap();
    let mut cmd = Command::cargo_bin("docker-worker").unwrap();
    cmd.arg("run")
        .arg(payload)
        .arg("--config")
        .arg(&config)
        .arg("--artifacts-dir")
        .arg(sb.artifacts_dir());
    cmd
}

fn result_json(sb: &Sandbox) -> Value {
    let text = std::fs::read_to_string(sb.artifacts_dir().join("result.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

async fn prepare() {
    let docker = common::docker().await;
    common::images(&docker).await;
}

#[tokio::test]
async fn completed_task_exits_0_prints_the_log_and_writes_result_json() {
    prepare().await;
    let sb = Sandbox::new();
    let payload = write_payload(
        &sb,
        "hello.json",
        &json!({"image": "taskenv_pass", "command": ["/bin/sh", "-c", "echo \"Hello World\""],
                "features": {"bufferLog": false, "azureLivelog": true},
                "artifacts": {"passwd.txt": "/etc/passwd"}}),
    );
    let out = run_cmd(&sb, &payload)
        .args(["--task-id", "fixedTaskId0000000000A"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("Hello World\r\n"));
    assert!(stdout.contains("Task ID: fixedTaskId0000000000A"));
    let r = result_json(&sb);
    assert_eq!(r["state"], "completed");
    assert_eq!(r["exitCode"], 0);
    assert_eq!(r["taskId"], "fixedTaskId0000000000A");
    assert!(r["duration"].as_f64().unwrap() > 0.0);
    let names: Vec<&str> = r["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["passwd.txt", "public/logs/live_backing.log"]);
    let passwd = &r["artifacts"][0];
    assert_eq!(passwd["contentType"], "text/plain; charset=utf-8");
    let size = std::fs::metadata(sb.artifacts_dir().join("passwd.txt"))
        .unwrap()
        .len();
    assert_eq!(passwd["size"], size);
    let backing =
        std::fs::read_to_string(sb.artifacts_dir().join("public/logs/live_backing.log")).unwrap();
    assert_eq!(backing, stdout, "stdout is the live log, byte for byte");
    assert!(sb.leftover_containers().is_empty());
}

#[tokio::test]
async fn failed_task_exits_1_and_exception_exits_2() {
    prepare().await;
    let sb = Sandbox::new();
    let failing = write_payload(
        &sb,
        "fail.json",
        &json!({"image": "taskenv_fail", "maxRunTime": 30}),
    );
    let out = run_cmd(&sb, &failing).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let r = result_json(&sb);
    assert_eq!(r["state"], "failed");
    assert_eq!(r["exitCode"], 1);

    let malformed = write_payload(
        &sb,
        "bad.json",
        &json!({"image": "taskenv_pass", "maxRunTime": 0}),
    );
    let out = run_cmd(&sb, &malformed).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("payload.maxRunTime"), "{stdout}");
    let r = result_json(&sb);
    assert_eq!(r["state"], "exception");
    assert_eq!(r["reason"], "malformed-payload");
}

#[tokio::test]
async fn invalid_json_names_file_line_and_column() {
    prepare().await;
    let sb = Sandbox::new();
    let path = sb.dir.path().join("broken.json");
    std::fs::write(
        &path,
        "{\n  \"image\": \"taskenv_pass\",\n  \"maxRunTime\": ,\n}\n",
    )
    .unwrap();
    let out = run_cmd(&sb, &path).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let want = format!("{}:3:17: invalid JSON", path.display());
    assert!(stdout.contains(&want), "{want} not in {stdout}");
    assert_eq!(result_json(&sb)["reason"], "malformed-payload");
}

#[test]
fn an_unreadable_file_exits_3_naming_it() {
    let sb = Sandbox::new();
    let path = sb.dir.path().join("does-not-exist.json");
    let out = run_cmd(&sb, &path).output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("does-not-exist.json"), "{stderr}");
}

#[test]
fn docker_unreachable_exits_3_naming_the_socket() {
    let sb = Sandbox::new();
    let payload = write_payload(
        &sb,
        "p.json",
        &json!({"image": "taskenv_pass", "maxRunTime": 30}),
    );
    let out = run_cmd(&sb, &payload)
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unix:///nonexistent/docker.sock"),
        "{stderr}"
    );
}

/// Peak resident memory of a running process, polled until it exits.
fn peak_rss_kib(child: &mut std::process::Child) -> u64 {
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    loop {
        if let Ok(status) = std::fs::read_to_string(&status_path) {
            for line in status.lines() {
                if let Some(v) = line.strip_prefix("VmHWM:") {
                    let kib: u64 = v.trim().trim_end_matches("kB").trim().parse().unwrap_or(0);
                    peak = peak.max(kib);
                }
            }
        }
        if child.try_wait().unwrap().is_some() {
            return peak;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn a_200_mb_log_streams_with_bounded_memory() {
    prepare().await;
    let sb = Sandbox::new();
    // About 200 MB of output: 2,000,000 lines of 100 characters.
    let line = "0123456789".repeat(10);
    let script = format!("yes {line} | head -n 2000000");
    let payload = write_payload(
        &sb,
        "big.json",
        &json!({"image": "taskenv_pass", "command": ["/bin/sh", "-c", script], "maxRunTime": 600}),
    );
    let mut child = run_cmd(&sb, &payload)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let peak = peak_rss_kib(&mut child);
    assert!(child.wait().unwrap().success());
    let log = sb.artifacts_dir().join("public/logs/live_backing.log");
    let size = std::fs::metadata(&log).unwrap().len();
    // Every byte arrived (the TTY turns each LF into CRLF), plus the worker's own lines.
    let output = 2_000_000 * (line.len() as u64 + 2);
    assert!(
        size > output && size < output + 4096,
        "backing log is {size} bytes"
    );
    assert!(peak > 0 && peak < 64 * 1024, "peak RSS {peak} KiB");
}

#[tokio::test]
async fn a_300_mb_artifact_streams_with_bounded_memory() {
    prepare().await;
    let sb = Sandbox::new();
    let payload = write_payload(
        &sb,
        "artifact.json",
        &json!({"image": "taskenv_pass",
                "command": ["/bin/sh", "-c", "head -c 300000000 /dev/zero > /big.bin"],
                "maxRunTime": 600,
                "artifacts": {"public/big.bin": {"type": "file", "path": "/big.bin"}}}),
    );
    let mut child = run_cmd(&sb, &payload)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let peak = peak_rss_kib(&mut child);
    assert!(child.wait().unwrap().success());
    let size = std::fs::metadata(sb.artifacts_dir().join("public/big.bin"))
        .unwrap()
        .len();
    assert_eq!(size, 300_000_000);
    assert!(peak > 0 && peak < 64 * 1024, "peak RSS {peak} KiB");
}
