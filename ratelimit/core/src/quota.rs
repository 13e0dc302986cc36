//! The decisions of the Rate Limit Quota Service (RLQS,
//! `envoy.service.rate_limit_quota.v3`): which rule a bucket falls under,
//! and how its limit is split between the Envoys that report it.
//!
//! With RLQS, Envoy's `rate_limit_quota` filter sorts requests into buckets
//! and enforces an assignment locally; the server only hands out
//! assignments. A bucket id carries the descriptor the YAML rules match:
//! `gatehouse render` names its entries `<position>.<descriptor key>`
//! (`0.generic_key: checkout`, `1.remote_address: 10.0.0.1`), so the map,
//! unordered on the wire, gives back the ordered entries.
//!
//! A limit of `L` per unit is split between the Envoys reporting the bucket
//! by their demand ([`split`]): max-min fair, so an Envoy asking for less
//! than an even share gets what it asks plus headroom, and whatever it
//! leaves goes to the others. Each Envoy enforces its share as a token
//! bucket refilled continuously ([`token_bucket`]), holding at most one
//! second of its share. The shares add up to `L` (each at least one token),
//! so in any stretch of time `t` the Envoys together admit at most
//! `L * t / unit` plus what their buckets held when it began: one second of
//! the limit, plus one token per Envoy for rounding. The README derives the
//! whole bound, assignment changes and reporting intervals included.

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

/// The limit a bucket is under: `(requests per unit, unit in seconds, the
/// rule's counter key)`, or `None` when it never denies: no rule matches,
/// the rule is `unlimited`, or it never denies (`shadow_mode`;
/// `quota_mode`, which denies only with another rule, and a request lands
/// in one bucket only). Buckets whose descriptors share a counter on the
/// per-request path (a `share_threshold` wildcard) share the key, so they
/// share one quota too.
#[must_use]
pub fn limit_of(
    config: &RateLimitConfig,
    domain: &str,
    descriptor: &Descriptor,
) -> Option<(u32, u64, String)> {
    let matched = config.find(domain, descriptor)?;
    let rule = &matched.rule;
    if rule.is_unlimited() || rule.is_shadow() || rule.is_quota() {
        return None;
    }
    Some((
        rule.requests_per_unit(),
        rule.unit().seconds(),
        matched.counter_key,
    ))
}

/// The assignment enforcing `share` tokens per unit of `unit_secs`: refilled
/// continuously, holding at most one second of the share (at least one
/// token), so a bucket that sat idle admits a short burst and no more.
#[must_use]
pub fn token_bucket(share: u32, unit_secs: u64) -> Assignment {
    let unit_secs = unit_secs.max(1);
    let per_second = u64::from(share).div_ceil(unit_secs);
    Assignment::TokenBucket {
        max_tokens: u32::try_from(per_second).unwrap_or(u32::MAX).max(1),
        tokens_per_fill: share.max(1),
        fill_interval_secs: unit_secs,
    }
}

/// How much more than its measured demand an Envoy may admit before its
/// next report, in percent: an Envoy whose traffic grows is not held to
/// what it sent last interval, and one whose requests bunch up (a client's
/// pause and catch-up, a report a little late) is not refused for it.
pub const HEADROOM_PERCENT: u64 = 50;

/// One Envoy's demand on a bucket, as the service last measured it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    /// The reporting stream (one per Envoy).
    pub reporter: u64,
    /// Requests per second the Envoy saw for the bucket in its last report
    /// (admitted and denied), in thousandths; `None` until it has reported
    /// over a measured interval, which claims an even share.
    pub demand_milli: Option<u64>,
}

/// Splits `limit` tokens per unit of `unit_secs` between `claims`, in their
/// order, max-min fair: claims are served smallest first, each getting its
/// demand plus [`HEADROOM_PERCENT`] but never more than an even share of
/// what is left; what no claim needs is shared evenly. Shares are whole
/// tokens adding up to `limit` (a token that does not divide goes to the
/// lower reporter) and at least 1 each, so with more Envoys than tokens the
/// sum exceeds `limit` by at most one per Envoy. Integers throughout: the
/// same claims always give the same shares, so a steady load keeps its
/// assignments (Envoy refills a token bucket whenever one changes).
#[must_use]
pub fn split(limit: u32, unit_secs: u64, claims: &[Claim]) -> Vec<u32> {
    let want: Vec<u64> = claims
        .iter()
        .map(|c| {
            c.demand_milli.map_or(u64::MAX, |milli| {
                let scaled = u128::from(milli)
                    * u128::from(unit_secs.max(1))
                    * u128::from(100 + HEADROOM_PERCENT);
                u64::try_from(scaled.div_ceil(100 * 1000)).unwrap_or(u64::MAX)
            })
        })
        .collect();
    let mut order: Vec<usize> = (0..claims.len()).collect();
    order.sort_by_key(|&i| (want[i], claims[i].reporter));
    let mut shares = vec![0_u64; claims.len()];
    let mut left = u64::from(limit);
    for (served, &i) in order.iter().enumerate() {
        let waiting = &order[served..];
        let count = waiting.len() as u64;
        if want[i] <= left / count {
            shares[i] = want[i];
            left -= want[i];
            continue;
        }
        // Everyone still waiting wants more than an even share: they split
        // what is left evenly, which is where the limit runs out.
        share_evenly(&mut shares, waiting, left, claims);
        left = 0;
        break;
    }
    if left > 0 {
        // Every claim is met: the rest is headroom for all.
        share_evenly(&mut shares, &order, left, claims);
    }
    shares
        .into_iter()
        .map(|s| u32::try_from(s).unwrap_or(u32::MAX).max(1))
        .collect()
}

/// Adds `tokens` to the shares of `who` evenly, the tokens that do not
/// divide going to the lowest reporters.
fn share_evenly(shares: &mut [u64], who: &[usize], tokens: u64, claims: &[Claim]) {
    let count = who.len() as u64;
    let mut by_reporter = who.to_vec();
    by_reporter.sort_by_key(|&i| claims[i].reporter);
    for (rank, &i) in by_reporter.iter().enumerate() {
        shares[i] += tokens / count + u64::from((rank as u64) < tokens % count);
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

    fn claims(demands: &[Option<u64>]) -> Vec<Claim> {
        demands
            .iter()
            .zip(1..)
            .map(|(&demand_milli, reporter)| Claim {
                reporter,
                demand_milli,
            })
            .collect()
    }

    #[test]
    fn envoys_that_all_want_more_than_an_even_share_split_the_limit_evenly() {
        // Two Envoys at 10/s each against 600/minute: 300 each, however the
        // demands compare, and the same answer at every report.
        assert_eq!(
            split(600, 60, &claims(&[Some(10_000), Some(12_000)])),
            [300, 300]
        );
        // Seven ways: the rounding goes to the lowest reporters, and the
        // shares add up to the limit exactly.
        let seven = split(600, 60, &claims(&[None; 7]));
        assert_eq!(seven, [86, 86, 86, 86, 86, 85, 85]);
        assert_eq!(seven.iter().sum::<u32>(), 600);
    }

    #[test]
    fn an_envoy_asking_little_keeps_what_it_asks_and_the_rest_goes_to_the_others() {
        // 3/s with 50 % headroom is 270/minute, under an even 300: it keeps
        // 270 whatever the other floods, and the other gets the rest.
        assert_eq!(
            split(600, 60, &claims(&[Some(3_000), Some(500_000)])),
            [270, 330]
        );
        // Nobody needs it all: what is left is shared evenly.
        assert_eq!(
            split(600, 60, &claims(&[Some(3_000), Some(3_000)])),
            [300, 300]
        );
        assert_eq!(
            split(600, 60, &claims(&[Some(2_000), Some(3_000)])),
            [255, 345]
        );
        // An Envoy not measured yet claims an even share at once.
        assert_eq!(split(600, 60, &claims(&[Some(500_000), None])), [300, 300]);
    }

    #[test]
    fn every_envoy_gets_a_token_even_when_the_limit_is_smaller() {
        // Envoy refuses a token bucket without tokens: with more Envoys
        // than tokens each still gets one (the bound's one per Envoy).
        assert_eq!(split(2, 1, &claims(&[None; 3])), [1, 1, 1]);
        assert!(split(5, 1, &[]).is_empty());
    }

    proptest::proptest! {
        #[test]
        fn shares_add_up_to_the_limit_and_a_modest_claim_is_always_met(
            limit in 1_u32..100_000,
            unit_secs in proptest::sample::select(vec![1_u64, 60, 3600, 86400]),
            demands in proptest::collection::vec(proptest::option::of(0_u64..10_000_000), 1..12),
        ) {
            let claims = claims(&demands);
            let shares = split(limit, unit_secs, &claims);
            proptest::prop_assert_eq!(shares.len(), claims.len());
            proptest::prop_assert!(shares.iter().all(|&s| s >= 1));
            let n = u32::try_from(claims.len()).unwrap_or(u32::MAX);
            if limit >= n {
                proptest::prop_assert_eq!(shares.iter().map(|&s| u64::from(s)).sum::<u64>(), u64::from(limit));
            }
            // An Envoy wanting no more than an even share gets what it wants.
            for (claim, &share) in claims.iter().zip(&shares) {
                if let Some(milli) = claim.demand_milli {
                    let want = (u128::from(milli) * u128::from(unit_secs) * 150).div_ceil(100_000);
                    if want <= u128::from(limit / n) {
                        proptest::prop_assert!(u128::from(share) >= want, "{claim:?} got {share}");
                    }
                }
            }
            // The same claims in another order get the same shares.
            let mut reversed = claims.clone();
            reversed.reverse();
            let mut again = split(limit, unit_secs, &reversed);
            again.reverse();
            proptest::prop_assert_eq!(again, shares);
        }
    }

    #[test]
    fn a_token_bucket_holds_one_second_of_its_share() {
        assert_eq!(
            token_bucket(300, 60),
            Assignment::TokenBucket {
                max_tokens: 5,
                tokens_per_fill: 300,
                fill_interval_secs: 60
            }
        );
        assert_eq!(
            token_bucket(10, 3600),
            Assignment::TokenBucket {
                max_tokens: 1,
                tokens_per_fill: 10,
                fill_interval_secs: 3600
            }
        );
        assert_eq!(
            token_bucket(7, 1),
            Assignment::TokenBucket {
                max_tokens: 7,
                tokens_per_fill: 7,
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
            assert_eq!(limit_of(&config, "edge", &d), None, "{d:?}");
        }
        let checkout = Descriptor::from_pairs(&[("generic_key", "checkout")]);
        assert_eq!(limit_of(&config, "other-domain", &checkout), None);
        let (limit, unit, key) = limit_of(&config, "edge", &checkout).expect("limited");
        assert_eq!((limit, unit), (600, 60));
        assert_eq!(key, "edge_generic_key_checkout_");
    }
}
