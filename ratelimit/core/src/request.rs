//! A validated `ShouldRateLimit` request, free of wire types.

use crate::unit::Unit;

/// Most descriptors one request may carry.
pub const MAX_DESCRIPTORS: usize = 64;
/// Most entries one descriptor may carry.
pub const MAX_ENTRIES: usize = 32;
/// Longest domain, key or value, in bytes.
pub const MAX_FIELD_BYTES: usize = 4096;

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
    /// A domain, key or value is longer than [`MAX_FIELD_BYTES`].
    #[error("{field} is {len} bytes long, at most {MAX_FIELD_BYTES} are accepted")]
    TooLong {
        /// Which field.
        field: String,
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
    /// [`RequestError`] for an empty domain, no descriptors, an empty
    /// descriptor or key, or counts and sizes past the `MAX_*` bounds.
    pub fn try_new(
        domain: String,
        descriptors: Vec<Descriptor>,
        hits_addend: u64,
    ) -> Result<Self, RequestError> {
        if domain.is_empty() {
            return Err(RequestError::EmptyDomain);
        }
        check_len("domain".to_owned(), &domain)?;
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
            for (entry, (key, value)) in d.entries.iter().enumerate() {
                if key.is_empty() {
                    return Err(RequestError::EmptyKey { index, entry });
                }
                check_len(format!("descriptors[{index}].entries[{entry}].key"), key)?;
                check_len(
                    format!("descriptors[{index}].entries[{entry}].value"),
                    value,
                )?;
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

    /// Hits to add for descriptor `d` of this request.
    #[must_use]
    pub fn hits_for(&self, d: &Descriptor) -> u64 {
        d.hits_addend.unwrap_or(self.hits_addend)
    }
}

fn check_len(field: String, value: &str) -> Result<(), RequestError> {
    if value.len() > MAX_FIELD_BYTES {
        return Err(RequestError::TooLong {
            field,
            len: value.len(),
        });
    }
    Ok(())
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
        let long = "v".repeat(MAX_FIELD_BYTES + 1);
        let err = Request::try_new("x".into(), vec![d(&[("a", &long)])], 1).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("descriptors[0].entries[0].value is 4097 bytes"),
            "{err}"
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
