//! Artifact upload: storage type `object` (object service: createUpload, PUT, finishUpload, then
//! finishArtifact) or `s3` (a `putUrl` from createArtifact, optionally gzip-encoded).
//!
//! Bodies are streamed from an [`UploadSource`], which is opened again for every retry: memory use
//! is a few 64 KiB chunks whatever the artifact's size. The object service's hashes are computed
//! while the body streams out. Only `dataInline` content (at most `inline_limit` bytes) is held in
//! memory; gzip for `s3` compresses into a temporary file (S3 needs the length up front).

use std::collections::BTreeMap;
use std::io::{self, Cursor};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use base64::Engine;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_ENCODING, CONTENT_LENGTH};
use serde::Deserialize;
use sha2::{Digest, Sha256, Sha512};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio_util::io::ReaderStream;

use super::error::{from_status, QueueError};
use super::types::{
    CreateArtifactRequest, CreateArtifactResponse, CreateUploadRequest, CreateUploadResponse,
    DataInlineRequest, FinishUploadRequest, Hashes, ProposedUploadMethods, PutUrl, PutUrlRequest,
};
use super::RunClient;

/// Largest `dataInline` content: its base64 must fit the schema's 10926 characters.
const MAX_INLINE: u64 = 8 * 1024;

/// Size of the chunks streamed to an upload URL.
const CHUNK: usize = 64 * 1024;

/// Artifact content that can be opened again (from its start) for every upload attempt.
#[async_trait]
pub trait UploadSource: Send + Sync {
    /// A fresh reader over the whole content.
    async fn open(&self) -> io::Result<Box<dyn AsyncRead + Send + Unpin>>;
    /// The content's length in bytes; the reader must yield exactly this many.
    fn len(&self) -> u64;
    /// True for empty content.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A file on the host (e.g. the backing log, or an artifact staged from the container's tar
/// stream), read from disk on each attempt.
#[derive(Debug, Clone)]
pub struct FileSource {
    path: PathBuf,
    len: u64,
}

impl FileSource {
    /// A source for `path`, with its current length.
    pub async fn new(path: impl Into<PathBuf>) -> io::Result<Self> {
        let path = path.into();
        let len = tokio::fs::metadata(&path).await?.len();
        Ok(FileSource { path, len })
    }

    /// A source for `path` whose length is already known.
    pub fn with_len(path: impl Into<PathBuf>, len: u64) -> Self {
        FileSource {
            path: path.into(),
            len,
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[async_trait]
impl UploadSource for FileSource {
    async fn open(&self) -> io::Result<Box<dyn AsyncRead + Send + Unpin>> {
        Ok(Box::new(tokio::fs::File::open(&self.path).await?))
    }
    fn len(&self) -> u64 {
        self.len
    }
}

/// Small content already in memory (error messages, generated files). Cloning `Bytes` is cheap.
#[derive(Debug, Clone)]
pub struct BytesSource(pub Bytes);

#[async_trait]
impl UploadSource for BytesSource {
    async fn open(&self) -> io::Result<Box<dyn AsyncRead + Send + Unpin>> {
        Ok(Box::new(Cursor::new(self.0.clone())))
    }
    fn len(&self) -> u64 {
        self.0.len() as u64
    }
}

/// Where artifact content is stored (`artifacts.storageType` in the worker config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageType {
    /// The object service (current deployments).
    #[default]
    Object,
    /// A pre-signed S3 `putUrl` from the queue (older deployments).
    S3,
}

/// How artifacts are uploaded.
#[derive(Debug, Clone)]
pub struct UploadOptions {
    /// `object` or `s3`.
    pub storage_type: StorageType,
    /// For `s3`: gzip content (`Content-Encoding: gzip`) unless the name ends with one of
    /// `skip_compression_extensions`.
    pub gzip: bool,
    /// Name endings that are already compressed (`artifacts.skipCompressionExtensions`).
    pub skip_compression_extensions: Vec<String>,
    /// For `object`: content up to this many bytes (at most 8 KiB) goes inline (`dataInline`) in
    /// createUpload.
    pub inline_limit: u64,
    /// Where gzip stages compressed content (the system temp dir when `None`).
    pub temp_dir: Option<PathBuf>,
}

impl Default for UploadOptions {
    fn default() -> Self {
        UploadOptions {
            storage_type: StorageType::Object,
            gzip: true,
            skip_compression_extensions: [
                ".7z", ".bz2", ".deb", ".dmg", ".flv", ".gif", ".gz", ".jpeg", ".jpg", ".png",
                ".swf", ".tbz", ".tgz", ".webp", ".whl", ".woff", ".woff2", ".xz", ".zip", ".zst",
                "lz4",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            inline_limit: 8 * 1024,
            temp_dir: None,
        }
    }
}

impl UploadOptions {
    /// True when an `s3` artifact with this name is sent gzip-encoded.
    pub fn compresses(&self, name: &str) -> bool {
        let lower = name.to_ascii_lowercase();
        self.gzip
            && !self
                .skip_compression_extensions
                .iter()
                .any(|ext| lower.ends_with(&ext.to_ascii_lowercase()))
    }
}

/// Upload one artifact with the configured storage type.
pub(crate) async fn upload(
    run: &RunClient,
    name: &str,
    content_type: &str,
    expires: DateTime<Utc>,
    source: &dyn UploadSource,
) -> Result<(), QueueError> {
    let started = std::time::Instant::now();
    let storage = run.services().upload.storage_type;
    match storage {
        StorageType::Object => upload_object(run, name, content_type, expires, source).await?,
        StorageType::S3 => upload_s3(run, name, content_type, expires, source).await?,
    }
    tracing::info!(
        task_id = run.task_id(),
        run_id = run.run_id(),
        artifact = name,
        bytes = source.len(),
        storage = ?storage,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "artifact uploaded"
    );
    Ok(())
}

/// createArtifact(object) -> createUpload -> (inline | PUT) -> finishUpload -> finishArtifact.
async fn upload_object(
    run: &RunClient,
    name: &str,
    content_type: &str,
    expires: DateTime<Utc>,
    source: &dyn UploadSource,
) -> Result<(), QueueError> {
    let len = source.len();
    let answer = run
        .create_artifact(
            name,
            &CreateArtifactRequest::Object {
                expires,
                content_type,
                content_length: len,
            },
        )
        .await?;
    let CreateArtifactResponse::Object {
        name: object_name,
        project_id,
        upload_id,
        credentials,
        expires: object_expires,
    } = answer
    else {
        return Err(QueueError::response(
            "createArtifact",
            "expected storageType object",
        ));
    };
    let services = run.services();
    let object = services.object(&credentials)?;
    let create_upload = |methods: ProposedUploadMethods<'_>| {
        let body = CreateUploadRequest {
            project_id: &project_id,
            upload_id: &upload_id,
            expires: object_expires,
            proposed_upload_methods: methods,
        };
        let body = serde_json::to_value(&body).expect("serializable");
        let object = &object;
        let object_name = &object_name;
        async move {
            let v = object
                .createUpload(object_name, &body)
                .await
                .map_err(|e| QueueError::from_taskcluster("createUpload", e))?;
            serde_json::from_value::<CreateUploadResponse>(v)
                .map_err(|e| QueueError::response("createUpload", e))
        }
    };

    let hashes = if len <= services.upload.inline_limit.min(MAX_INLINE) {
        // Small: the content goes in the createUpload request itself.
        let data = read_small(source, name).await?;
        let hashes = hash_bytes(&data);
        let answer = create_upload(ProposedUploadMethods {
            data_inline: Some(DataInlineRequest {
                content_type,
                object_data: base64::engine::general_purpose::STANDARD.encode(&data),
            }),
            put_url: None,
        })
        .await?;
        if answer.upload_method.data_inline != Some(true) {
            return Err(QueueError::response(
                "createUpload",
                "the object service did not accept dataInline",
            ));
        }
        hashes
    } else {
        // Large: PUT to a fresh URL; after a failed PUT ask for a new URL and try again.
        let retry = &services.retry;
        let mut attempt = 0;
        loop {
            let answer = create_upload(ProposedUploadMethods {
                data_inline: None,
                put_url: Some(PutUrlRequest {
                    content_type,
                    content_length: len,
                }),
            })
            .await?;
            let Some(PutUrl {
                url,
                expires: url_expires,
                headers,
            }) = answer.upload_method.put_url
            else {
                return Err(QueueError::response(
                    "createUpload",
                    "the object service did not accept putUrl",
                ));
            };
            let result = if url_expires <= Utc::now() {
                Err(QueueError::Network {
                    operation: format!("PUT {name}"),
                    message: "upload URL already expired".into(),
                })
            } else {
                let headers = header_map(&headers, len)?;
                put(run, name, &url, headers, source, true).await
            };
            match result {
                Ok(hashes) => break hashes.expect("hashing requested"),
                Err(e) if is_retryable(&e) && attempt < retry.retries => {
                    tracing::warn!(task_id = run.task_id(), artifact = name, attempt, error = %e,
                        "artifact PUT failed; retrying with a new upload URL");
                    tokio::time::sleep(retry.delay(attempt)).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    };

    let finish = FinishUploadRequest {
        project_id: &project_id,
        upload_id: &upload_id,
        hashes: &hashes,
    };
    object
        .finishUpload(
            &object_name,
            &serde_json::to_value(&finish).expect("serializable"),
        )
        .await
        .map_err(|e| QueueError::from_taskcluster("finishUpload", e))?;
    run.finish_artifact(name, &upload_id).await
}

/// createArtifact(s3) -> PUT (gzip-encoded unless skipped); a failed PUT gets a new putUrl.
async fn upload_s3(
    run: &RunClient,
    name: &str,
    content_type: &str,
    expires: DateTime<Utc>,
    source: &dyn UploadSource,
) -> Result<(), QueueError> {
    let services = run.services();
    // Keep the temporary file alive for all attempts; it is deleted on drop.
    let gzipped;
    let (body, encoding): (&dyn UploadSource, Option<&str>) = if services.upload.compresses(name) {
        gzipped = gzip_to_temp(source, name, services.upload.temp_dir.as_deref()).await?;
        (&gzipped.1, Some("gzip"))
    } else {
        (source, None)
    };
    let len = body.len();
    let retry = &services.retry;
    let mut attempt = 0;
    loop {
        let answer = run
            .create_artifact(
                name,
                &CreateArtifactRequest::S3 {
                    expires,
                    content_type,
                    content_length: len,
                },
            )
            .await?;
        let CreateArtifactResponse::S3 { put_url } = answer else {
            return Err(QueueError::response(
                "createArtifact",
                "expected storageType s3",
            ));
        };
        let mut headers = BTreeMap::new();
        headers.insert("content-type".to_owned(), content_type.to_owned());
        if let Some(enc) = encoding {
            headers.insert(CONTENT_ENCODING.as_str().to_owned(), enc.to_owned());
        }
        let headers = header_map(&headers, len)?;
        match put(run, name, &put_url, headers, body, false).await {
            Ok(_) => return Ok(()),
            Err(e) if is_retryable(&e) && attempt < retry.retries => {
                tracing::warn!(task_id = run.task_id(), artifact = name, attempt, error = %e,
                    "artifact PUT failed; retrying with a new upload URL");
                tokio::time::sleep(retry.delay(attempt)).await;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// 5xx, network errors, 408 and 429 are worth another attempt; other answers are final.
fn is_retryable(e: &QueueError) -> bool {
    match e {
        QueueError::Server { .. } | QueueError::Network { .. } => true,
        QueueError::Rejected { status, .. } => *status == 408 || *status == 429,
        _ => false,
    }
}

/// What the streamed body saw: the byte count, the hashes, and a read error if there was one.
struct StreamState {
    count: u64,
    hashers: Option<(Sha256, Sha512)>,
    read_error: Option<io::Error>,
}

/// PUT the source to `url`, streaming it in chunks. Returns the hashes when `hash` is set.
async fn put(
    run: &RunClient,
    name: &str,
    url: &str,
    headers: HeaderMap,
    source: &dyn UploadSource,
    hash: bool,
) -> Result<Option<Hashes>, QueueError> {
    let operation = format!("PUT {name}");
    let source_err = |source: io::Error| QueueError::Source {
        name: name.to_owned(),
        source,
    };
    let reader = source.open().await.map_err(source_err)?;
    let state = Arc::new(Mutex::new(StreamState {
        count: 0,
        hashers: hash.then(|| (Sha256::new(), Sha512::new())),
        read_error: None,
    }));
    let seen = state.clone();
    // Each chunk is counted and hashed on its way to the socket, then dropped.
    let stream = ReaderStream::with_capacity(reader, CHUNK).map(move |chunk| {
        let mut s = seen.lock().expect("stream state");
        match &chunk {
            Ok(bytes) => {
                s.count += bytes.len() as u64;
                if let Some((a, b)) = s.hashers.as_mut() {
                    a.update(bytes);
                    b.update(bytes);
                }
            }
            Err(e) => s.read_error = Some(io::Error::new(e.kind(), e.to_string())),
        }
        chunk
    });
    let sent = run
        .services()
        .http
        .put(url)
        .headers(headers)
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await;
    let mut s = state.lock().expect("stream state");
    if let Some(e) = s.read_error.take() {
        return Err(source_err(e));
    }
    let resp = sent.map_err(|e| QueueError::from_reqwest(&operation, e))?;
    let status = resp.status();
    if !status.is_success() {
        // The body of a storage error can echo the signature: keep only the status.
        return Err(from_status(
            &operation,
            status.as_u16(),
            status.canonical_reason().unwrap_or("").to_owned(),
        ));
    }
    if s.count != source.len() {
        return Err(source_err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("expected {} bytes, read {}", source.len(), s.count),
        )));
    }
    Ok(s.hashers.take().map(|(a, b)| Hashes {
        sha256: hex(&a.finalize()),
        sha512: hex(&b.finalize()),
    }))
}

/// Headers required by the upload URL, plus Content-Length (so the body is not sent chunked).
fn header_map(headers: &BTreeMap<String, String>, len: u64) -> Result<HeaderMap, QueueError> {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|e| QueueError::response("createUpload", format!("header {k}: {e}")))?;
        let value = HeaderValue::from_str(v)
            .map_err(|e| QueueError::response("createUpload", format!("header {k}: {e}")))?;
        map.insert(name, value);
    }
    map.insert(CONTENT_LENGTH, HeaderValue::from(len));
    Ok(map)
}

/// Read content known to be at most `inline_limit` bytes, checking its length.
async fn read_small(source: &dyn UploadSource, name: &str) -> Result<Vec<u8>, QueueError> {
    let err = |source: io::Error| QueueError::Source {
        name: name.to_owned(),
        source,
    };
    let len = source.len();
    let mut data = Vec::with_capacity(len as usize);
    source
        .open()
        .await
        .map_err(err)?
        .take(len + 1)
        .read_to_end(&mut data)
        .await
        .map_err(err)?;
    if data.len() as u64 != len {
        return Err(err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("expected {len} bytes, read {}", data.len()),
        )));
    }
    Ok(data)
}

/// Gzip the source into a temporary file, streaming; returns the file and a source over it.
async fn gzip_to_temp(
    source: &dyn UploadSource,
    name: &str,
    dir: Option<&Path>,
) -> Result<(tempfile::TempPath, FileSource), QueueError> {
    let err = |source: io::Error| QueueError::Source {
        name: name.to_owned(),
        source,
    };
    let tmp = match dir {
        Some(d) => tempfile::NamedTempFile::new_in(d),
        None => tempfile::NamedTempFile::new(),
    }
    .map_err(err)?;
    let (file, path) = tmp.into_parts();
    let mut out = tokio::fs::File::from_std(file);
    let reader = source.open().await.map_err(err)?;
    let mut encoder = async_compression::tokio::bufread::GzipEncoder::new(
        BufReader::with_capacity(CHUNK, reader),
    );
    let len = tokio::io::copy(&mut encoder, &mut out).await.map_err(err)?;
    out.flush().await.map_err(err)?;
    let file_source = FileSource::with_len(path.to_path_buf(), len);
    Ok((path, file_source))
}

fn hash_bytes(data: &[u8]) -> Hashes {
    Hashes {
        sha256: hex(&Sha256::digest(data)),
        sha512: hex(&Sha512::digest(data)),
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_is_skipped_for_compressed_names() {
        let o = UploadOptions::default();
        assert!(o.compresses("public/logs/live_backing.log"));
        assert!(!o.compresses("public/build/target.tar.GZ"));
        assert!(!o.compresses("public/x.lz4"));
        let off = UploadOptions {
            gzip: false,
            ..UploadOptions::default()
        };
        assert!(!off.compresses("a.txt"));
    }

    #[test]
    fn hashes_are_lowercase_hex() {
        let h = hash_bytes(b"abc");
        assert_eq!(
            h.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(h.sha512.len(), 128);
    }

    #[tokio::test]
    async fn gzip_round_trips() {
        use async_compression::tokio::bufread::GzipDecoder;
        let data = Bytes::from("hello hello hello\n".repeat(1000));
        let (_tmp, f) = gzip_to_temp(&BytesSource(data.clone()), "x.log", None)
            .await
            .unwrap();
        assert!(f.len() < data.len() as u64);
        let mut out = Vec::new();
        GzipDecoder::new(BufReader::new(f.open().await.unwrap()))
            .read_to_end(&mut out)
            .await
            .unwrap();
        assert_eq!(out, data);
    }

    #[tokio::test]
    async fn short_sources_are_detected() {
        let src = FileSource::with_len("/dev/null", 10);
        let e = read_small(&src, "x").await.unwrap_err();
        assert!(matches!(e, QueueError::Source { .. }));
    }
}
