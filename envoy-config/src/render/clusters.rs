//! The clusters: one per upstream of the Mappings, one per JWKS host, and
//! the two services'.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::mapping::{HealthCheck, Mapping, Probe};

use super::context::Ctx;
use super::names::{
    AUTHZ_CLUSTER, FEED_CLUSTER, RATELIMIT_CLUSTER, cluster_name, jwks_cluster_name, seconds_text,
};
use super::options::{RenderError, RenderOptions, render_err};

/// Every cluster, by name.
pub(super) fn clusters(ctx: &Ctx<'_>) -> Result<Vec<Value>, RenderError> {
    let mut clusters: BTreeMap<String, (Value, &str)> = BTreeMap::new();
    // A redirecting Mapping sends nothing upstream: no cluster.
    for m in ctx
        .resources
        .mappings
        .iter()
        .filter(|m| m.redirect.is_none())
    {
        let c = cluster(ctx.options, m);
        match clusters.get(&cluster_name(m)) {
            Some((existing, other)) if *existing != c => {
                // Name the first setting of the cluster they disagree on.
                let field = [
                    ("circuit_breakers", "circuit_breakers"),
                    ("connect_timeout", "connect_timeout_ms"),
                    (
                        "typed_extension_protocol_options",
                        "cluster_idle_timeout_ms",
                    ),
                    ("alt_stat_name", "stats_name"),
                    ("upstream_connection_options", "keepalive"),
                    ("lb_policy", "load_balancer"),
                    ("health_checks", "health_checks"),
                    ("outlier_detection", "outlier_detection"),
                ]
                .into_iter()
                .find(|(key, _)| existing.get(key) != c.get(key))
                .map_or("service", |(_, field)| field);
                return Err(render_err(
                    format!("Mapping {}", m.name),
                    format!("spec.{field}"),
                    format!(
                        "Mapping {other} sends to the same service with another {field}: one upstream has one setting, give both the same"
                    ),
                ));
            }
            Some(_) => {}
            None => {
                clusters.insert(cluster_name(m), (c, &m.name));
            }
        }
    }
    let mut out: BTreeMap<String, Value> = clusters.into_iter().map(|(k, (v, _))| (k, v)).collect();
    for (_, j) in ctx.jwt_filters() {
        let name = jwks_cluster_name(&j.jwks_uri);
        let mut c = plain_cluster(&name, &j.jwks_uri.host, j.jwks_uri.port);
        if j.jwks_uri.scheme == "https" {
            c["transport_socket"] = upstream_tls(ctx.options, &j.jwks_uri.host);
        }
        out.insert(name, c);
    }
    if ctx.has_authz {
        out.insert(
            AUTHZ_CLUSTER.into(),
            service_cluster(
                AUTHZ_CLUSTER,
                &ctx.options.authz_address,
                ctx.options.services_ca_file.as_deref(),
            ),
        );
    }
    if ctx.fast_filters().next().is_some() {
        // The fast path's keys: over a Unix socket only Envoy and
        // gatehouse-authz share, never a network port.
        out.insert(
            FEED_CLUSTER.into(),
            json!({
                "name": FEED_CLUSTER,
                "type": "STATIC",
                "connect_timeout": "1s",
                "load_assignment": {
                    "cluster_name": FEED_CLUSTER,
                    "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": { "pipe": { "path": ctx.options.feed_socket } } } }] }],
                },
            }),
        );
    }
    if !ctx.domains.is_empty() {
        out.insert(
            RATELIMIT_CLUSTER.into(),
            service_cluster(
                RATELIMIT_CLUSTER,
                &ctx.ratelimit_service().address,
                ctx.options.services_ca_file.as_deref(),
            ),
        );
    }
    if let Some(resolver) = &ctx.options.dns_resolver {
        let (ip, port) = resolver
            .rsplit_once(':')
            .and_then(|(ip, p)| {
                Some((ip.parse::<std::net::IpAddr>().ok()?, p.parse::<u16>().ok()?))
            })
            .ok_or_else(|| {
                render_err(
                    "--dns-resolver".into(),
                    "",
                    format!("{resolver:?}: write the DNS server's ip:port, e.g. 10.0.0.10:53"),
                )
            })?;
        for c in out.values_mut().filter(|c| c["type"] == "STRICT_DNS") {
            c["typed_dns_resolver_config"] = json!({
                "name": "envoy.network.dns_resolver.cares",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.network.dns_resolver.cares.v3.CaresDnsResolverConfig",
                    "resolvers": [{ "socket_address": { "address": ip.to_string(), "port_value": port } }],
                    "dns_resolver_options": { "no_default_search_domain": true },
                },
            });
        }
    }
    Ok(out.into_values().collect())
}

fn upstream_tls(ctx_options: &RenderOptions, sni: &str) -> Value {
    upstream_tls_with(&ctx_options.ca_file, sni)
}

/// TLS to an upstream named `sni`, its certificate checked against `ca`.
fn upstream_tls_with(ca: &str, sni: &str) -> Value {
    json!({
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "sni": sni,
            "common_tls_context": { "validation_context": {
                "trusted_ca": { "filename": ca },
                "match_typed_subject_alt_names": [{ "san_type": "DNS", "matcher": { "exact": sni } }],
            }},
        }
    })
}

fn http2_options() -> Value {
    json!({ "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
        "explicit_http_config": { "http2_protocol_options": {} },
    }})
}

fn plain_cluster(name: &str, host: &str, port: u16) -> Value {
    let is_ip = host.parse::<std::net::IpAddr>().is_ok();
    json!({
        "name": name,
        "type": if is_ip { "STATIC" } else { "STRICT_DNS" },
        "connect_timeout": "2s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": {
                "socket_address": { "address": host, "port_value": port }
            }}}]}]
        }
    })
}

fn cluster(options: &RenderOptions, m: &Mapping) -> Value {
    let mut c = plain_cluster(&cluster_name(m), &m.host, m.port);
    if m.tls {
        c["transport_socket"] = upstream_tls(options, &m.host);
    }
    if m.grpc {
        c["typed_extension_protocol_options"] = http2_options();
    }
    if let Some(ms) = m.cluster_idle_timeout_ms {
        let key = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
        if !m.grpc {
            c["typed_extension_protocol_options"] = json!({ key: {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": { "http_protocol_options": {} },
            }});
        }
        c["typed_extension_protocol_options"][key]["common_http_protocol_options"] =
            json!({ "idle_timeout": seconds_text(ms) });
    }
    if let Some(ms) = m.connect_timeout_ms {
        c["connect_timeout"] = json!(seconds_text(ms));
    }
    if let Some(name) = &m.stats_name {
        c["alt_stat_name"] = json!(name);
    }
    if let Some(k) = &m.keepalive {
        let mut keepalive = json!({});
        for (field, v) in [
            ("keepalive_time", k.time),
            ("keepalive_interval", k.interval),
            ("keepalive_probes", k.probes),
        ] {
            if let Some(v) = v {
                keepalive[field] = json!(v);
            }
        }
        c["upstream_connection_options"] = json!({ "tcp_keepalive": keepalive });
    }
    if let Some(lb) = &m.load_balancer {
        c["lb_policy"] = json!(lb.policy);
    }
    if !m.health_checks.is_empty() {
        c["health_checks"] = Value::Array(m.health_checks.iter().map(health_check).collect());
    }
    if let Some(o) = &m.outlier {
        c["outlier_detection"] = json!({
            "consecutive_5xx": o.consecutive_5xx,
            "interval": seconds_text(o.interval_ms),
            "base_ejection_time": seconds_text(o.base_ejection_time_ms),
            "max_ejection_percent": o.max_ejection_percent,
        });
    }
    if let Some(cb) = &m.circuit_breaker {
        let mut t = json!({ "priority": "DEFAULT" });
        for (field, v) in [
            ("max_connections", cb.max_connections),
            ("max_pending_requests", cb.max_pending_requests),
            ("max_requests", cb.max_requests),
            ("max_retries", cb.max_retries),
        ] {
            if let Some(v) = v {
                t[field] = json!(v);
            }
        }
        c["circuit_breakers"] = json!({ "thresholds": [t] });
    }
    c
}

/// Envoy's `HealthCheck` for one of a Mapping's.
fn health_check(h: &HealthCheck) -> Value {
    let mut check = json!({
        "timeout": seconds_text(h.timeout_ms),
        "interval": seconds_text(h.interval_ms),
        // The interval is the interval: Envoy would otherwise check a
        // cluster that has had no traffic yet only once a minute.
        "no_traffic_interval": seconds_text(h.interval_ms),
        "unhealthy_threshold": h.unhealthy_threshold,
        "healthy_threshold": h.healthy_threshold,
    });
    match &h.probe {
        Probe::Http {
            path,
            hostname,
            statuses,
        } => {
            let mut http = json!({ "path": path });
            if let Some(host) = hostname {
                http["host"] = json!(host);
            }
            if !statuses.is_empty() {
                // Envoy's ranges end before `end`; Ambassador's include max.
                http["expected_statuses"] = Value::Array(
                    statuses
                        .iter()
                        .map(|(min, max)| json!({ "start": min, "end": u32::from(*max) + 1 }))
                        .collect(),
                );
            }
            check["http_health_check"] = http;
        }
        Probe::Grpc {
            upstream_name,
            authority,
        } => {
            let mut grpc = json!({ "service_name": upstream_name });
            if let Some(a) = authority {
                grpc["authority"] = json!(a);
            }
            check["grpc_health_check"] = grpc;
        }
    }
    check
}

/// A service address `host:port` as a cluster speaking gRPC, over TLS
/// checked against `ca` when given.
fn service_cluster(name: &str, address: &str, ca: Option<&str>) -> Value {
    let (host, port) = address
        .rsplit_once(':')
        .and_then(|(h, p)| p.parse::<u16>().ok().map(|p| (h, p)))
        .unwrap_or((address, 80));
    let mut c = plain_cluster(name, host, port);
    c["typed_extension_protocol_options"] = http2_options();
    if let Some(ca) = ca {
        let mut tls = upstream_tls_with(ca, host);
        tls["typed_config"]["common_tls_context"]["alpn_protocols"] = json!(["h2"]);
        c["transport_socket"] = tls;
    }
    c
}
