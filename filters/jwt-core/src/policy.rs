//! Providers, token locations, rules and the per-request decision.

use gatehouse_http_core as http;
use serde_json::Value;

use crate::jwks::KeySet;
use crate::verify::{Host, NoHost, Provider, VerifyError};
use gatehouse_template_core::{Field, Template};

pub(crate) mod compile;
mod deny;

pub use deny::ErrorResponse;

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
    /// Headers set from `injectRequestHeaders` templates.
    templates: Vec<(String, Template)>,
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
    headers: Vec<(String, http::value::ValueMatch)>,
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
        http::header::first(self.headers, name)
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
        /// Why: what adapters count and log by (never the body's text).
        reason: DenyReason,
        /// 401 for a missing or bad token, 403 for a claim that does not hold
        /// (`reason.status()`).
        status: u16,
        /// Response headers (`www-authenticate`, `content-type`).
        headers: Vec<(String, String)>,
        /// A small JSON body with a stable `code`.
        body: String,
    },
}

/// Why a request was refused. Adapters count and log by it; each reason has
/// its own status and the stable `code` of the JSON body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyReason {
    /// No token where the rule's providers look: 401, `missing_token`.
    MissingToken,
    /// A token that does not verify: 401, `invalid_token`.
    InvalidToken,
    /// A valid token without a required claim: 403, `insufficient_claims`.
    InsufficientClaims,
}

impl DenyReason {
    /// The HTTP status of the answer.
    #[must_use]
    pub fn status(self) -> u16 {
        match self {
            Self::MissingToken | Self::InvalidToken => 401,
            Self::InsufficientClaims => 403,
        }
    }

    /// The stable `code` of the answer's JSON body.
    #[must_use]
    pub fn code(self) -> &'static str {
        match self {
            Self::MissingToken => "missing_token",
            Self::InvalidToken => "invalid_token",
            Self::InsufficientClaims => "insufficient_claims",
        }
    }
}

/// Providers and rules, compiled.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    providers: Vec<ProviderConfig>,
    rules: Vec<Rule>,
    realm: String,
    /// Ambassador's `errorResponse`, when configured.
    error: Option<ErrorResponse>,
    /// Envoy removes token headers on the way upstream (the route's
    /// `request_headers_to_remove`): decisions never list them in `remove`.
    token_headers_removed_by_envoy: bool,
}

impl Policy {
    /// Leaves the removal of header-located tokens of providers that do not
    /// `forward` to Envoy (`token_headers_removed_by_envoy`).
    pub(crate) fn leave_token_removal_to_envoy(&mut self) {
        self.token_headers_removed_by_envoy = true;
    }

    /// Answers refusals as `error` says.
    pub(crate) fn set_error_response(&mut self, error: ErrorResponse) {
        self.error = Some(error);
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
                    .chain(p.templates.iter().map(|(h, _)| h.as_str()))
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
            .chain(
                self.providers
                    .iter()
                    .flat_map(|p| p.templates.iter().flat_map(|(_, t)| t.request_headers())),
            )
            .chain(self.error.iter().flat_map(ErrorResponse::request_headers))
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
                return provider.allow(&claims, token, location, request, self);
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
                    return provider.allow(&claims, token, location, request, self);
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
            (false, false, _) => self.deny(DenyReason::MissingToken, None, request),
            (true, _, e) => self.deny(DenyReason::InvalidToken, e.as_ref(), request),
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
            && self.headers.iter().all(|(name, m)| m.holds(r.header(name)))
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
    ///   only paths in plain form ([`http::path::is_plain`]): a path an upstream
    ///   may read as another one is never exempted;
    /// - a rule that requires a token keeps the raw prefix of jwt_authn:
    ///   matching more only asks for a token more often, and `/secure;x`
    ///   (which some servers read as `/secure`) stays protected.
    fn path_matches(&self, path: &str) -> bool {
        if self.relaxes()
            && (self.prefix.is_some() || self.path.is_some())
            && !http::path::is_plain(path)
        {
            return false;
        }
        let prefix_holds = |p: &str| {
            if self.relaxes() {
                http::path::is_under(path, p)
            } else {
                path.starts_with(p)
            }
        };
        self.prefix.as_deref().is_none_or(prefix_holds)
            && self.path.as_deref().is_none_or(|p| path == p)
    }
}

fn lookup<'v>(claims: &'v serde_json::Map<String, Value>, path: &[String]) -> Option<&'v Value> {
    let (first, rest) = path.split_first()?;
    rest.iter().try_fold(claims.get(first)?, |v, k| v.get(k))
}

fn header_value(v: &Value) -> String {
    gatehouse_template_core::plain(v)
}

/// A token template's field: from the verified claims, the token's own
/// segments (already verified, so only decoded here; the JOSE header once a
/// request, in `header`, when a template first asks) or the request.
fn token_field(
    field: &Field,
    claims: &serde_json::Map<String, Value>,
    token: &str,
    header: &std::cell::OnceCell<Option<serde_json::Map<String, Value>>>,
    request: &RequestView<'_>,
) -> Option<Value> {
    match field {
        Field::Claim(path) => lookup(claims, path).cloned(),
        Field::TokenRaw => Some(Value::String(token.to_owned())),
        Field::TokenSignature => token
            .rsplit('.')
            .next()
            .map(|s| Value::String(s.to_owned())),
        Field::TokenHeader(path) => {
            let header = header
                .get_or_init(|| {
                    let segment = token.split('.').next()?;
                    let bytes = crate::token::base64url_decode(segment.as_bytes())?;
                    serde_json::from_slice(&bytes).ok()
                })
                .as_ref()?;
            lookup(header, path).cloned()
        }
        Field::RequestHeader(name) => Some(Value::String(
            request.header(name).unwrap_or_default().to_owned(),
        )),
        Field::IdTokenRaw
        | Field::IdTokenSignature
        | Field::IdTokenHeader(_)
        | Field::IdTokenClaim(_)
        | Field::StatusCode
        | Field::Message
        | Field::RequestId
        | Field::RetryAfter
        | Field::OverallCode => None,
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
                Location::Cookie(cookie) => http::header::cookie(r.headers, cookie),
                Location::Query(param) => http::query::raw_value(r.path, param),
            };
            token.filter(|t| !t.is_empty()).map(|t| (t, loc))
        })
    }

    fn allow(
        &self,
        claims: &serde_json::Map<String, Value>,
        token: &str,
        location: &Location,
        request: &RequestView<'_>,
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
                return policy.deny(DenyReason::InsufficientClaims, None, request);
            }
        }
        let mut set: Vec<(String, String)> = self
            .claim_headers
            .iter()
            .filter_map(|(path, header)| {
                lookup(claims, path).map(|v| (header.clone(), header_value(v)))
            })
            .collect();
        if !self.templates.is_empty() {
            let header = std::cell::OnceCell::new();
            let value = |f: &Field| token_field(f, claims, token, &header, request);
            set.extend(
                self.templates
                    .iter()
                    .filter_map(|(header, t)| t.render(&value).map(|v| (header.clone(), v))),
            );
        }
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
