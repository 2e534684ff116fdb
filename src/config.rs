//! WorkerConfig: the worker's settings from file (YAML/JSON, the original camelCase keys), environment
//! and command line, validated once.
//!
//! Precedence, highest first: command line (`DOCKER_WORKER_OPTS` counts as command line, below flags
//! given explicitly), environment, config file, `--host aws` instance metadata, defaults (those of the
//! original `config-defaults.yml` where it had the key).

use std::collections::BTreeMap;
use std::future::Future;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::payload::{ValidationContext, FEATURE_NAMES, MAX_RUN_TIME_LIMIT};

/// All worker settings. Field names mirror the original docker-worker config keys.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Tasks run at once.
    pub capacity: usize,
    /// Taskcluster root URL (no trailing slash).
    pub root_url: String,
    /// `provisionerId`.
    pub provisioner_id: String,
    /// `workerType`.
    pub worker_type: String,
    /// `workerGroup`.
    pub worker_group: String,
    /// `workerId`.
    pub worker_id: String,
    /// `workerNodeType`.
    pub worker_node_type: String,
    /// `publicIp`.
    pub public_ip: String,
    /// `instanceType`.
    pub instance_type: String,
    /// `workerLocation` (JSON string given to tasks as TASKCLUSTER_WORKER_LOCATION).
    pub worker_location: String,
    /// `task.*`.
    pub task: TaskSettings,
    /// `dockerConfig.*`.
    pub docker_config: DockerSettings,
    /// `features.<name>.enabled`, by schema feature name (every known feature is present).
    pub features: BTreeMap<String, bool>,
    /// The worker's own Taskcluster credentials (`None` only for `docker-worker run`).
    pub credentials: Option<Credentials>,
    /// `privateIp`.
    pub private_ip: String,
    /// `instanceId`.
    pub instance_id: String,
    /// `region`.
    pub region: String,
    /// `host`: this machine's host name as readers of the live log reach it.
    pub host: String,
    /// Which host provider filled in the identity (`--host`).
    pub host_kind: HostKind,
    /// `awsMetadataUrl`: base URL of the EC2 instance metadata service.
    pub aws_metadata_url: String,
    /// `taskQueue.*`.
    pub task_queue: TaskQueueSettings,
    /// `registries`: credentials by registry (prefix) for image pulls.
    pub registries: BTreeMap<String, RegistryCredentials>,
    /// `dockerVolume`: the volume Docker's data lives on (checked for free space).
    pub docker_volume: PathBuf,
    /// `cache.*`.
    pub cache: CacheSettings,
    /// `capacityManagement.*`.
    pub capacity_management: CapacityManagement,
    /// `garbageCollection.*`.
    pub garbage_collection: GarbageCollection,
    /// `shutdown.*`.
    pub shutdown: ShutdownSettings,
    /// `artifacts.*`.
    pub artifacts: ArtifactSettings,
    /// `logging.*`.
    pub logging: LoggingSettings,
    /// `ssl.*`.
    pub ssl: SslSettings,
    /// `liveLog.*`.
    pub live_log: LiveLogSettings,
}

/// `task.*`.
#[derive(Debug, Clone)]
pub struct TaskSettings {
    /// Seconds, for payloads without maxRunTime.
    pub default_max_run_time: u64,
    /// Reclaim at (takenUntil - now) / divisor.
    pub reclaim_divisor: u32,
    /// Seconds between checks that a running task was not cancelled; 0 turns the check off.
    pub cancel_poll_interval: u64,
}

/// `dockerConfig.*`.
#[derive(Debug, Clone)]
pub struct DockerSettings {
    /// Image pull attempts.
    pub max_attempts: u32,
    /// Backoff base in milliseconds.
    pub delay_factor: u64,
    /// 0..1 jitter.
    pub randomization_factor: f64,
    /// Whether tasks may ask for privileged containers.
    pub allow_privileged: bool,
    /// Registry used for authenticated pulls of names without a registry host.
    pub default_registry: String,
}

/// `taskQueue.*`.
#[derive(Debug, Clone)]
pub struct TaskQueueSettings {
    /// Milliseconds between claimWork calls when the previous one returned nothing.
    pub poll_interval: u64,
}

/// `cache.*`.
#[derive(Debug, Clone)]
pub struct CacheSettings {
    /// Host directory holding the task caches.
    pub volume_cache_path: PathBuf,
}

/// `capacityManagement.*`.
#[derive(Debug, Clone)]
pub struct CapacityManagement {
    /// Bytes of free space on `dockerVolume` below which no new task is claimed.
    pub diskspace_threshold: u64,
}

/// `garbageCollection.*` (all in milliseconds).
#[derive(Debug, Clone)]
pub struct GarbageCollection {
    /// Unused images older than this are removed.
    pub image_expiration: u64,
    /// Exited containers older than this are removed.
    pub container_expiration: u64,
    /// Time between collections.
    pub interval: u64,
}

/// `shutdown.*`.
#[derive(Debug, Clone)]
pub struct ShutdownSettings {
    /// Whether an idle worker shuts down.
    pub enabled: bool,
    /// Idle seconds before shutting down.
    pub after_idle_seconds: u64,
}

pub use crate::queue::{Credentials, StorageType};

/// `artifacts.*`.
#[derive(Debug, Clone)]
pub struct ArtifactSettings {
    /// `object` or `s3`.
    pub storage_type: StorageType,
    /// File name endings uploaded without gzip content-encoding.
    pub skip_compression_extensions: Vec<String>,
}

/// `logging.*`.
#[derive(Debug, Clone)]
pub struct LoggingSettings {
    /// Serve the live log over TLS (with `ssl.*`).
    pub secure_live_logging: bool,
}

/// `ssl.*`.
#[derive(Debug, Clone)]
pub struct SslSettings {
    /// PEM certificate for the live log server.
    pub certificate: PathBuf,
    /// PEM key for the live log server.
    pub key: PathBuf,
}

/// `liveLog.*` (new keys): the live log HTTP server.
#[derive(Debug, Clone)]
pub struct LiveLogSettings {
    /// Address the server binds (default 0.0.0.0).
    pub bind_address: IpAddr,
    /// Port the server binds (default 60023).
    pub port: u16,
    /// Base URL readers use, when it differs from `http(s)://host:port`.
    pub public_url: Option<url::Url>,
}

/// Login for one registry in `registries`. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryCredentials {
    /// User name.
    pub username: String,
    /// Password (secret).
    pub password: String,
}

impl std::fmt::Debug for RegistryCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryCredentials")
            .field("username", &self.username)
            .field("password", &"<hidden>")
            .finish()
    }
}

/// Where the worker's identity comes from (`--host`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum HostKind {
    /// Everything from the command line, environment and config file.
    #[default]
    Standalone,
    /// Fill what was not given from the EC2 instance metadata service.
    Aws,
}

/// `docker-worker start` options. Each overrides the config file and the environment.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct StartArgs {
    /// Config file, YAML or JSON, with the original camelCase keys.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Taskcluster root URL (else TASKCLUSTER_ROOT_URL, else `rootUrl`).
    #[arg(long, value_name = "URL")]
    pub root_url: Option<String>,
    /// Provisioner ID of the worker pool.
    #[arg(long, value_name = "ID")]
    pub provisioner_id: Option<String>,
    /// Worker type of the worker pool.
    #[arg(long, value_name = "T")]
    pub worker_type: Option<String>,
    /// Worker group of this worker.
    #[arg(long, value_name = "G")]
    pub worker_group: Option<String>,
    /// Worker ID of this worker.
    #[arg(long, value_name = "W")]
    pub worker_id: Option<String>,
    /// Tasks run at once.
    #[arg(long, value_name = "N")]
    pub capacity: Option<usize>,
    /// Host provider: `standalone` (default) or `aws` (EC2 instance metadata).
    #[arg(long, value_enum, value_name = "HOST")]
    pub host: Option<HostKind>,
}

/// A configuration problem, with the key, flag, variable or file to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The config file is not valid YAML/JSON or has an unknown key or a wrong type.
    #[error("config file {}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// `key.path: problem` (with line and column where known).
        message: String,
    },
    /// `DOCKER_WORKER_OPTS` could not be split like a shell would.
    #[error("DOCKER_WORKER_OPTS: {0}")]
    OptsEnv(String),
    /// Required values are missing; each entry says what to set.
    #[error("missing configuration: {}", .0.join("; "))]
    Missing(Vec<String>),
    /// A value is out of range or malformed.
    #[error("invalid configuration: {key}: {message}")]
    Invalid {
        /// The key, flag or variable.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// The EC2 instance metadata service could not be read (`--host aws`).
    #[error("EC2 instance metadata at {url}: {message}")]
    AwsMetadata {
        /// The URL asked.
        url: String,
        /// What went wrong.
        message: String,
    },
}

/// Default base URL of the EC2 instance metadata service.
pub const DEFAULT_AWS_METADATA_URL: &str = "http://169.254.169.254";

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            capacity: 1,
            root_url: String::new(),
            provisioner_id: "local".into(),
            worker_type: "local".into(),
            worker_group: "local".into(),
            worker_id: "local".into(),
            worker_node_type: "standalone".into(),
            public_ip: String::new(),
            instance_type: "standalone".into(),
            worker_location: String::new(),
            task: TaskSettings {
                default_max_run_time: 3600,
                reclaim_divisor: 2,
                cancel_poll_interval: 30,
            },
            docker_config: DockerSettings {
                max_attempts: 5,
                delay_factor: 15000,
                randomization_factor: 0.25,
                allow_privileged: false,
                default_registry: "registry.hub.docker.com".into(),
            },
            features: FEATURE_NAMES
                .iter()
                .map(|name| (name.to_string(), true))
                .collect(),
            credentials: None,
            private_ip: String::new(),
            instance_id: "standalone".into(),
            region: "none".into(),
            host: "localhost".into(),
            host_kind: HostKind::Standalone,
            aws_metadata_url: DEFAULT_AWS_METADATA_URL.into(),
            task_queue: TaskQueueSettings {
                poll_interval: 5000,
            },
            registries: BTreeMap::new(),
            docker_volume: PathBuf::from("/mnt"),
            cache: CacheSettings {
                volume_cache_path: PathBuf::from("/mnt/var/cache/docker-worker"),
            },
            capacity_management: CapacityManagement {
                diskspace_threshold: 30_000_000_000,
            },
            garbage_collection: GarbageCollection {
                image_expiration: 7_200_000,
                container_expiration: 1_800_000,
                interval: 60_000,
            },
            // Off by default: a standalone host's worker should not exit when idle (systemd would
            // not restart a clean exit). Cloud pools turn it on with `shutdown.enabled: true`.
            shutdown: ShutdownSettings {
                enabled: false,
                after_idle_seconds: 300,
            },
            artifacts: ArtifactSettings {
                storage_type: StorageType::Object,
                skip_compression_extensions: [
                    ".7z", ".bz2", ".deb", ".dmg", ".flv", ".gif", ".gz", ".jpeg", ".jpg", ".png",
                    ".swf", ".tbz", ".tgz", ".webp", ".whl", ".woff", ".woff2", ".xz", ".zip",
                    ".zst", "lz4",
                ]
                .map(String::from)
                .to_vec(),
            },
            logging: LoggingSettings {
                secure_live_logging: false,
            },
            ssl: SslSettings {
                certificate: PathBuf::from("/etc/star_taskcluster-worker_net.crt"),
                key: PathBuf::from("/etc/star_taskcluster-worker_net.key"),
            },
            live_log: LiveLogSettings {
                bind_address: IpAddr::from([0, 0, 0, 0]),
                port: 60023,
                public_url: None,
            },
        }
    }
}

impl WorkerConfig {
    /// Schema names of the features this worker turns off (`features.<name>.enabled: false`).
    pub fn disabled_features(&self) -> Vec<String> {
        self.features
            .iter()
            .filter(|(_, on)| !**on)
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// What [`crate::payload::Payload::parse`] needs from this config, for a task expiring at
    /// `task_expires`.
    pub fn validation_context(&self, task_expires: Option<DateTime<Utc>>) -> ValidationContext {
        ValidationContext {
            task_expires,
            default_max_run_time: self.task.default_max_run_time,
            disabled_features: self.disabled_features(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// DOCKER_WORKER_OPTS

/// `start` options that take a value, for deciding which `DOCKER_WORKER_OPTS` entries the explicit
/// command line overrides.
const START_VALUE_FLAGS: [&str; 8] = [
    "--config",
    "--root-url",
    "--provisioner-id",
    "--worker-type",
    "--worker-group",
    "--worker-id",
    "--capacity",
    "--host",
];

/// Insert the options of `DOCKER_WORKER_OPTS` (`opts`, shell-split) right after the `start`
/// subcommand in `args` (the full argv, program name first), as the original init script did.
///
/// A flag given explicitly on the command line wins: the same flag in `opts` (with its value) is
/// dropped, so clap never sees it twice. Other subcommands, and an argv without one, are returned
/// unchanged.
pub fn expand_opts_env(args: Vec<String>, opts: Option<&str>) -> Result<Vec<String>, ConfigError> {
    let Some(opts) = opts.filter(|o| !o.trim().is_empty()) else {
        return Ok(args);
    };
    let extra = shell_words::split(opts).map_err(|e| ConfigError::OptsEnv(e.to_string()))?;
    let Some(sub) = args
        .iter()
        .skip(1)
        .position(|a| !a.starts_with('-'))
        .map(|i| i + 1)
    else {
        return Ok(args);
    };
    if args[sub] != "start" {
        return Ok(args);
    }
    let flag_name = |token: &str| token.split('=').next().unwrap_or(token).to_string();
    let explicit: Vec<String> = args[sub + 1..]
        .iter()
        .take_while(|a| *a != "--")
        .filter(|a| a.starts_with("--"))
        .map(|a| flag_name(a))
        .collect();

    let mut kept = Vec::new();
    let mut tokens = extra.into_iter();
    while let Some(token) = tokens.next() {
        let name = flag_name(&token);
        if token.starts_with("--")
            && START_VALUE_FLAGS.contains(&name.as_str())
            && explicit.contains(&name)
        {
            if !token.contains('=') {
                tokens.next(); // its value
            }
            continue;
        }
        kept.push(token);
    }

    let mut out = args;
    let tail = out.split_off(sub + 1);
    out.extend(kept);
    out.extend(tail);
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// The config file

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
struct FileConfig {
    capacity: Option<usize>,
    root_url: Option<String>,
    taskcluster: FileCredentials,
    provisioner_id: Option<String>,
    worker_type: Option<String>,
    worker_group: Option<String>,
    worker_id: Option<String>,
    worker_node_type: Option<String>,
    public_ip: Option<String>,
    private_ip: Option<String>,
    instance_id: Option<String>,
    instance_type: Option<String>,
    region: Option<String>,
    worker_location: Option<FileWorkerLocation>,
    aws_metadata_url: Option<String>,
    task_queue: FileTaskQueue,
    task: FileTask,
    docker_config: FileDockerConfig,
    registries: Option<BTreeMap<String, RegistryCredentials>>,
    docker_volume: Option<PathBuf>,
    cache: FileCache,
    capacity_management: FileCapacityManagement,
    garbage_collection: FileGarbageCollection,
    shutdown: FileShutdown,
    features: BTreeMap<String, FileFeature>,
    artifacts: FileArtifacts,
    logging: FileLogging,
    ssl: FileSsl,
    host: Option<String>,
    live_log: FileLiveLog,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
struct FileCredentials {
    client_id: Option<String>,
    access_token: Option<String>,
    certificate: Option<String>,
}

/// `workerLocation` as a JSON string or as a map (serialized to JSON).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum FileWorkerLocation {
    Text(String),
    Map(BTreeMap<String, String>),
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
struct FileTaskQueue {
    poll_interval: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
struct FileTask {
    reclaim_divisor: Option<u32>,
    default_max_run_time: Option<u64>,
    cancel_poll_interval: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
struct FileDockerConfig {
    allow_privileged: Option<bool>,
    default_registry: Option<String>,
    max_attempts: Option<u32>,
    delay_factor: Option<u64>,
    randomization_factor: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
struct FileCache {
    volume_cache_path: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
struct FileCapacityManagement {
    diskspace_threshold: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
struct FileGarbageCollection {
    image_expiration: Option<u64>,
    container_expiration: Option<u64>,
    interval: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
struct FileShutdown {
    enabled: Option<bool>,
    after_idle_seconds: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFeature {
    enabled: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
struct FileArtifacts {
    storage_type: Option<StorageType>,
    skip_compression_extensions: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
struct FileLogging {
    secure_live_logging: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
struct FileSsl {
    certificate: Option<PathBuf>,
    key: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
struct FileLiveLog {
    bind_address: Option<String>,
    port: Option<u16>,
    public_url: Option<String>,
}

/// Parse config file text (YAML, which includes JSON). Errors name the key path and, for syntax
/// errors, the line and column.
fn parse_file_text(text: &str) -> Result<FileConfig, String> {
    let de = serde_yaml_ng::Deserializer::from_str(text);
    match serde_path_to_error::deserialize::<_, Option<FileConfig>>(de) {
        Ok(file) => Ok(file.unwrap_or_default()),
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            // serde_yaml_ng prefixes its own (parent) path; ours is the full one.
            let message = match inner.split_once(": ") {
                Some((head, rest)) if !head.contains(' ') && path.starts_with(head) => rest,
                _ => &inner,
            };
            Err(if matches!(path.as_str(), "." | "?" | "") {
                message.to_string()
            } else {
                format!("{path}: {message}")
            })
        }
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_file_text(&text).map_err(|message| ConfigError::Parse {
        path: path.to_path_buf(),
        message,
    })
}

// ---------------------------------------------------------------------------------------------
// Loading

/// The environment variables the config reads, read once.
#[derive(Debug, Default, Clone)]
struct EnvVars {
    client_id: Option<String>,
    access_token: Option<String>,
    certificate: Option<String>,
    root_url: Option<String>,
    aws_metadata_url: Option<String>,
}

impl EnvVars {
    fn read(env: &dyn Fn(&str) -> Option<String>) -> EnvVars {
        // An empty variable counts as unset.
        let get = |name: &str| env(name).filter(|v| !v.is_empty());
        EnvVars {
            client_id: get("TASKCLUSTER_CLIENT_ID"),
            access_token: get("TASKCLUSTER_ACCESS_TOKEN"),
            certificate: get("TASKCLUSTER_CERTIFICATE"),
            root_url: get("TASKCLUSTER_ROOT_URL"),
            aws_metadata_url: get("DOCKER_WORKER_AWS_METADATA_URL"),
        }
    }
}

/// Load the `docker-worker start` configuration: `args` over `env` (use
/// `&|name| std::env::var(name).ok()`) over the `--config` file over defaults. With `--host aws` it
/// asks the EC2 instance metadata service for what is still missing (so it is async).
///
/// Credentials, root URL and the four identity values are required; all that are missing are
/// reported together, each with the flag, variable or key that sets it.
pub fn load(
    args: &StartArgs,
    env: &dyn Fn(&str) -> Option<String>,
) -> impl Future<Output = Result<WorkerConfig, ConfigError>> + Send + 'static {
    let env = EnvVars::read(env);
    let args = args.clone();
    let file = args.config.as_deref().map(read_file).transpose();
    async move {
        let file = file?.unwrap_or_default();
        let host_kind = args.host.unwrap_or_default();
        let metadata = match host_kind {
            HostKind::Standalone => None,
            HostKind::Aws => {
                let url = env
                    .aws_metadata_url
                    .clone()
                    .or_else(|| file.aws_metadata_url.clone())
                    .unwrap_or_else(|| DEFAULT_AWS_METADATA_URL.into());
                Some(fetch_aws_metadata(&url).await?)
            }
        };
        build(
            Mode::Start {
                args: &args,
                env: &env,
                host_kind,
            },
            file,
            metadata.as_ref(),
        )
    }
}

/// Load the configuration for `docker-worker run`: the optional file over defaults. No credentials
/// or root URL are required; the identity defaults to `local`, with this machine's host name as the
/// worker ID.
pub fn load_local(config_file: Option<&Path>) -> Result<WorkerConfig, ConfigError> {
    let file = config_file.map(read_file).transpose()?.unwrap_or_default();
    build(Mode::Local, file, None)
}

enum Mode<'a> {
    Start {
        args: &'a StartArgs,
        env: &'a EnvVars,
        host_kind: HostKind,
    },
    Local,
}

fn build(
    mode: Mode<'_>,
    file: FileConfig,
    aws: Option<&AwsMetadata>,
) -> Result<WorkerConfig, ConfigError> {
    let mut c = WorkerConfig::default();
    let mut missing = Vec::new();
    let no_args = StartArgs::default();
    let no_env = EnvVars::default();
    let (args, env, daemon) = match &mode {
        Mode::Start {
            args,
            env,
            host_kind,
        } => {
            c.host_kind = *host_kind;
            (*args, *env, true)
        }
        Mode::Local => (&no_args, &no_env, false),
    };

    // Identity: command line, file, instance metadata, then (daemon) an error or (local) a default.
    let mut identity = |value: Option<String>,
                        slot: &mut String,
                        what: &str,
                        flag: &str,
                        key: &str| match value.filter(|v| !v.is_empty()) {
        Some(v) => *slot = v,
        None if daemon => missing.push(format!("{what}: set {flag} or {key} in the config file")),
        None => {}
    };
    let pick = |cli: &Option<String>, file: Option<String>, fallback: Option<String>| {
        cli.clone().or(file).or(fallback)
    };
    identity(
        pick(
            &args.provisioner_id,
            file.provisioner_id,
            aws.map(|_| "aws-provisioner".into()),
        ),
        &mut c.provisioner_id,
        "provisioner ID",
        "--provisioner-id",
        "provisionerId",
    );
    identity(
        pick(
            &args.worker_type,
            file.worker_type,
            aws.map(|m| m.ami_id.clone()),
        ),
        &mut c.worker_type,
        "worker type",
        "--worker-type",
        "workerType",
    );
    identity(
        pick(
            &args.worker_group,
            file.worker_group,
            aws.map(|m| m.availability_zone.clone()),
        ),
        &mut c.worker_group,
        "worker group",
        "--worker-group",
        "workerGroup",
    );
    let local_worker_id = if daemon { None } else { Some(hostname()) };
    identity(
        pick(
            &args.worker_id,
            file.worker_id,
            aws.map(|m| m.instance_id.clone()).or(local_worker_id),
        ),
        &mut c.worker_id,
        "worker ID",
        "--worker-id",
        "workerId",
    );

    // Root URL.
    let root_url = None
        .or(args.root_url.clone().map(|u| ("--root-url", u)))
        .or(env.root_url.clone().map(|u| ("TASKCLUSTER_ROOT_URL", u)))
        .or(file.root_url.map(|u| ("rootUrl", u)));
    match root_url {
        Some((source, url)) => {
            check_url(source, &url)?;
            c.root_url = url.trim_end_matches('/').to_string();
        }
        None if daemon => missing.push(
            "Taskcluster root URL: set --root-url, TASKCLUSTER_ROOT_URL or rootUrl in the config file"
                .into(),
        ),
        None => {}
    }

    // Credentials: each of clientId / accessToken from the environment, else the file. The
    // certificate belongs to the client ID, so it comes from wherever the client ID came from.
    let file_creds = file.taskcluster;
    let client_id = env
        .client_id
        .clone()
        .or_else(|| file_creds.client_id.clone());
    let access_token = env
        .access_token
        .clone()
        .or_else(|| file_creds.access_token.clone());
    let certificate = if env.client_id.is_some() {
        env.certificate.clone()
    } else {
        file_creds.certificate
    };
    match (client_id, access_token) {
        (Some(client_id), Some(access_token)) => {
            c.credentials = Some(Credentials {
                client_id,
                access_token,
                certificate,
            })
        }
        (client_id, access_token) if daemon || client_id.is_some() || access_token.is_some() => {
            if client_id.is_none() {
                missing.push(
                    "Taskcluster client ID: set TASKCLUSTER_CLIENT_ID or taskcluster.clientId in the config file"
                        .into(),
                );
            }
            if access_token.is_none() {
                missing.push(
                    "Taskcluster access token: set TASKCLUSTER_ACCESS_TOKEN or taskcluster.accessToken in the config file"
                        .into(),
                );
            }
        }
        _ => {}
    }
    if !missing.is_empty() {
        return Err(ConfigError::Missing(missing));
    }

    // Host facts: file, then instance metadata, then defaults.
    let aws_fact = |f: fn(&AwsMetadata) -> Option<String>| aws.and_then(f);
    let facts = [
        (
            file.public_ip,
            aws_fact(|m| m.public_ipv4.clone()),
            &mut c.public_ip,
        ),
        (
            file.private_ip,
            aws_fact(|m| m.local_ipv4.clone()),
            &mut c.private_ip,
        ),
        (
            file.instance_id,
            aws_fact(|m| Some(m.instance_id.clone())),
            &mut c.instance_id,
        ),
        (
            file.instance_type,
            aws_fact(|m| Some(m.instance_type.clone())),
            &mut c.instance_type,
        ),
        (
            file.worker_node_type,
            aws_fact(|m| Some(m.instance_type.clone())),
            &mut c.worker_node_type,
        ),
        (file.region, aws_fact(|m| Some(m.region())), &mut c.region),
        (
            file.worker_location.map(|l| match l {
                FileWorkerLocation::Text(s) => s,
                FileWorkerLocation::Map(m) => serde_json::to_string(&m).unwrap_or_default(),
            }),
            aws_fact(|m| Some(m.worker_location())),
            &mut c.worker_location,
        ),
    ];
    for (from_file, from_aws, slot) in facts {
        if let Some(v) = from_file.or(from_aws) {
            *slot = v;
        }
    }

    // Everything else: file over defaults.
    macro_rules! set {
        ($slot:expr, $value:expr) => {
            if let Some(v) = $value {
                $slot = v;
            }
        };
    }
    set!(c.capacity, file.capacity);
    set!(c.capacity, args.capacity);
    set!(c.host, file.host);
    set!(
        c.aws_metadata_url,
        env.aws_metadata_url.clone().or(file.aws_metadata_url)
    );
    set!(c.task_queue.poll_interval, file.task_queue.poll_interval);
    set!(c.task.reclaim_divisor, file.task.reclaim_divisor);
    set!(c.task.default_max_run_time, file.task.default_max_run_time);
    set!(c.task.cancel_poll_interval, file.task.cancel_poll_interval);
    let d = file.docker_config;
    set!(c.docker_config.allow_privileged, d.allow_privileged);
    set!(c.docker_config.default_registry, d.default_registry);
    set!(c.docker_config.max_attempts, d.max_attempts);
    set!(c.docker_config.delay_factor, d.delay_factor);
    set!(c.docker_config.randomization_factor, d.randomization_factor);
    set!(c.registries, file.registries);
    set!(c.docker_volume, file.docker_volume);
    set!(c.cache.volume_cache_path, file.cache.volume_cache_path);
    set!(
        c.capacity_management.diskspace_threshold,
        file.capacity_management.diskspace_threshold
    );
    let gc = file.garbage_collection;
    set!(c.garbage_collection.image_expiration, gc.image_expiration);
    set!(
        c.garbage_collection.container_expiration,
        gc.container_expiration
    );
    set!(c.garbage_collection.interval, gc.interval);
    set!(c.shutdown.enabled, file.shutdown.enabled);
    set!(
        c.shutdown.after_idle_seconds,
        file.shutdown.after_idle_seconds
    );
    set!(c.artifacts.storage_type, file.artifacts.storage_type);
    set!(
        c.artifacts.skip_compression_extensions,
        file.artifacts.skip_compression_extensions
    );
    set!(
        c.logging.secure_live_logging,
        file.logging.secure_live_logging
    );
    set!(c.ssl.certificate, file.ssl.certificate);
    set!(c.ssl.key, file.ssl.key);
    set!(c.live_log.port, file.live_log.port);
    if let Some(addr) = file.live_log.bind_address {
        c.live_log.bind_address = addr.parse().map_err(|_| {
            invalid(
                "liveLog.bindAddress",
                format!("expected an IP address, got {addr:?}"),
            )
        })?;
    }
    if let Some(url) = file.live_log.public_url {
        c.live_log.public_url = Some(check_url("liveLog.publicUrl", &url)?);
    }
    for (name, feature) in file.features {
        if !FEATURE_NAMES.contains(&name.as_str()) {
            return Err(invalid(
                &format!("features.{name}"),
                format!(
                    "unknown feature; known features: {}",
                    FEATURE_NAMES.join(", ")
                ),
            ));
        }
        c.features.insert(name, feature.enabled);
    }

    validate(&c, args.capacity.is_some())?;
    Ok(c)
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

fn check_url(key: &str, text: &str) -> Result<url::Url, ConfigError> {
    let url =
        url::Url::parse(text).map_err(|e| invalid(key, format!("{text:?} is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(key, format!("{text:?} is not an http(s) URL")));
    }
    Ok(url)
}

fn validate(c: &WorkerConfig, capacity_from_cli: bool) -> Result<(), ConfigError> {
    if c.capacity == 0 {
        let key = if capacity_from_cli {
            "--capacity"
        } else {
            "capacity"
        };
        return Err(invalid(key, "must be at least 1"));
    }
    if c.task.reclaim_divisor == 0 {
        return Err(invalid("task.reclaimDivisor", "must be at least 1"));
    }
    if !(1..=MAX_RUN_TIME_LIMIT).contains(&c.task.default_max_run_time) {
        return Err(invalid(
            "task.defaultMaxRunTime",
            format!("must be from 1 to {MAX_RUN_TIME_LIMIT} seconds"),
        ));
    }
    if c.docker_config.max_attempts == 0 {
        return Err(invalid("dockerConfig.maxAttempts", "must be at least 1"));
    }
    if !(0.0..=1.0).contains(&c.docker_config.randomization_factor) {
        return Err(invalid(
            "dockerConfig.randomizationFactor",
            "must be from 0 to 1",
        ));
    }
    check_url("awsMetadataUrl", &c.aws_metadata_url)?;
    Ok(())
}

/// This machine's host name, or `local` when it cannot be read.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "local".into())
}

// ---------------------------------------------------------------------------------------------
// EC2 instance metadata (IMDSv2)

/// What `--host aws` reads from the EC2 instance metadata service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsMetadata {
    /// `ami-id` (becomes the worker type).
    pub ami_id: String,
    /// `instance-id` (becomes the worker ID).
    pub instance_id: String,
    /// `placement/availability-zone` (becomes the worker group), e.g. `us-west-2a`.
    pub availability_zone: String,
    /// `instance-type`.
    pub instance_type: String,
    /// `public-ipv4`, absent on instances without one.
    pub public_ipv4: Option<String>,
    /// `local-ipv4`.
    pub local_ipv4: Option<String>,
}

impl AwsMetadata {
    /// The region: the availability zone without its trailing letter (`us-west-2a` -> `us-west-2`).
    pub fn region(&self) -> String {
        let zone = &self.availability_zone;
        match zone.chars().last() {
            Some(ch) if ch.is_ascii_alphabetic() => zone[..zone.len() - 1].to_string(),
            _ => zone.clone(),
        }
    }

    /// `workerLocation` for an EC2 instance, as the original aws host wrote it.
    pub fn worker_location(&self) -> String {
        serde_json::json!({
            "cloud": "aws",
            "region": self.region(),
            "availabilityZone": self.availability_zone,
        })
        .to_string()
    }
}

/// Read the instance metadata (IMDSv2: a session token from `PUT /latest/api/token`, then GETs)
/// from the service at `base_url` (normally [`DEFAULT_AWS_METADATA_URL`]).
pub async fn fetch_aws_metadata(base_url: &str) -> Result<AwsMetadata, ConfigError> {
    use crate::aws::Imds;
    let base = base_url.trim_end_matches('/');
    let fail = |(url, message): (String, String)| ConfigError::AwsMetadata { url, message };
    let imds = Imds::connect(base).await.map_err(fail)?;
    let required = |value: Option<String>, path: &str| {
        value.ok_or_else(|| ConfigError::AwsMetadata {
            url: format!("{base}/latest/meta-data/{path}"),
            message: "not found".into(),
        })
    };
    let get = |path: &'static str| {
        let imds = &imds;
        async move { imds.get(path).await.map_err(fail) }
    };
    Ok(AwsMetadata {
        ami_id: required(get("ami-id").await?, "ami-id")?,
        instance_id: required(get("instance-id").await?, "instance-id")?,
        availability_zone: required(
            get("placement/availability-zone").await?,
            "placement/availability-zone",
        )?,
        instance_type: required(get("instance-type").await?, "instance-type")?,
        public_ipv4: get("public-ipv4").await?,
        local_ipv4: get("local-ipv4").await?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use wiremock::matchers::{header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn config_file(ext: &str, text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::Builder::new().suffix(ext).tempfile().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    const FULL_ENV: &[(&str, &str)] = &[
        ("TASKCLUSTER_CLIENT_ID", "env-client"),
        ("TASKCLUSTER_ACCESS_TOKEN", "env-token"),
        ("TASKCLUSTER_ROOT_URL", "https://env.example.com/"),
    ];

    fn identity_args() -> StartArgs {
        StartArgs {
            provisioner_id: Some("prov".into()),
            worker_type: Some("wt".into()),
            worker_group: Some("wg".into()),
            worker_id: Some("wid".into()),
            ..StartArgs::default()
        }
    }

    fn parse_err(text: &str) -> String {
        let f = config_file(".yml", text);
        let e = load_local(Some(f.path())).unwrap_err();
        let shown = e.to_string();
        assert!(shown.contains(&f.path().display().to_string()), "{shown}");
        match e {
            ConfigError::Parse { message, .. } => message,
            other => panic!("expected a parse error, got {other}"),
        }
    }

    #[test]
    fn defaults_match_the_original() {
        let c = load_local(None).unwrap();
        assert_eq!(c.capacity, 1);
        assert_eq!(c.provisioner_id, "local");
        assert_eq!(c.worker_type, "local");
        assert_eq!(c.worker_group, "local");
        assert_eq!(c.worker_id, hostname());
        assert!(c.credentials.is_none());
        assert_eq!(c.task.default_max_run_time, 3600);
        assert_eq!(c.task.reclaim_divisor, 2);
        assert_eq!(c.task.cancel_poll_interval, 30);
        assert_eq!(c.task_queue.poll_interval, 5000);
        assert_eq!(c.docker_config.default_registry, "registry.hub.docker.com");
        assert_eq!(c.docker_config.max_attempts, 5);
        assert_eq!(c.docker_config.delay_factor, 15000);
        assert!(!c.docker_config.allow_privileged);
        assert_eq!(c.docker_volume, PathBuf::from("/mnt"));
        assert_eq!(
            c.cache.volume_cache_path,
            PathBuf::from("/mnt/var/cache/docker-worker")
        );
        assert_eq!(c.capacity_management.diskspace_threshold, 30_000_000_000);
        assert_eq!(c.garbage_collection.image_expiration, 7_200_000);
        assert!(!c.shutdown.enabled);
        assert_eq!(c.shutdown.after_idle_seconds, 300);
        assert_eq!(c.artifacts.storage_type, StorageType::Object);
        assert!(c
            .artifacts
            .skip_compression_extensions
            .contains(&".zst".to_string()));
        assert!(!c.logging.secure_live_logging);
        assert_eq!(c.host, "localhost");
        assert_eq!(c.live_log.bind_address.to_string(), "0.0.0.0");
        assert_eq!(c.live_log.port, 60023);
        assert_eq!(c.live_log.public_url, None);
        assert_eq!(c.features.len(), FEATURE_NAMES.len());
        // Every feature is enabled by default: this worker always keeps the backing log, so the
        // original's `bulkLog: {enabled: false}` default would only refuse tasks asking for it.
        assert!(c.disabled_features().is_empty());
        let ctx = c.validation_context(None);
        assert_eq!(ctx.default_max_run_time, 3600);
    }

    #[test]
    fn yaml_file_with_every_key() {
        let f = config_file(
            ".yml",
            r#"
capacity: 4
rootUrl: https://tc.example.com
taskcluster: {clientId: c, accessToken: t, certificate: '{"version":1}'}
provisionerId: p
workerType: t
workerGroup: g
workerId: w
workerNodeType: n
publicIp: 1.2.3.4
privateIp: 10.0.0.1
instanceId: i-1
instanceType: m5.large
region: us-east-1
workerLocation: {cloud: gcp, region: europe}
awsMetadataUrl: http://127.0.0.1:1
taskQueue: {pollInterval: 1000}
task: {reclaimDivisor: 3, defaultMaxRunTime: 600, cancelPollInterval: 0}
dockerConfig: {allowPrivileged: true, defaultRegistry: r.example.com, maxAttempts: 2, delayFactor: 100, randomizationFactor: 0}
registries:
  quay.io/mozilla: {username: u, password: secret-pw}
dockerVolume: /var/lib/docker
cache: {volumeCachePath: /tmp/caches}
capacityManagement: {diskspaceThreshold: 1000}
garbageCollection: {imageExpiration: 1, containerExpiration: 2, interval: 3}
shutdown: {enabled: false, afterIdleSeconds: 60}
features:
  dind: {enabled: false}
  bulkLog: {enabled: true}
artifacts: {storageType: s3, skipCompressionExtensions: [.gz]}
logging: {secureLiveLogging: true}
ssl: {certificate: /c.crt, key: /c.key}
host: worker.example.com
liveLog: {bindAddress: 127.0.0.1, port: 8080, publicUrl: https://logs.example.com/w1/}
"#,
        );
        let c = load_local(Some(f.path())).unwrap();
        assert_eq!(c.capacity, 4);
        assert_eq!(c.root_url, "https://tc.example.com");
        let creds = c.credentials.clone().unwrap();
        assert_eq!(creds.client_id, "c");
        assert_eq!(creds.access_token, "t");
        assert_eq!(creds.certificate.as_deref(), Some(r#"{"version":1}"#));
        assert_eq!(
            (
                &*c.provisioner_id,
                &*c.worker_type,
                &*c.worker_group,
                &*c.worker_id
            ),
            ("p", "t", "g", "w")
        );
        assert_eq!(c.worker_node_type, "n");
        assert_eq!(c.public_ip, "1.2.3.4");
        assert_eq!(c.private_ip, "10.0.0.1");
        assert_eq!(c.instance_id, "i-1");
        assert_eq!(c.instance_type, "m5.large");
        assert_eq!(c.region, "us-east-1");
        assert_eq!(c.worker_location, r#"{"cloud":"gcp","region":"europe"}"#);
        assert_eq!(c.aws_metadata_url, "http://127.0.0.1:1");
        assert_eq!(c.task_queue.poll_interval, 1000);
        assert_eq!(c.task.reclaim_divisor, 3);
        assert_eq!(c.task.default_max_run_time, 600);
        assert_eq!(c.task.cancel_poll_interval, 0);
        assert!(c.docker_config.allow_privileged);
        assert_eq!(c.docker_config.default_registry, "r.example.com");
        assert_eq!(c.docker_config.max_attempts, 2);
        assert_eq!(c.docker_config.delay_factor, 100);
        assert_eq!(c.docker_config.randomization_factor, 0.0);
        assert_eq!(c.registries["quay.io/mozilla"].password, "secret-pw");
        assert_eq!(c.docker_volume, PathBuf::from("/var/lib/docker"));
        assert_eq!(c.cache.volume_cache_path, PathBuf::from("/tmp/caches"));
        assert_eq!(c.capacity_management.diskspace_threshold, 1000);
        assert_eq!(
            (
                c.garbage_collection.image_expiration,
                c.garbage_collection.container_expiration,
                c.garbage_collection.interval
            ),
            (1, 2, 3)
        );
        assert!(!c.shutdown.enabled);
        assert_eq!(c.shutdown.after_idle_seconds, 60);
        assert_eq!(c.disabled_features(), ["dind"]);
        assert_eq!(c.artifacts.storage_type, StorageType::S3);
        assert_eq!(c.artifacts.skip_compression_extensions, [".gz"]);
        assert!(c.logging.secure_live_logging);
        assert_eq!(c.ssl.certificate, PathBuf::from("/c.crt"));
        assert_eq!(c.ssl.key, PathBuf::from("/c.key"));
        assert_eq!(c.host, "worker.example.com");
        assert_eq!(c.live_log.bind_address.to_string(), "127.0.0.1");
        assert_eq!(c.live_log.port, 8080);
        assert_eq!(
            c.live_log.public_url.unwrap().as_str(),
            "https://logs.example.com/w1/"
        );
    }

    #[test]
    fn json_file() {
        let f = config_file(
            ".json",
            r#"{"capacity": 2, "workerLocation": "{\"cloud\":\"x\"}", "dockerConfig": {"maxAttempts": 9}}"#,
        );
        let c = load_local(Some(f.path())).unwrap();
        assert_eq!(c.capacity, 2);
        assert_eq!(c.worker_location, r#"{"cloud":"x"}"#);
        assert_eq!(c.docker_config.max_attempts, 9);
    }

    #[test]
    fn empty_file_means_defaults() {
        let f = config_file(".yml", "# nothing here\n");
        assert_eq!(load_local(Some(f.path())).unwrap().capacity, 1);
    }

    #[test]
    fn unknown_keys_name_their_path() {
        let m = parse_err("dockerConfig:\n  maxAttemps: 3\n");
        assert!(
            m.starts_with("dockerConfig.maxAttemps: unknown field `maxAttemps`"),
            "{m}"
        );
        let m = parse_err("bogus: 1\n");
        assert!(m.starts_with("bogus: unknown field `bogus`"), "{m}");
        let m = parse_err("features:\n  dind: {enabled: true, extra: 1}\n");
        assert!(
            m.starts_with("features.dind.extra: unknown field `extra`"),
            "{m}"
        );
        let m = parse_err("registries:\n  r.io: {username: u}\n");
        assert!(
            m.contains("registries.r.io") && m.contains("missing field `password`"),
            "{m}"
        );
    }

    #[test]
    fn wrong_types_and_syntax_errors() {
        let m = parse_err("capacity: many\n");
        assert!(
            m.starts_with("capacity: invalid type: string \"many\""),
            "{m}"
        );
        let m = parse_err("artifacts: {storageType: ftp}\n");
        assert!(
            m.starts_with("artifacts.storageType: unknown variant `ftp`"),
            "{m}"
        );
        let m = parse_err("capacity: 1\n- x\n");
        assert!(
            m.starts_with("did not find expected key at line 2 column 1"),
            "{m}"
        );
        let f = config_file(".json", "{\"capacity\": 1,,}");
        let m = load_local(Some(f.path())).unwrap_err().to_string();
        assert!(m.contains("line 1 column"), "{m}");
    }

    #[test]
    fn invalid_values_name_the_key() {
        for (text, key) in [
            ("capacity: 0", "capacity"),
            ("task: {reclaimDivisor: 0}", "task.reclaimDivisor"),
            ("task: {defaultMaxRunTime: 0}", "task.defaultMaxRunTime"),
            (
                "dockerConfig: {randomizationFactor: 2}",
                "dockerConfig.randomizationFactor",
            ),
            ("liveLog: {bindAddress: everywhere}", "liveLog.bindAddress"),
            ("liveLog: {publicUrl: 'not a url'}", "liveLog.publicUrl"),
            ("rootUrl: ftp://x", "rootUrl"),
            (
                "features: {superPowers: {enabled: true}}",
                "features.superPowers",
            ),
        ] {
            let f = config_file(".yml", text);
            match load_local(Some(f.path())) {
                Err(ConfigError::Invalid { key: k, .. }) => assert_eq!(k, key, "{text}"),
                other => panic!("{text}: expected an invalid-value error, got {other:?}"),
            }
        }
    }

    #[test]
    fn missing_file_is_named() {
        let e = load_local(Some(Path::new("/nonexistent/dw.yml"))).unwrap_err();
        assert!(matches!(e, ConfigError::Read { .. }));
        assert!(e.to_string().contains("/nonexistent/dw.yml"), "{e}");
    }

    #[tokio::test]
    async fn missing_required_values_are_all_named() {
        let e = load(&StartArgs::default(), &env_of(&[])).await.unwrap_err();
        let ConfigError::Missing(items) = &e else {
            panic!("{e}")
        };
        assert_eq!(items.len(), 7, "{items:?}");
        let shown = e.to_string();
        for needle in [
            "--provisioner-id or provisionerId",
            "--worker-type or workerType",
            "--worker-group or workerGroup",
            "--worker-id or workerId",
            "--root-url, TASKCLUSTER_ROOT_URL or rootUrl",
            "TASKCLUSTER_CLIENT_ID or taskcluster.clientId",
            "TASKCLUSTER_ACCESS_TOKEN or taskcluster.accessToken",
        ] {
            assert!(shown.contains(needle), "{needle} not in {shown}");
        }
        // Only the access token missing.
        let e = load(&identity_args(), &env_of(&FULL_ENV[..1]))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("TASKCLUSTER_ACCESS_TOKEN") && !e.contains("TASKCLUSTER_CLIENT_ID"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn precedence_cli_over_env_over_file() {
        let f = config_file(
            ".yml",
            "rootUrl: https://file.example.com\ncapacity: 3\nprovisionerId: file-p\nworkerType: file-t\n\
             workerGroup: file-g\nworkerId: file-w\n\
             taskcluster: {clientId: file-client, accessToken: file-token, certificate: file-cert}\n",
        );
        let config = Some(f.path().to_path_buf());

        // File only.
        let args = StartArgs {
            config: config.clone(),
            ..StartArgs::default()
        };
        let c = load(&args, &env_of(&[])).await.unwrap();
        assert_eq!(c.root_url, "https://file.example.com");
        assert_eq!(c.capacity, 3);
        assert_eq!(c.worker_id, "file-w");
        let creds = c.credentials.unwrap();
        assert_eq!(creds.client_id, "file-client");
        assert_eq!(creds.certificate.as_deref(), Some("file-cert"));

        // Environment over file; the file's certificate does not go with the env's client ID.
        let c = load(&args, &env_of(FULL_ENV)).await.unwrap();
        assert_eq!(c.root_url, "https://env.example.com");
        let creds = c.credentials.unwrap();
        assert_eq!(
            (&*creds.client_id, &*creds.access_token),
            ("env-client", "env-token")
        );
        assert_eq!(creds.certificate, None);

        // Command line over both.
        let args = StartArgs {
            config,
            root_url: Some("https://cli.example.com".into()),
            capacity: Some(7),
            host: Some(HostKind::Standalone),
            ..identity_args()
        };
        let c = load(&args, &env_of(FULL_ENV)).await.unwrap();
        assert_eq!(c.root_url, "https://cli.example.com");
        assert_eq!(c.capacity, 7);
        assert_eq!(
            (
                &*c.provisioner_id,
                &*c.worker_type,
                &*c.worker_group,
                &*c.worker_id
            ),
            ("prov", "wt", "wg", "wid")
        );
        assert_eq!(c.host_kind, HostKind::Standalone);

        // Empty environment variables count as unset.
        let args = StartArgs {
            root_url: Some("https://x.example.com".into()),
            ..identity_args()
        };
        let e = load(
            &args,
            &env_of(&[
                ("TASKCLUSTER_CLIENT_ID", ""),
                ("TASKCLUSTER_ACCESS_TOKEN", "t"),
            ]),
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("TASKCLUSTER_CLIENT_ID"), "{e}");
    }

    #[tokio::test]
    async fn bad_root_url_names_its_source() {
        let args = StartArgs {
            root_url: Some("nope".into()),
            ..identity_args()
        };
        match load(&args, &env_of(FULL_ENV)).await {
            Err(ConfigError::Invalid { key, .. }) => assert_eq!(key, "--root-url"),
            other => panic!("{other:?}"),
        }
        let env = env_of(&[
            ("TASKCLUSTER_CLIENT_ID", "c"),
            ("TASKCLUSTER_ACCESS_TOKEN", "t"),
            ("TASKCLUSTER_ROOT_URL", "nope"),
        ]);
        match load(&identity_args(), &env).await {
            Err(ConfigError::Invalid { key, .. }) => assert_eq!(key, "TASKCLUSTER_ROOT_URL"),
            other => panic!("{other:?}"),
        }
        let args = StartArgs {
            capacity: Some(0),
            ..identity_args()
        };
        match load(&args, &env_of(FULL_ENV)).await {
            Err(ConfigError::Invalid { key, .. }) => assert_eq!(key, "--capacity"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn load_future_can_be_spawned() {
        fn assert_send_static<T: Send + 'static>(_: T) {}
        let env = |_: &str| None;
        assert_send_static(load(&StartArgs::default(), &env));
    }

    #[test]
    fn debug_hides_secrets() {
        let creds = Credentials {
            client_id: "my-client".into(),
            access_token: "SECRET-TOKEN".into(),
            certificate: Some("SECRET-CERT".into()),
        };
        let reg = RegistryCredentials {
            username: "me".into(),
            password: "SECRET-PW".into(),
        };
        let mut c = WorkerConfig {
            credentials: Some(creds.clone()),
            ..WorkerConfig::default()
        };
        c.registries.insert("r.io".into(), reg);
        let shown = format!("{c:?} {creds:?} {:#?}", c.credentials);
        assert!(shown.contains("my-client") && shown.contains("me"));
        assert!(!shown.contains("SECRET"), "{shown}");
    }

    fn argv(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn opts_env_goes_after_the_subcommand() {
        let out = expand_opts_env(
            argv("docker-worker start --worker-id w1"),
            Some(
                r#"--capacity 4 --root-url "https://tc.example.com" --config '/etc/dw config.yml'"#,
            ),
        )
        .unwrap();
        assert_eq!(
            out,
            [
                "docker-worker",
                "start",
                "--capacity",
                "4",
                "--root-url",
                "https://tc.example.com",
                "--config",
                "/etc/dw config.yml",
                "--worker-id",
                "w1"
            ]
        );
    }

    #[test]
    fn explicit_flags_win_over_opts_env() {
        let out = expand_opts_env(
            argv("docker-worker start --capacity=2 --host aws"),
            Some("--capacity 4 --host=standalone --worker-type t"),
        )
        .unwrap();
        assert_eq!(
            out,
            [
                "docker-worker",
                "start",
                "--worker-type",
                "t",
                "--capacity=2",
                "--host",
                "aws"
            ]
        );
        // And clap accepts the result.
        #[derive(clap::Parser)]
        struct Cli {
            #[command(subcommand)]
            cmd: Cmd,
        }
        #[derive(clap::Subcommand)]
        enum Cmd {
            Start(StartArgs),
        }
        let cli = <Cli as clap::Parser>::try_parse_from(out).unwrap();
        let Cmd::Start(args) = cli.cmd;
        assert_eq!(args.capacity, Some(2));
        assert_eq!(args.host, Some(HostKind::Aws));
        assert_eq!(args.worker_type.as_deref(), Some("t"));
    }

    #[test]
    fn opts_env_edge_cases() {
        let start = argv("docker-worker start");
        assert_eq!(expand_opts_env(start.clone(), None).unwrap(), start);
        assert_eq!(expand_opts_env(start.clone(), Some("  ")).unwrap(), start);
        let run = argv("docker-worker run payload.json");
        assert_eq!(
            expand_opts_env(run.clone(), Some("--capacity 2")).unwrap(),
            run
        );
        let help = argv("docker-worker --help");
        assert_eq!(
            expand_opts_env(help.clone(), Some("--capacity 2")).unwrap(),
            help
        );
        let e = expand_opts_env(start, Some("--config 'unterminated")).unwrap_err();
        assert!(matches!(e, ConfigError::OptsEnv(_)), "{e}");
    }

    async fn imds(public_ip: bool) -> MockServer {
        let server = MockServer::start().await;
        Mock::given(method("PUT"))
            .and(path("/latest/api/token"))
            .and(header("X-aws-ec2-metadata-token-ttl-seconds", "21600"))
            .respond_with(ResponseTemplate::new(200).set_body_string("TOKEN"))
            .expect(1)
            .mount(&server)
            .await;
        let mut values = vec![
            ("ami-id", "ami-123"),
            ("instance-id", "i-abc"),
            ("placement/availability-zone", "us-west-2b"),
            ("instance-type", "c5.xlarge"),
            ("local-ipv4", "10.1.2.3"),
        ];
        if public_ip {
            values.push(("public-ipv4", "54.1.2.3"));
        }
        for (p, v) in values {
            Mock::given(method("GET"))
                .and(path(format!("/latest/meta-data/{p}")))
                .and(header("X-aws-ec2-metadata-token", "TOKEN"))
                .respond_with(ResponseTemplate::new(200).set_body_string(v))
                .mount(&server)
                .await;
        }
        server
    }

    #[tokio::test]
    async fn aws_metadata_fills_what_was_not_given() {
        let server = imds(true).await;
        let env = env_of(&[
            ("TASKCLUSTER_CLIENT_ID", "c"),
            ("TASKCLUSTER_ACCESS_TOKEN", "t"),
            ("TASKCLUSTER_ROOT_URL", "https://tc.example.com"),
            ("DOCKER_WORKER_AWS_METADATA_URL", &server.uri()),
        ]);
        let args = StartArgs {
            host: Some(HostKind::Aws),
            ..StartArgs::default()
        };
        let c = load(&args, &env).await.unwrap();
        assert_eq!(c.host_kind, HostKind::Aws);
        assert_eq!(c.provisioner_id, "aws-provisioner");
        assert_eq!(c.worker_type, "ami-123");
        assert_eq!(c.worker_group, "us-west-2b");
        assert_eq!(c.worker_id, "i-abc");
        assert_eq!(c.instance_id, "i-abc");
        assert_eq!(c.instance_type, "c5.xlarge");
        assert_eq!(c.worker_node_type, "c5.xlarge");
        assert_eq!(c.region, "us-west-2");
        assert_eq!(c.public_ip, "54.1.2.3");
        assert_eq!(c.private_ip, "10.1.2.3");
        let location: serde_json::Value = serde_json::from_str(&c.worker_location).unwrap();
        assert_eq!(
            location,
            serde_json::json!({"cloud": "aws", "region": "us-west-2", "availabilityZone": "us-west-2b"})
        );

        // Given values win over the metadata; the URL can come from the file too.
        let server = imds(false).await;
        let f = config_file(
            ".yml",
            &format!("awsMetadataUrl: {}\nworkerType: my-pool\n", server.uri()),
        );
        let args = StartArgs {
            config: Some(f.path().to_path_buf()),
            host: Some(HostKind::Aws),
            provisioner_id: Some("proj-x".into()),
            ..StartArgs::default()
        };
        let c = load(&args, &env_of(FULL_ENV)).await.unwrap();
        assert_eq!(c.provisioner_id, "proj-x");
        assert_eq!(c.worker_type, "my-pool");
        assert_eq!(c.worker_id, "i-abc");
        assert_eq!(c.public_ip, "", "no public-ipv4 on this instance");
    }

    #[tokio::test]
    async fn aws_metadata_failure_names_the_url() {
        let server = MockServer::start().await; // answers 404 to everything
        let e = fetch_aws_metadata(&server.uri()).await.unwrap_err();
        assert!(e.to_string().contains("/latest/api/token"), "{e}");
        let server = MockServer::start().await;
        Mock::given(method("PUT"))
            .respond_with(ResponseTemplate::new(200).set_body_string("TOKEN"))
            .mount(&server)
            .await;
        let e = fetch_aws_metadata(&server.uri()).await.unwrap_err();
        assert!(
            e.to_string()
                .contains("/latest/meta-data/ami-id: not found"),
            "{e}"
        );
    }
}
