//! A thin wrapper over the Docker Engine API (bollard): images, containers, archive read-out and
//! label queries. It holds no policy: what a task container looks like is decided in [`crate::task`].

use std::collections::HashMap;

use bollard::errors::Error as BollardError;
use bollard::models::{ContainerCreateBody, CreateImageInfo, PushImageInfo};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, BuildImageOptionsBuilder, CreateContainerOptionsBuilder,
    CreateImageOptionsBuilder, DownloadFromContainerOptionsBuilder, KillContainerOptionsBuilder,
    ListContainersOptionsBuilder, PushImageOptionsBuilder, RemoveContainerOptionsBuilder,
    RemoveImageOptionsBuilder, TagImageOptionsBuilder,
};
use bytes::Bytes;
use futures_util::{Stream, StreamExt, TryStreamExt};

/// Label naming the worker that created a container (used by the start-up sweep).
pub const LABEL_WORKER: &str = "docker-worker.worker-id";
/// Label naming the task a container runs.
pub const LABEL_TASK: &str = "docker-worker.task-id";
/// Label naming the run a container runs.
pub const LABEL_RUN: &str = "docker-worker.run-id";

/// Errors talking to the Docker daemon.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// The daemon could not be reached at all.
    #[error("cannot reach the Docker daemon at {endpoint}: {source}")]
    Unreachable {
        /// The socket or `DOCKER_HOST` that was tried.
        endpoint: String,
        /// What went wrong.
        source: BollardError,
    },
    /// The object (image, container, path) does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// Any other error from the daemon, with its message.
    #[error("{0}")]
    Api(String),
}

impl DockerError {
    fn from_bollard(err: BollardError) -> Self {
        match err {
            BollardError::DockerResponseServerError {
                status_code: 404,
                message,
            } => DockerError::NotFound(message),
            BollardError::DockerResponseServerError { message, .. } => DockerError::Api(message),
            BollardError::DockerStreamError { error } => DockerError::Api(error),
            other => DockerError::Api(other.to_string()),
        }
    }
}

/// The endpoint bollard connects to: `DOCKER_HOST` or the default local socket.
pub fn endpoint() -> String {
    std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".to_string())
}

/// A registry login for a pull. `Debug` never shows the password.
#[derive(Clone)]
pub struct RegistryLogin {
    /// The registry (host, as the daemon expects it).
    pub server: String,
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
}

impl std::fmt::Debug for RegistryLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryLogin")
            .field("server", &self.server)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// A connected Docker client (cheap to clone).
#[derive(Debug, Clone)]
pub struct Docker {
    inner: bollard::Docker,
}

/// A container as found by a label query.
#[derive(Debug, Clone)]
pub struct LabeledContainer {
    /// Container id.
    pub id: String,
    /// Its labels.
    pub labels: HashMap<String, String>,
    /// Docker's state (`running`, `exited`, ...).
    pub state: String,
}

impl Docker {
    /// Connect to the daemon named by `DOCKER_HOST` (or the local socket), negotiate the API version
    /// and check that it answers.
    pub async fn connect() -> Result<Docker, DockerError> {
        let endpoint = endpoint();
        let unreachable = |source| DockerError::Unreachable {
            endpoint: endpoint.clone(),
            source,
        };
        let inner = bollard::Docker::connect_with_defaults().map_err(unreachable)?;
        let inner = inner.negotiate_version().await.map_err(unreachable)?;
        inner.ping().await.map_err(unreachable)?;
        Ok(Docker { inner })
    }

    /// Whether an image is present locally.
    pub async fn image_exists(&self, name: &str) -> Result<bool, DockerError> {
        match self.inner.inspect_image(name).await {
            Ok(_) => Ok(true),
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(false),
            Err(e) => Err(DockerError::from_bollard(e)),
        }
    }

    /// Pull an image (with a registry login when given), yielding the daemon's progress
    /// messages. Errors carry the registry's message.
    pub fn pull(
        &self,
        name: &str,
        login: Option<RegistryLogin>,
    ) -> impl Stream<Item = Result<CreateImageInfo, DockerError>> + Send + 'static {
        let (image, tag) = split_tag(name);
        let options = CreateImageOptionsBuilder::new()
            .from_image(image)
            .tag(tag)
            .build();
        self.inner
            .create_image(Some(options), None, login.map(credentials))
            .map_err(DockerError::from_bollard)
    }

    /// Give the local image `source` the name `target` (`repo[:tag]`).
    pub async fn tag(&self, source: &str, target: &str) -> Result<(), DockerError> {
        let (repo, tag) = split_tag(target);
        let options = TagImageOptionsBuilder::new().repo(repo).tag(tag).build();
        self.inner
            .tag_image(source, Some(options))
            .await
            .map_err(DockerError::from_bollard)
    }

    /// Push a local image to its registry (with a login when given), yielding the daemon's
    /// progress messages. Errors carry the registry's message.
    pub fn push(
        &self,
        name: &str,
        login: Option<RegistryLogin>,
    ) -> impl Stream<Item = Result<PushImageInfo, DockerError>> + Send + 'static {
        let (image, tag) = split_tag(name);
        let options = PushImageOptionsBuilder::new().tag(tag).build();
        self.inner
            .push_image(image, Some(options), login.map(credentials))
            .map_err(DockerError::from_bollard)
    }

    /// Remove a local image name (the image itself goes when no other name refers to it).
    /// A missing image is not an error.
    pub async fn remove_image(&self, name: &str) -> Result<(), DockerError> {
        let options = RemoveImageOptionsBuilder::new().build();
        match self.inner.remove_image(name, Some(options), None).await {
            Ok(_) => Ok(()),
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            Err(e) => Err(DockerError::from_bollard(e)),
        }
    }

    /// Build an image from a tar build context (Dockerfile at its root).
    pub async fn build_image(&self, tag: &str, context_tar: Vec<u8>) -> Result<(), DockerError> {
        let options = BuildImageOptionsBuilder::new()
            .t(tag)
            .rm(true)
            .forcerm(true)
            .build();
        let body = bollard::body_full(Bytes::from(context_tar));
        let mut stream = self.inner.build_image(options, None, Some(body));
        while let Some(info) = stream.next().await {
            let info = info.map_err(DockerError::from_bollard)?;
            if let Some(error) = info.error {
                return Err(DockerError::Api(error));
            }
        }
        Ok(())
    }

    /// Create a container and return its id.
    pub async fn create_container(
        &self,
        name: Option<&str>,
        body: ContainerCreateBody,
    ) -> Result<String, DockerError> {
        let options = name.map(|n| CreateContainerOptionsBuilder::new().name(n).build());
        let created = self
            .inner
            .create_container(options, body)
            .await
            .map_err(DockerError::from_bollard)?;
        Ok(created.id)
    }

    /// Attach to a created container's output (call before starting it so nothing is missed).
    /// With a TTY the stream carries the raw terminal bytes.
    pub async fn attach(
        &self,
        id: &str,
    ) -> Result<impl Stream<Item = Result<Bytes, DockerError>> + Send + Unpin + 'static, DockerError>
    {
        let options = AttachContainerOptionsBuilder::new()
            .stream(true)
            .stdout(true)
            .stderr(true)
            .logs(false)
            .build();
        let attached = self
            .inner
            .attach_container(id, Some(options))
            .await
            .map_err(DockerError::from_bollard)?;
        Ok(attached
            .output
            .map_ok(|out| out.into_bytes())
            .map_err(DockerError::from_bollard))
    }

    /// Start a created container.
    pub async fn start(&self, id: &str) -> Result<(), DockerError> {
        self.inner
            .start_container(id, None::<bollard::query_parameters::StartContainerOptions>)
            .await
            .map_err(DockerError::from_bollard)
    }

    /// Wait for a container to stop and return its exit code.
    pub async fn wait(&self, id: &str) -> Result<i64, DockerError> {
        let mut stream = self
            .inner
            .wait_container(id, None::<bollard::query_parameters::WaitContainerOptions>);
        match stream.next().await {
            Some(Ok(resp)) => Ok(resp.status_code),
            Some(Err(BollardError::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(e)) => Err(DockerError::from_bollard(e)),
            None => Err(DockerError::Api(format!(
                "wait on container {id} ended without a status"
            ))),
        }
    }

    /// Send SIGKILL to a container. A container that already stopped is not an error.
    pub async fn kill(&self, id: &str) -> Result<(), DockerError> {
        let options = KillContainerOptionsBuilder::new().signal("SIGKILL").build();
        match self.inner.kill_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            Err(BollardError::DockerResponseServerError {
                status_code: 409, ..
            }) => Ok(()),
            Err(e) => Err(DockerError::from_bollard(e)),
        }
    }

    /// Remove a container (forced, with its anonymous volumes). A missing container is not an error.
    pub async fn remove(&self, id: &str) -> Result<(), DockerError> {
        let options = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        match self.inner.remove_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            Err(e) => Err(DockerError::from_bollard(e)),
        }
    }

    /// Read a path out of a container as a tar stream (Docker's archive API; works on stopped
    /// containers and never touches host paths).
    pub fn archive(
        &self,
        id: &str,
        path: &str,
    ) -> impl Stream<Item = Result<Bytes, DockerError>> + Send + Unpin + 'static {
        let options = DownloadFromContainerOptionsBuilder::new()
            .path(path)
            .build();
        self.inner
            .download_from_container(id, Some(options))
            .map_err(DockerError::from_bollard)
            .boxed()
    }

    /// Every container (running or not) carrying `label=value`.
    pub async fn list_labeled(
        &self,
        label: &str,
        value: &str,
    ) -> Result<Vec<LabeledContainer>, DockerError> {
        let filter = format!("{label}={value}");
        let mut filters = HashMap::new();
        filters.insert("label".to_string(), vec![filter]);
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let found = self
            .inner
            .list_containers(Some(options))
            .await
            .map_err(DockerError::from_bollard)?;
        Ok(found
            .into_iter()
            .filter_map(|c| {
                Some(LabeledContainer {
                    id: c.id?,
                    labels: c.labels.unwrap_or_default(),
                    state: c.state.map(|s| s.to_string()).unwrap_or_default(),
                })
            })
            .collect())
    }
}

/// The `X-Registry-Auth` credentials for a login.
fn credentials(login: RegistryLogin) -> bollard::auth::DockerCredentials {
    bollard::auth::DockerCredentials {
        username: Some(login.username),
        password: Some(login.password),
        serveraddress: Some(login.server),
        ..Default::default()
    }
}

/// Split `repo[:tag][@digest]` into the image and tag parts for a pull (tag defaults to `latest`).
pub fn split_tag(name: &str) -> (&str, &str) {
    if name.contains('@') {
        return (name, "");
    }
    let last_segment = name.rsplit('/').next().unwrap_or(name);
    match last_segment.rfind(':') {
        Some(pos) => {
            let split = name.len() - last_segment.len() + pos;
            (&name[..split], &name[split + 1..])
        }
        None => (name, "latest"),
    }
}

#[cfg(test)]
mod tests {
    use super::split_tag;

    #[test]
    fn split_tag_handles_registries_ports_and_digests() {
        assert_eq!(split_tag("ubuntu"), ("ubuntu", "latest"));
        assert_eq!(split_tag("ubuntu:24.04"), ("ubuntu", "24.04"));
        assert_eq!(
            split_tag("localhost:5000/team/img"),
            ("localhost:5000/team/img", "latest")
        );
        assert_eq!(
            split_tag("localhost:5000/team/img:v1"),
            ("localhost:5000/team/img", "v1")
        );
        assert_eq!(split_tag("img@sha256:abc"), ("img@sha256:abc", ""));
    }
}
