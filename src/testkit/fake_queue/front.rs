//! The HTTP front door at the root URL: forwards every call to the wiremock server, after
//! (1) applying injected faults — a 500, a delay, or a dropped connection (the hyper service
//! returns an error, so the connection closes with no answer) — and (2) holding `claimWork`
//! long-polls until a task of that queue is pending or the poll time passes, since wiremock
//! must answer synchronously.

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

type HttpResult = Result<Response<Full<Bytes>>, std::io::Error>;

/// Accept connections until the task is aborted.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, backend: String) {
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("reqwest client builds");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        let client = client.clone();
        let backend = backend.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                handle(req, shared.clone(), client.clone(), backend.clone())
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .await;
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

    if method == "POST" {
        if let Some(q) = path.strip_prefix("/api/queue/v1/claim-work/") {
            long_poll(&shared, q).await;
        }
    }

    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return Err(std::io::Error::other(e)),
    };
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
    let resp = match fwd.send().await {
        Ok(r) => r,
        Err(e) => return Err(std::io::Error::other(e)),
    };
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

/// Wait until a run of `task_queue_id` is pending, or the claimWork wait passes.
async fn long_poll(shared: &Shared, task_queue_id: &str) {
    let deadline = tokio::time::Instant::now() + shared.claim_work_wait;
    let mut rx = shared.changed.subscribe();
    loop {
        rx.borrow_and_update();
        let pending = shared.with(|st| st.has_pending(task_queue_id));
        let now = tokio::time::Instant::now();
        if pending || now >= deadline {
            return;
        }
        let _ = tokio::time::timeout(deadline - now, rx.changed()).await;
    }
}
