//! The listeners and their HTTP connection manager: the access log, the
//! early header mutation that removes the stack's own headers, the filter
//! chain, and the hygiene `crate::sanitize` sets before any route is chosen.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::host::{Host, Listener, SecurityModel};
use crate::policy::FilterKind;
use crate::resources::Resources;

use super::context::Ctx;
use super::filters::http_filters;
use super::options::{RenderError, RenderOptions, render_err};

/// Where a listener's routes come from.
pub(super) enum Routes {
    /// In the listener (a static bootstrap).
    Inline(Value),
    /// Over RDS from this config source (`--live`: a watched file).
    Rds(Value),
}

/// One listener to render.
pub(super) struct ListenerSpec {
    pub(super) name: String,
    pub(super) port: u16,
    pub(super) tls: bool,
    pub(super) hops: u32,
    /// Which requests count as secure.
    pub(super) security: SecurityModel,
    /// Cleartext on the TLS port too (an HTTPS `Listener`, as in Ambassador).
    pub(super) cleartext_too: bool,
}

/// The listeners to render: the `Listener` resources (a port chosen in the
/// options replaces the first one's of its kind), or the options' own.
impl ListenerSpec {
    /// The cleartext listener of the options, when no Listener resource
    /// says: every request on it is insecure.
    pub(super) fn cleartext(options: &RenderOptions) -> Self {
        Self {
            name: "ingress".into(),
            port: options.listen_port,
            tls: false,
            hops: options.xff_num_trusted_hops,
            security: SecurityModel::Insecure,
            cleartext_too: false,
        }
    }
}

pub(super) fn listener_specs(resources: &Resources, options: &RenderOptions) -> Vec<ListenerSpec> {
    if resources.listeners.is_empty() {
        let mut out = vec![ListenerSpec::cleartext(options)];
        if resources
            .hosts
            .iter()
            .any(|h| h.tls_files.is_some() || h.tls_secret.is_some())
        {
            out.push(ListenerSpec {
                name: "ingress_tls".into(),
                port: options.https_port,
                tls: true,
                hops: options.xff_num_trusted_hops,
                security: SecurityModel::Secure,
                cleartext_too: false,
            });
        }
        return out;
    }
    let mut ls: Vec<&Listener> = resources.listeners.iter().collect();
    ls.sort_by_key(|l| l.port);
    // A port the caller chose (not the default) replaces the first
    // Listener's of its kind: tests and `--listen-port` use that.
    let defaults = RenderOptions::default();
    let mut cleartext_port =
        (options.listen_port != defaults.listen_port).then_some(options.listen_port);
    let mut tls_port = (options.https_port != defaults.https_port).then_some(options.https_port);
    ls.into_iter()
        .map(|l| {
            let chosen = if l.tls {
                tls_port.take()
            } else {
                cleartext_port.take()
            };
            ListenerSpec {
                name: l.name.clone(),
                port: chosen.unwrap_or(l.port),
                tls: l.tls,
                hops: l.l7_depth,
                security: l.security_model.unwrap_or(if l.tls {
                    SecurityModel::Secure
                } else {
                    SecurityModel::Insecure
                }),
                cleartext_too: l.tls,
            }
        })
        .collect()
}

/// The HTTP connection manager, its routes inline or over RDS.
fn hcm(ctx: &Ctx<'_>, spec: &ListenerSpec, routes: Routes) -> Value {
    let mut hcm = json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": spec.name,
        "access_log": access_log(),
        // Every request gets an x-request-id (kept when it comes with one);
        // traceparent passes through untouched.
        "generate_request_id": true,
        "xff_num_trusted_hops": spec.hops,
        // Ambassador's default; the Module may turn it off.
        "use_remote_address": ctx
            .resources
            .module
            .as_ref()
            .and_then(|m| m.use_remote_address)
            .unwrap_or(true),
        "early_header_mutation_extensions": early_header_mutation(ctx),
        "http_filters": http_filters(ctx),
    });
    crate::sanitize::harden(&mut hcm);
    match routes {
        Routes::Rds(config_source) => {
            hcm["rds"] = json!({
                "route_config_name": "gatehouse",
                "config_source": config_source,
            });
        }
        Routes::Inline(config) => hcm["route_config"] = config,
    }
    hcm
}

/// One listener: its HTTP connection manager, and for TLS a filter chain
/// per Host with a certificate.
pub(super) fn listener(
    ctx: &Ctx<'_>,
    spec: &ListenerSpec,
    routes: Routes,
) -> Result<Value, RenderError> {
    let address = json!({ "socket_address": { "address": ctx.options.listen_address, "port_value": spec.port } });
    let filters = json!([{
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": hcm(ctx, spec, routes),
    }]);
    if !spec.tls {
        return Ok(
            json!({ "name": spec.name, "address": address, "filter_chains": [{ "filters": filters }] }),
        );
    }
    let mut chains = Vec::new();
    let mut hosts: Vec<&Host> = ctx.resources.hosts.iter().collect();
    hosts.sort_by(|a, b| a.hostname.cmp(&b.hostname));
    for h in hosts {
        let (cert, key) = match (&h.tls_files, &h.tls_secret) {
            (Some((c, k)), _) => (c.clone(), k.clone()),
            (None, Some(secret)) => (
                format!("{}/{secret}/tls.crt", ctx.options.secrets_dir),
                format!("{}/{secret}/tls.key", ctx.options.secrets_dir),
            ),
            (None, None) => continue,
        };
        // `*` takes every name the others do not: no server name to match.
        let mut chain_match = json!({ "transport_protocol": "tls" });
        if h.hostname != "*" {
            chain_match["server_names"] = json!([h.hostname]);
        }
        chains.push(json!({
            "filter_chain_match": chain_match,
            "transport_socket": {
                "name": "envoy.transport_sockets.tls",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                    "common_tls_context": {
                        "tls_certificates": [{
                            "certificate_chain": { "filename": cert },
                            "private_key": { "filename": key },
                        }],
                        "alpn_protocols": ["h2", "http/1.1"],
                    },
                },
            },
            "filters": filters,
        }));
    }
    if chains.is_empty() {
        return Err(render_err(
            format!("Listener {}", spec.name),
            "spec.protocol",
            "HTTPS, but no Host has tlsSecret or tlsFiles",
        ));
    }
    if spec.cleartext_too {
        // What is not TLS (the inspector says raw_buffer) is served on the
        // same port, its security by the Listener's securityModel.
        chains.push(json!({ "filter_chain_match": { "transport_protocol": "raw_buffer" }, "filters": filters }));
    }
    Ok(json!({
        "name": spec.name,
        "address": address,
        "listener_filters": [{
            "name": "envoy.filters.listener.tls_inspector",
            "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector" }
        }],
        "filter_chains": chains,
    }))
}

/// The access log on by default: one JSON object a request on stdout, with
/// the request id and `traceparent` to follow a request across services.
fn access_log() -> Value {
    json!([{
        "name": "envoy.access_loggers.stdout",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
            "log_format": { "json_format": {
                "start_time": "%START_TIME%",
                "method": "%REQ(:METHOD)%",
                "path": crate::sanitize::LOGGED_PATH,
                "authority": "%REQ(:AUTHORITY)%",
                "status": "%RESPONSE_CODE%",
                "flags": "%RESPONSE_FLAGS%",
                "duration_ms": "%DURATION%",
                "bytes_received": "%BYTES_RECEIVED%",
                "bytes_sent": "%BYTES_SENT%",
                "upstream_cluster": "%UPSTREAM_CLUSTER%",
                "client": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
                "request_id": "%REQ(X-REQUEST-ID)%",
                "traceparent": "%REQ(TRACEPARENT)%",
            }}
        }
    }])
}

/// Headers only the stack writes, removed from every request before
/// anything reads it: the `x-gatehouse-` prefix, every header a JWT or
/// OAuth2 Filter injects and every request header a RateLimit adds.
fn early_header_mutation(ctx: &Ctx<'_>) -> Value {
    let mut mutations =
        vec![json!({ "remove_on_match": { "key_matcher": { "prefix": "x-gatehouse-" } } })];
    let injected: BTreeSet<&str> = ctx
        .jwt_filters()
        .flat_map(|(_, j)| j.inject.iter().map(|(h, _)| h.as_str()))
        .chain(ctx.resources.filters.iter().flat_map(|f| match &f.kind {
            FilterKind::OAuth2(o) => o.inject.iter().map(|(h, _)| h.as_str()).collect(),
            _ => Vec::new(),
        }))
        .chain(
            ctx.resources
                .rate_limits
                .iter()
                .flat_map(|r| &r.limits)
                .flat_map(|l| l.inject_request.iter().map(|(h, _)| h.as_str())),
        )
        .filter(|h| !h.starts_with("x-gatehouse-"))
        .collect();
    for h in injected {
        mutations.push(json!({ "remove": h }));
    }
    json!([{
        "name": "envoy.http.early_header_mutation.header_mutation",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.http.early_header_mutation.header_mutation.v3.HeaderMutation",
            "mutations": mutations,
        }
    }])
}
