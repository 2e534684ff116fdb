//! `dw-test bench`: measures the worker against plain `docker run` on the same machine and reports
//! each figure with its target. It reports; it is not a test: a missed target is a row marked
//! `FAIL`, while a task that does not complete (or a broken setup) is an error.
//!
//! Figures: per-task overhead (claim to resolution vs `docker run --rm`), throughput at capacity 4
//! (vs 4 parallel `docker run --rm` loops), log throughput of a 300 MB log (vs `docker run -t`) with
//! the worker's peak RSS, idle worker RSS, and seconds from cancelTask to the container stopping.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::{json, Value};

use crate::docker::LABEL_TASK;
use crate::testkit::fake_queue::{FakeQueueOptions, RunState};
use crate::testkit::harness::{Harness, WorkerOptions, WorkerProcess};

/// The image every bench task runs in.
const IMAGE: &str = "taskenv_pass";
/// The trivial command of the overhead and throughput figures.
const TRIVIAL: &[&str] = &["/bin/true"];
/// The line the log figure repeats (100 characters, plus the newline `yes` adds).
const LOG_LINE: &str =
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefghijklmnopqrstuvwxyz-+";

/// How much work each figure does.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// The `docker-worker` binary to measure.
    pub worker_bin: PathBuf,
    /// Trivial tasks run one after another (overhead figure).
    pub sequential_tasks: usize,
    /// Trivial tasks run at `capacity` (throughput figure).
    pub parallel_tasks: usize,
    /// Capacity of the worker (and number of `docker run` loops) for the throughput figure.
    pub capacity: usize,
    /// Bytes the log task writes.
    pub log_bytes: u64,
    /// Only the figures whose key (see [`FIGURES`]) contains this.
    pub filter: Option<String>,
}

/// The figures' keys, in the order they run (`dw-test bench --filter`).
pub const FIGURES: &[&str] = &["overhead", "throughput", "idle-rss", "log", "cancel"];

impl BenchConfig {
    fn selected(&self, key: &str) -> bool {
        self.filter.as_deref().is_none_or(|f| key.contains(f))
    }
}

impl BenchConfig {
    /// The full bench (the figures that go in the README).
    pub fn full(worker_bin: PathBuf) -> BenchConfig {
        BenchConfig {
            worker_bin,
            sequential_tasks: 30,
            parallel_tasks: 100,
            capacity: 4,
            log_bytes: 300_000_000,
            filter: None,
        }
    }

    /// A short run to check that the bench works (figures are not meaningful).
    pub fn quick(worker_bin: PathBuf) -> BenchConfig {
        BenchConfig {
            worker_bin,
            sequential_tasks: 3,
            parallel_tasks: 8,
            capacity: 4,
            log_bytes: 10_000_000,
            filter: None,
        }
    }
}

/// What a row's ratio (or, without a baseline, its measured value) must satisfy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// ratio ≤ x
    RatioAtMost(f64),
    /// ratio ≥ x
    RatioAtLeast(f64),
    /// measured ≤ x
    AtMost(f64),
}

impl Target {
    fn holds(self, measured: f64, ratio: Option<f64>) -> bool {
        match self {
            Target::RatioAtMost(x) => ratio.is_some_and(|r| r <= x),
            Target::RatioAtLeast(x) => ratio.is_some_and(|r| r >= x),
            Target::AtMost(x) => measured <= x,
        }
    }

    fn describe(self, unit: &str) -> String {
        match self {
            Target::RatioAtMost(x) => format!("ratio <= {x}"),
            Target::RatioAtLeast(x) => format!("ratio >= {x}"),
            Target::AtMost(x) => format!("<= {x} {unit}"),
        }
    }
}

/// One line of the bench table.
#[derive(Debug, Clone)]
pub struct Row {
    /// What is measured.
    pub name: &'static str,
    /// Unit of `measured` and `baseline`.
    pub unit: &'static str,
    /// The worker's figure.
    pub measured: f64,
    /// The same work done with plain `docker run`, when there is one.
    pub baseline: Option<f64>,
    /// measured / baseline (for the overhead figure: the median of the per-task ratios).
    pub ratio: Option<f64>,
    /// The target.
    pub target: Target,
    /// Whether the target is met.
    pub pass: bool,
    /// Extra figures for the JSON report (sample counts, spread, wall times).
    pub details: Value,
}

impl Row {
    fn new(
        name: &'static str,
        unit: &'static str,
        measured: f64,
        baseline: Option<f64>,
        ratio: Option<f64>,
        target: Target,
        details: Value,
    ) -> Row {
        Row {
            name,
            unit,
            measured,
            baseline,
            ratio,
            target,
            pass: target.holds(measured, ratio),
            details,
        }
    }

    /// The row as JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "unit": self.unit,
            "measured": self.measured,
            "baseline": self.baseline,
            "ratio": self.ratio,
            "target": self.target.describe(self.unit),
            "pass": self.pass,
            "details": self.details,
        })
    }
}

/// Every row, plus how long the bench took.
#[derive(Debug, Clone)]
pub struct BenchReport {
    /// The rows, in the order measured.
    pub rows: Vec<Row>,
    /// Wall time of the whole bench.
    pub elapsed: Duration,
    /// CPUs the machine has (figures depend on it).
    pub cpus: usize,
}

impl BenchReport {
    /// Whether every target is met.
    pub fn all_pass(&self) -> bool {
        self.rows.iter().all(|r| r.pass)
    }

    /// The table printed by `dw-test bench`.
    pub fn table(&self) -> String {
        let header = [
            "figure", "measured", "baseline", "ratio", "target", "result",
        ];
        let mut lines: Vec<[String; 6]> = vec![header.map(str::to_string)];
        for r in &self.rows {
            lines.push([
                r.name.to_string(),
                format!("{} {}", fmt_num(r.measured), r.unit),
                r.baseline
                    .map(|b| format!("{} {}", fmt_num(b), r.unit))
                    .unwrap_or_else(|| "-".into()),
                r.ratio
                    .map(|x| format!("{x:.2}"))
                    .unwrap_or_else(|| "-".into()),
                r.target.describe(r.unit),
                if r.pass { "pass" } else { "FAIL" }.to_string(),
            ]);
        }
        let mut widths = [0usize; 6];
        for l in &lines {
            for (w, cell) in widths.iter_mut().zip(l) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for (i, l) in lines.iter().enumerate() {
            let cells: Vec<String> = l
                .iter()
                .zip(widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            out.push_str(cells.join(" | ").trim_end());
            out.push('\n');
            if i == 0 {
                let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
                out.push_str(&rule.join("-|-"));
                out.push('\n');
            }
        }
        out.push_str(&format!(
            "({} CPUs, bench took {:.0} s)\n",
            self.cpus,
            self.elapsed.as_secs_f64()
        ));
        out
    }

    /// The report as JSON (`dw-test bench --json FILE`).
    pub fn to_json(&self) -> Value {
        json!({
            "rows": self.rows.iter().map(Row::to_json).collect::<Vec<_>>(),
            "all_pass": self.all_pass(),
            "cpus": self.cpus,
            "elapsed_seconds": self.elapsed.as_secs_f64(),
        })
    }
}

fn fmt_num(x: f64) -> String {
    if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.3}")
    }
}

/// The bench could not measure something: setup failed, a task did not complete, Docker failed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The fake queue or a worker process could not start.
    #[error("setup: {0}")]
    Setup(String),
    /// A bench task did not end the way it must.
    #[error("{figure}: {message}")]
    Task {
        /// Which figure was being measured.
        figure: &'static str,
        /// What went wrong.
        message: String,
    },
    /// A `docker` command failed.
    #[error("docker {args}: {message}")]
    Docker {
        /// The arguments.
        args: String,
        /// Exit status and stderr, or the spawn error.
        message: String,
    },
}

fn task_err(figure: &'static str, message: impl Into<String>) -> BenchError {
    BenchError::Task {
        figure,
        message: message.into(),
    }
}

/// Run every figure, printing progress on stderr. Uses the `taskenv_pass` image (build it first).
pub async fn run(config: &BenchConfig) -> Result<BenchReport, BenchError> {
    let started = Instant::now();
    let mut rows = Vec::new();
    let mut h = Harness::start(&config.worker_bin, FakeQueueOptions::default())
        .await
        .map_err(BenchError::Setup)?;

    progress("warming up (one worker task, one docker run)");
    warm_up(&mut h).await?;
    if config.selected("overhead") {
        rows.push(overhead(&mut h, config).await?);
    }
    if config.selected("throughput") {
        rows.push(throughput(&mut h, config).await?);
    }
    if config.selected("idle-rss") {
        rows.push(idle_rss(config).await?);
    }
    if config.selected("log") {
        rows.extend(log_throughput(&mut h, config).await?);
    }
    if config.selected("cancel") {
        rows.push(cancel_latency(&mut h).await?);
    }

    let leftovers = h.leftover_containers();
    if !leftovers.is_empty() {
        return Err(task_err(
            "cleanup",
            format!("worker left containers behind: {leftovers:?}"),
        ));
    }
    Ok(BenchReport {
        rows,
        elapsed: started.elapsed(),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
    })
}

fn progress(message: &str) {
    eprintln!("bench: {message}");
}

/// Start a worker and wait until it has asked the queue for work once.
async fn start_worker(h: &mut Harness, opts: WorkerOptions) -> Result<WorkerProcess, BenchError> {
    let before = claim_calls(h);
    let mut worker = h.worker(opts).await.map_err(BenchError::Setup)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while claim_calls(h) == before {
        if let Some(code) = worker.wait_exit(Duration::from_millis(50)).await {
            return Err(BenchError::Setup(format!(
                "worker exited with {code} at start-up: {}",
                worker.logs()
            )));
        }
        if Instant::now() > deadline {
            return Err(BenchError::Setup(format!(
                "worker never called claimWork: {}",
                worker.logs()
            )));
        }
    }
    Ok(worker)
}

/// Stop a worker (SIGTERM; it is idle, so it exits at once).
async fn stop_worker(mut worker: WorkerProcess) {
    worker.signal(nix::sys::signal::Signal::SIGTERM);
    let _ = worker.wait_exit(Duration::from_secs(20)).await;
}

fn claim_calls(h: &Harness) -> usize {
    h.queue
        .calls()
        .iter()
        .filter(|c| c.path.contains("claim-work"))
        .count()
}

fn payload(command: &[&str], max_run_time: u64) -> Value {
    json!({"image": IMAGE, "command": command, "maxRunTime": max_run_time})
}

fn create(h: &Harness, figure: &'static str, payload: Value) -> Result<String, BenchError> {
    h.queue
        .create_task_with_payload(payload)
        .map_err(|e| task_err(figure, format!("createTask: {e}")))
}

/// Wait for run 0 to resolve and require `completed`; returns its claim-to-resolution time.
async fn completed(
    h: &Harness,
    figure: &'static str,
    task_id: &str,
    timeout: Duration,
    worker: &WorkerProcess,
) -> Result<Duration, BenchError> {
    let run = h
        .queue
        .wait_resolved(task_id, 0, timeout)
        .await
        .map_err(|e| {
            task_err(
                figure,
                format!("{e}; worker log:\n{}", tail(&worker.logs())),
            )
        })?;
    if run.state != RunState::Completed {
        return Err(task_err(
            figure,
            format!(
                "task {task_id} resolved {} ({:?}), not completed",
                run.state.as_str(),
                run.reason_resolved
            ),
        ));
    }
    claim_to_resolution(h, task_id)
        .ok_or_else(|| task_err(figure, format!("task {task_id}: no started/resolved times")))
}

fn claim_to_resolution(h: &Harness, task_id: &str) -> Option<Duration> {
    let status = h.queue.status(task_id)?;
    let run = status.get("runs")?.get(0)?;
    let time = |k: &str| -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(run.get(k)?.as_str()?)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    };
    (time("resolved")? - time("started")?).to_std().ok()
}

fn tail(s: &str) -> &str {
    let start = s.len().saturating_sub(4000);
    let start = (start..s.len())
        .find(|i| s.is_char_boundary(*i))
        .unwrap_or(s.len());
    &s[start..]
}

/// Run `docker ARGS` to completion, output discarded; returns its wall time.
async fn docker(args: Vec<String>) -> Result<Duration, BenchError> {
    tokio::task::spawn_blocking(move || docker_blocking(&args))
        .await
        .map_err(|e| BenchError::Docker {
            args: String::new(),
            message: e.to_string(),
        })?
}

fn docker_blocking(args: &[String]) -> Result<Duration, BenchError> {
    let started = Instant::now();
    let out = std::process::Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output();
    let elapsed = started.elapsed();
    let fail = |message: String| BenchError::Docker {
        args: args.join(" "),
        message,
    };
    let out = out.map_err(|e| fail(e.to_string()))?;
    if !out.status.success() {
        return Err(fail(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(elapsed)
}

fn docker_run_args(command: &[&str]) -> Vec<String> {
    ["run", "--rm", IMAGE]
        .iter()
        .chain(command)
        .map(|s| s.to_string())
        .collect()
}

async fn warm_up(h: &mut Harness) -> Result<(), BenchError> {
    let worker = start_worker(h, WorkerOptions::default()).await?;
    let id = create(h, "warm-up", payload(TRIVIAL, 60))?;
    completed(h, "warm-up", &id, Duration::from_secs(120), &worker).await?;
    stop_worker(worker).await;
    docker(docker_run_args(TRIVIAL)).await?;
    Ok(())
}

/// (1) Trivial tasks one after another: claim to resolution against `docker run --rm`, in pairs
/// (one of each in turn) so that load from elsewhere hits both alike.
async fn overhead(h: &mut Harness, config: &BenchConfig) -> Result<Row, BenchError> {
    const FIGURE: &str = "per-task overhead";
    let n = config.sequential_tasks;
    progress(&format!(
        "{FIGURE}: {n} trivial tasks one after another, each paired with a docker run --rm"
    ));
    let worker = start_worker(h, WorkerOptions::default()).await?;
    let mut worker_s = Vec::new();
    let mut created_s = Vec::new();
    let mut docker_s = Vec::new();
    let mut ratios = Vec::new();
    for _ in 0..n {
        let t0 = Instant::now();
        let id = create(h, FIGURE, payload(TRIVIAL, 60))?;
        let w = completed(h, FIGURE, &id, Duration::from_secs(60), &worker).await?;
        created_s.push(t0.elapsed().as_secs_f64());
        let d = docker(docker_run_args(TRIVIAL)).await?;
        worker_s.push(w.as_secs_f64());
        docker_s.push(d.as_secs_f64());
        ratios.push(w.as_secs_f64() / d.as_secs_f64());
    }
    stop_worker(worker).await;
    let (w, d, r) = (median(&worker_s), median(&docker_s), median(&ratios));
    progress(&format!(
        "{FIGURE}: median {w:.3} s claim to resolution, {:.3} s creation to resolution, docker run {d:.3} s",
        median(&created_s)
    ));
    Ok(Row::new(
        "per-task overhead (median)",
        "s",
        w,
        Some(d),
        Some(r),
        Target::RatioAtMost(1.3),
        json!({
            "tasks": n,
            "measured_is": "claim to resolution (the fake queue's run started/resolved times)",
            "worker_claim_to_resolution_s": worker_s,
            "worker_creation_to_resolution_s": created_s,
            "median_creation_to_resolution_s": median(&created_s),
            "docker_run_s": docker_s,
            "ratio_is": "median of the per-pair ratios",
        }),
    ))
}

/// (2) Many trivial tasks at capacity N against N parallel `docker run --rm` loops.
async fn throughput(h: &mut Harness, config: &BenchConfig) -> Result<Row, BenchError> {
    const FIGURE: &str = "throughput";
    let (n, cap) = (config.parallel_tasks, config.capacity);
    progress(&format!(
        "{FIGURE}: {n} trivial tasks at capacity {cap}, then {cap} docker run --rm loops"
    ));
    let worker = start_worker(
        h,
        WorkerOptions {
            capacity: cap,
            ..WorkerOptions::default()
        },
    )
    .await?;
    let t0 = Instant::now();
    let ids = (0..n)
        .map(|_| create(h, FIGURE, payload(TRIVIAL, 60)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut busy = Duration::ZERO;
    for id in &ids {
        busy += completed(h, FIGURE, id, Duration::from_secs(600), &worker).await?;
    }
    let worker_wall = t0.elapsed();
    // How many tasks ran at once on average: capacity when the claim loop keeps up.
    let mean_running = busy.as_secs_f64() / worker_wall.as_secs_f64();
    let mean_task_s = busy.as_secs_f64() / n as f64;
    stop_worker(worker).await;

    let per_loop: Vec<usize> = (0..cap)
        .map(|i| n / cap + usize::from(i < n % cap))
        .collect();
    let docker_wall = tokio::task::spawn_blocking(move || {
        let t0 = Instant::now();
        std::thread::scope(|s| {
            let loops: Vec<_> = per_loop
                .iter()
                .map(|&k| {
                    s.spawn(move || {
                        (0..k)
                            .try_for_each(|_| docker_blocking(&docker_run_args(TRIVIAL)).map(drop))
                    })
                })
                .collect();
            loops
                .into_iter()
                .try_for_each(|l| l.join().expect("docker loop panicked"))
        })?;
        Ok::<_, BenchError>(t0.elapsed())
    })
    .await
    .map_err(|e| task_err(FIGURE, e.to_string()))??;

    let w = n as f64 / worker_wall.as_secs_f64();
    let d = n as f64 / docker_wall.as_secs_f64();
    progress(&format!(
        "{FIGURE}: worker {w:.2} tasks/s ({:.1} s; {mean_running:.2} running on average, {mean_task_s:.3} s each), docker run {d:.2} tasks/s ({:.1} s)",
        worker_wall.as_secs_f64(),
        docker_wall.as_secs_f64()
    ));
    Ok(Row::new(
        "throughput at capacity 4",
        "tasks/s",
        w,
        Some(d),
        Some(w / d),
        Target::RatioAtLeast(0.8),
        json!({
            "tasks": n,
            "capacity": cap,
            "worker_wall_s": worker_wall.as_secs_f64(),
            "docker_wall_s": docker_wall.as_secs_f64(),
            "worker_wall_is": "first createTask to last resolution",
            "worker_mean_running": mean_running,
            "worker_mean_claim_to_resolution_s": mean_task_s,
        }),
    ))
}

/// (4) RSS of an idle worker after start-up and a few empty claimWork polls (a fake queue whose
/// long poll answers after 1 s, so that the polls happen quickly).
async fn idle_rss(config: &BenchConfig) -> Result<Row, BenchError> {
    const FIGURE: &str = "idle RSS";
    progress(&format!("{FIGURE}: a worker polling an empty queue"));
    let opts = FakeQueueOptions {
        claim_work_wait: Duration::from_secs(1),
        ..FakeQueueOptions::default()
    };
    let mut h = Harness::start(&config.worker_bin, opts)
        .await
        .map_err(BenchError::Setup)?;
    let worker = start_worker(&mut h, WorkerOptions::default()).await?;
    let polls = 4;
    let deadline = Instant::now() + Duration::from_secs(30);
    while claim_calls(&h) < polls {
        if Instant::now() > deadline {
            return Err(task_err(FIGURE, "the worker stopped polling"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pid = worker
        .pid()
        .ok_or_else(|| task_err(FIGURE, "worker exited"))?;
    let rss = proc_status_kb(pid, "VmRSS").ok_or_else(|| task_err(FIGURE, "no VmRSS"))?;
    let hwm = proc_status_kb(pid, "VmHWM");
    stop_worker(worker).await;
    let mb = rss as f64 / 1024.0;
    progress(&format!("{FIGURE}: {mb:.1} MB"));
    Ok(Row::new(
        "idle worker RSS",
        "MB",
        mb,
        None,
        None,
        Target::AtMost(20.0),
        json!({"claim_polls": polls, "vm_rss_kb": rss, "vm_hwm_kb": hwm}),
    ))
}

/// (3) One task writing a big log: MB/s from `=== Task Starting ===` to `=== Task Finished ===`
/// (the worker's own log lines) against `docker run -t` with output to /dev/null; plus the worker's
/// peak RSS (VmHWM, sampled). The fake queue keeps the uploaded log in memory, in this process.
async fn log_throughput(h: &mut Harness, config: &BenchConfig) -> Result<Vec<Row>, BenchError> {
    const FIGURE: &str = "log throughput";
    let bytes = config.log_bytes;
    let mb = bytes as f64 / 1e6;
    let script = format!("yes '{LOG_LINE}' | head -c {bytes}");
    let command = ["/bin/sh", "-c", script.as_str()];
    progress(&format!(
        "{FIGURE}: one task writing {mb:.0} MB, then the same under docker run -t"
    ));
    let worker = start_worker(h, WorkerOptions::default()).await?;
    let pid = worker
        .pid()
        .ok_or_else(|| task_err(FIGURE, "worker exited"))?;
    let id = create(h, FIGURE, payload(&command, 900))?;
    let t0 = Instant::now();
    let mut peak_kb = 0u64;
    let resolved = {
        let wait = completed(h, FIGURE, &id, Duration::from_secs(900), &worker);
        tokio::pin!(wait);
        loop {
            if let Some(kb) = proc_status_kb(pid, "VmHWM") {
                peak_kb = peak_kb.max(kb);
            }
            tokio::select! {
                r = &mut wait => break r,
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    };
    let claim_to_resolution = resolved?;
    let task_wall = t0.elapsed();
    if let Some(kb) = proc_status_kb(pid, "VmHWM") {
        peak_kb = peak_kb.max(kb);
    }
    let cpu_s = proc_cpu_seconds(pid);
    stop_worker(worker).await;

    let artifact = h
        .queue
        .artifact(&id, 0, "public/logs/live_backing.log")
        .ok_or_else(|| task_err(FIGURE, "no live_backing.log"))?;
    let log = artifact
        .bytes()
        .ok_or_else(|| task_err(FIGURE, "live_backing.log has no content"))?;
    let log_len = log.len();
    let streamed = marker_span(&log).ok_or_else(|| {
        let head = String::from_utf8_lossy(&log[..log.len().min(2000)]).into_owned();
        let tail = String::from_utf8_lossy(&log[log.len().saturating_sub(2000)..]).into_owned();
        task_err(
            FIGURE,
            format!("no Task Starting / Task Finished lines in the log:\n{head}\n...\n{tail}"),
        )
    })?;
    drop((log, artifact));
    if (log_len as u64) < bytes {
        return Err(task_err(
            FIGURE,
            format!("the log has {log_len} bytes, less than the {bytes} written"),
        ));
    }

    let mut args = vec!["run".to_string(), "-t".into(), "--rm".into(), IMAGE.into()];
    args.extend(command.iter().map(|s| s.to_string()));
    let docker_wall = docker(args).await?;

    let w = mb / streamed.as_secs_f64();
    let d = mb / docker_wall.as_secs_f64();
    let peak_mb = peak_kb as f64 / 1024.0;
    progress(&format!(
        "{FIGURE}: worker {w:.1} MB/s ({:.1} s streaming, {:.1} s task wall), docker run -t {d:.1} MB/s ({:.1} s); peak RSS {peak_mb:.1} MB, worker CPU {:.1} s",
        streamed.as_secs_f64(),
        task_wall.as_secs_f64(),
        docker_wall.as_secs_f64(),
        cpu_s.unwrap_or(-1.0)
    ));
    Ok(vec![
        Row::new(
            "log throughput",
            "MB/s",
            w,
            Some(d),
            Some(w / d),
            Target::RatioAtLeast(0.9),
            json!({
                "bytes_written": bytes,
                "log_bytes": log_len,
                "worker_streaming_s": streamed.as_secs_f64(),
                "worker_streaming_is": "'=== Task Starting ===' to '=== Task Finished ===' in the task log",
                "worker_claim_to_resolution_s": claim_to_resolution.as_secs_f64(),
                "worker_task_wall_s": task_wall.as_secs_f64(),
                "docker_run_t_wall_s": docker_wall.as_secs_f64(),
                "worker_cpu_s": cpu_s,
            }),
        ),
        Row::new(
            "worker peak RSS during the log task",
            "MB",
            peak_mb,
            None,
            None,
            Target::AtMost(64.0),
            json!({"vm_hwm_kb": peak_kb}),
        ),
    ])
}

/// The time between the worker's `=== Task Starting ===` and `=== Task Finished ===` lines.
fn marker_span(log: &[u8]) -> Option<Duration> {
    let head = &log[..log.len().min(64 * 1024)];
    let tail = &log[log.len().saturating_sub(64 * 1024)..];
    let start = marker_time(head, "=== Task Starting ===")?;
    let end = marker_time(tail, "=== Task Finished ===")?;
    (end - start).to_std().ok()
}

/// The time of the `[taskcluster <time>] <marker>` line in `text`.
fn marker_time(text: &[u8], marker: &str) -> Option<DateTime<Utc>> {
    const PREFIX: &str = "[taskcluster ";
    let text = String::from_utf8_lossy(text);
    let at = text.find(&format!("] {marker}"))?;
    let start = text[..at].rfind(PREFIX)? + PREFIX.len();
    NaiveDateTime::parse_from_str(&text[start..at], "%Y-%m-%d %H:%M:%S%.3fZ")
        .ok()
        .map(|t| t.and_utc())
}

/// (5) Seconds from cancelTask to the task's container no longer running, with the default
/// status poll interval (30 s). The cancel comes right after the container starts, so the worker
/// notices it at its first poll (about a whole interval later): close to the worst case.
async fn cancel_latency(h: &mut Harness) -> Result<Row, BenchError> {
    const FIGURE: &str = "cancel latency";
    let interval = WorkerOptions::default().cancel_poll_interval;
    progress(&format!(
        "{FIGURE}: cancelTask on a running task (status poll every {interval} s)"
    ));
    let worker = start_worker(h, WorkerOptions::default()).await?;
    let id = create(h, FIGURE, payload(&["/bin/sh", "-c", "sleep 600"], 900))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while running_containers(&id).await?.is_empty() {
        if Instant::now() > deadline {
            return Err(task_err(
                FIGURE,
                format!(
                    "the task's container never ran; worker log:\n{}",
                    tail(&worker.logs())
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let t0 = Instant::now();
    h.queue
        .cancel_task(&id)
        .map_err(|e| task_err(FIGURE, format!("cancelTask: {e}")))?;
    let limit = Duration::from_secs(interval * 3 + 30);
    while !running_containers(&id).await?.is_empty() {
        if t0.elapsed() > limit {
            return Err(task_err(
                FIGURE,
                format!(
                    "container still running {} s after cancelTask",
                    limit.as_secs()
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let secs = t0.elapsed().as_secs_f64();
    // The worker must not report anything for the canceled run.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let effective: Vec<_> = h
        .queue
        .resolutions_for(&id, 0)
        .into_iter()
        .filter(|c| c.effective)
        .collect();
    stop_worker(worker).await;
    if !effective.is_empty() {
        return Err(task_err(
            FIGURE,
            format!("the worker resolved a canceled run: {effective:?}"),
        ));
    }
    progress(&format!("{FIGURE}: {secs:.1} s"));
    Ok(Row::new(
        "cancelTask to container stopped",
        "s",
        secs,
        None,
        None,
        Target::AtMost(35.0),
        json!({"cancel_poll_interval_s": interval}),
    ))
}

/// Ids of the running containers of a task.
async fn running_containers(task_id: &str) -> Result<Vec<String>, BenchError> {
    let args = vec![
        "ps".to_string(),
        "-q".into(),
        "--filter".into(),
        format!("label={LABEL_TASK}={task_id}"),
        "--filter".into(),
        "status=running".into(),
    ];
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new("docker")
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| BenchError::Docker {
                args: args.join(" "),
                message: e.to_string(),
            })?;
        if !out.status.success() {
            return Err(BenchError::Docker {
                args: args.join(" "),
                message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect())
    })
    .await
    .map_err(|e| task_err("docker ps", e.to_string()))?
}

/// A `kB` field of `/proc/<pid>/status` (`VmRSS`, `VmHWM`).
fn proc_status_kb(pid: u32, field: &str) -> Option<u64> {
    let status =
        std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("status")).ok()?;
    status.lines().find_map(|l| {
        let rest = l.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// User plus system CPU seconds a process has used (`/proc/<pid>/stat`, 100 ticks a second).
fn proc_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at field 3 (state).
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i - 3)?.parse::<u64>().ok();
    Some((ticks(14)? + ticks(15)?) as f64 / 100.0)
}

/// The median (mean of the middle two for an even count); 0 for no samples.
fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
    }

    #[test]
    fn markers_give_the_streaming_time() {
        let log = b"[taskcluster 2026-01-31 12:00:00.250Z] === Task Starting ===\r\nxxx\r\n\
[taskcluster 2026-01-31 12:00:02.750Z] === Task Finished ===\r\n";
        assert_eq!(marker_span(log), Some(Duration::from_millis(2500)));
        let glued = b"[taskcluster 2026-01-31 12:00:00.250Z] === Task Starting ===\r\nno newline\
[taskcluster 2026-01-31 12:00:01.000Z] === Task Finished ===\r\n";
        assert_eq!(marker_span(glued), Some(Duration::from_millis(750)));
    }

    #[test]
    fn targets_decide_pass() {
        assert!(Target::RatioAtMost(1.3).holds(1.0, Some(1.2)));
        assert!(!Target::RatioAtLeast(0.8).holds(1.0, Some(0.7)));
        assert!(Target::AtMost(20.0).holds(19.9, None));
        assert!(!Target::RatioAtMost(1.3).holds(1.0, None));
    }

    #[test]
    fn proc_status_reads_this_process() {
        assert!(proc_status_kb(std::process::id(), "VmRSS").unwrap() > 0);
        assert!(proc_cpu_seconds(std::process::id()).is_some());
    }
}
