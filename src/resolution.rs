//! How a run ends: the engine's [`Outcome`] mapped to the queue's vocabulary. This is the only
//! place that decides it (DESIGN.md §2, resolution table).

/// Why a run was stopped from outside the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AbortReason {
    /// The worker is shutting down (signal, spot termination).
    WorkerShutdown,
    /// The run was resolved elsewhere (reclaim 409, task canceled): report nothing.
    ResolvedElsewhere(String),
    /// A worker-side fault (e.g. reclaim failed with something other than 409).
    InternalError(String),
}

/// What happened to one run, as the engine saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The container exited with this code.
    Exited(i64),
    /// maxRunTime expired and the container was killed.
    TimedOut,
    /// The command could not start.
    StartFailed(String),
    /// The image could not be pulled or loaded.
    ImageFailed(String),
    /// The task lacks scopes for what its payload asks.
    MissingScopes(Vec<String>),
    /// The payload failed validation.
    MalformedPayload(String),
    /// The payload asks for a feature this worker cannot provide.
    Unsupported(String),
    /// The run was stopped from outside.
    Aborted(AbortReason),
    /// The worker failed (Docker, upload, queue) while running the task.
    InternalError(String),
}

pub use crate::queue::ExceptionReason;

/// The one queue call that ends a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// reportCompleted.
    Completed,
    /// reportFailed.
    Failed,
    /// reportException with a reason.
    Exception(ExceptionReason),
    /// No call: the run was resolved elsewhere.
    Nothing,
}

impl Resolution {
    /// `completed`, `failed`, `exception` or `none`, as in task status.
    pub fn state(self) -> &'static str {
        match self {
            Resolution::Completed => "completed",
            Resolution::Failed => "failed",
            Resolution::Exception(_) => "exception",
            Resolution::Nothing => "none",
        }
    }

    /// The exception reason, if any.
    pub fn reason(self) -> Option<&'static str> {
        match self {
            Resolution::Exception(r) => Some(r.as_str()),
            _ => None,
        }
    }
}

/// Decide how a run resolves. `retry_codes` is the payload's `onExitStatus.retry`.
pub fn resolve(outcome: &Outcome, retry_codes: &[i64]) -> Resolution {
    match outcome {
        Outcome::Exited(0) => Resolution::Completed,
        Outcome::Exited(code) if retry_codes.contains(code) => {
            Resolution::Exception(ExceptionReason::IntermittentTask)
        }
        Outcome::Exited(_)
        | Outcome::TimedOut
        | Outcome::StartFailed(_)
        | Outcome::ImageFailed(_)
        | Outcome::MissingScopes(_)
        | Outcome::Unsupported(_) => Resolution::Failed,
        Outcome::MalformedPayload(_) => Resolution::Exception(ExceptionReason::MalformedPayload),
        Outcome::Aborted(AbortReason::WorkerShutdown) => {
            Resolution::Exception(ExceptionReason::WorkerShutdown)
        }
        Outcome::Aborted(AbortReason::InternalError(_)) | Outcome::InternalError(_) => {
            Resolution::Exception(ExceptionReason::InternalError)
        }
        Outcome::Aborted(AbortReason::ResolvedElsewhere(_)) => Resolution::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_resolution_table() {
        use ExceptionReason::*;
        let cases = [
            (Outcome::Exited(0), Resolution::Completed),
            (Outcome::Exited(1), Resolution::Failed),
            (Outcome::Exited(42), Resolution::Exception(IntermittentTask)),
            (Outcome::TimedOut, Resolution::Failed),
            (Outcome::StartFailed("x".into()), Resolution::Failed),
            (Outcome::ImageFailed("x".into()), Resolution::Failed),
            (Outcome::MissingScopes(vec!["s".into()]), Resolution::Failed),
            (Outcome::Unsupported("dind".into()), Resolution::Failed),
            (
                Outcome::MalformedPayload("x".into()),
                Resolution::Exception(MalformedPayload),
            ),
            (
                Outcome::Aborted(AbortReason::WorkerShutdown),
                Resolution::Exception(WorkerShutdown),
            ),
            (
                Outcome::Aborted(AbortReason::InternalError("x".into())),
                Resolution::Exception(InternalError),
            ),
            (
                Outcome::InternalError("x".into()),
                Resolution::Exception(InternalError),
            ),
            (
                Outcome::Aborted(AbortReason::ResolvedElsewhere("409".into())),
                Resolution::Nothing,
            ),
        ];
        for (outcome, want) in cases {
            assert_eq!(resolve(&outcome, &[42]), want, "{outcome:?}");
        }
    }

    #[test]
    fn zero_in_retry_codes_still_completes() {
        assert_eq!(resolve(&Outcome::Exited(0), &[0]), Resolution::Completed);
    }
}
