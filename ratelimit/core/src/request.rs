//! A validated `ShouldRateLimit` request, free of wire types.

use crate::unit::Unit;

/// Most descriptors one request may carry.
pub const MAX_DESCRIPTORS: usize = 64;
/// Most entries one descriptor may carry.
pub const MAX_ENTRIES: usize = 32;
/// Longest domain, in bytes. The domain comes from Envoy's filter
/// configuration, never from a client, so refusing a longer one cannot be a
/// way for a client to turn limits off. Keys and values have no bound here:
/// a client chooses header values, and refusing the call would let Envoy fail
/// open; a long one is counted under its digest instead (see
/// [`MAX_VERBATIM_BYTES`](crate::MAX_VERBATIM_BYTES)).
pub const MAX_DOMAIN_BYTES: usize = 4096;

/// Most hits one descriptor may add. Every limit is a `u32`, so this many is
/// over any limit; a larger `hits_addend` (which Envoy can take from the
/// request) counts as this many, so sums stay far from overflow in every
/// store (Redis counters are signed 64-bit).
pub const MAX_HITS: u64 = 1 << 32;

/// A limit sent by Envoy with the descriptor, overriding the configured one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitOverride {
    /// Requests allowed per unit.
    pub requests_per_unit: u32,
    /// Window unit.
    pub unit: Unit,
}

/// One descriptor: an ordered list of (key, value) entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    entries: Vec<(String, String)>,
    limit: Option<LimitOverride>,
    hits_addend: Option<u64>,
}

/// One request: a domain and the descriptors to check, OR-ed together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    domain: String,
    descriptors: Vec<Descriptor>,
    hits_addend: u64,
}

/// Why a request was refused before any counting.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RequestError {
    /// `domain` is empty.
    #[error("rate limit domain must not be empty")]
    EmptyDomain,
    /// No descriptors at all.
    #[error("rate limit descriptor list must not be empty")]
    NoDescriptors,
    /// More descriptors than [`MAX_DESCRIPTORS`].
    #[error("{count} descriptors in one request, at most {MAX_DESCRIPTORS} are accepted")]
    TooManyDescriptors {
        /// How many were sent.
        count: usize,
    },
    /// More entries than [`MAX_ENTRIES`].
    #[error("descriptors[{index}] has {count} entries, at most {MAX_ENTRIES} are accepted")]
    TooManyEntries {
        /// Position of the descriptor.
        index: usize,
        /// How many were sent.
        count: usize,
    },
    /// An entry has an empty key.
    #[error("descriptors[{index}].entries[{entry}] has an empty key")]
    EmptyKey {
        /// Position of the descriptor.
        index: usize,
        /// Position of the entry.
        entry: usize,
    },
    /// The domain is longer than [`MAX_DOMAIN_BYTES`].
    #[error("domain is {len} bytes long, at most {MAX_DOMAIN_BYTES} are accepted")]
    DomainTooLong {
        /// Its length.
        len: usize,
    },
    /// A limit override with an unknown unit.
    #[error("descriptors[{index}].limit has an unknown unit")]
    BadOverrideUnit {
        /// Position of the descriptor.
        index: usize,
    },
}

impl Descriptor {
    /// A descriptor from its entries; checked when it joins a [`Request`].
    #[must_use]
    pub fn new(entries: Vec<(String, String)>) -> Self {
        Self {
            entries,
            limit: None,
            hits_addend: None,
        }
    }

    /// A descriptor from `(key, value)` pairs, e.g. `&[("user", "ann")]`.
    #[must_use]
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        Self::new(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    /// With a limit override from Envoy.
    #[must_use]
    pub fn with_limit(mut self, limit: LimitOverride) -> Self {
        self.limit = Some(limit);
        self
    }

    /// With its own hits addend (0 reads the counter without counting).
    #[must_use]
    pub fn with_hits_addend(mut self, hits: u64) -> Self {
        self.hits_addend = Some(hits);
        self
    }

    /// The entries, in order.
    #[must_use]
    pub fn entries(&self) -> &[(String, String)] {
        &self.entries
    }

    /// The override, if Envoy sent one.
    #[must_use]
    pub fn limit(&self) -> Option<LimitOverride> {
        self.limit
    }

    /// The descriptor's own hits addend, if set.
    #[must_use]
    pub fn hits_addend(&self) -> Option<u64> {
        self.hits_addend
    }
}

impl Request {
    /// Validates a request.
    ///
    /// `hits_addend` is the request-level addend: protobuf cannot tell 0 from
    /// unset there, so 0 means 1, as in envoyproxy/ratelimit. A descriptor's own
    /// addend (a wrapper type on the wire) may be 0, which only reads.
    ///
    /// # Errors
    /// [`RequestError`] for an empty or over-long domain, no descriptors, an
    /// empty key, or more than [`MAX_DESCRIPTORS`] descriptors or
    /// [`MAX_ENTRIES`] entries. All of these come from Envoy's configuration,
    /// none from what a client sends.
    pub fn try_new(
        domain: String,
        descriptors: Vec<Descriptor>,
        hits_addend: u64,
    ) -> Result<Self, RequestError> {
        if domain.is_empty() {
            return Err(RequestError::EmptyDomain);
        }
        if domain.len() > MAX_DOMAIN_BYTES {
            return Err(RequestError::DomainTooLong { len: domain.len() });
        }
        if descriptors.is_empty() {
            return Err(RequestError::NoDescriptors);
        }
        if descriptors.len() > MAX_DESCRIPTORS {
            return Err(RequestError::TooManyDescriptors {
                count: descriptors.len(),
            });
        }
        for (index, d) in descriptors.iter().enumerate() {
            if d.entries.len() > MAX_ENTRIES {
                return Err(RequestError::TooManyEntries {
                    index,
                    count: d.entries.len(),
                });
            }
            for (entry, (key, _)) in d.entries.iter().enumerate() {
                if key.is_empty() {
                    return Err(RequestError::EmptyKey { index, entry });
                }
            }
        }
        Ok(Self {
            domain,
            descriptors,
            hits_addend: hits_addend.max(1),
        })
    }

    /// The domain.
    #[must_use]
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The descriptors, in order.
    #[must_use]
    pub fn descriptors(&self) -> &[Descriptor] {
        &self.descriptors
    }

    /// Hits to add for descriptor `d` of this request, at most [`MAX_HITS`].
    #[must_use]
    pub fn hits_for(&self, d: &Descriptor) -> u64 {
        d.hits_addend.unwrap_or(self.hits_addend).min(MAX_HITS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(pairs: &[(&str, &str)]) -> Descriptor {
        Descriptor::from_pairs(pairs)
    }

    #[test]
    fn empty_domain_and_no_descriptors_are_refused() {
        assert_eq!(
            Request::try_new(String::new(), vec![d(&[("a", "b")])], 1),
            Err(RequestError::EmptyDomain)
        );
        assert_eq!(
            Request::try_new("x".into(), vec![], 1),
            Err(RequestError::NoDescriptors)
        );
    }

    #[test]
    fn absurd_sizes_are_refused() {
        let many = vec![d(&[("a", "b")]); MAX_DESCRIPTORS + 1];
        assert!(matches!(
            Request::try_new("x".into(), many, 1),
            Err(RequestError::TooManyDescriptors { .. })
        ));
        let long = "v".repeat(MAX_DOMAIN_BYTES + 1);
        assert_eq!(
            Request::try_new(long, vec![d(&[("a", "b")])], 1),
            Err(RequestError::DomainTooLong {
                len: MAX_DOMAIN_BYTES + 1
            })
        );
        // Envoy sends a descriptor without entries when `skip_if_absent`
        // skipped all its actions: accepted, it matches nothing.
        assert!(Request::try_new("x".into(), vec![d(&[("a", "b")]), d(&[])], 1).is_ok());
        assert_eq!(
            Request::try_new("x".into(), vec![d(&[("", "b")])], 1),
            Err(RequestError::EmptyKey { index: 0, entry: 0 })
        );
    }

    #[test]
    fn a_client_chosen_value_of_any_length_is_accepted() {
        // A 5000-byte header value once made the whole call INVALID_ARGUMENT,
        // which Envoy's failure_mode_deny=false turns into "allow everything".
        let long = "v".repeat(64 * 1024);
        let long_key = "k".repeat(8 * 1024);
        assert!(
            Request::try_new(
                "x".into(),
                vec![d(&[("user", &long)]), d(&[(&long_key, "v")])],
                1
            )
            .is_ok()
        );
    }

    #[test]
    fn huge_hits_addends_are_clamped_to_more_than_any_limit() {
        let r = Request::try_new(
            "x".into(),
            vec![
                d(&[("a", "b")]).with_hits_addend(u64::MAX),
                d(&[("c", "d")]),
            ],
            0,
        )
        .unwrap();
        assert_eq!(r.hits_for(&r.descriptors()[0]), MAX_HITS);
        assert!(MAX_HITS > u64::from(u32::MAX));
    }

    #[test]
    fn request_addend_zero_means_one_but_descriptor_zero_peeks() {
        let r = Request::try_new(
            "x".into(),
            vec![d(&[("a", "b")]), d(&[("c", "d")]).with_hits_addend(0)],
            0,
        )
        .unwrap();
        assert_eq!(r.hits_for(&r.descriptors()[0]), 1);
        assert_eq!(r.hits_for(&r.descriptors()[1]), 0);
    }
}
