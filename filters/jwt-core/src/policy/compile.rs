//! The configuration of providers and rules as written (`Raw*`, refusing
//! unknown fields) and its compilation into the domain types of [`super`],
//! with errors that name the field.

use std::collections::BTreeMap;

use gatehouse_http_core::value::ValueMatch;
use serde::Deserialize;
use serde_json::Value;

use super::{Location, Needs, Policy, ProviderConfig, RemoteJwks, Requirement, Rule};
use crate::error::ConfigError;
use crate::jwks::{KeySet, parse_algorithm};
use crate::verify::Provider;
use gatehouse_template_core::{Scope, Template};
use jsonwebtoken::Algorithm;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProvider {
    #[serde(default)]
    issuer: Option<String>,
    #[serde(default)]
    audiences: Vec<String>,
    #[serde(default)]
    algorithms: Option<Vec<String>>,
    jwks: RawJwks,
    #[serde(default)]
    clock_skew_seconds: Option<u64>,
    #[serde(default)]
    from: Option<Vec<RawLocation>>,
    #[serde(default)]
    forward: bool,
    #[serde(default)]
    claim_to_headers: Vec<RawClaimHeader>,
    #[serde(default)]
    header_templates: Vec<RawHeaderTemplate>,
    #[serde(default)]
    payload_in_header: Option<String>,
    #[serde(default)]
    required_claims: Vec<RawRequiredClaim>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJwks {
    #[serde(default)]
    inline: Option<Value>,
    #[serde(default)]
    remote: Option<RawRemote>,
    #[serde(default)]
    hmac_secret_base64url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRemote {
    uri: String,
    cluster: String,
    #[serde(default)]
    cache_duration_seconds: Option<u64>,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    refetch_interval_seconds: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLocation {
    #[serde(default)]
    header: Option<String>,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    cookie: Option<String>,
    #[serde(default)]
    query: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClaimHeader {
    claim: String,
    header: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeaderTemplate {
    header: String,
    template: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequiredClaim {
    claim: String,
    #[serde(default)]
    equals: Option<Value>,
    #[serde(default)]
    one_of: Option<Vec<Value>>,
    #[serde(default)]
    contains: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRule {
    #[serde(default, rename = "match")]
    matcher: RawMatch,
    requires: RawRequirement,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMatch {
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    headers: Vec<RawHeaderMatch>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeaderMatch {
    name: String,
    #[serde(default)]
    exact: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequirement {
    #[serde(default)]
    provider: Option<String>,
    #[serde(default)]
    any: Option<Vec<String>>,
    #[serde(default)]
    allow_missing: Option<String>,
    #[serde(default)]
    none: Option<serde_json::Map<String, Value>>,
}

impl RemoteJwks {
    fn try_from_raw(raw: RawRemote, at: &str) -> Result<Self, ConfigError> {
        let (scheme, rest) = raw
            .uri
            .split_once("://")
            .filter(|(s, _)| *s == "http" || *s == "https")
            .ok_or_else(|| {
                invalid(
                    format!("{at}.uri"),
                    format!("{:?} is not an http(s) URI", raw.uri),
                )
            })?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            return Err(invalid(format!("{at}.uri"), "the URI has no host"));
        }
        if raw.cluster.is_empty() {
            return Err(invalid(
                format!("{at}.cluster"),
                "name the Envoy cluster that reaches the JWKS host",
            ));
        }
        Ok(Self {
            cluster: raw.cluster,
            authority: authority.to_owned(),
            path: path.to_owned(),
            scheme: scheme.to_owned(),
            cache_duration_secs: raw.cache_duration_seconds.unwrap_or(300).max(1),
            timeout_ms: raw.timeout_ms.unwrap_or(2000).max(1),
            refetch_interval_secs: raw.refetch_interval_seconds.unwrap_or(10),
        })
    }
}

fn invalid(path: String, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        path,
        message: message.into(),
    }
}

fn claim_path(claim: &str) -> Vec<String> {
    claim.split('.').map(str::to_owned).collect()
}

impl Policy {
    pub(crate) fn compile(
        raw_providers: BTreeMap<String, RawProvider>,
        raw_rules: Vec<RawRule>,
        realm: String,
    ) -> Result<Self, ConfigError> {
        let mut providers = Vec::new();
        let mut names: BTreeMap<String, usize> = BTreeMap::new();
        for (name, raw) in raw_providers {
            let at = format!("providers.{name}");
            let hmac = raw.jwks.hmac_secret_base64url.is_some();
            let (keys, remote) = match (
                raw.jwks.inline,
                raw.jwks.remote,
                raw.jwks.hmac_secret_base64url,
            ) {
                (None, None, Some(secret)) => {
                    use base64::Engine as _;
                    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                        .decode(secret.trim_end_matches('='))
                        .map_err(|_| {
                            invalid(format!("{at}.jwks.hmac_secret_base64url"), "not base64url")
                        })?;
                    // RFC 7518 §3.2: an HMAC key at least as long as the hash.
                    if bytes.len() < 32 {
                        return Err(invalid(
                            format!("{at}.jwks.hmac_secret_base64url"),
                            format!("{} bytes; an HMAC secret needs at least 32", bytes.len()),
                        ));
                    }
                    (KeySet::from_secret(None, &bytes), None)
                }
                (Some(inline), None, None) => {
                    let jwks = serde_json::to_vec(&inline).unwrap_or_default();
                    let keys = KeySet::from_jwks(&jwks)
                        .map_err(|e| invalid(format!("{at}.jwks.inline"), e.to_string()))?;
                    (keys, None)
                }
                (None, Some(r), None) => (
                    KeySet::default(),
                    Some(RemoteJwks::try_from_raw(r, &format!("{at}.jwks.remote"))?),
                ),
                _ => {
                    return Err(invalid(
                        format!("{at}.jwks"),
                        "name exactly one of inline, remote or hmac_secret_base64url",
                    ));
                }
            };
            let is_hmac =
                |a: Algorithm| matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512);
            let algorithms = match raw.algorithms {
                None if hmac => vec![Algorithm::HS256],
                None => vec![Algorithm::RS256, Algorithm::ES256],
                Some(list) => list
                    .iter()
                    .enumerate()
                    .map(|(i, a)| {
                        let alg = parse_algorithm(a).ok_or_else(|| {
                            invalid(format!("{at}.algorithms[{i}]"), format!("unknown algorithm {a:?}: use RS256, ES256, PS256, EdDSA, ..."))
                        })?;
                        // HMAC only with a configured secret, and a secret only
                        // for HMAC: the two never mix (algorithm confusion).
                        if is_hmac(alg) != hmac {
                            return Err(invalid(
                                format!("{at}.algorithms[{i}]"),
                                if hmac {
                                    "a provider with an HMAC secret takes HS256, HS384 or HS512 only"
                                } else {
                                    "HMAC algorithms need jwks.hmac_secret_base64url"
                                },
                            ));
                        }
                        Ok(alg)
                    })
                    .collect::<Result<_, _>>()?,
            };
            let locations = match raw.from {
                None => vec![Location::Header {
                    name: "authorization".into(),
                    prefix: "Bearer ".into(),
                }],
                Some(list) => list
                    .into_iter()
                    .enumerate()
                    .map(|(i, l)| match (l.header, l.cookie, l.query) {
                        (Some(h), None, None)
                            if gatehouse_http_core::header::is_config_name(
                                &h.to_ascii_lowercase(),
                            ) =>
                        {
                            Ok(Location::Header {
                                name: h.to_ascii_lowercase(),
                                prefix: l.prefix.unwrap_or_default(),
                            })
                        }
                        (None, Some(c), None) if l.prefix.is_none() && !c.is_empty() => {
                            Ok(Location::Cookie(c))
                        }
                        (None, None, Some(q)) if l.prefix.is_none() && !q.is_empty() => {
                            Ok(Location::Query(q))
                        }
                        _ => Err(invalid(
                            format!("{at}.from[{i}]"),
                            "name exactly one of header (with an optional prefix), cookie or query",
                        )),
                    })
                    .collect::<Result<_, _>>()?,
            };
            let mut claim_headers = Vec::new();
            for (i, c) in raw.claim_to_headers.into_iter().enumerate() {
                if !gatehouse_http_core::header::is_config_name(&c.header) || c.claim.is_empty() {
                    return Err(invalid(
                        format!("{at}.claim_to_headers[{i}]"),
                        "claim and a lowercase header name are required",
                    ));
                }
                claim_headers.push((claim_path(&c.claim), c.header));
            }
            let mut templates = Vec::new();
            for (i, t) in raw.header_templates.into_iter().enumerate() {
                let field = format!("{at}.header_templates[{i}]");
                if !gatehouse_http_core::header::is_config_name(&t.header) {
                    return Err(invalid(field, "header: a lowercase header name"));
                }
                let template = Template::parse(&t.template, Scope::Token)
                    .map_err(|m| invalid(format!("{field}.template"), m))?;
                templates.push((t.header, template));
            }
            if let Some(h) = &raw.payload_in_header
                && !gatehouse_http_core::header::is_config_name(h)
            {
                return Err(invalid(
                    format!("{at}.payload_in_header"),
                    "a lowercase header name",
                ));
            }
            let mut required = Vec::new();
            for (i, r) in raw.required_claims.into_iter().enumerate() {
                let req = match (r.equals, r.one_of, r.contains) {
                    (Some(v), None, None) => Requirement::Equals(v),
                    (None, Some(v), None) => Requirement::OneOf(v),
                    (None, None, Some(v)) => Requirement::Contains(v),
                    _ => {
                        return Err(invalid(
                            format!("{at}.required_claims[{i}]"),
                            "name exactly one of equals, one_of or contains",
                        ));
                    }
                };
                required.push((claim_path(&r.claim), req));
            }
            let provider = Provider::new(
                raw.issuer,
                raw.audiences,
                algorithms,
                keys,
                raw.clock_skew_seconds.unwrap_or(60),
            );
            names.insert(name.clone(), providers.len());
            providers.push(ProviderConfig {
                name,
                provider,
                remote,
                locations,
                forward: raw.forward,
                claim_headers,
                templates,
                payload_header: raw.payload_in_header,
                required,
            });
        }
        let lookup = |name: &str, at: &str| {
            names
                .get(name)
                .copied()
                .ok_or_else(|| invalid(at.to_owned(), format!("unknown provider {name:?}")))
        };
        let mut rules = Vec::new();
        for (i, r) in raw_rules.into_iter().enumerate() {
            let at = format!("rules[{i}].requires");
            let q = r.requires;
            let needs = match (q.provider, q.any, q.allow_missing, q.none) {
                (Some(p), None, None, None) => {
                    Needs::Provider(lookup(&p, &format!("{at}.provider"))?)
                }
                (None, Some(list), None, None) if !list.is_empty() => Needs::Any(
                    list.iter()
                        .map(|p| lookup(p, &format!("{at}.any")))
                        .collect::<Result<_, _>>()?,
                ),
                (None, None, Some(p), None) => {
                    Needs::AllowMissing(lookup(&p, &format!("{at}.allow_missing"))?)
                }
                (None, None, None, Some(_)) => Needs::Nothing,
                _ => {
                    return Err(invalid(
                        at,
                        "name exactly one of provider, any (non-empty), allow_missing or none",
                    ));
                }
            };
            let m = r.matcher;
            if m.prefix.is_some() && m.path.is_some() {
                return Err(invalid(
                    format!("rules[{i}].match"),
                    "prefix and path exclude each other",
                ));
            }
            rules.push(Rule {
                prefix: m.prefix,
                path: m.path,
                host: m.host.map(|h| h.to_ascii_lowercase()),
                method: m.method.map(|h| h.to_ascii_uppercase()),
                headers: m
                    .headers
                    .into_iter()
                    .map(|h| {
                        let m = h.exact.map_or(ValueMatch::Present(true), ValueMatch::Exact);
                        (h.name.to_ascii_lowercase(), m)
                    })
                    .collect(),
                needs,
            });
        }
        Ok(Self {
            providers,
            rules,
            realm,
            error: None,
            token_headers_removed_by_envoy: false,
        })
    }
}
