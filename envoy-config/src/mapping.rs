//! `Mapping` documents: which requests go to which service, and how
//! (rewrites, timeouts, retries, CORS, headers, circuit breakers, weights).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::doc::{ErrFn, RawDoc, ResourceError, readable_header};
use crate::limits::{Labels, labels};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMappingSpec {
    #[serde(default)]
    hostname: Option<String>,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    path: Option<String>,
    service: String,
    #[serde(default)]
    rewrite: Option<String>,
    #[serde(default)]
    weight: Option<u32>,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    headers: BTreeMap<String, TextOrPresent>,
    #[serde(default)]
    precedence: Option<i32>,
    #[serde(default)]
    add_request_headers: BTreeMap<String, RawAddedHeader>,
    #[serde(default)]
    remove_request_headers: Vec<String>,
    #[serde(default)]
    prefix_regex: bool,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    query_parameters: BTreeMap<String, TextOrPresent>,
    #[serde(default)]
    host_rewrite: Option<String>,
    #[serde(default)]
    idle_timeout_ms: Option<u64>,
    #[serde(default)]
    retry_policy: Option<RawRetry>,
    #[serde(default)]
    cors: Option<RawCors>,
    #[serde(default)]
    add_response_headers: BTreeMap<String, RawAddedHeader>,
    #[serde(default)]
    remove_response_headers: Vec<String>,
    #[serde(default)]
    allow_upgrade: Vec<String>,
    #[serde(default)]
    regex_headers: BTreeMap<String, String>,
    #[serde(default)]
    regex_query_parameters: BTreeMap<String, String>,
    #[serde(default)]
    regex_rewrite: Option<RawRegexRewrite>,
    #[serde(default)]
    grpc: bool,
    #[serde(default)]
    circuit_breakers: Vec<RawCircuitBreaker>,
    #[serde(default)]
    labels: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    sticky: Option<RawSticky>,
    #[serde(default)]
    host_redirect: bool,
    #[serde(default)]
    path_redirect: Option<String>,
    #[serde(default)]
    prefix_redirect: Option<String>,
    #[serde(default)]
    regex_redirect: Option<RawRegexRewrite>,
    #[serde(default)]
    redirect_response_code: Option<u16>,
    #[serde(default)]
    bypass_auth: bool,
    #[serde(default)]
    case_sensitive: Option<bool>,
    #[serde(default)]
    shadow: bool,
    #[serde(default)]
    connect_timeout_ms: Option<u64>,
    #[serde(default)]
    cluster_idle_timeout_ms: Option<u64>,
    #[serde(default)]
    stats_name: Option<String>,
    #[serde(default)]
    keepalive: Option<RawKeepalive>,
    #[serde(default)]
    load_balancer: Option<RawLoadBalancer>,
    #[serde(default)]
    health_checks: Vec<RawHealthCheck>,
    #[serde(default)]
    outlier_detection: Option<RawOutlier>,
    /// The developer portal's entry (Ambassador's `docs`): it changes no
    /// route, in Ambassador either; checked so a typo is still an error.
    #[serde(default, rename = "docs")]
    _docs: Option<RawDocs>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLoadBalancer {
    policy: String,
    #[serde(default)]
    cookie: Option<RawLbCookie>,
    #[serde(default)]
    header: Option<String>,
    #[serde(default)]
    source_ip: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLbCookie {
    name: String,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    ttl: Option<String>,
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
struct RawHealthCheck {
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default)]
    interval: Option<String>,
    #[serde(default)]
    unhealthy_threshold: Option<u32>,
    #[serde(default)]
    healthy_threshold: Option<u32>,
    health_check: RawHealthCheckKind,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealthCheckKind {
    #[serde(default)]
    http: Option<RawHttpHealthCheck>,
    #[serde(default)]
    grpc: Option<RawGrpcHealthCheck>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttpHealthCheck {
    path: String,
    #[serde(default)]
    hostname: Option<String>,
    #[serde(default)]
    expected_statuses: Vec<RawStatusRange>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStatusRange {
    min: u16,
    max: u16,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGrpcHealthCheck {
    upstream_name: String,
    #[serde(default)]
    authority: Option<String>,
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
struct RawOutlier {
    #[serde(default)]
    consecutive_5xx: Option<u32>,
    #[serde(default)]
    interval_ms: Option<u64>,
    #[serde(default)]
    base_ejection_time_ms: Option<u64>,
    #[serde(default)]
    max_ejection_percent: Option<u32>,
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
struct RawKeepalive {
    #[serde(default)]
    time: Option<u32>,
    #[serde(default)]
    interval: Option<u32>,
    #[serde(default)]
    probes: Option<u32>,
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

/// Where a redirecting Mapping sends the client instead of proxying
/// (Ambassador's `host_redirect` with `service` as the new host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    /// The new host (the Mapping's `service`).
    pub host: String,
    /// The whole path replaced (`path_redirect`).
    pub path: Option<String>,
    /// The matched prefix replaced (`prefix_redirect`).
    pub prefix: Option<String>,
    /// The path rewritten by regex (`regex_redirect`).
    pub regex: Option<(String, String)>,
    /// 301 (default), 302, 303, 307 or 308.
    pub code: u16,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDocs {
    #[serde(default, rename = "path")]
    _path: Option<String>,
    #[serde(default, rename = "url")]
    _url: Option<String>,
    #[serde(default, rename = "ignored")]
    _ignored: Option<bool>,
    #[serde(default, rename = "display_name")]
    _display_name: Option<String>,
    #[serde(default, rename = "timeout_ms")]
    _timeout_ms: Option<u64>,
}

/// An added header as Ambassador writes it: a value (text or a bool), or
/// `{value, append}`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawAddedHeader {
    Text(String),
    Flag(bool),
    Object {
        value: String,
        #[serde(default)]
        append: Option<bool>,
    },
}

/// A header a route adds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddedHeader {
    /// The value (Envoy's `%...%` variables work).
    pub value: String,
    /// Keep what the request or response has and add this value too
    /// (Ambassador's `append`, default `true` in the object form); `false`
    /// replaces it. The plain `name: value` form replaces, so a client
    /// never adds a copy of a header the edge sets.
    pub append: bool,
}

fn added_headers(raw: BTreeMap<String, RawAddedHeader>) -> BTreeMap<String, AddedHeader> {
    raw.into_iter()
        .map(|(name, h)| {
            let header = match h {
                RawAddedHeader::Text(value) => AddedHeader {
                    value,
                    append: false,
                },
                RawAddedHeader::Flag(b) => AddedHeader {
                    value: b.to_string(),
                    append: false,
                },
                RawAddedHeader::Object { value, append } => AddedHeader {
                    value,
                    append: append.unwrap_or(true),
                },
            };
            (name, header)
        })
        .collect()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSticky {
    #[serde(default)]
    header: Option<String>,
    #[serde(default)]
    cookie: Option<String>,
    #[serde(default)]
    salt: Option<String>,
}

/// What keeps a user on one side of a weighted split (Gatehouse's `sticky`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sticky {
    /// The request header whose value is hashed (e.g. a verified claim).
    pub header: Option<String>,
    /// Or the cookie.
    pub cookie: Option<String>,
    /// Changing it reshuffles everyone.
    pub salt: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegexRewrite {
    pattern: String,
    substitution: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCircuitBreaker {
    #[serde(default)]
    priority: Option<String>,
    #[serde(default)]
    max_connections: Option<u32>,
    #[serde(default)]
    max_pending_requests: Option<u32>,
    #[serde(default)]
    max_requests: Option<u32>,
    #[serde(default)]
    max_retries: Option<u32>,
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetry {
    #[serde(default)]
    retry_on: Option<String>,
    #[serde(default)]
    num_retries: Option<u32>,
    #[serde(default)]
    per_try_timeout: Option<String>,
}

/// A header or query match: an exact value, or `true` for "present".
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum TextOrPresent {
    Text(String),
    Present(bool),
}

/// Splits matches into exact ones and `true` (present: any value, which
/// Envoy matches as the regular expression `.*`).
fn split_matches(
    raw: BTreeMap<String, TextOrPresent>,
    field: &str,
    regex: &mut BTreeMap<String, String>,
    err: ErrFn<'_>,
) -> Result<BTreeMap<String, String>, ResourceError> {
    let mut exact = BTreeMap::new();
    for (name, m) in raw {
        match m {
            TextOrPresent::Text(v) => {
                exact.insert(name, v);
            }
            TextOrPresent::Present(true) => {
                regex.insert(name, ".*".into());
            }
            TextOrPresent::Present(false) => {
                return Err(err(
                    &format!("spec.{field}.{name}"),
                    "true (present) or a value; absence is not supported yet".into(),
                ));
            }
        }
    }
    Ok(exact)
}

/// Ambassador accepts a list or one comma-separated string.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ListOrString {
    List(Vec<String>),
    One(String),
}

impl ListOrString {
    fn items(self) -> Vec<String> {
        match self {
            Self::List(l) => l,
            Self::One(s) => s
                .split(',')
                .map(|p| p.trim().to_owned())
                .filter(|p| !p.is_empty())
                .collect(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCors {
    origins: ListOrString,
    #[serde(default)]
    methods: Option<ListOrString>,
    #[serde(default)]
    headers: Option<ListOrString>,
    #[serde(default)]
    exposed_headers: Option<ListOrString>,
    #[serde(default)]
    credentials: bool,
    #[serde(default)]
    max_age: Option<String>,
}

/// A route's retry policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Envoy's `retry_on` (e.g. `5xx`, `gateway-error`).
    pub retry_on: String,
    /// How many retries.
    pub num_retries: u32,
    /// Timeout of each try, e.g. `0.5s`.
    pub per_try_timeout: Option<String>,
}

/// A route's CORS policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cors {
    /// Allowed origins, exact (`*` for any).
    pub origins: Vec<String>,
    /// Allowed methods.
    pub methods: Vec<String>,
    /// Allowed request headers.
    pub headers: Vec<String>,
    /// Response headers the browser may read.
    pub exposed_headers: Vec<String>,
    /// Whether credentials are allowed.
    pub credentials: bool,
    /// Preflight cache time, seconds, as text.
    pub max_age: Option<String>,
}

/// A `Mapping`: requests matching host, prefix and headers go to a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// `metadata.name`.
    pub name: String,
    /// Host to match (`*` for any).
    pub hostname: String,
    /// Path prefix (the whole path with `exact_path`).
    pub prefix: String,
    /// `prefix` is an exact path (Gatehouse's `path`).
    pub exact_path: bool,
    /// Upstream host and port.
    pub host: String,
    /// Upstream port.
    pub port: u16,
    /// Path prefix sent upstream instead of `prefix` (Ambassador's default `/`).
    pub rewrite: String,
    /// Share of traffic among Mappings with the same match, if set.
    pub weight: Option<u32>,
    /// Request timeout, milliseconds (Ambassador's default 3000).
    pub timeout_ms: u64,
    /// Exact header matches.
    pub headers: BTreeMap<String, String>,
    /// Higher first, before the length rule.
    pub precedence: i32,
    /// Headers added to the request.
    pub add_request_headers: BTreeMap<String, AddedHeader>,
    /// Headers removed from the request.
    pub remove_request_headers: Vec<String>,
    /// `prefix` is a regular expression (RE2) over the whole path.
    pub prefix_regex: bool,
    /// Method to match.
    pub method: Option<String>,
    /// Exact query parameter matches.
    pub query_parameters: BTreeMap<String, String>,
    /// `Host` sent upstream.
    pub host_rewrite: Option<String>,
    /// Stream idle timeout, milliseconds.
    pub idle_timeout_ms: Option<u64>,
    /// Retries.
    pub retry_policy: Option<RetryPolicy>,
    /// CORS.
    pub cors: Option<Cors>,
    /// Headers added to the response.
    pub add_response_headers: BTreeMap<String, AddedHeader>,
    /// Headers removed from the response.
    pub remove_response_headers: Vec<String>,
    /// Upgrades allowed (e.g. `websocket`).
    pub allow_upgrade: Vec<String>,
    /// Header matches by regular expression (RE2, whole value).
    pub regex_headers: BTreeMap<String, String>,
    /// Query parameter matches by regular expression.
    pub regex_query_parameters: BTreeMap<String, String>,
    /// Path rewrite by regular expression: (pattern, substitution); replaces
    /// `rewrite`.
    pub regex_rewrite: Option<(String, String)>,
    /// The upstream speaks TLS (`https://` service).
    pub tls: bool,
    /// The upstream speaks gRPC (HTTP/2).
    pub grpc: bool,
    /// Circuit breakers of the upstream.
    pub circuit_breaker: Option<CircuitBreaker>,
    /// Rate-limit labels by domain.
    pub labels: Labels,
    /// Sticky weights.
    pub sticky: Option<Sticky>,
    /// Answer with a redirect instead of proxying (`host_redirect`).
    pub redirect: Option<Redirect>,
    /// No Filter checks this Mapping's requests (`bypass_auth`).
    pub bypass_auth: bool,
    /// Paths match without regard to case (`case_sensitive: false`).
    pub case_insensitive: bool,
    /// A copy of each request of the Mappings with the same match goes here,
    /// its answer dropped (`shadow`).
    pub shadow: bool,
    /// Upstream connect timeout, milliseconds (`connect_timeout_ms`).
    pub connect_timeout_ms: Option<u64>,
    /// Idle upstream connections closed after, milliseconds.
    pub cluster_idle_timeout_ms: Option<u64>,
    /// The cluster's name in Envoy's stats (`stats_name`).
    pub stats_name: Option<String>,
    /// TCP keepalive to the upstream.
    pub keepalive: Option<Keepalive>,
    /// How requests spread over the service's instances.
    pub load_balancer: Option<LoadBalancer>,
    /// Active health checks of the instances.
    pub health_checks: Vec<HealthCheck>,
    /// Passive ejection of failing instances.
    pub outlier: Option<Outlier>,
}

/// A Mapping hostname as Ambassador takes it: `*`, an exact name, or a
/// glob whose `*` is the whole first or last label (Envoy matches no other).
fn is_hostname_glob(hostname: &str) -> bool {
    let name_ok = |s: &str| {
        !s.is_empty()
            && !s.starts_with('.')
            && !s.ends_with('.')
            && !s.contains("..")
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b':')
    };
    if hostname == "*" {
        return true;
    }
    if let Some(rest) = hostname.strip_prefix("*.") {
        return name_ok(rest);
    }
    if let Some(rest) = hostname.strip_suffix(".*") {
        return name_ok(rest);
    }
    name_ok(hostname)
}

/// The upstream host as Ambassador's Kubernetes service resolver names it:
/// a bare service name (no `.`, not `localhost`) of a Mapping in another
/// namespace than the instance's gets that namespace (`quote` in `shop`
/// is `quote.shop`); dotted names and addresses stay as written.
fn qualified_host(host: String, namespace: Option<&str>, instance_namespace: &str) -> String {
    match namespace {
        Some(ns)
            if !ns.is_empty()
                && ns != instance_namespace
                && !host.contains('.')
                && !host.contains(':')
                && host != "localhost" =>
        {
            format!("{host}.{ns}")
        }
        _ => host,
    }
}

/// A Mapping from its document.
pub(crate) fn mapping(
    raw: RawDoc<RawMappingSpec>,
    instance_namespace: &str,
    err: ErrFn<'_>,
) -> Result<Mapping, ResourceError> {
    let spec = raw.spec;
    if raw.metadata.name.is_empty() {
        return Err(err("metadata.name", "a Mapping needs a name".into()));
    }
    let (prefix, exact_path) = match (spec.prefix, spec.path) {
        (Some(p), None) => (p, false),
        (None, Some(p)) if !spec.prefix_regex => (p, true),
        _ => {
            return Err(err(
                "spec.prefix",
                "a Mapping has a prefix or (Gatehouse) an exact path, not both".into(),
            ));
        }
    };
    if !spec.prefix_regex && !prefix.starts_with('/') {
        return Err(err(
            if exact_path {
                "spec.path"
            } else {
                "spec.prefix"
            },
            "a path starts with /".into(),
        ));
    }
    // Ambassador's service: `[scheme://]host[:port]`.
    let (tls, service) = match spec.service.split_once("://") {
        None => (false, spec.service.as_str()),
        Some(("http", rest)) => (false, rest),
        Some(("https", rest)) => (true, rest),
        Some((other, _)) => {
            return Err(err(
                "spec.service",
                format!("scheme {other:?}: use http:// or https:// (gRPC: grpc: true)"),
            ));
        }
    };
    let (host, port) = match service.rsplit_once(':') {
        Some((h, p)) => (
            h.to_owned(),
            p.parse::<u16>()
                .map_err(|_| err("spec.service", format!("{p:?} is not a port")))?,
        ),
        None => (service.to_owned(), if tls { 443 } else { 80 }),
    };
    if host.is_empty() || host.contains('/') {
        return Err(err(
            "spec.service",
            "write host:port, e.g. billing:8080".into(),
        ));
    }
    let host = qualified_host(host, raw.metadata.namespace.as_deref(), instance_namespace);
    if spec.weight.is_some_and(|w| w > 100) {
        return Err(err(
            "spec.weight",
            "a weight is a percentage, 0 to 100".into(),
        ));
    }
    let retry_policy = match spec.retry_policy {
        None => None,
        Some(r) => Some(RetryPolicy {
            retry_on: r.retry_on.unwrap_or_else(|| "5xx".into()),
            num_retries: r.num_retries.unwrap_or(1),
            per_try_timeout: r.per_try_timeout,
        }),
    };
    let cors = spec.cors.map(|c| Cors {
        origins: c.origins.items(),
        methods: c.methods.map(ListOrString::items).unwrap_or_default(),
        headers: c.headers.map(ListOrString::items).unwrap_or_default(),
        exposed_headers: c
            .exposed_headers
            .map(ListOrString::items)
            .unwrap_or_default(),
        credentials: c.credentials,
        max_age: c.max_age,
    });
    if cors.as_ref().is_some_and(|c| c.origins.is_empty()) {
        return Err(err(
            "spec.cors.origins",
            "name at least one origin (or *)".into(),
        ));
    }
    if let Some(u) = spec.allow_upgrade.iter().find(|u| *u != "websocket") {
        return Err(err(
            "spec.allow_upgrade",
            format!("{u:?}: only websocket is supported"),
        ));
    }
    let circuit_breaker = match spec.circuit_breakers.as_slice() {
        [] => None,
        [cb] => {
            if cb.priority.as_deref().is_some_and(|p| p != "default") {
                return Err(err(
                    "spec.circuit_breakers[0].priority",
                    "only the default priority is supported".into(),
                ));
            }
            Some(CircuitBreaker {
                max_connections: cb.max_connections,
                max_pending_requests: cb.max_pending_requests,
                max_requests: cb.max_requests,
                max_retries: cb.max_retries,
            })
        }
        _ => {
            return Err(err(
                "spec.circuit_breakers",
                "one entry (priority default) is supported".into(),
            ));
        }
    };
    if spec.regex_rewrite.is_some() && spec.rewrite.is_some() {
        return Err(err(
            "spec.regex_rewrite",
            "rewrite or regex_rewrite, not both".into(),
        ));
    }
    let sticky = match spec.sticky {
        None => None,
        Some(st) => {
            if usize::from(st.header.is_some()) + usize::from(st.cookie.is_some()) != 1 {
                return Err(err(
                    "spec.sticky",
                    "name one header or one cookie to hash".into(),
                ));
            }
            if spec.prefix_regex {
                return Err(err(
                    "spec.sticky",
                    "a sticky split needs a prefix, not prefix_regex".into(),
                ));
            }
            if let Some(h) = &st.header {
                readable_header(h, "spec.sticky.header", err)?;
            }
            Some(Sticky {
                header: st.header.map(|h| h.to_ascii_lowercase()),
                cookie: st.cookie,
                salt: st.salt,
            })
        }
    };
    let mut regex_headers = spec.regex_headers;
    let headers = split_matches(spec.headers, "headers", &mut regex_headers, err)?;
    for (field, names) in [("headers", &headers), ("regex_headers", &regex_headers)] {
        for name in names.keys() {
            readable_header(name, &format!("spec.{field}.{name}"), err)?;
        }
    }
    let mut regex_query_parameters = spec.regex_query_parameters;
    let query_parameters = split_matches(
        spec.query_parameters,
        "query_parameters",
        &mut regex_query_parameters,
        err,
    )?;
    let labels = match &spec.labels {
        None => Labels::new(),
        Some(v) => labels(v, err)?,
    };
    let hostname = spec.hostname.unwrap_or_else(|| "*".into());
    if !is_hostname_glob(&hostname) {
        return Err(err(
            "spec.hostname",
            format!(
                "{hostname:?}: write *, a host name, or a glob with * as its whole first or last label (*.example.com, example.*)"
            ),
        ));
    }
    let redirect = if spec.host_redirect {
        let code = spec.redirect_response_code.unwrap_or(301);
        if ![301, 302, 303, 307, 308].contains(&code) {
            return Err(err(
                "spec.redirect_response_code",
                format!("{code}: 301, 302, 303, 307 or 308"),
            ));
        }
        let ways = usize::from(spec.path_redirect.is_some())
            + usize::from(spec.prefix_redirect.is_some())
            + usize::from(spec.regex_redirect.is_some());
        if ways > 1 {
            return Err(err(
                "spec.path_redirect",
                "path_redirect, prefix_redirect or regex_redirect: one of them".into(),
            ));
        }
        if spec.shadow {
            return Err(err(
                "spec.shadow",
                "a redirect sends nothing upstream to shadow".into(),
            ));
        }
        Some(Redirect {
            host: if port == 80 || (tls && port == 443) {
                host.clone()
            } else {
                format!("{host}:{port}")
            },
            path: spec.path_redirect,
            prefix: spec.prefix_redirect,
            regex: spec.regex_redirect.map(|r| (r.pattern, r.substitution)),
            code,
        })
    } else {
        for (set, field) in [
            (spec.path_redirect.is_some(), "path_redirect"),
            (spec.prefix_redirect.is_some(), "prefix_redirect"),
            (spec.regex_redirect.is_some(), "regex_redirect"),
            (
                spec.redirect_response_code.is_some(),
                "redirect_response_code",
            ),
        ] {
            if set {
                return Err(err(
                    &format!("spec.{field}"),
                    "goes with host_redirect: true, as in Ambassador".into(),
                ));
            }
        }
        None
    };
    let load_balancer = match spec.load_balancer {
        None => None,
        Some(lb) => Some(load_balancer(lb, err)?),
    };
    let health_checks = spec
        .health_checks
        .into_iter()
        .enumerate()
        .map(|(i, h)| health_check(h, &format!("spec.health_checks[{i}]"), err))
        .collect::<Result<Vec<_>, _>>()?;
    let outlier = spec.outlier_detection.map(|o| Outlier {
        consecutive_5xx: o.consecutive_5xx.unwrap_or(5),
        interval_ms: o.interval_ms.unwrap_or(10_000),
        base_ejection_time_ms: o.base_ejection_time_ms.unwrap_or(30_000),
        max_ejection_percent: o.max_ejection_percent.unwrap_or(10),
    });
    if outlier
        .as_ref()
        .is_some_and(|o| o.max_ejection_percent > 100)
    {
        return Err(err(
            "spec.outlier_detection.max_ejection_percent",
            "a percentage, 0 to 100".into(),
        ));
    }
    if spec.stats_name.as_deref().is_some_and(|n| {
        n.is_empty()
            || !n
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
    }) {
        return Err(err(
            "spec.stats_name",
            "letters, digits, '_', '-' and '.' only".into(),
        ));
    }
    Ok(Mapping {
        name: raw.metadata.name,
        hostname,
        prefix: prefix.clone(),
        exact_path,
        host,
        port,
        // An exact path is sent as it is unless a rewrite says otherwise.
        rewrite: spec.rewrite.unwrap_or_else(|| {
            if exact_path {
                prefix.clone()
            } else {
                "/".into()
            }
        }),
        weight: spec.weight,
        timeout_ms: spec.timeout_ms.unwrap_or(3000),
        headers,
        precedence: spec.precedence.unwrap_or(0),
        add_request_headers: added_headers(spec.add_request_headers),
        remove_request_headers: spec.remove_request_headers,
        prefix_regex: spec.prefix_regex,
        method: spec.method,
        query_parameters,
        host_rewrite: spec.host_rewrite,
        idle_timeout_ms: spec.idle_timeout_ms,
        retry_policy,
        cors,
        add_response_headers: added_headers(spec.add_response_headers),
        remove_response_headers: spec.remove_response_headers,
        allow_upgrade: spec.allow_upgrade,
        regex_headers,
        regex_query_parameters,
        regex_rewrite: spec.regex_rewrite.map(|r| (r.pattern, r.substitution)),
        tls,
        grpc: spec.grpc,
        circuit_breaker,
        labels,
        sticky,
        redirect,
        bypass_auth: spec.bypass_auth,
        case_insensitive: spec.case_sensitive == Some(false),
        shadow: spec.shadow,
        connect_timeout_ms: spec.connect_timeout_ms,
        cluster_idle_timeout_ms: spec.cluster_idle_timeout_ms,
        stats_name: spec.stats_name,
        keepalive: spec.keepalive.map(|k| Keepalive {
            time: k.time,
            interval: k.interval,
            probes: k.probes,
        }),
        load_balancer,
        health_checks,
        outlier,
    })
}

/// A Go duration as Ambassador reads one (`3s`, `1m30s`, `500ms`), in
/// milliseconds.
fn duration_ms(text: &str, path: &str, err: ErrFn<'_>) -> Result<u64, ResourceError> {
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
fn load_balancer(lb: RawLoadBalancer, err: ErrFn<'_>) -> Result<LoadBalancer, ResourceError> {
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

fn health_check(h: RawHealthCheck, at: &str, err: ErrFn<'_>) -> Result<HealthCheck, ResourceError> {
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
