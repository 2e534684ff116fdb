//! Runs the end-to-end suites one after another with a progress bar and prints
//! `N passed, N failed`.

use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

use crate::testkit::suites::{self, Suite, SuiteContext};

/// How a run of the suites went.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Suites that passed.
    pub passed: usize,
    /// Names and messages of suites that failed.
    pub failed: Vec<(String, String)>,
}

/// The suites whose name contains `filter` (all when `None`).
pub fn select(filter: Option<&str>) -> Vec<Suite> {
    suites::all()
        .into_iter()
        .filter(|s| filter.is_none_or(|f| s.name.contains(f)))
        .collect()
}

/// Run `selected` in order, each under its timeout, reporting progress on stderr.
pub async fn run(ctx: &SuiteContext, selected: &[Suite]) -> Summary {
    let bar = ProgressBar::new(selected.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
            .expect("valid template"),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    let mut summary = Summary::default();
    for suite in selected {
        bar.set_message(suite.name);
        let started = Instant::now();
        let result = match tokio::time::timeout(suite.timeout, (suite.run)(ctx.clone())).await {
            Ok(r) => r,
            Err(_) => Err(format!("timed out after {} s", suite.timeout.as_secs())),
        };
        let secs = started.elapsed().as_secs_f64();
        match result {
            Ok(()) => {
                bar.suspend(|| println!("ok      {} ({secs:.1} s)", suite.name));
                summary.passed += 1;
            }
            Err(message) => {
                bar.suspend(|| println!("FAILED  {} ({secs:.1} s): {message}", suite.name));
                summary.failed.push((suite.name.to_string(), message));
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    summary
}
