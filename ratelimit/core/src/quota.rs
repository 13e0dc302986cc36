//! The decisions of the Rate Limit Quota Service (RLQS,
//! `envoy.service.rate_limit_quota.v3`): which rule a bucket falls under,
//! and which assignment each Envoy reporting it gets.
//!
//! With RLQS, Envoy's `rate_limit_quota` filter sorts requests into buckets
//! and enforces an assignment locally; the server only hands out
//! assignments. A bucket id carries the descriptor the YAML rules match:
//! `gatehouse render` names its entries `<position>.<descriptor key>`
//! (`0.generic_key: checkout`, `1.remote_address: 10.0.0.1`), so the map,
//! unordered on the wire, gives back the ordered entries.
//!
//! A limit is split evenly between the Envoys that report the bucket: each
//! gets a token bucket of `ceil(limit / envoys)` per unit. Together they
//! admit at most `limit + envoys - 1` per unit once every Envoy holds the
//! current split.

use crate::config::RateLimitConfig;
use crate::request::Descriptor;

/// What one Envoy may admit for a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignment {
    /// Admit every request: no rule matches, the rule is `unlimited`, or it
    /// never denies (`shadow_mode`; `quota_mode`, which denies only with
    /// another rule, and a request lands in one bucket only).
    AllowAll,
    /// A token bucket: `tokens_per_fill` tokens every `fill_interval_secs`,
    /// at most `max_tokens` saved up.
    TokenBucket {
        /// The burst the bucket holds.
        max_tokens: u32,
        /// Tokens added per interval.
        tokens_per_fill: u32,
        /// The rule's unit, in seconds.
        fill_interval_secs: u64,
    },
}

/// Why a bucket id names no descriptor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BucketError {
    /// An entry is not `<position>.<key>`.
    #[error("bucket entry {0:?} is not named <position>.<descriptor key>")]
    BadEntry(String),
    /// Two entries claim one position, or the positions skip one.
    #[error("bucket entries must hold positions 0..{0} once each")]
    BadPositions(usize),
    /// The bucket has no entry at all.
    #[error("the bucket id is empty")]
    Empty,
}

/// The descriptor a bucket id carries.
///
/// # Errors
/// An entry not named `<position>.<key>`, positions that are not `0..n`
/// once each, or an empty bucket.
pub fn descriptor_of<'a>(
    bucket: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<Descriptor, BucketError> {
    let mut entries = bucket
        .into_iter()
        .map(|(name, value)| {
            let (position, key) = name
                .split_once('.')
                .filter(|(_, key)| !key.is_empty())
                .ok_or_else(|| BucketError::BadEntry(name.to_owned()))?;
            let position: usize = position
                .parse()
                .map_err(|_| BucketError::BadEntry(name.to_owned()))?;
            Ok((position, key.to_owned(), value.to_owned()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if entries.is_empty() {
        return Err(BucketError::Empty);
    }
    entries.sort_by_key(|(position, _, _)| *position);
    let n = entries.len();
    if entries.iter().enumerate().any(|(i, (p, _, _))| *p != i) {
        return Err(BucketError::BadPositions(n));
    }
    Ok(Descriptor::new(
        entries.into_iter().map(|(_, k, v)| (k, v)).collect(),
    ))
}

/// The assignment of one of `envoys` Envoys sharing `descriptor`'s bucket
/// in `domain` (`envoys` of 0 counts as 1).
#[must_use]
pub fn assignment(
    config: &RateLimitConfig,
    domain: &str,
    descriptor: &Descriptor,
    envoys: u32,
) -> Assignment {
    let Some(matched) = config.find(domain, descriptor) else {
        return Assignment::AllowAll;
    };
    let rule = &matched.rule;
    if rule.is_unlimited() || rule.is_shadow() || rule.is_quota() {
        return Assignment::AllowAll;
    }
    let share = rule.requests_per_unit().div_ceil(envoys.max(1));
    Assignment::TokenBucket {
        max_tokens: share,
        tokens_per_fill: share,
        fill_interval_secs: rule.unit().seconds(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "domain: edge
descriptors:
  - key: generic_key
    value: checkout
    rate_limit: { unit: minute, requests_per_unit: 600 }
  - key: generic_key
    value: shadow
    shadow_mode: true
    rate_limit: { unit: second, requests_per_unit: 1 }
  - key: generic_key
    value: free
    rate_limit: { unlimited: true }
  - key: remote_address
    descriptors:
      - key: path
        rate_limit: { unit: second, requests_per_unit: 5 }
";

    fn config() -> RateLimitConfig {
        RateLimitConfig::load([("config.yaml", CONFIG)]).expect("valid config")
    }

    fn bucket<'a>(pairs: &'a [(&'a str, &'a str)]) -> Result<Descriptor, BucketError> {
        descriptor_of(pairs.iter().copied())
    }

    #[test]
    fn a_bucket_gives_back_its_entries_in_position_order() {
        let d = bucket(&[("1.path", "/a"), ("0.remote_address", "10.0.0.1")]).expect("valid");
        assert_eq!(
            d.entries(),
            [
                ("remote_address".to_owned(), "10.0.0.1".to_owned()),
                ("path".to_owned(), "/a".to_owned())
            ]
        );
    }

    #[test]
    fn malformed_bucket_ids_are_refused_with_the_entry() {
        assert_eq!(
            bucket(&[("generic_key", "x")]),
            Err(BucketError::BadEntry("generic_key".to_owned()))
        );
        assert_eq!(
            bucket(&[("0.", "x")]),
            Err(BucketError::BadEntry("0.".to_owned()))
        );
        assert_eq!(
            bucket(&[("x.key", "x")]),
            Err(BucketError::BadEntry("x.key".to_owned()))
        );
        assert_eq!(
            bucket(&[("0.a", "x"), ("0.b", "y")]),
            Err(BucketError::BadPositions(2))
        );
        assert_eq!(bucket(&[("1.a", "x")]), Err(BucketError::BadPositions(1)));
        assert_eq!(bucket(&[]), Err(BucketError::Empty));
    }

    #[test]
    fn a_limit_is_split_evenly_rounding_up() {
        let config = config();
        let checkout = Descriptor::from_pairs(&[("generic_key", "checkout")]);
        for (envoys, share) in [(0, 600), (1, 600), (2, 300), (7, 86)] {
            assert_eq!(
                assignment(&config, "edge", &checkout, envoys),
                Assignment::TokenBucket {
                    max_tokens: share,
                    tokens_per_fill: share,
                    fill_interval_secs: 60
                },
                "{envoys} envoys"
            );
        }
        // Never below one token each: the bound is limit + envoys - 1.
        let nested = Descriptor::from_pairs(&[("remote_address", "10.0.0.1"), ("path", "/")]);
        assert_eq!(
            assignment(&config, "edge", &nested, 9),
            Assignment::TokenBucket {
                max_tokens: 1,
                tokens_per_fill: 1,
                fill_interval_secs: 1
            }
        );
    }

    #[test]
    fn rules_that_never_deny_and_unmatched_buckets_allow_all() {
        let config = config();
        for d in [
            Descriptor::from_pairs(&[("generic_key", "shadow")]),
            Descriptor::from_pairs(&[("generic_key", "free")]),
            Descriptor::from_pairs(&[("generic_key", "elsewhere")]),
        ] {
            assert_eq!(
                assignment(&config, "edge", &d, 1),
                Assignment::AllowAll,
                "{d:?}"
            );
        }
        let checkout = Descriptor::from_pairs(&[("generic_key", "checkout")]);
        assert_eq!(
            assignment(&config, "other-domain", &checkout, 1),
            Assignment::AllowAll
        );
    }
}
