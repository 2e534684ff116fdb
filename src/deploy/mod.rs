//! `dw-deploy`: bakes a worker host image with packer.
//!
//! `dw-deploy packer -var "docker_worker_opts=FILE" [packer flags...]` reads the options file
//! ([`options`]), stages the image's files in a private temporary directory ([`staging`]): the
//! release `docker-worker` binary ([`binary`]), `default-worker`, the options file and the
//! systemd unit; then runs `packer build` on `packer/worker.json` ([`packer`]) with the staging
//! directory as a variable, showing progress ([`progress`]). Credentials reach packer only inside
//! the staged 0600 file, never on a command line, and are redacted from everything relayed
//! ([`secrets`]). The staging directory is removed on every exit path, signals included
//! ([`signals`]).

pub mod args;
pub mod binary;
pub mod options;
pub mod packer;
pub mod progress;
pub mod secrets;
pub mod signals;
pub mod staging;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub use args::PackerRequest;

use options::{EnvFile, FileKind};
use secrets::Secrets;
use signals::Signals;
use staging::Staging;

/// The defaults file, relative to the repository root.
pub const DEFAULTS_FILE: &str = "packer/app/etc/default-worker";
/// The systemd unit, relative to the repository root.
pub const UNIT_FILE: &str = "packer/app/systemd/docker-worker.service";

/// Why dw-deploy stopped before packer could decide the outcome.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The command line is unusable.
    #[error(transparent)]
    Args(#[from] args::ArgsError),
    /// Not run from the repository root.
    #[error("{} not found in {}: run dw-deploy from the docker-worker repository root", missing, cwd.display())]
    NotInRepo {
        /// The current directory.
        cwd: PathBuf,
        /// The repository file that is missing.
        missing: &'static str,
    },
    /// The options file or the defaults file is unreadable or invalid.
    #[error(transparent)]
    Options(#[from] options::LoadError),
    /// packer is missing or failed to run.
    #[error(transparent)]
    Packer(#[from] packer::PackerError),
    /// The staging directory could not be filled.
    #[error(transparent)]
    Staging(#[from] staging::StagingError),
    /// The release binary could not be built.
    #[error(transparent)]
    Binary(#[from] binary::BinaryError),
    /// A signal handler could not be installed, or the current directory is unknown.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Runs `dw-deploy packer` and returns the exit status dw-deploy should have: packer's own,
/// 0 for a dry run, or 128 + n when signal n stopped the run.
pub async fn run_packer(request: PackerRequest) -> Result<i32, DeployError> {
    // First, so that from here on a signal cannot skip the staging directory's removal.
    let mut signals = Signals::install()?;
    let request = request.take_own_flags()?;
    let opts_path = request.opts_path()?;

    let repo = std::env::current_dir()?;
    for missing in [packer::TEMPLATE, DEFAULTS_FILE, UNIT_FILE] {
        if !repo.join(missing).is_file() {
            return Err(DeployError::NotInRepo { cwd: repo, missing });
        }
    }
    let defaults_path = repo.join(DEFAULTS_FILE);
    EnvFile::load(&defaults_path, FileKind::Defaults)?;
    let opts = EnvFile::load(&opts_path, FileKind::Options)?;
    warn_if_readable_by_others(&opts_path);
    let secrets = Secrets::new(opts.secret_values()).with_packer_escapes();

    let packer_path = packer::find_on_path("packer");
    if packer_path.is_none() && !request.dry_run {
        return Err(packer::PackerError::Missing.into());
    }

    let mut staging = Staging::create()?;
    let binary = match &request.binary {
        Some(path) => path.clone(),
        None => {
            eprintln!(
                "dw-deploy: building the release docker-worker binary (cargo build --release)"
            );
            tokio::select! {
                built = binary::build_release(&repo) => built?,
                sig = signals.recv() => {
                    // Dropping the build kills cargo; dropping `staging` removes the directory.
                    eprintln!("dw-deploy: received SIG{}; stopped", sig.name());
                    return Ok(sig.exit_code());
                }
            }
        }
    };
    staging.copy(staging::BINARY, &binary, 0o755)?;
    staging.copy(staging::DEFAULTS, &defaults_path, 0o644)?;
    let shown = opts_path.display().to_string();
    staging.write(staging::OPTIONS, opts.render(&shown).as_bytes(), 0o600)?;
    staging.copy(staging::UNIT, &repo.join(UNIT_FILE), 0o644)?;

    let args = packer::build_args(staging.path(), &request.packer_args, packer::TEMPLATE);
    let command = packer::display_command(&args);

    if request.dry_run {
        println!(
            "staged files in {} (removed when dw-deploy exits):",
            staging.path().display()
        );
        print!("{}", staging.listing());
        println!("packer command (not run, --dry-run):");
        println!("  {command}");
        if packer_path.is_none() {
            eprintln!("dw-deploy: note: {}", packer::PackerError::Missing);
        }
        staging.remove()?;
        return Ok(0);
    }
    let packer_path = packer_path.ok_or(packer::PackerError::Missing)?;

    eprintln!(
        "dw-deploy: staged {} files in {}",
        staging.files().len(),
        staging.path().display()
    );
    eprintln!("dw-deploy: running {command}");
    let progress = progress::Progress::start(request.verbose, secrets);
    let (ended, artifacts, elapsed) =
        packer::run(&packer_path, &args, progress, &mut signals).await?;
    staging.remove()?;
    let took = progress::format_duration(elapsed);
    Ok(match ended {
        packer::Ended::Exited(0) => {
            eprintln!("dw-deploy: packer finished in {took}");
            if artifacts.is_empty() {
                println!("packer reported no artifacts");
            }
            for a in &artifacts {
                println!("artifact: {}: {}", a.builder, a.id);
            }
            0
        }
        packer::Ended::Exited(code) => {
            eprintln!("dw-deploy: packer failed with exit status {code} after {took}");
            code
        }
        packer::Ended::Interrupted(sig) => {
            eprintln!(
                "dw-deploy: stopped by SIG{} after {took}; temporary files removed",
                sig.name()
            );
            sig.exit_code()
        }
    })
}

/// Credentials should not be readable by other users of the operator's machine.
fn warn_if_readable_by_others(path: &Path) {
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            eprintln!(
                "dw-deploy: warning: {} holds credentials but has mode {mode:o}; `chmod 600 {}` keeps them private",
                path.display(),
                path.display()
            );
        }
    }
}
