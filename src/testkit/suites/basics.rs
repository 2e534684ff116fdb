//! Suites about one task at a time: resolution table, environment, log format, maxRunTime,
//! artifacts, live log, malformed payloads.

use std::time::Duration;

use serde_json::json;

use super::{check, Suite, SuiteContext, SuiteFuture};
use crate::testkit::fake_queue::FakeQueueOptions;
use crate::testkit::harness::WorkerOptions;

/// The suites of this file.
pub fn suites() -> Vec<Suite> {
    vec![Suite {
        name: "basics::exit_codes",
        timeout: Duration::from_secs(180),
        run: exit_codes,
    }]
}

fn exit_codes(ctx: SuiteContext) -> SuiteFuture {
    Box::pin(async move {
        let mut h = ctx.harness(FakeQueueOptions::default()).await?;
        let _worker = h.worker(WorkerOptions::default()).await?;
        let cases = [
            ("exit 0", json!({}), "completed", None),
            ("exit 1", json!({}), "failed", None),
            (
                "exit 7",
                json!({"onExitStatus": {"retry": [7]}}),
                "exception",
                Some("intermittent-task"),
            ),
        ];
        for (script, extra, state, reason) in cases {
            let mut payload = json!({"image": "taskenv_pass", "command": ["/bin/sh", "-c", script], "maxRunTime": 60});
            if let (Some(p), Some(e)) = (payload.as_object_mut(), extra.as_object()) {
                p.extend(e.clone());
            }
            let task_id = h
                .queue
                .create_task_with_payload(payload)
                .map_err(|e| e.to_string())?;
            h.queue
                .wait_resolved(&task_id, 0, Duration::from_secs(60))
                .await
                .map_err(|e| format!("{script}: {e}"))?;
            let calls = h.queue.resolutions_for(&task_id, 0);
            let effective: Vec<_> = calls.iter().filter(|c| c.effective).collect();
            check(effective.len() == 1, || {
                format!("{script}: {} effective resolutions", effective.len())
            })?;
            check(effective[0].resolution == state, || {
                format!("{script}: resolved {} not {state}", effective[0].resolution)
            })?;
            check(effective[0].reason.as_deref() == reason, || {
                format!("{script}: reason {:?} not {reason:?}", effective[0].reason)
            })?;
        }
        Ok(())
    })
}
