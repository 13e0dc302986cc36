//! The service's YAML configuration: named filters, each of one kind.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The `context_extensions` key an Envoy route sets to pick a filter:
/// `context_extensions: { gatehouse_filter: <name> }`.
pub const FILTER_EXTENSION: &str = "gatehouse_filter";

/// Header that carries an API key's client name upstream unless renamed.
pub const DEFAULT_CLIENT_HEADER: &str = "x-gatehouse-client";

/// Why a configuration (or a key file) was refused. `Display` gives
/// `file: field.path: what is wrong`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {path}: {message}")]
pub struct ConfigError {
    /// The file, as the service named it.
    pub file: String,
    /// Field path inside the file, `.` for the document itself.
    pub path: String,
    /// What is wrong and what to write instead.
    pub message: String,
}

impl ConfigError {
    /// A YAML error at the path `serde_path_to_error` tracked. The YAML
    /// parser may prefix its message with a path of its own: dropped, so the
    /// path is said once; its line and column stay.
    pub(crate) fn yaml(
        file: &str,
        error: serde_path_to_error::Error<serde_yaml_ng::Error>,
    ) -> Self {
        let path = error.path().to_string();
        let message = error.into_inner().to_string();
        let message = match message.split_once(": ") {
            Some((head, rest)) if !head.contains(' ') && path.starts_with(head) => rest.to_owned(),
            _ => message,
        };
        Self::new(file, path, message)
    }

    pub(crate) fn new(file: &str, path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            file: file.to_owned(),
            path: path.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    default_filter: Option<String>,
    #[serde(default)]
    filters: BTreeMap<String, RawFilter>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFilter {
    #[serde(default)]
    api_keys: Option<RawApiKeys>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApiKeys {
    #[serde(default)]
    from: Option<Vec<RawLocation>>,
    #[serde(default)]
    keys_file: Option<String>,
    #[serde(default)]
    keys_dir: Option<String>,
    #[serde(default)]
    client_header: Option<String>,
    #[serde(default)]
    forward_key: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLocation {
    #[serde(default)]
    header: Option<String>,
    #[serde(default)]
    query: Option<String>,
}

/// A validated configuration. Build it with [`AuthzConfig::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthzConfig {
    default_filter: Option<String>,
    filters: BTreeMap<String, FilterKind>,
}

/// What one named filter does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterKind {
    /// API keys.
    ApiKeys(ApiKeyFilter),
}

/// An API-key filter's settings (the keys themselves load separately).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyFilter {
    /// Where the key is looked for, in order; the first present wins.
    pub from: Vec<KeyLocation>,
    /// Where the hashed keys come from.
    pub source: KeySource,
    /// Request header that carries the client's name upstream.
    pub client_header: String,
    /// Whether the key itself goes on upstream (default: removed).
    pub forward_key: bool,
}

/// Where a request carries its API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyLocation {
    /// A request header (lowercase name); its whole value is the key.
    Header(String),
    /// A query parameter.
    Query(String),
}

/// Where a filter's keys are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A YAML file of `keys: [{name, sha256}]`: only hashes on disk.
    File(String),
    /// A directory with one file per client, named for the client, holding
    /// the key (a mounted Kubernetes Secret). Keys are hashed when read.
    Dir(String),
}

fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

impl AuthzConfig {
    /// Parses the YAML text of `file` (the name is only used in errors).
    ///
    /// # Errors
    /// [`ConfigError`] naming the file and field path: malformed YAML, an
    /// unknown field, or an invalid value.
    pub fn parse(text: &str, file: &str) -> Result<Self, ConfigError> {
        let de = serde_yaml_ng::Deserializer::from_str(text);
        let raw: RawConfig =
            serde_path_to_error::deserialize(de).map_err(|e| ConfigError::yaml(file, e))?;
        let mut filters = BTreeMap::new();
        for (name, f) in raw.filters {
            let at = format!("filters.{name}");
            if name.is_empty() {
                return Err(ConfigError::new(file, "filters", "a filter name is empty"));
            }
            let kind = match f.api_keys {
                Some(keys) => FilterKind::ApiKeys(api_keys(keys, file, &format!("{at}.api_keys"))?),
                None => {
                    return Err(ConfigError::new(
                        file,
                        at,
                        "a filter needs a kind: add api_keys",
                    ));
                }
            };
            filters.insert(name, kind);
        }
        if let Some(default) = &raw.default_filter
            && !filters.contains_key(default)
        {
            return Err(ConfigError::new(
                file,
                "default_filter",
                format!("no filter is named {default:?}"),
            ));
        }
        Ok(Self {
            default_filter: raw.default_filter,
            filters,
        })
    }

    /// The filter used when a route names none.
    #[must_use]
    pub fn default_filter(&self) -> Option<&str> {
        self.default_filter.as_deref()
    }

    /// The filters by name.
    #[must_use]
    pub fn filters(&self) -> &BTreeMap<String, FilterKind> {
        &self.filters
    }
}

fn api_keys(raw: RawApiKeys, file: &str, at: &str) -> Result<ApiKeyFilter, ConfigError> {
    let from = match raw.from {
        None => vec![KeyLocation::Header("x-api-key".to_owned())],
        Some(list) if list.is_empty() => {
            return Err(ConfigError::new(
                file,
                format!("{at}.from"),
                "name at least one header or query parameter, or leave from out for x-api-key",
            ));
        }
        Some(list) => list
            .into_iter()
            .enumerate()
            .map(|(i, l)| match (l.header, l.query) {
                (Some(h), None) if is_header_name(&h.to_ascii_lowercase()) => {
                    Ok(KeyLocation::Header(h.to_ascii_lowercase()))
                }
                (None, Some(q)) if !q.is_empty() => Ok(KeyLocation::Query(q)),
                _ => Err(ConfigError::new(
                    file,
                    format!("{at}.from[{i}]"),
                    "name exactly one of header or query",
                )),
            })
            .collect::<Result<_, _>>()?,
    };
    let source = match (raw.keys_file, raw.keys_dir) {
        (Some(f), None) if !f.is_empty() => KeySource::File(f),
        (None, Some(d)) if !d.is_empty() => KeySource::Dir(d),
        _ => {
            return Err(ConfigError::new(
                file,
                at,
                "name exactly one of keys_file (hashed keys) or keys_dir (a mounted secret)",
            ));
        }
    };
    let client_header = raw
        .client_header
        .unwrap_or_else(|| DEFAULT_CLIENT_HEADER.to_owned())
        .to_ascii_lowercase();
    if !is_header_name(&client_header) {
        return Err(ConfigError::new(
            file,
            format!("{at}.client_header"),
            format!("{client_header:?} is not a header name"),
        ));
    }
    if from
        .iter()
        .any(|l| matches!(l, KeyLocation::Header(h) if *h == client_header))
    {
        return Err(ConfigError::new(
            file,
            format!("{at}.client_header"),
            "the client header cannot also carry the key",
        ));
    }
    Ok(ApiKeyFilter {
        from,
        source,
        client_header,
        forward_key: raw.forward_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        AuthzConfig::parse(text, "authz.yaml")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn an_api_key_filter_gets_its_defaults() {
        let config = AuthzConfig::parse(
            "filters:\n  partners:\n    api_keys:\n      keys_file: keys.yaml\n",
            "authz.yaml",
        )
        .unwrap();
        let FilterKind::ApiKeys(f) = &config.filters()["partners"];
        assert_eq!(f.from, [KeyLocation::Header("x-api-key".into())]);
        assert_eq!(f.source, KeySource::File("keys.yaml".into()));
        assert_eq!(f.client_header, DEFAULT_CLIENT_HEADER);
        assert!(!f.forward_key);
        assert_eq!(config.default_filter(), None);
    }

    #[test]
    fn errors_name_the_file_and_the_field() {
        assert!(
            err("filters:\n  p:\n    api_keys:\n      keys_file: k\n      colour: red\n")
                .starts_with("authz.yaml: filters.p.api_keys.colour: unknown field `colour`"),
            "{}",
            err("filters:\n  p:\n    api_keys:\n      keys_file: k\n      colour: red\n")
        );
        assert_eq!(
            err("filters:\n  p:\n    api_keys: {}\n"),
            "authz.yaml: filters.p.api_keys: name exactly one of keys_file (hashed keys) or keys_dir (a mounted secret)"
        );
        assert_eq!(
            err(
                "filters:\n  p:\n    api_keys:\n      keys_dir: d\n      from: [{header: x-a, query: b}]\n"
            ),
            "authz.yaml: filters.p.api_keys.from[0]: name exactly one of header or query"
        );
        assert_eq!(
            err("filters:\n  p: {}\n"),
            "authz.yaml: filters.p: a filter needs a kind: add api_keys"
        );
        assert_eq!(
            err("default_filter: q\nfilters:\n  p:\n    api_keys: {keys_dir: d}\n"),
            "authz.yaml: default_filter: no filter is named \"q\""
        );
        assert!(
            err("filters:\n  p:\n    api_keys: {keys_dir: d, client_header: \"a b\"}\n")
                .contains("filters.p.api_keys.client_header")
        );
        assert!(err("filters: [").starts_with("authz.yaml: "));
    }
}
