//! Termination signals (Ctrl-C, SIGTERM, SIGHUP) turned into events, so that dw-deploy can let
//! packer clean up its cloud resources and then remove its temporary files before exiting.

use tokio::signal::unix::{signal, Signal, SignalKind};

/// A termination signal dw-deploy received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// SIGINT (Ctrl-C).
    Interrupt,
    /// SIGTERM.
    Terminate,
    /// SIGHUP (the terminal went away).
    Hangup,
}

impl Received {
    /// The signal number.
    pub fn number(self) -> i32 {
        match self {
            Received::Interrupt => 2,
            Received::Terminate => 15,
            Received::Hangup => 1,
        }
    }

    /// The name `kill -s` understands.
    pub fn name(self) -> &'static str {
        match self {
            Received::Interrupt => "INT",
            Received::Terminate => "TERM",
            Received::Hangup => "HUP",
        }
    }

    /// The conventional exit status of a process stopped by this signal (128 + number).
    pub fn exit_code(self) -> i32 {
        128 + self.number()
    }
}

/// Handlers for the termination signals; while one exists, those signals no longer kill
/// dw-deploy outright (they arrive through [`Signals::recv`]).
#[derive(Debug)]
pub struct Signals {
    interrupt: Signal,
    terminate: Signal,
    hangup: Signal,
}

impl Signals {
    /// Installs the handlers (needs a tokio runtime).
    pub fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    /// Waits for the next termination signal.
    pub async fn recv(&mut self) -> Received {
        tokio::select! {
            _ = self.interrupt.recv() => Received::Interrupt,
            _ = self.terminate.recv() => Received::Terminate,
            _ = self.hangup.recv() => Received::Hangup,
        }
    }
}
