//! Builds the test images (`taskenv_pass`, `taskenv_fail`) from local content only: the build
//! contexts in the repository (embedded at compile time) plus the host's static busybox.

use std::path::{Path, PathBuf};

use crate::docker::{Docker, DockerError};

/// Where the static busybox comes from (`BUSYBOX` overrides; Debian's `busybox-static`).
pub fn busybox_path() -> PathBuf {
    std::env::var_os("BUSYBOX")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/busybox"))
}

/// One file of a build context: its path in the context, mode and content.
pub type ContextFile = (&'static str, u32, &'static [u8]);

/// A test image: its tag and build context files (busybox is added at build time).
#[derive(Debug, Clone, Copy)]
pub struct TestImage {
    /// Image tag.
    pub tag: &'static str,
    /// Context files.
    pub files: &'static [ContextFile],
}

/// `taskenv_pass:latest`: `/bin/taskenv-pass` echoes its arguments and exits 0.
pub const TASKENV_PASS: TestImage = TestImage {
    tag: "taskenv_pass:latest",
    files: &[
        (
            "Dockerfile",
            0o644,
            include_bytes!("../../taskenv_pass/Dockerfile"),
        ),
        (
            "rootfs/bin/taskenv-pass",
            0o755,
            include_bytes!("../../taskenv_pass/rootfs/bin/taskenv-pass"),
        ),
        (
            "rootfs/etc/passwd",
            0o644,
            include_bytes!("../../taskenv_pass/rootfs/etc/passwd"),
        ),
        (
            "rootfs/etc/group",
            0o644,
            include_bytes!("../../taskenv_pass/rootfs/etc/group"),
        ),
    ],
};

/// `taskenv_fail:latest`: `/bin/taskenv-fail` prints `fail` and exits 1.
pub const TASKENV_FAIL: TestImage = TestImage {
    tag: "taskenv_fail:latest",
    files: &[
        (
            "Dockerfile",
            0o644,
            include_bytes!("../../taskenv_fail/Dockerfile"),
        ),
        (
            "rootfs/bin/taskenv-fail",
            0o755,
            include_bytes!("../../taskenv_fail/rootfs/bin/taskenv-fail"),
        ),
        (
            "rootfs/etc/passwd",
            0o644,
            include_bytes!("../../taskenv_fail/rootfs/etc/passwd"),
        ),
        (
            "rootfs/etc/group",
            0o644,
            include_bytes!("../../taskenv_fail/rootfs/etc/group"),
        ),
    ],
};

/// Building a test image failed.
#[derive(Debug, thiserror::Error)]
pub enum ImageBuildError {
    /// The static busybox is missing.
    #[error("{path} not found: install Debian's busybox-static (or set BUSYBOX to a static busybox): {source}")]
    Busybox {
        /// Where it was looked for.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Docker refused the build.
    #[error("building {tag}: {source}")]
    Docker {
        /// The image tag.
        tag: String,
        /// The error.
        source: DockerError,
    },
    /// Making the context tar failed.
    #[error("making the build context: {0}")]
    Context(#[from] std::io::Error),
}

/// A build context tar: the given files plus `busybox` (and any `extra` files).
pub async fn context_tar(
    files: &[(&str, u32, &[u8])],
    busybox: &Path,
) -> Result<Vec<u8>, ImageBuildError> {
    let busybox_bytes =
        tokio::fs::read(busybox)
            .await
            .map_err(|source| ImageBuildError::Busybox {
                path: busybox.to_path_buf(),
                source,
            })?;
    let mut builder = tokio_tar::Builder::new(Vec::new());
    let all = files.iter().copied().chain(std::iter::once((
        "busybox",
        0o755,
        busybox_bytes.as_slice(),
    )));
    for (path, mode, data) in all {
        let mut header = tokio_tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(mode);
        header.set_mtime(0);
        header.set_cksum();
        builder.append_data(&mut header, path, data).await?;
    }
    Ok(builder.into_inner().await?)
}

/// Build one image from context files plus busybox.
pub async fn build(
    docker: &Docker,
    tag: &str,
    files: &[(&str, u32, &[u8])],
) -> Result<(), ImageBuildError> {
    let tar = context_tar(files, &busybox_path()).await?;
    docker
        .build_image(tag, tar)
        .await
        .map_err(|source| ImageBuildError::Docker {
            tag: tag.to_string(),
            source,
        })
}

/// Build `taskenv_pass` and `taskenv_fail` (Docker's cache makes a rebuild cheap).
pub async fn build_test_images(docker: &Docker) -> Result<(), ImageBuildError> {
    for image in [TASKENV_PASS, TASKENV_FAIL] {
        build(docker, image.tag, image.files).await?;
    }
    Ok(())
}
