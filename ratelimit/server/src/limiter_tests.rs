//! The limiter's behaviour over every counter store: each test body below
//! runs over the `MemoryStore` and over a `RedisStore` talking to its own
//! `redis-server`, as Kuadrant/limitador's `test_with_all_storage_impls!`
//! does. They live in this crate because `RedisStore` does; the core crate
//! keeps its store-free tests and its reference examples (over memory).

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use gatehouse_ratelimit_core::{
    Code, CurrentLimit, Decision, Descriptor, HeaderNames, LimitOverride, Limiter, LimiterSettings,
    MAX_HITS, MemoryStore, Op, RateLimitConfig, Request, Status, Store, StoreError, Unit,
};

use crate::settings::{RedisSettings, RedisType};
use crate::store::{Backend, RedisMetrics, RedisStore};

/// Turns each named `async fn name(store: impl Store)` into a module of two
/// tests, `name::memory` and `name::redis`.
macro_rules! test_with_all_stores {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn memory() {
                super::$name(super::MemoryStore::new()).await;
            }

            #[tokio::test]
            async fn redis() {
                let redis = super::TestRedis::start().await;
                super::$name(redis.store().await).await;
            }
        }
    )+};
}

test_with_all_stores!(
    nth_plus_one_request_in_the_window_is_over_limit,
    zero_requests_per_unit_blocks_and_no_rule_allows,
    unlimited_is_answered_without_the_store,
    descriptors_are_ored_and_counted_in_one_round_trip,
    hits_addend_counts_several_and_descriptor_zero_peeks,
    envoy_limit_override_wins,
    shadow_mode_counts_but_never_denies,
    global_shadow_mode_keeps_statuses_but_allows,
    replaces_drops_the_named_rule_and_leaves_its_counter_alone,
    quota_descriptors_deny_only_when_all_of_them_are_over,
    response_headers_follow_the_most_constrained_limit,
    local_cache_answers_known_over_limit_keys_without_the_store,
    sliding_window_smooths_the_boundary_burst,
    near_limit_and_within_stats_follow_the_reference,
    a_descriptor_without_entries_matches_nothing,
    an_underscore_value_does_not_spend_another_tenants_limit,
    over_long_values_count_under_their_digest,
    a_huge_hits_addend_reaches_the_store_clamped_and_is_over_limit,
    a_huge_hits_addend_is_over_limit_from_the_local_cache,
    a_huge_hits_addend_is_over_limit_in_a_sliding_window,
);

// === the stores ===

/// A private `redis-server` on a free loopback port that keeps nothing on
/// disk, killed when dropped.
struct TestRedis {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl TestRedis {
    async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let child = std::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("redis-server not found ({e}): run `make setup` (installs the Debian package redis-server)")
            });
        let redis = Self {
            child,
            port,
            _dir: dir,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not answer"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        redis
    }

    /// The service's Redis store, as `REDIS_SOCKET_TYPE=tcp` and
    /// `REDIS_URL=127.0.0.1:<port>` configure it, without expiry jitter.
    async fn store(&self) -> Backend {
        let settings = RedisSettings {
            socket_type: "tcp".into(),
            url: format!("127.0.0.1:{}", self.port),
            kind: RedisType::Single,
            auth: String::new(),
            tls: false,
            pool_size: 2,
            connect_timeout: Duration::from_secs(5),
            // Generous: a loaded test machine must not turn into a timeout.
            op_timeout: Duration::from_secs(5),
            max_pending: 4096,
            expiration_jitter_max_seconds: 0,
        };
        let metrics = RedisMetrics {
            batch_sizes: prometheus_client::metrics::histogram::Histogram::new([1.0]),
            pending: prometheus_client::metrics::gauge::Gauge::default(),
            overloaded: prometheus_client::metrics::counter::Counter::default(),
        };
        // `connect` PINGs once; the port may accept before Redis answers.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match RedisStore::connect(&settings, metrics.clone()).await {
                Ok(store) => return Backend::Redis(store),
                Err(e) => assert!(
                    std::time::Instant::now() < deadline,
                    "redis-server did not answer PING: {e:#}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A store that counts round trips.
struct Counting<S> {
    inner: S,
    trips: AtomicUsize,
}

impl<S: Store> Store for Counting<S> {
    fn execute(
        &self,
        ops: &[Op],
        now_ms: u64,
    ) -> impl Future<Output = Result<Vec<u64>, StoreError>> + Send {
        self.trips.fetch_add(1, Ordering::Relaxed);
        self.inner.execute(ops, now_ms)
    }
}

/// A store that records the hits it was asked to add.
struct Recording<S> {
    inner: S,
    hits: std::sync::Mutex<Vec<u64>>,
}

impl<S: Store> Store for Recording<S> {
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

// === the fixture ===

fn d(pairs: &[(&str, &str)]) -> Descriptor {
    Descriptor::from_pairs(pairs)
}

fn req(domain: &str, descriptors: Vec<Descriptor>) -> Request {
    Request::try_new(domain.to_owned(), descriptors, 1).unwrap()
}

fn huge(descriptor: Descriptor) -> Request {
    Request::try_new("api".into(), vec![descriptor.with_hits_addend(u64::MAX)], 1).unwrap()
}

struct Fixture<S> {
    config: RateLimitConfig,
    limiter: Limiter,
    store: Counting<S>,
}

impl<S: Store> Fixture<S> {
    fn new(yaml: &str, store: S) -> Self {
        Self::with(yaml, LimiterSettings::default(), store)
    }
    fn with(yaml: &str, settings: LimiterSettings, store: S) -> Self {
        Self {
            config: RateLimitConfig::load([("t.yaml", yaml)]).unwrap(),
            limiter: Limiter::new(settings),
            store: Counting {
                inner: store,
                trips: AtomicUsize::new(0),
            },
        }
    }
    async fn check_at(&self, request: &Request, now_ms: u64) -> Decision {
        self.limiter
            .check(&self.config, request, &self.store, now_ms)
            .await
            .unwrap()
    }
    /// Checks at a time well inside a minute window.
    async fn check(&self, request: &Request) -> Decision {
        self.check_at(request, T0).await
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

// === the bodies ===

async fn nth_plus_one_request_in_the_window_is_over_limit(store: impl Store) {
    let f = Fixture::new(LIMITS, store);
    let r = req("api", vec![d(&[("user", "alice")])]);
    for remaining in [2, 1, 0] {
        let decision = f.check(&r).await;
        assert_eq!(decision.overall, Code::Ok);
        assert_eq!(decision.statuses[0].limit_remaining, remaining);
        assert_eq!(decision.statuses[0].duration_until_reset, 50);
    }
    let decision = f.check(&r).await;
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
        f.check(&req("api", vec![d(&[("user", "bob")])]))
            .await
            .overall,
        Code::Ok
    );
    // The next window starts over.
    assert_eq!(f.check_at(&r, T0 + 50_000).await.overall, Code::Ok);
}

async fn zero_requests_per_unit_blocks_and_no_rule_allows(store: impl Store) {
    let f = Fixture::new(LIMITS, store);
    assert_eq!(
        f.check(&req("api", vec![d(&[("blocked", "x")])]))
            .await
            .overall,
        Code::OverLimit
    );
    let free = f.check(&req("api", vec![d(&[("unknown", "x")])])).await;
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
            .await
            .overall,
        Code::Ok
    );
}

async fn unlimited_is_answered_without_the_store(store: impl Store) {
    let f = Fixture::new(LIMITS, store);
    let decision = f.check(&req("api", vec![d(&[("internal", "x")])])).await;
    assert_eq!(decision.statuses[0].limit_remaining, u32::MAX);
    assert_eq!(decision.statuses[0].current_limit, None);
    assert_eq!(f.trips(), 0);
}

async fn descriptors_are_ored_and_counted_in_one_round_trip(store: impl Store) {
    let f = Fixture::new(LIMITS, store);
    let r = req("api", vec![d(&[("user", "carol")]), d(&[("blocked", "y")])]);
    let decision = f.check(&r).await;
    assert_eq!(decision.overall, Code::OverLimit);
    assert_eq!(decision.statuses[0].code, Code::Ok);
    assert_eq!(decision.statuses[1].code, Code::OverLimit);
    assert_eq!(f.trips(), 1);
}

async fn hits_addend_counts_several_and_descriptor_zero_peeks(store: impl Store) {
    let f = Fixture::new(LIMITS, store);
    let heavy = Request::try_new("api".into(), vec![d(&[("user", "dave")])], 3).unwrap();
    assert_eq!(f.check(&heavy).await.statuses[0].limit_remaining, 0);
    let peek = req("api", vec![d(&[("user", "dave")]).with_hits_addend(0)]);
    let decision = f.check(&peek).await;
    assert_eq!(
        (decision.overall, decision.statuses[0].limit_remaining),
        (Code::Ok, 0)
    );
    assert_eq!(
        f.check(&peek).await.statuses[0].limit_remaining,
        0,
        "peeking twice counts nothing"
    );
    assert_eq!(
        f.check(&req("api", vec![d(&[("user", "dave")])]))
            .await
            .overall,
        Code::OverLimit
    );
}

async fn envoy_limit_override_wins(store: impl Store) {
    let f = Fixture::new(LIMITS, store);
    let over = LimitOverride {
        requests_per_unit: 1,
        unit: Unit::Hour,
    };
    let r = req("api", vec![d(&[("user", "erin")]).with_limit(over)]);
    assert_eq!(f.check(&r).await.overall, Code::Ok);
    let decision = f.check(&r).await;
    assert_eq!(decision.overall, Code::OverLimit);
    assert_eq!(
        decision.statuses[0].current_limit.as_ref().unwrap().unit,
        Unit::Hour
    );
}

async fn shadow_mode_counts_but_never_denies(store: impl Store) {
    let f = Fixture::new(LIMITS, store);
    let r = req("api", vec![d(&[("shadow", "x")])]);
    f.check(&r).await;
    let decision = f.check(&r).await;
    assert_eq!(decision.overall, Code::Ok);
    assert_eq!(decision.statuses[0].code, Code::Ok);
    assert_eq!(decision.statuses[0].limit_remaining, 0);
    assert_eq!(decision.outcomes[0].over_limit, 1);
    assert_eq!(decision.outcomes[0].shadow_mode, 1);
}

async fn global_shadow_mode_keeps_statuses_but_allows(store: impl Store) {
    let settings = LimiterSettings {
        shadow_mode: true,
        ..LimiterSettings::default()
    };
    let f = Fixture::with(LIMITS, settings, store);
    let decision = f.check(&req("api", vec![d(&[("blocked", "x")])])).await;
    assert_eq!(decision.overall, Code::Ok);
    assert_eq!(decision.statuses[0].code, Code::OverLimit);
    assert!(
        decision.response_headers.is_empty(),
        "no retry-after when allowed"
    );
}

async fn replaces_drops_the_named_rule_and_leaves_its_counter_alone(store: impl Store) {
    let f = Fixture::new(LIMITS, store);
    let both = req("api", vec![d(&[("user", "frank")]), d(&[("vip", "frank")])]);
    for _ in 0..5 {
        let decision = f.check(&both).await;
        assert_eq!(decision.overall, Code::Ok);
        assert_eq!(
            decision.statuses[0].current_limit, None,
            "per-user is replaced"
        );
    }
    // per-user's counter never moved: frank still has all 3.
    assert_eq!(
        f.check(&req("api", vec![d(&[("user", "frank")])]))
            .await
            .statuses[0]
            .limit_remaining,
        2
    );
}

async fn quota_descriptors_deny_only_when_all_of_them_are_over(store: impl Store) {
    let f = Fixture::new(LIMITS, store);
    let q = req("api", vec![d(&[("quota", "q")])]);
    assert_eq!(f.check(&q).await.overall, Code::Ok);
    // q is used up; r still has its quota, and a normal descriptor is within.
    let mixed = req(
        "api",
        vec![
            d(&[("quota", "q")]),
            d(&[("quota", "r")]),
            d(&[("user", "gina")]),
        ],
    );
    let decision = f.check(&mixed).await;
    assert_eq!(decision.statuses[0].code, Code::OverLimit);
    assert_eq!(decision.statuses[1].code, Code::Ok);
    assert_eq!(decision.overall, Code::Ok, "one quota over is not a denial");
    let decision = f
        .check(&req(
            "api",
            vec![d(&[("quota", "q")]), d(&[("quota", "r")])],
        ))
        .await;
    assert_eq!(
        decision.overall,
        Code::OverLimit,
        "every quota descriptor is over"
    );
}

async fn response_headers_follow_the_most_constrained_limit(store: impl Store) {
    let settings = LimiterSettings {
        response_headers: Some(HeaderNames::default()),
        ..LimiterSettings::default()
    };
    let f = Fixture::with(LIMITS, settings, store);
    let r = req("api", vec![d(&[("smooth", "h")]), d(&[("user", "hank")])]);
    let decision = f.check(&r).await;
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

async fn local_cache_answers_known_over_limit_keys_without_the_store(store: impl Store) {
    let settings = LimiterSettings {
        local_cache_entries: 100,
        ..LimiterSettings::default()
    };
    let f = Fixture::with(LIMITS, settings, store);
    let r = req("api", vec![d(&[("blocked", "x")])]);
    f.check(&r).await;
    let trips = f.trips();
    let decision = f.check(&r).await;
    assert_eq!(decision.overall, Code::OverLimit);
    assert_eq!(decision.outcomes[0].over_limit_with_local_cache, 1);
    assert_eq!(f.trips(), trips, "answered from the cache");
    // The next window asks the store again.
    f.check_at(&r, T0 + 60_000).await;
    assert_eq!(f.trips(), trips + 1);
}

async fn sliding_window_smooths_the_boundary_burst(store: impl Store) {
    let f = Fixture::new(LIMITS, store);
    let end_of_window = T0 + 49_000; // 59 s into the minute
    let (early, late) = (
        req("api", vec![d(&[("smooth", "a")])]),
        req("api", vec![d(&[("smooth", "b")])]),
    );
    for r in [&early, &late] {
        for _ in 0..10 {
            assert_eq!(f.check_at(r, end_of_window).await.overall, Code::Ok);
        }
    }
    // A fixed window would allow 10 more right after the boundary; the
    // sliding window still sees 59/60 of the previous 10 (rounded down: 9).
    let next = T0 + 51_000; // 1 s into the next minute
    let mut allowed = 0;
    for _ in 0..10 {
        if f.check_at(&early, next).await.overall == Code::Ok {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 1);
    // Half a minute in, half of the previous window has slid out.
    let half = T0 + 80_000; // 30 s into the next minute
    let mut allowed = 0;
    for _ in 0..10 {
        if f.check_at(&late, half).await.overall == Code::Ok {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 5);
}

async fn near_limit_and_within_stats_follow_the_reference(store: impl Store) {
    let f = Fixture::new(
        "domain: n\ndescriptors:\n  - key: k\n    rate_limit: { unit: minute, requests_per_unit: 10 }\n",
        store,
    );
    let r = Request::try_new("n".into(), vec![d(&[("k", "v")])], 9).unwrap();
    let first = f.check(&r).await;
    // 9 hits: 8 is the near threshold (0.8 × 10), so 1 is near.
    assert_eq!(
        (first.outcomes[0].within_limit, first.outcomes[0].near_limit),
        (9, 1)
    );
    let second = f.check(&r).await;
    // 9 more: 1 fits (near), 8 over.
    let o = &second.outcomes[0];
    assert_eq!(
        (o.total_hits, o.over_limit, o.near_limit, o.within_limit),
        (9, 8, 1, 0)
    );
}

async fn a_descriptor_without_entries_matches_nothing(store: impl Store) {
    let f = Fixture::new(LIMITS, store);
    let decision = f
        .check(&req("api", vec![d(&[]), d(&[("blocked", "x")])]))
        .await;
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

async fn an_underscore_value_does_not_spend_another_tenants_limit(store: impl Store) {
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
        store,
    );
    let attacker = req("d", vec![d(&[("tenant", "victim_plan_free")])]);
    let victim = req("d", vec![d(&[("tenant", "victim"), ("plan", "free")])]);
    assert_eq!(f.check(&attacker).await.overall, Code::Ok);
    assert_eq!(f.check(&attacker).await.overall, Code::OverLimit);
    assert_eq!(
        f.check(&victim).await.overall,
        Code::Ok,
        "the victim's own counter is untouched"
    );
}

async fn over_long_values_count_under_their_digest(store: impl Store) {
    let f = Fixture::new(LIMITS, store);
    let long = "u".repeat(5000);
    let mut other = long.clone();
    other.replace_range(4999.., "v");
    let r = req("api", vec![d(&[("user", &long)])]);
    for _ in 0..3 {
        assert_eq!(f.check(&r).await.overall, Code::Ok);
    }
    assert_eq!(
        f.check(&r).await.overall,
        Code::OverLimit,
        "the same value counts together"
    );
    assert_eq!(
        f.check(&req("api", vec![d(&[("user", &other)])]))
            .await
            .overall,
        Code::Ok,
        "another long value counts apart"
    );
}

async fn a_huge_hits_addend_reaches_the_store_clamped_and_is_over_limit(store: impl Store) {
    // Redis refuses INCRBY past i64::MAX: unclamped, the call failed and the
    // failure policy (often "allow") answered.
    let store = Recording {
        inner: store,
        hits: std::sync::Mutex::default(),
    };
    let limiter = Limiter::new(LimiterSettings::default());
    let config = RateLimitConfig::load([("t.yaml", LIMITS)]).unwrap();
    let decision = limiter
        .check(&config, &huge(d(&[("user", "hugo")])), &store, T0)
        .await
        .unwrap();
    assert_eq!(decision.overall, Code::OverLimit);
    assert_eq!(*store.hits.lock().unwrap(), vec![MAX_HITS]);
}

async fn a_huge_hits_addend_is_over_limit_from_the_local_cache(store: impl Store) {
    let settings = LimiterSettings {
        local_cache_entries: 100,
        ..LimiterSettings::default()
    };
    let f = Fixture::with(LIMITS, settings, store);
    let r = req("api", vec![d(&[("blocked", "x")])]);
    assert_eq!(f.check(&r).await.overall, Code::OverLimit);
    // Answered from the cache: `limit + hits` must not wrap to under the limit.
    let decision = f.check(&huge(d(&[("blocked", "x")]))).await;
    assert_eq!(decision.overall, Code::OverLimit);
    assert_eq!(decision.statuses[0].limit_remaining, 0);
}

async fn a_huge_hits_addend_is_over_limit_in_a_sliding_window(store: impl Store) {
    let f = Fixture::new(LIMITS, store);
    // The previous window is well used, the current one gets a huge addend:
    // their weighted sum must saturate, not wrap.
    for _ in 0..8 {
        f.check_at(&req("api", vec![d(&[("smooth", "s")])]), T0 - 60_000)
            .await;
    }
    for _ in 0..3 {
        let decision = f.check_at(&huge(d(&[("smooth", "s")])), T0).await;
        assert_eq!(decision.overall, Code::OverLimit);
    }
}
