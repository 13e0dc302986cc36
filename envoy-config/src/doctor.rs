//! `gatehouse doctor`'s decisions: which rendered route a request matches,
//! and which filters and side services it meets on the way. Read from the
//! bootstrap `gatehouse render` writes, as Envoy reads it, so the answer is
//! the one Envoy gives: virtual host by `:authority`, then the first route
//! whose path, header and query matchers all hold.

use serde_json::Value;

/// The request to walk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The `Host` header (without the port).
    pub host: String,
    /// Path and query, as sent.
    pub path: String,
    /// Other request headers, names lowercase.
    pub headers: Vec<(String, String)>,
}

/// Where the request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched {
    /// The listener's name.
    pub listener: String,
    /// The virtual host's name.
    pub virtual_host: String,
    /// The route's name (a Mapping's name, or Gatehouse's own route).
    pub route: String,
    /// Why it matched: its path matcher, and the headers and query
    /// parameters it also required.
    pub because: String,
    /// What the route does.
    pub action: Action,
    /// The HTTP filters that run for it, in order (the router left out).
    pub filters: Vec<Filter>,
}

/// What a route does with the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Sends it to this cluster.
    Cluster(String),
    /// Answers itself with this status.
    Direct(u16),
    /// Redirects it.
    Redirect,
}

/// One HTTP filter on the request's way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// The filter's name in the listener.
    pub name: String,
    /// Clusters of the side services it calls for this request (gRPC
    /// services: ext_authz, the rate-limit service, RLQS).
    pub calls: Vec<String>,
}

/// Why no route takes the request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoRoute {
    /// The bootstrap has no listener on that port.
    #[error("no listener on port {0}; the rendered listeners are on {1}")]
    NoListener(u16, String),
    /// No virtual host serves the host.
    #[error(
        "no virtual host serves host {0:?} (a Mapping's `hostname`, or a Host, names the hosts served)"
    )]
    NoVirtualHost(String),
    /// The virtual host has no matching route.
    #[error("no route of virtual host {0:?} matches {1} {2}")]
    NoRoute(String, String, String),
    /// The bootstrap is not what `gatehouse render` writes.
    #[error("the bootstrap is not readable: {0}")]
    Unreadable(String),
}

/// The route `probe` takes through the listener on `port` of `bootstrap`.
///
/// # Errors
/// [`NoRoute`] naming the step where no match was found.
pub fn route(bootstrap: &Value, port: u16, probe: &Probe) -> Result<Matched, NoRoute> {
    let listeners = bootstrap["static_resources"]["listeners"]
        .as_array()
        .ok_or_else(|| NoRoute::Unreadable("no static listeners".into()))?;
    let port_of = |l: &Value| l["address"]["socket_address"]["port_value"].as_u64();
    let listener = listeners
        .iter()
        .find(|l| port_of(l) == Some(u64::from(port)))
        .ok_or_else(|| {
            let ports: Vec<String> = listeners
                .iter()
                .filter_map(port_of)
                .map(|p| p.to_string())
                .collect();
            NoRoute::NoListener(port, ports.join(", "))
        })?;
    // The first chain without a TLS match: the cleartext one.
    let manager = listener["filter_chains"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|chain| chain["filters"].as_array().into_iter().flatten())
        .find(|f| f["name"] == "envoy.filters.network.http_connection_manager")
        .map(|f| &f["typed_config"])
        .ok_or_else(|| NoRoute::Unreadable("no HTTP connection manager".into()))?;
    let config = &manager["route_config"];
    let vhosts = config["virtual_hosts"].as_array().ok_or_else(|| {
        NoRoute::Unreadable(
            "no inline route_config (a --live render keeps routes in rds.yaml)".into(),
        )
    })?;
    let host = probe.host.to_ascii_lowercase();
    let vhost = pick_virtual_host(vhosts, &host).ok_or(NoRoute::NoVirtualHost(host))?;
    let vhost_name = vhost["name"].as_str().unwrap_or_default().to_owned();
    let route = vhost["routes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| matches(&r["match"], probe))
        .ok_or_else(|| {
            NoRoute::NoRoute(vhost_name.clone(), probe.method.clone(), probe.path.clone())
        })?;
    let action = if let Some(cluster) = route["route"]["cluster"].as_str() {
        Action::Cluster(cluster.to_owned())
    } else if let Some(status) = route["direct_response"]["status"].as_u64() {
        Action::Direct(u16::try_from(status).unwrap_or(u16::MAX))
    } else if route.get("redirect").is_some() {
        Action::Redirect
    } else {
        return Err(NoRoute::Unreadable(format!(
            "route {} neither routes, answers nor redirects",
            route["name"]
        )));
    };
    let rate_limited = route["route"]["rate_limits"]
        .as_array()
        .is_some_and(|a| !a.is_empty())
        || vhost["rate_limits"]
            .as_array()
            .is_some_and(|a| !a.is_empty());
    let filters = manager["http_filters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["name"] != "envoy.filters.http.router")
        .filter(|f| !disabled_here(f, route, vhost))
        .map(|f| {
            let rate_limit_filter = f["typed_config"]["@type"]
                .as_str()
                .is_some_and(|t| t.ends_with("ratelimit.v3.RateLimit"));
            let mut calls = Vec::new();
            // Envoy's rate-limit filter calls only for routes with actions.
            if !rate_limit_filter || rate_limited {
                grpc_clusters(&f["typed_config"], &mut calls);
            }
            Filter {
                name: f["name"].as_str().unwrap_or_default().to_owned(),
                calls,
            }
        })
        .collect();
    Ok(Matched {
        listener: listener["name"].as_str().unwrap_or_default().to_owned(),
        virtual_host: vhost_name,
        route: route["name"].as_str().unwrap_or_default().to_owned(),
        because: because(&route["match"]),
        action,
        filters,
    })
}

/// A route's matcher in words: `prefix /api/, header x-beta`.
fn because(m: &Value) -> String {
    let mut parts: Vec<String> = ["prefix", "path", "path_separated_prefix"]
        .iter()
        .find_map(|k| m[*k].as_str().map(|v| format!("{k} {v}")))
        .or_else(|| {
            m["safe_regex"]["regex"]
                .as_str()
                .map(|v| format!("regex {v}"))
        })
        .into_iter()
        .collect();
    for h in m["headers"].as_array().into_iter().flatten() {
        parts.push(format!("header {}", h["name"].as_str().unwrap_or_default()));
    }
    for q in m["query_parameters"].as_array().into_iter().flatten() {
        parts.push(format!("query {}", q["name"].as_str().unwrap_or_default()));
    }
    parts.join(", ")
}

/// Envoy's order: an exact domain, then the longest `*.suffix`, then the
/// longest `prefix*`, then `*`.
fn pick_virtual_host<'a>(vhosts: &'a [Value], host: &str) -> Option<&'a Value> {
    let domains = |v: &'a Value| {
        v["domains"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(move |d| (d.to_ascii_lowercase(), v))
    };
    let all: Vec<(String, &Value)> = vhosts.iter().flat_map(domains).collect();
    if let Some((_, v)) = all.iter().find(|(d, _)| d == host) {
        return Some(v);
    }
    let best = |pick: &dyn Fn(&str) -> Option<usize>| {
        all.iter()
            .filter_map(|(d, v)| pick(d).map(|len| (len, *v)))
            .max_by_key(|(len, _)| *len)
            .map(|(_, v)| v)
    };
    best(&|d| {
        d.strip_prefix('*')
            .filter(|s| !s.is_empty() && host.ends_with(s) && host.len() > s.len())
            .map(str::len)
    })
    .or_else(|| {
        best(&|d| {
            d.strip_suffix('*')
                .filter(|p| !p.is_empty() && host.starts_with(p) && host.len() > p.len())
                .map(str::len)
        })
    })
    .or_else(|| all.iter().find(|(d, _)| d == "*").map(|(_, v)| *v))
}

/// Whether a route's `match` takes the request.
fn matches(m: &Value, probe: &Probe) -> bool {
    let (path, query) = probe
        .path
        .split_once('?')
        .unwrap_or((probe.path.as_str(), ""));
    let case_sensitive = m["case_sensitive"].as_bool().unwrap_or(true);
    let fold = |s: &str| {
        if case_sensitive {
            s.to_owned()
        } else {
            s.to_ascii_lowercase()
        }
    };
    let path_ok = if let Some(prefix) = m["prefix"].as_str() {
        fold(path).starts_with(&fold(prefix))
    } else if let Some(exact) = m["path"].as_str() {
        fold(path) == fold(exact)
    } else if let Some(prefix) = m["path_separated_prefix"].as_str() {
        let p = fold(path);
        let prefix = fold(prefix);
        p == prefix || p.starts_with(&format!("{prefix}/"))
    } else if let Some(regex) = m["safe_regex"]["regex"].as_str() {
        full_match(regex, path)
    } else {
        false
    };
    path_ok
        && m["headers"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|h| header_matches(h, probe))
        && m["query_parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|q| query_matches(q, query))
}

fn full_match(pattern: &str, text: &str) -> bool {
    regex::Regex::new(&format!("^(?:{pattern})$")).is_ok_and(|r| r.is_match(text))
}

/// The value of header `name` as Envoy's matchers see it (`:method`,
/// `:authority` and `:path` included), `None` when absent.
fn header<'a>(probe: &'a Probe, name: &str) -> Option<&'a str> {
    match name {
        ":method" => Some(&probe.method),
        ":authority" | "host" => Some(&probe.host),
        ":path" => Some(&probe.path),
        _ => probe
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str()),
    }
}

fn header_matches(h: &Value, probe: &Probe) -> bool {
    let value = header(probe, h["name"].as_str().unwrap_or_default());
    let held = if h["present_match"].as_bool() == Some(true) {
        value.is_some()
    } else if let Some(m) = h.get("string_match") {
        value.is_some_and(|v| string_matches(m, v))
    } else if let Some(exact) = h["exact_match"].as_str() {
        value == Some(exact)
    } else if let Some(regex) = h["safe_regex_match"]["regex"].as_str() {
        value.is_some_and(|v| full_match(regex, v))
    } else {
        value.is_some()
    };
    held != h["invert_match"].as_bool().unwrap_or(false)
}

fn query_matches(q: &Value, query: &str) -> bool {
    let name = q["name"].as_str().unwrap_or_default();
    let value = query
        .split('&')
        .filter_map(|pair| {
            let (n, v) = pair.split_once('=').unwrap_or((pair, ""));
            (n == name).then_some(v)
        })
        .next();
    match q.get("string_match") {
        Some(m) => value.is_some_and(|v| string_matches(m, v)),
        None => value.is_some(),
    }
}

/// An `envoy.type.matcher.v3.StringMatcher`.
fn string_matches(m: &Value, value: &str) -> bool {
    let ignore_case = m["ignore_case"].as_bool().unwrap_or(false);
    let (v, fold) = if ignore_case {
        (value.to_ascii_lowercase(), true)
    } else {
        (value.to_owned(), false)
    };
    let norm = |s: &str| {
        if fold {
            s.to_ascii_lowercase()
        } else {
            s.to_owned()
        }
    };
    if let Some(e) = m["exact"].as_str() {
        v == norm(e)
    } else if let Some(p) = m["prefix"].as_str() {
        v.starts_with(&norm(p))
    } else if let Some(s) = m["suffix"].as_str() {
        v.ends_with(&norm(s))
    } else if let Some(c) = m["contains"].as_str() {
        v.contains(&norm(c))
    } else if let Some(r) = m["safe_regex"]["regex"].as_str() {
        full_match(r, value)
    } else {
        false
    }
}

/// Whether the route (or its virtual host) turns filter `f` off.
fn disabled_here(f: &Value, route: &Value, vhost: &Value) -> bool {
    let name = f["name"].as_str().unwrap_or_default();
    let off = |per_filter: &Value| {
        let c = &per_filter[name];
        c["disabled"].as_bool() == Some(true) || c["config"]["disabled"].as_bool() == Some(true)
    };
    if route["typed_per_filter_config"].get(name).is_some() {
        return off(&route["typed_per_filter_config"]);
    }
    if vhost["typed_per_filter_config"].get(name).is_some() {
        return off(&vhost["typed_per_filter_config"]);
    }
    f["disabled"].as_bool() == Some(true)
}

/// Every `envoy_grpc.cluster_name` in a filter's configuration.
fn grpc_clusters(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            if let Some(name) = map
                .get("envoy_grpc")
                .and_then(|g| g["cluster_name"].as_str())
                && !out.iter().any(|c| c == name)
            {
                out.push(name.to_owned());
            }
            for child in map.values() {
                grpc_clusters(child, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| grpc_clusters(i, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{RenderOptions, Resources, load, render};

    fn bootstrap(yaml: &str) -> Value {
        let mut resources = Resources::default();
        load(yaml, "edge.yaml", &mut resources).expect("resources");
        let rendered = render(&resources, &RenderOptions::default()).expect("render");
        serde_yaml_ng::from_str(&rendered.envoy).expect("yaml")
    }

    fn probe(host: &str, path: &str, headers: &[(&str, &str)]) -> Probe {
        Probe {
            method: "GET".into(),
            host: host.into(),
            path: path.into(),
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    const EDGE: &str = "apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {name: api}
spec:
  prefix: /api/
  service: api:8080
  labels:
    ambassador:
    - per_client: [{generic_key: {value: api}}]
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {name: beta}
spec:
  prefix: /api/
  service: beta:8080
  headers: {x-beta: 'yes'}
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {name: shop}
spec:
  hostname: shop.example.com
  prefix: /
  service: shop:80
---
apiVersion: getambassador.io/v3alpha1
kind: RateLimit
metadata: {name: api}
spec:
  domain: ambassador
  limits:
  - pattern: [{generic_key: api}]
    rate: 5
    unit: minute
";

    #[test]
    fn a_request_takes_the_route_envoy_would_take() {
        let b = bootstrap(EDGE);
        let port = RenderOptions::default().listen_port;
        let api = route(&b, port, &probe("edge", "/api/x", &[])).expect("a route");
        assert_eq!(api.route, "api");
        assert!(matches!(&api.action, Action::Cluster(c) if c.starts_with("api")));
        // Its rate limit calls the service; a route without labels does not.
        assert!(
            api.filters
                .iter()
                .any(|f| f.calls == ["gatehouse_ratelimit"]),
            "{:?}",
            api.filters
        );
        // A header picks the more specific Mapping.
        let beta = route(&b, port, &probe("edge", "/api/x", &[("x-beta", "yes")])).expect("beta");
        assert_eq!(beta.route, "beta");
        assert_eq!(beta.because, "prefix /api/, header x-beta");
        assert!(beta.filters.iter().all(|f| f.calls.is_empty()));
        // The host picks the virtual host.
        let shop = route(&b, port, &probe("shop.example.com", "/cart", &[])).expect("shop");
        assert_eq!(shop.route, "shop");
        // The path guard answers itself.
        let guard = route(&b, port, &probe("edge", "/api/a;b", &[])).expect("guard");
        assert_eq!(guard.action, Action::Direct(400));
    }

    #[test]
    fn no_route_names_the_step_that_failed() {
        let b = bootstrap(EDGE);
        let port = RenderOptions::default().listen_port;
        assert!(matches!(
            route(&b, port, &probe("edge", "/nothing", &[])),
            Err(NoRoute::NoRoute(_, _, p)) if p == "/nothing"
        ));
        assert!(matches!(
            route(&b, 1, &probe("edge", "/api/", &[])),
            Err(NoRoute::NoListener(1, _))
        ));
    }
}
