//! The staging directory: a private temporary directory holding exactly the files the image
//! receives. It is removed when [`Staging`] is dropped, which every exit path of dw-deploy does.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Name of the worker binary in the staging directory.
pub const BINARY: &str = "docker-worker";
/// Name of the defaults file in the staging directory.
pub const DEFAULTS: &str = "default-worker";
/// Name of the options file in the staging directory.
pub const OPTIONS: &str = "docker-worker-opts.sh";
/// Name of the systemd unit in the staging directory.
pub const UNIT: &str = "docker-worker.service";

/// One file placed in the staging directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedFile {
    /// File name inside the staging directory.
    pub name: String,
    /// Unix permission bits.
    pub mode: u32,
    /// Size in bytes.
    pub size: u64,
}

/// The temporary staging directory and what has been put in it.
#[derive(Debug)]
pub struct Staging {
    dir: tempfile::TempDir,
    files: Vec<StagedFile>,
}

/// A staging step that failed.
#[derive(Debug, thiserror::Error)]
#[error("staging {what}")]
pub struct StagingError {
    /// What was being staged.
    pub what: String,
    /// The I/O error.
    #[source]
    pub source: std::io::Error,
}

impl Staging {
    /// Creates an empty private (0700) directory `dw-deploy-*` in the system temp directory.
    pub fn create() -> Result<Staging, StagingError> {
        let dir = tempfile::Builder::new()
            .prefix("dw-deploy-")
            .tempdir()
            .map_err(|source| StagingError {
                what: "directory".into(),
                source,
            })?;
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).map_err(|source| {
            StagingError {
                what: "directory".into(),
                source,
            }
        })?;
        Ok(Staging {
            dir,
            files: Vec::new(),
        })
    }

    /// The directory's path (what packer gets as `staging_dir`).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The files staged so far, in staging order.
    pub fn files(&self) -> &[StagedFile] {
        &self.files
    }

    /// Writes `contents` as `name` with `mode`; the file never exists with a wider mode.
    pub fn write(&mut self, name: &str, contents: &[u8], mode: u32) -> Result<(), StagingError> {
        let err = |source| StagingError {
            what: name.to_string(),
            source,
        };
        let path = self.dir.path().join(name);
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)
            .map_err(err)?;
        f.write_all(contents).map_err(err)?;
        f.sync_all().map_err(err)?;
        // The umask may have narrowed the mode at creation; set it exactly.
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).map_err(err)?;
        self.files.push(StagedFile {
            name: name.to_string(),
            mode,
            size: contents.len() as u64,
        });
        Ok(())
    }

    /// Copies the file at `source` in as `name` with `mode`.
    pub fn copy(&mut self, name: &str, source: &Path, mode: u32) -> Result<(), StagingError> {
        let err = |e: std::io::Error| StagingError {
            what: format!("{name} from {}", source.display()),
            source: e,
        };
        let meta = fs::metadata(source).map_err(err)?;
        if !meta.is_file() {
            return Err(err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a regular file",
            )));
        }
        let dest = self.dir.path().join(name);
        let size = fs::copy(source, &dest).map_err(err)?;
        fs::set_permissions(&dest, fs::Permissions::from_mode(mode)).map_err(err)?;
        self.files.push(StagedFile {
            name: name.to_string(),
            mode,
            size,
        });
        Ok(())
    }

    /// A listing like `ls -l`: mode, size, name, one file a line.
    pub fn listing(&self) -> String {
        let mut out = String::new();
        for f in &self.files {
            out.push_str(&format!(
                "  {} {:>10}  {}\n",
                mode_string(f.mode),
                f.size,
                f.name
            ));
        }
        out
    }

    /// Removes the directory now, reporting failure (dropping also removes it, silently).
    pub fn remove(self) -> std::io::Result<()> {
        self.dir.close()
    }

    /// Where the staged file `name` is.
    pub fn file_path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// `0o640` as `rw-r-----`.
pub fn mode_string(mode: u32) -> String {
    let mut s = String::with_capacity(10);
    s.push('-');
    for shift in [6, 3, 0] {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn writes_with_exact_modes_and_cleans_up() {
        let mut s = Staging::create().unwrap();
        let dir = s.path().to_path_buf();
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        s.write(OPTIONS, b"A=1\n", 0o600).unwrap();
        s.write(DEFAULTS, b"B=2\n", 0o644).unwrap();
        assert_eq!(
            fs::metadata(s.file_path(OPTIONS)).unwrap().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::metadata(s.file_path(DEFAULTS)).unwrap().mode() & 0o777,
            0o644
        );
        assert!(s
            .listing()
            .contains("-rw-------          4  docker-worker-opts.sh"));
        drop(s);
        assert!(!dir.exists());
    }

    #[test]
    fn mode_strings() {
        assert_eq!(mode_string(0o755), "-rwxr-xr-x");
        assert_eq!(mode_string(0o600), "-rw-------");
    }
}
