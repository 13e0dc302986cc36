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
    /// What the cluster reported (a `kubectl get -o yaml` export): not
    /// configuration, so not read.
    #[serde(default, rename = "status")]
    _status: Option<serde_yaml_ng::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMetadata {
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) namespace: Option<String>,
    #[serde(default)]
    pub(crate) labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    #[allow(dead_code)]
    annotations: Option<BTreeMap<String, String>>,
    // Fields the Kubernetes API server writes (as `kubectl get -o yaml`
    // exports them); Ambassador reads none of them, nor does Gatehouse.
    #[serde(default, rename = "uid")]
    _uid: Option<serde_yaml_ng::Value>,
    #[serde(default, rename = "resourceVersion")]
    _resource_version: Option<serde_yaml_ng::Value>,
    #[serde(default, rename = "generation")]
    _generation: Option<serde_yaml_ng::Value>,
    #[serde(default, rename = "creationTimestamp")]
    _creation_timestamp: Option<serde_yaml_ng::Value>,
    #[serde(default, rename = "managedFields")]
    _managed_fields: Option<serde_yaml_ng::Value>,
    #[serde(default, rename = "selfLink")]
    _self_link: Option<serde_yaml_ng::Value>,
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

/// The instances a document is for (Ambassador's `spec.ambassador_id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AmbassadorIds(Vec<String>);

impl AmbassadorIds {
    /// Whether the instance `id` serves the document: its id is named, or
    /// `_automatic_` (every instance) is.
    pub(crate) fn serves(&self, id: &str) -> bool {
        self.0.iter().any(|i| i == id || i == "_automatic_")
    }
}

/// Takes `spec.ambassador_id` (a string or a list of strings; a Host's
/// `ambassadorId` too) out of a document, so no kind's parser sees it. A
/// document without one is for `default`, as in Ambassador.
pub(crate) fn take_ambassador_id(
    doc: &mut serde_yaml_ng::Value,
    err: ErrFn<'_>,
) -> Result<AmbassadorIds, ResourceError> {
    let Some(spec) = doc
        .get_mut("spec")
        .and_then(serde_yaml_ng::Value::as_mapping_mut)
    else {
        return Ok(AmbassadorIds(vec!["default".into()]));
    };
    let mut found = None;
    for field in ["ambassador_id", "ambassadorId"] {
        if let Some(v) = spec.remove(field) {
            if found.is_some() {
                return Err(err(
                    &format!("spec.{field}"),
                    "ambassador_id or ambassadorId, not both".into(),
                ));
            }
            found = Some((field, v));
        }
    }
    let Some((field, value)) = found else {
        return Ok(AmbassadorIds(vec!["default".into()]));
    };
    let ids = match value {
        serde_yaml_ng::Value::String(s) => vec![s],
        serde_yaml_ng::Value::Sequence(items) => items
            .into_iter()
            .map(|i| match i {
                serde_yaml_ng::Value::String(s) => Ok(s),
                other => Err(err(
                    &format!("spec.{field}"),
                    format!("{other:?} is not an instance id: write strings"),
                )),
            })
            .collect::<Result<_, _>>()?,
        other => {
            return Err(err(
                &format!("spec.{field}"),
                format!("{other:?}: write an instance id or a list of them"),
            ));
        }
    };
    if ids.is_empty() || ids.iter().any(String::is_empty) {
        return Err(err(
            &format!("spec.{field}"),
            "an empty id serves no instance: leave ambassador_id out (instance default) or name the instances".into(),
        ));
    }
    Ok(AmbassadorIds(ids))
}
