//! Prometheus metrics, served on the HTTP and debug ports.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use gatehouse_ratelimit_core::{Code, Outcome};

/// Labels of per-descriptor counters: the configured domain and the stats
/// key, which carries request values only where the rule opts in with
/// `detailed_metric` / `value_to_metric`, as the reference does.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DescriptorLabels {
    /// Configured domain.
    pub domain: String,
    /// Stats key, e.g. `api.path_/login`.
    pub descriptor: String,
}

/// Labels of decision counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    /// `OK`, `OVER_LIMIT` or `ERROR`.
    pub code: &'static str,
}

/// Every metric the service exports. Registered once at startup.
#[derive(Debug)]
pub struct Metrics {
    total_hits: Family<DescriptorLabels, Counter>,
    over_limit: Family<DescriptorLabels, Counter>,
    near_limit: Family<DescriptorLabels, Counter>,
    within_limit: Family<DescriptorLabels, Counter>,
    shadow_mode: Family<DescriptorLabels, Counter>,
    over_limit_with_local_cache: Family<DescriptorLabels, Counter>,
    decisions: Family<DecisionLabels, Counter>,
    /// Seconds per `ShouldRateLimit`, store round trip included.
    pub decision_seconds: Histogram,
    /// Decisions per Redis pipeline.
    pub redis_batch_size: Histogram,
    /// Store calls that failed or timed out.
    pub store_errors: Counter,
    /// Requests refused as malformed.
    pub invalid_requests: Counter,
    /// Successful configuration (re)loads.
    pub config_load_success: Counter,
    /// Refused configuration reloads (the old configuration stayed).
    pub config_load_error: Counter,
}

impl Metrics {
    /// Registers every metric under `gatehouse_ratelimit_`.
    pub fn register(registry: &mut Registry) -> Self {
        let reg = registry.sub_registry_with_prefix("gatehouse_ratelimit");
        let m = Self {
            total_hits: Family::default(),
            over_limit: Family::default(),
            near_limit: Family::default(),
            within_limit: Family::default(),
            shadow_mode: Family::default(),
            over_limit_with_local_cache: Family::default(),
            decisions: Family::default(),
            decision_seconds: Histogram::new([
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5,
            ]),
            redis_batch_size: Histogram::new([1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]),
            store_errors: Counter::default(),
            invalid_requests: Counter::default(),
            config_load_success: Counter::default(),
            config_load_error: Counter::default(),
        };
        reg.register(
            "total_hits",
            "Hits counted per descriptor",
            m.total_hits.clone(),
        );
        reg.register(
            "over_limit",
            "Hits over the limit per descriptor",
            m.over_limit.clone(),
        );
        reg.register(
            "near_limit",
            "Hits past the near-limit ratio per descriptor",
            m.near_limit.clone(),
        );
        reg.register(
            "within_limit",
            "Hits within the limit per descriptor",
            m.within_limit.clone(),
        );
        reg.register(
            "shadow_mode",
            "Over-limit hits let through by shadow mode",
            m.shadow_mode.clone(),
        );
        reg.register(
            "over_limit_with_local_cache",
            "Over-limit hits answered from the local cache",
            m.over_limit_with_local_cache.clone(),
        );
        reg.register(
            "decisions",
            "ShouldRateLimit answers by overall code",
            m.decisions.clone(),
        );
        reg.register(
            "decision_duration_seconds",
            "Time to decide one request",
            m.decision_seconds.clone(),
        );
        reg.register(
            "redis_batch_size",
            "Decisions sent to Redis in one pipeline",
            m.redis_batch_size.clone(),
        );
        reg.register(
            "store_errors",
            "Counter store failures and timeouts",
            m.store_errors.clone(),
        );
        reg.register(
            "invalid_requests",
            "Requests refused as malformed",
            m.invalid_requests.clone(),
        );
        reg.register(
            "config_load_success",
            "Configuration loads applied",
            m.config_load_success.clone(),
        );
        reg.register(
            "config_load_error",
            "Configuration loads refused",
            m.config_load_error.clone(),
        );
        m
    }

    /// Counts one decision's per-descriptor outcomes.
    pub fn record(&self, domain: &str, code: Code, outcomes: Vec<Outcome>) {
        self.decisions
            .get_or_create(&DecisionLabels {
                code: match code {
                    Code::Ok => "OK",
                    Code::OverLimit => "OVER_LIMIT",
                },
            })
            .inc();
        for o in outcomes {
            let labels = DescriptorLabels {
                domain: domain.to_owned(),
                descriptor: o.stat_key,
            };
            let add = |family: &Family<DescriptorLabels, Counter>, n: u64| {
                if n > 0 {
                    family.get_or_create(&labels).inc_by(n);
                }
            };
            add(&self.total_hits, o.total_hits);
            add(&self.over_limit, o.over_limit);
            add(&self.near_limit, o.near_limit);
            add(&self.within_limit, o.within_limit);
            add(&self.shadow_mode, o.shadow_mode);
            add(
                &self.over_limit_with_local_cache,
                o.over_limit_with_local_cache,
            );
        }
    }

    /// Counts a decision that failed on the store.
    pub fn record_error(&self) {
        self.store_errors.inc();
        self.decisions
            .get_or_create(&DecisionLabels { code: "ERROR" })
            .inc();
    }
}
