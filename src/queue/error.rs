//! `QueueError`: what went wrong talking to the Queue, the Object service or an upload URL, sorted
//! into the classes the worker acts on differently (409, 401/403, other 4xx, 5xx/network after
//! retries).

use std::error::Error as StdError;
use std::io;

/// Longest error message kept from a service answer (bodies can be large).
const MAX_MESSAGE: usize = 1000;

/// An error from a Taskcluster call or an artifact upload.
///
/// Server errors and network errors are only returned once the retries are used up; 4xx answers
/// are never retried. Messages never contain credentials or signed URLs.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// 409: the run was resolved elsewhere (canceled, deadline exceeded, already reported).
    #[error("{operation}: conflict (409): {message}")]
    Conflict {
        /// The API method or upload step, e.g. `reclaimTask`.
        operation: String,
        /// The service's message.
        message: String,
    },
    /// 401 or 403: credentials rejected or scopes missing.
    #[error("{operation}: not authorized ({status}): {message}")]
    Unauthorized {
        /// The API method or upload step.
        operation: String,
        /// 401 or 403.
        status: u16,
        /// The service's message.
        message: String,
    },
    /// Any other 4xx: the request was rejected (not retried).
    #[error("{operation}: rejected ({status}): {message}")]
    Rejected {
        /// The API method or upload step.
        operation: String,
        /// The 4xx status.
        status: u16,
        /// The service's message.
        message: String,
    },
    /// 5xx, still failing after the retries.
    #[error("{operation}: server error ({status}) after retries: {message}")]
    Server {
        /// The API method or upload step.
        operation: String,
        /// The 5xx status.
        status: u16,
        /// The last error seen.
        message: String,
    },
    /// Connection refused, reset or timed out, still failing after the retries.
    #[error("{operation}: network error after retries: {message}")]
    Network {
        /// The API method or upload step.
        operation: String,
        /// The last error seen.
        message: String,
    },
    /// A 2xx answer whose body did not have the expected shape.
    #[error("{operation}: unexpected response: {message}")]
    Response {
        /// The API method or upload step.
        operation: String,
        /// What did not match.
        message: String,
    },
    /// Reading the artifact's content failed, or it did not have the announced length.
    #[error("reading artifact {name}: {source}")]
    Source {
        /// The artifact name.
        name: String,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The client could not be built or a request could not be formed (bad root URL, bad
    /// certificate JSON, ...).
    #[error("{0}")]
    Setup(String),
}

impl QueueError {
    /// True for a 409: the run was resolved elsewhere, stop working on it (nothing to report).
    pub fn is_conflict(&self) -> bool {
        matches!(self, QueueError::Conflict { .. })
    }

    /// True for 5xx and network errors: worth another try.
    pub fn is_transient(&self) -> bool {
        matches!(self, QueueError::Server { .. } | QueueError::Network { .. })
    }

    /// The HTTP status of the failing answer, if there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            QueueError::Conflict { .. } => Some(409),
            QueueError::Unauthorized { status, .. }
            | QueueError::Rejected { status, .. }
            | QueueError::Server { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Classify an error returned by the `taskcluster` crate (an `anyhow::Error` that wraps a
    /// `reqwest::Error` carrying the status, with the service's message as context).
    pub(crate) fn from_taskcluster(operation: &str, err: anyhow::Error) -> QueueError {
        let message = truncate(format!("{err:#}"));
        let reqwest_err = err.chain().find_map(|e| e.downcast_ref::<reqwest::Error>());
        match reqwest_err {
            Some(r) => match r.status() {
                Some(status) => from_status(operation, status.as_u16(), message),
                None if r.is_decode() => QueueError::Response {
                    operation: operation.to_owned(),
                    message,
                },
                None if r.is_builder() => QueueError::Setup(format!("{operation}: {message}")),
                None => QueueError::Network {
                    operation: operation.to_owned(),
                    message,
                },
            },
            None => QueueError::Setup(format!("{operation}: {message}")),
        }
    }

    /// Classify an error from our own `reqwest` client (upload PUTs). The URL is dropped from the
    /// message because upload URLs are signed.
    pub(crate) fn from_reqwest(operation: &str, err: reqwest::Error) -> QueueError {
        let err = err.without_url();
        let message = truncate(error_chain(&err));
        match err.status() {
            Some(status) => from_status(operation, status.as_u16(), message),
            None if err.is_builder() => QueueError::Setup(format!("{operation}: {message}")),
            None => QueueError::Network {
                operation: operation.to_owned(),
                message,
            },
        }
    }

    /// A JSON body that did not deserialize into the expected type.
    pub(crate) fn response(operation: &str, err: impl std::fmt::Display) -> QueueError {
        QueueError::Response {
            operation: operation.to_owned(),
            message: truncate(err.to_string()),
        }
    }
}

/// Map an HTTP status to the error class.
pub(crate) fn from_status(operation: &str, status: u16, message: String) -> QueueError {
    let operation = operation.to_owned();
    match status {
        409 => QueueError::Conflict { operation, message },
        401 | 403 => QueueError::Unauthorized {
            operation,
            status,
            message,
        },
        500..=599 => QueueError::Server {
            operation,
            status,
            message,
        },
        _ => QueueError::Rejected {
            operation,
            status,
            message,
        },
    }
}

/// An error and its sources, joined with `: ` (reqwest hides the cause in `source()`).
fn error_chain(err: &dyn StdError) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        out.push_str(": ");
        out.push_str(&e.to_string());
        cur = e.source();
    }
    out
}

fn truncate(mut s: String) -> String {
    if s.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes() {
        assert!(from_status("x", 409, String::new()).is_conflict());
        assert!(matches!(
            from_status("x", 403, String::new()),
            QueueError::Unauthorized { status: 403, .. }
        ));
        assert!(matches!(
            from_status("x", 404, String::new()),
            QueueError::Rejected { status: 404, .. }
        ));
        assert!(matches!(
            from_status("x", 503, String::new()),
            QueueError::Server { status: 503, .. }
        ));
        assert_eq!(from_status("x", 400, String::new()).status(), Some(400));
    }

    #[test]
    fn non_reqwest_errors_are_setup_errors() {
        let e = QueueError::from_taskcluster("claimWork", anyhow::anyhow!("bad url"));
        assert!(matches!(e, QueueError::Setup(_)));
    }

    #[test]
    fn long_messages_are_truncated() {
        let s = truncate("é".repeat(2000));
        assert!(s.len() <= MAX_MESSAGE + 3);
        assert!(s.ends_with("..."));
    }
}
