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
    let (host, port) = server.rsplit_once(':').unwrap_or((server, "18000"));
    let port: u16 = port.parse().unwrap_or(18000);
    let ads = json!({ "ads": {}, "resource_api_version": "V3" });
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
        "static_resources": { "clusters": [{
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
                    "socket_address": { "address": host.trim_matches(['[', ']']), "port_value": port },
                } } }] }],
            },
        }] },
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
