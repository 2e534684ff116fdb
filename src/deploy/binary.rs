//! The `docker-worker` binary that goes into the image: built with `cargo build --release`
//! from the repository, unless the operator names one with `--binary PATH`.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// Why the release binary could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BinaryError {
    /// cargo could not be started.
    #[error("cannot run `cargo build --release` (is the Rust toolchain installed? or pass --binary PATH)")]
    Spawn(#[source] std::io::Error),
    /// cargo ran and failed; its diagnostics are already on stderr.
    #[error("`cargo build --release --bin docker-worker` failed ({0})")]
    Failed(std::process::ExitStatus),
    /// cargo succeeded but did not report the executable.
    #[error("`cargo build --release` did not report a docker-worker executable")]
    NoExecutable,
}

/// Runs `cargo build --release --bin docker-worker` in `repo` (cargo's own messages go to
/// stderr) and returns the executable's path as cargo reports it. Cancel-safe: dropping the
/// future kills cargo.
pub async fn build_release(repo: &Path) -> Result<PathBuf, BinaryError> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut child = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--bin",
            "docker-worker",
            "--message-format=json-render-diagnostics",
        ])
        .current_dir(repo)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(BinaryError::Spawn)?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut lines = BufReader::new(stdout).lines();
    let mut executable = None;
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(path) = executable_from_message(&line) {
            executable = Some(path);
        }
    }
    let status = child.wait().await.map_err(BinaryError::Spawn)?;
    if !status.success() {
        return Err(BinaryError::Failed(status));
    }
    executable.ok_or(BinaryError::NoExecutable)
}

/// The `executable` of a cargo `compiler-artifact` message for the docker-worker binary.
fn executable_from_message(line: &str) -> Option<PathBuf> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    if v.get("reason")?.as_str()? != "compiler-artifact" {
        return None;
    }
    if v.pointer("/target/name")?.as_str()? != "docker-worker" {
        return None;
    }
    v.get("executable")?.as_str().map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cargo_artifact_message() {
        let line = r#"{"reason":"compiler-artifact","target":{"name":"docker-worker","kind":["bin"]},"executable":"/r/target/release/docker-worker"}"#;
        assert_eq!(
            executable_from_message(line),
            Some(PathBuf::from("/r/target/release/docker-worker"))
        );
        let lib =
            r#"{"reason":"compiler-artifact","target":{"name":"docker_worker"},"executable":null}"#;
        assert_eq!(executable_from_message(lib), None);
    }
}
