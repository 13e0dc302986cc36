//! Counter stores: the one trait the limiter needs, and the in-memory store.

use std::collections::HashMap;
use std::future::Future;
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// One operation of a batch. A batch is one round trip to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Add `hits` to the counter `key` (creating it at 0), make it expire
    /// `ttl_secs` after now, and return the new value. A store that cannot
    /// create another counter (see [`MemoryStore::with_max_keys`]) answers
    /// `u64::MAX`: over any limit, so a full store never lets a request
    /// through uncounted.
    IncrBy {
        /// Counter key.
        key: String,
        /// Amount to add; 0 reads without counting.
        hits: u64,
        /// Time to live in seconds, at least the rest of the window.
        ttl_secs: u64,
    },
    /// Return the counter `key`, 0 when absent.
    Get {
        /// Counter key.
        key: String,
    },
}

impl Op {
    /// The counter key the operation touches.
    #[must_use]
    pub fn key(&self) -> &str {
        match self {
            Self::IncrBy { key, .. } | Self::Get { key } => key,
        }
    }
}

/// A store failed; the configured failure policy decides what happens.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The store did not answer in time.
    #[error("counter store timed out")]
    Timeout,
    /// Too many calls already wait for the store: refused without waiting.
    #[error("counter store has too many calls waiting")]
    Overloaded,
    /// The store answered with an error or could not be reached.
    #[error("counter store failed: {0}")]
    Backend(String),
}

/// Where counters live. Implementations must apply a batch's increments
/// atomically per key, so that concurrent callers (also in other processes,
/// for shared stores) never lose or double-count a hit.
pub trait Store: Send + Sync {
    /// Runs `ops` in one round trip and returns one value per op, in order.
    /// `now_ms` is the caller's clock (Unix milliseconds), used by stores that
    /// expire keys themselves.
    fn execute(
        &self,
        ops: &[Op],
        now_ms: u64,
    ) -> impl Future<Output = Result<Vec<u64>, StoreError>> + Send;
}

const SHARDS: usize = 32;
/// Every this many operations a shard drops its expired counters.
const SWEEP_EVERY: u64 = 4096;
/// A full store sweeps every shard for expired counters at most this often,
/// so a flood of new keys into a store full of live ones costs one sweep a
/// second, not one per request.
const FULL_SWEEP_INTERVAL_MS: u64 = 1000;
/// Default [`MemoryStore`] capacity, in counters: about 100 to 200 MB with
/// typical keys (a key is at most a few hundred bytes, see
/// [`MAX_VERBATIM_BYTES`](crate::MAX_VERBATIM_BYTES)).
pub const DEFAULT_MAX_KEYS: usize = 1_000_000;

#[derive(Debug, Clone, Copy)]
struct Entry {
    count: u64,
    expires_ms: u64,
}

/// Counters in this process: exact, fast, and gone on restart. Keys expire by
/// their ttl; expired ones are swept as the store is used.
///
/// Clients choose descriptor values, and a value under an hour or day unit
/// lives that long, so the number of live counters is capped
/// ([`with_max_keys`](Self::with_max_keys)). At the cap, a new key first
/// makes the store drop expired counters (all shards at most once a second);
/// if every counter is still live, the new key is refused: its `IncrBy`
/// answers `u64::MAX`, over any limit. Counters that exist keep counting
/// exactly, so nothing already limited fails open; what the cap costs is that
/// new clients are denied until counters expire (see
/// [`refused_keys`](Self::refused_keys), exported as a metric).
#[derive(Debug)]
pub struct MemoryStore {
    shards: Vec<Mutex<HashMap<String, Entry>>>,
    hasher: std::collections::hash_map::RandomState,
    ops: AtomicU64,
    max_keys: usize,
    keys: AtomicUsize,
    refused: AtomicU64,
    last_full_sweep_ms: AtomicU64,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::with_max_keys(DEFAULT_MAX_KEYS)
    }
}

impl MemoryStore {
    /// An empty store holding at most [`DEFAULT_MAX_KEYS`] counters.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store holding at most `max_keys` counters (at least 1).
    #[must_use]
    pub fn with_max_keys(max_keys: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
            ops: AtomicU64::new(0),
            max_keys: max_keys.max(1),
            keys: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
            last_full_sweep_ms: AtomicU64::new(0),
        }
    }

    /// The most counters the store holds.
    #[must_use]
    pub fn max_keys(&self) -> usize {
        self.max_keys
    }

    /// How many new keys were refused (answered over limit) because the
    /// store was full of live counters, since start.
    #[must_use]
    pub fn refused_keys(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Takes a slot for one more counter, if the store has one.
    fn reserve(&self) -> bool {
        self.keys
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_keys).then_some(n + 1)
            })
            .is_ok()
    }

    /// Drops expired counters everywhere, unless another sweep of the whole
    /// store ran less than [`FULL_SWEEP_INTERVAL_MS`] ago.
    fn sweep_if_due(&self, now_ms: u64) {
        let last = self.last_full_sweep_ms.load(Ordering::Acquire);
        if now_ms < last.saturating_add(FULL_SWEEP_INTERVAL_MS) && last != 0 {
            return;
        }
        if self
            .last_full_sweep_ms
            .compare_exchange(last, now_ms.max(1), Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.sweep(now_ms);
        }
    }

    /// `IncrBy` on a key the shard does not hold: creates it when there is
    /// room (after dropping expired counters if needed), else refuses.
    fn create<'a>(
        &'a self,
        key: &str,
        hits: u64,
        expires_ms: u64,
        now_ms: u64,
        mut shard: std::sync::MutexGuard<'a, HashMap<String, Entry>>,
    ) -> u64 {
        if !self.reserve() {
            let dropped = Self::drop_expired(&mut shard, now_ms);
            self.keys.fetch_sub(dropped, Ordering::AcqRel);
            if !self.reserve() {
                // Sweeping the other shards takes their locks: never while
                // holding this one.
                drop(shard);
                self.sweep_if_due(now_ms);
                if !self.reserve() {
                    self.refused.fetch_add(1, Ordering::Relaxed);
                    return u64::MAX;
                }
                shard = self
                    .shard(key)
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
        }
        match shard.entry(key.to_owned()) {
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(Entry {
                    count: hits,
                    expires_ms,
                });
                hits
            }
            std::collections::hash_map::Entry::Occupied(mut held) => {
                // Another caller created it while this one swept: give the
                // slot back and count into theirs.
                self.keys.fetch_sub(1, Ordering::AcqRel);
                let entry = held.get_mut();
                if entry.expires_ms <= now_ms {
                    entry.count = 0;
                }
                entry.count = entry.count.saturating_add(hits);
                entry.expires_ms = expires_ms;
                entry.count
            }
        }
    }

    fn shard(&self, key: &str) -> &Mutex<HashMap<String, Entry>> {
        // The modulo keeps the index in range; shards is never empty.
        &self.shards[(self.hasher.hash_one(key) as usize) % self.shards.len()]
    }

    /// Runs the batch synchronously (what `execute` does).
    pub fn apply(&self, ops: &[Op], now_ms: u64) -> Vec<u64> {
        let n = ops.len() as u64;
        let before = self.ops.fetch_add(n, Ordering::Relaxed);
        // Crossing a multiple of SWEEP_EVERY sweeps one shard, in turn, so the
        // cost stays small and spread out.
        let sweep = (before / SWEEP_EVERY != (before + n) / SWEEP_EVERY)
            .then(|| ((before + n) / SWEEP_EVERY) as usize % self.shards.len());
        let out = ops
            .iter()
            .map(|op| {
                let key = op.key();
                // A poisoned lock only means another thread panicked mid-update
                // of plain integers: the map is still consistent, keep serving.
                let mut shard = self
                    .shard(key)
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                match op {
                    Op::IncrBy {
                        key,
                        hits,
                        ttl_secs,
                    } => {
                        let expires_ms = now_ms.saturating_add(ttl_secs.saturating_mul(1000));
                        let Some(entry) = shard.get_mut(key.as_str()) else {
                            return self.create(key, *hits, expires_ms, now_ms, shard);
                        };
                        if entry.expires_ms <= now_ms {
                            *entry = Entry {
                                count: 0,
                                expires_ms,
                            };
                        }
                        entry.count = entry.count.saturating_add(*hits);
                        entry.expires_ms = expires_ms;
                        entry.count
                    }
                    Op::Get { key } => shard
                        .get(key)
                        .filter(|e| e.expires_ms > now_ms)
                        .map_or(0, |e| e.count),
                }
            })
            .collect();
        if let Some(index) = sweep {
            self.sweep_shard(&self.shards[index], now_ms);
        }
        out
    }

    /// Drops every expired counter.
    pub fn sweep(&self, now_ms: u64) {
        for shard in &self.shards {
            self.sweep_shard(shard, now_ms);
        }
    }

    fn sweep_shard(&self, shard: &Mutex<HashMap<String, Entry>>, now_ms: u64) {
        let mut shard = shard
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let dropped = Self::drop_expired(&mut shard, now_ms);
        self.keys.fetch_sub(dropped, Ordering::AcqRel);
    }

    /// Drops a shard's expired counters and says how many.
    fn drop_expired(shard: &mut HashMap<String, Entry>, now_ms: u64) -> usize {
        let before = shard.len();
        shard.retain(|_, e| e.expires_ms > now_ms);
        before - shard.len()
    }

    /// Number of counters held, expired or not (for tests and metrics).
    #[must_use]
    pub fn len(&self) -> usize {
        self.keys.load(Ordering::Acquire)
    }

    /// Whether no counter is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Store for MemoryStore {
    fn execute(
        &self,
        ops: &[Op],
        now_ms: u64,
    ) -> impl Future<Output = Result<Vec<u64>, StoreError>> + Send {
        std::future::ready(Ok(self.apply(ops, now_ms)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incr(key: &str, hits: u64, ttl_secs: u64) -> Op {
        Op::IncrBy {
            key: key.to_owned(),
            hits,
            ttl_secs,
        }
    }

    #[test]
    fn increments_accumulate_and_expire() {
        let store = MemoryStore::new();
        assert_eq!(store.apply(&[incr("a", 1, 60)], 0), vec![1]);
        assert_eq!(
            store.apply(&[incr("a", 2, 60), Op::Get { key: "a".into() }], 1_000),
            vec![3, 3]
        );
        assert_eq!(store.apply(&[Op::Get { key: "b".into() }], 1_000), vec![0]);
        // The ttl runs from the last write.
        assert_eq!(store.apply(&[Op::Get { key: "a".into() }], 61_000), vec![0]);
        assert_eq!(store.apply(&[incr("a", 1, 60)], 61_000), vec![1]);
    }

    #[test]
    fn zero_hits_reads_without_counting() {
        let store = MemoryStore::new();
        store.apply(&[incr("a", 5, 60)], 0);
        assert_eq!(store.apply(&[incr("a", 0, 60)], 0), vec![5]);
    }

    #[test]
    fn sweep_drops_only_expired_counters() {
        let store = MemoryStore::new();
        store.apply(&[incr("old", 1, 1), incr("new", 1, 100)], 0);
        store.sweep(5_000);
        assert_eq!(store.len(), 1);
        assert_eq!(
            store.apply(&[Op::Get { key: "new".into() }], 5_000),
            vec![1]
        );
    }

    #[test]
    fn a_full_store_refuses_new_keys_as_over_limit_and_keeps_counting_old_ones() {
        let store = MemoryStore::with_max_keys(3);
        for key in ["a", "b", "c"] {
            assert_eq!(store.apply(&[incr(key, 1, 3600)], 0), vec![1]);
        }
        // Client-chosen values cannot grow the store past its cap...
        for n in 0..100 {
            let key = format!("attacker-{n}");
            assert_eq!(store.apply(&[incr(&key, 1, 3600)], 1_000), vec![u64::MAX]);
        }
        assert_eq!(store.len(), 3);
        assert_eq!(store.refused_keys(), 100);
        // ...and the counters that exist keep counting exactly.
        assert_eq!(store.apply(&[incr("a", 1, 3600)], 2_000), vec![2]);
        assert_eq!(store.apply(&[Op::Get { key: "b".into() }], 2_000), vec![1]);
    }

    #[test]
    fn a_full_store_drops_expired_counters_before_refusing() {
        let store = MemoryStore::with_max_keys(2);
        store.apply(&[incr("short", 1, 1), incr("long", 1, 3600)], 0);
        // "short" expired at 1 s: its slot goes to the new key.
        assert_eq!(store.apply(&[incr("new", 1, 60)], 5_000), vec![1]);
        assert_eq!(store.len(), 2);
        assert_eq!(
            store.apply(&[Op::Get { key: "long".into() }], 5_000),
            vec![1]
        );
    }

    #[test]
    fn concurrent_increments_are_exact() {
        let store = std::sync::Arc::new(MemoryStore::new());
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let store = store.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        store.apply(&[incr("k", 1, 60)], 0);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(store.apply(&[Op::Get { key: "k".into() }], 0), vec![8000]);
    }
}
