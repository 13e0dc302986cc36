//! Ticket keys: derived from the filter's session key for each epoch, so
//! every replica of gatehouse-authz derives the same keys without sharing
//! anything new, keys rotate by themselves every [`EPOCH_SECS`], and a new
//! session key (a reload) changes every ticket key at once.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// How long one ticket key signs new tickets. The feed carries the keys of
/// the previous, current and next epoch, so a ticket issued just before a
/// change still verifies and a clock a little ahead does no harm.
pub const EPOCH_SECS: u64 = 3600;

/// What a derivation is for: a session key used for tickets yields nothing
/// that could open or seal a session.
const LABEL: &[u8] = b"gatehouse ticket key v1";

/// One HMAC-SHA-256 key and its public id.
#[derive(Clone, PartialEq, Eq)]
pub struct TicketKey {
    /// `<epoch>-<fingerprint>`: which key, never the key.
    pub id: String,
    /// The MAC key.
    pub secret: [u8; 32],
}

impl std::fmt::Debug for TicketKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The id only: keys are never logged.
        f.debug_struct("TicketKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl TicketKey {
    /// The key of `epoch` for the filter whose sealed values are bound to
    /// `purpose`, derived from its session key `master`.
    #[must_use]
    pub fn derive(master: &[u8], purpose: &str, epoch: u64) -> Self {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(master)
            .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
        mac.update(LABEL);
        mac.update(&[0]);
        mac.update(purpose.as_bytes());
        mac.update(&[0]);
        mac.update(&epoch.to_be_bytes());
        let secret: [u8; 32] = mac.finalize().into_bytes().into();
        // A fingerprint tells keys of different session keys apart; a hash
        // of the key reveals nothing of it.
        let fingerprint = Sha256::digest(secret);
        let id = format!(
            "{epoch}-{}",
            fingerprint[..4]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        Self { id, secret }
    }

    /// The keys a feed carries at `now`: previous, current and next epoch.
    #[must_use]
    pub fn around(master: &[u8], purpose: &str, now: u64) -> [Self; 3] {
        let epoch = now / EPOCH_SECS;
        [epoch.saturating_sub(1), epoch, epoch + 1].map(|e| Self::derive(master, purpose, e))
    }

    /// The key that signs new tickets at `now`.
    #[must_use]
    pub fn current(master: &[u8], purpose: &str, now: u64) -> Self {
        Self::derive(master, purpose, now / EPOCH_SECS)
    }
}

/// The keys a verifier accepts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyRing {
    keys: Vec<TicketKey>,
}

impl KeyRing {
    /// A ring of `keys`.
    #[must_use]
    pub fn new(keys: Vec<TicketKey>) -> Self {
        Self { keys }
    }

    /// The key named `id`.
    #[must_use]
    pub fn get(&self, id: &str) -> Option<&TicketKey> {
        self.keys.iter().find(|k| k.id == id)
    }

    /// How many keys the ring has.
    #[must_use]
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the ring has no key (nothing verifies).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_depends_on_the_session_key_the_purpose_and_the_epoch() {
        let k = TicketKey::derive(b"master", "sso", 7);
        assert_eq!(k, TicketKey::derive(b"master", "sso", 7));
        assert_ne!(k.secret, TicketKey::derive(b"other", "sso", 7).secret);
        assert_ne!(k.secret, TicketKey::derive(b"master", "sso2", 7).secret);
        assert_ne!(k.secret, TicketKey::derive(b"master", "sso", 8).secret);
        assert!(k.id.starts_with("7-"));
        // Same epoch, other session key: another id, so a verifier never
        // tries the wrong key under the right name.
        assert_ne!(k.id, TicketKey::derive(b"other", "sso", 7).id);
    }

    #[test]
    fn the_feed_carries_the_neighbouring_epochs() {
        let now = 10 * EPOCH_SECS + 5;
        let around = TicketKey::around(b"m", "p", now);
        let ids: Vec<_> = around
            .iter()
            .map(|k| k.id.split('-').next().unwrap().to_owned())
            .collect();
        assert_eq!(ids, ["9", "10", "11"]);
        assert_eq!(TicketKey::current(b"m", "p", now), around[1]);
    }

    #[test]
    fn debug_never_shows_the_key() {
        let k = TicketKey::derive(b"m", "p", 1);
        let shown = format!("{k:?}");
        assert!(shown.contains(&k.id));
        assert!(!shown.contains(&format!("{:?}", k.secret)));
        assert!(!shown.contains("secret"));
    }
}
