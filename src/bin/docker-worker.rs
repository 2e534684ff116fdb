//! `docker-worker`: `run PAYLOAD.json` runs one task locally; `start` runs the queue daemon.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use docker_worker::config::StartArgs;
use docker_worker::local::{self, LocalOptions, EXIT_WORKER_ERROR};
use docker_worker::worker::{self, Shutdown};
use tokio::signal::unix::{signal, SignalKind};

#[derive(Parser)]
#[command(
    name = "docker-worker",
    version,
    about = "Taskcluster docker-worker: runs tasks in Docker containers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the worker daemon: claim tasks from the Taskcluster queue and run them.
    ///
    /// Extra options may also come from DOCKER_WORKER_OPTS (shell-split). Signals: SIGTERM or
    /// SIGINT abort running tasks (worker-shutdown) and exit; SIGQUIT drains (finishes running
    /// tasks, claims no more); a second signal exits at once.
    Start(StartArgs),
    /// Run one task payload locally (no queue): log to stdout, artifacts and result.json to a directory.
    Run {
        /// The payload JSON file (or a task definition with a `payload` key).
        payload: PathBuf,
        /// Worker config file (YAML or JSON, original docker-worker keys).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Task id to use (random by default).
        #[arg(long)]
        task_id: Option<String>,
        /// Where artifacts, the backing log and result.json go.
        #[arg(long, default_value = "artifacts")]
        artifacts_dir: PathBuf,
    },
}

fn init_tracing() {
    tracing_subscriber::fmt()
        .json()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let opts = std::env::var("DOCKER_WORKER_OPTS").ok();
    let args = match docker_worker::config::expand_opts_env(args, opts.as_deref()) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("docker-worker: {e}");
            return ExitCode::from(2);
        }
    };
    let cli = Cli::parse_from(args);
    init_tracing();
    match cli.command {
        Command::Start(args) => start(args).await,
        Command::Run {
            payload,
            config,
            task_id,
            artifacts_dir,
        } => {
            let config = match docker_worker::config::load_local(config.as_deref()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("docker-worker: {e}");
                    return ExitCode::from(EXIT_WORKER_ERROR as u8);
                }
            };
            let opts = LocalOptions {
                payload_file: payload,
                config,
                task_id,
                artifacts_dir,
            };
            match local::run(opts).await {
                Ok(result) => ExitCode::from(result.exit_status() as u8),
                Err(e) => {
                    eprintln!("docker-worker: {e}");
                    ExitCode::from(EXIT_WORKER_ERROR as u8)
                }
            }
        }
    }
}

/// `docker-worker start`: exit 0 after a clean shutdown, 2 for a configuration error (nothing
/// started), 1 when the worker could not run.
async fn start(args: StartArgs) -> ExitCode {
    let config = match docker_worker::config::load(&args, &|k| std::env::var(k).ok()).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("docker-worker: {e}");
            return ExitCode::from(2);
        }
    };
    let shutdown = Shutdown::default();
    if let Err(e) = watch_signals(shutdown.clone()) {
        eprintln!("docker-worker: installing signal handlers: {e}");
        return ExitCode::FAILURE;
    }
    match worker::run(config, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "worker stopped with an error");
            eprintln!("docker-worker: {e}");
            ExitCode::FAILURE
        }
    }
}

/// SIGTERM/SIGINT: abort tasks and stop; SIGQUIT: drain. A second signal exits at once.
fn watch_signals(shutdown: Shutdown) -> std::io::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut quit = signal(SignalKind::quit())?;
    tokio::spawn(async move {
        let mut seen = false;
        loop {
            let drain = tokio::select! {
                _ = term.recv() => false,
                _ = int.recv() => false,
                _ = quit.recv() => true,
            };
            if seen {
                tracing::warn!("second signal: exiting at once");
                std::process::exit(1);
            }
            seen = true;
            if drain {
                tracing::info!("SIGQUIT: draining (no new tasks; running tasks finish)");
                shutdown.drain();
            } else {
                tracing::info!("shutting down: aborting running tasks (worker-shutdown)");
                shutdown.now();
            }
        }
    });
    Ok(())
}
