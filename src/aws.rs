//! EC2 hosts (`--host aws`): the instance metadata service, and the spot termination notice that
//! shuts the worker down in time to report its running tasks as `worker-shutdown`.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::worker::Shutdown;

/// How often the spot termination notice is checked (AWS gives two minutes' warning).
pub const SPOT_POLL: Duration = Duration::from_secs(5);

/// A session with the EC2 instance metadata service (IMDSv2: a token first, then GETs).
pub struct Imds {
    client: reqwest::Client,
    base: String,
    token: String,
}

impl Imds {
    /// Get a session token from the service at `base`. Errors carry the URL and the message.
    pub async fn connect(base: &str) -> Result<Imds, (String, String)> {
        let base = base.trim_end_matches('/').to_string();
        let client = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| (base.clone(), e.to_string()))?;
        let token_url = format!("{base}/latest/api/token");
        let token = async {
            client
                .put(&token_url)
                .header("X-aws-ec2-metadata-token-ttl-seconds", "21600")
                .send()
                .await?
                .error_for_status()?
                .text()
                .await
        }
        .await
        .map_err(|e| (token_url.clone(), e.to_string()))?;
        Ok(Imds {
            client,
            base,
            token: token.trim().to_string(),
        })
    }

    /// `GET /latest/meta-data/<path>`: `None` for 404 or an empty answer.
    pub async fn get(&self, path: &str) -> Result<Option<String>, (String, String)> {
        let url = format!("{}/latest/meta-data/{path}", self.base);
        let fail = |e: reqwest::Error| (url.clone(), e.to_string());
        let response = self
            .client
            .get(&url)
            .header("X-aws-ec2-metadata-token", &self.token)
            .send()
            .await
            .map_err(fail)?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let text = response
            .error_for_status()
            .map_err(fail)?
            .text()
            .await
            .map_err(fail)?;
        Ok(Some(text.trim().to_string()).filter(|s| !s.is_empty()))
    }
}

/// Until `stop` is cancelled, check the spot termination notice every `every`; when one appears,
/// shut the worker down (`Shutdown::now`: tasks are aborted and reported `worker-shutdown`).
pub async fn watch_spot_termination(
    base: String,
    every: Duration,
    shutdown: Shutdown,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let notice = match Imds::connect(&base).await {
            Ok(imds) => imds.get("spot/instance-action").await,
            Err(e) => Err(e),
        };
        match notice {
            Ok(Some(action)) => {
                tracing::warn!(%action, "spot termination notice: shutting down");
                shutdown.now();
                return;
            }
            Ok(None) => {}
            Err((url, message)) => {
                tracing::debug!(%url, %message, "spot termination check failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wiremock::matchers::{header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    #[tokio::test]
    async fn a_spot_notice_shuts_the_worker_down() {
        let server = MockServer::start().await;
        Mock::given(method("PUT"))
            .and(path("/latest/api/token"))
            .respond_with(ResponseTemplate::new(200).set_body_string("tok"))
            .mount(&server)
            .await;
        let shutdown = Shutdown::default();
        let stop = CancellationToken::new();
        let watcher = tokio::spawn(watch_spot_termination(
            server.uri(),
            Duration::from_millis(50),
            shutdown.clone(),
            stop.clone(),
        ));
        // No notice yet (404): nothing happens.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!shutdown.abort_tasks.is_cancelled());
        Mock::given(method("GET"))
            .and(path("/latest/meta-data/spot/instance-action"))
            .and(header("X-aws-ec2-metadata-token", "tok"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_string(r#"{"action": "terminate", "time": "2026-11-28T10:00:00Z"}"#),
            )
            .mount(&server)
            .await;
        tokio::time::timeout(Duration::from_secs(5), watcher)
            .await
            .expect("the watcher returns after the notice")
            .unwrap();
        assert!(shutdown.abort_tasks.is_cancelled());
        assert!(shutdown.stop_claiming.is_cancelled());
    }
}
