//! Running `packer build`: finding packer, the exact command line, relaying its output through
//! [`Progress`], forwarding a termination signal and waiting for packer to clean up.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use super::args::STAGING_VAR;
use super::progress::{Artifact, Progress};
use super::signals::{Received, Signals};

/// The template dw-deploy builds, relative to the repository root.
pub const TEMPLATE: &str = "packer/worker.json";

/// The error for a missing packer, naming what to install.
#[derive(Debug, thiserror::Error)]
pub enum PackerError {
    /// packer is not on PATH.
    #[error("packer is not installed (not found on PATH): install the Debian/Ubuntu package `packer` (`sudo apt-get install packer`) or see https://developer.hashicorp.com/packer/install")]
    Missing,
    /// packer could not be started or waited for.
    #[error("running packer")]
    Io(#[from] std::io::Error),
}

/// How a packer run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// packer exited by itself with this status (128 + n if a signal stopped it).
    Exited(i32),
    /// dw-deploy received this signal; packer was told and has stopped.
    Interrupted(Received),
}

/// The first executable `name` on `PATH`.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| {
            std::fs::metadata(p)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// The arguments after `packer`: `build -machine-readable -var staging_dir=DIR`, then the
/// user's flags unchanged and in order, then the template (Go's flag parsing needs it last).
pub fn build_args(staging_dir: &Path, user_args: &[String], template: &str) -> Vec<String> {
    let mut args = vec![
        "build".to_string(),
        "-machine-readable".to_string(),
        "-var".to_string(),
        format!("{STAGING_VAR}={}", staging_dir.display()),
    ];
    args.extend(user_args.iter().cloned());
    args.push(template.to_string());
    args
}

/// The command as a shell would need it typed (words quoted only when needed).
pub fn display_command(args: &[String]) -> String {
    let mut line = String::from("packer");
    for a in args {
        line.push(' ');
        let plain = !a.is_empty()
            && a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c));
        if plain {
            line.push_str(a);
        } else {
            line.push_str(&shell_words::quote(a));
        }
    }
    line
}

/// Runs packer with `args`, relaying its output through `progress`. On the first termination
/// signal the same signal is forwarded to packer (which then destroys what it created) and
/// dw-deploy keeps waiting; on a second one packer is killed.
pub async fn run(
    packer: &Path,
    args: &[String],
    mut progress: Progress,
    signals: &mut Signals,
) -> Result<(Ended, Vec<Artifact>, Duration), PackerError> {
    let mut child = Command::new(packer)
        .args(args)
        .stdin(Stdio::inherit())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => PackerError::Missing,
            _ => PackerError::Io(e),
        })?;
    let mut out = BufReader::new(child.stdout.take().expect("piped")).split(b'\n');
    let mut err = BufReader::new(child.stderr.take().expect("piped")).split(b'\n');
    let (mut out_done, mut err_done) = (false, false);
    let mut status = None;
    let mut interrupted: Option<Received> = None;
    while status.is_none() || !out_done || !err_done {
        tokio::select! {
            line = out.next_segment(), if !out_done => match line {
                Ok(Some(l)) => progress.stdout_line(&String::from_utf8_lossy(&l)),
                _ => out_done = true,
            },
            line = err.next_segment(), if !err_done => match line {
                Ok(Some(l)) => progress.stderr_line(&String::from_utf8_lossy(&l)),
                _ => err_done = true,
            },
            s = child.wait(), if status.is_none() => status = Some(s?),
            sig = signals.recv() => {
                if interrupted.is_none() {
                    interrupted = Some(sig);
                    progress.note(&format!(
                        "received SIG{}: waiting for packer to clean up (send it again to stop packer at once)",
                        sig.name()
                    ));
                    if let Some(pid) = child.id() {
                        forward(pid, sig);
                    }
                } else {
                    progress.note("stopping packer now; it may leave cloud resources behind");
                    let _ = child.start_kill();
                }
            },
            // packer exited but something it started still holds its output open.
            _ = tokio::time::sleep(Duration::from_secs(2)), if status.is_some() => break,
        }
    }
    let (artifacts, elapsed) = progress.finish();
    let status = status.expect("loop ends after packer exits");
    let ended = match interrupted {
        Some(sig) => Ended::Interrupted(sig),
        None => Ended::Exited(
            status
                .code()
                .or_else(|| status.signal().map(|s| 128 + s))
                .unwrap_or(1),
        ),
    };
    Ok((ended, artifacts, elapsed))
}

/// Sends `sig` to packer and its direct children with kill(1) (std can only send SIGKILL).
/// The children matter: packer re-executes itself under panicwrap, and the wrapping parent
/// ignores SIGINT, expecting the real packer (its child) to get it from the terminal. Getting
/// it twice (terminal and here) is harmless: packer cancels on the first and swallows the rest.
fn forward(pid: u32, sig: Received) {
    let mut targets = vec![pid.to_string()];
    targets.extend(children_of(pid).iter().map(u32::to_string));
    let _ = std::process::Command::new("kill")
        .args(["-s", sig.name()])
        .args(&targets)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// The processes whose parent is `pid`, from `/proc/*/stat`.
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| {
            let child: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).ok()?;
            // `pid (comm) state ppid ...`; comm may contain spaces and parentheses.
            let after_comm = &stat[stat.rfind(')')? + 1..];
            let ppid: u32 = after_comm.split_whitespace().nth(1)?.parse().ok()?;
            (ppid == pid).then_some(child)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_child_processes() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let found = super::children_of(std::process::id());
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(found.contains(&child.id()), "{found:?}");
    }

    use super::*;

    #[test]
    fn user_args_in_order_between_ours_and_template() {
        let user = vec![
            "-var".to_string(),
            "a=b c".to_string(),
            "-force".to_string(),
        ];
        let args = build_args(Path::new("/tmp/s"), &user, TEMPLATE);
        assert_eq!(
            args,
            [
                "build",
                "-machine-readable",
                "-var",
                "staging_dir=/tmp/s",
                "-var",
                "a=b c",
                "-force",
                "packer/worker.json"
            ]
        );
        assert_eq!(
            display_command(&args),
            "packer build -machine-readable -var staging_dir=/tmp/s -var 'a=b c' -force packer/worker.json"
        );
    }
}
