//! The worker's Taskcluster client: claim work with the worker's credentials, then drive each
//! claimed run (reclaim, status, artifacts, resolution) with that run's newest credentials.
//!
//! - [`QueueClient`]: built once from the root URL and the worker's credentials; `claimWork` only.
//! - [`RunClient`]: one per claimed run; holds the run's credentials cell, replaced on every
//!   reclaim, so every call after a reclaim is signed with the newest credentials.
//! - [`types`]: typed requests and (lenient) responses. [`error`]: [`QueueError`].
//! - [`upload`]: streamed artifact upload (`object` or `s3`) with retries.
//!
//! Calls are Hawk-signed by the official `taskcluster` crate, with a 60 s request timeout (above
//! the ~20 s `claimWork` long-poll). 5xx and network errors are retried with exponential backoff
//! and jitter; 4xx answers are returned at once. No credential is ever logged.

pub mod credentials;
pub mod error;
pub mod retry;
pub mod types;
pub mod upload;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use credentials::{Credentials, CredentialsWatch};
pub use error::QueueError;
pub use retry::RetryPolicy;
pub use types::{
    Claim, ErrorArtifactReason, ExceptionReason, Reclaim, RunInfo, RunState, TaskDefinition,
    TaskMetadata, TaskState, TaskStatus,
};
pub use upload::{BytesSource, FileSource, StorageType, UploadOptions, UploadSource};

use credentials::{CredentialsCell, Generation};
use types::{
    ClaimWorkRequest, ClaimWorkResponse, CreateArtifactRequest, CreateArtifactResponse,
    ExceptionRequest, FinishArtifactRequest, ReclaimResponse, TaskStatusResponse,
};

/// Most tasks one `claimWork` may ask for (the queue's limit).
pub const MAX_CLAIM: u32 = 32;

/// Settings of the client; the defaults suit a production worker.
#[derive(Debug, Clone)]
pub struct QueueOptions {
    /// Timeout of one Taskcluster API request; must exceed the ~20 s claimWork long-poll.
    pub request_timeout: Duration,
    /// Retries of API calls and upload PUTs (5xx and network errors only).
    pub retry: RetryPolicy,
    /// Storage type, gzip and inline settings for artifacts.
    pub upload: UploadOptions,
}

impl Default for QueueOptions {
    fn default() -> Self {
        QueueOptions {
            request_timeout: Duration::from_secs(60),
            retry: RetryPolicy::default(),
            upload: UploadOptions::default(),
        }
    }
}

/// What every client of one worker shares: where the services are and how to call them.
pub(crate) struct Services {
    root_url: String,
    request_timeout: Duration,
    pub(crate) retry: RetryPolicy,
    pub(crate) upload: UploadOptions,
    /// Plain HTTP client for upload PUTs (no overall timeout: bodies can be large).
    pub(crate) http: reqwest::Client,
}

impl Services {
    fn builder(&self, credentials: &Credentials) -> taskcluster::ClientBuilder {
        taskcluster::ClientBuilder::new(self.root_url.clone())
            .credentials(credentials.to_taskcluster())
            .timeout(self.request_timeout)
            .retry(self.retry.to_taskcluster())
    }

    /// A Queue client signed with `credentials`, retrying on its own (the worker's claimWork).
    pub(crate) fn queue(
        &self,
        credentials: &Credentials,
    ) -> Result<taskcluster::Queue, QueueError> {
        taskcluster::Queue::new(self.builder(credentials))
            .map_err(|e| QueueError::Setup(format!("building the Queue client: {e:#}")))
    }

    /// A Queue client for one generation of a run's credentials: it never retries by itself,
    /// so that every retry of a run call ([`RunClient::call`]) is signed with the newest ones.
    pub(crate) fn run_queue(
        &self,
        credentials: &Credentials,
    ) -> Result<taskcluster::Queue, QueueError> {
        let builder = self.builder(credentials).retry(taskcluster::Retry {
            retries: 0,
            ..self.retry.to_taskcluster()
        });
        taskcluster::Queue::new(builder)
            .map_err(|e| QueueError::Setup(format!("building the Queue client: {e:#}")))
    }

    /// An Object service client signed with `credentials`.
    pub(crate) fn object(
        &self,
        credentials: &Credentials,
    ) -> Result<taskcluster::Object, QueueError> {
        taskcluster::Object::new(self.builder(credentials))
            .map_err(|e| QueueError::Setup(format!("building the Object client: {e:#}")))
    }
}

/// Deserialize a service answer into its type.
fn parse<T: DeserializeOwned>(operation: &str, v: Value) -> Result<T, QueueError> {
    serde_json::from_value(v).map_err(|e| QueueError::response(operation, e))
}

/// The worker's client: claims work with the worker's own credentials.
pub struct QueueClient {
    services: Arc<Services>,
    worker: taskcluster::Queue,
}

impl fmt::Debug for QueueClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueClient")
            .field("root_url", &self.services.root_url)
            .finish_non_exhaustive()
    }
}

impl QueueClient {
    /// A client for the deployment at `root_url` with default options.
    pub fn new(root_url: &str, worker_credentials: Credentials) -> Result<Self, QueueError> {
        Self::with_options(root_url, worker_credentials, QueueOptions::default())
    }

    /// A client with explicit timeout, retry and upload settings.
    pub fn with_options(
        root_url: &str,
        worker_credentials: Credentials,
        options: QueueOptions,
    ) -> Result<Self, QueueError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| QueueError::Setup(format!("building the HTTP client: {e}")))?;
        let services = Arc::new(Services {
            root_url: root_url.to_owned(),
            request_timeout: options.request_timeout,
            retry: options.retry,
            upload: options.upload,
            http,
        });
        let worker = services.queue(&worker_credentials)?;
        Ok(QueueClient { services, worker })
    }

    /// The deployment's root URL.
    pub fn root_url(&self) -> &str {
        &self.services.root_url
    }

    /// `claimWork` for up to `tasks` runs (clamped to 1..=32) of `task_queue_id`
    /// (`provisionerId/workerType`). Long-polls: an empty answer after ~20 s means no work.
    pub async fn claim_work(
        &self,
        task_queue_id: &str,
        worker_group: &str,
        worker_id: &str,
        tasks: u32,
    ) -> Result<Vec<Claim>, QueueError> {
        let body = ClaimWorkRequest {
            worker_group,
            worker_id,
            tasks: tasks.clamp(1, MAX_CLAIM),
        };
        let body = serde_json::to_value(&body).expect("serializable");
        let v = self
            .worker
            .claimWork(task_queue_id, &body)
            .await
            .map_err(|e| QueueError::from_taskcluster("claimWork", e))?;
        let claims = parse::<ClaimWorkResponse>("claimWork", v)?.tasks;
        for c in &claims {
            tracing::info!(task_id = c.task_id(), run_id = c.run_id, taken_until = %c.taken_until, "claimed");
        }
        Ok(claims)
    }

    /// The client for one claimed run, starting with the claim's credentials.
    pub fn run_client(&self, claim: &Claim) -> Result<RunClient, QueueError> {
        self.run_client_for(
            claim.task_id(),
            claim.run_id,
            claim.credentials.clone(),
            claim.taken_until,
        )
    }

    /// The client for a run known by its parts (e.g. a claim kept elsewhere).
    pub fn run_client_for(
        &self,
        task_id: &str,
        run_id: u32,
        credentials: Credentials,
        taken_until: DateTime<Utc>,
    ) -> Result<RunClient, QueueError> {
        let cell = CredentialsCell::new(&self.services, credentials, taken_until)?;
        Ok(RunClient {
            inner: Arc::new(RunInner {
                task_id: task_id.to_owned(),
                run_id,
                run_id_str: run_id.to_string(),
                services: self.services.clone(),
                cell,
            }),
        })
    }
}

/// The client of one claimed run. Cheap to clone; all clones share the credentials cell, so a
/// reclaim through any clone switches every later call to the new credentials.
#[derive(Clone)]
pub struct RunClient {
    inner: Arc<RunInner>,
}

struct RunInner {
    task_id: String,
    run_id: u32,
    run_id_str: String,
    services: Arc<Services>,
    cell: CredentialsCell,
}

impl fmt::Debug for RunClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunClient")
            .field("task_id", &self.inner.task_id)
            .field("run_id", &self.inner.run_id)
            .finish_non_exhaustive()
    }
}

impl RunClient {
    /// The task id.
    pub fn task_id(&self) -> &str {
        &self.inner.task_id
    }

    /// The run id.
    pub fn run_id(&self) -> u32 {
        self.inner.run_id
    }

    /// The claim's current expiry (from the claim or the latest reclaim).
    pub fn taken_until(&self) -> DateTime<Utc> {
        self.inner.cell.current().taken_until
    }

    /// The run's newest credentials (e.g. for a task's proxy). Never log them.
    pub fn credentials(&self) -> Credentials {
        self.inner.cell.current().credentials.clone()
    }

    /// Follow credential rotations of this run.
    pub fn watch_credentials(&self) -> CredentialsWatch {
        self.inner.cell.watch()
    }

    pub(crate) fn services(&self) -> &Services {
        &self.inner.services
    }

    /// `reclaimTask`: extends the claim and installs the NEW credentials for all later calls.
    /// A [`QueueError::Conflict`] means the run was resolved elsewhere (e.g. canceled).
    pub async fn reclaim(&self) -> Result<Reclaim, QueueError> {
        let (task_id, run_id) = (&self.inner.task_id, &self.inner.run_id_str);
        let v = self
            .call("reclaimTask", |g| async move {
                g.queue.reclaimTask(task_id, run_id).await
            })
            .await?;
        let r: ReclaimResponse = parse("reclaimTask", v)?;
        self.inner
            .cell
            .rotate(&self.inner.services, r.credentials, r.taken_until)?;
        tracing::info!(task_id = self.task_id(), run_id = self.run_id(), taken_until = %r.taken_until, "reclaimed");
        Ok(Reclaim {
            taken_until: r.taken_until,
            status: r.status,
        })
    }

    /// `status` of the task (to notice a cancel between reclaims).
    pub async fn status(&self) -> Result<TaskStatus, QueueError> {
        let task_id = &self.inner.task_id;
        let v = self
            .call("status", |g| async move { g.queue.status(task_id).await })
            .await?;
        Ok(parse::<TaskStatusResponse>("status", v)?.status)
    }

    /// `reportCompleted`: resolve the run as completed.
    pub async fn report_completed(&self) -> Result<TaskStatus, QueueError> {
        let (task_id, run_id) = (&self.inner.task_id, &self.inner.run_id_str);
        let v = self
            .call("reportCompleted", |g| async move {
                g.queue.reportCompleted(task_id, run_id).await
            })
            .await?;
        self.resolved("completed");
        Ok(parse::<TaskStatusResponse>("reportCompleted", v)?.status)
    }

    /// `reportFailed`: resolve the run as failed.
    pub async fn report_failed(&self) -> Result<TaskStatus, QueueError> {
        let (task_id, run_id) = (&self.inner.task_id, &self.inner.run_id_str);
        let v = self
            .call("reportFailed", |g| async move {
                g.queue.reportFailed(task_id, run_id).await
            })
            .await?;
        self.resolved("failed");
        Ok(parse::<TaskStatusResponse>("reportFailed", v)?.status)
    }

    /// `reportException` with `reason`.
    pub async fn report_exception(
        &self,
        reason: ExceptionReason,
    ) -> Result<TaskStatus, QueueError> {
        let body = serde_json::to_value(ExceptionRequest { reason }).expect("serializable");
        let (task_id, run_id, body_ref) = (&self.inner.task_id, &self.inner.run_id_str, &body);
        let v = self
            .call("reportException", |g| async move {
                g.queue.reportException(task_id, run_id, body_ref).await
            })
            .await?;
        self.resolved(body["reason"].as_str().unwrap_or("exception"));
        Ok(parse::<TaskStatusResponse>("reportException", v)?.status)
    }

    fn resolved(&self, how: &str) {
        tracing::info!(
            task_id = self.task_id(),
            run_id = self.run_id(),
            resolution = how,
            "resolved"
        );
    }

    /// Upload a file artifact with the configured storage type (`object` or `s3`), streaming
    /// `source` and retrying failed PUTs with a fresh upload URL.
    pub async fn upload_file(
        &self,
        name: &str,
        content_type: &str,
        expires: DateTime<Utc>,
        source: &dyn UploadSource,
    ) -> Result<(), QueueError> {
        upload::upload(self, name, content_type, expires, source).await
    }

    /// A `reference` artifact: a redirect to `url` (e.g. the live log while the task runs).
    pub async fn create_reference(
        &self,
        name: &str,
        url: &str,
        expires: DateTime<Utc>,
        content_type: &str,
    ) -> Result<(), QueueError> {
        let req = CreateArtifactRequest::Reference {
            expires,
            url,
            content_type,
        };
        self.create_artifact(name, &req).await.map(drop)
    }

    /// A `link` artifact pointing at the artifact `target` of the same run.
    pub async fn create_link(
        &self,
        name: &str,
        target: &str,
        expires: DateTime<Utc>,
    ) -> Result<(), QueueError> {
        let req = CreateArtifactRequest::Link {
            expires,
            artifact: target,
        };
        self.create_artifact(name, &req).await.map(drop)
    }

    /// An `error` artifact (e.g. `file-missing-on-worker`); `message` is cut to 4096 bytes.
    pub async fn create_error(
        &self,
        name: &str,
        reason: ErrorArtifactReason,
        message: &str,
        expires: DateTime<Utc>,
    ) -> Result<(), QueueError> {
        let mut cut = message.len().min(4096);
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        let req = CreateArtifactRequest::Error {
            expires,
            reason,
            message: &message[..cut],
        };
        self.create_artifact(name, &req).await.map(drop)
    }

    /// `createArtifact` with the newest credentials.
    pub(crate) async fn create_artifact(
        &self,
        name: &str,
        req: &CreateArtifactRequest<'_>,
    ) -> Result<CreateArtifactResponse, QueueError> {
        let body = serde_json::to_value(req).expect("serializable");
        let (task_id, run_id, body) = (&self.inner.task_id, &self.inner.run_id_str, &body);
        let v = self
            .call("createArtifact", |g| async move {
                g.queue.createArtifact(task_id, run_id, name, body).await
            })
            .await?;
        parse("createArtifact", v)
    }

    /// `finishArtifact` for an `object` artifact.
    pub(crate) async fn finish_artifact(
        &self,
        name: &str,
        upload_id: &str,
    ) -> Result<(), QueueError> {
        let body = serde_json::to_value(FinishArtifactRequest { upload_id }).expect("serializable");
        let (task_id, run_id, body) = (&self.inner.task_id, &self.inner.run_id_str, &body);
        self.call("finishArtifact", |g| async move {
            g.queue.finishArtifact(task_id, run_id, name, body).await
        })
        .await
    }

    /// One run call with retries (5xx, network; backoff with jitter). Each attempt takes the
    /// newest credentials, so a retry after a reclaim is never signed with superseded ones.
    async fn call<T, F, Fut>(&self, operation: &str, attempt: F) -> Result<T, QueueError>
    where
        F: Fn(Arc<Generation>) -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<T>>,
    {
        let policy = &self.inner.services.retry;
        let mut retry = 0;
        loop {
            match attempt(self.inner.cell.current()).await {
                Ok(v) => return Ok(v),
                Err(e) => {
                    let err = QueueError::from_taskcluster(operation, e);
                    if !err.is_transient() || retry >= policy.retries {
                        return Err(err);
                    }
                    tracing::debug!(operation, retry, error = %err, "retrying");
                    tokio::time::sleep(policy.delay(retry)).await;
                    retry += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_send_sync<T: Send + Sync>() {}
    fn is_send<T: Send>(_: &T) {}

    #[test]
    fn clients_and_their_futures_can_move_between_tasks() {
        is_send_sync::<QueueClient>();
        is_send_sync::<RunClient>();
        let qc = QueueClient::new("http://127.0.0.1:1", Credentials::new("c", "t")).unwrap();
        let run = qc
            .run_client_for("T", 0, Credentials::new("c", "t"), Utc::now())
            .unwrap();
        let src = BytesSource(bytes::Bytes::from_static(b"x"));
        is_send(&run.upload_file("a", "text/plain", Utc::now(), &src));
        is_send(&run.reclaim());
        is_send(&qc.claim_work("p/w", "g", "w", 1));
    }
}
