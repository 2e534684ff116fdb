//! Which scopes a payload needs, and whether a task's scopes grant them.

use crate::payload::Payload;

/// Whether `have` grants `need` (a trailing `*` in a held scope matches any suffix).
pub fn satisfies(have: &[String], need: &str) -> bool {
    have.iter().any(|scope| match scope.strip_suffix('*') {
        Some(prefix) => need.starts_with(prefix),
        None => scope == need,
    })
}

/// The scopes a payload needs (DESIGN.md §2, Scopes).
pub fn required(payload: &Payload) -> Vec<String> {
    let mut need = Vec::new();
    if payload.capabilities.privileged {
        need.push("docker-worker:capability:privileged".to_string());
    }
    let devices = &payload.capabilities.devices;
    for (wanted, name) in [
        (devices.loopback_video, "loopbackVideo"),
        (devices.loopback_audio, "loopbackAudio"),
        (devices.host_shared_memory, "hostSharedMemory"),
        (devices.kvm, "kvm"),
    ] {
        if wanted {
            need.push(format!("docker-worker:capability:device:{name}"));
        }
    }
    if payload.features.allow_ptrace {
        need.push("docker-worker:feature:allowPtrace".to_string());
    }
    for name in payload.cache.keys() {
        need.push(format!("docker-worker:cache:{name}"));
    }
    need
}

/// The required scopes that `have` does not grant.
pub fn missing(have: &[String], payload: &Payload) -> Vec<String> {
    required(payload)
        .into_iter()
        .filter(|need| !satisfies(have, need))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::satisfies;

    #[test]
    fn star_matches_any_suffix() {
        let have = vec![
            "docker-worker:cache:gecko-*".to_string(),
            "docker-worker:capability:privileged".to_string(),
        ];
        assert!(satisfies(&have, "docker-worker:cache:gecko-level-1"));
        assert!(satisfies(&have, "docker-worker:capability:privileged"));
        assert!(!satisfies(&have, "docker-worker:cache:other"));
        assert!(!satisfies(&have, "docker-worker:capability:privileged2"));
        assert!(satisfies(&["*".to_string()], "anything"));
    }
}
