//! `docker-worker start`: the claim loop. Sweeps leftovers at start-up, claims up to free
//! capacity, runs each claim in its own task, and stops on the shutdown tokens it is given.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;
use rand::Rng;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::WorkerConfig;
use crate::docker::{Docker, DockerError, LABEL_WORKER};
use crate::livelog::server::{LiveLogError, LiveLogServer, TlsFiles};
use crate::queue::{
    Claim, ExceptionReason, QueueClient, QueueError, QueueOptions, RunClient, UploadOptions,
    MAX_CLAIM,
};
use crate::task::claimed::{run_claimed, ClaimedContext};
use crate::task::Engine;

/// How the worker is told to stop. Both are passed in; the worker never polls a flag.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    /// Stop claiming new tasks (SIGQUIT drains with only this).
    pub stop_claiming: CancellationToken,
    /// Abort running tasks: kill, upload logs, report `worker-shutdown` (SIGTERM / SIGINT).
    pub abort_tasks: CancellationToken,
}

impl Shutdown {
    /// Stop claiming and abort running tasks.
    pub fn now(&self) {
        self.stop_claiming.cancel();
        self.abort_tasks.cancel();
    }

    /// Stop claiming; let running tasks finish.
    pub fn drain(&self) {
        self.stop_claiming.cancel();
    }
}

/// The worker could not start or keep running.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// Docker is unreachable or refused the start-up sweep.
    #[error(transparent)]
    Docker(#[from] DockerError),
    /// The queue client could not be built.
    #[error("queue client: {0}")]
    Queue(#[from] QueueError),
    /// The live log server could not start.
    #[error("live log server: {0}")]
    LiveLog(#[from] LiveLogError),
    /// The work directory could not be created.
    #[error("work directory: {0}")]
    WorkDir(#[from] std::io::Error),
}

/// Run the worker until `shutdown` says stop (or it has been idle past `shutdown.afterIdleSeconds`
/// when enabled). Returns once every running task is resolved.
pub async fn run(config: WorkerConfig, shutdown: Shutdown) -> Result<(), WorkerError> {
    let config = Arc::new(config);
    let docker = Docker::connect().await?;
    sweep(&docker, &config.worker_id).await?;

    let credentials = config
        .credentials
        .clone()
        .expect("config::load requires credentials for the daemon");
    let options = QueueOptions {
        upload: UploadOptions {
            storage_type: config.artifacts.storage_type,
            skip_compression_extensions: config.artifacts.skip_compression_extensions.clone(),
            ..UploadOptions::default()
        },
        ..QueueOptions::default()
    };
    let queue = QueueClient::with_options(&config.root_url, credentials, options)?;
    let live_log = start_live_log(&config).await?;
    let work = tempfile::Builder::new()
        .prefix("docker-worker-")
        .tempdir()?;
    let engine = Engine::new(docker, config.clone(), work.path().join("scratch"));
    std::fs::create_dir_all(work.path().join("scratch"))?;

    let task_queue_id = format!("{}/{}", config.provisioner_id, config.worker_type);
    tracing::info!(
        worker_id = %config.worker_id,
        worker_group = %config.worker_group,
        task_queue_id = %task_queue_id,
        capacity = config.capacity,
        live_log = ?live_log.as_ref().map(|s| s.local_addr()),
        "worker started"
    );

    let spot_watch = CancellationToken::new();
    if config.host_kind == crate::config::HostKind::Aws {
        tokio::spawn(crate::aws::watch_spot_termination(
            config.aws_metadata_url.clone(),
            crate::aws::SPOT_POLL,
            shutdown.clone(),
            spot_watch.clone(),
        ));
    }
    let _stop_spot_watch = spot_watch.drop_guard();

    let capacity = Arc::new(Semaphore::new(config.capacity.max(1)));
    let tracker = TaskTracker::new();
    let poll_interval = Duration::from_millis(config.task_queue.poll_interval);
    let idle_limit = config
        .shutdown
        .enabled
        .then(|| Duration::from_secs(config.shutdown.after_idle_seconds));
    let mut idle_since = tokio::time::Instant::now();
    // When the last task ended (a task can run longer than the idle limit).
    let last_done = Arc::new(std::sync::Mutex::new(tokio::time::Instant::now()));
    let mut errors = 0u32;

    loop {
        // Wait for at least one free slot (or stop).
        let first = tokio::select! {
            biased;
            _ = shutdown.stop_claiming.cancelled() => break,
            permit = capacity.clone().acquire_owned() => permit.expect("semaphore is never closed"),
        };
        let mut permits = vec![first];
        while permits.len() < MAX_CLAIM as usize {
            match capacity.clone().try_acquire_owned() {
                Ok(p) => permits.push(p),
                Err(_) => break,
            }
        }
        if tracker.is_empty() {
            if let Some(limit) = idle_limit {
                let last_done = *last_done.lock().unwrap_or_else(|p| p.into_inner());
                if idle_since.max(last_done).elapsed() >= limit {
                    tracing::info!(
                        idle_seconds = limit.as_secs(),
                        "idle too long: shutting down"
                    );
                    break;
                }
            }
        } else {
            idle_since = tokio::time::Instant::now();
        }

        // Never abandon a claimWork in flight: the queue may already have given us tasks. Claims
        // that arrive after a stop (drain included) are handed back at once: their abort token is
        // already cancelled, so each resolves `worker-shutdown` and the queue retries it elsewhere.
        let claimed = queue
            .claim_work(
                &task_queue_id,
                &config.worker_group,
                &config.worker_id,
                permits.len() as u32,
            )
            .await;
        let claims = match claimed {
            Ok(claims) => {
                errors = 0;
                claims
            }
            Err(e) => {
                errors += 1;
                let delay = error_backoff(errors);
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "claimWork failed");
                drop(permits);
                tokio::select! {
                    _ = tokio::time::sleep(delay) => continue,
                    _ = shutdown.stop_claiming.cancelled() => break,
                }
            }
        };
        if claims.is_empty() {
            drop(permits);
            tokio::select! {
                _ = tokio::time::sleep(poll_interval) => continue,
                _ = shutdown.stop_claiming.cancelled() => break,
            }
        }
        idle_since = tokio::time::Instant::now();
        for claim in claims {
            // More claims than asked for cannot be run here: hand them back at once.
            let permit = permits.pop();
            let handed_back = permit.is_none() || shutdown.stop_claiming.is_cancelled();
            let run = match queue.run_client(&claim) {
                Ok(run) => run,
                Err(e) => {
                    tracing::error!(task_id = claim.task_id(), run_id = claim.run_id, error = %e,
                        "cannot build a client for the claimed run: it is lost until its claim expires");
                    continue;
                }
            };
            let abort_tasks = if handed_back {
                let token = CancellationToken::new();
                token.cancel();
                token
            } else {
                shutdown.abort_tasks.clone()
            };
            let ctx = RunContext {
                engine: engine.clone(),
                live_log: live_log.clone(),
                work_dir: work
                    .path()
                    .join(format!("{}-{}", claim.task_id(), claim.run_id)),
                abort_tasks,
                last_done: last_done.clone(),
            };
            tracker.spawn(async move {
                ctx.run(run, claim).await;
                drop(permit);
            });
        }
    }

    tracker.close();
    if !tracker.is_empty() {
        tracing::info!(running = tracker.len(), "waiting for running tasks");
    }
    tracker.wait().await;
    if let Some(server) = live_log {
        if let Ok(server) = Arc::try_unwrap(server) {
            server.shutdown().await;
        }
    }
    tracing::info!("worker stopped");
    Ok(())
}

/// What one spawned run owns.
struct RunContext {
    engine: Engine,
    live_log: Option<Arc<LiveLogServer>>,
    work_dir: std::path::PathBuf,
    abort_tasks: CancellationToken,
    last_done: Arc<std::sync::Mutex<tokio::time::Instant>>,
}

impl RunContext {
    /// Run one claim to its resolution. A panic inside is caught and reported as
    /// `internal-error`, so the daemon and the other runs go on.
    async fn run(self, run: RunClient, claim: Claim) {
        let reporter = run.clone();
        let ctx = ClaimedContext {
            engine: &self.engine,
            live_log: self.live_log.as_deref(),
            work_dir: self.work_dir.clone(),
            abort_tasks: self.abort_tasks.clone(),
        };
        let outcome = AssertUnwindSafe(run_claimed(ctx, run, claim))
            .catch_unwind()
            .await;
        if outcome.is_err() {
            tracing::error!(
                task_id = reporter.task_id(),
                run_id = reporter.run_id(),
                "the run panicked: reporting internal-error"
            );
            if let Err(e) = reporter
                .report_exception(ExceptionReason::InternalError)
                .await
            {
                tracing::error!(task_id = reporter.task_id(), error = %e, "reporting the panicked run failed");
            }
            let _ = tokio::fs::remove_dir_all(&self.work_dir).await;
        }
        *self.last_done.lock().unwrap_or_else(|p| p.into_inner()) = tokio::time::Instant::now();
    }
}

/// Remove containers that carry this worker's label (left by a crash), logging each.
pub async fn sweep(docker: &Docker, worker_id: &str) -> Result<usize, DockerError> {
    let leftovers = docker.list_labeled(LABEL_WORKER, worker_id).await?;
    for c in &leftovers {
        tracing::warn!(
            container = %c.id,
            task_id = c.labels.get(crate::docker::LABEL_TASK).map(String::as_str).unwrap_or(""),
            state = %c.state,
            "removing a container left by an earlier run of this worker"
        );
        if let Err(e) = docker.remove(&c.id).await {
            tracing::error!(container = %c.id, error = %e, "removing a leftover container failed");
        }
    }
    Ok(leftovers.len())
}

/// Delay after `n` consecutive claimWork errors: exponential from 1 s to 60 s, ±25 % jitter.
fn error_backoff(n: u32) -> Duration {
    let base = (1000u64 << n.saturating_sub(1).min(6)).min(60_000) as f64;
    let factor = rand::rng().random_range(0.75..=1.25);
    Duration::from_millis((base * factor) as u64)
}

async fn start_live_log(config: &WorkerConfig) -> Result<Option<Arc<LiveLogServer>>, WorkerError> {
    if !config.features.get("localLiveLog").copied().unwrap_or(true) {
        return Ok(None);
    }
    let bind = SocketAddr::new(config.live_log.bind_address, config.live_log.port);
    let tls = config.logging.secure_live_logging.then(|| TlsFiles {
        certificate: config.ssl.certificate.clone(),
        key: config.ssl.key.clone(),
    });
    // Readers reach the log at `liveLog.publicUrl`, else at the public IP (or `host`) and the port;
    // with port 0 (tests) the server builds URLs on the address it bound.
    let public = config.live_log.public_url.clone().or_else(|| {
        let host = if config.public_ip.is_empty() {
            config.host.clone()
        } else {
            config.public_ip.clone()
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        (config.live_log.port != 0)
            .then(|| url::Url::parse(&format!("{scheme}://{host}:{}/", config.live_log.port)).ok())
            .flatten()
    });
    let server = LiveLogServer::start(bind, public, tls).await?;
    Ok(Some(Arc::new(server)))
}
