//! A bounded cache of verified tokens, so a token seen again skips the
//! signature work. An entry is never trusted past the token's `exp` (plus
//! leeway) nor past a fixed bound, and the whole cache is dropped when keys
//! change.

use std::collections::HashMap;
use std::rc::Rc;

use serde_json::{Map, Value};

/// Longest an entry is trusted, seconds, even for a token without `exp`.
pub const MAX_TRUST_SECS: u64 = 600;

#[derive(Debug, Clone)]
struct Entry {
    provider: usize,
    claims: Rc<Map<String, Value>>,
    valid_until: u64,
}

/// Verified tokens by their full text (no hash collisions can admit another
/// token), at most `capacity` of them.
#[derive(Debug, Default)]
pub struct TokenCache {
    entries: HashMap<String, Entry>,
    capacity: usize,
}

impl TokenCache {
    /// A cache of at most `capacity` tokens; 0 caches nothing.
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            capacity,
        }
    }

    /// The claims of `token` if provider `provider` verified it and it is
    /// still valid at `now`.
    #[must_use]
    pub fn get(&self, provider: usize, token: &str, now: u64) -> Option<Rc<Map<String, Value>>> {
        self.entries
            .get(token)
            .filter(|e| e.provider == provider && now < e.valid_until)
            .map(|e| Rc::clone(&e.claims))
    }

    /// Remembers a verified token until `valid_until` (Unix seconds), capped
    /// at [`MAX_TRUST_SECS`] from `now`. When full, expired entries go first;
    /// if none has expired the cache starts over (bounded memory, no LRU
    /// bookkeeping on the hot path).
    pub fn insert(
        &mut self,
        provider: usize,
        token: &str,
        claims: Rc<Map<String, Value>>,
        valid_until: u64,
        now: u64,
    ) {
        if self.capacity == 0 {
            return;
        }
        if self.entries.len() >= self.capacity {
            self.entries.retain(|_, e| now < e.valid_until);
            if self.entries.len() >= self.capacity {
                self.entries.clear();
            }
        }
        let valid_until = valid_until.min(now.saturating_add(MAX_TRUST_SECS));
        self.entries.insert(
            token.to_owned(),
            Entry {
                provider,
                claims,
                valid_until,
            },
        );
    }

    /// Forgets everything (new keys: a removed key must not keep its tokens alive).
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// Number of tokens held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Rc<Map<String, Value>> {
        Rc::new(Map::new())
    }

    #[test]
    fn entries_expire_and_belong_to_their_provider() {
        let mut cache = TokenCache::new(10);
        cache.insert(0, "t", claims(), 150, 100);
        assert!(cache.get(0, "t", 149).is_some());
        assert!(cache.get(0, "t", 150).is_none(), "not past exp");
        assert!(
            cache.get(1, "t", 120).is_none(),
            "another provider did not verify it"
        );
        cache.insert(0, "forever", claims(), u64::MAX, 100);
        assert!(
            cache.get(0, "forever", 100 + MAX_TRUST_SECS).is_none(),
            "capped trust"
        );
    }

    #[test]
    fn the_cache_stays_bounded() {
        let mut cache = TokenCache::new(3);
        for i in 0..10 {
            cache.insert(0, &format!("t{i}"), claims(), 1000, 100);
            assert!(cache.len() <= 3);
        }
        assert!(cache.get(0, "t9", 100).is_some(), "the newest is kept");
        assert_eq!(TokenCache::new(0).len(), 0);
        let mut none = TokenCache::new(0);
        none.insert(0, "t", claims(), 1000, 100);
        assert!(none.get(0, "t", 100).is_none());
    }
}
