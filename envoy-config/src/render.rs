//! Resources to an Envoy bootstrap. Deterministic: the same resources give
//! byte-identical output (objects are written with sorted keys).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::resources::{Mapping, Resources};

/// Where the rendered Envoy listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderOptions {
    /// Listener address.
    pub listen_address: String,
    /// Listener port.
    pub listen_port: u16,
    /// Admin port (on 127.0.0.1).
    pub admin_port: u16,
    /// Trusted proxies in front (`x-forwarded-for` hops).
    pub xff_num_trusted_hops: u32,
}

impl Default for RenderOptions {
    fn default() -> Self {
        Self {
            listen_address: "0.0.0.0".into(),
            listen_port: 8080,
            admin_port: 9901,
            xff_num_trusted_hops: 0,
        }
    }
}

/// One route: the Mappings that share a match.
struct RouteGroup<'a> {
    hostname: &'a str,
    prefix: &'a str,
    headers: &'a BTreeMap<String, String>,
    method: Option<&'a str>,
    query: &'a BTreeMap<String, String>,
    precedence: i32,
    members: Vec<&'a Mapping>,
}

fn cluster_name(m: &Mapping) -> String {
    let host: String = m
        .host
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("{host}_{}", m.port)
}

/// Groups Mappings with the same match and sorts the groups as Ambassador
/// does: higher `precedence` first, then longer prefixes, then more header
/// matches; ties by prefix and name, so the order never depends on input
/// order.
fn groups(resources: &Resources) -> Vec<RouteGroup<'_>> {
    let mut groups: Vec<RouteGroup<'_>> = Vec::new();
    for m in &resources.mappings {
        match groups
            .iter_mut()
            .find(|g| g.hostname == m.hostname && g.prefix == m.prefix && *g.headers == m.headers)
        {
            Some(g) => {
                g.members.push(m);
                g.precedence = g.precedence.max(m.precedence);
            }
            None => groups.push(RouteGroup {
                hostname: &m.hostname,
                prefix: &m.prefix,
                headers: &m.headers,
                method: m.method.as_deref(),
                query: &m.query_parameters,
                precedence: m.precedence,
                members: vec![m],
            }),
        }
    }
    for g in &mut groups {
        g.members.sort_by(|a, b| a.name.cmp(&b.name));
    }
    groups.sort_by(|a, b| {
        b.precedence
            .cmp(&a.precedence)
            .then(b.prefix.len().cmp(&a.prefix.len()))
            .then(
                (b.headers.len() + b.query.len() + usize::from(b.method.is_some()))
                    .cmp(&(a.headers.len() + a.query.len() + usize::from(a.method.is_some()))),
            )
            .then(a.prefix.cmp(b.prefix))
            .then(a.members[0].name.cmp(&b.members[0].name))
    });
    groups
}

/// Weights of a group as Ambassador assigns them: explicit weights stand,
/// the Mappings without one share what is left of 100 evenly.
fn weights(members: &[&Mapping]) -> Vec<u32> {
    let given: u32 = members.iter().filter_map(|m| m.weight).sum();
    let unweighted = members.iter().filter(|m| m.weight.is_none()).count() as u32;
    let left = 100u32.saturating_sub(given);
    let mut shares = Vec::new();
    let mut handed = 0;
    let mut seen = 0;
    for m in members {
        let w = match m.weight {
            Some(w) => w,
            None => {
                seen += 1;
                // The last unweighted Mapping takes the rounding remainder.
                let share = if seen == unweighted {
                    left - handed
                } else {
                    left / unweighted
                };
                handed += share;
                share
            }
        };
        shares.push(w);
    }
    shares
}

fn route(g: &RouteGroup<'_>) -> Value {
    let first = g.members[0];
    let mut headers: Vec<Value> = g
        .headers
        .iter()
        .map(|(k, v)| json!({ "name": k, "string_match": { "exact": v } }))
        .collect();
    if let Some(method) = g.method {
        headers.push(json!({ "name": ":method", "string_match": { "exact": method } }));
    }
    let mut matcher = if first.prefix_regex {
        json!({ "safe_regex": { "regex": g.prefix } })
    } else {
        json!({ "prefix": g.prefix })
    };
    if !headers.is_empty() {
        matcher["headers"] = Value::Array(headers);
    }
    if !g.query.is_empty() {
        matcher["query_parameters"] = Value::Array(
            g.query
                .iter()
                .map(|(k, v)| json!({ "name": k, "string_match": { "exact": v } }))
                .collect(),
        );
    }
    let mut action = json!({
        "prefix_rewrite": first.rewrite,
        "timeout": format!("{}s", first.timeout_ms as f64 / 1000.0),
    });
    if g.members.len() == 1 {
        action["cluster"] = json!(cluster_name(first));
    } else {
        let clusters: Vec<Value> = g
            .members
            .iter()
            .zip(weights(&g.members))
            .map(|(m, w)| json!({ "name": cluster_name(m), "weight": w }))
            .collect();
        action["weighted_clusters"] = json!({ "clusters": clusters });
    }
    if let Some(host) = &first.host_rewrite {
        action["host_rewrite_literal"] = json!(host);
    }
    if let Some(ms) = first.idle_timeout_ms {
        action["idle_timeout"] = json!(format!("{}s", ms as f64 / 1000.0));
    }
    if let Some(retry) = &first.retry_policy {
        let mut policy = json!({ "retry_on": retry.retry_on, "num_retries": retry.num_retries });
        if let Some(t) = &retry.per_try_timeout {
            policy["per_try_timeout"] = json!(t);
        }
        action["retry_policy"] = policy;
    }
    if !first.allow_upgrade.is_empty() {
        action["upgrade_configs"] = Value::Array(
            first
                .allow_upgrade
                .iter()
                .map(|u| json!({ "upgrade_type": u }))
                .collect(),
        );
    }
    let mut r = json!({ "name": first.name, "match": matcher, "route": action });
    if let Some(cors) = &first.cors {
        let origins: Vec<Value> = cors
            .origins
            .iter()
            .map(|o| {
                if o == "*" {
                    json!({ "safe_regex": { "regex": ".*" } })
                } else {
                    json!({ "exact": o })
                }
            })
            .collect();
        let mut policy = json!({
            "@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy",
            "allow_origin_string_match": origins,
            "allow_credentials": cors.credentials,
        });
        for (field, list) in [
            ("allow_methods", &cors.methods),
            ("allow_headers", &cors.headers),
            ("expose_headers", &cors.exposed_headers),
        ] {
            if !list.is_empty() {
                policy[field] = json!(list.join(", "));
            }
        }
        if let Some(age) = &cors.max_age {
            policy["max_age"] = json!(age);
        }
        r["typed_per_filter_config"] = json!({ "envoy.filters.http.cors": policy });
    }
    let add_response: Vec<Value> = first
        .add_response_headers
        .iter()
        .map(|(k, v)| json!({ "header": { "key": k, "value": v }, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD" }))
        .collect();
    if !add_response.is_empty() {
        r["response_headers_to_add"] = Value::Array(add_response);
    }
    if !first.remove_response_headers.is_empty() {
        r["response_headers_to_remove"] = json!(first.remove_response_headers);
    }
    let add: Vec<Value> = first
        .add_request_headers
        .iter()
        .map(|(k, v)| json!({ "header": { "key": k, "value": v }, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD" }))
        .collect();
    if !add.is_empty() {
        r["request_headers_to_add"] = Value::Array(add);
    }
    if !first.remove_request_headers.is_empty() {
        r["request_headers_to_remove"] = json!(first.remove_request_headers);
    }
    r
}

fn cluster(m: &Mapping) -> Value {
    let is_ip = m.host.parse::<std::net::IpAddr>().is_ok();
    json!({
        "name": cluster_name(m),
        "type": if is_ip { "STATIC" } else { "STRICT_DNS" },
        "connect_timeout": "2s",
        "load_assignment": {
            "cluster_name": cluster_name(m),
            "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": {
                "socket_address": { "address": m.host, "port_value": m.port }
            }}}]}]
        }
    })
}

/// The route configuration named `gatehouse`.
fn route_config(resources: &Resources) -> Value {
    let groups = groups(resources);
    let mut vhosts: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    for g in &groups {
        vhosts.entry(g.hostname).or_default().push(route(g));
    }
    // The catch-all host last: Envoy picks the most specific domain anyway,
    // but a reader expects it at the end.
    let virtual_hosts: Vec<Value> = vhosts
        .iter()
        .filter(|(h, _)| **h != "*")
        .chain(vhosts.iter().filter(|(h, _)| **h == "*"))
        .map(|(host, routes)| {
            json!({
                "name": if *host == "*" { "any".to_owned() } else { host.replace('.', "_") },
                "domains": [host],
                "routes": routes,
            })
        })
        .collect();
    json!({ "name": "gatehouse", "virtual_hosts": virtual_hosts })
}

fn clusters(resources: &Resources) -> Vec<Value> {
    let mut clusters: BTreeMap<String, Value> = BTreeMap::new();
    for m in &resources.mappings {
        clusters
            .entry(cluster_name(m))
            .or_insert_with(|| cluster(m));
    }
    clusters.into_values().collect()
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
                "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
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

/// The listener, its routes inline or (`rds`) from a file source.
fn listener(options: &RenderOptions, routes: Value) -> Value {
    let mut hcm = json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "ingress",
        "access_log": access_log(),
        // Every request gets an x-request-id (kept when it comes with one);
        // traceparent passes through untouched.
        "generate_request_id": true,
        "xff_num_trusted_hops": options.xff_num_trusted_hops,
        "use_remote_address": true,
        // CORS policies live on the routes; the filter does nothing on
        // routes without one.
        "http_filters": [{
            "name": "envoy.filters.http.cors",
            "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors" }
        }, {
            "name": "envoy.filters.http.router",
            "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" }
        }]
    });
    match routes {
        Value::String(rds_dir) => {
            hcm["rds"] = json!({
                "route_config_name": "gatehouse",
                "config_source": file_source(&rds_dir, "rds.yaml"),
            });
        }
        config => hcm["route_config"] = config,
    }
    json!({
        "name": "ingress",
        "address": { "socket_address": { "address": options.listen_address, "port_value": options.listen_port } },
        "filter_chains": [{ "filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": hcm,
        }]}]
    })
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

fn header_and(value: &Value) -> String {
    let mut out =
        String::from("# Rendered by `gatehouse render`: edit the resources, not this file.\n");
    out.push_str(&serde_yaml_ng::to_string(value).unwrap_or_default());
    out
}

/// The options a `Listener` resource sets: its port (unless the caller
/// chose one other than the default) and its trusted hops.
fn with_listener(resources: &Resources, options: &RenderOptions) -> RenderOptions {
    let mut options = options.clone();
    if let Some(l) = &resources.listener {
        if options.listen_port == RenderOptions::default().listen_port {
            options.listen_port = l.port;
        }
        options.xff_num_trusted_hops = l.l7_depth;
    }
    options
}

/// The Envoy bootstrap for `resources`, as YAML: everything static.
#[must_use]
pub fn render_bootstrap(resources: &Resources, options: &RenderOptions) -> String {
    let options = &with_listener(resources, options);
    let bootstrap = json!({
        "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": options.admin_port } } },
        "static_resources": {
            "listeners": [listener(options, route_config(resources))],
            "clusters": clusters(resources),
        }
    });
    header_and(&bootstrap)
}

/// The files of a live configuration in directory `dir` (an absolute path):
/// a bootstrap whose listener reads its routes from `rds.yaml` and whose
/// clusters come from `cds.yaml`. Rendering again into the same directory
/// (clusters first, then routes) changes a running Envoy without a restart
/// and without closing its listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveFiles {
    /// `envoy.yaml`: start Envoy with it once.
    pub bootstrap: String,
    /// `cds.yaml`: the clusters.
    pub cds: String,
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

/// Renders `resources` as [`LiveFiles`] for directory `dir`.
#[must_use]
pub fn render_live(resources: &Resources, options: &RenderOptions, dir: &str) -> LiveFiles {
    let options = &with_listener(resources, options);
    let bootstrap = json!({
        "node": { "id": "gatehouse", "cluster": "gatehouse" },
        "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": options.admin_port } } },
        "static_resources": { "listeners": [listener(options, Value::String(dir.to_owned()))] },
        "dynamic_resources": { "cds_config": file_source(dir, "cds.yaml") },
    });
    let typed = |type_url: &str, mut v: Value| {
        v["@type"] = json!(type_url);
        v
    };
    let cds = json!({ "resources": clusters(resources)
        .into_iter()
        .map(|c| typed("type.googleapis.com/envoy.config.cluster.v3.Cluster", c))
        .collect::<Vec<_>>() });
    let rds = json!({ "resources": [typed(
        "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
        route_config(resources),
    )] });
    LiveFiles {
        bootstrap: header_and(&bootstrap),
        cds: header_and(&cds),
        rds: header_and(&rds),
    }
}

/// The route table in precedence order, one line per route: what matches
/// and where it goes (`gatehouse routes`).
#[must_use]
pub fn route_table(resources: &Resources) -> String {
    let mut out = String::new();
    for g in groups(resources) {
        let headers: Vec<String> = g
            .method
            .map(|m| format!(":method={m}"))
            .into_iter()
            .chain(g.headers.iter().map(|(k, v)| format!("{k}={v}")))
            .chain(g.query.iter().map(|(k, v)| format!("?{k}={v}")))
            .collect();
        let targets: Vec<String> = g
            .members
            .iter()
            .zip(weights(&g.members))
            .map(|(m, w)| {
                if g.members.len() == 1 {
                    format!("{}:{} ({})", m.host, m.port, m.name)
                } else {
                    format!("{}:{} {w}% ({})", m.host, m.port, m.name)
                }
            })
            .collect();
        out.push_str(&format!(
            "{host} {prefix}{headers} -> {targets}  [precedence {p}, prefix length {len}]\n",
            host = g.hostname,
            prefix = g.prefix,
            headers = if headers.is_empty() {
                String::new()
            } else {
                format!(" [{}]", headers.join(", "))
            },
            targets = targets.join(", "),
            p = g.precedence,
            len = g.prefix.len(),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::load;

    fn resources(text: &str) -> Resources {
        let mut r = Resources::default();
        load(text, "t.yaml", &mut r).unwrap();
        r
    }

    const TWO: &str = "apiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {name: stable}\nspec: {prefix: /shop/, service: shop:8080}\n---\napiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {name: canary}\nspec: {prefix: /shop/, service: shop-v2:8080, weight: 10}\n---\napiVersion: gatehouse.dev/v1alpha1\nkind: Mapping\nmetadata: {name: api}\nspec: {prefix: /shop/api/, service: 'http://10.0.0.7:9000', rewrite: /v1/, timeout_ms: 1500}\n";

    #[test]
    fn longer_prefixes_first_and_unweighted_mappings_share_the_rest() {
        let table = route_table(&resources(TWO));
        assert_eq!(
            table,
            "* /shop/api/ -> 10.0.0.7:9000 (api)  [precedence 0, prefix length 10]\n\
             * /shop/ -> shop-v2:8080 10% (canary), shop:8080 90% (stable)  [precedence 0, prefix length 6]\n"
        );
    }

    #[test]
    fn output_does_not_depend_on_document_order() {
        let docs: Vec<&str> = TWO.split("---\n").collect();
        let reversed = docs.iter().rev().copied().collect::<Vec<_>>().join("---\n");
        let options = RenderOptions::default();
        assert_eq!(
            render_bootstrap(&resources(TWO), &options),
            render_bootstrap(&resources(&reversed), &options)
        );
    }

    #[test]
    fn weights_always_sum_to_a_hundred() {
        let m = |w: Option<u32>| Mapping {
            name: "m".into(),
            hostname: "*".into(),
            prefix: "/".into(),
            host: "h".into(),
            port: 1,
            rewrite: "/".into(),
            weight: w,
            timeout_ms: 1,
            headers: BTreeMap::new(),
            precedence: 0,
            add_request_headers: BTreeMap::new(),
            remove_request_headers: Vec::new(),
            prefix_regex: false,
            method: None,
            query_parameters: BTreeMap::new(),
            host_rewrite: None,
            idle_timeout_ms: None,
            retry_policy: None,
            cors: None,
            add_response_headers: BTreeMap::new(),
            remove_response_headers: Vec::new(),
            allow_upgrade: Vec::new(),
        };
        for set in [
            vec![None, None, None],
            vec![Some(10), None],
            vec![Some(33), None, None],
        ] {
            let members: Vec<Mapping> = set.into_iter().map(m).collect();
            let refs: Vec<&Mapping> = members.iter().collect();
            assert_eq!(weights(&refs).iter().sum::<u32>(), 100);
        }
    }
}
