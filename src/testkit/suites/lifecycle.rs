//! Suites about the worker's life and the queue protocol: reclaims, cancellation, signals,
//! capacity, several workers, queue faults, the start-up sweep.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use nix::sys::signal::Signal;
use serde_json::{json, Value};

use super::{check, Suite, SuiteContext, SuiteFuture, SuiteResult};
use crate::docker::{LABEL_TASK, LABEL_WORKER};
use crate::testkit::fake_queue::{FakeQueue, FakeQueueOptions, Fault, FaultKind, RunState};
use crate::testkit::harness::{Harness, WorkerOptions, WorkerProcess};

/// The suites of this file.
pub fn suites() -> Vec<Suite> {
    let s = |name, secs, run| Suite {
        name,
        timeout: Duration::from_secs(secs),
        run,
    };
    vec![
        s("lifecycle::reclaim_rotation", 120, reclaim_rotation),
        s(
            "lifecycle::reclaim_with_status_poll",
            90,
            reclaim_with_status_poll,
        ),
        s("lifecycle::cancel_reclaim_409", 120, cancel_reclaim_409),
        s("lifecycle::cancel_status_poll", 90, cancel_status_poll),
        s("lifecycle::sigterm", 150, sigterm),
        s("lifecycle::sigquit_drain", 90, sigquit_drain),
        s("lifecycle::capacity", 150, capacity),
        s("lifecycle::two_workers", 150, two_workers),
        s("lifecycle::queue_faults", 240, queue_faults),
        s("lifecycle::startup_sweep", 90, startup_sweep),
        s("lifecycle::idle_shutdown", 90, idle_shutdown),
    ]
}

// ---------------------------------------------------------------------------------------------
// Small shared helpers.

/// Turn any displayable error into a suite failure message.
fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// A payload running `script` in `taskenv_pass` (maxRunTime 300 s).
fn sh(script: &str) -> Value {
    json!({"image": "taskenv_pass", "command": ["/bin/sh", "-c", script], "maxRunTime": 300})
}

/// Create a task running `script`; returns its taskId.
fn create(queue: &FakeQueue, script: &str) -> Result<String, String> {
    queue.create_task_with_payload(sh(script)).map_err(err)
}

/// Check that run `run_id` had exactly one effective resolution, `state` with `reason`.
fn one_resolution(
    queue: &FakeQueue,
    task_id: &str,
    run_id: u32,
    state: &str,
    reason: Option<&str>,
) -> SuiteResult {
    let calls = queue.resolutions_for(task_id, run_id);
    let effective: Vec<_> = calls.iter().filter(|c| c.effective).collect();
    check(effective.len() == 1, || {
        format!(
            "task {task_id} run {run_id}: {} effective resolutions ({calls:?})",
            effective.len()
        )
    })?;
    check(
        effective[0].resolution == state && effective[0].reason.as_deref() == reason,
        || {
            format!(
                "task {task_id} run {run_id}: resolved {} {:?}, expected {state} {reason:?}",
                effective[0].resolution, effective[0].reason
            )
        },
    )
}

/// Fail if the fake recorded any protocol violation (stale credentials, bad signature, ...).
fn no_violations(queue: &FakeQueue) -> SuiteResult {
    let v = queue.violations();
    check(v.is_empty(), || format!("{} violations: {v:?}", v.len()))
}

/// `started` and `resolved` of a run, from the task status the queue serves.
fn run_window(
    queue: &FakeQueue,
    task_id: &str,
    run_id: u32,
) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let status = queue.status(task_id)?;
    let run = status.get("runs")?.get(run_id as usize)?;
    let time = |k: &str| {
        run.get(k)?
            .as_str()
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.with_timezone(&Utc))
    };
    Some((time("started")?, time("resolved")?))
}

/// Ids of the containers (running or not) carrying `label=value`.
async fn containers(label: &str, value: &str, all: bool) -> Vec<String> {
    let mut cmd = tokio::process::Command::new("docker");
    cmd.arg("ps").arg("-q").arg("--no-trunc");
    if all {
        cmd.arg("-a");
    }
    cmd.arg("--filter").arg(format!("label={label}={value}"));
    cmd.output()
        .await
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Wait until the task's container is running; returns its id.
async fn wait_container_running(task_id: &str, timeout: Duration) -> Result<String, String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(id) = containers(LABEL_TASK, task_id, false)
            .await
            .into_iter()
            .next()
        {
            return Ok(id);
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "no running container for task {task_id} after {timeout:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Wait until no container (running or not) carries `label=value`; returns how long it took.
async fn wait_containers_gone(
    label: &str,
    value: &str,
    timeout: Duration,
) -> Result<Duration, String> {
    let start = Instant::now();
    loop {
        let left = containers(label, value, true).await;
        if left.is_empty() {
            return Ok(start.elapsed());
        }
        if start.elapsed() >= timeout {
            return Err(format!(
                "containers with {label}={value} still there after {timeout:?}: {left:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Calls the worker made about one run (reclaim, artifacts, resolution), after `since`.
fn run_calls_since(
    queue: &FakeQueue,
    task_id: &str,
    run_id: u32,
    since: DateTime<Utc>,
) -> Vec<crate::testkit::fake_queue::RecordedCall> {
    let prefix = format!("/task/{task_id}/runs/{run_id}/");
    queue
        .calls()
        .into_iter()
        .filter(|c| c.at >= since && c.path.contains(&prefix))
        .collect()
}

/// The `until` timestamp encoded in a temporary run clientId (`task-client/.../until/<secs>`).
fn creds_until(client_id: &str) -> Option<f64> {
    client_id.rsplit_once("/until/")?.1.parse().ok()
}

/// Largest number of intervals overlapping at one instant (an end at t comes before a start at t).
fn max_overlap(windows: &[(DateTime<Utc>, DateTime<Utc>)]) -> usize {
    let mut events: Vec<(DateTime<Utc>, i32)> = windows
        .iter()
        .flat_map(|(s, e)| [(*s, 1), (*e, -1)])
        .collect();
    events.sort();
    let (mut now, mut max) = (0i32, 0i32);
    for (_, d) in events {
        now += d;
        max = max.max(now);
    }
    max as usize
}

/// Wait until the worker's log contains `needle`.
async fn wait_log(w: &WorkerProcess, needle: &str, timeout: Duration) -> SuiteResult {
    let deadline = Instant::now() + timeout;
    while !w.logs().contains(needle) {
        if Instant::now() >= deadline {
            return Err(format!(
                "the worker did not log {needle:?} within {timeout:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Removes the given containers when dropped (for containers a suite creates itself).
struct ContainerGuard(Vec<String>);

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        if !self.0.is_empty() {
            let _ = std::process::Command::new("docker")
                .args(["rm", "-f"])
                .args(&self.0)
                .output();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The suites.

/// A task running longer than three claims completes; every reclaim rotates credentials and every
/// later call uses the newest ones.
fn reclaim_rotation(ctx: SuiteContext) -> SuiteFuture {
    Box::pin(async move {
        let opts = FakeQueueOptions {
            claim_timeout: Duration::from_secs(6),
            ..FakeQueueOptions::default()
        };
        let mut h: Harness = ctx.harness(opts).await?;
        let _w = h.worker(WorkerOptions::default()).await?;
        let task = create(&h.queue, "echo start; sleep 20; echo end")?;
        let run = h
            .queue
            .wait_resolved(&task, 0, Duration::from_secs(90))
            .await
            .map_err(err)?;
        check(run.state == RunState::Completed, || {
            format!(
                "run 0 is {:?} ({:?}), not completed",
                run.state, run.reason_resolved
            )
        })?;
        let runs = h.queue.runs(&task);
        check(runs.len() == 1, || format!("expected 1 run, got {runs:?}"))?;
        one_resolution(&h.queue, &task, 0, "completed", None)?;
        no_violations(&h.queue)?;

        let calls = run_calls_since(&h.queue, &task, 0, DateTime::<Utc>::MIN_UTC);
        let reclaims = calls
            .iter()
            .filter(|c| c.path.ends_with("/reclaim") && c.status == 200)
            .count();
        check(reclaims >= 3, || {
            format!("only {reclaims} successful reclaims in a 20 s run with 6 s claims")
        })?;
        // Each reclaim's credentials expire later than the previous ones: the sequence of
        // credentials used must never go back to an older one.
        let untils: Vec<f64> = calls
            .iter()
            .filter_map(|c| c.client_id.as_deref().and_then(creds_until))
            .collect();
        check(untils.len() == calls.len(), || {
            format!(
                "some run calls were not signed with the run's temporary credentials: {calls:?}"
            )
        })?;
        check(untils.windows(2).all(|w| w[0] <= w[1]), || {
            format!("a call used older credentials after newer ones: {untils:?}")
        })?;
        let distinct: BTreeSet<_> = calls.iter().filter_map(|c| c.client_id.clone()).collect();
        check(distinct.len() > reclaims, || {
            format!(
                "{} distinct credentials for {reclaims} reclaims: the newest were not used",
                distinct.len()
            )
        })?;
        let log = h
            .queue
            .artifact(&task, 0, "public/logs/live_backing.log")
            .and_then(|a| a.text())
            .unwrap_or_default();
        check(log.contains("end"), || {
            format!("task log lacks the task's last line: {log}")
        })
    })
}

/// Status polls between reclaims must not push the reclaim toward the claim's expiry: with a 6 s
/// claim and divisor 2, each reclaim comes about 3 s after the previous claim or reclaim.
fn reclaim_with_status_poll(ctx: SuiteContext) -> SuiteFuture {
    Box::pin(async move {
        let opts = FakeQueueOptions {
            claim_timeout: Duration::from_secs(6),
            ..FakeQueueOptions::default()
        };
        let mut h = ctx.harness(opts).await?;
        let _w = h
            .worker(WorkerOptions {
                cancel_poll_interval: 1,
                ..WorkerOptions::default()
            })
            .await?;
        let task = create(&h.queue, "sleep 14")?;
        let run = h
            .queue
            .wait_resolved(&task, 0, Duration::from_secs(60))
            .await
            .map_err(err)?;
        check(run.state == RunState::Completed, || {
            format!(
                "run 0 is {:?} ({:?}), not completed",
                run.state, run.reason_resolved
            )
        })?;
        one_resolution(&h.queue, &task, 0, "completed", None)?;
        let started = run_window(&h.queue, &task, 0)
            .ok_or("run 0 has no start time")?
            .0;
        let mut times = vec![started];
        times.extend(
            run_calls_since(&h.queue, &task, 0, started)
                .iter()
                .filter(|c| c.path.ends_with("/reclaim") && c.status == 200)
                .map(|c| c.at),
        );
        let gaps: Vec<f64> = times
            .windows(2)
            .map(|w| (w[1] - w[0]).num_milliseconds() as f64 / 1000.0)
            .collect();
        check(gaps.len() >= 3, || {
            format!(
                "only {} reclaims in a 14 s run with 6 s claims (gaps {gaps:?})",
                gaps.len()
            )
        })?;
        check(gaps.iter().all(|g| *g <= 4.5), || {
            format!("reclaims came too close to the claim's expiry (seconds after the previous claim/reclaim, 6 s claims): {gaps:?}")
        })?;
        no_violations(&h.queue)
    })
}

/// Cancel learned only at reclaim (status polling off): container killed, nothing uploaded, no report.
fn cancel_reclaim_409(ctx: SuiteContext) -> SuiteFuture {
    Box::pin(async move {
        let opts = FakeQueueOptions {
            claim_timeout: Duration::from_secs(6),
            ..FakeQueueOptions::default()
        };
        let mut h = ctx.harness(opts).await?;
        let w = h
            .worker(WorkerOptions {
                cancel_poll_interval: 0,
                ..WorkerOptions::default()
            })
            .await?;
        let task = create(&h.queue, "sleep 120")?;
        h.queue
            .wait_running(&task, 0, Duration::from_secs(30))
            .await
            .map_err(err)?;
        wait_container_running(&task, Duration::from_secs(30)).await?;
        let names_before = h.queue.artifact_names(&task, 0);
        let canceled_at = Utc::now();
        h.queue.cancel_task(&task).map_err(err)?;
        let took = wait_containers_gone(LABEL_TASK, &task, Duration::from_secs(20)).await?;
        // Give a misbehaving worker time to upload or report anyway.
        tokio::time::sleep(Duration::from_secs(2)).await;

        let after = run_calls_since(&h.queue, &task, 0, canceled_at);
        check(
            after
                .iter()
                .any(|c| c.path.ends_with("/reclaim") && c.status == 409),
            || {
                format!("no reclaim answered 409 after the cancel (container gone after {took:?}): {after:?}")
            },
        )?;
        let uploads: Vec<_> = after
            .iter()
            .filter(|c| !c.path.ends_with("/reclaim"))
            .collect();
        check(uploads.is_empty(), || {
            format!("calls about the run after the cancel: {uploads:?}")
        })?;
        let res = h.queue.resolutions_for(&task, 0);
        check(res.is_empty(), || {
            format!("the worker reported a canceled run: {res:?}")
        })?;
        let names = h.queue.artifact_names(&task, 0);
        check(names == names_before, || {
            format!("artifacts changed after the cancel: {names_before:?} -> {names:?}")
        })?;
        let runs = h.queue.runs(&task);
        check(
            runs.len() == 1 && runs[0].reason_resolved.as_deref() == Some("canceled"),
            || format!("runs after cancel: {runs:?}"),
        )?;
        check(w.logs().contains("409"), || {
            "the worker did not log the 409".to_string()
        })?;
        no_violations(&h.queue)?;

        // The worker is still healthy and its slot free.
        let next = create(&h.queue, "true")?;
        let run = h
            .queue
            .wait_resolved(&next, 0, Duration::from_secs(30))
            .await
            .map_err(err)?;
        check(run.state == RunState::Completed, || {
            format!("next task: {run:?}")
        })
    })
}

/// Cancel learned by the status poll: the container stops within seconds, no report.
fn cancel_status_poll(ctx: SuiteContext) -> SuiteFuture {
    Box::pin(async move {
        let mut h = ctx.harness(FakeQueueOptions::default()).await?;
        let _w = h
            .worker(WorkerOptions {
                cancel_poll_interval: 1,
                ..WorkerOptions::default()
            })
            .await?;
        let task = create(&h.queue, "sleep 120")?;
        h.queue
            .wait_running(&task, 0, Duration::from_secs(30))
            .await
            .map_err(err)?;
        wait_container_running(&task, Duration::from_secs(30)).await?;
        let canceled_at = Utc::now();
        h.queue.cancel_task(&task).map_err(err)?;
        let took = wait_containers_gone(LABEL_TASK, &task, Duration::from_secs(30)).await?;
        check(took < Duration::from_secs(10), || {
            format!(
                "container stopped {:.1} s after cancelTask (limit 10 s)",
                took.as_secs_f64()
            )
        })?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let res = h.queue.resolutions_for(&task, 0);
        check(res.is_empty(), || {
            format!("the worker reported a canceled run: {res:?}")
        })?;
        let after = run_calls_since(&h.queue, &task, 0, canceled_at);
        check(after.is_empty(), || {
            format!("calls about the run after the cancel: {after:?}")
        })?;
        no_violations(&h.queue)
    })
}

/// SIGTERM: the running task is killed, its log uploaded, `worker-shutdown` reported, the queue
/// retries it, the worker exits 0 leaving no container; another worker completes the retry.
fn sigterm(ctx: SuiteContext) -> SuiteFuture {
    Box::pin(async move {
        let mut h = ctx.harness(FakeQueueOptions::default()).await?;
        let mut w = h.worker(WorkerOptions::default()).await?;
        let task = create(
            &h.queue,
            r#"echo "run $RUN_ID"; if [ "$RUN_ID" = 0 ]; then sleep 120; fi; echo finished"#,
        )?;
        h.queue
            .wait_running(&task, 0, Duration::from_secs(30))
            .await
            .map_err(err)?;
        wait_container_running(&task, Duration::from_secs(30)).await?;
        w.signal(Signal::SIGTERM);
        let code = w.wait_exit(Duration::from_secs(60)).await;
        check(code == Some(0), || {
            format!("worker exit status {code:?} after SIGTERM, expected 0")
        })?;

        one_resolution(&h.queue, &task, 0, "exception", Some("worker-shutdown"))?;
        let log = h
            .queue
            .artifact(&task, 0, "public/logs/live_backing.log")
            .filter(|a| a.present)
            .and_then(|a| a.text())
            .ok_or("run 0's log was not uploaded")?;
        check(
            log.contains("run 0") && log.contains("shutting down"),
            || format!("run 0's log does not show the shutdown: {log}"),
        )?;
        check(!log.contains("finished"), || {
            "run 0 was not killed".to_string()
        })?;
        let runs = h.queue.runs(&task);
        check(
            runs.len() == 2
                && runs[1].state == RunState::Pending
                && runs[1].reason_created == "retry",
            || format!("expected a pending retry run 1, got {runs:?}"),
        )?;
        let left = containers(LABEL_WORKER, &w.worker_id, true).await;
        check(left.is_empty(), || {
            format!("containers left after SIGTERM: {left:?}")
        })?;

        let w2 = h.worker(WorkerOptions::default()).await?;
        let run = h
            .queue
            .wait_resolved(&task, 1, Duration::from_secs(60))
            .await
            .map_err(err)?;
        check(
            run.state == RunState::Completed
                && run.worker_id.as_deref() == Some(w2.worker_id.as_str()),
            || format!("run 1: {run:?}, expected completed by {}", w2.worker_id),
        )?;
        one_resolution(&h.queue, &task, 1, "completed", None)?;
        no_violations(&h.queue)
    })
}

/// SIGQUIT drains: the running task completes, nothing new is claimed, the worker exits 0. With
/// capacity 2 the worker also has a claimWork long-poll open when the signal arrives.
fn sigquit_drain(ctx: SuiteContext) -> SuiteFuture {
    Box::pin(async move {
        let mut h = ctx.harness(FakeQueueOptions::default()).await?;
        let mut w = h
            .worker(WorkerOptions {
                capacity: 2,
                ..WorkerOptions::default()
            })
            .await?;
        let task = create(&h.queue, "sleep 5; echo drained")?;
        h.queue
            .wait_running(&task, 0, Duration::from_secs(30))
            .await
            .map_err(err)?;
        wait_container_running(&task, Duration::from_secs(30)).await?;
        w.signal(Signal::SIGQUIT);
        wait_log(&w, "SIGQUIT", Duration::from_secs(5)).await?;
        let late = create(&h.queue, "true")?;
        let code = w.wait_exit(Duration::from_secs(45)).await;
        check(code == Some(0), || {
            format!("worker exit status {code:?} after SIGQUIT, expected 0")
        })?;

        one_resolution(&h.queue, &task, 0, "completed", None)?;
        let log = h
            .queue
            .artifact(&task, 0, "public/logs/live_backing.log")
            .and_then(|a| a.text())
            .unwrap_or_default();
        check(log.contains("drained"), || {
            format!("drained task's log is incomplete: {log}")
        })?;
        // The late task is not run here. A claimWork already in flight at the signal may still
        // return it: then the worker hands it straight back (`worker-shutdown`, never started) and
        // the queue's retry run waits for another worker.
        let runs = h.queue.runs(&late);
        let untouched =
            runs.len() == 1 && runs[0].state == RunState::Pending && runs[0].worker_id.is_none();
        let handed_back = runs.len() == 2
            && runs[0].reason_resolved.as_deref() == Some("worker-shutdown")
            && runs[1].state == RunState::Pending;
        check(untouched || handed_back, || {
            format!("the task created after SIGQUIT was run or lost: {runs:?}")
        })?;
        if handed_back {
            let log = h
                .queue
                .artifact(&late, 0, "public/logs/live_backing.log")
                .and_then(|a| a.text())
                .unwrap_or_default();
            check(!log.contains("=== Task Starting ==="), || {
                format!("the handed-back task was started: {log}")
            })?;
        }
        no_violations(&h.queue)
    })
}

/// Capacity 4 with 12 tasks: all complete, never more than 4 at once, really in parallel.
fn capacity(ctx: SuiteContext) -> SuiteFuture {
    Box::pin(async move {
        let mut h = ctx.harness(FakeQueueOptions::default()).await?;
        let tasks: Vec<String> = (0..12)
            .map(|_| create(&h.queue, "sleep 3"))
            .collect::<Result<_, _>>()?;
        let _w = h
            .worker(WorkerOptions {
                capacity: 4,
                ..WorkerOptions::default()
            })
            .await?;
        // Sample the queue while waiting.
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut sampled_max = 0;
        loop {
            let runs: Vec<_> = tasks.iter().flat_map(|t| h.queue.runs(t)).collect();
            let running = runs.iter().filter(|r| r.state == RunState::Running).count();
            sampled_max = sampled_max.max(running);
            if runs.len() == tasks.len() && runs.iter().all(|r| r.state.is_resolved()) {
                break;
            }
            if Instant::now() >= deadline {
                return Err(format!("not all 12 tasks resolved in time: {runs:?}"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut windows = Vec::new();
        for t in &tasks {
            one_resolution(&h.queue, t, 0, "completed", None)?;
            windows.push(
                run_window(&h.queue, t, 0)
                    .ok_or_else(|| format!("task {t}: no start/end times"))?,
            );
        }
        let overlap = max_overlap(&windows);
        check(overlap <= 4 && sampled_max <= 4, || {
            format!("more than 4 tasks at once (from times: {overlap}, sampled: {sampled_max})")
        })?;
        check(overlap > 1, || {
            format!("tasks never ran in parallel (max {overlap} at once)")
        })?;
        no_violations(&h.queue)
    })
}

/// Two workers on one pool: every task runs exactly once, both workers work.
fn two_workers(ctx: SuiteContext) -> SuiteFuture {
    Box::pin(async move {
        let mut h = ctx.harness(FakeQueueOptions::default()).await?;
        let opts = WorkerOptions {
            capacity: 2,
            ..WorkerOptions::default()
        };
        let w1 = h.worker(opts.clone()).await?;
        let w2 = h.worker(opts).await?;
        // Let both reach their claimWork long-poll before any task exists.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let tasks: Vec<String> = (0..10)
            .map(|_| create(&h.queue, "sleep 2"))
            .collect::<Result<_, _>>()?;
        let mut by_worker = std::collections::BTreeMap::<String, usize>::new();
        for t in &tasks {
            let run = h
                .queue
                .wait_task_resolved(t, Duration::from_secs(90))
                .await
                .map_err(err)?;
            let runs = h.queue.runs(t);
            check(runs.len() == 1, || {
                format!("task {t} has {} runs: {runs:?}", runs.len())
            })?;
            let calls = h.queue.resolutions_for(t, 0);
            check(calls.len() == 1, || {
                format!("task {t}: {} resolution calls: {calls:?}", calls.len())
            })?;
            one_resolution(&h.queue, t, 0, "completed", None)?;
            *by_worker
                .entry(run.worker_id.unwrap_or_default())
                .or_default() += 1;
        }
        for w in [&w1, &w2] {
            check(by_worker.contains_key(&w.worker_id), || {
                format!("worker {} ran no task: {by_worker:?}", w.worker_id)
            })?;
        }
        no_violations(&h.queue)
    })
}

/// The queue answers 500s, then drops connections, for 8 s while tasks are claimed, reclaimed,
/// uploaded and reported: afterwards every task completed, each run resolved once.
fn queue_faults(ctx: SuiteContext) -> SuiteFuture {
    Box::pin(async move {
        let opts = FakeQueueOptions {
            claim_timeout: Duration::from_secs(20),
            ..FakeQueueOptions::default()
        };
        let mut h = ctx.harness(opts).await?;
        let w = h
            .worker(WorkerOptions {
                capacity: 3,
                cancel_poll_interval: 2,
                ..WorkerOptions::default()
            })
            .await?;
        // One long task (reclaimed during the faults) and short ones claimed, run and reported
        // before, during and after the window.
        let mut tasks = vec![create(&h.queue, "sleep 16; echo long")?];
        for i in 0..7 {
            tasks.push(create(
                &h.queue,
                &format!("sleep {}; echo short", 1 + i % 3),
            )?);
        }
        h.queue
            .wait_running(&tasks[0], 0, Duration::from_secs(30))
            .await
            .map_err(err)?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        h.queue.inject(Fault::window(
            Duration::from_secs(4),
            FaultKind::ServerError,
        ));
        h.queue.inject(Fault::window(
            Duration::from_secs(8),
            FaultKind::DropConnection,
        ));
        let window_end = Utc::now() + chrono::Duration::seconds(8);

        for t in &tasks {
            let run = h
                .queue
                .wait_task_resolved(t, Duration::from_secs(150))
                .await
                .map_err(err)?;
            let runs = h.queue.runs(t);
            check(run.state == RunState::Completed, || {
                let logs = w.logs();
                let errors: Vec<&str> = logs
                    .lines()
                    .filter(|l| l.contains("ERROR") || l.contains("WARN"))
                    .map(|l| &l[..l.len().min(400)])
                    .collect();
                format!(
                    "task {t} ended {:?} {:?}: {runs:?}\nworker warnings: {errors:#?}",
                    run.state, run.reason_resolved
                )
            })?;
            for r in &runs {
                check(r.state.is_resolved(), || {
                    format!("task {t}: run left unresolved: {runs:?}")
                })?;
                if r.run_id + 1 < runs.len() as u32 {
                    check(
                        r.reason_resolved.as_deref() == Some("claim-expired"),
                        || format!("task {t}: unexpected retry: {runs:?}"),
                    )?;
                } else {
                    one_resolution(&h.queue, t, r.run_id, "completed", None)?;
                }
            }
        }
        let faulted = h
            .queue
            .calls()
            .iter()
            .filter(|c| c.at <= window_end && (c.status == 500 || c.status == 0))
            .map(|c| c.status)
            .collect::<Vec<_>>();
        check(faulted.contains(&500) && faulted.contains(&0), || {
            format!("the fault window hit too little: statuses {faulted:?}")
        })?;
        let log = h
            .queue
            .artifact(
                &tasks[0],
                h.queue.runs(&tasks[0]).len() as u32 - 1,
                "public/logs/live_backing.log",
            )
            .and_then(|a| a.text())
            .unwrap_or_default();
        check(log.contains("long"), || {
            format!("long task's log incomplete: {log}")
        })?;
        no_violations(&h.queue)
    })
}

/// At start-up the worker removes containers carrying its label and logs each one.
fn startup_sweep(ctx: SuiteContext) -> SuiteFuture {
    Box::pin(async move {
        let mut h = ctx.harness(FakeQueueOptions::default()).await?;
        let worker_id = format!(
            "sweep-{}",
            crate::testkit::fake_queue::new_task_id().to_lowercase()
        )
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(38)
        .collect::<String>();
        let out = tokio::process::Command::new("docker")
            .args(["create", "--label"])
            .arg(format!("{LABEL_WORKER}={worker_id}"))
            .args(["taskenv_pass", "/bin/true"])
            .output()
            .await
            .map_err(err)?;
        let leftover = String::from_utf8_lossy(&out.stdout).trim().to_string();
        check(out.status.success() && !leftover.is_empty(), || {
            format!(
                "docker create failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
        let _guard = ContainerGuard(vec![leftover.clone()]);

        let w = h
            .worker(WorkerOptions {
                extra_config: json!({"workerId": worker_id}),
                ..WorkerOptions::default()
            })
            .await?;
        wait_containers_gone(LABEL_WORKER, &worker_id, Duration::from_secs(30)).await?;
        // The sweep is logged before "worker started".
        let deadline = Instant::now() + Duration::from_secs(30);
        while !w.logs().contains("worker started") && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let logs = w.logs();
        let line = logs.lines().find(|l| l.contains(&leftover[..12]));
        check(line.is_some_and(|l| l.contains("removing")), || {
            format!("the worker did not log removing {leftover}: {logs}")
        })?;
        // And it works normally afterwards, under that id.
        let task = create(&h.queue, "true")?;
        let run = h
            .queue
            .wait_resolved(&task, 0, Duration::from_secs(30))
            .await
            .map_err(err)?;
        check(
            run.state == RunState::Completed
                && run.worker_id.as_deref() == Some(worker_id.as_str()),
            || format!("task after the sweep: {run:?}"),
        )
    })
}

/// `shutdown.enabled`: a task longer than the idle limit is not cut short, and the worker exits 0
/// once it has been idle that long after the task.
fn idle_shutdown(ctx: SuiteContext) -> SuiteFuture {
    Box::pin(async move {
        let mut h = ctx.harness(FakeQueueOptions::default()).await?;
        let task = create(&h.queue, "sleep 8; echo done")?;
        let mut w = h
            .worker(WorkerOptions {
                extra_config: json!({"shutdown": {"enabled": true, "afterIdleSeconds": 4}}),
                ..WorkerOptions::default()
            })
            .await?;
        h.queue
            .wait_resolved(&task, 0, Duration::from_secs(40))
            .await
            .map_err(err)?;
        one_resolution(&h.queue, &task, 0, "completed", None)?;
        let done = Instant::now();
        let code = w.wait_exit(Duration::from_secs(40)).await;
        check(code == Some(0), || {
            format!("worker exit status {code:?}, expected 0 after being idle")
        })?;
        let idle = done.elapsed();
        check(idle >= Duration::from_secs(3), || {
            format!(
                "the worker exited {:.1} s after its task: the task's run time counted as idle",
                idle.as_secs_f64()
            )
        })?;
        no_violations(&h.queue)
    })
}
