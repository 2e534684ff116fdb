//! The task engine against the real Docker daemon: exit codes, environment, log format,
//! maxRunTime, start failures, image pulls, artifacts.

mod common;

use common::{run, run_with, Sandbox};
use docker_worker::resolution::{ExceptionReason, Outcome, Resolution};
use serde_json::json;

fn lines(log: &str) -> Vec<&str> {
    log.split("\r\n").collect()
}

#[tokio::test]
async fn exit_zero_completes_and_nonzero_fails() {
    let sb = Sandbox::new();
    let ok = run(&sb, json!({"image": "taskenv_pass", "command": ["/bin/sh", "-c", "echo hi; exit 0"], "maxRunTime": 60})).await;
    assert_eq!(ok.report.resolution, Resolution::Completed);
    assert_eq!(ok.report.exit_code, Some(0));
    assert!(ok.log.contains("\r\nhi\r\n"), "{}", ok.log);
    assert!(ok
        .log
        .contains("Successful task run with exit code: 0 completed in "));

    let bad = run(&sb, json!({"image": "taskenv_fail", "maxRunTime": 60})).await;
    assert_eq!(bad.report.resolution, Resolution::Failed);
    assert_eq!(bad.report.exit_code, Some(1));
    assert!(bad.log.contains("\r\nfail\r\n"), "{}", bad.log);
    assert!(bad
        .log
        .contains("Unsuccessful task run with exit code: 1 completed in "));
}

#[tokio::test]
async fn retry_exit_codes_resolve_as_intermittent() {
    let sb = Sandbox::new();
    let r = run(
        &sb,
        json!({"image": "taskenv_pass", "command": ["/bin/sh", "-c", "exit 42"],
        "maxRunTime": 60, "onExitStatus": {"retry": [42]}}),
    )
    .await;
    assert_eq!(r.report.exit_code, Some(42));
    assert_eq!(
        r.report.resolution,
        Resolution::Exception(ExceptionReason::IntermittentTask)
    );
}

#[tokio::test]
async fn payload_env_is_set_and_reserved_variables_win() {
    let sb = Sandbox::new();
    let r = run(&sb, json!({
        "image": "taskenv_pass",
        "command": ["/bin/sh", "-c", "echo \"FOO=$FOO\"; echo \"TASK_ID=$TASK_ID\"; echo \"RUN_ID=$RUN_ID\"; echo \"POOL=$TASKCLUSTER_WORKER_POOL\"; echo \"GROUP=$TASKCLUSTER_WORKER_GROUP\"; echo \"ROOT=$TASKCLUSTER_ROOT_URL\""],
        "env": {"FOO": "bar baz", "TASK_ID": "overridden", "TASKCLUSTER_ROOT_URL": "http://evil"},
        "maxRunTime": 60
    }))
    .await;
    assert_eq!(r.report.resolution, Resolution::Completed, "{}", r.log);
    let l = lines(&r.log);
    for want in [
        "FOO=bar baz",
        "TASK_ID=dSlITZ4yQgmvxxAi4A8fHQ",
        "RUN_ID=0",
        "POOL=test-prov/test-type",
        "GROUP=test-group",
        "ROOT=http://taskcluster.test",
    ] {
        assert!(l.contains(&want), "missing {want:?} in {:?}", r.log);
    }
}

#[tokio::test]
async fn log_has_header_markers_footer_in_order_with_crlf() {
    let sb = Sandbox::new();
    let r = run(&sb, json!({"image": "taskenv_pass", "command": ["/bin/sh", "-c", "echo one; echo two"], "maxRunTime": 60})).await;
    let order = [
        "] Task ID: dSlITZ4yQgmvxxAi4A8fHQ",
        &format!("] Worker ID: {}", sb.worker_id),
        "] Worker Group: test-group",
        "] Worker Node Type: ",
        "] Worker Pool: test-prov/test-type",
        "] Worker Version: ",
        "] Public IP: ",
        "] Hostname: ",
        "] === Task Starting ===",
        "one\r\ntwo\r\n",
        "] === Task Finished ===",
        "] Successful task run with exit code: 0 completed in ",
    ];
    let mut at = 0;
    for want in order {
        let found = r.log[at..]
            .find(want)
            .unwrap_or_else(|| panic!("{want:?} not found in order in:\n{}", r.log));
        at += found + want.len();
    }
    // Container output arrives through a TTY: lines end in CRLF.
    assert!(r.log.contains("one\r\ntwo\r\n"));
    assert!(!r.log.contains("one\ntwo"));
    // Worker lines use the documented prefix.
    let first = r.log.lines().next().unwrap();
    assert!(
        first.starts_with("[taskcluster 20") && first.contains("Z] Task ID:"),
        "{first}"
    );
}

#[tokio::test]
async fn max_run_time_kills_the_container_and_uploads_no_artifacts() {
    let sb = Sandbox::new();
    let started = std::time::Instant::now();
    let r = run(
        &sb,
        json!({
            "image": "taskenv_pass",
            "command": ["/bin/sh", "-c", "echo started; touch /tmp/a; sleep 600"],
            "maxRunTime": 3,
            "artifacts": {"public/a": {"type": "file", "path": "/tmp/a"}}
        }),
    )
    .await;
    assert!(started.elapsed().as_secs() < 60, "the kill took too long");
    assert_eq!(r.report.outcome, Outcome::TimedOut);
    assert_eq!(r.report.resolution, Resolution::Failed);
    assert!(
        r.log.contains(
            "\r\n[taskcluster:error] Task timeout after 3 seconds. Force killing container.\r\n"
        ),
        "{}",
        r.log
    );
    assert!(r.log.contains("started"));
    assert!(r.log.contains("Unsuccessful task run with exit code: -1"));
    assert!(r.report.artifacts.files.is_empty());
    assert!(!r.artifacts.join("public/a").exists());
    // run_with asserted the container is gone.
}

#[tokio::test]
async fn a_command_that_cannot_start_fails_with_the_start_failure_line() {
    let sb = Sandbox::new();
    let r = run(
        &sb,
        json!({"image": "taskenv_pass", "command": ["/no/such/binary"], "maxRunTime": 60}),
    )
    .await;
    assert!(
        matches!(r.report.outcome, Outcome::StartFailed(_)),
        "{:?}",
        r.report.outcome
    );
    assert_eq!(r.report.resolution, Resolution::Failed);
    assert!(
        r.log.contains(
            "\r\n[taskcluster:error] Failure to properly start execution environment.\r\n"
        ),
        "{}",
        r.log
    );
}

#[tokio::test]
async fn an_image_that_cannot_be_pulled_fails_with_the_registry_message() {
    let sb = Sandbox::new();
    let mut config = sb.config();
    config.docker_config.max_attempts = 2;
    config.docker_config.delay_factor = 10;
    let r = run_with(
        &sb,
        config,
        json!({"image": "localhost:1/no-such/image:1", "maxRunTime": 60}),
        None,
        None,
    )
    .await;
    let Outcome::ImageFailed(message) = &r.report.outcome else {
        panic!("{:?}", r.report.outcome)
    };
    assert_eq!(r.report.resolution, Resolution::Failed);
    assert!(message.contains("after 2 attempt(s)"), "{message}");
    assert!(
        message.contains("localhost:1"),
        "registry message: {message}"
    );
    assert!(r
        .log
        .contains("Downloading image \"localhost:1/no-such/image:1\" (attempt 2 of 2)"));
    assert!(r.log.contains("[taskcluster:error] Pulling docker image"));
}

#[tokio::test]
async fn malformed_payloads_are_exceptions_with_every_error_in_the_log() {
    let sb = Sandbox::new();
    let r = run(
        &sb,
        json!({"image": 5, "maxRunTime": "hello", "bogus": true}),
    )
    .await;
    assert_eq!(
        r.report.resolution,
        Resolution::Exception(ExceptionReason::MalformedPayload)
    );
    assert!(r.log.contains("[taskcluster:error] payload.maxRunTime: expected an integer from 1 to 86400, got \"hello\""), "{}", r.log);
    assert!(r.log.contains("payload.image"), "{}", r.log);
    assert!(r.log.contains("payload.bogus"), "{}", r.log);
    assert!(r.log.contains("Unsuccessful task run with exit code: -1"));
}

#[tokio::test]
async fn artifact_expiry_after_task_expiry_is_malformed() {
    let sb = Sandbox::new();
    let task_expires = chrono::Utc::now() + chrono::Duration::days(1);
    let r = run_with(
        &sb,
        sb.config(),
        json!({"image": "taskenv_pass", "maxRunTime": 60, "artifacts": {
            "public/x": {"type": "file", "path": "/etc/passwd",
                          "expires": (task_expires + chrono::Duration::days(1)).to_rfc3339()}}}),
        Some(task_expires),
        None,
    )
    .await;
    assert_eq!(
        r.report.resolution,
        Resolution::Exception(ExceptionReason::MalformedPayload)
    );
    assert!(
        r.log.contains("must not be greater than task expiration"),
        "{}",
        r.log
    );
}

#[tokio::test]
async fn missing_scopes_fail_the_task() {
    let sb = Sandbox::new();
    let r = run_with(
        &sb,
        sb.config(),
        json!({"image": "taskenv_pass", "maxRunTime": 60, "features": {"allowPtrace": true}}),
        None,
        Some(vec!["docker-worker:cache:*".into()]),
    )
    .await;
    assert_eq!(r.report.resolution, Resolution::Failed);
    assert!(
        r.log.contains("docker-worker:feature:allowPtrace"),
        "{}",
        r.log
    );
}

#[tokio::test]
async fn unimplemented_features_fail_with_a_line_naming_them() {
    let sb = Sandbox::new();
    let r = run(
        &sb,
        json!({"image": "taskenv_pass", "maxRunTime": 60, "features": {"dind": true}}),
    )
    .await;
    assert_eq!(r.report.resolution, Resolution::Failed);
    assert!(
        r.log
            .contains("[taskcluster:error] Feature \"dind\" is not supported by this worker"),
        "{}",
        r.log
    );
}

#[tokio::test]
async fn the_legacy_readme_payload_runs_as_written() {
    let sb = Sandbox::new();
    let r = run(
        &sb,
        json!({"image": "taskenv_pass", "command": ["/bin/sh", "-c", "echo \"Hello World\""],
               "features": {"bufferLog": false, "azureLivelog": true},
               "artifacts": {"passwd.txt": "/etc/passwd"}}),
    )
    .await;
    assert_eq!(r.report.resolution, Resolution::Completed, "{}", r.log);
    assert!(r.log.contains("\r\nHello World\r\n"));
    let passwd = std::fs::read_to_string(r.artifacts.join("passwd.txt")).unwrap();
    assert!(passwd.starts_with("root:x:0:0:"), "{passwd}");
}

#[tokio::test]
async fn artifacts_files_directories_missing_and_mismatched() {
    let sb = Sandbox::new();
    let script = "mkdir -p /out/sub/deeper && echo '{\"a\":1}' > /out/data.json && \
                  echo hello > /out/sub/hello.txt && echo deep > /out/sub/deeper/d.bin && \
                  ln -s /etc/passwd /out/link-in-dir && \
                  echo single > /single.txt && ln -s /single.txt /link-to-file && \
                  ln -s /host-only-secret /dangling";
    let r = run(
        &sb,
        json!({
            "image": "taskenv_pass",
            "command": ["/bin/sh", "-c", script],
            "maxRunTime": 60,
            "artifacts": {
                "public/single.txt": {"type": "file", "path": "/single.txt"},
                "public/dir": {"type": "directory", "path": "/out"},
                "public/missing": {"type": "file", "path": "/nope/never"},
                "public/dir-as-file": {"type": "file", "path": "/out"},
                "public/file-as-dir": {"type": "directory", "path": "/single.txt"},
                "public/via-link": {"type": "file", "path": "/link-to-file"},
                "public/dangling": {"type": "file", "path": "/dangling"}
            }
        }),
    )
    .await;
    assert_eq!(r.report.resolution, Resolution::Completed, "{}", r.log);
    let read = |name: &str| std::fs::read_to_string(r.artifacts.join(name)).unwrap();
    assert_eq!(read("public/single.txt"), "single\n");
    assert_eq!(read("public/dir/data.json"), "{\"a\":1}\n");
    assert_eq!(read("public/dir/sub/hello.txt"), "hello\n");
    assert_eq!(read("public/dir/sub/deeper/d.bin"), "deep\n");
    assert_eq!(read("public/via-link"), "single\n");
    // A symlink inside a directory artifact is not followed.
    assert!(!r.artifacts.join("public/dir/link-in-dir").exists());

    let types: std::collections::HashMap<_, _> = r
        .report
        .artifacts
        .files
        .iter()
        .map(|f| (f.name.as_str(), f.content_type.as_str()))
        .collect();
    assert_eq!(types["public/dir/data.json"], "application/json");
    assert_eq!(
        types["public/dir/sub/hello.txt"],
        "text/plain; charset=utf-8"
    );
    assert_eq!(
        types["public/dir/sub/deeper/d.bin"],
        "application/octet-stream"
    );

    let errors: std::collections::HashMap<_, _> = r
        .report
        .artifacts
        .errors
        .iter()
        .map(|e| (e.name.as_str(), e.reason.as_str()))
        .collect();
    assert_eq!(errors["public/missing"], "file-missing-on-worker");
    assert_eq!(errors["public/dangling"], "file-missing-on-worker");
    assert_eq!(errors["public/dir-as-file"], "invalid-resource-on-worker");
    assert_eq!(errors["public/file-as-dir"], "invalid-resource-on-worker");
    assert_eq!(errors.len(), 4);
    assert!(
        r.log.contains(
            "[taskcluster:error] Artifact \"public/missing\" not found at \"/nope/never\""
        ),
        "{}",
        r.log
    );
}

#[tokio::test]
async fn a_symlink_pointing_outside_never_reads_the_host() {
    let sb = Sandbox::new();
    // A file that exists on the host but not in the container.
    let host_secret = sb.dir.path().join("host-secret.txt");
    std::fs::write(&host_secret, "HOST SECRET").unwrap();
    let target = host_secret.to_str().unwrap();
    let r = run(
        &sb,
        json!({
            "image": "taskenv_pass",
            "command": ["/bin/sh", "-c", format!("ln -s {target} /escape; ln -s ../../../../../..{target} /escape2")],
            "maxRunTime": 60,
            "artifacts": {
                "public/escape": {"type": "file", "path": "/escape"},
                "public/escape2": {"type": "file", "path": "/escape2"}
            }
        }),
    )
    .await;
    assert_eq!(r.report.resolution, Resolution::Completed);
    assert!(!r.artifacts.join("public/escape").exists());
    assert!(!r.artifacts.join("public/escape2").exists());
    assert_eq!(r.report.artifacts.errors.len(), 2);
    for e in &r.report.artifacts.errors {
        assert_eq!(e.reason.as_str(), "file-missing-on-worker");
    }
}
