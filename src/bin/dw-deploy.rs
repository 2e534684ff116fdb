//! `dw-deploy`: bakes a docker-worker host image with packer. See `dw-deploy packer --help`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use docker_worker::deploy::{run_packer, PackerRequest};

#[derive(Parser)]
#[command(
    name = "dw-deploy",
    version,
    about = "Bake a docker-worker host image with packer",
    long_about = "Bake a docker-worker host image with packer.\n\n\
        Typical use, from the repository root:\n  \
        cp docker_worker_opts_example.sh docker-worker-opts.sh   # fill in the credentials\n  \
        dw-deploy packer -var \"docker_worker_opts=docker-worker-opts.sh\" [more packer flags...]"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Stage the worker's files and run `packer build` on packer/worker.json.
    #[command(
        long_about = "Stage the worker's files and run `packer build` on packer/worker.json.\n\n\
        Reads the options file named by `-var docker_worker_opts=PATH` (relative to the current \
        directory; never run through a shell), stages the release docker-worker binary, \
        packer/app/etc/default-worker, the options file (as docker-worker-opts.sh, mode 0600) and \
        the systemd unit docker-worker.service in a private temporary directory, and runs\n  \
        packer build -machine-readable -var staging_dir=DIR [PACKER_FLAGS...] packer/worker.json\n\
        Packer's exit status is dw-deploy's. Credentials never appear on a command line or in the \
        output. Temporary files are removed on every exit, Ctrl-C included (packer is given time \
        to clean up its cloud resources; a second Ctrl-C stops it at once).\n\n\
        dw-deploy's own flags may appear anywhere among the packer flags, before a `--`."
    )]
    Packer {
        /// Do everything but run packer: print the staged files and the exact packer command.
        #[arg(long)]
        dry_run: bool,
        /// Print packer's raw -machine-readable output.
        #[arg(long)]
        verbose: bool,
        /// Put this docker-worker binary in the image instead of running `cargo build --release`.
        #[arg(long, value_name = "PATH")]
        binary: Option<PathBuf>,
        /// Flags for `packer build`, passed unchanged and in order; must include
        /// -var "docker_worker_opts=PATH".
        #[arg(
            value_name = "PACKER_FLAGS",
            trailing_var_arg = true,
            allow_hyphen_values = true
        )]
        packer_args: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("dw-deploy: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn real_main(cli: Cli) -> anyhow::Result<i32> {
    let Command::Packer {
        dry_run,
        verbose,
        binary,
        packer_args,
    } = cli.command;
    let request = PackerRequest {
        binary,
        dry_run,
        verbose,
        packer_args,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    Ok(runtime.block_on(run_packer(request))?)
}
