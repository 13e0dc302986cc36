//! The feed: what gatehouse-authz serves the filter over its private
//! socket, polled every few seconds. Per SSO filter, the ticket keys of
//! the neighbouring epochs and the sessions revoked recently (younger than
//! the longest ticket, after which their tickets have expired anyway).

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::keys::{KeyRing, TicketKey};

/// The whole document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Feed {
    /// By filter name.
    pub filters: BTreeMap<String, FilterFeed>,
}

/// One SSO filter's part.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterFeed {
    /// The keys tickets may carry.
    pub keys: Vec<FeedKey>,
    /// Sessions ended (logout, back-channel logout) whose tickets may still
    /// be unexpired.
    #[serde(default)]
    pub revoked: BTreeSet<String>,
}

/// A key as the feed carries it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedKey {
    /// [`TicketKey::id`].
    pub id: String,
    /// The key, base64.
    pub key: String,
}

impl std::fmt::Debug for FeedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Why a feed was not taken: the filter keeps what it had, and stops
/// trusting it once it is too old.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeedError {
    /// Not the JSON of a [`Feed`].
    #[error("the feed does not parse: {0}")]
    Parse(String),
    /// A key is not 32 bytes of base64.
    #[error("key {0} of the feed is not 32 bytes of base64")]
    BadKey(String),
}

impl FilterFeed {
    /// The part for `keys`, with `revoked` sessions.
    #[must_use]
    pub fn new(keys: &[TicketKey], revoked: BTreeSet<String>) -> Self {
        Self {
            keys: keys
                .iter()
                .map(|k| FeedKey {
                    id: k.id.clone(),
                    key: STANDARD.encode(k.secret),
                })
                .collect(),
            revoked,
        }
    }

    /// The keys as a verifier's ring.
    ///
    /// # Errors
    /// [`FeedError::BadKey`] for a key that is not 32 bytes.
    pub fn ring(&self) -> Result<KeyRing, FeedError> {
        self.keys
            .iter()
            .map(|k| {
                let bytes = STANDARD
                    .decode(&k.key)
                    .map_err(|_| FeedError::BadKey(k.id.clone()))?;
                let secret: [u8; 32] = bytes
                    .try_into()
                    .map_err(|_| FeedError::BadKey(k.id.clone()))?;
                Ok(TicketKey {
                    id: k.id.clone(),
                    secret,
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(KeyRing::new)
    }
}

impl Feed {
    /// Parses a feed.
    ///
    /// # Errors
    /// [`FeedError::Parse`] naming what is wrong.
    pub fn parse(bytes: &[u8]) -> Result<Self, FeedError> {
        serde_json::from_slice(bytes).map_err(|e| FeedError::Parse(e.to_string()))
    }

    /// The feed as JSON.
    ///
    /// # Panics
    /// Never: strings and sets always serialize.
    #[must_use]
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| unreachable!("a feed serializes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_feed_round_trips_to_the_same_ring() {
        let keys = TicketKey::around(b"m", "sso", 100_000);
        let mut feed = Feed::default();
        feed.filters.insert(
            "sso".into(),
            FilterFeed::new(&keys, BTreeSet::from(["gone".to_owned()])),
        );
        let back = Feed::parse(feed.to_json().as_bytes()).unwrap();
        assert_eq!(back, feed);
        let ring = back.filters["sso"].ring().unwrap();
        assert_eq!(ring.get(&keys[1].id), Some(&keys[1]));
    }

    #[test]
    fn a_bad_feed_is_refused_with_its_reason() {
        assert!(matches!(Feed::parse(b"{"), Err(FeedError::Parse(_))));
        assert!(matches!(
            Feed::parse(br#"{"filters":{},"extra":1}"#),
            Err(FeedError::Parse(_))
        ));
        let feed = FilterFeed {
            keys: vec![FeedKey {
                id: "1-ab".into(),
                key: "c2hvcnQ=".into(),
            }],
            revoked: BTreeSet::new(),
        };
        assert_eq!(feed.ring(), Err(FeedError::BadKey("1-ab".into())));
    }
}
