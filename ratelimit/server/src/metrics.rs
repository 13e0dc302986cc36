//! Prometheus metrics, served on the HTTP and debug ports.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use gatehouse_ratelimit_core::{Code, MemoryStore, Outcome};

/// The `descriptor` label that request-valued stats keys share once
/// `GATEHOUSE_METRIC_MAX_VALUE_LABELS` distinct ones are in use. A real
/// stats key always holds a `.` (domain, then key), so it cannot be this.
pub const OVERFLOW_LABEL: &str = "overflow";

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
    /// Request-valued label sets in use, and how many may be.
    value_labels: Mutex<HashSet<DescriptorLabels>>,
    max_value_labels: usize,
    /// Outcomes counted under [`OVERFLOW_LABEL`] because the label cap was reached.
    pub label_overflow: Counter,
    /// Decisions waiting for Redis or in flight.
    pub store_pending: Gauge,
    /// Decisions refused at once because too many waited for Redis.
    pub store_overloaded: Counter,
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
    /// RLQS usage reports answered.
    pub quota_reports: Counter,
    /// RLQS bucket usages reported (one report carries every bucket of an Envoy).
    pub quota_buckets_reported: Counter,
    /// RLQS assignments sent to an Envoy other than the reporter, because
    /// another Envoy's demand moved its share.
    pub quota_pushes: Counter,
}

impl Metrics {
    /// Registers every metric under `gatehouse_ratelimit_`. At most
    /// `max_value_labels` distinct `descriptor` labels carry request values
    /// (`detailed_metric`, `value_to_metric`, limit overrides); later ones are
    /// counted under [`OVERFLOW_LABEL`].
    pub fn register(registry: &mut Registry, max_value_labels: usize) -> Self {
        let reg = registry.sub_registry_with_prefix("gatehouse_ratelimit");
        let m = Self {
            total_hits: Family::default(),
            over_limit: Family::default(),
            near_limit: Family::default(),
            within_limit: Family::default(),
            shadow_mode: Family::default(),
            over_limit_with_local_cache: Family::default(),
            decisions: Family::default(),
            value_labels: Mutex::new(HashSet::new()),
            max_value_labels,
            label_overflow: Counter::default(),
            store_pending: Gauge::default(),
            store_overloaded: Counter::default(),
            decision_seconds: Histogram::new([
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5,
            ]),
            redis_batch_size: Histogram::new([1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]),
            store_errors: Counter::default(),
            invalid_requests: Counter::default(),
            config_load_success: Counter::default(),
            config_load_error: Counter::default(),
            quota_reports: Counter::default(),
            quota_buckets_reported: Counter::default(),
            quota_pushes: Counter::default(),
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
            "metric_label_overflow",
            "Descriptor outcomes counted under descriptor=\"overflow\" (GATEHOUSE_METRIC_MAX_VALUE_LABELS reached)",
            m.label_overflow.clone(),
        );
        reg.register(
            "store_pending",
            "Decisions waiting for Redis or in flight (at most GATEHOUSE_STORE_MAX_PENDING)",
            m.store_pending.clone(),
        );
        reg.register(
            "store_overloaded",
            "Decisions refused at once because GATEHOUSE_STORE_MAX_PENDING waited for Redis",
            m.store_overloaded.clone(),
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
        reg.register(
            "quota_reports",
            "RLQS usage reports answered",
            m.quota_reports.clone(),
        );
        reg.register(
            "quota_buckets_reported",
            "RLQS bucket usages reported",
            m.quota_buckets_reported.clone(),
        );
        reg.register(
            "quota_pushes",
            "RLQS assignments pushed to an Envoy because another Envoy's demand moved its share",
            m.quota_pushes.clone(),
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
            let labels = self.labels(domain, o.stat_key, o.detailed);
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

    /// The labels for one outcome: request-valued ones only while fewer than
    /// `max_value_labels` are in use (or this one already is).
    fn labels(&self, domain: &str, stat_key: String, detailed: bool) -> DescriptorLabels {
        let labels = DescriptorLabels {
            domain: domain.to_owned(),
            descriptor: stat_key,
        };
        if !detailed {
            // A configured rule's key: a closed set.
            return labels;
        }
        let mut seen = self
            .value_labels
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if seen.contains(&labels) {
            return labels;
        }
        if seen.len() < self.max_value_labels {
            seen.insert(labels.clone());
            return labels;
        }
        self.label_overflow.inc();
        DescriptorLabels {
            domain: labels.domain,
            descriptor: OVERFLOW_LABEL.to_owned(),
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

/// The memory store's size, read at each scrape:
/// `gatehouse_ratelimit_memory_keys`, `..._memory_max_keys` and
/// `..._memory_refused_keys_total` (new keys answered over limit because the
/// store was full of live counters).
#[derive(Debug)]
pub struct MemoryStoreStats(pub Arc<crate::store::Backend>);

impl Collector for MemoryStoreStats {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let crate::store::Backend::Memory(store) = self.0.as_ref() else {
            return Ok(());
        };
        let store: &MemoryStore = store;
        let keys = ConstGauge::new(i64::try_from(store.len()).unwrap_or(i64::MAX));
        keys.encode(encoder.encode_descriptor(
            "memory_keys",
            "Counters held by the memory store",
            None,
            keys.metric_type(),
        )?)?;
        let max = ConstGauge::new(i64::try_from(store.max_keys()).unwrap_or(i64::MAX));
        max.encode(encoder.encode_descriptor(
            "memory_max_keys",
            "Most counters the memory store holds (GATEHOUSE_MEMORY_MAX_KEYS)",
            None,
            max.metric_type(),
        )?)?;
        let refused = ConstCounter::new(store.refused_keys());
        refused.encode(encoder.encode_descriptor(
            "memory_refused_keys",
            "New counters refused (answered over limit) because the memory store was full",
            None,
            refused.metric_type(),
        )?)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(stat_key: &str, detailed: bool) -> Outcome {
        Outcome {
            rule_id: 0,
            stat_key: stat_key.to_owned(),
            detailed,
            total_hits: 1,
            over_limit: 0,
            near_limit: 0,
            within_limit: 1,
            shadow_mode: 0,
            over_limit_with_local_cache: 0,
        }
    }

    fn scrape(registry: &Registry) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
        text
    }

    #[test]
    fn request_valued_labels_past_the_cap_collapse_into_overflow() {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry, 2);
        for user in ["a", "b", "c", "d", "a"] {
            metrics.record(
                "edge",
                Code::Ok,
                vec![outcome(&format!("edge.user_{user}"), true)],
            );
        }
        // Configured keys never count against the cap.
        for n in 0..5 {
            metrics.record(
                "edge",
                Code::Ok,
                vec![outcome(&format!("edge.rule{n}"), false)],
            );
        }
        let text = scrape(&registry);
        let series = |descriptor: &str| {
            text.lines()
                .find(|l| {
                    l.starts_with("gatehouse_ratelimit_total_hits_total{")
                        && l.contains(&format!("descriptor=\"{descriptor}\""))
                })
                .map(str::to_owned)
        };
        assert!(series("edge.user_a").unwrap().ends_with(" 2"), "{text}");
        assert!(series("edge.user_b").is_some());
        assert!(series("edge.user_c").is_none(), "{text}");
        assert!(series("overflow").unwrap().ends_with(" 2"), "{text}");
        assert!(series("edge.rule4").is_some());
        assert_eq!(
            text.lines()
                .filter(|l| l.starts_with("gatehouse_ratelimit_total_hits_total{"))
                .count(),
            2 + 1 + 5
        );
    }

    #[test]
    fn memory_store_size_is_exported() {
        let mut registry = Registry::default();
        let store = Arc::new(crate::store::Backend::Memory(MemoryStore::with_max_keys(1)));
        registry
            .sub_registry_with_prefix("gatehouse_ratelimit")
            .register_collector(Box::new(MemoryStoreStats(store.clone())));
        if let crate::store::Backend::Memory(m) = store.as_ref() {
            let incr = |key: &str| gatehouse_ratelimit_core::Op::IncrBy {
                key: key.to_owned(),
                hits: 1,
                ttl_secs: 60,
            };
            m.apply(&[incr("a"), incr("b")], 0);
        }
        let text = scrape(&registry);
        assert!(
            text.contains("gatehouse_ratelimit_memory_keys 1\n"),
            "{text}"
        );
        assert!(
            text.contains("gatehouse_ratelimit_memory_max_keys 1\n"),
            "{text}"
        );
        assert!(
            text.contains("gatehouse_ratelimit_memory_refused_keys_total 1\n"),
            "{text}"
        );
    }
}
