//! Prometheus metrics, served on the HTTP side port.

use std::time::Duration;

use gatehouse_authz_core::Verdict;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of check counters: a closed set (the verdict and HTTP status).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CheckLabels {
    /// `allowed` or `denied`.
    pub result: &'static str,
    /// The HTTP status Envoy answers with (200 when allowed).
    pub status: u16,
}

/// Every metric the service exports. Registered once at startup.
#[derive(Debug)]
pub struct Metrics {
    checks: Family<CheckLabels, Counter>,
    check_seconds: Histogram,
    /// Completed logins (a session created at the callback).
    pub logins: Counter,
    /// Access tokens refreshed.
    pub refreshes: Counter,
    /// IdP calls that failed (unreachable, timed out, a broken answer).
    pub idp_errors: Counter,
    /// Successful configuration (re)loads.
    pub config_load_success: Counter,
    /// Refused configuration reloads (the old configuration stayed).
    pub config_load_error: Counter,
}

impl Metrics {
    /// Registers every metric under `gatehouse_authz_`.
    pub fn register(registry: &mut Registry) -> Self {
        let reg = registry.sub_registry_with_prefix("gatehouse_authz");
        let m = Self {
            checks: Family::default(),
            check_seconds: Histogram::new(exponential_buckets(0.000_005, 2.0, 16)),
            logins: Counter::default(),
            refreshes: Counter::default(),
            idp_errors: Counter::default(),
            config_load_success: Counter::default(),
            config_load_error: Counter::default(),
        };
        reg.register(
            "logins",
            "Completed single sign-on logins",
            m.logins.clone(),
        );
        reg.register("refreshes", "Access tokens refreshed", m.refreshes.clone());
        reg.register(
            "idp_errors",
            "Calls to an OpenID provider that failed",
            m.idp_errors.clone(),
        );
        reg.register(
            "checks",
            "Checks by result and HTTP status",
            m.checks.clone(),
        );
        reg.register(
            "check_seconds",
            "Time spent deciding one check",
            m.check_seconds.clone(),
        );
        reg.register(
            "config_load_success",
            "Configuration loads that were applied",
            m.config_load_success.clone(),
        );
        reg.register(
            "config_load_error",
            "Configuration reloads refused (the previous configuration stayed)",
            m.config_load_error.clone(),
        );
        m
    }

    /// Counts one check.
    pub fn observe(&self, verdict: &Verdict, took: Duration) {
        let labels = match verdict {
            Verdict::Allow { .. } => CheckLabels {
                result: "allowed",
                status: 200,
            },
            Verdict::Deny { status, .. } => CheckLabels {
                result: "denied",
                status: *status,
            },
        };
        self.checks.get_or_create(&labels).inc();
        self.check_seconds.observe(took.as_secs_f64());
    }
}
