//! Test support used by `dw-test` and the integration tests: test images, the fake queue,
//! suites and benchmarks.

pub mod bench;
pub mod fake_queue;
pub mod harness;
pub mod images;
pub mod runner;
pub mod suites;
