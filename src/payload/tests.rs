use super::*;
use chrono::TimeZone;
use serde_json::json;

fn ctx() -> ValidationContext {
    ValidationContext {
        task_expires: Some(Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap()),
        default_max_run_time: 3600,
        disabled_features: Vec::new(),
    }
}

fn ok(v: serde_json::Value) -> Payload {
    Payload::parse(&v, &ctx()).unwrap_or_else(|e| panic!("expected valid payload, got:\n{e}"))
}

/// Every error as `path: message`.
fn errs_with(v: serde_json::Value, ctx: &ValidationContext) -> Vec<String> {
    match Payload::parse(&v, ctx) {
        Ok(p) => panic!("expected errors, got {p:?}"),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

fn errs(v: serde_json::Value) -> Vec<String> {
    errs_with(v, &ctx())
}

/// A minimal valid payload with `field` set to `value`.
fn with(field: &str, value: serde_json::Value) -> serde_json::Value {
    let mut v = json!({"image": "ubuntu:24.04", "maxRunTime": 30});
    v[field] = value;
    v
}

#[test]
fn minimal_payload_gets_defaults() {
    let p = ok(json!({"image": "ubuntu:24.04", "maxRunTime": 30}));
    assert_eq!(p.image, Image::Name("ubuntu:24.04".into()));
    assert_eq!(p.max_run_time, 30);
    assert!(p.command.is_empty());
    assert!(p.env.is_empty() && p.artifacts.is_empty() && p.cache.is_empty());
    assert_eq!(p.capabilities, Capabilities::default());
    assert_eq!(p.on_exit_status, OnExitStatus::default());
    assert_eq!(p.features, Features::default());
    assert_eq!(p.log, "public/logs/live.log");
    assert_eq!(p.superseder_url, None);
}

#[test]
fn full_payload() {
    let p = ok(json!({
        "image": {"type": "docker-image", "name": "alpine:3"},
        "command": ["/bin/sh", "-c", "true"],
        "env": {"FOO": "bar", "EMPTY": ""},
        "maxRunTime": 86400,
        "artifacts": {
            "public/build": {"type": "directory", "path": "/build", "expires": "2029-05-28T16:12:56.693817Z"},
            "public/x.txt": {"type": "file", "path": "/x.txt"}
        },
        "cache": {"level-3-checkouts": "/builds/worker/checkouts"},
        "capabilities": {"privileged": true, "disableSeccomp": false,
            "devices": {"loopbackVideo": true, "loopbackAudio": false, "hostSharedMemory": true, "kvm": true}},
        "onExitStatus": {"retry": [36, 137], "purgeCaches": [72]},
        "features": {"taskclusterProxy": true, "localLiveLog": false, "chainOfTrust": true},
        "log": "public/logs/custom.log",
        "supersederUrl": "https://example.com"
    }));
    assert_eq!(
        p.image,
        Image::DockerImage {
            name: "alpine:3".into()
        }
    );
    assert_eq!(p.command, ["/bin/sh", "-c", "true"]);
    assert_eq!(p.env["FOO"], "bar");
    assert_eq!(p.env["EMPTY"], "");
    assert_eq!(p.max_run_time, 86400);
    let build = &p.artifacts["public/build"];
    assert_eq!(build.kind, ArtifactKind::Directory);
    assert_eq!(build.path, "/build");
    assert_eq!(
        build.expires.unwrap().to_rfc3339(),
        "2029-05-28T16:12:56.693817+00:00"
    );
    assert_eq!(
        p.artifacts["public/x.txt"],
        ArtifactSpec {
            kind: ArtifactKind::File,
            path: "/x.txt".into(),
            expires: None
        }
    );
    assert_eq!(p.cache["level-3-checkouts"], "/builds/worker/checkouts");
    assert!(p.capabilities.privileged && !p.capabilities.disable_seccomp);
    assert_eq!(
        p.capabilities.devices,
        Devices {
            loopback_video: true,
            loopback_audio: false,
            host_shared_memory: true,
            kvm: true
        }
    );
    assert_eq!(p.on_exit_status.retry, [36, 137]);
    assert_eq!(p.on_exit_status.purge_caches, [72]);
    assert!(
        p.features.taskcluster_proxy && !p.features.local_live_log && p.features.chain_of_trust
    );
    assert!(p.features.bulk_log && p.features.artifacts && !p.features.dind);
    assert_eq!(p.log, "public/logs/custom.log");
    assert_eq!(p.backing_log_name(), "public/logs/custom_backing.log");
    assert_eq!(p.superseder_url.as_deref(), Some("https://example.com"));
}

#[test]
fn image_forms() {
    let p = ok(with(
        "image",
        json!({"type": "indexed-image", "namespace": "ns.a", "path": "public/i.tar"}),
    ));
    assert_eq!(
        p.image,
        Image::IndexedImage {
            namespace: "ns.a".into(),
            path: "public/i.tar".into()
        }
    );
    let p = ok(with(
        "image",
        json!({"type": "task-image", "taskId": "abc", "path": "public/i.tar.zst"}),
    ));
    assert_eq!(
        p.image,
        Image::TaskImage {
            task_id: "abc".into(),
            path: "public/i.tar.zst".into()
        }
    );
}

#[test]
fn image_errors() {
    assert_eq!(errs(json!({"maxRunTime": 30})), ["payload.image: required"]);
    assert_eq!(
        errs(with("image", json!(5))),
        ["payload.image: expected an image name or an object with a type, got 5"]
    );
    assert_eq!(
        errs(with("image", json!(""))),
        ["payload.image: must not be empty"]
    );
    assert_eq!(
        errs(with("image", json!({"name": "x"}))),
        [r#"payload.image.type: required ("docker-image", "indexed-image" or "task-image")"#]
    );
    assert_eq!(
        errs(with("image", json!({"type": "other", "name": "x"}))),
        [
            r#"payload.image.type: expected "docker-image", "indexed-image" or "task-image", got "other""#
        ]
    );
    assert_eq!(
        errs(with(
            "image",
            json!({"type": "docker-image", "namespace": "x"})
        )),
        [
            "payload.image.namespace: unknown property",
            "payload.image.name: required"
        ]
    );
    assert_eq!(
        errs(with(
            "image",
            json!({"type": "indexed-image", "path": 3, "taskId": "t"})
        )),
        [
            "payload.image.taskId: unknown property",
            "payload.image.namespace: required",
            "payload.image.path: expected a string, got 3"
        ]
    );
    assert_eq!(
        errs(with("image", json!({"type": "task-image", "taskId": "t"}))),
        ["payload.image.path: required"]
    );
}

#[test]
fn image_helpers() {
    let name = Image::Name("ubuntu:24.04".into());
    assert_eq!(name.docker_name(), Some("ubuntu:24.04"));
    assert_eq!(name.to_string(), "ubuntu:24.04");
    let docker = Image::DockerImage {
        name: "alpine".into(),
    };
    assert_eq!(docker.docker_name(), Some("alpine"));
    let indexed = Image::IndexedImage {
        namespace: "a.b".into(),
        path: "public/i.tar".into(),
    };
    assert_eq!(indexed.docker_name(), None);
    assert_eq!(
        indexed.to_string(),
        "artifact public/i.tar from indexed task a.b"
    );
    let task = Image::TaskImage {
        task_id: "T1".into(),
        path: "public/i.tar".into(),
    };
    assert_eq!(task.docker_name(), None);
    assert_eq!(task.to_string(), "artifact public/i.tar from task T1");
}

#[test]
fn max_run_time() {
    assert_eq!(ok(with("maxRunTime", json!(1))).max_run_time, 1);
    assert_eq!(ok(with("maxRunTime", json!(30.0))).max_run_time, 30);
    for bad in [
        json!(0),
        json!(86401),
        json!(-5),
        json!(30.5),
        json!("hello"),
        json!(null),
    ] {
        let shown = bad.to_string();
        assert_eq!(
            errs(with("maxRunTime", bad)),
            [format!(
                "payload.maxRunTime: expected an integer from 1 to 86400, got {shown}"
            )]
        );
    }
    assert_eq!(
        errs(with("maxRunTime", json!("hello"))),
        [r#"payload.maxRunTime: expected an integer from 1 to 86400, got "hello""#]
    );
}

#[test]
fn command_and_env() {
    assert_eq!(
        errs(with("command", json!("ls -l"))),
        [r#"payload.command: expected an array of strings, got "ls -l""#]
    );
    assert_eq!(
        errs(with("command", json!(["ls", 1, null]))),
        [
            "payload.command[1]: expected a string, got 1",
            "payload.command[2]: expected a string, got null"
        ]
    );
    assert_eq!(
        errs(with("env", json!({"FOO": 5, "OK": "x", "a-b": true}))),
        [
            "payload.env.FOO: expected a string, got 5",
            r#"payload.env["a-b"]: expected a string, got true"#
        ]
    );
    assert_eq!(
        errs(with("env", json!(["A=b"]))),
        ["payload.env: expected an object, got an array"]
    );
}

#[test]
fn cache_log_superseder() {
    assert_eq!(
        errs(with("cache", json!({"my cache": 1}))),
        [r#"payload.cache["my cache"]: expected a string, got 1"#]
    );
    assert_eq!(
        errs(with("log", json!(""))),
        ["payload.log: must not be empty"]
    );
    assert_eq!(
        errs(with("log", json!(1))),
        ["payload.log: expected a string, got 1"]
    );
    assert_eq!(
        errs(with("supersederUrl", json!({}))),
        ["payload.supersederUrl: expected a string, got an object"]
    );
}

#[test]
fn artifact_errors() {
    assert_eq!(
        errs(with(
            "artifacts",
            json!({
                "public/a": {"type": "link", "path": "/a", "extra": 1},
                "public/b": {"path": 5, "expires": "tomorrow"},
                "public/c": 7,
                "": "/x"
            })
        )),
        [
            r#"payload.artifacts[""]: artifact name must not be empty"#,
            r#"payload.artifacts["public/a"].extra: unknown property"#,
            r#"payload.artifacts["public/a"].type: expected "file" or "directory", got "link""#,
            r#"payload.artifacts["public/b"].type: required"#,
            r#"payload.artifacts["public/b"].path: expected a string, got 5"#,
            r#"payload.artifacts["public/b"].expires: expected an RFC 3339 date-time, got "tomorrow""#,
            r#"payload.artifacts["public/c"]: expected an object with type and path, got 7"#,
        ]
    );
    assert_eq!(
        errs(with("artifacts", json!({"logs": {"type": "file"}}))),
        ["payload.artifacts.logs.path: required"]
    );
}

#[test]
fn artifact_expiry_after_task_expiry() {
    let v = with(
        "artifacts",
        json!({"public/x": {"type": "file", "path": "/x", "expires": "2031-01-01T00:00:00Z"}}),
    );
    assert_eq!(
        errs(v.clone()),
        [r#"payload.artifacts["public/x"].expires: must not be greater than task expiration"#]
    );
    // Equal is fine, and without a task expiry there is nothing to compare against.
    ok(with(
        "artifacts",
        json!({"public/x": {"type": "file", "path": "/x", "expires": "2030-01-01T00:00:00Z"}}),
    ));
    let mut no_expiry = ctx();
    no_expiry.task_expires = None;
    assert!(Payload::parse(&v, &no_expiry).is_ok());
}

#[test]
fn relative_artifact_paths_become_absolute() {
    let p = ok(with(
        "artifacts",
        json!({"a": {"type": "file", "path": "build/a"}}),
    ));
    assert_eq!(p.artifacts["a"].path, "/build/a");
}

#[test]
fn capabilities_errors() {
    assert_eq!(
        errs(with(
            "capabilities",
            json!({"privileged": "yes", "root": true, "devices": {"kvm": 1, "gpu": true}})
        )),
        [
            "payload.capabilities.devices.gpu: unknown property",
            "payload.capabilities.devices.kvm: expected a boolean, got 1",
            r#"payload.capabilities.privileged: expected a boolean, got "yes""#,
            "payload.capabilities.root: unknown property",
        ]
    );
}

#[test]
fn on_exit_status() {
    let p = ok(with("onExitStatus", json!({"retry": [1.0, -1]})));
    assert_eq!(p.on_exit_status.retry, [1, -1]);
    assert_eq!(
        errs(with(
            "onExitStatus",
            json!({"retry": [1, "2", 2.5], "purgeCaches": 3, "x": []})
        )),
        [
            "payload.onExitStatus.purgeCaches: expected an array of integers, got 3",
            r#"payload.onExitStatus.retry[1]: expected an integer, got "2""#,
            "payload.onExitStatus.retry[2]: expected an integer, got 2.5",
            "payload.onExitStatus.x: unknown property",
        ]
    );
}

#[test]
fn feature_errors() {
    assert_eq!(
        errs(with(
            "features",
            json!({"dind": "true", "superPowers": true})
        )),
        [
            r#"payload.features.dind: expected a boolean, got "true""#,
            "payload.features.superPowers: unknown feature",
        ]
    );
}

#[test]
fn feature_aliases() {
    let p = ok(with(
        "features",
        json!({"bufferLog": false, "azureLivelog": false}),
    ));
    assert!(!p.features.bulk_log && !p.features.local_live_log);
    // Alias and canonical name agreeing is fine; disagreeing is an error.
    ok(with(
        "features",
        json!({"bufferLog": false, "bulkLog": false}),
    ));
    assert_eq!(
        errs(with(
            "features",
            json!({"bufferLog": false, "bulkLog": true})
        )),
        ["payload.features.bulkLog: conflicts with payload.features.bufferLog (same feature)"]
    );
}

#[test]
fn disabled_features() {
    let mut c = ctx();
    c.disabled_features = vec!["dind".into(), "bulkLog".into(), "localLiveLog".into()];
    assert_eq!(
        errs_with(
            with("features", json!({"dind": true, "azureLivelog": true})),
            &c
        ),
        [
            r#"payload.features.azureLivelog: feature "localLiveLog" is disabled on this worker"#,
            r#"payload.features.dind: feature "dind" is disabled on this worker"#,
        ]
    );
    // Disabled features that default to on are simply off; asking for them off is fine.
    let p = Payload::parse(&with("features", json!({"dind": false})), &c).unwrap();
    assert!(!p.features.bulk_log && !p.features.local_live_log && !p.features.dind);
    assert!(p.features.artifacts);
}

#[test]
fn unknown_and_non_object() {
    assert_eq!(
        errs(with("fooBar", json!(1))),
        ["payload.fooBar: unknown property"]
    );
    assert_eq!(
        errs(json!([1, 2])),
        ["payload: expected an object, got an array"]
    );
    assert_eq!(
        errs(json!("x")),
        [r#"payload: expected an object, got "x""#]
    );
    assert_eq!(errs(json!(null)), ["payload: expected an object, got null"]);
}

#[test]
fn many_errors_reported_at_once() {
    let e = errs(json!({
        "maxRunTime": "hello",
        "env": {"FOO": 5},
        "foo": 1,
        "artifacts": {"public/x": {"type": "file", "path": "/x", "expires": "2099-01-01T00:00:00Z"}},
        "features": {"nope": true}
    }));
    assert_eq!(
        e,
        [
            r#"payload.artifacts["public/x"].expires: must not be greater than task expiration"#,
            "payload.env.FOO: expected a string, got 5",
            "payload.features.nope: unknown feature",
            "payload.foo: unknown property",
            r#"payload.maxRunTime: expected an integer from 1 to 86400, got "hello""#,
            "payload.image: required",
        ]
    );
    let joined = Payload::parse(&json!({"foo": 1}), &ctx())
        .unwrap_err()
        .to_string();
    assert_eq!(
        joined,
        "payload.foo: unknown property\npayload.image: required"
    );
}

#[test]
fn legacy_2014_form() {
    let p = ok(json!({
        "image": "taskenv_pass",
        "command": ["/bin/sh", "-c", "echo \"Hello World\""],
        "features": {"bufferLog": false, "azureLivelog": true},
        "artifacts": {"passwd.txt": "/etc/passwd"}
    }));
    assert_eq!(p.image, Image::Name("taskenv_pass".into()));
    assert_eq!(p.max_run_time, 3600);
    assert_eq!(
        p.artifacts["passwd.txt"],
        ArtifactSpec {
            kind: ArtifactKind::File,
            path: "/etc/passwd".into(),
            expires: None
        }
    );
    assert!(!p.features.bulk_log);
    assert!(p.features.local_live_log);
}

#[test]
fn long_strings_are_shortened_in_messages() {
    let long = "x".repeat(100);
    let e = errs(with("maxRunTime", json!(long)));
    assert_eq!(
        e,
        [format!(
            "payload.maxRunTime: expected an integer from 1 to 86400, got \"{}...\"",
            "x".repeat(57)
        )]
    );
}

#[test]
fn backing_log_names() {
    assert_eq!(
        backing_log_name("public/logs/live.log"),
        "public/logs/live_backing.log"
    );
    assert_eq!(
        backing_log_name("apple/banana.log.txt"),
        "apple/banana.log_backing.txt"
    );
    assert_eq!(
        backing_log_name("public/logs/live"),
        "public/logs/live_backing"
    );
    assert_eq!(backing_log_name("live.log"), "live_backing.log");
    assert_eq!(backing_log_name("dir.d/live"), "dir.d/live_backing");
    assert_eq!(backing_log_name("logs/.hidden"), "logs/.hidden_backing");
}

#[test]
fn artifacts_may_not_take_the_log_names() {
    let e = errs(with(
        "artifacts",
        json!({
            "public/logs/live.log": {"type": "file", "path": "/a"},
            "public/logs/live_backing.log": {"type": "file", "path": "/b"},
            "public/other.log": {"type": "file", "path": "/c"}
        }),
    ));
    assert_eq!(
        e,
        [
            "payload.artifacts[\"public/logs/live.log\"]: the name \"public/logs/live.log\" is reserved for the task log",
            "payload.artifacts[\"public/logs/live_backing.log\"]: the name \"public/logs/live_backing.log\" is reserved for the task log",
        ]
    );
    let mut custom = with(
        "artifacts",
        json!({"public/logs/live.log": {"type": "file", "path": "/a"}}),
    );
    custom["log"] = json!("public/mine.log");
    ok(custom);
}
