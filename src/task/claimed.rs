//! One claimed run, from claim to resolution: live log reference, reclaims with rotating
//! credentials, cancel detection, the engine, log upload, and exactly one resolution call.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::artifacts::{ArtifactFile, ArtifactSink, ErrorArtifact, SinkError};
use crate::livelog::server::LiveLogServer;
use crate::livelog::TaskLog;
use crate::payload::{backing_log_name, DEFAULT_LOG_NAME};
use crate::queue::{Claim, FileSource, QueueError, RunClient};
use crate::resolution::{AbortReason, Resolution};
use crate::task::{Abort, Engine, TaskRun};

/// Wait before trying a reclaim again after one failed (its own retries used up).
const RECLAIM_RETRY: Duration = Duration::from_secs(5);

/// Content type of the task log.
const LOG_CONTENT_TYPE: &str = "text/plain; charset=utf-8";

/// Uploads artifacts of one run to the queue.
struct QueueSink<'a> {
    run: &'a RunClient,
    default_expires: DateTime<Utc>,
}

#[async_trait]
impl ArtifactSink for QueueSink<'_> {
    async fn put_file(&self, file: &ArtifactFile, path: &Path) -> Result<(), SinkError> {
        let source = FileSource::with_len(path, file.size);
        let expires = file.expires.unwrap_or(self.default_expires);
        tracing::info!(task_id = self.run.task_id(), run_id = self.run.run_id(), artifact = %file.name, size = file.size, "uploading artifact");
        self.run
            .upload_file(&file.name, &file.content_type, expires, &source)
            .await
            .map_err(|e| SinkError {
                name: file.name.clone(),
                message: e.to_string(),
            })
    }

    async fn put_error(&self, error: &ErrorArtifact) -> Result<(), SinkError> {
        let expires = error.expires.unwrap_or(self.default_expires);
        self.run
            .create_error(&error.name, error.reason, &error.message, expires)
            .await
            .map_err(|e| SinkError {
                name: error.name.clone(),
                message: e.to_string(),
            })
    }
}

/// What one claimed run needs from the worker.
pub struct ClaimedContext<'a> {
    /// The engine.
    pub engine: &'a Engine,
    /// The live log server, when live logs are served.
    pub live_log: Option<&'a LiveLogServer>,
    /// Where the run keeps its log and spool files (removed afterwards).
    pub work_dir: PathBuf,
    /// Cancelled when running tasks must be aborted (worker shutdown).
    pub abort_tasks: CancellationToken,
}

/// Run one claimed task to its single resolution. Never panics on queue or Docker errors; every
/// path ends with the container removed and (unless the run was resolved elsewhere) one report.
pub async fn run_claimed(ctx: ClaimedContext<'_>, run: RunClient, claim: Claim) -> Resolution {
    let task_id = run.task_id().to_string();
    let run_id = run.run_id();
    tracing::info!(task_id = %task_id, run_id, "claimed");
    let default_expires = claim
        .task
        .expires
        .unwrap_or_else(|| claim.task.deadline + chrono::Duration::days(365));
    let log_name = claim
        .task
        .payload
        .get("log")
        .and_then(|l| l.as_str())
        .unwrap_or(DEFAULT_LOG_NAME)
        .to_string();
    let live = claim
        .task
        .payload
        .pointer("/features/localLiveLog")
        .or_else(|| claim.task.payload.pointer("/features/azureLivelog"))
        .and_then(|v| v.as_bool())
        .unwrap_or(true);

    let abort = Abort::child_of(&ctx.abort_tasks);
    let resolution = match prepare(&ctx.work_dir).await {
        Ok(log) => {
            run_with_log(
                &ctx,
                &run,
                &claim,
                log,
                &abort,
                &log_name,
                live,
                default_expires,
            )
            .await
        }
        Err(e) => {
            tracing::error!(task_id = %task_id, run_id, error = %e, "cannot create the task's work directory");
            Resolution::Exception(crate::queue::ExceptionReason::InternalError)
        }
    };
    report(&run, resolution).await;
    if let Err(e) = tokio::fs::remove_dir_all(&ctx.work_dir).await {
        tracing::warn!(task_id = %task_id, error = %e, "removing the task's work directory");
    }
    resolution
}

async fn prepare(work_dir: &Path) -> std::io::Result<TaskLog> {
    tokio::fs::create_dir_all(work_dir.join("scratch")).await?;
    TaskLog::create(work_dir.join("live.log")).await
}

#[allow(clippy::too_many_arguments)]
async fn run_with_log(
    ctx: &ClaimedContext<'_>,
    run: &RunClient,
    claim: &Claim,
    mut log: TaskLog,
    abort: &Abort,
    log_name: &str,
    live: bool,
    default_expires: DateTime<Utc>,
) -> Resolution {
    let registration = match (live, ctx.live_log) {
        (true, Some(server)) => Some(server.register(log.followers())),
        _ => None,
    };
    if let Some(reg) = &registration {
        if let Err(e) = run
            .create_reference(
                log_name,
                reg.url().as_str(),
                default_expires,
                LOG_CONTENT_TYPE,
            )
            .await
        {
            tracing::warn!(task_id = run.task_id(), error = %e, "creating the live log reference failed");
            if e.is_conflict() && resolved_elsewhere(run).await {
                return Resolution::Nothing;
            }
        }
    }

    let guard = CancellationToken::new();
    let watcher = tokio::spawn(watch_run(
        run.clone(),
        abort.clone(),
        guard.clone(),
        ctx.engine.config().task.reclaim_divisor.max(1),
        Duration::from_secs(ctx.engine.config().task.cancel_poll_interval),
    ));

    let task = TaskRun {
        task_id: run.task_id().to_string(),
        run_id: run.run_id(),
        payload: claim.task.payload.clone(),
        task_expires: claim.task.expires,
        scopes: Some(claim.task.scopes.clone()),
    };
    let sink = QueueSink {
        run,
        default_expires,
    };
    let report = ctx.engine.run(&task, &mut log, &sink, abort).await;
    // Keep reclaiming while the log uploads: only stop once the run is ready to be reported.
    let resolution = upload_log(
        run,
        report,
        log,
        registration,
        log_name,
        live,
        default_expires,
    )
    .await;
    guard.cancel();
    let _ = watcher.await;
    match abort.reason() {
        Some(AbortReason::ResolvedElsewhere(_)) => Resolution::Nothing,
        _ => resolution,
    }
}

/// Upload the backing log and turn `live.log` into a link to it; the run's final resolution.
async fn upload_log(
    run: &RunClient,
    report: crate::task::RunReport,
    log: TaskLog,
    registration: Option<crate::livelog::server::LiveLogRegistration>,
    log_name: &str,
    live: bool,
    default_expires: DateTime<Utc>,
) -> Resolution {
    let mut resolution = report.resolution;
    if resolution == Resolution::Nothing {
        tracing::info!(task_id = run.task_id(), run_id = run.run_id(), outcome = ?report.outcome, "run resolved elsewhere: nothing uploaded or reported");
        return resolution;
    }

    // The backing log, then live.log becomes a link to it; both before the resolution.
    let path = match log.close().await {
        Ok(path) => path,
        Err(e) => {
            tracing::error!(task_id = run.task_id(), error = %e, "closing the task log");
            return Resolution::Exception(crate::queue::ExceptionReason::InternalError);
        }
    };
    drop(registration);
    let backing = backing_log_name(log_name);
    let uploaded = async {
        let source = FileSource::new(&path)
            .await
            .map_err(|e| QueueError::Source {
                name: backing.clone(),
                source: e,
            })?;
        run.upload_file(&backing, LOG_CONTENT_TYPE, default_expires, &source)
            .await?;
        if live {
            run.create_link(log_name, &backing, default_expires).await?;
        }
        Ok::<(), QueueError>(())
    }
    .await;
    if let Err(e) = uploaded {
        tracing::error!(task_id = run.task_id(), run_id = run.run_id(), error = %e, "uploading the task log failed");
        if e.is_conflict() && resolved_elsewhere(run).await {
            return Resolution::Nothing;
        }
        resolution = Resolution::Exception(crate::queue::ExceptionReason::InternalError);
    }
    resolution
}

/// After a 409: was the run really resolved elsewhere? (The queue also answers 409 for an
/// artifact name that already exists, which must not leave the run unreported.)
async fn resolved_elsewhere(run: &RunClient) -> bool {
    match run.status().await {
        Ok(status) => status.run_is_resolved(run.run_id()),
        Err(e) => {
            tracing::warn!(task_id = run.task_id(), error = %e, "status after a 409 failed");
            false
        }
    }
}

/// Report the resolution (exactly one call). A 409 means it was resolved elsewhere: logged only.
async fn report(run: &RunClient, resolution: Resolution) {
    let result = match resolution {
        Resolution::Completed => run.report_completed().await,
        Resolution::Failed => run.report_failed().await,
        Resolution::Exception(reason) => run.report_exception(reason).await,
        Resolution::Nothing => return,
    };
    match result {
        Ok(_) => {}
        Err(e) if e.is_conflict() => {
            tracing::warn!(
                task_id = run.task_id(),
                run_id = run.run_id(),
                "run was already resolved elsewhere (409)"
            )
        }
        Err(e) => {
            tracing::error!(task_id = run.task_id(), run_id = run.run_id(), error = %e, "reporting the resolution failed")
        }
    }
}

/// While the run is active: reclaim at `(takenUntil - now) / divisor`, and poll the task status
/// every `poll` (0 = never). A 409 or a resolved run aborts it as resolved elsewhere; other
/// reclaim errors abort it as an internal error.
async fn watch_run(
    run: RunClient,
    abort: Abort,
    done: CancellationToken,
    divisor: u32,
    poll: Duration,
) {
    let mut next_poll = (!poll.is_zero()).then(|| tokio::time::Instant::now() + poll);
    // Fixed when the claim is taken or renewed: recomputing it after every status poll would
    // push the reclaim ever closer to takenUntil.
    let next_reclaim = || {
        let left = (run.taken_until() - Utc::now())
            .to_std()
            .unwrap_or(Duration::ZERO);
        tokio::time::Instant::now() + left / divisor
    };
    let mut reclaim_at = next_reclaim();
    loop {
        let poll_at = next_poll.unwrap_or(reclaim_at + Duration::from_secs(3600));
        tokio::select! {
            _ = done.cancelled() => return,
            _ = tokio::time::sleep_until(reclaim_at) => {
                match run.reclaim().await {
                    Ok(_) => reclaim_at = next_reclaim(),
                    Err(e) if e.is_conflict() => {
                        tracing::warn!(task_id = run.task_id(), run_id = run.run_id(), "reclaim answered 409: the run was resolved elsewhere");
                        abort.abort(AbortReason::ResolvedElsewhere("reclaim returned 409".into()));
                        return;
                    }
                    Err(e) => {
                        // The run ends as internal-error, but keep the claim alive while its log
                        // uploads: try again shortly (until the claim is gone or the run is done).
                        tracing::error!(task_id = run.task_id(), run_id = run.run_id(), error = %e, "reclaim failed");
                        abort.abort(AbortReason::InternalError(format!("reclaim failed: {e}")));
                        reclaim_at = tokio::time::Instant::now() + RECLAIM_RETRY;
                    }
                }
            }
            _ = tokio::time::sleep_until(poll_at), if next_poll.is_some() => {
                next_poll = Some(tokio::time::Instant::now() + poll);
                match run.status().await {
                    Ok(status) if status.run_is_resolved(run.run_id()) => {
                        tracing::warn!(task_id = run.task_id(), run_id = run.run_id(), "the run was resolved elsewhere (canceled)");
                        abort.abort(AbortReason::ResolvedElsewhere("task was canceled".into()));
                        return;
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(task_id = run.task_id(), error = %e, "status poll failed"),
                }
            }
        }
    }
}
