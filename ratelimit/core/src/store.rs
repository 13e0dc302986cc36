//! Counter stores: the one trait the limiter needs, and the in-memory store.

use std::collections::HashMap;
use std::future::Future;
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// One operation of a batch. A batch is one round trip to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Add `hits` to the counter `key` (creating it at 0), make it expire
    /// `ttl_secs` after now, and return the new value.
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

#[derive(Debug, Clone, Copy)]
struct Entry {
    count: u64,
    expires_ms: u64,
}

/// Counters in this process: exact, fast, and gone on restart. Keys expire by
/// their ttl; expired ones are swept as the store is used, so memory stays
/// bounded by the keys of live windows.
#[derive(Debug)]
pub struct MemoryStore {
    shards: Vec<Mutex<HashMap<String, Entry>>>,
    hasher: std::collections::hash_map::RandomState,
    ops: AtomicU64,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
            ops: AtomicU64::new(0),
        }
    }
}

impl MemoryStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
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
                        let entry = shard.entry(key.clone()).or_insert(Entry {
                            count: 0,
                            expires_ms,
                        });
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
            Self::sweep_shard(&self.shards[index], now_ms);
        }
        out
    }

    /// Drops every expired counter.
    pub fn sweep(&self, now_ms: u64) {
        for shard in &self.shards {
            Self::sweep_shard(shard, now_ms);
        }
    }

    fn sweep_shard(shard: &Mutex<HashMap<String, Entry>>, now_ms: u64) {
        let mut shard = shard
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        shard.retain(|_, e| e.expires_ms > now_ms);
    }

    /// Number of counters held, expired or not (for tests and metrics).
    #[must_use]
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                s.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .len()
            })
            .sum()
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
