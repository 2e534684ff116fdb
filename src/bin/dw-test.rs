//! `dw-test`: builds the test images and runs the end-to-end suites and benchmarks.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "dw-test",
    version,
    about = "Build test images; run end-to-end suites and benchmarks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build taskenv_pass:latest and taskenv_fail:latest from local content.
    Images,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Images => {
            let result = async {
                let docker = docker_worker::docker::Docker::connect().await?;
                docker_worker::testkit::images::build_test_images(&docker).await?;
                anyhow::Ok(())
            }
            .await;
            match result {
                Ok(()) => {
                    println!("built taskenv_pass:latest and taskenv_fail:latest");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("dw-test: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
