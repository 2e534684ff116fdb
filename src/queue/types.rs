//! Typed requests and responses of the Queue and Object services.
//!
//! Responses are lenient: unknown fields are ignored and fields the worker does not rely on are
//! optional, because services gain fields over time. Requests carry exactly the schema's fields.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::credentials::Credentials;

/// Timestamps as JavaScript's `toISOString` writes them (`2026-01-31T12:00:00.000Z`).
pub(crate) mod iso {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::Serializer;

    pub(crate) fn format(t: &DateTime<Utc>) -> String {
        t.to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    pub(crate) fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(t))
    }
}

// ---------------------------------------------------------------------------------------------
// claimWork / reclaimTask / status

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ClaimWorkRequest<'a> {
    pub worker_group: &'a str,
    pub worker_id: &'a str,
    pub tasks: u32,
}

#[derive(Deserialize)]
pub(crate) struct ClaimWorkResponse {
    pub tasks: Vec<Claim>,
}

/// One claimed run from `claimWork`: the task, its status, and the run's first credentials.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Claim {
    /// The task's status (holds the `taskId`).
    pub status: TaskStatus,
    /// The claimed run.
    pub run_id: u32,
    /// The worker group the run was claimed for.
    #[serde(default)]
    pub worker_group: String,
    /// The worker id the run was claimed for.
    #[serde(default)]
    pub worker_id: String,
    /// Reclaim before this.
    pub taken_until: DateTime<Utc>,
    /// Temporary credentials for this run (replaced by every reclaim).
    pub credentials: Credentials,
    /// The task definition.
    pub task: TaskDefinition,
}

impl Claim {
    /// The claimed task's id.
    pub fn task_id(&self) -> &str {
        &self.status.task_id
    }
}

/// A task definition as the queue returns it; `payload` is left as JSON for the payload module.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskDefinition {
    /// `provisionerId`.
    #[serde(default)]
    pub provisioner_id: Option<String>,
    /// `workerType`.
    #[serde(default)]
    pub worker_type: Option<String>,
    /// `taskQueueId`.
    #[serde(default)]
    pub task_queue_id: Option<String>,
    /// `schedulerId`.
    #[serde(default)]
    pub scheduler_id: Option<String>,
    /// `taskGroupId`.
    #[serde(default)]
    pub task_group_id: Option<String>,
    /// `projectId`.
    #[serde(default)]
    pub project_id: Option<String>,
    /// When the task was created.
    pub created: DateTime<Utc>,
    /// When the task must be resolved by.
    pub deadline: DateTime<Utc>,
    /// When the task and its artifacts expire (the default artifact expiry).
    #[serde(default)]
    pub expires: Option<DateTime<Utc>>,
    /// Scopes the task was given (checked by the worker for caches, capabilities, ...).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// The docker-worker payload, validated elsewhere.
    #[serde(default)]
    pub payload: Value,
    /// Human-readable metadata.
    #[serde(default)]
    pub metadata: TaskMetadata,
    /// `routes`.
    #[serde(default)]
    pub routes: Vec<String>,
    /// `retries`.
    #[serde(default)]
    pub retries: Option<u32>,
    /// `priority`.
    #[serde(default)]
    pub priority: Option<String>,
    /// `tags`.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// `extra`.
    #[serde(default)]
    pub extra: Value,
}

/// `task.metadata`; every field optional here.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TaskMetadata {
    /// Task name.
    pub name: String,
    /// Task description.
    pub description: String,
    /// Owner's email.
    pub owner: String,
    /// Where the task was defined.
    pub source: String,
}

/// Answer to `reclaimTask` (the new credentials go into the run's credentials cell).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ReclaimResponse {
    pub status: TaskStatus,
    pub taken_until: DateTime<Utc>,
    pub credentials: Credentials,
}

/// What a successful reclaim tells the worker.
#[derive(Debug, Clone)]
pub struct Reclaim {
    /// Reclaim again before this.
    pub taken_until: DateTime<Utc>,
    /// The task's status after the reclaim.
    pub status: TaskStatus,
}

/// `{status: ...}` answers (status, reportCompleted/Failed/Exception).
#[derive(Deserialize)]
pub(crate) struct TaskStatusResponse {
    pub status: TaskStatus,
}

/// A task's status.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskStatus {
    /// The task id.
    pub task_id: String,
    /// The task's state (the state of its last run).
    pub state: TaskState,
    /// Runs, by `runId`.
    #[serde(default)]
    pub runs: Vec<RunInfo>,
    /// Retries left.
    #[serde(default)]
    pub retries_left: Option<u32>,
    /// `deadline`.
    #[serde(default)]
    pub deadline: Option<DateTime<Utc>>,
    /// `expires`.
    #[serde(default)]
    pub expires: Option<DateTime<Utc>>,
    /// `taskQueueId`.
    #[serde(default)]
    pub task_queue_id: Option<String>,
    /// `taskGroupId`.
    #[serde(default)]
    pub task_group_id: Option<String>,
    /// `projectId`.
    #[serde(default)]
    pub project_id: Option<String>,
}

impl TaskStatus {
    /// The given run, if the status lists it.
    pub fn run(&self, run_id: u32) -> Option<&RunInfo> {
        self.runs.iter().find(|r| r.run_id == run_id)
    }

    /// True when the given run is no longer `running` (canceled, resolved elsewhere, expired):
    /// the worker should stop it without uploading or reporting.
    pub fn run_is_resolved(&self, run_id: u32) -> bool {
        match self.run(run_id) {
            Some(run) => run.state.is_resolved(),
            None => false,
        }
    }
}

/// One run in a task status.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunInfo {
    /// The run id.
    pub run_id: u32,
    /// The run's state.
    pub state: RunState,
    /// Why the run was created (`scheduled`, `retry`, ...).
    #[serde(default)]
    pub reason_created: Option<String>,
    /// Why it was resolved (`completed`, `canceled`, `claim-expired`, ...).
    #[serde(default)]
    pub reason_resolved: Option<String>,
    /// The worker group holding the run.
    #[serde(default)]
    pub worker_group: Option<String>,
    /// The worker holding the run.
    #[serde(default)]
    pub worker_id: Option<String>,
    /// Claim expiry.
    #[serde(default)]
    pub taken_until: Option<DateTime<Utc>>,
    /// Resolution time.
    #[serde(default)]
    pub resolved: Option<DateTime<Utc>>,
}

/// State of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    /// Not yet scheduled.
    Unscheduled,
    /// Waiting for a worker.
    Pending,
    /// Claimed.
    Running,
    /// Resolved completed.
    Completed,
    /// Resolved failed.
    Failed,
    /// Resolved exception.
    Exception,
    /// A state this worker does not know.
    #[serde(other)]
    Unknown,
}

/// State of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    /// Waiting for a worker.
    Pending,
    /// Claimed.
    Running,
    /// Resolved completed.
    Completed,
    /// Resolved failed.
    Failed,
    /// Resolved exception (including canceled and claim-expired).
    Exception,
    /// A state this worker does not know.
    #[serde(other)]
    Unknown,
}

impl RunState {
    /// True for completed, failed and exception.
    pub fn is_resolved(self) -> bool {
        matches!(
            self,
            RunState::Completed | RunState::Failed | RunState::Exception
        )
    }
}

/// `reason` of `reportException`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExceptionReason {
    /// The worker is shutting down (the queue retries the task).
    WorkerShutdown,
    /// The payload is invalid.
    MalformedPayload,
    /// A resource the task needs is unavailable.
    ResourceUnavailable,
    /// A worker-side fault.
    InternalError,
    /// The task asked to be retried (`onExitStatus.retry`).
    IntermittentTask,
}

impl ExceptionReason {
    /// The reason as the queue spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            ExceptionReason::WorkerShutdown => "worker-shutdown",
            ExceptionReason::MalformedPayload => "malformed-payload",
            ExceptionReason::ResourceUnavailable => "resource-unavailable",
            ExceptionReason::InternalError => "internal-error",
            ExceptionReason::IntermittentTask => "intermittent-task",
        }
    }
}

#[derive(Serialize)]
pub(crate) struct ExceptionRequest {
    pub reason: ExceptionReason,
}

// ---------------------------------------------------------------------------------------------
// artifacts

/// `reason` of an `error` artifact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorArtifactReason {
    /// The path does not exist in the container.
    FileMissingOnWorker,
    /// The path is not of the declared type (file vs directory).
    InvalidResourceOnWorker,
    /// The file is too large.
    TooLargeFileOnWorker,
    /// The file could not be read.
    FileNotReadableOnWorker,
}

impl ErrorArtifactReason {
    /// The reason as the queue spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorArtifactReason::FileMissingOnWorker => "file-missing-on-worker",
            ErrorArtifactReason::InvalidResourceOnWorker => "invalid-resource-on-worker",
            ErrorArtifactReason::TooLargeFileOnWorker => "too-large-file-on-worker",
            ErrorArtifactReason::FileNotReadableOnWorker => "file-not-readable-on-worker",
        }
    }
}

/// Body of `createArtifact`, one variant per storage type.
#[derive(Debug, Serialize)]
#[serde(tag = "storageType", rename_all_fields = "camelCase")]
pub(crate) enum CreateArtifactRequest<'a> {
    #[serde(rename = "s3")]
    S3 {
        #[serde(with = "iso")]
        expires: DateTime<Utc>,
        content_type: &'a str,
        content_length: u64,
    },
    #[serde(rename = "object")]
    Object {
        #[serde(with = "iso")]
        expires: DateTime<Utc>,
        content_type: &'a str,
        content_length: u64,
    },
    #[serde(rename = "reference")]
    Reference {
        #[serde(with = "iso")]
        expires: DateTime<Utc>,
        url: &'a str,
        content_type: &'a str,
    },
    #[serde(rename = "link")]
    Link {
        #[serde(with = "iso")]
        expires: DateTime<Utc>,
        artifact: &'a str,
    },
    #[serde(rename = "error")]
    Error {
        #[serde(with = "iso")]
        expires: DateTime<Utc>,
        reason: ErrorArtifactReason,
        message: &'a str,
    },
}

/// Answer to `createArtifact`.
#[derive(Deserialize)]
#[serde(tag = "storageType")]
pub(crate) enum CreateArtifactResponse {
    #[serde(rename = "s3", rename_all = "camelCase")]
    S3 { put_url: String },
    #[serde(rename = "object", rename_all = "camelCase")]
    Object {
        name: String,
        project_id: String,
        upload_id: String,
        credentials: Credentials,
        expires: DateTime<Utc>,
    },
    #[serde(other)]
    Other,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FinishArtifactRequest<'a> {
    pub upload_id: &'a str,
}

// ---------------------------------------------------------------------------------------------
// object service

/// Content hashes sent to the object service (lowercase hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Hashes {
    pub sha256: String,
    pub sha512: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CreateUploadRequest<'a> {
    pub project_id: &'a str,
    pub upload_id: &'a str,
    #[serde(with = "iso")]
    pub expires: DateTime<Utc>,
    pub proposed_upload_methods: ProposedUploadMethods<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ProposedUploadMethods<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_inline: Option<DataInlineRequest<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub put_url: Option<PutUrlRequest<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DataInlineRequest<'a> {
    pub content_type: &'a str,
    pub object_data: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PutUrlRequest<'a> {
    pub content_type: &'a str,
    pub content_length: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CreateUploadResponse {
    #[serde(default)]
    pub upload_method: UploadMethod,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UploadMethod {
    #[serde(default)]
    pub data_inline: Option<bool>,
    #[serde(default)]
    pub put_url: Option<PutUrl>,
}

#[derive(Deserialize)]
pub(crate) struct PutUrl {
    pub url: String,
    pub expires: DateTime<Utc>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FinishUploadRequest<'a> {
    pub project_id: &'a str,
    pub upload_id: &'a str,
    pub hashes: &'a Hashes,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    #[test]
    fn claim_is_lenient_and_keeps_payload() {
        let v = json!({"tasks": [{
            "status": {"taskId": "T", "state": "running", "runs": [
                {"runId": 0, "state": "running", "reasonCreated": "scheduled", "scheduled": "2026-01-01T00:00:00.000Z", "brandNew": true}
            ], "somethingNew": 1},
            "runId": 0, "workerGroup": "g", "workerId": "w",
            "takenUntil": "2026-01-01T00:20:00.000Z",
            "credentials": {"clientId": "c", "accessToken": "a", "certificate": "{}"},
            "task": {"created": "2026-01-01T00:00:00.000Z", "deadline": "2026-01-02T00:00:00.000Z",
                     "expires": "2027-01-01T00:00:00.000Z", "scopes": ["a:b"],
                     "payload": {"image": "x", "maxRunTime": 5}, "metadata": {"name": "n"},
                     "unknown": {"x": 1}},
            "extraField": "ok"
        }]});
        let r: ClaimWorkResponse = serde_json::from_value(v).unwrap();
        let c = &r.tasks[0];
        assert_eq!(c.task_id(), "T");
        assert_eq!(c.task.payload["maxRunTime"], 5);
        assert_eq!(c.task.metadata.name, "n");
        assert!(!c.status.run_is_resolved(0));
    }

    #[test]
    fn unknown_states_do_not_fail() {
        let s: TaskStatus = serde_json::from_value(json!({
            "taskId": "T", "state": "weird", "runs": [{"runId": 0, "state": "exception", "reasonResolved": "canceled"}]
        }))
        .unwrap();
        assert_eq!(s.state, TaskState::Unknown);
        assert!(s.run_is_resolved(0));
    }

    #[test]
    fn artifact_requests_follow_the_schema() {
        let t = Utc.with_ymd_and_hms(2026, 1, 31, 12, 0, 0).unwrap();
        let v = serde_json::to_value(CreateArtifactRequest::Link {
            expires: t,
            artifact: "public/logs/live_backing.log",
        })
        .unwrap();
        assert_eq!(
            v,
            json!({"storageType": "link", "expires": "2026-01-31T12:00:00.000Z", "artifact": "public/logs/live_backing.log"})
        );
        let v = serde_json::to_value(CreateArtifactRequest::Error {
            expires: t,
            reason: ErrorArtifactReason::FileMissingOnWorker,
            message: "m",
        })
        .unwrap();
        assert_eq!(v["reason"], "file-missing-on-worker");
        let v = serde_json::to_value(CreateArtifactRequest::Object {
            expires: t,
            content_type: "text/plain",
            content_length: 3,
        })
        .unwrap();
        assert_eq!(
            v,
            json!({"storageType": "object", "expires": "2026-01-31T12:00:00.000Z", "contentType": "text/plain", "contentLength": 3})
        );
        assert_eq!(
            serde_json::to_value(ExceptionReason::IntermittentTask).unwrap(),
            "intermittent-task"
        );
    }

    #[test]
    fn object_artifact_response_parses() {
        let r: CreateArtifactResponse = serde_json::from_value(json!({
            "storageType": "object", "name": "t/0/public/x", "projectId": "p",
            "uploadId": "u", "expires": "2026-01-31T12:00:00.000Z",
            "credentials": {"clientId": "c", "accessToken": "a", "certificate": "{}"}
        }))
        .unwrap();
        assert!(matches!(r, CreateArtifactResponse::Object { .. }));
        let r: CreateArtifactResponse =
            serde_json::from_value(json!({"storageType": "reference"})).unwrap();
        assert!(matches!(r, CreateArtifactResponse::Other));
    }
}
