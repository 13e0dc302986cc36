//! The configuration examples of envoyproxy/ratelimit's README (1 to 11),
//! rewritten with our own names in `ratelimit/testdata/reference-examples/`,
//! loaded through the public API and driven as the README describes them.
//!
//! Every check runs at the fixed time [`T0`], so no test straddles a window.
// Test helpers outside #[test] functions: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::Future;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

use gatehouse_ratelimit_core::{
    Code, CurrentLimit, Decision, Descriptor, Limiter, LimiterSettings, MemoryStore, Op,
    RateLimitConfig, Request, Status, Store, StoreError, Unit,
};

const DIR: &str = "ratelimit/testdata/reference-examples";

const EXACT_VALUES: &str = include_str!("../../testdata/reference-examples/01-exact-values.yaml");
const NESTED_AND_ORED: &str =
    include_str!("../../testdata/reference-examples/02-nested-and-ored.yaml");
const PER_IP_BLOCKLIST: &str =
    include_str!("../../testdata/reference-examples/03-per-ip-blocklist.yaml");
const DEPTH_MISMATCH: &str =
    include_str!("../../testdata/reference-examples/04-depth-mismatch.yaml");
const UNLIMITED: &str = include_str!("../../testdata/reference-examples/05-unlimited.yaml");
const SHADOW_MODE: &str = include_str!("../../testdata/reference-examples/06-shadow-mode.yaml");
const REPLACES: &str = include_str!("../../testdata/reference-examples/07-replaces.yaml");
const DETAILED_METRIC: &str =
    include_str!("../../testdata/reference-examples/08-detailed-metric.yaml");
const WILDCARDS: &str = include_str!("../../testdata/reference-examples/09-wildcards.yaml");
const VALUE_TO_METRIC: &str =
    include_str!("../../testdata/reference-examples/10-value-to-metric.yaml");
const VALUE_TO_METRIC_WILDCARD: &str =
    include_str!("../../testdata/reference-examples/10-value-to-metric-wildcard.yaml");
const SHARE_THRESHOLD: &str =
    include_str!("../../testdata/reference-examples/11-share-threshold.yaml");
const SHARE_THRESHOLD_METRICS: &str =
    include_str!("../../testdata/reference-examples/11-share-threshold-metrics.yaml");

/// Every file of the directory: (file name, text, its one domain).
const FILES: [(&str, &str, &str); 13] = [
    ("01-exact-values.yaml", EXACT_VALUES, "catalog_db_qps"),
    ("02-nested-and-ored.yaml", NESTED_AND_ORED, "sms_gateway"),
    (
        "03-per-ip-blocklist.yaml",
        PER_IP_BLOCKLIST,
        "edge_ingress_ip",
    ),
    ("04-depth-mismatch.yaml", DEPTH_MISMATCH, "depth_demo"),
    ("05-unlimited.yaml", UNLIMITED, "directory_sync"),
    ("06-shadow-mode.yaml", SHADOW_MODE, "auth_rollout"),
    ("07-replaces.yaml", REPLACES, "tiered_quota"),
    ("08-detailed-metric.yaml", DETAILED_METRIC, "tenant_metrics"),
    ("09-wildcards.yaml", WILDCARDS, "wildcard_routes"),
    ("10-value-to-metric.yaml", VALUE_TO_METRIC, "vtm_paths"),
    (
        "10-value-to-metric-wildcard.yaml",
        VALUE_TO_METRIC_WILDCARD,
        "vtm_wildcards",
    ),
    ("11-share-threshold.yaml", SHARE_THRESHOLD, "shared_buckets"),
    (
        "11-share-threshold-metrics.yaml",
        SHARE_THRESHOLD_METRICS,
        "shared_bucket_stats",
    ),
];

/// 10.25 s into a day (so also into a minute, an hour and a second window):
/// every check of a test lands in the same window of every unit.
const T0: u64 = 19_676 * 86_400_000 + 10_250;
/// Unix seconds of [`T0`].
const NOW: u64 = T0 / 1000;

// === harness ===

/// The memory store never waits, so one poll completes a check.
fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("memory store checks complete at once"),
    }
}

/// A memory store that records every batch it is sent.
#[derive(Default)]
struct Recording {
    inner: MemoryStore,
    batches: Mutex<Vec<Vec<Op>>>,
}

impl Recording {
    /// Store round trips so far.
    fn trips(&self) -> usize {
        self.batches.lock().unwrap().len()
    }

    /// Keys incremented by the last round trip.
    fn last_keys(&self) -> Vec<String> {
        let batches = self.batches.lock().unwrap();
        batches
            .last()
            .map(|ops| ops.iter().map(|op| op.key().to_owned()).collect())
            .unwrap_or_default()
    }

    /// The counter `key` holds now, read without counting.
    fn count(&self, key: &str) -> u64 {
        self.inner.apply(
            &[Op::Get {
                key: key.to_owned(),
            }],
            T0,
        )[0]
    }
}

impl Store for Recording {
    fn execute(
        &self,
        ops: &[Op],
        now_ms: u64,
    ) -> impl Future<Output = Result<Vec<u64>, StoreError>> + Send {
        self.batches.lock().unwrap().push(ops.to_vec());
        self.inner.execute(ops, now_ms)
    }
}

/// One example file, loaded alone, with a fresh store.
struct Example {
    domain: &'static str,
    config: RateLimitConfig,
    limiter: Limiter,
    store: Recording,
}

impl Example {
    fn load(file: &str, yaml: &str, domain: &'static str) -> Self {
        let config = RateLimitConfig::load([(file, yaml)]).unwrap();
        let domains: Vec<&str> = config.domains().collect();
        assert_eq!(domains, vec![domain], "{file} holds exactly one domain");
        Self {
            domain,
            config,
            limiter: Limiter::new(LimiterSettings::default()),
            store: Recording::default(),
        }
    }

    /// Checks the descriptors at [`T0`], each counting `hits`.
    fn check_hits(&self, descriptors: Vec<Descriptor>, hits: u64) -> Decision {
        let request = Request::try_new(self.domain.to_owned(), descriptors, hits).unwrap();
        block_on(self.limiter.check(&self.config, &request, &self.store, T0)).unwrap()
    }

    /// Checks the descriptors at [`T0`], one hit each.
    fn check(&self, descriptors: Vec<Descriptor>) -> Decision {
        self.check_hits(descriptors, 1)
    }

    /// Checks one descriptor `n` times, one hit each, and returns the
    /// remaining counts reported, asserting that every check was allowed.
    fn allow_n(&self, pairs: &[(&str, &str)], n: u32) -> Vec<u32> {
        (0..n)
            .map(|i| {
                let decision = self.check(vec![d(pairs)]);
                assert_eq!(decision.overall, Code::Ok, "check {} of {pairs:?}", i + 1);
                decision.statuses[0].limit_remaining
            })
            .collect()
    }
}

fn d(pairs: &[(&str, &str)]) -> Descriptor {
    Descriptor::from_pairs(pairs)
}

fn limit(requests_per_unit: u32, unit: Unit) -> Option<CurrentLimit> {
    Some(CurrentLimit {
        requests_per_unit,
        unit,
        name: String::new(),
    })
}

/// The status of a descriptor no rule applied to.
fn no_match() -> Status {
    Status {
        code: Code::Ok,
        current_limit: None,
        limit_remaining: 0,
        duration_until_reset: 0,
    }
}

fn stat_keys(decision: &Decision) -> Vec<&str> {
    decision
        .outcomes
        .iter()
        .map(|o| o.stat_key.as_str())
        .collect()
}

fn window(unit: Unit) -> u64 {
    unit.window_start(NOW)
}

// === loading ===

#[test]
fn every_example_loads_on_its_own() {
    for (file, yaml, domain) in FILES {
        let config =
            RateLimitConfig::load([(file, yaml)]).unwrap_or_else(|e| panic!("{DIR}/{file}: {e}"));
        assert_eq!(config.domains().collect::<Vec<_>>(), vec![domain], "{file}");
        assert!(!config.rules().is_empty(), "{file} has limits");
    }
}

#[test]
fn all_examples_load_together_as_one_directory() {
    let config = RateLimitConfig::load(FILES.iter().map(|(file, yaml, _)| (*file, *yaml)))
        .unwrap_or_else(|e| panic!("{DIR} as one config: {e}"));
    let mut domains: Vec<&str> = config.domains().collect();
    domains.sort_unstable();
    let mut expected: Vec<&str> = FILES.iter().map(|(_, _, domain)| *domain).collect();
    expected.sort_unstable();
    assert_eq!(domains, expected);
    let alone: usize = FILES
        .iter()
        .map(|(file, yaml, _)| {
            RateLimitConfig::load([(*file, *yaml)])
                .unwrap()
                .rules()
                .len()
        })
        .sum();
    assert_eq!(config.rules().len(), alone, "no rule lost or doubled");
}

// === 1: exact values ===

#[test]
fn only_the_listed_values_are_limited_each_on_its_own_counter() {
    let ex = Example::load("01-exact-values.yaml", EXACT_VALUES, "catalog_db_qps");
    let orders = || vec![d(&[("table", "orders")])];

    let decision = ex.check_hits(orders(), 399);
    assert_eq!(decision.overall, Code::Ok);
    assert_eq!(
        decision.statuses[0],
        Status {
            code: Code::Ok,
            current_limit: limit(400, Unit::Second),
            limit_remaining: 1,
            duration_until_reset: 1,
        }
    );
    assert_eq!(
        ex.store.last_keys(),
        vec![format!(
            "catalog_db_qps_table_orders_{}",
            window(Unit::Second)
        )]
    );
    assert_eq!(stat_keys(&decision), vec!["catalog_db_qps.table_orders"]);
    assert_eq!(ex.check(orders()).statuses[0].limit_remaining, 0);
    let over = ex.check(orders());
    assert_eq!(over.overall, Code::OverLimit);
    assert_eq!(over.statuses[0].code, Code::OverLimit);
    assert_eq!(over.statuses[0].limit_remaining, 0);

    // The other listed value has a counter of its own.
    let fallback = ex.check(vec![d(&[("table", "fallback")])]);
    assert_eq!(fallback.overall, Code::Ok);
    assert_eq!(fallback.statuses[0].limit_remaining, 399);

    // An unlisted value matches nothing, however often it comes.
    let trips = ex.store.trips();
    for _ in 0..3 {
        let other = ex.check_hits(vec![d(&[("table", "audit")])], 1000);
        assert_eq!(other.overall, Code::Ok);
        assert_eq!(other.statuses[0], no_match());
        assert!(other.outcomes.is_empty());
    }
    assert_eq!(ex.store.trips(), trips, "no counter for an unlisted value");
}

// === 2: nested descriptors, several descriptors OR-ed ===

#[test]
fn nested_descriptor_limits_only_the_exact_depth() {
    let ex = Example::load("02-nested-and-ored.yaml", NESTED_AND_ORED, "sms_gateway");
    let promo_to = |n: &str| d(&[("campaign", "promo"), ("recipient", n)]);

    // The parent value has no limit of its own.
    let parent = ex.check(vec![d(&[("campaign", "promo")])]);
    assert_eq!(parent.statuses[0], no_match());
    assert_eq!(ex.store.trips(), 0);

    // campaign + recipient: 3 a day per recipient.
    for remaining in [2, 1, 0] {
        let decision = ex.check(vec![promo_to("+15550001")]);
        assert_eq!(decision.overall, Code::Ok);
        assert_eq!(decision.statuses[0].limit_remaining, remaining);
        assert_eq!(decision.statuses[0].current_limit, limit(3, Unit::Day));
    }
    assert_eq!(
        ex.check(vec![promo_to("+15550001")]).overall,
        Code::OverLimit
    );
    assert_eq!(
        stat_keys(&ex.check(vec![promo_to("+15550002")])),
        vec!["sms_gateway.campaign_promo.recipient"]
    );
    assert_eq!(
        ex.store.last_keys(),
        vec![format!(
            "sms_gateway_campaign_promo_recipient_+15550002_{}",
            window(Unit::Day)
        )]
    );

    // recipient alone: the top-level 50 a day, on a counter apart from the nested one.
    let alone = ex.check(vec![d(&[("recipient", "+15550001")])]);
    assert_eq!(alone.overall, Code::Ok);
    assert_eq!(alone.statuses[0].current_limit, limit(50, Unit::Day));
    assert_eq!(alone.statuses[0].limit_remaining, 49);
    assert_eq!(
        ex.check_hits(vec![d(&[("recipient", "+15550001")])], 49)
            .statuses[0]
            .limit_remaining,
        0
    );
    assert_eq!(
        ex.check(vec![d(&[("recipient", "+15550001")])]).overall,
        Code::OverLimit
    );
}

#[test]
fn one_descriptor_over_the_limit_fails_the_request() {
    let ex = Example::load("02-nested-and-ored.yaml", NESTED_AND_ORED, "sms_gateway");
    let both = || {
        vec![
            d(&[("campaign", "promo"), ("recipient", "+15550009")]),
            d(&[("recipient", "+15550009")]),
        ]
    };
    for _ in 0..3 {
        assert_eq!(ex.check(both()).overall, Code::Ok);
    }
    assert_eq!(ex.store.trips(), 3, "both descriptors in one round trip");
    let decision = ex.check(both());
    assert_eq!(decision.overall, Code::OverLimit);
    assert_eq!(decision.statuses[0].code, Code::OverLimit);
    assert_eq!(decision.statuses[1].code, Code::Ok);
    assert_eq!(decision.statuses[1].limit_remaining, 46);
    assert_eq!(
        stat_keys(&decision),
        vec![
            "sms_gateway.campaign_promo.recipient",
            "sms_gateway.recipient"
        ]
    );
}

// === 3: per-IP limit with one blocked address ===

#[test]
fn every_address_has_its_own_counter_and_the_listed_one_is_always_blocked() {
    let ex = Example::load(
        "03-per-ip-blocklist.yaml",
        PER_IP_BLOCKLIST,
        "edge_ingress_ip",
    );

    let remaining = ex.allow_n(&[("client_ip", "198.51.100.7")], 8);
    assert_eq!(remaining, vec![7, 6, 5, 4, 3, 2, 1, 0]);
    let over = ex.check(vec![d(&[("client_ip", "198.51.100.7")])]);
    assert_eq!(over.overall, Code::OverLimit);
    assert_eq!(stat_keys(&over), vec!["edge_ingress_ip.client_ip"]);
    // Another address is unaffected.
    assert_eq!(ex.allow_n(&[("client_ip", "198.51.100.8")], 1), vec![7]);

    // The exact entry wins over the key-only one, and 0 per unit denies the
    // very first request.
    let blocked = ex.check(vec![d(&[("client_ip", "203.0.113.9")])]);
    assert_eq!(blocked.overall, Code::OverLimit);
    assert_eq!(
        blocked.statuses[0],
        Status {
            code: Code::OverLimit,
            current_limit: limit(0, Unit::Second),
            limit_remaining: 0,
            duration_until_reset: 1,
        }
    );
    assert_eq!(blocked.outcomes[0].over_limit, 1);
}

#[test]
fn dotted_quad_in_the_stat_key_is_sanitized() {
    let ex = Example::load(
        "03-per-ip-blocklist.yaml",
        PER_IP_BLOCKLIST,
        "edge_ingress_ip",
    );
    let blocked = ex.check(vec![d(&[("client_ip", "203.0.113.9")])]);
    // The reference's stats manager turns the dots of an IPv4 address into '_'.
    assert_eq!(
        stat_keys(&blocked),
        vec!["edge_ingress_ip.client_ip_203_0_113_9"]
    );
}

// === 4: depth mismatch ===

#[test]
fn deeper_request_does_not_fall_back_to_a_shallower_limit() {
    let ex = Example::load("04-depth-mismatch.yaml", DEPTH_MISMATCH, "depth_demo");

    // tenant=acme is limited at depth 1 only: a 2-entry request matches nothing.
    let deeper = || vec![d(&[("tenant", "acme"), ("region", "eu-west")])];
    for _ in 0..3 {
        let decision = ex.check_hits(deeper(), 250);
        assert_eq!(decision.overall, Code::Ok);
        assert_eq!(decision.statuses[0], no_match());
    }
    assert_eq!(ex.store.trips(), 0);
    // The 1-entry request is what the limit is for.
    let decision = ex.check_hits(vec![d(&[("tenant", "acme")])], 250);
    assert_eq!(decision.statuses[0].current_limit, limit(250, Unit::Second));
    assert_eq!(decision.statuses[0].limit_remaining, 0);
    assert_eq!(
        ex.check(vec![d(&[("tenant", "acme")])]).overall,
        Code::OverLimit
    );
}

#[test]
fn nested_child_matches_the_two_entry_request() {
    let ex = Example::load("04-depth-mismatch.yaml", DEPTH_MISMATCH, "depth_demo");
    let deeper = || vec![d(&[("tenant", "globex"), ("region", "eu-west")])];
    let decision = ex.check_hits(deeper(), 249);
    assert_eq!(decision.statuses[0].current_limit, limit(250, Unit::Second));
    assert_eq!(decision.statuses[0].limit_remaining, 1);
    assert_eq!(
        stat_keys(&decision),
        vec!["depth_demo.tenant_globex.region"]
    );
    assert_eq!(ex.check(deeper()).overall, Code::Ok);
    assert_eq!(ex.check(deeper()).overall, Code::OverLimit);
    // Shallower than the config, where the parent has no limit: nothing applies.
    assert_eq!(
        ex.check(vec![d(&[("tenant", "globex")])]).statuses[0],
        no_match()
    );
}

// === 5: unlimited ===

#[test]
fn unlimited_never_touches_the_store() {
    let ex = Example::load("05-unlimited.yaml", UNLIMITED, "directory_sync");
    for _ in 0..100 {
        let decision = ex.check_hits(vec![d(&[("trusted_batch", "nightly")])], 1000);
        assert_eq!(decision.overall, Code::Ok);
        assert_eq!(
            decision.statuses[0],
            Status {
                code: Code::Ok,
                current_limit: None,
                limit_remaining: u32::MAX,
                duration_until_reset: 0,
            }
        );
        assert!(decision.outcomes.is_empty(), "no stats for unlimited");
    }
    assert_eq!(ex.store.trips(), 0);
}

#[test]
fn sibling_of_unlimited_is_limited_per_value() {
    let ex = Example::load("05-unlimited.yaml", UNLIMITED, "directory_sync");
    let decision = ex.check_hits(vec![d(&[("partner_api", "acme")])], 39);
    assert_eq!(decision.statuses[0].current_limit, limit(40, Unit::Minute));
    assert_eq!(decision.statuses[0].limit_remaining, 1);
    assert_eq!(decision.statuses[0].duration_until_reset, 50);
    assert_eq!(ex.allow_n(&[("partner_api", "acme")], 1), vec![0]);
    assert_eq!(
        ex.check(vec![d(&[("partner_api", "acme")])]).overall,
        Code::OverLimit
    );
    assert_eq!(ex.allow_n(&[("partner_api", "initech")], 1), vec![39]);
    // Mixed in one request, the unlimited descriptor still stays out of the store.
    let mixed = ex.check(vec![
        d(&[("trusted_batch", "nightly")]),
        d(&[("partner_api", "initech")]),
    ]);
    assert_eq!(mixed.overall, Code::Ok);
    assert_eq!(mixed.statuses[0].limit_remaining, u32::MAX);
    assert_eq!(mixed.statuses[1].limit_remaining, 38);
    assert_eq!(ex.store.last_keys().len(), 1);
    assert_eq!(stat_keys(&mixed), vec!["directory_sync.partner_api"]);
}

// === 6: shadow mode ===

#[test]
fn shadow_rule_counts_but_allows() {
    let ex = Example::load("06-shadow-mode.yaml", SHADOW_MODE, "auth_rollout");
    let trial = &[("app", "login-svc"), ("account", "trial")];
    assert_eq!(ex.allow_n(trial, 6), vec![5, 4, 3, 2, 1, 0]);
    for breach in 1..=4 {
        let decision = ex.check(vec![d(trial)]);
        assert_eq!(decision.overall, Code::Ok, "breach {breach} is let through");
        assert_eq!(
            decision.statuses[0],
            Status {
                code: Code::Ok,
                current_limit: limit(6, Unit::Second),
                limit_remaining: 0,
                duration_until_reset: 1,
            }
        );
        let o = &decision.outcomes[0];
        assert_eq!(o.stat_key, "auth_rollout.app.account_trial");
        assert_eq!((o.total_hits, o.over_limit, o.shadow_mode), (1, 1, 1));
    }
    // Every breach was counted all the same.
    assert_eq!(
        ex.store.count(&format!(
            "auth_rollout_app_login-svc_account_trial_{}",
            window(Unit::Second)
        )),
        10
    );
}

#[test]
fn non_shadow_sibling_still_denies() {
    let ex = Example::load("06-shadow-mode.yaml", SHADOW_MODE, "auth_rollout");
    let paid = &[("app", "login-svc"), ("account", "paid")];
    assert_eq!(ex.allow_n(paid, 12).last(), Some(&0));
    let decision = ex.check(vec![d(paid)]);
    assert_eq!(decision.overall, Code::OverLimit);
    assert_eq!(decision.statuses[0].code, Code::OverLimit);
    assert_eq!(decision.outcomes[0].shadow_mode, 0);
    assert_eq!(decision.outcomes[0].over_limit, 1);
}

// === 7: replaces ===

#[test]
fn named_limit_applies_when_nothing_replaces_it() {
    let ex = Example::load("07-replaces.yaml", REPLACES, "tiered_quota");
    let basic = &[("plan", "basic"), ("customer", "cx42")];
    assert_eq!(ex.allow_n(basic, 4), vec![3, 2, 1, 0]);
    let decision = ex.check(vec![d(basic)]);
    assert_eq!(decision.overall, Code::OverLimit);
    assert_eq!(
        decision.statuses[0].current_limit,
        Some(CurrentLimit {
            requests_per_unit: 4,
            unit: Unit::Second,
            name: "basic_per_customer".into(),
        })
    );
    let boost = &[("plan", "boost"), ("customer", "cx42")];
    assert_eq!(ex.allow_n(boost, 9).last(), Some(&0));
    assert_eq!(ex.check(vec![d(boost)]).overall, Code::OverLimit);
}

#[test]
fn replaces_drops_the_named_limit() {
    let ex = Example::load("07-replaces.yaml", REPLACES, "tiered_quota");
    let both = || {
        vec![
            d(&[("plan", "basic"), ("customer", "cx42")]),
            d(&[("plan", "boost"), ("customer", "cx42")]),
        ]
    };
    // Well past the replaced 4 per second: only the 9 per second counts.
    for remaining in (0..9).rev() {
        let decision = ex.check(both());
        assert_eq!(decision.overall, Code::Ok);
        assert_eq!(
            decision.statuses[0],
            no_match(),
            "the named limit is dropped"
        );
        assert_eq!(decision.statuses[1].limit_remaining, remaining);
        assert_eq!(decision.outcomes.len(), 1);
        assert_eq!(
            decision.outcomes[0].stat_key,
            "tiered_quota.plan_boost.customer_cx42"
        );
        assert_eq!(
            ex.store.last_keys(),
            vec![format!(
                "tiered_quota_plan_boost_customer_cx42_{}",
                window(Unit::Second)
            )]
        );
    }
    let decision = ex.check(both());
    assert_eq!(decision.overall, Code::OverLimit);
    assert_eq!(decision.statuses[0], no_match());
    assert_eq!(decision.statuses[1].code, Code::OverLimit);
    // The replaced limit's counter never moved.
    let basic_key = format!(
        "tiered_quota_plan_basic_customer_cx42_{}",
        window(Unit::Second)
    );
    assert_eq!(ex.store.count(&basic_key), 0);
    assert_eq!(
        ex.allow_n(&[("plan", "basic"), ("customer", "cx42")], 1),
        vec![3]
    );
}

// === 8: detailed_metric ===

#[test]
fn detailed_metric_keeps_values_in_the_stat_key() {
    let ex = Example::load("08-detailed-metric.yaml", DETAILED_METRIC, "tenant_metrics");
    for tenant in ["smallco", "midco"] {
        let pairs = &[("tenant", tenant)];
        assert_eq!(ex.allow_n(pairs, 7).last(), Some(&0));
        let over = ex.check(vec![d(pairs)]);
        assert_eq!(over.overall, Code::OverLimit);
        assert_eq!(over.statuses[0].current_limit, limit(7, Unit::Minute));
        let o = &over.outcomes[0];
        assert_eq!(o.stat_key, format!("tenant_metrics.tenant_{tenant}"));
        assert!(o.detailed);
    }
    // An empty value still gets its `key_` part.
    let empty = ex.check(vec![d(&[("tenant", "")])]);
    assert_eq!(stat_keys(&empty), vec!["tenant_metrics.tenant_"]);
}

#[test]
fn listed_value_keeps_its_own_limit_and_stat_key() {
    let ex = Example::load("08-detailed-metric.yaml", DETAILED_METRIC, "tenant_metrics");
    let bigco = &[("tenant", "bigco")];
    assert_eq!(ex.allow_n(bigco, 15).last(), Some(&0));
    let over = ex.check(vec![d(bigco)]);
    assert_eq!(over.overall, Code::OverLimit);
    assert_eq!(over.statuses[0].current_limit, limit(15, Unit::Minute));
    assert_eq!(stat_keys(&over), vec!["tenant_metrics.tenant_bigco"]);
}

#[test]
fn without_detailed_metric_all_values_share_one_stat_key() {
    let ex = Example::load("08-detailed-metric.yaml", DETAILED_METRIC, "tenant_metrics");
    for team in ["red", "blue"] {
        let decision = ex.check(vec![d(&[("team", team)])]);
        assert_eq!(decision.statuses[0].limit_remaining, 6, "own counter");
        assert_eq!(stat_keys(&decision), vec!["tenant_metrics.team"]);
        assert!(!decision.outcomes[0].detailed);
    }
}

// === 9: wildcards ===

#[test]
fn wildcard_values_match_anywhere() {
    let ex = Example::load("09-wildcards.yaml", WILDCARDS, "wildcard_routes");
    let matching: [(&str, &str, &str); 6] = [
        ("sku", "item1", "wildcard_routes.sku_item*"),
        ("sku", "itemXYZ", "wildcard_routes.sku_item*"),
        // The star may match nothing.
        ("sku", "item", "wildcard_routes.sku_item*"),
        (
            "path",
            "/v1/42/download",
            "wildcard_routes.path_/v1/*/download",
        ),
        (
            "path",
            "/v1//download",
            "wildcard_routes.path_/v1/*/download",
        ),
        (
            "route",
            "/shop/eu/cart/991/checkout",
            "wildcard_routes.route_/shop/*/cart/*/checkout",
        ),
    ];
    for (key, value, stat) in matching {
        let decision = ex.check(vec![d(&[(key, value)])]);
        assert_eq!(
            decision.statuses[0].current_limit,
            limit(12, Unit::Minute),
            "{key}={value}"
        );
        assert_eq!(
            stat_keys(&decision),
            vec![stat],
            "the pattern is the stat key"
        );
    }
    for (key, value) in [
        ("sku", "itex1"),
        ("sku", "xitem1"),
        ("path", "/v1/42/upload"),
        ("path", "/v2/42/download"),
        ("route", "/shop/eu/cart/991/pay"),
    ] {
        let decision = ex.check(vec![d(&[(key, value)])]);
        assert_eq!(decision.statuses[0], no_match(), "{key}={value}");
    }
}

#[test]
fn each_value_matching_a_wildcard_has_its_own_counter() {
    let ex = Example::load("09-wildcards.yaml", WILDCARDS, "wildcard_routes");
    let path = &[("path", "/v1/42/download")];
    assert_eq!(ex.allow_n(path, 12).last(), Some(&0));
    assert_eq!(
        ex.store.last_keys(),
        vec![format!(
            "wildcard_routes_path_/v1/42/download_{}",
            window(Unit::Minute)
        )]
    );
    assert_eq!(ex.check(vec![d(path)]).overall, Code::OverLimit);
    assert_eq!(ex.allow_n(&[("path", "/v1/43/download")], 1), vec![11]);
    let route = &[("route", "/shop/us/cart/7/checkout")];
    let decision = ex.check_hits(vec![d(route)], 12);
    assert_eq!(decision.statuses[0].limit_remaining, 0);
    assert_eq!(ex.check(vec![d(route)]).overall, Code::OverLimit);
}

// === 10: value_to_metric ===

#[test]
fn value_to_metric_builds_stat_keys_from_values() {
    let ex = Example::load("10-value-to-metric.yaml", VALUE_TO_METRIC, "vtm_paths");
    let flagged = ex.check(vec![d(&[
        ("endpoint", "orders"),
        ("verb", "GET"),
        ("caller", "u123"),
    ])]);
    assert_eq!(
        stat_keys(&flagged),
        vec!["vtm_paths.endpoint_orders.verb_GET.caller"]
    );
    // Request values are in the key: the adapter bounds how many such labels it keeps.
    assert!(flagged.outcomes[0].detailed);
    let plain = ex.check(vec![d(&[
        ("service", "orders"),
        ("verb", "GET"),
        ("caller", "u123"),
    ])]);
    assert_eq!(stat_keys(&plain), vec!["vtm_paths.service.verb.caller"]);
    assert!(!plain.outcomes[0].detailed);
}

#[test]
fn value_to_metric_leaves_counting_per_value() {
    let ex = Example::load("10-value-to-metric.yaml", VALUE_TO_METRIC, "vtm_paths");
    let get = &[("endpoint", "orders"), ("verb", "GET"), ("caller", "u123")];
    let decision = ex.check_hits(vec![d(get)], 30);
    assert_eq!(decision.statuses[0].current_limit, limit(30, Unit::Minute));
    assert_eq!(decision.statuses[0].limit_remaining, 0);
    assert_eq!(
        ex.store.last_keys(),
        vec![format!(
            "vtm_paths_endpoint_orders_verb_GET_caller_u123_{}",
            window(Unit::Minute)
        )]
    );
    assert_eq!(ex.check(vec![d(get)]).overall, Code::OverLimit);
    assert_eq!(
        ex.allow_n(
            &[("endpoint", "orders"), ("verb", "POST"), ("caller", "u123")],
            1
        ),
        vec![29]
    );
    assert_eq!(
        ex.allow_n(
            &[("endpoint", "orders"), ("verb", "GET"), ("caller", "u124")],
            1
        ),
        vec![29]
    );
}

#[test]
fn value_to_metric_on_a_wildcard_shows_the_actual_value() {
    let ex = Example::load(
        "10-value-to-metric-wildcard.yaml",
        VALUE_TO_METRIC_WILDCARD,
        "vtm_wildcards",
    );
    let pairs = &[
        ("member", "alice"),
        ("op", "writefile"),
        ("object", "doc-7"),
    ];
    let decision = ex.check(vec![d(pairs)]);
    assert_eq!(decision.statuses[0].current_limit, limit(45, Unit::Minute));
    assert_eq!(
        stat_keys(&decision),
        vec!["vtm_wildcards.member_alice.op_writefile.object"]
    );
    ex.check_hits(vec![d(pairs)], 44);
    assert_eq!(ex.check(vec![d(pairs)]).overall, Code::OverLimit);
    // Not sharing: another matching value counts apart.
    assert_eq!(
        ex.allow_n(
            &[
                ("member", "alice"),
                ("op", "writeblob"),
                ("object", "doc-7")
            ],
            1
        ),
        vec![44]
    );
    let other = ex.check(vec![d(&[
        ("member", "alice"),
        ("op", "readfile"),
        ("object", "doc-7"),
    ])]);
    assert_eq!(other.statuses[0], no_match());
}

// === 11: share_threshold ===

#[test]
fn share_threshold_shares_one_counter() {
    let ex = Example::load("11-share-threshold.yaml", SHARE_THRESHOLD, "shared_buckets");
    let shared_key = format!("shared_buckets_bucket_uploads/*_{}", window(Unit::Hour));
    assert_eq!(
        ex.allow_n(&[("bucket", "uploads/a.pdf")], 4),
        vec![7, 6, 5, 4]
    );
    assert_eq!(ex.store.last_keys(), vec![shared_key.clone()]);
    assert_eq!(
        ex.allow_n(&[("bucket", "uploads/b.csv")], 4),
        vec![3, 2, 1, 0]
    );
    assert_eq!(ex.store.last_keys(), vec![shared_key.clone()]);
    let over = ex.check(vec![d(&[("bucket", "uploads/c.txt")])]);
    assert_eq!(over.overall, Code::OverLimit);
    assert_eq!(over.statuses[0].current_limit, limit(8, Unit::Hour));
    assert_eq!(stat_keys(&over), vec!["shared_buckets.bucket_uploads/*"]);
    assert_eq!(ex.store.count(&shared_key), 9);
}

#[test]
fn without_share_threshold_each_matching_value_counts_alone() {
    let ex = Example::load("11-share-threshold.yaml", SHARE_THRESHOLD, "shared_buckets");
    let a = &[("scratch", "scratch/a.pdf")];
    assert_eq!(ex.allow_n(a, 8).last(), Some(&0));
    assert_eq!(
        ex.store.last_keys(),
        vec![format!(
            "shared_buckets_scratch_scratch/a.pdf_{}",
            window(Unit::Hour)
        )]
    );
    assert_eq!(ex.check(vec![d(a)]).overall, Code::OverLimit);
    assert_eq!(
        ex.allow_n(&[("scratch", "scratch/b.csv")], 8),
        vec![7, 6, 5, 4, 3, 2, 1, 0]
    );
    assert_eq!(
        ex.check(vec![d(&[("scratch", "scratch/b.csv")])]).overall,
        Code::OverLimit
    );
}

#[test]
fn share_threshold_stat_key_shows_the_pattern_despite_value_to_metric() {
    let ex = Example::load(
        "11-share-threshold-metrics.yaml",
        SHARE_THRESHOLD_METRICS,
        "shared_bucket_stats",
    );
    let shared_key = format!(
        "shared_bucket_stats_route_v2/*_verb_GET_{}",
        window(Unit::Minute)
    );
    let v1 = ex.check_hits(vec![d(&[("route", "v2/users"), ("verb", "GET")])], 12);
    assert_eq!(v1.statuses[0].limit_remaining, 13);
    // The reference's code (not its README) gives `route_<pattern>.verb` here.
    assert_eq!(stat_keys(&v1), vec!["shared_bucket_stats.route_v2/*.verb"]);
    assert_eq!(ex.store.last_keys(), vec![shared_key.clone()]);

    let v2 = ex.check_hits(vec![d(&[("route", "v2/orders"), ("verb", "GET")])], 13);
    assert_eq!(
        v2.statuses[0].limit_remaining, 0,
        "one counter for both routes"
    );
    assert_eq!(stat_keys(&v2), vec!["shared_bucket_stats.route_v2/*.verb"]);
    assert_eq!(ex.store.last_keys(), vec![shared_key]);
    assert_eq!(
        ex.check(vec![d(&[("route", "v2/carts"), ("verb", "GET")])])
            .overall,
        Code::OverLimit
    );
    // The verb is not shared: POST has its own counter.
    assert_eq!(
        ex.allow_n(&[("route", "v2/users"), ("verb", "POST")], 1),
        vec![24]
    );
}
