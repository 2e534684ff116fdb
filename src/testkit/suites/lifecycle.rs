//! Suites about the worker's life and the queue protocol: reclaims, cancellation, signals,
//! capacity, several workers, queue faults.

use super::Suite;

/// The suites of this file.
pub fn suites() -> Vec<Suite> {
    Vec::new()
}
