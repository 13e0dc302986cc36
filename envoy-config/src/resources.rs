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
}

/// Every resource of a configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    /// The Mappings, in file order.
    pub mappings: Vec<Mapping>,
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
                let raw: RawMappingDoc = serde_path_to_error::deserialize(value).map_err(|e| {
                    let mut message = e.inner().to_string();
                    if message.starts_with("unknown field") {
                        message.push_str(
                            "; not supported yet: see the compatibility table in envoy-config/README.md",
                        );
                    }
                    err(&e.path().to_string(), message)
                })?;
                into.mappings.push(mapping(raw, &err)?);
            }
            other => {
                return Err(err(
                    "kind",
                    format!("{other:?} is not supported yet: this version reads Mapping"),
                ));
            }
        }
    }
    Ok(())
}

fn mapping(
    raw: RawMappingDoc,
    err: &dyn Fn(&str, String) -> ResourceError,
) -> Result<Mapping, ResourceError> {
    let spec = raw.spec;
    if raw.metadata.name.is_empty() {
        return Err(err("metadata.name", "a Mapping needs a name".into()));
    }
    if !spec.prefix.starts_with('/') {
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
    })
}
