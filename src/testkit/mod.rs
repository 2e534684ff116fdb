//! testkit
pub mod fake_queue;
