//! [`render_live`]: the files a running Envoy watches (`gatehouse render
//! --live`), and the steps of a change that keep every route's cluster in
//! force.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::resources::Resources;

use super::bootstrap::header_and;
use super::clusters::clusters;
use super::context::Ctx;
use super::listener::{ListenerSpec, Routes, listener};
use super::options::{RenderError, RenderOptions, render_err};
use super::routes::route_config;
use crate::host::SecurityModel;

/// The files of a live configuration in directory `dir` (an absolute path):
/// a bootstrap that reads its listener from `lds.yaml`, the listener's
/// routes from `rds.yaml` and the clusters from `cds.yaml`. Rendering again
/// into the same directory (clusters first, then the listener, then routes)
/// changes a running Envoy without a restart: a route change keeps the
/// listener, a filter change replaces it gracefully (Envoy drains the old
/// one's connections).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveFiles {
    /// `envoy.yaml`: start Envoy with it once.
    pub bootstrap: String,
    /// `cds.yaml`: the clusters.
    pub cds: String,
    /// `lds.yaml`: the listener and its filters.
    pub lds: String,
    /// `rds.yaml`: the routes.
    pub rds: String,
}

impl LiveFiles {
    /// The names of the clusters in `cds`.
    #[must_use]
    pub fn cds_names(&self) -> Vec<String> {
        serde_yaml_ng::from_str::<Value>(&self.cds)
            .ok()
            .and_then(|v| v.get("resources").and_then(Value::as_array).cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_owned))
            .collect()
    }
}

/// The clusters of two `cds.yaml` texts together (by name; `next` wins):
/// the first step of a change, so the routes in force never name a cluster
/// that is gone. Then the new routes, then `next` alone.
#[must_use]
pub fn union_cds(previous: &str, next: &str) -> String {
    let parse = |text: &str| -> Vec<Value> {
        serde_yaml_ng::from_str::<Value>(text)
            .ok()
            .and_then(|v| v.get("resources").and_then(Value::as_array).cloned())
            .unwrap_or_default()
    };
    let mut by_name: BTreeMap<String, Value> = BTreeMap::new();
    for c in parse(previous).into_iter().chain(parse(next)) {
        let name = c
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        by_name.insert(name, c);
    }
    header_and(&json!({ "resources": by_name.into_values().collect::<Vec<_>>() }))
}

/// Renders `resources` as [`LiveFiles`] for directory `dir`: one cleartext
/// listener (TLS Hosts are refused here: render a static bootstrap for them).
///
/// # Errors
/// As [`render`](super::bootstrap::render).
pub fn render_live(
    resources: &Resources,
    options: &RenderOptions,
    dir: &str,
) -> Result<LiveFiles, RenderError> {
    let resources = &*super::defaults::with_defaults(resources);
    let options = &with_listener(resources, options);
    let ctx = Ctx::new(resources, options)?;
    if let Some(h) = resources
        .hosts
        .iter()
        .find(|h| h.tls_files.is_some() || h.tls_secret.is_some())
    {
        return Err(render_err(
            format!("Host {}", h.name),
            "spec.tlsSecret",
            "--live renders one cleartext listener: render TLS Hosts without --live",
        ));
    }
    let spec = ListenerSpec::cleartext(options);
    let bootstrap = json!({
        "node": { "id": "gatehouse", "cluster": "gatehouse" },
        "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": options.admin_port } } },
        "dynamic_resources": {
            "lds_config": file_source(dir, "lds.yaml"),
            "cds_config": file_source(dir, "cds.yaml"),
        },
    });
    let typed = |type_url: &str, mut v: Value| {
        v["@type"] = json!(type_url);
        v
    };
    let cds = json!({ "resources": clusters(&ctx)?
        .into_iter()
        .map(|c| typed("type.googleapis.com/envoy.config.cluster.v3.Cluster", c))
        .collect::<Vec<_>>() });
    let lds = json!({ "resources": [typed(
        "type.googleapis.com/envoy.config.listener.v3.Listener",
        listener(&ctx, &spec, Routes::Rds(file_source(dir, "rds.yaml")))?,
    )] });
    let rds = json!({ "resources": [typed(
        "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
        route_config(&ctx, false, SecurityModel::Insecure)?,
    )] });
    Ok(LiveFiles {
        bootstrap: header_and(&bootstrap),
        cds: header_and(&cds),
        lds: header_and(&lds),
        rds: header_and(&rds),
    })
}

/// The options a cleartext `Listener` resource sets for `--live` (one
/// listener): its port (unless the caller chose one other than the
/// default) and its trusted hops.
fn with_listener(resources: &Resources, options: &RenderOptions) -> RenderOptions {
    let mut options = options.clone();
    if let Some(l) = resources.listeners.iter().find(|l| !l.tls) {
        if options.listen_port == RenderOptions::default().listen_port {
            options.listen_port = l.port;
        }
        options.xff_num_trusted_hops = l.l7_depth;
    }
    options
}

/// A file Envoy watches: it reloads when a file is moved into `dir`, so
/// writers rename complete files into place.
fn file_source(dir: &str, file: &str) -> Value {
    json!({
        "path_config_source": {
            "path": format!("{dir}/{file}"),
            "watched_directory": { "path": dir },
        },
        "resource_api_version": "V3",
    })
}
