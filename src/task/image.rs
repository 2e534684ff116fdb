//! Getting a task's image: use the local copy, or pull it with retries (exponential backoff with
//! jitter, `dockerConfig.maxAttempts` / `delayFactor` / `randomizationFactor`), progress to the log.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::StreamExt;
use rand::Rng;

use crate::config::{DockerSettings, WorkerConfig};
use crate::docker::{split_tag, Docker, DockerError, RegistryLogin};
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

/// The image name with its registry host spelled out (`registries` keys are matched against it):
/// a name whose first segment is not a host is on the default registry.
fn qualified(image: &str, default_registry: &str) -> String {
    let first = image.split('/').next().unwrap_or("");
    let has_host =
        image.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    if has_host {
        image.to_string()
    } else {
        format!("{}/{image}", default_registry.trim_end_matches('/'))
    }
}

/// The login `registries` holds for `image`: the longest key that is a path prefix of the
/// qualified name (`quay.io/mozilla` serves `quay.io/mozilla/xfoo`), as the original did. A bare
/// name (`ubuntu`, an official image) is never pulled with a login, as in the original: a
/// `registry.hub.docker.com` login must not make every `ubuntu` task need a private-image scope.
pub fn login_for(image: &str, config: &WorkerConfig) -> Option<RegistryLogin> {
    if !image.contains('/') {
        return None;
    }
    let name = qualified(image, &config.docker_config.default_registry);
    config
        .registries
        .iter()
        .filter(|(key, _)| {
            let key = key.trim_end_matches('/');
            name == key || name.starts_with(&format!("{key}/"))
        })
        .max_by_key(|(key, _)| key.len())
        .map(|(key, creds)| RegistryLogin {
            server: key.split('/').next().unwrap_or(key).to_string(),
            username: creds.username.clone(),
            password: creds.password.clone(),
        })
}

/// The scope a task needs to use a private image: `docker-worker:image:<repository>:<tag>`.
pub fn private_image_scope(image: &str) -> String {
    let (repository, tag) = split_tag(image);
    if tag.is_empty() {
        format!("docker-worker:image:{repository}")
    } else {
        format!("docker-worker:image:{repository}:{tag}")
    }
}

/// Make `image` available locally, pulling it if needed (with `login` for private registries).
pub async fn ensure(
    docker: &Docker,
    image: &str,
    login: Option<RegistryLogin>,
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
        match pull_once(docker, image, login.clone(), log).await {
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
async fn pull_once(
    docker: &Docker,
    image: &str,
    login: Option<RegistryLogin>,
    log: &mut TaskLog,
) -> Result<(), PullError> {
    let mut stream = docker.pull(image, login);
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
    fn registry_logins_match_the_nearest_path() {
        let mut config = WorkerConfig::default();
        for (key, user) in [
            ("quay.io/mozilla", "moz"),
            ("quay.io", "quay"),
            ("registry.hub.docker.com/team", "hub"),
        ] {
            config.registries.insert(
                key.into(),
                crate::config::RegistryCredentials {
                    username: user.into(),
                    password: "pw".into(),
                },
            );
        }
        let user = |image: &str| login_for(image, &config).map(|l| (l.server, l.username));
        assert_eq!(
            user("quay.io/mozilla/xfoo:1"),
            Some(("quay.io".into(), "moz".into()))
        );
        assert_eq!(
            user("quay.io/other/x"),
            Some(("quay.io".into(), "quay".into()))
        );
        assert_eq!(
            user("team/image:2"),
            Some(("registry.hub.docker.com".into(), "hub".into()))
        );
        assert_eq!(
            user("quay.io/mozillax/y"),
            Some(("quay.io".into(), "quay".into()))
        );
        assert_eq!(user("ubuntu:24.04"), None);
        assert_eq!(user("localhost:5000/team/x"), None);

        // A host-wide login for the default registry serves `team/image`, never a bare name.
        config.registries.insert(
            "registry.hub.docker.com".into(),
            crate::config::RegistryCredentials {
                username: "hubwide".into(),
                password: "pw".into(),
            },
        );
        let user = |image: &str| login_for(image, &config).map(|l| (l.server, l.username));
        assert_eq!(
            user("other/image"),
            Some(("registry.hub.docker.com".into(), "hubwide".into()))
        );
        assert_eq!(user("ubuntu:24.04"), None);
        assert_eq!(user("ubuntu"), None);
        assert_eq!(
            private_image_scope("quay.io/mozilla/xfoo:1"),
            "docker-worker:image:quay.io/mozilla/xfoo:1"
        );
        assert_eq!(
            private_image_scope("team/image"),
            "docker-worker:image:team/image:latest"
        );
    }

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
