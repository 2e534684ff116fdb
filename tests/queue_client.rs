//! The queue client against `wiremock` stubs: request paths and bodies, Hawk signatures with the
//! newest credentials, error classes, retries, and the artifact upload sequences.

use std::pin::Pin;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};
use docker_worker::queue::{
    BytesSource, Credentials, ErrorArtifactReason, ExceptionReason, FileSource, QueueClient,
    QueueError, QueueOptions, RetryPolicy, RunClient, StorageType, UploadOptions, UploadSource,
};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const TASK_ID: &str = "fN1kfQ5YSSCGJ6mhSlS9Ng";
const UPLOAD_ID: &str = "Zb3Oj-ZXQIu2gKprzL0Vlw";
const WORKER_TOKEN: &str = "worker-permanent-token";

// ---------------------------------------------------------------------------------------------
// helpers

fn worker_credentials() -> Credentials {
    Credentials::new("project/worker", WORKER_TOKEN)
}

/// Real temporary credentials (with a certificate), as the queue mints them for a run.
fn temp_credentials(name: &str) -> taskcluster::Credentials {
    taskcluster::Credentials::new("project/queue-issuer", "issuer-token")
        .create_named_temp_creds(name, Duration::from_secs(3600), ["queue:*"])
        .unwrap()
}

fn creds_json(c: &taskcluster::Credentials) -> Value {
    json!({"clientId": c.client_id, "accessToken": c.access_token, "certificate": c.certificate})
}

fn options() -> QueueOptions {
    QueueOptions {
        request_timeout: Duration::from_secs(10),
        retry: RetryPolicy {
            retries: 2,
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
        },
        upload: UploadOptions::default(),
    }
}

fn client(server: &MockServer, options: QueueOptions) -> QueueClient {
    QueueClient::with_options(&server.uri(), worker_credentials(), options).unwrap()
}

fn expires() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, 31, 12, 0, 0).unwrap()
}

fn status_json(state: &str, run_state: &str) -> Value {
    json!({
        "taskId": TASK_ID, "provisionerId": "proj", "workerType": "wt", "taskQueueId": "proj/wt",
        "schedulerId": "-", "projectId": "none", "taskGroupId": TASK_ID,
        "deadline": "2030-01-01T00:00:00.000Z", "expires": "2031-01-01T00:00:00.000Z",
        "retriesLeft": 5, "state": state,
        "runs": [{"runId": 0, "state": run_state, "reasonCreated": "scheduled",
                  "scheduled": "2029-12-31T00:00:00.000Z", "workerGroup": "wg", "workerId": "wi",
                  "takenUntil": "2029-12-31T00:20:00.000Z", "aFieldFromTheFuture": 1}]
    })
}

fn claim_json(creds: &taskcluster::Credentials) -> Value {
    json!({
        "status": status_json("running", "running"),
        "runId": 0, "workerGroup": "wg", "workerId": "wi",
        "takenUntil": "2029-12-31T00:20:00.000Z",
        "credentials": creds_json(creds),
        "task": {
            "provisionerId": "proj", "workerType": "wt", "taskQueueId": "proj/wt",
            "schedulerId": "-", "taskGroupId": TASK_ID, "dependencies": [], "requires": "all-completed",
            "routes": [], "priority": "lowest", "retries": 5,
            "created": "2029-12-31T00:00:00.000Z", "deadline": "2030-01-01T00:00:00.000Z",
            "expires": "2031-01-01T00:00:00.000Z", "scopes": ["docker-worker:cache:x"],
            "payload": {"image": "busybox", "command": ["true"], "maxRunTime": 60},
            "metadata": {"name": "t", "description": "d", "owner": "o@example.com", "source": "https://example.com"},
            "tags": {}, "extra": {}, "newTaskField": true
        }
    })
}

async fn run_client(server: &MockServer, first: &taskcluster::Credentials) -> RunClient {
    let qc = client(server, options());
    qc.run_client_for(
        TASK_ID,
        0,
        Credentials::temporary(
            first.client_id.clone(),
            first.access_token.clone(),
            first.certificate.clone().unwrap(),
        ),
        Utc::now() + chrono::Duration::minutes(20),
    )
    .unwrap()
}

fn hawk_header(req: &Request) -> hawk::Header {
    let value = req
        .headers
        .get("authorization")
        .expect("request is signed")
        .to_str()
        .unwrap();
    let rest = value.strip_prefix("Hawk ").expect("Hawk scheme");
    hawk::Header::from_str(rest).unwrap()
}

/// The Hawk id of a request.
fn hawk_id(req: &Request) -> String {
    hawk_header(req).id.expect("hawk id")
}

/// True when the request's MAC was made with `access_token`.
fn hawk_valid(req: &Request, access_token: &str) -> bool {
    let header = hawk_header(req);
    // wiremock's `url` has no authority: take host and port from the Host header
    let host_header = req.headers["host"].to_str().unwrap();
    let (host, port) = host_header.rsplit_once(':').unwrap();
    let port: u16 = port.parse().unwrap();
    let key = hawk::Key::new(access_token, hawk::SHA256).unwrap();
    hawk::RequestBuilder::new(req.method.as_str(), host, port, req.url.path())
        .request()
        .validate_header(&header, &key, Duration::from_secs(600))
}

async fn requests(server: &MockServer) -> Vec<Request> {
    server.received_requests().await.unwrap()
}

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn tc_error(status: u16, code: &str, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({"code": code, "message": message}))
}

// ---------------------------------------------------------------------------------------------
// claim, reclaim, reports

#[tokio::test]
async fn claim_work_posts_schema_body_to_encoded_queue_id_and_parses_leniently() {
    let server = MockServer::start().await;
    let first = temp_credentials("task-run/1");
    Mock::given(method("POST"))
        .and(path("/api/queue/v1/claim-work/proj%2Fwt"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"tasks": [claim_json(&first)], "futureTopLevel": 1})),
        )
        .expect(1)
        .mount(&server)
        .await;

    let qc = client(&server, options());
    let claims = qc.claim_work("proj/wt", "wg", "wi", 100).await.unwrap();

    assert_eq!(claims.len(), 1);
    let c = &claims[0];
    assert_eq!(c.task_id(), TASK_ID);
    assert_eq!(c.run_id, 0);
    assert_eq!(c.task.payload["maxRunTime"], 60);
    assert_eq!(c.task.scopes, vec!["docker-worker:cache:x"]);
    assert_eq!(
        c.task.expires,
        Some(Utc.with_ymd_and_hms(2031, 1, 1, 0, 0, 0).unwrap())
    );
    assert_eq!(c.credentials.client_id, first.client_id);
    assert!(
        !format!("{c:?}").contains(&first.access_token),
        "Debug leaks the token"
    );

    let reqs = requests(&server).await;
    let body: Value = reqs[0].body_json().unwrap();
    assert_eq!(
        body,
        json!({"workerGroup": "wg", "workerId": "wi", "tasks": 32}),
        "tasks is clamped to the queue's maximum"
    );
    assert_eq!(hawk_id(&reqs[0]), "project/worker");
    assert!(hawk_valid(&reqs[0], WORKER_TOKEN));
}

#[tokio::test]
async fn every_call_after_a_reclaim_uses_the_newest_credentials() {
    let server = MockServer::start().await;
    let c1 = temp_credentials("task-run/1");
    let c2 = temp_credentials("task-run/2");
    let c3 = temp_credentials("task-run/3");
    let reclaim_path = format!("/api/queue/v1/task/{TASK_ID}/runs/0/reclaim");
    for (creds, until) in [
        (&c2, "2030-01-01T00:40:00.000Z"),
        (&c3, "2030-01-01T01:00:00.000Z"),
    ] {
        Mock::given(method("POST"))
            .and(path(reclaim_path.as_str()))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "status": status_json("running", "running"), "runId": 0,
                "workerGroup": "wg", "workerId": "wi", "takenUntil": until,
                "credentials": creds_json(creds)
            })))
            .up_to_n_times(1)
            .mount(&server)
            .await;
    }
    Mock::given(method("GET"))
        .and(path(format!("/api/queue/v1/task/{TASK_ID}/status")))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"status": status_json("running", "running")})),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!(
            "/api/queue/v1/task/{TASK_ID}/runs/0/completed"
        )))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"status": status_json("completed", "completed")})),
        )
        .mount(&server)
        .await;

    let run = run_client(&server, &c1).await;
    let mut watch = run.watch_credentials();
    assert_eq!(watch.current().client_id, c1.client_id);

    run.status().await.unwrap();
    let r = run.reclaim().await.unwrap();
    assert_eq!(
        r.taken_until,
        Utc.with_ymd_and_hms(2030, 1, 1, 0, 40, 0).unwrap()
    );
    assert_eq!(run.taken_until(), r.taken_until);
    assert!(watch.changed().await);
    assert_eq!(watch.current().client_id, c2.client_id);
    // a clone shares the cell
    let clone = run.clone();
    clone.status().await.unwrap();
    clone.reclaim().await.unwrap();
    assert_eq!(run.credentials().client_id, c3.client_id);
    let status = run.report_completed().await.unwrap();
    assert!(status.run_is_resolved(0));

    let reqs = requests(&server).await;
    let signed: Vec<(String, String)> = reqs
        .iter()
        .map(|r| {
            (
                r.url.path().rsplit('/').next().unwrap().to_owned(),
                hawk_id(r),
            )
        })
        .collect();
    assert_eq!(
        signed,
        vec![
            ("status".to_owned(), c1.client_id.clone()),
            ("reclaim".to_owned(), c1.client_id.clone()),
            ("status".to_owned(), c2.client_id.clone()),
            ("reclaim".to_owned(), c2.client_id.clone()),
            ("completed".to_owned(), c3.client_id.clone()),
        ]
    );
    let tokens = [&c1, &c1, &c2, &c2, &c3];
    for (req, creds) in reqs.iter().zip(tokens) {
        assert!(
            hawk_valid(req, &creds.access_token),
            "MAC with newest token"
        );
    }
    assert!(
        !hawk_valid(&reqs[4], &c1.access_token),
        "the check can fail"
    );
    // the temporary credentials carry their certificate in Hawk's ext
    assert!(hawk_header(&reqs[4]).ext.is_some());
}

#[tokio::test]
async fn conflict_is_detected_on_reclaim_and_reports() {
    let server = MockServer::start().await;
    let c1 = temp_credentials("task-run/1");
    Mock::given(method("POST"))
        .and(path_regex(
            r"^/api/queue/v1/task/[^/]+/runs/0/(reclaim|completed)$",
        ))
        .respond_with(tc_error(
            409,
            "RequestConflict",
            "run 0 was resolved: canceled",
        ))
        .mount(&server)
        .await;
    let run = run_client(&server, &c1).await;

    let e = run.reclaim().await.unwrap_err();
    assert!(e.is_conflict(), "{e}");
    assert_eq!(e.status(), Some(409));
    assert!(e.to_string().contains("canceled"), "{e}");
    assert!(run.report_completed().await.unwrap_err().is_conflict());
    assert_eq!(requests(&server).await.len(), 2, "409 is never retried");
    // the credentials are unchanged after a failed reclaim
    assert_eq!(run.credentials().client_id, c1.client_id);
}

#[tokio::test]
async fn server_errors_are_retried_then_succeed() {
    let server = MockServer::start().await;
    let c1 = temp_credentials("task-run/1");
    let failed = format!("/api/queue/v1/task/{TASK_ID}/runs/0/failed");
    Mock::given(method("POST"))
        .and(path(failed.as_str()))
        .respond_with(tc_error(500, "InternalServerError", "oops"))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(failed.as_str()))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"status": status_json("failed", "failed")})),
        )
        .mount(&server)
        .await;
    let run = run_client(&server, &c1).await;
    let status = run.report_failed().await.unwrap();
    assert_eq!(status.runs[0].state, docker_worker::queue::RunState::Failed);
    assert_eq!(requests(&server).await.len(), 3);
}

#[tokio::test]
async fn server_errors_give_up_after_the_retries() {
    let server = MockServer::start().await;
    let c1 = temp_credentials("task-run/1");
    Mock::given(method("GET"))
        .respond_with(tc_error(503, "Unavailable", "down"))
        .mount(&server)
        .await;
    let run = run_client(&server, &c1).await;
    let e = run.status().await.unwrap_err();
    assert!(matches!(e, QueueError::Server { status: 503, .. }), "{e:?}");
    assert_eq!(requests(&server).await.len(), 3, "first try + 2 retries");
}

#[tokio::test]
async fn client_errors_are_classified_and_not_retried() {
    let server = MockServer::start().await;
    let c1 = temp_credentials("task-run/1");
    Mock::given(method("POST"))
        .and(path_regex("/exception$"))
        .respond_with(tc_error(400, "InputValidationError", "bad reason"))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path_regex("/completed$"))
        .respond_with(tc_error(403, "InsufficientScopes", "missing scope"))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path_regex("/failed$"))
        .respond_with(tc_error(401, "AuthenticationFailed", "bad mac"))
        .mount(&server)
        .await;
    let run = run_client(&server, &c1).await;

    let e = run
        .report_exception(ExceptionReason::InternalError)
        .await
        .unwrap_err();
    assert!(
        matches!(e, QueueError::Rejected { status: 400, .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("bad reason"));
    let e = run.report_completed().await.unwrap_err();
    assert!(
        matches!(e, QueueError::Unauthorized { status: 403, .. }),
        "{e:?}"
    );
    let e = run.report_failed().await.unwrap_err();
    assert!(
        matches!(e, QueueError::Unauthorized { status: 401, .. }),
        "{e:?}"
    );
    assert_eq!(requests(&server).await.len(), 3);
}

#[tokio::test]
async fn network_errors_are_reported_after_retries() {
    // a port nobody listens on
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let root = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let qc = QueueClient::with_options(&root, worker_credentials(), options()).unwrap();
    let e = qc.claim_work("proj/wt", "wg", "wi", 1).await.unwrap_err();
    assert!(matches!(e, QueueError::Network { .. }), "{e:?}");
    assert_eq!(e.status(), None);
}

#[tokio::test]
async fn report_exception_sends_the_reason() {
    let server = MockServer::start().await;
    let c1 = temp_credentials("task-run/1");
    Mock::given(method("POST"))
        .and(path(format!(
            "/api/queue/v1/task/{TASK_ID}/runs/0/exception"
        )))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"status": status_json("exception", "exception")})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let run = run_client(&server, &c1).await;
    run.report_exception(ExceptionReason::WorkerShutdown)
        .await
        .unwrap();
    let body: Value = requests(&server).await[0].body_json().unwrap();
    assert_eq!(body, json!({"reason": "worker-shutdown"}));
}

// ---------------------------------------------------------------------------------------------
// reference, link, error artifacts

#[tokio::test]
async fn reference_link_and_error_artifacts_follow_the_schema() {
    let server = MockServer::start().await;
    let c1 = temp_credentials("task-run/1");
    for kind in ["reference", "link", "error"] {
        Mock::given(method("POST"))
            .and(path_regex("/artifacts/"))
            .and(wiremock::matchers::body_partial_json(
                json!({"storageType": kind}),
            ))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"storageType": kind})))
            .mount(&server)
            .await;
    }
    let run = run_client(&server, &c1).await;
    run.create_reference(
        "public/logs/live.log",
        "http://worker:60023/log/abc",
        expires(),
        "text/plain; charset=utf-8",
    )
    .await
    .unwrap();
    run.create_link(
        "public/logs/live.log",
        "public/logs/live_backing.log",
        expires(),
    )
    .await
    .unwrap();
    run.create_error(
        "public/missing dir/x",
        ErrorArtifactReason::FileMissingOnWorker,
        &"é".repeat(3000),
        expires(),
    )
    .await
    .unwrap();

    let reqs = requests(&server).await;
    let base = format!("/api/queue/v1/task/{TASK_ID}/runs/0/artifacts/");
    assert_eq!(
        reqs[0].url.path(),
        format!("{base}public%2Flogs%2Flive.log")
    );
    assert_eq!(
        reqs[0].body_json::<Value>().unwrap(),
        json!({"storageType": "reference", "expires": "2030-01-31T12:00:00.000Z",
               "url": "http://worker:60023/log/abc", "contentType": "text/plain; charset=utf-8"})
    );
    assert_eq!(
        reqs[1].body_json::<Value>().unwrap(),
        json!({"storageType": "link", "expires": "2030-01-31T12:00:00.000Z",
               "artifact": "public/logs/live_backing.log"})
    );
    assert_eq!(
        reqs[2].url.path(),
        format!("{base}public%2Fmissing%20dir%2Fx")
    );
    let body: Value = reqs[2].body_json().unwrap();
    assert_eq!(body["reason"], "file-missing-on-worker");
    assert!(body["message"].as_str().unwrap().len() <= 4096);
    assert_eq!(
        body.as_object().unwrap().len(),
        4,
        "storageType, expires, reason, message"
    );
}

// ---------------------------------------------------------------------------------------------
// object uploads

/// Stubs for createArtifact(object) -> createUpload -> finishUpload -> finishArtifact.
/// `put_url` is what createUpload answers for putUrl proposals.
async fn mount_object_service(server: &MockServer, object_creds: &taskcluster::Credentials) {
    Mock::given(method("POST"))
        .and(path_regex("/api/queue/v1/task/.*/artifacts/"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "storageType": "object", "name": format!("t/{TASK_ID}/0/public/build/out.bin"),
            "projectId": "none", "uploadId": UPLOAD_ID, "expires": "2030-01-31T12:00:00.000Z",
            "credentials": creds_json(object_creds)
        })))
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .and(path_regex("^/api/object/v1/finish-upload/"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
        .mount(server)
        .await;
    Mock::given(method("PUT"))
        .and(path_regex("/api/queue/v1/task/.*/artifacts/"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
        .mount(server)
        .await;
}

fn object_path(kind: &str) -> String {
    format!("/api/object/v1/{kind}/t%2F{TASK_ID}%2F0%2Fpublic%2Fbuild%2Fout.bin")
}

#[tokio::test]
async fn small_object_artifacts_go_inline() {
    let server = MockServer::start().await;
    let c1 = temp_credentials("task-run/1");
    let object_creds = temp_credentials("object-upload/1");
    mount_object_service(&server, &object_creds).await;
    Mock::given(method("PUT"))
        .and(path(object_path("upload")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "projectId": "none", "uploadId": UPLOAD_ID, "expires": "2030-01-31T12:00:00.000Z",
            "uploadMethod": {"dataInline": true}
        })))
        .mount(&server)
        .await;

    let run = run_client(&server, &c1).await;
    let content = Bytes::from_static(b"hello, artifact\n");
    run.upload_file(
        "public/build/out.bin",
        "text/plain",
        expires(),
        &BytesSource(content.clone()),
    )
    .await
    .unwrap();

    let reqs = requests(&server).await;
    let seq: Vec<(String, String)> = reqs
        .iter()
        .map(|r| (r.method.to_string(), r.url.path().to_owned()))
        .collect();
    let artifact =
        format!("/api/queue/v1/task/{TASK_ID}/runs/0/artifacts/public%2Fbuild%2Fout.bin");
    assert_eq!(
        seq,
        vec![
            ("POST".to_owned(), artifact.clone()),
            ("PUT".to_owned(), object_path("upload")),
            ("POST".to_owned(), object_path("finish-upload")),
            ("PUT".to_owned(), artifact),
        ]
    );
    assert_eq!(
        reqs[0].body_json::<Value>().unwrap(),
        json!({"storageType": "object", "expires": "2030-01-31T12:00:00.000Z",
               "contentType": "text/plain", "contentLength": content.len()})
    );
    let create: Value = reqs[1].body_json().unwrap();
    assert_eq!(
        create,
        json!({"projectId": "none", "uploadId": UPLOAD_ID, "expires": "2030-01-31T12:00:00.000Z",
               "proposedUploadMethods": {"dataInline": {"contentType": "text/plain",
                   "objectData": base64::engine::general_purpose::STANDARD.encode(&content)}}})
    );
    let finish: Value = reqs[2].body_json().unwrap();
    assert_eq!(finish["uploadId"], UPLOAD_ID);
    assert_eq!(finish["projectId"], "none");
    assert_eq!(finish["hashes"]["sha256"], sha256_hex(&content));
    assert_eq!(finish["hashes"]["sha512"].as_str().unwrap().len(), 128);
    assert_eq!(
        reqs[3].body_json::<Value>().unwrap(),
        json!({"uploadId": UPLOAD_ID})
    );
    // queue calls use the run's credentials; object calls the credentials from createArtifact
    assert_eq!(hawk_id(&reqs[0]), c1.client_id);
    assert_eq!(hawk_id(&reqs[1]), object_creds.client_id);
    assert!(hawk_valid(&reqs[1], &object_creds.access_token));
    assert_eq!(hawk_id(&reqs[2]), object_creds.client_id);
    assert_eq!(hawk_id(&reqs[3]), c1.client_id);
}

#[tokio::test]
async fn large_object_artifacts_are_put_to_the_url_with_its_headers_and_retried() {
    let server = MockServer::start().await;
    let c1 = temp_credentials("task-run/1");
    let object_creds = temp_credentials("object-upload/1");
    mount_object_service(&server, &object_creds).await;
    let put_target = format!("{}/bucket/object-1", server.uri());
    Mock::given(method("PUT"))
        .and(path(object_path("upload")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "projectId": "none", "uploadId": UPLOAD_ID, "expires": "2030-01-31T12:00:00.000Z",
            "uploadMethod": {"putUrl": {"url": put_target, "expires": "2030-01-01T00:00:00.000Z",
                "headers": {"Content-Type": "application/octet-stream", "X-Required": "yes"}}}
        })))
        .mount(&server)
        .await;
    // the first PUT fails: a new upload URL is requested and the PUT repeated
    Mock::given(method("PUT"))
        .and(path("/bucket/object-1"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path("/bucket/object-1"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;

    let content: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("out.bin");
    std::fs::write(&file, &content).unwrap();
    let source = FileSource::new(&file).await.unwrap();

    let run = run_client(&server, &c1).await;
    run.upload_file(
        "public/build/out.bin",
        "application/octet-stream",
        expires(),
        &source,
    )
    .await
    .unwrap();

    let reqs = requests(&server).await;
    let seq: Vec<String> = reqs
        .iter()
        .map(|r| format!("{} {}", r.method, r.url.path()))
        .collect();
    assert_eq!(seq.len(), 7, "{seq:#?}");
    assert_eq!(seq[1], format!("PUT {}", object_path("upload")));
    assert_eq!(seq[2], "PUT /bucket/object-1");
    assert_eq!(
        seq[3],
        format!("PUT {}", object_path("upload")),
        "new URL after a failed PUT"
    );
    assert_eq!(seq[4], "PUT /bucket/object-1");
    assert_eq!(seq[5], format!("POST {}", object_path("finish-upload")));

    let create: Value = reqs[1].body_json().unwrap();
    assert_eq!(
        create["proposedUploadMethods"],
        json!({"putUrl": {"contentType": "application/octet-stream", "contentLength": content.len()}})
    );
    let put = &reqs[4];
    assert_eq!(put.body, content);
    assert_eq!(put.headers["x-required"], "yes");
    assert_eq!(put.headers["content-type"], "application/octet-stream");
    assert_eq!(put.headers["content-length"], content.len().to_string());
    assert!(put.headers.get("authorization").is_none());
    assert!(put.headers.get("transfer-encoding").is_none());
    let finish: Value = reqs[5].body_json().unwrap();
    assert_eq!(finish["hashes"]["sha256"], sha256_hex(&content));
}

#[tokio::test]
async fn put_failures_give_up_after_the_retries() {
    let server = MockServer::start().await;
    let c1 = temp_credentials("task-run/1");
    let object_creds = temp_credentials("object-upload/1");
    mount_object_service(&server, &object_creds).await;
    Mock::given(method("PUT"))
        .and(path(object_path("upload")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "projectId": "none", "uploadId": UPLOAD_ID, "expires": "2030-01-31T12:00:00.000Z",
            "uploadMethod": {"putUrl": {"url": format!("{}/bucket/o", server.uri()),
                "expires": "2030-01-01T00:00:00.000Z", "headers": {}}}
        })))
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path("/bucket/o"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&server)
        .await;
    let run = run_client(&server, &c1).await;
    let e = run
        .upload_file(
            "public/build/out.bin",
            "application/octet-stream",
            expires(),
            &BytesSource(Bytes::from(vec![1u8; 20_000])),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, QueueError::Server { status: 500, .. }), "{e:?}");
    let puts = requests(&server)
        .await
        .iter()
        .filter(|r| r.url.path() == "/bucket/o")
        .count();
    assert_eq!(puts, 3, "first try + 2 retries");
}

#[tokio::test]
async fn an_expired_upload_url_is_replaced_before_the_put() {
    let server = MockServer::start().await;
    let c1 = temp_credentials("task-run/1");
    let object_creds = temp_credentials("object-upload/1");
    mount_object_service(&server, &object_creds).await;
    for (url_path, url_expires) in [
        ("/bucket/stale", "2001-01-01T00:00:00.000Z"),
        ("/bucket/fresh", "2030-01-01T00:00:00.000Z"),
    ] {
        Mock::given(method("PUT"))
            .and(path(object_path("upload")))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "projectId": "none", "uploadId": UPLOAD_ID, "expires": "2030-01-31T12:00:00.000Z",
                "uploadMethod": {"putUrl": {"url": format!("{}{url_path}", server.uri()),
                    "expires": url_expires, "headers": {}}}
            })))
            .up_to_n_times(1)
            .mount(&server)
            .await;
    }
    Mock::given(method("PUT"))
        .and(path_regex("^/bucket/"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let run = run_client(&server, &c1).await;
    run.upload_file(
        "public/build/out.bin",
        "application/octet-stream",
        expires(),
        &BytesSource(Bytes::from(vec![7u8; 10_000])),
    )
    .await
    .unwrap();
    let puts: Vec<String> = requests(&server)
        .await
        .iter()
        .filter(|r| r.url.path().starts_with("/bucket/"))
        .map(|r| r.url.path().to_owned())
        .collect();
    assert_eq!(
        puts,
        vec!["/bucket/fresh"],
        "nothing is sent to an expired URL"
    );
}

// ---------------------------------------------------------------------------------------------
// s3 uploads

async fn s3_client(server: &MockServer, c1: &taskcluster::Credentials) -> RunClient {
    let mut opts = options();
    opts.upload.storage_type = StorageType::S3;
    let qc = client(server, opts);
    qc.run_client_for(
        TASK_ID,
        0,
        Credentials::temporary(
            c1.client_id.clone(),
            c1.access_token.clone(),
            c1.certificate.clone().unwrap(),
        ),
        Utc::now(),
    )
    .unwrap()
}

async fn mount_s3(server: &MockServer) {
    Mock::given(method("POST"))
        .and(path_regex("/api/queue/v1/task/.*/artifacts/"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "storageType": "s3", "putUrl": format!("{}/s3/put?X-Amz-Signature=secret", server.uri()),
            "expires": "2030-01-31T12:00:00.000Z", "contentType": "text/plain"
        })))
        .mount(server)
        .await;
    Mock::given(method("PUT"))
        .and(path("/s3/put"))
        .respond_with(ResponseTemplate::new(200))
        .mount(server)
        .await;
}

#[tokio::test]
async fn s3_artifacts_are_gzipped_unless_already_compressed() {
    let server = MockServer::start().await;
    let c1 = temp_credentials("task-run/1");
    mount_s3(&server).await;
    let run = s3_client(&server, &c1).await;
    let log = Bytes::from("line of a task log\r\n".repeat(5000));

    run.upload_file(
        "public/logs/live_backing.log",
        "text/plain; charset=utf-8",
        expires(),
        &BytesSource(log.clone()),
    )
    .await
    .unwrap();
    run.upload_file(
        "public/dist/app.tar.gz",
        "application/gzip",
        expires(),
        &BytesSource(log.clone()),
    )
    .await
    .unwrap();

    let reqs = requests(&server).await;
    assert_eq!(reqs.len(), 4);
    let create: Value = reqs[0].body_json().unwrap();
    let put = &reqs[1];
    assert_eq!(put.headers["content-encoding"], "gzip");
    assert_eq!(put.headers["content-type"], "text/plain; charset=utf-8");
    assert_eq!(put.headers["content-length"], put.body.len().to_string());
    assert!(put.body.len() < log.len() / 10);
    let mut unzipped = Vec::new();
    gunzip(&put.body, &mut unzipped).await;
    assert_eq!(unzipped, log);
    assert_eq!(
        create,
        json!({"storageType": "s3", "expires": "2030-01-31T12:00:00.000Z",
               "contentType": "text/plain; charset=utf-8", "contentLength": put.body.len()})
    );

    let raw = &reqs[3];
    assert!(raw.headers.get("content-encoding").is_none());
    assert_eq!(raw.body, log);
}

#[tokio::test]
async fn a_failed_s3_put_is_retried_with_a_new_put_url() {
    let server = MockServer::start().await;
    let c1 = temp_credentials("task-run/1");
    Mock::given(method("PUT"))
        .and(path("/s3/put"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    mount_s3(&server).await;
    let run = s3_client(&server, &c1).await;
    run.upload_file(
        "public/x.png",
        "image/png",
        expires(),
        &BytesSource(Bytes::from_static(b"png")),
    )
    .await
    .unwrap();
    let seq: Vec<String> = requests(&server)
        .await
        .iter()
        .map(|r| format!("{} {}", r.method, r.url.path()))
        .collect();
    let create = format!("POST /api/queue/v1/task/{TASK_ID}/runs/0/artifacts/public%2Fx.png");
    assert_eq!(
        seq,
        vec![
            create.clone(),
            "PUT /s3/put".into(),
            create,
            "PUT /s3/put".into()
        ]
    );
}

/// Decompress with the same crate the client uses (no extra test dependency).
async fn gunzip(data: &[u8], out: &mut Vec<u8>) {
    let mut dec = async_compression::tokio::bufread::GzipDecoder::new(data);
    dec.read_to_end(out).await.unwrap();
}

#[tokio::test]
async fn s3_put_errors_do_not_leak_the_signed_url() {
    let server = MockServer::start().await;
    let c1 = temp_credentials("task-run/1");
    Mock::given(method("POST"))
        .and(path_regex("/artifacts/"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "storageType": "s3", "putUrl": format!("{}/s3/put?X-Amz-Signature=secret", server.uri()),
            "expires": "2030-01-31T12:00:00.000Z", "contentType": "text/plain"
        })))
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path("/s3/put"))
        .respond_with(
            ResponseTemplate::new(403)
                .set_body_string("<SignatureProvided>secret</SignatureProvided>"),
        )
        .mount(&server)
        .await;
    let run = s3_client(&server, &c1).await;
    let e = run
        .upload_file(
            "public/x.zip",
            "application/zip",
            expires(),
            &BytesSource(Bytes::from_static(b"zip")),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e, QueueError::Unauthorized { status: 403, .. }),
        "{e:?}"
    );
    assert!(!format!("{e} {e:?}").contains("secret"), "{e:?}");
    assert_eq!(requests(&server).await.len(), 2, "a 403 is not retried");
}

// ---------------------------------------------------------------------------------------------
// a large upload, streamed

/// 50 MB of generated content: nothing is held in memory but a 1 MB pattern, and each `open`
/// starts over.
struct Generated {
    len: u64,
    produced: Arc<AtomicU64>,
}

/// Period of the generated content (a prime, so it does not line up with any chunk size).
const PERIOD: usize = 1_000_003;

fn pattern() -> &'static [u8] {
    static PATTERN: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    PATTERN.get_or_init(|| {
        (0..PERIOD as u64)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect()
    })
}

struct GeneratedReader {
    pos: u64,
    len: u64,
    produced: Arc<AtomicU64>,
}

impl AsyncRead for GeneratedReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let offset = (self.pos % PERIOD as u64) as usize;
        let n = (buf.remaining() as u64)
            .min(self.len - self.pos)
            .min((PERIOD - offset) as u64) as usize;
        buf.put_slice(&pattern()[offset..offset + n]);
        self.pos += n as u64;
        self.produced.fetch_add(n as u64, Ordering::SeqCst);
        Poll::Ready(Ok(()))
    }
}

#[async_trait]
impl UploadSource for Generated {
    async fn open(&self) -> std::io::Result<Box<dyn AsyncRead + Send + Unpin>> {
        self.produced.store(0, Ordering::SeqCst);
        Ok(Box::new(GeneratedReader {
            pos: 0,
            len: self.len,
            produced: self.produced.clone(),
        }))
    }
    fn len(&self) -> u64 {
        self.len
    }
}

/// What the streaming PUT target saw.
#[derive(Default)]
struct Received {
    bytes: AtomicU64,
    max_ahead: AtomicU64,
}

/// A minimal HTTP/1.1 PUT target that hashes the body as it arrives and records how far the
/// client's reader ever ran ahead of what the server had received. Its receive buffer is small
/// so the kernel does not absorb the body either.
async fn streaming_put_target(
    produced: Arc<AtomicU64>,
    received: Arc<Received>,
) -> (String, tokio::task::JoinHandle<(String, Vec<String>)>) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(128 * 1024).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let url = format!("http://{}/streamed", listener.local_addr().unwrap());
    let handle = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut stream = tokio::io::BufReader::new(stream);
        let mut head = Vec::new();
        loop {
            let mut line = String::new();
            stream.read_line(&mut line).await.unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
            head.push(line.trim_end().to_owned());
        }
        let len: u64 = head
            .iter()
            .find_map(|h| {
                let (k, v) = h.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().unwrap())
            })
            .expect("content-length");
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = 0u64;
        while got < len {
            let ahead = produced.load(Ordering::SeqCst).saturating_sub(got);
            received.max_ahead.fetch_max(ahead, Ordering::SeqCst);
            let want = buf.len().min((len - got) as usize);
            let n = stream.read(&mut buf[..want]).await.unwrap();
            assert!(n > 0, "body ended early");
            hasher.update(&buf[..n]);
            got += n as u64;
            received.bytes.store(got, Ordering::SeqCst);
        }
        stream
            .get_mut()
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .await
            .unwrap();
        let digest: String = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        (digest, head)
    });
    (url, handle)
}

#[tokio::test]
async fn a_50_mb_upload_is_streamed_not_buffered() {
    const LEN: u64 = 50 * 1024 * 1024;
    let server = MockServer::start().await;
    let c1 = temp_credentials("task-run/1");
    let object_creds = temp_credentials("object-upload/1");
    mount_object_service(&server, &object_creds).await;

    let produced = Arc::new(AtomicU64::new(0));
    let received = Arc::new(Received::default());
    let (put_url, target) = streaming_put_target(produced.clone(), received.clone()).await;
    Mock::given(method("PUT"))
        .and(path(object_path("upload")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "projectId": "none", "uploadId": UPLOAD_ID, "expires": "2030-01-31T12:00:00.000Z",
            "uploadMethod": {"putUrl": {"url": put_url, "expires": "2030-01-01T00:00:00.000Z",
                "headers": {"Content-Type": "application/octet-stream"}}}
        })))
        .mount(&server)
        .await;

    let run = run_client(&server, &c1).await;
    let source = Generated {
        len: LEN,
        produced: produced.clone(),
    };
    run.upload_file(
        "public/build/out.bin",
        "application/octet-stream",
        expires(),
        &source,
    )
    .await
    .unwrap();

    let (server_sha256, head) = target.await.unwrap();
    assert_eq!(received.bytes.load(Ordering::SeqCst), LEN);
    assert!(head
        .iter()
        .any(|h| h.eq_ignore_ascii_case(&format!("content-length: {LEN}"))));
    assert!(!head
        .iter()
        .any(|h| h.to_ascii_lowercase().starts_with("transfer-encoding")));
    let ahead = received.max_ahead.load(Ordering::SeqCst);
    eprintln!("client read at most {ahead} bytes ahead of the server");
    assert!(
        ahead < 12 * 1024 * 1024,
        "the client read {ahead} bytes ahead of the server: the body was buffered"
    );

    // the hash sent to finishUpload is the hash of what the server received
    let finish = requests(&server)
        .await
        .into_iter()
        .find(|r| r.url.path().starts_with("/api/object/v1/finish-upload/"))
        .unwrap();
    let finish: Value = finish.body_json().unwrap();
    assert_eq!(finish["hashes"]["sha256"], server_sha256);
    let mut expected = Sha256::new();
    let mut left = LEN as usize;
    while left > 0 {
        let n = left.min(PERIOD);
        expected.update(&pattern()[..n]);
        left -= n;
    }
    let expected: String = expected
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(server_sha256, expected);
}
