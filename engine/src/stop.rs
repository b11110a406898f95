//! When long work should end early: the client went away, the request's
//! deadline passed, or the daemon is shutting down. Work checks a [`Stop`]
//! between its units (a batch of neurons, a maximization step), so it ends
//! within one unit instead of running on for nobody.

use crate::error::{Error, Result};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// The reasons to stop one piece of work, shared with whoever may set them.
#[derive(Clone, Debug, Default)]
pub struct Stop {
    deadline: Option<Instant>,
    client_gone: Arc<AtomicBool>,
    shutdown: Option<Arc<AtomicBool>>,
}

impl Stop {
    /// Work that never stops early.
    pub fn never() -> Stop {
        Stop::default()
    }

    pub fn with_deadline(mut self, deadline: Option<Instant>) -> Stop {
        self.deadline = deadline;
        self
    }

    /// Watches a daemon-wide shutdown flag.
    pub fn with_shutdown(mut self, flag: Arc<AtomicBool>) -> Stop {
        self.shutdown = Some(flag);
        self
    }

    /// A guard that marks the client gone when dropped before `disarm`:
    /// held by the request handler, it fires when the handler's future is
    /// dropped (the client cancelled or disconnected).
    pub fn guard(&self) -> ClientGuard {
        ClientGuard {
            flag: Some(self.client_gone.clone()),
        }
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Ok to go on; else why not, shutdown first (its answer tells the
    /// client to retry elsewhere).
    pub fn check(&self) -> Result<()> {
        if self
            .shutdown
            .as_ref()
            .is_some_and(|f| f.load(Ordering::Relaxed))
        {
            return Err(Error::ShuttingDown);
        }
        if self.client_gone.load(Ordering::Relaxed) {
            return Err(Error::Cancelled);
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(Error::DeadlineExceeded);
        }
        Ok(())
    }
}

/// Marks the client gone on drop unless disarmed.
pub struct ClientGuard {
    flag: Option<Arc<AtomicBool>>,
}

impl ClientGuard {
    pub fn disarm(mut self) {
        self.flag = None;
    }
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        if let Some(f) = self.flag.take() {
            f.store(true, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn each_reason_stops_with_its_error() {
        assert!(Stop::never().check().is_ok());
        let past = Stop::never().with_deadline(Some(Instant::now() - Duration::from_millis(1)));
        assert!(matches!(past.check(), Err(Error::DeadlineExceeded)));
        let later = Stop::never().with_deadline(Some(Instant::now() + Duration::from_secs(60)));
        assert!(later.check().is_ok());

        let stop = Stop::never();
        stop.guard().disarm();
        assert!(stop.check().is_ok());
        drop(stop.guard());
        assert!(matches!(stop.check(), Err(Error::Cancelled)));

        let flag = Arc::new(AtomicBool::new(false));
        let stop = Stop::never().with_shutdown(flag.clone());
        assert!(stop.check().is_ok());
        flag.store(true, Ordering::Relaxed);
        assert!(matches!(stop.check(), Err(Error::ShuttingDown)));
    }
}
