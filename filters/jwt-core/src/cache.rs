//! A bounded cache of verified tokens, so a token seen again skips the
//! signature work. An entry is never trusted past the token's `exp` (plus
//! leeway) nor past a fixed bound, nor past the presence of the key that
//! verified it: new keys drop the tokens of keys that left, and only those.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::Rc;

use serde_json::{Map, Value};

use crate::jwks::{KeyIdentity, KeySet};

/// Longest an entry is trusted, seconds, even for a token without `exp`.
pub const MAX_TRUST_SECS: u64 = 600;

#[derive(Debug, Clone)]
struct Entry {
    /// The token's full text: a hit must be this very token, not one with
    /// the same hash.
    token: Box<[u8]>,
    provider: usize,
    /// The key that verified the token.
    key: KeyIdentity,
    claims: Rc<Map<String, Value>>,
    valid_until: u64,
}

/// Verified tokens by a hash of their text, at most `capacity` of them.
///
/// Tokens run to hundreds of bytes and hashing plus comparing them is the
/// whole cost of a hit, so both go eight bytes at a time: SipHash, and the
/// bytewise `memcmp` wasm32 links, cost several times more. The hash is not
/// secret and need not be: a hit also compares the full text, so a
/// colliding token is only a miss, and only verified tokens are inserted, so
/// a client cannot crowd the table.
#[derive(Debug, Default)]
pub struct TokenCache {
    entries: HashMap<u64, Entry, BuildHasherDefault<Identity>>,
    capacity: usize,
}

/// The map's hasher: keys are already mixed hashes.
#[derive(Debug, Default, Clone, Copy)]
struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys reach here (`write_u64`); fold anything else in.
        self.0 ^= hash_text(bytes);
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

const MIX: u64 = 0x517c_c1b7_2722_0a95;

fn words(bytes: &[u8]) -> (impl Iterator<Item = u64> + '_, &[u8]) {
    let chunks = bytes.chunks_exact(8);
    let tail = chunks.remainder();
    let words = chunks.map(|c| {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        u64::from_le_bytes(w)
    });
    (words, tail)
}

/// A multiply-rotate mix over whole words (as FxHash), then a final
/// avalanche so the low bits the table indexes with depend on every byte.
fn hash_text(bytes: &[u8]) -> u64 {
    let (ws, tail) = words(bytes);
    let mut h = bytes.len() as u64;
    for w in ws.chain(tail.iter().map(|&b| u64::from(b))) {
        h = (h.rotate_left(5) ^ w).wrapping_mul(MIX);
    }
    h ^= h >> 29;
    h = h.wrapping_mul(MIX);
    h ^ (h >> 32)
}

/// Byte equality, eight at a time.
fn same_text(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let ((wa, ta), (wb, tb)) = (words(a), words(b));
    wa.zip(wb).all(|(x, y)| x == y) && ta.iter().zip(tb).all(|(x, y)| x == y)
}

impl TokenCache {
    /// A cache of at most `capacity` tokens; 0 caches nothing.
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::default(),
            capacity,
        }
    }

    /// The claims of `token` if provider `provider` verified it and it is
    /// still valid at `now`.
    #[must_use]
    pub fn get(&self, provider: usize, token: &str, now: u64) -> Option<Rc<Map<String, Value>>> {
        let token = token.as_bytes();
        self.entries
            .get(&hash_text(token))
            .filter(|e| e.provider == provider && now < e.valid_until)
            .filter(|e| same_text(&e.token, token))
            .map(|e| Rc::clone(&e.claims))
    }

    /// Remembers a token that `key` of provider `provider` verified, until
    /// `valid_until` (Unix seconds), capped at [`MAX_TRUST_SECS`] from `now`.
    /// When full, expired entries go first; if none has expired the cache
    /// starts over (bounded memory, no LRU bookkeeping on the hot path).
    pub fn insert(
        &mut self,
        provider: usize,
        token: &str,
        key: &KeyIdentity,
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
            hash_text(token.as_bytes()),
            Entry {
                token: token.as_bytes().into(),
                provider,
                key: key.clone(),
                claims,
                valid_until,
            },
        );
    }

    /// Takes note that provider `provider` now verifies with `keys` (a JWKS
    /// fetch): its tokens whose key left the set, or whose `kid` now names
    /// other material, are forgotten, so a removed key keeps no token alive.
    /// Every other entry stays: a refetch that brings the same keys (as one
    /// a forged `kid` causes) costs no worker its cache.
    pub fn retain_keys(&mut self, provider: usize, keys: &KeySet) {
        self.entries
            .retain(|_, e| e.provider != provider || keys.contains(&e.key));
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

    fn key() -> KeyIdentity {
        first(&KeySet::from_secret(Some("k".into()), &[7; 32]))
    }

    fn first(keys: &KeySet) -> KeyIdentity {
        use jsonwebtoken::Algorithm::{ES256, HS256, RS256};
        [HS256, RS256, ES256]
            .into_iter()
            .find_map(|alg| keys.candidates(None, alg).next())
            .unwrap()
            .identity()
            .clone()
    }

    #[test]
    fn entries_expire_and_belong_to_their_provider() {
        let mut cache = TokenCache::new(10);
        cache.insert(0, "t", &key(), claims(), 150, 100);
        assert!(cache.get(0, "t", 149).is_some());
        assert!(cache.get(0, "t", 150).is_none(), "not past exp");
        assert!(
            cache.get(1, "t", 120).is_none(),
            "another provider did not verify it"
        );
        cache.insert(0, "forever", &key(), claims(), u64::MAX, 100);
        assert!(
            cache.get(0, "forever", 100 + MAX_TRUST_SECS).is_none(),
            "capped trust"
        );
    }

    #[test]
    fn the_cache_stays_bounded() {
        let mut cache = TokenCache::new(3);
        for i in 0..10 {
            cache.insert(0, &format!("t{i}"), &key(), claims(), 1000, 100);
            assert!(cache.len() <= 3);
        }
        assert!(cache.get(0, "t9", 100).is_some(), "the newest is kept");
        assert_eq!(TokenCache::new(0).len(), 0);
        let mut none = TokenCache::new(0);
        // (and tokens that differ in one byte anywhere are different)
        let long = "a".repeat(301);
        let mut cache = TokenCache::new(10);
        cache.insert(0, &long, &key(), claims(), 1000, 100);
        assert!(cache.get(0, &long, 100).is_some());
        for i in [0, 7, 8, 150, 299, 300] {
            let mut other = long.clone().into_bytes();
            other[i] = b'b';
            let other = String::from_utf8(other).unwrap();
            assert!(cache.get(0, &other, 100).is_none(), "byte {i} differs");
        }
        assert!(
            cache.get(0, &long[..300], 100).is_none(),
            "a prefix is not the token"
        );
        none.insert(0, "t", &key(), claims(), 1000, 100);
        assert!(none.get(0, "t", 100).is_none());
    }

    /// The test JWKS with only the keys named, `rename` giving a key
    /// another key's `kid`.
    fn jwks(kids: &[&str], rename: Option<(&str, &str)>) -> KeySet {
        let all: Value = serde_json::from_str(include_str!("../testdata/jwks.json")).unwrap();
        let keys: Vec<Value> = all["keys"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|k| kids.contains(&k["kid"].as_str().unwrap()))
            .cloned()
            .map(|mut k| {
                if let Some((from, to)) = rename
                    && k["kid"] == from
                {
                    k["kid"] = to.into();
                }
                k
            })
            .collect();
        KeySet::from_jwks(serde_json::json!({ "keys": keys }).to_string().as_bytes()).unwrap()
    }

    fn id(keys: &KeySet, kid: &str) -> KeyIdentity {
        use jsonwebtoken::Algorithm::{ES256, RS256};
        [RS256, ES256]
            .into_iter()
            .find_map(|alg| keys.candidates(Some(kid), alg).next())
            .unwrap()
            .identity()
            .clone()
    }

    #[test]
    fn a_refetch_of_the_same_keys_keeps_every_token() {
        let before = jwks(&["rsa-1", "ec-256"], None);
        let mut cache = TokenCache::new(10);
        cache.insert(0, "rsa", &id(&before, "rsa-1"), claims(), 1000, 100);
        cache.insert(0, "ec", &id(&before, "ec-256"), claims(), 1000, 100);
        // A forged kid makes the filter fetch again; the IdP answers the same
        // keys, parsed anew (not the same allocation).
        cache.retain_keys(0, &jwks(&["ec-256", "rsa-1"], None));
        assert_eq!(cache.len(), 2);
        assert!(cache.get(0, "rsa", 100).is_some());
        assert!(cache.get(0, "ec", 100).is_some());
    }

    #[test]
    fn new_keys_drop_only_the_tokens_of_keys_that_left_or_changed() {
        let before = jwks(&["rsa-1", "ec-256"], None);
        let mut cache = TokenCache::new(10);
        cache.insert(0, "rsa", &id(&before, "rsa-1"), claims(), 1000, 100);
        cache.insert(0, "ec", &id(&before, "ec-256"), claims(), 1000, 100);
        cache.insert(1, "other", &id(&before, "ec-256"), claims(), 1000, 100);

        // ec-256 left the set (and rsa-2 came): only its token goes, and
        // only for this provider.
        cache.retain_keys(0, &jwks(&["rsa-1", "rsa-2"], None));
        assert!(cache.get(0, "rsa", 100).is_some());
        assert!(cache.get(0, "ec", 100).is_none(), "its key is gone");
        assert!(cache.get(1, "other", 100).is_some(), "another provider");

        // rsa-1 now names other material: its tokens were not signed by it.
        cache.retain_keys(0, &jwks(&["rsa-2"], Some(("rsa-2", "rsa-1"))));
        assert!(
            cache.get(0, "rsa", 100).is_none(),
            "the kid changed meaning"
        );
        assert_eq!(cache.len(), 1);
    }
}
