//! Where the quota service keeps what each Envoy demands of each bucket:
//! every replica records the claims of its own streams and reads everyone's,
//! so replicas sharing a store split a limit from the same figures.

use std::collections::HashMap;
use std::future::Future;
use std::hash::BuildHasher as _;
use std::sync::Mutex;

use crate::quota::Claim;
use crate::store::StoreError;

/// A claim not renewed for this long no longer holds a share: Envoy reports
/// every bucket every few seconds (5 s in Envoy 1.40), so this is an Envoy
/// that went away without ending its stream.
pub const CLAIM_STALE_MS: u64 = 15_000;

/// One claim to record: `claim` on the bucket stored under `key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemandReport {
    /// The bucket's key, the same in every replica.
    pub key: String,
    /// The reporter's demand.
    pub claim: Claim,
}

/// Where claims live.
pub trait DemandStore: Send + Sync {
    /// Records each report's claim (stamped `now_ms`, Unix milliseconds) and
    /// returns, per report in order, the claims on its bucket renewed within
    /// [`CLAIM_STALE_MS`], the reporter's own included.
    fn report(
        &self,
        reports: &[DemandReport],
        now_ms: u64,
    ) -> impl Future<Output = Result<Vec<Vec<Claim>>, StoreError>> + Send;

    /// Drops `reporter`'s claims on the buckets under `keys`: its stream ended.
    fn leave(
        &self,
        keys: &[String],
        reporter: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Every this many reports, buckets nobody claims any more are forgotten:
/// bucket ids can carry client values, so the map must not only grow.
const SWEEP_EVERY: u64 = 1024;

/// Claims in this process, for one replica. A bucket is kept under an
/// 8-byte keyed hash of its key, so buckets named by client values of any
/// length cost a fixed size, and the random key leaves no way to aim two
/// buckets at one slot.
#[derive(Debug, Default)]
pub struct MemoryDemands {
    buckets: Mutex<Buckets>,
    hasher: std::hash::RandomState,
}

#[derive(Debug, Default)]
struct Buckets {
    claims: HashMap<u64, Vec<(Claim, u64)>>,
    reports: u64,
}

impl MemoryDemands {
    /// How many buckets hold a claim.
    #[must_use]
    pub fn len(&self) -> usize {
        self.lock().claims.len()
    }

    /// Whether no bucket holds a claim.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Buckets> {
        self.buckets.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The claims of each report's bucket after recording it.
    #[must_use]
    pub fn record(&self, reports: &[DemandReport], now_ms: u64) -> Vec<Vec<Claim>> {
        let fresh = |seen: u64| now_ms.saturating_sub(seen) < CLAIM_STALE_MS;
        let mut buckets = self.lock();
        let mut answers = Vec::with_capacity(reports.len());
        for report in reports {
            buckets.reports += 1;
            if buckets.reports.is_multiple_of(SWEEP_EVERY) {
                buckets.claims.retain(|_, claims| {
                    claims.retain(|(_, seen)| fresh(*seen));
                    !claims.is_empty()
                });
            }
            let claims = buckets
                .claims
                .entry(self.hasher.hash_one(&report.key))
                .or_default();
            claims.retain(|(c, seen)| c.reporter != report.claim.reporter && fresh(*seen));
            claims.push((report.claim, now_ms));
            answers.push(claims.iter().map(|(c, _)| *c).collect());
        }
        answers
    }

    /// Drops `reporter`'s claims on `keys`.
    pub fn forget(&self, keys: &[String], reporter: u64) {
        let mut buckets = self.lock();
        for key in keys {
            let slot = self.hasher.hash_one(key);
            if let Some(claims) = buckets.claims.get_mut(&slot) {
                claims.retain(|(c, _)| c.reporter != reporter);
                if claims.is_empty() {
                    buckets.claims.remove(&slot);
                }
            }
        }
    }
}

impl DemandStore for MemoryDemands {
    fn report(
        &self,
        reports: &[DemandReport],
        now_ms: u64,
    ) -> impl Future<Output = Result<Vec<Vec<Claim>>, StoreError>> + Send {
        std::future::ready(Ok(self.record(reports, now_ms)))
    }

    fn leave(
        &self,
        keys: &[String],
        reporter: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.forget(keys, reporter);
        std::future::ready(Ok(()))
    }
}

/// A claim as a store keeps it: `<demand in thousandths or ->:<seen ms>`.
#[must_use]
pub fn encode_claim(claim: &Claim, now_ms: u64) -> String {
    match claim.demand_milli {
        Some(d) => format!("{d}:{now_ms}"),
        None => format!("-:{now_ms}"),
    }
}

/// The claim of `reporter` stored as `value`, if it is well formed and was
/// renewed within [`CLAIM_STALE_MS`] of `now_ms`.
#[must_use]
pub fn decode_claim(reporter: &str, value: &str, now_ms: u64) -> Option<Claim> {
    let reporter = reporter.parse().ok()?;
    let (demand, seen) = value.split_once(':')?;
    let seen: u64 = seen.parse().ok()?;
    if now_ms.saturating_sub(seen) >= CLAIM_STALE_MS {
        return None;
    }
    let demand_milli = match demand {
        "-" => None,
        d => Some(d.parse().ok()?),
    };
    Some(Claim {
        reporter,
        demand_milli,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(key: &str, reporter: u64, demand_milli: Option<u64>) -> DemandReport {
        DemandReport {
            key: key.to_owned(),
            claim: Claim {
                reporter,
                demand_milli,
            },
        }
    }

    #[test]
    fn a_bucket_holds_the_latest_claim_of_each_fresh_reporter() {
        let demands = MemoryDemands::default();
        let answers = demands.record(&[report("a", 1, None), report("b", 1, Some(5))], 0);
        assert_eq!(answers[0].len(), 1);
        let answers = demands.record(&[report("a", 2, Some(7))], 1_000);
        assert_eq!(answers[0].len(), 2, "two Envoys claim a");
        let answers = demands.record(&[report("a", 1, Some(9))], 2_000);
        assert_eq!(
            answers[0],
            [
                Claim {
                    reporter: 2,
                    demand_milli: Some(7)
                },
                Claim {
                    reporter: 1,
                    demand_milli: Some(9)
                }
            ],
            "a reporter's new claim replaces its old one"
        );
        // Reporter 2 went quiet: past the stale time only reporter 1 claims.
        let answers = demands.record(&[report("a", 1, Some(9))], 1_000 + CLAIM_STALE_MS);
        assert_eq!(answers[0].len(), 1);
        demands.forget(&["a".to_owned(), "b".to_owned()], 1);
        assert!(demands.is_empty());
    }

    #[test]
    fn buckets_nobody_claims_are_forgotten() {
        let demands = MemoryDemands::default();
        for n in 0..SWEEP_EVERY - 1 {
            let _ = demands.record(&[report(&n.to_string(), 1, None)], 0);
        }
        assert_eq!(demands.len(), usize::try_from(SWEEP_EVERY - 1).unwrap_or(0));
        // The sweep at the next report drops every stale bucket.
        let _ = demands.record(&[report("fresh", 1, None)], CLAIM_STALE_MS);
        assert_eq!(demands.len(), 1);
    }

    #[test]
    fn stored_claims_read_back_and_stale_or_garbled_ones_do_not() {
        let claim = Claim {
            reporter: 42,
            demand_milli: Some(1_500),
        };
        let value = encode_claim(&claim, 10_000);
        assert_eq!(decode_claim("42", &value, 10_000), Some(claim));
        let unmeasured = Claim {
            reporter: 42,
            demand_milli: None,
        };
        assert_eq!(
            decode_claim("42", &encode_claim(&unmeasured, 10_000), 11_000),
            Some(unmeasured)
        );
        assert_eq!(decode_claim("42", &value, 10_000 + CLAIM_STALE_MS), None);
        for (reporter, value) in [("x", "1:1"), ("1", "1"), ("1", "a:1"), ("1", "1:b")] {
            assert_eq!(decode_claim(reporter, value, 1), None, "{reporter} {value}");
        }
    }
}
