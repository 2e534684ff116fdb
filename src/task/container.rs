//! What a task container looks like (DESIGN.md §2, Container): the one place that decides it.

use std::collections::HashMap;

use bollard::models::{ContainerCreateBody, DeviceMapping, HostConfig, HostConfigLogConfig};

use crate::config::WorkerConfig;
use crate::docker::{LABEL_RUN, LABEL_TASK, LABEL_WORKER};
use crate::payload::Payload;

/// `/dev/shm` size for task containers (1.8 GB, as the original).
pub const SHM_SIZE: i64 = 1_800_000_000;

/// The identity of one run, as the container sees it.
#[derive(Debug, Clone)]
pub struct RunIdentity<'a> {
    /// Task id.
    pub task_id: &'a str,
    /// Run id.
    pub run_id: u32,
    /// Worker settings (identity, root URL).
    pub config: &'a WorkerConfig,
}

/// Reserved environment variables; they always win over `payload.env`.
pub fn reserved_env(id: &RunIdentity<'_>) -> Vec<(&'static str, String)> {
    let c = id.config;
    vec![
        ("TASK_ID", id.task_id.to_string()),
        ("RUN_ID", id.run_id.to_string()),
        ("TASKCLUSTER_WORKER_TYPE", c.worker_type.clone()),
        (
            "TASKCLUSTER_WORKER_POOL",
            format!("{}/{}", c.provisioner_id, c.worker_type),
        ),
        ("TASKCLUSTER_INSTANCE_TYPE", c.instance_type.clone()),
        ("TASKCLUSTER_WORKER_GROUP", c.worker_group.clone()),
        ("TASKCLUSTER_PUBLIC_IP", c.public_ip.clone()),
        ("TASKCLUSTER_ROOT_URL", c.root_url.clone()),
        ("TASKCLUSTER_WORKER_LOCATION", c.worker_location.clone()),
    ]
}

/// The labels that name worker, task and run (the start-up sweep finds containers by them).
pub fn labels(id: &RunIdentity<'_>) -> HashMap<String, String> {
    HashMap::from([
        (LABEL_WORKER.to_string(), id.config.worker_id.clone()),
        (LABEL_TASK.to_string(), id.task_id.to_string()),
        (LABEL_RUN.to_string(), id.run_id.to_string()),
    ])
}

/// The container create body for a task.
pub fn create_body(payload: &Payload, image: &str, id: &RunIdentity<'_>) -> ContainerCreateBody {
    let reserved = reserved_env(id);
    let mut env: Vec<String> = payload
        .env
        .iter()
        .filter(|(k, _)| !reserved.iter().any(|(r, _)| r == k))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    env.extend(reserved.iter().map(|(k, v)| format!("{k}={v}")));

    let mut cap_add = Vec::new();
    if payload.features.allow_ptrace {
        cap_add.push("SYS_PTRACE".to_string());
    }
    let mut devices = Vec::new();
    let mut binds = Vec::new();
    if payload.capabilities.devices.kvm {
        devices.push(DeviceMapping {
            path_on_host: Some("/dev/kvm".into()),
            path_in_container: Some("/dev/kvm".into()),
            cgroup_permissions: Some("rwm".into()),
        });
    }
    if payload.capabilities.devices.host_shared_memory {
        binds.push("/dev/shm:/dev/shm".to_string());
    }

    ContainerCreateBody {
        image: Some(image.to_string()),
        cmd: (!payload.command.is_empty()).then(|| payload.command.clone()),
        env: Some(env),
        tty: Some(true),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        open_stdin: Some(false),
        labels: Some(labels(id)),
        host_config: Some(HostConfig {
            shm_size: Some(SHM_SIZE),
            extra_hosts: Some(vec!["localhost.localdomain:127.0.0.1".to_string()]),
            network_mode: Some("bridge".to_string()),
            privileged: Some(payload.capabilities.privileged),
            cap_add: (!cap_add.is_empty()).then_some(cap_add),
            devices: (!devices.is_empty()).then_some(devices),
            binds: (!binds.is_empty()).then_some(binds),
            // Output is taken from the attach stream; the daemon keeps no copy on disk.
            log_config: Some(HostConfigLogConfig {
                typ: Some("none".to_string()),
                config: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}
