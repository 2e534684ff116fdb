//! Getting a task's image: use the local copy, or pull it with retries (exponential backoff with
//! jitter, `dockerConfig.maxAttempts` / `delayFactor` / `randomizationFactor`), progress to the log.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::StreamExt;
use rand::Rng;

use crate::config::DockerSettings;
use crate::docker::{Docker, DockerError};
use crate::livelog::TaskLog;

/// Why an image could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Every pull attempt failed; the message is the registry's (last) one.
    #[error("Pulling docker image {image} failed after {attempts} attempt(s): {message}")]
    PullFailed {
        /// The image.
        image: String,
        /// Attempts made.
        attempts: u32,
        /// The last error.
        message: String,
    },
    /// Writing progress to the task log failed.
    #[error("writing the task log: {0}")]
    Log(#[from] std::io::Error),
}

/// The delay before retry number `attempt` (1-based): `delayFactor * 2^(attempt-1)` milliseconds,
/// scaled by a random factor in `1 ± randomizationFactor`.
pub fn backoff(settings: &DockerSettings, attempt: u32) -> Duration {
    let base = settings.delay_factor as f64 * 2f64.powi(attempt.saturating_sub(1) as i32);
    let r = settings.randomization_factor.clamp(0.0, 1.0);
    let factor = if r > 0.0 {
        rand::rng().random_range(1.0 - r..=1.0 + r)
    } else {
        1.0
    };
    Duration::from_millis((base * factor) as u64)
}

/// Make `image` available locally, pulling it if needed.
pub async fn ensure(
    docker: &Docker,
    image: &str,
    settings: &DockerSettings,
    log: &mut TaskLog,
) -> Result<(), ImageError> {
    let present = docker.image_exists(image).await;
    if matches!(present, Ok(true)) {
        return Ok(());
    }
    let attempts = settings.max_attempts.max(1);
    let mut last = String::new();
    for attempt in 1..=attempts {
        log.info(&format!(
            "Downloading image \"{image}\" (attempt {attempt} of {attempts})"
        ))
        .await?;
        match pull_once(docker, image, log).await {
            Ok(()) => {
                log.info(&format!("Downloaded image \"{image}\"")).await?;
                return Ok(());
            }
            Err(PullError::Docker(e)) => last = e.to_string(),
            Err(PullError::Log(e)) => return Err(e.into()),
        }
        log.info(&format!("Pull of \"{image}\" failed: {last}"))
            .await?;
        if attempt < attempts {
            tokio::time::sleep(backoff(settings, attempt)).await;
        }
    }
    Err(ImageError::PullFailed {
        image: image.to_string(),
        attempts,
        message: last,
    })
}

enum PullError {
    Docker(DockerError),
    Log(std::io::Error),
}

/// One pull; progress lines are written when a layer's status changes (not every byte count).
async fn pull_once(docker: &Docker, image: &str, log: &mut TaskLog) -> Result<(), PullError> {
    let mut stream = docker.pull(image);
    let mut last_status: HashMap<String, String> = HashMap::new();
    while let Some(item) = stream.next().await {
        let info = item.map_err(PullError::Docker)?;
        let status = info.status.unwrap_or_default();
        let id = info.id.unwrap_or_default();
        if last_status.get(&id) == Some(&status) {
            continue;
        }
        let line = if id.is_empty() {
            status.clone()
        } else {
            format!("{id}: {status}")
        };
        last_status.insert(id, status);
        log.info(&line).await.map_err(PullError::Log)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_within_the_jitter() {
        let mut s = crate::config::WorkerConfig::default().docker_config;
        s.delay_factor = 100;
        s.randomization_factor = 0.25;
        for attempt in 1..=4u32 {
            let base = 100.0 * 2f64.powi(attempt as i32 - 1);
            for _ in 0..50 {
                let d = backoff(&s, attempt).as_millis() as f64;
                assert!(
                    d >= base * 0.75 - 1.0 && d <= base * 1.25 + 1.0,
                    "{d} vs {base}"
                );
            }
        }
    }
}
