//! The HTTP front door at the root URL: forwards every call to the wiremock server, after
//! (1) applying injected faults — a 500, a delay, or a dropped connection (the hyper service
//! returns an error, so hyper closes the connection with no answer) — and (2) holding
//! `claimWork` long-polls, since wiremock must answer synchronously: the proxy waits until a
//! task of that queue is pending, forwards with [`LONG_POLL_RETRY`], and if another worker
//! claimed it first (wiremock answers [`LONG_POLL_EMPTY`], unrecorded) waits again; the
//! attempt at the deadline answers whatever it gets, usually `{"tasks": []}`.

use super::auth::claimed_client_id;
use super::routes::percent_decode;
use super::{FaultKind, RecordedCall, Shared};
use bytes::Bytes;
use chrono::Utc;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

type HttpResult = Result<Response<Full<Bytes>>, std::io::Error>;

/// Accept connections until `stop` is cancelled; then close every connection too.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    backend: String,
    stop: CancellationToken,
) {
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("reqwest client builds");
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.cancelled() => return,
        };
        let Ok((stream, _)) = accepted else {
            continue;
        };
        let stop = stop.clone();
        let shared = shared.clone();
        let client = client.clone();
        let backend = backend.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                handle(req, shared.clone(), client.clone(), backend.clone())
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
            tokio::select! {
                _ = conn => {}
                _ = stop.cancelled() => {}
            }
        });
    }
}

/// Take the first live fault matching this call (counting it down).
fn take_fault(shared: &Shared, method: &str, path: &str) -> Option<FaultKind> {
    let mut st = shared.lock();
    st.faults.retain(|f| f.live());
    let f = st.faults.iter_mut().find(|f| {
        f.method.as_deref().is_none_or(|m| m == method)
            && f.path_contains.as_deref().is_none_or(|p| path.contains(p))
    })?;
    if let Some(n) = f.remaining.as_mut() {
        *n -= 1;
    }
    Some(f.kind.clone())
}

fn record(shared: &Shared, method: &str, path: &str, auth: Option<&str>, status: u16) {
    shared.lock().calls.push(RecordedCall {
        at: Utc::now(),
        method: method.to_string(),
        path: path.to_string(),
        client_id: claimed_client_id(auth),
        status,
    });
}

async fn handle(
    req: Request<Incoming>,
    shared: Arc<Shared>,
    client: reqwest::Client,
    backend: String,
) -> HttpResult {
    let method = req.method().as_str().to_string();
    let raw_path = req.uri().path().to_string();
    let path = raw_path
        .split('/')
        .map(percent_decode)
        .collect::<Vec<_>>()
        .join("/");
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);

    match take_fault(&shared, &method, &path) {
        Some(FaultKind::DropConnection) => {
            record(&shared, &method, &path, auth.as_deref(), 0);
            return Err(std::io::Error::other("fault injection: connection dropped"));
        }
        Some(FaultKind::ServerError) => {
            record(&shared, &method, &path, auth.as_deref(), 500);
            let body = serde_json::json!({
                "code": "InternalServerError",
                "message": "Internal Server Error (injected by the fake queue)",
            });
            return Ok(Response::builder()
                .status(500)
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body.to_string())))
                .expect("response builds"));
        }
        Some(FaultKind::Delay(d)) => tokio::time::sleep(d).await,
        None => {}
    }

    let claim_queue = (method == "POST")
        .then(|| path.strip_prefix("/api/queue/v1/claim-work/"))
        .flatten()
        .map(str::to_string);

    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return Err(std::io::Error::other(e)),
    };
    if method == "PUT" {
        if let Some(token) = path.strip_prefix("/__fake/put/") {
            return Ok(store_put(&shared, &parts, token, &path, body));
        }
    }
    let Some(task_queue_id) = claim_queue else {
        return forward(&client, &backend, &parts, body, false).await;
    };
    // claimWork long-poll: wait for a pending task, try to claim it, and if another worker
    // got there first keep waiting; the last attempt at the deadline answers whatever it gets.
    let deadline = tokio::time::Instant::now() + shared.claim_work_wait;
    let mut rx = shared.changed.subscribe();
    loop {
        rx.borrow_and_update();
        let pending = shared.with(|st| st.has_pending(&task_queue_id));
        let now = tokio::time::Instant::now();
        let last = now >= deadline;
        if pending || last {
            let resp = forward(&client, &backend, &parts, body.clone(), !last).await?;
            if resp.headers().get(LONG_POLL_EMPTY).is_none() {
                return Ok(resp);
            }
            continue;
        }
        let _ = tokio::time::timeout(deadline - now, rx.changed()).await;
    }
}

/// Store an upload (the fake's S3 / object-service PUT URL) straight into the state.
fn store_put(
    shared: &Shared,
    parts: &hyper::http::request::Parts,
    token: &str,
    path: &str,
    body: Bytes,
) -> Response<Full<Bytes>> {
    let header = |n: &str| parts.headers.get(n).and_then(|v| v.to_str().ok());
    let result = shared.with(|st| {
        st.store_put(
            token,
            Vec::from(body),
            header("content-type").unwrap_or(""),
            header("content-encoding"),
        )
    });
    let (status, body) = match result {
        Ok(()) => (200, String::new()),
        Err(e) => (
            e.status,
            serde_json::json!({"code": e.code, "message": e.message}).to_string(),
        ),
    };
    record(shared, "PUT", path, header("authorization"), status);
    Response::builder()
        .status(status)
        .header("etag", "\"fake\"")
        .body(Full::new(Bytes::from(body)))
        .expect("response builds")
}

/// Request header: "answer [`LONG_POLL_EMPTY`] instead of an empty claimWork result".
pub const LONG_POLL_RETRY: &str = "x-fake-queue-long-poll";
/// Response header marking an empty, unrecorded claimWork attempt.
pub const LONG_POLL_EMPTY: &str = "x-fake-queue-long-poll-empty";

/// Send one request on to wiremock and turn its answer into ours.
async fn forward(
    client: &reqwest::Client,
    backend: &str,
    parts: &hyper::http::request::Parts,
    body: Bytes,
    long_poll_retry: bool,
) -> HttpResult {
    let url = format!(
        "{backend}{}",
        parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
    );
    let mut fwd = client.request(parts.method.clone(), url).body(body);
    for (name, value) in &parts.headers {
        if !matches!(
            name.as_str(),
            "host" | "connection" | "content-length" | "transfer-encoding" | "keep-alive"
        ) {
            fwd = fwd.header(name, value);
        }
    }
    if let Some(host) = parts.headers.get("host") {
        fwd = fwd.header("x-forwarded-host", host);
    }
    if long_poll_retry {
        fwd = fwd.header(LONG_POLL_RETRY, "1");
    }
    let resp = fwd.send().await.map_err(std::io::Error::other)?;
    let mut out = Response::builder().status(resp.status().as_u16());
    for (name, value) in resp.headers() {
        if !matches!(
            name.as_str(),
            "connection" | "content-length" | "transfer-encoding" | "keep-alive"
        ) {
            out = out.header(name, value);
        }
    }
    let bytes = resp.bytes().await.map_err(std::io::Error::other)?;
    Ok(out.body(Full::new(bytes)).expect("response builds"))
}
