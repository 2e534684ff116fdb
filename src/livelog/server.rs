//! The live log HTTP server: one per worker process, serving each running task's log at
//! `/log/<token>`, where the token is an unguessable capability handed out by
//! [`LiveLogServer::register`].
//!
//! A reader gets the log from its first byte, then follows it (chunked) until the task's log
//! closes. Readers read the backing file at their own pace through [`LogFollowers::follow`], and
//! the HTTP layer only pulls the next chunk when the connection can take it (hyper's write buffer
//! for HTTP/1, the flow-control window for HTTP/2), so a stalled reader holds a bounded amount of
//! memory and never slows the task's writer.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use axum_server::tls_rustls::RustlsConfig;
use base64::Engine as _;
use futures_util::StreamExt as _;
use rand::RngCore as _;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use url::Url;

use super::LogFollowers;

/// How long [`LiveLogServer::shutdown`] lets connected readers finish before closing them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Random bytes in a token (256 bits; the URL carries them as 43 URL-safe base64 characters).
const TOKEN_BYTES: usize = 32;

/// Most readers connected at once, over all logs (each holds a connection and an open file).
pub const MAX_READERS: usize = 256;

/// PEM files that turn on TLS for the live log server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain, PEM, leaf first.
    pub certificate: PathBuf,
    /// Private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Why the live log server could not start.
#[derive(Debug, thiserror::Error)]
pub enum LiveLogError {
    /// The listening socket could not be bound.
    #[error("cannot listen for live log readers on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The underlying error.
        source: io::Error,
    },
    /// A TLS file could not be read.
    #[error("cannot read the live log TLS {what} file {}: {source}", path.display())]
    ReadTlsFile {
        /// `certificate` or `key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A TLS file was read but holds no usable PEM certificate or key.
    #[error("invalid live log TLS {what} file {}: {reason}", path.display())]
    InvalidTlsFile {
        /// `certificate` or `key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The certificate and key were parsed but rustls refused them (e.g. they do not match).
    #[error(
        "cannot use live log TLS certificate {} with key {}: {source}",
        certificate.display(),
        key.display()
    )]
    TlsConfig {
        /// The certificate file.
        certificate: PathBuf,
        /// The key file.
        key: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The public base URL cannot carry `/log/<token>` paths.
    #[error("invalid live log public base URL {url}: {reason}")]
    PublicBaseUrl {
        /// The URL given.
        url: Url,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// Tokens of the logs being served, shared by the server and the registrations.
type Routes = Arc<Mutex<HashMap<String, LogFollowers>>>;

/// The running live log server. Stop it with [`LiveLogServer::shutdown`]; dropping it stops it
/// at once, closing connected readers.
pub struct LiveLogServer {
    local_addr: SocketAddr,
    base_url: Url,
    routes: Routes,
    handle: axum_server::Handle<SocketAddr>,
    task: Option<JoinHandle<io::Result<()>>>,
}

impl fmt::Debug for LiveLogServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveLogServer")
            .field("local_addr", &self.local_addr)
            .field("base_url", &self.base_url.as_str())
            .finish_non_exhaustive()
    }
}

/// One log being served. Its URL works while the registration lives; dropping it (or
/// [`unregister`](LiveLogRegistration::unregister)) makes new requests 404, while readers
/// already connected finish their stream normally.
pub struct LiveLogRegistration {
    url: Url,
    token: String,
    routes: Routes,
}

impl fmt::Debug for LiveLogRegistration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL holds the token, a capability: keep it out of debug output.
        f.debug_struct("LiveLogRegistration")
            .field("url", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl LiveLogRegistration {
    /// The public URL of the log: `<base>/log/<token>`.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// Stop serving the log to new readers (same as dropping the registration).
    pub fn unregister(self) {}
}

impl Drop for LiveLogRegistration {
    fn drop(&mut self) {
        lock(&self.routes).remove(&self.token);
        tracing::debug!("live log unregistered");
    }
}

fn lock(routes: &Routes) -> std::sync::MutexGuard<'_, HashMap<String, LogFollowers>> {
    // The map stays consistent whatever panicked while holding it.
    routes
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl LiveLogServer {
    /// Bind `bind` (port 0 picks a free port), then serve in a background task, over TLS when
    /// `tls` is given. URLs are built on `public_base_url` when given, else on
    /// `http(s)://<bind ip, or loopback when unspecified>:<port>/`.
    pub async fn start(
        bind: SocketAddr,
        public_base_url: Option<Url>,
        tls: Option<TlsFiles>,
    ) -> Result<LiveLogServer, LiveLogError> {
        Self::start_with_limit(bind, public_base_url, tls, MAX_READERS).await
    }

    /// [`LiveLogServer::start`] with at most `max_readers` readers connected at once.
    pub(crate) async fn start_with_limit(
        bind: SocketAddr,
        public_base_url: Option<Url>,
        tls: Option<TlsFiles>,
        max_readers: usize,
    ) -> Result<LiveLogServer, LiveLogError> {
        if let Some(url) = &public_base_url {
            check_base_url(url)?;
        }
        let tls_config = match &tls {
            Some(files) => Some(load_tls(files).await?),
            None => None,
        };
        let bind_error = |source| LiveLogError::Bind { addr: bind, source };
        let listener = tokio::net::TcpListener::bind(bind)
            .await
            .map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        let listener = listener.into_std().map_err(bind_error)?;

        let base_url = match public_base_url {
            Some(url) => url,
            None => default_base_url(local_addr, tls.is_some()),
        };
        let routes: Routes = Arc::default();
        let app = router(routes.clone(), Arc::new(Semaphore::new(max_readers)));
        let handle = axum_server::Handle::new();
        let service = app.into_make_service();
        let task = match tls_config {
            Some(config) => {
                let server = axum_server::from_tcp_rustls(listener, config)
                    .map_err(bind_error)?
                    .handle(handle.clone());
                tokio::spawn(server.serve(service))
            }
            None => {
                let server = axum_server::from_tcp(listener)
                    .map_err(bind_error)?
                    .handle(handle.clone());
                tokio::spawn(server.serve(service))
            }
        };
        tracing::info!(
            %local_addr,
            base_url = %base_url,
            tls = tls.is_some(),
            "live log server started"
        );
        Ok(LiveLogServer {
            local_addr,
            base_url,
            routes,
            handle,
            task: Some(task),
        })
    }

    /// The address actually bound (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The base that log URLs are built on.
    pub fn base_url(&self) -> &Url {
        &self.base_url
    }

    /// Serve `followers` at a new unguessable URL for as long as the registration lives.
    pub fn register(&self, followers: LogFollowers) -> LiveLogRegistration {
        let mut bytes = [0u8; TOKEN_BYTES];
        rand::rng().fill_bytes(&mut bytes);
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let mut url = self.base_url.clone();
        url.path_segments_mut()
            .expect("checked at start: the base URL can be a base")
            .pop_if_empty()
            .push("log")
            .push(&token);
        lock(&self.routes).insert(token.clone(), followers);
        tracing::debug!("live log registered");
        LiveLogRegistration {
            url,
            token,
            routes: self.routes.clone(),
        }
    }

    /// Stop accepting connections, let connected readers finish for up to [`SHUTDOWN_GRACE`],
    /// then close whatever is left and wait for the server task to end.
    pub async fn shutdown(mut self) {
        self.handle.graceful_shutdown(Some(SHUTDOWN_GRACE));
        if let Some(task) = self.task.take() {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "live log server failed"),
                Err(e) => tracing::warn!(error = %e, "live log server task failed"),
            }
        }
        tracing::info!(local_addr = %self.local_addr, "live log server stopped");
    }
}

impl Drop for LiveLogServer {
    fn drop(&mut self) {
        if self.task.is_some() {
            // Not shut down gracefully: stop now rather than serve on in the background.
            self.handle.shutdown();
        }
    }
}

fn check_base_url(url: &Url) -> Result<(), LiveLogError> {
    let reason = if url.cannot_be_a_base() {
        "it cannot be a base for /log/<token> paths"
    } else if !matches!(url.scheme(), "http" | "https") {
        "the scheme must be http or https"
    } else if url.query().is_some() || url.fragment().is_some() {
        "it must not have a query or fragment"
    } else {
        return Ok(());
    };
    Err(LiveLogError::PublicBaseUrl {
        url: url.clone(),
        reason,
    })
}

fn default_base_url(local_addr: SocketAddr, tls: bool) -> Url {
    let ip = match local_addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let scheme = if tls { "https" } else { "http" };
    let addr = SocketAddr::new(ip, local_addr.port());
    Url::parse(&format!("{scheme}://{addr}/")).expect("a socket address makes a valid URL")
}

async fn load_tls(files: &TlsFiles) -> Result<RustlsConfig, LiveLogError> {
    let certificate = read_tls_file("certificate", &files.certificate).await?;
    let key = read_tls_file("key", &files.key).await?;
    let invalid = |what: &'static str, path: &Path, reason: String| LiveLogError::InvalidTlsFile {
        what,
        path: path.to_path_buf(),
        reason,
    };
    let chain = CertificateDer::pem_slice_iter(&certificate)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid("certificate", &files.certificate, e.to_string()))?;
    if chain.is_empty() {
        return Err(invalid(
            "certificate",
            &files.certificate,
            "no PEM CERTIFICATE in it".to_string(),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(&key)
        .map_err(|e| invalid("key", &files.key, e.to_string()))?;
    let chain = chain.into_iter().map(|c| c.to_vec()).collect();
    RustlsConfig::from_der(chain, key.secret_der().to_vec())
        .await
        .map_err(|source| LiveLogError::TlsConfig {
            certificate: files.certificate.clone(),
            key: files.key.clone(),
            source,
        })
}

async fn read_tls_file(what: &'static str, path: &Path) -> Result<Vec<u8>, LiveLogError> {
    tokio::fs::read(path)
        .await
        .map_err(|source| LiveLogError::ReadTlsFile {
            what,
            path: path.to_path_buf(),
            source,
        })
}

/// What the log route needs: the logs by token, and the reader slots.
#[derive(Clone)]
struct Served {
    routes: Routes,
    readers: Arc<Semaphore>,
}

fn router(routes: Routes, readers: Arc<Semaphore>) -> Router {
    Router::new()
        .route(
            "/log/{token}",
            get(serve_log)
                .options(preflight)
                .with_state(Served { routes, readers }),
        )
        .fallback(not_found)
        .layer(axum::middleware::map_response(allow_any_origin))
}

/// GET (and HEAD, which axum answers from the GET handler without the body).
async fn serve_log(
    State(served): State<Served>,
    UrlPath(token): UrlPath<String>,
    method: Method,
) -> Response {
    let Some(followers) = lock(&served.routes).get(&token).cloned() else {
        return not_found().await.into_response();
    };
    let headers = [(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    )];
    if method == Method::HEAD {
        return (headers, Body::empty()).into_response();
    }
    // Readers are bounded: each holds a slot (and an open file) until its connection ends.
    let Ok(slot) = served.readers.clone().try_acquire_owned() else {
        tracing::warn!("too many live log readers: refusing one");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "10")],
            "too many live log readers, try again later\n",
        )
            .into_response();
    };
    tracing::debug!("live log reader connected");
    let body = followers.follow().map(move |chunk| {
        let _held = &slot;
        chunk
    });
    (headers, Body::from_stream(body)).into_response()
}

/// CORS preflight: the log is public to whoever holds the URL.
async fn preflight() -> impl IntoResponse {
    (
        StatusCode::NO_CONTENT,
        [
            (header::ACCESS_CONTROL_ALLOW_METHODS, "GET, HEAD, OPTIONS"),
            (header::ACCESS_CONTROL_MAX_AGE, "86400"),
        ],
    )
}

async fn not_found() -> impl IntoResponse {
    (StatusCode::NOT_FOUND, "no such live log\n")
}

async fn allow_any_origin(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn readers_are_bounded_and_a_slot_frees_when_a_reader_leaves() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = crate::livelog::TaskLog::create(dir.path().join("log"))
            .await
            .unwrap();
        log.write(b"hello\n").await.unwrap();
        let server = LiveLogServer::start_with_limit("127.0.0.1:0".parse().unwrap(), None, None, 1)
            .await
            .unwrap();
        let reg = server.register(log.followers());
        let url = reg.url().clone();
        let first = reqwest::get(url.clone()).await.unwrap();
        assert_eq!(first.status(), 200);
        let second = reqwest::get(url.clone()).await.unwrap();
        assert_eq!(second.status(), 503);
        assert_eq!(second.headers()["retry-after"], "10");
        drop(first);
        // The first reader's slot comes back once its connection is gone.
        let mut status = 0;
        for _ in 0..50 {
            status = reqwest::get(url.clone()).await.unwrap().status().as_u16();
            if status == 200 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(status, 200);
        log.close().await.unwrap();
        drop(reg);
        server.shutdown().await;
    }

    #[test]
    fn default_base_url_uses_loopback_for_unspecified_addresses() {
        let url = default_base_url("0.0.0.0:8080".parse().unwrap(), false);
        assert_eq!(url.as_str(), "http://127.0.0.1:8080/");
        let url = default_base_url("[::]:8443".parse().unwrap(), true);
        assert_eq!(url.as_str(), "https://[::1]:8443/");
        let url = default_base_url("10.1.2.3:60023".parse().unwrap(), true);
        assert_eq!(url.as_str(), "https://10.1.2.3:60023/");
    }

    #[test]
    fn base_urls_that_cannot_carry_paths_are_refused() {
        for bad in ["mailto:a@b.c", "ftp://host/", "http://host/?q=1"] {
            let url = Url::parse(bad).unwrap();
            assert!(check_base_url(&url).is_err(), "{bad}");
        }
        assert!(check_base_url(&Url::parse("https://host/prefix").unwrap()).is_ok());
    }
}
