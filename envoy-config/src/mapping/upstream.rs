//! What a Mapping sets on its upstream's cluster: load balancing, health
//! checks, outlier ejection, keepalive and circuit breakers, and the
//! duration text they are written in.

use serde::Deserialize;

use crate::doc::{ErrFn, ResourceError, readable_header};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLoadBalancer {
    pub(super) policy: String,
    #[serde(default)]
    pub(super) cookie: Option<RawLbCookie>,
    #[serde(default)]
    pub(super) header: Option<String>,
    #[serde(default)]
    pub(super) source_ip: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLbCookie {
    pub(super) name: String,
    #[serde(default)]
    pub(super) path: Option<String>,
    #[serde(default)]
    pub(super) ttl: Option<String>,
}

/// How requests spread over a service's instances (Ambassador's
/// `load_balancer`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadBalancer {
    /// Envoy's `lb_policy`: `ROUND_ROBIN`, `LEAST_REQUEST`, `RING_HASH` or
    /// `MAGLEV`.
    pub policy: &'static str,
    /// For the hashing policies, what keeps a client on one instance.
    pub hash: Option<HashOn>,
}

/// What a hashing load balancer hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashOn {
    /// A cookie (Envoy sets it when absent, with `ttl`).
    Cookie {
        /// The cookie's name.
        name: String,
        /// Its path.
        path: Option<String>,
        /// Its lifetime, ms.
        ttl_ms: Option<u64>,
    },
    /// A request header.
    Header(String),
    /// The client address.
    SourceIp,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHealthCheck {
    #[serde(default)]
    pub(super) timeout: Option<String>,
    #[serde(default)]
    pub(super) interval: Option<String>,
    #[serde(default)]
    pub(super) unhealthy_threshold: Option<u32>,
    #[serde(default)]
    pub(super) healthy_threshold: Option<u32>,
    pub(super) health_check: RawHealthCheckKind,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHealthCheckKind {
    #[serde(default)]
    pub(super) http: Option<RawHttpHealthCheck>,
    #[serde(default)]
    pub(super) grpc: Option<RawGrpcHealthCheck>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttpHealthCheck {
    pub(super) path: String,
    #[serde(default)]
    pub(super) hostname: Option<String>,
    #[serde(default)]
    pub(super) expected_statuses: Vec<RawStatusRange>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStatusRange {
    pub(super) min: u16,
    pub(super) max: u16,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGrpcHealthCheck {
    pub(super) upstream_name: String,
    #[serde(default)]
    pub(super) authority: Option<String>,
}

/// An active health check of the service's instances (Ambassador's
/// `health_checks` entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// Each probe's timeout, ms (default 3000).
    pub timeout_ms: u64,
    /// Between probes, ms (default 5000).
    pub interval_ms: u64,
    /// Failed probes before an instance is out (default 2).
    pub unhealthy_threshold: u32,
    /// Passed probes before it is back (default 1).
    pub healthy_threshold: u32,
    /// What a probe is.
    pub probe: Probe,
}

/// One health probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// An HTTP GET of `path` (with `Host: hostname`), passing on a status
    /// in one of the ranges (inclusive, as Ambassador writes them; default
    /// 200 only).
    Http {
        /// The path.
        path: String,
        /// The Host header.
        hostname: Option<String>,
        /// Passing statuses, inclusive ranges.
        statuses: Vec<(u16, u16)>,
    },
    /// The gRPC health service, for service `upstream_name`.
    Grpc {
        /// The service name asked about.
        upstream_name: String,
        /// The `:authority`.
        authority: Option<String>,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOutlier {
    #[serde(default)]
    pub(super) consecutive_5xx: Option<u32>,
    #[serde(default)]
    pub(super) interval_ms: Option<u64>,
    #[serde(default)]
    pub(super) base_ejection_time_ms: Option<u64>,
    #[serde(default)]
    pub(super) max_ejection_percent: Option<u32>,
}

/// Passive ejection of failing instances (Gatehouse's `outlier_detection`;
/// Ambassador has none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outlier {
    /// 5xx answers in a row that eject an instance (default 5).
    pub consecutive_5xx: u32,
    /// How often ejections are reviewed, ms (default 10000).
    pub interval_ms: u64,
    /// How long a first ejection lasts, ms (default 30000).
    pub base_ejection_time_ms: u64,
    /// Most of the instances ejected at once, percent (default 10).
    pub max_ejection_percent: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKeepalive {
    #[serde(default)]
    pub(super) time: Option<u32>,
    #[serde(default)]
    pub(super) interval: Option<u32>,
    #[serde(default)]
    pub(super) probes: Option<u32>,
}

/// TCP keepalive to the upstream (Ambassador's `keepalive`): seconds idle
/// before the first probe, seconds between probes, probes before the
/// connection is dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keepalive {
    /// `time`.
    pub time: Option<u32>,
    /// `interval`.
    pub interval: Option<u32>,
    /// `probes`.
    pub probes: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCircuitBreaker {
    #[serde(default)]
    pub(super) priority: Option<String>,
    #[serde(default)]
    pub(super) max_connections: Option<u32>,
    #[serde(default)]
    pub(super) max_pending_requests: Option<u32>,
    #[serde(default)]
    pub(super) max_requests: Option<u32>,
    #[serde(default)]
    pub(super) max_retries: Option<u32>,
}

/// Limits on one upstream's connections and requests (Envoy's circuit
/// breakers, default priority).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CircuitBreaker {
    /// Most connections.
    pub max_connections: Option<u32>,
    /// Most requests waiting for a connection.
    pub max_pending_requests: Option<u32>,
    /// Most requests in flight.
    pub max_requests: Option<u32>,
    /// Most retries in flight.
    pub max_retries: Option<u32>,
}

/// A Go duration as Ambassador reads one (`3s`, `1m30s`, `500ms`), in
/// milliseconds.
pub(super) fn duration_ms(text: &str, path: &str, err: ErrFn<'_>) -> Result<u64, ResourceError> {
    let bad = || {
        err(
            path,
            format!("{text:?}: a duration such as 3s, 500ms or 1m30s"),
        )
    };
    let mut rest = text;
    let mut total: u64 = 0;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let number: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit = ["ms", "h", "m", "s"]
            .into_iter()
            .find(|u| rest.starts_with(u))
            .ok_or_else(bad)?;
        rest = &rest[unit.len()..];
        let scale = match unit {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            _ => 3_600_000,
        };
        total = number
            .checked_mul(scale)
            .and_then(|n| total.checked_add(n))
            .ok_or_else(bad)?;
    }
    Ok(total)
}

/// A `load_balancer` as Ambassador validates it: round_robin and
/// least_request alone; ring_hash and maglev with exactly one of cookie,
/// header or source_ip.
pub(super) fn load_balancer(
    lb: RawLoadBalancer,
    err: ErrFn<'_>,
) -> Result<LoadBalancer, ResourceError> {
    let keys = usize::from(lb.cookie.is_some())
        + usize::from(lb.header.is_some())
        + usize::from(lb.source_ip.is_some());
    let policy = match lb.policy.as_str() {
        "round_robin" => "ROUND_ROBIN",
        "least_request" => "LEAST_REQUEST",
        "ring_hash" => "RING_HASH",
        "maglev" => "MAGLEV",
        other => {
            return Err(err(
                "spec.load_balancer.policy",
                format!("{other:?}: round_robin, least_request, ring_hash or maglev"),
            ));
        }
    };
    let hashing = matches!(policy, "RING_HASH" | "MAGLEV");
    if !hashing && keys > 0 {
        return Err(err(
            "spec.load_balancer",
            format!(
                "{} takes no cookie, header or source_ip: they choose what a hashing policy hashes",
                lb.policy
            ),
        ));
    }
    if hashing && keys != 1 {
        return Err(err(
            "spec.load_balancer",
            format!(
                "{} hashes one of cookie, header or source_ip: name exactly one",
                lb.policy
            ),
        ));
    }
    let hash = match (lb.cookie, lb.header, lb.source_ip) {
        (Some(c), _, _) => Some(HashOn::Cookie {
            name: c.name,
            path: c.path,
            ttl_ms: c
                .ttl
                .map(|t| duration_ms(&t, "spec.load_balancer.cookie.ttl", err))
                .transpose()?,
        }),
        (None, Some(h), _) => {
            readable_header(&h, "spec.load_balancer.header", err)?;
            Some(HashOn::Header(h.to_ascii_lowercase()))
        }
        (None, None, Some(true)) => Some(HashOn::SourceIp),
        (None, None, Some(false)) => {
            return Err(err(
                "spec.load_balancer.source_ip",
                "true, or name a cookie or header to hash instead".into(),
            ));
        }
        (None, None, None) => None,
    };
    Ok(LoadBalancer { policy, hash })
}

pub(super) fn health_check(
    h: RawHealthCheck,
    at: &str,
    err: ErrFn<'_>,
) -> Result<HealthCheck, ResourceError> {
    let probe = match (h.health_check.http, h.health_check.grpc) {
        (Some(http), None) => {
            if !http.path.starts_with('/') {
                return Err(err(
                    &format!("{at}.health_check.http.path"),
                    "a path starts with /".into(),
                ));
            }
            if let Some(r) = http
                .expected_statuses
                .iter()
                .find(|r| r.min > r.max || r.min < 100 || r.max > 599)
            {
                return Err(err(
                    &format!("{at}.health_check.http.expected_statuses"),
                    format!(
                        "{}-{}: statuses from 100 to 599, min not over max",
                        r.min, r.max
                    ),
                ));
            }
            Probe::Http {
                path: http.path,
                hostname: http.hostname,
                statuses: http
                    .expected_statuses
                    .iter()
                    .map(|r| (r.min, r.max))
                    .collect(),
            }
        }
        (None, Some(grpc)) => Probe::Grpc {
            upstream_name: grpc.upstream_name,
            authority: grpc.authority,
        },
        _ => {
            return Err(err(
                &format!("{at}.health_check"),
                "exactly one of http or grpc".into(),
            ));
        }
    };
    let ms = |v: Option<String>, field: &str, default: u64| {
        v.map_or(Ok(default), |t| {
            duration_ms(&t, &format!("{at}.{field}"), err)
        })
    };
    Ok(HealthCheck {
        timeout_ms: ms(h.timeout, "timeout", 3000)?,
        interval_ms: ms(h.interval, "interval", 5000)?,
        unhealthy_threshold: h.unhealthy_threshold.unwrap_or(2),
        healthy_threshold: h.healthy_threshold.unwrap_or(1),
        probe,
    })
}

/// Circuit breakers from Ambassador's `circuit_breakers` at `at`: one entry,
/// priority `default`.
pub(crate) fn circuit_breaker(
    list: &[RawCircuitBreaker],
    at: &str,
    err: ErrFn<'_>,
) -> Result<Option<CircuitBreaker>, ResourceError> {
    match list {
        [] => Ok(None),
        [cb] => {
            if cb.priority.as_deref().is_some_and(|p| p != "default") {
                return Err(err(
                    &format!("{at}[0].priority"),
                    "only the default priority is supported".into(),
                ));
            }
            Ok(Some(CircuitBreaker {
                max_connections: cb.max_connections,
                max_pending_requests: cb.max_pending_requests,
                max_requests: cb.max_requests,
                max_retries: cb.max_retries,
            }))
        }
        _ => Err(err(at, "one entry (priority default) is supported".into())),
    }
}
