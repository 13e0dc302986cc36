//! The filter's configuration: the JSON in Envoy's `configuration` field.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::cache::TokenCache;
use crate::error::ConfigError;
use crate::jwks::KeySet;
use crate::policy::compile::{RawProvider, RawRule};
use crate::policy::{ErrorResponse, Policy};
use gatehouse_template_core::{Scope, Template};

/// Verified tokens a worker remembers unless configured otherwise.
pub const DEFAULT_TOKEN_CACHE_SIZE: usize = 1000;

/// Header prefix the stack's invented headers use unless renamed.
pub const DEFAULT_HEADER_PREFIX: &str = "x-gatehouse-";

/// A validated filter configuration. Build it with [`FilterConfig::parse`].
#[derive(Debug, Clone)]
pub struct FilterConfig {
    header_prefix: String,
    policy: Policy,
    token_cache_size: usize,
    /// Headers the filter writes, collected once (checked for every header
    /// of every request).
    written: Vec<String>,
    /// Headers a decision reads ([`Policy::read_headers`]), collected once.
    read: Vec<String>,
    /// Pseudo-headers a decision reads ([`Policy::read_pseudo_headers`]).
    read_pseudo: Vec<&'static str>,
    /// Whether the filter removes reserved client headers itself (default),
    /// or Envoy already did (`gatehouse render` strips them on every
    /// listener before any filter runs).
    strips_reserved_headers: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFilterConfig {
    #[serde(default)]
    header_prefix: Option<String>,
    #[serde(default)]
    realm: Option<String>,
    #[serde(default)]
    token_cache_size: Option<usize>,
    #[serde(default)]
    reserved_headers_stripped_by_envoy: bool,
    #[serde(default)]
    token_headers_removed_by_envoy: bool,
    #[serde(default)]
    error_response: Option<RawErrorResponse>,
    #[serde(default)]
    providers: BTreeMap<String, RawProvider>,
    #[serde(default)]
    rules: Vec<RawRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawErrorResponse {
    #[serde(default)]
    content_type: Option<String>,
    #[serde(default)]
    headers: Vec<RawErrorHeader>,
    #[serde(default)]
    body_template: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawErrorHeader {
    name: String,
    template: String,
}

impl RawErrorResponse {
    fn compile(self) -> Result<ErrorResponse, ConfigError> {
        let invalid = |path: String, message: String| ConfigError::Invalid { path, message };
        if let Some(t) = &self.content_type
            && (t.is_empty() || t.bytes().any(|b| b.is_ascii_control()))
        {
            return Err(invalid(
                "error_response.content_type".into(),
                format!("{t:?} is not a media type"),
            ));
        }
        let mut headers = Vec::new();
        for (i, h) in self.headers.into_iter().enumerate() {
            let at = format!("error_response.headers[{i}]");
            if !gatehouse_http_core::header::is_config_name(&h.name)
                || h.name == "www-authenticate"
                || (h.name == "content-type" && self.content_type.is_some())
            {
                return Err(invalid(
                    format!("{at}.name"),
                    format!(
                        "{:?}: a lowercase header name other than www-authenticate (realm sets it), and other than content-type when content_type is set",
                        h.name
                    ),
                ));
            }
            let t = Template::parse(&h.template, Scope::Error)
                .map_err(|m| invalid(format!("{at}.template"), m))?;
            headers.push((h.name, t));
        }
        let body = self
            .body_template
            .map(|b| Template::parse(&b, Scope::Error))
            .transpose()
            .map_err(|m| invalid("error_response.body_template".into(), m))?;
        Ok(ErrorResponse {
            content_type: self.content_type,
            headers,
            body,
        })
    }
}

impl Default for FilterConfig {
    fn default() -> Self {
        Self {
            header_prefix: DEFAULT_HEADER_PREFIX.to_owned(),
            policy: Policy::default(),
            token_cache_size: DEFAULT_TOKEN_CACHE_SIZE,
            written: Vec::new(),
            read: Vec::new(),
            read_pseudo: Vec::new(),
            strips_reserved_headers: true,
        }
    }
}

impl FilterConfig {
    /// Parses the plugin configuration.
    ///
    /// Empty input (Envoy passes none when `configuration` is unset) gives the
    /// defaults. Fields:
    /// - `header_prefix` (string, default `"x-gatehouse-"`): request headers
    ///   starting with it are reserved for the stack and removed from client
    ///   requests. Lowercase header-name characters only, at least 3 of them.
    ///
    /// # Errors
    /// [`ConfigError`] naming the field path when the JSON is malformed, has an
    /// unknown field or an invalid value.
    pub fn parse(bytes: &[u8]) -> Result<Self, ConfigError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self::default());
        }
        let de = &mut serde_json::Deserializer::from_slice(bytes);
        let raw: RawFilterConfig =
            serde_path_to_error::deserialize(de).map_err(|e| ConfigError::Syntax {
                path: e.path().to_string(),
                message: e.inner().to_string(),
            })?;
        Self::try_from(raw)
    }

    /// The reserved header prefix, lowercase.
    #[must_use]
    pub fn header_prefix(&self) -> &str {
        &self.header_prefix
    }

    /// Whether a client-sent request header must be removed before the request
    /// goes on: it has the reserved prefix, or the filter writes it from
    /// verified claims. `name` is compared case-insensitively.
    #[must_use]
    pub fn is_reserved_header(&self, name: &str) -> bool {
        (name.len() >= self.header_prefix.len()
            && name.as_bytes()[..self.header_prefix.len()]
                .eq_ignore_ascii_case(self.header_prefix.as_bytes()))
            || self.written.iter().any(|h| h.eq_ignore_ascii_case(name))
    }

    /// Whether a decision may read request header `name` (lowercase, as
    /// Envoy gives them). Pseudo-headers are not included: adapters pass
    /// `:path`, `:authority` and `:method` separately.
    #[must_use]
    pub fn reads_header(&self, name: &str) -> bool {
        self.read.iter().any(|h| h == name)
    }

    /// Whether the filter must remove reserved client headers itself: true
    /// unless the configuration says Envoy removed them already
    /// (`reserved_headers_stripped_by_envoy`).
    #[must_use]
    pub fn strips_reserved_headers(&self) -> bool {
        self.strips_reserved_headers
    }

    /// The request headers a decision may read (lowercase, no pseudo-headers).
    #[must_use]
    pub fn read_headers(&self) -> &[String] {
        &self.read
    }

    /// The pseudo-headers a decision may read (`:path`, `:authority`,
    /// `:method`): only those its rules and token locations use.
    #[must_use]
    pub fn read_pseudo_headers(&self) -> &[&'static str] {
        &self.read_pseudo
    }

    /// The providers and rules.
    #[must_use]
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// How many verified tokens each worker may remember (0: none).
    #[must_use]
    pub fn token_cache_size(&self) -> usize {
        self.token_cache_size
    }

    /// Installs freshly fetched keys for provider `index` (a JWKS refresh).
    /// A host that caches verified tokens first calls
    /// [`TokenCache::retain_keys`] with the same keys.
    pub fn set_keys(&mut self, index: usize, keys: KeySet) {
        self.policy.set_keys(index, keys);
    }

    /// Verifies provider `index`'s tokens with `keys` from now on, and keeps
    /// `cache` in step: cached tokens of keys that left go with them, the
    /// rest stay, so a refetch that a forged `kid` caused (the same keys
    /// again) costs no cache.
    pub fn install_keys(&mut self, index: usize, keys: KeySet, cache: &mut TokenCache) {
        cache.retain_keys(index, &keys);
        self.set_keys(index, keys);
    }
}

impl TryFrom<RawFilterConfig> for FilterConfig {
    type Error = ConfigError;

    fn try_from(raw: RawFilterConfig) -> Result<Self, Self::Error> {
        let header_prefix = match raw.header_prefix {
            None => DEFAULT_HEADER_PREFIX.to_owned(),
            Some(prefix) => {
                // A prefix of one or two characters ("x-") would strip headers the
                // stack does not own; a prefix with upper case or separators could
                // never match what Envoy hands over (HTTP/2 and Envoy lowercase names).
                let valid_chars = prefix
                    .bytes()
                    .all(gatehouse_http_core::header::is_config_name_byte);
                if prefix.len() < 3 || !valid_chars {
                    return Err(ConfigError::Invalid {
                        path: "header_prefix".into(),
                        message: format!(
                            "{prefix:?} is not a header-name prefix: use at least 3 characters of a-z, 0-9, '-' or '_', e.g. \"{DEFAULT_HEADER_PREFIX}\""
                        ),
                    });
                }
                prefix
            }
        };
        let realm = raw.realm.unwrap_or_else(|| "gatehouse".to_owned());
        let mut policy = Policy::compile(raw.providers, raw.rules, realm)?;
        if raw.token_headers_removed_by_envoy {
            policy.leave_token_removal_to_envoy();
        }
        if let Some(e) = raw.error_response {
            policy.set_error_response(e.compile()?);
        }
        let token_cache_size = raw.token_cache_size.unwrap_or(DEFAULT_TOKEN_CACHE_SIZE);
        let written = policy
            .written_headers()
            .into_iter()
            .map(str::to_owned)
            .collect();
        let read_pseudo = policy.read_pseudo_headers();
        let read = policy
            .read_headers()
            .into_iter()
            .map(str::to_owned)
            .collect();
        Ok(Self {
            header_prefix,
            policy,
            token_cache_size,
            written,
            read,
            read_pseudo,
            strips_reserved_headers: !raw.reserved_headers_stripped_by_envoy,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_filter_strips_reserved_headers_unless_envoy_does() {
        assert!(FilterConfig::parse(b"").unwrap().strips_reserved_headers());
        let config =
            FilterConfig::parse(br#"{"reserved_headers_stripped_by_envoy": true}"#).unwrap();
        assert!(!config.strips_reserved_headers());
    }

    #[test]
    fn empty_configuration_gives_defaults() {
        assert_eq!(
            FilterConfig::parse(b"").unwrap().header_prefix(),
            "x-gatehouse-"
        );
        assert_eq!(
            FilterConfig::parse(b"  \n").unwrap().header_prefix(),
            "x-gatehouse-"
        );
        assert!(
            FilterConfig::parse(b"{}")
                .unwrap()
                .policy()
                .written_headers()
                .is_empty()
        );
    }

    #[test]
    fn custom_prefix_is_kept() {
        let config = FilterConfig::parse(br#"{"header_prefix": "x-edge-"}"#).unwrap();
        assert_eq!(config.header_prefix(), "x-edge-");
        assert!(config.is_reserved_header("X-Edge-User"));
        assert!(!config.is_reserved_header("x-gatehouse-user"));
    }

    #[test]
    fn unknown_field_names_the_field() {
        let err = FilterConfig::parse(br#"{"header_prefx": "x-a-"}"#).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("header_prefx"), "{text}");
        assert!(text.contains("unknown field"), "{text}");
    }

    #[test]
    fn wrong_type_names_the_field() {
        let err = FilterConfig::parse(br#"{"header_prefix": 7}"#).unwrap_err();
        assert!(err.to_string().starts_with("header_prefix: "), "{err}");
    }

    #[test]
    fn short_or_uppercase_prefix_is_refused() {
        for bad in ["x-", "X-Gatehouse-", "x gatehouse", ""] {
            let json = format!(r#"{{"header_prefix": {bad:?}}}"#);
            let err = FilterConfig::parse(json.as_bytes()).unwrap_err();
            assert!(
                err.to_string().starts_with("header_prefix: "),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn reserved_headers_match_case_insensitively() {
        let config = FilterConfig::default();
        assert!(config.is_reserved_header("x-gatehouse-user"));
        assert!(config.is_reserved_header("X-GATEHOUSE-USER"));
        assert!(!config.is_reserved_header("x-gatehous"));
        assert!(!config.is_reserved_header("authorization"));
    }

    proptest! {
        #[test]
        fn parser_never_panics(input in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = FilterConfig::parse(&input);
        }

        #[test]
        fn accepted_prefix_always_reserves_itself(prefix in "[a-z0-9_-]{3,20}") {
            let json = serde_json::json!({ "header_prefix": prefix }).to_string();
            let config = FilterConfig::parse(json.as_bytes()).unwrap();
            let header = format!("{prefix}anything");
            prop_assert!(config.is_reserved_header(&header));
            prop_assert!(config.is_reserved_header(&prefix.to_uppercase()));
        }
    }
}
