//! The end-to-end suites `dw-test` runs: each one starts its own fake queue and real
//! `docker-worker start` processes, creates tasks, and checks what a Taskcluster user would see.

mod basics;
mod lifecycle;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use crate::testkit::fake_queue::FakeQueueOptions;
use crate::testkit::harness::Harness;

/// A suite's verdict: `Err` carries what went wrong, for people.
pub type SuiteResult = Result<(), String>;

/// The future a suite returns.
pub type SuiteFuture = Pin<Box<dyn Future<Output = SuiteResult> + Send>>;

/// What every suite gets.
#[derive(Debug, Clone)]
pub struct SuiteContext {
    /// The `docker-worker` binary under test.
    pub worker_bin: PathBuf,
}

impl SuiteContext {
    /// A fresh fake queue (with `opts`) and harness for one suite.
    pub async fn harness(&self, opts: FakeQueueOptions) -> Result<Harness, String> {
        Harness::start(&self.worker_bin, opts).await
    }
}

/// One named suite.
#[derive(Clone, Copy)]
pub struct Suite {
    /// Name shown and matched by `--filter`.
    pub name: &'static str,
    /// Longest it may take.
    pub timeout: Duration,
    /// The suite.
    pub run: fn(SuiteContext) -> SuiteFuture,
}

impl std::fmt::Debug for Suite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// Every suite, in the order they run.
pub fn all() -> Vec<Suite> {
    let mut suites = basics::suites();
    suites.extend(lifecycle::suites());
    suites
}

/// Fail with `message` unless `cond` holds.
pub fn check(cond: bool, message: impl FnOnce() -> String) -> SuiteResult {
    if cond {
        Ok(())
    } else {
        Err(message())
    }
}
