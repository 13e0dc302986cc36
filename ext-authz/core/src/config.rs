//! The service's YAML configuration: named filters, each of one kind.

use std::collections::BTreeMap;

use serde::Deserialize;

mod oidc;
use oidc::oidc_filter;

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
    #[serde(default)]
    feed_socket: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFilter {
    #[serde(default)]
    api_keys: Option<RawApiKeys>,
    #[serde(default)]
    oidc: Option<RawOidc>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOidc {
    issuer: String,
    client_id: String,
    #[serde(default)]
    client_secret_file: Option<String>,
    #[serde(default)]
    client_secret_env: Option<String>,
    #[serde(default)]
    client_auth: Option<String>,
    #[serde(default)]
    private_key_file: Option<String>,
    #[serde(default)]
    private_key_id: Option<String>,
    callback_url: String,
    #[serde(default)]
    other_callback_urls: Vec<String>,
    #[serde(default)]
    scopes: Option<Vec<String>>,
    #[serde(default)]
    extra_auth_params: BTreeMap<String, String>,
    #[serde(default)]
    logout_path: Option<String>,
    #[serde(default)]
    post_logout_redirect_url: Option<String>,
    #[serde(default)]
    rp_initiated_logout: Option<bool>,
    session_keys_file: String,
    #[serde(default)]
    cookie_name: Option<String>,
    #[serde(default)]
    cookie_domain: Option<String>,
    #[serde(default)]
    cookie_path: Option<String>,
    #[serde(default)]
    cookie_secure: Option<bool>,
    #[serde(default)]
    idle_timeout_seconds: Option<u64>,
    #[serde(default)]
    absolute_timeout_seconds: Option<u64>,
    #[serde(default)]
    refresh_margin_seconds: Option<u64>,
    #[serde(default)]
    user_header: Option<String>,
    #[serde(default)]
    email_header: Option<String>,
    #[serde(default)]
    groups_header: Option<String>,
    #[serde(default)]
    forward_access_token: bool,
    #[serde(default)]
    inject_request_headers: Vec<RawInjectHeader>,
    #[serde(default)]
    allow_malformed_access_token: bool,
    #[serde(default)]
    public_paths: Vec<String>,
    #[serde(default)]
    required_groups: Vec<String>,
    #[serde(default)]
    discovery_refresh_seconds: Option<u64>,
    #[serde(default)]
    bearer: Option<RawBearer>,
    #[serde(default)]
    forward_id_token: bool,
    #[serde(default)]
    required_claims: Vec<RawClaimRequirement>,
    #[serde(default)]
    session_store: Option<RawSessionStore>,
    #[serde(default)]
    backchannel_logout_path: Option<String>,
    #[serde(default)]
    fast_path: Option<RawFastPath>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFastPath {
    #[serde(default)]
    ticket_cookie_name: Option<String>,
    #[serde(default)]
    ticket_seconds: Option<u64>,
}

/// The SSO fast path of a filter: after a full check, a short-lived
/// identity ticket the gatehouse-session filter verifies inside Envoy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FastPath {
    /// The ticket's cookie (default `<cookie_name>_ticket`).
    pub ticket_cookie: String,
    /// How long a ticket lasts at most (seconds, default 300): how often a
    /// signed-in browser's request still makes the full check (idle
    /// tracking, refresh), and how long a revocation stays in the feed.
    pub ticket_secs: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClaimRequirement {
    claim: String,
    #[serde(default)]
    equals: Option<serde_json::Value>,
    #[serde(default)]
    one_of: Option<Vec<serde_json::Value>>,
}

/// A claim the ID token (or a bearer token) must carry: a value equal to
/// `equals`, or one of `one_of`; an array claim holds when any element does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRequirement {
    /// Claim name; dots reach into objects (`realm_access.roles`).
    pub claim: String,
    /// The values that satisfy it.
    pub accepted: Vec<serde_json::Value>,
}

impl ClaimRequirement {
    /// Whether `claims` satisfy this requirement.
    #[must_use]
    pub fn holds(&self, claims: &serde_json::Map<String, serde_json::Value>) -> bool {
        let mut path = self.claim.split('.');
        let first = path.next().and_then(|k| claims.get(k));
        let value = path.try_fold(first, |v, k| Some(v.and_then(|v| v.get(k))));
        match value.flatten() {
            Some(serde_json::Value::Array(items)) => {
                items.iter().any(|i| self.accepted.contains(i))
            }
            Some(v) => self.accepted.contains(v),
            None => false,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSessionStore {
    redis_url: String,
    #[serde(default)]
    key_prefix: Option<String>,
}

/// Sessions kept in Redis: the cookie holds only a sealed reference, so
/// large tokens fit and a session can be ended from the server side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSessionStore {
    /// `redis://` or `rediss://` URL (credentials may be in it: never logged).
    pub redis_url: String,
    /// Prefix of every key the store writes.
    pub key_prefix: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInjectHeader {
    header: String,
    template: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBearer {
    issuer: String,
    #[serde(default)]
    audiences: Option<Vec<String>>,
    jwks_file: String,
}

/// Machine clients: a bearer JWT from this issuer passes without a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BearerTokens {
    /// The `iss` tokens must carry.
    pub issuer: String,
    /// One of these must be in `aud`. Default: the filter's `client_id`;
    /// never empty (a token minted for another service does not pass).
    pub audiences: Vec<String>,
    /// The issuer's keys, a JWKS file relative to the configuration file.
    pub jwks_file: String,
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
    clients: Option<Vec<String>>,
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
    feed_socket: Option<String>,
}

/// What one named filter does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterKind {
    /// API keys.
    ApiKeys(ApiKeyFilter),
    /// OpenID Connect single sign-on.
    Oidc(Box<OidcFilter>),
}

/// How the service authenticates to the IdP's token endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientAuth {
    /// HTTP Basic with the client id and secret (the default).
    SecretBasic,
    /// The id and secret in the form body.
    SecretPost,
    /// A JWT signed with the client's private key (RFC 7523): no shared
    /// secret at all.
    PrivateKeyJwt {
        /// PEM private key (RSA or P-256), relative to the configuration file.
        key_file: String,
        /// The `kid` the IdP knows the public key by, if any.
        key_id: Option<String>,
    },
}

/// Where the client secret comes from: never the configuration file itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// A file (relative to the configuration file), trailing newline ignored.
    File(String),
    /// An environment variable.
    Env(String),
}

/// An OpenID Connect filter's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcFilter {
    /// The issuer exactly as configured (a trailing `/` included): OpenID
    /// Connect Discovery §4.3 requires the discovered `issuer` to be
    /// identical. Discovery reads `<issuer>/.well-known/openid-configuration`.
    pub issuer: String,
    /// The client id.
    pub client_id: String,
    /// The client secret's source (none with `private_key_jwt`).
    pub client_secret: Option<SecretSource>,
    /// Token endpoint authentication.
    pub client_auth: ClientAuth,
    /// The redirect URI registered at the IdP; its path is answered here.
    pub callback_url: String,
    /// The path part of `callback_url`.
    pub callback_path: String,
    /// The same callback on the filter's other origins (Ambassador's
    /// further `protectedOrigins`): a login started on one of their hosts
    /// returns there, each registered at the IdP.
    pub other_callback_urls: Vec<String>,
    /// Scopes asked for (`openid` always included).
    pub scopes: Vec<String>,
    /// Extra authorization request parameters.
    pub extra_auth_params: BTreeMap<String, String>,
    /// POST here logs out (RP-initiated when the IdP supports it).
    pub logout_path: String,
    /// Where the IdP sends the browser after logout.
    pub post_logout_redirect_url: Option<String>,
    /// Whether logout goes on to the IdP's `end_session_endpoint` (default
    /// true); false ends only the session here.
    pub rp_initiated_logout: bool,
    /// The session key file (relative to the configuration file).
    pub session_keys_file: String,
    /// Session cookie name; the login cookie is `<name>_login`.
    pub cookie_name: String,
    /// Cookie `Domain`.
    pub cookie_domain: Option<String>,
    /// Cookie `Path`.
    pub cookie_path: String,
    /// Cookie `Secure`.
    pub cookie_secure: bool,
    /// Idle timeout, seconds.
    pub idle_timeout_secs: u64,
    /// Absolute timeout, seconds.
    pub absolute_timeout_secs: u64,
    /// Refresh an access token this close to expiry, seconds.
    pub refresh_margin_secs: u64,
    /// Header carrying `sub` upstream.
    pub user_header: String,
    /// Header carrying `email` upstream.
    pub email_header: String,
    /// Header carrying `groups` (comma-separated) upstream.
    pub groups_header: String,
    /// Send `Authorization: Bearer <access token>` upstream.
    pub forward_access_token: bool,
    /// Forward an access token that is not an RFC 6750 `b64token` (some
    /// IdPs issue such); otherwise such a session's requests get 502.
    pub allow_malformed_access_token: bool,
    /// Headers set upstream from templates over the session's tokens and
    /// the request (Ambassador's OAuth2 `injectRequestHeaders`).
    pub inject_request_headers: Vec<(String, gatehouse_template_core::Template)>,
    /// Path prefixes that need no login, matched on segment boundaries
    /// (see [`OidcFilter::is_public`]).
    pub public_paths: Vec<String>,
    /// A session must be in one of these groups (none: any session).
    pub required_groups: Vec<String>,
    /// How often discovery is read again, seconds.
    pub discovery_refresh_secs: u64,
    /// Bearer JWTs accepted instead of a session, if configured.
    pub bearer: Option<BearerTokens>,
    /// Send `Authorization: Bearer <ID token>` upstream.
    pub forward_id_token: bool,
    /// Claims a login (or bearer token) must carry, else 403.
    pub required_claims: Vec<ClaimRequirement>,
    /// Sessions in Redis instead of whole in the cookie.
    pub session_store: Option<RedisSessionStore>,
    /// Where the IdP posts back-channel logout tokens (Redis store only).
    pub backchannel_logout_path: String,
    /// The fast path, when on.
    pub fast_path: Option<FastPath>,
}

impl OidcFilter {
    /// The redirect URI of a login started on `host` (`:authority`): the
    /// configured callback URL whose host is `host` (ASCII case aside),
    /// else `callback_url`. Only configured URLs: a request's host picks
    /// among them, never makes one.
    #[must_use]
    pub fn callback_url_for(&self, host: &str) -> &str {
        self.other_callback_urls
            .iter()
            .find(|u| {
                u.split_once("://")
                    .and_then(|(_, rest)| rest.split('/').next())
                    .is_some_and(|h| h.eq_ignore_ascii_case(host))
            })
            .unwrap_or(&self.callback_url)
    }

    /// Whether `path` (the request's `:path`; the query is ignored) needs no
    /// login: it is under one of `public_paths` on a segment boundary
    /// (`/health` covers `/health`, `/health/…`, `/health?…`, not
    /// `/healthz`; `/assets/` covers everything below it). A path with dot
    /// segments, `//`, `\` or encoded `.`, `/`, `\` is never public.
    #[must_use]
    pub fn is_public(&self, path: &str) -> bool {
        self.public_paths
            .iter()
            .any(|p| crate::web::is_under(path, p))
    }

    /// The associated data a value sealed for this filter's cookie (or
    /// session store) `what` is bound to: the cookie's use, the filter's
    /// name, the client id and the issuer. Two filters that share keys and a
    /// cookie name still cannot open each other's sessions.
    #[must_use]
    pub fn seal_purpose(&self, filter_name: &str, what: &str) -> String {
        // A JSON array: unambiguous whatever the parts contain.
        serde_json::json!([
            "gatehouse-authz/1",
            what,
            filter_name,
            self.client_id,
            self.issuer
        ])
        .to_string()
    }
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
    /// With a client list, only those clients' files count, and each must
    /// be there.
    Dir(String, Option<Vec<String>>),
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
            let kind = match (f.api_keys, f.oidc) {
                (Some(keys), None) => {
                    FilterKind::ApiKeys(api_keys(keys, file, &format!("{at}.api_keys"))?)
                }
                (None, Some(oidc)) => {
                    FilterKind::Oidc(Box::new(oidc_filter(oidc, file, &format!("{at}.oidc"))?))
                }
                _ => {
                    return Err(ConfigError::new(
                        file,
                        at,
                        "a filter needs exactly one kind: api_keys or oidc",
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
        let fast = filters
            .values()
            .any(|f| matches!(f, FilterKind::Oidc(o) if o.fast_path.is_some()));
        match &raw.feed_socket {
            Some(path) if path.is_empty() => {
                return Err(ConfigError::new(
                    file,
                    "feed_socket",
                    "the path of a Unix socket (relative to this file's directory, or absolute)",
                ));
            }
            None if fast => {
                return Err(ConfigError::new(
                    file,
                    "feed_socket",
                    "a filter has fast_path: name the Unix socket the gatehouse-session filter polls",
                ));
            }
            _ => {}
        }
        Ok(Self {
            default_filter: raw.default_filter,
            filters,
            feed_socket: raw.feed_socket,
        })
    }

    /// The Unix socket the fast path's feed is served on.
    #[must_use]
    pub fn feed_socket(&self) -> Option<&str> {
        self.feed_socket.as_deref()
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
                (Some(h), None)
                    if gatehouse_http_core::header::is_config_name(&h.to_ascii_lowercase()) =>
                {
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
    if raw.clients.is_some() && raw.keys_dir.is_none() {
        return Err(ConfigError::new(
            file,
            format!("{at}.clients"),
            "clients picks files of keys_dir: name keys_dir too",
        ));
    }
    if let Some(bad) = raw
        .clients
        .iter()
        .flatten()
        .find(|c| c.is_empty() || c.starts_with('.') || c.contains('/'))
    {
        return Err(ConfigError::new(
            file,
            format!("{at}.clients"),
            format!("{bad:?} is not a file name in keys_dir"),
        ));
    }
    let source = match (raw.keys_file, raw.keys_dir) {
        (Some(f), None) if !f.is_empty() => KeySource::File(f),
        (None, Some(d)) if !d.is_empty() => KeySource::Dir(d, raw.clients),
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
    if !gatehouse_http_core::header::is_config_name(&client_header) {
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
mod tests;
