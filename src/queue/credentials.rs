//! Taskcluster credentials (redacted in `Debug`) and the per-run credentials cell.
//!
//! A claimed run starts with the temporary credentials from `claimWork`; every `reclaimTask`
//! returns NEW ones, and every later call for that run must use the newest. The cell holds the
//! newest credentials together with the Queue client signed with them, so a caller can never pick
//! up a stale client: each call takes a snapshot of the cell at the moment it starts.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use tokio::sync::watch;

use super::error::QueueError;
use super::Services;

/// Taskcluster credentials: permanent (`certificate` is `None`) or temporary.
///
/// `Debug` shows only the client id; the access token and certificate never reach a log.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Credentials {
    /// The client id (not secret; it is the Hawk `id`).
    pub client_id: String,
    /// The access token (secret).
    pub access_token: String,
    /// The certificate of temporary credentials (a JSON string).
    #[serde(default)]
    pub certificate: Option<String>,
}

impl Credentials {
    /// Permanent credentials.
    pub fn new(client_id: impl Into<String>, access_token: impl Into<String>) -> Self {
        Credentials {
            client_id: client_id.into(),
            access_token: access_token.into(),
            certificate: None,
        }
    }

    /// Temporary credentials with their certificate.
    pub fn temporary(
        client_id: impl Into<String>,
        access_token: impl Into<String>,
        certificate: impl Into<String>,
    ) -> Self {
        Credentials {
            client_id: client_id.into(),
            access_token: access_token.into(),
            certificate: Some(certificate.into()),
        }
    }

    pub(crate) fn to_taskcluster(&self) -> taskcluster::Credentials {
        taskcluster::Credentials {
            client_id: self.client_id.clone(),
            access_token: self.access_token.clone(),
            certificate: self.certificate.clone(),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("client_id", &self.client_id)
            .field("access_token", &"<redacted>")
            .field(
                "certificate",
                &self.certificate.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// The newest credentials of a run, the Queue client signed with them and the claim's expiry.
pub(crate) struct Generation {
    pub(crate) credentials: Credentials,
    pub(crate) queue: taskcluster::Queue,
    pub(crate) taken_until: DateTime<Utc>,
}

/// The per-run credentials cell: replaced on every reclaim, read at the start of every call.
pub(crate) struct CredentialsCell {
    tx: watch::Sender<Arc<Generation>>,
}

impl CredentialsCell {
    /// A cell holding the credentials from the claim.
    pub(crate) fn new(
        services: &Services,
        credentials: Credentials,
        taken_until: DateTime<Utc>,
    ) -> Result<Self, QueueError> {
        let generation = Self::generation(services, credentials, taken_until)?;
        let (tx, _rx) = watch::channel(Arc::new(generation));
        Ok(CredentialsCell { tx })
    }

    /// The newest generation; a call uses this snapshot from start to end.
    pub(crate) fn current(&self) -> Arc<Generation> {
        self.tx.borrow().clone()
    }

    /// Replace the credentials (after a reclaim); every later `current()` sees the new ones.
    pub(crate) fn rotate(
        &self,
        services: &Services,
        credentials: Credentials,
        taken_until: DateTime<Utc>,
    ) -> Result<(), QueueError> {
        let generation = Self::generation(services, credentials, taken_until)?;
        self.tx.send_replace(Arc::new(generation));
        Ok(())
    }

    /// A watcher that sees every rotation (e.g. to hand new credentials to a proxy).
    pub(crate) fn watch(&self) -> CredentialsWatch {
        CredentialsWatch {
            rx: self.tx.subscribe(),
        }
    }

    fn generation(
        services: &Services,
        credentials: Credentials,
        taken_until: DateTime<Utc>,
    ) -> Result<Generation, QueueError> {
        let queue = services.run_queue(&credentials)?;
        Ok(Generation {
            credentials,
            queue,
            taken_until,
        })
    }
}

/// Follows a run's credentials: `current()` is always the newest, `changed()` waits for a reclaim.
pub struct CredentialsWatch {
    rx: watch::Receiver<Arc<Generation>>,
}

impl CredentialsWatch {
    /// The newest credentials of the run.
    pub fn current(&mut self) -> Credentials {
        self.rx.borrow_and_update().credentials.clone()
    }

    /// Wait until the credentials are rotated; `false` once the run's client is gone.
    pub async fn changed(&mut self) -> bool {
        self.rx.changed().await.is_ok()
    }
}

impl fmt::Debug for CredentialsWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialsWatch").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_secrets() {
        let c = Credentials::temporary("client/x", "s3cr3t-token", "{\"seed\":\"zzz\"}");
        let s = format!("{c:?}");
        assert!(s.contains("client/x"));
        assert!(!s.contains("s3cr3t"));
        assert!(!s.contains("zzz"));
    }

    #[test]
    fn deserializes_task_credentials() {
        let c: Credentials = serde_json::from_str(
            r#"{"clientId":"a","accessToken":"b","certificate":"{}","newField":1}"#,
        )
        .unwrap();
        assert_eq!(c, Credentials::temporary("a", "b", "{}"));
    }
}
