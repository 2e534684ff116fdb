//! The words after `dw-deploy packer`: dw-deploy's own flags are taken out wherever they appear
//! (before a `--`), everything else goes to `packer build` unchanged and in order.

use std::path::PathBuf;

/// The packer variable naming the options file (`-var docker_worker_opts=PATH`).
pub const OPTS_VAR: &str = "docker_worker_opts";
/// The packer variable dw-deploy sets to the staging directory.
pub const STAGING_VAR: &str = "staging_dir";

/// What `dw-deploy packer` was asked to do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackerRequest {
    /// Use this `docker-worker` binary instead of building one with `cargo build --release`.
    pub binary: Option<PathBuf>,
    /// Stage everything and print the packer command, but do not run packer.
    pub dry_run: bool,
    /// Print packer's raw `-machine-readable` output.
    pub verbose: bool,
    /// The flags for `packer build`, in the order given.
    pub packer_args: Vec<String>,
}

/// A command line dw-deploy cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgsError {
    /// No `-var docker_worker_opts=PATH`.
    #[error("missing `-var \"{OPTS_VAR}=PATH\"`: the options file with the worker's credentials (copy docker_worker_opts_example.sh and fill it in)")]
    MissingOpts,
    /// `docker_worker_opts` given twice.
    #[error("`-var {OPTS_VAR}=...` is given more than once")]
    DuplicateOpts,
    /// `docker_worker_opts` given with an empty path.
    #[error("`-var {OPTS_VAR}=` needs a path")]
    EmptyOpts,
    /// The user tried to set the variable dw-deploy owns.
    #[error("`{STAGING_VAR}` is set by dw-deploy; do not pass it")]
    StagingVar,
    /// `--binary` without a path.
    #[error("`--binary` needs a path")]
    BinaryWithoutPath,
}

impl PackerRequest {
    /// Moves dw-deploy's own flags (`--dry-run`, `--verbose`, `--binary PATH`) out of
    /// `packer_args`; a `--` ends that search and is itself dropped.
    pub fn take_own_flags(mut self) -> Result<PackerRequest, ArgsError> {
        let words = std::mem::take(&mut self.packer_args);
        let mut iter = words.into_iter();
        while let Some(w) = iter.next() {
            match w.as_str() {
                "--" => {
                    self.packer_args.extend(iter);
                    break;
                }
                "--dry-run" => self.dry_run = true,
                "--verbose" => self.verbose = true,
                "--binary" => {
                    let path = iter.next().ok_or(ArgsError::BinaryWithoutPath)?;
                    self.binary = Some(PathBuf::from(path));
                }
                _ => match w.strip_prefix("--binary=") {
                    Some("") => return Err(ArgsError::BinaryWithoutPath),
                    Some(path) => self.binary = Some(PathBuf::from(path)),
                    None => self.packer_args.push(w),
                },
            }
        }
        Ok(self)
    }

    /// The options file path from `-var docker_worker_opts=PATH` (also `-var=...`, `--var`).
    pub fn opts_path(&self) -> Result<PathBuf, ArgsError> {
        let mut found = None;
        for assignment in var_assignments(&self.packer_args) {
            let (name, value) = assignment.split_once('=').unwrap_or((assignment, ""));
            if name == STAGING_VAR {
                return Err(ArgsError::StagingVar);
            }
            if name == OPTS_VAR {
                if found.is_some() {
                    return Err(ArgsError::DuplicateOpts);
                }
                if value.is_empty() {
                    return Err(ArgsError::EmptyOpts);
                }
                found = Some(PathBuf::from(value));
            }
        }
        found.ok_or(ArgsError::MissingOpts)
    }
}

/// The `NAME=VALUE` words of every `-var` flag in `args`.
fn var_assignments(args: &[String]) -> Vec<&str> {
    let mut out = Vec::new();
    let mut iter = args.iter();
    while let Some(a) = iter.next() {
        match a.as_str() {
            "-var" | "--var" => {
                if let Some(v) = iter.next() {
                    out.push(v.as_str());
                }
            }
            _ => {
                if let Some(v) = a.strip_prefix("-var=").or_else(|| a.strip_prefix("--var=")) {
                    out.push(v);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(words: &[&str]) -> PackerRequest {
        PackerRequest {
            packer_args: words.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn own_flags_anywhere_before_double_dash() {
        let r = req(&[
            "-var",
            "docker_worker_opts=o.sh",
            "--dry-run",
            "-force",
            "--binary=b",
            "--",
            "--verbose",
        ])
        .take_own_flags()
        .unwrap();
        assert!(r.dry_run);
        assert!(!r.verbose);
        assert_eq!(r.binary, Some(PathBuf::from("b")));
        assert_eq!(
            r.packer_args,
            ["-var", "docker_worker_opts=o.sh", "-force", "--verbose"]
        );
        assert_eq!(r.opts_path().unwrap(), PathBuf::from("o.sh"));
    }

    #[test]
    fn opts_var_forms() {
        assert_eq!(
            req(&["-var=docker_worker_opts=a"]).opts_path(),
            Ok("a".into())
        );
        assert_eq!(
            req(&["--var", "docker_worker_opts=a"]).opts_path(),
            Ok("a".into())
        );
        assert_eq!(
            req(&["-var", "x=1"]).opts_path(),
            Err(ArgsError::MissingOpts)
        );
        assert_eq!(
            req(&["-var", "docker_worker_opts=a", "-var=docker_worker_opts=b"]).opts_path(),
            Err(ArgsError::DuplicateOpts)
        );
        assert_eq!(
            req(&["-var", "docker_worker_opts=a", "-var", "staging_dir=/x"]).opts_path(),
            Err(ArgsError::StagingVar)
        );
    }
}
