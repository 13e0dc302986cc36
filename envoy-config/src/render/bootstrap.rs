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
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// A rendered YAML file: the header that marks it as rendered (so a later
/// render may replace or remove it), then `value`.
pub(super) fn header_and(value: &Value) -> String {
    let mut out =
        String::from("# Rendered by `gatehouse render`: edit the resources, not this file.\n");
    out.push_str(&serde_yaml_ng::to_string(value).unwrap_or_default());
    out
}
