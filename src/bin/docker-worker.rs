//! `docker-worker`: `run PAYLOAD.json` runs one task locally; `start` runs the queue daemon.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use docker_worker::local::{self, LocalOptions, EXIT_WORKER_ERROR};

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
    let cli = Cli::parse();
    init_tracing();
    match cli.command {
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
