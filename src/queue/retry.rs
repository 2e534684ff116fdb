//! Retry policy shared by the Taskcluster API calls and the upload PUTs: exponential backoff with
//! jitter on 5xx and network errors; 4xx answers are never retried.

use std::time::Duration;

use rand::Rng;

/// How often and how patiently failed calls are retried.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Retries after the first try (0 disables retrying).
    pub retries: u32,
    /// Delay before the first retry; doubled for each further retry.
    pub min_delay: Duration,
    /// Upper bound for one delay.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 5 retries from 500 ms (the value the Taskcluster clients recommend for background
    /// processes), at most 30 s apart.
    fn default() -> Self {
        RetryPolicy {
            retries: 5,
            min_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The delay before retry number `retry` (0-based): `min_delay * 2^retry`, capped, with ±25 %
    /// jitter so many workers do not retry in step.
    pub fn delay(&self, retry: u32) -> Duration {
        let base = self
            .min_delay
            .saturating_mul(1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX))
            .min(self.max_delay);
        let jitter: f64 = rand::rng().random_range(0.75..=1.25);
        base.mul_f64(jitter).min(self.max_delay)
    }

    /// The same policy in the `taskcluster` crate's terms.
    pub(crate) fn to_taskcluster(&self) -> taskcluster::Retry {
        taskcluster::Retry {
            retries: self.retries as usize,
            max_delay: self.max_delay,
            delay_factor: self.min_delay,
            randomization_factor: 0.25,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_are_capped() {
        let p = RetryPolicy {
            retries: 10,
            min_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        let d0 = p.delay(0);
        assert!(d0 >= Duration::from_millis(75) && d0 <= Duration::from_millis(125));
        let d2 = p.delay(2);
        assert!(d2 >= Duration::from_millis(300) && d2 <= Duration::from_millis(500));
        assert!(p.delay(40) <= Duration::from_secs(1));
    }
}
