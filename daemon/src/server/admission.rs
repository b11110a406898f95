//! Engine work behind a bounded queue: admission, the client's deadline
//! (`grpc-timeout`), and the release of the slot however the work ends.

use crate::server::convert;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::Semaphore;
use tonic::Status;

/// At most `concurrency` pieces of engine work at once and `queue` more
/// waiting; past that, RESOURCE_EXHAUSTED.
pub struct Queue {
    permits: Arc<Semaphore>,
    waiting: Arc<AtomicUsize>,
    concurrency: usize,
    queue: usize,
}

impl Queue {
    pub fn new(concurrency: usize, queue: usize) -> Queue {
        let concurrency = concurrency.max(1);
        Queue {
            permits: Arc::new(Semaphore::new(concurrency)),
            waiting: Default::default(),
            concurrency,
            queue,
        }
    }

    /// A place in the queue, held until the admission is dropped.
    pub async fn admit(&self) -> Result<Admission, Status> {
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.queue + self.concurrency {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(convert::busy(self.queue));
        }
        // Counted from here on: dropping the admission, even while it
        // waits for a permit, gives the place back.
        let mut admission = Admission {
            waiting: self.waiting.clone(),
            permit: None,
        };
        admission.permit = Some(
            self.permits
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| convert::status(fovea_engine::Error::ShuttingDown))?,
        );
        Ok(admission)
    }
}

/// The deadline a client sent (`grpc-timeout`), a little early: the
/// transport also times the call from when it arrived and would answer
/// CANCELLED if it ran out first.
pub fn deadline(metadata: &tonic::metadata::MetadataMap) -> Option<std::time::Instant> {
    let timeout = parse_grpc_timeout(metadata.get("grpc-timeout")?.to_str().ok()?)?;
    let margin = (timeout / 50).max(std::time::Duration::from_millis(5));
    Some(std::time::Instant::now() + timeout.saturating_sub(margin))
}

/// `grpc-timeout`: at most 8 digits and a unit (H, M, S, m, u, n), per the
/// gRPC over HTTP/2 spec.
pub fn parse_grpc_timeout(v: &str) -> Option<std::time::Duration> {
    use std::time::Duration;
    let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// A place in the work queue, released when dropped.
pub struct Admission {
    waiting: Arc<AtomicUsize>,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.permit.take();
        self.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn grpc_timeouts_parse_by_the_spec() {
        assert_eq!(parse_grpc_timeout("300m"), Some(Duration::from_millis(300)));
        assert_eq!(parse_grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("5u"), Some(Duration::from_micros(5)));
        for bad in ["", "m", "123456789m", "10x", "-1S", "1.5S", " 1S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
    }
}
