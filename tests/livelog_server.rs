//! The live log HTTP server against real HTTP clients: following, late readers, many readers,
//! 404s, unregistering, a stalled reader, TLS.

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use docker_worker::livelog::server::{LiveLogError, LiveLogServer, TlsFiles};
use docker_worker::livelog::TaskLog;
use tempfile::TempDir;

const PATIENCE: Duration = Duration::from_secs(20);

/// Fail instead of hanging.
async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

fn local() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

async fn start() -> LiveLogServer {
    LiveLogServer::start(local(), None, None).await.unwrap()
}

async fn new_log(dir: &TempDir) -> TaskLog {
    TaskLog::create(dir.path().join("live_backing.log"))
        .await
        .unwrap()
}

/// Read the next chunks until `buf` holds `len` bytes.
async fn read_to(resp: &mut reqwest::Response, buf: &mut Vec<u8>, len: usize) {
    while buf.len() < len {
        let chunk = within("next chunk", resp.chunk())
            .await
            .unwrap()
            .expect("the response ended early");
        buf.extend_from_slice(&chunk);
    }
}

/// Read the rest of the body; the response must end.
async fn read_rest(mut resp: reqwest::Response, mut buf: Vec<u8>) -> Vec<u8> {
    while let Some(chunk) = within("end of the response", resp.chunk()).await.unwrap() {
        buf.extend_from_slice(&chunk);
    }
    buf
}

fn assert_log_headers(resp: &reqwest::Response) {
    assert_eq!(resp.status(), 200);
    let headers = resp.headers();
    assert_eq!(headers["content-type"], "text/plain; charset=utf-8");
    assert_eq!(headers["access-control-allow-origin"], "*");
    assert_eq!(headers["transfer-encoding"], "chunked");
}

#[tokio::test]
async fn an_early_reader_follows_the_log_as_it_is_written_until_it_closes() {
    let dir = tempfile::tempdir().unwrap();
    let server = start().await;
    let mut log = new_log(&dir).await;
    let reg = server.register(log.followers());
    let url = reg.url().clone();
    assert_eq!(url.scheme(), "http");
    assert_eq!(url.host_str(), Some("127.0.0.1"));
    assert_eq!(url.port(), Some(server.local_addr().port()));
    assert!(url.path().starts_with("/log/"), "{url}");

    let mut resp = within("response headers", client().get(url).send())
        .await
        .unwrap();
    assert_log_headers(&resp);

    // Each line reaches the reader before the next one is written.
    let mut got = Vec::new();
    let mut expected = Vec::new();
    for i in 0..20 {
        let line = format!("line {i}\r\n");
        log.write(line.as_bytes()).await.unwrap();
        expected.extend_from_slice(line.as_bytes());
        read_to(&mut resp, &mut got, expected.len()).await;
        assert_eq!(got, expected);
    }
    log.close().await.unwrap();
    assert_eq!(read_rest(resp, got).await, expected);

    drop(reg);
    server.shutdown().await;
}

#[tokio::test]
async fn a_reader_arriving_after_close_gets_the_whole_log() {
    let dir = tempfile::tempdir().unwrap();
    let server = start().await;
    let mut log = new_log(&dir).await;
    let reg = server.register(log.followers());
    let mut expected = Vec::new();
    for i in 0..1000 {
        let line = format!("[taskcluster] line {i}\r\n");
        log.write(line.as_bytes()).await.unwrap();
        expected.extend_from_slice(line.as_bytes());
    }
    log.close().await.unwrap();

    let resp = within("response", client().get(reg.url().clone()).send())
        .await
        .unwrap();
    assert_log_headers(&resp);
    assert_eq!(read_rest(resp, Vec::new()).await, expected);

    reg.unregister();
    server.shutdown().await;
}

#[tokio::test]
async fn concurrent_readers_get_identical_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let server = start().await;
    let mut log = new_log(&dir).await;
    let reg = server.register(log.followers());

    let mut readers = Vec::new();
    for _ in 0..3 {
        let resp = within("response", client().get(reg.url().clone()).send())
            .await
            .unwrap();
        assert_log_headers(&resp);
        readers.push(tokio::spawn(read_rest(resp, Vec::new())));
    }
    let mut expected = Vec::new();
    for i in 0..2000u32 {
        let chunk = format!("{i:08}").repeat(16);
        log.write(chunk.as_bytes()).await.unwrap();
        expected.extend_from_slice(chunk.as_bytes());
        if i % 100 == 0 {
            tokio::task::yield_now().await;
        }
    }
    log.close().await.unwrap();
    for reader in readers {
        let got = within("reader", reader).await.unwrap();
        assert_eq!(got.len(), expected.len());
        assert!(got == expected, "a reader got different bytes");
    }

    drop(reg);
    server.shutdown().await;
}

#[tokio::test]
async fn unknown_tokens_get_404_and_other_methods_sensible_statuses() {
    let dir = tempfile::tempdir().unwrap();
    let server = start().await;
    let mut log = new_log(&dir).await;
    let reg = server.register(log.followers());
    log.write(b"hello\n").await.unwrap();
    let base = server.base_url().clone();
    let http = client();

    let resp = http
        .get(base.join("log/not-a-token").unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    assert_eq!(resp.text().await.unwrap(), "no such live log\n");

    for path in ["", "log", "log/", "elsewhere/x"] {
        let resp = http.get(base.join(path).unwrap()).send().await.unwrap();
        assert_eq!(resp.status(), 404, "/{path}");
    }

    // HEAD: the GET headers, no body, even while the log is still open.
    let resp = within("HEAD", http.head(reg.url().clone()).send())
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/plain; charset=utf-8");
    assert!(within("HEAD body", resp.bytes()).await.unwrap().is_empty());

    let resp = http.post(reg.url().clone()).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    assert!(resp.headers()["allow"].to_str().unwrap().contains("GET"));

    let resp = http
        .request(reqwest::Method::OPTIONS, reg.url().clone())
        .header("origin", "https://example.org")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");

    log.close().await.unwrap();
    drop(reg);
    server.shutdown().await;
}

#[tokio::test]
async fn after_unregister_new_requests_404_and_connected_readers_finish() {
    let dir = tempfile::tempdir().unwrap();
    let server = start().await;
    let mut log = new_log(&dir).await;
    let reg = server.register(log.followers());
    let url = reg.url().clone();
    let other = server.register(log.followers());
    assert_ne!(other.url(), &url, "each registration gets its own token");

    log.write(b"before\n").await.unwrap();
    let mut connected = within("response", client().get(url.clone()).send())
        .await
        .unwrap();
    let mut got = Vec::new();
    read_to(&mut connected, &mut got, 7).await;

    reg.unregister();
    let resp = client().get(url.clone()).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    // Another registration of the same log is unaffected.
    let resp = client().get(other.url().clone()).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    drop(resp);

    log.write(b"after\n").await.unwrap();
    log.close().await.unwrap();
    assert_eq!(read_rest(connected, got).await, b"before\nafter\n");

    drop(other);
    server.shutdown().await;
}

fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[tokio::test]
async fn a_stalled_reader_does_not_block_the_writer() {
    const MB: usize = 1024 * 1024;
    const TOTAL: usize = 32 * MB;
    let dir = tempfile::tempdir().unwrap();
    let server = start().await;
    let mut log = new_log(&dir).await;
    let reg = server.register(log.followers());

    // Connected, headers received, and then not a byte read while the task writes.
    let stalled = within("response", client().get(reg.url().clone()).send())
        .await
        .unwrap();
    assert_log_headers(&stalled);
    let rss_before = rss_bytes();

    let chunk: Vec<u8> = (0..64 * 1024).map(|i| b'a' + (i % 26) as u8).collect();
    let started = Instant::now();
    within("the writer", async {
        for _ in 0..TOTAL / chunk.len() {
            log.write(&chunk).await.unwrap();
        }
    })
    .await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "writing took {took:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    if let (Some(before), Some(after)) = (rss_before, rss_bytes()) {
        // Buffering the stalled reader's log in memory would add about 32 MB.
        let grown = after.saturating_sub(before);
        assert!(grown < 12 * MB as u64, "RSS grew by {grown} bytes");
    }
    log.close().await.unwrap();

    // The stalled reader still gets every byte, in order.
    let got = read_rest(stalled, Vec::new()).await;
    assert_eq!(got.len(), TOTAL);
    assert!(got.chunks(chunk.len()).all(|c| c == chunk.as_slice()));

    drop(reg);
    server.shutdown().await;
}

#[tokio::test]
async fn tls_round_trip_with_a_self_signed_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let cert =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let files = TlsFiles {
        certificate: dir.path().join("cert.pem"),
        key: dir.path().join("key.pem"),
    };
    std::fs::write(&files.certificate, cert.cert.pem()).unwrap();
    std::fs::write(&files.key, cert.signing_key.serialize_pem()).unwrap();

    let server = LiveLogServer::start(local(), None, Some(files))
        .await
        .unwrap();
    assert_eq!(server.base_url().scheme(), "https");
    let mut log = new_log(&dir).await;
    let reg = server.register(log.followers());
    assert_eq!(reg.url().scheme(), "https");

    let trusted = reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap();
    let https = reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only([trusted])
        .build()
        .unwrap();
    let mut resp = within("TLS response", https.get(reg.url().clone()).send())
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    log.write(b"over TLS\n").await.unwrap();
    let mut got = Vec::new();
    read_to(&mut resp, &mut got, 9).await;
    log.close().await.unwrap();
    assert_eq!(read_rest(resp, got).await, b"over TLS\n");

    // Plain HTTP to the TLS port gets no log.
    let plain = reg.url().as_str().replacen("https://", "http://", 1);
    let answer = client().get(plain).send().await;
    assert!(answer.map(|r| r.status() != 200).unwrap_or(true));

    drop(reg);
    server.shutdown().await;
}

#[tokio::test]
async fn tls_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert_path = dir.path().join("cert.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    let missing = dir.path().join("no-such-key.pem");

    let err = LiveLogServer::start(
        local(),
        None,
        Some(TlsFiles {
            certificate: cert_path.clone(),
            key: missing.clone(),
        }),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, LiveLogError::ReadTlsFile { what: "key", .. }));
    assert!(
        err.to_string().contains(&missing.display().to_string()),
        "{err}"
    );

    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not pem at all\n").unwrap();
    let err = LiveLogServer::start(
        local(),
        None,
        Some(TlsFiles {
            certificate: garbage.clone(),
            key: cert_path.clone(),
        }),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains(&garbage.display().to_string()),
        "{err}"
    );
    let err = LiveLogServer::start(
        local(),
        None,
        Some(TlsFiles {
            certificate: cert_path.clone(),
            key: garbage.clone(),
        }),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, LiveLogError::InvalidTlsFile { what: "key", .. }),
        "{err}"
    );

    // A key that does not belong to the certificate.
    let other = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let other_key = dir.path().join("other-key.pem");
    std::fs::write(&other_key, other.signing_key.serialize_pem()).unwrap();
    let err = LiveLogServer::start(
        local(),
        None,
        Some(TlsFiles {
            certificate: cert_path.clone(),
            key: other_key,
        }),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, LiveLogError::TlsConfig { .. }), "{err}");
}

#[tokio::test]
async fn the_public_base_url_is_used_and_the_port_reported() {
    let dir = tempfile::tempdir().unwrap();
    let public = url::Url::parse("https://worker-7.example.net:60023/livelog").unwrap();
    let server = LiveLogServer::start(local(), Some(public), None)
        .await
        .unwrap();
    let port = server.local_addr().port();
    assert_ne!(port, 0);
    let mut log = new_log(&dir).await;
    let reg = server.register(log.followers());
    let url = reg.url();
    assert_eq!(url.host_str(), Some("worker-7.example.net"));
    assert_eq!(url.port(), Some(60023));
    let token = url
        .path()
        .strip_prefix("/livelog/log/")
        .expect("the base path is kept");
    assert!(token.len() >= 22, "at least 128 bits: {token}");
    assert!(token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));

    // A proxy at the public URL would forward /log/<token> to the bound port.
    log.write(b"proxied\n").await.unwrap();
    log.close().await.unwrap();
    let direct = format!("http://127.0.0.1:{port}/log/{token}");
    let body = client().get(direct).send().await.unwrap().bytes().await;
    assert_eq!(body.unwrap().as_ref(), b"proxied\n");

    let bad = url::Url::parse("ftp://host/").unwrap();
    let err = LiveLogServer::start(local(), Some(bad), None)
        .await
        .unwrap_err();
    assert!(matches!(err, LiveLogError::PublicBaseUrl { .. }), "{err}");

    drop(reg);
    server.shutdown().await;
}

#[tokio::test]
async fn binding_a_busy_port_is_a_clear_error_and_shutdown_ends_readers() {
    let dir = tempfile::tempdir().unwrap();
    let server = start().await;
    let taken = server.local_addr();
    let err = LiveLogServer::start(taken, None, None).await.unwrap_err();
    assert!(matches!(err, LiveLogError::Bind { .. }), "{err}");
    assert!(err.to_string().contains(&taken.to_string()), "{err}");

    // A reader of a log that never closes is ended by shutdown after the grace period.
    let mut log = new_log(&dir).await;
    let reg = server.register(log.followers());
    log.write(b"open\n").await.unwrap();
    let resp = client().get(reg.url().clone()).send().await.unwrap();
    let reader = tokio::spawn(async move {
        let mut resp = resp;
        while let Ok(Some(_)) = resp.chunk().await {}
    });
    let started = Instant::now();
    within("shutdown", server.shutdown()).await;
    within("reader ended", reader).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    let refused = client().get(reg.url().clone()).send().await;
    assert!(refused.is_err(), "the port is closed after shutdown");
    log.close().await.unwrap();
}
