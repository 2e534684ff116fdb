//! `dw-test`: builds the test images and runs the end-to-end suites (default) or the benchmarks.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use docker_worker::docker::Docker;
use docker_worker::testkit::{bench, images, runner, suites::SuiteContext};

#[derive(Parser)]
#[command(
    name = "dw-test",
    version,
    about = "Build the test images, then run the end-to-end suites against a fake queue and the real docker-worker"
)]
struct Cli {
    /// Run only the suites (or bench figures) whose name contains PAT.
    #[arg(long, value_name = "PAT", global = true)]
    filter: Option<String>,
    /// List the suites (or bench figures) and exit.
    #[arg(long, global = true)]
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
    /// Measure the worker against plain `docker run`: overhead, throughput, log throughput,
    /// memory, cancel latency. Prints a table; exits 0 even when a target is missed.
    Bench {
        /// Also write the figures as JSON to FILE.
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
        /// A short run that checks the bench works (figures not meaningful).
        #[arg(long)]
        quick: bool,
    },
}

fn default_worker_bin() -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe().context("locating dw-test")?;
    Ok(me.with_file_name("docker-worker"))
}

/// The worker binary to test: `--worker-bin`, else the one next to dw-test; it must exist.
fn worker_bin(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let worker_bin = match given {
        Some(p) => p,
        None => default_worker_bin()?,
    };
    anyhow::ensure!(
        worker_bin.is_file(),
        "{} not found: build it (cargo build --bins) or pass --worker-bin",
        worker_bin.display()
    );
    Ok(worker_bin)
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
        Some(Command::Bench { json, quick }) => {
            if cli.list {
                bench::FIGURES.iter().for_each(|f| println!("{f}"));
                return Ok(ExitCode::SUCCESS);
            }
            let worker_bin = worker_bin(cli.worker_bin)?;
            build_images().await.context("building the test images")?;
            let mut config = if quick {
                bench::BenchConfig::quick(worker_bin)
            } else {
                bench::BenchConfig::full(worker_bin)
            };
            config.filter = cli.filter;
            let report = bench::run(&config).await.context("bench")?;
            print!("{}", report.table());
            if let Some(path) = json {
                let text = serde_json::to_string_pretty(&report.to_json())?;
                std::fs::write(&path, text + "\n")
                    .with_context(|| format!("writing {}", path.display()))?;
            }
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
            let worker_bin = worker_bin(cli.worker_bin)?;
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
