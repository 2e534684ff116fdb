//! Suites about one task at a time: resolution table, environment, log format, maxRunTime,
//! artifacts, live log, malformed payloads. Each suite starts its own fake queue and worker and
//! checks what a Taskcluster user would see: run states, artifacts, and the uploaded log.

use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use futures_util::StreamExt;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{check, Suite, SuiteContext, SuiteFuture, SuiteResult};
use crate::testkit::fake_queue::{FakeQueueOptions, RunInfo, RunState, StoredArtifact};
use crate::testkit::harness::{Harness, WorkerOptions, WorkerProcess};

/// The default live log and its backing log.
const LIVE_LOG: &str = "public/logs/live.log";
const BACKING_LOG: &str = "public/logs/live_backing.log";
/// How long one ordinary task may take from creation to resolution.
const TASK_WAIT: Duration = Duration::from_secs(90);

/// The suites of this file.
pub fn suites() -> Vec<Suite> {
    vec![
        suite("basics::exit_codes", 240, exit_codes),
        suite("basics::reserved_env", 120, reserved_env),
        suite("basics::log_format", 120, log_format),
        suite("basics::max_run_time", 120, max_run_time),
        suite("basics::artifacts_object", 300, |ctx| {
            Box::pin(artifacts(ctx, "object"))
        }),
        suite("basics::artifacts_s3", 300, |ctx| {
            Box::pin(artifacts(ctx, "s3"))
        }),
        suite("basics::live_log", 120, live_log),
        suite("basics::malformed_payload", 180, malformed_payload),
    ]
}

fn suite(name: &'static str, timeout_secs: u64, run: fn(SuiteContext) -> SuiteFuture) -> Suite {
    Suite {
        name,
        timeout: Duration::from_secs(timeout_secs),
        run,
    }
}

// ---------------------------------------------------------------------------------------------
// Shared helpers

/// A payload running `script` with `/bin/sh -c` in `taskenv_pass` (maxRunTime 60), with the keys
/// of `extra` added or replaced.
fn payload(script: &str, extra: Value) -> Value {
    let mut p = json!({
        "image": "taskenv_pass",
        "command": ["/bin/sh", "-c", script],
        "maxRunTime": 60,
    });
    if let (Some(p), Value::Object(extra)) = (p.as_object_mut(), extra) {
        p.extend(extra);
    }
    p
}

/// A fresh fake queue and one worker started with `opts`.
async fn start(
    ctx: &SuiteContext,
    opts: WorkerOptions,
) -> Result<(Harness, WorkerProcess), String> {
    let mut h = ctx.harness(FakeQueueOptions::default()).await?;
    let worker = h.worker(opts).await?;
    Ok((h, worker))
}

/// Create a task with `payload`; its taskId.
fn create(h: &Harness, payload: Value) -> Result<String, String> {
    h.queue
        .create_task_with_payload(payload)
        .map_err(|e| format!("createTask: {e}"))
}

/// Wait until run `run_id` of the task is resolved, and check it got exactly one effective
/// resolution call.
async fn wait_one(h: &Harness, task_id: &str, run_id: u32) -> Result<RunInfo, String> {
    let run = h
        .queue
        .wait_resolved(task_id, run_id, TASK_WAIT)
        .await
        .map_err(|e| e.to_string())?;
    let effective = h
        .queue
        .resolutions_for(task_id, run_id)
        .iter()
        .filter(|c| c.effective)
        .count();
    check(effective == 1, || {
        format!("task {task_id} run {run_id}: {effective} effective resolution calls, not 1")
    })?;
    Ok(run)
}

/// Check a resolved run's state and, for an exception, its reason (the queue's `reasonResolved`
/// is the state itself for completed and failed runs).
fn expect(what: &str, run: &RunInfo, state: RunState, reason: Option<&str>) -> SuiteResult {
    let reason = reason.or(Some(state.as_str()));
    check(
        run.state == state && run.reason_resolved.as_deref() == reason,
        || {
            format!(
                "{what}: run {} resolved {} ({:?}), expected {} ({reason:?})",
                run.run_id,
                run.state.as_str(),
                run.reason_resolved,
                state.as_str()
            )
        },
    )
}

/// An artifact of a run, which must exist.
fn artifact(h: &Harness, task_id: &str, run_id: u32, name: &str) -> Result<StoredArtifact, String> {
    h.queue.artifact(task_id, run_id, name).ok_or_else(|| {
        format!(
            "task {task_id} run {run_id}: no artifact {name} (has {:?})",
            h.queue.artifact_names(task_id, run_id)
        )
    })
}

/// The uploaded backing log (`name`) of a run, as text.
fn log_named(h: &Harness, task_id: &str, run_id: u32, name: &str) -> Result<String, String> {
    let a = artifact(h, task_id, run_id, name)?;
    check(a.present, || {
        format!("{name} of {task_id} was never uploaded")
    })?;
    a.text()
        .ok_or_else(|| format!("{name} of {task_id} has no content"))
}

/// The uploaded default backing log of a run.
fn log_of(h: &Harness, task_id: &str, run_id: u32) -> Result<String, String> {
    log_named(h, task_id, run_id, BACKING_LOG)
}

/// Fail unless `log` contains `needle`; the message shows the end of the log.
fn log_has(what: &str, log: &str, needle: &str) -> SuiteResult {
    check(log.contains(needle), || {
        let start = log.char_indices().rev().nth(1500).map_or(0, |(i, _)| i);
        let tail = &log[start..];
        format!("{what}: log lacks {needle:?}; it ends with:\n{tail}")
    })
}

/// The lines of a log (CRLF-separated, as the worker writes it).
fn lines(log: &str) -> Vec<&str> {
    log.split("\r\n").collect()
}

/// End-of-suite checks: no protocol violations, and no resolution call that was not effective
/// (a second report for a run).
fn all_clean(h: &Harness) -> SuiteResult {
    let violations = h.queue.violations();
    check(violations.is_empty(), || {
        format!("protocol violations: {violations:?}")
    })?;
    let extra: Vec<_> = h
        .queue
        .resolutions()
        .into_iter()
        .filter(|c| !c.effective)
        .collect();
    check(extra.is_empty(), || {
        format!("resolution calls that were not the run's first: {extra:?}")
    })
}

/// An RFC 3339 time `days` from now.
fn days_from_now(days: i64) -> String {
    (Utc::now() + chrono::Duration::days(days)).to_rfc3339_opts(SecondsFormat::Millis, true)
}

// ---------------------------------------------------------------------------------------------
// Suites

/// One row of the resolution table: the payload, the expected resolution and log lines.
struct Case {
    what: &'static str,
    payload: Value,
    state: RunState,
    reason: Option<&'static str>,
    log: &'static [&'static str],
}

/// Every outcome of the resolution table that one task can produce on its own, each with its
/// log; the retry exit code also makes the queue create run 1, which the worker runs too.
fn exit_codes(ctx: SuiteContext) -> SuiteFuture {
    Box::pin(async move {
        let (h, worker) = start(
            &ctx,
            WorkerOptions {
                capacity: 4,
                ..WorkerOptions::default()
            },
        )
        .await?;
        let cases = [
            Case {
                what: "exit 0",
                payload: payload("echo fine; exit 0", json!({})),
                state: RunState::Completed,
                reason: None,
                log: &[
                    "fine\r\n",
                    "Successful task run with exit code: 0 completed in ",
                ],
            },
            Case {
                what: "exit 1",
                payload: payload("exit 1", json!({})),
                state: RunState::Failed,
                reason: None,
                log: &["Unsuccessful task run with exit code: 1 completed in "],
            },
            Case {
                what: "taskenv_fail",
                payload: json!({"image": "taskenv_fail", "command": ["/bin/taskenv-fail"], "maxRunTime": 60}),
                state: RunState::Failed,
                reason: None,
                log: &["fail\r\n"],
            },
            Case {
                what: "retry exit code",
                payload: payload(
                    r#"if [ "$RUN_ID" = 0 ]; then exit 7; fi; echo "second run""#,
                    json!({"onExitStatus": {"retry": [7]}}),
                ),
                state: RunState::Exception,
                reason: Some("intermittent-task"),
                log: &["Unsuccessful task run with exit code: 7 completed in "],
            },
            Case {
                what: "image that cannot be pulled",
                payload: json!({"image": "localhost:1/nope:1", "command": ["true"], "maxRunTime": 60}),
                state: RunState::Failed,
                reason: None,
                log: &["[taskcluster:error] Pulling docker image localhost:1/nope:1 failed"],
            },
            Case {
                what: "command that cannot start",
                payload: json!({"image": "taskenv_pass", "command": ["/no/such/command"], "maxRunTime": 60}),
                state: RunState::Failed,
                reason: None,
                log: &["[taskcluster:error] Failure to properly start execution environment."],
            },
            Case {
                what: "missing scopes",
                payload: payload("true", json!({"features": {"allowPtrace": true}})),
                state: RunState::Failed,
                reason: None,
                log: &["[taskcluster:error] ", "docker-worker:feature:allowPtrace"],
            },
        ];
        let mut created = Vec::new();
        for case in &cases {
            created.push(create(&h, case.payload.clone())?);
        }
        for (case, task_id) in cases.iter().zip(&created) {
            let run = wait_one(&h, task_id, 0)
                .await
                .map_err(|e| format!("{}: {e}", case.what))?;
            expect(case.what, &run, case.state, case.reason)?;
            let log = log_of(&h, task_id, 0)?;
            for needle in case.log {
                log_has(case.what, &log, needle)?;
            }
        }

        // The retry: the queue made run 1 (`task-retry`), and the worker ran it to completion.
        let retried = &created[3];
        let run = wait_one(&h, retried, 1).await?;
        expect("retry run", &run, RunState::Completed, None)?;
        check(run.reason_created == "task-retry", || {
            format!(
                "run 1 was created for {:?}, not task-retry",
                run.reason_created
            )
        })?;
        check(
            run.worker_id.as_deref() == Some(worker.worker_id.as_str()),
            || format!("run 1 was taken by {:?}", run.worker_id),
        )?;
        log_has("retry run", &log_of(&h, retried, 1)?, "second run\r\n")?;
        let runs = h.queue.runs(retried).len();
        check(runs == 2, || {
            format!("the retried task has {runs} runs, not 2")
        })?;
        all_clean(&h)
    })
}

/// Reserved environment variables reach the task with the worker's values and win over
/// `payload.env`; ordinary payload variables are set.
fn reserved_env(ctx: SuiteContext) -> SuiteFuture {
    Box::pin(async move {
        let (h, _worker) = start(
            &ctx,
            WorkerOptions {
                extra_config: json!({
                    "publicIp": "203.0.113.7",
                    "instanceType": "m5.large",
                    "workerLocation": {"cloud": "aws", "region": "us-east-1"},
                }),
                ..WorkerOptions::default()
            },
        )
        .await?;
        let task_id = create(
            &h,
            payload(
                "env | sort",
                json!({"env": {
                    "TASK_ID": "not-the-task-id",
                    "RUN_ID": "42",
                    "TASKCLUSTER_ROOT_URL": "https://evil.example.com",
                    "TASKCLUSTER_WORKER_POOL": "evil/pool",
                    "MY_VAR": "hello world",
                }}),
            ),
        )?;
        let run = wait_one(&h, &task_id, 0).await?;
        expect("env task", &run, RunState::Completed, None)?;
        let log = log_of(&h, &task_id, 0)?;
        let pool = h.queue.task_queue_id();
        let expected = [
            ("TASK_ID", task_id.as_str()),
            ("RUN_ID", "0"),
            ("TASKCLUSTER_WORKER_TYPE", "dw-test-worker"),
            ("TASKCLUSTER_WORKER_POOL", pool.as_str()),
            ("TASKCLUSTER_WORKER_GROUP", "dw-test-group"),
            ("TASKCLUSTER_ROOT_URL", h.queue.root_url()),
            ("TASKCLUSTER_PUBLIC_IP", "203.0.113.7"),
            ("TASKCLUSTER_INSTANCE_TYPE", "m5.large"),
            (
                "TASKCLUSTER_WORKER_LOCATION",
                r#"{"cloud":"aws","region":"us-east-1"}"#,
            ),
            ("MY_VAR", "hello world"),
        ];
        let lines = lines(&log);
        for (name, value) in expected {
            let prefix = format!("{name}=");
            let got: Vec<&str> = lines
                .iter()
                .filter_map(|l| l.strip_prefix(prefix.as_str()))
                .collect();
            check(got == [value], || {
                format!("{name}: the task saw {got:?}, expected {value:?}")
            })?;
        }
        all_clean(&h)
    })
}

/// The uploaded log: header lines in order with the worker's values, the start/finish markers,
/// the task's output with CRLF line ends, the footer; `live.log` ends as a link to it; a custom
/// `payload.log` name moves both.
fn log_format(ctx: SuiteContext) -> SuiteFuture {
    Box::pin(async move {
        let (h, worker) = start(
            &ctx,
            WorkerOptions {
                extra_config: json!({"publicIp": "203.0.113.9", "workerNodeType": "dw-test-node"}),
                ..WorkerOptions::default()
            },
        )
        .await?;
        let task_id = create(&h, payload("echo first; echo second", json!({})))?;
        let custom = create(
            &h,
            payload("echo custom", json!({"log": "public/x/my.log"})),
        )?;
        let run = wait_one(&h, &task_id, 0).await?;
        expect("log task", &run, RunState::Completed, None)?;

        let backing = artifact(&h, &task_id, 0, BACKING_LOG)?;
        check(backing.content_type.starts_with("text/plain"), || {
            format!("backing log content type {:?}", backing.content_type)
        })?;
        let live = artifact(&h, &task_id, 0, LIVE_LOG)?;
        check(
            live.storage_type == "link" && live.link_target.as_deref() == Some(BACKING_LOG),
            || {
                format!(
                    "{LIVE_LOG} is {} -> {:?}, not a link to {BACKING_LOG}",
                    live.storage_type, live.link_target
                )
            },
        )?;

        let log = log_of(&h, &task_id, 0)?;
        let stray_lf = log
            .match_indices('\n')
            .any(|(i, _)| i == 0 || &log[i - 1..i] != "\r");
        check(!stray_lf, || {
            format!("a line of the log ends without CR:\n{log:?}")
        })?;
        let lines = lines(&log);
        // Every worker info line carries `[taskcluster YYYY-MM-DD HH:MM:SS.mmmZ] `.
        let message = |line: &str| -> Option<String> {
            let rest = line.strip_prefix("[taskcluster ")?;
            let (time, msg) = rest.split_once("] ")?;
            chrono::NaiveDateTime::parse_from_str(time, "%Y-%m-%d %H:%M:%S%.3fZ").ok()?;
            Some(msg.to_string())
        };
        let messages: Vec<(usize, String)> = lines
            .iter()
            .enumerate()
            .filter_map(|(i, l)| message(l).map(|m| (i, m)))
            .collect();
        let version = env!("CARGO_PKG_VERSION");
        let hostname = crate::task::hostname();
        let pool = h.queue.task_queue_id();
        let in_order = [
            format!("Task ID: {task_id}"),
            format!("Worker ID: {}", worker.worker_id),
            "Worker Group: dw-test-group".to_string(),
            "Worker Node Type: dw-test-node".to_string(),
            format!("Worker Pool: {pool}"),
            format!("Worker Version: {version}"),
            "Public IP: 203.0.113.9".to_string(),
            format!("Hostname: {hostname}"),
            "=== Task Starting ===".to_string(),
            "=== Task Finished ===".to_string(),
        ];
        let mut positions = Vec::new();
        for wanted in &in_order {
            let at = messages
                .iter()
                .find(|(_, m)| m == wanted)
                .map(|(i, _)| *i)
                .ok_or_else(|| format!("no log line {wanted:?} in:\n{log}"))?;
            positions.push(at);
        }
        check(positions.windows(2).all(|w| w[0] < w[1]), || {
            format!("header and markers out of order: {in_order:?} at lines {positions:?}")
        })?;
        let (starting, finished) = (positions[8], positions[9]);
        check(lines[starting + 1..finished] == ["first", "second"], || {
            format!(
                "output between the markers: {:?}",
                &lines[starting + 1..finished]
            )
        })?;
        let footer = messages.last().map(|(_, m)| m.clone()).unwrap_or_default();
        let seconds = footer
            .strip_prefix("Successful task run with exit code: 0 completed in ")
            .and_then(|s| s.strip_suffix(" seconds"))
            .and_then(|s| s.parse::<f64>().ok());
        check(
            matches!(seconds, Some(s) if (0.0..60.0).contains(&s)),
            || format!("last line is not the success footer: {footer:?}"),
        )?;
        check(log.ends_with(" seconds\r\n"), || {
            format!("the log does not end with the footer: {log:?}")
        })?;

        // A custom log name: `<name>_backing.<ext>` and the link, nothing at the default names.
        let run = wait_one(&h, &custom, 0).await?;
        expect("custom log task", &run, RunState::Completed, None)?;
        let custom_log = log_named(&h, &custom, 0, "public/x/my_backing.log")?;
        log_has("custom log", &custom_log, "custom\r\n")?;
        let link = artifact(&h, &custom, 0, "public/x/my.log")?;
        check(
            link.storage_type == "link"
                && link.link_target.as_deref() == Some("public/x/my_backing.log"),
            || {
                format!(
                    "public/x/my.log is {} -> {:?}",
                    link.storage_type, link.link_target
                )
            },
        )?;
        let names = h.queue.artifact_names(&custom, 0);
        check(
            !names.iter().any(|n| n == LIVE_LOG || n == BACKING_LOG),
            || format!("a custom log name still produced default log artifacts: {names:?}"),
        )?;
        all_clean(&h)
    })
}

/// maxRunTime: the container is killed, the run fails with the timeout line, only the logs are
/// uploaded (no artifacts), and no container is left.
fn max_run_time(ctx: SuiteContext) -> SuiteFuture {
    Box::pin(async move {
        let (h, _worker) = start(&ctx, WorkerOptions::default()).await?;
        let task_id = create(
            &h,
            payload(
                "echo started > /tmp/out.txt; echo started; sleep 600",
                json!({
                    "maxRunTime": 3,
                    "artifacts": {"public/out.txt": {"type": "file", "path": "/tmp/out.txt"}},
                }),
            ),
        )?;
        h.queue
            .wait_running(&task_id, 0, TASK_WAIT)
            .await
            .map_err(|e| e.to_string())?;
        let claimed = std::time::Instant::now();
        let run = wait_one(&h, &task_id, 0).await?;
        let took = claimed.elapsed().as_secs_f64();
        expect("maxRunTime", &run, RunState::Failed, None)?;
        check((3.0..30.0).contains(&took), || {
            format!("a 3 s maxRunTime resolved {took:.1} s after the claim")
        })?;
        let log = log_of(&h, &task_id, 0)?;
        log_has("maxRunTime", &log, "started\r\n")?;
        log_has(
            "maxRunTime",
            &log,
            "\r\n[taskcluster:error] Task timeout after 3 seconds. Force killing container.\r\n",
        )?;
        log_has(
            "maxRunTime",
            &log,
            "Unsuccessful task run with exit code: -1 completed in ",
        )?;
        let mut names = h.queue.artifact_names(&task_id, 0);
        names.sort();
        check(names == [LIVE_LOG, BACKING_LOG], || {
            format!("artifacts of a timed-out run: {names:?} (only the logs expected)")
        })?;
        let left = h.leftover_containers();
        check(left.is_empty(), || format!("containers left: {left:?}"))?;
        all_clean(&h)
    })
}

/// An uploaded artifact of run 0, which must have storage type `storage` and a content type
/// starting with `content_type`.
fn stored(
    h: &Harness,
    task_id: &str,
    name: &str,
    storage: &str,
    content_type: &str,
) -> Result<StoredArtifact, String> {
    let a = artifact(h, task_id, 0, name)?;
    check(a.storage_type == storage && a.present, || {
        format!(
            "{name}: stored as {} (present: {}), expected {storage}",
            a.storage_type, a.present
        )
    })?;
    check(a.content_type.starts_with(content_type), || {
        format!(
            "{name}: content type {:?}, expected {content_type}",
            a.content_type
        )
    })?;
    Ok(a)
}

/// Size of the large artifact: above the inline limit, so it goes through a `putUrl`.
const BIG: usize = 20 * 1024 * 1024;

/// Artifacts with storage type `storage` (`object`, the default, or `s3` set in the worker
/// config): files with their content types, a directory, missing and mismatched paths as error
/// artifacts (the task still completes), and a 20 MiB file byte-exact.
async fn artifacts(ctx: SuiteContext, storage: &'static str) -> SuiteResult {
    let extra_config = if storage == "s3" {
        json!({"artifacts": {"storageType": "s3"}})
    } else {
        json!({})
    };
    let (h, _worker) = start(
        &ctx,
        WorkerOptions {
            extra_config,
            ..WorkerOptions::default()
        },
    )
    .await?;
    let script = format!(
        "set -e; mkdir -p /out/dir/sub; \
         echo '{{\"a\": 1}}' > /out/data.json; echo hello > /out/hello.txt; \
         printf 'raw\\001\\002' > /out/blob.bin; echo packed | gzip > /out/packed.gz; \
         echo one > /out/dir/one.txt; echo two > /out/dir/sub/two.txt; \
         head -c {BIG} /dev/urandom > /out/big.bin; sha256sum /out/big.bin"
    );
    let file = |path: &str| json!({"type": "file", "path": path});
    let task_id = create(
        &h,
        payload(
            &script,
            json!({"artifacts": {
                "public/data.json": file("/out/data.json"),
                "public/hello.txt": file("/out/hello.txt"),
                "public/blob.bin": file("/out/blob.bin"),
                "public/packed.gz": file("/out/packed.gz"),
                "public/big.bin": file("/out/big.bin"),
                "public/dir": {"type": "directory", "path": "/out/dir"},
                "public/missing.txt": file("/out/no-such-file.txt"),
                "public/not-a-file": file("/out/dir"),
                "public/not-a-dir": {"type": "directory", "path": "/out/hello.txt"},
            }}),
        ),
    )?;
    let run = wait_one(&h, &task_id, 0).await?;
    expect("artifacts task", &run, RunState::Completed, None)?;

    // Small files: storage type, content type, exact bytes; s3 gzips `.txt` in transit.
    let small: [(&str, &str, &[u8]); 5] = [
        ("public/data.json", "application/json", b"{\"a\": 1}\n"),
        ("public/hello.txt", "text/plain", b"hello\n"),
        (
            "public/blob.bin",
            "application/octet-stream",
            b"raw\x01\x02",
        ),
        ("public/dir/one.txt", "text/plain", b"one\n"),
        ("public/dir/sub/two.txt", "text/plain", b"two\n"),
    ];
    for (name, content_type, bytes) in small {
        let a = stored(&h, &task_id, name, storage, content_type)?;
        let got = a.bytes().unwrap_or_default();
        check(got == bytes, || {
            format!(
                "{name}: content {:?}, expected {:?}",
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(bytes)
            )
        })?;
        if storage == "s3" && name.ends_with(".txt") {
            check(a.content_encoding.as_deref() == Some("gzip"), || {
                format!(
                    "{name}: s3 upload without gzip Content-Encoding ({:?})",
                    a.content_encoding
                )
            })?;
        }
    }

    // A `.gz` file is sent as is (no Content-Encoding) and is still the gzip the task wrote.
    let packed = stored(&h, &task_id, "public/packed.gz", storage, "application/")?;
    check(packed.content_encoding.is_none(), || {
        format!(
            "public/packed.gz: sent with Content-Encoding {:?}",
            packed.content_encoding
        )
    })?;
    let mut plain = Vec::new();
    let raw = packed.bytes().unwrap_or_default();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&raw[..]), &mut plain)
        .map_err(|e| format!("public/packed.gz: not gzip data: {e}"))?;
    check(plain == b"packed\n", || {
        format!(
            "public/packed.gz: unpacks to {:?}",
            String::from_utf8_lossy(&plain)
        )
    })?;
    check(
        h.queue.artifact(&task_id, 0, "public/dir").is_none(),
        || "the directory itself became an artifact".to_string(),
    )?;

    // Error artifacts: missing path, file that is a directory, directory that is a file.
    for (name, reason) in [
        ("public/missing.txt", "file-missing-on-worker"),
        ("public/not-a-file", "invalid-resource-on-worker"),
        ("public/not-a-dir", "invalid-resource-on-worker"),
    ] {
        let a = artifact(&h, &task_id, 0, name)?;
        check(
            a.storage_type == "error" && a.reason.as_deref() == Some(reason),
            || {
                format!(
                    "{name}: {} ({:?}), expected error ({reason})",
                    a.storage_type, a.reason
                )
            },
        )?;
    }

    // The large file: byte-exact (size and the sha256 the task computed), through a putUrl.
    let big = artifact(&h, &task_id, 0, "public/big.bin")?
        .bytes()
        .unwrap_or_default();
    check(big.len() == BIG, || {
        format!("public/big.bin: {} bytes, expected {BIG}", big.len())
    })?;
    let log = log_of(&h, &task_id, 0)?;
    let in_task = lines(&log)
        .into_iter()
        .find_map(|l| l.strip_suffix("  /out/big.bin"))
        .ok_or_else(|| format!("no sha256sum line in the log:\n{log}"))?
        .to_string();
    let uploaded = format!("{:x}", Sha256::digest(&big));
    check(uploaded == in_task, || {
        format!("public/big.bin: sha256 {uploaded} uploaded, {in_task} in the task")
    })?;
    let puts = h
        .queue
        .calls()
        .iter()
        .filter(|c| c.method == "PUT" && c.path.contains("/__fake/put/") && c.status < 300)
        .count();
    check(puts >= 1, || "no upload went through a putUrl".to_string())?;
    all_clean(&h)
}

/// The live log followed during a run: the `reference` artifact's URL streams lines while the
/// run is still running, and ends after the task with the same bytes as the uploaded log.
fn live_log(ctx: SuiteContext) -> SuiteFuture {
    Box::pin(async move {
        let (h, _worker) = start(&ctx, WorkerOptions::default()).await?;
        let task_id = create(
            &h,
            payload(
                "i=0; while [ $i -lt 20 ]; do echo line-$i; i=$((i+1)); sleep 0.2; done",
                json!({}),
            ),
        )?;
        h.queue
            .wait_running(&task_id, 0, TASK_WAIT)
            .await
            .map_err(|e| e.to_string())?;
        let url = {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            loop {
                match h.queue.artifact(&task_id, 0, LIVE_LOG) {
                    Some(a) if a.storage_type == "reference" => {
                        break a.url.ok_or("the live log reference has no url")?
                    }
                    Some(a) => {
                        return Err(format!(
                            "{LIVE_LOG} is {} while the task runs, not reference",
                            a.storage_type
                        ))
                    }
                    None if tokio::time::Instant::now() > deadline => {
                        return Err(format!("no {LIVE_LOG} artifact while the task runs"))
                    }
                    None => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        };
        let response = reqwest::get(&url)
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        check(response.status().is_success(), || {
            format!("GET {url}: {}", response.status())
        })?;
        let mut stream = response.bytes_stream();
        let mut got = Vec::new();
        let mut seen_while_running = false;
        loop {
            let chunk = tokio::time::timeout(Duration::from_secs(30), stream.next())
                .await
                .map_err(|_| "the live log stalled for 30 s".to_string())?;
            match chunk {
                Some(Ok(bytes)) => got.extend_from_slice(&bytes),
                Some(Err(e)) => return Err(format!("reading the live log: {e}")),
                None => break,
            }
            let text = String::from_utf8_lossy(&got);
            if !seen_while_running && text.contains("line-2\r\n") {
                let state = h.queue.run(&task_id, 0).map(|r| r.state);
                check(
                    state == Some(RunState::Running) && !text.contains("=== Task Finished ==="),
                    || format!("the first lines arrived only after the task ended ({state:?})"),
                )?;
                seen_while_running = true;
            }
        }
        check(seen_while_running, || {
            format!(
                "the live log ended without the task's lines: {:?}",
                String::from_utf8_lossy(&got)
            )
        })?;
        let run = wait_one(&h, &task_id, 0).await?;
        expect("live log task", &run, RunState::Completed, None)?;
        let backing = artifact(&h, &task_id, 0, BACKING_LOG)?
            .bytes()
            .unwrap_or_default();
        check(got == backing, || {
            format!(
                "the live stream ({} bytes) differs from the uploaded log ({} bytes):\n{:?}\n---\n{:?}",
                got.len(),
                backing.len(),
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(&backing)
            )
        })?;
        log_has("live log", &String::from_utf8_lossy(&got), "line-19\r\n")?;
        let live = artifact(&h, &task_id, 0, LIVE_LOG)?;
        check(live.storage_type == "link", || {
            format!(
                "{LIVE_LOG} is {} after the run, not link",
                live.storage_type
            )
        })?;
        all_clean(&h)
    })
}

/// Malformed payloads resolve `malformed-payload` with the errors (and their paths) in the
/// uploaded log; so does an artifact expiring after the task. The worker keeps serving.
fn malformed_payload(ctx: SuiteContext) -> SuiteFuture {
    Box::pin(async move {
        let (h, _worker) = start(&ctx, WorkerOptions::default()).await?;
        let bad = create(
            &h,
            json!({
                "image": "taskenv_pass",
                "command": ["true"],
                "maxRunTime": "hello",
                "notAPayloadKey": 1,
            }),
        )?;
        let run = wait_one(&h, &bad, 0).await?;
        expect(
            "bad maxRunTime",
            &run,
            RunState::Exception,
            Some("malformed-payload"),
        )?;
        let log = log_of(&h, &bad, 0)?;
        log_has(
            "bad maxRunTime",
            &log,
            "[taskcluster:error] payload.maxRunTime: ",
        )?;
        log_has("unknown key", &log, "payload.notAPayloadKey")?;
        check(!log.contains("=== Task Starting ==="), || {
            "a malformed task was started".to_string()
        })?;

        // An artifact expiring after the task itself.
        let late = crate::testkit::fake_queue::new_task_id();
        h.queue
            .create_task(
                &late,
                json!({
                    "expires": days_from_now(2),
                    "payload": payload("echo x > /tmp/x.txt", json!({"artifacts": {
                        "public/x.txt": {"type": "file", "path": "/tmp/x.txt", "expires": days_from_now(30)},
                    }})),
                }),
            )
            .map_err(|e| format!("createTask: {e}"))?;
        let run = wait_one(&h, &late, 0).await?;
        expect(
            "late artifact expiry",
            &run,
            RunState::Exception,
            Some("malformed-payload"),
        )?;
        let log = log_of(&h, &late, 0)?;
        log_has(
            "late artifact expiry",
            &log,
            "[taskcluster:error] payload.artifacts",
        )?;

        // The worker keeps serving.
        let good = create(&h, payload("echo still here", json!({})))?;
        let run = wait_one(&h, &good, 0).await?;
        expect(
            "good task after malformed ones",
            &run,
            RunState::Completed,
            None,
        )?;
        log_has("good task", &log_of(&h, &good, 0)?, "still here\r\n")?;
        all_clean(&h)
    })
}
