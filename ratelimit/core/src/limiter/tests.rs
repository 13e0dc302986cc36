use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};

use super::*;
use crate::request::{Descriptor, LimitOverride};
use crate::store::MemoryStore;

/// The memory store never waits, so one poll completes a check.
fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("memory store checks complete at once"),
    }
}

/// A memory store that counts round trips.
#[derive(Default)]
struct Counting {
    inner: MemoryStore,
    trips: AtomicUsize,
}

impl Store for Counting {
    fn execute(
        &self,
        ops: &[Op],
        now_ms: u64,
    ) -> impl Future<Output = Result<Vec<u64>, StoreError>> + Send {
        self.trips.fetch_add(1, Ordering::Relaxed);
        self.inner.execute(ops, now_ms)
    }
}

fn d(pairs: &[(&str, &str)]) -> Descriptor {
    Descriptor::from_pairs(pairs)
}

fn req(domain: &str, descriptors: Vec<Descriptor>) -> Request {
    Request::try_new(domain.to_owned(), descriptors, 1).unwrap()
}

struct Fixture {
    config: RateLimitConfig,
    limiter: Limiter,
    store: Counting,
}

impl Fixture {
    fn new(yaml: &str) -> Self {
        Self::with(yaml, LimiterSettings::default())
    }
    fn with(yaml: &str, settings: LimiterSettings) -> Self {
        Self {
            config: RateLimitConfig::load([("t.yaml", yaml)]).unwrap(),
            limiter: Limiter::new(settings),
            store: Counting::default(),
        }
    }
    fn check_at(&self, request: &Request, now_ms: u64) -> Decision {
        block_on(
            self.limiter
                .check(&self.config, request, &self.store, now_ms),
        )
        .unwrap()
    }
    /// Checks at a time well inside a minute window.
    fn check(&self, request: &Request) -> Decision {
        self.check_at(request, T0)
    }
    fn trips(&self) -> usize {
        self.store.trips.load(Ordering::Relaxed)
    }
}

/// 10 s into a minute (and an hour, and a day).
const T0: u64 = 1_700_006_400_000 + 10_000;

const LIMITS: &str = "
domain: api
descriptors:
  - key: user
    rate_limit: { unit: minute, requests_per_unit: 3, name: per-user }
  - key: blocked
    rate_limit: { unit: minute, requests_per_unit: 0 }
  - key: internal
    rate_limit: { unlimited: true }
  - key: shadow
    shadow_mode: true
    rate_limit: { unit: minute, requests_per_unit: 1 }
  - key: quota
    quota_mode: true
    rate_limit: { unit: minute, requests_per_unit: 1 }
  - key: vip
    rate_limit: { unit: minute, requests_per_unit: 10, replaces: [{ name: per-user }] }
  - key: smooth
    rate_limit: { unit: minute, requests_per_unit: 10, algorithm: sliding_window }
";

#[test]
fn nth_plus_one_request_in_the_window_is_over_limit() {
    let f = Fixture::new(LIMITS);
    let r = req("api", vec![d(&[("user", "alice")])]);
    for remaining in [2, 1, 0] {
        let decision = f.check(&r);
        assert_eq!(decision.overall, Code::Ok);
        assert_eq!(decision.statuses[0].limit_remaining, remaining);
        assert_eq!(decision.statuses[0].duration_until_reset, 50);
    }
    let decision = f.check(&r);
    assert_eq!(decision.overall, Code::OverLimit);
    assert_eq!(decision.statuses[0].code, Code::OverLimit);
    assert_eq!(
        decision.statuses[0].current_limit,
        Some(CurrentLimit {
            requests_per_unit: 3,
            unit: Unit::Minute,
            name: "per-user".into()
        })
    );
    assert_eq!(
        decision.response_headers,
        vec![("retry-after".to_owned(), "50".to_owned())]
    );
    // Another value of a key-only descriptor has its own counter.
    assert_eq!(
        f.check(&req("api", vec![d(&[("user", "bob")])])).overall,
        Code::Ok
    );
    // The next window starts over.
    assert_eq!(f.check_at(&r, T0 + 50_000).overall, Code::Ok);
}

#[test]
fn zero_requests_per_unit_blocks_and_no_rule_allows() {
    let f = Fixture::new(LIMITS);
    assert_eq!(
        f.check(&req("api", vec![d(&[("blocked", "x")])])).overall,
        Code::OverLimit
    );
    let free = f.check(&req("api", vec![d(&[("unknown", "x")])]));
    assert_eq!(free.overall, Code::Ok);
    assert_eq!(
        free.statuses[0],
        Status {
            code: Code::Ok,
            current_limit: None,
            limit_remaining: 0,
            duration_until_reset: 0
        }
    );
    assert_eq!(
        f.check(&req("elsewhere", vec![d(&[("user", "x")])]))
            .overall,
        Code::Ok
    );
}

#[test]
fn unlimited_is_answered_without_the_store() {
    let f = Fixture::new(LIMITS);
    let decision = f.check(&req("api", vec![d(&[("internal", "x")])]));
    assert_eq!(decision.statuses[0].limit_remaining, u32::MAX);
    assert_eq!(decision.statuses[0].current_limit, None);
    assert_eq!(f.trips(), 0);
}

#[test]
fn descriptors_are_ored_and_counted_in_one_round_trip() {
    let f = Fixture::new(LIMITS);
    let r = req("api", vec![d(&[("user", "carol")]), d(&[("blocked", "y")])]);
    let decision = f.check(&r);
    assert_eq!(decision.overall, Code::OverLimit);
    assert_eq!(decision.statuses[0].code, Code::Ok);
    assert_eq!(decision.statuses[1].code, Code::OverLimit);
    assert_eq!(f.trips(), 1);
}

#[test]
fn hits_addend_counts_several_and_descriptor_zero_peeks() {
    let f = Fixture::new(LIMITS);
    let heavy = Request::try_new("api".into(), vec![d(&[("user", "dave")])], 3).unwrap();
    assert_eq!(f.check(&heavy).statuses[0].limit_remaining, 0);
    let peek = req("api", vec![d(&[("user", "dave")]).with_hits_addend(0)]);
    let decision = f.check(&peek);
    assert_eq!(
        (decision.overall, decision.statuses[0].limit_remaining),
        (Code::Ok, 0)
    );
    assert_eq!(
        f.check(&peek).statuses[0].limit_remaining,
        0,
        "peeking twice counts nothing"
    );
    assert_eq!(
        f.check(&req("api", vec![d(&[("user", "dave")])])).overall,
        Code::OverLimit
    );
}

#[test]
fn envoy_limit_override_wins() {
    let f = Fixture::new(LIMITS);
    let over = LimitOverride {
        requests_per_unit: 1,
        unit: Unit::Hour,
    };
    let r = req("api", vec![d(&[("user", "erin")]).with_limit(over)]);
    assert_eq!(f.check(&r).overall, Code::Ok);
    let decision = f.check(&r);
    assert_eq!(decision.overall, Code::OverLimit);
    assert_eq!(
        decision.statuses[0].current_limit.as_ref().unwrap().unit,
        Unit::Hour
    );
}

#[test]
fn shadow_mode_counts_but_never_denies() {
    let f = Fixture::new(LIMITS);
    let r = req("api", vec![d(&[("shadow", "x")])]);
    f.check(&r);
    let decision = f.check(&r);
    assert_eq!(decision.overall, Code::Ok);
    assert_eq!(decision.statuses[0].code, Code::Ok);
    assert_eq!(decision.statuses[0].limit_remaining, 0);
    assert_eq!(decision.outcomes[0].over_limit, 1);
    assert_eq!(decision.outcomes[0].shadow_mode, 1);
}

#[test]
fn global_shadow_mode_keeps_statuses_but_allows() {
    let settings = LimiterSettings {
        shadow_mode: true,
        ..LimiterSettings::default()
    };
    let f = Fixture::with(LIMITS, settings);
    let decision = f.check(&req("api", vec![d(&[("blocked", "x")])]));
    assert_eq!(decision.overall, Code::Ok);
    assert_eq!(decision.statuses[0].code, Code::OverLimit);
    assert!(
        decision.response_headers.is_empty(),
        "no retry-after when allowed"
    );
}

#[test]
fn replaces_drops_the_named_rule_and_leaves_its_counter_alone() {
    let f = Fixture::new(LIMITS);
    let both = req("api", vec![d(&[("user", "frank")]), d(&[("vip", "frank")])]);
    for _ in 0..5 {
        let decision = f.check(&both);
        assert_eq!(decision.overall, Code::Ok);
        assert_eq!(
            decision.statuses[0].current_limit, None,
            "per-user is replaced"
        );
    }
    // per-user's counter never moved: frank still has all 3.
    assert_eq!(
        f.check(&req("api", vec![d(&[("user", "frank")])])).statuses[0].limit_remaining,
        2
    );
}

#[test]
fn quota_descriptors_deny_only_when_all_of_them_are_over() {
    let f = Fixture::new(LIMITS);
    let q = req("api", vec![d(&[("quota", "q")])]);
    assert_eq!(f.check(&q).overall, Code::Ok);
    // q is used up; r still has its quota, and a normal descriptor is within.
    let mixed = req(
        "api",
        vec![
            d(&[("quota", "q")]),
            d(&[("quota", "r")]),
            d(&[("user", "gina")]),
        ],
    );
    let decision = f.check(&mixed);
    assert_eq!(decision.statuses[0].code, Code::OverLimit);
    assert_eq!(decision.statuses[1].code, Code::Ok);
    assert_eq!(decision.overall, Code::Ok, "one quota over is not a denial");
    let decision = f.check(&req(
        "api",
        vec![d(&[("quota", "q")]), d(&[("quota", "r")])],
    ));
    assert_eq!(
        decision.overall,
        Code::OverLimit,
        "every quota descriptor is over"
    );
}

#[test]
fn response_headers_follow_the_most_constrained_limit() {
    let settings = LimiterSettings {
        response_headers: Some(HeaderNames::default()),
        ..LimiterSettings::default()
    };
    let f = Fixture::with(LIMITS, settings);
    let r = req("api", vec![d(&[("smooth", "h")]), d(&[("user", "hank")])]);
    let decision = f.check(&r);
    let header = |name: &str| {
        decision
            .response_headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(header("RateLimit-Limit"), Some("3"));
    assert_eq!(header("RateLimit-Remaining"), Some("2"));
    assert_eq!(header("RateLimit-Reset"), Some("50"));
    assert_eq!(header("retry-after"), None);
}

#[test]
fn local_cache_answers_known_over_limit_keys_without_the_store() {
    let settings = LimiterSettings {
        local_cache_entries: 100,
        ..LimiterSettings::default()
    };
    let f = Fixture::with(LIMITS, settings);
    let r = req("api", vec![d(&[("blocked", "x")])]);
    f.check(&r);
    let trips = f.trips();
    let decision = f.check(&r);
    assert_eq!(decision.overall, Code::OverLimit);
    assert_eq!(decision.outcomes[0].over_limit_with_local_cache, 1);
    assert_eq!(f.trips(), trips, "answered from the cache");
    // The next window asks the store again.
    f.check_at(&r, T0 + 60_000);
    assert_eq!(f.trips(), trips + 1);
}

#[test]
fn sliding_window_smooths_the_boundary_burst() {
    let f = Fixture::new(LIMITS);
    let end_of_window = T0 + 49_000; // 59 s into the minute
    let (early, late) = (
        req("api", vec![d(&[("smooth", "a")])]),
        req("api", vec![d(&[("smooth", "b")])]),
    );
    for r in [&early, &late] {
        for _ in 0..10 {
            assert_eq!(f.check_at(r, end_of_window).overall, Code::Ok);
        }
    }
    // A fixed window would allow 10 more right after the boundary; the
    // sliding window still sees 59/60 of the previous 10 (rounded down: 9).
    let next = T0 + 51_000; // 1 s into the next minute
    let allowed = (0..10)
        .filter(|_| f.check_at(&early, next).overall == Code::Ok)
        .count();
    assert_eq!(allowed, 1);
    // Half a minute in, half of the previous window has slid out.
    let half = T0 + 80_000; // 30 s into the next minute
    let allowed = (0..10)
        .filter(|_| f.check_at(&late, half).overall == Code::Ok)
        .count();
    assert_eq!(allowed, 5);
}

#[test]
fn near_limit_and_within_stats_follow_the_reference() {
    let f = Fixture::new(
        "domain: n\ndescriptors:\n  - key: k\n    rate_limit: { unit: minute, requests_per_unit: 10 }\n",
    );
    let r = Request::try_new("n".into(), vec![d(&[("k", "v")])], 9).unwrap();
    let first = f.check(&r);
    // 9 hits: 8 is the near threshold (0.8 × 10), so 1 is near.
    assert_eq!(
        (first.outcomes[0].within_limit, first.outcomes[0].near_limit),
        (9, 1)
    );
    let second = f.check(&r);
    // 9 more: 1 fits (near), 8 over.
    let o = &second.outcomes[0];
    assert_eq!(
        (o.total_hits, o.over_limit, o.near_limit, o.within_limit),
        (9, 8, 1, 0)
    );
}

#[test]
fn a_descriptor_without_entries_matches_nothing() {
    let f = Fixture::new(LIMITS);
    let decision = f.check(&req("api", vec![d(&[]), d(&[("blocked", "x")])]));
    assert_eq!(
        decision.statuses[0],
        Status {
            code: Code::Ok,
            current_limit: None,
            limit_remaining: 0,
            duration_until_reset: 0
        }
    );
    assert_eq!(decision.overall, Code::OverLimit);
}

#[test]
fn an_underscore_value_does_not_spend_another_tenants_limit() {
    // Joined with bare `_`, both descriptors counted in `d_tenant_victim_plan_free_<window>`.
    let f = Fixture::new(
        "
domain: d
descriptors:
  - key: tenant
    rate_limit: { unit: minute, requests_per_unit: 1 }
    descriptors:
      - key: plan
        value: free
        rate_limit: { unit: minute, requests_per_unit: 1 }
",
    );
    let attacker = req("d", vec![d(&[("tenant", "victim_plan_free")])]);
    let victim = req("d", vec![d(&[("tenant", "victim"), ("plan", "free")])]);
    assert_eq!(f.check(&attacker).overall, Code::Ok);
    assert_eq!(f.check(&attacker).overall, Code::OverLimit);
    assert_eq!(
        f.check(&victim).overall,
        Code::Ok,
        "the victim's own counter is untouched"
    );
}

#[test]
fn over_long_values_count_under_their_digest() {
    let f = Fixture::new(LIMITS);
    let long = "u".repeat(5000);
    let mut other = long.clone();
    other.replace_range(4999.., "v");
    let r = req("api", vec![d(&[("user", &long)])]);
    for _ in 0..3 {
        assert_eq!(f.check(&r).overall, Code::Ok);
    }
    assert_eq!(
        f.check(&r).overall,
        Code::OverLimit,
        "the same value counts together"
    );
    assert_eq!(
        f.check(&req("api", vec![d(&[("user", &other)])])).overall,
        Code::Ok,
        "another long value counts apart"
    );
}

/// A memory store that records the hits it was asked to add.
#[derive(Default)]
struct Recording {
    inner: MemoryStore,
    hits: std::sync::Mutex<Vec<u64>>,
}

impl Store for Recording {
    fn execute(
        &self,
        ops: &[Op],
        now_ms: u64,
    ) -> impl Future<Output = Result<Vec<u64>, StoreError>> + Send {
        if let Ok(mut hits) = self.hits.lock() {
            hits.extend(ops.iter().filter_map(|op| match op {
                Op::IncrBy { hits, .. } => Some(*hits),
                Op::Get { .. } => None,
            }));
        }
        self.inner.execute(ops, now_ms)
    }
}

fn huge(descriptor: Descriptor) -> Request {
    Request::try_new("api".into(), vec![descriptor.with_hits_addend(u64::MAX)], 1).unwrap()
}

#[test]
fn a_huge_hits_addend_reaches_the_store_clamped_and_is_over_limit() {
    // Redis refuses INCRBY past i64::MAX: unclamped, the call failed and the
    // failure policy (often "allow") answered.
    let store = Recording::default();
    let limiter = Limiter::new(LimiterSettings::default());
    let config = RateLimitConfig::load([("t.yaml", LIMITS)]).unwrap();
    let decision =
        block_on(limiter.check(&config, &huge(d(&[("user", "hugo")])), &store, T0)).unwrap();
    assert_eq!(decision.overall, Code::OverLimit);
    assert_eq!(*store.hits.lock().unwrap(), vec![crate::request::MAX_HITS]);
}

#[test]
fn a_huge_hits_addend_is_over_limit_from_the_local_cache() {
    let settings = LimiterSettings {
        local_cache_entries: 100,
        ..LimiterSettings::default()
    };
    let f = Fixture::with(LIMITS, settings);
    let r = req("api", vec![d(&[("blocked", "x")])]);
    assert_eq!(f.check(&r).overall, Code::OverLimit);
    // Answered from the cache: `limit + hits` must not wrap to under the limit.
    let decision = f.check(&huge(d(&[("blocked", "x")])));
    assert_eq!(decision.overall, Code::OverLimit);
    assert_eq!(decision.statuses[0].limit_remaining, 0);
}

#[test]
fn a_huge_hits_addend_is_over_limit_in_a_sliding_window() {
    let f = Fixture::new(LIMITS);
    // The previous window is well used, the current one gets a huge addend:
    // their weighted sum must saturate, not wrap.
    for _ in 0..8 {
        f.check_at(&req("api", vec![d(&[("smooth", "s")])]), T0 - 60_000);
    }
    for _ in 0..3 {
        let decision = f.check_at(&huge(d(&[("smooth", "s")])), T0);
        assert_eq!(decision.overall, Code::OverLimit);
    }
}
