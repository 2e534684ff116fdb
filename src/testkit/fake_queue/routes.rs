//! The wiremock responder: percent-decoded routing of Queue, Object service, Index and the
//! fake's own upload/download URLs onto the state machine, with Hawk, scopes and body rules.

use super::auth::{self, Caller, HawkRequest};
use super::state::{js_time, parse_time, Object, PutTarget, RunState, State};
use super::{front, schema};
use super::{ApiError, RecordedCall, ResolutionCall, Shared, StoredArtifact, Violation};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use serde_json::{json, Value};
use sha2::{Digest, Sha256, Sha512};
use std::sync::Arc;
use wiremock::{Request, ResponseTemplate};

/// Answers every request that reaches the wiremock server.
pub struct Responder {
    pub shared: Arc<Shared>,
}

/// Decode `%XX` escapes (invalid escapes are kept as they are).
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Encode a path segment the way the `taskcluster` crate does (keeps `A-Za-z0-9_.-~`).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for c in s.bytes() {
        if c.is_ascii_alphanumeric() || b"_.-~".contains(&c) {
            out.push(c as char);
        } else {
            out.push_str(&format!("%{c:02X}"));
        }
    }
    out
}

/// A response and its status (wiremock's template keeps the status private).
struct Reply(u16, ResponseTemplate);

impl Reply {
    fn empty(status: u16) -> Reply {
        Reply(status, ResponseTemplate::new(status))
    }
}

type Out = Result<Reply, ApiError>;

fn json_reply(status: u16, v: Value) -> Reply {
    Reply(status, ResponseTemplate::new(status).set_body_json(v))
}

fn error_reply(e: &ApiError) -> Reply {
    json_reply(e.status, json!({"code": e.code, "message": e.message}))
}

fn redirect(url: &str, body: Value) -> Reply {
    Reply(
        303,
        ResponseTemplate::new(303)
            .insert_header("Location", url)
            .set_body_json(body),
    )
}

/// One request being handled.
struct Ctx<'a> {
    req: &'a Request,
    method: String,
    segs: Vec<String>,
    now: DateTime<Utc>,
    caller: Option<Caller>,
    anonymous: Vec<String>,
    /// Set by resolution routes: (taskId, runId, resolution, reason, effective).
    resolution: Option<(String, u32, String, Option<String>, bool)>,
    violation: Option<String>,
    /// Set when claimWork claimed nothing.
    empty_claim: bool,
}

impl Ctx<'_> {
    fn client_id(&self) -> Option<&str> {
        self.caller.as_ref().map(|c| c.client_id.as_str())
    }

    /// 403 unless the caller (or anonymous) has every scope in `need`.
    fn require(&mut self, need: &[String]) -> Result<(), ApiError> {
        let have: Vec<String> = self
            .caller
            .as_ref()
            .map(|c| c.scopes.clone())
            .unwrap_or_default()
            .into_iter()
            .chain(self.anonymous.iter().cloned())
            .collect();
        let missing: Vec<&String> = need.iter().filter(|n| !auth::satisfies(&have, n)).collect();
        if missing.is_empty() {
            return Ok(());
        }
        let msg = format!(
            "Client ID {} does not have sufficient scopes and is missing the following scopes:\n\n```\n{}\n```",
            self.client_id().unwrap_or("(anonymous)"),
            missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n")
        );
        self.violation = Some(format!("insufficient scopes: {missing:?}"));
        Err(ApiError::new(403, "InsufficientScopes", msg))
    }

    fn body_json(&self) -> Result<Value, ApiError> {
        if self.req.body.is_empty() {
            return Err(ApiError::input("request body is required".into()));
        }
        serde_json::from_slice(&self.req.body)
            .map_err(|e| ApiError::input(format!("request body is not valid JSON: {e}")))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.req.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

fn parse_run_id(s: &str) -> Result<u32, ApiError> {
    s.parse::<u32>()
        .ok()
        .filter(|n| *n <= 1000 && (s == "0" || !s.starts_with('0')))
        .ok_or_else(|| {
            ApiError::new(
                400,
                "InvalidRequestArguments",
                format!("runId `{s}` does not match the pattern ^[1-9]*[0-9]+$"),
            )
        })
}

fn check_task_id(s: &str) -> Result<(), ApiError> {
    if schema::is_slugid(s) {
        Ok(())
    } else {
        Err(ApiError::new(
            400,
            "InvalidRequestArguments",
            format!("taskId `{s}` does not match the slugid pattern"),
        ))
    }
}

fn no_route(ctx: &Ctx) -> ApiError {
    ApiError::new(
        404,
        "ResourceNotFound",
        format!("No such API route: {} /{}", ctx.method, ctx.segs.join("/")),
    )
}

impl wiremock::Respond for Responder {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let method = req.method.as_str().to_ascii_uppercase();
        let raw_path = req.url.path().to_string();
        let segs: Vec<String> = raw_path
            .trim_start_matches('/')
            .split('/')
            .map(percent_decode)
            .collect();
        let path = format!("/{}", segs.join("/"));
        let claimed = auth::claimed_client_id(
            req.headers
                .get("authorization")
                .and_then(|v| v.to_str().ok()),
        );
        self.shared.with(|st| {
            let mut ctx = Ctx {
                req,
                method: method.clone(),
                segs,
                now: Utc::now(),
                caller: None,
                anonymous: st.cfg.anonymous_scopes.clone(),
                resolution: None,
                violation: None,
                empty_claim: false,
            };
            let Reply(status, reply) = match handle(st, &mut ctx, &raw_path) {
                Ok(r) => r,
                Err(e) => error_reply(&e),
            };
            // An empty claimWork attempt inside a long-poll: the front proxy keeps waiting.
            if ctx.empty_claim && req.headers.contains_key(front::LONG_POLL_RETRY) {
                return ResponseTemplate::new(204).insert_header(front::LONG_POLL_EMPTY, "1");
            }
            st.calls.push(RecordedCall {
                at: ctx.now,
                method: method.clone(),
                path: path.clone(),
                client_id: claimed.clone(),
                status,
            });
            if let Some(reason) = ctx.violation.take() {
                st.violations.push(Violation {
                    at: ctx.now,
                    method: method.clone(),
                    path: path.clone(),
                    client_id: claimed.clone(),
                    reason,
                });
            }
            if let Some((task_id, run_id, resolution, reason, effective)) = ctx.resolution.take() {
                st.resolutions.push(ResolutionCall {
                    at: ctx.now,
                    task_id,
                    run_id,
                    resolution,
                    reason,
                    status,
                    effective: effective && status < 300,
                });
            }
            st.touch();
            reply
        })
    }
}

fn handle(st: &mut State, ctx: &mut Ctx, raw_path: &str) -> Out {
    let segs: Vec<&str> = ctx.segs.iter().map(String::as_str).collect();
    // The fake's own signed-URL endpoints: no Hawk (like S3 pre-signed URLs).
    if let ["__fake", rest @ ..] = segs.as_slice() {
        let rest: Vec<String> = rest.iter().map(|s| s.to_string()).collect();
        return data_plane(st, ctx, &rest);
    }
    if !matches!(segs.as_slice(), ["api", _, "v1", ..]) {
        return Err(no_route(ctx));
    }

    // Authenticate (Hawk, certificate), then refuse superseded task credentials.
    let (host, port) = host_port(ctx, &st.root_url);
    let hreq = HawkRequest {
        authorization: ctx.header("authorization"),
        method: &ctx.method,
        host: &host,
        port,
        path: raw_path,
        query: ctx.req.url.query(),
        content_type: ctx.header("content-type"),
        body: &ctx.req.body,
    };
    match auth::authenticate(&hreq, &st.clients, ctx.now.timestamp_millis()) {
        Ok(caller) => ctx.caller = caller,
        Err(e) => {
            ctx.violation = Some(format!("authentication failed: {e}"));
            return Err(ApiError::new(401, "AuthenticationFailed", e.0));
        }
    }
    if let Some(client_id) = ctx.client_id() {
        if let Some((task_id, run_id)) = st.stale_run_creds(client_id) {
            let msg = format!(
                "credentials `{client_id}` for run {run_id} of task {task_id} were superseded by a newer reclaim"
            );
            ctx.violation = Some(format!("stale credentials: {msg}"));
            return Err(ApiError::new(401, "AuthenticationFailed", msg));
        }
    }

    let segs: Vec<String> = ctx.segs[3..].to_vec();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    match ctx.segs[1].as_str() {
        "queue" => queue_route(st, ctx, &segs),
        "object" => object_route(st, ctx, &segs),
        "index" => index_route(st, ctx, &segs),
        _ => Err(no_route(ctx)),
    }
}

/// Host and port the client signed: from `X-Forwarded-Host` (set by the front proxy).
fn host_port(ctx: &Ctx, root_url: &str) -> (String, u16) {
    let from_root = || {
        let u = url::Url::parse(root_url).expect("root URL parses");
        (
            u.host_str().unwrap_or("127.0.0.1").to_string(),
            u.port_or_known_default().unwrap_or(80),
        )
    };
    let Some(h) = ctx.header("x-forwarded-host") else {
        return from_root();
    };
    match h.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => match port.parse() {
            Ok(p) => (host.to_string(), p),
            Err(_) => (h.to_string(), 80),
        },
        _ => (h.to_string(), 80),
    }
}

fn queue_route(st: &mut State, ctx: &mut Ctx, segs: &[&str]) -> Out {
    let m = ctx.method.clone();
    match (m.as_str(), segs) {
        ("GET", ["ping"]) => Ok(json_reply(200, json!({"alive": true, "uptime": 1}))),
        ("POST", ["claim-work", queue @ ..]) => claim_work(st, ctx, &queue.join("/")),
        ("GET", ["task", task_id]) => {
            check_task_id(task_id)?;
            ctx.require(&[format!("queue:get-task:{task_id}")])?;
            Ok(json_reply(200, st.task(task_id)?.def.clone()))
        }
        ("PUT", ["task", task_id]) => {
            check_task_id(task_id)?;
            let body = ctx.body_json()?;
            let q = format!(
                "{}/{}",
                body["provisionerId"].as_str().unwrap_or(""),
                body["workerType"].as_str().unwrap_or("")
            );
            ctx.require(&[format!("queue:create-task:lowest:{q}")])?;
            let status = st.create_task(task_id, body, ctx.now)?;
            Ok(json_reply(200, json!({"status": status})))
        }
        ("GET", ["task", task_id, "status"]) => {
            check_task_id(task_id)?;
            ctx.require(&[format!("queue:status:{task_id}")])?;
            Ok(json_reply(
                200,
                json!({"status": st.task(task_id)?.status()}),
            ))
        }
        ("POST", ["task", task_id, "cancel"]) => {
            check_task_id(task_id)?;
            let t = st.task(task_id)?;
            let need = format!(
                "queue:cancel-task:{}/{}/{task_id}",
                t.def["schedulerId"].as_str().unwrap_or("-"),
                t.def["taskGroupId"].as_str().unwrap_or("")
            );
            ctx.require(&[need])?;
            let status = st.cancel(task_id, ctx.now)?;
            Ok(json_reply(200, json!({"status": status})))
        }
        ("POST", ["task", task_id, "runs", run_id, action]) => {
            check_task_id(task_id)?;
            let run_id = parse_run_id(run_id)?;
            run_action(st, ctx, task_id, run_id, action)
        }
        (_, ["task", task_id, "runs", run_id, "artifacts", name @ ..]) if !name.is_empty() => {
            check_task_id(task_id)?;
            let run_id = parse_run_id(run_id)?;
            let name = name.join("/");
            match m.as_str() {
                "POST" => create_artifact(st, ctx, task_id, run_id, &name),
                "PUT" => finish_artifact(st, ctx, task_id, run_id, &name),
                "GET" => get_artifact(st, ctx, task_id, Some(run_id), &name),
                _ => Err(no_route(ctx)),
            }
        }
        ("GET", ["task", task_id, "artifacts", name @ ..]) if !name.is_empty() => {
            check_task_id(task_id)?;
            get_artifact(st, ctx, task_id, None, &name.join("/"))
        }
        ("GET", ["task", task_id, "runs", run_id, "artifacts"]) => {
            check_task_id(task_id)?;
            let run_id = parse_run_id(run_id)?;
            list_artifacts(st, ctx, task_id, Some(run_id))
        }
        ("GET", ["task", task_id, "artifacts"]) => {
            check_task_id(task_id)?;
            list_artifacts(st, ctx, task_id, None)
        }
        _ => Err(no_route(ctx)),
    }
}

fn claim_work(st: &mut State, ctx: &mut Ctx, task_queue_id: &str) -> Out {
    let body = ctx.body_json()?;
    schema::claim_work(&body).map_err(ApiError::input)?;
    let wg = body["workerGroup"].as_str().unwrap();
    let wid = body["workerId"].as_str().unwrap();
    ctx.require(&[
        format!("queue:claim-work:{task_queue_id}"),
        format!("queue:worker-id:{wg}/{wid}"),
    ])?;
    let n = body["tasks"].as_u64().unwrap() as usize;
    let tasks = st.claim_work(task_queue_id, wg, wid, n, ctx.now);
    ctx.empty_claim = tasks.is_empty();
    Ok(json_reply(200, json!({"tasks": tasks})))
}

fn run_action(st: &mut State, ctx: &mut Ctx, task_id: &str, run_id: u32, action: &str) -> Out {
    let (state, resolution) = match action {
        "reclaim" => {
            st.task_run(task_id, run_id)?;
            ctx.require(&[format!("queue:reclaim-task:{task_id}/{run_id}")])?;
            return Ok(json_reply(200, st.reclaim(task_id, run_id, ctx.now)?));
        }
        "completed" => (RunState::Completed, "completed"),
        "failed" => (RunState::Failed, "failed"),
        "exception" => (RunState::Exception, "exception"),
        _ => return Err(no_route(ctx)),
    };
    ctx.resolution = Some((task_id.into(), run_id, resolution.into(), None, false));
    let reason = if state == RunState::Exception {
        let body = ctx.body_json()?;
        schema::task_exception(&body).map_err(ApiError::input)?;
        let r = body["reason"].as_str().unwrap().to_string();
        ctx.resolution.as_mut().unwrap().3 = Some(r.clone());
        r
    } else {
        resolution.to_string()
    };
    st.task_run(task_id, run_id)?;
    ctx.require(&[format!("queue:resolve-task:{task_id}/{run_id}")])?;
    let (status, effective) = st.resolve(task_id, run_id, state, &reason, ctx.now)?;
    ctx.resolution.as_mut().unwrap().4 = effective;
    Ok(json_reply(200, json!({"status": status})))
}

/// Artifacts may be created while the run is running, or up to 25 min after an exception.
fn check_run_accepts_artifacts(
    st: &State,
    task_id: &str,
    run_id: u32,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    let (task, run) = st.task_run(task_id, run_id)?;
    let ok = run.state == RunState::Running
        || (run.state == RunState::Exception
            && run
                .resolved
                .is_some_and(|r| r > now - ChronoDuration::minutes(25)));
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(
            409,
            "RequestConflict",
            format!(
                "Artifacts cannot be created for a task after it is resolved, unless it is resolved 'exception', and even in this case only up to 25 min past resolution.\n\nTask status: {}",
                task.status()
            ),
        ))
    }
}

fn create_artifact(st: &mut State, ctx: &mut Ctx, task_id: &str, run_id: u32, name: &str) -> Out {
    let body = ctx.body_json()?;
    schema::post_artifact(&body).map_err(ApiError::input)?;
    if name.is_empty() || !name.bytes().all(|c| (0x20..=0x7e).contains(&c)) {
        return Err(ApiError::new(
            400,
            "InvalidRequestArguments",
            format!("artifact name `{name}` must be printable ASCII"),
        ));
    }
    st.task_run(task_id, run_id)?;
    ctx.require(&[format!("queue:create-artifact:{task_id}/{run_id}")])?;
    check_run_accepts_artifacts(st, task_id, run_id, ctx.now)?;
    let task = st.task(task_id)?;
    let expires_s = body["expires"].as_str().unwrap().to_string();
    let expires = parse_time(&expires_s).unwrap();
    if expires > task.expires {
        return Err(ApiError::new(
            400,
            "InputError",
            format!(
                "Artifact expires ({expires_s}) after the task expiration {} (task.expires < expires) - this is not allowed, artifacts may not expire after the task they belong to expires",
                js_time(task.expires)
            ),
        ));
    }
    let storage_type = body["storageType"].as_str().unwrap().to_string();
    let content_type = body
        .get("contentType")
        .and_then(Value::as_str)
        .unwrap_or("application/binary")
        .to_string();
    let project_id = task.project_id.clone();
    let key = (run_id, name.to_string());
    if let Some(existing) = task.artifacts.get(&key) {
        let replaceable = ["reference", "link"].contains(&existing.storage_type.as_str())
            && ["reference", "link"].contains(&storage_type.as_str());
        let same = existing.storage_type == storage_type
            && existing.content_type == content_type
            && existing.expires == expires_s
            && !existing.present;
        if !replaceable && !same {
            return Err(ApiError::new(
                409,
                "RequestConflict",
                format!("Artifact `{name}` already exists on run {run_id} of task `{task_id}` with a different storageType, contentType or expires, or it is already uploaded"),
            ));
        }
    }
    let mut art = StoredArtifact::new(&storage_type, &content_type, &expires_s);
    let reply = match storage_type.as_str() {
        "s3" => {
            let url = st.new_put_url(PutTarget::S3 {
                task_id: task_id.into(),
                run_id,
                name: name.into(),
            });
            json!({
                "storageType": "s3",
                "putUrl": url,
                "expires": js_time(ctx.now + ChronoDuration::minutes(30)),
                "contentType": content_type,
            })
        }
        "object" => {
            let object_name = format!("t/{task_id}/{run_id}/{name}");
            let upload_id = super::new_task_id();
            let creds = st.mint_object_creds(
                (task_id, run_id, &upload_id),
                &project_id,
                &object_name,
                expires,
                ctx.now,
            );
            art.object_name = Some(object_name.clone());
            art.upload_id = Some(upload_id.clone());
            json!({
                "storageType": "object",
                "name": object_name,
                "projectId": project_id,
                "uploadId": upload_id,
                "expires": expires_s,
                "credentials": {
                    "clientId": creds.client_id,
                    "accessToken": creds.access_token,
                    "certificate": creds.certificate,
                },
            })
        }
        "reference" => {
            art.url = body["url"].as_str().map(str::to_string);
            art.present = true;
            json!({"storageType": "reference"})
        }
        "link" => {
            art.link_target = body["artifact"].as_str().map(str::to_string);
            art.present = true;
            json!({"storageType": "link"})
        }
        _ => {
            art.reason = body["reason"].as_str().map(str::to_string);
            art.message = body["message"].as_str().map(str::to_string);
            art.present = true;
            json!({"storageType": "error"})
        }
    };
    st.tasks
        .get_mut(task_id)
        .unwrap()
        .artifacts
        .insert(key, art);
    Ok(json_reply(200, reply))
}

fn finish_artifact(st: &mut State, ctx: &mut Ctx, task_id: &str, run_id: u32, name: &str) -> Out {
    let body = ctx.body_json()?;
    schema::finish_artifact(&body).map_err(ApiError::input)?;
    st.task_run(task_id, run_id)?;
    ctx.require(&[format!("queue:create-artifact:{task_id}/{run_id}")])?;
    check_run_accepts_artifacts(st, task_id, run_id, ctx.now)?;
    let key = (run_id, name.to_string());
    let art = st
        .task(task_id)?
        .artifacts
        .get(&key)
        .cloned()
        .ok_or_else(|| {
            ApiError::new(
                404,
                "ResourceNotFound",
                format!("Artifact `{name}` not found on run {run_id} of task `{task_id}`"),
            )
        })?;
    if art.storage_type != "object" {
        return Err(ApiError::new(
            400,
            "InputError",
            format!(
                "finishArtifact applies to storageType object, not {}",
                art.storage_type
            ),
        ));
    }
    let upload_id = body["uploadId"].as_str().unwrap();
    if art.upload_id.as_deref() != Some(upload_id) {
        return Err(ApiError::new(
            400,
            "InputError",
            format!("uploadId `{upload_id}` does not match the artifact's uploadId"),
        ));
    }
    let object_name = art.object_name.clone().unwrap_or_default();
    if !st.objects.get(&object_name).is_some_and(|o| o.finished) {
        return Err(ApiError::new(
            409,
            "RequestConflict",
            format!("object `{object_name}` has not been finished with finishUpload"),
        ));
    }
    st.tasks
        .get_mut(task_id)
        .unwrap()
        .artifacts
        .get_mut(&key)
        .unwrap()
        .present = true;
    Ok(Reply::empty(204))
}

fn get_artifact(
    st: &mut State,
    ctx: &mut Ctx,
    task_id: &str,
    run_id: Option<u32>,
    name: &str,
) -> Out {
    let task = st.task(task_id)?;
    let run_id = match run_id {
        Some(r) => r,
        None => task.runs.len().checked_sub(1).ok_or_else(|| {
            ApiError::new(
                404,
                "ResourceNotFound",
                format!("task `{task_id}` has no runs"),
            )
        })? as u32,
    };
    ctx.require(&[format!("queue:get-artifact:{name}")])?;
    let task = st.task(task_id)?;
    let mut name = name.to_string();
    for _ in 0..10 {
        let art = task.artifacts.get(&(run_id, name.clone())).ok_or_else(|| {
            ApiError::new(
                404,
                "ResourceNotFound",
                format!("Artifact not found: `{name}` on run {run_id} of task `{task_id}`"),
            )
        })?;
        match art.storage_type.as_str() {
            "link" => {
                name = art.link_target.clone().unwrap_or_default();
                continue;
            }
            "reference" => {
                let url = art.url.clone().unwrap_or_default();
                return Ok(redirect(
                    &url,
                    json!({"storageType": "reference", "url": url}),
                ));
            }
            "error" => {
                return Ok(json_reply(
                    424,
                    json!({"reason": art.reason, "message": art.message}),
                ))
            }
            st_type => {
                if !art.present {
                    return Err(ApiError::new(
                        404,
                        "ResourceNotFound",
                        format!("Artifact `{name}` is not uploaded yet"),
                    ));
                }
                let url = format!(
                    "{}/__fake/artifact/{task_id}/{run_id}/{}",
                    st.root_url,
                    percent_encode(&name)
                );
                let Reply(code, t) = redirect(&url, json!({"storageType": st_type, "url": url}));
                return Ok(Reply(
                    code,
                    t.insert_header("x-taskcluster-artifact-storage-type", st_type),
                ));
            }
        }
    }
    Err(ApiError::new(
        400,
        "InputError",
        format!("link artifacts starting at `{name}` form a cycle or a chain longer than 10"),
    ))
}

fn list_artifacts(st: &mut State, ctx: &mut Ctx, task_id: &str, run_id: Option<u32>) -> Out {
    let task = st.task(task_id)?;
    let run_id = match run_id {
        Some(r) => {
            st.task_run(task_id, r)?;
            r
        }
        None => task.runs.len().saturating_sub(1) as u32,
    };
    ctx.require(&[format!("queue:list-artifacts:{task_id}:{run_id}")])?;
    let artifacts: Vec<Value> = task
        .artifacts
        .iter()
        .filter(|((r, _), a)| *r == run_id && (a.present || a.storage_type == "s3"))
        .map(|((_, n), a)| {
            json!({"storageType": a.storage_type, "name": n, "expires": a.expires, "contentType": a.content_type})
        })
        .collect();
    Ok(json_reply(200, json!({"artifacts": artifacts})))
}

fn object_route(st: &mut State, ctx: &mut Ctx, segs: &[&str]) -> Out {
    let m = ctx.method.clone();
    match (m.as_str(), segs) {
        ("GET", ["ping"]) => Ok(json_reply(200, json!({"alive": true, "uptime": 1}))),
        ("PUT", ["upload", name @ ..]) if !name.is_empty() => {
            create_upload(st, ctx, &name.join("/"))
        }
        ("POST", ["finish-upload", name @ ..]) if !name.is_empty() => {
            finish_upload(st, ctx, &name.join("/"))
        }
        ("GET", ["download", name @ ..]) if !name.is_empty() => {
            let name = name.join("/");
            ctx.require(&[format!("object:download:{name}")])?;
            match st.objects.get(&name) {
                Some(o) if o.finished => {
                    let url = format!("{}/__fake/object/{}", st.root_url, percent_encode(&name));
                    Ok(redirect(&url, json!({"method": "simple", "url": url})))
                }
                _ => Err(ApiError::new(
                    404,
                    "ResourceNotFound",
                    format!("object `{name}` not found"),
                )),
            }
        }
        _ => Err(no_route(ctx)),
    }
}

fn merge_hashes(o: &mut Object, hashes: Option<&Value>) -> Result<(), ApiError> {
    let Some(h) = hashes.and_then(Value::as_object) else {
        return Ok(());
    };
    for (alg, v) in h {
        let v = v.as_str().unwrap_or_default().to_string();
        match o.hashes.get(alg) {
            Some(old) if *old != v => {
                return Err(ApiError::new(
                    409,
                    "RequestConflict",
                    format!("hash {alg} differs from the one given earlier"),
                ))
            }
            _ => {
                o.hashes.insert(alg.clone(), v);
            }
        }
    }
    Ok(())
}

fn create_upload(st: &mut State, ctx: &mut Ctx, name: &str) -> Out {
    let body = ctx.body_json()?;
    schema::create_upload(&body).map_err(ApiError::input)?;
    let project_id = body["projectId"].as_str().unwrap().to_string();
    let upload_id = body["uploadId"].as_str().unwrap().to_string();
    let expires = body["expires"].as_str().unwrap().to_string();
    ctx.require(&[format!("object:upload:{project_id}:{name}")])?;
    let mut obj = match st.objects.get(name) {
        Some(o) => {
            if o.upload_id != upload_id || o.project_id != project_id || o.expires != expires {
                return Err(ApiError::new(
                    409,
                    "RequestConflict",
                    format!("object `{name}` already exists with a different uploadId, projectId or expires"),
                ));
            }
            if o.finished {
                return Err(ApiError::new(
                    409,
                    "RequestConflict",
                    format!("upload of `{name}` is already finished"),
                ));
            }
            o.clone()
        }
        None => Object {
            project_id: project_id.clone(),
            upload_id: upload_id.clone(),
            expires: expires.clone(),
            content_type: "application/binary".into(),
            data: None,
            hashes: Default::default(),
            finished: false,
        },
    };
    merge_hashes(&mut obj, body.get("hashes"))?;
    let methods = &body["proposedUploadMethods"];
    let method = if let Some(d) = methods.get("dataInline") {
        let data = STANDARD
            .decode(d["objectData"].as_str().unwrap())
            .map_err(|e| {
                ApiError::input(format!(
                    "data/proposedUploadMethods/dataInline/objectData is not base64: {e}"
                ))
            })?;
        if data.len() > 8192 {
            return Err(ApiError::input("dataInline data exceeds 8k".into()));
        }
        obj.content_type = d["contentType"].as_str().unwrap().to_string();
        obj.data = Some(data);
        json!({"dataInline": true})
    } else if let Some(p) = methods.get("putUrl") {
        obj.content_type = p["contentType"].as_str().unwrap().to_string();
        let url = st.new_put_url(PutTarget::Object { name: name.into() });
        json!({"putUrl": {
            "url": url,
            "expires": js_time(ctx.now + ChronoDuration::hours(1)),
            "headers": {
                "Content-Type": obj.content_type,
                "Content-Length": p["contentLength"].as_i64().unwrap().to_string(),
            },
        }})
    } else {
        json!({})
    };
    st.objects.insert(name.to_string(), obj);
    Ok(json_reply(
        200,
        json!({"projectId": project_id, "uploadId": upload_id, "expires": expires, "uploadMethod": method}),
    ))
}

fn finish_upload(st: &mut State, ctx: &mut Ctx, name: &str) -> Out {
    let body = ctx.body_json()?;
    schema::finish_upload(&body).map_err(ApiError::input)?;
    let project_id = body["projectId"].as_str().unwrap();
    let upload_id = body["uploadId"].as_str().unwrap();
    ctx.require(&[format!("object:upload:{project_id}:{name}")])?;
    let mut obj = st.objects.get(name).cloned().ok_or_else(|| {
        ApiError::new(
            404,
            "ResourceNotFound",
            format!("object `{name}` not found"),
        )
    })?;
    if obj.upload_id != upload_id || obj.project_id != project_id {
        return Err(ApiError::new(
            409,
            "RequestConflict",
            format!("uploadId or projectId does not match the upload of `{name}`"),
        ));
    }
    merge_hashes(&mut obj, body.get("hashes"))?;
    let Some(data) = &obj.data else {
        return Err(ApiError::new(
            409,
            "RequestConflict",
            format!("no data was uploaded for `{name}`"),
        ));
    };
    if !obj.hashes.contains_key("sha256") && !obj.hashes.contains_key("sha512") {
        // The service allows it, but downloaders refuse such objects: flag it for tests.
        ctx.violation = Some(format!(
            "finishUpload of `{name}` without a sha256 or sha512 hash"
        ));
    }
    for (alg, want) in &obj.hashes {
        let got = match alg.as_str() {
            "sha256" => format!("{:x}", Sha256::digest(data)),
            "sha512" => format!("{:x}", Sha512::digest(data)),
            _ => continue,
        };
        if &got != want {
            return Err(ApiError::input(format!(
                "{alg} of the uploaded data is {got}, not {want}"
            )));
        }
    }
    obj.finished = true;
    st.objects.insert(name.to_string(), obj);
    Ok(Reply::empty(204))
}

fn index_route(st: &mut State, ctx: &mut Ctx, segs: &[&str]) -> Out {
    match (ctx.method.as_str(), segs) {
        ("GET", ["ping"]) => Ok(json_reply(200, json!({"alive": true, "uptime": 1}))),
        ("GET", ["task", path]) => {
            ctx.require(&[format!("index:find-task:{path}")])?;
            let e = find_index(st, path)?;
            Ok(json_reply(
                200,
                json!({"namespace": path, "taskId": e.task_id, "rank": e.rank, "data": e.data, "expires": js_time(e.expires)}),
            ))
        }
        ("GET", ["task", path, "artifacts", name @ ..]) if !name.is_empty() => {
            ctx.require(&[format!("index:find-task:{path}")])?;
            let e = find_index(st, path)?;
            let url = format!(
                "{}/api/queue/v1/task/{}/artifacts/{}",
                st.root_url,
                e.task_id,
                percent_encode(&name.join("/"))
            );
            Ok(redirect(&url, json!({"url": url})))
        }
        _ => Err(no_route(ctx)),
    }
}

fn find_index(st: &State, path: &str) -> Result<super::state::IndexEntry, ApiError> {
    st.index
        .get(path)
        .cloned()
        .ok_or_else(|| ApiError::new(404, "ResourceNotFound", "Indexed task not found".into()))
}

/// The fake's signed-URL endpoints: PUT uploads and GET downloads.
fn data_plane(st: &mut State, ctx: &mut Ctx, segs: &[String]) -> Out {
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    match (ctx.method.as_str(), segs.as_slice()) {
        // PUTs to upload URLs are stored by the front proxy (`State::store_put`) without
        // passing through here, so large uploads are held in memory once.
        ("GET", ["artifact", task_id, run_id, name @ ..]) => {
            let run_id = parse_run_id(run_id)?;
            let name = name.join("/");
            let art = st
                .tasks
                .get(*task_id)
                .and_then(|t| t.artifacts.get(&(run_id, name.clone())))
                .ok_or_else(|| ApiError::new(404, "NoSuchKey", format!("no artifact {name}")))?;
            let data = match &art.raw {
                Some(d) => d.clone(),
                None => art
                    .object_name
                    .as_ref()
                    .and_then(|n| st.objects.get(n))
                    .and_then(|o| o.data.clone())
                    .ok_or_else(|| {
                        ApiError::new(404, "NoSuchKey", format!("artifact {name} has no data"))
                    })?,
            };
            let mut t = ResponseTemplate::new(200).set_body_raw(data, &art.content_type);
            if let Some(e) = &art.content_encoding {
                t = t.insert_header("Content-Encoding", e.as_str());
            }
            Ok(Reply(200, t))
        }
        ("GET", ["object", name @ ..]) => {
            let name = name.join("/");
            let o = st
                .objects
                .get(&name)
                .filter(|o| o.finished)
                .ok_or_else(|| ApiError::new(404, "NoSuchKey", format!("no object {name}")))?;
            Ok(Reply(
                200,
                ResponseTemplate::new(200)
                    .set_body_raw(o.data.clone().unwrap_or_default(), &o.content_type),
            ))
        }
        _ => Err(no_route(ctx)),
    }
}
