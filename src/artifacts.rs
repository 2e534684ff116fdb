//! Artifacts: read from the stopped container through Docker's archive (tar) API, spooled one file
//! at a time to a scratch directory (bounded memory whatever the size), and handed to a sink (the
//! queue uploader, or a local directory for `docker-worker run`).

use std::collections::BTreeMap;
use std::io;
use std::path::{Component, Path, PathBuf};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::{StreamExt, TryStreamExt};
use serde::Serialize;
use tokio_tar::{Archive, EntryType};
use tokio_util::io::StreamReader;

use crate::docker::{Docker, DockerError};
use crate::livelog::TaskLog;
use crate::payload::{ArtifactKind, ArtifactSpec};

/// How many symlinks a file artifact may go through (inside the container) before giving up.
const MAX_SYMLINK_HOPS: usize = 8;

/// A file artifact ready to be stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactFile {
    /// Artifact name (`public/build/x.tar.gz`).
    pub name: String,
    /// Content type guessed from the name.
    pub content_type: String,
    /// Expiry; `None` means the task's expiry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<DateTime<Utc>>,
    /// Size in bytes.
    pub size: u64,
}

pub use crate::queue::ErrorArtifactReason as ErrorReason;

/// An `error` artifact: the name, why, and a message for people.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorArtifact {
    /// Artifact name.
    pub name: String,
    /// Machine-readable reason.
    pub reason: ErrorReason,
    /// What a person reads.
    pub message: String,
    /// Expiry; `None` means the task's expiry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<DateTime<Utc>>,
}

/// A sink failed to store an artifact (after its own retries).
#[derive(Debug, thiserror::Error)]
#[error("storing artifact {name}: {message}")]
pub struct SinkError {
    /// The artifact.
    pub name: String,
    /// What went wrong.
    pub message: String,
}

/// Where artifacts go.
#[async_trait]
pub trait ArtifactSink: Send + Sync {
    /// Store a file artifact whose content is at `path` (the sink may move the file).
    async fn put_file(&self, file: &ArtifactFile, path: &Path) -> Result<(), SinkError>;
    /// Record an error artifact.
    async fn put_error(&self, error: &ErrorArtifact) -> Result<(), SinkError>;
}

/// What an artifact collection produced.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ArtifactReport {
    /// Files stored.
    pub files: Vec<ArtifactFile>,
    /// Error artifacts recorded.
    pub errors: Vec<ErrorArtifact>,
}

/// Collecting artifacts failed for a worker-side reason (not a missing file).
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// The sink could not store an artifact.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// Reading the container's archive or the scratch directory failed.
    #[error("reading artifact {name} from the container: {source}")]
    Read {
        /// The artifact.
        name: String,
        /// The error.
        source: io::Error,
    },
}

/// The content type for an artifact name (by extension; `application/octet-stream` otherwise).
pub fn content_type(name: &str) -> String {
    let guess = mime_guess::from_path(name).first_raw();
    match guess {
        Some(t) if t.starts_with("text/") => format!("{t}; charset=utf-8"),
        Some(t) => t.to_string(),
        None if name.ends_with(".log") => "text/plain; charset=utf-8".to_string(),
        None => "application/octet-stream".to_string(),
    }
}

/// Read every requested artifact out of the (stopped) container and hand it to `sink`.
/// Missing paths and type mismatches become error artifacts with a log line each.
pub async fn collect(
    docker: &Docker,
    container_id: &str,
    specs: &BTreeMap<String, ArtifactSpec>,
    sink: &dyn ArtifactSink,
    log: &mut TaskLog,
    scratch: &Path,
) -> Result<ArtifactReport, CollectError> {
    let mut report = ArtifactReport::default();
    for (name, spec) in specs {
        let collector = Collector {
            docker,
            container_id,
            name,
            spec,
            sink,
            scratch,
        };
        let read_err = |source| CollectError::Read {
            name: name.clone(),
            source,
        };
        match collector.run(&mut report).await {
            Ok(()) => {}
            Err(Failure::Error(reason, message)) => {
                log.error(&message).await.map_err(read_err)?;
                let error = ErrorArtifact {
                    name: name.clone(),
                    reason,
                    message,
                    expires: spec.expires,
                };
                sink.put_error(&error).await?;
                report.errors.push(error);
            }
            Err(Failure::Sink(e)) => return Err(CollectError::Sink(e)),
            Err(Failure::Io(e)) => return Err(read_err(e)),
        }
    }
    Ok(report)
}

enum Failure {
    Error(ErrorReason, String),
    Sink(SinkError),
    Io(io::Error),
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Failure::Io(e)
    }
}

struct Collector<'a> {
    docker: &'a Docker,
    container_id: &'a str,
    name: &'a str,
    spec: &'a ArtifactSpec,
    sink: &'a dyn ArtifactSink,
    scratch: &'a Path,
}

impl Collector<'_> {
    fn missing(&self, path: &str) -> Failure {
        Failure::Error(
            ErrorReason::FileMissingOnWorker,
            format!("Artifact \"{}\" not found at \"{}\"", self.name, path),
        )
    }

    fn mismatch(&self, path: &str, found: &str) -> Failure {
        let want = match self.spec.kind {
            ArtifactKind::File => "file",
            ArtifactKind::Directory => "directory",
        };
        Failure::Error(
            ErrorReason::InvalidResourceOnWorker,
            format!(
                "Artifact \"{}\" at \"{}\" is a {found}, not a {want}",
                self.name, path
            ),
        )
    }

    async fn run(&self, report: &mut ArtifactReport) -> Result<(), Failure> {
        let mut path = self.spec.path.clone();
        for _ in 0..=MAX_SYMLINK_HOPS {
            let reader = StreamReader::new(
                self.docker
                    .archive(self.container_id, &path)
                    .map_err(docker_to_io),
            );
            let mut archive = Archive::new(reader);
            let mut entries = archive.entries()?;
            let first = match entries.next().await {
                Some(Ok(entry)) => entry,
                Some(Err(e)) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(self.missing(&path))
                }
                Some(Err(e)) => return Err(e.into()),
                None => return Err(self.missing(&path)),
            };
            let kind = first.header().entry_type();
            match (self.spec.kind, kind) {
                (_, EntryType::Symlink) => {
                    let target = first.link_name()?.map(|t| t.to_path_buf());
                    let Some(target) = target else {
                        return Err(self.missing(&path));
                    };
                    path = resolve_link(&path, &target);
                    continue;
                }
                (ArtifactKind::File, EntryType::Regular | EntryType::Continuous) => {
                    let mut entry = first;
                    return self.store(self.name.to_string(), &mut entry, report).await;
                }
                (ArtifactKind::File, other) => {
                    return Err(self.mismatch(&path, describe(other)));
                }
                (ArtifactKind::Directory, EntryType::Directory) => {
                    let root = first.path()?.to_path_buf();
                    drop(first);
                    while let Some(entry) = entries.next().await {
                        let mut entry = entry?;
                        if !matches!(
                            entry.header().entry_type(),
                            EntryType::Regular | EntryType::Continuous
                        ) {
                            continue;
                        }
                        let full = entry.path()?.to_path_buf();
                        let Some(relative) = safe_relative(&root, &full) else {
                            continue;
                        };
                        let name = format!("{}/{}", self.name.trim_end_matches('/'), relative);
                        self.store(name, &mut entry, report).await?;
                    }
                    return Ok(());
                }
                (ArtifactKind::Directory, other) => {
                    return Err(self.mismatch(&path, describe(other)));
                }
            }
        }
        Err(Failure::Error(
            ErrorReason::InvalidResourceOnWorker,
            format!(
                "Artifact \"{}\" at \"{}\": too many levels of symbolic links",
                self.name, self.spec.path
            ),
        ))
    }

    async fn store(
        &self,
        name: String,
        entry: &mut (impl tokio::io::AsyncRead + Unpin),
        report: &mut ArtifactReport,
    ) -> Result<(), Failure> {
        let spool = tempfile::Builder::new()
            .prefix("artifact-")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .tempfile_in(self.scratch)?
            .into_temp_path();
        let mut file = tokio::fs::File::create(&spool).await?;
        let size = tokio::io::copy(entry, &mut file).await?;
        drop(file);
        let artifact = ArtifactFile {
            content_type: content_type(&name),
            name,
            expires: self.spec.expires,
            size,
        };
        self.sink
            .put_file(&artifact, &spool)
            .await
            .map_err(Failure::Sink)?;
        report.files.push(artifact);
        Ok(())
    }
}

fn docker_to_io(e: DockerError) -> io::Error {
    match e {
        DockerError::NotFound(m) => io::Error::new(io::ErrorKind::NotFound, m),
        other => io::Error::other(other.to_string()),
    }
}

fn describe(kind: EntryType) -> &'static str {
    match kind {
        EntryType::Regular | EntryType::Continuous => "file",
        EntryType::Directory => "directory",
        EntryType::Symlink => "symbolic link",
        EntryType::Char | EntryType::Block => "device",
        EntryType::Fifo => "fifo",
        _ => "special file",
    }
}

/// Resolve a symlink's target against the link's directory, inside the container's namespace.
fn resolve_link(link_path: &str, target: &Path) -> String {
    let base = if target.is_absolute() {
        PathBuf::from("/")
    } else {
        Path::new(link_path)
            .parent()
            .unwrap_or(Path::new("/"))
            .to_path_buf()
    };
    let mut parts: Vec<String> = Vec::new();
    for c in base.join(target).components() {
        match c {
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    format!("/{}", parts.join("/"))
}

/// The path of `full` below `root`, as `/`-joined normal components; `None` if it escapes.
fn safe_relative(root: &Path, full: &Path) -> Option<String> {
    let rest = full.strip_prefix(root).ok()?;
    let mut parts = Vec::new();
    for c in rest.components() {
        match c {
            Component::Normal(p) => parts.push(p.to_str()?.to_string()),
            Component::CurDir => {}
            _ => return None,
        }
    }
    if parts.is_empty() {
        None
    } else {
        Some(parts.join("/"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_come_from_the_name() {
        assert_eq!(content_type("a/b.json"), "application/json");
        assert_eq!(content_type("x.txt"), "text/plain; charset=utf-8");
        assert_eq!(content_type("live.log"), "text/plain; charset=utf-8");
        assert_eq!(content_type("build.tar.gz"), "application/gzip");
        assert_eq!(content_type("noext"), "application/octet-stream");
    }

    #[test]
    fn links_resolve_inside_the_container() {
        assert_eq!(resolve_link("/a/b/link", Path::new("c")), "/a/b/c");
        assert_eq!(
            resolve_link("/a/b/link", Path::new("../../../../etc/x")),
            "/etc/x"
        );
        assert_eq!(
            resolve_link("/a/link", Path::new("/etc/passwd")),
            "/etc/passwd"
        );
    }

    #[test]
    fn relative_paths_never_escape() {
        let root = Path::new("dir");
        assert_eq!(
            safe_relative(root, Path::new("dir/sub/f.txt")),
            Some("sub/f.txt".into())
        );
        assert_eq!(safe_relative(root, Path::new("dir/../x")), None);
        assert_eq!(safe_relative(root, Path::new("other/x")), None);
        assert_eq!(safe_relative(root, Path::new("dir")), None);
    }
}
