//! `dw-test`: builds the test images and runs the end-to-end suites (default) or the benchmarks.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use docker_worker::docker::Docker;
use docker_worker::testkit::{images, runner, suites::SuiteContext};

#[derive(Parser)]
#[command(
    name = "dw-test",
    version,
    about = "Build the test images, then run the end-to-end suites against a fake queue and the real docker-worker"
)]
struct Cli {
    /// Run only the suites whose name contains PAT.
    #[arg(long, value_name = "PAT", global = true)]
    filter: Option<String>,
    /// List the suites and exit.
    #[arg(long)]
    list: bool,
    /// The docker-worker binary to test (default: next to dw-test).
    #[arg(long, value_name = "PATH", global = true)]
    worker_bin: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Only build taskenv_pass:latest and taskenv_fail:latest from local content.
    Images,
}

fn default_worker_bin() -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe().context("locating dw-test")?;
    Ok(me.with_file_name("docker-worker"))
}

async fn build_images() -> anyhow::Result<()> {
    let docker = Docker::connect().await?;
    images::build_test_images(&docker).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("dw-test: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Some(Command::Images) => {
            build_images().await?;
            println!("built taskenv_pass:latest and taskenv_fail:latest");
            Ok(ExitCode::SUCCESS)
        }
        None => {
            let selected = runner::select(cli.filter.as_deref());
            if cli.list {
                for s in &selected {
                    println!("{}", s.name);
                }
                return Ok(ExitCode::SUCCESS);
            }
            let worker_bin = match cli.worker_bin {
                Some(p) => p,
                None => default_worker_bin()?,
            };
            anyhow::ensure!(
                worker_bin.is_file(),
                "{} not found: build it (cargo build --bins) or pass --worker-bin",
                worker_bin.display()
            );
            build_images().await.context("building the test images")?;
            let ctx = SuiteContext { worker_bin };
            let summary = runner::run(&ctx, &selected).await;
            for (name, message) in &summary.failed {
                eprintln!("FAILED {name}: {message}");
            }
            println!("{} passed, {} failed", summary.passed, summary.failed.len());
            Ok(if summary.failed.is_empty() && summary.passed > 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}
