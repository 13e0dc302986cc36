//! `Mapping` documents: which requests go to which service, and how. The
//! document and the [`Mapping`] live here, with the service's name; what it
//! sets on its routes is in `route`, on its upstream's cluster in
//! `upstream`.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::doc::{ErrFn, RawDoc, ResourceError, readable_header};
use crate::limits::{Labels, labels};

mod route;
mod upstream;

pub use route::{AddedHeader, Cors, Redirect, RetryPolicy, Sticky};
use route::{
    RawAddedHeader, RawDocs, RawRegexRewrite, RawSticky, TextOrPresent, added_headers,
    split_matches,
};
pub(crate) use route::{RawCors, RawRetry, cors, retry_policy};
pub use upstream::{CircuitBreaker, HashOn, HealthCheck, Keepalive, LoadBalancer, Outlier, Probe};
pub(crate) use upstream::{RawCircuitBreaker, circuit_breaker};
use upstream::{
    RawHealthCheck, RawKeepalive, RawLoadBalancer, RawOutlier, health_check, load_balancer,
};

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
    auth_context_extensions: BTreeMap<String, String>,
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
    /// route, in Ambassador either.
    #[serde(default)]
    docs: Option<RawDocs>,
}

/// A `Mapping`: requests matching host, prefix and headers go to a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// `metadata.name`.
    pub name: String,
    /// Host to match (`*` for any).
    pub hostname: String,
    /// `hostname` was written (not the `*` a Mapping without one gets).
    pub hostname_given: bool,
    /// `metadata.labels`: what a Host's `mappingSelector` selects by.
    pub metadata_labels: BTreeMap<String, String>,
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
    /// `auth_context_extensions`: sent to gatehouse-authz with each check
    /// of this Mapping's requests, as Ambassador sends them to its
    /// AuthService (keys starting with `gatehouse_` are the stack's own).
    pub auth_context_extensions: BTreeMap<String, String>,
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
    /// The developer portal's entry (`docs`).
    pub docs: Option<Docs>,
}

/// A Mapping's `docs`: where the developer portal finds the service's API
/// document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Docs {
    /// A path on the service, fetched through Envoy under the Mapping's prefix.
    pub path: Option<String>,
    /// An absolute URL instead.
    pub url: Option<String>,
    /// The name the portal shows (default: the Mapping's name).
    pub display_name: Option<String>,
    /// Left out of the portal.
    pub ignored: bool,
    /// How long a fetch may take, in milliseconds.
    pub timeout_ms: Option<u64>,
}

/// A Mapping hostname as Ambassador takes it: `*`, an exact name, or a
/// glob whose `*` is the whole first or last label (Envoy matches no other).
pub(crate) fn is_hostname_glob(hostname: &str) -> bool {
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
    let retry_policy = spec.retry_policy.map(retry_policy);
    let cors = spec.cors.map(|c| cors(c, "spec.cors", err)).transpose()?;
    if let Some(u) = spec.allow_upgrade.iter().find(|u| *u != "websocket") {
        return Err(err(
            "spec.allow_upgrade",
            format!("{u:?}: only websocket is supported"),
        ));
    }
    let circuit_breaker = circuit_breaker(&spec.circuit_breakers, "spec.circuit_breakers", err)?;
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
    let hostname_given = spec.hostname.is_some();
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
    if let Some(key) = spec
        .auth_context_extensions
        .keys()
        .find(|k| k.starts_with("gatehouse_"))
    {
        return Err(err(
            &format!("spec.auth_context_extensions.{key}"),
            "keys starting with gatehouse_ are the stack's own: pick another name".into(),
        ));
    }
    Ok(Mapping {
        hostname_given,
        metadata_labels: raw.metadata.labels.clone().unwrap_or_default(),
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
        auth_context_extensions: spec.auth_context_extensions,
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
        docs: spec.docs.map(|d| Docs {
            path: d.path,
            url: d.url,
            display_name: d.display_name,
            ignored: d.ignored.unwrap_or(false),
            timeout_ms: d.timeout_ms,
        }),
    })
}
