//! Rate limits: `Mapping` labels (what a request is counted as) and
//! `RateLimit` documents (how much of it is allowed).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};

use gatehouse_template_core::{Scope, Template};

use crate::doc::{ErrFn, RawDoc, ResourceError, readable_header};

/// One label specifier: an Envoy rate-limit action.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Label {
    /// A fixed label (`generic_key`).
    Generic {
        /// Descriptor key (default `generic_key`).
        key: String,
        /// Descriptor value.
        value: String,
    },
    /// The client address (`remote_address`).
    RemoteAddress,
    /// A request header's value; without the header the whole group is
    /// not sent (Ambassador's meaning, whatever `omit_if_not_present` says).
    RequestHeader {
        /// Descriptor key.
        key: String,
        /// Header to read.
        header: String,
    },
    /// The cluster the request came in on (`source_cluster`).
    SourceCluster,
    /// The upstream cluster (`destination_cluster`).
    DestinationCluster,
}

impl Label {
    /// The Envoy `rate_limits[].actions[]` entry.
    #[must_use]
    pub fn action(&self) -> Value {
        match self {
            Self::Generic { key, value } => {
                if key == "generic_key" {
                    json!({ "generic_key": { "descriptor_value": value } })
                } else {
                    json!({ "generic_key": { "descriptor_key": key, "descriptor_value": value } })
                }
            }
            Self::RemoteAddress => json!({ "remote_address": {} }),
            Self::RequestHeader { key, header } => json!({ "request_headers": {
                "header_name": header,
                "descriptor_key": key,
            }}),
            Self::SourceCluster => json!({ "source_cluster": {} }),
            Self::DestinationCluster => json!({ "destination_cluster": {} }),
        }
    }

    /// The descriptor key Envoy sends this label under.
    #[must_use]
    pub fn key(&self) -> &str {
        match self {
            Self::Generic { key, .. } | Self::RequestHeader { key, .. } => key,
            Self::RemoteAddress => "remote_address",
            Self::SourceCluster => "source_cluster",
            Self::DestinationCluster => "destination_cluster",
        }
    }
}

/// The domain Ambassador's rate-limit service answers for unless the
/// `RateLimitService` names another: Mapping labels of other domains are
/// never sent, as in Ambassador.
pub const DEFAULT_DOMAIN: &str = "ambassador";

/// What Envoy sends for a label group, given the limits of its domain: the
/// group as it is, or cut to the length of the patterns that match its
/// start (Ambassador matches a pattern against the start of a group, where
/// the reference service needs the whole descriptor).
///
/// # Errors
/// Patterns of different lengths that could both match the group: Ambassador
/// applies only the longest that matches a request, which a descriptor sent
/// ahead of the request cannot express.
pub fn descriptor<'a>(group: &'a [Label], limits: &[&Limit]) -> Result<&'a [Label], String> {
    let mut lengths: Vec<usize> = limits
        .iter()
        .filter(|l| {
            l.pattern.len() <= group.len()
                && l.pattern
                    .iter()
                    .zip(group)
                    .all(|((k, _), label)| k == label.key())
        })
        .map(|l| l.pattern.len())
        .collect();
    lengths.sort_unstable();
    lengths.dedup();
    match lengths.as_slice() {
        [] => Ok(group),
        [n] => Ok(&group[..*n]),
        _ => Err(format!(
            "RateLimit patterns of {} labels all match the start of this label group; Ambassador applies the longest that matches each request, which Gatehouse cannot: give the patterns one length or split the group",
            lengths
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// A Mapping's labels: per domain, the label groups (each one descriptor).
pub type Labels = BTreeMap<String, Vec<Vec<Label>>>;

fn str_field(v: &serde_yaml_ng::Value, name: &str) -> Option<String> {
    v.get(name).and_then(|x| x.as_str()).map(str::to_owned)
}

fn label(spec: &serde_yaml_ng::Value, path: &str, err: ErrFn<'_>) -> Result<Label, ResourceError> {
    // A bare string is a fixed label, as Ambassador reads it.
    if let Some(s) = spec.as_str() {
        return Ok(Label::Generic {
            key: "generic_key".into(),
            value: s.to_owned(),
        });
    }
    let Some((kind, body)) = spec
        .as_mapping()
        .filter(|m| m.len() == 1)
        .and_then(|m| m.iter().next())
    else {
        return Err(err(path, "a label specifier is one of generic_key, remote_address, request_headers, source_cluster, destination_cluster".into()));
    };
    let kind = kind.as_str().unwrap_or_default();
    let known: &[&str] = match kind {
        "generic_key" => &["value", "key"],
        "remote_address" | "source_cluster" | "destination_cluster" => &["key"],
        // `omit_if_not_present` changes nothing in Ambassador (a missing
        // header always drops the group): accepted as the same no-op.
        "request_headers" => &["key", "header_name", "omit_if_not_present"],
        other => {
            return Err(err(
                path,
                format!(
                    "{other:?} is not a label specifier: use generic_key, remote_address, request_headers, source_cluster or destination_cluster"
                ),
            ));
        }
    };
    if let Some(m) = body.as_mapping() {
        for k in m.keys() {
            let k = k.as_str().unwrap_or_default();
            if !known.contains(&k) {
                return Err(err(
                    &format!("{path}.{kind}.{k}"),
                    format!("unknown field; {kind} takes {}", known.join(", ")),
                ));
            }
        }
    }
    let fixed_key = |want: &str| -> Result<(), ResourceError> {
        match str_field(body, "key") {
            Some(k) if k != want => Err(err(
                &format!("{path}.{kind}.key"),
                format!("Envoy names this label {want:?}; other keys are not supported"),
            )),
            _ => Ok(()),
        }
    };
    Ok(match kind {
        "generic_key" => Label::Generic {
            key: str_field(body, "key").unwrap_or_else(|| "generic_key".into()),
            value: str_field(body, "value")
                .ok_or_else(|| err(&format!("{path}.generic_key.value"), "required".into()))?,
        },
        "remote_address" => {
            fixed_key("remote_address")?;
            Label::RemoteAddress
        }
        "source_cluster" => {
            fixed_key("source_cluster")?;
            Label::SourceCluster
        }
        "destination_cluster" => {
            fixed_key("destination_cluster")?;
            Label::DestinationCluster
        }
        _ => {
            let header = str_field(body, "header_name").ok_or_else(|| {
                err(
                    &format!("{path}.request_headers.header_name"),
                    "required".into(),
                )
            })?;
            readable_header(&header, &format!("{path}.request_headers.header_name"), err)?;
            if body
                .get("omit_if_not_present")
                .is_some_and(|v| v.as_bool().is_none())
            {
                return Err(err(
                    &format!("{path}.request_headers.omit_if_not_present"),
                    "true or false".into(),
                ));
            }
            Label::RequestHeader {
                key: str_field(body, "key").unwrap_or_else(|| header.clone()),
                header,
            }
        }
    })
}

/// Reads a Mapping's `labels`: `{domain: [{group name: [specifier, ...]}]}`.
pub(crate) fn labels(raw: &serde_yaml_ng::Value, err: ErrFn<'_>) -> Result<Labels, ResourceError> {
    let mut out = Labels::new();
    let domains = raw.as_mapping().ok_or_else(|| {
        err(
            "spec.labels",
            "labels are {domain: [{group: [label, ...]}]}".into(),
        )
    })?;
    for (domain, groups) in domains {
        let domain = domain.as_str().unwrap_or_default().to_owned();
        let at = format!("spec.labels.{domain}");
        let groups = groups
            .as_sequence()
            .ok_or_else(|| err(&at, "a list of label groups".into()))?;
        let mut parsed = Vec::new();
        for (i, group) in groups.iter().enumerate() {
            let gat = format!("{at}[{i}]");
            let (_, specs) = group
                .as_mapping()
                .filter(|m| m.len() == 1)
                .and_then(|m| m.iter().next())
                .ok_or_else(|| err(&gat, "a group is {name: [label, ...]}".into()))?;
            let specs = specs
                .as_sequence()
                .ok_or_else(|| err(&gat, "a group is {name: [label, ...]}".into()))?;
            let mut group = Vec::new();
            for (j, s) in specs.iter().enumerate() {
                group.push(label(s, &format!("{gat}[{j}]"), err)?);
            }
            parsed.push(group);
        }
        out.insert(domain, parsed);
    }
    Ok(out)
}

/// One limit of a `RateLimit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    /// Descriptor entries in order: (key, value; `*` for every value apart,
    /// also written `""`).
    pub pattern: Vec<(String, String)>,
    /// Requests per unit.
    pub rate: u32,
    /// `second`, `minute`, `hour` or `day`.
    pub unit: String,
    /// `LogOnly`: counted and reported, never refused.
    pub log_only: bool,
    /// `name`: names the limit in gatehouse-ratelimit's stats and dump.
    pub name: Option<String>,
    /// `injectRequestHeaders`: (lowercase name, template), added to the
    /// upstream request when the limit matched and the request goes on.
    pub inject_request: Vec<(String, String)>,
    /// `injectResponseHeaders`: added to the response when it matched.
    pub inject_response: Vec<(String, String)>,
    /// `errorResponse`: the 429's headers and body when this limit is over.
    pub error_headers: Vec<(String, String)>,
    /// `errorResponse.bodyTemplate`.
    pub error_body: Option<String>,
}

/// A `RateLimit` document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimit {
    /// `metadata.name`.
    pub name: String,
    /// The domain its limits live in.
    pub domain: String,
    /// The limits.
    pub limits: Vec<Limit>,
    /// How Envoy enforces them (`spec.enforcement`, Gatehouse's own field).
    pub enforcement: Enforcement,
}

/// How Envoy enforces a RateLimit's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Enforcement {
    /// `exact` (default): a `ShouldRateLimit` call per request, counted
    /// exactly by gatehouse-ratelimit.
    #[default]
    Exact,
    /// `quota`: Envoy's `rate_limit_quota` filter enforces an assignment
    /// from gatehouse-ratelimit (RLQS) locally; no call per request.
    Quota,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRateLimitSpec {
    domain: String,
    limits: Vec<RawLimit>,
    #[serde(default)]
    enforcement: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimit {
    #[serde(default)]
    name: Option<String>,
    pattern: Vec<BTreeMap<String, String>>,
    rate: u32,
    unit: String,
    #[serde(default)]
    action: Option<String>,
    #[serde(default, rename = "injectRequestHeaders")]
    inject_request_headers: Vec<RawHeaderTemplate>,
    #[serde(default, rename = "injectResponseHeaders")]
    inject_response_headers: Vec<RawHeaderTemplate>,
    #[serde(default, rename = "errorResponse")]
    error_response: Option<RawLimitError>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeaderTemplate {
    name: String,
    value: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimitError {
    #[serde(default)]
    headers: Vec<RawHeaderTemplate>,
    #[serde(default, rename = "bodyTemplate")]
    body_template: Option<String>,
    #[serde(default, rename = "contentType")]
    content_type: Option<String>,
}

/// Header templates as gatehouse-ratelimit will load them: names checked,
/// values parsed by its own template parser.
fn header_templates(
    raws: Vec<RawHeaderTemplate>,
    at: &str,
    scope: Scope,
    err: ErrFn<'_>,
) -> Result<Vec<(String, String)>, ResourceError> {
    raws.into_iter()
        .enumerate()
        .map(|(i, h)| {
            readable_header(&h.name, &format!("{at}[{i}].name"), err)?;
            let name = h.name.to_ascii_lowercase();
            if name.is_empty() || !gatehouse_http_core::header::is_config_name(&name) {
                return Err(err(
                    &format!("{at}[{i}].name"),
                    format!("{:?} is not a header name", h.name),
                ));
            }
            Template::parse(&h.value, scope)
                .map_err(|m| err(&format!("{at}[{i}].value"), format!("{:?}: {m}", h.value)))?;
            Ok((name, h.value))
        })
        .collect()
}

pub(crate) fn rate_limit(
    raw: RawDoc<RawRateLimitSpec>,
    err: ErrFn<'_>,
) -> Result<RateLimit, ResourceError> {
    let enforcement = match raw.spec.enforcement.as_deref() {
        None | Some("exact") => Enforcement::Exact,
        Some("quota") => Enforcement::Quota,
        Some(other) => {
            return Err(err(
                "spec.enforcement",
                format!(
                    "{other:?}: use exact (a call to gatehouse-ratelimit per request, the default) or quota (Envoy enforces gatehouse-ratelimit's assignment itself)"
                ),
            ));
        }
    };
    let mut limits = Vec::new();
    for (i, l) in raw.spec.limits.into_iter().enumerate() {
        let at = |f: &str| format!("spec.limits[{i}].{f}");
        let mut pattern = Vec::new();
        for (j, entry) in l.pattern.into_iter().enumerate() {
            if entry.len() != 1 {
                return Err(err(
                    &format!("spec.limits[{i}].pattern[{j}]"),
                    "write one key: value per pattern entry, in the order of the Mapping's label group"
                        .into(),
                ));
            }
            // `""` and `*` both match the key alone, each value counted
            // apart, as Ambassador reads them.
            pattern.extend(entry.into_iter().map(|(k, v)| {
                let v = if v.is_empty() { "*".to_owned() } else { v };
                (k, v)
            }));
        }
        if pattern.is_empty() {
            return Err(err(&at("pattern"), "name at least one label".into()));
        }
        let unit = l.unit.to_ascii_lowercase();
        if !["second", "minute", "hour", "day"].contains(&unit.as_str()) {
            return Err(err(
                &at("unit"),
                format!("{:?}: use second, minute, hour or day", l.unit),
            ));
        }
        let log_only = match l.action.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("enforce") => false,
            Some("logonly") => true,
            Some(_) => {
                return Err(err(&at("action"), "Enforce or LogOnly".into()));
            }
        };
        let inject_request = header_templates(
            l.inject_request_headers,
            &at("injectRequestHeaders"),
            Scope::RateLimit,
            err,
        )?;
        let inject_response = header_templates(
            l.inject_response_headers,
            &at("injectResponseHeaders"),
            Scope::RateLimit,
            err,
        )?;
        let (error_headers, error_body) = match l.error_response {
            None => (Vec::new(), None),
            Some(e) => {
                let mut headers = header_templates(
                    e.headers,
                    &at("errorResponse.headers"),
                    Scope::RateLimitError,
                    err,
                )?;
                if let Some(t) = e.content_type {
                    if headers.iter().any(|(n, _)| n == "content-type") {
                        return Err(err(
                            &at("errorResponse.contentType"),
                            "a content-type entry of headers says it already: keep one".into(),
                        ));
                    }
                    headers.push(("content-type".into(), t));
                }
                if let Some(b) = &e.body_template {
                    Template::parse(b, Scope::RateLimitError).map_err(|m| {
                        err(&at("errorResponse.bodyTemplate"), format!("{b:?}: {m}"))
                    })?;
                }
                (headers, e.body_template)
            }
        };
        if enforcement == Enforcement::Quota {
            // Envoy answers a quota denial itself: nothing the service
            // would add can reach the request or the response.
            for (field, set) in [
                ("injectRequestHeaders", !inject_request.is_empty()),
                ("injectResponseHeaders", !inject_response.is_empty()),
                (
                    "errorResponse",
                    !error_headers.is_empty() || error_body.is_some(),
                ),
            ] {
                if set {
                    return Err(err(
                        &at(field),
                        "with enforcement: quota Envoy decides alone and adds nothing from gatehouse-ratelimit: drop the field or use enforcement: exact".into(),
                    ));
                }
            }
        }
        if log_only && (!error_headers.is_empty() || error_body.is_some()) {
            return Err(err(
                &at("errorResponse"),
                "a LogOnly limit never refuses, so it has no error response: drop one of them"
                    .into(),
            ));
        }
        limits.push(Limit {
            pattern,
            rate: l.rate,
            unit,
            log_only,
            name: l.name,
            inject_request,
            inject_response,
            error_headers,
            error_body,
        });
    }
    Ok(RateLimit {
        name: raw.metadata.name,
        domain: raw.spec.domain,
        limits,
        enforcement,
    })
}

/// A `RateLimitService` document: where Envoy finds gatehouse-ratelimit and
/// what it does when no answer comes (Ambassador's resource of that name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitService {
    /// `metadata.name`.
    pub name: String,
    /// `service`: the gRPC address, `host:port`; it replaces the render
    /// option `--ratelimit`.
    pub address: String,
    /// `failure_mode_deny` (default false, as in Ambassador): when the service
    /// errs or does not answer in time, refuse the request with 500 instead
    /// of letting it through. No client-sent value can make the service err
    /// (over-long values are counted, not refused), so this only decides
    /// what an outage does.
    pub failure_mode_deny: bool,
    /// `timeout_ms` (default 1000): how long Envoy waits for an answer.
    pub timeout_ms: u64,
    /// `domain` (default `ambassador`): the one domain Envoy asks about;
    /// Mapping labels of other domains are not sent.
    pub domain: String,
}

impl RateLimitService {
    /// The service as rendered when no `RateLimitService` document exists:
    /// at `address`, failing open after one second.
    #[must_use]
    pub fn default_at(address: &str) -> Self {
        Self {
            name: String::new(),
            address: address.to_owned(),
            failure_mode_deny: false,
            timeout_ms: DEFAULT_RATELIMIT_TIMEOUT_MS,
            domain: DEFAULT_DOMAIN.to_owned(),
        }
    }
}

/// Envoy's wait for gatehouse-ratelimit unless a `RateLimitService` says.
pub const DEFAULT_RATELIMIT_TIMEOUT_MS: u64 = 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRateLimitServiceSpec {
    service: String,
    #[serde(default)]
    failure_mode_deny: Option<bool>,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    protocol_version: Option<String>,
    #[serde(default)]
    domain: Option<String>,
}

pub(crate) fn rate_limit_service(
    raw: RawDoc<RawRateLimitServiceSpec>,
    err: ErrFn<'_>,
) -> Result<RateLimitService, ResourceError> {
    let spec = raw.spec;
    let port = spec
        .service
        .rsplit_once(':')
        .and_then(|(host, port)| (!host.is_empty()).then_some(port))
        .and_then(|p| p.parse::<u16>().ok())
        .filter(|p| *p != 0);
    if port.is_none() || spec.service.contains("://") {
        return Err(err(
            "spec.service",
            format!(
                "{:?}: write host:port of gatehouse-ratelimit's gRPC port (e.g. ratelimit:8081)",
                spec.service
            ),
        ));
    }
    if spec.protocol_version.as_deref().is_some_and(|v| v != "v3") {
        return Err(err(
            "spec.protocol_version",
            "only v3 is supported (Envoy dropped v2)".into(),
        ));
    }
    if spec.domain.as_deref().is_some_and(str::is_empty) {
        return Err(err(
            "spec.domain",
            "name the domain Envoy asks about (default ambassador)".into(),
        ));
    }
    let timeout_ms = spec.timeout_ms.unwrap_or(DEFAULT_RATELIMIT_TIMEOUT_MS);
    if timeout_ms == 0 {
        return Err(err(
            "spec.timeout_ms",
            "0 would fail every call: give milliseconds, e.g. 1000".into(),
        ));
    }
    Ok(RateLimitService {
        name: raw.metadata.name,
        address: spec.service,
        failure_mode_deny: spec.failure_mode_deny.unwrap_or(false),
        timeout_ms,
        domain: spec.domain.unwrap_or_else(|| DEFAULT_DOMAIN.to_owned()),
    })
}

/// The gatehouse-ratelimit (envoyproxy/ratelimit format) configuration of
/// every domain, by file name: the limits as a descriptor tree.
///
/// # Errors
/// Two limits on the same pattern, named by their `RateLimit`s.
pub fn service_configs(limits: &[RateLimit]) -> Result<BTreeMap<String, String>, String> {
    #[derive(Default)]
    struct Node {
        limit: Option<(Limit, String)>,
        children: BTreeMap<(String, String), Node>,
    }
    fn to_value(key: &(String, String), node: &Node) -> Value {
        let mut v = json!({ "key": key.0 });
        if key.1 != "*" {
            v["value"] = json!(key.1);
        }
        if let Some((l, _)) = &node.limit {
            v["rate_limit"] = json!({ "unit": l.unit, "requests_per_unit": l.rate });
            if let Some(name) = &l.name {
                v["rate_limit"]["name"] = json!(name);
            }
            if l.log_only {
                v["shadow_mode"] = json!(true);
            }
            let headers = |list: &[(String, String)]| {
                list.iter()
                    .map(|(n, t)| json!({ "name": n, "value": t }))
                    .collect::<Vec<_>>()
            };
            if !l.inject_request.is_empty() {
                v["rate_limit"]["request_headers"] = json!(headers(&l.inject_request));
            }
            if !l.inject_response.is_empty() {
                v["rate_limit"]["response_headers"] = json!(headers(&l.inject_response));
            }
            if !l.error_headers.is_empty() || l.error_body.is_some() {
                let mut over = json!({ "headers": headers(&l.error_headers) });
                if let Some(b) = &l.error_body {
                    over["body"] = json!(b);
                }
                v["rate_limit"]["over_limit"] = over;
            }
        }
        if !node.children.is_empty() {
            v["descriptors"] =
                Value::Array(node.children.iter().map(|(k, n)| to_value(k, n)).collect());
        }
        v
    }
    let mut domains: BTreeMap<&str, Node> = BTreeMap::new();
    for rl in limits {
        for l in &rl.limits {
            let mut node = domains.entry(&rl.domain).or_default();
            for entry in &l.pattern {
                node = node.children.entry(entry.clone()).or_default();
            }
            if let Some((_, other)) = &node.limit {
                return Err(format!(
                    "RateLimit {} and RateLimit {other} both limit {:?} in domain {}: keep one",
                    rl.name, l.pattern, rl.domain
                ));
            }
            node.limit = Some((l.clone(), rl.name.clone()));
        }
    }
    let mut out = BTreeMap::new();
    for (domain, root) in domains {
        let config = json!({
            "domain": domain,
            "descriptors": root.children.iter().map(|(k, n)| to_value(k, n)).collect::<Vec<_>>(),
        });
        let mut text = String::from(
            "# Rendered by `gatehouse render`: edit the RateLimit resources, not this file.\n",
        );
        text.push_str(&serde_yaml_ng::to_string(&config).unwrap_or_default());
        out.insert(format!("{domain}.yaml"), text);
    }
    Ok(out)
}
