//! Progress of downloads, shown by whatever the front end installs (a
//! progress bar in a terminal); without one, a log line when a transfer
//! starts and when it ends.

use std::sync::OnceLock;
use std::time::Instant;

/// Starts the display of one transfer.
pub trait Reporter: Send + Sync {
    /// `total` is the full size when known; `at` the bytes already held
    /// (a resumed transfer).
    fn start(&self, label: &str, total: Option<u64>, at: u64) -> Box<dyn Transfer>;
}

/// One transfer under way.
pub trait Transfer {
    fn advance(&self, at: u64);
    fn finish(&self);
}

static REPORTER: OnceLock<Box<dyn Reporter>> = OnceLock::new();

/// Installs the process's reporter; false when one is installed already.
pub fn set_reporter(reporter: Box<dyn Reporter>) -> bool {
    REPORTER.set(reporter).is_ok()
}

pub(crate) fn start(label: &str, total: Option<u64>, at: u64) -> Box<dyn Transfer> {
    match REPORTER.get() {
        Some(r) => r.start(label, total, at),
        None => {
            tracing::info!(what = label, bytes = ?total, resumed_at = at, "download started");
            Box::new(Logged {
                label: label.to_string(),
                at: std::cell::Cell::new(at),
                since: Instant::now(),
            })
        }
    }
}

struct Logged {
    label: String,
    at: std::cell::Cell<u64>,
    since: Instant,
}

impl Transfer for Logged {
    fn advance(&self, at: u64) {
        self.at.set(at);
    }

    fn finish(&self) {
        tracing::info!(
            what = %self.label,
            bytes = self.at.get(),
            seconds = self.since.elapsed().as_secs_f64(),
            "download ended"
        );
    }
}
