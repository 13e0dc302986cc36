//! Reading resources: multi-document YAML, `gatehouse.dev/v1alpha1` or
//! `getambassador.io/v3alpha1`, validated into domain types.

use std::collections::BTreeMap;

use serde::Deserialize;

/// Why resources were refused: the file, the document (its index and name)
/// and the field path, and what to do instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {document}: {path}: {message}")]
pub struct ResourceError {
    /// The file, as the caller named it.
    pub file: String,
    /// `document <index> (<kind> <name>)`, index from 0, `?` where unknown.
    pub document: String,
    /// Field path in the document.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// A document: its kind's spec under the common head.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDoc<S> {
    #[serde(rename = "apiVersion")]
    _api_version: String,
    #[serde(rename = "kind")]
    _kind: String,
    pub(crate) metadata: RawMetadata,
    pub(crate) spec: S,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMetadata {
    pub(crate) name: String,
    #[serde(default)]
    #[allow(dead_code)]
    namespace: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    #[allow(dead_code)]
    annotations: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
struct Head {
    #[serde(rename = "apiVersion", default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    metadata: Option<Metadata>,
}

#[derive(Debug, Deserialize)]
struct Metadata {
    #[serde(default)]
    name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMappingSpec {
    #[serde(default)]
    hostname: Option<String>,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    path: Option<String>,
    service: String,
    #[serde(default)]
    rewrite: Option<String>,
    #[serde(default)]
    weight: Option<u32>,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    headers: BTreeMap<String, TextOrPresent>,
    #[serde(default)]
    precedence: Option<i32>,
    #[serde(default)]
    add_request_headers: BTreeMap<String, String>,
    #[serde(default)]
    remove_request_headers: Vec<String>,
    #[serde(default)]
    prefix_regex: bool,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    query_parameters: BTreeMap<String, TextOrPresent>,
    #[serde(default)]
    host_rewrite: Option<String>,
    #[serde(default)]
    idle_timeout_ms: Option<u64>,
    #[serde(default)]
    retry_policy: Option<RawRetry>,
    #[serde(default)]
    cors: Option<RawCors>,
    #[serde(default)]
    add_response_headers: BTreeMap<String, String>,
    #[serde(default)]
    remove_response_headers: Vec<String>,
    #[serde(default)]
    allow_upgrade: Vec<String>,
    #[serde(default)]
    regex_headers: BTreeMap<String, String>,
    #[serde(default)]
    regex_query_parameters: BTreeMap<String, String>,
    #[serde(default)]
    regex_rewrite: Option<RawRegexRewrite>,
    #[serde(default)]
    grpc: bool,
    #[serde(default)]
    circuit_breakers: Vec<RawCircuitBreaker>,
    #[serde(default)]
    labels: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    sticky: Option<RawSticky>,
    #[serde(default, rename = "ambassador_id")]
    _ambassador_id: Option<serde_yaml_ng::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSticky {
    #[serde(default)]
    header: Option<String>,
    #[serde(default)]
    cookie: Option<String>,
    #[serde(default)]
    salt: Option<String>,
}

/// What keeps a user on one side of a weighted split (Gatehouse's `sticky`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sticky {
    /// The request header whose value is hashed (e.g. a verified claim).
    pub header: Option<String>,
    /// Or the cookie.
    pub cookie: Option<String>,
    /// Changing it reshuffles everyone.
    pub salt: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegexRewrite {
    pattern: String,
    substitution: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCircuitBreaker {
    #[serde(default)]
    priority: Option<String>,
    #[serde(default)]
    max_connections: Option<u32>,
    #[serde(default)]
    max_pending_requests: Option<u32>,
    #[serde(default)]
    max_requests: Option<u32>,
    #[serde(default)]
    max_retries: Option<u32>,
}

/// Limits on one upstream's connections and requests (Envoy's circuit
/// breakers, default priority).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CircuitBreaker {
    /// Most connections.
    pub max_connections: Option<u32>,
    /// Most requests waiting for a connection.
    pub max_pending_requests: Option<u32>,
    /// Most requests in flight.
    pub max_requests: Option<u32>,
    /// Most retries in flight.
    pub max_retries: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetry {
    #[serde(default)]
    retry_on: Option<String>,
    #[serde(default)]
    num_retries: Option<u32>,
    #[serde(default)]
    per_try_timeout: Option<String>,
}

/// A header or query match: an exact value, or `true` for "present".
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum TextOrPresent {
    Text(String),
    Present(bool),
}

/// Splits matches into exact ones and `true` (present: any value, which
/// Envoy matches as the regular expression `.*`).
fn split_matches(
    raw: BTreeMap<String, TextOrPresent>,
    field: &str,
    regex: &mut BTreeMap<String, String>,
    err: &dyn Fn(&str, String) -> ResourceError,
) -> Result<BTreeMap<String, String>, ResourceError> {
    let mut exact = BTreeMap::new();
    for (name, m) in raw {
        match m {
            TextOrPresent::Text(v) => {
                exact.insert(name, v);
            }
            TextOrPresent::Present(true) => {
                regex.insert(name, ".*".into());
            }
            TextOrPresent::Present(false) => {
                return Err(err(
                    &format!("spec.{field}.{name}"),
                    "true (present) or a value; absence is not supported yet".into(),
                ));
            }
        }
    }
    Ok(exact)
}

/// Refuses a request header name that no route or filter could ever read:
/// every rendered listener drops headers with `_` in their names
/// (`docs/security.md`), so a match on one would silently never hold.
pub(crate) fn readable_header(
    name: &str,
    path: &str,
    err: &dyn Fn(&str, String) -> ResourceError,
) -> Result<(), ResourceError> {
    if name.contains('_') {
        return Err(err(
            path,
            format!(
                "{name:?}: Envoy drops request headers with underscores before routing; use {:?}",
                name.replace('_', "-")
            ),
        ));
    }
    Ok(())
}

/// Ambassador accepts a list or one comma-separated string.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ListOrString {
    List(Vec<String>),
    One(String),
}

impl ListOrString {
    fn items(self) -> Vec<String> {
        match self {
            Self::List(l) => l,
            Self::One(s) => s
                .split(',')
                .map(|p| p.trim().to_owned())
                .filter(|p| !p.is_empty())
                .collect(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCors {
    origins: ListOrString,
    #[serde(default)]
    methods: Option<ListOrString>,
    #[serde(default)]
    headers: Option<ListOrString>,
    #[serde(default)]
    exposed_headers: Option<ListOrString>,
    #[serde(default)]
    credentials: bool,
    #[serde(default)]
    max_age: Option<String>,
}

/// A route's retry policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Envoy's `retry_on` (e.g. `5xx`, `gateway-error`).
    pub retry_on: String,
    /// How many retries.
    pub num_retries: u32,
    /// Timeout of each try, e.g. `0.5s`.
    pub per_try_timeout: Option<String>,
}

/// A route's CORS policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cors {
    /// Allowed origins, exact (`*` for any).
    pub origins: Vec<String>,
    /// Allowed methods.
    pub methods: Vec<String>,
    /// Allowed request headers.
    pub headers: Vec<String>,
    /// Response headers the browser may read.
    pub exposed_headers: Vec<String>,
    /// Whether credentials are allowed.
    pub credentials: bool,
    /// Preflight cache time, seconds, as text.
    pub max_age: Option<String>,
}

/// A `Mapping`: requests matching host, prefix and headers go to a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// `metadata.name`.
    pub name: String,
    /// Host to match (`*` for any).
    pub hostname: String,
    /// Path prefix (the whole path with `exact_path`).
    pub prefix: String,
    /// `prefix` is an exact path (Gatehouse's `path`).
    pub exact_path: bool,
    /// Upstream host and port.
    pub host: String,
    /// Upstream port.
    pub port: u16,
    /// Path prefix sent upstream instead of `prefix` (Ambassador's default `/`).
    pub rewrite: String,
    /// Share of traffic among Mappings with the same match, if set.
    pub weight: Option<u32>,
    /// Request timeout, milliseconds (Ambassador's default 3000).
    pub timeout_ms: u64,
    /// Exact header matches.
    pub headers: BTreeMap<String, String>,
    /// Higher first, before the length rule.
    pub precedence: i32,
    /// Headers added to the request.
    pub add_request_headers: BTreeMap<String, String>,
    /// Headers removed from the request.
    pub remove_request_headers: Vec<String>,
    /// `prefix` is a regular expression (RE2) over the whole path.
    pub prefix_regex: bool,
    /// Method to match.
    pub method: Option<String>,
    /// Exact query parameter matches.
    pub query_parameters: BTreeMap<String, String>,
    /// `Host` sent upstream.
    pub host_rewrite: Option<String>,
    /// Stream idle timeout, milliseconds.
    pub idle_timeout_ms: Option<u64>,
    /// Retries.
    pub retry_policy: Option<RetryPolicy>,
    /// CORS.
    pub cors: Option<Cors>,
    /// Headers added to the response.
    pub add_response_headers: BTreeMap<String, String>,
    /// Headers removed from the response.
    pub remove_response_headers: Vec<String>,
    /// Upgrades allowed (e.g. `websocket`).
    pub allow_upgrade: Vec<String>,
    /// Header matches by regular expression (RE2, whole value).
    pub regex_headers: BTreeMap<String, String>,
    /// Query parameter matches by regular expression.
    pub regex_query_parameters: BTreeMap<String, String>,
    /// Path rewrite by regular expression: (pattern, substitution); replaces
    /// `rewrite`.
    pub regex_rewrite: Option<(String, String)>,
    /// The upstream speaks TLS (`https://` service).
    pub tls: bool,
    /// The upstream speaks gRPC (HTTP/2).
    pub grpc: bool,
    /// Circuit breakers of the upstream.
    pub circuit_breaker: Option<CircuitBreaker>,
    /// Rate-limit labels by domain.
    pub labels: crate::limits::Labels,
    /// Sticky weights.
    pub sticky: Option<Sticky>,
}

/// Every resource of a configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    /// The Mappings, in file order.
    pub mappings: Vec<Mapping>,
    /// The Listeners (none: one HTTP listener from the render options).
    pub listeners: Vec<Listener>,
    /// The Hosts.
    pub hosts: Vec<Host>,
    /// The Filters.
    pub filters: Vec<crate::policy::Filter>,
    /// The FilterPolicies, in file order.
    pub policies: Vec<crate::policy::FilterPolicy>,
    /// The RateLimits.
    pub rate_limits: Vec<crate::limits::RateLimit>,
    /// The RateLimitService, if a document names one.
    pub rate_limit_service: Option<crate::limits::RateLimitService>,
}

/// What a Host does with cleartext requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insecure {
    /// Redirect to https (the default with TLS).
    Redirect,
    /// Serve them too.
    Route,
    /// Refuse them (404).
    Reject,
}

/// A `Host`: a name the edge serves, with its TLS certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// `metadata.name`.
    pub name: String,
    /// The host name (exact).
    pub hostname: String,
    /// Certificate chain and key files (PEM), if it serves TLS.
    pub tls_files: Option<(String, String)>,
    /// Certificate from a Secret mounted at `<secrets dir>/<name>/tls.crt|tls.key`.
    pub tls_secret: Option<String>,
    /// Cleartext requests.
    pub insecure: Insecure,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHostSpec {
    hostname: String,
    #[serde(default, rename = "tlsSecret")]
    tls_secret: Option<RawSecretRef>,
    #[serde(default, rename = "tlsFiles")]
    tls_files: Option<RawTlsFiles>,
    #[serde(default, rename = "requestPolicy")]
    request_policy: Option<RawRequestPolicy>,
    #[serde(default, rename = "acmeProvider")]
    acme_provider: Option<RawAcme>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecretRef {
    name: String,
    #[serde(default)]
    #[allow(dead_code)]
    namespace: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTlsFiles {
    #[serde(rename = "certChain")]
    cert_chain: String,
    #[serde(rename = "privateKey")]
    private_key: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequestPolicy {
    insecure: RawInsecure,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInsecure {
    #[serde(default)]
    action: Option<String>,
    #[serde(default, rename = "additionalPort")]
    additional_port: Option<i32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAcme {
    authority: String,
    #[serde(default)]
    #[allow(dead_code)]
    email: Option<String>,
    #[serde(default, rename = "privateKeySecret")]
    #[allow(dead_code)]
    private_key_secret: Option<serde_yaml_ng::Value>,
}

/// Where Envoy listens for traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// `metadata.name`.
    pub name: String,
    /// Port.
    pub port: u16,
    /// It terminates TLS (protocol `HTTPS`).
    pub tls: bool,
    /// Proxies in front whose `x-forwarded-for` entries are trusted
    /// (Ambassador's `l7Depth`), so the client address is the real client's.
    pub l7_depth: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListenerSpec {
    port: u16,
    #[serde(default)]
    protocol: Option<String>,
    #[serde(default, rename = "securityModel")]
    security_model: Option<String>,
    #[serde(default, rename = "l7Depth")]
    l7_depth: Option<u32>,
    #[serde(default, rename = "hostBinding")]
    host_binding: Option<serde_yaml_ng::Value>,
}

const API_VERSIONS: [&str; 2] = ["gatehouse.dev/v1alpha1", "getambassador.io/v3alpha1"];

/// Reads every document of `text` (from `file`) into `into`.
///
/// # Errors
/// [`ResourceError`] naming file, document, field and the alternative.
pub fn load(text: &str, file: &str, into: &mut Resources) -> Result<(), ResourceError> {
    for (index, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let value = serde_yaml_ng::Value::deserialize(doc).map_err(|e| ResourceError {
            file: file.to_owned(),
            document: format!("document {index} (? ?)"),
            path: ".".into(),
            message: e.to_string(),
        })?;
        if value.is_null() {
            continue;
        }
        let head: Head = serde_yaml_ng::from_value(value.clone()).unwrap_or(Head {
            api_version: String::new(),
            kind: String::new(),
            metadata: None,
        });
        let name = head
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "?".into());
        let kind = if head.kind.is_empty() {
            "?"
        } else {
            head.kind.as_str()
        };
        let document = format!("document {index} ({kind} {name})");
        let err = |path: &str, message: String| ResourceError {
            file: file.to_owned(),
            document: document.clone(),
            path: path.to_owned(),
            message,
        };
        if !API_VERSIONS.contains(&head.api_version.as_str()) {
            return Err(err(
                "apiVersion",
                format!(
                    "{:?} is not supported: use gatehouse.dev/v1alpha1 (or getambassador.io/v3alpha1)",
                    head.api_version
                ),
            ));
        }
        match head.kind.as_str() {
            "Mapping" => {
                let raw: RawDoc<RawMappingSpec> = parse_document(value, &err)?;
                into.mappings.push(mapping(raw, &err)?);
            }
            "Listener" => {
                let raw: RawDoc<RawListenerSpec> = parse_document(value, &err)?;
                let spec = raw.spec;
                let tls = match spec.protocol.as_deref() {
                    None | Some("HTTP") => false,
                    Some("HTTPS") => true,
                    Some(other) => {
                        return Err(err(
                            "spec.protocol",
                            format!(
                                "{other:?}: HTTP or HTTPS (TCP, TLS and PROXY protocols are not supported)"
                            ),
                        ));
                    }
                };
                if spec
                    .security_model
                    .as_deref()
                    .is_some_and(|m| !["XFP", "INSECURE", "SECURE"].contains(&m))
                {
                    return Err(err("spec.securityModel", "XFP, SECURE or INSECURE".into()));
                }
                if spec.host_binding.is_some() {
                    return Err(err(
                        "spec.hostBinding",
                        "not supported yet: every Host binds to every Listener".into(),
                    ));
                }
                if into.listeners.iter().any(|l| l.port == spec.port) {
                    return Err(err(
                        "spec.port",
                        format!("port {} has a Listener already", spec.port),
                    ));
                }
                into.listeners.push(Listener {
                    name: raw.metadata.name,
                    port: spec.port,
                    tls,
                    l7_depth: spec.l7_depth.unwrap_or(0),
                });
            }
            "Host" => {
                let raw: RawDoc<RawHostSpec> = parse_document(value, &err)?;
                into.hosts.push(host(raw, &err)?);
            }
            "Filter" => {
                let raw: RawDoc<crate::policy::RawFilterSpec> = parse_document(value, &err)?;
                let f = crate::policy::filter(raw, &err)?;
                if into.filters.iter().any(|o| o.name == f.name) {
                    return Err(err(
                        "metadata.name",
                        format!("a Filter named {:?} exists already", f.name),
                    ));
                }
                into.filters.push(f);
            }
            "FilterPolicy" => {
                let raw: RawDoc<crate::policy::RawPolicySpec> = parse_document(value, &err)?;
                into.policies.push(crate::policy::policy(raw, &err)?);
            }
            "RateLimit" => {
                let raw: RawDoc<crate::limits::RawRateLimitSpec> = parse_document(value, &err)?;
                into.rate_limits.push(crate::limits::rate_limit(raw, &err)?);
            }
            "RateLimitService" => {
                let raw: RawDoc<crate::limits::RawRateLimitServiceSpec> =
                    parse_document(value, &err)?;
                if let Some(other) = &into.rate_limit_service {
                    return Err(err(
                        "kind",
                        format!(
                            "RateLimitService {} exists already: Envoy calls one rate-limit service",
                            other.name
                        ),
                    ));
                }
                into.rate_limit_service = Some(crate::limits::rate_limit_service(raw, &err)?);
            }
            other => {
                return Err(err(
                    "kind",
                    format!(
                        "{other:?} is not supported: this version reads Mapping, Host, Listener, Filter, FilterPolicy, RateLimit and RateLimitService"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// A document of a known kind, its field errors pointing unsupported fields
/// to the compatibility table.
fn parse_document<T: serde::de::DeserializeOwned>(
    value: serde_yaml_ng::Value,
    err: &dyn Fn(&str, String) -> ResourceError,
) -> Result<T, ResourceError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let mut message = e.inner().to_string();
        if message.starts_with("unknown field") {
            message.push_str(
                "; not supported yet: see the compatibility table in envoy-config/README.md",
            );
        }
        err(&e.path().to_string(), message)
    })
}

fn mapping(
    raw: RawDoc<RawMappingSpec>,
    err: &dyn Fn(&str, String) -> ResourceError,
) -> Result<Mapping, ResourceError> {
    let spec = raw.spec;
    if raw.metadata.name.is_empty() {
        return Err(err("metadata.name", "a Mapping needs a name".into()));
    }
    let (prefix, exact_path) = match (spec.prefix, spec.path) {
        (Some(p), None) => (p, false),
        (None, Some(p)) if !spec.prefix_regex => (p, true),
        _ => {
            return Err(err(
                "spec.prefix",
                "a Mapping has a prefix or (Gatehouse) an exact path, not both".into(),
            ));
        }
    };
    if !spec.prefix_regex && !prefix.starts_with('/') {
        return Err(err(
            if exact_path {
                "spec.path"
            } else {
                "spec.prefix"
            },
            "a path starts with /".into(),
        ));
    }
    // Ambassador's service: `[scheme://]host[:port]`.
    let (tls, service) = match spec.service.split_once("://") {
        None => (false, spec.service.as_str()),
        Some(("http", rest)) => (false, rest),
        Some(("https", rest)) => (true, rest),
        Some((other, _)) => {
            return Err(err(
                "spec.service",
                format!("scheme {other:?}: use http:// or https:// (gRPC: grpc: true)"),
            ));
        }
    };
    let (host, port) = match service.rsplit_once(':') {
        Some((h, p)) => (
            h.to_owned(),
            p.parse::<u16>()
                .map_err(|_| err("spec.service", format!("{p:?} is not a port")))?,
        ),
        None => (service.to_owned(), if tls { 443 } else { 80 }),
    };
    if host.is_empty() || host.contains('/') {
        return Err(err(
            "spec.service",
            "write host:port, e.g. billing:8080".into(),
        ));
    }
    if spec.weight.is_some_and(|w| w > 100) {
        return Err(err(
            "spec.weight",
            "a weight is a percentage, 0 to 100".into(),
        ));
    }
    let retry_policy = match spec.retry_policy {
        None => None,
        Some(r) => Some(RetryPolicy {
            retry_on: r.retry_on.unwrap_or_else(|| "5xx".into()),
            num_retries: r.num_retries.unwrap_or(1),
            per_try_timeout: r.per_try_timeout,
        }),
    };
    let cors = spec.cors.map(|c| Cors {
        origins: c.origins.items(),
        methods: c.methods.map(ListOrString::items).unwrap_or_default(),
        headers: c.headers.map(ListOrString::items).unwrap_or_default(),
        exposed_headers: c
            .exposed_headers
            .map(ListOrString::items)
            .unwrap_or_default(),
        credentials: c.credentials,
        max_age: c.max_age,
    });
    if cors.as_ref().is_some_and(|c| c.origins.is_empty()) {
        return Err(err(
            "spec.cors.origins",
            "name at least one origin (or *)".into(),
        ));
    }
    if let Some(u) = spec.allow_upgrade.iter().find(|u| *u != "websocket") {
        return Err(err(
            "spec.allow_upgrade",
            format!("{u:?}: only websocket is supported"),
        ));
    }
    let circuit_breaker = match spec.circuit_breakers.as_slice() {
        [] => None,
        [cb] => {
            if cb.priority.as_deref().is_some_and(|p| p != "default") {
                return Err(err(
                    "spec.circuit_breakers[0].priority",
                    "only the default priority is supported".into(),
                ));
            }
            Some(CircuitBreaker {
                max_connections: cb.max_connections,
                max_pending_requests: cb.max_pending_requests,
                max_requests: cb.max_requests,
                max_retries: cb.max_retries,
            })
        }
        _ => {
            return Err(err(
                "spec.circuit_breakers",
                "one entry (priority default) is supported".into(),
            ));
        }
    };
    if spec.regex_rewrite.is_some() && spec.rewrite.is_some() {
        return Err(err(
            "spec.regex_rewrite",
            "rewrite or regex_rewrite, not both".into(),
        ));
    }
    let sticky = match spec.sticky {
        None => None,
        Some(st) => {
            if usize::from(st.header.is_some()) + usize::from(st.cookie.is_some()) != 1 {
                return Err(err(
                    "spec.sticky",
                    "name one header or one cookie to hash".into(),
                ));
            }
            if spec.prefix_regex {
                return Err(err(
                    "spec.sticky",
                    "a sticky split needs a prefix, not prefix_regex".into(),
                ));
            }
            if let Some(h) = &st.header {
                readable_header(h, "spec.sticky.header", err)?;
            }
            Some(Sticky {
                header: st.header.map(|h| h.to_ascii_lowercase()),
                cookie: st.cookie,
                salt: st.salt,
            })
        }
    };
    let mut regex_headers = spec.regex_headers;
    let headers = split_matches(spec.headers, "headers", &mut regex_headers, err)?;
    for (field, names) in [("headers", &headers), ("regex_headers", &regex_headers)] {
        for name in names.keys() {
            readable_header(name, &format!("spec.{field}.{name}"), err)?;
        }
    }
    let mut regex_query_parameters = spec.regex_query_parameters;
    let query_parameters = split_matches(
        spec.query_parameters,
        "query_parameters",
        &mut regex_query_parameters,
        err,
    )?;
    let labels = match &spec.labels {
        None => crate::limits::Labels::new(),
        Some(v) => crate::limits::labels(v, err)?,
    };
    Ok(Mapping {
        name: raw.metadata.name,
        hostname: spec.hostname.unwrap_or_else(|| "*".into()),
        prefix: prefix.clone(),
        exact_path,
        host,
        port,
        // An exact path is sent as it is unless a rewrite says otherwise.
        rewrite: spec.rewrite.unwrap_or_else(|| {
            if exact_path {
                prefix.clone()
            } else {
                "/".into()
            }
        }),
        weight: spec.weight,
        timeout_ms: spec.timeout_ms.unwrap_or(3000),
        headers,
        precedence: spec.precedence.unwrap_or(0),
        add_request_headers: spec.add_request_headers,
        remove_request_headers: spec.remove_request_headers,
        prefix_regex: spec.prefix_regex,
        method: spec.method,
        query_parameters,
        host_rewrite: spec.host_rewrite,
        idle_timeout_ms: spec.idle_timeout_ms,
        retry_policy,
        cors,
        add_response_headers: spec.add_response_headers,
        remove_response_headers: spec.remove_response_headers,
        allow_upgrade: spec.allow_upgrade,
        regex_headers,
        regex_query_parameters,
        regex_rewrite: spec.regex_rewrite.map(|r| (r.pattern, r.substitution)),
        tls,
        grpc: spec.grpc,
        circuit_breaker,
        labels,
        sticky,
    })
}

fn host(
    raw: RawDoc<RawHostSpec>,
    err: &dyn Fn(&str, String) -> ResourceError,
) -> Result<Host, ResourceError> {
    let spec = raw.spec;
    if spec.hostname.is_empty() || spec.hostname.contains('*') {
        return Err(err(
            "spec.hostname",
            "one exact host name (wildcards are not supported yet)".into(),
        ));
    }
    if let Some(acme) = &spec.acme_provider
        && acme.authority != "none"
    {
        return Err(err(
            "spec.acmeProvider.authority",
            "ACME is not planned: get certificates with cert-manager and name the Secret in tlsSecret; write authority: none".into(),
        ));
    }
    if spec.tls_secret.is_some() && spec.tls_files.is_some() {
        return Err(err(
            "spec.tlsFiles",
            "tlsSecret or tlsFiles, not both".into(),
        ));
    }
    let has_tls = spec.tls_secret.is_some() || spec.tls_files.is_some();
    let insecure = match spec.request_policy {
        None => {
            if has_tls {
                Insecure::Redirect
            } else {
                Insecure::Route
            }
        }
        Some(p) => {
            if p.insecure.additional_port.is_some_and(|port| port >= 0) {
                return Err(err(
                    "spec.requestPolicy.insecure.additionalPort",
                    "not supported: cleartext is served on the HTTP Listener; write -1 or leave it out".into(),
                ));
            }
            match p.insecure.action.as_deref() {
                None | Some("Redirect") => Insecure::Redirect,
                Some("Route") => Insecure::Route,
                Some("Reject") => Insecure::Reject,
                Some(other) => {
                    return Err(err(
                        "spec.requestPolicy.insecure.action",
                        format!("{other:?}: Redirect, Route or Reject"),
                    ));
                }
            }
        }
    };
    Ok(Host {
        name: raw.metadata.name,
        hostname: spec.hostname,
        tls_files: spec.tls_files.map(|f| (f.cert_chain, f.private_key)),
        tls_secret: spec.tls_secret.map(|s| s.name),
        insecure,
    })
}

/// Fills `${NAME}` placeholders in resource text (as the quickstart's
/// `deploy/quickstart/edge.yaml` has them) from `vars`.
///
/// # Errors
/// The first placeholder left without a value, by name.
pub fn substitute(text: &str, vars: &[(String, String)]) -> Result<String, String> {
    let mut out = text.to_owned();
    for (name, value) in vars {
        out = out.replace(&format!("${{{name}}}"), value);
    }
    // Only `${` followed by a name counts: comments may still mention them.
    let mut rest = out.as_str();
    while let Some(i) = rest.find("${") {
        let after = &rest[i + 2..];
        let name: String = after
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() && after[name.len()..].starts_with('}') {
            let line_start = out[..out.len() - rest.len() + i]
                .rfind('\n')
                .map_or(0, |n| n + 1);
            let commented = out[line_start..].trim_start().starts_with('#');
            if !commented {
                return Err(format!("${{{name}}} has no value: pass --set {name}=..."));
            }
        }
        rest = &after[name.len()..];
    }
    Ok(out)
}
