//! The fake queue, driven by the official `taskcluster` crate's clients with the credentials
//! it hands out, as a worker would.

use docker_worker::testkit::fake_queue::{
    new_task_id, FakeCredentials, FakeQueue, FakeQueueOptions, Fault, FaultKind, RunState,
};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};
use taskcluster::{ClientBuilder, Credentials, Object, Queue, Retry};

fn builder(fq: &FakeQueue, creds: Option<Credentials>) -> ClientBuilder {
    let mut b = ClientBuilder::new(fq.root_url())
        .retry(Retry {
            retries: 0,
            ..Retry::default()
        })
        .timeout(Duration::from_secs(30));
    if let Some(c) = creds {
        b = b.credentials(c);
    }
    b
}

fn queue(fq: &FakeQueue, creds: impl Into<Credentials>) -> Queue {
    Queue::new(builder(fq, Some(creds.into()))).unwrap()
}

fn creds_of(v: &Value) -> Credentials {
    Credentials::new_with_certificate(
        v["clientId"].as_str().unwrap(),
        v["accessToken"].as_str().unwrap(),
        v["certificate"].as_str().unwrap(),
    )
}

fn status_of(e: &anyhow::Error) -> Option<u16> {
    taskcluster::err_status_code(e).map(|s| s.as_u16())
}

async fn start(opts: FakeQueueOptions) -> FakeQueue {
    FakeQueue::start(FakeQueueOptions {
        claim_work_wait: Duration::from_millis(300),
        ..opts
    })
    .await
    .unwrap()
}

/// Create one task and claim it; returns (taskId, claim).
async fn claim_one(fq: &FakeQueue) -> (String, Value) {
    let task_id = new_task_id();
    fq.create_task(
        &task_id,
        json!({"payload": {"image": "x", "maxRunTime": 10}}),
    )
    .unwrap();
    let worker = queue(fq, fq.worker_credentials());
    let res = worker
        .claimWork(
            &fq.task_queue_id(),
            &json!({"workerGroup": "wg", "workerId": "w1", "tasks": 4}),
        )
        .await
        .unwrap();
    let claims = res["tasks"].as_array().unwrap();
    assert_eq!(claims.len(), 1, "{res}");
    assert_eq!(claims[0]["status"]["taskId"], task_id.as_str());
    (task_id, claims[0].clone())
}

#[tokio::test]
async fn slugids_look_like_taskcluster_ids() {
    let id = new_task_id();
    assert_eq!(id.len(), 22);
    assert!(id
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
    assert_ne!(id, new_task_id());
}

#[tokio::test]
async fn claim_gives_task_and_temporary_credentials() {
    let fq = start(FakeQueueOptions::default()).await;
    let (task_id, claim) = claim_one(&fq).await;
    assert_eq!(claim["runId"], 0);
    assert_eq!(claim["workerGroup"], "wg");
    assert_eq!(claim["task"]["payload"]["image"], "x");
    assert_eq!(claim["task"]["retries"], 5);
    assert_eq!(claim["status"]["runs"][0]["state"], "running");
    let client_id = claim["credentials"]["clientId"].as_str().unwrap();
    assert!(client_id.starts_with(&format!("task-client/{task_id}/0/on/wg/w1/until/")));
    let cert: Value =
        serde_json::from_str(claim["credentials"]["certificate"].as_str().unwrap()).unwrap();
    assert_eq!(cert["version"], 1);
    assert_eq!(cert["issuer"], "static/taskcluster/queue");
    assert!(cert["scopes"]
        .as_array()
        .unwrap()
        .contains(&json!(format!("queue:resolve-task:{task_id}/0"))));

    // Task credentials can read the status; the worker's own credentials can't resolve.
    let tq = queue(&fq, creds_of(&claim["credentials"]));
    let st = tq.status(&task_id).await.unwrap();
    assert_eq!(st["status"]["state"], "running");
    let worker = queue(&fq, fq.worker_credentials());
    let err = worker.reportCompleted(&task_id, "0").await.unwrap_err();
    assert_eq!(status_of(&err), Some(403));
    // Nothing else pending: the long-poll answers empty after the wait.
    let t0 = Instant::now();
    let res = worker
        .claimWork(
            &fq.task_queue_id(),
            &json!({"workerGroup": "wg", "workerId": "w1", "tasks": 1}),
        )
        .await
        .unwrap();
    assert_eq!(res["tasks"], json!([]));
    assert!(t0.elapsed() >= Duration::from_millis(250));
}

#[tokio::test]
async fn long_poll_returns_a_task_created_while_waiting() {
    let fq = FakeQueue::start(FakeQueueOptions {
        claim_work_wait: Duration::from_secs(10),
        ..Default::default()
    })
    .await
    .unwrap();
    let worker = queue(&fq, fq.worker_credentials());
    let tq = fq.task_queue_id();
    let poll = tokio::spawn(async move {
        worker
            .claimWork(
                &tq,
                &json!({"workerGroup": "wg", "workerId": "w1", "tasks": 1}),
            )
            .await
            .unwrap()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t0 = Instant::now();
    let id = fq.create_task_with_payload(json!({})).unwrap();
    let res = poll.await.unwrap();
    assert_eq!(res["tasks"][0]["status"]["taskId"], id.as_str());
    assert!(t0.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn reclaim_rotates_credentials_and_stale_ones_get_401() {
    let fq = start(FakeQueueOptions::default()).await;
    let (task_id, claim) = claim_one(&fq).await;
    let first = creds_of(&claim["credentials"]);
    let q1 = queue(&fq, first.clone());
    let re = q1.reclaimTask(&task_id, "0").await.unwrap();
    let second = creds_of(&re["credentials"]);
    assert_ne!(first.client_id, second.client_id);
    assert_ne!(first.access_token, second.access_token);
    assert!(
        re["takenUntil"].as_str().unwrap() >= claim["takenUntil"].as_str().unwrap(),
        "{re}"
    );
    assert!(fq.violations().is_empty());

    // Once the worker has used the newer credentials, the older ones are refused and the call
    // is recorded as a violation. (Until then they stay valid: a reclaim whose answer was lost
    // must not strand the worker.)
    let q2 = queue(&fq, second.clone());
    let re2 = q2.reclaimTask(&task_id, "0").await.unwrap();
    assert_ne!(
        re2["credentials"]["clientId"],
        re["credentials"]["clientId"]
    );
    let err = q1.reclaimTask(&task_id, "0").await.unwrap_err();
    assert_eq!(status_of(&err), Some(401));
    let v = fq.violations();
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(v[0].reason.contains("stale"), "{v:?}");
    assert_eq!(v[0].client_id.as_deref(), Some(first.client_id.as_str()));

    let q3 = queue(&fq, creds_of(&re2["credentials"]));
    q3.reportCompleted(&task_id, "0").await.unwrap();
    let err = q2.reportCompleted(&task_id, "0").await.unwrap_err();
    assert_eq!(status_of(&err), Some(401));
    assert_eq!(fq.violations().len(), 2);
    let calls = fq.calls();
    assert!(calls
        .iter()
        .any(|c| c.path.ends_with("/reclaim") && c.status == 401));
}

#[tokio::test]
async fn resolutions_are_recorded_and_conflicts_get_409() {
    let fq = start(FakeQueueOptions::default()).await;
    let (task_id, claim) = claim_one(&fq).await;
    let q = queue(&fq, creds_of(&claim["credentials"]));
    let st = q.reportCompleted(&task_id, "0").await.unwrap();
    assert_eq!(st["status"]["runs"][0]["state"], "completed");
    // Same resolution again: idempotent, as the real queue.
    q.reportCompleted(&task_id, "0").await.unwrap();
    // A different one: 409 RequestConflict.
    let err = q.reportFailed(&task_id, "0").await.unwrap_err();
    assert_eq!(status_of(&err), Some(409));
    assert!(
        format!("{err:#}").contains("resolved or not running"),
        "{err:#}"
    );
    let err = q.reclaimTask(&task_id, "0").await.unwrap_err();
    assert_eq!(status_of(&err), Some(409));

    let r = fq.resolutions_for(&task_id, 0);
    assert_eq!(r.len(), 3);
    assert_eq!(r.iter().filter(|r| r.effective).count(), 1);
    assert_eq!(r[2].resolution, "failed");
    assert_eq!(r[2].status, 409);
    let run = fq.run(&task_id, 0).unwrap();
    assert_eq!(run.state, RunState::Completed);
}

#[tokio::test]
async fn failed_and_exception_resolutions_and_retries() {
    let fq = start(FakeQueueOptions::default()).await;
    let (t1, c1) = claim_one(&fq).await;
    queue(&fq, creds_of(&c1["credentials"]))
        .reportFailed(&t1, "0")
        .await
        .unwrap();
    assert_eq!(fq.run(&t1, 0).unwrap().state, RunState::Failed);
    assert_eq!(fq.runs(&t1).len(), 1);

    // worker-shutdown: the queue retries with a new pending run.
    let (t2, c2) = claim_one(&fq).await;
    let q2 = queue(&fq, creds_of(&c2["credentials"]));
    let err = q2
        .reportException(&t2, "0", &json!({"reason": "canceled"}))
        .await
        .unwrap_err();
    assert_eq!(status_of(&err), Some(400));
    let st = q2
        .reportException(&t2, "0", &json!({"reason": "worker-shutdown"}))
        .await
        .unwrap();
    assert_eq!(st["status"]["runs"][1]["state"], "pending");
    assert_eq!(st["status"]["runs"][1]["reasonCreated"], "retry");
    assert_eq!(st["status"]["retriesLeft"], 4);
    // Repeating the same report is still fine.
    q2.reportException(&t2, "0", &json!({"reason": "worker-shutdown"}))
        .await
        .unwrap();
    // The retry run is claimable as run 1.
    let worker = queue(&fq, fq.worker_credentials());
    let res = worker
        .claimWork(
            &fq.task_queue_id(),
            &json!({"workerGroup": "wg", "workerId": "w2", "tasks": 1}),
        )
        .await
        .unwrap();
    assert_eq!(res["tasks"][0]["runId"], 1);

    // malformed-payload: no retry.
    let (t3, c3) = claim_one(&fq).await;
    queue(&fq, creds_of(&c3["credentials"]))
        .reportException(&t3, "0", &json!({"reason": "malformed-payload"}))
        .await
        .unwrap();
    assert_eq!(fq.runs(&t3).len(), 1);
    let st = fq.status(&t3).unwrap();
    assert_eq!(st["state"], "exception");

    // intermittent-task with retries 0: no retry.
    let t4 = new_task_id();
    fq.create_task(&t4, json!({"retries": 0})).unwrap();
    let res = worker
        .claimWork(
            &fq.task_queue_id(),
            &json!({"workerGroup": "wg", "workerId": "w2", "tasks": 1}),
        )
        .await
        .unwrap();
    assert_eq!(res["tasks"][0]["status"]["taskId"], t4.as_str());
    queue(&fq, creds_of(&res["tasks"][0]["credentials"]))
        .reportException(&t4, "0", &json!({"reason": "intermittent-task"}))
        .await
        .unwrap();
    assert_eq!(fq.runs(&t4).len(), 1);
}

#[tokio::test]
async fn claim_expiry_resolves_the_run_and_schedules_a_retry() {
    let fq = start(FakeQueueOptions {
        claim_timeout: Duration::from_secs(1),
        ..Default::default()
    })
    .await;
    let (task_id, claim) = claim_one(&fq).await;
    let run = fq
        .wait_resolved(&task_id, 0, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(run.state, RunState::Exception);
    assert_eq!(run.reason_resolved.as_deref(), Some("claim-expired"));
    let next = fq.run(&task_id, 1).unwrap();
    assert_eq!(next.state, RunState::Pending);
    assert_eq!(next.reason_created, "retry");
    let q = queue(&fq, creds_of(&claim["credentials"]));
    let err = q.reclaimTask(&task_id, "0").await.unwrap_err();
    assert_eq!(status_of(&err), Some(409), "{err:#}");
}

#[tokio::test]
async fn deadline_exceeded_resolves_the_task() {
    let fq = start(FakeQueueOptions::default()).await;
    let task_id = new_task_id();
    let deadline = chrono::Utc::now() + chrono::Duration::milliseconds(800);
    fq.create_task(
        &task_id,
        json!({"deadline": deadline.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)}),
    )
    .unwrap();
    let run = fq
        .wait_resolved(&task_id, 0, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(run.reason_resolved.as_deref(), Some("deadline-exceeded"));
}

#[tokio::test]
async fn cancel_makes_reclaim_conflict() {
    let fq = start(FakeQueueOptions::default()).await;
    let (task_id, claim) = claim_one(&fq).await;
    let admin = queue(&fq, fq.admin_credentials());
    let st = admin.cancelTask(&task_id).await.unwrap();
    assert_eq!(st["status"]["runs"][0]["reasonResolved"], "canceled");
    let q = queue(&fq, creds_of(&claim["credentials"]));
    let err = q.reclaimTask(&task_id, "0").await.unwrap_err();
    assert_eq!(status_of(&err), Some(409));
    let err = q.reportCompleted(&task_id, "0").await.unwrap_err();
    assert_eq!(status_of(&err), Some(409));
    // The worker itself may not cancel.
    let t2 = fq.create_task_with_payload(json!({})).unwrap();
    let err = queue(&fq, fq.worker_credentials())
        .cancelTask(&t2)
        .await
        .unwrap_err();
    assert_eq!(status_of(&err), Some(403));
    fq.cancel_task(&t2).unwrap();
    assert_eq!(fq.status(&t2).unwrap()["state"], "exception");
}

#[tokio::test]
async fn object_artifact_upload_through_put_url() {
    let fq = start(FakeQueueOptions::default()).await;
    let (task_id, claim) = claim_one(&fq).await;
    let q = queue(&fq, creds_of(&claim["credentials"]));
    let name = "public/logs/live_backing.log";
    let data = b"hello\r\nworld\r\n".repeat(1000);
    let expires = claim["task"]["expires"].as_str().unwrap();
    let art = q
        .createArtifact(
            &task_id,
            "0",
            name,
            &json!({"storageType": "object", "contentType": "text/plain; charset=utf-8", "expires": expires}),
        )
        .await
        .unwrap();
    assert_eq!(art["storageType"], "object");
    assert_eq!(art["name"], format!("t/{task_id}/0/{name}"));
    assert_eq!(art["projectId"], "none");
    let object_name = art["name"].as_str().unwrap();
    let upload_id = art["uploadId"].as_str().unwrap();

    let obj = Object::new(builder(&fq, Some(creds_of(&art["credentials"])))).unwrap();
    let up = obj
        .createUpload(
            object_name,
            &json!({
                "projectId": "none",
                "uploadId": upload_id,
                "expires": expires,
                "proposedUploadMethods": {"putUrl": {"contentType": "text/plain; charset=utf-8", "contentLength": data.len()}},
            }),
        )
        .await
        .unwrap();
    let put = &up["uploadMethod"]["putUrl"];
    let mut req = reqwest::Client::new().put(put["url"].as_str().unwrap());
    for (k, v) in put["headers"].as_object().unwrap() {
        req = req.header(k, v.as_str().unwrap());
    }
    let resp = req.body(data.clone()).send().await.unwrap();
    assert_eq!(resp.status(), 200);

    // A wrong hash is refused; the right one finishes the upload.
    let err = obj
        .finishUpload(
            object_name,
            &json!({"projectId": "none", "uploadId": upload_id, "hashes": {"sha256": "0".repeat(64)}}),
        )
        .await
        .unwrap_err();
    assert_eq!(status_of(&err), Some(400));
    // finishArtifact before finishUpload: conflict.
    let err = q
        .finishArtifact(&task_id, "0", name, &json!({"uploadId": upload_id}))
        .await
        .unwrap_err();
    assert_eq!(status_of(&err), Some(409));
    let sha = format!("{:x}", Sha256::digest(&data));
    let upload_id2 = new_task_id();
    let err = obj
        .finishUpload(
            object_name,
            &json!({"projectId": "none", "uploadId": upload_id2, "hashes": {"sha256": sha}}),
        )
        .await
        .unwrap_err();
    assert_eq!(status_of(&err), Some(409));
    // The object credentials only cover this object.
    let err = obj
        .createUpload(
            "t/other",
            &json!({"projectId": "none", "uploadId": upload_id, "expires": expires, "proposedUploadMethods": {}}),
        )
        .await
        .unwrap_err();
    assert_eq!(status_of(&err), Some(403));
    obj.finishUpload(
        object_name,
        &json!({"projectId": "none", "uploadId": upload_id, "hashes": {"sha256": sha}}),
    )
    .await
    .unwrap();
    q.finishArtifact(&task_id, "0", name, &json!({"uploadId": upload_id}))
        .await
        .unwrap();

    let stored = fq.artifact(&task_id, 0, name).unwrap();
    assert_eq!(stored.storage_type, "object");
    assert!(stored.present);
    assert_eq!(stored.content_type, "text/plain; charset=utf-8");
    assert_eq!(stored.bytes().unwrap(), data);

    // Readable back through the queue (public/ is anonymous), following the redirect.
    let anon = Queue::new(builder(&fq, None)).unwrap();
    let url = anon.getArtifact_url(&task_id, "0", name).unwrap();
    let body = reqwest::get(url).await.unwrap();
    assert_eq!(body.status(), 200);
    assert_eq!(body.bytes().await.unwrap().to_vec(), data);
    let list = anon.listArtifacts(&task_id, "0", None, None).await.unwrap();
    assert_eq!(list["artifacts"][0]["name"], name);
}

#[tokio::test]
async fn object_artifact_upload_data_inline() {
    let fq = start(FakeQueueOptions::default()).await;
    let (task_id, claim) = claim_one(&fq).await;
    let q = queue(&fq, creds_of(&claim["credentials"]));
    let expires = claim["task"]["expires"].as_str().unwrap();
    let art = q
        .createArtifact(
            &task_id,
            "0",
            "public/small.json",
            &json!({"storageType": "object", "contentType": "application/json", "expires": expires}),
        )
        .await
        .unwrap();
    let name = art["name"].as_str().unwrap();
    let upload_id = art["uploadId"].as_str().unwrap();
    let data = br#"{"a":1}"#;
    use base64::Engine;
    let obj = Object::new(builder(&fq, Some(creds_of(&art["credentials"])))).unwrap();
    let sha = format!("{:x}", Sha256::digest(data));
    let up = obj
        .createUpload(
            name,
            &json!({
                "projectId": "none", "uploadId": upload_id, "expires": expires,
                "hashes": {"sha256": sha},
                "proposedUploadMethods": {"dataInline": {"contentType": "application/json", "objectData": base64::engine::general_purpose::STANDARD.encode(data)}},
            }),
        )
        .await
        .unwrap();
    assert_eq!(up["uploadMethod"], json!({"dataInline": true}));
    obj.finishUpload(name, &json!({"projectId": "none", "uploadId": upload_id}))
        .await
        .unwrap();
    q.finishArtifact(
        &task_id,
        "0",
        "public/small.json",
        &json!({"uploadId": upload_id}),
    )
    .await
    .unwrap();
    assert_eq!(
        fq.artifact(&task_id, 0, "public/small.json")
            .unwrap()
            .bytes()
            .unwrap(),
        data
    );
    assert!(fq.violations().is_empty(), "{:?}", fq.violations());
}

#[tokio::test]
async fn s3_reference_link_and_error_artifacts() {
    let fq = start(FakeQueueOptions::default()).await;
    let (task_id, claim) = claim_one(&fq).await;
    let q = queue(&fq, creds_of(&claim["credentials"]));
    let expires = claim["task"]["expires"].as_str().unwrap();

    // s3 with gzip content-encoding
    let art = q
        .createArtifact(
            &task_id,
            "0",
            "public/build/out.txt",
            &json!({"storageType": "s3", "contentType": "text/plain", "expires": expires}),
        )
        .await
        .unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, b"compressed text").unwrap();
    let gz = gz.finish().unwrap();
    let resp = reqwest::Client::new()
        .put(art["putUrl"].as_str().unwrap())
        .header("Content-Type", "text/plain")
        .header("Content-Encoding", "gzip")
        .body(gz.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let stored = fq.artifact(&task_id, 0, "public/build/out.txt").unwrap();
    assert_eq!(stored.content_encoding.as_deref(), Some("gzip"));
    assert_eq!(stored.raw.as_deref(), Some(&gz[..]));
    assert_eq!(stored.text().unwrap(), "compressed text");

    // reference, then replaced by a link (live.log), and an error artifact
    q.createArtifact(
        &task_id,
        "0",
        "public/logs/live.log",
        &json!({"storageType": "reference", "url": "http://127.0.0.1:1/log/abc", "contentType": "text/plain", "expires": expires}),
    )
    .await
    .unwrap();
    assert_eq!(
        fq.artifact(&task_id, 0, "public/logs/live.log")
            .unwrap()
            .url
            .as_deref(),
        Some("http://127.0.0.1:1/log/abc")
    );
    q.createArtifact(
        &task_id,
        "0",
        "public/logs/live.log",
        &json!({"storageType": "link", "artifact": "public/build/out.txt", "contentType": "text/plain", "expires": expires}),
    )
    .await
    .unwrap();
    let live = fq.artifact(&task_id, 0, "public/logs/live.log").unwrap();
    assert_eq!(live.storage_type, "link");
    assert_eq!(live.link_target.as_deref(), Some("public/build/out.txt"));
    q.createArtifact(
        &task_id,
        "0",
        "public/missing",
        &json!({"storageType": "error", "reason": "file-missing-on-worker", "message": "no such file", "expires": expires}),
    )
    .await
    .unwrap();
    let e = fq.artifact(&task_id, 0, "public/missing").unwrap();
    assert_eq!(e.reason.as_deref(), Some("file-missing-on-worker"));

    // s3 artifacts can't be silently replaced; expiry after the task's is refused
    let err = q
        .createArtifact(
            &task_id,
            "0",
            "public/build/out.txt",
            &json!({"storageType": "s3", "contentType": "text/plain", "expires": expires}),
        )
        .await
        .unwrap_err();
    assert_eq!(status_of(&err), Some(409));
    let err = q
        .createArtifact(
            &task_id,
            "0",
            "public/late",
            &json!({"storageType": "s3", "contentType": "text/plain", "expires": "2999-01-01T00:00:00.000Z"}),
        )
        .await
        .unwrap_err();
    assert_eq!(status_of(&err), Some(400));

    // The link and the error are served as the real queue does.
    let anon = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let url = Queue::new(builder(&fq, None))
        .unwrap()
        .getArtifact_url(&task_id, "0", "public/logs/live.log")
        .unwrap();
    let r = anon.get(url).send().await.unwrap();
    assert_eq!(r.status(), 303);
    let url = Queue::new(builder(&fq, None))
        .unwrap()
        .getArtifact_url(&task_id, "0", "public/missing")
        .unwrap();
    assert_eq!(anon.get(url).send().await.unwrap().status(), 424);

    // After completion, no new artifacts.
    q.reportCompleted(&task_id, "0").await.unwrap();
    let err = q
        .createArtifact(
            &task_id,
            "0",
            "public/after",
            &json!({"storageType": "s3", "contentType": "text/plain", "expires": expires}),
        )
        .await
        .unwrap_err();
    assert_eq!(status_of(&err), Some(409));
}

#[tokio::test]
async fn bad_bodies_get_400_naming_the_field() {
    let fq = start(FakeQueueOptions::default()).await;
    let worker = queue(&fq, fq.worker_credentials());
    let err = worker
        .claimWork(
            &fq.task_queue_id(),
            &json!({"workerGroup": "wg", "workerId": "w1", "tasks": 1, "capacity": 3}),
        )
        .await
        .unwrap_err();
    assert_eq!(status_of(&err), Some(400));
    assert!(format!("{err:#}").contains("`capacity`"), "{err:#}");
    let err = worker
        .claimWork(
            &fq.task_queue_id(),
            &json!({"workerGroup": "wg", "workerId": "w1"}),
        )
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("`tasks`"), "{err:#}");
    let err = worker
        .claimWork(
            &fq.task_queue_id(),
            &json!({"workerGroup": "wg", "workerId": "w1", "tasks": 33}),
        )
        .await
        .unwrap_err();
    assert_eq!(status_of(&err), Some(400));

    let (task_id, claim) = claim_one(&fq).await;
    let q = queue(&fq, creds_of(&claim["credentials"]));
    let err = q
        .createArtifact(
            &task_id,
            "0",
            "public/x",
            &json!({"storageType": "s3", "expires": "2030-01-01T00:00:00.000Z"}),
        )
        .await
        .unwrap_err();
    assert_eq!(status_of(&err), Some(400));
    assert!(format!("{err:#}").contains("`contentType`"), "{err:#}");
    let err = q
        .reportException(
            &task_id,
            "0",
            &json!({"reason": "internal-error", "why": 1}),
        )
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("`why`"), "{err:#}");
    // Unknown task: 404 ResourceNotFound.
    let err = q.reclaimTask(&new_task_id(), "0").await.unwrap_err();
    assert_eq!(status_of(&err), Some(404));
}

#[tokio::test]
async fn bad_signatures_get_401_and_are_violations() {
    let fq = start(FakeQueueOptions::default()).await;
    let bad = FakeCredentials {
        access_token: "not-the-token".into(),
        ..fq.worker_credentials()
    };
    let err = queue(&fq, bad)
        .claimWork(
            &fq.task_queue_id(),
            &json!({"workerGroup": "wg", "workerId": "w1", "tasks": 1}),
        )
        .await
        .unwrap_err();
    assert_eq!(status_of(&err), Some(401));
    let (task_id, claim) = claim_one(&fq).await;
    // A forged certificate (signature over other scopes) is refused.
    let mut cert: Value =
        serde_json::from_str(claim["credentials"]["certificate"].as_str().unwrap()).unwrap();
    cert["scopes"] = json!(["*"]);
    let forged = Credentials::new_with_certificate(
        claim["credentials"]["clientId"].as_str().unwrap(),
        claim["credentials"]["accessToken"].as_str().unwrap(),
        cert.to_string(),
    );
    let err = queue(&fq, forged)
        .reportCompleted(&task_id, "0")
        .await
        .unwrap_err();
    assert_eq!(status_of(&err), Some(401));
    assert!(format!("{err:#}").contains("signature"), "{err:#}");
    // Temporary credentials made by the taskcluster crate itself are accepted.
    let admin: Credentials = fq.admin_credentials().into();
    let temp = admin
        .create_named_temp_creds("dw-test/temp", Duration::from_secs(60), ["queue:status:*"])
        .unwrap();
    queue(&fq, temp).status(&task_id).await.unwrap();
    assert_eq!(fq.violations().len(), 2);
}

#[tokio::test]
async fn faults_answer_500_or_drop_the_connection() {
    let fq = start(FakeQueueOptions::default()).await;
    let id = fq.create_task_with_payload(json!({})).unwrap();
    let anon = Queue::new(builder(&fq, None)).unwrap();
    fq.inject(Fault::next(2, FaultKind::ServerError).path_contains("/status"));
    for _ in 0..2 {
        let err = anon.status(&id).await.unwrap_err();
        assert_eq!(status_of(&err), Some(500));
    }
    anon.status(&id).await.unwrap();

    fq.inject(Fault::window(
        Duration::from_millis(500),
        FaultKind::DropConnection,
    ));
    let err = anon.status(&id).await.unwrap_err();
    assert_eq!(status_of(&err), None, "{err:#}");
    tokio::time::sleep(Duration::from_millis(600)).await;
    anon.status(&id).await.unwrap();
    let calls = fq.calls();
    assert_eq!(calls.iter().filter(|c| c.status == 500).count(), 2);
    assert_eq!(calls.iter().filter(|c| c.status == 0).count(), 1);

    // A delay past the client's timeout looks like a hung server.
    fq.inject(Fault::next(1, FaultKind::Delay(Duration::from_secs(3))));
    let quick = Queue::new(builder(&fq, None).timeout(Duration::from_millis(500))).unwrap();
    assert!(quick.status(&id).await.is_err());
    fq.clear_faults();
    quick.status(&id).await.unwrap();
}

#[tokio::test]
async fn index_find_task_and_task_definition() {
    let fq = start(FakeQueueOptions::default()).await;
    let id = fq
        .create_task_with_payload(json!({"image": "busybox"}))
        .unwrap();
    fq.insert_index("project.images.busybox", &id);
    let index = taskcluster::Index::new(builder(&fq, None)).unwrap();
    let found = index.findTask("project.images.busybox").await.unwrap();
    assert_eq!(found["taskId"], id.as_str());
    let err = index.findTask("nope").await.unwrap_err();
    assert_eq!(status_of(&err), Some(404));
    let def = Queue::new(builder(&fq, None))
        .unwrap()
        .task(&id)
        .await
        .unwrap();
    assert_eq!(def["payload"]["image"], "busybox");
    assert_eq!(def["provisionerId"], "dw-test");
    // createTask over HTTP with the admin credentials
    let t2 = new_task_id();
    let now = chrono::Utc::now();
    let st = queue(&fq, fq.admin_credentials())
        .createTask(
            &t2,
            &json!({
                "provisionerId": "dw-test", "workerType": "dw-test-worker",
                "created": now.to_rfc3339(), "deadline": (now + chrono::Duration::hours(1)).to_rfc3339(),
                "payload": {}, "metadata": {"name": "n", "description": "d", "owner": "o@example.com", "source": "https://example.com"},
            }),
        )
        .await
        .unwrap();
    assert_eq!(st["status"]["state"], "pending");
}

#[tokio::test]
async fn two_long_polls_share_tasks_without_empty_early_answers() {
    let fq = FakeQueue::start(FakeQueueOptions {
        claim_work_wait: Duration::from_secs(10),
        ..Default::default()
    })
    .await
    .unwrap();
    let poll = |wid: &'static str| {
        let worker = queue(&fq, fq.worker_credentials());
        let tq = fq.task_queue_id();
        tokio::spawn(async move {
            worker
                .claimWork(
                    &tq,
                    &json!({"workerGroup": "wg", "workerId": wid, "tasks": 1}),
                )
                .await
                .unwrap()
        })
    };
    let (a, b) = (poll("a"), poll("b"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t1 = fq.create_task_with_payload(json!({})).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t2 = fq.create_task_with_payload(json!({})).unwrap();
    let (ra, rb) = (a.await.unwrap(), b.await.unwrap());
    let mut got = vec![
        ra["tasks"][0]["status"]["taskId"]
            .as_str()
            .unwrap()
            .to_string(),
        rb["tasks"][0]["status"]["taskId"]
            .as_str()
            .unwrap()
            .to_string(),
    ];
    got.sort();
    let mut want = vec![t1, t2];
    want.sort();
    assert_eq!(got, want);
    // Only the two answered claimWork calls are recorded.
    let claims = fq
        .calls()
        .into_iter()
        .filter(|c| c.path.contains("/claim-work/"))
        .count();
    assert_eq!(claims, 2);
}
