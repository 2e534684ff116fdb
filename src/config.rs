//! WorkerConfig: the worker's settings from file (YAML/JSON, the original camelCase keys), environment
//! and command line, validated once.

use std::collections::BTreeMap;

/// All worker settings. Field names mirror the original docker-worker config keys.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Tasks run at once.
    pub capacity: usize,
    /// Taskcluster root URL.
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
    /// `features.<name>.enabled`, by schema feature name.
    pub features: BTreeMap<String, bool>,
}

/// `task.*`.
#[derive(Debug, Clone)]
pub struct TaskSettings {
    /// Seconds, for payloads without maxRunTime.
    pub default_max_run_time: u64,
    /// Reclaim at (takenUntil - now) / divisor.
    pub reclaim_divisor: u32,
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
}

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
            },
            docker_config: DockerSettings {
                max_attempts: 5,
                delay_factor: 15000,
                randomization_factor: 0.25,
                allow_privileged: false,
            },
            features: BTreeMap::new(),
        }
    }
}
