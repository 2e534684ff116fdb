//! An in-process fake of the Taskcluster Queue, Object service and Index, for tests and `dw-test`.
//!
//! The fake's base URL is a Taskcluster *root URL*: routes are `/api/queue/v1/...`,
//! `/api/object/v1/...` and `/api/index/v1/...`, as the `taskcluster` crate builds them.
//! It keeps the real run state machine (pending → running → completed/failed/exception,
//! claim expiry with a retry run, retries, deadline, cancel), real status codes and
//! `{"code","message"}` error bodies, checks request bodies against the schemas' rules,
//! and verifies Hawk on every call. Each claim and reclaim mints new temporary credentials
//! with a real certificate; a call signed with credentials superseded by a newer reclaim
//! gets 401 and is recorded as a [`Violation`].
//!
//! Layout: [`wiremock`] answers every API call (module `routes`, over the data in `state`,
//! with `auth` for Hawk/certificates and `schema` for body rules). In front of it sits a
//! small HTTP proxy (module `front`), which is the root URL clients see. The proxy exists
//! because wiremock answers synchronously: it holds `claimWork` long-polls until a task is
//! pending (or the poll time passes) and applies injected faults, including *dropping the
//! connection* (closing it without an answer), which wiremock cannot do. The proxy also
//! stores PUTs to the fake's upload URLs (`<root>/__fake/put/<token>`, handed out as s3
//! `putUrl`s and object-service `putUrl`s) directly, so a large upload is held once in memory.
//! Uploaded artifacts can be downloaded from `<root>/__fake/artifact/<taskId>/<runId>/<name>`
//! (where `getArtifact` redirects).

mod auth;
mod front;
mod routes;
mod schema;
mod state;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::watch;

pub use state::RunState;

/// A new slugid (the worker's own generator, shared).
pub use crate::local::random_task_id as new_task_id;

/// Settings for a [`FakeQueue`]; [`Default`] gives the real service's timings.
#[derive(Clone, Debug)]
pub struct FakeQueueOptions {
    /// The pool's provisionerId (default `dw-test`).
    pub provisioner_id: String,
    /// The pool's workerType (default `dw-test-worker`).
    pub worker_type: String,
    /// How long a claim lasts before it must be reclaimed (real default 20 min).
    pub claim_timeout: Duration,
    /// How long `claimWork` waits for a pending task before answering empty (real: ~20 s).
    pub claim_work_wait: Duration,
    /// clientId of the worker's permanent credentials.
    pub worker_client_id: String,
    /// How often claim expiry and deadlines are checked.
    pub tick: Duration,
}

impl Default for FakeQueueOptions {
    fn default() -> Self {
        FakeQueueOptions {
            provisioner_id: "dw-test".into(),
            worker_type: "dw-test-worker".into(),
            claim_timeout: Duration::from_secs(20 * 60),
            claim_work_wait: Duration::from_secs(20),
            worker_client_id: "dw-test/worker".into(),
            tick: Duration::from_millis(100),
        }
    }
}

/// Permanent or temporary Taskcluster credentials handed out by the fake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeCredentials {
    /// clientId
    pub client_id: String,
    /// accessToken
    pub access_token: String,
    /// certificate JSON string, for temporary credentials
    pub certificate: Option<String>,
}

impl From<FakeCredentials> for taskcluster::Credentials {
    fn from(c: FakeCredentials) -> Self {
        taskcluster::Credentials {
            client_id: c.client_id,
            access_token: c.access_token,
            certificate: c.certificate,
        }
    }
}

/// An error answer: HTTP status plus the Taskcluster `{"code","message"}` body.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct ApiError {
    /// HTTP status
    pub status: u16,
    /// Taskcluster error code, e.g. `RequestConflict`
    pub code: String,
    /// Human-readable message
    pub message: String,
}

impl ApiError {
    /// An error with the given status, code and message.
    pub fn new(status: u16, code: &str, message: String) -> ApiError {
        ApiError {
            status,
            code: code.to_string(),
            message,
        }
    }

    /// 400 `InputValidationError`.
    pub fn input(message: String) -> ApiError {
        ApiError::new(400, "InputValidationError", message)
    }
}

/// Errors of the test-facing API.
#[derive(Debug, thiserror::Error)]
pub enum FakeQueueError {
    /// The fake refused the operation (same answer the HTTP API would give).
    #[error(transparent)]
    Api(#[from] ApiError),
    /// A wait ran out of time.
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(Duration, String),
    /// The fake could not start.
    #[error("starting the fake queue: {0}")]
    Start(#[from] std::io::Error),
}

/// One HTTP call the fake received.
#[derive(Clone, Debug)]
pub struct RecordedCall {
    /// When it arrived.
    pub at: DateTime<Utc>,
    /// HTTP method.
    pub method: String,
    /// Percent-decoded path.
    pub path: String,
    /// clientId named in the Hawk header (whether or not it verified).
    pub client_id: Option<String>,
    /// Status answered; 0 when the connection was dropped by an injected fault.
    pub status: u16,
}

/// A protocol violation by a client (stale or wrong credentials, bad signature, ...).
#[derive(Clone, Debug)]
pub struct Violation {
    /// When it happened.
    pub at: DateTime<Utc>,
    /// HTTP method.
    pub method: String,
    /// Percent-decoded path.
    pub path: String,
    /// clientId used.
    pub client_id: Option<String>,
    /// What was wrong.
    pub reason: String,
}

/// One resolution call (reportCompleted / reportFailed / reportException) for a run.
#[derive(Clone, Debug)]
pub struct ResolutionCall {
    /// When it arrived.
    pub at: DateTime<Utc>,
    /// taskId
    pub task_id: String,
    /// runId
    pub run_id: u32,
    /// `completed`, `failed` or `exception`.
    pub resolution: String,
    /// The exception reason (for `exception`).
    pub reason: Option<String>,
    /// Status answered.
    pub status: u16,
    /// True when this call changed the run (the first successful one).
    pub effective: bool,
}

/// An artifact as the queue stores it.
#[derive(Clone, Debug)]
pub struct StoredArtifact {
    /// `s3`, `object`, `reference`, `link` or `error`.
    pub storage_type: String,
    /// contentType given at creation (`application/binary` default for links).
    pub content_type: String,
    /// Expiry given at creation.
    pub expires: String,
    /// Uploaded bytes as stored (for `s3` with `Content-Encoding: gzip`, still compressed).
    pub raw: Option<Vec<u8>>,
    /// `Content-Encoding` of the upload, if any.
    pub content_encoding: Option<String>,
    /// For `reference`: the URL.
    pub url: Option<String>,
    /// For `link`: the target artifact name.
    pub link_target: Option<String>,
    /// For `error`: the reason.
    pub reason: Option<String>,
    /// For `error`: the message.
    pub message: Option<String>,
    /// For `object`: the object name and uploadId.
    pub object_name: Option<String>,
    /// For `object`: the uploadId.
    pub upload_id: Option<String>,
    /// False until the upload is finished (object: finishArtifact; s3: the PUT).
    pub present: bool,
}

impl StoredArtifact {
    fn new(storage_type: &str, content_type: &str, expires: &str) -> StoredArtifact {
        StoredArtifact {
            storage_type: storage_type.into(),
            content_type: content_type.into(),
            expires: expires.into(),
            raw: None,
            content_encoding: None,
            url: None,
            link_target: None,
            reason: None,
            message: None,
            object_name: None,
            upload_id: None,
            present: false,
        }
    }

    /// The content, decoded from `Content-Encoding: gzip` when needed.
    pub fn bytes(&self) -> Option<Vec<u8>> {
        let raw = self.raw.as_ref()?;
        if self.content_encoding.as_deref() == Some("gzip") {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&raw[..])
                .read_to_end(&mut out)
                .ok()?;
            Some(out)
        } else {
            Some(raw.clone())
        }
    }

    /// The content as UTF-8 text (lossy).
    pub fn text(&self) -> Option<String> {
        self.bytes()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    }
}

/// What an injected fault does to a matching call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// Answer `500 InternalServerError` without touching the state.
    ServerError,
    /// Close the connection without answering (the client sees a connection error).
    DropConnection,
    /// Wait this long before handling the call normally (e.g. past a client timeout).
    Delay(Duration),
}

/// A fault applied to the next N matching calls and/or during a time window.
#[derive(Clone, Debug)]
pub struct Fault {
    /// What happens.
    pub kind: FaultKind,
    /// How many more calls it applies to (`None`: unlimited within the window).
    pub remaining: Option<u32>,
    /// Until when it applies (`None`: until used up).
    pub until: Option<Instant>,
    /// Only calls whose decoded path contains this.
    pub path_contains: Option<String>,
    /// Only calls with this method.
    pub method: Option<String>,
}

impl Fault {
    /// The next `n` calls get `kind`.
    pub fn next(n: u32, kind: FaultKind) -> Fault {
        Fault {
            kind,
            remaining: Some(n),
            until: None,
            path_contains: None,
            method: None,
        }
    }

    /// Every call during the next `d` gets `kind`.
    pub fn window(d: Duration, kind: FaultKind) -> Fault {
        Fault {
            kind,
            remaining: None,
            until: Some(Instant::now() + d),
            path_contains: None,
            method: None,
        }
    }

    /// Restrict to paths containing `s` (e.g. `/reclaim`, `/claim-work/`, `/__fake/put/`).
    pub fn path_contains(mut self, s: &str) -> Fault {
        self.path_contains = Some(s.to_string());
        self
    }

    /// Restrict to one HTTP method.
    pub fn method(mut self, m: &str) -> Fault {
        self.method = Some(m.to_ascii_uppercase());
        self
    }

    fn live(&self) -> bool {
        self.remaining != Some(0) && self.until.is_none_or(|u| Instant::now() < u)
    }
}

/// A run's state, as `status().runs[i]`, typed.
#[derive(Clone, Debug)]
pub struct RunInfo {
    /// runId
    pub run_id: u32,
    /// state
    pub state: RunState,
    /// reasonCreated
    pub reason_created: String,
    /// reasonResolved
    pub reason_resolved: Option<String>,
    /// workerGroup
    pub worker_group: Option<String>,
    /// workerId
    pub worker_id: Option<String>,
    /// takenUntil
    pub taken_until: Option<DateTime<Utc>>,
}

impl From<&state::Run> for RunInfo {
    fn from(r: &state::Run) -> Self {
        RunInfo {
            run_id: r.run_id,
            state: r.state,
            reason_created: r.reason_created.to_string(),
            reason_resolved: r.reason_resolved.clone(),
            worker_group: r.worker_group.clone(),
            worker_id: r.worker_id.clone(),
            taken_until: r.taken_until,
        }
    }
}

/// State shared by the wiremock responder, the front proxy and the test API.
pub(crate) struct Shared {
    state: Mutex<State>,
    changed: watch::Sender<u64>,
    claim_work_wait: Duration,
}

use state::State;

impl Shared {
    /// Lock the state (a poisoned lock is still usable: the data stays consistent per call).
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Run `f` on the state after resolving expired claims/deadlines; wake waiters on change.
    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut st = self.lock();
        st.tick(Utc::now());
        let before = st.generation;
        let r = f(&mut st);
        let after = st.generation;
        drop(st);
        if after != before {
            self.changed.send_replace(after);
        }
        r
    }

    fn tick(&self) {
        self.with(|_| ());
    }
}

/// A running fake Queue + Object service + Index. Dropping it stops the servers.
pub struct FakeQueue {
    shared: Arc<Shared>,
    root_url: String,
    worker: FakeCredentials,
    admin: FakeCredentials,
    opts: FakeQueueOptions,
    _mock: wiremock::MockServer,
    stop: tokio_util::sync::CancellationToken,
    ticker: tokio::task::JoinHandle<()>,
}

impl Drop for FakeQueue {
    fn drop(&mut self) {
        self.stop.cancel();
        self.ticker.abort();
    }
}

fn random_token() -> String {
    let b: [u8; 32] = rand::random();
    URL_SAFE_NO_PAD.encode(b)
}

/// clientId of the fake queue's own credentials, the issuer of every temporary credential.
pub const QUEUE_CLIENT_ID: &str = "static/taskcluster/queue";
/// clientId of the all-powerful test client ([`FakeQueue::admin_credentials`]).
pub const ADMIN_CLIENT_ID: &str = "dw-test/admin";

/// Scopes every caller has, as the `anonymous` role of a typical deployment grants them.
pub const ANONYMOUS_SCOPES: &[&str] = &[
    "queue:get-task:*",
    "queue:status:*",
    "queue:list-artifacts:*",
    "queue:get-artifact:public/*",
    "index:find-task:*",
];

impl FakeQueue {
    /// Start the fake on 127.0.0.1 (random ports) on the current tokio runtime.
    pub async fn start(opts: FakeQueueOptions) -> Result<FakeQueue, FakeQueueError> {
        let mock = wiremock::MockServer::builder()
            .disable_request_recording()
            .start()
            .await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let root_url = format!("http://{addr}");

        let task_queue_id = format!("{}/{}", opts.provisioner_id, opts.worker_type);
        let worker = FakeCredentials {
            client_id: opts.worker_client_id.clone(),
            access_token: random_token(),
            certificate: None,
        };
        let admin = FakeCredentials {
            client_id: ADMIN_CLIENT_ID.into(),
            access_token: random_token(),
            certificate: None,
        };
        let mut clients = HashMap::new();
        clients.insert(
            worker.client_id.clone(),
            auth::Client {
                access_token: worker.access_token.clone(),
                scopes: vec![
                    format!("queue:claim-work:{task_queue_id}"),
                    format!("queue:worker-id:*"),
                ],
            },
        );
        clients.insert(
            admin.client_id.clone(),
            auth::Client {
                access_token: admin.access_token.clone(),
                scopes: vec!["*".into()],
            },
        );
        clients.insert(
            QUEUE_CLIENT_ID.into(),
            auth::Client {
                access_token: random_token(),
                scopes: vec!["*".into()],
            },
        );
        let cfg = state::Config {
            provisioner_id: opts.provisioner_id.clone(),
            worker_type: opts.worker_type.clone(),
            claim_timeout: opts.claim_timeout,
            queue_client_id: QUEUE_CLIENT_ID.into(),
            anonymous_scopes: ANONYMOUS_SCOPES.iter().map(|s| s.to_string()).collect(),
        };
        let (changed, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new(cfg, root_url.clone(), clients)),
            changed,
            claim_work_wait: opts.claim_work_wait,
        });
        wiremock::Mock::given(wiremock::matchers::any())
            .respond_with(routes::Responder {
                shared: shared.clone(),
            })
            .mount(&mock)
            .await;

        let stop = tokio_util::sync::CancellationToken::new();
        tokio::spawn(front::serve(
            listener,
            shared.clone(),
            mock.uri(),
            stop.clone(),
        ));
        let ticker = {
            let shared = shared.clone();
            let every = opts.tick;
            tokio::spawn(async move {
                let mut iv = tokio::time::interval(every);
                loop {
                    iv.tick().await;
                    shared.tick();
                }
            })
        };
        Ok(FakeQueue {
            shared,
            root_url,
            worker,
            admin,
            opts,
            _mock: mock,
            stop,
            ticker,
        })
    }

    /// The Taskcluster root URL (`http://127.0.0.1:PORT`), without a trailing slash.
    pub fn root_url(&self) -> &str {
        &self.root_url
    }

    /// `provisionerId/workerType` of the fake's pool.
    pub fn task_queue_id(&self) -> String {
        format!("{}/{}", self.opts.provisioner_id, self.opts.worker_type)
    }

    /// The options it was started with.
    pub fn options(&self) -> &FakeQueueOptions {
        &self.opts
    }

    /// The worker's permanent credentials (scopes: `queue:claim-work:<pool>`, `queue:worker-id:*`).
    pub fn worker_credentials(&self) -> FakeCredentials {
        self.worker.clone()
    }

    /// Credentials with scope `*`, for tests calling the HTTP API directly (cancelTask, ...).
    pub fn admin_credentials(&self) -> FakeCredentials {
        self.admin.clone()
    }

    /// Add a permanent client with the given scopes; returns its credentials.
    pub fn add_client(&self, client_id: &str, scopes: &[&str]) -> FakeCredentials {
        let creds = FakeCredentials {
            client_id: client_id.into(),
            access_token: random_token(),
            certificate: None,
        };
        self.shared.with(|st| {
            st.clients.insert(
                client_id.into(),
                auth::Client {
                    access_token: creds.access_token.clone(),
                    scopes: scopes.iter().map(|s| s.to_string()).collect(),
                },
            )
        });
        creds
    }

    /// Create a task (pending run 0). `def` is merged over defaults: the fake's pool,
    /// deadline in 1 h, expires deadline + 1 year, retries 5, no scopes, empty payload.
    /// Returns the task status.
    pub fn create_task(&self, task_id: &str, def: Value) -> Result<Value, FakeQueueError> {
        Ok(self
            .shared
            .with(|st| st.create_task(task_id, def, Utc::now()))?)
    }

    /// Create a task with a new taskId and the given payload; returns the taskId.
    pub fn create_task_with_payload(&self, payload: Value) -> Result<String, FakeQueueError> {
        let id = new_task_id();
        self.create_task(&id, serde_json::json!({ "payload": payload }))?;
        Ok(id)
    }

    /// cancelTask, as the HTTP API does it. Returns the status.
    pub fn cancel_task(&self, task_id: &str) -> Result<Value, FakeQueueError> {
        Ok(self.shared.with(|st| st.cancel(task_id, Utc::now()))?)
    }

    /// The task-status structure, if the task exists.
    pub fn status(&self, task_id: &str) -> Option<Value> {
        self.shared
            .with(|st| st.tasks.get(task_id).map(|t| t.status()))
    }

    /// The task definition as stored (defaults filled in).
    pub fn task_definition(&self, task_id: &str) -> Option<Value> {
        self.shared
            .with(|st| st.tasks.get(task_id).map(|t| t.def.clone()))
    }

    /// One run's state.
    pub fn run(&self, task_id: &str, run_id: u32) -> Option<RunInfo> {
        self.shared.with(|st| {
            st.tasks
                .get(task_id)
                .and_then(|t| t.runs.get(run_id as usize))
                .map(RunInfo::from)
        })
    }

    /// All runs of a task.
    pub fn runs(&self, task_id: &str) -> Vec<RunInfo> {
        self.shared.with(|st| {
            st.tasks
                .get(task_id)
                .map(|t| t.runs.iter().map(RunInfo::from).collect())
                .unwrap_or_default()
        })
    }

    /// Wait until `cond` holds on the state, or `timeout` passes.
    async fn wait_for<R>(
        &self,
        timeout: Duration,
        what: String,
        mut cond: impl FnMut(&State) -> Option<R>,
    ) -> Result<R, FakeQueueError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut rx = self.shared.changed.subscribe();
        loop {
            rx.borrow_and_update();
            if let Some(r) = self.shared.with(|st| cond(st)) {
                return Ok(r);
            }
            // The ticker resolves expiries; also re-check at least every 100 ms.
            let step = (deadline - tokio::time::Instant::now()).min(Duration::from_millis(100));
            if tokio::time::Instant::now() >= deadline {
                return Err(FakeQueueError::Timeout(timeout, what));
            }
            let _ = tokio::time::timeout(step, rx.changed()).await;
        }
    }

    /// Wait until run `run_id` of the task is resolved (completed, failed or exception).
    pub async fn wait_resolved(
        &self,
        task_id: &str,
        run_id: u32,
        timeout: Duration,
    ) -> Result<RunInfo, FakeQueueError> {
        self.wait_for(
            timeout,
            format!("run {run_id} of task {task_id} to be resolved"),
            |st| {
                let run = st.tasks.get(task_id)?.runs.get(run_id as usize)?;
                run.state.is_resolved().then(|| RunInfo::from(run))
            },
        )
        .await
    }

    /// Wait until the task's latest run is resolved and no retry run is pending; returns it.
    pub async fn wait_task_resolved(
        &self,
        task_id: &str,
        timeout: Duration,
    ) -> Result<RunInfo, FakeQueueError> {
        self.wait_for(timeout, format!("task {task_id} to be resolved"), |st| {
            let run = st.tasks.get(task_id)?.runs.last()?;
            run.state.is_resolved().then(|| RunInfo::from(run))
        })
        .await
    }

    /// Wait until run `run_id` of the task is running (claimed).
    pub async fn wait_running(
        &self,
        task_id: &str,
        run_id: u32,
        timeout: Duration,
    ) -> Result<RunInfo, FakeQueueError> {
        self.wait_for(
            timeout,
            format!("run {run_id} of task {task_id} to be running"),
            |st| {
                let run = st.tasks.get(task_id)?.runs.get(run_id as usize)?;
                (run.state == RunState::Running).then(|| RunInfo::from(run))
            },
        )
        .await
    }

    /// An artifact of a run, if created. For `object` artifacts, `raw` holds the object's
    /// data once uploaded.
    pub fn artifact(&self, task_id: &str, run_id: u32, name: &str) -> Option<StoredArtifact> {
        self.shared.with(|st| {
            let mut a = st
                .tasks
                .get(task_id)?
                .artifacts
                .get(&(run_id, name.to_string()))
                .cloned()?;
            if a.raw.is_none() {
                if let Some(o) = a.object_name.as_ref().and_then(|n| st.objects.get(n)) {
                    a.raw = o.data.clone();
                }
            }
            Some(a)
        })
    }

    /// Names of a run's artifacts.
    pub fn artifact_names(&self, task_id: &str, run_id: u32) -> Vec<String> {
        self.shared.with(|st| {
            st.tasks
                .get(task_id)
                .map(|t| {
                    t.artifacts
                        .keys()
                        .filter(|(r, _)| *r == run_id)
                        .map(|(_, n)| n.clone())
                        .collect()
                })
                .unwrap_or_default()
        })
    }

    /// Store an artifact directly (e.g. a docker image for a `task-image` payload).
    pub fn put_artifact(
        &self,
        task_id: &str,
        run_id: u32,
        name: &str,
        content_type: &str,
        bytes: Vec<u8>,
    ) -> Result<(), FakeQueueError> {
        self.shared.with(|st| {
            let task = st.tasks.get_mut(task_id).ok_or_else(|| {
                ApiError::new(404, "ResourceNotFound", format!("no task {task_id}"))
            })?;
            let mut a = StoredArtifact::new("s3", content_type, &state::js_time(task.expires));
            a.raw = Some(bytes);
            a.present = true;
            task.artifacts.insert((run_id, name.to_string()), a);
            st.touch();
            Ok(())
        })
    }

    /// Index `task_id` under `namespace` (for `indexed-image` payloads).
    pub fn insert_index(&self, namespace: &str, task_id: &str) {
        self.shared.with(|st| {
            st.index.insert(
                namespace.to_string(),
                state::IndexEntry {
                    task_id: task_id.to_string(),
                    rank: 0,
                    expires: Utc::now() + chrono::Duration::days(365),
                    data: serde_json::json!({}),
                },
            );
        });
    }

    /// Every HTTP call received, in order.
    pub fn calls(&self) -> Vec<RecordedCall> {
        self.shared.lock().calls.clone()
    }

    /// Every protocol violation seen (stale credentials, bad signatures, missing scopes).
    pub fn violations(&self) -> Vec<Violation> {
        self.shared.lock().violations.clone()
    }

    /// Every resolution call, in order.
    pub fn resolutions(&self) -> Vec<ResolutionCall> {
        self.shared.lock().resolutions.clone()
    }

    /// Resolution calls for one run.
    pub fn resolutions_for(&self, task_id: &str, run_id: u32) -> Vec<ResolutionCall> {
        self.resolutions()
            .into_iter()
            .filter(|r| r.task_id == task_id && r.run_id == run_id)
            .collect()
    }

    /// Add a fault (see [`Fault::next`], [`Fault::window`]).
    pub fn inject(&self, fault: Fault) {
        self.shared.lock().faults.push(fault);
    }

    /// Remove all faults.
    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }
}
