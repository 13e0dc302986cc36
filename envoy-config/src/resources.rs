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
struct RawMappingDoc {
    #[serde(rename = "apiVersion")]
    _api_version: String,
    #[serde(rename = "kind")]
    _kind: String,
    metadata: RawMetadata,
    spec: RawMappingSpec,
}

#[derive(Debug, Deserialize)]
struct RawMetadata {
    name: String,
    #[serde(default)]
    #[allow(dead_code)]
    namespace: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    labels: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMappingSpec {
    #[serde(default)]
    hostname: Option<String>,
    prefix: String,
    service: String,
    #[serde(default)]
    rewrite: Option<String>,
    #[serde(default)]
    weight: Option<u32>,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
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
    query_parameters: BTreeMap<String, String>,
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
    /// Path prefix.
    pub prefix: String,
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
}

/// Every resource of a configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    /// The Mappings, in file order.
    pub mappings: Vec<Mapping>,
    /// The Listener, if one was given (at most one today).
    pub listener: Option<Listener>,
}

/// Where Envoy listens for traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// `metadata.name`.
    pub name: String,
    /// Port.
    pub port: u16,
    /// Proxies in front whose `x-forwarded-for` entries are trusted
    /// (Ambassador's `l7Depth`), so the client address is the real client's.
    pub l7_depth: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListenerDoc {
    #[serde(rename = "apiVersion")]
    _api_version: String,
    #[serde(rename = "kind")]
    _kind: String,
    metadata: RawMetadata,
    spec: RawListenerSpec,
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
                let raw: RawMappingDoc = parse_document(value, &err)?;
                into.mappings.push(mapping(raw, &err)?);
            }
            "Listener" => {
                let raw: RawListenerDoc = parse_document(value, &err)?;
                if into.listener.is_some() {
                    return Err(err("kind", "only one Listener is supported yet".into()));
                }
                let spec = raw.spec;
                if spec.protocol.as_deref().is_some_and(|p| p != "HTTP") {
                    return Err(err(
                        "spec.protocol",
                        "only HTTP is supported yet (TLS comes with the Host kind)".into(),
                    ));
                }
                if spec
                    .security_model
                    .as_deref()
                    .is_some_and(|m| m != "XFP" && m != "INSECURE")
                {
                    return Err(err(
                        "spec.securityModel",
                        "only XFP or INSECURE are meaningful without TLS".into(),
                    ));
                }
                if spec.host_binding.is_some() {
                    return Err(err(
                        "spec.hostBinding",
                        "not supported yet: every Mapping binds to the one Listener".into(),
                    ));
                }
                into.listener = Some(Listener {
                    name: raw.metadata.name,
                    port: spec.port,
                    l7_depth: spec.l7_depth.unwrap_or(0),
                });
            }
            other => {
                return Err(err(
                    "kind",
                    format!(
                        "{other:?} is not supported yet: this version reads Mapping and Listener"
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
    raw: RawMappingDoc,
    err: &dyn Fn(&str, String) -> ResourceError,
) -> Result<Mapping, ResourceError> {
    let spec = raw.spec;
    if raw.metadata.name.is_empty() {
        return Err(err("metadata.name", "a Mapping needs a name".into()));
    }
    if !spec.prefix_regex && !spec.prefix.starts_with('/') {
        return Err(err("spec.prefix", "a prefix starts with /".into()));
    }
    // Ambassador's service: `[scheme://]host[:port]`; http only for now.
    let service = spec
        .service
        .strip_prefix("http://")
        .unwrap_or(&spec.service);
    if service.contains("://") {
        return Err(err(
            "spec.service",
            "only http:// (or no scheme) is supported yet".into(),
        ));
    }
    let (host, port) = match service.rsplit_once(':') {
        Some((h, p)) => (
            h.to_owned(),
            p.parse::<u16>()
                .map_err(|_| err("spec.service", format!("{p:?} is not a port")))?,
        ),
        None => (service.to_owned(), 80),
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
    Ok(Mapping {
        name: raw.metadata.name,
        hostname: spec.hostname.unwrap_or_else(|| "*".into()),
        prefix: spec.prefix,
        host,
        port,
        rewrite: spec.rewrite.unwrap_or_else(|| "/".into()),
        weight: spec.weight,
        timeout_ms: spec.timeout_ms.unwrap_or(3000),
        headers: spec.headers,
        precedence: spec.precedence.unwrap_or(0),
        add_request_headers: spec.add_request_headers,
        remove_request_headers: spec.remove_request_headers,
        prefix_regex: spec.prefix_regex,
        method: spec.method,
        query_parameters: spec.query_parameters,
        host_rewrite: spec.host_rewrite,
        idle_timeout_ms: spec.idle_timeout_ms,
        retry_policy,
        cors,
        add_response_headers: spec.add_response_headers,
        remove_response_headers: spec.remove_response_headers,
        allow_upgrade: spec.allow_upgrade,
    })
}
