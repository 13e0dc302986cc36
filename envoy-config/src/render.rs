//! Resources to an Envoy bootstrap. Deterministic: the same resources give
//! byte-identical output (objects are written with sorted keys).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use crate::limits::RateLimitService;
use crate::policy::{
    Filter, FilterKind, FilterPolicy, HeaderCondition, JwtFilter, OAuth2Filter, PathMatch,
    PolicyRule,
};
use crate::resources::{Host, Insecure, Listener, Mapping, Resources, Sticky};

/// Where the rendered Envoy listens and where it finds the services.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderOptions {
    /// Listener address.
    pub listen_address: String,
    /// Cleartext listener port (when no `Listener` resource says).
    pub listen_port: u16,
    /// TLS listener port (when no `Listener` resource says and a `Host` has TLS).
    pub https_port: u16,
    /// Admin port (on 127.0.0.1).
    pub admin_port: u16,
    /// Trusted proxies in front (`x-forwarded-for` hops).
    pub xff_num_trusted_hops: u32,
    /// The gatehouse-jwt wasm file, as Envoy sees it.
    pub jwt_wasm: String,
    /// The gatehouse-router wasm file, as Envoy sees it.
    pub router_wasm: String,
    /// gatehouse-authz's gRPC address (`host:port`).
    pub authz_address: String,
    /// gatehouse-ratelimit's gRPC address (`host:port`).
    pub ratelimit_address: String,
    /// Where Secrets are mounted: `<dir>/<secret name>/<key>`.
    pub secrets_dir: String,
    /// CA bundle that upstream TLS certificates (https services, JWKS) are checked against.
    pub ca_file: String,
    /// When set, Envoy calls gatehouse-authz and gatehouse-ratelimit over
    /// TLS, checking their certificates against this CA for the host part
    /// of their addresses.
    pub services_ca_file: Option<String>,
}

impl Default for RenderOptions {
    fn default() -> Self {
        Self {
            listen_address: "0.0.0.0".into(),
            listen_port: 8080,
            https_port: 8443,
            admin_port: 9901,
            xff_num_trusted_hops: 0,
            jwt_wasm: "/etc/gatehouse/wasm/gatehouse_jwt.wasm".into(),
            router_wasm: "/etc/gatehouse/wasm/gatehouse_router.wasm".into(),
            authz_address: "127.0.0.1:9191".into(),
            ratelimit_address: "127.0.0.1:8081".into(),
            secrets_dir: "/etc/gatehouse/secrets".into(),
            ca_file: "/etc/ssl/certs/ca-certificates.crt".into(),
            services_ca_file: None,
        }
    }
}

/// Why resources that each parsed cannot render together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{document}: {path}: {message}")]
pub struct RenderError {
    /// `<Kind> <name>`.
    pub document: String,
    /// Field path in it.
    pub path: String,
    /// What is wrong and what to do.
    pub message: String,
}

fn render_err(
    document: String,
    path: impl Into<String>,
    message: impl Into<String>,
) -> RenderError {
    RenderError {
        document,
        path: path.into(),
        message: message.into(),
    }
}

/// One route: the Mappings that share a match.
struct RouteGroup<'a> {
    hostname: &'a str,
    prefix: &'a str,
    headers: &'a BTreeMap<String, String>,
    regex_headers: &'a BTreeMap<String, String>,
    method: Option<&'a str>,
    query: &'a BTreeMap<String, String>,
    regex_query: &'a BTreeMap<String, String>,
    precedence: i32,
    members: Vec<&'a Mapping>,
}

impl RouteGroup<'_> {
    fn same_match(&self, m: &Mapping) -> bool {
        self.hostname == m.hostname
            && self.prefix == m.prefix
            && self.members[0].exact_path == m.exact_path
            && *self.headers == m.headers
            && *self.regex_headers == m.regex_headers
            && self.method == m.method.as_deref()
            && *self.query == m.query_parameters
            && *self.regex_query == m.regex_query_parameters
    }

    /// How the group's weights stick to a user, if they do.
    fn sticky(&self) -> Option<&Sticky> {
        self.members.iter().find_map(|m| m.sticky.as_ref())
    }

    fn match_count(&self) -> usize {
        self.headers.len()
            + self.regex_headers.len()
            + self.query.len()
            + self.regex_query.len()
            + usize::from(self.method.is_some())
    }
}

fn cluster_name(m: &Mapping) -> String {
    let host: String = m
        .host
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let mut name = format!("{host}_{}", m.port);
    if m.tls {
        name.push_str("_tls");
    }
    if m.grpc {
        name.push_str("_grpc");
    }
    name
}

/// Groups Mappings with the same match and sorts the groups as Ambassador
/// does: higher `precedence` first, then longer prefixes, then more header,
/// query and method matches; ties by prefix and name, so the order never
/// depends on input order.
fn groups(resources: &Resources) -> Vec<RouteGroup<'_>> {
    let mut groups: Vec<RouteGroup<'_>> = Vec::new();
    for m in &resources.mappings {
        match groups.iter_mut().find(|g| g.same_match(m)) {
            Some(g) => {
                g.members.push(m);
                g.precedence = g.precedence.max(m.precedence);
            }
            None => groups.push(RouteGroup {
                hostname: &m.hostname,
                prefix: &m.prefix,
                headers: &m.headers,
                regex_headers: &m.regex_headers,
                method: m.method.as_deref(),
                query: &m.query_parameters,
                regex_query: &m.regex_query_parameters,
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
            .then(b.match_count().cmp(&a.match_count()))
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

/// Everything a route needs to know about the filters of the listener.
struct Ctx<'a> {
    resources: &'a Resources,
    options: &'a RenderOptions,
    /// FilterPolicy rules in force, in order (policies by name).
    rules: Vec<(&'a FilterPolicy, usize, &'a PolicyRule)>,
    has_authz: bool,
    /// Rate-limit domains in filter order (their stage is the index).
    domains: Vec<String>,
}

impl<'a> Ctx<'a> {
    fn new(resources: &'a Resources, options: &'a RenderOptions) -> Result<Self, RenderError> {
        let mut policies: Vec<&FilterPolicy> = resources.policies.iter().collect();
        policies.sort_by(|a, b| a.name.cmp(&b.name));
        let mut rules = Vec::new();
        for p in policies {
            for (i, r) in p.rules.iter().enumerate() {
                let mut ext = 0;
                for (j, u) in r.filters.iter().enumerate() {
                    let at = format!("spec.rules[{i}].filters[{j}].name");
                    let f = resources
                        .filters
                        .iter()
                        .find(|f| f.name == u.name)
                        .ok_or_else(|| {
                            render_err(
                                format!("FilterPolicy {}", p.name),
                                at.clone(),
                                format!("no Filter is named {:?}", u.name),
                            )
                        })?;
                    if !matches!(f.kind, FilterKind::Jwt(_)) {
                        ext += 1;
                    }
                }
                if ext > 1 {
                    return Err(render_err(
                        format!("FilterPolicy {}", p.name),
                        format!("spec.rules[{i}].filters"),
                        "one OAuth2 or APIKey Filter per rule: gatehouse-authz answers with one",
                    ));
                }
                rules.push((p, i, r));
            }
        }
        let has_authz = resources
            .filters
            .iter()
            .any(|f| !matches!(f.kind, FilterKind::Jwt(_)));
        // Two OAuth2 Filters whose names map to one cookie would overwrite
        // each other's sessions in the browser: a login to one logs out of
        // the other.
        let mut cookies: BTreeMap<String, &str> = BTreeMap::new();
        for f in &resources.filters {
            if !matches!(f.kind, FilterKind::OAuth2(_)) {
                continue;
            }
            let cookie = session_cookie_name(&f.name);
            if let Some(other) = cookies.insert(cookie.clone(), &f.name) {
                return Err(render_err(
                    format!("Filter {}", f.name),
                    "metadata.name",
                    format!(
                        "Filter {other} keeps its session in the cookie {cookie} too: rename one (names differing only in punctuation share a cookie)"
                    ),
                ));
            }
        }
        let all = groups(resources);
        for (i, g) in all.iter().enumerate() {
            let Some(sticky) = g.sticky() else { continue };
            let doc = format!("Mapping {}", g.members[0].name);
            if g.members.len() < 2 {
                return Err(render_err(
                    doc,
                    "spec.sticky",
                    "sticky needs a weighted split: more Mappings with the same match",
                ));
            }
            if g.members
                .iter()
                .any(|m| m.sticky.as_ref().is_some_and(|s| s != sticky))
            {
                return Err(render_err(
                    doc,
                    "spec.sticky",
                    "the Mappings of one split name different sticky keys: give them the same",
                ));
            }
            if all[..i]
                .iter()
                .any(|o| o.sticky().is_some() && o.prefix == g.prefix)
            {
                return Err(render_err(
                    doc,
                    "spec.prefix",
                    "two sticky splits on one prefix (on different hosts) are not supported yet",
                ));
            }
        }
        let domains: BTreeSet<String> = resources
            .mappings
            .iter()
            .flat_map(|m| m.labels.keys().cloned())
            .collect();
        Ok(Self {
            resources,
            options,
            rules,
            has_authz,
            domains: domains.into_iter().collect(),
        })
    }

    /// The rate-limit service: the `RateLimitService` document, else the
    /// render options' address with the documented defaults.
    fn ratelimit_service(&self) -> RateLimitService {
        self.resources
            .rate_limit_service
            .clone()
            .unwrap_or_else(|| RateLimitService::default_at(&self.options.ratelimit_address))
    }

    fn filter(&self, name: &str) -> Option<&'a Filter> {
        self.resources.filters.iter().find(|f| f.name == name)
    }

    fn jwt_filters(&self) -> impl Iterator<Item = (&'a Filter, &'a JwtFilter)> {
        self.resources.filters.iter().filter_map(|f| match &f.kind {
            FilterKind::Jwt(j) => Some((f, j)),
            _ => None,
        })
    }
}

/// One route rendered from a group: maybe narrowed by a FilterPolicy rule
/// (a path inside the Mapping's prefix, a header condition) with the
/// filters that apply there.
struct Variant<'a> {
    path: Option<PathMatch>,
    header: Option<HeaderCondition>,
    filters: Vec<&'a str>,
    /// `FilterPolicy name, rule index` for `gatehouse routes`.
    because: Option<String>,
}

enum Relation {
    Covers,
    Narrower(PathMatch),
    Disjoint,
}

fn relation(rule: &PathMatch, g: &RouteGroup<'_>) -> Relation {
    if g.members[0].exact_path {
        return match rule {
            PathMatch::Any => Relation::Covers,
            PathMatch::Prefix(q) if g.prefix.starts_with(q.as_str()) => Relation::Covers,
            PathMatch::Segments(q) if under_segments(q, g.prefix) => Relation::Covers,
            PathMatch::Exact(e) if e == g.prefix => Relation::Covers,
            _ => Relation::Disjoint,
        };
    }
    match rule {
        PathMatch::Any => Relation::Covers,
        PathMatch::Prefix(q) if g.prefix.starts_with(q.as_str()) => Relation::Covers,
        // `/health` covers a Mapping on `/health/`, not one on `/health`
        // (which also matches `/healthz`).
        PathMatch::Segments(q) if g.prefix.starts_with(&format!("{q}/")) => Relation::Covers,
        PathMatch::Prefix(q) | PathMatch::Segments(q) if q.starts_with(g.prefix) => {
            Relation::Narrower(rule.clone())
        }
        PathMatch::Exact(e) if e.starts_with(g.prefix) => Relation::Narrower(rule.clone()),
        _ => Relation::Disjoint,
    }
}

/// Whether `path` is `segments` or lies under it (`segments` + `/`...).
fn under_segments(segments: &str, path: &str) -> bool {
    path.strip_prefix(segments)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

fn path_covers(outer: &PathMatch, inner: &PathMatch) -> bool {
    match (outer, inner) {
        (PathMatch::Any, _) => true,
        (
            PathMatch::Prefix(o),
            PathMatch::Prefix(i) | PathMatch::Segments(i) | PathMatch::Exact(i),
        ) => i.starts_with(o.as_str()),
        (PathMatch::Segments(o), PathMatch::Segments(i) | PathMatch::Exact(i)) => {
            under_segments(o, i)
        }
        (PathMatch::Segments(o), PathMatch::Prefix(i)) => i.starts_with(&format!("{o}/")),
        (PathMatch::Exact(o), PathMatch::Exact(i)) => o == i,
        _ => false,
    }
}

/// The routes of group `g` on virtual host `vhost`, first match first.
fn variants<'a>(
    ctx: &Ctx<'a>,
    g: &RouteGroup<'_>,
    vhost: &str,
) -> Result<Vec<Variant<'a>>, RenderError> {
    let mut out = Vec::new();
    let mut narrower: Vec<PathMatch> = Vec::new();
    let regex = g.members[0].prefix_regex;
    for (policy, index, rule) in &ctx.rules {
        if rule.host != "*" && rule.host != vhost {
            continue;
        }
        let because = Some(format!("FilterPolicy {} rule {index}", policy.name));
        let rel = if regex && rule.path != PathMatch::Any {
            return Err(render_err(
                format!("FilterPolicy {}", policy.name),
                format!("spec.rules[{index}].path"),
                format!(
                    "Mapping {} matches by regular expression: a path rule cannot be checked against it; use path * with a host, or a prefix Mapping",
                    g.members[0].name
                ),
            ));
        } else {
            relation(&rule.path, g)
        };
        let path = match rel {
            Relation::Disjoint => continue,
            Relation::Covers => None,
            Relation::Narrower(p) => {
                if narrower.iter().any(|n| path_covers(n, &p)) {
                    continue;
                }
                narrower.push(p.clone());
                Some(p)
            }
        };
        let all: Vec<&'a str> = rule.filters.iter().map(|u| u.name.as_str()).collect();
        if let Some(cond) = rule.filters.iter().find_map(|u| u.if_header.clone()) {
            out.push(Variant {
                path: path.clone(),
                header: Some(cond),
                filters: all.clone(),
                because: because.clone(),
            });
            let unconditional = rule
                .filters
                .iter()
                .filter(|u| u.if_header.is_none())
                .map(|u| u.name.as_str())
                .collect();
            out.push(Variant {
                path: path.clone(),
                header: None,
                filters: unconditional,
                because,
            });
        } else {
            out.push(Variant {
                path: path.clone(),
                header: None,
                filters: all,
                because,
            });
        }
        if path.is_none() {
            return Ok(out);
        }
    }
    out.push(Variant {
        path: None,
        header: None,
        filters: Vec::new(),
        because: None,
    });
    Ok(out)
}

fn string_match_exact(name: &str, value: &str) -> Value {
    json!({ "name": name, "string_match": { "exact": value } })
}

fn string_match_regex(name: &str, regex: &str) -> Value {
    json!({ "name": name, "string_match": { "safe_regex": { "regex": regex } } })
}

fn seconds_text(ms: u64) -> String {
    format!("{}s", ms as f64 / 1000.0)
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

/// The per-route settings that switch the filters named in `uses` on, and
/// gatehouse-authz off where no Filter of its asks for it.
fn filter_settings(ctx: &Ctx<'_>, uses: &[&str], per_filter: &mut serde_json::Map<String, Value>) {
    let mut authz = None;
    // Every name was checked against the Filters in Ctx::new.
    for name in uses {
        match ctx.filter(name).map(|f| &f.kind) {
            None => {}
            Some(FilterKind::Jwt(_)) => {
                per_filter.insert(
                    jwt_filter_name(name),
                    json!({ "@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig", "config": {} }),
                );
            }
            _ => authz = Some(*name),
        }
    }
    if ctx.has_authz {
        let setting = match authz {
            Some(name) => json!({
                "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute",
                "check_settings": { "context_extensions": { "gatehouse_filter": name } },
            }),
            None => json!({
                "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute",
                "disabled": true,
            }),
        };
        per_filter.insert(AUTHZ_FILTER.into(), setting);
    }
}

const AUTHZ_FILTER: &str = "gatehouse.authz";
const ROUTER_FILTER: &str = "gatehouse.router";
/// The header gatehouse-router names a sticky split's member in.
const ROUTE_HEADER: &str = "x-gatehouse-route";
/// Where a JWT Filter's token arrives; routes it guards remove it.
const JWT_TOKEN_HEADER: &str = "authorization";
const AUTHZ_CLUSTER: &str = "gatehouse_authz";
const RATELIMIT_CLUSTER: &str = "gatehouse_ratelimit";
/// Where an OAuth2 Filter's callback and logout live: `<prefix><filter>/…`.
pub const OIDC_PATH_PREFIX: &str = "/.gatehouse/oidc/";

fn jwt_filter_name(filter: &str) -> String {
    format!("gatehouse.jwt.{filter}")
}

fn jwks_cluster_name(u: &crate::policy::Url) -> String {
    let host: String = u
        .host
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("jwks_{host}_{}", u.port)
}

fn host_of_origin(origin: &str) -> &str {
    let rest = origin.split_once("://").map_or(origin, |(_, r)| r);
    rest.split(':').next().unwrap_or(rest)
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

/// Virtual hosts, first match first, for a cleartext (`secure == false`)
/// or TLS listener.
fn route_config(ctx: &Ctx<'_>, secure: bool) -> Result<Value, RenderError> {
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

fn clusters(ctx: &Ctx<'_>) -> Result<Vec<Value>, RenderError> {
    let mut clusters: BTreeMap<String, (Value, &str)> = BTreeMap::new();
    for m in &ctx.resources.mappings {
        let c = cluster(ctx.options, m);
        match clusters.get(&cluster_name(m)) {
            Some((existing, other)) if *existing != c => {
                return Err(render_err(
                    format!("Mapping {}", m.name),
                    "spec.circuit_breakers",
                    format!(
                        "Mapping {other} sends to the same service with other circuit breakers: give both the same"
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
    Ok(out.into_values().collect())
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

/// The gatehouse-jwt configuration of one JWT Filter: one provider, required
/// wherever a route switches the filter on.
fn jwt_config(name: &str, j: &JwtFilter) -> String {
    let mut provider = json!({
        "jwks": { "remote": { "uri": j.jwks_uri.full, "cluster": jwks_cluster_name(&j.jwks_uri) } },
    });
    if let Some(iss) = &j.issuer {
        provider["issuer"] = json!(iss);
    }
    if let Some(aud) = &j.audience {
        provider["audiences"] = json!([aud]);
    }
    if !j.algorithms.is_empty() {
        provider["algorithms"] = json!(j.algorithms);
    }
    if let Some(s) = j.leeway_seconds {
        provider["clock_skew_seconds"] = json!(s);
    }
    if !j.inject.is_empty() {
        provider["claim_to_headers"] = Value::Array(
            j.inject
                .iter()
                .map(|(header, claim)| json!({ "claim": claim, "header": header }))
                .collect(),
        );
    }
    json!({
        "providers": { name: provider },
        "rules": [{ "requires": { "provider": name } }],
        // Every listener removes them first (early_header_mutation).
        "reserved_headers_stripped_by_envoy": true,
        // Every route the filter is on removes the token (route()).
        "token_headers_removed_by_envoy": true,
    })
    .to_string()
}

/// The HTTP filters of every listener, in request order.
fn http_filters(ctx: &Ctx<'_>) -> Vec<Value> {
    let mut filters = vec![json!({
        // CORS first: a preflight needs no credentials. Policies live on
        // the routes; the filter does nothing on routes without one.
        "name": "envoy.filters.http.cors",
        "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors" }
    })];
    for (f, j) in ctx.jwt_filters() {
        filters.push(json!({
            "name": jwt_filter_name(&f.name),
            // On only where a FilterPolicy rule names it.
            "disabled": true,
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                "config": {
                    "name": jwt_filter_name(&f.name),
                    "root_id": jwt_filter_name(&f.name),
                    "configuration": {
                        "@type": "type.googleapis.com/google.protobuf.StringValue",
                        "value": jwt_config(&f.name, j),
                    },
                    "vm_config": {
                        "vm_id": "gatehouse-jwt",
                        "runtime": "envoy.wasm.runtime.v8",
                        "code": { "local": { "filename": ctx.options.jwt_wasm } },
                    },
                },
            },
        }));
    }
    if ctx.has_authz {
        filters.push(json!({
            "name": AUTHZ_FILTER,
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
                "transport_api_version": "V3",
                // Fail closed: no answer from gatehouse-authz is no access.
                "failure_mode_allow": false,
                "grpc_service": { "envoy_grpc": { "cluster_name": AUTHZ_CLUSTER }, "timeout": "2s" },
            },
        }));
    }
    if let Some(config) = router_config(ctx) {
        filters.push(json!({
            "name": ROUTER_FILTER,
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                "config": {
                    "name": ROUTER_FILTER,
                    "root_id": ROUTER_FILTER,
                    "configuration": {
                        "@type": "type.googleapis.com/google.protobuf.StringValue",
                        "value": config,
                    },
                    "vm_config": {
                        "vm_id": "gatehouse-router",
                        "runtime": "envoy.wasm.runtime.v8",
                        "code": { "local": { "filename": ctx.options.router_wasm } },
                    },
                },
            },
        }));
    }
    let service = ctx.ratelimit_service();
    for (stage, domain) in ctx.domains.iter().enumerate() {
        filters.push(json!({
            "name": format!("gatehouse.ratelimit.{domain}"),
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit",
                "domain": domain,
                "stage": stage,
                "timeout": seconds_text(service.timeout_ms),
                // Open by default, as in Ambassador (a limiter outage is not
                // an outage); a RateLimitService's failure_mode_deny closes it.
                "failure_mode_deny": service.failure_mode_deny,
                "enable_x_ratelimit_headers": "DRAFT_VERSION_03",
                "rate_limit_service": {
                    "transport_api_version": "V3",
                    "grpc_service": { "envoy_grpc": { "cluster_name": RATELIMIT_CLUSTER } },
                },
            },
        }));
    }
    filters.push(json!({
        "name": "envoy.filters.http.router",
        "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" }
    }));
    filters
}

/// The gatehouse-router configuration of the sticky splits: per split, the
/// members' shares as nested hash buckets (the first rule whose bucket takes
/// the key wins), the last member for every other request with the key.
fn router_config(ctx: &Ctx<'_>) -> Option<String> {
    let mut rules = Vec::new();
    for g in groups(ctx.resources) {
        let Some(sticky) = g.sticky() else { continue };
        let key = match (&sticky.header, &sticky.cookie) {
            (Some(h), _) => json!({ "header": h }),
            (None, Some(c)) => json!({ "cookie": c }),
            (None, None) => continue,
        };
        let salt = sticky
            .salt
            .clone()
            .unwrap_or_else(|| g.members[0].name.clone());
        let mut cumulative = 0;
        let shares = weights(&g.members);
        for (i, (m, w)) in g.members.iter().zip(&shares).enumerate() {
            cumulative += w;
            let mut rule = json!({ "match": { "prefix": g.prefix }, "route": cluster_name(m) });
            if i + 1 < g.members.len() {
                let mut bucket = key.clone();
                bucket["percent"] = json!(cumulative);
                bucket["salt"] = json!(salt);
                rule["bucket"] = bucket;
            } else {
                // What no earlier bucket took, when the key is there.
                let present = match (&sticky.header, &sticky.cookie) {
                    (Some(h), _) => json!({ "headers": [{ "name": h, "present": true }] }),
                    (None, Some(c)) => json!({ "cookies": [{ "name": c, "present": true }] }),
                    (None, None) => continue,
                };
                for (k, v) in present.as_object().into_iter().flatten() {
                    rule["match"][k] = v.clone();
                }
            }
            rules.push(rule);
        }
    }
    if rules.is_empty() {
        return None;
    }
    Some(json!({ "route_header": ROUTE_HEADER, "rules": rules }).to_string())
}

/// Headers only the stack writes, removed from every request before
/// anything reads it: the `x-gatehouse-` prefix and every header a JWT
/// Filter injects.
fn early_header_mutation(ctx: &Ctx<'_>) -> Value {
    let mut mutations =
        vec![json!({ "remove_on_match": { "key_matcher": { "prefix": "x-gatehouse-" } } })];
    let injected: BTreeSet<&str> = ctx
        .jwt_filters()
        .flat_map(|(_, j)| j.inject.iter().map(|(h, _)| h.as_str()))
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

/// One listener to render.
struct ListenerSpec {
    name: String,
    port: u16,
    tls: bool,
    hops: u32,
}

fn listener_specs(resources: &Resources, options: &RenderOptions) -> Vec<ListenerSpec> {
    if resources.listeners.is_empty() {
        let mut out = vec![ListenerSpec {
            name: "ingress".into(),
            port: options.listen_port,
            tls: false,
            hops: options.xff_num_trusted_hops,
        }];
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
            }
        })
        .collect()
}

/// The HTTP connection manager, its routes inline or (`rds`) from a file source.
fn hcm(ctx: &Ctx<'_>, spec: &ListenerSpec, routes: Value) -> Value {
    let mut hcm = json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": spec.name,
        "access_log": access_log(),
        // Every request gets an x-request-id (kept when it comes with one);
        // traceparent passes through untouched.
        "generate_request_id": true,
        "xff_num_trusted_hops": spec.hops,
        "use_remote_address": true,
        "early_header_mutation_extensions": early_header_mutation(ctx),
        "http_filters": http_filters(ctx),
    });
    crate::sanitize::harden(&mut hcm);
    match routes {
        Value::String(rds_dir) => {
            hcm["rds"] = json!({
                "route_config_name": "gatehouse",
                "config_source": file_source(&rds_dir, "rds.yaml"),
            });
        }
        config => hcm["route_config"] = config,
    }
    hcm
}

fn listener(ctx: &Ctx<'_>, spec: &ListenerSpec, routes: Value) -> Result<Value, RenderError> {
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
        chains.push(json!({
            "filter_chain_match": { "server_names": [h.hostname] },
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

/// The session cookie of the OAuth2 Filter `filter`: a cookie name holds
/// only letters, digits and `_`.
fn session_cookie_name(filter: &str) -> String {
    format!(
        "gatehouse_{}",
        filter.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
    )
}

/// The gatehouse-authz configuration of the OAuth2 and APIKey Filters.
fn authz_config(ctx: &Ctx<'_>) -> Option<String> {
    let secrets = &ctx.options.secrets_dir;
    let mut filters = serde_json::Map::new();
    for f in &ctx.resources.filters {
        let v = match &f.kind {
            FilterKind::Jwt(_) => continue,
            FilterKind::OAuth2(o) => {
                let mut oidc = json!({
                    "issuer": o.authorization_url,
                    "client_id": o.client_id,
                    "client_secret_file": format!("{secrets}/{}/oauth2-client-secret", o.secret_name),
                    "callback_url": format!("{}{OIDC_PATH_PREFIX}{}/callback", o.origin, f.name),
                    "logout_path": format!("{OIDC_PATH_PREFIX}{}/logout", f.name),
                    "session_keys_file": format!("{secrets}/gatehouse-session-keys/keys"),
                    "cookie_name": session_cookie_name(&f.name),
                    "scopes": o.scopes,
                    // Browsers drop Secure cookies over plain http.
                    "cookie_secure": o.origin.starts_with("https://"),
                });
                if !o.extra_params.is_empty() {
                    oidc["extra_auth_params"] = json!(o.extra_params);
                }
                json!({ "oidc": oidc })
            }
            FilterKind::ApiKey(a) => json!({ "api_keys": {
                "from": [{ "header": a.header }],
                // A projected volume puts each client's Secret (key `key`)
                // at <dir>/<secret name>: one file per client.
                "keys_dir": format!("{secrets}/apikeys-{}", f.name),
            }}),
        };
        filters.insert(f.name.clone(), v);
    }
    if filters.is_empty() {
        return None;
    }
    let mut text = String::from(
        "# Rendered by `gatehouse render` for gatehouse-authz: edit the Filter resources, not this file.\n",
    );
    text.push_str(&serde_yaml_ng::to_string(&json!({ "filters": filters })).unwrap_or_default());
    Some(text)
}

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

/// Renders `resources`: the Envoy bootstrap (everything static) and the
/// services' configurations.
///
/// # Errors
/// [`RenderError`] when resources that parsed alone do not fit together.
pub fn render(resources: &Resources, options: &RenderOptions) -> Result<Rendered, RenderError> {
    let ctx = Ctx::new(resources, options)?;
    let mut listeners = Vec::new();
    for spec in listener_specs(resources, options) {
        listeners.push(listener(&ctx, &spec, route_config(&ctx, spec.tls)?)?);
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
/// As [`render`].
pub fn render_live(
    resources: &Resources,
    options: &RenderOptions,
    dir: &str,
) -> Result<LiveFiles, RenderError> {
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
    let spec = ListenerSpec {
        name: "ingress".into(),
        port: options.listen_port,
        tls: false,
        hops: options.xff_num_trusted_hops,
    };
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
        listener(&ctx, &spec, Value::String(dir.to_owned()))?,
    )] });
    let rds = json!({ "resources": [typed(
        "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
        route_config(&ctx, false)?,
    )] });
    Ok(LiveFiles {
        bootstrap: header_and(&bootstrap),
        cds: header_and(&cds),
        lds: header_and(&lds),
        rds: header_and(&rds),
    })
}

/// The route table in precedence order, one line per route: what matches,
/// where it goes, which filters run and why (`gatehouse routes`).
///
/// # Errors
/// As [`render`].
pub fn route_table(resources: &Resources) -> Result<String, RenderError> {
    let options = RenderOptions::default();
    let ctx = Ctx::new(resources, &options)?;
    let mut out = String::new();
    let mut vhosts: BTreeSet<&str> = resources
        .mappings
        .iter()
        .map(|m| m.hostname.as_str())
        .collect();
    for (_, _, r) in &ctx.rules {
        vhosts.insert(&r.host);
    }
    let specific: Vec<&str> = vhosts.iter().copied().filter(|h| *h != "*").collect();
    for vhost in specific.into_iter().chain(std::iter::once("*")) {
        for g in groups(resources)
            .iter()
            .filter(|g| g.hostname == vhost || g.hostname == "*")
        {
            for v in variants(&ctx, g, vhost)? {
                let mut matches: Vec<String> = g
                    .method
                    .map(|m| format!(":method={m}"))
                    .into_iter()
                    .chain(g.headers.iter().map(|(k, v)| format!("{k}={v}")))
                    .chain(g.regex_headers.iter().map(|(k, v)| format!("{k}~{v}")))
                    .chain(g.query.iter().map(|(k, v)| format!("?{k}={v}")))
                    .chain(g.regex_query.iter().map(|(k, v)| format!("?{k}~{v}")))
                    .collect();
                if let Some(h) = &v.header {
                    let not = if h.negate { "!" } else { "" };
                    matches.push(match (&h.value, &h.value_regex) {
                        (Some(val), _) => format!("{not}{}={val}", h.name),
                        (None, Some(re)) => format!("{not}{}~{re}", h.name),
                        (None, None) => format!("{not}{} present", h.name),
                    });
                }
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
                if let Some(st) = g.sticky() {
                    matches.push(match (&st.header, &st.cookie) {
                        (Some(h), _) => format!("sticky by header {h}"),
                        (_, c) => format!("sticky by cookie {}", c.as_deref().unwrap_or_default()),
                    });
                }
                let path = match &v.path {
                    Some(PathMatch::Prefix(p)) => p.clone(),
                    Some(PathMatch::Segments(p)) => format!("{p} (and {p}/...)"),
                    Some(PathMatch::Exact(p)) => format!("={p}"),
                    _ if g.members[0].exact_path => format!("={}", g.prefix),
                    _ => g.prefix.to_owned(),
                };
                let filters = if v.filters.is_empty() {
                    String::new()
                } else {
                    format!(
                        " filters {} ({})",
                        v.filters.join(" -> "),
                        v.because.as_deref().unwrap_or_default()
                    )
                };
                out.push_str(&format!(
                    "{vhost} {path}{headers} -> {targets}{filters}  [precedence {p}, prefix length {len}]\n",
                    headers = if matches.is_empty() {
                        String::new()
                    } else {
                        format!(" [{}]", matches.join(", "))
                    },
                    targets = targets.join(", "),
                    p = g.precedence,
                    len = g.prefix.len(),
                ));
            }
        }
    }
    Ok(out)
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
        let table = route_table(&resources(TWO)).unwrap();
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
            render_bootstrap(&resources(TWO), &options).unwrap(),
            render_bootstrap(&resources(&reversed), &options).unwrap()
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
            exact_path: false,
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
            regex_headers: BTreeMap::new(),
            regex_query_parameters: BTreeMap::new(),
            regex_rewrite: None,
            tls: false,
            grpc: false,
            circuit_breaker: None,
            labels: BTreeMap::new(),
            sticky: None,
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
