//! The routes: virtual hosts in order, and in each the refused-path route,
//! the OIDC paths gatehouse-authz answers, then one route per group and
//! FilterPolicy variant (per member too, for a sticky split).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use crate::host::{Insecure, SecurityModel};
use crate::mapping::{AddedHeader, HashOn, Mapping};
use crate::policy::{Filter, FilterKind, OAuth2Filter, PathMatch};

use super::context::Ctx;
use super::filters::filter_settings;
use super::groups::{RouteGroup, Shared, groups, split};
use super::names::{
    AUTHZ_FILTER, JWT_TOKEN_HEADER, OIDC_PATH_PREFIX, ROUTE_HEADER, VERIFIED_HEADER, cluster_name,
    seconds_text,
};
use super::options::RenderError;
use super::quota::{self, QUOTA_BUCKET_HEADER, QUOTA_MARK_FILTER};
use super::rules::{Variant, variants};

/// Virtual hosts, first match first, for a cleartext (`tls == false`) or
/// TLS listener whose requests count as secure as `security` says.
pub(super) fn route_config(
    ctx: &Ctx<'_>,
    tls: bool,
    security: SecurityModel,
) -> Result<Value, RenderError> {
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
        // The Host of this name: its own, else a glob's that covers it,
        // else the `*` Host's, as Envoy picks the most specific name.
        let host = super::groups::host_of(&resources.hosts, vhost);
        let vhost_name = if vhost == "*" {
            "any".to_owned()
        } else {
            vhost.replace('.', "_")
        };
        // What an insecure request gets, as in Ambassador: the Host's
        // `insecure.action`; a name without a Host is routed.
        let insecure = host.map_or(Insecure::Route, |h| h.insecure);
        let insecure_name = host.map_or(String::new(), |h| h.name.clone());
        if security == SecurityModel::Insecure && insecure != Insecure::Route {
            virtual_hosts.push(json!({
                "name": vhost_name,
                "domains": [vhost],
                "routes": [insecure_route(&insecure_name, insecure, json!({ "prefix": "/" }))],
            }));
            continue;
        }
        let mut refused_filters = serde_json::Map::new();
        filter_settings(ctx, &[], None, false, &mut refused_filters);
        let mut routes = vec![crate::sanitize::refused_paths_route(refused_filters)];
        for (f, o) in &oauth {
            let here = o.origins.iter().any(|origin| {
                let origin_host = host_of_origin(origin);
                if names.contains(origin_host) {
                    origin_host == vhost
                } else {
                    vhost == "*"
                }
            });
            if here {
                let mut per_filter = serde_json::Map::new();
                // Callback and logout always reach gatehouse-authz: no
                // fast path on these routes.
                filter_settings(ctx, &[f.name.as_str()], None, false, &mut per_filter);
                routes.push(json!({
                    "name": format!("{}-oidc", f.name),
                    "match": { "prefix": format!("{OIDC_PATH_PREFIX}{}/", f.name) },
                    // gatehouse-authz answers these paths itself.
                    "direct_response": { "status": 404 },
                    "typed_per_filter_config": per_filter,
                }));
            }
        }
        for g in groups.iter().filter(|g| g.serves(vhost, &resources.hosts)) {
            let shared = g.shared()?;
            let mut limits = Vec::new();
            let quota_domain = ctx.quota.as_ref().map(|(d, _)| d);
            for (stage, domain) in ctx.domains.iter().enumerate() {
                if quota_domain == Some(domain) {
                    continue;
                }
                for d in ctx.descriptors(shared.labels, domain, &g.members[0].name)? {
                    limits.push(json!({
                        "stage": stage,
                        "actions": d.iter().map(crate::limits::Label::action).collect::<Vec<_>>(),
                    }));
                }
            }
            let shared = Shared {
                rate_limits: limits,
                quota_bucket: ctx.quota_key(shared.labels, &g.members[0].name)?,
                ..shared
            };
            for v in variants(ctx, g, vhost)? {
                // A sticky split: gatehouse-router names the member in the
                // route header; requests without the key split by weight.
                if g.sticky().is_some() {
                    for m in &g.members {
                        routes.push(route(ctx, g, &shared, &v, m, Split::Sticky));
                    }
                }
                // A split is one route per member, as Ambassador renders
                // it, so each keeps its own rewrite, timeouts and Host: the
                // members' cumulative shares of one random number per
                // request pick the first route that matches.
                let members = split(&g.members);
                let mut cumulative = 0;
                for (i, (m, share)) in members.iter().enumerate() {
                    cumulative += share;
                    let fraction = (i + 1 < members.len()).then_some(cumulative);
                    routes.push(route(ctx, g, &shared, &v, m, Split::Share(fraction)));
                }
            }
        }
        if routes.len() == 1 {
            // Nothing but the refused-path route.
            continue;
        }
        if security == SecurityModel::Xfp && insecure != Insecure::Route {
            routes = by_forwarded_proto(routes, &insecure_name, insecure);
        }
        virtual_hosts.push(json!({ "name": vhost_name, "domains": [vhost], "routes": routes }));
    }
    let mut config = json!({ "name": if tls { "gatehouse_tls" } else { "gatehouse" }, "virtual_hosts": virtual_hosts });
    // The marks of gatehouse-session and of the quota buckets have done
    // their work by the router.
    let mut marks = Vec::new();
    if ctx.fast_filters().next().is_some() {
        marks.push(VERIFIED_HEADER);
    }
    if ctx.quota.is_some() {
        marks.push(QUOTA_BUCKET_HEADER);
    }
    if !marks.is_empty() {
        config["request_headers_to_remove"] = json!(marks);
    }
    Ok(config)
}

/// What an insecure request matching `matcher` gets on Host `host`: a
/// redirect to https, or (Reject) a 404.
fn insecure_route(host: &str, action: Insecure, matcher: Value) -> Value {
    match action {
        Insecure::Redirect => json!({
            "name": format!("{host}-https-redirect"),
            "match": matcher,
            "redirect": { "https_redirect": true },
        }),
        _ => json!({
            "name": format!("{host}-insecure-rejected"),
            "match": matcher,
            "direct_response": { "status": 404 },
        }),
    }
}

/// The routes of an XFP Listener's virtual host whose Host does not route
/// insecure requests: each route (but the refused-path one, which answers
/// anyone) for requests whose `x-forwarded-proto` is `https`, followed by
/// its insecure twin: a redirect for the same match, or (Reject) nothing,
/// as Ambassador renders them.
fn by_forwarded_proto(routes: Vec<Value>, host: &str, action: Insecure) -> Vec<Value> {
    let mut out = Vec::with_capacity(routes.len() * 2);
    for (i, mut r) in routes.into_iter().enumerate() {
        if i == 0 {
            out.push(r);
            continue;
        }
        let insecure_match = r["match"].clone();
        let secure = string_match_exact("x-forwarded-proto", "https");
        match r["match"]["headers"].as_array_mut() {
            Some(headers) => headers.push(secure),
            None => r["match"]["headers"] = json!([secure]),
        }
        out.push(r);
        if action == Insecure::Redirect {
            out.push(insecure_route(host, action, insecure_match));
        }
    }
    out
}

/// Envoy's `hash_policy` entry for what a hashing load balancer hashes.
fn hash_policy(hash: &HashOn) -> Value {
    match hash {
        HashOn::Cookie { name, path, ttl_ms } => {
            let mut cookie = json!({ "name": name });
            if let Some(p) = path {
                cookie["path"] = json!(p);
            }
            if let Some(ms) = ttl_ms {
                cookie["ttl"] = json!(seconds_text(*ms));
            }
            json!({ "cookie": cookie })
        }
        HashOn::Header(h) => json!({ "header": { "header_name": h } }),
        HashOn::SourceIp => json!({ "connection_properties": { "source_ip": true } }),
    }
}

/// Envoy's `RedirectAction` for a redirecting Mapping.
fn redirect_action(r: &crate::mapping::Redirect) -> Value {
    let code = match r.code {
        302 => "FOUND",
        303 => "SEE_OTHER",
        307 => "TEMPORARY_REDIRECT",
        308 => "PERMANENT_REDIRECT",
        _ => "MOVED_PERMANENTLY",
    };
    let mut action = json!({ "host_redirect": r.host, "response_code": code });
    if let Some(p) = &r.path {
        action["path_redirect"] = json!(p);
    }
    if let Some(p) = &r.prefix {
        action["prefix_rewrite"] = json!(p);
    }
    if let Some((pattern, substitution)) = &r.regex {
        action["regex_rewrite"] =
            json!({ "pattern": { "regex": pattern }, "substitution": substitution });
    }
    action
}

/// How a route takes its share of a group's requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Split {
    /// The requests gatehouse-router named this member for.
    Sticky,
    /// The requests whose random number (of 100) is under this cumulative
    /// share; `None` for the last member (or the only one): every request
    /// left.
    Share(Option<u32>),
}

#[allow(clippy::too_many_lines)]
fn route(
    ctx: &Ctx<'_>,
    g: &RouteGroup<'_>,
    shared: &Shared<'_>,
    v: &Variant<'_>,
    member: &Mapping,
    split: Split,
) -> Value {
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
    if split == Split::Sticky {
        headers.push(string_match_exact(ROUTE_HEADER, &cluster_name(member)));
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
    if shared.case_insensitive {
        matcher["case_sensitive"] = json!(false);
    }
    if let Split::Share(Some(percent)) = split {
        matcher["runtime_fraction"] = json!({
            "default_value": { "numerator": percent, "denominator": "HUNDRED" },
            "runtime_key": format!("routing.traffic_shift.{}", cluster_name(member)),
        });
    }
    let mut action = json!({ "timeout": seconds_text(member.timeout_ms) });
    if let Some((pattern, substitution)) = shared.regex_rewrite {
        action["regex_rewrite"] =
            json!({ "pattern": { "regex": pattern }, "substitution": substitution });
    } else if !member.rewrite.is_empty() {
        // `rewrite: ""` keeps the path as it came, as in Ambassador.
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
        action["prefix_rewrite"] = json!(format!("{}{suffix}", member.rewrite));
    }
    action["cluster"] = json!(cluster_name(member));
    if let Some(host) = &member.host_rewrite {
        action["host_rewrite_literal"] = json!(host);
    }
    if let Some(ms) = member.idle_timeout_ms {
        action["idle_timeout"] = json!(seconds_text(ms));
    }
    if let Some(retry) = shared.retry_policy {
        let mut policy = json!({ "retry_on": retry.retry_on, "num_retries": retry.num_retries });
        if let Some(t) = &retry.per_try_timeout {
            policy["per_try_timeout"] = json!(t);
        }
        action["retry_policy"] = policy;
    }
    if !shared.allow_upgrade.is_empty() {
        action["upgrade_configs"] = Value::Array(
            shared
                .allow_upgrade
                .iter()
                .map(|u| json!({ "upgrade_type": u }))
                .collect(),
        );
    }
    if !shared.rate_limits.is_empty() {
        action["rate_limits"] = Value::Array(shared.rate_limits.clone());
    }
    let mut name = match &v.path {
        None if v.header.is_none() => member.name.clone(),
        _ => format!(
            "{}/{}",
            member.name,
            v.because.as_deref().unwrap_or("narrowed")
        ),
    };
    if split == Split::Sticky {
        name = format!("{name}/sticky");
    }
    if let Some(hash) = shared.load_balancer.and_then(|lb| lb.hash.as_ref()) {
        action["hash_policy"] = json!([hash_policy(hash)]);
    }
    if let Some(shadow) = g.shadows.first() {
        let mut mirror = json!({ "cluster": cluster_name(shadow) });
        if let Some(w) = shadow.weight {
            mirror["runtime_fraction"] =
                json!({ "default_value": { "numerator": w, "denominator": "HUNDRED" } });
        }
        action["request_mirror_policies"] = json!([mirror]);
    }
    let mut r = match &member.redirect {
        // A redirect answers at the edge: nothing goes upstream.
        Some(redirect) => {
            json!({ "name": name, "match": matcher, "redirect": redirect_action(redirect) })
        }
        None => json!({ "name": name, "match": matcher, "route": action }),
    };
    // `bypass_auth`: no Filter runs, as in Ambassador.
    let filters: &[&str] = if shared.bypass_auth { &[] } else { &v.filters };
    let mut per_filter = serde_json::Map::new();
    if let Some(cors) = shared.cors {
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
    filter_settings(ctx, filters, v.instead, true, &mut per_filter);
    if let Some(key) = &shared.quota_bucket {
        per_filter.insert(QUOTA_MARK_FILTER.into(), quota::mark(key));
    }
    // The Mapping's auth_context_extensions go along with each check.
    if let Some(extensions) = per_filter
        .get_mut(AUTHZ_FILTER)
        .and_then(|s| s.pointer_mut("/check_settings/context_extensions"))
        .and_then(Value::as_object_mut)
    {
        for (k, v) in &member.auth_context_extensions {
            extensions.insert(k.clone(), json!(v));
        }
    }
    if !per_filter.is_empty() {
        r["typed_per_filter_config"] = Value::Object(per_filter);
    }
    let add_response = headers_to_add(&shared.add_response_headers);
    if !add_response.is_empty() {
        r["response_headers_to_add"] = Value::Array(add_response);
    }
    if !shared.remove_response_headers.is_empty() {
        r["response_headers_to_remove"] = json!(shared.remove_response_headers);
    }
    let add = headers_to_add(&shared.add_request_headers);
    if !add.is_empty() {
        r["request_headers_to_add"] = Value::Array(add);
    }
    let mut remove = shared.remove_request_headers.to_vec();
    if split == Split::Sticky {
        remove.push(ROUTE_HEADER.to_owned());
    }
    // The token stays off the upstream request, as with jwt_authn, but the
    // route removes it rather than the wasm filter: a header a wasm filter
    // removes makes Envoy pick the route again, and an `ifRequestHeader:
    // authorization` route would lose the request (`token_headers_removed_by_envoy`).
    let jwt_here = filters
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

/// Envoy's `*_headers_to_add`: each header replacing a value the request or
/// response already has, or added beside it (`append`).
fn headers_to_add(headers: &BTreeMap<&str, &AddedHeader>) -> Vec<Value> {
    headers
        .iter()
        .map(|(k, h)| {
            let action = if h.append {
                "APPEND_IF_EXISTS_OR_ADD"
            } else {
                "OVERWRITE_IF_EXISTS_OR_ADD"
            };
            json!({ "header": { "key": k, "value": h.value }, "append_action": action })
        })
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
