//! Providers, token locations, rules and the per-request decision.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::Algorithm;
use crate::jwks::{KeySet, parse_algorithm};
use crate::verify::{Host, NoHost, Provider, VerifyError};

// === raw configuration ===

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

// === domain ===

/// Where a token may be found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A header, with a value prefix (e.g. `authorization` / `Bearer `).
    Header {
        /// Lowercase header name.
        name: String,
        /// Prefix before the token, matched case-insensitively.
        prefix: String,
    },
    /// A cookie.
    Cookie(String),
    /// A query parameter.
    Query(String),
}

/// A claim that must hold for a request to pass (else 403).
#[derive(Debug, Clone, PartialEq)]
enum Requirement {
    Equals(Value),
    OneOf(Vec<Value>),
    Contains(Value),
}

/// One configured provider.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    name: String,
    provider: Provider,
    remote: Option<RemoteJwks>,
    locations: Vec<Location>,
    forward: bool,
    claim_headers: Vec<(Vec<String>, String)>,
    payload_header: Option<String>,
    required: Vec<(Vec<String>, Requirement)>,
}

/// A JWKS fetched over HTTP through an Envoy cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteJwks {
    /// The Envoy cluster that reaches the JWKS host.
    pub cluster: String,
    /// `:authority` of the request.
    pub authority: String,
    /// `:path` of the request.
    pub path: String,
    /// `http` or `https` (the cluster does the TLS).
    pub scheme: String,
    /// How long fetched keys are used before a refresh, seconds (default 300).
    pub cache_duration_secs: u64,
    /// Bound on one fetch, milliseconds (default 2000).
    pub timeout_ms: u64,
    /// Least time between two fetches caused by unknown `kid`s or failures,
    /// seconds (default 10): a flood of forged `kid`s cannot flood the IdP.
    pub refetch_interval_secs: u64,
}

impl RemoteJwks {
    fn try_from_raw(raw: RawRemote, at: &str) -> Result<Self, crate::config::ConfigError> {
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

/// What a rule asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Needs {
    /// A valid token of this provider.
    Provider(usize),
    /// A valid token of any of these.
    Any(Vec<usize>),
    /// A token of this provider is verified when present; none is fine.
    AllowMissing(usize),
    /// Nothing.
    Nothing,
}

#[derive(Debug, Clone)]
struct Rule {
    prefix: Option<String>,
    path: Option<String>,
    host: Option<String>,
    method: Option<String>,
    headers: Vec<(String, Option<String>)>,
    needs: Needs,
}

/// The request as the filter sees it.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    /// `:path`, query included.
    pub path: &'a str,
    /// `:authority`.
    pub host: &'a str,
    /// `:method`.
    pub method: &'a str,
    /// Every header, names lowercase.
    pub headers: &'a [(String, String)],
}

impl<'a> RequestView<'a> {
    fn header(&self, name: &str) -> Option<&'a str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Forward it, after removing and setting these headers.
    Continue {
        /// Headers to remove (the token when not forwarded).
        remove: Vec<String>,
        /// Headers to set from verified claims.
        set: Vec<(String, String)>,
    },
    /// Fetch this provider's JWKS, then decide again: a token named a `kid`
    /// the keys do not have (or there are no keys yet), and a refetch is due.
    FetchKeys {
        /// Index of the provider (see [`Policy::remote_jwks`]).
        provider: usize,
    },
    /// Answer it here.
    Deny {
        /// 401 for a missing or bad token, 403 for a claim that does not hold.
        status: u16,
        /// Response headers (`www-authenticate`, `content-type`).
        headers: Vec<(String, String)>,
        /// A small JSON body with a stable `code`.
        body: String,
    },
}

/// Providers and rules, compiled.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    providers: Vec<ProviderConfig>,
    rules: Vec<Rule>,
    realm: String,
    /// Envoy removes token headers on the way upstream (the route's
    /// `request_headers_to_remove`): decisions never list them in `remove`.
    token_headers_removed_by_envoy: bool,
}

fn invalid(path: String, message: impl Into<String>) -> crate::config::ConfigError {
    crate::config::ConfigError::Invalid {
        path,
        message: message.into(),
    }
}

fn claim_path(claim: &str) -> Vec<String> {
    claim.split('.').map(str::to_owned).collect()
}

fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

impl Policy {
    pub(crate) fn compile(
        raw_providers: BTreeMap<String, RawProvider>,
        raw_rules: Vec<RawRule>,
        realm: String,
    ) -> Result<Self, crate::config::ConfigError> {
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
                        (Some(h), None, None) if is_header_name(&h.to_ascii_lowercase()) => {
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
                if !is_header_name(&c.header) || c.claim.is_empty() {
                    return Err(invalid(
                        format!("{at}.claim_to_headers[{i}]"),
                        "claim and a lowercase header name are required",
                    ));
                }
                claim_headers.push((claim_path(&c.claim), c.header));
            }
            if let Some(h) = &raw.payload_in_header
                && !is_header_name(h)
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
                    .map(|h| (h.name.to_ascii_lowercase(), h.exact))
                    .collect(),
                needs,
            });
        }
        Ok(Self {
            providers,
            rules,
            realm,
            token_headers_removed_by_envoy: false,
        })
    }

    /// Leaves the removal of header-located tokens of providers that do not
    /// `forward` to Envoy (`token_headers_removed_by_envoy`).
    pub(crate) fn leave_token_removal_to_envoy(&mut self) {
        self.token_headers_removed_by_envoy = true;
    }

    /// Header names the filter may write: removed from every client request.
    #[must_use]
    pub fn written_headers(&self) -> Vec<&str> {
        self.providers
            .iter()
            .flat_map(|p| {
                p.claim_headers
                    .iter()
                    .map(|(_, h)| h.as_str())
                    .chain(p.payload_header.as_deref())
            })
            .collect()
    }

    /// Header names a decision may read, besides `:path`, `:authority` and
    /// `:method`: token locations (`cookie` for cookie ones) and the rules'
    /// header matches. An adapter may leave every other header out of
    /// [`RequestView::headers`].
    #[must_use]
    pub fn read_headers(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .providers
            .iter()
            .flat_map(|p| &p.locations)
            .filter_map(|loc| match loc {
                Location::Header { name, .. } => Some(name.as_str()),
                Location::Cookie(_) => Some("cookie"),
                Location::Query(_) => None,
            })
            .chain(
                self.rules
                    .iter()
                    .flat_map(|r| r.headers.iter().map(|(n, _)| n.as_str())),
            )
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// The pseudo-headers a decision may read: `:path` for path matches and
    /// query-parameter tokens, `:authority` for host matches, `:method` for
    /// method matches. An adapter may leave the others empty in
    /// [`RequestView`].
    #[must_use]
    pub fn read_pseudo_headers(&self) -> Vec<&'static str> {
        let mut names = Vec::new();
        let query = self
            .providers
            .iter()
            .flat_map(|p| &p.locations)
            .any(|loc| matches!(loc, Location::Query(_)));
        if query
            || self
                .rules
                .iter()
                .any(|r| r.prefix.is_some() || r.path.is_some())
        {
            names.push(":path");
        }
        if self.rules.iter().any(|r| r.host.is_some()) {
            names.push(":authority");
        }
        if self.rules.iter().any(|r| r.method.is_some()) {
            names.push(":method");
        }
        names
    }

    /// Providers whose keys come from a URI, with their index.
    pub fn remote_jwks(&self) -> impl Iterator<Item = (usize, &str, &RemoteJwks)> {
        self.providers
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.remote.as_ref().map(|r| (i, p.name.as_str(), r)))
    }

    /// Installs freshly fetched keys for provider `index`.
    pub fn set_keys(&mut self, index: usize, keys: KeySet) {
        if let Some(p) = self.providers.get_mut(index) {
            p.provider.set_keys(keys);
        }
    }

    /// Decides a request at `now` (Unix seconds), never asking for a fetch.
    #[must_use]
    pub fn decide(&self, request: &RequestView<'_>, now: u64) -> Decision {
        self.decide_with(request, now, &NoHost)
    }

    /// Decides a request at `now` (Unix seconds). The first matching rule
    /// wins; no rule matching means no requirement. When a token names a
    /// `kid` a remote provider does not have and `host.may_refetch(provider)`,
    /// the answer is [`Decision::FetchKeys`]: the request waits for the keys
    /// instead of failing. Signatures go through `host` where it can.
    #[must_use]
    pub fn decide_with(&self, request: &RequestView<'_>, now: u64, host: &dyn Host) -> Decision {
        let needs = self
            .rules
            .iter()
            .find(|r| r.matches(request))
            .map_or(&Needs::Nothing, |r| &r.needs);
        let (candidates, optional): (&[usize], bool) = match needs {
            Needs::Nothing => {
                return Decision::Continue {
                    remove: Vec::new(),
                    set: Vec::new(),
                };
            }
            Needs::Provider(p) => (std::slice::from_ref(p), false),
            Needs::Any(list) => (list, false),
            Needs::AllowMissing(p) => (std::slice::from_ref(p), true),
        };
        let mut last_error: Option<VerifyError> = None;
        let mut found_any = false;
        for &index in candidates {
            let provider = &self.providers[index];
            let Some((token, location)) = provider.find_token(request) else {
                continue;
            };
            found_any = true;
            if let Some(claims) = host.cached_claims(index, token, now) {
                return provider.allow(&claims, location, self);
            }
            match provider.provider.verify_with(token, now, host) {
                Ok(verified) => {
                    let until = provider.provider.trusted_until(&verified.claims, now);
                    let claims = std::rc::Rc::new(verified.claims);
                    host.remember(
                        index,
                        token,
                        &verified.key,
                        std::rc::Rc::clone(&claims),
                        until,
                    );
                    return provider.allow(&claims, location, self);
                }
                Err(VerifyError::UnknownKid(_))
                    if provider.remote.is_some() && host.may_refetch(index) =>
                {
                    return Decision::FetchKeys { provider: index };
                }
                Err(e) => last_error = Some(e),
            }
        }
        match (found_any, optional, last_error) {
            (false, true, _) => Decision::Continue {
                remove: Vec::new(),
                set: Vec::new(),
            },
            (false, false, _) => self.deny(401, "missing_token", None),
            (true, _, Some(e)) => self.deny(401, "invalid_token", Some(&e)),
            (true, _, None) => self.deny(401, "invalid_token", None),
        }
    }

    fn deny(&self, status: u16, code: &str, error: Option<&VerifyError>) -> Decision {
        // RFC 6750 §3: a request without credentials gets the challenge
        // without an error code; a bad token gets invalid_token. The
        // description is generic on purpose: it must not help forging.
        let description = match error {
            _ if status == 403 => "the token lacks a required claim",
            Some(VerifyError::Expired) => "the token has expired",
            Some(VerifyError::NotYetValid) => "the token is not valid yet",
            Some(_) => "the token is not valid",
            None if code == "missing_token" => "a bearer token is required",
            None => "the token is not valid",
        };
        let challenge = if code == "missing_token" {
            format!("Bearer realm=\"{}\"", self.realm)
        } else if status == 403 {
            format!(
                "Bearer realm=\"{}\", error=\"insufficient_scope\", error_description=\"{description}\"",
                self.realm
            )
        } else {
            format!(
                "Bearer realm=\"{}\", error=\"invalid_token\", error_description=\"{description}\"",
                self.realm
            )
        };
        Decision::Deny {
            status,
            headers: vec![
                ("www-authenticate".into(), challenge),
                ("content-type".into(), "application/json".into()),
            ],
            body: serde_json::json!({ "code": code, "message": description }).to_string(),
        }
    }
}

impl Rule {
    fn matches(&self, r: &RequestView<'_>) -> bool {
        // The query is never part of the path a rule sees.
        let path = r.path.split('?').next().unwrap_or_default();
        self.path_matches(path)
            && self
                .host
                .as_ref()
                .is_none_or(|h| r.host.eq_ignore_ascii_case(h))
            && self
                .method
                .as_ref()
                .is_none_or(|m| r.method.eq_ignore_ascii_case(m))
            && self
                .headers
                .iter()
                .all(|(name, exact)| match (r.header(name), exact) {
                    (Some(v), Some(want)) => v == want,
                    (Some(_), None) => true,
                    (None, _) => false,
                })
    }

    /// Whether the rule lets a request through with less than a valid token
    /// (`none`, `allow_missing`).
    fn relaxes(&self) -> bool {
        matches!(self.needs, Needs::Nothing | Needs::AllowMissing(_))
    }

    /// `prefix` and `path` against the path, query excluded.
    ///
    /// Envoy's jwt_authn matches `prefix` as a raw string prefix, so a
    /// public rule on `/health` would also exempt `/healthz-admin`. Here the
    /// answer depends on what matching more would do:
    /// - a rule that relaxes matches on segment boundaries only (`/health`
    ///   takes `/health` and `/health/...`, never `/healthz-admin` nor
    ///   `/health;x`; a prefix ending in `/` takes what is under it), and
    ///   only paths in plain form ([`is_plain_path`]): a path an upstream
    ///   may read as another one is never exempted;
    /// - a rule that requires a token keeps the raw prefix of jwt_authn:
    ///   matching more only asks for a token more often, and `/secure;x`
    ///   (which some servers read as `/secure`) stays protected.
    fn path_matches(&self, path: &str) -> bool {
        if self.relaxes() && (self.prefix.is_some() || self.path.is_some()) && !is_plain_path(path)
        {
            return false;
        }
        let prefix_holds = |p: &str| {
            if self.relaxes() {
                is_under(path, p)
            } else {
                path.starts_with(p)
            }
        };
        self.prefix.as_deref().is_none_or(prefix_holds)
            && self.path.as_deref().is_none_or(|p| path == p)
    }
}

/// Whether `path` is `prefix` or lies under it on a segment boundary.
fn is_under(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/'))
}

/// Whether a path reads the same to every server: no `.` or `..` segment
/// (also as `..;x`, which Tomcat reads as `..`), no empty segment (`//`), no
/// backslash, and no percent-encoded `.`, `/` or `\`, which a server may
/// decode before resolving the path. Envoy can normalise all of this
/// (`normalize_path`, `merge_slashes`, `path_with_escaped_slashes_action`, as
/// `gatehouse render` sets them); a hand-written listener may not, and then a
/// relaxing rule must not exempt `/health/..;/admin`.
fn is_plain_path(path: &str) -> bool {
    let bytes = path.as_bytes();
    let encoded = bytes.windows(3).any(|w| {
        w[0] == b'%'
            && matches!(
                (w[1], w[2].to_ascii_lowercase()),
                (b'2', b'e' | b'f') | (b'5', b'c')
            )
    });
    // An empty last segment is a trailing slash, which is fine.
    let inner = path.strip_suffix('/').unwrap_or(path);
    !encoded
        && !path.contains('\\')
        && inner.split('/').skip(1).all(|segment| {
            let segment = segment.split(';').next().unwrap_or_default();
            !segment.is_empty() && segment != "." && segment != ".."
        })
}

fn lookup<'v>(claims: &'v serde_json::Map<String, Value>, path: &[String]) -> Option<&'v Value> {
    let (first, rest) = path.split_first()?;
    rest.iter().try_fold(claims.get(first)?, |v, k| v.get(k))
}

fn header_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(header_value).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

impl ProviderConfig {
    fn find_token<'r>(&self, r: &RequestView<'r>) -> Option<(&'r str, &Location)> {
        self.locations.iter().find_map(|loc| {
            let token = match loc {
                Location::Header { name, prefix } => {
                    let v = r.header(name)?;
                    if v.len() >= prefix.len()
                        && v.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
                    {
                        Some(v[prefix.len()..].trim())
                    } else {
                        None
                    }
                }
                Location::Cookie(cookie) => r.header("cookie").and_then(|c| {
                    c.split(';').find_map(|kv| {
                        let (k, v) = kv.trim().split_once('=')?;
                        (k == cookie).then_some(v)
                    })
                }),
                Location::Query(param) => r.path.split_once('?').and_then(|(_, q)| {
                    q.split('&').find_map(|kv| {
                        let (k, v) = kv.split_once('=')?;
                        (k == param).then_some(v)
                    })
                }),
            };
            token.filter(|t| !t.is_empty()).map(|t| (t, loc))
        })
    }

    fn allow(
        &self,
        claims: &serde_json::Map<String, Value>,
        location: &Location,
        policy: &Policy,
    ) -> Decision {
        for (path, req) in &self.required {
            let value = lookup(claims, path);
            let holds = match (req, value) {
                (Requirement::Equals(want), Some(v)) => v == want,
                (Requirement::OneOf(options), Some(v)) => options.contains(v),
                (Requirement::Contains(want), Some(Value::Array(items))) => items.contains(want),
                // Space-separated lists, as OAuth's `scope`.
                (Requirement::Contains(Value::String(want)), Some(Value::String(s))) => {
                    s.split(' ').any(|x| x == want)
                }
                _ => false,
            };
            if !holds {
                return policy.deny(403, "insufficient_claims", None);
            }
        }
        let mut set: Vec<(String, String)> = self
            .claim_headers
            .iter()
            .filter_map(|(path, header)| {
                lookup(claims, path).map(|v| (header.clone(), header_value(v)))
            })
            .collect();
        if let Some(header) = &self.payload_header {
            use base64::Engine as _;
            let payload = serde_json::to_vec(claims).unwrap_or_default();
            set.push((
                header.clone(),
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(payload),
            ));
        }
        let remove = match (self.forward, location) {
            (false, Location::Header { name, .. }) if !policy.token_headers_removed_by_envoy => {
                vec![name.clone()]
            }
            _ => Vec::new(),
        };
        let _ = &self.name;
        Decision::Continue { remove, set }
    }
}

#[cfg(test)]
mod tests;
