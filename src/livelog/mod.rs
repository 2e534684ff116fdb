//! The task log: one writer appends to a backing file; any number of readers follow it from the
//! start at their own pace (a slow reader never slows the task, and memory stays bounded because
//! readers read the file, not a buffer). Worker lines use the formats of DESIGN.md §2.

pub mod server;

use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use chrono::{SecondsFormat, Utc};
use futures_util::Stream;
use tokio::fs::File;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::sync::watch;

/// How much of the log exists, and whether the writer is done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Progress {
    len: u64,
    closed: bool,
}

/// The single writer of one task's log.
#[derive(Debug)]
pub struct TaskLog {
    file: File,
    path: PathBuf,
    progress: watch::Sender<Progress>,
    /// Whether the last byte written ended a line (worker lines always start on a fresh line).
    at_line_start: bool,
}

/// A handle that opens followers of a log; cheap to clone, usable after the writer is gone.
#[derive(Debug, Clone)]
pub struct LogFollowers {
    path: PathBuf,
    progress: watch::Receiver<Progress>,
}

/// `[taskcluster 2026-01-31 12:00:00.000Z] ` for the current time.
fn info_prefix() -> String {
    let now = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
    format!("[taskcluster {}] ", now.replacen('T', " ", 1))
}

impl TaskLog {
    /// Create (truncate) the backing file at `path`.
    pub async fn create(path: impl AsRef<Path>) -> io::Result<TaskLog> {
        let path = path.as_ref().to_path_buf();
        let file = File::create(&path).await?;
        let (progress, _) = watch::channel(Progress::default());
        Ok(TaskLog {
            file,
            path,
            progress,
            at_line_start: true,
        })
    }

    /// Path of the backing file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.progress.borrow().len
    }

    /// Whether nothing has been written yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A handle for opening readers that follow this log.
    pub fn followers(&self) -> LogFollowers {
        LogFollowers {
            path: self.path.clone(),
            progress: self.progress.subscribe(),
        }
    }

    /// Append raw bytes (container output) and wake the readers.
    pub async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.file.write_all(bytes).await?;
        self.file.flush().await?;
        self.at_line_start = bytes.ends_with(b"\n");
        self.progress.send_modify(|p| p.len += bytes.len() as u64);
        Ok(())
    }

    /// Write a worker info line: `[taskcluster <time>] message`, on a line of its own even when
    /// the container's output did not end with a newline.
    pub async fn info(&mut self, message: &str) -> io::Result<()> {
        let start = if self.at_line_start { "" } else { "\r\n" };
        let line = format!("{start}{}{}\r\n", info_prefix(), message);
        self.write(line.as_bytes()).await
    }

    /// Write a worker error line: a newline, then `[taskcluster:error] message`.
    pub async fn error(&mut self, message: &str) -> io::Result<()> {
        let line = format!("\r\n[taskcluster:error] {message}\r\n");
        self.write(line.as_bytes()).await
    }

    /// Finish the log: readers see the end once they have read everything. Returns the file path.
    pub async fn close(mut self) -> io::Result<PathBuf> {
        self.file.flush().await?;
        self.file.sync_data().await.ok();
        self.progress.send_modify(|p| p.closed = true);
        Ok(self.path.clone())
    }
}

impl Drop for TaskLog {
    fn drop(&mut self) {
        // A writer dropped without close() still ends its readers.
        self.progress.send_modify(|p| p.closed = true);
    }
}

impl LogFollowers {
    /// Whether the writer has finished.
    pub fn is_closed(&self) -> bool {
        self.progress.borrow().closed
    }

    /// A stream of the log from its first byte, following new bytes until the writer closes.
    pub fn follow(&self) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static {
        const CHUNK: usize = 64 * 1024;
        struct State {
            file: Option<File>,
            path: PathBuf,
            progress: watch::Receiver<Progress>,
            offset: u64,
        }
        let state = State {
            file: None,
            path: self.path.clone(),
            progress: self.progress.clone(),
            offset: 0,
        };
        futures_util::stream::try_unfold(state, |mut st| async move {
            loop {
                let now = *st.progress.borrow_and_update();
                if st.offset < now.len {
                    if st.file.is_none() {
                        let mut file = File::open(&st.path).await?;
                        file.seek(io::SeekFrom::Start(st.offset)).await?;
                        st.file = Some(file);
                    }
                    let want = (now.len - st.offset).min(CHUNK as u64) as usize;
                    let mut buf = vec![0u8; want];
                    let file = st.file.as_mut().expect("opened above");
                    let n = file.read(&mut buf).await?;
                    if n == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "task log backing file is shorter than written",
                        ));
                    }
                    buf.truncate(n);
                    st.offset += n as u64;
                    return Ok(Some((Bytes::from(buf), st)));
                }
                if now.closed {
                    return Ok(None);
                }
                if st.progress.changed().await.is_err() {
                    // Writer gone without close: whatever is written is all there is.
                    let last = *st.progress.borrow();
                    if st.offset >= last.len {
                        return Ok(None);
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::TryStreamExt;

    async fn collect(f: &LogFollowers) -> Vec<u8> {
        let chunks: Vec<Bytes> = f.follow().try_collect().await.unwrap();
        chunks.concat()
    }

    #[tokio::test]
    async fn lines_have_the_documented_formats() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = TaskLog::create(dir.path().join("log")).await.unwrap();
        let followers = log.followers();
        log.info("hello").await.unwrap();
        log.error("bad").await.unwrap();
        log.close().await.unwrap();
        let text = String::from_utf8(collect(&followers).await).unwrap();
        let (info, error) = text.split_once("\r\n").unwrap();
        assert!(info.starts_with("[taskcluster 2"), "{info}");
        assert!(info.ends_with("Z] hello"), "{info}");
        assert_eq!(&info[23..24], " ", "T replaced by a space: {info}");
        assert_eq!(error, "\r\n[taskcluster:error] bad\r\n");
    }

    #[tokio::test]
    async fn a_reader_started_early_follows_until_close() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = TaskLog::create(dir.path().join("log")).await.unwrap();
        let followers = log.followers();
        let reader = tokio::spawn(async move { collect(&followers).await });
        for i in 0..100 {
            log.write(format!("line {i}\n").as_bytes()).await.unwrap();
            tokio::task::yield_now().await;
        }
        log.close().await.unwrap();
        let got = String::from_utf8(reader.await.unwrap()).unwrap();
        assert_eq!(got.lines().count(), 100);
        assert!(got.ends_with("line 99\n"));
    }

    #[tokio::test]
    async fn worker_lines_start_on_a_fresh_line() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = TaskLog::create(dir.path().join("log")).await.unwrap();
        let followers = log.followers();
        log.write(b"no newline at the end").await.unwrap();
        log.info("=== Task Finished ===").await.unwrap();
        log.close().await.unwrap();
        let text = String::from_utf8(collect(&followers).await).unwrap();
        let (output, marker) = text.split_once("\r\n").unwrap();
        assert_eq!(output, "no newline at the end");
        assert!(marker.starts_with("[taskcluster "), "{marker}");
    }

    #[tokio::test]
    async fn a_late_reader_gets_everything_from_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = TaskLog::create(dir.path().join("log")).await.unwrap();
        log.write(b"abc").await.unwrap();
        let followers = log.followers();
        log.close().await.unwrap();
        assert_eq!(collect(&followers).await, b"abc");
    }
}
