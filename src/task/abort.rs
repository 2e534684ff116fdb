//! Stopping a run from outside: a cancellation token plus the reason it was cancelled.

use std::sync::{Arc, OnceLock};

use tokio_util::sync::CancellationToken;

use crate::resolution::AbortReason;

/// Passed into a run; whoever cancels says why. A cancelled parent token without a reason means
/// the worker is shutting down.
#[derive(Debug, Clone, Default)]
pub struct Abort {
    token: CancellationToken,
    reason: Arc<OnceLock<AbortReason>>,
}

impl Abort {
    /// A fresh, independent abort handle.
    pub fn new() -> Abort {
        Abort::default()
    }

    /// An abort handle that also fires when `parent` (the worker's shutdown token) is cancelled.
    pub fn child_of(parent: &CancellationToken) -> Abort {
        Abort {
            token: parent.child_token(),
            reason: Arc::default(),
        }
    }

    /// Stop the run for `reason` (the first reason given wins).
    pub fn abort(&self, reason: AbortReason) {
        let _ = self.reason.set(reason);
        self.token.cancel();
    }

    /// Whether the run has been told to stop.
    pub fn is_aborted(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Why the run was told to stop, if it was.
    pub fn reason(&self) -> Option<AbortReason> {
        self.is_aborted().then(|| {
            self.reason
                .get()
                .cloned()
                .unwrap_or(AbortReason::WorkerShutdown)
        })
    }

    /// Wait until the run is told to stop, and say why.
    pub async fn aborted(&self) -> AbortReason {
        self.token.cancelled().await;
        self.reason
            .get()
            .cloned()
            .unwrap_or(AbortReason::WorkerShutdown)
    }
}
