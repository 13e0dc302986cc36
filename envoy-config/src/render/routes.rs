//! The routes: virtual hosts in order, and in each the refused-path route,
//! the OIDC paths gatehouse-authz answers, then one route per group and
//! FilterPolicy variant (per member too, for a sticky split).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use crate::host::Insecure;
use crate::mapping::Mapping;
use crate::policy::{Filter, FilterKind, OAuth2Filter, PathMatch};

use super::context::Ctx;
use super::filters::filter_settings;
use super::groups::{RouteGroup, groups, weights};
use super::names::{JWT_TOKEN_HEADER, OIDC_PATH_PREFIX, ROUTE_HEADER, cluster_name, seconds_text};
use super::options::RenderError;
use super::rules::{Variant, variants};

/// Virtual hosts, first match first, for a cleartext (`secure == false`)
/// or TLS listener.
pub(super) fn route_config(ctx: &Ctx<'_>, secure: bool) -> Result<Value, RenderError> {
    let resources = ctx.resources;
    let groups = groups(resources);
    let mut names: BTreeSet<&str> = BTreeSet::new();
    for m in &resources.mappings {
        names.insert(&m.hostname);
    }
    for h in &resources.hosts {
        names.insert(&h.hostname);
    }
    for (_, _, r) in &ctx.rules {
        names.insert(&r.host);
    }
    names.remove("*");
    let oauth: Vec<(&Filter, &OAuth2Filter)> = resources
        .filters
        .iter()
        .filter_map(|f| match &f.kind {
            FilterKind::OAuth2(o) => Some((f, o)),
            _ => None,
        })
        .collect();
    let mut virtual_hosts = Vec::new();
    // The catch-all host last: Envoy picks the most specific domain anyway,
    // but a reader expects it at the end.
    for vhost in names.iter().copied().chain(std::iter::once("*")) {
        let host = resources.hosts.iter().find(|h| h.hostname == vhost);
        let vhost_name = if vhost == "*" {
            "any".to_owned()
        } else {
            vhost.replace('.', "_")
        };
        if !secure && let Some(h) = host.filter(|h| h.tls_files.is_some() || h.tls_secret.is_some())
        {
            match h.insecure {
                Insecure::Redirect => {
                    virtual_hosts.push(json!({
                        "name": vhost_name,
                        "domains": [vhost],
                        "routes": [{ "name": format!("{}-https-redirect", h.name), "match": { "prefix": "/" }, "redirect": { "https_redirect": true } }],
                    }));
                    continue;
                }
                Insecure::Reject => {
                    virtual_hosts.push(json!({
                        "name": vhost_name,
                        "domains": [vhost],
                        "routes": [{ "name": format!("{}-insecure-rejected", h.name), "match": { "prefix": "/" }, "direct_response": { "status": 404 } }],
                    }));
                    continue;
                }
                Insecure::Route => {}
            }
        }
        let mut refused_filters = serde_json::Map::new();
        filter_settings(ctx, &[], &mut refused_filters);
        let mut routes = vec![crate::sanitize::refused_paths_route(refused_filters)];
        for (f, o) in &oauth {
            let origin_host = host_of_origin(&o.origin);
            let here = if names.contains(origin_host) {
                origin_host == vhost
            } else {
                vhost == "*"
            };
            if here {
                let mut per_filter = serde_json::Map::new();
                filter_settings(ctx, &[f.name.as_str()], &mut per_filter);
                routes.push(json!({
                    "name": format!("{}-oidc", f.name),
                    "match": { "prefix": format!("{OIDC_PATH_PREFIX}{}/", f.name) },
                    // gatehouse-authz answers these paths itself.
                    "direct_response": { "status": 404 },
                    "typed_per_filter_config": per_filter,
                }));
            }
        }
        for g in groups
            .iter()
            .filter(|g| g.hostname == vhost || g.hostname == "*")
        {
            for v in variants(ctx, g, vhost)? {
                // A sticky split: gatehouse-router names the member in the
                // route header; requests without the key split by weight.
                if g.sticky().is_some() {
                    for m in &g.members {
                        routes.push(route(ctx, g, &v, Some(m)));
                    }
                }
                routes.push(route(ctx, g, &v, None));
            }
        }
        if routes.len() == 1 {
            // Nothing but the refused-path route.
            continue;
        }
        virtual_hosts.push(json!({ "name": vhost_name, "domains": [vhost], "routes": routes }));
    }
    Ok(
        json!({ "name": if secure { "gatehouse_tls" } else { "gatehouse" }, "virtual_hosts": virtual_hosts }),
    )
}

#[allow(clippy::too_many_lines)]
fn route(ctx: &Ctx<'_>, g: &RouteGroup<'_>, v: &Variant<'_>, member: Option<&Mapping>) -> Value {
    let first = g.members[0];
    let mut headers: Vec<Value> = g
        .headers
        .iter()
        .map(|(k, v)| string_match_exact(k, v))
        .chain(
            g.regex_headers
                .iter()
                .map(|(k, v)| string_match_regex(k, v)),
        )
        .collect();
    if let Some(method) = g.method {
        headers.push(string_match_exact(":method", method));
    }
    if let Some(m) = member {
        headers.push(string_match_exact(ROUTE_HEADER, &cluster_name(m)));
    }
    if let Some(h) = &v.header {
        let mut m = match (&h.value, &h.value_regex) {
            (Some(value), _) => string_match_exact(&h.name, value),
            (None, Some(re)) => string_match_regex(&h.name, re),
            (None, None) => json!({ "name": h.name, "present_match": true }),
        };
        if h.negate {
            m["invert_match"] = json!(true);
        }
        headers.push(m);
    }
    let mut matcher = match (&v.path, first.prefix_regex) {
        (Some(PathMatch::Prefix(p)), _) => json!({ "prefix": p }),
        (Some(PathMatch::Segments(p)), _) => json!({ "path_separated_prefix": p }),
        (Some(PathMatch::Exact(p)), _) => json!({ "path": p }),
        (_, true) => json!({ "safe_regex": { "regex": g.prefix } }),
        _ if first.exact_path => json!({ "path": g.prefix }),
        _ => json!({ "prefix": g.prefix }),
    };
    if !headers.is_empty() {
        matcher["headers"] = Value::Array(headers);
    }
    let query: Vec<Value> = g
        .query
        .iter()
        .map(|(k, v)| string_match_exact(k, v))
        .chain(g.regex_query.iter().map(|(k, v)| string_match_regex(k, v)))
        .collect();
    if !query.is_empty() {
        matcher["query_parameters"] = Value::Array(query);
    }
    let mut action = json!({ "timeout": seconds_text(first.timeout_ms) });
    if let Some((pattern, substitution)) = &first.regex_rewrite {
        action["regex_rewrite"] =
            json!({ "pattern": { "regex": pattern }, "substitution": substitution });
    } else {
        // A narrower route keeps the Mapping's rewrite: what follows the
        // Mapping's prefix follows the rewrite.
        let suffix = match &v.path {
            Some(PathMatch::Prefix(p) | PathMatch::Segments(p) | PathMatch::Exact(p))
                if !first.prefix_regex =>
            {
                &p[g.prefix.len()..]
            }
            _ => "",
        };
        action["prefix_rewrite"] = json!(format!("{}{suffix}", first.rewrite));
    }
    if let Some(m) = member {
        action["cluster"] = json!(cluster_name(m));
    } else if g.members.len() == 1 {
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
        action["idle_timeout"] = json!(seconds_text(ms));
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
    let mut limits = Vec::new();
    for (stage, domain) in ctx.domains.iter().enumerate() {
        for group in first.labels.get(domain).into_iter().flatten() {
            limits.push(json!({
                "stage": stage,
                "actions": group.iter().map(crate::limits::Label::action).collect::<Vec<_>>(),
            }));
        }
    }
    if !limits.is_empty() {
        action["rate_limits"] = Value::Array(limits);
    }
    let mut name = match &v.path {
        None if v.header.is_none() => first.name.clone(),
        _ => format!(
            "{}/{}",
            first.name,
            v.because.as_deref().unwrap_or("narrowed")
        ),
    };
    if let Some(m) = member {
        name = format!("{name}/sticky/{}", m.name);
    }
    let mut r = json!({ "name": name, "match": matcher, "route": action });
    let mut per_filter = serde_json::Map::new();
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
        per_filter.insert("envoy.filters.http.cors".into(), policy);
    }
    filter_settings(ctx, &v.filters, &mut per_filter);
    if !per_filter.is_empty() {
        r["typed_per_filter_config"] = Value::Object(per_filter);
    }
    let add_response = headers_to_add(&first.add_response_headers);
    if !add_response.is_empty() {
        r["response_headers_to_add"] = Value::Array(add_response);
    }
    if !first.remove_response_headers.is_empty() {
        r["response_headers_to_remove"] = json!(first.remove_response_headers);
    }
    let add = headers_to_add(&first.add_request_headers);
    if !add.is_empty() {
        r["request_headers_to_add"] = Value::Array(add);
    }
    let mut remove = first.remove_request_headers.clone();
    if member.is_some() {
        remove.push(ROUTE_HEADER.to_owned());
    }
    // The token stays off the upstream request, as with jwt_authn, but the
    // route removes it rather than the wasm filter: a header a wasm filter
    // removes makes Envoy pick the route again, and an `ifRequestHeader:
    // authorization` route would lose the request (`token_headers_removed_by_envoy`).
    let jwt_here = v
        .filters
        .iter()
        .any(|name| matches!(ctx.filter(name).map(|f| &f.kind), Some(FilterKind::Jwt(_))));
    if jwt_here
        && !remove
            .iter()
            .any(|h| h.eq_ignore_ascii_case(JWT_TOKEN_HEADER))
    {
        remove.push(JWT_TOKEN_HEADER.to_owned());
    }
    if !remove.is_empty() {
        r["request_headers_to_remove"] = json!(remove);
    }
    r
}

/// Envoy's `*_headers_to_add`: each header set, replacing a value the
/// request or response already has.
fn headers_to_add(headers: &BTreeMap<String, String>) -> Vec<Value> {
    headers
        .iter()
        .map(|(k, v)| json!({ "header": { "key": k, "value": v }, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD" }))
        .collect()
}

fn string_match_exact(name: &str, value: &str) -> Value {
    json!({ "name": name, "string_match": { "exact": value } })
}

fn string_match_regex(name: &str, regex: &str) -> Value {
    json!({ "name": name, "string_match": { "safe_regex": { "regex": regex } } })
}

fn host_of_origin(origin: &str) -> &str {
    let rest = origin.split_once("://").map_or(origin, |(_, r)| r);
    rest.split(':').next().unwrap_or(rest)
}
