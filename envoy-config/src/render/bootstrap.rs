//! [`render`]: the static files, an Envoy bootstrap with everything in it
//! and the services' configurations.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::resources::Resources;

use super::clusters::clusters;
use super::context::Ctx;
use super::filters::authz_config;
use super::listener::{Routes, listener, listener_specs};
use super::options::{RenderError, RenderOptions, render_err};
use super::routes::route_config;

/// Everything `gatehouse render` writes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rendered {
    /// `envoy.yaml`, the bootstrap.
    pub envoy: String,
    /// `authz.yaml` for gatehouse-authz, when an OAuth2 or APIKey Filter exists.
    pub authz: Option<String>,
    /// `ratelimit/<domain>.yaml` for gatehouse-ratelimit, by file name.
    pub ratelimit: BTreeMap<String, String>,
}

/// Renders `resources`: the Envoy bootstrap (everything static) and the
/// services' configurations.
///
/// # Errors
/// [`RenderError`] when resources that parsed alone do not fit together.
pub fn render(resources: &Resources, options: &RenderOptions) -> Result<Rendered, RenderError> {
    let resources = &*super::defaults::with_defaults(resources);
    let ctx = Ctx::new(resources, options)?;
    let mut listeners = Vec::new();
    for spec in listener_specs(resources, options) {
        let routes = Routes::Inline(route_config(&ctx, spec.tls, spec.security)?);
        listeners.push(listener(&ctx, &spec, routes)?);
    }
    let bootstrap = json!({
        "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": options.admin_port } } },
        "static_resources": {
            "listeners": listeners,
            "clusters": clusters(&ctx)?,
        }
    });
    let ratelimit = crate::limits::service_configs(&resources.rate_limits)
        .map_err(|m| render_err("RateLimit".into(), "spec.limits", m))?;
    Ok(Rendered {
        envoy: header_and(&bootstrap),
        authz: authz_config(&ctx),
        ratelimit,
    })
}

/// The Envoy bootstrap for `resources`, as YAML.
///
/// # Errors
/// As [`render`].
pub fn render_bootstrap(
    resources: &Resources,
    options: &RenderOptions,
) -> Result<String, RenderError> {
    render(resources, options).map(|r| r.envoy)
}

/// The bootstrap of an Envoy that takes everything else from the xDS
/// control plane `gatehouse serve` at `server` (`host:port`, plain HTTP/2):
/// its node (`node_id` tells Envoys apart, `node_cluster` groups them),
/// its admin on `127.0.0.1:<admin_port>`, and listeners and clusters over
/// ADS, state of the world.
#[must_use]
pub fn render_xds_bootstrap(
    server: &str,
    node_id: &str,
    node_cluster: &str,
    admin_port: u16,
) -> String {
    render_xds_bootstrap_of(server, node_id, node_cluster, admin_port, false)
}

/// [`render_xds_bootstrap`], with `delta` choosing the incremental variant
/// of ADS (`DELTA_GRPC`) over the state of the world.
#[must_use]
pub fn render_xds_bootstrap_of(
    server: &str,
    node_id: &str,
    node_cluster: &str,
    admin_port: u16,
    delta: bool,
) -> String {
    render_xds_join(&XdsJoin {
        server: server.to_owned(),
        node_id: node_id.to_owned(),
        node_cluster: node_cluster.to_owned(),
        admin_port,
        delta,
        tls: None,
    })
}

/// How an Envoy joins `gatehouse serve`: everything its bootstrap says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XdsJoin {
    /// The server, `host:port`.
    pub server: String,
    /// The Envoy's node id (how the server tells Envoys apart).
    pub node_id: String,
    /// The node cluster: the Ambassador instance whose resources it gets.
    pub node_cluster: String,
    /// Envoy's admin port, on 127.0.0.1.
    pub admin_port: u16,
    /// The incremental variant of ADS (`DELTA_GRPC`).
    pub delta: bool,
    /// TLS to the server; plain HTTP/2 when `None`.
    pub tls: Option<XdsTls>,
}

/// The files of a TLS connection to `gatehouse serve`, as Envoy sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XdsTls {
    /// The CA that signed the server's certificate, whose name (DNS or IP)
    /// must be the server's host.
    pub ca: String,
    /// The Envoy's own certificate and key, for a server that asks for one
    /// (the server serves secrets only to Envoys that present one).
    pub client: Option<(String, String)>,
}

/// The bootstrap of an Envoy that takes everything else from
/// `gatehouse serve`, as `join` says.
#[must_use]
pub fn render_xds_join(join: &XdsJoin) -> String {
    let XdsJoin {
        server,
        node_id,
        node_cluster,
        admin_port,
        delta,
        tls,
    } = join;
    let (delta, admin_port) = (*delta, *admin_port);
    let (host, port) = server.rsplit_once(':').unwrap_or((server, "18000"));
    let port: u16 = port.parse().unwrap_or(18000);
    let ads = json!({ "ads": {}, "resource_api_version": "V3" });
    let host = host.trim_matches(['[', ']']);
    let mut cluster = json!({
        "name": "gatehouse_xds",
        "type": "STRICT_DNS",
        "connect_timeout": "1s",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": { "http2_protocol_options": {} },
            },
        },
        "load_assignment": {
            "cluster_name": "gatehouse_xds",
            "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": {
                "socket_address": { "address": host, "port_value": port },
            } } }] }],
        },
    });
    if let Some(tls) = tls {
        let san_type = if host.parse::<std::net::IpAddr>().is_ok() {
            "IP_ADDRESS"
        } else {
            "DNS"
        };
        let mut common = json!({
            "alpn_protocols": ["h2"],
            "validation_context": {
                "trusted_ca": { "filename": tls.ca },
                "match_typed_subject_alt_names": [{ "san_type": san_type, "matcher": { "exact": host } }],
            },
        });
        if let Some((cert, key)) = &tls.client {
            common["tls_certificates"] = json!([{
                "certificate_chain": { "filename": cert },
                "private_key": { "filename": key },
            }]);
        }
        let mut context = json!({
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "common_tls_context": common,
        });
        if san_type == "DNS" {
            context["sni"] = json!(host);
        }
        cluster["transport_socket"] =
            json!({ "name": "envoy.transport_sockets.tls", "typed_config": context });
    }
    header_and(&json!({
        "node": { "id": node_id, "cluster": node_cluster },
        "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": admin_port } } },
        "dynamic_resources": {
            "ads_config": {
                "api_type": if delta { "DELTA_GRPC" } else { "GRPC" },
                "transport_api_version": "V3",
                "grpc_services": [{ "envoy_grpc": { "cluster_name": "gatehouse_xds" } }],
            },
            "cds_config": ads.clone(),
            "lds_config": ads,
        },
        "static_resources": { "clusters": [cluster] },
    }))
}

/// A rendered YAML file: the header that marks it as rendered (so a later
/// render may replace or remove it), then `value`.
pub(super) fn header_and(value: &Value) -> String {
    let mut out =
        String::from("# Rendered by `gatehouse render`: edit the resources, not this file.\n");
    out.push_str(&serde_yaml_ng::to_string(value).unwrap_or_default());
    out
}
