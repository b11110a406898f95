//! Recordings kept in memory: least recently used first out, bounded by
//! their bytes.

use fovea_engine::record::Recording;
use fovea_proto::v1 as pb;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// A recording in the cache, with when it was last used.
struct Cached {
    recording: Arc<Recording>,
    bytes: usize,
    /// Order of use (a counter), for listing most recent first.
    last_used: std::sync::atomic::AtomicU64,
    last_used_unix: std::sync::atomic::AtomicI64,
}

impl Cached {
    fn touch(&self, tick: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        self.last_used.store(tick, Relaxed);
        self.last_used_unix.store(now_unix(), Relaxed);
    }
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// moka weighs entries in u32: a bound past 4 GiB counts in coarser units.
/// (bytes per unit, capacity in units)
fn weight_units(limit: usize) -> (usize, usize) {
    let unit = limit.div_ceil(u32::MAX as usize).max(1);
    (unit, (limit / unit).max(1))
}

/// A recording's weight: at most the whole capacity, so one larger than
/// the bound is kept alone rather than refused.
fn weight(bytes: usize, unit: usize, capacity: usize) -> u32 {
    u32::try_from(bytes.div_ceil(unit).clamp(1, capacity)).unwrap_or(u32::MAX)
}

/// Recordings kept in memory within a byte bound, the least recently used
/// evicted first (moka, weighed in bytes). A recording larger than the
/// whole bound is still kept, alone, so the id Record returns works.
pub struct RecordingCache {
    limit: usize,
    tick: std::sync::atomic::AtomicU64,
    inner: moka::sync::Cache<String, Arc<Cached>>,
}

impl RecordingCache {
    pub fn new(limit: usize) -> Self {
        let (unit, capacity) = weight_units(limit);
        let inner = moka::sync::Cache::builder()
            .max_capacity(capacity as u64)
            .weigher(move |_: &String, c: &Arc<Cached>| weight(c.bytes, unit, capacity))
            .eviction_policy(moka::policy::EvictionPolicy::lru())
            .eviction_listener(|id: Arc<String>, _, cause| {
                tracing::debug!(recording = %id, ?cause, "left the cache");
            })
            .build();
        RecordingCache {
            limit,
            tick: std::sync::atomic::AtomicU64::new(0),
            inner,
        }
    }

    fn next_tick(&self) -> u64 {
        self.tick.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1
    }

    pub fn get(&self, id: &str) -> Option<Arc<Recording>> {
        let c = self.inner.get(id)?;
        c.touch(self.next_tick());
        Some(c.recording.clone())
    }

    pub fn insert(&self, rec: Arc<Recording>) {
        let cached = Cached {
            bytes: rec.bytes(),
            recording: rec.clone(),
            last_used: Default::default(),
            last_used_unix: Default::default(),
        };
        cached.touch(self.next_tick());
        self.inner.insert(rec.id.clone(), Arc::new(cached));
        // Evict now, so the bound and the listing hold when Record answers.
        self.inner.run_pending_tasks();
    }

    pub fn remove(&self, id: &str) -> bool {
        self.inner.remove(id).is_some()
    }

    /// (recordings most recent first, bytes used).
    pub fn list(&self) -> (Vec<pb::RecordingInfo>, usize) {
        use std::sync::atomic::Ordering::Relaxed;
        let mut v: Vec<Arc<Cached>> = self.inner.iter().map(|(_, c)| c).collect();
        v.sort_by_key(|c| std::cmp::Reverse(c.last_used.load(Relaxed)));
        let bytes = v.iter().map(|c| c.bytes).sum();
        let list = v
            .iter()
            .map(|c| pb::RecordingInfo {
                recording_id: c.recording.id.clone(),
                label: c.recording.label.clone(),
                original_width: c.recording.original_width,
                original_height: c.recording.original_height,
                size_bytes: c.bytes as u64,
                last_used_unix: c.last_used_unix.load(Relaxed),
            })
            .collect();
        (list, bytes)
    }

    pub fn limit(&self) -> usize {
        self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A recording of `bytes` bytes (its input holds them).
    fn recording(id: &str, bytes: usize) -> Arc<Recording> {
        Arc::new(Recording {
            id: id.into(),
            label: String::new(),
            original_width: 1,
            original_height: 1,
            image: image::RgbImage::new(0, 0),
            input: vec![0.0; (bytes - id.len()) / 4],
            layers: Vec::new(),
            scores: Vec::new(),
        })
    }

    fn ids(cache: &RecordingCache) -> Vec<String> {
        cache.list().0.into_iter().map(|r| r.recording_id).collect()
    }

    #[test]
    fn the_cache_keeps_the_most_recently_used_within_its_bytes() {
        let cache = RecordingCache::new(1000);
        cache.insert(recording("a", 401));
        cache.insert(recording("b", 401));
        assert_eq!(ids(&cache), ["b", "a"]);
        // Using a makes b the least recently used, evicted by c.
        assert!(cache.get("a").is_some());
        cache.insert(recording("c", 401));
        assert_eq!(ids(&cache), ["c", "a"]);
        assert!(cache.get("b").is_none());
        assert_eq!(cache.list().1, 802);
        assert!(cache.remove("a"));
        assert!(!cache.remove("a"));
        assert_eq!(ids(&cache), ["c"]);
    }

    #[test]
    fn a_recording_larger_than_the_cache_is_kept_alone() {
        let cache = RecordingCache::new(1000);
        cache.insert(recording("a", 401));
        cache.insert(recording("big", 5000));
        assert_eq!(ids(&cache), ["big"]);
        assert!(cache.get("big").is_some());
    }

    #[test]
    fn bounds_past_4_gib_weigh_in_coarser_units() {
        assert_eq!(weight_units(1000), (1, 1000));
        let (unit, capacity) = weight_units(10 << 30);
        assert_eq!(unit, 3);
        assert!(capacity <= u32::MAX as usize && capacity * unit <= 10 << 30);
        assert_eq!(weight(3 << 30, unit, capacity), 1 << 30);
        assert_eq!(weight(20 << 30, unit, capacity) as usize, capacity);
        assert_eq!(weight(0, unit, capacity), 1);
    }
}
