//! One request in, one verdict out.

use std::collections::{BTreeMap, HashMap};

use crate::apikeys::ApiKeys;
use crate::config::{ApiKeyFilter, AuthzConfig, FilterKind, KeyLocation, OidcFilter};

/// The request as Envoy's ext_authz describes it.
#[derive(Debug, Clone, Copy)]
pub struct CheckInput<'a> {
    /// The filter the route named in `context_extensions`, if any.
    pub filter: Option<&'a str>,
    /// `:path`, query included.
    pub path: &'a str,
    /// Request headers, names lowercase (as Envoy sends them).
    pub headers: &'a HashMap<String, String>,
}

/// What Envoy should do with the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Let it through with these changes.
    Allow {
        /// Headers to set, replacing any client copy.
        set: Vec<(String, String)>,
        /// Headers to remove.
        remove: Vec<String>,
        /// Query parameters to remove.
        remove_query: Vec<String>,
    },
    /// Answer it here.
    Deny {
        /// HTTP status.
        status: u16,
        /// Response headers.
        headers: Vec<(String, String)>,
        /// A small JSON body with a stable `code`.
        body: String,
    },
}

/// Where a request goes: decided already, or to an OIDC filter.
#[derive(Debug)]
pub enum Selected<'a> {
    /// The verdict.
    Done(Verdict),
    /// The named OIDC filter decides.
    Oidc {
        /// The filter's name.
        name: &'a str,
        /// Its settings.
        filter: &'a OidcFilter,
    },
}

impl Verdict {
    /// A denial with a JSON body `{"code", "message"}`; both are the
    /// caller's constants (not escaped).
    #[must_use]
    pub fn deny(status: u16, code: &str, message: &str) -> Self {
        // `code` and `message` are our own constants: no escaping needed.
        Self::Deny {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: format!(r#"{{"code":"{code}","message":"{message}"}}"#),
        }
    }
}

/// The configuration with every filter's keys loaded: what a check reads.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    config: Option<AuthzConfig>,
    keys: BTreeMap<String, ApiKeys>,
}

impl Filters {
    /// Puts a configuration and the keys of its API-key filters together.
    /// A filter without keys in `keys` has none (every key is refused).
    #[must_use]
    pub fn new(config: AuthzConfig, keys: BTreeMap<String, ApiKeys>) -> Self {
        Self {
            config: Some(config),
            keys,
        }
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> Option<&AuthzConfig> {
        self.config.as_ref()
    }

    /// Decides one request that needs no IdP: an OIDC filter's requests go
    /// through [`Filters::select`] to the service, which talks to the IdP.
    #[must_use]
    pub fn check(&self, input: &CheckInput<'_>) -> Verdict {
        match self.select(input) {
            Selected::Done(verdict) => verdict,
            Selected::Oidc { .. } => Verdict::deny(
                500,
                "unsupported",
                "this filter needs the service's OpenID Connect client",
            ),
        }
    }

    /// The filter a request falls to, and the verdict when no IdP is needed.
    #[must_use]
    pub fn select(&self, input: &CheckInput<'_>) -> Selected<'_> {
        let Some(config) = &self.config else {
            return Selected::Done(Verdict::deny(
                500,
                "not_configured",
                "the authorization service has no configuration",
            ));
        };
        let name = input.filter.or(config.default_filter());
        let Some((name, kind)) = name.and_then(|n| config.filters().get_key_value(n)) else {
            // The route names a filter this service does not have: an
            // operator's mistake the client cannot fix. Fail closed.
            return Selected::Done(Verdict::deny(
                500,
                "unknown_filter",
                "the route names no configured filter",
            ));
        };
        match kind {
            FilterKind::ApiKeys(filter) => {
                Selected::Done(api_key_check(filter, self.keys.get(name.as_str()), input))
            }
            FilterKind::Oidc(filter) => Selected::Oidc { name, filter },
        }
    }
}

fn api_key_check(filter: &ApiKeyFilter, keys: Option<&ApiKeys>, input: &CheckInput<'_>) -> Verdict {
    let found = filter.from.iter().find_map(|loc| match loc {
        KeyLocation::Header(h) => input
            .headers
            .get(h)
            .filter(|v| !v.is_empty())
            .map(|v| (v.as_bytes().to_vec(), loc)),
        KeyLocation::Query(q) => query_param(input.path, q).map(|v| (v, loc)),
    });
    let Some((key, location)) = found else {
        return Verdict::deny(401, "missing_api_key", "an API key is required");
    };
    let Some(client) = keys.and_then(|k| k.client(&key)) else {
        return Verdict::deny(401, "invalid_api_key", "the API key is not valid");
    };
    let (mut remove, mut remove_query) = (Vec::new(), Vec::new());
    if !filter.forward_key {
        match location {
            KeyLocation::Header(h) => remove.push(h.clone()),
            KeyLocation::Query(q) => remove_query.push(q.clone()),
        }
    }
    Verdict::Allow {
        set: vec![(filter.client_header.clone(), client.to_owned())],
        remove,
        remove_query,
    }
}

/// The first non-empty value of query parameter `name`, percent-decoded
/// ([`gatehouse_http_core::query::decoded_values`]).
fn query_param(path: &str, name: &str) -> Option<Vec<u8>> {
    let query = gatehouse_http_core::query::of(path)?;
    gatehouse_http_core::query::decoded_values(query, name).find(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apikeys::sha256_hex;

    fn filters(extra: &str) -> Filters {
        let config = AuthzConfig::parse(
            &format!(
                "default_filter: partners\nfilters:\n  partners:\n    api_keys:\n      keys_file: keys.yaml\n      from: [{{header: x-api-key}}, {{query: api_key}}]\n{extra}"
            ),
            "authz.yaml",
        )
        .unwrap();
        let keys = ApiKeys::from_key_file(
            &format!(
                "keys:\n  - {{name: acme, sha256: {}}}\n",
                sha256_hex(b"k/1 2")
            ),
            "keys.yaml",
        )
        .unwrap();
        Filters::new(config, [("partners".to_owned(), keys)].into())
    }

    fn check(f: &Filters, filter: Option<&str>, path: &str, headers: &[(&str, &str)]) -> Verdict {
        let headers: HashMap<String, String> = headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        f.check(&CheckInput {
            filter,
            path,
            headers: &headers,
        })
    }

    fn status(v: &Verdict) -> u16 {
        match v {
            Verdict::Allow { .. } => 200,
            Verdict::Deny { status, .. } => *status,
        }
    }

    #[test]
    fn the_right_key_names_its_client_and_stays_behind() {
        let f = filters("");
        assert_eq!(
            check(
                &f,
                None,
                "/",
                &[("x-api-key", "k/1 2"), ("x-gatehouse-client", "mallory")]
            ),
            Verdict::Allow {
                set: vec![("x-gatehouse-client".into(), "acme".into())],
                remove: vec!["x-api-key".into()],
                remove_query: vec![],
            }
        );
        assert_eq!(
            check(&f, Some("partners"), "/a?x=1&api_key=k%2F1+2", &[]),
            Verdict::Allow {
                set: vec![("x-gatehouse-client".into(), "acme".into())],
                remove: vec![],
                remove_query: vec!["api_key".into()],
            }
        );
    }

    #[test]
    fn a_forwarded_key_is_left_in_place() {
        let f = filters("      forward_key: true\n");
        let Verdict::Allow { remove, .. } = check(&f, None, "/", &[("x-api-key", "k/1 2")]) else {
            panic!("allowed expected")
        };
        assert!(remove.is_empty());
    }

    #[test]
    fn wrong_or_missing_keys_get_401_with_a_code() {
        let f = filters("");
        let wrong = check(&f, None, "/", &[("x-api-key", "k/1 3")]);
        assert_eq!(status(&wrong), 401);
        assert!(
            matches!(&wrong, Verdict::Deny { body, .. } if body.contains(r#""code":"invalid_api_key""#))
        );
        let missing = check(&f, None, "/?api_key=", &[("x-api-key", "")]);
        assert!(
            matches!(&missing, Verdict::Deny { body, .. } if body.contains(r#""code":"missing_api_key""#))
        );
        assert_eq!(status(&check(&f, None, "/?api_key=%zz", &[])), 401);
    }

    #[test]
    fn an_unknown_filter_fails_closed() {
        let f = filters("");
        assert_eq!(
            status(&check(&f, Some("nope"), "/", &[("x-api-key", "k/1 2")])),
            500
        );
        assert_eq!(
            status(&Filters::default().check(&CheckInput {
                filter: None,
                path: "/",
                headers: &HashMap::new()
            })),
            500
        );
    }
}
