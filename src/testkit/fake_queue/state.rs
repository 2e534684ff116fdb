//! The queue's data and its run state machine: tasks, runs, claims, resolutions, artifacts,
//! objects and the index. Pure bookkeeping: no HTTP here; `routes` maps requests onto it.

use super::auth::{self, Client, TempCreds};
use super::{ApiError, Fault, RecordedCall, ResolutionCall, StoredArtifact, Violation};
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// Format a time as JavaScript's `Date.toJSON()` does (millisecond precision, `Z`).
pub fn js_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// Parse an RFC 3339 time.
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn chrono(d: Duration) -> ChronoDuration {
    ChronoDuration::from_std(d).unwrap_or(ChronoDuration::MAX)
}

/// State of one run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    Pending,
    Running,
    Completed,
    Failed,
    Exception,
}

impl RunState {
    /// The queue's name for the state.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Pending => "pending",
            RunState::Running => "running",
            RunState::Completed => "completed",
            RunState::Failed => "failed",
            RunState::Exception => "exception",
        }
    }

    /// True for completed, failed and exception.
    pub fn is_resolved(self) -> bool {
        matches!(
            self,
            RunState::Completed | RunState::Failed | RunState::Exception
        )
    }
}

/// One run of a task.
#[derive(Clone, Debug)]
pub struct Run {
    pub run_id: u32,
    pub state: RunState,
    pub reason_created: &'static str,
    pub reason_resolved: Option<String>,
    pub scheduled: DateTime<Utc>,
    pub started: Option<DateTime<Utc>>,
    pub resolved: Option<DateTime<Utc>>,
    pub taken_until: Option<DateTime<Utc>>,
    pub worker_group: Option<String>,
    pub worker_id: Option<String>,
    /// clientIds of the task credentials issued for this run (claim, then each reclaim).
    pub issued_client_ids: Vec<String>,
    /// Index in `issued_client_ids` of the newest credentials the worker has used. Older ones
    /// are stale from then on. (A reclaim whose answer was lost leaves the worker on the older
    /// credentials, which stay valid, as on the real queue, until it uses the newer ones.)
    pub newest_used: usize,
}

impl Run {
    fn new(run_id: u32, reason_created: &'static str, now: DateTime<Utc>) -> Run {
        Run {
            run_id,
            state: RunState::Pending,
            reason_created,
            reason_resolved: None,
            scheduled: now,
            started: None,
            resolved: None,
            taken_until: None,
            worker_group: None,
            worker_id: None,
            issued_client_ids: Vec::new(),
            newest_used: 0,
        }
    }

    fn to_json(&self) -> Value {
        let mut v = json!({
            "runId": self.run_id,
            "state": self.state.as_str(),
            "reasonCreated": self.reason_created,
            "scheduled": js_time(self.scheduled),
        });
        let o = v.as_object_mut().unwrap();
        if let Some(r) = &self.reason_resolved {
            o.insert("reasonResolved".into(), json!(r));
        }
        if let Some(t) = self.started {
            o.insert("started".into(), json!(js_time(t)));
        }
        if let Some(t) = self.resolved {
            o.insert("resolved".into(), json!(js_time(t)));
        }
        if let Some(t) = self.taken_until {
            o.insert("takenUntil".into(), json!(js_time(t)));
        }
        if let Some(g) = &self.worker_group {
            o.insert("workerGroup".into(), json!(g));
        }
        if let Some(w) = &self.worker_id {
            o.insert("workerId".into(), json!(w));
        }
        v
    }
}

/// One task: its definition (defaults filled in), runs and artifacts.
#[derive(Clone, Debug)]
pub struct Task {
    pub task_id: String,
    pub def: Value,
    pub runs: Vec<Run>,
    pub retries_left: u32,
    pub deadline: DateTime<Utc>,
    pub expires: DateTime<Utc>,
    pub task_queue_id: String,
    pub project_id: String,
    pub scopes: Vec<String>,
    pub priority: usize,
    pub artifacts: BTreeMap<(u32, String), StoredArtifact>,
}

impl Task {
    /// The task-status structure (`task-status.json`).
    pub fn status(&self) -> Value {
        let state = self
            .runs
            .last()
            .map(|r| r.state.as_str())
            .unwrap_or("unscheduled");
        json!({
            "taskId": self.task_id,
            "provisionerId": self.def["provisionerId"],
            "workerType": self.def["workerType"],
            "taskQueueId": self.task_queue_id,
            "schedulerId": self.def["schedulerId"],
            "projectId": self.project_id,
            "taskGroupId": self.def["taskGroupId"],
            "deadline": js_time(self.deadline),
            "expires": js_time(self.expires),
            "retriesLeft": self.retries_left,
            "state": state,
            "runs": self.runs.iter().map(Run::to_json).collect::<Vec<_>>(),
        })
    }

    fn last_is(&self, run_id: u32, state: RunState) -> bool {
        self.runs.len() as u32 == run_id + 1 && self.runs[run_id as usize].state == state
    }
}

/// An object in the object service.
#[derive(Clone, Debug)]
pub struct Object {
    pub project_id: String,
    pub upload_id: String,
    pub expires: String,
    pub content_type: String,
    pub data: Option<Vec<u8>>,
    pub hashes: BTreeMap<String, String>,
    pub finished: bool,
}

/// What a fake `putUrl` writes into.
#[derive(Clone, Debug)]
pub enum PutTarget {
    /// An `s3` artifact.
    S3 {
        task_id: String,
        run_id: u32,
        name: String,
    },
    /// An object-service object.
    Object { name: String },
}

/// What a minted temporary credential was issued for.
#[derive(Clone, Debug)]
pub enum CredKind {
    /// Task credentials from claimWork / reclaimTask.
    Run { task_id: String, run_id: u32 },
    /// Object-service credentials from createArtifact.
    Object,
}

/// An index entry.
#[derive(Clone, Debug)]
pub struct IndexEntry {
    pub task_id: String,
    pub rank: i64,
    pub expires: DateTime<Utc>,
    pub data: Value,
}

/// Settings the state machine needs.
#[derive(Clone, Debug)]
pub struct Config {
    pub provisioner_id: String,
    pub worker_type: String,
    pub claim_timeout: Duration,
    pub queue_client_id: String,
    pub anonymous_scopes: Vec<String>,
}

/// All of the fake's data, behind one mutex.
pub struct State {
    pub cfg: Config,
    pub root_url: String,
    pub clients: HashMap<String, Client>,
    pub tasks: BTreeMap<String, Task>,
    pub creds: HashMap<String, CredKind>,
    pub objects: HashMap<String, Object>,
    pub put_targets: HashMap<String, PutTarget>,
    pub index: BTreeMap<String, IndexEntry>,
    pub calls: Vec<RecordedCall>,
    pub violations: Vec<Violation>,
    pub resolutions: Vec<ResolutionCall>,
    pub faults: Vec<Fault>,
    /// Bumped on every change; long-polls and waits watch it.
    pub generation: u64,
}

fn not_found(msg: String) -> ApiError {
    ApiError::new(404, "ResourceNotFound", msg)
}

fn conflict(msg: String) -> ApiError {
    ApiError::new(409, "RequestConflict", msg)
}

impl State {
    /// Fresh state for one fake deployment.
    pub fn new(cfg: Config, root_url: String, clients: HashMap<String, Client>) -> State {
        State {
            cfg,
            root_url,
            clients,
            tasks: BTreeMap::new(),
            creds: HashMap::new(),
            objects: HashMap::new(),
            put_targets: HashMap::new(),
            index: BTreeMap::new(),
            calls: Vec::new(),
            violations: Vec::new(),
            resolutions: Vec::new(),
            faults: Vec::new(),
            generation: 0,
        }
    }

    fn changed(&mut self) {
        self.generation += 1;
    }

    /// Fill in a task definition's defaults the way `createTask` does, and validate it.
    pub fn create_task(
        &mut self,
        task_id: &str,
        partial: Value,
        now: DateTime<Utc>,
    ) -> Result<Value, ApiError> {
        if !super::schema::is_slugid(task_id) {
            return Err(ApiError::input(format!(
                "taskId `{task_id}` does not match the slugid pattern"
            )));
        }
        let Value::Object(given) = partial else {
            return Err(ApiError::input("task definition must be an object".into()));
        };
        let deadline = now + ChronoDuration::hours(1);
        let mut def = json!({
            "provisionerId": self.cfg.provisioner_id,
            "workerType": self.cfg.worker_type,
            "schedulerId": "-",
            "projectId": "none",
            "taskGroupId": task_id,
            "dependencies": [],
            "requires": "all-completed",
            "routes": [],
            "priority": "lowest",
            "retries": 5,
            "created": js_time(now),
            "deadline": js_time(deadline),
            "scopes": [],
            "payload": {},
            "metadata": {
                "name": "fake-queue task",
                "description": "created by the fake queue",
                "owner": "dw-test@example.com",
                "source": "https://github.com/taskcluster/docker-worker",
            },
            "tags": {},
            "extra": {},
        });
        let obj = def.as_object_mut().unwrap();
        let mut queue_given = None;
        for (k, v) in given {
            if k == "taskQueueId" {
                queue_given = v.as_str().map(str::to_string);
            }
            obj.insert(k, v);
        }
        if let Some(q) = queue_given {
            match q.split_once('/') {
                Some((p, w)) => {
                    obj.insert("provisionerId".into(), json!(p));
                    obj.insert("workerType".into(), json!(w));
                }
                None => return Err(ApiError::input(format!("taskQueueId `{q}` lacks a `/`"))),
            }
            obj.remove("taskQueueId");
        }
        super::schema::task_definition(&def).map_err(ApiError::input)?;
        let deadline = parse_time(def["deadline"].as_str().unwrap()).unwrap();
        let expires = match def.get("expires").and_then(Value::as_str) {
            Some(e) => parse_time(e).unwrap(),
            None => deadline + ChronoDuration::days(365),
        };
        if deadline <= now {
            return Err(ApiError::new(
                400,
                "InputError",
                "Deadline cannot be in the past".into(),
            ));
        }
        if expires < deadline {
            return Err(ApiError::new(
                400,
                "InputError",
                "Expires cannot be before the deadline".into(),
            ));
        }
        let task_queue_id = format!(
            "{}/{}",
            def["provisionerId"].as_str().unwrap(),
            def["workerType"].as_str().unwrap()
        );
        let obj = def.as_object_mut().unwrap();
        obj.insert("taskQueueId".into(), json!(task_queue_id));
        obj.insert("expires".into(), json!(js_time(expires)));
        if let Some(existing) = self.tasks.get(task_id) {
            let mut a = existing.def.clone();
            let mut b = def.clone();
            a.as_object_mut().unwrap().remove("created");
            b.as_object_mut().unwrap().remove("created");
            if a == b {
                return Ok(existing.status());
            }
            return Err(conflict(format!(
                "taskId `{task_id}` already used by another task"
            )));
        }
        let priority = [
            "highest",
            "very-high",
            "high",
            "medium",
            "low",
            "very-low",
            "lowest",
        ]
        .iter()
        .position(|p| def["priority"] == *p)
        .unwrap_or(6);
        let task = Task {
            task_id: task_id.to_string(),
            retries_left: def["retries"].as_u64().unwrap_or(5) as u32,
            deadline,
            expires,
            task_queue_id,
            project_id: def["projectId"].as_str().unwrap_or("none").to_string(),
            scopes: def["scopes"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
            priority,
            runs: vec![Run::new(0, "scheduled", now)],
            def,
            artifacts: BTreeMap::new(),
        };
        let status = task.status();
        self.tasks.insert(task_id.to_string(), task);
        self.changed();
        Ok(status)
    }

    /// Resolve claim expiry and deadlines that have passed. Returns true if anything changed.
    pub fn tick(&mut self, now: DateTime<Utc>) -> bool {
        let mut changed = false;
        for task in self.tasks.values_mut() {
            let deadline_passed = task.deadline <= now;
            let Some(run) = task.runs.last_mut() else {
                continue;
            };
            if deadline_passed && !run.state.is_resolved() {
                run.state = RunState::Exception;
                run.reason_resolved = Some("deadline-exceeded".into());
                run.resolved = Some(now);
                run.taken_until = None;
                changed = true;
                continue;
            }
            if run.state == RunState::Running && run.taken_until.is_some_and(|t| t <= now) {
                run.state = RunState::Exception;
                run.reason_resolved = Some("claim-expired".into());
                run.resolved = Some(now);
                let next = run.run_id + 1;
                if task.retries_left > 0 && !deadline_passed {
                    task.retries_left -= 1;
                    task.runs.push(Run::new(next, "retry", now));
                }
                changed = true;
            }
        }
        if changed {
            self.changed();
        }
        changed
    }

    /// True when a run of `task_queue_id` is pending.
    pub fn has_pending(&self, task_queue_id: &str) -> bool {
        self.tasks.values().any(|t| {
            t.task_queue_id == task_queue_id
                && t.runs.last().is_some_and(|r| r.state == RunState::Pending)
        })
    }

    fn mint_run_creds(&mut self, task_id: &str, run_id: u32, now: DateTime<Utc>) -> TempCreds {
        let task = &self.tasks[task_id];
        let run = &task.runs[run_id as usize];
        let taken_until = run.taken_until.unwrap();
        let until = taken_until.timestamp_millis() as f64 / 1000.0;
        let client_id = format!(
            "task-client/{task_id}/{run_id}/on/{}/{}/until/{until}",
            run.worker_group.as_deref().unwrap_or(""),
            run.worker_id.as_deref().unwrap_or(""),
        );
        let mut scopes = vec![
            format!("queue:reclaim-task:{task_id}/{run_id}"),
            format!("queue:resolve-task:{task_id}/{run_id}"),
            format!("queue:create-artifact:{task_id}/{run_id}"),
        ];
        scopes.extend(task.scopes.iter().cloned());
        let issuer = self.cfg.queue_client_id.clone();
        let token = self.clients[&issuer].access_token.clone();
        let creds = auth::mint(
            &issuer,
            &token,
            &client_id,
            now.timestamp_millis(),
            taken_until.timestamp_millis(),
            scopes,
        );
        self.creds.insert(
            client_id.clone(),
            CredKind::Run {
                task_id: task_id.to_string(),
                run_id,
            },
        );
        self.tasks.get_mut(task_id).unwrap().runs[run_id as usize]
            .issued_client_ids
            .push(client_id);
        creds
    }

    /// Claim up to `n` pending runs of `task_queue_id` for a worker.
    pub fn claim_work(
        &mut self,
        task_queue_id: &str,
        worker_group: &str,
        worker_id: &str,
        n: usize,
        now: DateTime<Utc>,
    ) -> Vec<Value> {
        let mut pending: Vec<(usize, DateTime<Utc>, String)> = self
            .tasks
            .values()
            .filter(|t| t.task_queue_id == task_queue_id)
            .filter_map(|t| {
                let r = t.runs.last()?;
                (r.state == RunState::Pending).then(|| (t.priority, r.scheduled, t.task_id.clone()))
            })
            .collect();
        pending.sort();
        let taken_until = now + chrono(self.cfg.claim_timeout);
        let mut out = Vec::new();
        for (_, _, task_id) in pending.into_iter().take(n) {
            let task = self.tasks.get_mut(&task_id).unwrap();
            let run = task.runs.last_mut().unwrap();
            run.state = RunState::Running;
            run.started = Some(now);
            run.taken_until = Some(taken_until);
            run.worker_group = Some(worker_group.to_string());
            run.worker_id = Some(worker_id.to_string());
            let run_id = run.run_id;
            let creds = self.mint_run_creds(&task_id, run_id, now);
            let task = &self.tasks[&task_id];
            out.push(json!({
                "status": task.status(),
                "runId": run_id,
                "workerGroup": worker_group,
                "workerId": worker_id,
                "takenUntil": js_time(taken_until),
                "task": task.def,
                "credentials": {
                    "clientId": creds.client_id,
                    "accessToken": creds.access_token,
                    "certificate": creds.certificate,
                },
            }));
        }
        if !out.is_empty() {
            self.changed();
        }
        out
    }

    /// Look up a task and run, with the real 404 messages.
    pub fn task_run(&self, task_id: &str, run_id: u32) -> Result<(&Task, &Run), ApiError> {
        let task = self.task(task_id)?;
        let run = task
            .runs
            .get(run_id as usize)
            .ok_or_else(|| not_found(format!("Run {run_id} not found on task `{task_id}`.")))?;
        Ok((task, run))
    }

    /// Look up a task, with the real 404 message.
    pub fn task(&self, task_id: &str) -> Result<&Task, ApiError> {
        self.tasks.get(task_id).ok_or_else(|| {
            not_found(format!(
                "Task `{task_id}` not found. Are you sure it was created?"
            ))
        })
    }

    /// reclaimTask: extend takenUntil and mint new credentials.
    pub fn reclaim(
        &mut self,
        task_id: &str,
        run_id: u32,
        now: DateTime<Utc>,
    ) -> Result<Value, ApiError> {
        let (task, _) = self.task_run(task_id, run_id)?;
        if task.deadline <= now {
            return Err(conflict(format!(
                "Task `{task_id}` Can't be reclaimed past its deadline of {}.",
                js_time(task.deadline)
            )));
        }
        if !task.last_is(run_id, RunState::Running) {
            return Err(conflict(format!(
                "Run {run_id} on task `{task_id}` is resolved or not running."
            )));
        }
        let taken_until = now + chrono(self.cfg.claim_timeout);
        let run = &mut self.tasks.get_mut(task_id).unwrap().runs[run_id as usize];
        if run.taken_until.is_none_or(|t| t < taken_until) {
            run.taken_until = Some(taken_until);
        }
        let creds = self.mint_run_creds(task_id, run_id, now);
        let task = &self.tasks[task_id];
        let run = &task.runs[run_id as usize];
        let out = json!({
            "status": task.status(),
            "runId": run_id,
            "workerGroup": run.worker_group,
            "workerId": run.worker_id,
            "takenUntil": js_time(run.taken_until.unwrap()),
            "credentials": {
                "clientId": creds.client_id,
                "accessToken": creds.access_token,
                "certificate": creds.certificate,
            },
        });
        self.changed();
        Ok(out)
    }

    /// reportCompleted / reportFailed / reportException. Idempotent for the same resolution,
    /// 409 for a different one, as the real queue. Returns (status, effective).
    pub fn resolve(
        &mut self,
        task_id: &str,
        run_id: u32,
        state: RunState,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<(Value, bool), ApiError> {
        self.task_run(task_id, run_id)?;
        let task = self.tasks.get_mut(task_id).unwrap();
        let mut effective = false;
        if task.last_is(run_id, RunState::Running) {
            let run = &mut task.runs[run_id as usize];
            run.state = state;
            run.reason_resolved = Some(reason.to_string());
            run.resolved = Some(now);
            effective = true;
            let retry = match reason {
                "worker-shutdown" => Some("retry"),
                "intermittent-task" => Some("task-retry"),
                _ => None,
            };
            if let Some(reason_created) = retry {
                if task.retries_left > 0 {
                    task.retries_left -= 1;
                    task.runs.push(Run::new(run_id + 1, reason_created, now));
                }
            }
        }
        let run = &task.runs[run_id as usize];
        let retried = task.runs.len() as u32 == run_id + 2
            && matches!(
                task.runs[run_id as usize + 1].reason_created,
                "retry" | "task-retry"
            );
        let last_ok =
            task.runs.len() as u32 == run_id + 1 || (state == RunState::Exception && retried);
        if !last_ok || run.state != state || run.reason_resolved.as_deref() != Some(reason) {
            return Err(conflict(format!(
                "Run {run_id} on task `{task_id}` is resolved or not running."
            )));
        }
        let status = task.status();
        if effective {
            self.changed();
        }
        Ok((status, effective))
    }

    /// cancelTask: resolve the pending/running run as `exception`/`canceled`.
    pub fn cancel(&mut self, task_id: &str, now: DateTime<Utc>) -> Result<Value, ApiError> {
        let task = self.task(task_id)?;
        if task.deadline <= now {
            return Err(conflict(format!(
                "Task `{task_id}` Can't be canceled past it's deadline of {}.",
                js_time(task.deadline)
            )));
        }
        let task = self.tasks.get_mut(task_id).unwrap();
        let mut changed = true;
        match task.runs.last_mut() {
            None => {
                let mut run = Run::new(0, "exception", now);
                run.state = RunState::Exception;
                run.reason_resolved = Some("canceled".into());
                run.resolved = Some(now);
                task.runs.push(run);
            }
            Some(run) if !run.state.is_resolved() => {
                run.state = RunState::Exception;
                run.reason_resolved = Some("canceled".into());
                run.resolved = Some(now);
            }
            Some(_) => changed = false,
        }
        let status = task.status();
        if changed {
            self.changed();
        }
        Ok(status)
    }

    /// Mint object-service credentials for one upload (valid 24 h or until `expires`),
    /// named `queue/object-upload/<taskId>/<runId>/<uploadId>`.
    pub fn mint_object_creds(
        &mut self,
        (task_id, run_id, upload_id): (&str, u32, &str),
        project_id: &str,
        object_name: &str,
        expires: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> TempCreds {
        let client_id = format!("queue/object-upload/{task_id}/{run_id}/{upload_id}");
        let expiry = (now + ChronoDuration::hours(24)).min(expires);
        let issuer = self.cfg.queue_client_id.clone();
        let token = self.clients[&issuer].access_token.clone();
        let creds = auth::mint(
            &issuer,
            &token,
            &client_id,
            now.timestamp_millis(),
            expiry.timestamp_millis(),
            vec![format!("object:upload:{project_id}:{object_name}")],
        );
        self.creds.insert(client_id, CredKind::Object);
        creds
    }

    /// Is `client_id` a task credential superseded by newer ones the worker already used?
    /// Returns its run. Otherwise records that this generation has been used.
    pub fn stale_run_creds(&mut self, client_id: &str) -> Option<(String, u32)> {
        let Some(CredKind::Run { task_id, run_id }) = self.creds.get(client_id).cloned() else {
            return None;
        };
        let run = self
            .tasks
            .get_mut(&task_id)?
            .runs
            .get_mut(run_id as usize)?;
        let generation = run.issued_client_ids.iter().position(|c| c == client_id)?;
        if generation < run.newest_used {
            return Some((task_id, run_id));
        }
        run.newest_used = generation;
        None
    }

    /// Register a URL on the fake to which a PUT stores bytes.
    pub fn new_put_url(&mut self, target: PutTarget) -> String {
        let token = super::new_task_id();
        self.put_targets.insert(token.clone(), target);
        format!("{}/__fake/put/{token}", self.root_url)
    }

    /// Store the body of a PUT to an upload URL made by [`State::new_put_url`], checking the
    /// signed Content-Type (and, for `gzip` Content-Encoding, that the body is gzip).
    pub fn store_put(
        &mut self,
        token: &str,
        body: Vec<u8>,
        content_type: &str,
        encoding: Option<&str>,
    ) -> Result<(), ApiError> {
        let target = self
            .put_targets
            .get(token)
            .cloned()
            .ok_or_else(|| ApiError::new(403, "AccessDenied", "unknown upload URL".into()))?;
        let mismatch = |signed: &str| {
            ApiError::new(
                403,
                "SignatureDoesNotMatch",
                format!("Content-Type `{content_type}` differs from the signed `{signed}`"),
            )
        };
        match target {
            PutTarget::S3 {
                task_id,
                run_id,
                name,
            } => {
                let art = self
                    .tasks
                    .get_mut(&task_id)
                    .and_then(|t| t.artifacts.get_mut(&(run_id, name)))
                    .ok_or_else(|| ApiError::new(404, "NoSuchKey", "artifact vanished".into()))?;
                if content_type != art.content_type {
                    return Err(mismatch(&art.content_type));
                }
                if encoding == Some("gzip") {
                    let mut gz = flate2::read::GzDecoder::new(&body[..]);
                    std::io::copy(&mut gz, &mut std::io::sink()).map_err(|e| {
                        ApiError::input(format!(
                            "Content-Encoding is gzip but the body is not: {e}"
                        ))
                    })?;
                }
                art.raw = Some(body);
                art.content_encoding = encoding.map(str::to_string);
                art.present = true;
            }
            PutTarget::Object { name } => {
                let obj = self
                    .objects
                    .get_mut(&name)
                    .ok_or_else(|| ApiError::new(404, "NoSuchKey", "object vanished".into()))?;
                if obj.finished {
                    return Err(conflict(format!("object `{name}` is already finished")));
                }
                if content_type != obj.content_type {
                    return Err(mismatch(&obj.content_type));
                }
                obj.data = Some(body);
            }
        }
        self.changed();
        Ok(())
    }

    /// Note a state change made outside the methods above.
    pub fn touch(&mut self) {
        self.changed();
    }
}
