//! The document layer under every kind: the head every document shares
//! ([`RawDoc`]), the [`ResourceError`] that names file, document and field,
//! and the parsing helpers the kinds have in common. It knows no kind, so
//! `mapping`, `host`, `policy`, `limits` and `resources` import it and not
//! each other.

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

/// How a kind's parser builds a [`ResourceError`] for a field path in the
/// document at hand (file and document are filled in).
pub(crate) type ErrFn<'a> = &'a dyn Fn(&str, String) -> ResourceError;

/// A document of a known kind, its field errors pointing unsupported fields
/// to the compatibility table.
pub(crate) fn parse_document<T: serde::de::DeserializeOwned>(
    value: serde_yaml_ng::Value,
    err: ErrFn<'_>,
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

/// Refuses a request header name that no route or filter could ever read:
/// every rendered listener drops headers with `_` in their names
/// (`docs/security.md`), so a match on one would silently never hold.
pub(crate) fn readable_header(name: &str, path: &str, err: ErrFn<'_>) -> Result<(), ResourceError> {
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
